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
    data["train"]["recency_half_life_months"] = -3
    data["split"]["valid_start"] = "2022-01-01"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RiskmlError) as err:
        load_params(path)
    msg = str(err.value)
    assert str(path) in msg and "train.learning_rate" in msg and "train_start < valid_start" in msg
    assert "train.recency_half_life_months" in msg


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


def test_rare_areas_ship_a_first_stage_pooled_over_the_four_of_them():
    specs = load_area_specs(ROOT / "pipelines")
    rare = ["drugs", "environment", "health_safety", "security"]
    for area in rare:
        assert specs[area].first_stage is not None and specs[area].first_stage.pool == rare
    assert specs["revenue"].first_stage is None and specs["ipr"].first_stage is None


def test_first_stage_entries_are_checked_naming_file_and_field(tmp_path):
    from riskml.config import first_stage_train_params

    data = yaml.safe_load((ROOT / "pipelines/drugs.yaml").read_text())
    path = tmp_path / "drugs.yaml"

    def refused(first_stage, pattern, load=load_area_spec):
        path.write_text(yaml.safe_dump(data | {"first_stage": first_stage}))
        with pytest.raises(RiskmlError, match=pattern) as err:
            load(path)
        assert str(path) in str(err.value)

    refused({"pool": ["drugs", "smuggling"]}, r"first_stage\.pool: .*unknown risk area.*smuggling")
    refused({"pool": []}, r"first_stage\.pool: .*at least 1")
    refused({"pool": ["drugs", "drugs"]}, r"first_stage\.pool: .*listed twice")
    refused({"pool": ["security"]}, r"must include the area itself \('drugs'\)")
    refused({"pool": ["drugs"], "train": {"num_leafs": 3}}, r"first_stage\.train: .*num_leafs")
    refused({"pool": ["drugs"], "pol": []}, r"first_stage\.pol")
    # A pool area without a spec in the folder: the folder load names the file and the field.
    refused(
        {"pool": ["drugs", "security"]},
        r"first_stage\.pool names area\(s\) \['security'\] without a spec",
        load=lambda p: load_area_specs(p.parent),
    )
    # Settings out of range surface when applied, under the field's name.
    path.write_text(
        yaml.safe_dump(data | {"first_stage": {"pool": ["drugs"], "train": {"num_leaves": 1}}})
    )
    spec = load_area_spec(path)
    params = load_params(ROOT / "params.yaml")
    from riskml.config import area_train_params

    with pytest.raises(
        RiskmlError, match=r"pipelines/drugs.yaml.*\n  first_stage\.train\.num_leaves"
    ):
        first_stage_train_params(area_train_params(params, spec), spec)
    ok = spec.model_copy(
        update={"first_stage": spec.first_stage.model_copy(update={"train": {"num_leaves": 9}})}
    )
    assert first_stage_train_params(area_train_params(params, ok), ok).num_leaves == 9
    assert first_stage_train_params(area_train_params(params, ok), ok).learning_rate == 0.02
