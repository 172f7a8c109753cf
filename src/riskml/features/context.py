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


def hs6_text(hs6: pd.Series) -> pd.Series:
    """``6109.10`` for HS6 ``610910`` (missing stays missing)."""
    return hs6.str.slice(0, 4) + "." + hs6.str.slice(4, 6)


def reference_group(prep: Prepared, level: np.ndarray) -> pd.Categorical:
    """Readable comparison group of each row's reference price, e.g. ``HS 6109.10 from CN``.

    Each label is built once per distinct group (from the group's first row) and taken by code.
    """
    origin = prep.column("origin_country")
    builders = {
        1: (prep.code("hs6", "origin_country"),
            lambda r: "HS " + hs6_text(prep.hs6.iloc[r]) + " from " + origin.iloc[r]),
        2: (prep.code("hs6"), lambda r: "HS " + hs6_text(prep.hs6.iloc[r])),
        3: (prep.code("hs4"), lambda r: "HS " + prep.hs4.iloc[r]),
    }  # fmt: skip
    labels: list[np.ndarray] = []
    codes = np.full(len(level), -1, dtype=np.int64)
    offset = 0
    for value, (group, build) in builders.items():
        rows = np.flatnonzero((level == value) & (group >= 0))
        uniq, first = np.unique(group[rows], return_index=True)
        labels.append(build(rows[first]).to_numpy(dtype=object, na_value=None))
        codes[rows] = offset + np.searchsorted(uniq, group[rows])
        offset += len(uniq)
    categories = np.concatenate(labels) if labels else np.array([], dtype=object)
    # Distinct groups can share a label only if codes were malformed; keep categories unique.
    categories, remap = np.unique(categories.astype(str), return_inverse=True)
    if len(categories):
        codes = np.where(codes >= 0, remap[np.clip(codes, 0, None)], -1)
    return pd.Categorical.from_codes(codes, categories=categories)


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
        "ctx_uv_ref_group": pd.Series(reference_group(prep, ref.level)).astype("string"),
        "ctx_uv_kg_gap": kg_gap,
        "ctx_uv_kg_dir": kg_dir,
        "ctx_uv_q_gap": q_gap,
        "ctx_uv_q_dir": q_dir,
        "ctx_ref_months": np.full(n, params.reference_months, dtype=np.int16),
        "ctx_cif_value": decl["cif_value"].astype("float64").to_numpy(),
        "ctx_gross_mass": decl["gross_mass_kg"].astype("float64").to_numpy(),
        "ctx_quantity": decl["quantity"].astype("float64").to_numpy(),
        "ctx_quantity_unit": unit,
        "ctx_hs2": prep.hs4.str.slice(0, 2),
        "ctx_hs4": prep.hs4,
        "ctx_hs6": hs6_text(prep.hs6),
        "ctx_origin": decl["origin_country"].astype("string"),
        "ctx_departure": optional(decl, "departure_country", "string"),
        "ctx_office": decl["office"].astype("string"),
        "ctx_procedure": optional(decl, "procedure", "string"),
        "ctx_transport_mode": pd.Categorical(mode, categories=list(TRANSPORT_MODES)),
        "ctx_weekday_name": pd.Categorical.from_codes((prep.day + 3) % 7, categories=WEEKDAYS),
        "ctx_month_name": pd.Categorical.from_codes(
            decl["accepted_date"].dt.month.to_numpy() - 1, categories=MONTHS
        ),
    }
    for area in RISK_AREAS:
        ctx[f"ctx_global_hr_{area}"] = rates[area][prep.month].astype(np.float32)
        if f"hrd_{area}" in rates:
            ctx[f"ctx_global_hrd_{area}"] = rates[f"hrd_{area}"][prep.month].astype(np.float32)
    return pd.DataFrame(ctx)
