"""Domain entities and status vocabularies (the seed's public names)."""

from __future__ import annotations

import re
import uuid
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


#: Connector types the product knows of. Third-party connectors registered
#: through entry points are accepted too (see ``is_valid_connector_type``).
BUILTIN_CONNECTOR_TYPES: tuple[str, ...] = ("DROPZONE_JSON_V1", "MOCK", "SAP", "EDI", "TRYTON")

_CONNECTOR_TYPE_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")


def check_connector_type(value: str, known: frozenset[str] | set[str] | None = None) -> str:
    """Return ``value`` if it is a valid connector type, else raise ``ValueError``.

    ``known`` adds types beyond the built-in list (those of installed plugins).
    The message is the seed's: ``Invalid connector_type: X``.
    """
    allowed = set(BUILTIN_CONNECTOR_TYPES) | set(known or ())
    if not isinstance(value, str) or not _CONNECTOR_TYPE_PATTERN.match(value):
        raise ValueError(f"Invalid connector_type: {value!r}")
    if value not in allowed:
        raise ValueError(f"Invalid connector_type: {value}")
    return value


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
