"""riskml.area_model and riskml.registry: one object per area, saved and registered whole, once
per content, loadable by version or alias, from a copied project too.

Real LightGBM fits on the synthetic world of ``conftest.py``, a real SQLite MLflow store.
"""

from __future__ import annotations

import json
import math
import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest

from riskml import registry, tracking
from riskml.area_model import AreaModel
from riskml.contract import RiskmlError
from riskml.io import read_dataset
from riskml.labels import build_labels
from riskml.train import in_window
from riskml.train_stage import train_area_model


@pytest.fixture
def expected_spec(revenue_spec):
    return revenue_spec.model_copy(
        update={"rank_by": "expected_recovery", "recovery_exponent": 0.5}
    )


def _fit(world, spec, params):
    labels = build_labels(
        world["declarations"], world["outcomes"], spec, known_before=params.split.test_start
    )
    return AreaModel.for_spec(spec).fit(
        world["features"], labels, spec, params.split, params.train, recovery_ratio=0.2
    )


def test_fit_predict_rank_key_contributions_and_round_trip(world, expected_spec, params, tmp_path):
    model = _fit(world, expected_spec, params)
    test = in_window(world["features"], params.split.test_start, params.split.test_end)
    proba = model.predict_proba(test)
    assert proba.shape == (len(test),) and ((proba > 0) & (proba < 1)).all()
    keys = model.rank_key(test)
    assert model.recovery_ is not None  # revenue-like: the recovered-duty regression is inside
    expected = proba * model.recovery_.predict(test)
    np.testing.assert_allclose(keys["expected_recovery"], expected)
    np.testing.assert_allclose(keys["rank_key"], proba**0.5 * expected**0.5)
    contrib = model.contributions(test.head(50))
    raw = model.classifier_.predict(test.head(50)[model.feature_names_], raw_score=True)
    np.testing.assert_allclose(contrib.sum(axis=1), raw, atol=1e-6)

    model.set_threshold(test, 40)
    assert (keys["rank_key"] >= model.threshold_).sum() == 40
    assert model.calibration_["method"] == "identity" and len(model.calibration_["bins"]) == 10
    assert len(model.fingerprint_) == 64

    model.save(tmp_path / "m")
    back = AreaModel.load(tmp_path / "m")
    assert back.content_hash() == model.content_hash()
    np.testing.assert_array_equal(back.predict_proba(test), proba)
    pd.testing.assert_frame_equal(back.rank_key(test), keys)
    assert back.threshold_ == model.threshold_ and back.recovery_ratio_ == 0.2
    assert back.facts_["n_train"] == model.facts_["n_train"]


def test_a_different_setting_is_a_different_content(world, revenue_spec, params):
    a = _fit(world, revenue_spec, params)
    b = _fit(
        world,
        revenue_spec,
        params.model_copy(update={"train": params.train.model_copy(update={"num_leaves": 7})}),
    )
    assert a.content_hash() == _fit(world, revenue_spec, params).content_hash()  # deterministic
    assert a.content_hash() != b.content_hash()
    assert a.fingerprint_ == b.fingerprint_  # the same training rows


def test_load_names_the_missing_file(tmp_path):
    with pytest.raises(RiskmlError, match="model.txt: not found"):
        AreaModel.load(tmp_path / "revenue")


def test_registration_is_idempotent_and_the_alias_gives_the_whole_model(
    world_root, expected_spec, params, tracking_uri
):
    first = train_area_model(
        "revenue", world_root, params, expected_spec, tracking_uri=tracking_uri
    )
    again = train_area_model(
        "revenue", world_root, params, expected_spec, tracking_uri=tracking_uri
    )
    assert first["version"] == again["version"] == "1" and again["reused_version"]
    client = mlflow.MlflowClient(tracking_uri)
    assert len(client.search_model_versions("name = 'riskml-revenue'")) == 1
    assert len(client.search_runs([client.get_experiment_by_name("riskml").experiment_id])) == 1
    mv = client.get_model_version("riskml-revenue", "1")
    assert mv.description.startswith("# Model card: Revenue")
    assert mv.tags["content_hash"] == AreaModel.load(world_root / "models/revenue").content_hash()
    assert mv.tags["rank_by"] == "expected_recovery"

    # models:/riskml-revenue@champion is the whole area model, through MLflow's own loader
    pyfunc = mlflow.pyfunc.load_model("models:/riskml-revenue@champion")
    whole = pyfunc.unwrap_python_model().model
    assert isinstance(whole, AreaModel) and whole.recovery_ is not None
    feats = in_window(
        world_root_features(world_root), params.split.test_start, params.split.test_end
    ).head(20)
    out = pyfunc.predict(feats[whole.feature_names_])
    assert list(out.columns) == ["probability", "expected_recovery", "rank_key"]
    local = AreaModel.load(world_root / "models/revenue")
    np.testing.assert_allclose(out["rank_key"], local.rank_key(feats)["rank_key"])
    # ... and through riskml's loader, by alias or version, with its registration
    loaded = registry.load(world_root, "revenue", alias="challenger", tracking_uri=tracking_uri)
    assert loaded.content_hash() == local.content_hash()
    assert str(loaded.registration) == "riskml-revenue v1 (challenger, champion)"
    reg = json.loads((world_root / "models/revenue/registration.json").read_text())
    assert reg["version"] == "1" and reg["content_hash"] == local.content_hash()

    changed = params.model_copy(update={"train": params.train.model_copy(update={"num_leaves": 7})})
    other = train_area_model(
        "revenue", world_root, changed, expected_spec, tracking_uri=tracking_uri
    )
    assert other["version"] == "2" and not other["reused_version"]
    back = train_area_model("revenue", world_root, params, expected_spec, tracking_uri=tracking_uri)
    assert back["version"] == "1" and back["reused_version"]  # same content, same version
    assert registry.aliases(client, "riskml-revenue") == {"champion": "1", "challenger": "1"}


def world_root_features(root):
    return read_dataset(root / "data/features")


def test_a_copied_project_reads_and_writes_its_own_store(
    tmp_path, world_root, revenue_spec, params, monkeypatch
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    train_area_model("revenue", world_root, params, revenue_spec)
    assert (world_root / "mlartifacts").is_dir()
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(world_root, copy)
    shutil.rmtree(world_root / "mlartifacts")  # the original's models are gone
    model = registry.load(copy, "revenue", alias="champion")
    assert model.content_hash() == AreaModel.load(copy / "models/revenue").content_hash()
    client = tracking.open_store(copy)
    exp = client.get_experiment_by_name("riskml")
    assert exp.artifact_location == (copy.resolve() / "mlartifacts").as_uri()
    changed = params.model_copy(update={"train": params.train.model_copy(update={"num_leaves": 7})})
    train_area_model("revenue", copy, changed, revenue_spec)
    assert not (world_root / "mlartifacts").exists()  # nothing written into the original
    assert registry.load(copy, "revenue", version="2").registration.version == "2"
    assert math.isfinite(model.facts_["valid_average_precision"])
