"""Integer codes, days and months of declaration rows, and outcome events attached to rows.

Everything downstream works on numpy integer arrays: entity codes (internal only, never model
inputs), day numbers, and month indices. Month index 1 is the first month of the declarations;
outcome events are placed in the month their result became known.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from riskml.contract import KEY, RISK_AREAS, RiskmlError

DECLARATION_NEEDS = [
    *KEY,
    "accepted_date",
    "office",
    "transport_mode",
    "importer_id",
    "declarant_id",
    "origin_country",
    "hs_code",
    "quantity",
    "gross_mass_kg",
    "cif_value",
    "duties_paid",
]
OUTCOME_NEEDS = [*KEY, "control_kind", "result_date", "risk_area", "offence_found"]


def check_columns(frame: pd.DataFrame, needed: list[str], table: str) -> None:
    """Raise :class:`RiskmlError` naming the columns of ``table`` that are missing."""
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise RiskmlError(
            f"{table}: missing column(s) {missing}; build the table with the data contract "
            "(riskml.contract) first"
        )


#: Each dtype name resolved once (:func:`as_dtype` runs for every column of every batch).
_DTYPES: dict[str, object] = {}


def as_dtype(s: pd.Series, dtype: str) -> pd.Series:
    """``s.astype(dtype)``; ``s`` itself when it has that dtype already (the same values: a
    conversion costs tens of microseconds whatever the length). The dtype is compared as an
    object, not by name: the ``str`` dtype equals the name "string" but not the dtype."""
    if dtype not in _DTYPES:
        _DTYPES[dtype] = pd.api.types.pandas_dtype(dtype)
    return s if s.dtype == _DTYPES[dtype] else s.astype(dtype)


def optional(frame: pd.DataFrame, column: str, dtype: str) -> pd.Series:
    """``frame[column]`` as ``dtype``, or an all-missing Series when the column is absent."""
    if column in frame.columns:
        return as_dtype(frame[column], dtype)
    return pd.Series(pd.NA, index=frame.index, dtype=dtype)


def codes_of(*columns: pd.Series) -> np.ndarray:
    """Dense int64 codes of the combination of ``columns``; -1 where any part is missing."""
    combined = np.zeros(len(columns[0]), dtype=np.int64)
    missing = np.zeros(len(columns[0]), dtype=bool)
    for col in columns:
        codes, uniques = pd.factorize(col, use_na_sentinel=True)
        missing |= codes < 0
        combined = combined * (len(uniques) + 1) + codes.astype(np.int64)
    dense, _ = pd.factorize(combined)
    dense = dense.astype(np.int64)
    dense[missing] = -1
    return dense


def day_numbers(dates: pd.Series) -> np.ndarray:
    """Days since 1970-01-01 (int64); missing dates become the minimum int64."""
    values = pd.to_datetime(dates).to_numpy().astype("datetime64[D]")
    return values.astype(np.int64)


def month_numbers(dates: pd.Series) -> np.ndarray:
    """Months since 1970-01 (int64)."""
    values = pd.to_datetime(dates).to_numpy().astype("datetime64[M]")
    return values.astype(np.int64)


def treatment(decl: pd.DataFrame) -> pd.Series:
    """The tariff treatment of each row: the declared ``tariff_treatment`` code; where none is
    given, ``preference`` or ``standard`` from ``preference_claim``; missing when neither is."""
    claim = optional(decl, "preference_claim", "boolean")
    fallback = claim.map({True: "preference", False: "standard"}).astype("string")
    code = optional(decl, "tariff_treatment", "string").str.strip().replace("", pd.NA)
    return code.fillna(fallback)


def _joined(*parts: pd.Series, sep: str) -> pd.Series:
    """Text of ``parts`` joined by ``sep``; missing where any part is missing."""
    out = parts[0].astype("string")
    for part in parts[1:]:
        out = out + sep + part.astype("string")
    return out


def route(decl: pd.DataFrame) -> pd.Series:
    """Origin and country of departure of the goods, ``CN>HK`` (missing without a departure)."""
    return _joined(
        optional(decl, "origin_country", "string"),
        optional(decl, "departure_country", "string"),
        sep=">",
    )


def _rate_text(decl: pd.DataFrame) -> pd.Series:
    rate = optional(decl, "duty_rate", "float64").round(6)
    return rate.map(lambda r: f"{r:g}", na_action="ignore").astype("string")


#: Near bins of a measure per decade (:func:`measure_bins`): a bin is 1/200 of a decade in log10
#: units (0.005: about +-1.2% of the value), so a decade holds exactly 200 of them.
BINS_PER_DECADE = 200


def positive(series: pd.Series) -> np.ndarray:
    """Float values with non-positive or missing entries as NaN."""
    x = as_dtype(series, "float64").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(x > 0, x, np.nan)


def mass_kg(decl: pd.DataFrame) -> np.ndarray:
    """The mass of each row: its net mass, else its gross mass (NaN where neither is positive)."""
    net = positive(optional(decl, "net_mass_kg", "float64"))
    return np.where(np.isnan(net), positive(decl["gross_mass_kg"]), net)


def band_measure(decl: pd.DataFrame, measure: str) -> np.ndarray:
    """A declared measure of each row, NaN where it is missing or not positive: ``value`` (CIF),
    ``mass`` (:func:`mass_kg`) or ``unit_value`` (CIF per kg of that mass)."""
    cif = positive(decl["cif_value"])
    if measure == "value":
        return cif
    if measure == "mass":
        return mass_kg(decl)
    if measure == "unit_value":
        return cif / mass_kg(decl)
    raise ValueError(f"unknown band measure {measure!r}")


def measure_bins(decl: pd.DataFrame, measure: str, *, decade: bool) -> pd.Series:
    """Each row's near bin of ``measure`` (``floor(log10(x) * BINS_PER_DECADE)``), or with
    ``decade`` its decade (the near bin floor-divided by ``BINS_PER_DECADE``, so that every near
    bin lies in exactly one decade); missing where the measure is (a 0 value has no band)."""
    x = band_measure(decl, measure)
    with np.errstate(invalid="ignore", divide="ignore"):
        near = np.floor(np.log10(x) * BINS_PER_DECADE)
    ok = np.isfinite(near)
    bins = np.zeros(len(x), dtype=np.int64)
    bins[ok] = near[ok].astype(np.int64)
    if decade:
        bins = bins // BINS_PER_DECADE
    return pd.Series(pd.arrays.IntegerArray(bins, ~ok), index=decl.index)


#: The band measures whose bins are derived key columns ``<measure>_decade`` and
#: ``<measure>_near`` (riskml.features.bands).
BAND_MEASURES = ("value", "mass", "unit_value")

#: Key columns derived from declared ones, for entity histories of peers (each a single
#: column, so that a profile keyed on HS6 and one of them stays a pair, as the feature store's
#: packed keys need): the route, the route with the tariff treatment, and the tariff line (the
#: treatment and the ad valorem rate applied: under one HS6, the national subheading and the
#: regime the declarant chose). Each is built from a :class:`Prepared`'s columns, so that the
#: parts two of them share (the route, the treatment) are built once per table. And the value
#: bands' bins of each measure (``<measure>_decade``, ``<measure>_near``: whole numbers).
DERIVED: dict[str, Callable[[Prepared], pd.Series]] = {
    "route": lambda p: route(p.declarations),
    "treatment": lambda p: treatment(p.declarations),
    "route_treatment": lambda p: _joined(p.column("route"), p.column("treatment"), sep="|"),
    "tariff_line": lambda p: _joined(p.column("treatment"), _rate_text(p.declarations), sep="@"),
    **{
        f"{m}_{kind}": lambda p, m=m, d=(kind == "decade"): measure_bins(
            p.declarations, m, decade=d
        )
        for m in BAND_MEASURES
        for kind in ("decade", "near")
    },
}


#: Up to this many rows, text columns and the DERIVED keys are read value by value
#: (:meth:`Prepared.cells`): a pandas string method costs tens of microseconds a call whatever
#: the length, far more than the values of a scored declaration or a few.
SMALL_BATCH = 64


def text_cells(frame: pd.DataFrame, column: str) -> np.ndarray:
    """The values of ``optional(frame, column, "string")`` as an object array (None: missing)."""
    if column not in frame.columns:
        return np.full(len(frame), None, dtype=object)
    s = frame[column]
    if not isinstance(s.dtype, pd.StringDtype):  # text of either missing-value kind reads as is
        s = s.astype("string")
    return s.to_numpy(dtype=object, na_value=None)


def _float_cells(frame: pd.DataFrame, column: str) -> np.ndarray:
    """The values of ``optional(frame, column, "float64")`` (NaN: missing)."""
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    s = frame[column]
    if not pd.api.types.is_float_dtype(s.dtype):
        s = s.astype("float64")
    return s.to_numpy(np.float64, na_value=np.nan)


def _joined_cells(*parts: np.ndarray, sep: str) -> np.ndarray:
    """:func:`_joined` of a few rows' cells, value by value (None where any part is missing)."""
    rows = zip(*parts, strict=True)
    return np.array([None if None in row else sep.join(row) for row in rows], dtype=object)


def _treatment_cells(decl: pd.DataFrame) -> np.ndarray:
    """:func:`treatment` of a few rows, value by value (Python's ``strip`` takes the characters
    pandas' takes: riskml.contract compares every code point)."""
    claims = (
        optional(decl, "preference_claim", "boolean").to_numpy(dtype=object, na_value=None)
        if "preference_claim" in decl.columns
        else [None] * len(decl)
    )
    out = []
    for code, claim in zip(text_cells(decl, "tariff_treatment"), claims, strict=True):
        if code is not None:
            code = code.strip() or None  # empty text is no code
        if code is None and claim is not None:
            code = "preference" if claim else "standard"
        out.append(code)
    return np.array(out, dtype=object)


def _rate_cells(decl: pd.DataFrame) -> np.ndarray:
    """:func:`_rate_text` of a few rows, value by value (the same rounding: numpy's)."""
    rate = np.round(_float_cells(decl, "duty_rate"), 6)
    return np.array([None if r != r else f"{r:g}" for r in rate.tolist()], dtype=object)


def _bin_cells(decl: pd.DataFrame, measure: str, *, decade: bool) -> np.ndarray:
    """:func:`measure_bins` of a few rows, value by value (Python ints; None: no bin)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        near = np.floor(np.log10(band_measure(decl, measure)) * BINS_PER_DECADE)
    bins = [
        None if not np.isfinite(v) else int(v) // BINS_PER_DECADE if decade else int(v)
        for v in near.tolist()
    ]
    return np.array(bins, dtype=object)


#: :data:`DERIVED` of a few rows, value by value: the same keys (tests/test_prepare.py compares
#: both on varied rows) without pandas' per-call cost.
DERIVED_CELLS: dict[str, Callable[[Prepared], np.ndarray]] = {
    "route": lambda p: _joined_cells(
        p.cells("origin_country"), p.cells("departure_country"), sep=">"
    ),
    "treatment": lambda p: _treatment_cells(p.declarations),
    "route_treatment": lambda p: _joined_cells(p.cells("route"), p.cells("treatment"), sep="|"),
    "tariff_line": lambda p: _joined_cells(
        p.cells("treatment"), _rate_cells(p.declarations), sep="@"
    ),
    **{
        f"{m}_near": lambda p, m=m: _bin_cells(p.declarations, m, decade=False)
        for m in BAND_MEASURES
    },
    # A decade bin is its near bin's decade: read the measure once for both.
    **{
        f"{m}_decade": lambda p, m=m: np.array(
            [None if b is None else b // BINS_PER_DECADE for b in p.cells(f"{m}_near").tolist()],
            dtype=object,
        )
        for m in BAND_MEASURES
    },
}


@dataclass
class Prepared:
    """Declaration rows as arrays, and the outcome events known per row and month."""

    declarations: pd.DataFrame
    day: np.ndarray
    month: np.ndarray  # 1..n_months
    n_months: int
    first_month: int  # absolute month (months since 1970-01) of month index 1
    hs4: pd.Series
    hs6: pd.Series
    hs2: pd.Series
    codes: dict[str, np.ndarray] = field(default_factory=dict)
    derived: dict[str, pd.Series] = field(default_factory=dict)  # DERIVED columns, built once
    derived_cells: dict[str, np.ndarray] = field(default_factory=dict)  # DERIVED_CELLS, once
    controls: pd.DataFrame = field(default_factory=pd.DataFrame)  # row, month, kind
    # findings: row, month, day, area, count (first result of an item/control/area), duty
    findings: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def horizon(self) -> int:
        """The last month index holding a declaration or an outcome event."""
        months = [self.n_months]
        for events in (self.controls, self.findings):
            if len(events):
                months.append(int(events["month"].max()))
        return max(months)

    def code(self, *columns: str) -> np.ndarray:
        """Codes of an entity (a column or a tuple of columns), computed once."""
        name = "×".join(columns)
        if name not in self.codes:
            parts = [self.column(c) for c in columns]
            self.codes[name] = codes_of(*parts)
        return self.codes[name]

    def column(self, name: str) -> pd.Series:
        if name == "hs4":
            return self.hs4
        if name == "hs6":
            return self.hs6
        if name == "hs2":
            return self.hs2
        if name in DERIVED:
            if name not in self.derived:
                self.derived[name] = DERIVED[name](self)
            return self.derived[name]
        return optional(self.declarations, name, "string")

    def cells(self, name: str) -> np.ndarray:
        """The values of :meth:`column` as an object array (None: missing); up to
        :data:`SMALL_BATCH` rows read and derived value by value (:data:`DERIVED_CELLS`)."""
        if len(self.declarations) > SMALL_BATCH or name in ("hs4", "hs6", "hs2"):
            return self.column(name).to_numpy(dtype=object, na_value=None)
        if name in DERIVED_CELLS:
            if name not in self.derived_cells:
                self.derived_cells[name] = DERIVED_CELLS[name](self)
            return self.derived_cells[name]
        return text_cells(self.declarations, name)


def _attach_rows(declarations: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """Outcomes with the position of their declaration row (outcomes of unknown items dropped)."""
    rows = pd.DataFrame(
        {
            "declaration_id": declarations["declaration_id"].astype("string").to_numpy(),
            "item_no": declarations["item_no"].astype("int64").to_numpy(),
            "row": np.arange(len(declarations), dtype=np.int64),
        }
    ).drop_duplicates(KEY)
    o = pd.DataFrame(
        {
            "declaration_id": outcomes["declaration_id"].astype("string").to_numpy(),
            "item_no": outcomes["item_no"].astype("int64").to_numpy(),
            "control_kind": outcomes["control_kind"].astype("string").to_numpy(),
            "result_date": pd.to_datetime(outcomes["result_date"]).to_numpy(),
            "risk_area": outcomes["risk_area"].astype("string").str.strip().to_numpy(),
            "offence_found": outcomes["offence_found"]
            .astype("boolean")
            .fillna(False)
            .to_numpy(bool),
            "additional_duty": optional(outcomes, "additional_duty", "float64")
            .fillna(0.0)
            .to_numpy(),
        }
    )
    o = o[o["result_date"].notna().to_numpy()]
    return o.merge(rows, on=KEY, how="inner", sort=False)


#: The events of a table without outcomes.
_NO_CONTROLS = pd.DataFrame(
    {"row": np.zeros(0, np.int64), "month": np.zeros(0, np.int64), "kind": []}
)
_NO_FINDINGS = pd.DataFrame(
    {c: np.zeros(0, np.int64) for c in ("row", "month", "day")}
    | {"area": np.zeros(0, object), "count": np.zeros(0), "duty": np.zeros(0)}
)


def prepare(
    declarations: pd.DataFrame,
    outcomes: pd.DataFrame,
    *,
    first_month: int | None = None,
    keep_late: bool = False,
) -> Prepared:
    """Validate the needed columns and turn the tables into codes, days, months and events.

    ``first_month`` (absolute, months since 1970-01) numbers the months from another table's start
    (a batch scored against a stored history); by default the declarations' first month. With
    ``keep_late``, outcomes known in or after the last declaration month are kept (a stored
    history answers for months after its end); by default they are dropped, since no month start
    of these declarations comes after them.
    """
    check_columns(declarations, DECLARATION_NEEDS, "declarations")
    check_columns(outcomes, OUTCOME_NEEDS, "outcomes")
    if declarations["accepted_date"].isna().any():
        raise RiskmlError("declarations: accepted_date has missing values; validate the data first")
    decl = declarations.reset_index(drop=True)
    dates = pd.to_datetime(decl["accepted_date"]).to_numpy()  # converted once for both
    abs_month = dates.astype("datetime64[M]").astype(np.int64)  # as month_numbers
    if first_month is None:
        first_month = int(abs_month.min()) if len(decl) else 0
    first = first_month
    month = abs_month - first + 1
    n_months = int(month.max()) if len(decl) else 0
    hs = decl["hs_code"].astype("string").str.strip()
    prepared = Prepared(
        declarations=decl,
        day=dates.astype("datetime64[D]").astype(np.int64),  # as day_numbers
        month=month,
        n_months=n_months,
        first_month=first,
        hs4=hs.str.slice(0, 4),
        hs6=hs.str.slice(0, 6),
        hs2=hs.str.slice(0, 2),
    )

    if outcomes.empty:  # new declarations scored against a stored history: no events
        # shallow copies of frames built once (read only: a change would copy, not write)
        prepared.controls = _NO_CONTROLS.copy(deep=False)
        prepared.findings = _NO_FINDINGS.copy(deep=False)
        return prepared
    o = _attach_rows(decl, outcomes)
    o_month = month_numbers(o["result_date"]) - first + 1
    # Results known before the first month count from month 1; results known in or after the last
    # month can never be before a month start of the data.
    o["month"] = np.clip(o_month, 0, None)
    o["day"] = day_numbers(o["result_date"])
    if not keep_late:
        o = o[o["month"].to_numpy() < n_months]
    controls = (
        o.sort_values("result_date", kind="stable")
        .drop_duplicates(["row", "control_kind"])[["row", "month", "control_kind"]]
        .rename(columns={"control_kind": "kind"})
        .reset_index(drop=True)
    )
    found = o[o["offence_found"].to_numpy() & o["risk_area"].isin(RISK_AREAS).to_numpy(bool)]
    # One finding per (item, control, area), counted when first known; duty counted at each
    # result's own date, so that a later reassessment is not known early.
    found = found.sort_values("result_date", kind="stable")
    findings = pd.DataFrame(
        {
            "row": found["row"].to_numpy(),
            "month": found["month"].to_numpy(),
            "day": found["day"].to_numpy(),
            "area": found["risk_area"].to_numpy(),
            "count": (~found.duplicated(["row", "control_kind", "risk_area"])).to_numpy(float),
            "duty": found["additional_duty"].to_numpy(),
        }
    )
    prepared.controls = controls
    prepared.findings = findings
    return prepared
