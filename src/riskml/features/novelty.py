"""Novelty: how long an importer, declarant or supplier has been seen, and first-time combinations.

The first day an entity (or pair) was seen is the minimum acceptance day over all its rows. For a
row of day *t* that minimum is at most *t*, and it is below *t* exactly when an earlier
declaration exists, so these features depend only on declarations accepted before *t*: they are
exact to the day, finer than the monthly snapshots.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from riskml.features.prepare import Prepared

# (feature, entity columns) of the first-time flags: 1 when no earlier declaration has the pair.
FIRST_TIME: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("first_imp_hs4", ("importer_id", "hs4")),
    ("first_imp_origin", ("importer_id", "origin_country")),
    ("first_imp_supplier", ("importer_id", "supplier_id")),
    ("first_imp_declarant", ("importer_id", "declarant_id")),
)


def first_day(code: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Per row, the first day its entity was seen (float; NaN when the entity is missing)."""
    out = np.full(len(code), np.nan)
    keyed = code >= 0
    first = pd.Series(day[keyed]).groupby(code[keyed]).transform("min")
    out[keyed] = first.to_numpy(np.float64)
    return out


#: (feature, entity columns) of the age features: days since the entity was first seen.
AGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("imp_age_days", ("importer_id",)),
    ("decl_age_days", ("declarant_id",)),
    ("sup_age_days", ("supplier_id",)),
)

#: Every entity (tuple of columns) whose first day the novelty features need.
ENTITIES: tuple[tuple[str, ...], ...] = tuple(cols for _, cols in (*AGES, *FIRST_TIME))


def novelty_from_first(
    first: dict[tuple[str, ...], np.ndarray], day: np.ndarray
) -> dict[str, np.ndarray]:
    """The novelty features from each row's first days (``first[columns]``, per row, the first
    day its entity was seen, NaN when missing) and its own day numbers."""
    out = {name: day - first[cols] for name, cols in AGES}
    for name, cols in FIRST_TIME:
        out[name] = np.where(np.isnan(first[cols]), np.nan, (first[cols] == day).astype(np.float64))
    return {k: v.astype(np.float32) for k, v in out.items()}


def novelty_features(prep: Prepared) -> dict[str, np.ndarray]:
    """Importer, declarant and supplier age in days, and first-time flags of importer pairs."""
    first = {cols: first_day(prep.code(*cols), prep.day) for cols in ENTITIES}
    return novelty_from_first(first, prep.day)
