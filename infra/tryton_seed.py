"""Seed a freshly activated Tryton database with what OrderFlow exports refer to.

Run in its own process by :mod:`infra.tryton` while building the template database
(``python -m infra.tryton_seed --config FILE --database NAME``): it imports ``trytond``
and ``proteus`` (proteus in its direct, in-process mode), which the rest of OrderFlow
never does. Creates the company (EUR), the customer parties and the salable products
listed below, each findable by its code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from decimal import Decimal

#: Customer party codes: the demo's (CUST-100..106) and the conformance kit's.
CUSTOMER_CODES: tuple[str, ...] = (
    *(f"CUST-{n}" for n in range(100, 107)),
    "CUST-CONTRACT",
)
#: Product codes with their list prices: the demo's SKUs and the conformance kit's.
#: (code, name, list price, unit of measure, salable)
PRODUCTS: tuple[tuple[str, str, Decimal, str, bool], ...] = (
    ("SKU-001", "Demo article 1", Decimal("9.95"), "Unit", True),
    ("SKU-002", "Demo article 2", Decimal("19.90"), "Unit", True),
    ("SKU-003", "Demo article 3", Decimal("29.85"), "Unit", True),
    ("P-100", "Screws", Decimal("2.50"), "Unit", True),
    ("P-200", "Cable", Decimal("10.00"), "Meter", True),
    # Not salable: a sale line with it is refused by Tryton itself (a UserError).
    ("NOSALE-1", "Internal part", Decimal("1.00"), "Unit", False),
)
COMPANY_NAME = "OrderFlow Demo Company"


def seed(config_file: str, database: str) -> None:
    """Create company, customers and products in ``database`` (idempotent)."""
    from proteus import Model, config  # type: ignore[import-untyped,unused-ignore]

    config.set_trytond(database, config_file=config_file)

    from trytond.modules.company.tests.tools import (  # type: ignore[import-untyped,unused-ignore]
        create_company,
    )

    party_model = Model.get("party.party")
    company_model = Model.get("company.company")
    if not company_model.find([]):
        company_party = party_model(name=COMPANY_NAME)
        company_party.save()
        create_company(party=company_party, currency="EUR")

    for code in CUSTOMER_CODES:
        if not party_model.find([("code", "=", code)]):
            party = party_model(name=f"Customer {code}", code=code)
            party.save()

    uom_model = Model.get("product.uom")
    template_model = Model.get("product.template")
    product_model = Model.get("product.product")
    for code, name, price, uom_name, salable in PRODUCTS:
        if product_model.find([("code", "=", code)]):
            continue
        (uom,) = uom_model.find([("name", "=", uom_name)])
        template = template_model(
            name=name, code=code, type="goods", default_uom=uom, list_price=price, salable=salable
        )
        if salable:
            template.sale_uom = uom
        template.save()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and seed the database."""
    parser = argparse.ArgumentParser(prog="python -m infra.tryton_seed", description=__doc__)
    parser.add_argument("--config", required=True, help="trytond configuration file")
    parser.add_argument("--database", required=True, help="database name")
    args = parser.parse_args(argv)
    seed(args.config, args.database)
    return 0


if __name__ == "__main__":
    sys.exit(main())
