"""Behaviour of an entity against its own past: volume of the previous month, trade outside its
usual HS chapters.

Items declared *during* the current month are not known at its start, so the volume of a row of
month *m* compares the entity's items of month *m - 1* with its average month over the
``months`` months before that (*m - 1 - months* to *m - 2*, those inside the data). Both use only
declarations of months before *m*.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from riskml.features.history import CELL

#: A chapter holding less than this share of an importer's earlier items is outside its usual
#: trade.
USUAL_SHARE = 0.05
#: (feature prefix, entity column) of the volume features.
VOLUME: tuple[tuple[str, str], ...] = (("imp", "importer_id"), ("decl", "declarant_id"))


def volume_features(
    items_before: Callable[[str, np.ndarray], np.ndarray], month: np.ndarray, months: int
) -> dict[str, np.ndarray]:
    """``<prefix>_items_prev_month`` and ``<prefix>_volume_ratio`` (previous month / trailing
    average month) for the importer and the declarant.

    ``items_before(column, m)``: per row, the items its entity (``column``) declared in months
    before ``m[row]``; NaN where the row's entity is missing. ``month``: the rows' month indices.
    """
    out: dict[str, np.ndarray] = {}
    for prefix, column in VOLUME:
        now = items_before(column, month)
        keyed = ~np.isnan(now)
        m = month[keyed]
        prev = np.where(m >= 2, now[keyed] - items_before(column, month - 1)[keyed], 0.0)
        hi = np.maximum(m - 1, 1)  # trailing window: months lo..hi-1, i.e. before(hi) - before(lo)
        lo = np.minimum(np.clip(m - 1 - months, 1, None), hi)
        n_months = np.maximum(hi - lo, 0)
        at = np.zeros(len(month), dtype=np.int64)
        at[keyed] = hi
        trailing = items_before(column, at)[keyed]
        at[keyed] = lo
        trailing = trailing - items_before(column, at)[keyed]
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(trailing > 0, prev / (trailing / np.maximum(n_months, 1)), np.nan)
        prev_all, ratio_all = np.full(len(month), np.nan), np.full(len(month), np.nan)
        prev_all[keyed], ratio_all[keyed] = prev, ratio
        out[f"{prefix}_items_prev_month"] = prev_all.astype(np.float32)
        out[f"{prefix}_volume_ratio"] = ratio_all.astype(np.float32)
    return out


def outside_share_cells(
    code: np.ndarray, month: np.ndarray, chapter_share: np.ndarray
) -> pd.Series:
    """Per (importer, month) cell, keyed ``code * CELL + month``: the share of the importer's
    items of that month whose HS chapter held less than :data:`USUAL_SHARE` of its items declared
    before the month.

    ``code``, ``month``, ``chapter_share``: the importer code, month index and chapter share of
    the items known (the share of the importer's earlier items, before the item's month, in the
    item's chapter; NaN when the importer had none, such items count in neither part).
    """
    known = (code >= 0) & ~np.isnan(chapter_share)
    outside = (chapter_share < USUAL_SHARE).astype(np.float64)
    cell = code[known].astype(np.int64) * CELL + month[known]
    return pd.Series(outside[known]).groupby(cell).mean()


def outside_share_at(cells: pd.Series, code: np.ndarray, month: np.ndarray) -> np.ndarray:
    """Per row of month *m* (importer ``code``, ``month``): its importer's cell of month *m - 1*
    in ``cells`` (:func:`outside_share_cells`), NaN when there is none."""
    result = np.full(len(code), np.nan)
    keyed = code >= 0
    want = code[keyed].astype(np.int64) * CELL + month[keyed] - 1
    result[keyed] = cells.reindex(want).to_numpy(np.float64)
    return result.astype(np.float32)


def outside_usual_share(
    code: np.ndarray, month: np.ndarray, chapter_share: np.ndarray
) -> np.ndarray:
    """Per item of month *m*: the share of its importer's items of month *m - 1* whose HS chapter
    held less than :data:`USUAL_SHARE` of the importer's items declared before *m - 1*
    (:func:`outside_share_cells` of the same items, read at *m - 1*)."""
    return outside_share_at(outside_share_cells(code, month, chapter_share), code, month)
