"""File operations on an SFTP session: directories, atomic upload, best-effort removal.

``atomic_upload`` writes to a hidden temporary name in the target directory and then
``posix_rename``s it onto the final name. The rename is atomic on the server, so a
reader polling the dropzone sees either the previous complete file or the new complete
file, never a partial one, and re-uploading replaces the file instead of adding one.
"""

from __future__ import annotations

import logging
import posixpath
import stat
import uuid
from dataclasses import dataclass

from adapters.sftp.errors import STAGE_EXPORT, STAGE_WRITE_PERMISSION, sftp_error
from adapters.sftp.session import SftpSession
from domain.errors import ConnectorConfigError, ConnectorError, ConnectorTransientError

__all__ = [
    "UploadResult",
    "atomic_upload",
    "ensure_directory",
    "remove_quietly",
    "temp_name_for",
]

log = logging.getLogger("orderflow.sftp.files")


@dataclass(frozen=True)
class UploadResult:
    """Where a file ended up and how big it is."""

    path: str
    size: int
    #: False if the server lacks the posix-rename extension and the fallback was used.
    atomic: bool = True


def temp_name_for(filename: str) -> str:
    """Return a unique hidden temporary name for ``filename`` in the same directory.

    The leading dot hides it from most pollers, the ``.tmp`` suffix from the rest; the
    random part keeps concurrent uploads of the same file from sharing a temp file.
    """
    return f".{filename}.{uuid.uuid4().hex}.tmp"


def _is_dir(session: SftpSession, path: str, *, stage: str) -> bool | None:
    """Return True for a directory, False for anything else, None if ``path`` is absent."""
    failure: ConnectorError | None = None
    try:
        attrs = session.sftp.stat(path)
    except FileNotFoundError:
        return None
    except Exception as exc:
        failure = sftp_error(exc, action="inspect", path=path, stage=stage)
    if failure is not None:
        raise failure
    return attrs.st_mode is None or stat.S_ISDIR(attrs.st_mode)


def ensure_directory(
    session: SftpSession, base: str, *children: str, stage: str = STAGE_EXPORT
) -> str:
    """Make sure ``base/child1/child2...`` exists, creating the children as needed.

    ``base`` itself must exist: it is the operator-configured dropzone, and creating it
    would hide a typo in the config. Concurrent callers may race to create the same child;
    losing that race is fine. Returns the full path.
    """
    path = base
    if path not in session.known_dirs:
        state = _is_dir(session, base, stage=stage)
        if state is None:
            raise ConnectorConfigError(
                f"remote_dir {base} does not exist on the SFTP server",
                stage=STAGE_WRITE_PERMISSION,
            )
        if state is False:
            raise ConnectorConfigError(
                f"remote_dir {base} is not a directory on the SFTP server",
                stage=STAGE_WRITE_PERMISSION,
            )
        session.known_dirs.add(base)
    for child in children:
        path = posixpath.join(path, child)
        if path in session.known_dirs:
            continue
        state = _is_dir(session, path, stage=stage)
        if state is None:
            failure: Exception | None = None
            try:
                session.sftp.mkdir(path, mode=0o755)
            except Exception as exc:
                failure = exc
            # Another exporter may have created it meanwhile: only fail if it is still absent.
            if failure is not None and _is_dir(session, path, stage=stage) is not True:
                raise sftp_error(failure, action="create directory", path=path, stage=stage)
        elif state is False:
            raise ConnectorConfigError(
                f"{path} exists on the SFTP server but is not a directory",
                stage=STAGE_WRITE_PERMISSION,
            )
        session.known_dirs.add(path)
    return path


def remove_quietly(session: SftpSession, path: str) -> bool:
    """Remove ``path`` if possible; return whether it was removed. Never raises."""
    try:
        session.sftp.remove(path)
    except Exception as exc:
        log.debug("could not remove %s: %s", path, type(exc).__name__)
        return False
    return True


def _write(session: SftpSession, path: str, data: bytes, stage: str) -> None:
    failure: ConnectorError | None = None
    try:
        # "x": the temp name must be new; "w": write-only. Pipelining sends the chunks
        # without waiting for each acknowledgement; errors surface at close().
        with session.sftp.open(path, "wx") as handle:
            handle.set_pipelined(True)
            handle.write(data)
        size = session.sftp.stat(path).st_size
    except Exception as exc:
        failure = sftp_error(exc, action="write", path=path, stage=stage)
    if failure is not None:
        raise failure
    if size != len(data):
        raise ConnectorTransientError(
            f"Upload of {path} is incomplete on the server ({size} of {len(data)} bytes)",
            stage=stage,
        )


def _rename(session: SftpSession, source: str, target: str, stage: str) -> bool:
    """posix_rename ``source`` onto ``target``; return False if the fallback was used."""
    failure: Exception | None = None
    try:
        session.sftp.posix_rename(source, target)
        return True
    except OSError as exc:
        failure = exc
        unsupported = "unsupported" in str(exc).lower() and not isinstance(
            exc, PermissionError | FileNotFoundError
        )
    except Exception as exc:
        failure = exc
        unsupported = False
    if not unsupported:
        raise sftp_error(failure, action="rename into place", path=target, stage=stage)
    # A server without the posix-rename@openssh.com extension: plain SFTP rename refuses
    # to overwrite, so remove the old file first. Not atomic (a reader may briefly find
    # no file), hence the warning; OpenSSH and most servers support the extension.
    log.warning("SFTP server lacks posix-rename; replacing %s non-atomically", target)
    remove_quietly(session, target)
    try:
        session.sftp.rename(source, target)
    except Exception as exc:
        failure = exc
    else:
        return False
    raise sftp_error(failure, action="rename into place", path=target, stage=stage)


def atomic_upload(
    session: SftpSession,
    directory: str,
    filename: str,
    data: bytes,
    *,
    stage: str = STAGE_EXPORT,
) -> UploadResult:
    """Upload ``data`` to ``directory/filename`` via a temporary file and a rename.

    On any failure the temporary file is removed (best effort: on a dead connection it
    cannot be, and a hidden ``.*.tmp`` file stays behind). Raises ``ConnectorError``
    subclasses with ``stage`` (``write_permission`` for permission problems).
    """
    final = posixpath.join(directory, filename)
    temp = posixpath.join(directory, temp_name_for(filename))
    try:
        _write(session, temp, data, stage)
        atomic = _rename(session, temp, final, stage)
    except BaseException:
        if session.is_alive:
            remove_quietly(session, temp)
        raise
    return UploadResult(path=final, size=len(data), atomic=atomic)
