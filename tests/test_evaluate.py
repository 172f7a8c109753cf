"""riskml.evaluate: test-window scoring, populations, baselines, files and MLflow logging."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest

from riskml.area_model import AreaModel
from riskml.assessment import (
    LABELLED,
    NO_RECOVERED,
    RANDOM_CONTROL,
    RANK_KEY_COMPARISON,
    TRUTH,
    assemble_scores,
    assess,
    evaluate_scores,
    metrics_of,
    rank_key_comparison,
    ranking_scores,
    recovered_available,
)
from riskml.contract import RiskmlError
from riskml.evaluate import (
    PLOT_RATES,
    calibration_table,
    pr_curve_table,
    pr_interpolated_table,
    rate_curve_table,
    run_evaluate,
)
from riskml.io import read_dataset
from riskml.labels import build_labels
from riskml.train import in_window
from riskml.train_stage import train_area_model


def _scores(n=2000, seed=0, with_truth=True):
    rng = np.random.default_rng(seed)
    p = rng.beta(1, 8, n)
    offence = rng.random(n) < p
    labelled = rng.random(n) < 0.4
    frame = pd.DataFrame(
        {
            "declaration_id": [f"D{i}" for i in range(n)],
            "item_no": 1,
            "accepted_date": pd.Timestamp("2024-02-01"),
            "score": p + rng.normal(0, 0.02, n),
            "rule_score": rng.integers(0, 3, n).astype(float),
            "label": np.where(labelled, offence.astype(float), np.nan),
            "control_kind": pd.array(
                np.where(labelled, np.where(rng.random(n) < 0.3, "random", "physical"), None),
                dtype="string",
            ),
            "recovered": np.where(labelled & offence, 100.0, 0.0),
        }
    )
    if with_truth:
        frame["offence"] = pd.array(offence, dtype="boolean")
        frame["evaded_duty"] = np.where(offence, 100.0, 0.0)
        frame["true_prob"] = p
    return frame


def test_evaluate_scores_structure_and_populations(revenue_spec):
    scores = _scores()
    result = evaluate_scores(scores, revenue_spec, seed=1)
    assert set(result) == {LABELLED, RANDOM_CONTROL, TRUTH}
    assert result[LABELLED]["n"] == scores["label"].notna().sum()
    assert result[RANDOM_CONTROL]["n"] == (scores["control_kind"] == "random").sum()
    assert result[TRUTH]["n"] == len(scores)
    for pop, block in result.items():
        assert block["population"] == pop
        methods = block["methods"]
        assert ("oracle" in methods) == (pop == TRUTH)
        assert set(methods["model"]["rates"]) == {"1%", "2%", "5%", "10%"}
        m = methods["model"]["rates"]["5%"]
        assert {"precision", "recall", "revenue_share", "n_selected"} <= set(m)
    truth = result[TRUTH]["methods"]
    at5 = {k: v["rates"]["5%"]["precision"] for k, v in truth.items()}
    # Ranking by the true probability is the best in expectation, not on every sample.
    assert at5["oracle"] > at5["random"] and at5["model"] > at5["random"]
    assert truth["random"]["expected_precision"] == pytest.approx(result[TRUTH]["prevalence"])


def test_no_truth_means_no_truth_population(revenue_spec):
    result = evaluate_scores(_scores(with_truth=False), revenue_spec, seed=1)
    assert set(result) == {LABELLED, RANDOM_CONTROL}


def test_empty_population_says_so(revenue_spec):
    scores = _scores()
    scores["control_kind"] = scores["control_kind"].replace("random", "physical")
    block = evaluate_scores(scores, revenue_spec, seed=1)[RANDOM_CONTROL]
    assert block["n"] == 0 and "methods" not in block and "note" in block


def test_baselines_are_seeded_and_rule_ties_are_broken(revenue_spec):
    scores = _scores()
    a = ranking_scores(scores, seed=3, area="revenue")
    b = ranking_scores(scores, seed=3, area="revenue")
    c = ranking_scores(scores, seed=4, area="revenue")
    np.testing.assert_array_equal(a["random"], b["random"])
    assert not np.array_equal(a["random"], c["random"])
    rules = a["legacy_rules"]
    assert len(np.unique(rules)) == len(rules)  # no tie left
    # the tie-break never reorders different rule scores
    r = scores["rule_score"].to_numpy()
    assert rules[r == 2].min() > rules[r == 1].max() > 0
    assert rules[r == 1].min() > rules[r == 0].max()


def test_assemble_scores_joins_rule_label_and_truth(world, revenue_spec):
    test = world["features"].head(50)[["declaration_id", "item_no", "accepted_date"]].copy()
    test["score"] = 0.5
    labels = build_labels(world["declarations"], world["outcomes"], revenue_spec)
    out = assemble_scores(test, world["declarations"], labels, revenue_spec, world["truth"])
    assert list(out.columns) == [
        "declaration_id",
        "item_no",
        "accepted_date",
        "score",
        "rule_score",
        "label",
        "control_kind",
        "recovered",
        "offence",
        "evaded_duty",
        "true_prob",
    ]
    assert len(out) == 50
    hs = world["declarations"].set_index("declaration_id").loc[out["declaration_id"], "hs_code"]
    assert (out["rule_score"].to_numpy() > 0).tolist() == hs.str.startswith(
        ("2203", "2402", "6109")
    ).tolist()


def test_assemble_scores_joins_by_position_what_the_key_merge_joins(world, revenue_spec):
    """Declarations, labels and truth holding the scored items in their order are joined by
    position; in another order by the key: the same frame either way."""
    from riskml.assessment import _same_items

    decl = world["declarations"]
    scored = decl[["declaration_id", "item_no", "accepted_date"]].reset_index(drop=True)
    scored = scored.astype({"declaration_id": "string", "item_no": "int64"})
    scored["score"] = np.linspace(0, 1, len(scored))
    truth = world["truth"]
    truth = truth[truth["risk_area"] == revenue_spec.name]
    by_key = truth.set_index(["declaration_id", "item_no"])
    truth = by_key.loc[list(zip(decl["declaration_id"], decl["item_no"], strict=True))]
    truth = truth.reset_index()
    labels = build_labels(decl, world["outcomes"], revenue_spec)
    assert _same_items(scored, decl) and _same_items(scored, labels)
    assert _same_items(scored, truth)
    by_position = assemble_scores(scored, decl, labels, revenue_spec, truth)
    shuffled = decl.sample(frac=1, random_state=1)
    assert not _same_items(scored, shuffled)
    by_merge = assemble_scores(
        scored,
        shuffled,
        build_labels(shuffled, world["outcomes"], revenue_spec),
        revenue_spec,
        truth.sample(frac=1, random_state=2),
    )
    pd.testing.assert_frame_equal(by_position, by_merge)
    assert by_position["label"].notna().any() and by_position["offence"].any()


def test_run_evaluate_end_to_end(world_root, world, revenue_spec, params, tracking_uri):
    with pytest.raises(RiskmlError, match="train the area first"):
        run_evaluate(world_root, params, {"revenue": revenue_spec}, tracking_uri=tracking_uri)
    trained = train_area_model(
        "revenue", world_root, params, revenue_spec, tracking_uri=tracking_uri
    )
    summary = run_evaluate(world_root, params, {"revenue": revenue_spec}, tracking_uri=tracking_uri)
    assert summary["revenue"]["on"] == TRUTH

    # Only test-window items are scored: every one of them, nothing else.
    scores = read_dataset(world_root / "data/scores/revenue")
    split = params.split
    dates = pd.to_datetime(world["features"]["accepted_date"])
    in_test = (dates >= pd.Timestamp(split.test_start)) & (dates < pd.Timestamp(split.test_end))
    assert len(scores) == in_test.sum()
    assert set(scores["declaration_id"]) == set(world["features"].loc[in_test, "declaration_id"])
    assert scores["score"].between(0, 1).all()

    doc = json.loads((world_root / "metrics/areas/revenue.json").read_text())
    pops = doc["populations"]
    assert pops[TRUTH]["n"] == len(scores)
    assert pops[LABELLED]["n"] == scores["label"].notna().sum()
    truth = pops[TRUTH]["methods"]
    assert truth["model"]["average_precision"] > truth["random"]["average_precision"] + 0.1
    assert truth["model"]["rates"]["5%"]["precision"] > truth["random"]["rates"]["5%"]["precision"]

    head = json.loads((world_root / "metrics/summary.json").read_text())["revenue"]
    assert head["population"] == TRUTH and head["rate"] == revenue_spec.operating_rate
    assert {"model", "legacy_rules", "random"} <= set(head)

    raw = (world_root / "plots/evaluation/revenue/precision_at_rate.csv").read_bytes()
    assert raw.startswith(b"rate,")  # no byte-order mark: dvc plots reads the header as is
    curve = pd.read_csv(world_root / "plots/evaluation/revenue/precision_at_rate.csv")
    assert list(curve.columns) == [
        "rate",
        "method",
        "population",
        "precision",
        "recall",
        "revenue_share",
    ]
    assert curve["rate"].min() == pytest.approx(0.005) and curve["rate"].max() == 0.2
    assert set(curve["population"]) == {LABELLED, RANDOM_CONTROL, TRUTH}
    wide = pd.read_csv(world_root / "plots/evaluation/revenue/precision.csv")
    assert {"rate", "model", "legacy_rules", "random", "oracle"} <= set(wide.columns)
    on_truth = curve[(curve["population"] == TRUTH) & (curve["method"] == "model")]
    assert wide["model"].tolist() == pytest.approx(on_truth["precision"].tolist())
    pr = pd.read_csv(world_root / "plots/evaluation/revenue/pr_curve.csv")
    assert {"population", "method", "recall", "precision"} <= set(pr.columns)

    # the plot's curve and the metrics file say the same at every rate both hold
    shared = [r for r in PLOT_RATES if r in revenue_spec.inspection_rates]
    assert len(shared) >= 2
    for row in curve[curve["rate"].isin(shared)].itertuples():
        m = pops[row.population]["methods"][row.method]["rates"][f"{row.rate * 100:g}%"]
        assert (row.precision, row.recall) == pytest.approx((m["precision"], m["recall"]))
        assert row.revenue_share == pytest.approx(m["revenue_share"], nan_ok=True)

    run = mlflow.MlflowClient(tracking_uri).get_run(trained["run_id"])
    key = "test.truth.model.precision_at_5pct"
    assert run.data.metrics[key] == pytest.approx(truth["model"]["rates"]["5%"]["precision"])

    pr_i = pd.read_csv(world_root / "plots/evaluation/revenue/pr_interpolated.csv")
    assert pr_i["recall"].iloc[0] == 0 and pr_i["recall"].iloc[-1] == 1
    assert {"model", "legacy_rules", "random", "oracle"} <= set(pr_i.columns)
    assert (pr_i["model"].diff().dropna() <= 1e-12).all()  # interpolated: never increasing
    cal = pd.read_csv(world_root / "plots/evaluation/revenue/calibration.csv")
    assert list(cal.columns) == [
        "predicted",
        "observed_truth",
        "observed_labelled",
        "n_labelled",
        "perfect",
    ]
    assert cal["predicted"].is_monotonic_increasing and len(cal) == 10
    client = mlflow.MlflowClient(tracking_uri)
    logged = {a.path for a in client.list_artifacts(trained["run_id"], "evaluation")}
    assert logged == {
        "evaluation/precision_at_rate.png",
        "evaluation/revenue_share_at_rate.png",
        "evaluation/pr_curve.png",
        "evaluation/calibration.png",
    }
    png = world_root / "plots/evaluation/revenue/calibration.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_evaluate_reads_the_test_window_items_and_writes_what_the_whole_tables_give(
    world_root, world, revenue_spec, params, tracking_uri
):
    """The stage keeps the test window's declarations, outcomes and truth only (the items it
    scores): its scores, metrics and plot data are those of the area evaluated on the whole
    tables, bit for bit."""
    from riskml.evaluate import evaluate_area, items_of, scored_period

    train_area_model("revenue", world_root, params, revenue_spec, tracking_uri=tracking_uri)
    window = scored_period(world["declarations"], params.split)
    assert 0 < len(window) < len(world["declarations"]) / 2
    assert set(items_of(world["truth"], window)["declaration_id"]) == set(window["declaration_id"])

    def outputs():
        files = sorted((world_root / "plots/evaluation/revenue").glob("*.csv"))
        return (
            read_dataset(world_root / "data/scores/revenue"),
            (world_root / "metrics/areas/revenue.json").read_text(),
            {f.name: f.read_bytes() for f in files},
        )

    run_evaluate(world_root, params, {"revenue": revenue_spec}, tracking_uri=tracking_uri)
    scores, metrics, plots = outputs()
    whole = {k: world[k] for k in ("declarations", "outcomes", "truth")}
    evaluate_area(world_root, params, revenue_spec, whole, tracking_uri)
    scores_whole, metrics_whole, plots_whole = outputs()
    pd.testing.assert_frame_equal(scores, scores_whole)
    assert metrics == metrics_whole
    assert plots == plots_whole and len(plots) >= 6


def test_score_frame_scores_what_the_model_gives_on_its_float64_frame(world, revenue_spec, params):
    """The scoring passes the model's columns as one matrix (float32 when every column is, as
    the stored features are): the same probabilities and expected recoveries, bit for bit, as
    the model given the frame's float64 columns."""
    from riskml.area_model import score_frame

    split = params.split
    labels = build_labels(
        world["declarations"], world["outcomes"], revenue_spec, known_before=split.test_start
    )
    model = AreaModel.for_spec(revenue_spec).fit(
        world["features"], labels, revenue_spec, split, params.train
    )
    rows = in_window(world["features"], split.test_start, split.test_end)
    stored = rows.astype({c: "float32" for c in model.feature_names_})  # as data/features
    for frame in (rows, stored):
        scored = score_frame(model, frame, start=split.test_start, end=split.test_end)
        wide = frame[model.feature_names_].astype("float64")
        assert len(scored) == len(rows) > 100
        np.testing.assert_array_equal(scored["score"].to_numpy(), model.predict_proba(wide))
    assert (stored[model.feature_names_].dtypes == "float32").all()


def test_revenue_unavailable_is_null_with_a_reason(revenue_spec):
    result = evaluate_scores(_scores(), revenue_spec, seed=1, revenue_unavailable=NO_RECOVERED)
    for pop in (LABELLED, RANDOM_CONTROL):
        assert result[pop]["revenue_unavailable"] == NO_RECOVERED
        m = result[pop]["methods"]["model"]["rates"]["5%"]
        assert m["revenue_share"] is None and m["precision"] >= 0
    assert result[TRUTH]["methods"]["model"]["rates"]["5%"]["revenue_share"] > 0
    assert "revenue_unavailable" not in result[TRUTH]


@pytest.mark.parametrize("reason", [None, NO_RECOVERED])
def test_metrics_and_plot_curves_of_one_assessment_agree_with_each_other_and_alone(
    revenue_spec, reason
):
    """evaluate sorts each ranking once (assess) and reads the metrics at the inspection rates,
    the rate curves and both precision-recall tables from it: the same figures as each public
    function computing alone, and the curve equals the metrics at every rate both hold."""
    from riskml.evaluate import pr_curves, pr_interpolated, rate_curves

    scores = _scores(n=3000, seed=5)
    spec = revenue_spec.model_copy(update={"inspection_rates": [0.01, 0.02, 0.05, 0.1, 0.0725]})
    assessed = assess(scores, spec, seed=2, revenue_unavailable=reason)
    result = metrics_of(assessed, spec.inspection_rates)
    assert result == evaluate_scores(scores, spec, seed=2, revenue_unavailable=reason)
    curves = rate_curves(assessed)
    pd.testing.assert_frame_equal(
        curves, rate_curve_table(scores, spec, seed=2, revenue_unavailable=reason)
    )
    pd.testing.assert_frame_equal(pr_curves(assessed), pr_curve_table(scores, spec, seed=2))
    pd.testing.assert_frame_equal(
        pr_interpolated(assessed), pr_interpolated_table(scores, spec, seed=2)
    )
    shared = [r for r in PLOT_RATES if r in spec.inspection_rates]
    assert len(shared) == 4  # 7.25% is not a plot rate
    for row in curves[curves["rate"].isin(shared)].itertuples():
        m = result[row.population]["methods"][row.method]["rates"][f"{row.rate * 100:g}%"]
        assert (row.precision, row.recall) == (m["precision"], m["recall"])
        assert row.revenue_share == m["revenue_share"] or (
            m["revenue_share"] is None and pd.isna(row.revenue_share)
        )


def test_pr_tables_are_sklearns_curves(revenue_spec):
    """The precision-recall tables from the sorted rankings equal scikit-learn's curves."""
    from sklearn.metrics import precision_recall_curve

    scores = _scores(n=1500, seed=3)
    pr = pr_curve_table(scores, revenue_spec, seed=1, max_points=10**6)
    methods = ranking_scores(scores, seed=1, area=revenue_spec.name)
    mask = scores["label"].notna().to_numpy()
    y = scores["label"].fillna(0).to_numpy(float)
    for method, score in methods.items():
        if method == "oracle":
            continue
        precision, recall, _ = precision_recall_curve(y[mask], score[mask])
        got = pr[(pr["population"] == LABELLED) & (pr["method"] == method)]
        np.testing.assert_array_equal(got["precision"].to_numpy(), precision)
        np.testing.assert_array_equal(got["recall"].to_numpy(), recall)


def test_recovered_available(world):
    assert recovered_available(world["outcomes"])
    assert not recovered_available(world["outcomes"].drop(columns=["additional_duty"]))
    empty = world["outcomes"].assign(additional_duty=np.nan)
    assert not recovered_available(empty)


def test_interpolated_pr_and_calibration_known_answer(revenue_spec):
    scores = _scores(n=8, with_truth=True).assign(
        score=[0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2],
        offence=pd.array([True, False, True, False, False, False, False, True], dtype="boolean"),
        true_prob=0.5,
    )
    pr = pr_interpolated_table(scores, revenue_spec, seed=0)
    # Model: hits at ranks 1, 3, 8 → precision 1 up to recall 1/3, 2/3 up to 2/3, 3/8 to 1.
    at = dict(zip(pr["recall"], pr["model"], strict=True))
    assert at[0.3] == 1.0 and at[0.5] == pytest.approx(2 / 3) and at[1.0] == pytest.approx(3 / 8)
    cal = calibration_table(scores, bins=2)
    assert cal["predicted"].tolist() == pytest.approx([0.35, 0.75])
    assert cal["observed_truth"].tolist() == pytest.approx([0.25, 0.5])


# --- ranking by probability vs by expected recovery (areas with rank_by: expected_recovery) -----


def _ten_items():
    """Row 0: likely, found, 10 recovered; row 1: less likely, found, 1,000 recovered; row 2:
    likely, not found, the largest expected recovery; the rest unlikely and clean."""
    offence = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0], dtype=bool)
    evaded = np.where(offence, [10.0, 1000.0] + [0.0] * 8, 0.0)
    return _scores(n=10).assign(
        score=[0.9, 0.5, 0.8, 0.4, 0.3, 0.2, 0.1, 0.05, 0.04, 0.03],
        expected_recovery=[9.0, 500.0, 600.0, 4.0, 3.0, 2.0, 1.0, 0.5, 0.4, 0.3],
        true_prob=[0.6, 0.7, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
        offence=pd.array(offence, dtype="boolean"),
        evaded_duty=evaded,
        label=offence.astype(float),
        recovered=evaded,
        control_kind=pd.array(["physical"] * 10, dtype="string"),
    )


def test_rank_key_comparison_known_answer(revenue_spec):
    spec = revenue_spec.model_copy(
        update={"rank_by": "expected_recovery", "inspection_rates": [0.1, 0.2]}
    )
    block = rank_key_comparison(_ten_items(), spec, seed=0)
    assert block["available"] and block["operating_rate"] == "5%"
    assert set(block["populations"]) == {LABELLED, RANDOM_CONTROL, TRUTH}
    for pop in (LABELLED, TRUTH):
        methods = block["populations"][pop]["methods"]
        assert set(methods) == (
            {"probability", "expected_recovery", "rank_key", "oracle"}
            if pop == TRUTH
            else {"probability", "expected_recovery", "rank_key"}
        )
        # the spec's exponent is 1: the lists' key is the expected recovery itself
        assert methods["rank_key"] == methods["expected_recovery"]
        by_p, by_er = methods["probability"]["rates"], methods["expected_recovery"]["rates"]
        # 10%: probability picks row 0 (found, 10), expected recovery row 2 (not found)
        assert by_p["10%"]["precision"] == 1 and by_er["10%"]["precision"] == 0
        assert by_p["10%"]["revenue_share"] == pytest.approx(10 / 1010)
        assert by_er["10%"]["revenue_share"] == 0
        # 20%: rows 0, 2 against rows 2, 1: same precision, 100 times the revenue
        assert by_p["20%"]["precision"] == by_er["20%"]["precision"] == 0.5
        assert by_p["20%"]["revenue_share"] == pytest.approx(10 / 1010)
        assert by_er["20%"]["revenue_share"] == pytest.approx(1000 / 1010)
    oracle = block["populations"][TRUTH]["methods"]["oracle"]["rates"]["10%"]
    assert oracle["revenue_share"] == pytest.approx(1000 / 1010)


def test_rank_key_comparison_measures_the_lists_key_between_the_two(revenue_spec):
    # exponent 0.5: keys 0.9*sqrt(10)=2.8, 0.5*sqrt(1000)=15.8, 0.8*sqrt(750)=21.9, ...: at 20%
    # rows 2 and 1 (found, 1,000) as by expected recovery; at 10% row 2 (not found)
    spec = revenue_spec.model_copy(
        update={
            "rank_by": "expected_recovery",
            "recovery_exponent": 0.5,
            "inspection_rates": [0.1, 0.2],
        }
    )
    block = rank_key_comparison(_ten_items(), spec, seed=0)
    assert block["recovery_exponent"] == 0.5
    key = block["populations"][TRUTH]["methods"]["rank_key"]["rates"]
    assert key["10%"]["precision"] == 0
    assert key["20%"]["revenue_share"] == pytest.approx(1000 / 1010)
    # exponent 0: the lists' key is the probability
    spec0 = spec.model_copy(update={"recovery_exponent": 0.0})
    methods = rank_key_comparison(_ten_items(), spec0, seed=0)["populations"][TRUTH]["methods"]
    assert methods["rank_key"] == methods["probability"]


def test_rank_key_comparison_absent_or_unavailable(revenue_spec):
    assert rank_key_comparison(_ten_items(), revenue_spec, seed=0) is None  # ranks by probability
    spec = revenue_spec.model_copy(update={"rank_by": "expected_recovery"})
    block = rank_key_comparison(_ten_items().drop(columns=["expected_recovery"]), spec, seed=0)
    assert block["available"] is False and "recovery.txt" in block["note"]
    assert "populations" not in block


def test_run_evaluate_compares_probability_and_expected_recovery_on_test_items(
    world_root, world, revenue_spec, params, tracking_uri
):
    spec = revenue_spec.model_copy(update={"rank_by": "expected_recovery"})
    trained = train_area_model("revenue", world_root, params, spec, tracking_uri=tracking_uri)
    assert (world_root / "models/revenue/recovery.txt").exists()
    run_evaluate(world_root, params, {"revenue": spec}, tracking_uri=tracking_uri)

    # the scores carry the recovery model's key for every test item, and only for those
    scores = read_dataset(world_root / "data/scores/revenue")
    rows = in_window(world["features"], params.split.test_start, params.split.test_end)
    assert len(scores) == len(rows)
    model = AreaModel.load(world_root / "models/revenue")
    expected = model.rank_key(rows)["expected_recovery"].to_numpy()
    np.testing.assert_allclose(scores["expected_recovery"], expected)
    assert (scores["model_version"] == f"riskml-revenue v{trained['version']}").all()

    doc = json.loads((world_root / "metrics/areas/revenue.json").read_text())
    block = doc[RANK_KEY_COMPARISON]
    assert block["available"] and block["rank_by"] == "expected_recovery"
    for pop in (TRUTH, LABELLED):
        part = block["populations"][pop]
        assert part["n"] == doc["populations"][pop]["n"]
        methods = part["methods"]
        assert {"probability", "expected_recovery"} <= set(methods)
        assert set(methods["expected_recovery"]["rates"]) == {"1%", "2%", "5%", "10%"}
        # ranking by probability is the model's own ranking of the populations block
        assert (
            methods["probability"]["rates"] == doc["populations"][pop]["methods"]["model"]["rates"]
        )
    assert "oracle" in block["populations"][TRUTH]["methods"]

    head = json.loads((world_root / "metrics/summary.json").read_text())["revenue"]
    short = head[RANK_KEY_COMPARISON]
    assert short["population"] == TRUTH and short["rate"] == "5%"
    truth_er = block["populations"][TRUTH]["methods"]["expected_recovery"]["rates"]["5%"]
    assert short["expected_recovery"]["revenue_share"] == truth_er["revenue_share"]
    assert {"probability", "expected_recovery", "oracle"} <= set(short)

    run = mlflow.MlflowClient(tracking_uri).get_run(trained["run_id"])
    key = "test.rank_key.truth.expected_recovery.revenue_share_at_5pct"
    assert run.data.metrics[key] == pytest.approx(truth_er["revenue_share"])


def test_evaluate_reads_the_register_stages_window_scores_and_writes_what_scoring_gives(
    world_root, revenue_spec, params, tracking_uri
):
    """The register stage scores the test window for the operating threshold and keeps the
    scores with the model (``models/<area>/window_scores``): they are, bit for bit, what the
    evaluate stage's own scoring gives, so evaluate reads them instead of predicting every item
    again and writes the same scores, metrics and plot data. A changed model or a rewritten
    month of features makes it score again."""
    import os

    from riskml.area_model import WINDOW_SCORES_RECORD, score_months, stored_window_scores
    from riskml.catalog import Catalog

    train_area_model("revenue", world_root, params, revenue_spec, tracking_uri=tracking_uri)
    catalog = Catalog(world_root)
    folder, features = catalog.model("revenue"), catalog.features
    model = AreaModel.load(folder)
    window = {"start": params.split.test_start, "end": params.split.test_end}
    stored = stored_window_scores(folder, model, features, **window)
    fresh = score_months(model, features, **window)
    assert stored is not None and len(stored) > 100
    pd.testing.assert_frame_equal(stored, fresh, check_exact=True)

    def outputs():
        run_evaluate(world_root, params, {"revenue": revenue_spec}, tracking_uri=tracking_uri)
        files = sorted((world_root / "plots/evaluation/revenue").glob("*.csv"))
        return (
            read_dataset(world_root / "data/scores/revenue"),
            (world_root / "metrics/areas/revenue.json").read_text(),
            {f.name: f.read_bytes() for f in files},
        )

    scores, metrics, plots = outputs()  # from the stored scores
    record = (folder / WINDOW_SCORES_RECORD).read_text()
    (folder / WINDOW_SCORES_RECORD).unlink()
    assert stored_window_scores(folder, model, features, **window) is None
    scores_fresh, metrics_fresh, plots_fresh = outputs()  # scored by evaluate itself
    pd.testing.assert_frame_equal(scores, scores_fresh, check_exact=True)
    assert metrics == metrics_fresh and plots == plots_fresh and len(plots) >= 6

    (folder / WINDOW_SCORES_RECORD).write_text(record)
    assert stored_window_scores(folder, model, features, **window) is not None
    other = AreaModel.load(folder)
    other.threshold_ = other.threshold_ / 2  # another model content
    assert stored_window_scores(folder, other, features, **window) is None
    month = read_dataset(folder / "window_scores")["accepted_date"].max().strftime("%Y-%m")
    part = features / f"month={month}" / "part-0.parquet"
    os.utime(part, ns=(part.stat().st_atime_ns, part.stat().st_mtime_ns + 1))
    assert stored_window_scores(folder, model, features, **window) is None
