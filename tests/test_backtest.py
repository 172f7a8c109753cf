"""riskml.backtest: windows, leakage guards, static protocol, raw baseline, files, missing data.

One small simulated world (40,000 items over 12 months, revenue and IPR) is shared by the module.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskml.assessment import LABELLED, NO_RECOVERED, RANDOM_CONTROL, RANK_KEY_COMPARISON, TRUTH
from riskml.backtest import (
    ROLLING,
    STATIC,
    _positions,
    backtest_windows,
    measure_area,
    raw_features,
    run_backtest,
    score_area_windows,
    static_features,
    window_scores,
    with_result_dates,
)
from riskml.config import (
    BacktestParams,
    Params,
    SimulateParams,
    SplitParams,
    TrainParams,
    area_train_params,
    load_area_specs,
)
from riskml.contract import write_interim
from riskml.io import read_dataset, write_partitioned
from riskml.labels import build_labels
from riskml.train import feature_matrix, train_area, training_labels

ROOT = Path(__file__).resolve().parents[1]
AREAS = ["revenue", "ipr"]
SPLIT = SplitParams(
    train_start=date(2023, 3, 1),
    valid_start=date(2023, 8, 1),
    test_start=date(2023, 10, 1),
    test_end=date(2024, 1, 1),
)


@pytest.fixture(scope="module")
def specs():
    all_specs = load_area_specs(ROOT / "pipelines")
    return {a: all_specs[a] for a in AREAS}


@pytest.fixture(scope="module")
def params() -> Params:
    return Params(
        areas=AREAS,
        split=SPLIT,
        train=TrainParams(num_boost_round=150, early_stopping_rounds=20, learning_rate=0.1),
        backtest=BacktestParams(n_windows=3, window_months=1, protocols=[ROLLING], n_boot=100),
    )


@pytest.fixture(scope="module")
def sim(specs) -> dict[str, pd.DataFrame]:
    from riskml.simulate import simulate

    sp = SimulateParams(n_items=40_000, months=12, n_importers=600, n_suppliers=1200)
    return simulate(sp, load_area_specs(ROOT / "pipelines"))


@pytest.fixture(scope="module")
def features(sim, params, specs) -> pd.DataFrame:
    from riskml.features import build_features

    return build_features(sim["declarations"], sim["outcomes"], params.features, specs=specs)


@pytest.fixture(scope="module")
def sim_root(tmp_path_factory, sim, features) -> Path:
    root = tmp_path_factory.mktemp("backtest-root")
    (root / "data/interim").mkdir(parents=True)
    write_partitioned(features, root / "data/features")
    write_interim(root / "data/interim", {t: sim[t] for t in ("declarations", "outcomes", "truth")})
    return root


def _tables(sim, specs, outcomes=None) -> dict:
    decl = sim["declarations"]
    outcomes = sim["outcomes"] if outcomes is None else outcomes
    return {
        "declarations": decl,
        "outcomes": outcomes,
        "dates": pd.to_datetime(decl["accepted_date"]).reset_index(drop=True),
        "truth": sim["truth"],
        "labels": {a: build_labels(decl, outcomes, s) for a, s in specs.items()},
        "specs": specs,
        "revenue_reason": None,
    }


def test_windows_are_consecutive_and_shift_the_whole_split():
    windows = backtest_windows(SPLIT, n_windows=3, window_months=1)
    assert [(w.start, w.end) for w in windows] == [
        (date(2023, 10, 1), date(2023, 11, 1)),
        (date(2023, 11, 1), date(2023, 12, 1)),
        (date(2023, 12, 1), date(2024, 1, 1)),
    ]
    assert windows[1].split.train_start == date(2023, 4, 1)
    assert windows[2].split.valid_start == date(2023, 10, 1)
    for w in windows:
        s = w.split
        assert s.train_start < s.valid_start < s.test_start < s.test_end
        assert w.describe()["labels_known_before"] == str(w.start)


def test_raw_features_hold_raw_columns_only(sim):
    raw = raw_features(sim["declarations"])
    inputs = [c for c in raw.columns if c not in ("declaration_id", "item_no", "accepted_date")]
    assert inputs and all(c.startswith("raw_") for c in inputs)
    assert {"raw_cif_value", "raw_hs4", "raw_origin_country"} <= set(inputs)
    assert len(raw) == len(sim["declarations"])
    np.testing.assert_array_equal(_positions(raw, sim["declarations"]), np.arange(len(raw)))


def test_backtest_never_trains_on_its_own_test_rows(sim, features, specs, params):
    """Each window's models learn only from items accepted before the window, with labels known
    before it; every item of the window is scored, nothing else."""
    decl = sim["declarations"]
    raw = raw_features(decl)
    windows = backtest_windows(SPLIT, n_windows=3, window_months=1)
    frames = [{"features": features, "raw": raw}] * 3
    pos = {"features": _positions(features, decl), "raw": _positions(raw, decl)}
    tables = _tables(sim, specs)
    # what backtest@revenue (trained and scored windows) then backtest_report (metrics) do
    scored = score_area_windows(frames, [pos] * 3, tables, specs["revenue"], windows, params)
    result = measure_area(
        scored, specs["revenue"], params, revenue_unavailable=tables["revenue_reason"]
    )
    dates = pd.to_datetime(decl["accepted_date"])
    for w, facts, per in zip(windows, result["windows"], result["per_window"], strict=True):
        for model in ("features", "raw"):
            last = pd.Timestamp(facts["training"][model]["last_train_date"])
            assert last < pd.Timestamp(w.start)
            assert facts["training"][model]["n_train_positives"] >= 5
        in_window = ((dates >= pd.Timestamp(w.start)) & (dates < pd.Timestamp(w.end))).sum()
        assert per[TRUTH]["n"] == in_window
        assert set(per[TRUTH]["methods"]) == {
            "model",
            "raw_lightgbm",
            "legacy_rules",
            "random",
            "oracle",
        }
    agg = result["aggregate"][TRUTH]["methods"]["model"]["precision@5%"]
    assert agg["min"] <= agg["mean"] <= agg["max"] and len(agg["values"]) == 3
    assert agg["std"] == pytest.approx(np.std(agg["values"], ddof=1))
    vs = result["aggregate"][TRUTH]["methods"]["oracle"]["precision_vs_oracle@5%"]
    assert vs["mean"] == pytest.approx(1.0)
    head = result["headline"]
    assert head["population"] == TRUTH
    model_ci = head["methods"]["model"]
    assert model_ci["low"] <= model_ci["estimate"] <= model_ci["high"]
    # The features (histories, reference prices) carry more than the raw columns on revenue.
    assert (
        agg["mean"] > result["aggregate"][TRUTH]["methods"]["legacy_rules"]["precision@5%"]["mean"]
    )
    # Revenue ranks by recovery: each window trains its recovered-duty regression on its past
    # and compares probability, expected recovery and the lists' key on the window's items.
    keys = result[RANK_KEY_COMPARISON]
    assert keys["recovery_exponent"] == specs["revenue"].recovery_exponent
    assert len(keys["per_window"]) == 3
    for facts in result["windows"]:
        assert facts["training"]["recovery"]["n_train"] >= 30
    by_key = keys["aggregate"][TRUTH]["methods"]
    assert set(by_key) == {"probability", "expected_recovery", "rank_key", "oracle"}
    # ranking by probability is the model's own ranking
    assert by_key["probability"]["precision@5%"]["values"] == agg["values"]
    share = {m: by_key[m]["revenue_share@5%"]["mean"] for m in by_key}
    assert share["expected_recovery"] != share["probability"]
    assert by_key["oracle"]["revenue_share_vs_oracle@5%"]["mean"] == pytest.approx(1.0)


def test_labels_of_a_window_are_those_known_before_it(sim, specs):
    """A training label whose result came after the window start is missing."""
    w = backtest_windows(SPLIT, n_windows=3, window_months=1)[0]
    out = sim["outcomes"]
    known = build_labels(sim["declarations"], out, specs["revenue"], known_before=w.start)
    later = build_labels(sim["declarations"], out, specs["revenue"])
    assert known["label"].notna().sum() < later["label"].notna().sum()


def test_static_features_ignore_outcomes_after_the_cut(sim, params, specs):
    cut = date(2023, 8, 1)
    decl, outc = sim["declarations"], sim["outcomes"]
    rewritten = outc.copy()
    late = (pd.to_datetime(rewritten["result_date"]) >= pd.Timestamp(cut)).to_numpy()
    assert late.sum() > 100
    rewritten.loc[late, "offence_found"] = ~rewritten.loc[late, "offence_found"].astype(bool)
    rewritten.loc[late, "risk_area"] = "revenue"
    rewritten.loc[late, "additional_duty"] = rewritten.loc[late, "additional_duty"] * 3 + 7
    base = static_features(decl, outc, params, specs, cut=cut)
    again = static_features(decl, rewritten, params, specs, cut=cut)
    # Every item, before and after the cut: no outcome from after it feeds any feature.
    pd.testing.assert_frame_equal(base, again, check_exact=True)
    from riskml.features import build_features

    rolling = build_features(decl, rewritten, params.features, specs=specs)
    after = (pd.to_datetime(decl["accepted_date"]) >= pd.Timestamp("2023-10-01")).to_numpy()
    num = base.select_dtypes("number").columns
    assert not rolling.loc[after, num].equals(base.loc[after, num])  # the rewrite does matter


def test_result_dates_derived_when_absent(sim):
    decl = sim["declarations"]
    outc = sim["outcomes"].head(200).drop(columns=["result_date"])
    out, note = with_result_dates(outc, decl, delay_days=45)
    acc = decl.set_index(["declaration_id", "item_no"])["accepted_date"]
    expected = pd.to_datetime(
        acc.loc[list(zip(outc["declaration_id"], outc["item_no"], strict=True))].to_numpy()
    ) + pd.Timedelta(days=45)
    np.testing.assert_array_equal(pd.to_datetime(out["result_date"]).to_numpy(), expected)
    assert "200 outcome(s)" in note
    same, none = with_result_dates(sim["outcomes"], decl, delay_days=45)
    assert none is None and same is sim["outcomes"]


def test_run_backtest_files_and_revenue_unavailable(sim_root, params, specs):
    """Outcomes without recovered amounts: labelled revenue shares are null with a reason, the
    truth keeps its evaded duty; files for dvc metrics and plots are written."""
    outc = read_dataset(sim_root / "data/interim/outcomes")
    write_interim(sim_root / "data/interim", {"outcomes": outc.drop(columns=["additional_duty"])})
    short = run_backtest(sim_root, params, {"revenue": specs["revenue"]})
    assert short["revenue.rolling"]["on"] == TRUTH
    summary = json.loads((sim_root / "metrics/backtest/summary.json").read_text())
    assert summary["config"]["revenue"] == NO_RECOVERED
    head = summary["areas"]["revenue"][ROLLING]
    model = head["methods"]["model"]
    assert model["precision_ci"]["low"] <= model["precision"]["mean"]
    assert model["precision"]["mean"] <= model["precision_ci"]["high"]
    assert model["revenue_share"]["mean"] > 0  # on the truth
    doc = json.loads((sim_root / "metrics/backtest/areas/revenue.json").read_text())
    agg = doc["protocols"][ROLLING]["aggregate"]
    for pop in (LABELLED, RANDOM_CONTROL):
        assert agg[pop]["revenue_unavailable"] == NO_RECOVERED
        share = agg[pop]["methods"]["model"]["revenue_share@5%"]
        assert share["mean"] is None and share["values"] == [None, None, None]
        assert agg[pop]["methods"]["model"]["precision@5%"]["mean"] is not None
    table = pd.read_csv(sim_root / "plots/backtest/revenue.csv")
    assert set(table["window"]) == {1, 2, 3} and set(table["protocol"]) == {ROLLING}
    assert STATIC not in doc["protocols"]


def test_window_model_is_trained_as_the_train_stage_trains_it_first_stage_included(
    sim, features, specs, params
):
    """The backtest's model of a window is the train stage's model on the window's split: same
    labels (known before the window), same first stage over the union of the pool's rows."""
    # Revenue read by physical and random controls only: ipr's documentary controls widen the
    # first stage's rows.
    revenue = type(specs["revenue"]).model_validate(
        specs["revenue"].model_dump()
        | {"detectable_by": ["physical", "random"], "first_stage": {"pool": ["revenue", "ipr"]}}
    )
    pooled = {"revenue": revenue, "ipr": specs["ipr"]}
    decl = sim["declarations"]
    raw = raw_features(decl)
    frames = {"features": features, "raw": raw}
    pos = {"features": _positions(features, decl), "raw": _positions(raw, decl)}
    window = backtest_windows(SPLIT, n_windows=3, window_months=1)[1]
    scores, facts = window_scores(frames, pos, _tables(sim, pooled), revenue, window, params)

    labels, first = training_labels(
        decl, sim["outcomes"], revenue, pooled, known_before=window.start
    )
    # the area's own settings over params.yaml's, as the train stage reads them
    train_params = area_train_params(params, revenue).model_copy(
        update={"num_threads": params.backtest.num_threads}
    )
    model = train_area(features, labels, revenue, window.split, train_params, pretrain_labels=first)
    test = features[
        (features["accepted_date"] >= pd.Timestamp(window.start))
        & (features["accepted_date"] < pd.Timestamp(window.end))
    ]
    expected = pd.Series(
        model.booster.predict(feature_matrix(test, model.feature_names)),
        index=pd.MultiIndex.from_frame(
            test[["declaration_id", "item_no"]].astype({"declaration_id": "string"})
        ),
    )
    got = scores.set_index(["declaration_id", "item_no"])["score"]
    np.testing.assert_allclose(got.to_numpy(), expected.loc[got.index].to_numpy(), rtol=0, atol=0)
    trained = facts["features"]
    assert trained["first_stage"] == model.pretrain and trained["first_stage"]["pool"] == [
        "revenue",
        "ipr",
    ]
    # The first stage learnt on more rows than the area's own (the union of the pool's).
    first_rows = trained["first_stage"]["n_train"] + trained["first_stage"]["n_valid"]
    assert first_rows > trained["n_train"] + trained["n_valid"]
    assert "first_stage" not in facts["raw"]  # the raw baseline stays one plain stage


def test_first_stage_is_fitted_once_per_pool_and_window_and_changes_nothing(
    sim, features, specs, params
):
    """Two specs whose first stages agree (pool, settings) but whose own stages differ: with a
    shared cache the first stage is fitted once, and each model is the one trained alone."""
    pool = {"pool": ["revenue", "ipr"]}
    revenue = type(specs["revenue"]).model_validate(
        specs["revenue"].model_dump()
        | {"detectable_by": ["physical", "random"], "first_stage": pool}
    )
    own = area_train_params(params, revenue)
    other = type(revenue).model_validate(
        revenue.model_dump()
        | {
            "train": {**revenue.train, "lambda_l2": own.lambda_l2 + 7.0},
            "first_stage": pool | {"train": {"lambda_l2": own.lambda_l2}},
        }
    )
    pooled = {"revenue": revenue, "ipr": specs["ipr"]}
    window = backtest_windows(SPLIT, n_windows=3, window_months=1)[1]
    labels, first = training_labels(
        sim["declarations"], sim["outcomes"], revenue, pooled, known_before=window.start
    )
    tp_a, tp_b = (area_train_params(params, s) for s in (revenue, other))
    assert tp_a.lambda_l2 != tp_b.lambda_l2
    cache: dict = {}
    kw = {"pretrain_labels": first}
    a = train_area(features, labels, revenue, window.split, tp_a, **kw, first_stage_cache=cache)
    b = train_area(features, labels, other, window.split, tp_b, **kw, first_stage_cache=cache)
    assert len(cache) == 1
    alone = train_area(features, labels, other, window.split, tp_b, **kw)
    assert b.pretrain == alone.pretrain == a.pretrain
    assert b.booster.model_to_string() == alone.booster.model_to_string()
    assert a.booster.model_to_string() != b.booster.model_to_string()  # own stages differ


def test_a_window_with_too_few_positives_is_left_out_and_said(
    sim, features, specs, params, tmp_path
):
    """Issue 15 part 5: a backtest window whose training has too few positives is reported as
    such and left out of the means, never a stop of the whole run."""
    root = tmp_path
    (root / "data/interim").mkdir(parents=True)
    write_partitioned(features, root / "data/features")
    decl, outc = sim["declarations"], sim["outcomes"]
    labels = build_labels(decl, outc, specs["revenue"])
    dates = pd.to_datetime(decl["accepted_date"]).to_numpy()
    # four one-month windows: the first (test September) trains on [Feb, Jul); revenue's positives
    # of those months lose their controls, so that window cannot train; the split of the train
    # stage (train [Mar, Aug)) keeps July's and the area stays supported
    gone = labels.loc[
        (labels["label"] == 1)
        & (dates >= np.datetime64("2023-02-01"))
        & (dates < np.datetime64("2023-07-01")),
        ["declaration_id", "item_no"],
    ]
    keep = ~outc.set_index(["declaration_id", "item_no"]).index.isin(pd.MultiIndex.from_frame(gone))
    write_interim(
        root / "data/interim", {"declarations": decl, "outcomes": outc[keep], "truth": sim["truth"]}
    )
    four = params.model_copy(
        update={"backtest": params.backtest.model_copy(update={"n_windows": 4})}
    )
    run_backtest(root, four, {"revenue": specs["revenue"]})
    summary = json.loads((root / "metrics/backtest/summary.json").read_text())
    assert set(summary["areas"]) == {"revenue"} and summary["skipped"] == {}
    doc = json.loads((root / "metrics/backtest/areas/revenue.json").read_text())["protocols"][
        ROLLING
    ]
    assert [w["window"] for w in doc["left_out"]] == [1]
    assert "0 positive(s), fewer than" in doc["left_out"][0]["left_out"]
    assert [w["window"] for w in doc["windows"]] == [2, 3, 4]
    assert len(doc["per_window"]) == 3
    table = pd.read_csv(root / "plots/backtest/revenue.csv")
    assert set(table["window"]) == {2, 3, 4}


def test_the_report_measures_stored_windows_and_reads_the_exponent_without_training(
    sim, features, specs, params, tmp_path
):
    """backtest@<area> stores each window's scored items; the report measures them. A new
    recovery_exponent changes only the list key's figures, through the report alone: the stored
    windows are not rewritten (no window is retrained) and the probability figures stay."""
    from riskml.backtest import run_backtest_area, run_backtest_report

    root = tmp_path
    (root / "data/interim").mkdir(parents=True)
    write_partitioned(features, root / "data/features")
    write_interim(root / "data/interim", {t: sim[t] for t in ("declarations", "outcomes", "truth")})
    spec = specs["revenue"]
    assert spec.rank_by == "expected_recovery" and spec.recovery_exponent < 1
    run_backtest_area("revenue", root, params, {"revenue": spec})
    folder = root / "data/backtest/revenue"
    stored = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert set(stored) == {"scores.parquet", "windows.json"}
    first = run_backtest_report(root, params, {"revenue": spec})
    doc = json.loads((root / "metrics/backtest/areas/revenue.json").read_text())["protocols"]
    edited = spec.model_copy(update={"recovery_exponent": 1.0})
    run_backtest_report(root, params, {"revenue": edited})
    again = json.loads((root / "metrics/backtest/areas/revenue.json").read_text())["protocols"]
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stored
    assert again[ROLLING]["per_window"] == doc[ROLLING]["per_window"]  # probability: the same
    assert again[ROLLING]["windows"] == doc[ROLLING]["windows"]  # the same trained windows
    keys = again[ROLLING][RANK_KEY_COMPARISON]
    assert doc[ROLLING][RANK_KEY_COMPARISON]["recovery_exponent"] == spec.recovery_exponent
    assert keys["recovery_exponent"] == 1.0
    for window in keys["per_window"]:  # exponent 1: the list key is the expected recovery
        methods = window[TRUTH]["methods"]
        assert methods["rank_key"]["rates"] == methods["expected_recovery"]["rates"]
    assert doc[ROLLING][RANK_KEY_COMPARISON]["per_window"] != keys["per_window"]
    summary = json.loads((root / "metrics/backtest/summary.json").read_text())
    assert summary["config"]["windows"][-1]["test"] == ["2023-12-01", "2024-01-01"]
    assert first["revenue.rolling"]["precision"] > 0


def test_the_first_window_reads_the_train_stage_model_instead_of_fitting_it_again(
    sim, features, specs, params, tmp_path
):
    """The rolling protocol's first window has the train stage's split: backtest@<area> reads
    the train stage's estimator (fitted on two threads) instead of fitting it again, and the
    window scores every item as the backtest's own one-thread fit does, bit for bit; the other
    windows, or other train settings, are fitted."""
    from riskml.backtest import WINDOW_SCORES, run_backtest_area
    from riskml.train_stage import run_train

    root = tmp_path
    (root / "data/interim").mkdir(parents=True)
    write_partitioned(features, root / "data/features")
    write_interim(root / "data/interim", {t: sim[t] for t in ("declarations", "outcomes", "truth")})
    spec = specs["revenue"]
    assert spec.rank_by == "expected_recovery"  # the recovery regression comes along
    assert params.train.num_threads != params.backtest.num_threads
    first = backtest_windows(SPLIT, n_windows=3, window_months=1)[0].split
    assert first.model_copy(update={"test_end": SPLIT.test_end}) == SPLIT  # the stage's split

    def stored() -> tuple[pd.DataFrame, list[dict]]:
        folder = root / "data/backtest/revenue"
        doc = json.loads((folder / "windows.json").read_text())
        scores = pd.read_parquet(folder / WINDOW_SCORES)
        return scores.sort_values(["window", "declaration_id", "item_no"], ignore_index=True), [
            w["training"]["features"] for w in doc["protocols"][ROLLING]["windows"]
        ]

    run_backtest_area("revenue", root, params, {"revenue": spec})  # no estimator: all fitted
    fitted, fitted_facts = stored()
    assert not any("from_train_stage" in f for f in fitted_facts)
    run_train("revenue", root, params, spec)
    run_backtest_area("revenue", root, params, {"revenue": spec})
    read, read_facts = stored()
    assert [f.get("from_train_stage", False) for f in read_facts] == [True, False, False]
    pd.testing.assert_frame_equal(read, fitted)  # scores and expected recovery, bit for bit
    assert [{k: v for k, v in f.items() if k != "from_train_stage"} for f in read_facts] == (
        fitted_facts
    )
    # other train settings than the estimator's: the first window is fitted
    other = params.model_copy(
        update={"train": params.train.model_copy(update={"lambda_l2": params.train.lambda_l2 + 1})}
    )
    run_backtest_area("revenue", root, other, {"revenue": spec})
    assert not any("from_train_stage" in f for f in stored()[1])
