"""The ``orderflow.dropzone.order`` v1 document of a draft order, deterministically encoded."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal, Inexact, InvalidOperation, Overflow, localcontext
from typing import Any

from adapters.connectors.dropzone.paths import canonical_uuid
from adapters.connectors.dropzone.text import (
    CONNECTOR_TYPE,
    DOCUMENT_FORMAT,
    FORMAT_VERSION,
    MAX_DECIMAL_EXPONENT,
    MAX_DOCUMENT_BYTES,
    SURROGATE,
    DocumentError,
)
from domain.idempotency import export_key


class _Budget:
    """Running lower bound of the encoded size, to refuse huge orders before encoding."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def spend(self, text: str) -> None:
        # Every character is at least one UTF-8 byte, so this never over-estimates.
        self.used += len(text)
        if self.used > self.limit:
            raise DocumentError(
                f"Draft order document exceeds the {_size_text(self.limit)} limit of "
                f"{CONNECTOR_TYPE} (its text alone is over {self.used} characters)"
            )


def _size_text(limit: int) -> str:
    if limit % (1024 * 1024) == 0:
        return f"{limit // (1024 * 1024)} MiB"
    return f"{limit} bytes"


def _text(value: object, path: str, budget: _Budget, *, default: str | None = None) -> str:
    if value is None and default is not None:
        value = default
    if not isinstance(value, str):
        raise DocumentError(f"{path} must be a string")
    match = SURROGATE.search(value)
    if match is not None:
        raise DocumentError(
            f"{path} contains an unpaired surrogate (U+{ord(match.group()):04X} at "
            f"position {match.start()}), which cannot be encoded as UTF-8"
        )
    budget.spend(value)
    return value


def _decimal(value: object, path: str) -> Decimal:
    if isinstance(value, bool):
        raise DocumentError(f"{path} must be a decimal number")
    number: Decimal
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        # repr() is the shortest string that round-trips: 0.1 -> "0.1", not 0.1000000000000000055...
        number = Decimal(repr(value))
    elif isinstance(value, str) and len(value) <= 100:
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise DocumentError(f"{path} must be a decimal number") from None
    else:
        raise DocumentError(f"{path} must be a decimal number")
    if not number.is_finite():
        raise DocumentError(f"{path} must be a finite number")
    if number and abs(number.adjusted()) > MAX_DECIMAL_EXPONENT:
        raise DocumentError(f"{path} is out of range")
    return number


def _decimal_text(number: Decimal, budget: _Budget) -> str:
    """Plain notation, scale kept ("2.50" stays "2.50"), no exponent, no negative zero."""
    if number.is_zero():
        number = abs(number)
    text = format(number, "f")
    budget.spend(text)
    return text


def _line_number(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DocumentError(f"{path} must be an integer")
    return value


def build_document(draft_order: object, *, max_bytes: int = MAX_DOCUMENT_BYTES) -> dict[str, Any]:
    """Return the v1 document of ``draft_order`` as a JSON-ready dict.

    ``draft_order`` is a ``domain.model.DraftOrder`` or any object with the same
    attributes (``id``, ``org_id``, ``order_number``, ``customer_code``, ``currency``,
    ``notes``, ``lines`` of objects with ``line_no``, ``product_code``, ``description``,
    ``quantity``, ``unit``, ``unit_price``). Decimals become strings in plain notation;
    lines are sorted by ``line_no``; ``line_total`` and ``total`` are computed exactly.
    Raises ``DocumentError`` with a message naming the offending field.
    """
    budget = _Budget(max_bytes)
    org_id = canonical_uuid(getattr(draft_order, "org_id", None), "org_id")
    order_id = canonical_uuid(getattr(draft_order, "id", None), "draft_order_id")
    raw_lines = getattr(draft_order, "lines", None) or ()
    if isinstance(raw_lines, str | bytes | Mapping):
        raise DocumentError("lines must be a sequence of order lines")
    lines: list[dict[str, Any]] = []
    total = Decimal(0)
    seen: set[int] = set()
    # Exact arithmetic: a precision far beyond any sane amount, and rounding trapped, so a
    # line_total or total is never silently rounded (absurd inputs are refused instead).
    with localcontext() as context:
        context.prec = 100_000
        context.Emax = 10 * MAX_DECIMAL_EXPONENT
        context.Emin = -10 * MAX_DECIMAL_EXPONENT
        context.traps[Inexact] = True
        for index, line in enumerate(raw_lines):
            path = f"lines[{index}]"
            line_no = _line_number(getattr(line, "line_no", None), f"{path}.line_no")
            if line_no in seen:
                raise DocumentError(f"{path}.line_no {line_no} is used by more than one line")
            seen.add(line_no)
            quantity = _decimal(getattr(line, "quantity", None), f"{path}.quantity")
            unit_price = _decimal(getattr(line, "unit_price", None), f"{path}.unit_price")
            inexact = False
            try:
                line_total = quantity * unit_price
                total += line_total
            except (Inexact, Overflow):
                inexact = True
            if inexact:  # raised here so the decimal signal is not chained to it
                raise DocumentError(f"{path} amounts are too large to compute exactly")
            lines.append(
                {
                    "line_no": line_no,
                    "product_code": _text(
                        getattr(line, "product_code", None), f"{path}.product_code", budget
                    ),
                    "description": _text(
                        getattr(line, "description", ""),
                        f"{path}.description",
                        budget,
                        default="",
                    ),
                    "quantity": _decimal_text(quantity, budget),
                    "unit": _text(
                        getattr(line, "unit", "unit"), f"{path}.unit", budget, default="unit"
                    ),
                    "unit_price": _decimal_text(unit_price, budget),
                    "line_total": _decimal_text(line_total, budget),
                }
            )
    lines.sort(key=lambda entry: int(entry["line_no"]))
    return {
        "format": DOCUMENT_FORMAT,
        "format_version": FORMAT_VERSION,
        "export_key": export_key(org_id, order_id),
        "org_id": org_id,
        "draft_order_id": order_id,
        "order_number": _text(getattr(draft_order, "order_number", None), "order_number", budget),
        "customer_code": _text(
            getattr(draft_order, "customer_code", None), "customer_code", budget
        ),
        "currency": _text(getattr(draft_order, "currency", None), "currency", budget),
        "notes": _text(getattr(draft_order, "notes", ""), "notes", budget, default=""),
        "lines": lines,
        "total": _decimal_text(total, budget),
    }


def encode_document(document: Mapping[str, Any], *, max_bytes: int = MAX_DOCUMENT_BYTES) -> bytes:
    """Encode a document canonically: UTF-8, sorted keys, 2-space indent, final newline.

    The same document always gives the same bytes. Raises ``DocumentError`` if it cannot
    be encoded or is larger than ``max_bytes``.
    """
    try:
        text = json.dumps(document, ensure_ascii=False, sort_keys=True, indent=2, allow_nan=False)
        data = (text + "\n").encode("utf-8")
    except UnicodeEncodeError as exc:
        # build_document refuses surrogates field by field; this guards hand-made documents.
        raise DocumentError(
            f"Document contains text that cannot be encoded as UTF-8 ({exc.reason})"
        ) from None
    except (TypeError, ValueError) as exc:
        raise DocumentError(f"Document is not JSON-serialisable ({type(exc).__name__})") from None
    if len(data) > max_bytes:
        raise DocumentError(
            f"Draft order document is {len(data)} bytes, over the {_size_text(max_bytes)} "
            f"limit of {CONNECTOR_TYPE}"
        )
    return data


def encode_order_document(draft_order: object, *, max_bytes: int = MAX_DOCUMENT_BYTES) -> bytes:
    """Return the encoded v1 document of ``draft_order`` (see :func:`build_document`)."""
    return encode_document(build_document(draft_order, max_bytes=max_bytes), max_bytes=max_bytes)
