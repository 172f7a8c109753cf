"""The feature store: a stored history's profiles, kept so that declarations get their features
without rebuilding the history, each one as of its own date and independent of its batch.

:class:`FeatureStore` is built once from the stored declarations and outcomes (the pipeline's
validated tables): the profile cells of every entity kind (:func:`profile_table`), the
first day each entity was seen, the tariff-rate cells, the unit values of every stored item (the
reference-price pool, sorted by month) and each importer's monthly share of items outside its
usual chapters. :meth:`FeatureStore.features` then builds a batch's features by lookups, each
row **as of its own date, from the stored history only** (the causality rule of
``docs/features.md``): its profiles are the stored totals at the start of its month, its
reference prices the stored unit values of the months before, its novelty the stored items
accepted before its day. The batch's own rows never feed each other's features, so a declaration
gets the same features alone, in any batch and in any order, bit for bit.

What equals what (tested in ``tests/test_feature_store.py``):

* a declaration already in the stored history gets the features the pipeline
  (:func:`riskml.features.build_features` on the history) gave it;
* a new declaration gets the features :func:`~riskml.features.build_features` would give it on
  *history + that declaration*, whatever its date (before, inside or after the stored months);
  so does a batch whose rows share one day (rows of one day never count each other).

A batch that spans several days after the history is *not* the pipeline's frame on history +
batch: its later rows do not count its earlier rows until those are stored (ingested by the
pipeline). docs/features.md gives the trade-off.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import pandas as pd

from riskml.config import AreaSpec, FeatureParams
from riskml.contract import RiskmlError, empty_table
from riskml.features import (
    PROFILES,
    as_float32,
    assemble,
    model_inputs,
    pair_shares,
    reference_features,
    row_features,
)
from riskml.features.bands import BAND_STATS, VALUE_BANDS, band_features
from riskml.features.behaviour import outside_share_at, outside_share_cells, volume_features
from riskml.features.context import context_columns
from riskml.features.history import (
    SORTED_LOOKUP,
    ProfileTable,
    global_rates,
    lookup,
    profile_features,
    profile_table,
    table_stats,
    unique_inverse,
)
from riskml.features.novelty import ENTITIES as NOVELTY_ENTITIES
from riskml.features.novelty import novelty_from_first
from riskml.features.prepare import Prepared, prepare
from riskml.features.reference import LEVELS, reference_for
from riskml.features.row import unit_values, value_features
from riskml.features.seizures import SeizureIntel
from riskml.features.siblings import SiblingPairs, sibling_fit, sibling_values
from riskml.features.tariff import applied_rates, rate_cells, rate_features, standard_modes

Entity = tuple[str, ...]


def _entities() -> list[Entity]:
    """Every entity kind a batch row needs a code of, once each."""
    kinds: list[Entity] = [p.columns for p in PROFILES]
    kinds += [cols for band in VALUE_BANDS for cols in (band.band, band.near)]
    kinds += list(NOVELTY_ENTITIES) + [cols for _, _, cols in LEVELS] + [("hs6",)]
    return list(dict.fromkeys(kinds))


#: Radix of a pair's combined key: ``first * RADIX + second`` (value codes stay far below it).
RADIX = np.int64(1 << 31)


#: Up to this many rows, a batch's values are coded by dict look-ups (an index's per-call cost
#: is far above a few of them); the codes are the same.
SMALL_BATCH = 64


def _value_codes(
    prep: Prepared,
    columns: set[str],
    known: Mapping[str, pd.Index] | None = None,
    known_dict: Mapping[str, dict[str, int]] | None = None,
) -> tuple[dict[str, pd.Index], dict[str, np.ndarray]]:
    """Per column of ``prep``: the index of its values and each row's value code (-1: missing).

    With ``known`` (the stored values), a known value keeps its stored code and a value never
    stored gets a code after them (numbered in order of first appearance); without, the values
    are indexed anew in order of first appearance (the stored history: int32 codes, the
    history's largest arrays while the store is built). ``known_dict``: the same codes as
    dicts (value -> code), used for small batches. Larger batches and the history code each
    distinct value once (a column's rows are factorized, not turned into Python strings)."""
    index, codes = {}, {}
    small = known is not None and known_dict is not None and len(prep.day) <= SMALL_BATCH
    for c in columns:
        if small:
            assert known is not None and known_dict is not None
            index[c] = known[c]
            values = prep.cells(c)  # value by value, the derived keys too
            get = known_dict[c].get
            code = np.array([-1 if v is None else get(v, -1) for v in values], np.int64)
            new = (code < 0) & ~pd.isna(values)
            if new.any():
                code[new] = len(known[c]) + pd.factorize(values[new])[0]
            codes[c] = code
            continue
        local, uniques = pd.factorize(prep.column(c), use_na_sentinel=True)
        distinct = pd.Index(np.asarray(uniques, dtype=object), dtype=object)
        if known is None:
            index[c], mapped = distinct, np.arange(len(distinct), dtype=np.int32)
        else:
            index[c] = known[c]
            mapped = known[c].get_indexer(distinct)
            new = mapped < 0
            mapped[new] = len(known[c]) + np.arange(int(new.sum()))
        dtype = np.int32 if known is None else np.int64
        code = np.full(len(local), -1, dtype=dtype)
        present = local >= 0
        code[present] = mapped[local[present]]
        codes[c] = code
    return index, codes


def _combined(codes: Mapping[str, np.ndarray], columns: Entity) -> np.ndarray:
    """Each row's key of the entity ``columns`` from its value codes; -1 when a part is missing."""
    key = codes[columns[0]].astype(np.int64)
    missing = key < 0
    for c in columns[1:]:
        key = key * RADIX + codes[c]
        missing = missing | (codes[c] < 0)
    return np.where(missing, -1, key)


def _sorted_search(known: np.ndarray, key: np.ndarray) -> np.ndarray:
    """``np.searchsorted(known, key)``; a large batch's keys are sorted first, so that the
    searches move forward through a large ``known`` instead of jumping at random."""
    if len(key) < SORTED_LOOKUP:
        return np.searchsorted(known, key)
    order = np.argsort(key)
    pos = np.empty(len(key), dtype=np.intp)
    pos[order] = np.searchsorted(known, key[order])
    return pos


class FeatureStore:
    """A stored history's profiles, answering the features of any declaration as of its date.

    Built once (seconds for a few hundred thousand items); :meth:`features` is then a set of
    lookups whose cost grows with the batch, not with the history. Thread-safe: the store is
    read-only after construction except for small per-month caches.
    """

    def __init__(
        self,
        declarations: pd.DataFrame,
        outcomes: pd.DataFrame,
        params: FeatureParams,
        specs: Mapping[str, AreaSpec] | None = None,
        seizures: pd.DataFrame | None = None,
    ) -> None:
        if declarations.empty:
            raise RiskmlError("the feature store needs stored declarations; run the pipeline first")
        self.params, self.specs = params, specs
        self.detectable = {a: list(s.detectable_by) for a, s in specs.items()} if specs else None
        hist = prepare(declarations, outcomes, keep_late=True)
        self.first_month, self.last_month, self.horizon = (
            hist.first_month,
            hist.n_months,
            hist.horizon,
        )
        # Entity kinds: the stored keys (sorted) give the codes, so a batch value maps to the
        # same code.
        columns = {c for cols in _entities() for c in cols}
        self.values, value_codes = _value_codes(hist, columns)
        self.value_of = {c: {v: i for i, v in enumerate(idx)} for c, idx in self.values.items()}
        # The text columns are coded: from here on only the codes are needed.
        hist.derived.clear()
        # Each entity kind is coded, used by everything built from it, and dropped: the store
        # keeps the aggregates (profile cells, first days, the reference pool), not a code per
        # stored item and kind (they were most of its memory on a large history).
        order = np.argsort(hist.month, kind="stable")  # the reference pool's order: by month
        stats = {p.columns: table_stats(p.stats) for p in PROFILES}
        stats |= {cols: BAND_STATS for band in VALUE_BANDS for cols in (band.band, band.near)}
        levels = {cols: level for level, _, cols in LEVELS}
        counted = {("importer_id",): "imp", ("importer_id", "hs4"): "imphs4"}
        counted[("importer_id", "hs2")] = "imphs2"
        self.keys: dict[Entity, np.ndarray] = {}
        self.tables: dict[Entity, ProfileTable] = {}
        self.first_days: dict[Entity, np.ndarray] = {}
        self.pool_codes: dict[int, np.ndarray] = {}
        counts: dict[str, np.ndarray] = {}
        importer = np.zeros(0, dtype=np.int32)
        for kind in _entities():
            key = _combined(value_codes, kind)
            keyed = key >= 0
            self.keys[kind], inverse = unique_inverse(key[keyed])
            code = np.full(len(key), -1, dtype=np.int32)
            code[keyed] = inverse
            del key, keyed, inverse
            if kind in stats:
                self.tables[kind] = profile_table(code, hist, stats[kind])
            if kind in NOVELTY_ENTITIES:
                first = np.full(len(self.keys[kind]), np.inf)
                np.minimum.at(first, code[code >= 0], hist.day[code >= 0].astype(np.float64))
                self.first_days[kind] = first
            if kind in levels:
                self.pool_codes[levels[kind]] = code[order]
            if kind == ("hs6",):
                rate, pref = applied_rates(hist)
                self.rate_cells = rate_cells(code.astype(np.int64), rate, pref, hist.month)
            if kind in counted:
                n_items = lookup(self.tables[kind], code, hist.month, ["n_items"])["n_items"]
                counts[f"{counted[kind]}_n_items"] = n_items.astype(np.float32)
            if kind == ("importer_id",):
                importer = code
        del value_codes
        # Reference pool: every stored item's unit values, sorted by month.
        self.pool_month = hist.month[order].astype(np.int32)
        self.pool_codes = {level: self.pool_codes[level] for level, _, _ in LEVELS}
        self.pool_uv = unit_values(hist.declarations).iloc[order].reset_index(drop=True)
        del order
        # Each importer's monthly share of items outside its usual chapters, over every stored
        # item (the chapter share of an item: its importer's earlier items in the item's chapter).
        self.outside_cells = outside_share_cells(
            importer, hist.month, pair_shares(counts, ["imp_hs2_share"])["imp_hs2_share"]
        )
        del counts, importer
        # Each month's HS6 codes and their dearer siblings, from the same pool (once a month).
        names = np.asarray(self.values["hs6"], dtype=object)[self.keys[("hs6",)]]
        hs6_level = next(level for level, _, cols in LEVELS if cols == ("hs6",))
        self.siblings = SiblingPairs(
            self.pool_codes[hs6_level],
            self.pool_month,
            self.pool_uv,
            names,
            self._standard_at,
            months=params.reference_months,
            min_count=params.min_reference_count,
        )
        # Seizure records answer any later month by lookups (reported before the row's month).
        self.intel = SeizureIntel(seizures)
        # Kept: the declarations (:attr:`declarations`) and the outcome events (the overall
        # rates of any month); not the per-row arrays of the build.
        no_text = pd.Series([], dtype="string")
        self._hist = replace(
            hist, day=np.zeros(0, np.int64), month=np.zeros(0, np.int64), hs4=no_text,
            hs6=no_text, hs2=no_text, codes={}, derived={},
        )  # fmt: skip
        self._lock = threading.Lock()
        self._no_outcomes = empty_table("outcomes")  # a batch has none (built once)
        self._rates: dict[int, dict[str, np.ndarray]] = {}  # global rates per array size
        self._modes: dict[int, pd.Series] = {}  # standard duty rate per HS6, per month

    @property
    def declarations(self) -> pd.DataFrame:
        """The stored declarations, in stored order (their features: :meth:`features`)."""
        return self._hist.declarations

    @functools.cached_property
    def declaration_months(self) -> np.ndarray:
        """Each stored declaration's calendar month (``datetime64[M]``), in stored order;
        computed once (the month-by-month features ask for it per month)."""
        return self.declarations["accepted_date"].to_numpy().astype("datetime64[M]")

    @property
    def last_date(self) -> pd.Timestamp:
        """The first day of the history's last declaration month."""
        return pd.Timestamp(np.datetime64(self.first_month + self.last_month - 1, "M"))

    def _codes(self, prep: Prepared) -> None:
        """Code every entity of the batch ``prep`` in the history's code space: known values get
        their stored code, new values codes after them (never stored, so without history),
        missing parts -1."""
        _, value_codes = _value_codes(prep, set(self.values), self.values, self.value_of)
        for kind, known in self.keys.items():
            key = _combined(value_codes, kind)
            pos = np.minimum(_sorted_search(known, key), max(len(known) - 1, 0))
            found = (key >= 0) & (known[pos] == key) if len(known) else np.zeros(len(key), bool)
            code = np.where(found, pos, -1)
            new = (key >= 0) & ~found
            if new.any():
                code[new] = len(known) + pd.factorize(key[new])[0]
            prep.codes["×".join(kind)] = code.astype(np.int64)

    def _first_days(self, prep: Prepared) -> dict[Entity, np.ndarray]:
        """Per row and novelty entity, the first day the entity was seen as of the row's day:
        the stored first day, or the row's own day when none is earlier (NaN: entity missing)."""
        out = {}
        for columns, stored in self.first_days.items():
            code = prep.code(*columns)
            first = np.full(len(code), np.nan)
            keyed = code >= 0
            before = np.full(int(keyed.sum()), np.inf)
            old = code[keyed] < len(stored)
            before[old] = stored[code[keyed][old]]
            first[keyed] = np.fmin(before, prep.day[keyed].astype(np.float64))
            out[columns] = first
        return out

    def _global_rates(self, month: np.ndarray) -> dict[str, np.ndarray]:
        size = max(int(month.max(initial=0)), self.horizon) + 1
        with self._lock:
            if size not in self._rates:
                self._rates[size] = global_rates(self._hist, self.detectable, size=size)
            return self._rates[size]

    def _standard_at(self, m: int) -> pd.Series:
        """The standard duty rate of each stored HS6 code for rows of month ``m``."""
        with self._lock:
            if m not in self._modes:
                self._modes[m] = standard_modes(self.rate_cells, m, self.params.reference_months)
            return self._modes[m]

    def _standard(self, hs6: np.ndarray, month: np.ndarray) -> np.ndarray:
        """Per row, the standard duty rate of its HS6 in the stored months before its month."""
        standard = np.full(len(hs6), np.nan)
        for m in np.unique(month).tolist():
            rows = np.flatnonzero((month == m) & (hs6 >= 0))
            if len(rows) == 0:
                continue
            mode = self._standard_at(m)
            if len(mode):
                standard[rows] = mode.reindex(hs6[rows]).to_numpy(np.float64)
        return standard

    def features(
        self, batch: pd.DataFrame, *, context: bool = True, consolidate: bool = True
    ) -> pd.DataFrame:
        """The features of ``batch`` (contract-valid declarations of any date), one row per item
        in input order, each row as of its own date from the stored history alone.
        ``context=False`` leaves out the ``ctx_`` columns (only reason sentences read them);
        ``consolidate=False``: a frame to write out (:func:`riskml.features.assemble`)."""
        prep, features, ctx = self._features(batch, context=context)
        return assemble(prep, features, ctx, self.specs, batch.index, consolidate=consolidate)

    def model_inputs(self, batch: pd.DataFrame, names: list[str]) -> np.ndarray:
        """The features ``names`` of ``batch`` as one float32 matrix: the values of
        ``features(batch, context=False)[names]`` as float32, without building the frame."""
        prep, features, _ = self._features(batch, context=False)
        return model_inputs(prep, features, self.specs, names)

    def _features(
        self, batch: pd.DataFrame, *, context: bool
    ) -> tuple[Prepared, dict[str, np.ndarray], pd.DataFrame | None]:
        """(prepared batch, feature arrays, ``ctx_`` columns or None) of :meth:`features`."""
        params = self.params
        prep = prepare(batch, self._no_outcomes, first_month=self.first_month)
        # Rows dated before the stored months: nothing stored precedes them (month index 0).
        prep.month = np.maximum(prep.month, 0)
        self._codes(prep)
        decl, month, day = prep.declarations, prep.month, prep.day

        uv = unit_values(decl)
        ref = reference_for(
            self.pool_codes,
            self.pool_month,
            self.pool_uv,
            {c: prep.code(*cols) for c, _, cols in LEVELS},
            month,
            months=params.reference_months,
            min_count=params.min_reference_count,
            pool_sorted=True,
        )
        features = reference_features(uv, ref) | as_float32(value_features(decl))
        rate, _ = applied_rates(prep)
        features |= rate_features(self._standard(prep.code("hs6"), month), rate)
        siblings, sibling_ctx = sibling_fit(
            self.siblings, prep.code("hs6"), month, sibling_values(uv)
        )
        features |= siblings

        rates = self._global_rates(month)
        for profile in PROFILES:
            snap = lookup(self.tables[profile.columns], prep.code(*profile.columns), month)
            features |= profile_features(
                profile, snap, month, day, rates, params.prior_strength, self.detectable
            )
        for band in VALUE_BANDS:
            whole, near = (
                lookup(self.tables[cols], prep.code(*cols), month)
                for cols in (band.band, band.near)
            )
            features |= band_features(band, whole, near, month, rates, params.prior_strength)
        features |= novelty_from_first(self._first_days(prep), day)
        features |= pair_shares(features)
        features["imp_outside_usual_share"] = outside_share_at(
            self.outside_cells, prep.code("importer_id"), month
        )

        def items_before(column: str, at: np.ndarray) -> np.ndarray:
            code = prep.code(column)
            return lookup(self.tables[(column,)], code, at, ["n_items"])["n_items"]

        features |= volume_features(items_before, month, params.reference_months)
        features |= row_features(prep)
        intel, intel_ctx = self.intel.features(prep, context=context)
        features |= intel
        ctx = None
        if context:
            ctx = context_columns(prep, uv, ref, rates, params)
            ctx = pd.concat(
                [ctx, *(c.set_axis(ctx.index) for c in (intel_ctx, sibling_ctx))], axis=1
            )
        return prep, features, ctx
