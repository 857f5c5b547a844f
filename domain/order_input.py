"""Draft orders as callers hand them in, turned into ``DraftOrder`` by ONE function.

:func:`to_draft_order` is the entry of every order into the pipeline
(``PushOrchestrator.push_order``, ``approve_draft_order``, ``orderflow orders
approve``). It accepts:

* a ``domain.model.DraftOrder``;
* a **mapping**, e.g. parsed JSON or ``domain.records.order_to_json``'s output.
  Mappings are strict: an unknown key is refused (a misspelt ``draft_order_id``
  must not silently become a new order). ``total`` is accepted, and must equal
  the sum of the lines, so that a recorded order converts back;
* any **object with the order's attributes** (duck typing): the project's ORM
  row ``DraftOrderRow``, an application's own class, a ``SimpleNamespace``.
  Only the attributes named below are read; other attributes (``total``,
  timestamps, ...) are ignored.

Fields (``None`` means "not given": the default is used, or it is missing):

=================  =========================================  ===========
field              accepted                                   if not given
=================  =========================================  ===========
``id``             ``uuid.UUID`` or its text                  required
``org_id``         ``uuid.UUID`` or its text                  the ``org_id`` argument
``order_number``   text                                       required
``customer_code``  text                                       required
``currency``       text                                       ``"EUR"``
``status``         ``DRAFT`` / ``APPROVED``: enum or text     ``DRAFT``
``notes``          text                                       ``""``
``lines``          a list of lines (mappings or objects)      none
``extra``          a mapping of text keys to JSON values      ``{}``
=================  =========================================  ===========

A line has ``line_no`` (integer, required), ``product_code`` (text,
required), ``quantity`` and ``unit_price`` (required: a finite
``Decimal``, an integer, or decimal text such as ``"2.50"``, never a float,
which would round), ``description`` (text, ``""``) and ``unit`` (text,
``"unit"``).

Anything else raises ONE :class:`InvalidDraftOrder` listing every problem with
its path (``lines[1].quantity: required``). Messages name fields and types,
never the values given (an order may carry personal data, and a value may be
huge). What PostgreSQL cannot store (U+0000, an order number over the index
limit, amounts whose total overflows) is ``domain.model.storage_problem``'s
business, checked after this conversion.

Pure: no I/O, nothing imported beyond the standard library and ``domain``.
Size: a little over 400 lines, one reader whose field rules sit side by side so
that every problem of an order is collected in one pass.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any

from domain.errors import OrderFlowError
from domain.model import DraftOrder, DraftOrderStatus, OrderLine

#: Fields of an order, in the order problems are reported.
ORDER_FIELDS: tuple[str, ...] = (
    "id",
    "org_id",
    "order_number",
    "customer_code",
    "currency",
    "status",
    "notes",
    "lines",
    "extra",
)
#: Keys a mapping may have besides ``ORDER_FIELDS`` (``order_to_json`` writes it).
DERIVED_FIELDS: tuple[str, ...] = ("total",)
#: Fields of an order line.
LINE_FIELDS: tuple[str, ...] = (
    "line_no",
    "product_code",
    "quantity",
    "unit_price",
    "description",
    "unit",
)
#: Decimal text: the syntax of ``docs/events.md`` (no NaN, infinity, blanks, ``_``).
DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
#: ``line_no`` travels as an Avro ``int``: 32-bit signed.
LINE_NO_RANGE = (-(2**31), 2**31 - 1)
#: How deep ``extra`` may nest (JSON encoders recurse; a bound keeps the error clear).
MAX_EXTRA_DEPTH = 100
#: Longest key shown in a message (an unknown key may be anything, of any length).
_SHOWN_KEY_CHARS = 40

_MISSING: Any = object()
#: What is a value, not a record, even if it has attributes or can be iterated
#: (an application's record class may be iterable, e.g. a pydantic model).
_VALUE_TYPES = (str, bytes, bytearray, int, float, complex, Decimal, list, tuple, set, frozenset)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")
_STATUS_VALUES = frozenset(s.value for s in DraftOrderStatus)
_STATUSES = ", ".join(s.value for s in DraftOrderStatus)


@dataclass(frozen=True)
class OrderProblem:
    """One thing wrong with a draft order: where (``path``) and what (``message``)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidDraftOrder(OrderFlowError, ValueError):  # noqa: N818 - reads like OrderTooLarge
    """The object given is not a valid draft order; ``problems`` lists every problem."""

    def __init__(self, problems: Iterable[OrderProblem]) -> None:
        self.problems: tuple[OrderProblem, ...] = tuple(problems)
        detail = "; ".join(str(p) for p in self.problems)
        super().__init__(f"Invalid draft order: {detail}")


def to_draft_order(obj: object, *, org_id: uuid.UUID | str | None = None) -> DraftOrder:
    """Return ``obj`` (a ``DraftOrder``, a mapping or an order-like object) as a ``DraftOrder``.

    ``org_id`` is the organisation the caller acts for: it is used when ``obj``
    has no ``org_id``; when both are given they must be equal. Raises
    :class:`InvalidDraftOrder` (a ``ValueError``) listing every problem.
    """
    reader = _Reader()
    order = reader.order(obj, org_id)
    if reader.problems or order is None:
        raise InvalidDraftOrder(reader.problems)
    return order


def _type_name(value: object) -> str:
    return type(value).__name__


def shown_key(key: object) -> str:
    """``key`` as a message shows it: its ``repr``, cut to a few dozen characters."""
    text = repr(key)
    if len(text) > _SHOWN_KEY_CHARS:
        return text[: _SHOWN_KEY_CHARS - 1] + "\u2026"
    return text


def shown_name(key: object) -> str:
    """A mapping key as a path element: a short name as is, anything else as ``shown_key``."""
    if isinstance(key, str) and _NAME.fullmatch(key):
        return key
    return f"[{shown_key(key)}]"


class _Reader:
    """Collects problems while reading one order (every field is read, none stops it)."""

    def __init__(self) -> None:
        self.problems: list[OrderProblem] = []

    def problem(self, path: str, message: str) -> None:
        # One problem per path: an unreadable attribute is not also "required".
        if all(p.path != path for p in self.problems):
            self.problems.append(OrderProblem(path, message))

    # -- sources --------------------------------------------------------------------------

    def fields(
        self, obj: object, names: tuple[str, ...], extra_allowed: tuple[str, ...], prefix: str
    ) -> dict[str, Any] | None:
        """The named fields of a mapping (strict) or an object (attributes); None: neither."""
        if isinstance(obj, Mapping):
            values: dict[str, Any] = {}
            for key, value in obj.items():
                if isinstance(key, str) and (key in names or key in extra_allowed):
                    values[key] = value
                else:
                    self.problem(_join(prefix, shown_name(key)), "unknown field")
            return {name: values.get(name, _MISSING) for name in (*names, *extra_allowed)}
        if obj is None or isinstance(obj, _VALUE_TYPES):
            # Values, not records: reading attributes off them would only say
            # "required" for every field and hide what is really wrong.
            return None
        return {name: self.attribute(obj, name, prefix) for name in names}

    def attribute(self, obj: object, name: str, prefix: str) -> Any:
        try:
            return getattr(obj, name)
        except AttributeError:
            return _MISSING
        except Exception as exc:  # a property or lazy loader that fails (detached ORM row)
            self.problem(_join(prefix, name), f"cannot be read ({_type_name(exc)})")
            return None

    # -- the order ------------------------------------------------------------------------

    def order(self, obj: object, org_id: uuid.UUID | str | None) -> DraftOrder | None:
        raw = self.fields(obj, ORDER_FIELDS, DERIVED_FIELDS, "")
        if raw is None:
            self.problem(
                "draft_order",
                "must be a DraftOrder, a mapping or an object with the order's attributes, "
                f"not {_type_name(obj)}",
            )
            return None
        order_id = self.uuid(raw["id"], "id", required=True)
        org = self.org(raw["org_id"], org_id)
        order_number = self.text(raw["order_number"], "order_number", None)
        customer_code = self.text(raw["customer_code"], "customer_code", None)
        currency = self.text(raw["currency"], "currency", "EUR")
        status = self.status(raw["status"])
        notes = self.text(raw["notes"], "notes", "")
        lines = self.lines(raw["lines"])
        extra = self.extras(raw["extra"])
        if isinstance(obj, Mapping):
            self.total(raw["total"], lines)
        if self.problems:
            return None
        assert order_id is not None and org is not None  # no problem means every field read
        assert order_number is not None and customer_code is not None and currency is not None
        assert status is not None and notes is not None and lines is not None
        assert extra is not None
        return DraftOrder(
            id=order_id,
            org_id=org,
            order_number=order_number,
            customer_code=customer_code,
            currency=currency,
            lines=lines,
            status=status,
            notes=notes,
            extra=extra,
        )

    def org(self, own: Any, given: uuid.UUID | str | None) -> uuid.UUID | None:
        expected = None
        if given is not None:
            expected = self.uuid(given, "org_id (the organisation given)", required=True)
        if own is _MISSING or own is None:
            if given is None:
                self.problem("org_id", "required (or give the organisation)")
            return expected
        org = self.uuid(own, "org_id", required=True)
        if org is not None and expected is not None and org != expected:
            self.problem("org_id", f"belongs to organisation {org}, not {expected}")
        return org

    # -- scalars --------------------------------------------------------------------------

    def uuid(self, value: Any, path: str, *, required: bool) -> uuid.UUID | None:
        if value is _MISSING or value is None:
            if required:
                self.problem(path, "required")
            return None
        if isinstance(value, uuid.UUID):
            return value
        if isinstance(value, str):
            try:
                return uuid.UUID(value)
            except ValueError:
                self.problem(path, "not a UUID")
                return None
        self.problem(path, f"must be a UUID or its text, not {_type_name(value)}")
        return None

    def text(self, value: Any, path: str, default: str | None) -> str | None:
        if value is _MISSING or value is None:
            if default is None:
                self.problem(path, "required")
            return default
        if isinstance(value, str):
            return value
        self.problem(path, f"must be text, not {_type_name(value)}")
        return None

    def status(self, value: Any) -> DraftOrderStatus | None:
        if value is _MISSING or value is None:
            return DraftOrderStatus.DRAFT
        if isinstance(value, Enum) and not isinstance(value, DraftOrderStatus):
            value = value.value  # an application's own enum: its value decides
        if isinstance(value, str) and value in _STATUS_VALUES:
            return DraftOrderStatus(value)
        if isinstance(value, str):
            self.problem("status", f"must be one of {_STATUSES}")
        else:
            self.problem("status", f"must be one of {_STATUSES}, not {_type_name(value)}")
        return None

    def amount(self, value: Any, path: str) -> Decimal | None:
        if value is _MISSING or value is None:
            self.problem(path, "required")
            return None
        if isinstance(value, Decimal):
            if value.is_finite():
                return value
            self.problem(path, "must be a finite decimal number")
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return Decimal(value)
        if isinstance(value, str):
            if DECIMAL_TEXT.fullmatch(value):
                try:
                    return Decimal(value)
                except ArithmeticError:  # an exponent beyond what Decimal can hold
                    pass
            self.problem(path, 'must be a finite decimal number, e.g. "2.50"')
            return None
        if isinstance(value, float):
            self.problem(path, 'must be a decimal number as text (e.g. "2.50"), not a float')
            return None
        self.problem(
            path, f"must be a decimal number (text, integer or Decimal), not {_type_name(value)}"
        )
        return None

    def line_no(self, value: Any, path: str) -> int | None:
        if value is _MISSING or value is None:
            self.problem(path, "required")
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            self.problem(path, f"must be an integer, not {_type_name(value)}")
            return None
        low, high = LINE_NO_RANGE
        if not low <= value <= high:
            self.problem(path, f"must be between {low} and {high}")
            return None
        return value

    # -- lines, extra, total --------------------------------------------------------------

    def lines(self, value: Any) -> tuple[OrderLine, ...] | None:
        if value is _MISSING or value is None:
            return ()
        if isinstance(value, str | bytes | bytearray | Mapping | Set) or not isinstance(
            value, Iterable
        ):
            self.problem("lines", f"must be a list of lines, not {_type_name(value)}")
            return None
        lines: list[OrderLine] = []
        complete = True
        for index, item in enumerate(value):
            line = self.line(item, f"lines[{index}]")
            if line is None:
                complete = False
            else:
                lines.append(line)
        return tuple(lines) if complete else None

    def line(self, obj: object, path: str) -> OrderLine | None:
        raw = self.fields(obj, LINE_FIELDS, (), path)
        if raw is None:
            self.problem(
                path,
                f"must be a mapping or an object with the line's attributes, not {_type_name(obj)}",
            )
            return None
        before = len(self.problems)
        line_no = self.line_no(raw["line_no"], f"{path}.line_no")
        product_code = self.text(raw["product_code"], f"{path}.product_code", None)
        quantity = self.amount(raw["quantity"], f"{path}.quantity")
        unit_price = self.amount(raw["unit_price"], f"{path}.unit_price")
        description = self.text(raw["description"], f"{path}.description", "")
        unit = self.text(raw["unit"], f"{path}.unit", "unit")
        if len(self.problems) > before:
            return None
        assert line_no is not None and product_code is not None
        assert quantity is not None and unit_price is not None
        assert description is not None and unit is not None
        return OrderLine(line_no, product_code, quantity, unit_price, description, unit)

    def extras(self, value: Any) -> dict[str, Any] | None:
        if value is _MISSING or value is None:
            return {}
        if not isinstance(value, Mapping):
            self.problem(
                "extra", f"must be a mapping of text keys to JSON values, not {_type_name(value)}"
            )
            return None
        before = len(self.problems)
        self.json_value(value, "extra", 0)
        return dict(value) if len(self.problems) == before else None

    def json_value(self, value: Any, path: str, depth: int) -> None:
        """Report where ``value`` is not JSON (what ``extra`` must survive as)."""
        if depth > MAX_EXTRA_DEPTH:
            self.problem(path, f"nested more than {MAX_EXTRA_DEPTH} levels deep")
        elif isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str):
                    self.problem(f"{path}[{shown_key(key)}]", "keys must be text")
                else:
                    self.json_value(item, f"{path}[{shown_key(key)}]", depth + 1)
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                self.json_value(item, f"{path}[{index}]", depth + 1)
        elif isinstance(value, float):
            if not math.isfinite(value):
                self.problem(path, "must be a finite number (JSON has no NaN or infinity)")
        elif not (value is None or isinstance(value, str | int)):  # bool is an int
            self.problem(path, f"not a JSON value ({_type_name(value)})")

    def total(self, value: Any, lines: tuple[OrderLine, ...] | None) -> None:
        if value is _MISSING or value is None:
            return
        total = self.amount(value, "total")
        if total is None or lines is None:
            return
        try:
            computed = sum((line.quantity * line.unit_price for line in lines), Decimal(0))
        except ArithmeticError:
            return  # storage_problem reports the overflow after conversion
        if total != computed:
            self.problem("total", "does not equal the sum of quantity * unit_price of the lines")


def _join(prefix: str, name: str) -> str:
    if not prefix or name.startswith("["):
        return f"{prefix}{name}"
    return f"{prefix}.{name}"
