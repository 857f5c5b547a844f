"""A read-only config mapping whose repr and str never show secret values.

Connectors receive their decrypted config as a ``RedactedConfig``: code reads
values normally, but an accidental ``log.info(config)`` or an f-string shows
``***`` for every secret field.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from domain.config_schema import MASK


class RedactedConfig(Mapping[str, Any]):
    """Immutable mapping that masks the values of ``secret_keys`` when printed."""

    __slots__ = ("_data", "_secret_keys")

    def __init__(self, data: Mapping[str, Any], secret_keys: frozenset[str]) -> None:
        self._data = dict(data)
        self._secret_keys = secret_keys

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    @property
    def secret_keys(self) -> frozenset[str]:
        """Names of the keys whose values are secret."""
        return self._secret_keys

    def masked(self) -> dict[str, Any]:
        """Return a plain dict with secret values replaced by ``***``."""
        return {k: (MASK if k in self._secret_keys else v) for k, v in self._data.items()}

    def secret_values(self) -> list[str]:
        """Return the non-empty secret values as strings (for scrubbing messages)."""
        return [str(v) for k, v in self._data.items() if k in self._secret_keys and v]

    def __repr__(self) -> str:
        return f"RedactedConfig({self.masked()!r})"

    __str__ = __repr__


#: Shortest value of an undeclared config that is scrubbed out of messages. Every
#: value of such a config counts as secret, but scrubbing "1" or "EUR" out of every
#: message would garble it for nothing: so short a text cannot hide a credential.
MIN_UNDECLARED_SECRET_CHARS = 4


def undeclared_secret_values(config: Mapping[str, Any]) -> list[str]:
    """Texts of every value of a config without a schema, for scrubbing messages.

    Strings and numbers, nested ones included; booleans and ``None`` hold no secret.
    """
    found: list[str] = []
    stack: list[Any] = list(config.values())
    while stack:
        value = stack.pop()
        if isinstance(value, Mapping):
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            stack.extend(value)
        elif isinstance(value, str | int | float) and not isinstance(value, bool):
            text = str(value)
            if len(text) >= MIN_UNDECLARED_SECRET_CHARS:
                found.append(text)
    return found


def scrub(text: str, secrets: Iterator[str] | list[str]) -> str:
    """Replace every occurrence of each secret in ``text`` by ``***``.

    A last line of defence for messages that come from libraries (a server's
    error string may echo what it was sent).
    """
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text
