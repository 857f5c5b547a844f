"""``DropzoneJsonV1Connector``: export draft orders as JSON files to an SFTP dropzone.

Each draft order becomes one file at a deterministic path,
``{remote_dir}/{org_id}/{draft_order_id}.json``, in the versioned document format
``orderflow.dropzone.order`` v1 (see ``docs/dropzone-json-v1.md``). The file is uploaded
under a hidden temporary name and renamed onto the final name, so the ERP polling the
dropzone never reads a partial file, and exporting again replaces the file. Encoding is
deterministic, so a re-export of the same order is byte-identical.

The server's host key must be pinned (``host_key`` and/or ``host_key_fingerprint``);
it is never accepted on first use. SFTP sessions are pooled per endpoint and credentials
and reused across exports; call :meth:`DropzoneJsonV1Connector.close` on shutdown.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, Inexact, InvalidOperation, Overflow, localcontext
from typing import Any

from adapters.connectors.base_connector import BaseConnector
from adapters.sftp import (
    STAGE_CONFIG,
    STAGE_DOCUMENT,
    STAGE_EXPORT,
    STAGE_WRITE_PERMISSION,
    Deadline,
    HostKeyError,
    HostKeyPin,
    SftpConnectionParams,
    SftpSession,
    SftpSessionPool,
    UploadResult,
    atomic_upload,
    ensure_directory,
    looks_like_private_key,
    open_session,
    parse_fingerprint,
    parse_host_key_line,
    remove_quietly,
)
from adapters.sftp.session import load_client_key
from domain.config_schema import (
    ConfigField,
    ConfigSchema,
    ErrorCode,
    FieldError,
    FieldType,
)
from domain.idempotency import export_key
from domain.ports import (
    ConnectorError,
    ConnectorRejectedError,
    ExportResult,
    TestResult,
)

__all__ = [
    "CONNECTOR_TYPE",
    "DOCUMENT_FORMAT",
    "FORMAT_VERSION",
    "MAX_DOCUMENT_BYTES",
    "DocumentError",
    "DropzoneJsonV1Connector",
    "DropzoneTarget",
    "build_document",
    "canonical_uuid",
    "config_errors",
    "dropzone_path",
    "dropzone_target",
    "encode_document",
    "encode_order_document",
    "normalise_remote_dir",
    "remote_dir_problem",
]

CONNECTOR_TYPE = "DROPZONE_JSON_V1"
#: The ``format`` value of every exported document.
DOCUMENT_FORMAT = "orderflow.dropzone.order"
#: Bumped on any incompatible change of the document layout.
FORMAT_VERSION = 1
#: Largest encoded document we upload (5 MiB); bigger orders are rejected permanently.
MAX_DOCUMENT_BYTES = 5 * 1024 * 1024
#: Longest accepted ``remote_dir``.
MAX_REMOTE_DIR_CHARS = 1024
# Decimals beyond 10**±1000 are refused: their plain-notation string would be huge.
_MAX_DECIMAL_EXPONENT = 1000

_SURROGATE = re.compile("[\ud800-\udfff]")
_HOST = re.compile(r"^\[?[A-Za-z0-9._:%][A-Za-z0-9._:%-]*\]?$")


# --------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------


def _has_control_characters(text: str) -> bool:
    return any(unicodedata.category(char) == "Cc" for char in text)


def remote_dir_problem(value: str) -> str | None:
    r"""Return why ``value`` is not an acceptable ``remote_dir`` (``None`` if it is).

    Refused: NUL and other control characters, unpaired surrogates, leading or trailing
    whitespace, ``..`` segments (split on ``/`` and on ``\\``, for servers on Windows) and
    paths longer than 1024 characters. The message never repeats the value.
    """
    if "\x00" in value:
        return "must not contain NUL characters"
    if _has_control_characters(value):
        return "must not contain control characters"
    if _SURROGATE.search(value):
        return "must be valid Unicode (it contains an unpaired surrogate)"
    if value != value.strip():
        return "must not start or end with whitespace"
    if not value:
        return "must not be empty"
    if len(value) > MAX_REMOTE_DIR_CHARS:
        return f"must be at most {MAX_REMOTE_DIR_CHARS} characters"
    if ".." in re.split(r"[/\\]", value):
        return "must not contain '..' segments"
    return None


def normalise_remote_dir(value: str) -> str:
    """Return ``value`` validated and normalised: no empty or ``.`` segments, no trailing ``/``.

    An absolute path stays absolute (``/srv/drop``); a relative one stays relative to the
    SFTP login directory (``outbox``). Raises ``ValueError`` for a refused value.
    """
    problem = remote_dir_problem(value) if isinstance(value, str) else "must be a string"
    if problem is not None:
        raise ValueError(f"remote_dir {problem}")
    segments = [s for s in value.split("/") if s not in ("", ".")]
    prefix = "/" if value.startswith("/") else ""
    return prefix + "/".join(segments) if segments else (prefix or ".")


def canonical_uuid(value: object, name: str) -> str:
    """Return ``value`` as a canonical lowercase UUID string, or raise ``DocumentError``.

    Ids become path segments: accepting only UUIDs makes path traversal through an id
    impossible (the canonical form contains only hex digits and hyphens).
    """
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str) and len(value) <= 64:
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    raise DocumentError(f"{name} must be a UUID")


@dataclass(frozen=True)
class DropzoneTarget:
    """Where one draft order's document goes: ``directory/filename``."""

    remote_dir: str
    org_id: str
    draft_order_id: str

    @property
    def org_dir_name(self) -> str:
        """Name of the per-organisation directory under ``remote_dir``."""
        return self.org_id

    @property
    def filename(self) -> str:
        """File name of the document: ``{draft_order_id}.json``."""
        return f"{self.draft_order_id}.json"

    @property
    def path(self) -> str:
        """Full remote path of the document."""
        return posixpath.join(self.remote_dir, self.org_id, self.filename)


def dropzone_target(remote_dir: str, org_id: object, draft_order_id: object) -> DropzoneTarget:
    """Return the validated target of a document (raises ``ValueError`` on bad input).

    ``DocumentError`` (a ``ValueError``) for ids that are not UUIDs, plain ``ValueError``
    for a refused ``remote_dir``.
    """
    return DropzoneTarget(
        remote_dir=normalise_remote_dir(remote_dir),
        org_id=canonical_uuid(org_id, "org_id"),
        draft_order_id=canonical_uuid(draft_order_id, "draft_order_id"),
    )


def dropzone_path(remote_dir: str, org_id: object, draft_order_id: object) -> str:
    """Return ``{remote_dir}/{org_id}/{draft_order_id}.json`` with validated parts."""
    return dropzone_target(remote_dir, org_id, draft_order_id).path


# --------------------------------------------------------------------------------------
# Document
# --------------------------------------------------------------------------------------


class DocumentError(ValueError):
    """A draft order cannot be encoded as a dropzone document (permanent)."""


class _Budget:
    """Running lower bound of the encoded size, to refuse huge orders before encoding."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def spend(self, text: str) -> None:
        # Every character is at least one UTF-8 byte, so this never over-estimates.
        self.used += len(text)
        if self.used > self.limit:
            raise DocumentError(
                f"Draft order document exceeds the {_size_text(self.limit)} limit of "
                f"{CONNECTOR_TYPE} (its text alone is over {self.used} characters)"
            )


def _size_text(limit: int) -> str:
    if limit % (1024 * 1024) == 0:
        return f"{limit // (1024 * 1024)} MiB"
    return f"{limit} bytes"


def _text(value: object, path: str, budget: _Budget, *, default: str | None = None) -> str:
    if value is None and default is not None:
        value = default
    if not isinstance(value, str):
        raise DocumentError(f"{path} must be a string")
    match = _SURROGATE.search(value)
    if match is not None:
        raise DocumentError(
            f"{path} contains an unpaired surrogate (U+{ord(match.group()):04X} at "
            f"position {match.start()}), which cannot be encoded as UTF-8"
        )
    budget.spend(value)
    return value


def _decimal(value: object, path: str) -> Decimal:
    if isinstance(value, bool):
        raise DocumentError(f"{path} must be a decimal number")
    number: Decimal
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        # repr() is the shortest string that round-trips: 0.1 -> "0.1", not 0.1000000000000000055...
        number = Decimal(repr(value))
    elif isinstance(value, str) and len(value) <= 100:
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise DocumentError(f"{path} must be a decimal number") from None
    else:
        raise DocumentError(f"{path} must be a decimal number")
    if not number.is_finite():
        raise DocumentError(f"{path} must be a finite number")
    if number and abs(number.adjusted()) > _MAX_DECIMAL_EXPONENT:
        raise DocumentError(f"{path} is out of range")
    return number


def _decimal_text(number: Decimal, budget: _Budget) -> str:
    """Plain notation, scale kept ("2.50" stays "2.50"), no exponent, no negative zero."""
    if number.is_zero():
        number = abs(number)
    text = format(number, "f")
    budget.spend(text)
    return text


def _line_number(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DocumentError(f"{path} must be an integer")
    return value


def build_document(draft_order: object, *, max_bytes: int = MAX_DOCUMENT_BYTES) -> dict[str, Any]:
    """Return the v1 document of ``draft_order`` as a JSON-ready dict.

    ``draft_order`` is a ``domain.model.DraftOrder`` or any object with the same
    attributes (``id``, ``org_id``, ``order_number``, ``customer_code``, ``currency``,
    ``notes``, ``lines`` of objects with ``line_no``, ``product_code``, ``description``,
    ``quantity``, ``unit``, ``unit_price``). Decimals become strings in plain notation;
    lines are sorted by ``line_no``; ``line_total`` and ``total`` are computed exactly.
    Raises ``DocumentError`` with a message naming the offending field.
    """
    budget = _Budget(max_bytes)
    org_id = canonical_uuid(getattr(draft_order, "org_id", None), "org_id")
    order_id = canonical_uuid(getattr(draft_order, "id", None), "draft_order_id")
    raw_lines = getattr(draft_order, "lines", None) or ()
    if isinstance(raw_lines, str | bytes | Mapping):
        raise DocumentError("lines must be a sequence of order lines")
    lines: list[dict[str, Any]] = []
    total = Decimal(0)
    seen: set[int] = set()
    # Exact arithmetic: a precision far beyond any sane amount, and rounding trapped, so a
    # line_total or total is never silently rounded (absurd inputs are refused instead).
    with localcontext() as context:
        context.prec = 100_000
        context.Emax = 10 * _MAX_DECIMAL_EXPONENT
        context.Emin = -10 * _MAX_DECIMAL_EXPONENT
        context.traps[Inexact] = True
        for index, line in enumerate(raw_lines):
            path = f"lines[{index}]"
            line_no = _line_number(getattr(line, "line_no", None), f"{path}.line_no")
            if line_no in seen:
                raise DocumentError(f"{path}.line_no {line_no} is used by more than one line")
            seen.add(line_no)
            quantity = _decimal(getattr(line, "quantity", None), f"{path}.quantity")
            unit_price = _decimal(getattr(line, "unit_price", None), f"{path}.unit_price")
            inexact = False
            try:
                line_total = quantity * unit_price
                total += line_total
            except (Inexact, Overflow):
                inexact = True
            if inexact:  # raised here so the decimal signal is not chained to it
                raise DocumentError(f"{path} amounts are too large to compute exactly")
            lines.append(
                {
                    "line_no": line_no,
                    "product_code": _text(
                        getattr(line, "product_code", None), f"{path}.product_code", budget
                    ),
                    "description": _text(
                        getattr(line, "description", ""),
                        f"{path}.description",
                        budget,
                        default="",
                    ),
                    "quantity": _decimal_text(quantity, budget),
                    "unit": _text(
                        getattr(line, "unit", "unit"), f"{path}.unit", budget, default="unit"
                    ),
                    "unit_price": _decimal_text(unit_price, budget),
                    "line_total": _decimal_text(line_total, budget),
                }
            )
    lines.sort(key=lambda entry: int(entry["line_no"]))
    return {
        "format": DOCUMENT_FORMAT,
        "format_version": FORMAT_VERSION,
        "export_key": export_key(org_id, order_id),
        "org_id": org_id,
        "draft_order_id": order_id,
        "order_number": _text(getattr(draft_order, "order_number", None), "order_number", budget),
        "customer_code": _text(
            getattr(draft_order, "customer_code", None), "customer_code", budget
        ),
        "currency": _text(getattr(draft_order, "currency", None), "currency", budget),
        "notes": _text(getattr(draft_order, "notes", ""), "notes", budget, default=""),
        "lines": lines,
        "total": _decimal_text(total, budget),
    }


def encode_document(document: Mapping[str, Any], *, max_bytes: int = MAX_DOCUMENT_BYTES) -> bytes:
    """Encode a document canonically: UTF-8, sorted keys, 2-space indent, final newline.

    The same document always gives the same bytes. Raises ``DocumentError`` if it cannot
    be encoded or is larger than ``max_bytes``.
    """
    try:
        text = json.dumps(document, ensure_ascii=False, sort_keys=True, indent=2, allow_nan=False)
        data = (text + "\n").encode("utf-8")
    except UnicodeEncodeError as exc:
        # build_document refuses surrogates field by field; this guards hand-made documents.
        raise DocumentError(
            f"Document contains text that cannot be encoded as UTF-8 ({exc.reason})"
        ) from None
    except (TypeError, ValueError) as exc:
        raise DocumentError(f"Document is not JSON-serialisable ({type(exc).__name__})") from None
    if len(data) > max_bytes:
        raise DocumentError(
            f"Draft order document is {len(data)} bytes, over the {_size_text(max_bytes)} "
            f"limit of {CONNECTOR_TYPE}"
        )
    return data


def encode_order_document(draft_order: object, *, max_bytes: int = MAX_DOCUMENT_BYTES) -> bytes:
    """Return the encoded v1 document of ``draft_order`` (see :func:`build_document`)."""
    return encode_document(build_document(draft_order, max_bytes=max_bytes), max_bytes=max_bytes)


# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------

CONFIG_SCHEMA = ConfigSchema(
    fields=(
        ConfigField(
            "host",
            FieldType.STRING,
            required=True,
            description="SFTP server host name or IP address",
        ),
        ConfigField(
            "port",
            FieldType.INTEGER,
            default=22,
            minimum=1,
            maximum=65535,
            description="SFTP server TCP port",
        ),
        ConfigField(
            "username", FieldType.STRING, required=True, description="Login name on the SFTP server"
        ),
        ConfigField(
            "password",
            FieldType.STRING,
            secret=True,
            description="Password (password or private_key is required)",
        ),
        ConfigField(
            "private_key",
            FieldType.STRING,
            secret=True,
            description="Client private key text, OpenSSH or PEM (ed25519, ecdsa, RSA)",
        ),
        ConfigField(
            "private_key_passphrase",
            FieldType.STRING,
            secret=True,
            description="Passphrase of an encrypted private_key",
        ),
        ConfigField(
            "remote_dir",
            FieldType.STRING,
            required=True,
            description="Dropzone directory on the server; must already exist",
        ),
        ConfigField(
            "host_key",
            FieldType.STRING,
            description="Server public host key line, e.g. 'ssh-ed25519 AAAA...'",
        ),
        ConfigField(
            "host_key_fingerprint",
            FieldType.STRING,
            description="Server host key fingerprint 'SHA256:...' (ssh-keygen -lf)",
        ),
        ConfigField(
            "timeout_s",
            FieldType.NUMBER,
            default=10,
            minimum=0.1,
            maximum=300,
            description="Timeout in seconds for connecting and for each SFTP step",
        ),
    )
)


def _given(config: Mapping[str, Any], name: str) -> bool:
    """Tell whether field ``name`` has a value ("" counts as absent; the schema checks types)."""
    value = config.get(name)
    return value is not None and value != ""


def config_errors(config: object) -> list[FieldError]:
    """Return every problem of a DROPZONE_JSON_V1 ``config``, schema and cross-field.

    Codes are stable (``domain.config_schema.ErrorCode``); messages never contain values.
    """
    errors = CONFIG_SCHEMA.validate(config)
    if not isinstance(config, Mapping):
        return errors
    flagged = {error.path for error in errors}

    def check(name: str) -> str | None:
        """Return the value of ``name`` if it is given and passed the schema checks."""
        value = config.get(name)
        if name in flagged or not isinstance(value, str) or value == "":
            return None
        return value

    host = check("host")
    if host is not None and not _HOST.match(host):
        errors.append(
            FieldError(
                "host",
                ErrorCode.INVALID,
                "must be a host name or IP address (no scheme, user or port)",
            )
        )
    username = check("username")
    if username is not None and (_has_control_characters(username) or username != username.strip()):
        errors.append(
            FieldError(
                "username",
                ErrorCode.INVALID,
                "must not contain control characters or surrounding spaces",
            )
        )
    remote_dir = check("remote_dir")
    if remote_dir is not None:
        problem = remote_dir_problem(remote_dir)
        if problem is not None:
            errors.append(FieldError("remote_dir", ErrorCode.INVALID, problem))

    if not _given(config, "password") and not _given(config, "private_key"):
        errors.append(
            FieldError("$", ErrorCode.REQUIRED, "one of password, private_key is required")
        )
    private_key = check("private_key")
    if private_key is not None and not looks_like_private_key(private_key):
        errors.append(
            FieldError(
                "private_key",
                ErrorCode.INVALID,
                "must be an OpenSSH or PEM private key (-----BEGIN ... PRIVATE KEY-----)",
            )
        )
    if _given(config, "private_key_passphrase") and not _given(config, "private_key"):
        errors.append(
            FieldError(
                "private_key_passphrase",
                ErrorCode.INVALID,
                "is only used together with private_key",
            )
        )

    if not _given(config, "host_key") and not _given(config, "host_key_fingerprint"):
        errors.append(
            FieldError(
                "$",
                ErrorCode.REQUIRED,
                "one of host_key, host_key_fingerprint is required "
                "(the server's host key is never accepted unverified)",
            )
        )
    key = fingerprint = None
    host_key = check("host_key")
    if host_key is not None:
        try:
            key = parse_host_key_line(host_key)
        except HostKeyError as exc:
            errors.append(FieldError("host_key", ErrorCode.INVALID, str(exc)))
    host_key_fingerprint = check("host_key_fingerprint")
    if host_key_fingerprint is not None:
        try:
            fingerprint = parse_fingerprint(host_key_fingerprint)
        except HostKeyError as exc:
            errors.append(FieldError("host_key_fingerprint", ErrorCode.INVALID, str(exc)))
    if key is not None and fingerprint is not None and key.fingerprint != fingerprint:
        errors.append(
            FieldError(
                "host_key_fingerprint",
                ErrorCode.INVALID,
                "does not match host_key (they must name the same key)",
            )
        )
    return errors


# --------------------------------------------------------------------------------------
# Connector
# --------------------------------------------------------------------------------------

#: Probe files of ``test_connection``: hidden and without a .json suffix, so an ERP
#: polling for ``*.json`` never picks one up.
_PROBE_PREFIX = ".orderflow-connection-test-"


class DropzoneJsonV1Connector(BaseConnector):
    """Writes each draft order as ``{remote_dir}/{org_id}/{draft_order_id}.json`` over SFTP.

    Config fields: ``host``, ``port`` (22), ``username``, ``password`` (secret),
    ``private_key`` (secret), ``private_key_passphrase`` (secret), ``remote_dir``,
    ``host_key`` and/or ``host_key_fingerprint`` (at least one), ``timeout_s`` (10).

    Thread-safe: exports may run concurrently; each uses its own pooled SFTP session.
    """

    connector_type = CONNECTOR_TYPE
    config_schema = CONFIG_SCHEMA

    def __init__(
        self, *, pool: SftpSessionPool | None = None, max_document_bytes: int = MAX_DOCUMENT_BYTES
    ) -> None:
        super().__init__()
        self.pool = pool if pool is not None else SftpSessionPool()
        self.max_document_bytes = max_document_bytes

    # -- configuration ----------------------------------------------------------------

    def config_errors(self, config: object) -> list[FieldError]:
        """Return every problem of ``config`` (schema and cross-field checks)."""
        return config_errors(config)

    @staticmethod
    def connection_params(cfg: Mapping[str, Any]) -> SftpConnectionParams:
        """Build the SFTP connection parameters of a validated config (defaults applied)."""
        host = str(cfg["host"])
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]  # "[::1]" -> "::1": brackets are URL syntax, not the address
        return SftpConnectionParams(
            host=host,
            port=int(cfg["port"]),
            username=str(cfg["username"]),
            host_key_pin=HostKeyPin.from_config(
                cfg.get("host_key") or None, cfg.get("host_key_fingerprint") or None
            ),
            password=cfg.get("password") or None,
            private_key=cfg.get("private_key") or None,
            private_key_passphrase=cfg.get("private_key_passphrase") or None,
            timeout_s=float(cfg["timeout_s"]),
        )

    # -- export -----------------------------------------------------------------------

    def export(self, draft_order: object, config: Mapping[str, Any]) -> ExportResult:
        """Write ``draft_order`` to the dropzone, replacing an earlier export of it.

        Raises ``ConnectorConfigError`` (invalid config, authentication, permissions),
        ``ConnectorSecurityError`` (host key mismatch), ``ConnectorRejectedError`` (the
        order cannot be encoded or is too large) or ``ConnectorTransientError``
        (network, timeouts, server hiccups: retry later).
        """
        failure: ConnectorError | None = None
        with self.measure_latency("dropzone_export") as timer:
            try:
                cfg = self.prepare_config(config)
                target, data = self._document(draft_order, cfg["remote_dir"])
                params = self.connection_params(cfg)
                upload = self.pool.run(params, lambda session: self._upload(session, target, data))
            except ConnectorError as exc:
                error = self.sanitised_error(exc, config)
                self.logger.warning(
                    "Export of draft order %s failed at stage %s: %s",
                    _safe_id(draft_order),
                    error.stage,
                    error.message,
                )
                if error is exc:
                    raise
                # Raised below, outside this block, so the unscrubbed original does not
                # ride along as __context__.
                failure = error
            except Exception as exc:
                # A bug or an unforeseen library error: permanent (never retried blindly),
                # reported without the library's text, which could echo config values.
                self.logger.error(
                    "Export of draft order %s failed unexpectedly: %s",
                    _safe_id(draft_order),
                    type(exc).__name__,
                )
                failure = ConnectorError(
                    f"Unexpected {type(exc).__name__} during dropzone export",
                    stage=STAGE_EXPORT,
                    retryable=False,
                )
        if failure is not None:
            raise failure
        self.logger.info(
            "Exported draft order %s to %s:%s (%d bytes, %.1f ms)",
            target.draft_order_id,
            params.where,
            upload.path,
            upload.size,
            timer.latency_ms,
        )
        return ExportResult(
            success=True,
            export_id=getattr(draft_order, "id", None),
            storage_key=upload.path,
            connector_metadata={
                "remote_path": upload.path,
                "host": params.host,
                "port": params.port,
                "bytes": upload.size,
                "sha256": hashlib.sha256(data).hexdigest(),
                "format": DOCUMENT_FORMAT,
                "format_version": FORMAT_VERSION,
                "atomic_rename": upload.atomic,
                "latency_ms": round(timer.latency_ms, 1),
            },
        )

    def _document(self, draft_order: object, remote_dir: str) -> tuple[DropzoneTarget, bytes]:
        """Return where the order goes and its encoded document, before any network I/O."""
        problem: str | None = None
        try:
            target = dropzone_target(
                remote_dir, getattr(draft_order, "org_id", None), getattr(draft_order, "id", None)
            )
            return target, encode_order_document(draft_order, max_bytes=self.max_document_bytes)
        except ValueError as exc:  # DocumentError included
            problem = str(exc)
        # Raised outside the except block: the order data is not chained into the error.
        raise ConnectorRejectedError(problem, stage=STAGE_DOCUMENT)

    @staticmethod
    def _upload(session: SftpSession, target: DropzoneTarget, data: bytes) -> UploadResult:
        directory = ensure_directory(session, target.remote_dir, target.org_dir_name)
        return atomic_upload(session, directory, target.filename, data)

    # -- test_connection --------------------------------------------------------------

    def test_connection(self, config: Mapping[str, Any]) -> TestResult:
        """Check config, reachability, host key, login and write permission; never raises.

        Uses a fresh connection (not a pooled one) bounded by ``timeout_s`` overall, writes
        a small hidden probe file into ``remote_dir`` via temp file + rename and deletes
        it. On failure, ``stage`` names the first check that failed.
        """
        return self.run_staged_test(
            "dropzone_connection_test",
            config,
            lambda details, passed: self._run_checks(config, details, passed),
            _STAGES,
        )

    def _run_checks(
        self, config: Mapping[str, Any], details: dict[str, Any], passed: list[str]
    ) -> None:
        cfg = self.prepare_config(config)
        params = self.connection_params(cfg)
        client_key = load_client_key(params)
        remote_dir = normalise_remote_dir(cfg["remote_dir"])
        details.update(
            host=params.host, port=params.port, username=params.username, remote_dir=remote_dir
        )
        passed.append(STAGE_CONFIG)
        deadline = Deadline(params.timeout_s)
        session = open_session(
            params, deadline=deadline, client_key=client_key, passed=passed.append
        )
        try:
            details.update(
                server_fingerprint=session.server_fingerprint,
                server_key_type=session.server_key_type,
                server_version=session.server_version,
                auth_method=session.auth_method,
            )
            channel = session.sftp.get_channel()
            if channel is not None:
                channel.settimeout(deadline.remaining())
            ensure_directory(session, remote_dir, stage=STAGE_WRITE_PERMISSION)
            probe_name = f"{_PROBE_PREFIX}{uuid.uuid4().hex}"
            probe = json.dumps({"format": "orderflow.dropzone.probe", "format_version": 1})
            upload = atomic_upload(
                session,
                remote_dir,
                probe_name,
                probe.encode("ascii"),
                stage=STAGE_WRITE_PERMISSION,
            )
            details["atomic_rename"] = upload.atomic
            details["probe_removed"] = remove_quietly(session, upload.path)
            if not details["probe_removed"]:
                details["warning"] = (
                    f"probe file {upload.path} could be written but not deleted; remove it"
                )
            passed.append(STAGE_WRITE_PERMISSION)
        finally:
            session.close()

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        """Close the pooled SFTP sessions (the connector stays usable and reconnects)."""
        self.pool.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(pool={self.pool!r})"


_STAGES = (STAGE_CONFIG, "reachable", "host_key", "auth", STAGE_WRITE_PERMISSION)


def _safe_id(draft_order: object) -> str:
    """Return the draft order id for logs, or a placeholder if it is not a UUID."""
    try:
        return canonical_uuid(getattr(draft_order, "id", None), "draft_order_id")
    except DocumentError:
        return "<invalid id>"
