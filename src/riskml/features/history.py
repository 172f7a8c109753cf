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
    # Routes of the goods: concealment goods, waste or dual-use goods shipped through transit
    # countries are a pair of departure and heading, which neither profile alone carries.
    Profile(
        "dephs4", ("departure_country", "hs4"), "areas", "HS heading from this departure country"
    ),
    # Peer groups of the goods as a risk profile names them (prepare.DERIVED): the subheading
    # on its route (origin and departure), on its route under the same tariff treatment, and
    # under the same tariff line (treatment and rate). Undervaluation and origin fraud cluster
    # in such cells more sharply than in the subheading or the origin alone.
    Profile("hs6r", ("hs6", "route"), "rates", "HS subheading on this route"),
    Profile(
        "hs6rt",
        ("hs6", "route_treatment"),
        "rates",
        "HS subheading on this route under this tariff treatment",
    ),
    Profile("hs6tl", ("hs6", "tariff_line"), "rates", "HS subheading at this tariff line"),
    # Origin fraud leaves traces no hit rate needs labels for: a preference claimed for goods
    # of an origin whose goods are almost never declared under one (no trade agreement), and
    # an origin this supplier's goods were not declared with before (``riskml.features.SHARES``).
    Profile("origtr", ("origin_country", "treatment"), "counts", "origin under this treatment"),
    Profile("suporig", ("supplier_id", "origin_country"), "counts", "supplier with this origin"),
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
    prep: Prepared,
    detectable: Mapping[str, Sequence[str]] | None = None,
    *,
    size: int | None = None,
) -> dict[str, np.ndarray]:
    """Per area, the overall finding rate per control known at each month start (index = month,
    ``size`` months from 0; by default up to the last declaration month).

    With ``detectable`` (area -> control kinds that can detect it), also ``hrd_<area>``: findings
    of the area per control of a kind able to detect it.
    """
    size = prep.n_months + 1 if size is None else size
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


#: Cell key of an (entity, month): ``entity * CELL + month`` (months are small positive ints).
CELL = 1 << 24


def _exclusive_by_entity(values: np.ndarray, entity: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Per cell (sorted by entity, then month), the sum of the entity's earlier cells.

    ``values`` are whole numbers (counts), so a global cumulative sum minus the entity's offset
    is exact; ``first`` flags each entity's first cell.
    """
    exclusive = np.cumsum(values) - values
    return exclusive - np.maximum.accumulate(np.where(first, exclusive, 0.0))


def table_stats(stats: str) -> list[str]:
    """The statistics a profile table of kind ``stats`` keeps: what :func:`profile_features`
    reads for that kind (a counts profile: no per-area or per-control-kind totals; only the
    full profiles: ``recovered`` and ``last_find_day``)."""
    names = list(_COUNTS)
    if has_rates(stats):
        names += [f"n_ctl_{k}" for k in CONTROL_KINDS] + [f"n_find_{a}" for a in RISK_AREAS]
    if stats == "full":
        names += ["recovered", "last_find_day"]
    return names


#: Every statistic of a profile table (:func:`profile_table` without ``stats``).
ALL_STATS: list[str] = table_stats("full")


def unique_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` of an integer array by hashing, then sorting
    the distinct values only (the same result; sorting every value costs n log n)."""
    inverse, uniques = pd.factorize(values, sort=True)
    return np.asarray(uniques), inverse


def _compact(counts: np.ndarray) -> np.ndarray:
    """Whole-number totals as int32 when they fit (exact; half the memory of float64)."""
    if len(counts) == 0 or counts.max() < np.iinfo(np.int32).max:
        return counts.astype(np.int32)
    return counts


@dataclass(frozen=True)
class ProfileTable:
    """An entity kind's profile cells: per (entity, month) cell holding any event, the entity's
    totals through the end of that month (``through``; cells sorted by key ``entity * CELL +
    month``). The snapshot of an entity at the start of month *m* is its last cell before *m*.
    Counts are stored as int32 (exact), amounts and days as float64."""

    cells: np.ndarray
    through: dict[str, np.ndarray]


def profile_table(
    code: np.ndarray, prep: Prepared, stats: Sequence[str] | None = None
) -> ProfileTable:
    """The profile cells of the entity ``code`` (one code per declaration row of ``prep``).

    Statistics (``stats``, default all: :data:`ALL_STATS`): ``n_items``, ``n_controls``,
    ``n_ctl_<control kind>``, ``n_find``, ``n_find_<area>``, ``recovered`` and
    ``last_find_day`` (day number of the latest finding). Events (declarations, controls,
    findings) are keyed by their (entity, month) cell and summed per cell with ``bincount``;
    each cell then gets its entity's running totals.
    """
    wanted = list(ALL_STATS if stats is None else stats)
    code = np.asarray(code)
    keyed = code >= 0
    ctl, f = prep.controls, prep.findings
    c_code, f_code = code[ctl["row"].to_numpy()], code[f["row"].to_numpy()]
    c_ok, f_ok = c_code >= 0, f_code >= 0
    d_key = code[keyed].astype(np.int64) * CELL + prep.month[keyed]
    c_key = c_code[c_ok].astype(np.int64) * CELL + ctl["month"].to_numpy()[c_ok]
    f_key = f_code[f_ok].astype(np.int64) * CELL + f["month"].to_numpy()[f_ok]
    cells, inverse = unique_inverse(np.concatenate([d_key, c_key, f_key]))
    del d_key
    n = len(cells)
    d_inv = inverse[: int(keyed.sum())]
    c_inv = inverse[len(d_inv) : len(d_inv) + len(c_key)]
    f_inv = inverse[len(d_inv) + len(c_key) :]

    kind = ctl["kind"].to_numpy()[c_ok]
    count = f["count"].to_numpy()[f_ok]
    area = f["area"].to_numpy()[f_ok]
    sums = {
        "n_items": lambda: np.bincount(d_inv, minlength=n).astype(np.float64),
        "n_controls": lambda: np.bincount(c_inv, minlength=n).astype(np.float64),
        **{
            f"n_ctl_{k}": lambda k=k: np.bincount(
                c_inv, weights=(kind == k).astype(float), minlength=n
            )
            for k in CONTROL_KINDS
        },
        "n_find": lambda: np.bincount(f_inv, weights=count, minlength=n),
        **{
            f"n_find_{a}": lambda a=a: np.bincount(f_inv, weights=count * (area == a), minlength=n)
            for a in RISK_AREAS
        },
    }
    entity = cells // CELL
    first = np.ones(n, dtype=bool)
    first[1:] = entity[1:] != entity[:-1]
    through = {}
    for name in wanted:
        if name in sums:
            v = sums[name]()
            through[name] = _compact(_exclusive_by_entity(v, entity, first) + v)
    if "recovered" in wanted or "last_find_day" in wanted:
        # Duty amounts are not whole numbers: a cumulative sum per entity keeps them exact to
        # the entity's own past (no rounding from other entities' cells).
        duty = np.bincount(f_inv, weights=f["duty"].to_numpy()[f_ok], minlength=n)
        last = np.full(n, -np.inf)
        np.maximum.at(last, f_inv, f["day"].to_numpy()[f_ok].astype(np.float64))
        grouped = pd.DataFrame(
            {"entity": entity, "recovered": duty, "last_find_day": last}
        ).groupby("entity", sort=False)
        if "recovered" in wanted:
            through["recovered"] = grouped["recovered"].cumsum().to_numpy()
        if "last_find_day" in wanted:
            through["last_find_day"] = grouped["last_find_day"].cummax().to_numpy()
    return ProfileTable(cells, {name: through[name] for name in wanted})


#: From this many rows on, :func:`lookup` sorts the rows' cell keys first: the binary searches
#: and reads of a large table then move forward through memory instead of jumping at random
#: (several times faster once the table no longer fits in the CPU's caches; same values).
SORTED_LOOKUP = 4096


def lookup(
    table: ProfileTable,
    code: np.ndarray,
    month: np.ndarray,
    names: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Per row, its entity's totals known at the start of the row's ``month``: the entity's last
    cell before that month, zeros when it has none (``last_find_day`` NaN when no finding), NaN
    everywhere when the entity is missing (code -1). ``names``: the statistics wanted (all the
    table holds by default). One float64 array per statistic (a dict, not a frame: this runs per
    profile on every scored batch, where a frame's construction would cost more than the
    lookup)."""
    keyed = code >= 0
    rows = np.flatnonzero(keyed)
    entity = code[rows].astype(np.int64)
    key = entity * CELL + month[rows]
    every = len(rows) == len(code)  # rows then lists every row, in order (unless sorted)
    if len(key) >= SORTED_LOOKUP:
        every = False
        order = np.argsort(key)
        rows, entity, key = rows[order], entity[order], key[order]
    pos = np.searchsorted(table.cells, key, side="left") - 1
    hit = pos >= 0
    hit[hit] = table.cells[pos[hit]] // CELL == entity[hit]
    at = np.maximum(pos, 0)
    out = {}
    for name in table.through if names is None else names:
        values = table.through[name]
        # An empty table (no event at all) answers zeros.
        taken = values[at] if len(values) else np.zeros(len(pos))
        known = np.where(hit, taken, 0.0)
        if name == "last_find_day":
            known = np.where(hit & np.isfinite(known), known, np.nan)
        if every:  # every row keyed (a scored declaration): no NaN rows to fill in
            out[name] = known.astype(np.float64, copy=False)
            continue
        column = np.full(len(code), np.nan)
        column[rows] = known
        out[name] = column
    return out


def snapshot(code: np.ndarray, prep: Prepared) -> pd.DataFrame:
    """Per declaration row of ``prep``, its entity's totals known at the start of the row's month
    (columns of :func:`profile_table`; NaN everywhere where the entity is missing)."""
    return pd.DataFrame(lookup(profile_table(code, prep), code, prep.month))


def profile_features(
    profile: Profile,
    snap: Mapping[str, np.ndarray],
    month: np.ndarray,
    day: np.ndarray,
    rates: dict[str, np.ndarray],
    prior_strength: float,
    detectable: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, np.ndarray]:
    """The features ``<prefix>_<stat>`` of one profile, as float32 arrays in row order, from the
    rows' snapshots ``snap`` (:func:`lookup`), month indices and day numbers.

    With ``detectable`` (area -> control kinds able to detect it) and a profile with hit rates,
    also ``<prefix>_hrd_<area>``: the area's findings over the controls able to detect it,
    smoothed towards the overall rate of the same kind (``rates["hrd_<area>"]``).
    """
    out: dict[str, np.ndarray] = {}
    # One error state for the whole profile (entering one costs more than a one-row ratio).
    with np.errstate(invalid="ignore", divide="ignore"):
        for stat in stat_names(profile.stats):
            if stat.startswith("hr_"):
                prior = rates[stat[3:]][month]
                value = (snap[f"n_find_{stat[3:]}"] + prior_strength * prior) / (
                    snap["n_controls"] + prior_strength
                )
            elif stat == "days_since_find":
                value = day - snap["last_find_day"]
            else:
                value = snap[stat]
            out[f"{profile.prefix}_{stat}"] = value.astype(np.float32)
        if detectable and has_rates(profile.stats):
            for area, kinds in detectable.items():
                det = sum(snap[f"n_ctl_{k}"] for k in kinds if k in CONTROL_KINDS)
                prior = rates[f"hrd_{area}"][month]
                value = (snap[f"n_find_{area}"] + prior_strength * prior) / (det + prior_strength)
                out[f"{profile.prefix}_hrd_{area}"] = value.astype(np.float32)
    return out
