"""Fairness guard: a protected feature never enters a model, at training or explanation time."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from riskml.config import FairnessParams, Params
from riskml.contract import RiskmlError
from riskml.fairness import CONFIG_ENTRY, check_protected, protected_hits


def test_patterns_match_case_insensitively_and_name_the_entry():
    feats = ["uv_kg_rz", "Importer_Nationality", "imp_hr_revenue"]
    assert protected_hits(feats, ["*nationality*"]) == [("Importer_Nationality", "*nationality*")]
    with pytest.raises(RiskmlError) as err:
        check_protected(feats, ["*nationality*"], where="area 'revenue'")
    message = str(err.value)
    assert "'Importer_Nationality'" in message and "'*nationality*'" in message
    assert CONFIG_ENTRY in message and "area 'revenue'" in message
    check_protected(["uv_kg_rz"], FairnessParams().protected_features)  # nothing protected


def test_default_params_protect_personal_attributes():
    protected = Params.model_validate(
        {"split": {"train_start": "2023-01-01", "valid_start": "2023-06-01",
                   "test_start": "2023-09-01", "test_end": "2024-01-01"}}
    ).fairness.protected_features  # fmt: skip
    assert protected_hits(["declarant_nationality_code", "gender", "log_cif"], protected) == [
        ("declarant_nationality_code", "*nationality*"),
        ("gender", "*gender*"),
    ]


def test_training_refuses_a_protected_feature_before_it_trains(
    world, params, revenue_spec, world_root, tracking_uri
):
    from riskml.labels import build_labels
    from riskml.train_stage import train_and_register

    features = world["features"].copy()
    features["importer_nationality"] = np.arange(len(features)) % 7
    labels = build_labels(
        world["declarations"], world["outcomes"], revenue_spec, known_before=params.split.test_start
    )
    with pytest.raises(RiskmlError, match="importer_nationality.*fairness.protected_features"):
        train_and_register(features, labels, world_root, params, revenue_spec)
    assert not (world_root / "models" / "revenue").exists()
    # excluding the column in the area spec is the documented way out
    spec = revenue_spec.model_copy(update={"exclude_features": ["importer_nationality"]})
    out = train_and_register(features, labels, world_root, params, spec)
    assert (
        "importer_nationality"
        not in lgb.Booster(model_file=str(world_root / "models/revenue/model.txt")).feature_name()
    )
    assert out["version"]


def test_explain_refuses_a_model_that_uses_a_protected_feature(tmp_path, tracking_uri):
    """A registered champion that reads a protected feature (trained elsewhere, say) is refused
    by the explain stage, which loads the champion from the registry."""
    from riskml import registry
    from riskml.area_model import AreaModel
    from riskml.config import AreaSpec
    from riskml.explain import explain_one_area

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"origin_hr": rng.normal(size=300), "ethnicity_code": rng.integers(0, 5, 300)})
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 1},
        lgb.Dataset(X, label=(X["origin_hr"] > 0).astype(int)),
        num_boost_round=5,
    )
    model = AreaModel(area="revenue", classifier_=booster, feature_names_=list(X.columns))
    model.save(tmp_path / "models/revenue")
    registry.register(
        model, root=tmp_path, experiment="riskml", run_params={},
        run_metrics={}, card=lambda reg: "card", tracking_uri=tracking_uri,
    )  # fmt: skip
    params = Params.model_validate(
        {"split": {"train_start": "2023-01-01", "valid_start": "2023-06-01",
                   "test_start": "2023-09-01", "test_end": "2024-01-01"}}
    )  # fmt: skip
    spec = AreaSpec(
        name="revenue", title="Revenue", positive="x", detectable_by=["physical"],
        inspection_rates=[0.05], operating_rate=0.05, capacity=10,
    )  # fmt: skip
    empty = pd.DataFrame()
    with pytest.raises(RiskmlError, match=r"ethnicity_code.*\*ethnic\*.*protected_features"):
        explain_one_area(
            tmp_path, "revenue", spec, params,
            features=empty, catalogue={},
        )  # fmt: skip
