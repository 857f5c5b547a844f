"""Domain entities and status vocabularies (the seed's public names)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any


class DraftOrderStatus(StrEnum):
    """Lifecycle of a draft order."""

    DRAFT = "DRAFT"
    APPROVED = "APPROVED"


class ConnectionStatus(StrEnum):
    """Status of an ``erp_connection`` row (seed: ACTIVE or DISABLED)."""

    ACTIVE = "ACTIVE"
    DISABLED = "DISABLED"


class PushStatus(StrEnum):
    """Status of an ``erp_push_log`` row (seed: SUCCESS, FAILED, PENDING, RETRYING)."""

    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    PENDING = "PENDING"
    RETRYING = "RETRYING"


#: Longest connector type shown in an ``Invalid connector_type`` message.
_SHOWN_TYPE_CHARS = 80


def _shown(value: object) -> str:
    """``value`` as an error message shows it: as is, unquoted, control characters escaped.

    One format for every rejected value (unknown, lower-case, malformed, not a
    string); escaping keeps a newline or an escape sequence in bad input from
    forging a log line.
    """
    text = value if isinstance(value, str) else str(value)
    text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    if len(text) > _SHOWN_TYPE_CHARS:
        text = text[: _SHOWN_TYPE_CHARS - 1] + "\u2026"
    return text


def check_connector_type(value: object, registered: Collection[str]) -> str:
    """Return ``value`` if a connector is registered under it, else raise ``ValueError``.

    ``registered`` is the set of types connectors are registered for (the
    connector registry's, handed in by the composition root: the domain does
    not know which connectors are installed). The message is the seed's,
    ``Invalid connector_type: X``, in the same form for every rejected value.
    """
    if isinstance(value, str) and value in registered:
        return value
    raise ValueError(f"Invalid connector_type: {_shown(value)}")


@dataclass(frozen=True)
class OrderLine:
    """One line of a draft order."""

    line_no: int
    product_code: str
    quantity: Decimal
    unit_price: Decimal
    description: str = ""
    unit: str = "unit"


@dataclass(frozen=True)
class DraftOrder:
    """A draft order as connectors see it: immutable, no persistence concerns."""

    id: uuid.UUID
    org_id: uuid.UUID
    order_number: str
    customer_code: str
    currency: str = "EUR"
    lines: tuple[OrderLine, ...] = ()
    status: DraftOrderStatus = DraftOrderStatus.DRAFT
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> Decimal:
        """Sum of quantity times unit price over all lines."""
        return sum((line.quantity * line.unit_price for line in self.lines), Decimal(0))


#: Longest order number, in UTF-8 bytes: it is part of a unique index, and PostgreSQL
#: refuses index entries over about 2.7 KB.
MAX_ORDER_NUMBER_BYTES = 1000


def _nul_paths(value: Any, path: str) -> Iterator[str]:
    """Paths of the strings (and mapping keys) in ``value`` that contain U+0000."""
    if isinstance(value, str):
        if "\x00" in value:
            yield path
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key:
                yield f"{path} key"
            yield from _nul_paths(item, f"{path}[{key!r}]")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _nul_paths(item, f"{path}[{index}]")


def storage_problem(order: DraftOrder) -> str | None:
    """Say why ``order`` cannot be recorded (approved, or claimed in the push log), or ``None``.

    PostgreSQL cannot store the character U+0000 in text or JSONB; the order
    number is indexed (see ``MAX_ORDER_NUMBER_BYTES``); the recorded order
    carries its total, so amounts must be finite and their total computable.
    The message names the field, never its value.
    """
    fields: list[tuple[str, Any]] = [
        ("order_number", order.order_number),
        ("customer_code", order.customer_code),
        ("currency", order.currency),
        ("notes", order.notes),
        ("extra", order.extra),
    ]
    for index, line in enumerate(order.lines):
        for name in ("product_code", "description", "unit"):
            fields.append((f"lines[{index}].{name}", getattr(line, name)))
    for name, value in fields:
        for path in _nul_paths(value, name):
            return f"{path} contains a NUL character (U+0000), which cannot be stored"
    for index, line in enumerate(order.lines):
        for name in ("quantity", "unit_price"):
            amount = getattr(line, name)
            if not isinstance(amount, Decimal) or not amount.is_finite():
                return f"lines[{index}].{name} is not a finite decimal number"
    try:
        order.total  # noqa: B018 - computed for its exceptions
    except ArithmeticError:
        return "the order total cannot be computed (amounts out of range)"
    size = len(order.order_number.encode("utf-8", "surrogatepass"))
    if size > MAX_ORDER_NUMBER_BYTES:
        return f"order_number is {size} bytes, over the limit of {MAX_ORDER_NUMBER_BYTES} bytes"
    return None
