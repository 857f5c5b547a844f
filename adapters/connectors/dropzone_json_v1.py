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
import uuid
from collections.abc import Mapping
from typing import Any

from adapters.connectors.base_connector import BaseConnector
from adapters.connectors.dropzone.config import CONFIG_SCHEMA, config_errors
from adapters.connectors.dropzone.document import (
    build_document,
    encode_document,
    encode_order_document,
)
from adapters.connectors.dropzone.paths import (
    DropzoneTarget,
    canonical_uuid,
    dropzone_path,
    dropzone_target,
    normalise_remote_dir,
    remote_dir_problem,
)
from adapters.connectors.dropzone.text import (
    CONNECTOR_TYPE,
    DOCUMENT_FORMAT,
    FORMAT_VERSION,
    MAX_DOCUMENT_BYTES,
    DocumentError,
)
from adapters.sftp import (
    STAGE_CONFIG,
    STAGE_DOCUMENT,
    STAGE_EXPORT,
    STAGE_WRITE_PERMISSION,
    Deadline,
    HostKeyPin,
    SftpConnectionParams,
    SftpSession,
    SftpSessionPool,
    UploadResult,
    atomic_upload,
    ensure_directory,
    open_session,
    remove_quietly,
)
from adapters.sftp.session import load_client_key
from domain.config_schema import (
    FieldError,
)
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
