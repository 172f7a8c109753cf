"""Typed configuration: the shipped params and specs load; bad entries give clear errors."""

from pathlib import Path

import pytest
import yaml

from riskml.config import load_area_spec, load_area_specs, load_params
from riskml.contract import RISK_AREAS, RiskmlError

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_params_and_specs_load():
    params = load_params(ROOT / "params.yaml")
    specs = load_area_specs(ROOT / "pipelines")
    assert list(specs) == list(RISK_AREAS)
    assert params.areas == list(RISK_AREAS)
    for spec in specs.values():
        assert spec.legacy_rules, f"{spec.name} has no legacy rule (the baseline needs one)"
        assert spec.operating_rate in spec.inspection_rates


def test_bad_param_names_the_entry(tmp_path):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["train"]["learning_rate"] = -1
    data["split"]["valid_start"] = "2022-01-01"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RiskmlError) as err:
        load_params(path)
    msg = str(err.value)
    assert str(path) in msg and "train.learning_rate" in msg and "train_start < valid_start" in msg


def test_unknown_area_and_control_kind_are_refused(tmp_path):
    data = yaml.safe_load((ROOT / "pipelines/revenue.yaml").read_text())
    data["name"] = "smuggling"
    data["detectable_by"] = ["telepathy"]
    path = tmp_path / "smuggling.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RiskmlError, match="unknown risk area 'smuggling'.*\n.*telepathy"):
        load_area_spec(path)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(RiskmlError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(RiskmlError, match="not valid YAML"):
        load_params(bad)


def test_area_train_overrides_apply_and_are_checked(tmp_path):
    from riskml.config import area_train_params

    params = load_params(ROOT / "params.yaml")
    data = yaml.safe_load((ROOT / "pipelines/security.yaml").read_text())
    data["train"] = {"num_leaves": 5}
    path = tmp_path / "security.yaml"
    path.write_text(yaml.safe_dump(data))
    spec = load_area_spec(path)
    assert area_train_params(params, spec).num_leaves == 5
    assert area_train_params(params, spec).seed == params.train.seed
    data["train"] = {"num_leafs": 5}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RiskmlError, match="unknown train setting.*num_leafs"):
        load_area_spec(path)
    data["train"] = {"num_leaves": 1}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RiskmlError, match="num_leaves"):
        area_train_params(params, load_area_spec(path))
