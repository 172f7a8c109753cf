"""The standard duty rate of each HS6 and the gap to the rate a declaration applied.

The standard rate of an HS6 for a row of month *m* is the most common ``duty_rate`` of the HS6's
declarations *without* a preference claim accepted in months *m - R* to *m - 1*
(``R = reference_months``; ties go to the higher rate). A preferential or exempt declaration
applies a lower rate; the gap ``standard - applied`` measures what the claim saves.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from riskml.features.prepare import Prepared, optional


def applied_rates(prep: Prepared) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the applied ``duty_rate`` (NaN when missing) and whether it claims a preference."""
    decl = prep.declarations
    rate = optional(decl, "duty_rate", "float64").to_numpy(np.float64, na_value=np.nan)
    pref = optional(decl, "preference_claim", "boolean").fillna(False).to_numpy(bool)
    return rate, pref


def rate_cells(
    hs6: np.ndarray, rate: np.ndarray, pref: np.ndarray, month: np.ndarray
) -> pd.DataFrame:
    """Counts of declarations without a preference claim per (HS6 code, rate, month) cell."""
    usable = ~pref & ~np.isnan(rate) & (hs6 >= 0)
    # Rates are few and exact (tariff schedules): count (hs6, rate, month) cells once.
    rounded = np.round(rate[usable], 6)
    return (
        pd.DataFrame({"hs6": hs6[usable], "rate": rounded, "month": month[usable]})
        .value_counts()
        .rename("n")
        .reset_index()
    )


def standard_modes(cells: pd.DataFrame, month: int, months: int) -> pd.Series:
    """The standard rate of every HS6 code for rows of ``month``: the most common rate of
    ``cells`` in months ``month - months`` to ``month - 1`` (ties to the higher rate), indexed
    by HS6 code; empty when the window holds no cell."""
    window = cells[(cells["month"] >= month - months) & (cells["month"] < month)]
    if window.empty:
        return pd.Series([], dtype=np.float64)
    counts = window.groupby(["hs6", "rate"], sort=False)["n"].sum().reset_index()
    counts = counts.sort_values(["hs6", "n", "rate"], ascending=[True, False, False])
    return counts.drop_duplicates("hs6").set_index("hs6")["rate"]


def standard_for(
    cells: pd.DataFrame, hs6: np.ndarray, month: np.ndarray, months: int
) -> np.ndarray:
    """Per row (HS6 code, month index), the most common rate of ``cells`` in the HS6's window."""
    standard = np.full(len(hs6), np.nan)
    for m in np.unique(month):
        rows = np.flatnonzero((month == m) & (hs6 >= 0))
        if len(rows) == 0:
            continue
        mode = standard_modes(cells, m, months)
        if len(mode):
            standard[rows] = mode.reindex(hs6[rows]).to_numpy(np.float64)
    return standard


def rate_features(standard: np.ndarray, rate: np.ndarray) -> dict[str, np.ndarray]:
    """``duty_rate_standard`` and ``duty_rate_gap`` (standard minus applied rate)."""
    return {
        "duty_rate_standard": standard.astype(np.float32),
        "duty_rate_gap": (standard - rate).astype(np.float32),
    }
