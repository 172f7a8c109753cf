"""Entity histories as monthly profile snapshots (importer, declarant, supplier, pairs, ...).

A snapshot of an entity for month *m* aggregates everything known at the start of *m*:
declarations accepted in months before *m*, controls and findings whose result became known in
months before *m*. Rows are joined to the snapshot of their (entity, month). The work is a
groupby over (entity, month) cells, a cumulative sum per entity shifted by one cell, and a
sorted lookup: no per-row Python, and the same code runs on any partition of cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from riskml.contract import RISK_AREAS
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
)

_COUNTS = ["n_items", "n_controls", "n_find"]


def stat_names(stats: str) -> list[str]:
    """The statistics a profile of kind ``stats`` produces, in output order."""
    names = list(_COUNTS)
    if stats == "full":
        names += [f"n_find_{a}" for a in RISK_AREAS]
    if stats in ("full", "rates"):
        names += [f"hr_{a}" for a in RISK_AREAS]
    if stats == "full":
        names += ["recovered", "days_since_find"]
    return names


def _exclusive_cumsum(x: np.ndarray) -> np.ndarray:
    """``out[m] = x[0] + ... + x[m-1]``, summed in month order."""
    out = np.zeros(len(x), dtype=np.float64)
    out[1:] = np.cumsum(x)[:-1]
    return out


def global_rates(prep: Prepared) -> dict[str, np.ndarray]:
    """Per area, the overall finding rate per control known at each month start (index = month)."""
    size = prep.n_months + 1
    controls = _exclusive_cumsum(np.bincount(prep.controls["month"], minlength=size)[:size])
    rates = {}
    f = prep.findings
    for area in RISK_AREAS:
        sel = (f["area"] == area).to_numpy(bool)
        found = np.bincount(f["month"][sel], weights=f["count"][sel], minlength=size)[:size]
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(controls > 0, _exclusive_cumsum(found) / controls, 0.0)
        rates[area] = rate
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
    )[ctl_code >= 0]
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

    Columns: ``n_items``, ``n_controls``, ``n_find``, ``n_find_<area>``, ``recovered`` and
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
    profile: Profile, prep: Prepared, rates: dict[str, np.ndarray], prior_strength: float
) -> dict[str, np.ndarray]:
    """The features ``<prefix>_<stat>`` of one profile, as float32 arrays in row order."""
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
    return out
