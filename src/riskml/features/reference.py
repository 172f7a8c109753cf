"""Reference unit prices: median and MAD of peers over the previous months, with fall-backs.

For a row of month *m*, the peers are the declarations accepted in months *m - R* to *m - 1*
(``R = reference_months``) of the same HS6×origin; when fewer than ``min_reference_count`` peers
have a unit value, the row falls back to HS6, then HS4; below that it has no reference. Each
month is one partition: a window slice, two grouped medians, a sorted lookup.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from riskml.features.prepare import Prepared

# Level codes, in fall-back order; 0 = no reference.
LEVELS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (1, "HS6×origin", ("hs6", "origin_country")),
    (2, "HS6", ("hs6",)),
    (3, "HS4", ("hs4",)),
)
LEVEL_NAMES: dict[int, str] = {0: "", **{code: name for code, name, _ in LEVELS}}
MAD_TO_SD = 1.4826  # MAD of a normal distribution times this is its standard deviation
MIN_SCALE = 0.05  # floor of the robust scale in log units, so that identical peers do not explode


@dataclass
class Reference:
    """Per row: the chosen level, its peer count, and median/MAD of each log unit value."""

    level: np.ndarray  # int8 level code
    count: np.ndarray  # peers with a unit value per kg at the chosen level
    median: dict[str, np.ndarray]
    mad: dict[str, np.ndarray]


def _window_stats(
    groups: np.ndarray, values: pd.DataFrame
) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Grouped median, MAD and count of ``values`` over one window (groups sorted)."""
    frame = values.assign(_g=groups)
    grouped = frame.groupby("_g", sort=True)
    median = grouped.median()
    count = grouped.count()
    index = median.index.to_numpy()
    pos = np.searchsorted(index, groups)
    dev = (values - median.to_numpy()[pos]).abs().assign(_g=groups)
    mad = dev.groupby("_g", sort=True).median()
    return index, median, mad, count


def _lookup(index: np.ndarray, table: pd.DataFrame, groups: np.ndarray) -> np.ndarray:
    """Rows of ``table`` (indexed by sorted ``index``) for ``groups``; NaN when absent."""
    out = np.full((len(groups), table.shape[1]), np.nan)
    if len(index) == 0:
        return out
    pos = np.clip(np.searchsorted(index, groups), 0, len(index) - 1)
    hit = index[pos] == groups
    out[hit] = table.to_numpy(dtype=np.float64)[pos[hit]]
    return out


def reference_prices(
    prep: Prepared, log_values: pd.DataFrame, *, months: int, min_count: int
) -> Reference:
    """Reference median and MAD of each column of ``log_values`` for every row.

    The level is chosen on the first column (the unit value per kg) and applies to all columns.
    """
    n = len(log_values)
    names = list(log_values.columns)
    level = np.zeros(n, dtype=np.int8)
    count = np.full(n, np.nan)
    median = {c: np.full(n, np.nan) for c in names}
    mad = {c: np.full(n, np.nan) for c in names}

    order = np.argsort(prep.month, kind="stable")
    sorted_month = prep.month[order]
    codes = {code: prep.code(*cols) for code, _, cols in LEVELS}
    for m in np.unique(prep.month):
        lo, hi = np.searchsorted(sorted_month, [m - months, m])
        window = order[lo:hi]
        rows = order[np.searchsorted(sorted_month, m) : np.searchsorted(sorted_month, m + 1)]
        todo = rows
        for code, _, _ in LEVELS:
            if len(todo) == 0 or len(window) == 0:
                break
            g = codes[code]
            win = window[g[window] >= 0]
            index, med, dev, cnt = _window_stats(g[win], log_values.iloc[win])
            found = _lookup(index, cnt, g[todo])[:, 0]
            ok = np.nan_to_num(found) >= min_count
            chosen = todo[ok]
            level[chosen] = code
            count[chosen] = found[ok]
            med_rows = _lookup(index, med, g[chosen])
            mad_rows = _lookup(index, dev, g[chosen])
            for j, c in enumerate(names):
                median[c][chosen] = med_rows[:, j]
                mad[c][chosen] = mad_rows[:, j]
            todo = todo[~ok]
    return Reference(level=level, count=count, median=median, mad=mad)


def robust_z(x: np.ndarray, median: np.ndarray, mad: np.ndarray) -> np.ndarray:
    """(x - median) / (1.4826 · MAD), the scale floored at ``MIN_SCALE``."""
    scale = np.maximum(MAD_TO_SD * mad, MIN_SCALE)
    return (x - median) / scale
