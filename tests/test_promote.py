"""riskml.promote: the champion alias moves only when the challenger wins by the margin.

Real MLflow store (``tracking_uri`` fixture), real LightGBM models trained by ``run_train`` on the
synthetic world of ``conftest.py``; a "weak" model is the same area without its signal features.
"""

from __future__ import annotations

import json

import mlflow
import pytest

from riskml.config import PromoteParams
from riskml.contract import RiskmlError
from riskml.promote import KEPT, PROMOTED, decide, run_promote
from riskml.train import run_train


def _aliases(uri: str) -> dict[str, str]:
    model = mlflow.MlflowClient(uri).get_registered_model("riskml-revenue")
    return {a: str(v) for a, v in model.aliases.items()}


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
    with pytest.raises(RiskmlError, match="train the area first"):
        run_promote(world_root, params, {"revenue": revenue_spec}, tracking_uri=tracking_uri)
    weak = revenue_spec.model_copy(update={"exclude_features": ["f_signal"]})
    run_train("revenue", world_root, params, weak, tracking_uri=tracking_uri)
    first = _promote(world_root, params, revenue_spec, tracking_uri, margin=0.0)
    assert first["decision"] == KEPT and first["champion_version_after"] == "1"

    strong = run_train("revenue", world_root, params, revenue_spec, tracking_uri=tracking_uri)
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

    # A worse challenger never takes over.
    run_train("revenue", world_root, params, weak, tracking_uri=tracking_uri)
    worse = _promote(world_root, params, revenue_spec, tracking_uri, margin=0.0)
    assert worse["decision"] == KEPT
    assert worse["challenger_value"] < worse["champion_value"]
    assert worse["population"] == "truth"
    assert _aliases(tracking_uri) == {"champion": "2", "challenger": "3"}
