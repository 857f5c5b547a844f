"""A draft order's lines checked for a Tryton sale, and Tryton's version series."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from adapters.connectors.tryton.config import STAGE_DOCUMENT
from domain.ports import (
    ConnectorRejectedError,
)


def sale_series(version: str) -> tuple[int, int] | None:
    """``(major, minor)`` of a Tryton version string, or ``None`` if it has none."""
    try:
        major, minor = version.split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


@dataclass(frozen=True)
class SaleLine:
    """One checked order line, as the sale's line needs it."""

    product_code: str
    quantity: float
    unit_price: Decimal
    description: str


def order_lines(draft_order: Any) -> list[SaleLine]:
    """The draft order's lines, checked (``ConnectorRejectedError`` at ``document``)."""
    raw = getattr(draft_order, "lines", None) or ()
    if isinstance(raw, str | bytes | Mapping):
        raise ConnectorRejectedError("Draft order lines must be a sequence", stage=STAGE_DOCUMENT)
    lines: list[SaleLine] = []
    for index, line in enumerate(sorted(raw, key=lambda item: getattr(item, "line_no", 0))):
        code = getattr(line, "product_code", None)
        if not isinstance(code, str) or not code.strip():
            raise ConnectorRejectedError(
                f"lines[{index}].product_code must be a non-empty string", stage=STAGE_DOCUMENT
            )
        try:
            quantity = Decimal(str(getattr(line, "quantity", None)))
            unit_price = Decimal(str(getattr(line, "unit_price", None)))
        except InvalidOperation:
            raise ConnectorRejectedError(
                f"lines[{index}] quantity and unit_price must be numbers", stage=STAGE_DOCUMENT
            ) from None
        if not (quantity.is_finite() and unit_price.is_finite()):
            raise ConnectorRejectedError(
                f"lines[{index}] amounts must be finite numbers", stage=STAGE_DOCUMENT
            )
        description = getattr(line, "description", "") or ""
        lines.append(SaleLine(code, float(quantity), unit_price, str(description)))
    if not lines:
        raise ConnectorRejectedError(
            "A draft order without lines cannot become a sale", stage=STAGE_DOCUMENT
        )
    return lines
