"""The data contract: canonical tables, their columns and dtypes, and the risk areas.

Every other module refers to columns through the names defined here. The canonical tables are
stored as Parquet:

* ``declarations``: one row per goods item, keyed by (declaration_id, item_no);
* ``outcomes``: one row per control result (inspection, scanner, audit, random control), keyed
  by (declaration_id, item_no, control_kind, risk_area);
* ``truth`` (simulated data only): for every item and area, whether an offence was committed, the
  true evaded duty and the true probability the generator used;
* ``seizures``: seizure intelligence from other administrations (WCO CEN style), keyed by
  ``seizure_id``: not linked to any declaration of this administration.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from riskml.catalog import ITEM_MONTH, PARTITIONED_TABLES, interim_table, table_file
from riskml.errors import RiskmlError  # re-exported: `from riskml.contract import RiskmlError`

RISK_AREAS: tuple[str, ...] = (
    "revenue",
    "drugs",
    "ipr",
    "environment",
    "health_safety",
    "security",
)

CONTROL_KINDS: tuple[str, ...] = ("documentary", "physical", "scanner", "pca", "random")

#: Why a control was made (``outcomes.control_reason``, optional): a risk ``profile`` or rule on
#: what the declaration shows, an ``intelligence`` lead (tip-off, information from another
#: agency), a ``random`` draw, or ``other`` (a request, a reviewer's choice, ...). Training uses
#: it to tell labels that follow observable facts from labels that follow hidden risk
#: (``train.reason_weights``); no feature may use it (known only for controlled items).
CONTROL_REASONS: tuple[str, ...] = ("profile", "intelligence", "random", "other")

TRANSPORT_MODES: tuple[str, ...] = ("sea", "air", "road", "rail", "post", "unknown")

KEY: list[str] = ["declaration_id", "item_no"]


def keyed(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with its key columns in one dtype for joining on :data:`KEY`:
    ``declaration_id`` as string, ``item_no`` as int64 (tables read from different sources may
    hold them as object or int32)."""
    out = frame.copy()
    out["declaration_id"] = out["declaration_id"].astype("string")
    out["item_no"] = out["item_no"].astype("int64")
    return out


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
    Column(
        "gross_mass_kg",
        "float",
        True,
        "gross mass in kg, >= 0 (0: below the declared precision, e.g. documents, samples)",
    ),
    Column("net_mass_kg", "float", False, "net mass in kg, >= 0 and <= gross mass"),
    Column("fob_value", "float", False, "FOB / invoice value in local currency, >= 0"),
    Column(
        "cif_value",
        "float",
        True,
        "CIF (customs) value in local currency, >= 0 (0: no commercial value, e.g. samples)",
    ),
    Column(
        "duty_rate",
        "float",
        False,
        "applied ad valorem duty rate as a fraction, 0 to 10 (rates above 100% exist); empty "
        "for a specific (per unit) duty, which duties_paid carries",
    ),
    Column("duties_paid", "float", True, "duties and taxes paid in local currency, >= 0"),
    Column("preference_claim", "bool", False, "a preferential (FTA) origin was claimed"),
    Column(
        "tariff_treatment",
        "string",
        False,
        "national code of the tariff treatment applied (basic, WTO, FTA, provisional, relief, "
        "...), e.g. the KCS Tax Type or an EU preference code",
    ),
)

OUTCOME_COLUMNS: tuple[Column, ...] = (
    Column("declaration_id", "string", True, "declaration the control was made on"),
    Column("item_no", "int", True, "goods item the control was made on"),
    Column("control_kind", "string", True, "documentary, physical, scanner, pca or random"),
    Column(
        "control_reason",
        "string",
        False,
        "why the item was controlled: profile (risk rules and profiles on declared facts), "
        "intelligence (a tip-off or lead), random (a random draw) or other; empty: not recorded",
    ),
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
    Column(
        "true_prob",
        "float",
        True,
        "probability of the offence given every hidden trait (item noise averaged out)",
    ),
)

SEIZURE_COLUMNS: tuple[Column, ...] = (
    Column("seizure_id", "string", True, "seizure record identifier (unique)"),
    Column("seizure_date", "date", True, "date of the seizure"),
    Column(
        "report_date",
        "date",
        True,
        "date the record reached this administration (features use only records reported "
        "before a declaration's month)",
    ),
    Column("reporting_country", "string", True, "country that made and reported the seizure"),
    Column("risk_area", "string", True, "risk area of the seized goods"),
    Column("commodity", "string", True, "what was seized: cocaine, precursors, ODS, weapons, ..."),
    Column(
        "concealment_hs",
        "string",
        False,
        "HS code (2 to 10 digits) of the cover goods or of the misdeclared goods",
    ),
    Column("concealment_method", "string", False, "how the goods were hidden or misdeclared"),
    Column("departure_country", "string", False, "country the consignment departed from"),
    Column("transit_country", "string", False, "country the consignment passed through"),
    Column("destination_country", "string", False, "country the consignment was bound for"),
    Column("transport_mode", "string", False, "sea, air, road, rail, post or unknown"),
    Column("quantity", "float", False, "quantity seized, > 0"),
    Column("quantity_unit", "string", False, "unit of the quantity (kg, u, l, ...)"),
)

TABLES: dict[str, tuple[Column, ...]] = {
    "declarations": DECLARATION_COLUMNS,
    "outcomes": OUTCOME_COLUMNS,
    "truth": TRUTH_COLUMNS,
    "seizures": SEIZURE_COLUMNS,
}


def column_names(table: str, *, required_only: bool = False) -> list[str]:
    """Names of a canonical table's columns, in contract order."""
    return [c.name for c in TABLES[table] if c.required or not required_only]


# --------------------------------------------------------------------------------------------
# Validation: canonical dtypes, value checks, pandera schemas and the good/quarantine split.
# --------------------------------------------------------------------------------------------

PANDAS_DTYPES: dict[str, str] = {
    "string": "str",
    "int": "int64",
    "float": "float64",
    "date": "datetime64[ns]",
    "bool": "bool",
}

OUTCOME_KEY: list[str] = [*KEY, "control_kind", "risk_area"]
TABLE_KEYS: dict[str, list[str]] = {
    "declarations": KEY,
    "outcomes": OUTCOME_KEY,
    "truth": [*KEY, "risk_area"],
    "seizures": ["seizure_id"],
}

# Optional columns an input may carry (ingest sets them): the row number in the source file and
# the source file, used as `row` and `file` in the quarantine instead of the position in the
# table and the table's file; and a reason ingest found to quarantine the row (a code outside
# the mapping's values with `unmapped: quarantine`) with the column(s) it concerns.
SOURCE_ROW = "source_row"
SOURCE_FILE = "source_file"
SOURCE_ERROR = "source_error"
SOURCE_ERROR_COLUMN = "source_error_column"
SOURCE_COLUMNS: tuple[str, ...] = (SOURCE_ROW, SOURCE_FILE, SOURCE_ERROR, SOURCE_ERROR_COLUMN)

QUARANTINE_COLUMNS: list[str] = [
    "file",
    "table",
    "row",
    "column",
    "check",
    "reason",
    "action",
    "declaration_id",
    "item_no",
    "record",
]

# A declaration whose failures all concern a value it can be scored without is kept, the value
# set missing (numbers: the features that need it are missing, which LightGBM handles) or
# `unknown` (the transport mode; a missing or unreadable party, office or origin, which becomes
# a value of its own, as LightGBM treats a missing category: the items that lack it share one
# history): it is scored on everything else it carries and listed with its reason. Any other
# failure (key, date, HS code, a duplicate, a code the mapping quarantines) leaves the row out:
# it cannot be scored (no date: no history as of a day; no goods code: no goods, tariff or
# price reference), and says why.
UNKNOWN = "unknown"
REPAIRS: dict[str, Any] = {
    "quantity": np.nan,
    "gross_mass_kg": np.nan,
    "net_mass_kg": np.nan,
    "fob_value": np.nan,
    "cif_value": np.nan,
    "duty_rate": np.nan,
    "duties_paid": np.nan,
    "transport_mode": UNKNOWN,
    "office": UNKNOWN,
    "importer_id": UNKNOWN,
    "declarant_id": UNKNOWN,
    "origin_country": UNKNOWN,
    "preference_claim": pd.NA,
}
# A failing row rule repaired by setting one of its columns missing.
RULE_REPAIRS: dict[str, str] = {"net_mass_le_gross_mass": "net_mass_kg"}
#: ``action`` of a quarantine row whose table row was left out.
NOT_SCORED = "not scored"
LEFT_OUT = "left out"

DATE_MIN = pd.Timestamp("1990-01-01")

# The value checks, each defined once: validate() builds masks from them, schema() builds
# pandera checks from them.
BOUNDS: dict[str, tuple[tuple[str, float], ...]] = {
    "item_no": (("ge", 1),),
    "quantity": (("gt", 0),),
    "gross_mass_kg": (("ge", 0),),
    "net_mass_kg": (("ge", 0),),
    "fob_value": (("ge", 0),),
    "cif_value": (("ge", 0),),
    "duty_rate": (("ge", 0), ("le", 10)),
    "duties_paid": (("ge", 0),),
    "additional_duty": (("ge", 0),),
    "quantity_seized": (("ge", 0),),
    "evaded_duty": (("ge", 0),),
    "true_prob": (("ge", 0), ("le", 1)),
}
ALLOWED_VALUES: dict[str, tuple[str, ...]] = {
    "transport_mode": TRANSPORT_MODES,
    "control_kind": CONTROL_KINDS,
    "control_reason": CONTROL_REASONS,
    "risk_area": RISK_AREAS,
}
# HS chapters run from 01 to 97: a code in chapter 00 is a padded shorter code.
PATTERNS: dict[str, tuple[str, str]] = {
    "hs_code": (r"(?!00)\d{6,10}", "6 to 10 digits in an HS chapter (01-97)"),
    "concealment_hs": (r"\d{2,10}", "2 to 10 digits"),
}

_OPS: dict[str, tuple[str, Callable[[pd.Series, float], pd.Series]]] = {
    "gt": (">", lambda s, v: s > v),
    "ge": (">=", lambda s, v: s >= v),
    "le": ("<=", lambda s, v: s <= v),
}
_TRUE = frozenset({"true", "t", "yes", "y", "1", "1.0"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "0.0"})


@dataclass(frozen=True)
class RowRule:
    """A check across columns of one row; ``ok`` returns True where the row passes.
    ``ok_arrays``: the same check on the canonical columns as numpy arrays (column name ->
    array), for :func:`validate_rows` (a few pandas operations on a one-row frame cost more
    than the rest of its checks)."""

    name: str
    table: str
    columns: tuple[str, ...]
    reason: str
    ok: Callable[[pd.DataFrame], pd.Series]
    ok_arrays: Callable[[dict[str, Any]], np.ndarray] | None = None


def _float_rule(
    name: str,
    table: str,
    columns: tuple[str, ...],
    reason: str,
    check: Callable[[dict[str, Any]], np.ndarray],
) -> RowRule:
    """A row rule defined once on float64 arrays (missing: NaN): ``validate_rows`` runs
    ``check`` on its arrays, ``validate`` on the frame's columns converted to them."""

    def ok(d: pd.DataFrame) -> pd.Series:
        arrays = {c: d[c].to_numpy(np.float64, na_value=np.nan) for c in columns}
        return pd.Series(check(arrays), index=d.index)

    return RowRule(name, table, columns, reason, ok, ok_arrays=check)


ROW_RULES: tuple[RowRule, ...] = (
    _float_rule(
        "net_mass_le_gross_mass",
        "declarations",
        ("net_mass_kg", "gross_mass_kg"),
        "net mass above gross mass",
        # a missing mass passes: a comparison with NaN is False
        lambda a: ~(a["net_mass_kg"] > a["gross_mass_kg"]),
    ),
    RowRule(
        "offence_has_risk_area",
        "outcomes",
        ("offence_found", "risk_area"),
        "offence found without a risk area",
        lambda d: ~(d["offence_found"].fillna(False).astype(bool) & d["risk_area"].isna()),
    ),
    RowRule(
        "report_not_before_seizure",
        "seizures",
        ("report_date", "seizure_date"),
        "reported before the seizure was made",
        lambda d: ~(d["report_date"] < d["seizure_date"]).fillna(False).astype(bool),
    ),
)


def canonical_dtype(column: Column) -> str:
    """The pandas dtype of a canonical column (optional bools are nullable ``boolean``)."""
    if column.dtype == "bool" and not column.required:
        return "boolean"
    return PANDAS_DTYPES[column.dtype]


def date_max(today: date | None = None) -> pd.Timestamp:
    """Latest acceptable date: the end of ``today`` (default: the current day)."""
    return pd.Timestamp(today or date.today()) + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")


def schema(table: str, *, today: date | None = None) -> pa.DataFrameSchema:
    """The pandera schema of a canonical table: dtypes, nullability, value and row checks, key."""
    columns = {}
    for col in TABLES[table]:
        checks = [getattr(pa.Check, op)(v) for op, v in BOUNDS.get(col.name, ())]
        if col.name in ALLOWED_VALUES:
            checks.append(pa.Check.isin(ALLOWED_VALUES[col.name]))
        if col.name in PATTERNS:
            checks.append(pa.Check.str_matches(rf"^{PATTERNS[col.name][0]}$"))
        if col.dtype == "date":
            checks.append(pa.Check.in_range(DATE_MIN, date_max(today)))
        # a repaired number is missing; a repaired code or party is `unknown`, never empty
        set_missing = col.name in REPAIRS and not isinstance(REPAIRS[col.name], str)
        nullable = not col.required or (table == "declarations" and set_missing)
        columns[col.name] = pa.Column(canonical_dtype(col), checks, nullable=nullable)
    row_checks = [pa.Check(r.ok, name=r.name) for r in ROW_RULES if r.table == table]
    return pa.DataFrameSchema(
        columns, checks=row_checks, unique=TABLE_KEYS[table], strict=True, name=table
    )


def empty_table(table: str) -> pd.DataFrame:
    """A canonical table with no rows and the canonical dtypes."""
    return pd.DataFrame({c.name: pd.Series(dtype=canonical_dtype(c)) for c in TABLES[table]})


def check_columns(df: pd.DataFrame, table: str, *, name: str = "") -> list[str]:
    """Raise :class:`RiskmlError` when a required column is missing; return the unknown ones."""
    name = name or table
    missing = [c for c in column_names(table, required_only=True) if c not in df.columns]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        cols = ", ".join(repr(c) for c in missing)
        raise RiskmlError(
            f"{name}: missing required column{plural} {cols}; add it or map it in the ingest "
            "mapping (see docs/data-contract.md)"
        )
    known = {*column_names(table), *SOURCE_COLUMNS}
    return [str(c) for c in df.columns if c not in known]


@dataclass
class ValidationResult:
    """Good rows with canonical dtypes, the quarantined rows with reasons, and a summary."""

    declarations: pd.DataFrame
    outcomes: pd.DataFrame
    quarantine: pd.DataFrame
    report: dict[str, Any]


# --- conversion to canonical dtypes ---------------------------------------------------------


def as_text(s: pd.Series) -> pd.Series:
    """Values as stripped text (``str`` dtype); empty text is missing; integral floats lose '.0'."""
    if pd.api.types.is_float_dtype(s) and not pd.api.types.is_bool_dtype(s):
        values = s.to_numpy(dtype=float, na_value=np.nan)
        finite = np.isfinite(values)
        if (values[finite] % 1 == 0).all() and (np.abs(values[finite]) < 2**53).all():
            s = s.astype("Int64")
    out = s.astype("str").str.strip()
    return out.mask(out == "")


def _parse(s: pd.Series, parser: Callable[[pd.Series], pd.Series]) -> tuple[pd.Series, pd.Series]:
    """``(parsed, bad)``: typed values parse directly, only the leftovers go through text.

    ``bad`` marks values that are present but do not parse. Rendering a whole mixed column as
    text first would be slow (dates, floats), hence the two passes.
    """
    if s.dtype == object:
        try:
            out = parser(s)
        except (TypeError, ValueError):
            out = None
        if out is not None:
            retry = (out.isna() & s.notna()).to_numpy()
            bad = pd.Series(False, index=s.index)
            if retry.any():
                text = as_text(s[retry])
                again = parser(text)
                out = out.copy()
                out[retry] = again
                bad[retry] = (text.notna() & again.isna()).to_numpy()
            return out, bad
    text = as_text(s)
    out = parser(text)
    return out, text.notna() & out.isna()


def _parse_numbers(s: pd.Series) -> pd.Series:
    out = pd.to_numeric(s, errors="coerce").astype("float64")
    return out.where(np.isfinite(out.fillna(0.0)))


def _to_float(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        out = s.astype("float64")
        bad = out.notna() & ~np.isfinite(out.fillna(0.0))
        return out.mask(bad), bad
    return _parse(s, _parse_numbers)


def _to_int(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    num, bad = _to_float(s)
    bad |= num.notna() & (num % 1 != 0)
    return num.mask(bad), bad


def _naive(out: pd.Series) -> pd.Series:
    if isinstance(out.dtype, pd.DatetimeTZDtype):
        return out.dt.tz_convert("UTC").dt.tz_localize(None)
    return out


def _parse_dates(s: pd.Series) -> pd.Series:
    try:
        out = pd.to_datetime(s, format="ISO8601", errors="coerce")
    except (TypeError, ValueError):  # mixed time zones
        out = pd.to_datetime(s, format="ISO8601", errors="coerce", utc=True)
    return _naive(out)


def _to_date(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    s = _naive(s)
    if pd.api.types.is_datetime64_dtype(s):
        return s, pd.Series(False, index=s.index)
    return _parse(s, _parse_dates)


def parse_bool(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Nullable booleans from true/false, yes/no, 1/0 (any case), and where a value was invalid."""
    if pd.api.types.is_bool_dtype(s):
        return s.astype("boolean"), pd.Series(False, index=s.index)
    text = as_text(s).str.lower()
    out = pd.Series(pd.NA, index=s.index, dtype="boolean")
    out[text.isin(_TRUE).to_numpy(bool)] = True
    out[text.isin(_FALSE).to_numpy(bool)] = False
    return out, text.notna() & out.isna()


def _to_string(s: pd.Series, name: str) -> tuple[pd.Series, pd.Series]:
    text = as_text(s)
    if name in ALLOWED_VALUES:
        text = text.str.lower()
    return text, pd.Series(False, index=s.index)


_CONVERTERS = {"float": _to_float, "int": _to_int, "date": _to_date, "bool": parse_bool}
_NOT_A = {
    "float": "a number",
    "int": "an integer",
    "date": "a date (YYYY-MM-DD)",
    "bool": "a boolean (true/false, 1/0)",
}


# --- collecting failures --------------------------------------------------------------------


_NO_FAILURES = pd.DataFrame(
    {
        "pos": pd.Series(dtype="int64"),
        "column": pd.Series(dtype="str"),
        "check": pd.Series(dtype="str"),
        "reason": pd.Series(dtype="str"),
    }
)


def _failure(
    mask: pd.Series | np.ndarray,
    column: str,
    check: str,
    reasons: Callable[[np.ndarray], list[str]] | str,
) -> pd.DataFrame:
    pos = np.flatnonzero(np.asarray(mask, dtype=bool))
    if len(pos) == 0:
        return _NO_FAILURES
    reason = [reasons] * len(pos) if isinstance(reasons, str) else reasons(pos)
    return pd.DataFrame({"pos": pos, "column": column, "check": check, "reason": reason})


def _fmt(v: Any) -> str:
    if isinstance(v, pd.Timestamp):
        return v.strftime("%Y-%m-%d") if v == v.normalize() else v.isoformat()
    if isinstance(v, float):
        return f"{v:.15g}"  # short, yet never rounds a value a person will look up
    return str(v)


def _convert_column(df: pd.DataFrame, col: Column) -> tuple[pd.Series, pd.Series | None]:
    """A column of ``df`` as canonical values, and where a present value did not convert (None:
    the column is absent, its values all missing)."""
    if col.name not in df.columns:
        return pd.Series(index=df.index, dtype=canonical_dtype(col)), None
    if col.dtype == "string":
        return _to_string(df[col.name], col.name)
    return _CONVERTERS[col.dtype](df[col.name])


def _duplicate_rows(frame: pd.DataFrame, table: str) -> np.ndarray:
    """Rows of converted ``frame`` whose complete key another row repeats."""
    key = TABLE_KEYS[table]
    required_key = [k for k in key if k in column_names(table, required_only=True)]
    key_ok = frame[required_key].notna().all(axis=1)
    return (frame.duplicated(key, keep=False) & key_ok).to_numpy()


def _convert_table(
    df: pd.DataFrame, table: str, today: date | None, duplicates: np.ndarray | None = None
) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """Canonical columns (missing optional ones as nulls) and the per-row failures found, one
    frame per check in a fixed order (empty when the check found nothing). ``duplicates``:
    which rows repeat a key, found over the whole table when ``df`` is a part of it."""
    n = len(df)
    conv: dict[str, pd.Series] = {}
    failures: list[pd.DataFrame] = []
    for col in TABLES[table]:
        values, bad = _convert_column(df, col)
        if bad is None:
            conv[col.name] = values
            continue
        raw = df[col.name]
        failures.append(
            _failure(
                bad,
                col.name,
                f"not {_NOT_A.get(col.dtype, '')}",
                lambda p, c=col, r=raw: [
                    f"column {c.name}: {t!r} is not {_NOT_A[c.dtype]}"
                    for t in as_text(r.iloc[p]).tolist()
                ],
            )
        )
        if col.required:
            failures.append(
                _failure(
                    values.isna() & ~bad,
                    col.name,
                    "missing value",
                    f"column {col.name}: missing value",
                )
            )
        failures.extend(_value_failures(col, values, today))
        conv[col.name] = values
    frame = pd.DataFrame(conv, index=pd.RangeIndex(n))
    for rule in ROW_RULES:
        if rule.table == table:
            failures.append(
                _failure(~rule.ok(frame), ", ".join(rule.columns), rule.name, rule.reason)
            )
    dup = _duplicate_rows(frame, table) if duplicates is None else duplicates
    failures.append(_failure(dup, ", ".join(TABLE_KEYS[table]), "duplicate key", "duplicate key"))
    return frame, failures


def _value_failures(col: Column, values: pd.Series, today: date | None) -> list[pd.DataFrame]:
    out = []
    present = values.notna()
    arr = _LazyValues(values)
    for op, bound in BOUNDS.get(col.name, ()):
        sym, fn = _OPS[op]
        bad = present & ~fn(values, bound).fillna(True).astype(bool)
        out.append(
            _failure(
                bad,
                col.name,
                f"not {sym} {bound:g}",
                lambda p, s=sym, b=bound: [
                    f"column {col.name}: {_fmt(arr[i])} is not {s} {b:g}" for i in p
                ],
            )
        )
    if col.name in ALLOWED_VALUES:
        allowed = ALLOWED_VALUES[col.name]
        bad = present & ~values.isin(allowed)
        out.append(
            _failure(
                bad,
                col.name,
                "unknown value",
                lambda p: [
                    f"column {col.name}: {arr[i]!r} is not one of {', '.join(allowed)}" for i in p
                ],
            )
        )
    if col.name in PATTERNS:
        pattern, meaning = PATTERNS[col.name]
        bad = present & ~values.str.fullmatch(pattern).fillna(False).astype(bool)
        out.append(
            _failure(
                bad,
                col.name,
                f"not {meaning}",
                lambda p: [f"column {col.name}: {arr[i]!r} is not {meaning}" for i in p],
            )
        )
    if col.dtype == "date":
        latest = date_max(today)
        out.append(
            _failure(
                present & (values < DATE_MIN),
                col.name,
                "before 1990",
                lambda p: [
                    f"column {col.name}: {_fmt(arr[i])} is before {DATE_MIN:%Y-%m-%d}" for i in p
                ],
            )
        )
        out.append(
            _failure(
                present & (values > latest),
                col.name,
                "in the future",
                lambda p: [
                    f"column {col.name}: {_fmt(arr[i])} is in the future (after {latest:%Y-%m-%d})"
                    for i in p
                ],
            )
        )
    return out


class _LazyValues:
    """Element access to a Series by position, without converting the whole column."""

    def __init__(self, values: pd.Series) -> None:
        self._values = values

    def __getitem__(self, i: int) -> Any:
        return self._values.iat[i]


def _outcome_link_failures(
    outcomes: pd.DataFrame, declarations_in: pd.DataFrame, declarations_ok: pd.DataFrame
) -> list[pd.DataFrame]:
    """Outcomes whose declaration is unknown or quarantined, or whose result predates it."""
    keys = outcomes[KEY].reset_index(drop=True)
    good = declarations_ok[[*KEY, "accepted_date"]].drop_duplicates(KEY)
    linked = keys.merge(good, on=KEY, how="left", validate="many_to_one")
    key_ok = keys.notna().all(axis=1).to_numpy()
    missing = key_ok & linked["accepted_date"].isna().to_numpy()
    known = (
        keys.merge(
            declarations_in[KEY].dropna().drop_duplicates(), on=KEY, how="left", indicator=True
        )["_merge"]
        .eq("both")
        .to_numpy()
    )
    early = outcomes["result_date"].to_numpy() < linked["accepted_date"].to_numpy()
    acc = linked["accepted_date"].to_numpy()
    res = outcomes["result_date"].to_numpy()
    col = ", ".join(KEY)
    return [
        _failure(
            missing & known,
            col,
            "declaration quarantined",
            "the declaration of this outcome was quarantined",
        ),
        _failure(
            missing & ~known,
            col,
            "unknown declaration",
            "no declaration with this (declaration_id, item_no)",
        ),
        _failure(
            early,
            "result_date",
            "result before acceptance",
            lambda p: [
                f"column result_date: {_fmt(pd.Timestamp(res[i]))} is before the declaration's "
                f"accepted_date {_fmt(pd.Timestamp(acc[i]))}"
                for i in p
            ],
        ),
    ]


# --- assembling the result ------------------------------------------------------------------


def _repairs(frame: pd.DataFrame, table: str, failures: pd.DataFrame) -> pd.DataFrame:
    """``failures`` with its ``action``: for a declaration whose failures are all repairable
    (:data:`REPAIRS`), the value is set missing (or ``unknown``) in ``frame`` and the row kept
    (``kept: cif_value set missing``); every other failing row is left out."""
    failures = failures.copy()
    if failures.empty:
        failures["action"] = pd.Series(dtype="str")
        return failures
    left_out = NOT_SCORED if table == "declarations" else LEFT_OUT
    target = pd.Series(None, index=failures.index, dtype=object)
    if table == "declarations":
        by_rule = failures["check"].map(RULE_REPAIRS)
        own = failures["column"].where(
            failures["column"].isin(list(REPAIRS))
            & (failures["check"] != "not in the mapping's values")
        )
        target = by_rule.fillna(own)
    hard = set(failures.loc[target.isna(), "pos"].tolist())
    soft = target.notna() & ~failures["pos"].isin(hard)
    for column, pos in failures.loc[soft, "pos"].groupby(target[soft]):
        frame.loc[pos.to_numpy(), column] = REPAIRS[column]
    word = target.map(lambda c: UNKNOWN if isinstance(REPAIRS.get(c), str) else "missing")
    failures["action"] = np.where(soft, "kept: " + target.fillna("") + " set " + word, left_out)
    return failures


def _finalise(frame: pd.DataFrame, table: str, failures: pd.DataFrame) -> pd.DataFrame:
    """Rows without a failure that leaves them out, cast to the canonical dtypes, in contract
    order."""
    keep = np.ones(len(frame), dtype=bool)
    if "action" in failures.columns:
        failures = failures[~failures["action"].str.startswith("kept")]
    keep[failures["pos"].to_numpy(dtype=np.int64)] = False
    good = frame.loc[keep].reset_index(drop=True)
    # only the columns not yet of their dtype: casting a column to its own dtype costs as much
    dtypes = {c.name: pd.api.types.pandas_dtype(canonical_dtype(c)) for c in TABLES[table]}
    return good.astype({c: d for c, d in dtypes.items() if good[c].dtype != d})


def _quarantine(
    raw: pd.DataFrame, table: str, failures: pd.DataFrame, file: str, offset: int = 0
) -> pd.DataFrame:
    """Quarantine rows of ``failures`` (positions in ``raw``, which starts at row ``offset`` of
    its file), sorted by row and column."""
    if failures.empty:
        return empty_quarantine()
    failures = failures.sort_values(["pos", "column"], kind="stable").reset_index(drop=True)
    pos = failures["pos"].to_numpy(dtype=np.int64)
    upos = np.unique(pos)
    sub = raw.iloc[upos]
    records = (
        sub.to_json(
            orient="records", lines=True, date_format="iso", force_ascii=False, default_handler=str
        )
        .rstrip("\n")
        .split("\n")
    )
    record_of = dict(zip(upos.tolist(), records, strict=True))
    rows = raw[SOURCE_ROW].to_numpy()[pos] if SOURCE_ROW in raw.columns else pos + offset
    files = (
        as_text(raw[SOURCE_FILE]).fillna(file).to_numpy(dtype=object)[pos]
        if SOURCE_FILE in raw.columns
        else file
    )

    def key_text(name: str) -> np.ndarray:
        if name not in raw.columns:
            return np.full(len(pos), None, dtype=object)
        return as_text(sub[name]).to_numpy(dtype=object)[np.searchsorted(upos, pos)]

    return pd.DataFrame(
        {
            "file": files,
            "table": table,
            "row": pd.array(rows, dtype="int64"),
            "column": failures["column"],
            "check": failures["check"],
            "reason": failures["reason"],
            "action": failures["action"],
            "declaration_id": key_text("declaration_id"),
            "item_no": key_text("item_no"),
            "record": [record_of[p] for p in pos.tolist()],
        }
    ).astype({c: "str" for c in QUARANTINE_COLUMNS if c != "row"})


DATA_QUALITY_COLUMNS: list[str] = [
    "declaration_id",
    "item_no",
    "accepted_date",
    "file",
    "row",
    "scored",
    "areas_not_scored",
    "reasons",
    "action",
]


def data_quality_list(quarantine: pd.DataFrame, areas: list[str]) -> pd.DataFrame:
    """The data-quality list: one row per declaration row that failed a data check, with its
    reasons (``; ``-joined), whether it was scored anyway (a repaired value, see
    :data:`REPAIRS`) and the areas it could not be scored for (``;``-joined; empty when
    scored). ``accepted_date`` is the row's date as given (text; empty when unreadable)."""
    q = quarantine[quarantine["table"] == "declarations"]
    if q.empty:
        return pd.DataFrame({c: pd.Series(dtype="str") for c in DATA_QUALITY_COLUMNS}).astype(
            {"row": "int64", "scored": "bool"}
        )
    dates = [json.loads(r).get("accepted_date") for r in q["record"].drop_duplicates()]
    date_of = dict(zip(q["record"].drop_duplicates(), dates, strict=True))
    g = q.assign(accepted_date=q["record"].map(date_of)).groupby(["file", "row"], sort=True)
    out = g.agg(
        declaration_id=("declaration_id", "first"),
        item_no=("item_no", "first"),
        accepted_date=("accepted_date", "first"),
        reasons=("reason", lambda r: "; ".join(dict.fromkeys(r))),
        action=("action", lambda a: "; ".join(dict.fromkeys(a))),
    ).reset_index()
    out["scored"] = out["action"].str.startswith("kept")
    out["areas_not_scored"] = np.where(out["scored"], "", ";".join(areas))
    out["accepted_date"] = out["accepted_date"].map(_date_text)
    return out[DATA_QUALITY_COLUMNS].reset_index(drop=True)


def _date_text(value: Any) -> str:
    """A record's date as ``YYYY-MM-DD`` text when it reads as one, else as given."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    parsed = pd.to_datetime(str(value), errors="coerce")
    return str(value) if pd.isna(parsed) else f"{parsed:%Y-%m-%d}"


def empty_quarantine() -> pd.DataFrame:
    """A quarantine table with no rows (a copy of one built once: building it costs more than
    checking a declaration)."""
    return _EMPTY_QUARANTINE.copy()


_EMPTY_QUARANTINE = pd.DataFrame(
    {c: pd.Series(dtype="int64" if c == "row" else "str") for c in QUARANTINE_COLUMNS}
)


def _table_report(
    rows_in: int,
    rows_kept: int,
    columns: list[str],
    failures: pd.DataFrame,
    dropped: list[str],
    table: str,
) -> dict[str, Any]:
    """A table's report: rows in, kept and quarantined, reasons counted (``failures`` in the
    order the checks found them: the order of equal counts), columns dropped and absent."""
    reasons = (failures["column"] + ": " + failures["check"]).value_counts()
    kept = failures["action"].str.startswith("kept") if len(failures) else failures["pos"].isna()
    return {
        "rows_in": rows_in,
        "rows_kept": rows_kept,
        "rows_quarantined": rows_in - rows_kept,
        "rows_kept_with_repairs": int(failures.loc[kept, "pos"].nunique()),
        "dropped_columns": dropped,
        "absent_optional_columns": [c for c in column_names(table) if c not in columns],
        "reasons": {str(k): int(v) for k, v in reasons.items()},
    }


def _schema_failures(good: pd.DataFrame, table: str, today: date | None) -> pd.DataFrame:
    """Rows of ``good`` the pandera schema rejects (none, unless the masks above miss a case)."""
    try:
        schema(table, today=today).validate(good, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        if cases["index"].isna().any():
            raise RiskmlError(f"{table}: schema check failed on whole columns:\n{cases}") from exc
        return pd.DataFrame(
            {
                "pos": cases["index"].astype("int64").to_numpy(),
                "column": cases["column"].astype("str").fillna("").to_numpy(),
                "check": "schema: " + cases["check"].astype("str"),
                "reason": (
                    "schema check "
                    + cases["check"].astype("str")
                    + " failed on "
                    + cases["failure_case"].astype("str")
                ).to_numpy(),
            }
        ).drop_duplicates()
    return pd.DataFrame(columns=["pos", "column", "check", "reason"])


def _source_failures(raw: pd.DataFrame) -> list[pd.DataFrame]:
    """Rows ingest marked for the quarantine (``source_error``: a code outside the mapping)."""
    if SOURCE_ERROR not in raw.columns:
        return []
    reason = as_text(raw[SOURCE_ERROR])
    pos = np.flatnonzero(reason.notna().to_numpy(bool))
    if len(pos) == 0:
        return []
    column = (
        as_text(raw[SOURCE_ERROR_COLUMN]).iloc[pos].fillna("").to_numpy(dtype=object)
        if SOURCE_ERROR_COLUMN in raw.columns
        else ""
    )
    return [
        pd.DataFrame(
            {
                "pos": pos,
                "column": column,
                "check": "not in the mapping's values",
                "reason": reason.iloc[pos].to_numpy(dtype=object),
            }
        )
    ]


@dataclass
class _Checked:
    """A table (or a part of it) checked: good rows, the failures found (``pos``: position in
    the part; ``slot``: which check, in the order :func:`_convert_table` runs them), the
    quarantine rows, the converted frame and the columns dropped."""

    good: pd.DataFrame
    failures: pd.DataFrame
    quarantine: pd.DataFrame
    frame: pd.DataFrame
    dropped: list[str]

    def kept(self) -> np.ndarray:
        """Whether each row of the part is among the good rows."""
        keep = np.ones(len(self.frame), dtype=bool)
        out = self.failures.loc[~self.failures["action"].str.startswith("kept"), "pos"]
        keep[out.to_numpy(dtype=np.int64)] = False
        return keep


def _validate_table(
    raw: pd.DataFrame,
    table: str,
    name: str,
    today: date | None,
    extra: Callable[[pd.DataFrame], list[pd.DataFrame]] | None = None,
    file: str = "",
    schema_check: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any], pd.DataFrame]:
    c = _check_table(raw, table, name, today, extra, file, schema_check)
    report = _table_report(
        len(c.frame), len(c.good), list(raw.columns), c.failures, c.dropped, table
    )
    return c.good, c.quarantine, report, c.frame


def _check_table(
    raw: pd.DataFrame,
    table: str,
    name: str,
    today: date | None,
    extra: Callable[[pd.DataFrame], list[pd.DataFrame]] | None = None,
    file: str = "",
    schema_check: bool = True,
    duplicates: np.ndarray | None = None,
    offset: int = 0,
) -> _Checked:
    """Check ``raw``: all of a table, or the part of it starting at row ``offset`` of its file
    (``duplicates``: its rows whose key the whole table repeats)."""
    dropped = check_columns(raw, table, name=name)
    raw = raw.reset_index(drop=True)
    frame, failures = _convert_table(raw, table, today, duplicates)
    source = _source_failures(raw)
    if extra is not None:
        failures.extend(extra(frame))
    failures = [f.assign(slot=i) for i, f in enumerate(failures) if len(f)]
    fail = pd.concat(failures or [_NO_FAILURES.assign(slot=0)], ignore_index=True)
    if source:  # the code outside the mapping says it all: no second reason for the same value
        marked = set(zip(source[0]["pos"], source[0]["column"], strict=True))
        again = [(p, c) in marked for p, c in zip(fail["pos"], fail["column"], strict=True)]
        source = [source[0].assign(slot=_SOURCE_SLOT)]
        fail = pd.concat([fail[~np.array(again, dtype=bool)], *source], ignore_index=True)
    fail = _repairs(frame, table, fail)
    good = _finalise(frame, table, fail)
    schema_fail = _schema_failures(good, table, today) if schema_check else _NO_FAILURES
    if not schema_fail.empty:  # map positions in `good` back to positions in `raw`
        out = fail.loc[~fail["action"].str.startswith("kept"), "pos"].to_numpy(dtype=np.int64)
        kept_pos = np.setdiff1d(np.arange(len(raw)), out)
        schema_fail["pos"] = kept_pos[schema_fail["pos"].to_numpy()]
        schema_fail["action"] = NOT_SCORED if table == "declarations" else LEFT_OUT
        schema_fail["slot"] = _SOURCE_SLOT + 1
        fail = pd.concat([fail, schema_fail], ignore_index=True)
        good = _finalise(frame, table, fail)
    quarantine = _quarantine(raw, table, fail, file or name, offset)
    return _Checked(good, fail, quarantine, frame, dropped)


# the slots of ingest's reasons and of the schema's, after every check of _convert_table's
_SOURCE_SLOT = 10_000


def _table_name(source: str, table: str) -> str:
    """How messages name ``table`` read from ``source``."""
    if not source or Path(source).stem == table:
        return source or table
    return f"{table} ({source})"


def validate(
    declarations: pd.DataFrame,
    outcomes: pd.DataFrame | None,
    *,
    source: str = "",
    today: date | None = None,
    schema_check: bool = True,
) -> ValidationResult:
    """Split declarations and outcomes into good rows (canonical dtypes) and quarantined rows.

    Whole-table problems (a missing required column) raise :class:`RiskmlError`; unknown
    columns are dropped and reported; every failing row check gives one quarantine row with its
    reason, and a row with any failure is left out of the good rows. ``today`` bounds the dates
    (default: the current day). ``outcomes`` None: no outcomes (an empty canonical table).

    ``schema_check=False`` leaves out the pandera schema's second pass over the good rows. The
    row checks above are built from the same definitions as the schema (``BOUNDS``,
    ``ALLOWED_VALUES``, ``PATTERNS``, ``ROW_RULES``, the table keys), so the pass finds nothing
    they missed; it costs tens of milliseconds per call whatever the size, which the scorer of
    single declarations cannot pay (tests/test_contract.py checks that both ways agree).

    Examples
    --------
    >>> res = validate(declarations, outcomes, source="data/raw")  # doctest: +SKIP
    >>> res.report["declarations"]["rows_quarantined"]  # doctest: +SKIP
    """

    check_columns(declarations, "declarations", name=_table_name(source, "declarations"))
    if outcomes is not None:
        check_columns(outcomes, "outcomes", name=_table_name(source, "outcomes"))
    decl, q_decl, r_decl, decl_frame = _validate_table(
        declarations,
        "declarations",
        _table_name(source, "declarations"),
        today,
        file=_source_file(source, "declarations"),
        schema_check=schema_check,
    )
    out, q_out, r_out = _validate_outcomes(
        outcomes, decl_frame[KEY].dropna(), decl, source, today, schema_check
    )
    return _result(decl, out, [q_decl, q_out], r_decl, r_out, source)


def _source_file(source: str, table: str) -> str:
    """How the quarantine names the file ``table`` was read from."""
    if source and Path(source).is_dir():  # the stage's raw folder
        return str(table_file(source, table))
    return source or table


def _validate_outcomes(
    outcomes: pd.DataFrame | None,
    declarations_in: pd.DataFrame,
    declarations_ok: pd.DataFrame,
    source: str,
    today: date | None,
    schema_check: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Good outcomes, their quarantine rows and report; each linked to the declarations'
    converted keys (``declarations_in``: every row's) and good rows (``declarations_ok``:
    key and ``accepted_date``)."""
    if outcomes is None:  # nothing to check: no per-call work (a scored batch has no outcomes)
        out = empty_table("outcomes")
        r_out = _table_report(0, 0, list(out.columns), _NO_FAILURES, [], "outcomes")
        return out, empty_quarantine(), r_out
    out, q_out, r_out, _ = _validate_table(
        outcomes,
        "outcomes",
        _table_name(source, "outcomes"),
        today,
        extra=lambda frame: _outcome_link_failures(frame, declarations_in, declarations_ok),
        file=_source_file(source, "outcomes"),
        schema_check=schema_check,
    )
    return out, q_out, r_out


def _result(
    decl: pd.DataFrame,
    out: pd.DataFrame,
    quarantines: list[pd.DataFrame],
    r_decl: dict[str, Any],
    r_out: dict[str, Any],
    source: str,
) -> ValidationResult:
    quarantine = pd.concat(
        [q for q in quarantines if not q.empty] or [empty_quarantine()], ignore_index=True
    )
    report = {
        "source": source,
        "declarations": r_decl,
        "outcomes": r_out,
        "quarantine_rows": len(quarantine),
    }
    return ValidationResult(decl, out, quarantine, report)


#: Up to this many rows, :func:`validate_rows` checks a declarations table value by value.
SMALL_ROWS = 64
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?")


class _Unread(Exception):
    """A value :func:`validate_rows` does not read, or one that fails a check: the caller
    runs :func:`validate`, which says what is wrong."""


def _row_text(v: Any, kind: str, allowed: bool) -> Any:
    """A string column's value as :func:`as_text` gives it (None: missing)."""
    if v is None or (isinstance(v, float) and v != v):
        return None
    if isinstance(v, str):
        t = v.strip()  # the same characters as pandas' strip (every code point compared)
    elif isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_):
        t = str(int(v))
    elif kind == "f" and isinstance(v, float) and v % 1 == 0 and abs(v) < 2**53:
        t = str(int(v))  # an integral float column is rendered as integers
    else:
        raise _Unread
    if allowed:  # lower-cased as pandas does it for ASCII (a few other letters differ)
        if not t.isascii():
            raise _Unread
        t = t.lower()
    return t or None


def _row_number(v: Any) -> float:
    """A float column's value as :func:`_to_float` parses it (NaN: missing)."""
    if v is None:
        return np.nan
    if isinstance(v, bool | np.bool_):
        raise _Unread
    if isinstance(v, float | np.floating):
        x = float(v)
    elif isinstance(v, int | np.integer):
        if abs(int(v)) >= 2**53:
            raise _Unread
        x = float(v)
    elif isinstance(v, str):
        if v == "":
            return np.nan
        if not _NUMBER.fullmatch(v):  # pandas' parser agrees with float() on these forms
            raise _Unread
        x = float(v)
    else:
        raise _Unread
    if math.isinf(x):
        raise _Unread
    return x


def _row_date(v: Any) -> Any:
    """A date column's value as :func:`_to_date` parses it (None: missing)."""
    if v is None or (isinstance(v, float) and v != v) or v is pd.NaT:
        return None
    if isinstance(v, str):
        if v == "":
            return None
        if not _ISO_DATE.fullmatch(v):
            raise _Unread
        try:
            return np.datetime64(v.replace(" ", "T"), "ns")
        except ValueError:
            raise _Unread from None
    if isinstance(v, datetime):
        if v.tzinfo is not None:
            raise _Unread
        return np.datetime64(pd.Timestamp(v).as_unit("ns").asm8)
    if isinstance(v, date):
        return np.datetime64(v, "ns")
    if isinstance(v, np.datetime64):
        return None if np.isnat(v) else v.astype("datetime64[ns]")
    raise _Unread


def _row_bool(v: Any) -> Any:
    """A bool column's value as :func:`parse_bool` parses it (None: missing)."""
    if v is None or (isinstance(v, float) and v != v) or v is pd.NA:
        return None
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, str):
        t = v.strip().lower()
    elif isinstance(v, int | np.integer | float | np.floating) and v in (0, 1):
        t = str(int(v))
    else:
        raise _Unread
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    if t == "":
        return None
    raise _Unread


def _row_value(col: Column, v: Any, kind: str, latest: pd.Timestamp) -> Any:
    """One value parsed and checked as :func:`validate` does it; :class:`_Unread` when it
    fails a check or is not in a form read here."""
    if col.dtype == "string":
        x = _row_text(v, kind, col.name in ALLOWED_VALUES)
    elif col.dtype in ("float", "int"):
        x = _row_number(v)
        if x != x:
            x = None
        elif col.dtype == "int" and x % 1 != 0:
            raise _Unread
    elif col.dtype == "date":
        x = _row_date(v)
    else:
        x = _row_bool(v)
    if x is None:
        if col.required:
            raise _Unread
        return x
    for op, bound in BOUNDS.get(col.name, ()):
        if not _OPS[op][1](x, bound):
            raise _Unread
    if col.name in ALLOWED_VALUES and x not in ALLOWED_VALUES[col.name]:
        raise _Unread
    if col.name in PATTERNS and not (x.isascii() and re.fullmatch(PATTERNS[col.name][0], x)):
        raise _Unread
    if col.dtype == "date" and not (DATE_MIN.asm8 <= x <= latest.asm8):
        raise _Unread
    return x


def validate_rows(
    declarations: pd.DataFrame, *, source: str = "", today: date | None = None
) -> pd.DataFrame | None:
    """The good rows :func:`validate` gives a small declarations table (at most
    :data:`SMALL_ROWS` rows) whose every row passes every check, found value by value instead
    of column by column (a few hundred pandas operations cost tens of milliseconds whatever the
    size: the service's single declarations). None when a row fails a check, repeats a key,
    holds a value in a form not read here (text around a number, a time zone, ...) or the table
    carries ingest's source columns: :func:`validate` then finds and explains it. A missing
    required column raises as in :func:`validate`. Same definitions (``BOUNDS``,
    ``ALLOWED_VALUES``, ``PATTERNS``, ``ROW_RULES``), same result bit for bit
    (tests/test_contract.py compares both on many rows)."""
    check_columns(declarations, "declarations", name=_table_name(source, "declarations"))
    if len(declarations) > SMALL_ROWS or set(SOURCE_COLUMNS) & set(declarations.columns):
        return None
    latest = date_max(today)
    columns: dict[str, Any] = {}
    n = len(declarations)
    try:
        for col in DECLARATION_COLUMNS:
            dtype = canonical_dtype(col)
            if col.name not in declarations.columns:
                values: list[Any] = [None] * n
            else:
                raw = declarations[col.name]
                kind = raw.dtype.kind
                if kind == "M":  # typed dates: the values as they are (naive)
                    raw = _naive(raw).astype("datetime64[ns]")
                values = [_row_value(col, v, kind, latest) for v in raw.tolist()]
            if col.dtype == "int":
                columns[col.name] = np.array(values, dtype=np.float64).astype(dtype)
            elif col.dtype == "float":
                columns[col.name] = np.array(values, dtype=np.float64)
            elif col.dtype == "date":
                columns[col.name] = np.array(values, dtype="datetime64[ns]")
            else:
                columns[col.name] = pd.array(values, dtype=dtype)
    except _Unread:
        return None
    if n > 1 and len(set(zip(columns["declaration_id"], columns["item_no"], strict=True))) < n:
        return None  # a repeated key
    for rule in ROW_RULES:
        if rule.table == "declarations" and rule.ok_arrays is not None:
            if not rule.ok_arrays(columns).all():
                return None
    good = pd.DataFrame(columns, copy=False)
    for rule in ROW_RULES:
        if rule.table == "declarations" and rule.ok_arrays is None and not rule.ok(good).all():
            return None
    return good


def validate_seizures(
    seizures: pd.DataFrame, *, source: str = "", today: date | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Split a seizures table into good rows (canonical dtypes) and quarantined rows.

    The same checks as :func:`validate` (dtypes, allowed values, HS pattern, dates, duplicate
    ``seizure_id``) plus: a record reported before its seizure date is quarantined. Returns
    ``(good, quarantine, report)``.
    """
    name = source or "seizures"
    check_columns(seizures, "seizures", name=name)
    good, quarantine, report, _ = _validate_table(seizures, "seizures", name, today)
    return good, quarantine, report


# --- stage entry ----------------------------------------------------------------------------


def _read_input(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise RiskmlError(f"{path}: file not found; run `riskml simulate` or `riskml ingest` first")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise RiskmlError(
            f"{path}: cannot be read as Parquet ({exc}); re-run the stage that wrote it"
        ) from exc


def offences_by_area(outcomes: pd.DataFrame) -> dict[str, int]:
    """Kept outcomes that found an offence, per risk area (0 for an area without any): an area
    without findings cannot be trained on this data."""
    found = outcomes.loc[outcomes["offence_found"].astype(bool), "risk_area"].value_counts()
    return {area: int(found.get(area, 0)) for area in RISK_AREAS}


#: Rows of a raw table the validate stage reads and checks at a time: its memory is bounded by
#: the batch (and one month of each table it writes), not by the length of the history.
BATCH_ROWS = 500_000


def run_validate(
    raw_dir: Path, interim_dir: Path, report_path: Path, *, batch_rows: int = BATCH_ROWS
) -> dict[str, Any]:
    """Stage ``validate``: raw tables -> good interim tables, quarantine and report JSON.

    Reads ``raw_dir/{declarations,outcomes}.parquet`` (and ``truth.parquet``, ``seizures.parquet``
    when present), writes into ``interim_dir`` the declarations, outcomes, truth and seizures
    partitioned by month and ``quarantine.parquet`` (:func:`write_interim`'s files: a month whose
    rows did not change keeps its file; truth restricted to kept declarations; truth and
    seizures empty without a raw file, as for real data without them) and ``report_path``.
    Quarantined seizure rows join the quarantine. Returns the report.

    The declarations and the truth are read and checked ``batch_rows`` rows at a time, the
    outcomes and seizures (a few per cent of the items) whole: a first pass reads the
    declarations' keys and dates (duplicate keys are found over the whole table), the second
    checks each batch and writes each month once its rows are all in (the raw rows in
    acceptance order, as ``riskml simulate`` writes them; else held to the end, in memory).
    The outputs are those of :func:`validate` on the whole tables, row for row and byte for
    byte (tests/test_contract.py). Everything is written into temporary folders that replace
    the previous outputs only once all are written: a run that fails leaves them as they were.
    """
    from contextlib import ExitStack

    from riskml.io import replacing_folder, write_json, write_parquet

    raw_dir, interim_dir, report_path = Path(raw_dir), Path(interim_dir), Path(report_path)
    source = str(raw_dir)
    paths = {t: table_file(raw_dir, t) for t in TABLES}
    for table in ("declarations", "outcomes"):
        check_columns(_raw_columns(paths[table]), table, name=str(paths[table]))
    outputs = {t: interim_table(interim_dir, t) for t in PARTITIONED_TABLES}
    with ExitStack() as stack:
        tmp = {t: stack.enter_context(replacing_folder(p)) for t, p in outputs.items()}
        decl = _stream_declarations(paths["declarations"], source, outputs, tmp, batch_rows)
        out, q_out, r_out = _validate_outcomes(
            _read_input(paths["outcomes"]), decl.keys_in, decl.keys_ok, source, None
        )
        result = _result(decl.keys_ok, out, [decl.quarantine, q_out], decl.report, r_out, source)
        _stage_outcomes(out, decl, outputs["outcomes"], tmp["outcomes"])
        rows_in, rows_kept = _stream_truth(paths["truth"], decl, outputs, tmp, batch_rows)
        result.report["truth"] = {"rows_in": rows_in, "rows_kept": rows_kept}
        result.report["offences_by_area"] = offences_by_area(out)
        # Seizure intelligence is optional: without a raw file the interim table is empty.
        seizures = empty_table("seizures")
        if paths["seizures"].exists():
            seizures, q_seizures, result.report["seizures"] = validate_seizures(
                _read_input(paths["seizures"]), source=str(paths["seizures"])
            )
            if not q_seizures.empty:
                result.quarantine = pd.concat([result.quarantine, q_seizures], ignore_index=True)
                result.report["quarantine_rows"] = len(result.quarantine)
        _stage(seizures, "seizures", outputs, tmp)
    # the partitioned tables are in place (replaced together above); then the one-file tables
    write_parquet(result.quarantine, interim_table(interim_dir, "quarantine"))
    for table in PARTITIONED_TABLES:
        table_file(interim_dir, table).unlink(missing_ok=True)  # an older layout's file
    write_json(result.report, report_path)
    return result.report


def _stage(frame: pd.DataFrame, table: str, outputs: dict[str, Path], tmp: dict[str, Path]):
    """A table partitioned by a date column of its own, written into its temporary folder."""
    from riskml.io import stage_partitioned

    stage_partitioned(frame, outputs[table], tmp[table], by=PARTITIONED_TABLES[table])


def _raw_columns(path: Path) -> pd.DataFrame:
    """A raw Parquet file's columns (no rows), checking that it exists and can be read."""
    return pd.DataFrame(columns=_parquet(path).schema_arrow.names)


def _parquet(path: Path) -> Any:
    import pyarrow.parquet as pq

    if not path.exists():
        raise RiskmlError(f"{path}: file not found; run `riskml simulate` or `riskml ingest` first")
    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise _unreadable(path, exc) from exc


def _unreadable(path: Path, exc: Exception) -> RiskmlError:
    return RiskmlError(f"{path}: cannot be read as Parquet ({exc}); re-run the stage that wrote it")


def _read_batches(
    path: Path, rows: int, columns: list[str] | None = None
) -> Iterator[tuple[int, pd.DataFrame]]:
    """``(offset, frame)``: the rows of a Parquet file about ``rows`` at a time (at least one
    frame, empty for an empty file), each frame as ``pd.read_parquet`` gives those rows of the
    whole file: the same dtypes (the pandas dtypes its writer recorded; an integer or boolean
    column holding a null anywhere is float or object throughout) and the same chunks of Arrow
    text (a row group's rows in :data:`_SCAN_ROWS` pieces: the chunks decide where a written
    column's dictionary falls back to plain encoding, hence the written files' bytes)."""
    import pyarrow as pyarrow

    file = _parquet(path)
    names = columns if columns is not None else file.schema_arrow.names
    meta = file.schema_arrow.metadata

    def frame_of(table: Any) -> pd.DataFrame:
        return table.replace_schema_metadata(meta).to_pandas().reset_index(drop=True)

    dtypes = _whole_dtypes(file, frame_of(file.schema_arrow.empty_table().select(names)))
    offset, pending = 0, []

    def frame() -> pd.DataFrame:
        out = frame_of(pyarrow.Table.from_batches(pending))
        return out.astype({c: d for c, d in dtypes.items() if out[c].dtype != d})

    try:
        for group in range(file.metadata.num_row_groups):
            for batch in file.iter_batches(_SCAN_ROWS, row_groups=[group], columns=names):
                pending.append(batch)
                if sum(len(b) for b in pending) >= rows:
                    yield offset, frame()
                    offset, pending = offset + sum(len(b) for b in pending), []
        if pending:
            yield offset, frame()
            offset += sum(len(b) for b in pending)
    except (OSError, ValueError) as exc:  # a damaged page (pyarrow's errors derive from these)
        raise _unreadable(path, exc) from exc
    if offset == 0:
        yield 0, frame_of(file.schema_arrow.empty_table().select(names))


#: The rows of a row group ``pd.read_parquet`` reads at a time (pyarrow.dataset's batch size).
_SCAN_ROWS = 2**17


def _whole_dtypes(file: Any, empty: pd.DataFrame) -> dict[str, Any]:
    """The dtype of each column of ``empty`` (``file``'s columns read without rows) when the
    whole file is read: a numpy integer or boolean column with a null in it is read as float64
    or object."""
    meta = file.metadata
    names = file.schema_arrow.names
    out = {}
    for name, dtype in empty.dtypes.items():
        if not (isinstance(dtype, np.dtype) and dtype.kind in "iub"):
            out[name] = dtype
            continue
        j = names.index(name)
        stats = [meta.row_group(g).column(j).statistics for g in range(meta.num_row_groups)]
        if all(st is not None and st.has_null_count for st in stats):
            nulls = sum(st.null_count for st in stats)
        else:
            nulls = file.read(columns=[name]).column(0).null_count
        out[name] = dtype if not nulls else np.dtype("float64" if dtype.kind in "iu" else "O")
    return out


@dataclass
class _Declarations:
    """The declarations checked by :func:`_stream_declarations`: every row's converted key
    (``keys_in``, non-null keys), the kept rows' key and date (``keys_ok``) and their items'
    months (``items``), quarantine rows and report."""

    keys_in: pd.DataFrame
    keys_ok: pd.DataFrame
    quarantine: pd.DataFrame
    report: dict[str, Any]

    def __post_init__(self) -> None:
        self.items = _ItemMonths(self.keys_ok)


class _ItemMonths:
    """The acceptance month of each declared item, looked up by its key: where an outcome or a
    truth row is stored (its item's month, :data:`riskml.catalog.ITEM_MONTH`)."""

    def __init__(self, keys: pd.DataFrame) -> None:
        # months as codes into a few labels (one label object per row would cost ~60 bytes)
        months = keys["accepted_date"].to_numpy().astype("datetime64[M]")
        uniques, self._codes = np.unique(months, return_inverse=True)
        self._labels = np.array([str(m) for m in uniques], dtype=object)  # YYYY-MM
        self._keys = keys
        self._index: _KeyIndex | None = None

    def months(self, pos: np.ndarray) -> np.ndarray:
        """The months (``YYYY-MM``) of the declared items at positions ``pos``."""
        return self._labels[self._codes[pos]]

    def every(self) -> list[str]:
        """The declared items' months, in calendar order."""
        return self._labels.tolist()

    def index(self) -> _KeyIndex:
        """The declared items' keys hashed, once: the outcomes and the truth look them up."""
        if self._index is None:
            self._index = _KeyIndex(self._keys["declaration_id"], self._keys["item_no"])
        return self._index


class _KeyIndex:
    """Positions of ``(declaration_id, item_no)`` keys among unique ones, hashed once (a join
    of each batch with millions of declarations would hash them again each time)."""

    def __init__(self, ids: pd.Series, items: pd.Series) -> None:
        self.ids = pd.Index(pd.unique(ids.to_numpy(dtype=object)))
        self.items = pd.Index(pd.unique(items.to_numpy()))
        self.keys = pd.Index(self._codes(ids, items))

    def _codes(self, ids: pd.Series, items: pd.Series) -> np.ndarray:
        i = self.ids.get_indexer(ids.to_numpy(dtype=object))
        j = self.items.get_indexer(items.to_numpy())
        return np.where((i >= 0) & (j >= 0), i.astype(np.int64) * len(self.items) + j, -1)

    def positions(self, ids: pd.Series, items: pd.Series) -> np.ndarray:
        """Each key's position among the indexed keys, -1 where it is not one of them."""
        return self.keys.get_indexer(self._codes(ids, items))


def _declaration_keys(path: Path, rows: int) -> pd.DataFrame:
    """Pass 1: every declaration row's key and acceptance date, converted as the checks
    convert them."""
    cols = {c.name: c for c in DECLARATION_COLUMNS if c.name in (*KEY, "accepted_date")}
    parts = []
    for _, raw in _read_batches(path, rows, columns=list(cols)):
        parts.append(pd.DataFrame({n: _convert_column(raw, c)[0] for n, c in cols.items()}))
    return pd.concat(parts, ignore_index=True)


def _stream_declarations(
    path: Path, source: str, outputs: dict[str, Path], tmp: dict[str, Path], rows: int
) -> _Declarations:
    """Check the declarations ``rows`` at a time, write the good ones into ``tmp``."""
    from riskml.io import MonthStream, month_labels, stage_partitioned

    keys = _declaration_keys(path, rows)
    duplicates = _duplicate_rows(keys, "declarations")
    dates = keys["accepted_date"].to_numpy()
    valid = dates[~np.isnat(dates)].astype("datetime64[M]")
    in_order = bool((valid[1:] >= valid[:-1]).all())  # else the months are held to the end
    stream = MonthStream(outputs["declarations"], tmp["declarations"])
    held, failures, quarantine = [], [], []
    kept = np.zeros(len(keys), dtype=bool)
    columns: list[str] = []
    for offset, raw in _read_batches(path, rows):
        part = _check_table(
            raw,
            "declarations",
            _table_name(source, "declarations"),
            None,
            file=_source_file(source, "declarations"),
            duplicates=duplicates[offset : offset + len(raw)],
            offset=offset,
        )
        kept[offset : offset + len(raw)] = part.kept()
        if in_order:
            stream.add(part.good, month_labels(part.good["accepted_date"]).to_numpy())
        else:
            held.append(part.good)
        failures.append(part.failures.assign(pos=part.failures["pos"] + offset))
        if not part.quarantine.empty:
            quarantine.append(part.quarantine)
        columns, dropped = list(raw.columns), part.dropped
    if in_order:
        stream.close()
    else:
        stage_partitioned(
            pd.concat(held, ignore_index=True), outputs["declarations"], tmp["declarations"]
        )
    failures = pd.concat(failures, ignore_index=True).sort_values("slot", kind="stable")
    report = _table_report(len(keys), int(kept.sum()), columns, failures, dropped, "declarations")
    keys_ok = keys.loc[kept, [*KEY, "accepted_date"]].reset_index(drop=True)
    return _Declarations(
        keys_in=keys[KEY].dropna(),
        keys_ok=keys_ok.astype({"item_no": "int64"}),
        quarantine=pd.concat(quarantine or [empty_quarantine()], ignore_index=True),
        report=report,
    )


def _stage_outcomes(out: pd.DataFrame, decl: _Declarations, folder: Path, tmp: Path) -> None:
    """The good outcomes by their items' months (row positions kept: :func:`write_interim`)."""
    from riskml.io import stage_partitioned

    pos = decl.items.index().positions(out["declaration_id"], out["item_no"])
    if (pos < 0).any():  # validate links every good outcome to a good declaration
        raise RiskmlError(f"{folder}: an outcome without a kept declaration (a bug)")
    stage_partitioned(out, folder, tmp, months=decl.items.months(pos), every=decl.items.every(),
                      keep_rows=True)  # fmt: skip


def _stream_truth(
    path: Path, decl: _Declarations, outputs: dict[str, Path], tmp: dict[str, Path], rows: int
) -> tuple[int, int]:
    """The truth rows of the kept declarations, ``rows`` at a time, by their items' months
    (the truth is
    not checked: simulated data); ``(rows in, rows kept)``."""
    from riskml.io import MonthStream, UnsortedMonths, replacing_folder, stage_partitioned

    index = decl.items.index()
    every = decl.items.every()

    def parts() -> Iterator[tuple[int, pd.DataFrame, np.ndarray]]:
        batches = _read_batches(path, rows) if path.exists() else [(0, empty_table("truth"))]
        for _, raw in batches:
            check_columns(raw, "truth", name=str(path))
            truth = raw[column_names("truth")].astype(
                {c.name: canonical_dtype(c) for c in TRUTH_COLUMNS}
            )
            pos = index.positions(truth["declaration_id"], truth["item_no"])
            keep = pos >= 0
            yield len(raw), truth.loc[keep].reset_index(drop=True), decl.items.months(pos[keep])

    rows_in = rows_kept = 0
    try:
        stream = MonthStream(outputs["truth"], tmp["truth"])
        for n, truth, labels in parts():
            stream.add(truth, labels)
            rows_in, rows_kept = rows_in + n, rows_kept + len(truth)
        stream.close(every)
    except UnsortedMonths:  # rows not in month order: the whole table, its row positions kept
        with replacing_folder(tmp["truth"]) as fresh:  # a clean folder in place of the attempt
            pieces = list(parts())
            truth = pd.concat([p[1] for p in pieces], ignore_index=True)
            rows_in, rows_kept = sum(p[0] for p in pieces), len(truth)
            labels = np.concatenate([p[2] for p in pieces])
            stage_partitioned(truth, outputs["truth"], fresh, months=labels, every=every)
    return rows_in, rows_kept


def write_interim(interim_dir: Path, tables: dict[str, pd.DataFrame]) -> dict[str, list[str]]:
    """Store validated canonical tables in ``interim_dir`` where the catalog names them
    (:func:`riskml.catalog.interim_table`), each atomically: the partitioned ones month by month
    (:data:`riskml.catalog.PARTITIONED_TABLES`: outcomes and truth by their item's acceptance
    month, from ``tables["declarations"]`` or else the stored declarations), a month whose
    content did not change keeping its stored file (bytes and time stamp,
    :func:`riskml.io.write_partitioned`). Returns, per partitioned table, the months rewritten.

    The files of :func:`run_validate` for tables already validated and held whole (the
    benchmarks' scaled worlds, test projects): the same writer and the same item months
    (:class:`_ItemMonths`); the validate stage itself streams its tables in batches."""
    from riskml.io import write_parquet, write_partitioned

    written = {}
    for table, frame in tables.items():
        path = interim_table(interim_dir, table)
        if table in PARTITIONED_TABLES:
            by = PARTITIONED_TABLES[table]
            if by == ITEM_MONTH:  # a partition for each month of the declarations, even empty
                months, every = item_months(frame, tables, interim_dir, table)
                written[table] = write_partitioned(
                    frame,
                    path,
                    months=months,
                    every=every,
                    # results arrive late, appended: the row positions kept, a late one rewrites
                    # its item's month only
                    keep_rows=table == "outcomes",
                )
            else:
                written[table] = write_partitioned(frame, path, by=by)
            table_file(interim_dir, table).unlink(missing_ok=True)  # an older layout's file
        else:
            write_parquet(frame, path)
    return written


def item_months(
    frame: pd.DataFrame, tables: dict[str, pd.DataFrame], interim_dir: Path, table: str
) -> tuple[np.ndarray, list[str]]:
    """Each row's partition: the month (``YYYY-MM``) of its item's ``accepted_date``, from
    ``tables["declarations"]`` or else the declarations stored in ``interim_dir``; and the
    declarations' months (the lookup of the validate stage, :class:`_ItemMonths`)."""
    from riskml.io import read_dataset

    decl = tables.get("declarations")
    if decl is None:
        decl = read_dataset(interim_table(interim_dir, "declarations"), [*KEY, "accepted_date"])
    items = _ItemMonths(decl[[*KEY, "accepted_date"]])
    pos = items.index().positions(frame["declaration_id"], frame["item_no"])
    missing = pos < 0
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise RiskmlError(
            f"{interim_dir}: {int(missing.sum())} {table} row(s) name an item that is not among "
            f"the declarations, e.g. row {row} ({frame[KEY].iloc[row].tolist()}); validate the "
            "declarations and this table together (`riskml validate`)"
        )
    return items.months(pos), items.every()
