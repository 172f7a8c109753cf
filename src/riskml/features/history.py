"""Entity histories as monthly profile snapshots (importer, declarant, supplier, pairs, ...).

A snapshot of an entity for month *m* aggregates everything known at the start of *m*:
declarations accepted in months before *m*, controls and findings whose result became known in
months before *m*. Rows are joined to the snapshot of their (entity, month). The work is a
groupby over (entity, month) cells, a cumulative sum per entity shifted by one cell, and a
sorted lookup: no per-row Python, and the same code runs on any partition of cells.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from riskml.contract import CONTROL_KINDS, RISK_AREAS
from riskml.features.prepare import Prepared


@dataclass(frozen=True)
class Profile:
    """One entity kind whose history becomes features ``<prefix>_<stat>``."""

    prefix: str
    columns: tuple[str, ...]
    stats: str  # "full", "rates" or "counts"
    label: str  # plain name used in reason sentences


PROFILES: tuple[Profile, ...] = (
    Profile("imp", ("importer_id",), "full", "importer"),
    Profile("decl", ("declarant_id",), "full", "declarant"),
    Profile("sup", ("supplier_id",), "rates", "supplier"),
    Profile("orig", ("origin_country",), "rates", "country of origin"),
    Profile("hs6o", ("hs6", "origin_country"), "rates", "HS subheading from this origin"),
    Profile("imphs4", ("importer_id", "hs4"), "counts", "importer in this HS heading"),
    Profile("hs6", ("hs6",), "areas", "HS subheading"),
    Profile("hs4", ("hs4",), "areas", "HS heading"),
    Profile("hs2", ("hs2",), "areas", "HS chapter"),
    Profile("dep", ("departure_country",), "areas", "country of departure"),
    Profile("off", ("office",), "areas", "customs office"),
    Profile("imporig", ("importer_id", "origin_country"), "areas", "importer with this origin"),
    Profile("declimp", ("declarant_id", "importer_id"), "areas", "declarant for this importer"),
    Profile("imphs2", ("importer_id", "hs2"), "counts", "importer in this HS chapter"),
)

_COUNTS = ["n_items", "n_controls", "n_find"]


def stat_names(stats: str) -> list[str]:
    """The statistics a profile of kind ``stats`` produces, in output order."""
    names = list(_COUNTS)
    if stats in ("full", "areas"):
        names += [f"n_find_{a}" for a in RISK_AREAS]
    if stats in ("full", "rates", "areas"):
        names += [f"hr_{a}" for a in RISK_AREAS]
    if stats == "full":
        names += ["recovered", "days_since_find"]
    return names


def has_rates(stats: str) -> bool:
    """Whether a profile of kind ``stats`` has hit rates (and so detectable-control hit rates)."""
    return stats in ("full", "rates", "areas")


def _exclusive_cumsum(x: np.ndarray) -> np.ndarray:
    """``out[m] = x[0] + ... + x[m-1]``, summed in month order."""
    out = np.zeros(len(x), dtype=np.float64)
    out[1:] = np.cumsum(x)[:-1]
    return out


def global_rates(
    prep: Prepared, detectable: Mapping[str, Sequence[str]] | None = None
) -> dict[str, np.ndarray]:
    """Per area, the overall finding rate per control known at each month start (index = month).

    With ``detectable`` (area -> control kinds that can detect it), also ``hrd_<area>``: findings
    of the area per control of a kind able to detect it.
    """
    size = prep.n_months + 1
    ctl = prep.controls
    controls = _exclusive_cumsum(np.bincount(ctl["month"], minlength=size)[:size])
    rates = {}
    f = prep.findings
    for area in RISK_AREAS:
        sel = (f["area"] == area).to_numpy(bool)
        found = _exclusive_cumsum(
            np.bincount(f["month"][sel], weights=f["count"][sel], minlength=size)[:size]
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            rates[area] = np.where(controls > 0, found / controls, 0.0)
            if detectable and area in detectable:
                kinds = ctl["kind"].isin(list(detectable[area])).to_numpy(bool)
                det = _exclusive_cumsum(
                    np.bincount(ctl["month"][kinds], minlength=size)[:size].astype(float)
                )
                rates[f"hrd_{area}"] = np.where(det > 0, found / det, 0.0)
    return rates


def _events(code: np.ndarray, prep: Prepared, size: int) -> pd.DataFrame:
    """One row per declaration, control and finding, keyed by its (entity, month) cell."""
    keyed = code >= 0
    decl = pd.DataFrame({"key": code[keyed] * size + prep.month[keyed], "n_items": 1.0})
    ctl_code = code[prep.controls["row"].to_numpy()]
    ctl = pd.DataFrame(
        {
            "key": ctl_code * size + prep.controls["month"].to_numpy(),
            "n_controls": 1.0,
        }
    )
    kind = prep.controls["kind"].to_numpy()
    for k in CONTROL_KINDS:
        ctl[f"n_ctl_{k}"] = (kind == k).astype(np.float64)
    ctl = ctl[ctl_code >= 0]
    f = prep.findings
    f_code = code[f["row"].to_numpy()]
    finds = pd.DataFrame(
        {
            "key": f_code * size + f["month"].to_numpy(),
            "n_find": f["count"].to_numpy(),
            "recovered": f["duty"].to_numpy(),
            "last_find_day": f["day"].to_numpy().astype(np.float64),
        }
    )
    area = f["area"].to_numpy()
    for a in RISK_AREAS:
        finds[f"n_find_{a}"] = np.where(area == a, f["count"].to_numpy(), 0.0)
    finds = finds[f_code >= 0]
    events = pd.concat([decl, ctl, finds], ignore_index=True)
    sums = [c for c in events.columns if c not in ("key", "last_find_day")]
    events[sums] = events[sums].fillna(0.0)
    events["last_find_day"] = events["last_find_day"].fillna(-np.inf)
    return events


def snapshot(code: np.ndarray, prep: Prepared) -> pd.DataFrame:
    """Per declaration row, its entity's totals known at the start of the row's month.

    Columns: ``n_items``, ``n_controls``, ``n_ctl_<control kind>``, ``n_find``, ``n_find_<area>``,
    ``recovered`` and
    ``last_find_day`` (day number of the latest finding, NaN when none). Rows whose entity is
    missing get NaN everywhere.
    """
    size = prep.n_months + 1
    events = _events(code, prep, size)
    sums = [c for c in events.columns if c not in ("key", "last_find_day")]
    agg = {c: "sum" for c in sums} | {"last_find_day": "max"}
    cells = events.groupby("key", sort=True).agg(agg)
    entity = cells.index.to_numpy() // size
    before = cells[sums].groupby(entity).cumsum().groupby(entity).shift(1).fillna(0.0)
    last = cells["last_find_day"].groupby(entity).cummax().groupby(entity).shift(1)
    before["last_find_day"] = last.replace(-np.inf, np.nan).to_numpy()

    keyed = code >= 0
    pos = np.searchsorted(cells.index.to_numpy(), code[keyed] * size + prep.month[keyed])
    out = pd.DataFrame(np.nan, index=np.arange(len(code)), columns=before.columns)
    out.loc[keyed] = before.to_numpy()[pos]
    return out


def profile_features(
    profile: Profile,
    prep: Prepared,
    rates: dict[str, np.ndarray],
    prior_strength: float,
    detectable: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, np.ndarray]:
    """The features ``<prefix>_<stat>`` of one profile, as float32 arrays in row order.

    With ``detectable`` (area -> control kinds able to detect it) and a profile with hit rates,
    also ``<prefix>_hrd_<area>``: the area's findings over the controls able to detect it,
    smoothed towards the overall rate of the same kind (``rates["hrd_<area>"]``).
    """
    snap = snapshot(prep.code(*profile.columns), prep)
    out: dict[str, np.ndarray] = {}
    for stat in stat_names(profile.stats):
        if stat.startswith("hr_"):
            prior = rates[stat[3:]][prep.month]
            with np.errstate(invalid="ignore", divide="ignore"):
                value = (snap[f"n_find_{stat[3:]}"].to_numpy() + prior_strength * prior) / (
                    snap["n_controls"].to_numpy() + prior_strength
                )
        elif stat == "days_since_find":
            value = prep.day - snap["last_find_day"].to_numpy()
        else:
            value = snap[stat].to_numpy()
        out[f"{profile.prefix}_{stat}"] = value.astype(np.float32)
    if detectable and has_rates(profile.stats):
        for area, kinds in detectable.items():
            det = sum(snap[f"n_ctl_{k}"].to_numpy() for k in kinds if k in CONTROL_KINDS)
            prior = rates[f"hrd_{area}"][prep.month]
            with np.errstate(invalid="ignore", divide="ignore"):
                value = (snap[f"n_find_{area}"].to_numpy() + prior_strength * prior) / (
                    det + prior_strength
                )
            out[f"{profile.prefix}_hrd_{area}"] = value.astype(np.float32)
    return out
