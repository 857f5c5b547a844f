"""SFTP plumbing on paramiko for connectors that drop files on a partner's server.

* :mod:`~adapters.sftp.hostkeys` -- host key lines, SHA256 fingerprints, the pin;
* :mod:`~adapters.sftp.keys` -- client private keys from config text;
* :mod:`~adapters.sftp.session` -- open one session: reachable, host_key, auth;
* :mod:`~adapters.sftp.pool` -- thread-safe reuse of sessions per endpoint + credentials;
* :mod:`~adapters.sftp.files` -- directories and upload-then-rename.

Everything raises the domain's ``ConnectorError`` subclasses with a ``stage``.
"""

from adapters.sftp.errors import (
    STAGE_AUTH,
    STAGE_CONFIG,
    STAGE_DOCUMENT,
    STAGE_EXPORT,
    STAGE_HOST_KEY,
    STAGE_REACHABLE,
    STAGE_WRITE_PERMISSION,
)
from adapters.sftp.files import UploadResult, atomic_upload, ensure_directory, remove_quietly
from adapters.sftp.hostkeys import (
    HostKeyError,
    HostKeyPin,
    PublicKeyLine,
    fingerprint_sha256,
    parse_fingerprint,
    parse_host_key_line,
)
from adapters.sftp.keys import PrivateKeyError, load_private_key, looks_like_private_key
from adapters.sftp.pool import PoolStats, SftpSessionPool, session_key
from adapters.sftp.session import (
    SECURITY_LOGGER,
    Deadline,
    SftpConnectionParams,
    SftpSession,
    open_session,
)

__all__ = [
    "SECURITY_LOGGER",
    "STAGE_AUTH",
    "STAGE_CONFIG",
    "STAGE_DOCUMENT",
    "STAGE_EXPORT",
    "STAGE_HOST_KEY",
    "STAGE_REACHABLE",
    "STAGE_WRITE_PERMISSION",
    "Deadline",
    "HostKeyError",
    "HostKeyPin",
    "PoolStats",
    "PrivateKeyError",
    "PublicKeyLine",
    "SftpConnectionParams",
    "SftpSession",
    "SftpSessionPool",
    "UploadResult",
    "atomic_upload",
    "ensure_directory",
    "fingerprint_sha256",
    "load_private_key",
    "looks_like_private_key",
    "open_session",
    "parse_fingerprint",
    "parse_host_key_line",
    "remove_quietly",
    "session_key",
]
