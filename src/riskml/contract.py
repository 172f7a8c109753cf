"""The data contract: canonical tables, their columns and dtypes, and the risk areas.

Every other module refers to columns through the names defined here. The canonical tables are
stored as Parquet:

* ``declarations``: one row per goods item, keyed by (declaration_id, item_no);
* ``outcomes``: one row per control result (inspection, scanner, audit, random control), keyed
  by (declaration_id, item_no, control_kind, risk_area);
* ``truth`` (simulated data only): for every item and area, whether an offence was committed, the
  true evaded duty and the true probability the generator used.
"""

from __future__ import annotations

from dataclasses import dataclass

RISK_AREAS: tuple[str, ...] = (
    "revenue",
    "drugs",
    "ipr",
    "environment",
    "health_safety",
    "security",
)

CONTROL_KINDS: tuple[str, ...] = ("documentary", "physical", "scanner", "pca", "random")

TRANSPORT_MODES: tuple[str, ...] = ("sea", "air", "road", "rail", "post", "unknown")

KEY: list[str] = ["declaration_id", "item_no"]


@dataclass(frozen=True)
class Column:
    """One canonical column: its name, logical dtype, whether it must be present, and meaning."""

    name: str
    dtype: str  # one of: string, int, float, date, bool
    required: bool
    description: str


DECLARATION_COLUMNS: tuple[Column, ...] = (
    Column("declaration_id", "string", True, "declaration (SAD) identifier"),
    Column("item_no", "int", True, "goods item number within the declaration, from 1"),
    Column("accepted_date", "date", True, "date the declaration was accepted"),
    Column("office", "string", True, "customs office code"),
    Column("procedure", "string", False, "customs procedure code, e.g. 4000"),
    Column("transport_mode", "string", True, "sea, air, road, rail, post or unknown"),
    Column("importer_id", "string", True, "importer (consignee) identifier"),
    Column("declarant_id", "string", True, "declarant (broker) identifier"),
    Column("supplier_id", "string", False, "supplier / exporter / seller identifier"),
    Column("origin_country", "string", True, "country of origin of the goods, ISO 3166 alpha-2"),
    Column("departure_country", "string", False, "country of export / departure, ISO alpha-2"),
    Column("hs_code", "string", True, "tariff code, 6 to 10 digits"),
    Column("description", "string", False, "goods description"),
    Column("quantity", "float", True, "quantity in the supplementary unit, > 0"),
    Column("quantity_unit", "string", False, "unit of the quantity (u, kg, l, pair, ...)"),
    Column("gross_mass_kg", "float", True, "gross mass in kg, > 0"),
    Column("net_mass_kg", "float", False, "net mass in kg, > 0 and <= gross mass"),
    Column("fob_value", "float", False, "FOB / invoice value in local currency, >= 0"),
    Column("cif_value", "float", True, "CIF (customs) value in local currency, > 0"),
    Column("duty_rate", "float", False, "applied ad valorem duty rate as a fraction, 0 to 1"),
    Column("duties_paid", "float", True, "duties and taxes paid in local currency, >= 0"),
    Column("preference_claim", "bool", False, "a preferential (FTA) origin was claimed"),
)

OUTCOME_COLUMNS: tuple[Column, ...] = (
    Column("declaration_id", "string", True, "declaration the control was made on"),
    Column("item_no", "int", True, "goods item the control was made on"),
    Column("control_kind", "string", True, "documentary, physical, scanner, pca or random"),
    Column("result_date", "date", True, "date the result of the control became known"),
    Column(
        "risk_area",
        "string",
        False,
        "area of the offence found; empty when nothing was found (the control then counts as "
        "a clean result for every area its kind can detect)",
    ),
    Column("offence_found", "bool", True, "an offence was found"),
    Column("offence_code", "string", False, "national offence code"),
    Column("additional_duty", "float", False, "additional duties assessed / recovered, >= 0"),
    Column("quantity_seized", "float", False, "quantity seized, >= 0"),
)

TRUTH_COLUMNS: tuple[Column, ...] = (
    Column("declaration_id", "string", True, "declaration"),
    Column("item_no", "int", True, "goods item"),
    Column("risk_area", "string", True, "risk area"),
    Column("offence", "bool", True, "an offence of this area was committed on the item"),
    Column("evaded_duty", "float", True, "duty that an audit would recover (0 when none)"),
    Column("true_prob", "float", True, "probability of the offence the generator used"),
)

TABLES: dict[str, tuple[Column, ...]] = {
    "declarations": DECLARATION_COLUMNS,
    "outcomes": OUTCOME_COLUMNS,
    "truth": TRUTH_COLUMNS,
}


def column_names(table: str, *, required_only: bool = False) -> list[str]:
    """Names of a canonical table's columns, in contract order."""
    return [c.name for c in TABLES[table] if c.required or not required_only]


class RiskmlError(Exception):
    """An error the user can fix: bad file, bad column, bad parameter. The message says how."""
