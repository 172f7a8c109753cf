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


def window_stats(
    groups: np.ndarray, values: pd.DataFrame, n_groups: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median, MAD and count of each column of ``values`` per group, as dense (group, column)
    arrays (NaN / 0 for groups absent from the window)."""
    shape = (n_groups, values.shape[1])
    median, mad, count = np.full(shape, np.nan), np.full(shape, np.nan), np.zeros(shape)
    if len(groups) == 0:
        return median, mad, count
    grouped = values.groupby(groups, sort=True)
    med = grouped.median()
    index = med.index.to_numpy()
    median[index] = med.to_numpy(np.float64)
    count[index] = grouped.count().to_numpy(np.float64)
    dev = (values - median[groups]).abs()
    mad[index] = dev.groupby(groups, sort=True).median().to_numpy(np.float64)
    return median, mad, count


#: Up to this many groups (a month's remaining target rows), a window's statistics are taken
#: group by group with numpy: a grouped median costs a fraction of a millisecond a call
#: whatever the size, and a scored declaration needs one group per level.
FEW_GROUPS = 4


def _median(sorted_values: np.ndarray) -> float:
    """The median of sorted values without NaN as pandas' grouped median computes it (the mean
    of the two middle values of an even count: ``(a + b) / 2``); NaN when there are none."""
    k = len(sorted_values)
    if k == 0:
        return np.nan
    if k % 2:
        return float(sorted_values[k // 2])
    return float((sorted_values[k // 2 - 1] + sorted_values[k // 2]) / 2)


def _few_window_stats(
    groups: np.ndarray, values: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`window_stats` of a window holding a few groups, group by group (the same
    medians, deviations and counts: tests/test_feature_store.py compares a few rows' features
    with a large batch's)."""
    shape = (n_groups, values.shape[1])
    median, mad, count = np.full(shape, np.nan), np.full(shape, np.nan), np.zeros(shape)
    for g in np.unique(groups).tolist():
        rows = values[groups == g]
        for j in range(values.shape[1]):
            column = rows[:, j]
            column = np.sort(column[~np.isnan(column)])
            count[g, j] = len(column)
            median[g, j] = _median(column)
            mad[g, j] = _median(np.sort(np.abs(column - median[g, j])))
    return median, mad, count


def reference_prices(
    prep: Prepared, log_values: pd.DataFrame, *, months: int, min_count: int
) -> Reference:
    """Reference median and MAD of each column of ``log_values`` for every row of ``prep``.

    The level is chosen on the first column (the unit value per kg) and applies to all columns.
    """
    codes = {code: prep.code(*cols) for code, _, cols in LEVELS}
    return reference_for(
        codes, prep.month, log_values, codes, prep.month, months=months, min_count=min_count
    )


def reference_for(
    pool_codes: dict[int, np.ndarray],
    pool_month: np.ndarray,
    pool_values: pd.DataFrame,
    target_codes: dict[int, np.ndarray],
    target_month: np.ndarray,
    *,
    months: int,
    min_count: int,
    pool_sorted: bool = False,
) -> Reference:
    """Reference prices of target rows among a pool of rows (output in target order).

    The pool: per level code, the rows' group codes (``pool_codes``), month indices and log
    values; the targets: their group codes in the same code space and month indices. A target of
    month *m* is compared with the pool rows of months *m - months* to *m - 1*, so a target never
    counts itself, and the targets never count each other unless they are also in the pool.
    ``pool_sorted``: the pool is already in month order (a stored pool: no sort per call).
    """
    n = len(target_month)
    names = list(pool_values.columns)
    level = np.zeros(n, dtype=np.int8)
    count = np.full(n, np.nan)
    median = np.full((n, len(names)), np.nan)
    mad = np.full((n, len(names)), np.nan)
    array = None  # the pool's values as one array, for windows of a few groups
    order = np.arange(len(pool_month)) if pool_sorted else np.argsort(pool_month, kind="stable")
    sorted_month = pool_month if pool_sorted else pool_month[order]
    # Group codes run up to the largest of the pool's and the targets'; -1 (missing) lands on an
    # extra last slot that is never needed.
    n_groups = {
        code: int(max(pool_codes[code].max(initial=-1), target_codes[code].max(initial=-1))) + 1
        for code, _, _ in LEVELS
    }
    for m in np.unique(target_month):
        lo, hi = np.searchsorted(sorted_month, [m - months, m])
        window, todo = order[lo:hi], np.flatnonzero(target_month == m)
        for code, _, _ in LEVELS:
            if len(todo) == 0 or len(window) == 0:
                break
            g = pool_codes[code]
            rows = target_codes[code][todo]
            # Only the groups this month's remaining rows need.
            needed = np.zeros(n_groups[code] + 1, dtype=bool)
            needed[rows] = True
            needed[-1] = False
            win = window[needed[g[window]]]
            if len(np.unique(rows)) <= FEW_GROUPS:
                if array is None:  # one block of floats: a view, not a copy
                    array = pool_values.to_numpy(np.float64)
                med, dev, cnt = _few_window_stats(g[win], array[win], n_groups[code] + 1)
            else:
                med, dev, cnt = window_stats(g[win], pool_values.iloc[win], n_groups[code] + 1)
            found = cnt[rows, 0]
            ok = found >= min_count
            chosen = todo[ok]
            level[chosen] = code
            count[chosen] = found[ok]
            median[chosen] = med[rows[ok]]
            mad[chosen] = dev[rows[ok]]
            todo = todo[~ok]
    return Reference(
        level=level,
        count=count,
        median={c: median[:, j] for j, c in enumerate(names)},
        mad={c: mad[:, j] for j, c in enumerate(names)},
    )


def robust_z(x: np.ndarray, median: np.ndarray, mad: np.ndarray) -> np.ndarray:
    """(x - median) / (1.4826 · MAD), the scale floored at ``MIN_SCALE``."""
    scale = np.maximum(MAD_TO_SD * mad, MIN_SCALE)
    return (x - median) / scale
