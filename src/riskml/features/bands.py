"""Value bands: the history of a peer group in the item's order of magnitude of a declared
measure (value, mass or unit value), leaving out the peers within about 1% of the item's own.

A band of an item is its peers (e.g. its HS6) whose measure lies in the item's decade (1-10
million, 10-100 million, ...). Its history is what the band's items, controls and findings
were at the start of the item's month (the snapshot rule of every profile,
:mod:`riskml.features.history`), **minus** the same totals of the item's near bin: the peers
whose measure is within 1/200 of a decade of the item's (about +-1.2%). Both are ordinary
profile tables, keyed on the peers and the derived bin columns ``<measure>_decade`` and
``<measure>_near`` (:data:`riskml.features.prepare.DERIVED`); every near bin lies in exactly one
decade, so the difference counts exactly the band's peers outside the neighbourhood.

Why the neighbourhood is left out: in a value range, goods of one kind share a risk (a cheap
consignment of a dear good, a mass that is no commercial lot), but an exact repeat of a
declared value says more about the record than about the goods (on the KCS research file it is
a generator artefact: docs/results.md). Leaving the near peers out moves the band's rate away
from what the item's repeats say, never towards it, so the feature cannot carry their labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from riskml.contract import RISK_AREAS


@dataclass(frozen=True)
class ValueBand:
    """The band history of ``peers`` in the decade of ``measure``: features ``<prefix>_<stat>``."""

    prefix: str
    peers: tuple[str, ...]
    measure: str  # a riskml.features.prepare.BAND_MEASURES name
    label: str  # plain words for reason sentences

    @property
    def band(self) -> tuple[str, ...]:
        """Entity columns of the band: the peers and the measure's decade."""
        return (*self.peers, f"{self.measure}_decade")

    @property
    def near(self) -> tuple[str, ...]:
        """Entity columns of the left-out neighbourhood: the peers and the measure's near bin."""
        return (*self.peers, f"{self.measure}_near")


#: The shipped bands: the HS6 in the decade of the declared value, of the net mass and of the
#: unit value per kg.
VALUE_BANDS: tuple[ValueBand, ...] = (
    ValueBand("hs6vb", ("hs6",), "value", "HS {ctx_hs6} at a declared value of this order"),
    ValueBand("hs6mb", ("hs6",), "mass", "HS {ctx_hs6} at a mass of this order"),
    ValueBand("hs6ub", ("hs6",), "unit_value", "HS {ctx_hs6} at a unit value of this order"),
)

#: What a band's profile tables keep (:func:`riskml.features.history.profile_table` stats).
BAND_STATS: list[str] = ["n_items", "n_controls", *(f"n_find_{a}" for a in RISK_AREAS)]


def band_stat_names() -> list[str]:
    """The features of one band, in output order (``<prefix>_`` before each)."""
    return ["n_items", "n_controls", *(f"hr_{a}" for a in RISK_AREAS)]


def band_features(
    band: ValueBand,
    whole: Mapping[str, np.ndarray],
    near: Mapping[str, np.ndarray],
    month: np.ndarray,
    rates: Mapping[str, np.ndarray],
    prior_strength: float,
) -> dict[str, np.ndarray]:
    """The features of ``band`` as float32 arrays in row order, from the rows' snapshots of the
    band (``whole``) and of the near bin (``near``) (:func:`riskml.features.history.lookup` of
    :data:`BAND_STATS`): earlier items and controls of the band outside the near bin, and each
    area's hit rate there, smoothed towards the overall rate like a profile's. NaN where the
    measure is missing (no band)."""
    left = {stat: whole[stat] - near[stat] for stat in BAND_STATS}
    out = {
        f"{band.prefix}_n_items": left["n_items"].astype(np.float32),
        f"{band.prefix}_n_controls": left["n_controls"].astype(np.float32),
    }
    for area in RISK_AREAS:
        prior = rates[area][month]
        with np.errstate(invalid="ignore", divide="ignore"):
            value = (left[f"n_find_{area}"] + prior_strength * prior) / (
                left["n_controls"] + prior_strength
            )
        out[f"{band.prefix}_hr_{area}"] = value.astype(np.float32)
    return out
