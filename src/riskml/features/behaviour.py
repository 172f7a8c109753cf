"""Behaviour of an entity against its own past: volume of the previous month, trade outside its
usual HS chapters.

Items declared *during* the current month are not known at its start, so the volume of a row of
month *m* compares the entity's items of month *m - 1* with its average month over the
``months`` months before that (*m - 1 - months* to *m - 2*, those inside the data). Both use only
declarations of months before *m*.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from riskml.features.prepare import Prepared

#: A chapter holding less than this share of an importer's earlier items is outside its usual
#: trade.
USUAL_SHARE = 0.05
#: (feature prefix, entity column) of the volume features.
VOLUME: tuple[tuple[str, str], ...] = (("imp", "importer_id"), ("decl", "declarant_id"))


def _monthly_counts(code: np.ndarray, month: np.ndarray, size: int) -> np.ndarray:
    """Dense (entity, month) item counts; month index 0..size-1."""
    keyed = code >= 0
    n_entities = int(code.max()) + 1 if keyed.any() else 0
    flat = np.bincount(code[keyed] * size + month[keyed], minlength=n_entities * size)
    return flat.reshape(n_entities, size).astype(np.float64)


def volume_features(prep: Prepared, months: int) -> dict[str, np.ndarray]:
    """``<prefix>_items_prev_month`` and ``<prefix>_volume_ratio`` (previous month / trailing
    average month) for the importer and the declarant."""
    size = prep.n_months + 1
    out: dict[str, np.ndarray] = {}
    for prefix, column in VOLUME:
        code = prep.code(column)
        keyed = code >= 0
        counts = _monthly_counts(code, prep.month, size)
        cum = np.concatenate([np.zeros((len(counts), 1)), np.cumsum(counts, axis=1)], axis=1)
        c, m = code[keyed], prep.month[keyed]
        prev = np.where(m >= 2, counts[c, np.maximum(m - 1, 0)], 0.0)  # month 0 is empty
        hi = np.maximum(m - 1, 1)  # trailing window: months lo..m-2, i.e. cum[hi] - cum[lo]
        lo = np.clip(m - 1 - months, 1, None)
        n_months = np.maximum(hi - lo, 0)
        trailing = cum[c, hi] - cum[c, np.minimum(lo, hi)]
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(trailing > 0, prev / (trailing / np.maximum(n_months, 1)), np.nan)
        prev_all, ratio_all = np.full(len(code), np.nan), np.full(len(code), np.nan)
        prev_all[keyed], ratio_all[keyed] = prev, ratio
        out[f"{prefix}_items_prev_month"] = prev_all.astype(np.float32)
        out[f"{prefix}_volume_ratio"] = ratio_all.astype(np.float32)
    return out


def outside_usual_share(prep: Prepared, chapter_share: np.ndarray) -> np.ndarray:
    """Per row of month *m*: the share of its importer's items of month *m - 1* whose HS chapter
    held less than :data:`USUAL_SHARE` of the importer's items declared before *m - 1*.

    ``chapter_share``: per row, the share of its importer's earlier items (before the row's month)
    in the row's chapter; NaN when the importer had none (such rows count in neither part).
    """
    size = prep.n_months + 1
    code = prep.code("importer_id")
    known = (code >= 0) & ~np.isnan(chapter_share)
    outside = (chapter_share < USUAL_SHARE).astype(np.float64)
    cell = code[known] * size + prep.month[known]
    per_cell = pd.Series(outside[known]).groupby(cell).mean()
    result = np.full(len(code), np.nan)
    keyed = code >= 0
    want = code[keyed] * size + prep.month[keyed] - 1
    values = per_cell.reindex(want).to_numpy(np.float64)
    result[keyed] = values
    return result.astype(np.float32)
