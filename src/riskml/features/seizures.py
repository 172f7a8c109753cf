"""Route and commodity intelligence from seizures made elsewhere (the ``seizures`` table).

Seizure records (WCO CEN style) are not linked to any declaration: they say which goods, from or
through which countries, by which transport mode, smuggling networks use. They become features of
a declaration item by table lookups, like the entity histories of :mod:`riskml.features.history`:
per risk area and key (HS heading x country, HS chapter x country, country, transport mode x
country, HS heading), the records **reported before the start of the item's month** are counted
over the previous ``WINDOW`` months (and ``RECENT`` months for the trend). A record reported in
the item's month or later changes nothing (causality rule, design.md section 3).

A record names up to two countries (departure and transit); an item names two (origin and
departure). An item's route count is the larger of its origin's and its departure's count, and
the ``ctx_`` column says which country it was.

:class:`SeizureIntel` holds the cumulative counts per key and report month; it is built once
(the pipeline, or the scoring-time feature store) and answers any later batch by lookups.
Without a seizures table every feature is missing (NaN: no intelligence, not "no seizure").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from riskml.features.prepare import Prepared, month_numbers, optional

SEIZURE_AREAS: tuple[str, ...] = ("drugs", "environment", "health_safety", "security")
WINDOW = 12  # months of seizure reports counted
SMALL_BATCH = 64  # up to this many rows, keys are looked up one by one
RECENT = 3  # months of the trend's recent part

# Kind of key -> the record fields it is built from (besides the country fields).
KINDS: tuple[str, ...] = ("route", "chapter_country", "country", "mode_country", "goods")
# Feature suffixes per area, in output order.
STATS: tuple[str, ...] = (
    "route_12m",
    "route_3m",
    "route_reporters",
    "chapter_country_12m",
    "country_12m",
    "mode_country_12m",
    "goods_share",
)


def feature_names(areas: tuple[str, ...] = SEIZURE_AREAS) -> list[str]:
    """The seizure features, ``sz_<area>_<stat>``, in output order."""
    return [f"sz_{a}_{s}" for a in areas for s in STATS]


@dataclass(frozen=True)
class _Counts:
    """Per key, cumulative counts over report months: ``cum[k, j]`` = records of key ``k``
    reported before absolute month ``start + j``; per (key, reporter) pair the same."""

    keys: pd.Index  # object dtype: a batch's keys (object) are looked up without a cast
    cum: np.ndarray  # (n_keys, n_months + 1)
    pair_key: np.ndarray  # key index of each (key, reporter) pair
    pair_cum: np.ndarray  # (n_pairs, n_months + 1)
    pair_order: np.ndarray  # the pairs sorted by key (stable)
    code_of: dict[str, int]  # key -> its position in ``keys`` (a few rows: dict look-ups)

    def window(self, code: np.ndarray, month: np.ndarray, start: int, width: int) -> np.ndarray:
        """Records of key ``code`` reported in the ``width`` months before ``month`` (absolute);
        0 for unknown keys (-1)."""
        return _window(self.cum, code, month, start, width)

    def reporters(self, code: np.ndarray, month: np.ndarray, start: int, width: int) -> np.ndarray:
        """Distinct reporting countries of those records."""
        out = np.zeros(len(code))
        known = code >= 0
        if not known.any() or not len(self.pair_key):
            return out
        # the distinct (key, month) combinations asked, in (key, month) order, as one integer
        # per row (key * span + month offset) factorized by hashing: the same combinations as
        # ``np.unique(np.stack([key, month], axis=1), axis=0)``, whose sort of row pairs grew
        # faster than the rows (5x for a month's rows tripled, docs/performance.md)
        k_code, k_month = code[known].astype(np.int64), month[known].astype(np.int64)
        base = int(k_month.min())
        span = int(k_month.max()) - base + 1
        inverse, combo = pd.factorize(k_code * span + (k_month - base), sort=True)
        combo_key, combo_month = combo // span, combo % span + base
        # each (key, month) asked with every (key, reporter) pair of its key: the pairs are
        # sorted by key, so a key's pairs are one slice
        sorted_key = self.pair_key[self.pair_order]
        lo = np.searchsorted(sorted_key, combo_key, side="left")
        n_pairs = np.searchsorted(sorted_key, combo_key, side="right") - lo
        q = np.repeat(np.arange(len(combo)), n_pairs)
        offset = np.arange(len(q)) - np.repeat(np.cumsum(n_pairs) - n_pairs, n_pairs)
        pair = self.pair_order[np.repeat(lo, n_pairs) + offset]
        seen = _window(self.pair_cum, pair, combo_month[q], start, width) > 0
        per_combo = np.bincount(q, weights=seen, minlength=len(combo))
        out[known] = per_combo[inverse]
        return out


def _window(
    cum: np.ndarray, code: np.ndarray, month: np.ndarray, start: int, width: int
) -> np.ndarray:
    out = np.zeros(len(code))
    known = code >= 0
    if not known.any() or cum.shape[0] == 0:
        return out
    last = cum.shape[1] - 1
    hi = np.clip(month[known] - start, 0, last)
    lo = np.clip(month[known] - width - start, 0, last)
    key = code[known]
    out[known] = cum[key, hi] - cum[key, lo]  # two cells per row, not the key's whole row
    return out


def _counts(
    keys: pd.Series, report: np.ndarray, reporter: pd.Series, start: int, n: int
) -> _Counts:
    """Cumulative counts of the records' ``keys`` (missing keys skipped) by report month."""
    ok = keys.notna().to_numpy()
    codes, uniques = pd.factorize(keys[ok])
    j = report[ok] - start
    counts = np.zeros((len(uniques), n + 1))
    np.add.at(counts, (codes, j + 1), 1.0)
    pair = pd.Series(codes).astype(str) + "|" + reporter[ok].astype(str).to_numpy()
    p_codes, p_uniques = pd.factorize(pair)
    p_counts = np.zeros((len(p_uniques), n + 1))
    np.add.at(p_counts, (p_codes, j + 1), 1.0)
    p_key = np.zeros(len(p_uniques), dtype=np.int64)
    p_key[p_codes] = codes
    return _Counts(
        pd.Index(np.asarray(uniques, dtype=object), dtype=object),
        np.cumsum(counts, axis=1),
        p_key,
        np.cumsum(p_counts, axis=1),
        np.argsort(p_key, kind="stable"),
        {str(k): i for i, k in enumerate(uniques)},
    )


def _join(*parts: pd.Series) -> pd.Series:
    """Text key of several fields (missing when any part is missing)."""
    out = parts[0].astype("string")
    for p in parts[1:]:
        out = out + "|" + p.astype("string")
    return out


def _objects(values: pd.Series | np.ndarray) -> np.ndarray:
    """A text column's values as an object array (an object array as it is)."""
    if isinstance(values, np.ndarray):
        return values
    return values.to_numpy(object)


def _join_keys(*parts: np.ndarray) -> np.ndarray:
    """:func:`_join`'s keys of a few rows as an object array (None: missing), joined value by
    value from their values (:meth:`riskml.features.prepare.Prepared.cells`: the same keys
    without the fixed cost of pandas' string operations)."""
    return np.array(
        [None if None in row else "|".join(row) for row in zip(*parts, strict=True)],
        dtype=object,
    )


class SeizureIntel:
    """Seizure counts per area, key and report month, answering lookups for any item."""

    def __init__(self, seizures: pd.DataFrame | None) -> None:
        self.available = seizures is not None and len(seizures) > 0
        self.tables: dict[tuple[str, str], _Counts] = {}
        self.totals: dict[str, np.ndarray] = {}
        if seizures is None:
            return
        s = seizures.reset_index(drop=True)
        report = month_numbers(s["report_date"]) if len(s) else np.zeros(0, dtype=np.int64)
        self.start = int(report.min()) if len(s) else 0
        n = int(report.max()) - self.start + 1 if len(s) else 0
        hs = optional(s, "concealment_hs", "string").str.strip()
        hs4 = hs.where(hs.str.len() >= 4).str.slice(0, 4)
        hs2 = hs.str.slice(0, 2)
        mode = optional(s, "transport_mode", "string")
        reporter = (
            s["reporting_country"].astype("string") if len(s) else pd.Series([], dtype="string")
        )
        departure = optional(s, "departure_country", "string")
        transit = optional(s, "transit_country", "string")
        # One row per (record, named country): departure, and transit when it differs.
        twice = transit.notna() & (transit != departure).fillna(True)
        country = pd.concat([departure, transit[twice]], ignore_index=True)
        rows = np.concatenate([np.arange(len(s)), np.flatnonzero(twice.to_numpy())])
        area = optional(s, "risk_area", "string")
        for a in SEIZURE_AREAS:
            mine = (area == a).fillna(False).to_numpy(bool)
            m_rows = mine[rows]
            r_rows = rows[m_rows]

            def by_country(*fields: pd.Series, _r: np.ndarray = r_rows, _m=m_rows) -> pd.Series:
                parts = [f.iloc[_r].reset_index(drop=True) for f in fields]
                return _join(*parts, country[_m].reset_index(drop=True))

            rep_c, rep_r = reporter.iloc[r_rows].reset_index(drop=True), report[r_rows]
            self.tables[(a, "route")] = _counts(by_country(hs4), rep_r, rep_c, self.start, n)
            self.tables[(a, "chapter_country")] = _counts(
                by_country(hs2), rep_r, rep_c, self.start, n
            )
            self.tables[(a, "country")] = _counts(
                country[m_rows].reset_index(drop=True), rep_r, rep_c, self.start, n
            )
            self.tables[(a, "mode_country")] = _counts(
                by_country(mode), rep_r, rep_c, self.start, n
            )
            own = np.flatnonzero(mine)
            self.tables[(a, "goods")] = _counts(
                hs4.iloc[own].reset_index(drop=True),
                report[own],
                reporter.iloc[own].reset_index(drop=True),
                self.start,
                n,
            )
            every = pd.Series(np.where(mine, "all", None), dtype="string")
            self.totals[a] = _counts(every, report, reporter, self.start, n).cum

    def _code(self, area: str, kind: str, keys: np.ndarray | tuple) -> np.ndarray:
        """Codes of item ``keys`` in the area's table of ``kind`` (-1: no record, or missing).
        ``keys``: an object array (None: missing) of a few rows, or a larger batch's keys
        factorized (each row's distinct-key number, -1 missing; the distinct keys), so that
        each distinct key is looked up once."""
        table = self.tables[(area, kind)]
        if not isinstance(keys, tuple):  # the index's fixed cost is far above a few dict look-ups
            get = table.code_of.get
            return np.array([-1 if k is None else get(k, -1) for k in keys], dtype=np.int64)
        local, distinct = keys
        mapped = table.keys.get_indexer(distinct)
        code = np.full(len(local), -1, dtype=np.int64)
        present = local >= 0
        code[present] = mapped[local[present]]
        return code

    def features(
        self, prep: Prepared, *, context: bool = True
    ) -> tuple[dict[str, np.ndarray], pd.DataFrame | None]:
        """Per row of ``prep``: the seizure features (float32) and their ``ctx_`` columns (the
        country each route count names; None with ``context=False``)."""
        n = len(prep.month)
        names = feature_names()
        if not self.available:
            nan = np.full(n, np.nan, dtype=np.float32)
            ctx = {f"ctx_sz_{a}_country": pd.Series(pd.NA, dtype="string") for a in SEIZURE_AREAS}
            return {k: nan.copy() for k in names}, pd.DataFrame(ctx, index=range(n))
        month = prep.month + prep.first_month - 1  # absolute month of each row
        decl = prep.declarations
        small = n <= SMALL_BATCH  # a few rows: their values as Python objects (None: missing)
        origin: pd.Series | np.ndarray
        departure: pd.Series | np.ndarray
        if small:
            origin = prep.cells("origin_country")
            pairs = zip(prep.cells("departure_country"), origin, strict=True)
            departure = np.array([o if d is None else d for d, o in pairs], dtype=object)
            mode, hs4, hs2 = prep.cells("transport_mode"), prep.cells("hs4"), prep.cells("hs2")
        else:
            origin = optional(decl, "origin_country", "string").reset_index(drop=True)
            departure = optional(decl, "departure_country", "string").reset_index(drop=True)
            departure = departure.fillna(origin)
            mode = optional(decl, "transport_mode", "string").reset_index(drop=True)
            hs4 = prep.hs4.reset_index(drop=True).astype("string")
            hs2 = prep.hs2.reset_index(drop=True).astype("string")
        # item keys per kind, for its origin and for its departure country
        fields = {
            "route": (hs4,),
            "chapter_country": (hs2,),
            "country": (),
            "mode_country": (mode,),
        }

        def coded(*parts: Any) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
            if small:
                return _join_keys(*parts)
            local, distinct = pd.factorize(_join(*parts), use_na_sentinel=True)
            return local, np.asarray(distinct, dtype=object)

        keys = {k: [coded(*f, c) for c in (origin, departure)] for k, f in fields.items()}
        goods_keys = coded(hs4)
        out: dict[str, np.ndarray] = {}
        ctx: dict[str, pd.Series] = {}
        for a in SEIZURE_AREAS:
            # the rows' codes in each of the area's tables, for their origin and departure
            codes = {k: [self._code(a, k, side) for side in keys[k]] for k in keys}

            def counts(kind: str, width: int, how: str = "window", _a: str = a, _c=codes) -> list:
                table = self.tables[(_a, kind)]
                get = table.window if how == "window" else table.reporters
                return [get(code, month, self.start, width) for code in _c[kind]]

            r12 = counts("route", WINDOW)
            use_dep = r12[1] > r12[0]
            out[f"sz_{a}_route_12m"] = np.where(use_dep, r12[1], r12[0])
            r3 = counts("route", RECENT)
            out[f"sz_{a}_route_3m"] = np.where(use_dep, r3[1], r3[0])
            rep = counts("route", WINDOW, "reporters")
            out[f"sz_{a}_route_reporters"] = np.where(use_dep, rep[1], rep[0])
            if context:
                ctx[f"ctx_sz_{a}_country"] = pd.Series(
                    np.where(use_dep, _objects(departure), _objects(origin))
                ).astype("string")
            for kind in ("chapter_country", "country", "mode_country"):
                out[f"sz_{a}_{kind}_12m"] = np.maximum(*counts(kind, WINDOW))
            goods = self.tables[(a, "goods")]
            in_goods = goods.window(self._code(a, "goods", goods_keys), month, self.start, WINDOW)
            total = _window(self.totals[a], np.zeros(n, dtype=np.int64), month, self.start, WINDOW)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[f"sz_{a}_goods_share"] = np.where(total > 0, in_goods / total, 0.0)
        values = {k: out[k].astype(np.float32) for k in names}
        return values, pd.DataFrame(ctx) if context else None
