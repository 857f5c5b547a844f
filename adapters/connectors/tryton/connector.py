"""``TrytonConnector``: export draft orders as sale orders (``sale.sale``) into Tryton.

``export`` logs in over JSON-RPC (see :mod:`adapters.connectors.tryton.jsonrpc`), looks
for a sale whose ``reference`` is the draft order's export key
(``domain.idempotency.export_key(org_id, draft_order_id)``) and returns it if it exists;
otherwise it finds the customer party and the products by their codes and the currency
by its ISO code, and creates one draft sale (a quotation the ERP's users confirm) with
one line per order line. Should two exports of the same order race, both re-read the
reference after creating, and the later sale is deleted again, so one remains.

``test_connection`` runs staged checks within ``timeout_s`` overall: ``config``,
``reachable``, ``version`` (a supported Tryton series), ``auth`` (login) and
``permission`` (the user may read and create ``sale.sale``); the first failing stage is
the result's ``stage``.

Sessions are kept per (url, database, username, password digest) and reused across
exports; :meth:`TrytonConnector.close` logs them out.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from adapters.connectors.base_connector import BaseConnector
from adapters.connectors.tryton.config import (
    CONFIG_SCHEMA,
    CONNECTOR_TYPE,
    MIN_SERIES,
    SALE_MODEL,
    STAGE_CONFIG,
    STAGE_DOCUMENT,
    STAGES,
    config_errors,
)
from adapters.connectors.tryton.jsonrpc import (
    STAGE_AUTH,
    STAGE_EXPORT,
    STAGE_PERMISSION,
    STAGE_REACHABLE,
    STAGE_VERSION,
    Opener,
    SessionExpiredError,
    TrytonClient,
)
from adapters.connectors.tryton.sale_lines import SaleLine, order_lines, sale_series
from domain.config_schema import (
    FieldError,
)
from domain.idempotency import export_key
from domain.ports import (
    ConnectorConfigError,
    ConnectorError,
    ConnectorRejectedError,
    ExportResult,
    TestResult,
)

__all__ = [
    "CONFIG_SCHEMA",
    "CONNECTOR_TYPE",
    "MIN_SERIES",
    "STAGE_CONFIG",
    "STAGE_DOCUMENT",
    "TrytonConnector",
    "config_errors",
]


class TrytonConnector(BaseConnector):
    """Creates one draft ``sale.sale`` per draft order in a Tryton server (JSON-RPC)."""

    connector_type = CONNECTOR_TYPE
    config_schema = CONFIG_SCHEMA

    def __init__(self, *, opener: Opener | None = None) -> None:
        """``opener`` replaces ``urllib.request.urlopen`` (tests drive a fake Tryton)."""
        super().__init__()
        self._opener = opener
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, str, str, str], TrytonClient] = {}

    def __repr__(self) -> str:
        return f"TrytonConnector(sessions={len(self._sessions)})"

    def close(self) -> None:
        """Log out every cached session."""
        with self._lock:
            clients = list(self._sessions.values())
            self._sessions.clear()
        for client in clients:
            client.logout()

    # -- config -----------------------------------------------------------------------

    def config_errors(self, config: object) -> list[FieldError]:
        """Return every problem of ``config`` (schema and URL checks)."""
        return config_errors(config)

    # -- sessions ---------------------------------------------------------------------

    @staticmethod
    def _session_key(cfg: Mapping[str, Any]) -> tuple[str, str, str, str]:
        digest = hashlib.sha256(str(cfg["password"]).encode("utf-8")).hexdigest()
        return (str(cfg["url"]).rstrip("/"), str(cfg["database"]), str(cfg["username"]), digest)

    def _new_client(self, cfg: Mapping[str, Any]) -> TrytonClient:
        return TrytonClient(
            str(cfg["url"]),
            str(cfg["database"]),
            timeout_s=float(cfg["timeout_s"]),
            opener=self._opener,
        )

    @contextmanager
    def _session(self, cfg: Mapping[str, Any]) -> Iterator[TrytonClient]:
        """A logged-in client for ``cfg``: the cached one, or a new login."""
        key = self._session_key(cfg)
        with self._lock:
            client = self._sessions.pop(key, None)
        if client is None or not client.logged_in:
            client = self._new_client(cfg)
            client.login(str(cfg["username"]), str(cfg["password"]), language=str(cfg["language"]))
        try:
            yield client
        except BaseException:
            if client.logged_in:
                self._keep(key, client)
            raise
        self._keep(key, client)

    def _keep(self, key: tuple[str, str, str, str], client: TrytonClient) -> None:
        with self._lock:
            previous = self._sessions.setdefault(key, client)
        if previous is not client:
            client.logout()  # another thread cached one meanwhile

    # -- export -----------------------------------------------------------------------

    def export(self, draft_order: Any, config: Mapping[str, Any]) -> ExportResult:
        """Create (or find) the draft sale of ``draft_order``; see the module docstring."""
        try:
            cfg = self.prepare_config(config)
            key = export_key(draft_order.org_id, draft_order.id)
            lines = order_lines(draft_order)
            try:
                return self._export(cfg, draft_order, key, lines)
            except SessionExpiredError:
                return self._export(cfg, draft_order, key, lines)  # one fresh login
        except ConnectorError as exc:
            raise self.sanitised_error(exc, config) from None

    def _export(
        self, cfg: Mapping[str, Any], draft_order: Any, key: str, lines: Sequence[SaleLine]
    ) -> ExportResult:
        with self._session(cfg) as client:
            existing = self._sales_with_reference(client, key)
            if existing:
                return self._result(cfg, draft_order, existing[0], created=False)
            values = self._sale_values(client, draft_order, key, lines)
            created = client.model(SALE_MODEL, "create", [values])
            if not isinstance(created, list) or len(created) != 1:
                raise ConnectorError(
                    "Unexpected answer to sale.sale.create", stage=STAGE_EXPORT, retryable=False
                )
            sale_id = int(created[0])
            # A concurrent export of the same order may have created one too: keep the
            # oldest sale and delete ours if it is not that one.
            sales = self._sales_with_reference(client, key)
            if sales and int(sales[0]["id"]) != sale_id:
                client.model(SALE_MODEL, "delete", [sale_id])
                self.logger.info("Deleted duplicate Tryton sale %d of export key %s", sale_id, key)
                return self._result(cfg, draft_order, sales[0], created=False)
            sale = sales[0] if sales else {"id": sale_id, "number": None, "state": "draft"}
            self.logger.info("Created Tryton sale %d for export key %s", sale_id, key)
            return self._result(cfg, draft_order, sale, created=True)

    @staticmethod
    def _sales_with_reference(client: TrytonClient, key: str) -> list[dict[str, Any]]:
        return client.search_read(
            SALE_MODEL,
            [("reference", "=", key)],
            ["id", "number", "state", "reference"],
            order=[("id", "ASC")],
        )

    def _sale_values(
        self, client: TrytonClient, draft_order: Any, key: str, lines: Sequence[SaleLine]
    ) -> dict[str, Any]:
        customer_code = getattr(draft_order, "customer_code", None)
        if not isinstance(customer_code, str) or not customer_code:
            raise ConnectorRejectedError(
                "customer_code must be a non-empty string", stage=STAGE_DOCUMENT
            )
        parties = client.search_read("party.party", [("code", "=", customer_code)], ["id"], limit=2)
        if len(parties) != 1:
            raise ConnectorRejectedError(
                f"Tryton has {'no' if not parties else 'more than one'} customer party "
                f"with code {customer_code!r}",
                stage=STAGE_EXPORT,
            )
        currency_code = str(getattr(draft_order, "currency", "") or "")
        currencies = client.search_read(
            "currency.currency", [("code", "=", currency_code)], ["id"], limit=1
        )
        if not currencies:
            raise ConnectorRejectedError(
                f"Tryton has no currency {currency_code!r}", stage=STAGE_EXPORT
            )
        codes = sorted({line.product_code for line in lines})
        products = client.search_read(
            "product.product", [("code", "in", codes)], ["id", "code", "sale_uom", "default_uom"]
        )
        by_code = {str(p["code"]): p for p in products}
        missing = [code for code in codes if code not in by_code]
        if missing:
            raise ConnectorRejectedError(
                f"Tryton has no product with code {', '.join(map(repr, missing))}",
                stage=STAGE_EXPORT,
            )
        sale_lines = []
        for sequence, line in enumerate(lines, start=1):
            product = by_code[line.product_code]
            unit = product.get("sale_uom") or product.get("default_uom")
            sale_lines.append(
                {
                    "sequence": sequence,
                    "type": "line",
                    "product": product["id"],
                    "quantity": line.quantity,
                    "unit": unit,
                    "unit_price": line.unit_price,
                    "description": line.description or None,
                }
            )
        return {
            "party": parties[0]["id"],
            "currency": currencies[0]["id"],
            "reference": key,
            "description": str(getattr(draft_order, "order_number", "") or "") or None,
            "comment": str(getattr(draft_order, "notes", "") or "") or None,
            "lines": [["create", sale_lines]],
        }

    @staticmethod
    def _result(
        cfg: Mapping[str, Any], draft_order: Any, sale: Mapping[str, Any], *, created: bool
    ) -> ExportResult:
        sale_id = int(sale["id"])
        return ExportResult(
            success=True,
            export_id=draft_order.id,
            storage_key=f"{cfg['database']}/{SALE_MODEL}/{sale_id}",
            connector_metadata={
                "erp_order_id": sale_id,
                "erp_order_number": sale.get("number"),
                "erp_state": sale.get("state"),
                "erp_reference": sale.get("reference"),
                "created": created,
            },
        )

    # -- test_connection --------------------------------------------------------------

    def test_connection(self, config: Mapping[str, Any]) -> TestResult:
        """Check config, reachability, version, login and permission; never raises."""
        return self.run_staged_test(
            "tryton_connection_test",
            config,
            lambda details, passed: self._run_checks(config, details, passed),
            STAGES,
        )

    def _run_checks(
        self, config: Mapping[str, Any], details: dict[str, Any], passed: list[str]
    ) -> None:
        cfg = self.prepare_config(config)
        details.update(
            url=str(cfg["url"]), database=str(cfg["database"]), username=str(cfg["username"])
        )
        passed.append(STAGE_CONFIG)
        client = self._new_client(cfg)
        client.deadline = time.monotonic() + float(cfg["timeout_s"])

        version = client.server_version()  # stage reachable (network) or version (payload)
        passed.append(STAGE_REACHABLE)
        details["server_version"] = version
        series = sale_series(version)
        if series is None or series < MIN_SERIES:
            raise ConnectorConfigError(
                f"Tryton series {version!r} is not supported (need "
                f"{MIN_SERIES[0]}.{MIN_SERIES[1]} or later)",
                stage=STAGE_VERSION,
            )
        passed.append(STAGE_VERSION)

        client.login(str(cfg["username"]), str(cfg["password"]), language=str(cfg["language"]))
        try:
            passed.append(STAGE_AUTH)
            access = client.model(
                "ir.model.access", "get_access", [SALE_MODEL], stage=STAGE_PERMISSION
            )
            rights = access.get(SALE_MODEL, {}) if isinstance(access, Mapping) else {}
            details["sale_access"] = {k: bool(v) for k, v in rights.items()}
            if not rights.get("read") or not rights.get("create"):
                raise ConnectorConfigError(
                    f"Tryton user {cfg['username']!r} may not read and create {SALE_MODEL}",
                    stage=STAGE_PERMISSION,
                )
            client.model(SALE_MODEL, "search", [], 0, 1, None, stage=STAGE_PERMISSION)
            passed.append(STAGE_PERMISSION)
        finally:
            client.logout()
