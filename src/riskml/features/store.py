"""The feature store: a stored history's profiles, kept so that new declarations get their
features without rebuilding the history.

:class:`FeatureStore` is built once from the stored declarations and outcomes (the pipeline's
``data/interim`` tables): the profile cells of every entity kind (:func:`profile_table`), the
first day each entity was seen, the tariff-rate cells, the unit values of the last
``reference_months`` months (the reference-price pool) and the chapter shares of the last month.
:meth:`FeatureStore.features` then builds a batch's features by lookups: each profile at the start
of the row's month is the entity's stored totals plus the batch's own earlier items, the
reference price comes from the pool plus the batch, and so on. The result is the frame that
:func:`riskml.features.build_features` would give the batch's rows on *history + batch* (a test
checks they are equal), at the cost of the batch alone.

The batch must not reach back before the history's last declaration month: every row dated in
that month or later (:meth:`FeatureStore.covers`; the current month of a live system, whose
earlier days are in the history). Older rows need the full rebuild (``build_features``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from riskml.config import AreaSpec, FeatureParams
from riskml.contract import RiskmlError, empty_table
from riskml.features import (
    PROFILES,
    as_float32,
    assemble,
    pair_shares,
    reference_features,
    row_features,
)
from riskml.features.behaviour import outside_usual_share, volume_features
from riskml.features.context import context_columns
from riskml.features.history import (
    ProfileTable,
    global_rates,
    lookup,
    profile_features,
    profile_table,
)
from riskml.features.novelty import ENTITIES as NOVELTY_ENTITIES
from riskml.features.novelty import novelty_from_first
from riskml.features.prepare import Prepared, prepare
from riskml.features.reference import LEVELS, reference_for
from riskml.features.row import unit_values, value_features
from riskml.features.tariff import applied_rates, rate_cells, rate_features, standard_for

Entity = tuple[str, ...]


def _entities() -> list[Entity]:
    """Every entity kind a batch row needs a code of, once each."""
    kinds: list[Entity] = [p.columns for p in PROFILES]
    kinds += list(NOVELTY_ENTITIES) + [cols for _, _, cols in LEVELS] + [("hs6",)]
    return list(dict.fromkeys(kinds))


def _keys(
    values: Mapping[str, np.ndarray], columns: Entity, rows: np.ndarray | None = None
) -> pd.Index:
    """The (combined) key values of ``columns`` (``values``: each column as an object array)
    for ``rows`` (all by default)."""
    parts = [values[c] if rows is None else values[c][rows] for c in columns]
    if len(parts) == 1:
        return pd.Index(parts[0])
    return pd.MultiIndex.from_arrays(parts)


def _column_values(prep: Prepared, columns: set[str]) -> dict[str, np.ndarray]:
    """Each of ``columns`` of ``prep`` as an object array (missing: None), converted once."""
    return {c: prep.column(c).to_numpy(dtype=object, na_value=None) for c in columns}


class FeatureStore:
    """A stored history's profiles, answering the features of later declarations."""

    def __init__(
        self,
        declarations: pd.DataFrame,
        outcomes: pd.DataFrame,
        params: FeatureParams,
        specs: Mapping[str, AreaSpec] | None = None,
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
        # Entity kinds: the stored keys in code order, so a batch value maps to the same code.
        self.keys: dict[Entity, pd.Index] = {}
        values = _column_values(hist, {c for cols in _entities() for c in cols})
        for columns in _entities():
            code = hist.code(*columns)
            codes, first_row = np.unique(code, return_index=True)
            valid = codes >= 0
            self.keys[columns] = _keys(values, columns, first_row[valid])
            # Codes 0..n-1 in key order (factorised codes may skip values of missing keys).
            hist.codes["×".join(columns)] = np.where(
                code >= 0, np.searchsorted(codes[valid], code), -1
            ).astype(np.int64)
        self.tables: dict[Entity, ProfileTable] = {
            p.columns: profile_table(hist.code(*p.columns), hist) for p in PROFILES
        }
        self.first_days: dict[Entity, np.ndarray] = {}
        for columns in NOVELTY_ENTITIES:
            code = hist.code(*columns)
            first = np.full(len(self.keys[columns]), np.inf)
            np.minimum.at(first, code[code >= 0], hist.day[code >= 0].astype(np.float64))
            self.first_days[columns] = first
        rate, pref = applied_rates(hist)
        self.rate_cells = rate_cells(hist.code("hs6"), rate, pref, hist.month)
        # Reference pool: the months a row of the last month or later compares with.
        recent = np.flatnonzero(hist.month >= self.last_month - params.reference_months)
        self.pool_month = hist.month[recent]
        self.pool_codes = {code: hist.code(*cols)[recent] for code, _, cols in LEVELS}
        self.pool_uv = unit_values(hist.declarations.iloc[recent]).reset_index(drop=True)
        # Chapter shares of the last two months (the "outside usual chapters" of the next month).
        last = np.flatnonzero(hist.month >= self.last_month - 1)
        shares = pair_shares(
            {
                name: lookup(
                    self.tables[cols], hist.code(*cols)[last], hist.month[last], ["n_items"]
                )["n_items"]
                .to_numpy()
                .astype(np.float32)
                for name, cols in (
                    ("imp_n_items", ("importer_id",)),
                    ("imphs4_n_items", ("importer_id", "hs4")),
                    ("imphs2_n_items", ("importer_id", "hs2")),
                )
            }
        )
        self.last_importer = hist.code("importer_id")[last]
        self.last_share_month = hist.month[last]
        self.last_share = shares["imp_hs2_share"]
        self._hist = hist
        self._rates: dict[int, dict[str, np.ndarray]] = {}  # global rates per array size

    @property
    def last_date(self) -> pd.Timestamp:
        """The first day of the history's last declaration month."""
        return pd.Timestamp(np.datetime64(self.first_month + self.last_month - 1, "M"))

    def covers(self, batch: pd.DataFrame) -> bool:
        """Whether every row of ``batch`` is dated in the history's last declaration month or
        later."""
        month = pd.to_datetime(batch["accepted_date"]).to_numpy().astype("datetime64[M]")
        return bool(len(batch)) and int(month.astype(np.int64).min()) >= (
            self.first_month + self.last_month - 1
        )

    def _codes(self, prep: Prepared) -> None:
        """Code every entity of the batch ``prep`` in the history's code space: known values get
        their stored code, new values new codes after them, missing parts -1."""
        values = _column_values(prep, {c for cols in self.keys for c in cols})
        absent = {c: pd.isna(v) for c, v in values.items()}
        for columns, known in self.keys.items():
            keys = _keys(values, columns)
            code = known.get_indexer(keys).astype(np.int64)
            missing = np.zeros(len(code), dtype=bool)
            for c in columns:
                missing |= absent[c]
            new = (code < 0) & ~missing
            if new.any():
                fresh, _ = pd.factorize(keys[new])
                code[new] = len(known) + fresh
            code[missing] = -1
            prep.codes["×".join(columns)] = code

    def _batch_first_days(self, prep: Prepared) -> dict[Entity, np.ndarray]:
        out = {}
        for columns, stored in self.first_days.items():
            code = prep.code(*columns)
            first = np.full(len(code), np.nan)
            keyed = code >= 0
            own = pd.Series(prep.day[keyed]).groupby(code[keyed]).transform("min").to_numpy()
            before = np.full(keyed.sum(), np.inf)
            old = code[keyed] < len(stored)
            before[old] = stored[code[keyed][old]]
            first[keyed] = np.fmin(before, own.astype(np.float64))
            out[columns] = first
        return out

    def features(self, batch: pd.DataFrame, *, context: bool = True) -> pd.DataFrame:
        """The features of ``batch`` (contract-valid new declarations dated in the history's last
        month or later), one row per item in input order, as
        :func:`riskml.features.build_features` on history + batch. ``context=False`` leaves out
        the ``ctx_`` columns (only reason sentences read them)."""
        if not self.covers(batch):
            raise RiskmlError(
                f"batch rows dated before {self.last_date.date()} fall inside the stored "
                "history's earlier months; build their features with "
                "riskml.features.build_features on history + batch"
            )
        params = self.params
        prep = prepare(batch, empty_table("outcomes"), first_month=self.first_month)
        self._codes(prep)
        decl, month, day = prep.declarations, prep.month, prep.day

        uv = unit_values(decl)
        n_pool = len(self.pool_month)
        ref = reference_for(
            {c: np.concatenate([self.pool_codes[c], prep.code(*cols)]) for c, _, cols in LEVELS},
            np.concatenate([self.pool_month, month]),
            pd.concat([self.pool_uv, uv], ignore_index=True),
            np.arange(n_pool, n_pool + len(decl)),
            months=params.reference_months,
            min_count=params.min_reference_count,
        )
        features = reference_features(uv, ref) | as_float32(value_features(decl))
        rate, pref = applied_rates(prep)
        hs6 = prep.code("hs6")
        cells = pd.concat([self.rate_cells, rate_cells(hs6, rate, pref, month)], ignore_index=True)
        features |= rate_features(standard_for(cells, hs6, month, params.reference_months), rate)

        size = max(int(month.max()), self.horizon) + 1
        if size not in self._rates:
            self._rates[size] = global_rates(self._hist, self.detectable, size=size)
        rates = self._rates[size]
        own: dict[Entity, ProfileTable] = {}
        for profile in PROFILES:
            code = prep.code(*profile.columns)
            snap = lookup(self.tables[profile.columns], code, month)
            own[profile.columns] = profile_table(code, prep)
            snap["n_items"] += lookup(own[profile.columns], code, month, ["n_items"])["n_items"]
            features |= profile_features(
                profile, snap, month, day, rates, params.prior_strength, self.detectable
            )
        features |= novelty_from_first(self._batch_first_days(prep), day)
        features |= pair_shares(features)
        importer = prep.code("importer_id")
        features["imp_outside_usual_share"] = outside_usual_share(
            np.concatenate([self.last_importer, importer]),
            np.concatenate([self.last_share_month, month]),
            np.concatenate([self.last_share, features["imp_hs2_share"]]),
            rows=(importer, month),
        )

        def items_before(column: str, at: np.ndarray) -> np.ndarray:
            code = prep.code(column)
            stored = lookup(self.tables[(column,)], code, at, ["n_items"])["n_items"]
            return (stored + lookup(own[(column,)], code, at, ["n_items"])["n_items"]).to_numpy()

        features |= volume_features(items_before, month, params.reference_months)
        features |= row_features(prep)
        ctx = context_columns(prep, uv, ref, rates, params) if context else None
        return assemble(prep, features, ctx, self.specs, batch.index)
