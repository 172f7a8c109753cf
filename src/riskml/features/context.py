"""Context columns (``ctx_``): the peer facts and readable values reason sentences refer to.

They are never model inputs. Labels are built once per distinct group and taken by code, so that
no string is assembled per row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from riskml.config import FeatureParams
from riskml.contract import RISK_AREAS, TRANSPORT_MODES
from riskml.features.prepare import Prepared, optional
from riskml.features.reference import LEVEL_NAMES, Reference
from riskml.features.row import MONTHS, WEEKDAYS


def _by_code(code: np.ndarray, labels_of_first_rows) -> pd.Series:
    """Per row, the label of its group, built once per group from the group's first row."""
    keyed = code >= 0
    uniq, first = np.unique(code[keyed], return_index=True)
    rows = np.flatnonzero(keyed)[first]
    labels = np.asarray(labels_of_first_rows(rows), dtype=object)
    out = np.full(len(code), None, dtype=object)
    out[keyed] = labels[np.searchsorted(uniq, code[keyed])]
    return pd.Series(out, dtype="string")


def _hs6_text(hs6: pd.Series) -> pd.Series:
    return hs6.str.slice(0, 4) + "." + hs6.str.slice(4, 6)


def reference_group(prep: Prepared, level: np.ndarray) -> pd.Series:
    """Readable comparison group of each row's reference price, e.g. ``HS 6109.10 from CN``."""
    origin = prep.column("origin_country")
    hs6, hs4 = prep.hs6, prep.hs4
    builders = {
        1: (
            prep.code("hs6", "origin_country"),
            lambda r: ("HS " + _hs6_text(hs6.iloc[r]) + " from " + origin.iloc[r]).to_numpy(),
        ),
        2: (prep.code("hs6"), lambda r: ("HS " + _hs6_text(hs6.iloc[r])).to_numpy()),
        3: (prep.code("hs4"), lambda r: ("HS " + hs4.iloc[r]).to_numpy()),
    }
    out = pd.Series(pd.NA, index=range(len(level)), dtype="string")
    for code_value, (codes, build) in builders.items():
        sel = level == code_value
        if sel.any():
            labels = _by_code(np.where(sel, codes, -1), build)
            out[sel] = labels[sel]
    return out


def _gap(x: np.ndarray, median: np.ndarray) -> tuple[np.ndarray, pd.Categorical]:
    ratio = np.expm1(x - median)
    direction = np.where(ratio < 0, "below", "above")
    cat = pd.Categorical(np.where(np.isnan(ratio), None, direction), categories=["below", "above"])
    return np.abs(ratio), cat


def context_columns(
    prep: Prepared,
    uv: pd.DataFrame,
    ref: Reference,
    rates: dict[str, np.ndarray],
    params: FeatureParams,
) -> pd.DataFrame:
    """The ``ctx_`` columns of every row."""
    decl = prep.declarations
    n = len(decl)
    kg_gap, kg_dir = _gap(uv["uv_kg_log"].to_numpy(), ref.median["uv_kg_log"])
    q_gap, q_dir = _gap(uv["uv_q_log"].to_numpy(), ref.median["uv_q_log"])
    level_names = pd.Categorical(
        [LEVEL_NAMES[i] or None for i in range(4)], categories=list(LEVEL_NAMES.values())[1:]
    )
    mode = decl["transport_mode"].astype("string").str.strip().str.lower()
    mode = mode.where(mode.isin(TRANSPORT_MODES), "unknown")
    unit = optional(decl, "quantity_unit", "string").fillna("unit")
    ctx = {
        "ctx_uv_kg": np.exp(uv["uv_kg_log"].to_numpy()),
        "ctx_uv_q": np.exp(uv["uv_q_log"].to_numpy()),
        "ctx_uv_ref_median": np.exp(ref.median["uv_kg_log"]),
        "ctx_uv_q_ref_median": np.exp(ref.median["uv_q_log"]),
        "ctx_uv_ref_count": ref.count,
        "ctx_uv_ref_level": level_names.take(ref.level.astype(np.int64)),
        "ctx_uv_ref_group": reference_group(prep, ref.level).to_numpy(),
        "ctx_uv_kg_gap": kg_gap,
        "ctx_uv_kg_dir": kg_dir,
        "ctx_uv_q_gap": q_gap,
        "ctx_uv_q_dir": q_dir,
        "ctx_ref_months": np.full(n, params.reference_months, dtype=np.int16),
        "ctx_cif_value": decl["cif_value"].astype("float64").to_numpy(),
        "ctx_gross_mass": decl["gross_mass_kg"].astype("float64").to_numpy(),
        "ctx_quantity": decl["quantity"].astype("float64").to_numpy(),
        "ctx_quantity_unit": unit.astype("category").to_numpy(),
        "ctx_hs2": prep.hs4.str.slice(0, 2).to_numpy(),
        "ctx_hs4": prep.hs4.to_numpy(),
        "ctx_hs6": _hs6_text(prep.hs6).to_numpy(),
        "ctx_origin": decl["origin_country"].astype("string").to_numpy(),
        "ctx_departure": optional(decl, "departure_country", "string").to_numpy(),
        "ctx_procedure": optional(decl, "procedure", "string").to_numpy(),
        "ctx_transport_mode": pd.Categorical(mode, categories=list(TRANSPORT_MODES)),
        "ctx_weekday_name": pd.Categorical.from_codes((prep.day + 3) % 7, categories=WEEKDAYS),
        "ctx_month_name": pd.Categorical.from_codes(
            decl["accepted_date"].dt.month.to_numpy() - 1, categories=MONTHS
        ),
    }
    for area in RISK_AREAS:
        ctx[f"ctx_global_hr_{area}"] = rates[area][prep.month].astype(np.float32)
    frame = pd.DataFrame(ctx)
    for col in ("ctx_uv_ref_group", "ctx_hs2", "ctx_hs4", "ctx_hs6", "ctx_origin"):
        frame[col] = frame[col].astype("string")
    frame[["ctx_departure", "ctx_procedure"]] = frame[["ctx_departure", "ctx_procedure"]].astype(
        "string"
    )
    return frame
