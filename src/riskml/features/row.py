"""Features of a declaration item on its own: value ratios, goods, route and calendar.

These use nothing but the row itself, so they are causal by construction and run per partition.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from riskml.contract import TRANSPORT_MODES
from riskml.features.prepare import SMALL_BATCH, Prepared, as_dtype, mass_kg, optional
from riskml.features.prepare import positive as _positive

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def unit_values(decl: pd.DataFrame) -> pd.DataFrame:
    """Log unit value per kg (CIF / net mass, falling back to gross mass) and per quantity unit."""
    cif = _positive(decl["cif_value"])
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame(
            {
                "uv_kg_log": np.log(cif / mass_kg(decl)),
                "uv_q_log": np.log(cif / _positive(decl["quantity"])),
            }
        )


def _is_zero(series: pd.Series) -> np.ndarray:
    """1 where the value is 0, 0 where it is positive, NaN where it is missing."""
    x = as_dtype(series, "float64").to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(x), np.nan, (x == 0).astype(np.float64))


def value_features(decl: pd.DataFrame) -> dict[str, np.ndarray]:
    """Duty rate, duties/CIF, CIF/FOB, log CIF, a declared value of 0 and the preference
    claim."""
    cif = _positive(decl["cif_value"])
    fob = _positive(optional(decl, "fob_value", "float64"))
    duties = as_dtype(decl["duties_paid"], "float64").to_numpy(np.float64, na_value=np.nan)
    pref = optional(decl, "preference_claim", "boolean")
    return {
        "duty_rate": optional(decl, "duty_rate", "float64").to_numpy(np.float64, na_value=np.nan),
        "duty_to_cif": _ratio(duties, cif),
        "cif_to_fob": _ratio(cif, fob),
        "log_cif": np.log(cif),
        "zero_value": _is_zero(decl["cif_value"]),
        "preference_claim": pref.astype("float64").to_numpy(np.float64, na_value=np.nan),
    }


def _leading_number(text: pd.Series) -> np.ndarray:
    """The number its first two characters make of each text (NaN: none, or missing)."""
    number = pd.to_numeric(text.str.slice(0, 2), errors="coerce")
    return number.astype("float64").to_numpy(np.float64, na_value=np.nan)


def _leading_number_cells(cells: np.ndarray) -> np.ndarray:
    """:func:`_leading_number` of a few values, value by value: two ASCII digits are read
    directly, any other text through :func:`_leading_number` itself."""
    out = np.full(len(cells), np.nan)
    for i, t in enumerate(cells.tolist()):
        if t is None:
            continue
        head = t[:2]
        if head.isascii() and head.isdigit():
            out[i] = float(int(head))
        else:
            out[i] = _leading_number(pd.Series([t], dtype="string"))[0]
    return out


def goods_features(prep: Prepared) -> dict[str, np.ndarray]:
    """HS chapter, masses (and a declared mass of 0), quantity and the requested procedure."""
    decl = prep.declarations
    net = _positive(optional(decl, "net_mass_kg", "float64"))
    gross = _positive(decl["gross_mass_kg"])
    if len(decl) <= SMALL_BATCH:  # value by value (the same numbers)
        procedure = [None if p is None else p.strip() for p in prep.cells("procedure")]
        chapter = _leading_number_cells(prep.cells("hs4"))
        requested = _leading_number_cells(np.array(procedure, dtype=object))
    else:
        chapter = _leading_number(prep.hs4)
        requested = _leading_number(optional(decl, "procedure", "string").str.strip())
    return {
        "hs_chapter": chapter,
        "log_gross_mass": np.log(gross),
        "net_to_gross": _ratio(net, gross),
        "zero_mass": _is_zero(decl["gross_mass_kg"]),
        "log_quantity": np.log(_positive(decl["quantity"])),
        "procedure_requested": requested,
    }


#: Transport mode → its code (the fixed vocabulary ``TRANSPORT_MODES``).
MODE_CODES = {m: i for i, m in enumerate(TRANSPORT_MODES)}


def route_features(prep: Prepared) -> dict[str, np.ndarray]:
    """Transport mode code (fixed vocabulary ``TRANSPORT_MODES``) and departure ≠ origin."""
    decl = prep.declarations
    if len(decl) <= SMALL_BATCH:  # value by value (the same codes)
        return _route_cells(prep)
    mode = decl["transport_mode"].astype("string").str.strip().str.lower()
    code = mode.map(MODE_CODES).fillna(MODE_CODES["unknown"]).astype("int64")
    dep = optional(decl, "departure_country", "string")
    differs = (dep != decl["origin_country"].astype("string")).astype("float64")
    return {
        "transport_mode_code": code.to_numpy().astype(np.int8),
        "departure_not_origin": differs.to_numpy(np.float64, na_value=np.nan),
    }


def _route_cells(prep: Prepared) -> dict[str, np.ndarray]:
    """:func:`route_features` of a few rows, value by value: Python's ``strip`` takes the
    characters pandas' takes (riskml.contract compares every code point) and lower-cases ASCII
    as pandas does; a mode with other characters goes through the column-wise steps."""
    unknown = MODE_CODES["unknown"]
    code = np.full(len(prep.day), unknown, dtype=np.int8)
    for i, m in enumerate(prep.cells("transport_mode").tolist()):
        if m is None:
            continue
        if m.isascii():
            code[i] = MODE_CODES.get(m.strip().lower(), unknown)
        else:
            one = pd.Series([m], dtype="string").str.strip().str.lower()
            code[i] = MODE_CODES.get(one.iloc[0], unknown)
    dep, origin = prep.cells("departure_country"), prep.cells("origin_country")
    pairs = zip(dep, origin, strict=True)
    differs = [np.nan if d is None or o is None else float(d != o) for d, o in pairs]
    return {"transport_mode_code": code, "departure_not_origin": np.array(differs, np.float64)}


def calendar_features(prep: Prepared) -> dict[str, np.ndarray]:
    """Weekday (0 = Monday) and month of the year (1-12) of acceptance."""
    # from the day numbers (the dates' ``.dt.month`` costs a tenth of a millisecond a call)
    months = prep.day.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    month_of_year = months % 12 + 1  # months since 1970-01, which was a January
    return {
        "weekday": ((prep.day + 3) % 7).astype(np.int8),  # 1970-01-01 was a Thursday
        "month_of_year": month_of_year.astype(np.int8),
    }
