"""The feature store: every declaration gets its features as of its own date from the stored
history alone, so that its features do not depend on its batch companions; a stored declaration
gets the pipeline's features back, a new one the pipeline's features on history + itself."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_features import START, _rewrite_future, _specs, make_world

from riskml.config import FeatureParams
from riskml.contract import KEY
from riskml.features import build_features, model_feature_columns
from riskml.features.store import FeatureStore

SETTINGS = settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def world() -> tuple[pd.DataFrame, pd.DataFrame]:
    return make_world(n=2000, months=9, seed=4)


@pytest.fixture(scope="module")
def stored(world) -> tuple[FeatureStore, pd.DataFrame]:
    """The store of the whole world, and the pipeline's features of the same world."""
    decl, outc = world
    store = FeatureStore(decl, outc, FeatureParams(), _specs())
    return store, build_features(decl, outc, FeatureParams(), specs=_specs())


def _split(decl: pd.DataFrame, outc: pd.DataFrame, cut: pd.Timestamp):
    """History before ``cut`` with all its outcomes (results after ``cut`` included, as a live
    outcome table has them); the batch from ``cut`` on, without outcomes."""
    past = (decl["accepted_date"] < cut).to_numpy()
    history, batch = decl[past], decl[~past]
    return history, _outcomes_of(outc, history), batch


def _outcomes_of(outc: pd.DataFrame, decl: pd.DataFrame) -> pd.DataFrame:
    keys = pd.MultiIndex.from_frame(outc[KEY]).isin(pd.MultiIndex.from_frame(decl[KEY]))
    return outc[keys]


def _take_out(decl: pd.DataFrame, outc: pd.DataFrame, rows: np.ndarray):
    """The history without ``rows`` (positions) and their outcomes; the rows as new ones."""
    out = np.zeros(len(decl), dtype=bool)
    out[rows] = True
    history = decl[~out]
    return history, _outcomes_of(outc, history), decl[out]


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


@given(seed=st.integers(min_value=0, max_value=2**16))
@SETTINGS
def test_a_stored_declaration_gets_the_pipeline_features_back(stored, world, seed):
    """Rows of the stored history, from any month (the first, the last, in between), in any
    order: the store answers what ``build_features`` gave them in the pipeline."""
    store, full = stored
    decl, _ = world
    rows = np.random.default_rng(seed).choice(len(decl), size=200, replace=False)
    got = store.features(decl.iloc[rows])
    pd.testing.assert_frame_equal(got, full.iloc[rows], check_exact=True)


@given(
    day=st.integers(min_value=-45, max_value=330),
    seed=st.integers(min_value=0, max_value=2**16),
)
@SETTINGS
def test_a_new_declaration_gets_the_pipeline_features_on_history_plus_itself(world, day, seed):
    """New rows of one day, any day: before the stored months, inside them (late declarations)
    or after them; with unseen entities and missing fields. Rows of one day never count each
    other (profiles are month-start snapshots, novelty counts earlier days), so the whole day's
    batch equals ``build_features`` on history + batch."""
    decl, outc = world
    date = START + pd.Timedelta(days=day)
    on_day = np.flatnonzero((decl["accepted_date"] == date).to_numpy())
    if len(on_day) == 0:  # a day with no declaration: one moved there
        on_day = np.array([seed % len(decl)])
    history, known, batch = _take_out(decl, outc, on_day)
    batch = _odd_rows(batch.assign(accepted_date=date), seed)
    got = FeatureStore(history, known, FeatureParams(), _specs()).features(batch)
    full = build_features(pd.concat([history, batch]), known, FeatureParams(), specs=_specs())
    pd.testing.assert_frame_equal(got, full.iloc[len(history) :], check_exact=True)


@given(seed=st.integers(min_value=0, max_value=2**16))
@SETTINGS
def test_features_do_not_depend_on_the_batch_companions(world, seed):
    """Each row of a large shuffled batch spanning every month, and of batches of other
    sizes and orders, gets the features it gets alone."""
    decl, outc = world
    cut = START + pd.DateOffset(months=4)
    history, known, later = _split(decl, outc, cut)
    store = FeatureStore(history, known, FeatureParams(), _specs())
    rng = np.random.default_rng(seed)
    # New declarations of every month: later ones, and copies of stored ones with fresh keys.
    copies = history.sample(n=300, random_state=seed)
    copies = copies.assign(declaration_id=[f"C{i}" for i in range(len(copies))])
    batch = _odd_rows(pd.concat([later, copies]), seed)
    big = store.features(batch)
    small = batch.iloc[rng.choice(len(batch), size=40, replace=False)]
    pd.testing.assert_frame_equal(store.features(small), big.loc[small.index], check_exact=True)
    for i in rng.choice(len(batch), size=3, replace=False):
        alone = store.features(batch.iloc[[i]])
        pd.testing.assert_frame_equal(alone, big.iloc[[i]], check_exact=True)


def test_a_batch_does_not_count_its_own_earlier_rows(world):
    """An importer new to the stored history stays new for every row of a batch over several
    months: the batch's first month does not feed the profiles or the novelty of its later
    months (only what is stored does)."""
    decl, outc = world
    cut = START + pd.DateOffset(months=6)
    history, known, batch = _split(decl, outc, cut)
    batch = batch.assign(importer_id="I-NEW")
    first = (batch["accepted_date"] < cut + pd.DateOffset(months=1)).to_numpy()
    assert first.any() and (~first).any()
    got = FeatureStore(history, known, FeatureParams(), _specs()).features(batch)
    assert (got["imp_n_items"] == 0).all()
    assert (got["imp_age_days"] == 0).all() and (got["first_imp_hs4"] == 1).all()
    # once the first month is stored, the later rows count it
    stored_first = pd.concat([history, batch[first]])
    later = FeatureStore(stored_first, known, FeatureParams(), _specs()).features(batch[~first])
    assert (later["imp_n_items"] >= first.sum()).all()


@given(day=st.integers(min_value=20, max_value=260))
@SETTINGS
def test_what_is_stored_after_a_declaration_does_not_change_its_features(world, day):
    """The causality rule on the store: a store that also holds the declarations accepted on or
    after the row's day and the outcomes known from its month start (all rewritten) answers the
    row as a store of its past alone does."""
    decl, outc = world
    date = START + pd.Timedelta(days=day)
    month_start = date.to_period("M").to_timestamp()
    past = decl[decl["accepted_date"] < date]
    past_outc = _outcomes_of(outc[outc["result_date"] < month_start], past)
    _, rewritten_outc = _rewrite_future(decl, outc, month_start, seed=day)
    rewritten_decl, _ = _rewrite_future(decl, outc, date, seed=day)
    new = (
        decl[decl["accepted_date"] >= date]
        .head(30)
        .assign(accepted_date=date, declaration_id=lambda f: "N" + f["declaration_id"])
    )
    alone = FeatureStore(past, past_outc, FeatureParams(), _specs()).features(new)
    knowing = FeatureStore(rewritten_decl, rewritten_outc, FeatureParams(), _specs())
    pd.testing.assert_frame_equal(knowing.features(new), alone, check_exact=True)


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


def test_without_context_the_model_features_are_the_same(world):
    decl, outc = world
    cut = START + pd.Timedelta(days=200)
    history, known, batch = _split(decl, outc, cut)
    store = FeatureStore(history, known, FeatureParams(), _specs())
    full, lean = store.features(batch), store.features(batch, context=False)
    assert not any(c.startswith("ctx_") for c in lean.columns)
    assert any(c.startswith("ctx_") for c in full.columns)
    pd.testing.assert_frame_equal(lean, full[list(lean.columns)], check_exact=True)


def test_model_inputs_are_the_frame_s_columns_as_float32_bit_for_bit(world):
    """``model_inputs`` (the scorer's path without reasons: no frame) gives exactly the float32
    values of the frame's columns, for odd rows (unseen entities, unknown codes, missing
    optional fields), zero values and masses, rates above 100%, rows before, inside and after
    the history, alone and in batches; a missing input is the frame's error."""
    from riskml.contract import RiskmlError
    from riskml.score import FeatureBlock

    decl, outc = world
    cut = START + pd.Timedelta(days=200)
    history, known, batch = _split(decl, outc, cut)
    store = FeatureStore(history, known, FeatureParams(), _specs())
    odd = _odd_rows(batch, 3).reset_index(drop=True)
    odd.loc[:9, "cif_value"] = 0.0
    odd.loc[10:19, "gross_mass_kg"] = 0.0
    odd.loc[20:29, "duty_rate"] = 2.5
    odd.loc[30:39, "net_mass_kg"] = np.nan
    early = decl.head(20).assign(accepted_date=START - pd.Timedelta(days=40))
    frame = store.features(batch.head(1), context=False)
    names = model_feature_columns(frame)[::-1]  # any order
    for rows in (odd, odd.head(1), odd.iloc[[7]], early, pd.concat([odd, early])):
        rows = rows.reset_index(drop=True)
        expect = FeatureBlock(store.features(rows), names).values
        got = store.model_inputs(rows, names)
        assert got.dtype == np.float32 and got.shape == expect.shape
        assert np.array_equal(got.view(np.uint32), expect.view(np.uint32))
    with pytest.raises(RiskmlError, match="missing model input column"):
        store.model_inputs(odd.head(2), [*names, "no_such_feature"])


def test_a_column_the_history_never_filled_is_answered_from_the_stored_nothing():
    """A history without any departure country (e.g. ingested data lacking the field) has empty
    departure profiles; a batch that declares one gets the rebuild's features (no history)."""
    decl, outc = make_world(n=600, months=4, seed=1)
    decl = decl.assign(departure_country=None)
    cut = START + pd.DateOffset(months=3)
    history, known, batch = _split(decl, outc, cut)
    batch = batch.assign(departure_country="NL", accepted_date=cut + pd.Timedelta(days=4))
    got = FeatureStore(history, known, FeatureParams(), _specs()).features(batch)
    full = build_features(pd.concat([history, batch]), known, FeatureParams(), specs=_specs())
    pd.testing.assert_frame_equal(got, full.iloc[len(history) :], check_exact=True)
    assert (got["dep_n_items"] == 0).all() and (got["dephs4_n_items"] == 0).all()


def test_an_empty_batch_gives_an_empty_frame_with_every_column(stored, world):
    store, full = stored
    decl, _ = world
    empty = store.features(decl.head(0))
    assert empty.empty
    pd.testing.assert_series_equal(empty.dtypes, full.dtypes)


def test_sorted_lookups_of_a_large_batch_give_the_same_features(stored, world, monkeypatch):
    """A batch of at least ``SORTED_LOOKUP`` rows has its profile-table and entity-key look-ups
    done in sorted key order (faster on a large history); the other tests' batches are smaller.
    With the threshold at 1 every look-up takes that path: the features must not change, in the
    store nor in the pipeline's ``build_features``, and the sorted search must equal numpy's."""
    from riskml.features import history
    from riskml.features import store as store_module

    store, full = stored
    decl, outc = world
    rows = np.random.default_rng(5).permutation(len(decl))
    monkeypatch.setattr(history, "SORTED_LOOKUP", 1)
    monkeypatch.setattr(store_module, "SORTED_LOOKUP", 1)
    pd.testing.assert_frame_equal(
        store.features(decl.iloc[rows]), full.iloc[rows], check_exact=True
    )
    again = build_features(decl, outc, FeatureParams(), specs=_specs())
    pd.testing.assert_frame_equal(again, full, check_exact=True)
    known = np.sort(np.random.default_rng(6).integers(0, 1000, 300))
    keys = np.random.default_rng(7).integers(-5, 1005, 5000)
    np.testing.assert_array_equal(
        store_module._sorted_search(known, keys), np.searchsorted(known, keys)
    )


def _varied(batch: pd.DataFrame, seed: int) -> pd.DataFrame:
    """``batch`` with the values the value-by-value steps of a few rows read in each of their
    forms: tariff treatments given, padded, empty or absent under each preference claim; duty
    rates that need rounding; routes with the departure missing, equal or unknown; transport
    modes in other cases, padded, unknown or not ASCII; procedures and HS codes that do not
    start with two ASCII digits."""
    variants = {
        "tariff_treatment": [None, "", " quota ", "standard", "preference", "inward\t"],
        "preference_claim": [True, False, None],
        "duty_rate": [None, 0.0, 0.075, 1.5e-7, 2.5e-7, 0.1234565, 12.0, 1e-12, 3.0000005, 0.35],
        "departure_country": [None, "CN", "NL", "ZZ", "VN"],
        "origin_country": ["CN", "VN", "ZZ", "TR"],
        "transport_mode": ["sea", " SEA ", "Air", "unknown", "rail\x1f", "ſea", "ship", "post"],
        "procedure": [None, "4000", " 40 ", "4", "x0", "", "٤٠٠٠", "+1", "1.", "07"],
        "hs_code": ["610910", "6109", "2204 ", "ab1234", "٦١٠٩٠٠", "220421", "1"],
    }
    rng = np.random.default_rng(seed)
    out = batch.copy()
    out["preference_claim"] = out["preference_claim"].astype("boolean")
    for column, values in variants.items():
        pick = rng.integers(0, len(values), len(out))
        dtype = out[column].dtype if column in out.columns else "str"
        out[column] = pd.array([values[i] for i in pick], dtype=dtype)
    return out


def test_a_few_rows_read_value_by_value_get_the_column_wise_features(world):
    """Up to 64 rows, the text columns, the derived keys (route, treatment, tariff line), the
    goods and route features and the targeting profiles are read value by value; on rows of
    every month in every form those steps read, each row alone and 40 together get bit for
    bit the features a large batch (column-wise) gives them."""
    from riskml.features.prepare import SMALL_BATCH

    decl, outc = world
    decl = _varied(decl, seed=3)  # the history holds these forms too: their keys are known
    cut = START + pd.DateOffset(months=4)
    history, known, later = _split(decl, outc, cut)
    store = FeatureStore(history, known, FeatureParams(), _specs())
    copies = history.sample(n=60, random_state=1)
    copies = copies.assign(declaration_id=[f"C{i}" for i in range(len(copies))])
    batch = _varied(pd.concat([later.sample(n=80, random_state=2), copies]), seed=7)
    assert len(batch) > 2 * SMALL_BATCH
    big = store.features(batch)
    pd.testing.assert_frame_equal(store.features(batch.iloc[:40]), big.iloc[:40], check_exact=True)
    for i in range(40, len(batch), 2):
        alone = store.features(batch.iloc[[i]])
        pd.testing.assert_frame_equal(alone, big.iloc[[i]], check_exact=True)
    names = model_feature_columns(big)
    few = store.model_inputs(batch.iloc[:50].reset_index(drop=True), names)
    want = big[names].iloc[:50].to_numpy(np.float32)
    assert np.array_equal(few.view(np.int32), want.view(np.int32))
