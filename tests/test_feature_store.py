"""The feature store: a batch after the stored history gets exactly the features the pipeline
would build on history + batch, and it obeys the causality rule on its own."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_features import START, _rewrite_future, _specs, make_world

from riskml.config import FeatureParams
from riskml.contract import KEY, RiskmlError
from riskml.features import build_features, model_feature_columns
from riskml.features.store import FeatureStore


@pytest.fixture(scope="module")
def world() -> tuple[pd.DataFrame, pd.DataFrame]:
    return make_world(n=2000, months=9, seed=4)


def _split(decl: pd.DataFrame, outc: pd.DataFrame, cut: pd.Timestamp):
    """History before ``cut`` with all its outcomes (results after ``cut`` included, as a live
    outcome table has them); the batch from ``cut`` on, without outcomes."""
    past = (decl["accepted_date"] < cut).to_numpy()
    history, batch = decl[past], decl[~past]
    keys = pd.MultiIndex.from_frame(outc[KEY]).isin(pd.MultiIndex.from_frame(history[KEY]))
    return history, outc[keys], batch


def _odd_rows(batch: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The batch shuffled, with unseen importers and suppliers, unknown HS codes and origins,
    missing optional fields."""
    rng = np.random.default_rng(seed)
    batch = batch.sample(frac=1.0, random_state=seed).copy()
    n = len(batch)
    pick = rng.random(n)
    batch.loc[pick < 0.05, "importer_id"] = "I-NEW"
    batch.loc[(pick >= 0.05) & (pick < 0.1), "hs_code"] = "999999"
    batch.loc[(pick >= 0.1) & (pick < 0.15), "supplier_id"] = None
    batch.loc[(pick >= 0.15) & (pick < 0.2), "origin_country"] = "ZZ"
    batch.loc[(pick >= 0.2) & (pick < 0.25), "departure_country"] = None
    batch.loc[(pick >= 0.25) & (pick < 0.3), "supplier_id"] = "S-NEW"
    return batch


@given(
    cut_day=st.integers(min_value=40, max_value=260),
    seed=st.integers(min_value=0, max_value=2**16),
)
@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_store_features_equal_the_full_rebuild(world, cut_day, seed):
    """Any cut-off day: mid-month cuts put the batch's first rows in the history's last month
    (a live system's current month), the rest in later months."""
    decl, outc = world
    cut = START + pd.Timedelta(days=cut_day)
    history, known, batch = _split(decl, outc, cut)
    batch = _odd_rows(batch, seed)
    assert len(batch) and len(history)
    full = build_features(pd.concat([history, batch]), known, FeatureParams(), specs=_specs())
    expected = full.iloc[len(history) :]
    got = FeatureStore(history, known, FeatureParams(), _specs()).features(batch)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_a_batch_over_several_months_counts_its_own_earlier_items(world):
    """Items of the batch's first month feed the profiles of its later months (as in the
    pipeline): an importer new in month 1 of the batch is known in month 2."""
    decl, outc = world
    cut = START + pd.DateOffset(months=6)
    history, known, batch = _split(decl, outc, cut)
    batch = batch.copy()
    first = batch["accepted_date"] < cut + pd.DateOffset(months=1)
    assert first.any() and (~first).any()
    batch.loc[:, "importer_id"] = "I-NEW"
    got = FeatureStore(history, known, FeatureParams(), _specs()).features(batch)
    n_first = int(first.sum())
    assert (got.loc[first.to_numpy(), "imp_n_items"] == 0).all()
    assert (got.loc[~first.to_numpy(), "imp_n_items"] >= n_first).all()


def test_store_obeys_the_causality_rule(world):
    """Rewriting outcomes known on or after the batch's first month start leaves the features of
    that month's rows unchanged, and changes later rows (the rewrite reaches the store)."""
    decl, outc = world
    cut = START + pd.DateOffset(months=5)
    history, known, batch = _split(decl, outc, cut)
    _, rewritten = _rewrite_future(history, known, cut, seed=5)
    base = FeatureStore(history, known, FeatureParams(), _specs()).features(batch)
    other = FeatureStore(history, rewritten, FeatureParams(), _specs()).features(batch)
    first = (batch["accepted_date"] < cut + pd.DateOffset(months=1)).to_numpy()
    assert first.any() and (~first).any()
    pd.testing.assert_frame_equal(base[first], other[first], check_exact=True)
    cols = model_feature_columns(base)
    assert not base.loc[~first, cols].equals(other.loc[~first, cols])


def test_rows_before_the_last_history_month_are_refused_with_a_clear_error(world):
    decl, outc = world
    cut = START + pd.Timedelta(days=170)  # mid-June: June is the history's last month
    history, known, batch = _split(decl, outc, cut)
    store = FeatureStore(history, known, FeatureParams(), _specs())
    same_month = history[history["accepted_date"] >= START + pd.DateOffset(months=5)].tail(2)
    assert store.covers(pd.concat([batch.head(3), same_month.assign(declaration_id="X")]))
    older = history[history["accepted_date"] < START + pd.DateOffset(months=5)].tail(1)
    late = pd.concat([batch.head(3), older])
    assert not store.covers(late)
    with pytest.raises(RiskmlError, match="fall inside the stored history's earlier months"):
        store.features(late)
    assert store.covers(batch)


def test_without_context_the_model_features_are_the_same(world):
    decl, outc = world
    cut = START + pd.Timedelta(days=200)
    history, known, batch = _split(decl, outc, cut)
    store = FeatureStore(history, known, FeatureParams(), _specs())
    full, lean = store.features(batch), store.features(batch, context=False)
    assert not any(c.startswith("ctx_") for c in lean.columns)
    assert any(c.startswith("ctx_") for c in full.columns)
    pd.testing.assert_frame_equal(lean, full[list(lean.columns)], check_exact=True)


def test_a_column_the_history_never_filled_is_answered_from_the_batch():
    """A history without any departure country (e.g. ingested data lacking the field) has empty
    departure profiles; a batch that declares one still gets the rebuild's features."""
    decl, outc = make_world(n=600, months=4, seed=1)
    decl = decl.assign(departure_country=None)
    cut = START + pd.DateOffset(months=3)
    history, known, batch = _split(decl, outc, cut)
    batch = batch.assign(departure_country="NL")
    got = FeatureStore(history, known, FeatureParams(), _specs()).features(batch)
    full = build_features(pd.concat([history, batch]), known, FeatureParams(), specs=_specs())
    pd.testing.assert_frame_equal(got, full.iloc[len(history) :], check_exact=True)
    assert (got["dep_n_items"] == 0).all() and (got["dephs4_n_items"] == 0).all()
