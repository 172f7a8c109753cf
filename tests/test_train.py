"""riskml.train: time windows, rare areas, determinism, model files and the MLflow registry."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import pytest

from riskml.area_model import AreaModel
from riskml.config import (
    AreaSpec,
    TrainParams,
    area_train_params,
    first_stage_train_params,
    load_area_specs,
    load_params,
    spec_document,
)
from riskml.contract import KEY, RiskmlError, write_interim
from riskml.labels import build_labels
from riskml.metrics import average_precision
from riskml.train import (
    MIN_POSITIVES,
    SEARCH_SPACE,
    feature_columns,
    first_stage_labels,
    fold_tree_count,
    in_window,
    labelled_rows,
    lgb_params,
    negative_sampling,
    recency_weights,
    refit_rounds,
    row_sampling,
    run_tune,
    train_area,
    training_labels,
    training_weights,
    tree_count_folds,
)
from riskml.train_stage import train_area_model


def _aliases(client) -> dict[str, str]:
    return {a: str(v) for a, v in client.get_registered_model("riskml-revenue").aliases.items()}


def _labels(world, spec, known_before):
    return build_labels(world["declarations"], world["outcomes"], spec, known_before=known_before)


def test_feature_columns_skip_keys_context_and_excluded(world, revenue_spec):
    cols = feature_columns(world["features"], revenue_spec)
    assert cols == ["f_signal", "f_noise", "f_high_duty", "f_log_value"]
    spec = revenue_spec.model_copy(update={"exclude_features": ["f_noise"]})
    assert "f_noise" not in feature_columns(world["features"], spec)
    spec = revenue_spec.model_copy(update={"exclude_features": ["nope"]})
    with pytest.raises(RiskmlError, match="unknown feature"):
        feature_columns(world["features"], spec)


def _test_window_truth_ap(world, split, model) -> tuple[float, float]:
    """The model's average precision on the truth of every item of the test window, and the
    window's offence rate."""
    test = in_window(world["features"], split.test_start, split.test_end)
    truth = test[["declaration_id"]].merge(world["truth"], on="declaration_id")
    y = truth["offence"].to_numpy(float)
    return average_precision(y, model.predict(test)), float(y.mean())


def test_model_learns_signal_on_a_later_window(world, revenue_spec, params):
    split = params.split
    labels = _labels(world, revenue_spec, split.test_start)
    model = train_area(world["features"], labels, revenue_spec, split, params.train)
    assert model.n_train_positives >= MIN_POSITIVES
    assert model.best_iteration >= 1
    assert model.valid_average_precision > model.n_valid_positives / model.n_valid
    # Judge on the truth of every item of the (never seen) test window.
    ap, base = _test_window_truth_ap(world, split, model)
    assert ap > base + 0.15, (ap, base)


def test_training_is_deterministic(world, revenue_spec, params):
    labels = _labels(world, revenue_spec, params.split.test_start)
    a = train_area(world["features"], labels, revenue_spec, params.split, params.train)
    b = train_area(world["features"], labels, revenue_spec, params.split, params.train)
    assert a.booster.model_to_string() == b.booster.model_to_string()


def test_refit_trains_on_every_labelled_row_with_the_scaled_tree_count(world, revenue_spec, params):
    split = params.split
    labels = _labels(world, revenue_spec, split.test_start)
    refit = train_area(world["features"], labels, revenue_spec, split, params.train)
    early = train_area(
        world["features"], labels, revenue_spec, split,
        params.train.model_copy(update={"refit": False}),
    )  # fmt: skip
    every = in_window(
        world["features"].merge(labels.dropna(subset=["label"]), on=["declaration_id", "item_no"]),
        split.train_start,
        split.test_start,
    )
    # the same early stopping; the refit sees the early-stopping slice too
    assert refit.best_iteration == early.best_iteration == early.booster.num_trees()
    assert refit.refit["rows"] == len(every) == early.n_train + early.n_valid
    assert refit.refit["positives"] == int(every["label"].sum())
    trees = refit_rounds(early.best_iteration, early.n_train, len(every))
    assert refit.booster.num_trees() == trees
    assert early.refit is None
    assert refit.booster.model_to_string() != early.booster.model_to_string()
    # the validation figures are the early-stopped model's, out of sample
    assert refit.valid_average_precision == early.valid_average_precision
    assert refit_rounds(100, 1000, 1500) == 150 and refit_rounds(100, 1000, 900) == 100
    # a tree-count fold's past scales down, to one tree or the floor at least
    assert refit_rounds(100, 1000, 500, shrink=True) == 50
    assert refit_rounds(1, 1000, 10, shrink=True) == 1
    assert refit_rounds(100, 1000, 500, at_least=80, shrink=True) == 80
    # a floor on the refit's trees (train.min_refit_trees); the early stopping is unchanged
    floor = trees + 37
    floored = train_area(
        world["features"], labels, revenue_spec, split,
        params.train.model_copy(update={"min_refit_trees": floor}),
    )  # fmt: skip
    assert floored.best_iteration == early.best_iteration
    assert floored.booster.num_trees() == floor


def _rows_of_each_tree(booster: lgb.Booster) -> list[int]:
    """The rows each tree was grown on (its root's count: the in-bag rows)."""
    roots = [t["tree_structure"] for t in booster.dump_model()["tree_info"]]
    return [r.get("internal_count", r.get("leaf_count")) for r in roots]


def test_row_sampling_switches_to_goss_above_the_budget_only():
    params = TrainParams(bagging_fraction=0.8, max_rows_per_tree=50_000)
    assert row_sampling(params, 62_500) == {}  # bagging's 50,000 rows fit the budget
    assert row_sampling(params.model_copy(update={"max_rows_per_tree": None}), 10**7) == {}
    goss = row_sampling(params, 400_000)
    assert goss["data_sample_strategy"] == "goss"
    assert goss["bagging_freq"] == 0 and goss["bagging_fraction"] == 1.0
    assert goss["top_rate"] == goss["other_rate"]
    assert (goss["top_rate"] + goss["other_rate"]) * 400_000 == pytest.approx(50_000)


def _every_row_and_capped(world, spec, params, capped):
    """The labels, the every-row model and the model under ``capped`` train settings (trained
    twice: the same seed gives the same model, and it differs from the every-row one)."""
    split = params.split
    labels = _labels(world, spec, split.test_start)
    full = train_area(world["features"], labels, spec, split, params.train)
    a = train_area(world["features"], labels, spec, split, capped)
    b = train_area(world["features"], labels, spec, split, capped)
    assert a.booster.model_to_string() == b.booster.model_to_string()  # deterministic by seed
    assert a.booster.model_to_string() != full.booster.model_to_string()
    return labels, full, a


def _assert_calibrated_and_ranking(world, split, capped, full, *, rel: float) -> None:
    """On the never-seen test window, the capped model's mean probability stays the every-row
    model's (within ``rel``) and it still ranks by the signal (average precision on the truth
    well above the base rate)."""
    test = in_window(world["features"], split.test_start, split.test_end)
    truth = test[["declaration_id"]].merge(world["truth"], on="declaration_id")
    y = truth["offence"].to_numpy(float)
    p_capped, p_full = capped.predict(test), full.predict(test)
    assert p_capped.mean() == pytest.approx(p_full.mean(), rel=rel)
    assert average_precision(y, p_capped) > y.mean() + 0.15


def test_max_rows_per_tree_bounds_every_tree_and_keeps_the_model_calibrated(
    world, revenue_spec, params
):
    from riskml.train import _refit, lgb_params

    split = params.split
    budget = 400
    capped = params.train.model_copy(update={"max_rows_per_tree": budget})
    labels, full, a = _every_row_and_capped(world, revenue_spec, params, capped)
    assert a.lgb_params["data_sample_strategy"] == "goss"
    assert a.refit["rows_per_tree"] == budget < a.refit["rows"] / 2
    assert full.refit["rows_per_tree"] == round(0.8 * full.refit["rows"])
    # each tree's rows (its root's count): LightGBM's GOSS grows the first 1 / learning_rate
    # trees on every row, then about the budget
    rows = labelled_rows(world["features"], labels)
    every = in_window(rows, split.train_start, split.test_start)
    names = feature_columns(world["features"], revenue_spec)
    config = lgb_params(capped, int(every["label"].sum()))
    grown = _rows_of_each_tree(
        _refit(negative_sampling(every, capped), names, config, capped, 60, cut=split.test_start)
    )
    warm = math.ceil(1 / capped.learning_rate)
    assert grown[:warm] == [len(every)] * warm
    assert budget <= max(grown[warm:]) <= 1.1 * budget  # ties at the gradient cut may add a few
    # the sampled rows are weighted up: the mean probability stays the unsampled model's, and
    # the capped model still ranks the never-seen test window by the signal
    _assert_calibrated_and_ranking(world, split, a, full, rel=0.15)
    # a budget above the rows bagging gives each tree changes nothing
    roomy = params.train.model_copy(update={"max_rows_per_tree": 10**6})
    same = train_area(world["features"], labels, revenue_spec, split, roomy)
    assert same.booster.model_to_string() == full.booster.model_to_string()


def test_negative_sampling_keeps_every_positive_and_weights_the_negatives_it_keeps():
    n = 20_000
    rng = np.random.default_rng(3)
    rows = pd.DataFrame(
        {
            "declaration_id": [f"D{i:06d}" for i in range(n)],
            "item_no": np.ones(n, dtype="int64"),
            "label": (rng.random(n) < 0.02).astype(float),
        }
    )
    params = TrainParams(max_training_rows=5_000)
    kept, factor, rate = negative_sampling(rows, params)
    positives = int(rows["label"].sum())
    assert rate == pytest.approx((5_000 - positives) / (n - positives))
    assert int(kept["label"].sum()) == positives  # every positive
    assert len(kept) == pytest.approx(5_000, rel=0.05)
    negative = kept["label"].to_numpy() == 0
    assert np.all(factor[~negative] == 1.0) and np.allclose(factor[negative], 1 / rate)
    # the weighted negatives stand for all of them: the weighted base rate is the rows'
    assert factor.sum() == pytest.approx(n, rel=0.05)
    # the same rows whatever their order (a hash of the key and the seed), others by another seed
    shuffled, _, _ = negative_sampling(rows.sample(frac=1.0, random_state=1), params)
    assert set(shuffled["declaration_id"]) == set(kept["declaration_id"])
    reseeded, _, _ = negative_sampling(rows, params.model_copy(update={"seed": 7}))
    assert set(reseeded["declaration_id"]) != set(kept["declaration_id"])
    # positives filling the cap: the negatives keep half of it
    assert len(negative_sampling(rows, TrainParams(max_training_rows=600))[0]) == pytest.approx(
        positives + 300, abs=60
    )
    # at or under the cap, or unset: the rows themselves, unweighted
    for unbound in (TrainParams(max_training_rows=n), TrainParams()):
        same, factor, rate = negative_sampling(rows, unbound)
        assert same is rows and factor is None and rate == 1.0


def test_max_training_rows_bounds_each_fit_and_keeps_the_model_calibrated(
    world, revenue_spec, params
):
    from riskml.train import _refit, lgb_params

    split = params.split
    cap = 400  # the fixture's fits: 803 train, 166 early-stopping and 969 refit rows
    capped = params.train.model_copy(update={"max_training_rows": cap})
    labels, full, a = _every_row_and_capped(world, revenue_spec, params, capped)
    rows = labelled_rows(world["features"], labels)
    every = in_window(rows, split.train_start, split.test_start)
    positives = int(every["label"].sum())
    assert a.refit["rows"] == len(every) > 2 * cap  # the facts keep the labelled rows
    assert a.refit["sampled_rows"] == pytest.approx(cap, rel=0.1)
    rate = (cap - positives) / (len(every) - positives)
    assert a.refit["negative_rate"] == pytest.approx(rate, rel=1e-4)
    assert a.refit["rows_per_tree"] == round(0.8 * a.refit["sampled_rows"])
    # every tree of the refit is grown on the sampled rows (bagged), not on the labelled ones
    names = feature_columns(world["features"], revenue_spec)
    config = lgb_params(capped, positives)
    grown = _rows_of_each_tree(
        _refit(negative_sampling(every, capped), names, config, capped, 30, cut=split.test_start)
    )
    assert max(grown) < a.refit["sampled_rows"] < len(every) / 2
    assert np.mean(grown) == pytest.approx(0.8 * a.refit["sampled_rows"], rel=0.05)
    # calibrated: the kept negatives weigh 1 / rate, so the mean probability on the never-seen
    # test window stays the every-row model's (unweighted, it would be about 2.5 times it), and
    # the model still ranks by the signal
    _assert_calibrated_and_ranking(world, split, a, full, rel=0.1)
    # a cap above every fit's rows (the default world's fits at the default size): the same model
    roomy = params.train.model_copy(update={"max_training_rows": len(every)})
    same = train_area(world["features"], labels, revenue_spec, split, roomy)
    assert same.booster.model_to_string() == full.booster.model_to_string()
    assert "sampled_rows" not in same.refit
    # the model card says so when it binds, and only then
    from riskml.train_stage import _refit_card

    assert f"grown on {a.refit['sampled_rows']:,} of those items" in _refit_card(a.refit)[0]
    assert "max_training_rows" not in _refit_card(full.refit)[0]


def test_recency_weights_halve_every_half_life_and_average_one():
    cut = date(2024, 1, 1)
    days = [0, 61, 122, 500]  # 0, ~2 and ~4 months old, and one past the cut (age 0)
    accepted = pd.Series(pd.Timestamp(cut) - pd.to_timedelta(days[:3], unit="D"))
    accepted = pd.concat([accepted, pd.Series([pd.Timestamp(cut) + pd.Timedelta(days=5)])])
    w = recency_weights(accepted, cut, half_life_months=2.0)
    assert w.mean() == pytest.approx(1.0)
    assert w[1] / w[0] == pytest.approx(0.5 ** (61 / (365.25 / 12) / 2))
    assert w[2] / w[0] == pytest.approx(0.5 ** (122 / (365.25 / 12) / 2))
    assert w[3] == pytest.approx(w[0])
    assert recency_weights(accepted, cut, half_life_months=0.0) is None


def test_recency_weighting_changes_the_model_and_keeps_it_deterministic(
    world, revenue_spec, params
):
    labels = _labels(world, revenue_spec, params.split.test_start)
    weighted = params.train.model_copy(update={"recency_half_life_months": 2.0})
    plain = train_area(world["features"], labels, revenue_spec, params.split, params.train)
    a = train_area(world["features"], labels, revenue_spec, params.split, weighted)
    b = train_area(world["features"], labels, revenue_spec, params.split, weighted)
    assert a.booster.model_to_string() == b.booster.model_to_string()
    assert a.booster.model_to_string() != plain.booster.model_to_string()


def test_extra_trees_draws_split_thresholds_and_keeps_the_model_deterministic(
    world, revenue_spec, params
):
    labels = _labels(world, revenue_spec, params.split.test_start)
    randomised = params.train.model_copy(update={"extra_trees": True})
    plain = train_area(world["features"], labels, revenue_spec, params.split, params.train)
    a = train_area(world["features"], labels, revenue_spec, params.split, randomised)
    b = train_area(world["features"], labels, revenue_spec, params.split, randomised)
    assert a.lgb_params["extra_trees"] is True and plain.lgb_params["extra_trees"] is False
    assert a.booster.model_to_string() == b.booster.model_to_string()
    assert a.booster.model_to_string() != plain.booster.model_to_string()
    # still a model of the signal, judged on the truth of every item of the unseen test window
    ap, base = _test_window_truth_ap(world, params.split, a)
    assert ap > base + 0.15, (ap, base)


def test_shipped_specs_use_extremely_randomised_trees_where_chosen():
    """Environment, health and safety, security and IPR: extra_trees, in both stages where
    there are two (session 28, docs/results.md); drugs and revenue: LightGBM's best
    thresholds."""
    root = Path(__file__).resolve().parents[1]
    params, specs = load_params(root / "params.yaml"), load_area_specs(root / "pipelines")
    for area, chosen in (("environment", True), ("health_safety", True), ("security", True),
                         ("drugs", False), ("revenue", False), ("ipr", True)):  # fmt: skip
        own = area_train_params(params, specs[area])
        assert lgb_params(own, 50)["extra_trees"] is chosen, area
        if specs[area].first_stage is not None:
            first = first_stage_train_params(own, specs[area])
            assert lgb_params(first, 50)["extra_trees"] is chosen, area


def _curves(model, rows: pd.DataFrame, column: str) -> np.ndarray:
    """Each row's prediction as ``column`` sweeps its range (rows x grid)."""
    grid = np.linspace(rows[column].min(), rows[column].max(), 25)
    return np.stack([model.predict(rows.assign(**{column: v})) for v in grid], axis=1)


def test_monotone_own_intelligence_keeps_the_score_rising_with_the_area_s_findings(
    world, revenue_spec, params
):
    # a feature named as the area's own past hit rate that the labels tie to a LOWER risk: an
    # unconstrained model learns the decrease, the constrained one may only rise or stay flat
    features = world["features"].copy()
    features["hs4_hr_revenue"] = -features["f_signal"] + 0.1 * features["f_noise"]
    labels = _labels(world, revenue_spec, params.split.test_start)
    limited = params.train.model_copy(update={"monotone_own_intelligence": True})
    free = train_area(features, labels, revenue_spec, params.split, params.train)
    model = train_area(features, labels, revenue_spec, params.split, limited)
    rows = features.sample(200, random_state=1)
    assert (np.diff(_curves(free, rows, "hs4_hr_revenue"), axis=1) < -1e-9).any()
    assert (np.diff(_curves(model, rows, "hs4_hr_revenue"), axis=1) >= -1e-12).all()
    assert model.lgb_params["monotone_features"] == ["hs4_hr_revenue"]
    assert "monotone_constraints" not in free.lgb_params


def test_only_train_window_rows_are_trained_on(world, revenue_spec, params):
    labels = _labels(world, revenue_spec, None)  # even if later labels are passed in
    model = train_area(world["features"], labels, revenue_spec, params.split, params.train)
    rows = world["features"][["declaration_id", "accepted_date"]].merge(
        labels.dropna(subset=["label"]).astype({"declaration_id": str}), on="declaration_id"
    )
    expected = in_window(rows, params.split.train_start, params.split.valid_start)
    assert model.n_train == len(expected)


def test_rare_area_raises_naming_area_window_and_count(world, revenue_spec, params):
    labels = _labels(world, revenue_spec, params.split.test_start)
    labels = labels.copy()
    pos = labels.index[labels["label"] == 1]
    labels.loc[pos[3:], "label"] = 0.0  # 3 positives left in all
    with pytest.raises(
        RiskmlError, match=r"area 'revenue': the (train|validation) window .* [0-3] positive"
    ):
        train_area(world["features"], labels, revenue_spec, params.split, params.train)


def test_run_train_writes_files_and_registers_with_aliases(
    world_root, world, revenue_spec, params, tracking_uri
):
    first = train_area_model("revenue", world_root, params, revenue_spec, tracking_uri=tracking_uri)
    folder = world_root / "models/revenue"
    assert {p.name for p in folder.iterdir()} == {
        "model.txt",
        "model.json",
        "model_card.md",
        "registration.json",
        "window_scores",  # the test window's scores, for the evaluate stage
        "window_scores.json",
    }
    meta = json.loads((folder / "model.json").read_text())
    assert meta["area"] == "revenue"
    assert meta["features"] == ["f_signal", "f_noise", "f_high_duty", "f_log_value"]
    reg = json.loads((folder / "registration.json").read_text())
    assert reg["run_id"] == first["run_id"]
    assert reg["version"] == "1"
    card = (folder / "model_card.md").read_text()
    assert "revenue" in card and "Validation average precision" in card
    assert not list(folder.glob(".*.tmp"))

    client = mlflow.MlflowClient(tracking_uri)
    assert _aliases(client) == {"champion": "1", "challenger": "1"}
    run = client.get_run(first["run_id"])
    assert run.data.tags["area"] == "revenue"
    assert run.data.params["train.num_leaves"] == str(params.train.num_leaves)
    assert run.data.params["split.test_start"] == str(params.split.test_start)
    assert run.data.metrics["valid_average_precision"] == pytest.approx(
        first["valid_average_precision"], abs=1e-4
    )
    assert not (world_root.parent / "mlruns").exists()
    assert (world_root / "mlartifacts").is_dir()

    # the same content again: no new version; another setting: version 2
    assert (
        train_area_model("revenue", world_root, params, revenue_spec, tracking_uri=tracking_uri)[
            "version"
        ]
        == "1"
    )
    other = params.model_copy(update={"train": params.train.model_copy(update={"seed": 7})})
    second = train_area_model("revenue", world_root, other, revenue_spec, tracking_uri=tracking_uri)
    assert second["version"] == "2"
    assert _aliases(client) == {"champion": "1", "challenger": "2"}
    assert (
        client.get_model_version_by_alias("riskml-revenue", "challenger").run_id
        == (second["run_id"])
    )

    # The registered model is the saved area model (model.txt inside).
    meta = json.loads((folder / "model.json").read_text())
    logged = mlflow.pyfunc.load_model("models:/riskml-revenue@challenger")
    saved = lgb.Booster(model_file=str(folder / "model.txt"))
    x = world["features"][meta["features"]].astype("float64").head(500)
    np.testing.assert_allclose(
        logged.predict(x)["probability"], saved.predict(x), rtol=0, atol=1e-12
    )
    model_info = mlflow.models.get_model_info("models:/riskml-revenue@challenger")
    assert model_info.signature.inputs.input_names() == meta["features"]


def test_float32_training_matrix_gives_the_trees_of_the_float64_frame(world, revenue_spec, params):
    """The stored features are float32: training builds one float32 matrix from them (half the
    memory of the float64 frame, no pandas copy) and LightGBM grows the same trees from it."""
    from riskml.train import _dataset, feature_array, feature_matrix, lgb_params

    names = feature_columns(world["features"], revenue_spec)
    labels = _labels(world, revenue_spec, params.split.test_start)
    rows = labelled_rows(world["features"], labels)
    rows[names] = rows[names].astype("float32")
    X = feature_array(rows, names)
    assert X.dtype == np.float32 and X.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(X, feature_matrix(rows, names).to_numpy())
    wide = rows.astype({names[0]: "float64"})  # not exactly float32: a float64 matrix
    assert feature_array(wide, names).dtype == np.float64
    config = lgb_params(params.train, int(rows["label"].sum()))
    frame = lgb.Dataset(feature_matrix(rows, names), label=rows["label"].to_numpy())
    a = lgb.train(config, frame, num_boost_round=30).model_to_string()
    b = lgb.train(config, _dataset(rows, names, "label"), num_boost_round=30).model_to_string()
    # the trees and feature names are the same; only the record of pandas categories differs
    assert a.replace("pandas_categorical:[]", "pandas_categorical:null") == b


def test_run_train_reads_only_labelled_rows_and_equals_training_on_the_whole_frame(
    world_root, world, revenue_spec, params, tracking_uri
):
    """The train stage reads the labelled items' model columns month by month and scores the
    test window month by month for its threshold: the same model, bit for bit, as training on
    the whole in-memory feature frame."""
    from riskml.train import _stage_inputs
    from riskml.train_stage import bind_policy, fit_estimator

    features, labels, _ = _stage_inputs(world_root, params, revenue_spec)
    window = in_window(world["features"], params.split.train_start, params.split.test_start)
    labelled = labels.loc[labels["label"].notna(), ["declaration_id", "item_no"]]
    expected = window.merge(labelled, on=["declaration_id", "item_no"])
    assert len(features) == len(expected) < len(world["features"]) // 2
    names = feature_columns(world["features"], revenue_spec)
    assert list(features.columns) == ["declaration_id", "item_no", "accepted_date", *names]

    train_area_model("revenue", world_root, params, revenue_spec, tracking_uri=tracking_uri)
    staged = AreaModel.load(world_root / "models/revenue")
    whole = bind_policy(
        fit_estimator(
            world["features"], _labels(world, revenue_spec, params.split.test_start), params,
            revenue_spec, declarations=world["declarations"], outcomes=world["outcomes"],
        ),
        revenue_spec, params.split, features=world["features"],
        declarations=world["declarations"],
    )  # fmt: skip
    assert staged.fingerprint_ == whole.fingerprint_
    assert staged.threshold_ == whole.threshold_ and np.isfinite(staged.threshold_)
    assert staged.threshold_basis_ == whole.threshold_basis_
    assert staged.content_hash() == whole.content_hash()


def test_window_rank_keys_in_slices_equal_one_pass(
    world_root, world, revenue_spec, params, tracking_uri, monkeypatch
):
    """The threshold's rank keys are computed a month at a time by the evaluate stage's month
    loop (:func:`riskml.area_model.score_months`), a large month in slices of ``SCORE_SLICE``
    rows (memory at ten million items): slices of 7 rows give the same keys and scores, and
    without the rank key the same scores as the evaluate stage's."""
    from riskml import area_model
    from riskml.catalog import Catalog

    train_area_model("revenue", world_root, params, revenue_spec, tracking_uri=tracking_uri)
    model = AreaModel.load(world_root / "models/revenue")
    folder = Catalog(world_root).features
    window = {"start": params.split.test_start, "end": params.split.test_end}
    decl = world["declarations"]
    whole = area_model.score_months(model, folder, **window, rank_key=True, declarations=decl)
    plain = area_model.score_months(model, folder, **window)
    monkeypatch.setattr(area_model, "SCORE_SLICE", 7)
    sliced = area_model.score_months(model, folder, **window, rank_key=True, declarations=decl)
    assert len(whole) > 7 and "rank_key" in whole.columns
    pd.testing.assert_frame_equal(sliced, whole, check_exact=True)
    pd.testing.assert_frame_equal(
        area_model.score_months(model, folder, **window), plain, check_exact=True
    )
    pd.testing.assert_frame_equal(whole.drop(columns=["rank_key"]), plain, check_exact=True)
    # a window without a features month: no rows, the same columns (the threshold's keys)
    later = {"start": date(2099, 1, 1), "end": date(2099, 2, 1)}
    none = area_model.score_months(model, folder, **later, rank_key=True, declarations=decl)
    assert none.empty and list(none.columns) == list(whole.columns)
    assert list(area_model.score_months(model, folder, **later).columns) == list(plain.columns)


def test_outcomes_known_after_test_start_do_not_change_the_model(
    world_root, world, revenue_spec, params, tracking_uri
):
    train_area_model("revenue", world_root, params, revenue_spec, tracking_uri=tracking_uri)
    before = (world_root / "models/revenue/model.txt").read_text()
    # Flip every result that became known on or after test_start.
    outcomes = world["outcomes"].copy()
    late = outcomes["result_date"] >= pd.Timestamp(params.split.test_start)
    outcomes.loc[late, "offence_found"] = ~outcomes.loc[late, "offence_found"]
    outcomes.loc[late, "risk_area"] = "revenue"
    write_interim(world_root / "data/interim", {"outcomes": outcomes})
    train_area_model("revenue", world_root, params, revenue_spec, tracking_uri=tracking_uri)
    assert (world_root / "models/revenue/model.txt").read_text() == before


def test_early_stopping_slice_reaches_back_until_it_has_enough_positives():
    from riskml.config import SplitParams
    from riskml.train import early_stopping_start

    split = SplitParams(
        train_start="2023-01-01",
        valid_start="2024-01-01",
        test_start="2024-04-01",
        test_end="2024-07-01",
    )
    dates = pd.date_range("2023-01-01", "2024-03-31", freq="D")
    rows = pd.DataFrame({"accepted_date": dates, "label": 0.0})
    # one positive a month
    rows.loc[rows["accepted_date"].dt.day == 15, "label"] = 1.0
    assert early_stopping_start(rows, split, min_positives=3) == date(2024, 1, 1)
    assert early_stopping_start(rows, split, min_positives=5) == date(2023, 11, 1)
    # never more than half of the train window is given up
    assert early_stopping_start(rows, split, min_positives=100) == date(2023, 8, 1)
    # nor the last MIN_POSITIVES positives of the train window: positives that come late make a
    # shorter slice, not an untrainable window
    late = rows.copy()
    late.loc[late["accepted_date"] < pd.Timestamp("2023-07-01"), "label"] = 0.0
    assert MIN_POSITIVES == 5  # July to November stay in training
    assert early_stopping_start(late, split, min_positives=100) == date(2023, 12, 1)


def test_tree_count_folds_are_blocks_of_whole_months_ending_at_the_cut():
    from riskml.config import SplitParams
    from riskml.train import early_stopping_start

    split = SplitParams(
        train_start="2023-01-01", valid_start="2024-01-01", test_start="2024-04-01",
        test_end="2024-07-01",
    )  # fmt: skip
    dates = pd.date_range("2023-01-01", "2024-03-31", freq="D")
    rows = pd.DataFrame({"accepted_date": dates, "label": 0.0})
    rows.loc[rows["accepted_date"].dt.day == 15, "label"] = 1.0  # one positive a month
    # 3 folds x 2 positives: the region reaches back to 2023-10 (6 positives), cut into three
    # blocks of two months
    assert tree_count_folds(rows, split, n_folds=3, min_positives=2) == [
        (date(2023, 10, 1), date(2023, 12, 1)),
        (date(2023, 12, 1), date(2024, 2, 1)),
        (date(2024, 2, 1), date(2024, 4, 1)),
    ]
    folds = tree_count_folds(rows, split, n_folds=3, min_positives=4)
    region = early_stopping_start(rows, split, min_positives=12)
    assert region == date(2023, 8, 1)  # at most half of the train window is given up
    assert folds[0][0] == region and folds[-1][1] == split.test_start
    assert all(a[1] == b[0] for a, b in zip(folds[:-1], folds[1:], strict=True))
    assert folds == [
        (date(2023, 8, 1), date(2023, 11, 1)),
        (date(2023, 11, 1), date(2024, 2, 1)),
        (date(2024, 2, 1), date(2024, 4, 1)),
    ]
    # a region of fewer months than folds: one block a month
    short = tree_count_folds(rows, split, n_folds=5, min_positives=0)
    assert short == [
        (date(2024, 1, 1), date(2024, 2, 1)),
        (date(2024, 2, 1), date(2024, 3, 1)),
        (date(2024, 3, 1), date(2024, 4, 1)),
    ]


def _pooled_best(rows, names, config, folds, split, rounds, patience):
    """The pooled out-of-fold curve's first maximum, computed another way: each fold fitted by
    lgb.train on the rows before its block only, its block predicted after every tree."""
    from sklearn.metrics import average_precision_score

    preds, ys = [], []
    for start, end in folds:
        train = in_window(rows, split.train_start, start)
        valid = in_window(rows, start, end)
        assert pd.to_datetime(train["accepted_date"]).max() < pd.Timestamp(start)
        data = lgb.Dataset(train[names].to_numpy(np.float32), label=train["label"].to_numpy())
        booster = lgb.train(config | {"metric": "None"}, data, num_boost_round=rounds)
        X = valid[names].to_numpy(np.float32)
        preds.append([booster.predict(X, num_iteration=i) for i in range(1, rounds + 1)])
        ys.append(valid["label"].to_numpy())
    y = np.concatenate(ys)
    curve = [average_precision_score(y, np.concatenate([p[i] for p in preds]))
             for i in range(rounds)]  # fmt: skip
    best = int(np.argmax(curve)) + 1
    assert all(c < curve[best - 1] for c in curve[best : best + patience])
    return best, curve[best - 1]


def test_tree_folds_choose_the_refit_count_on_pooled_out_of_fold_predictions(
    world, revenue_spec, params
):
    split = params.split
    labels = _labels(world, revenue_spec, split.test_start)
    train = params.train.model_copy(update={"tree_folds": 3})
    model = train_area(world["features"], labels, revenue_spec, split, train)
    slice_only = train_area(world["features"], labels, revenue_spec, split, params.train)
    chosen = model.refit["tree_folds"]
    folds = [tuple(date.fromisoformat(d) for d in f["valid"]) for f in chosen["folds"]]
    # three expanding folds: each trains on every row before its block, the last block ends at
    # the cut, and none trains on a row of its block or later
    assert len(folds) == 3 and folds[-1][1] == split.test_start
    for fold, (start, _) in zip(chosen["folds"], folds, strict=True):
        assert fold["train"] == [str(split.train_start), str(start)]
    assert [f["n_train"] for f in chosen["folds"]] == sorted(f["n_train"] for f in chosen["folds"])
    # the count is the pooled curve's first maximum (recomputed independently), scaled to the
    # refit's rows; the early stopping and its out-of-sample figures are the slice's, unchanged
    rows = labelled_rows(world["features"], labels)
    names = model.feature_names
    config = lgb_params(train, model.n_train_positives)
    best, score = _pooled_best(rows, names, config, folds, split, 200, train.early_stopping_rounds)
    assert chosen["trees"] == best and chosen["pooled_average_precision"] == pytest.approx(score)
    assert chosen["slice_trees"] == slice_only.best_iteration == model.best_iteration
    assert model.valid_average_precision == slice_only.valid_average_precision
    assert model.booster.num_trees() == refit_rounds(
        best, chosen["mean_train_rows"], model.refit["rows"]
    )
    # the model card says how the count was chosen
    from riskml.train_stage import _refit_card

    card = " ".join(_refit_card(model.refit))
    assert "3 time-series folds" in card and f"[{folds[0][0]}, {folds[0][1]})" in card
    assert f"{best} trees at the best pooled out-of-fold average precision" in card


def test_tree_folds_never_use_rows_at_or_after_the_cut(world, revenue_spec, params):
    split = params.split
    labels = _labels(world, revenue_spec, split.test_start)
    train = params.train.model_copy(update={"tree_folds": 3})
    rows = labelled_rows(world["features"], labels)
    names = feature_columns(world["features"], revenue_spec)
    config = lgb_params(train, 50)
    folds = tree_count_folds(rows, split, n_folds=3, min_positives=train.min_valid_positives)
    # a fold's rows are those before its block's end: scrambling every later row (labels and
    # features) changes nothing of the first fold's choice
    first = folds[:1]
    later = pd.to_datetime(rows["accepted_date"]) >= pd.Timestamp(first[0][1])
    scrambled = rows.copy()
    scrambled.loc[later, "label"] = 1.0 - scrambled.loc[later, "label"]
    scrambled.loc[later, names] = np.random.default_rng(0).normal(size=(int(later.sum()), 4))
    assert fold_tree_count(rows, names, config, train, split, first) == fold_tree_count(
        scrambled, names, config, train, split, first
    )
    # the whole model: features of items at or after the cut scrambled, the model is the same
    feats = world["features"].copy()
    after = feats["accepted_date"] >= pd.Timestamp(split.test_start)
    feats.loc[after, names] = np.random.default_rng(1).normal(size=(int(after.sum()), 4))
    a = train_area(world["features"], labels, revenue_spec, split, train)
    b = train_area(feats, labels, revenue_spec, split, train)
    assert a.booster.model_to_string() == b.booster.model_to_string()
    assert a.refit["tree_folds"] == b.refit["tree_folds"]


def _wider_first_stage_labels(world, labels: pd.DataFrame) -> pd.DataFrame:
    """First-stage labels on a wider positive class: every labelled item with a high-duty flag
    or a positive label (a stand-in for "a finding of any pooled area")."""
    pre = labels.copy()
    high = world["features"]["f_high_duty"].to_numpy() > 0
    pre.loc[pre["label"].notna().to_numpy() & high, "label"] = 1.0
    return pre


def test_tree_folds_in_two_stages_continue_each_fold_s_own_first_stage(world, revenue_spec, params):
    split = params.split
    labels = _labels(world, revenue_spec, split.test_start)
    pre = _wider_first_stage_labels(world, labels)
    train = params.train.model_copy(update={"tree_folds": 3})
    two = train_area(world["features"], labels, revenue_spec, split, train, pretrain_labels=pre)
    own = two.refit["tree_folds"]
    first = two.pretrain["tree_folds"]
    assert len(own["folds"]) == 3 and len(first["folds"]) >= 1
    # the first stage's refit count from its own folds, the own stage's on top of it
    assert two.pretrain["refit_trees"] == refit_rounds(
        first["trees"], first["mean_train_rows"], two.pretrain["refit_rows"]
    )
    assert two.booster.num_trees() == two.pretrain["refit_trees"] + refit_rounds(
        own["trees"], own["mean_train_rows"], two.refit["rows"]
    )


def test_model_tree_floor_tops_up_the_own_stage_only_when_both_stages_are_short(
    world, revenue_spec, params
):
    split = params.split
    labels = _labels(world, revenue_spec, split.test_start)
    pre = _wider_first_stage_labels(world, labels)

    def fit(floor: int, first_stage: pd.DataFrame | None = pre):
        train = params.train.model_copy(update={"min_model_trees": floor})
        return train_area(
            world["features"], labels, revenue_spec, split, train, pretrain_labels=first_stage
        )

    base = fit(0)
    first, total = base.pretrain["refit_trees"], base.booster.num_trees()
    # a floor the two stages already reach changes nothing: the same trees
    assert fit(total).booster.model_to_string() == base.booster.model_to_string()
    # a floor above them: the own stage grows the missing trees, the first stage is untouched
    raised = fit(total + 41)
    assert raised.booster.num_trees() == total + 41
    assert raised.pretrain["refit_trees"] == first
    assert raised.best_iteration == base.best_iteration  # early stopping is unchanged
    # one stage: the floor is the model's trees, as min_refit_trees's
    alone = fit(0, None).booster.num_trees()
    assert fit(alone + 41, None).booster.num_trees() == alone + 41


def _revenue_share(evaded: np.ndarray, key: np.ndarray, rate: float) -> float:
    top = np.argsort(-key, kind="stable")[: int(round(rate * len(key)))]
    return float(evaded[top].sum() / evaded.sum())


def test_expected_recovery_ranks_by_probability_times_predicted_duty(
    world_root, world, revenue_spec, params, tracking_uri
):
    spec = revenue_spec.model_copy(update={"rank_by": "expected_recovery"})
    train_area_model("revenue", world_root, params, spec, tracking_uri=tracking_uri)
    folder = world_root / "models/revenue"
    assert (folder / "recovery.txt").exists()
    meta = json.loads((folder / "model.json").read_text())
    assert meta["recovery"]["n_train"] >= 30 and meta["recovery"]["objective"] == "gamma"
    assert "Expected recovery" in (folder / "model_card.md").read_text()

    test = in_window(world["features"], params.split.test_start, params.split.test_end)
    value = AreaModel.load(folder).rank_key(test)["expected_recovery"].to_numpy()
    booster = lgb.Booster(model_file=str(folder / "model.txt"))
    recovery = lgb.Booster(model_file=str(folder / "recovery.txt"))
    x = test[meta["features"]].astype("float64")
    np.testing.assert_allclose(value, booster.predict(x) * recovery.predict(x), rtol=1e-12)

    # Judged on the truth of the unseen test window. The evaded duty grows with the value, which
    # the offence probability ignores: the predicted amount ranks the true offences' evaded duty,
    # and weighting a calibrated probability (the simulator's) by it covers more duty at 5%.
    truth = test[["declaration_id"]].merge(world["truth"], on="declaration_id")
    evaded = truth["evaded_duty"].to_numpy()
    positive = truth["offence"].to_numpy()
    amount = recovery.predict(x)
    rho = pd.Series(amount[positive]).corr(pd.Series(evaded[positive]), "spearman")
    assert rho > 0.5
    true_prob = truth["true_prob"].to_numpy()
    by_probability = _revenue_share(evaded, true_prob, 0.05)
    assert _revenue_share(evaded, true_prob * amount, 0.05) > by_probability + 0.05

    # Back to ranking by probability: no recovery model, and the stale file is gone.
    train_area_model("revenue", world_root, params, revenue_spec, tracking_uri=tracking_uri)
    assert not (folder / "recovery.txt").exists()
    assert AreaModel.load(folder).recovery_ is None


def test_tune_logs_nested_trials_and_prints_the_best_as_train_settings(
    world_root, world, revenue_spec, params, tracking_uri
):
    import yaml

    from riskml.config import Params, TrainParams

    params = Params.model_validate(params.model_dump() | {"tune": {"n_trials": 3, "seed": 1}})
    result = run_tune("revenue", world_root, params, revenue_spec, tracking_uri=tracking_uri)
    trials = result["trials"]
    assert len(trials) == 3
    scores = [t["valid_average_precision"] for t in trials]
    assert scores == sorted(scores, reverse=True)
    assert len({tuple(t[k] for k in SEARCH_SPACE) for t in trials}) == 3
    client = mlflow.MlflowClient(tracking_uri)
    parent = client.get_run(result["run_id"])
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{result['run_id']}'"
    )
    assert len(children) == 3
    logged = sorted(c.data.metrics["valid_average_precision"] for c in children)
    np.testing.assert_allclose(logged, sorted(scores))
    assert parent.data.metrics["best_valid_average_precision"] == pytest.approx(scores[0])
    # The snippet is a valid train override; retraining with it reproduces the best score.
    snippet = yaml.safe_load(result["yaml"])["training"]["train"]
    best = TrainParams.model_validate(params.train.model_dump() | snippet)
    labels = _labels(world, revenue_spec, params.split.test_start)
    model = train_area(world["features"], labels, revenue_spec, params.split, best)
    assert model.valid_average_precision == pytest.approx(scores[0])
    assert not (world_root / "models").exists()  # tuning writes no model files


def _spec(revenue_spec, name: str, detectable_by: list[str], pool: list[str] | None = None):
    first = {"pool": pool} if pool else None
    return AreaSpec.model_validate(
        revenue_spec.model_dump()
        | {"name": name, "detectable_by": detectable_by}
        | {"first_stage": first}
    )


def test_first_stage_positives_are_pool_findings_and_negatives_the_area_s_own(revenue_spec):
    drugs = _spec(revenue_spec, "drugs", ["physical", "random"], ["drugs", "environment"])
    environment = _spec(revenue_spec, "environment", ["documentary", "random"])
    keys = [f"D{i}" for i in range(1, 8)]
    declarations = pd.DataFrame({"declaration_id": keys, "item_no": 1})
    outcomes = pd.DataFrame(
        {
            "declaration_id": ["D1", "D2", "D3", "D3", "D4", "D5", "D7"],
            "item_no": 1,
            "control_kind": [
                "physical", "documentary", "physical", "pca", "physical", "documentary", "pca",
            ],
            "result_date": pd.to_datetime(
                [
                    "2024-01-10", "2024-01-10", "2024-01-10", "2024-03-01", "2024-01-10",
                    "2024-01-10", "2024-03-01",
                ]
            ),
            "risk_area": pd.array(
                ["environment", None, None, "environment", "revenue", "drugs", "drugs"],
                dtype="string",
            ),
            "offence_found": [True, False, False, True, True, True, True],
            "control_reason": [
                "intelligence", "profile", "random", "profile", "profile", "intelligence",
                "profile",
            ],
        }
    )  # fmt: skip
    cut = pd.Timestamp("2024-02-01")
    own, first = training_labels(
        declarations, outcomes, drugs, {"environment": environment}, known_before=cut
    )
    pd.testing.assert_frame_equal(
        own, build_labels(declarations, outcomes, drugs, known_before=cut)
    )
    # D1: environment found in time by a control that can detect drugs -> 1 (own label 0);
    # D2: a clean documentary control cannot detect drugs: labelled for environment only, it is
    #     no negative of drugs' first stage -> unlabelled;
    # D3: clean in time, environment found only after the cut -> 0, not 1;
    # D4: revenue is not in the pool -> 0; D5: drugs found by any control -> 1;
    # D6: never controlled, D7: drugs found only after the cut -> unlabelled.
    np.testing.assert_array_equal(
        own["label"].to_numpy(), [0.0, np.nan, 0.0, 0.0, 1.0, np.nan, np.nan]
    )
    np.testing.assert_array_equal(
        first["label"].to_numpy(), [1.0, np.nan, 0.0, 0.0, 1.0, np.nan, np.nan]
    )
    assert first[["declaration_id", "item_no"]].equals(own[["declaration_id", "item_no"]])
    # the reason of the control that decided each first-stage label (none where unlabelled)
    assert first["control_reason"].astype(object).where(first["label"].notna(), None).tolist() == [
        "intelligence", None, "random", "profile", "intelligence", None, None,
    ]  # fmt: skip
    # The same controls seen from environment (here documentary and random detect it): D2 is its
    # negative, the physical controls D3 and D4 are not; D5's drugs finding is a pool positive.
    env_pool = environment.model_copy(
        update={"first_stage": drugs.first_stage.model_copy(update={"pool": ["drugs"]})}
    )
    _, env_first = training_labels(
        declarations, outcomes, env_pool, {"drugs": drugs}, known_before=cut
    )
    np.testing.assert_array_equal(
        env_first["label"].to_numpy(), [1.0, 0.0, np.nan, np.nan, 1.0, np.nan, np.nan]
    )
    # The train stage's labelled rows only (no frame of every item): the same rows and values.
    for spec, pool, full in ((drugs, {"environment": environment}, first),
                             (env_pool, {"drugs": drugs}, env_first)):  # fmt: skip
        own_full = build_labels(declarations, outcomes, spec, known_before=cut)
        own_only, first_only = training_labels(
            declarations, outcomes, spec, pool, known_before=cut, labelled_only=True
        )
        pd.testing.assert_frame_equal(own_only, own_full[own_full["label"].notna()])
        pd.testing.assert_frame_equal(first_only, full[full["label"].notna()])
    # Without a first stage: one stage; a pool area without a spec is named.
    assert training_labels(declarations, outcomes, revenue_spec, {}, known_before=cut)[1] is None
    assert first_stage_labels({"revenue": own}, revenue_spec) is None
    with pytest.raises(RiskmlError, match=r"drugs.yaml: training.first_stage.pool .*environment"):
        training_labels(declarations, outcomes, drugs, {}, known_before=cut)


def test_pretrained_model_is_one_booster_continuing_the_first_stage(world, revenue_spec, params):
    split = params.split
    labels = _labels(world, revenue_spec, split.test_start)
    pre = _wider_first_stage_labels(world, labels)
    one = train_area(world["features"], labels, revenue_spec, split, params.train)
    two = train_area(
        world["features"], labels, revenue_spec, split, params.train, pretrain_labels=pre
    )
    again = train_area(
        world["features"], labels, revenue_spec, split, params.train, pretrain_labels=pre
    )
    assert two.pretrain is not None and two.pretrain["trees"] >= 1
    assert two.pretrain["n_train_positives"] > two.n_train_positives
    # one Booster holding both stages: the early-stopped count of the second stage scaled for the
    # refit on every labelled row, on top of the refit first stage
    assert two.best_iteration > two.pretrain["trees"]
    own_trees = refit_rounds(
        two.best_iteration - two.pretrain["trees"], two.n_train, two.refit["rows"]
    )
    assert two.booster.num_trees() == two.pretrain["refit_trees"] + own_trees
    assert one.pretrain is None
    test = in_window(world["features"], split.test_start, split.test_end)
    assert not np.allclose(one.predict(test), two.predict(test))
    np.testing.assert_array_equal(two.predict(test), again.predict(test))


def test_run_train_first_stage_reads_the_pool_spec_and_reports_its_rows(
    world_root, world, revenue_spec, params, tracking_uri
):
    """A first stage pooled with an area of another control kind: its rows are the area's own
    labelled rows and the other area's findings (its clean controls, of a kind that cannot
    detect this area, are no negatives here), its positives the findings of either known before
    test_start; the card, model.json and the MLflow run say so, and later findings change
    nothing."""
    import yaml

    feats = world["features"]
    extra = feats[~feats["declaration_id"].isin(world["outcomes"]["declaration_id"])].sample(
        900, random_state=1
    )
    found = extra["f_signal"].to_numpy() > 1.0
    documentary = pd.DataFrame(
        {
            "declaration_id": extra["declaration_id"].to_numpy(),
            "item_no": 1,
            "control_kind": "scanner",
            "result_date": (extra["accepted_date"] + pd.Timedelta(days=30)).to_numpy(),
            "risk_area": pd.array(np.where(found, "ipr", None), dtype="string"),
            "offence_found": found,
            "offence_code": pd.array([None] * len(extra), dtype="string"),
            "additional_duty": 0.0,
            "quantity_seized": 0.0,
        }
    )
    outcomes = pd.concat([world["outcomes"], documentary], ignore_index=True)
    write_interim(world_root / "data/interim", {"outcomes": outcomes})
    ipr = revenue_spec.model_dump() | {"name": "ipr", "detectable_by": ["scanner"]}
    (world_root / "pipelines").mkdir()
    (world_root / "pipelines/ipr.yaml").write_text(
        yaml.safe_dump(spec_document(AreaSpec.model_validate(ipr)))
    )
    spec = AreaSpec.model_validate(
        revenue_spec.model_dump() | {"first_stage": {"pool": ["revenue", "ipr"]}}
    )

    train_area_model("revenue", world_root, params, spec, tracking_uri=tracking_uri)
    folder = world_root / "models/revenue"
    pre = json.loads((folder / "model.json").read_text())["facts"]["pretrain"]
    # Independently: revenue's labelled rows and ipr's findings in [train_start, test_start).
    cut = params.split.test_start
    own = build_labels(world["declarations"], outcomes, revenue_spec, known_before=cut)["label"]
    other = build_labels(
        world["declarations"], outcomes, AreaSpec.model_validate(ipr), known_before=cut
    )["label"]
    dates = world["declarations"]["accepted_date"]
    window = (dates >= pd.Timestamp(params.split.train_start)) & (dates < pd.Timestamp(cut))
    assert "scanner" not in revenue_spec.detectable_by
    union = (own.notna() | (other == 1)) & window
    assert (other.notna() & window).sum() > union.sum() - (own.notna() & window).sum()
    assert pre["pool"] == ["revenue", "ipr"]
    assert pre["n_train"] + pre["n_valid"] == union.sum() > (own.notna() & window).sum()
    positives = ((own == 1) | (other == 1)) & window
    assert pre["n_train_positives"] + pre["n_valid_positives"] == positives.sum()
    card = (folder / "model_card.md").read_text()
    assert "First stage" in card and "findings of any of revenue, ipr" in card
    assert f"{pre['n_train']:,} items ({pre['n_train_positives']:,} positive)" in card
    run = mlflow.MlflowClient(tracking_uri).search_runs(
        [mlflow.get_experiment_by_name(params.mlflow.experiment).experiment_id]
    )[0]
    assert run.data.params["first_stage.pool"] == "revenue,ipr"
    assert run.data.metrics["first_stage_n_train"] == pre["n_train"]
    assert run.data.metrics["first_stage_n_train_positives"] == pre["n_train_positives"]

    # Findings whose result came on or after test_start (ipr ones included) change nothing.
    before = (folder / "model.txt").read_text()
    late = outcomes["result_date"] >= pd.Timestamp(cut)
    assert late.sum() > 100
    outcomes.loc[late, "offence_found"] = True
    outcomes.loc[late, "risk_area"] = "ipr"
    write_interim(world_root / "data/interim", {"outcomes": outcomes})
    train_area_model("revenue", world_root, params, spec, tracking_uri=tracking_uri)
    assert (folder / "model.txt").read_text() == before


def test_the_train_command_states_the_settings_an_area_overrides(world_root, revenue_spec, params):
    """`riskml train` says which of params.yaml's train settings the area's spec changes (and
    to what) before it trains, and the model card of the registered model says the same: an
    override is reported, never silent."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    spec = revenue_spec.model_copy(update={"train": {"num_leaves": 5, "seed": params.train.seed}})
    doc = params.model_copy(update={"areas": ["revenue"]}).model_dump(mode="json")
    (world_root / "params.yaml").write_text(yaml.safe_dump(doc))
    (world_root / "pipelines").mkdir()
    (world_root / "pipelines/revenue.yaml").write_text(yaml.safe_dump(spec_document(spec)))
    riskml = str(Path(sys.executable).parent / "riskml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{world_root / 'mlflow.db'}"
    said = (
        "pipelines/revenue.yaml overrides params.yaml's train settings: "
        f"training.train.num_leaves {params.train.num_leaves} -> 5"
    )  # the seed equals the global one: not an override
    for stage in ("train", "register"):
        proc = subprocess.run(
            [riskml, stage, "--area", "revenue", "--root", str(world_root)],
            capture_output=True, text=True, timeout=300, env=env,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        if stage == "train":
            assert f"train revenue: {said}\n" in proc.stderr, proc.stderr
    assert f"Settings: {said}." in (world_root / "models/revenue/model_card.md").read_text()


def _tipped(world) -> dict[str, pd.DataFrame]:
    """The world plus tip-offs that follow the hidden risk: offences among the uncontrolled
    items whose ``f_noise`` (a feature unrelated to the risk) is high, each found by a
    physical control made on an intelligence lead; the other controls are profile or random."""
    o = world["outcomes"]
    d, t = world["features"], world["truth"]
    seen = d["declaration_id"].isin(o["declaration_id"]).to_numpy()
    tip = ~seen & (d["f_noise"].to_numpy() > 1.0) & t["offence"].to_numpy(bool)
    tips = pd.DataFrame(
        {
            "declaration_id": d["declaration_id"].to_numpy()[tip],
            "item_no": 1,
            "control_kind": "physical",
            "control_reason": "intelligence",
            "result_date": d["accepted_date"].to_numpy()[tip] + pd.Timedelta(days=30),
            "risk_area": pd.array(["revenue"] * int(tip.sum()), dtype="string"),
            "offence_found": True,
            "additional_duty": t["evaded_duty"].to_numpy()[tip],
        }
    )
    reason = np.where(o["control_kind"] == "random", "random", "profile")
    outcomes = pd.concat([o.assign(control_reason=reason), tips], ignore_index=True)
    return world | {"outcomes": outcomes}


def _noise_lift(model, world, split) -> float:
    """Mean score of the test window's high-``f_noise`` items over the others' (1: no lift;
    both groups have the same true risk)."""
    test = in_window(world["features"], split.test_start, split.test_end)
    score = model.predict(test)
    high = test["f_noise"].to_numpy() > 1.0
    return float(score[high].mean() / score[~high].mean())


def test_reason_weights_undo_the_bias_of_tip_offs(world, revenue_spec, params):
    tipped = _tipped(world)
    labels = _labels(tipped, revenue_spec, params.split.test_start)
    assert (labels["control_reason"] == "intelligence").sum() > 30
    plain = train_area(world["features"], labels, revenue_spec, params.split, params.train)
    cured = params.train.model_copy(update={"reason_weights": {"intelligence": 0.0}})
    model = train_area(world["features"], labels, revenue_spec, params.split, cured)
    # the tips teach the unweighted model that f_noise means risk; weighted down, they do not
    assert _noise_lift(plain, world, params.split) > 1.25  # measured 1.37
    assert _noise_lift(model, world, params.split) < 1.1  # measured 0.88 (no tips: 0.97)
    # the case-control correction keeps the tips' findings at a third of their weight
    odds = params.train.model_copy(update={"reason_odds": {"intelligence": 3.0}})
    corrected = train_area(world["features"], labels, revenue_spec, params.split, odds)
    assert _noise_lift(corrected, world, params.split) < 1.1  # measured 1.02
    truth = in_window(
        world["features"].merge(world["truth"][[*KEY, "offence"]], on=KEY),
        params.split.test_start, params.split.test_end,
    )  # fmt: skip
    ap = {
        name: average_precision(truth["offence"].to_numpy(), m.predict(truth))
        for name, m in (("plain", plain), ("cured", model), ("odds", corrected))
    }
    assert ap["cured"] > ap["plain"] and ap["odds"] > ap["plain"]
    # without recorded reasons the setting changes nothing (today's behaviour)
    bare = labels.drop(columns="control_reason")
    a = train_area(world["features"], bare, revenue_spec, params.split, params.train)
    b = train_area(world["features"], bare, revenue_spec, params.split, cured)
    assert a.booster.model_to_string() == b.booster.model_to_string()


def test_training_weights_multiply_recency_and_reason_and_average_one():
    dates = ["2024-01-01", "2023-12-01", "2024-01-01", "2024-01-01"]
    rows = pd.DataFrame(
        {
            "accepted_date": pd.to_datetime(dates),
            "control_reason": pd.array(["intelligence", "profile", None, "random"], dtype="string"),
            "label": [1.0, 1.0, 0.0, 0.0],
        }
    )
    weights = {"intelligence": 0.25, "random": 2.0}
    train = TrainParams(reason_weights=weights, recency_half_life_months=1.0)
    w = training_weights(rows, train, date(2024, 1, 1))
    recency = recency_weights(rows["accepted_date"], date(2024, 1, 1), 1.0)
    raw = recency * np.array([0.25, 1.0, 1.0, 2.0])
    np.testing.assert_allclose(w, raw / raw.mean())
    assert training_weights(rows, TrainParams(), date(2024, 1, 1)) is None
    only_reason = training_weights(rows, TrainParams(reason_weights=weights), None)
    np.testing.assert_allclose(only_reason, np.array([0.25, 1, 1, 2]) / 1.0625)
    # odds divide the positives of their reason only
    by_odds = training_weights(rows, TrainParams(reason_odds={"intelligence": 4.0}), None)
    np.testing.assert_allclose(by_odds, np.array([0.25, 1, 1, 1]) / 0.8125)
    both = TrainParams(reason_weights={"intelligence": 0.5}, reason_odds={"intelligence": 4.0})
    np.testing.assert_allclose(training_weights(rows, both, None)[:2] * 0.78125, [0.125, 1])
    with pytest.raises(RiskmlError, match="every training row weighs 0"):
        training_weights(rows.iloc[:1], TrainParams(reason_weights={"intelligence": 0}), None)
    with pytest.raises(ValueError, match="unknown control reason"):
        TrainParams(reason_weights={"tip": 0.5})
    with pytest.raises(ValueError, match="reason_odds: values must be > 0"):
        TrainParams(reason_odds={"intelligence": 0})


def test_shipped_specs_correct_tipped_positives_where_chosen():
    """The shipped drugs spec (chosen on development worlds, docs/results.md, issue 15 session
    9): a positive found by a tip-off weighs a third of a profile control's, in both stages;
    negatives and the other rare areas keep equal weights."""
    root = Path(__file__).resolve().parents[1]
    params, specs = load_params(root / "params.yaml"), load_area_specs(root / "pipelines")
    rows = pd.DataFrame(
        {
            "control_reason": pd.array(
                ["intelligence", "profile", "intelligence", None], dtype="string"
            ),
            "label": [1.0, 1.0, 0.0, 0.0],
        }
    )
    drugs = area_train_params(params, specs["drugs"])
    for stage in (drugs, first_stage_train_params(drugs, specs["drugs"])):
        w = training_weights(rows, stage, None)
        np.testing.assert_allclose(w / w[1], [1 / 3, 1, 1, 1])
    for area in ("security", "environment", "health_safety", "revenue", "ipr"):
        # equal weights: security's weight (1 % x 5, as drugs') touches only its sampled
        # never-controlled items (train.unlabelled_weight), of which these rows hold none
        w = training_weights(rows, area_train_params(params, specs[area]), None)
        assert w is None or np.array_equal(w, np.ones(len(rows))), (area, w)
