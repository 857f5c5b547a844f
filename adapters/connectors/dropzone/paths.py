"""Where a draft order's document goes: ``{remote_dir}/{org_id}/{draft_order_id}.json``."""

from __future__ import annotations

import posixpath
import re
import uuid
from dataclasses import dataclass

from adapters.connectors.dropzone.text import (
    MAX_REMOTE_DIR_CHARS,
    SURROGATE,
    DocumentError,
    has_control_characters,
)


def remote_dir_problem(value: str) -> str | None:
    r"""Return why ``value`` is not an acceptable ``remote_dir`` (``None`` if it is).

    Refused: NUL and other control characters, unpaired surrogates, leading or trailing
    whitespace, ``..`` segments (split on ``/`` and on ``\\``, for servers on Windows) and
    paths longer than 1024 characters. The message never repeats the value.
    """
    if "\x00" in value:
        return "must not contain NUL characters"
    if has_control_characters(value):
        return "must not contain control characters"
    if SURROGATE.search(value):
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
