"""What every ``orderflow`` command shares: errors, parameter types, JSON in and out.

The CLI is built with click (one command tree, typed parameters, help at every
level); the commands are in ``entrypoints.cli_admin``, ``entrypoints.cli_pipeline`` and
``entrypoints.cli_processes``, the tree and ``main`` in ``entrypoints.cli``.
"""

from __future__ import annotations

import json
import math
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click

from domain.order_input import shown_key
from entrypoints.settings import Settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class CliError(Exception):
    """Invalid input or a failed operation: printed as one line, exit status 1."""


class UsageError(CliError):
    """The command line itself is wrong (flags, their combination): exit status 2."""


class Exited(Exception):  # noqa: N818 - reads as what happened
    """A command's exit status other than 0 (the command printed its result already)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True)
class CliContext:
    """What a command gets besides its parameters: the settings and where to print."""

    settings: Settings
    out: TextIO

    def print_json(self, value: Any) -> None:
        """Print ``value`` as indented, key-sorted JSON."""
        self.out.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")

    def write(self, text: str) -> None:
        """Print ``text`` as it is."""
        self.out.write(text)


_F = TypeVar("_F", bound=Callable[..., Any])


def pass_cli(function: _F) -> _F:
    """Give a command its :class:`CliContext` as the first argument."""
    return click.pass_obj(function)  # type: ignore[return-value]


def finish(status: int) -> None:
    """End the command with ``status`` (nothing happens for 0)."""
    if status != EXIT_OK:
        raise Exited(status)


class UuidType(click.ParamType[uuid.UUID, Any]):
    """A UUID (``not a UUID: 'x'`` otherwise)."""

    name = "uuid"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Parse ``value`` as a UUID."""
        if isinstance(value, uuid.UUID):
            return value
        try:
            return uuid.UUID(str(value))
        except ValueError:
            self.fail(f"not a UUID: {value!r}", param, ctx)


class WholeNumber(click.ParamType[int, Any]):
    """A whole number of at least ``minimum``."""

    name = "integer"

    def __init__(self, minimum: int) -> None:
        self.minimum = minimum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Parse ``value`` as a whole number, refusing ones below the minimum."""
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = int(str(value))
            except ValueError:
                self.fail(f"not a whole number: {value!r}", param, ctx)
        if number < self.minimum:
            if self.minimum == 1:
                self.fail(f"must be at least 1, got {number}", param, ctx)
            self.fail(f"must not be negative, got {number}", param, ctx)
        return number


class NonNegativeNumber(click.ParamType[float, Any]):
    """A finite number >= 0."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Parse ``value`` as a finite, non-negative float."""
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"not a number: {value!r}", param, ctx)
        if not math.isfinite(number) or number < 0:
            self.fail(f"must be a finite number >= 0, got {value!r}", param, ctx)
        return number


class PositiveNumber(click.ParamType[float, Any]):
    """A finite number > 0 (a timeout, a lease: zero would mean none at all)."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Parse ``value`` as a finite, positive float."""
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"not a number: {value!r}", param, ctx)
        if not math.isfinite(number) or number <= 0:
            self.fail(f"must be a finite number > 0, got {value!r}", param, ctx)
        return number


class Duration(click.ParamType[timedelta, Any]):
    """``7d``, ``12h``, ``30m`` or ``90s`` as a :class:`~datetime.timedelta`."""

    name = "duration"
    _UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Parse ``value`` as a whole number with a unit."""
        if isinstance(value, timedelta):
            return value
        text = str(value)
        number, unit = text[:-1], text[-1:].lower()
        if unit not in self._UNITS or not number.isdigit():
            self.fail(
                f"invalid duration {text!r}: use a whole number with d, h, m or s (e.g. 7d)",
                param,
                ctx,
            )
        return timedelta(**{self._UNITS[unit]: int(number)})


UUID = UuidType()
POSITIVE_INT = WholeNumber(1)
NON_NEGATIVE_INT = WholeNumber(0)
NON_NEGATIVE_FLOAT = NonNegativeNumber()
POSITIVE_FLOAT = PositiveNumber()
DURATION = Duration()


def read_json(path: str, what: str, *, unique_keys: bool = False) -> Any:
    """Read JSON from ``path`` ('-' is standard input) with a clear error.

    With ``unique_keys`` a key repeated in an object is refused (``json``
    would silently keep the last value).
    """
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {what} file {path!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CliError(f"{what} file {path!r} is not UTF-8") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys(what) if unique_keys else None)
    except json.JSONDecodeError as exc:
        # The position only: the document may hold secrets.
        raise CliError(
            f"{what} is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None


def _unique_keys(what: str) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    def build(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        built: dict[str, Any] = {}
        for key, value in pairs:
            if key in built:
                raise CliError(f"{what} has the key {shown_key(key)} twice in one object")
            built[key] = value
        return built

    return build


def json_kind(value: Any) -> str:
    """The JSON name of ``value``'s type (for "must be a JSON object" errors)."""
    kinds = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return kinds.get(type(value), "null")
