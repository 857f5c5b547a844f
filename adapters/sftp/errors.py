"""Translate socket, paramiko and SFTP status errors into the domain's connector errors.

The rule the whole package follows: *what* went wrong decides the class (permanent
``ConnectorConfigError``, retryable ``ConnectorTransientError``), *when* it went wrong
decides the ``stage``. Messages are built here from fixed text plus non-secret facts
(host, port, path, errno text); library exception text is never trusted to be secret-free
beyond OS error strings.
"""

from __future__ import annotations

import errno
import socket

import paramiko

from domain.errors import ConnectorConfigError, ConnectorError, ConnectorTransientError

__all__ = [
    "STAGE_AUTH",
    "STAGE_CONFIG",
    "STAGE_DOCUMENT",
    "STAGE_EXPORT",
    "STAGE_HOST_KEY",
    "STAGE_REACHABLE",
    "STAGE_WRITE_PERMISSION",
    "connect_error",
    "is_timeout",
    "sftp_error",
]

#: The stages of a connection, in order; ``TestResult.stage`` names one of them.
STAGE_CONFIG = "config"
STAGE_REACHABLE = "reachable"
STAGE_HOST_KEY = "host_key"
STAGE_AUTH = "auth"
STAGE_WRITE_PERMISSION = "write_permission"
#: Export-only stages: building the document, and moving it onto the server.
STAGE_DOCUMENT = "document"
STAGE_EXPORT = "export"


# Servers choose their status texts; keep a hostile or chatty one from bloating messages.
_MAX_REASON = 200


def is_timeout(exc: BaseException) -> bool:
    """Tell whether ``exc`` is a timeout (``socket.timeout`` is ``TimeoutError`` on 3.10+)."""
    return isinstance(exc, TimeoutError | socket.timeout)


def _os_reason(exc: OSError) -> str:
    # strerror is the OS's fixed text ("Connection refused"); str(exc) of some library
    # OSErrors is free-form, so only fall back to the class name.
    return exc.strerror or type(exc).__name__


def connect_error(exc: BaseException, where: str, timeout_s: float) -> ConnectorTransientError:
    """Map a failure to open the TCP connection to ``where`` (``host:port``).

    Every such failure is transient: a refused port, a timeout or an unresolvable name
    may all be a server that is restarting or a network that is down.
    """
    if is_timeout(exc):
        message = f"Timed out connecting to {where} after {timeout_s:g} s"
    elif isinstance(exc, ConnectionRefusedError):
        message = f"Connection refused by {where}"
    elif isinstance(exc, socket.gaierror):
        message = f"Cannot resolve host of {where}: {_os_reason(exc)}"
    elif isinstance(exc, OSError):
        message = f"Cannot connect to {where}: {_os_reason(exc)}"
    else:
        message = f"Cannot connect to {where}: {type(exc).__name__}"
    return ConnectorTransientError(message, stage=STAGE_REACHABLE)


def sftp_error(
    exc: BaseException, *, action: str, path: str, stage: str = STAGE_EXPORT
) -> ConnectorError:
    """Map an exception raised by an SFTP operation (``action`` on ``path``).

    Permission denied is a configuration problem of the dropzone (permanent, stage
    ``write_permission``); everything else -- timeouts, a dropped transport, a generic
    SFTP failure such as a full disk -- is worth retrying.
    """
    if isinstance(exc, PermissionError) or getattr(exc, "errno", None) == errno.EACCES:
        return ConnectorConfigError(
            f"Permission denied: cannot {action} {path} on the SFTP server",
            stage=STAGE_WRITE_PERMISSION,
        )
    if isinstance(exc, FileNotFoundError) or getattr(exc, "errno", None) == errno.ENOENT:
        return ConnectorTransientError(
            f"No such file or directory: cannot {action} {path}", stage=stage
        )
    if is_timeout(exc):
        reason = "timed out"
    elif isinstance(exc, EOFError | paramiko.SSHException | ConnectionError):
        reason = "the SSH connection was lost"
    elif isinstance(exc, OSError):
        # SFTP status texts ("Failure", "Operation unsupported") come from the server;
        # they describe the status code, not our request, so they are safe to show.
        reason = exc.strerror or (str(exc.args[0]) if exc.args else type(exc).__name__)
        reason = reason[:_MAX_REASON] if reason.isprintable() else type(exc).__name__
    else:
        reason = type(exc).__name__
    return ConnectorTransientError(f"Cannot {action} {path}: {reason}", stage=stage)
