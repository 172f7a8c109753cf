"""riskml.promote: the champion alias moves only when the challenger wins by the margin.

Real MLflow store (``tracking_uri`` fixture), real LightGBM models trained and registered by
``train_area_model`` on the synthetic world of ``conftest.py``; a "weak" model is the same area
without its signal features.
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest

from riskml.catalog import Catalog
from riskml.config import PromoteParams
from riskml.contract import RiskmlError
from riskml.io import read_dataset
from riskml.promote import KEPT, PROMOTED, decide, run_promote
from riskml.train import in_window
from riskml.train_stage import train_area_model


def _aliases(uri: str) -> dict[str, str]:
    model = mlflow.MlflowClient(uri).get_registered_model("riskml-revenue")
    return {a: str(v) for a, v in model.aliases.items()}


def _backtest_output(root, params) -> list:
    """The backtest's output promote reads (``metrics/backtest/summary.json``: its windows), as
    the backtest stage writes it."""
    from riskml.backtest import backtest_windows

    bt = params.backtest
    windows = backtest_windows(params.split, n_windows=bt.n_windows, window_months=bt.window_months)
    path = root / "metrics/backtest/summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"config": {"windows": [w.describe() for w in windows]}}))
    return windows


def _promote(root, params, spec, uri, margin):
    p = params.model_copy(update={"promote": PromoteParams(metric="precision", margin=margin)})
    run_promote(root, p, {"revenue": spec}, tracking_uri=uri)
    return json.loads((root / "metrics/promotion.json").read_text())["revenue"]


def test_decide_needs_the_margin():
    assert decide(0.5, 0.4, margin=0.05)[0] == PROMOTED
    assert decide(0.44, 0.4, margin=0.05)[0] == KEPT
    assert decide(0.4, 0.4, margin=0.0)[0] == KEPT
    assert decide(float("nan"), 0.4, margin=0.0)[0] == KEPT


def test_promotion_moves_champion_only_when_better_by_margin(
    world_root, revenue_spec, params, tracking_uri
):
    with pytest.raises(RiskmlError, match=r"summary.json: not found; run the backtest stage"):
        run_promote(world_root, params, {"revenue": revenue_spec}, tracking_uri=tracking_uri)
    _backtest_output(world_root, params)
    with pytest.raises(RiskmlError, match="train the area first"):
        run_promote(world_root, params, {"revenue": revenue_spec}, tracking_uri=tracking_uri)
    weak = revenue_spec.model_copy(update={"exclude_features": ["f_signal"]})
    train_area_model("revenue", world_root, params, weak, tracking_uri=tracking_uri)
    first = _promote(world_root, params, revenue_spec, tracking_uri, margin=0.0)
    assert first["decision"] == KEPT and first["champion_version_after"] == "1"

    strong = train_area_model(
        "revenue", world_root, params, revenue_spec, tracking_uri=tracking_uri
    )
    assert _aliases(tracking_uri) == {"champion": "1", "challenger": "2"}

    # Better, but not by a margin of 0.9: the champion stays.
    held = _promote(world_root, params, revenue_spec, tracking_uri, margin=0.9)
    assert held["decision"] == KEPT
    assert held["challenger_value"] > held["champion_value"]
    assert _aliases(tracking_uri)["champion"] == "1"
    run = mlflow.MlflowClient(tracking_uri).get_run(strong["run_id"])
    assert run.data.tags["promote.decision"] == KEPT
    assert run.data.metrics["promote.challenger_value"] == pytest.approx(held["challenger_value"])
    assert run.data.metrics["promote.champion_value"] == pytest.approx(held["champion_value"])

    # Without the margin it wins: champion moves to version 2.
    moved = _promote(world_root, params, revenue_spec, tracking_uri, margin=0.0)
    assert moved["decision"] == PROMOTED and moved["champion_version_after"] == "2"
    assert _aliases(tracking_uri) == {"champion": "2", "challenger": "2"}
    run = mlflow.MlflowClient(tracking_uri).get_run(strong["run_id"])
    assert run.data.tags["promote.decision"] == PROMOTED

    # A worse challenger never takes over; the weak model again is the same content: version 1
    # again, not a new version.
    again = train_area_model("revenue", world_root, params, weak, tracking_uri=tracking_uri)
    assert again["version"] == "1" and again["reused_version"]
    worse = _promote(world_root, params, revenue_spec, tracking_uri, margin=0.0)
    assert worse["decision"] == KEPT
    assert worse["challenger_value"] < worse["champion_value"]
    assert worse["population"] == "truth"
    assert _aliases(tracking_uri) == {"champion": "2", "challenger": "1"}


def test_promotion_ranks_by_the_list_key(world_root, revenue_spec, params, tracking_uri):
    """Revenue's list ranks by probability x predicted recovered duty ** exponent: promotion
    measures the ranking by that key, not by the probability."""
    spec = revenue_spec.model_copy(
        update={"rank_by": "expected_recovery", "recovery_exponent": 1.0}
    )
    weak = spec.model_copy(update={"exclude_features": ["f_signal"]})
    train_area_model("revenue", world_root, params, weak, tracking_uri=tracking_uri)
    train_area_model("revenue", world_root, params, spec, tracking_uri=tracking_uri)
    window = _backtest_output(world_root, params)[-1]
    out = _promote(world_root, params, spec, tracking_uri, margin=0.0)
    assert "recovered duty ** 1" in out["ranked_by"]
    # the window is the backtest output's latest one (promote reads the file, not its code)
    assert out["window"] == [str(window.start), str(window.end)]
    from riskml import registry
    from riskml.promote import list_scores, window_metric

    model = registry.load(world_root, "revenue", version="2", tracking_uri=tracking_uri)
    tables = {
        "features": read_dataset(world_root / "data/features"),
        "declarations": read_dataset(Catalog(world_root).declarations),
        "truth": read_dataset(Catalog(world_root).truth()),
    }
    from riskml.labels import build_labels

    tables["labels"] = build_labels(
        tables["declarations"], read_dataset(Catalog(world_root).outcomes), spec
    )
    scores = list_scores(model, tables, spec, window)
    rows = in_window(tables["features"], window.start, window.end)
    np.testing.assert_allclose(
        np.sort(scores["score"].to_numpy()),
        np.sort(model.rank_key(rows)["expected_recovery"].to_numpy()),
    )
    assert window_metric(scores, spec, "precision")[0] == pytest.approx(out["challenger_value"])


def test_a_new_list_policy_on_the_same_training_is_promoted_without_a_contest(
    world_root, revenue_spec, params, tracking_uri
):
    """An exponent edit refits nothing: the register stage binds the new key to the trained
    estimator as a new version, and promote, seeing the champion's own estimator, promotes it
    even with a margin no model could beat (a policy change is not a contest); the old key
    again gives back the old version, promoted the same way."""
    from riskml.train_stage import run_register

    spec = revenue_spec.model_copy(update={"rank_by": "expected_recovery"})
    first = train_area_model("revenue", world_root, params, spec, tracking_uri=tracking_uri)
    _backtest_output(world_root, params)
    kept = _promote(world_root, params, spec, tracking_uri, margin=0.0)
    assert kept["champion_version_after"] == first["version"]  # the first version: champion
    estimator = (world_root / "models/estimators/revenue/model.txt").read_text()
    edited = spec.model_copy(update={"recovery_exponent": 0.5})
    second = run_register("revenue", world_root, params, edited, tracking_uri=tracking_uri)
    assert second["version"] != first["version"]
    assert second["estimator_hash"] == first["estimator_hash"]
    assert (world_root / "models/revenue/model.txt").read_text() == estimator
    out = _promote(world_root, params, edited, tracking_uri, margin=1.0)
    assert out["decision"] == PROMOTED and out["same_estimator"], out["reason"]
    assert out["champion_version_after"] == second["version"]
    assert "a policy change" in out["reason"] and "^0.5" in out["reason"]
    back = run_register("revenue", world_root, params, spec, tracking_uri=tracking_uri)
    assert back["version"] == first["version"] and back["reused_version"]
    assert _promote(world_root, params, spec, tracking_uri, margin=1.0)["decision"] == PROMOTED
    assert _aliases(tracking_uri)["champion"] == first["version"]
