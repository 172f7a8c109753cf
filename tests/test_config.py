"""Typed configuration: the shipped params and specs load; bad entries give clear errors."""

import re
from pathlib import Path

import pytest
import yaml

from riskml.config import area_train_params, load_area_spec, load_area_specs, load_params
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


def test_max_rows_per_tree_is_a_row_count_or_null(tmp_path):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    # shipped off: it lowered security's detection at 10M items (docs/performance.md)
    assert data["train"]["max_rows_per_tree"] is None
    for bad in (10, "many"):
        data["train"]["max_rows_per_tree"] = bad
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(RiskmlError, match="train.max_rows_per_tree"):
            load_params(path)
    data["train"]["max_rows_per_tree"] = None
    path.write_text(yaml.safe_dump(data))
    params = load_params(path)
    assert params.train.max_rows_per_tree is None
    # an area may set its own (pipelines/<area>.yaml training.train)
    spec = yaml.safe_load((ROOT / "pipelines/security.yaml").read_text())
    spec["training"]["train"]["max_rows_per_tree"] = 20_000
    (tmp_path / "security.yaml").write_text(yaml.safe_dump(spec))
    own = area_train_params(params, load_area_spec(tmp_path / "security.yaml"))
    assert own.max_rows_per_tree == 20_000


def test_unknown_area_and_control_kind_are_refused(tmp_path):
    data = yaml.safe_load((ROOT / "pipelines/revenue.yaml").read_text())
    data["name"] = "smuggling"
    data["labels"]["detectable_by"] = ["telepathy"]
    path = tmp_path / "smuggling.yaml"
    path.write_text(yaml.safe_dump(data))
    pattern = "name: .*unknown risk area 'smuggling'.*\n  labels.detectable_by: .*telepathy"
    with pytest.raises(RiskmlError, match=pattern):
        load_area_spec(path)


def test_negative_kinds_are_checked_against_the_area_s_detecting_kinds(tmp_path):
    data = yaml.safe_load((ROOT / "pipelines/environment.yaml").read_text())
    path = tmp_path / "environment.yaml"
    shipped = load_area_spec(ROOT / "pipelines/environment.yaml")
    # unset: out of the dump, so the features' setup digest of every shipped spec is unchanged
    assert shipped.negative_kinds is None and "negative_kinds" not in shipped.model_dump()
    data["training"]["negative_kinds"] = ["physical", "random"]
    path.write_text(yaml.safe_dump(data))
    assert load_area_spec(path).negative_kinds == ["physical", "random"]
    for kinds, why in [
        (["physical", "telepathy"], r"\['telepathy'\] not in labels.detectable_by"),
        (["scanner"], r"\['scanner'\] not in labels.detectable_by"),  # cannot detect it
        ([], "no control kind"),
        (["physical", "physical"], "listed twice"),
    ]:
        data["training"]["negative_kinds"] = kinds
        path.write_text(yaml.safe_dump(data))
        where = f"{re.escape(str(path))}: invalid configuration"
        pattern = f"{where}.*\n  training.negative_kinds: .*{why}"
        with pytest.raises(RiskmlError, match=pattern):
            load_area_spec(path)
    data["labels"]["negative_kinds"] = ["physical"]  # a training setting, not a label one
    del data["training"]["negative_kinds"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RiskmlError, match="labels.negative_kinds: belongs in section training"):
        load_area_spec(path)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(RiskmlError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(RiskmlError, match="not valid YAML"):
        load_params(bad)


def test_area_train_overrides_apply_and_are_checked(tmp_path):
    params = load_params(ROOT / "params.yaml")
    data = yaml.safe_load((ROOT / "pipelines/security.yaml").read_text())
    data["training"]["train"] = {"num_leaves": 5}
    path = tmp_path / "security.yaml"
    path.write_text(yaml.safe_dump(data))
    spec = load_area_spec(path)
    assert area_train_params(params, spec).num_leaves == 5
    assert area_train_params(params, spec).seed == params.train.seed
    data["training"]["train"] = {"num_leafs": 5}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RiskmlError, match="unknown train setting.*num_leafs"):
        load_area_spec(path)
    data["training"]["train"] = {"num_leaves": 1}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RiskmlError, match="training.train.num_leaves"):
        area_train_params(params, load_area_spec(path))


def test_rare_areas_ship_a_first_stage_pooled_over_the_four_of_them():
    specs = load_area_specs(ROOT / "pipelines")
    rare = ["drugs", "environment", "health_safety", "security"]
    for area in rare:
        assert specs[area].first_stage is not None and specs[area].first_stage.pool == rare
    assert specs["revenue"].first_stage is None and specs["ipr"].first_stage is None


def test_ipr_ships_a_floor_under_its_refit_trees():
    """IPR's refit grows at least 200 trees (chosen on development worlds 42-45, docs/results.md,
    issue 15, session 19); no other area has a floor."""
    params, specs = load_params(ROOT / "params.yaml"), load_area_specs(ROOT / "pipelines")
    floors = {a: area_train_params(params, s).min_refit_trees for a, s in specs.items()}
    assert floors == {a: (200 if a == "ipr" else 0) for a in specs}


def test_first_stage_entries_are_checked_naming_file_and_field(tmp_path):
    from riskml.config import first_stage_train_params

    data = yaml.safe_load((ROOT / "pipelines/drugs.yaml").read_text())
    path = tmp_path / "drugs.yaml"

    def with_first_stage(first_stage):
        return data | {"training": data["training"] | {"first_stage": first_stage}}

    def refused(first_stage, pattern, load=load_area_spec):
        path.write_text(yaml.safe_dump(with_first_stage(first_stage)))
        with pytest.raises(RiskmlError, match=pattern) as err:
            load(path)
        assert str(path) in str(err.value)

    pool = r"training\.first_stage\.pool"
    refused({"pool": ["drugs", "smuggling"]}, pool + r": .*unknown risk area.*smuggling")
    refused({"pool": []}, pool + r": .*at least 1")
    refused({"pool": ["drugs", "drugs"]}, pool + r": .*listed twice")
    refused({"pool": ["security"]}, r"must include the area itself \('drugs'\)")
    refused(
        {"pool": ["drugs"], "train": {"num_leafs": 3}},
        r"training\.first_stage\.train: .*num_leafs",
    )
    refused({"pool": ["drugs"], "pol": []}, r"training\.first_stage\.pol")
    # A pool area without a spec in the folder: the folder load names the file and the field.
    refused(
        {"pool": ["drugs", "security"]},
        r"training\.first_stage\.pool names area\(s\) \['security'\] without a spec",
        load=lambda p: load_area_specs(p.parent),
    )
    # Settings out of range surface when applied, under the field's name.
    bad = with_first_stage({"pool": ["drugs"], "train": {"num_leaves": 1}})
    path.write_text(yaml.safe_dump(bad))
    spec = load_area_spec(path)
    params = load_params(ROOT / "params.yaml")
    with pytest.raises(
        RiskmlError, match=r"pipelines/drugs.yaml.*\n  training\.first_stage\.train\.num_leaves"
    ):
        first_stage_train_params(area_train_params(params, spec), spec)
    ok = spec.model_copy(
        update={"first_stage": spec.first_stage.model_copy(update={"train": {"num_leaves": 9}})}
    )
    assert first_stage_train_params(area_train_params(params, ok), ok).num_leaves == 9
    assert first_stage_train_params(area_train_params(params, ok), ok).learning_rate == 0.02


def test_spec_entries_out_of_their_section_are_refused_naming_the_section(tmp_path):
    data = yaml.safe_load((ROOT / "pipelines/revenue.yaml").read_text())
    path = tmp_path / "revenue.yaml"
    moved = data | {"recovery_exponent": 0.5, "hs_scope": ["22"], "colour": "red"}
    moved["evaluation"] = data["evaluation"] | {"capacity": 10}
    path.write_text(yaml.safe_dump(moved))
    with pytest.raises(RiskmlError) as err:
        load_area_spec(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "recovery_exponent: belongs in section policy: (as policy.recovery_exponent)" in msg
    assert "evaluation.capacity: belongs in section policy:" in msg
    assert "hs_scope: no longer a setting" in msg
    assert "colour: unknown entry" in msg
    data["policy"]["recovery_exponent"] = 2.0
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RiskmlError, match=r"\n  policy\.recovery_exponent: .*less than or equal"):
        load_area_spec(path)


def test_spec_document_round_trips_and_keeps_the_flat_attributes(tmp_path):
    from riskml.config import SPEC_SECTIONS, spec_document

    for area, spec in load_area_specs(ROOT / "pipelines").items():
        doc = spec_document(spec)
        assert set(doc) == {"name", "title", *SPEC_SECTIONS}
        path = tmp_path / f"{area}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        assert load_area_spec(path) == spec
        assert doc["policy"]["recovery_exponent"] == spec.recovery_exponent


def _dvc_spec_params() -> dict[str, dict[str, list[str]]]:
    """dvc.yaml's params on pipelines/<area>.yaml, per stage (foreach stages expanded)."""
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    out: dict[str, dict[str, list[str]]] = {}
    for name, stage in dvc["stages"].items():
        items = RISK_AREAS if "foreach" in stage else [None]
        body = stage.get("do", stage)
        for item in items:
            stage_name = f"{name}@{item}" if item else name
            for entry in body.get("params", []):
                if isinstance(entry, dict):
                    for file, keys in entry.items():
                        file = file.replace("${item}", item or "")
                        out.setdefault(stage_name, {}).setdefault(file, []).extend(keys)
    return out


def test_dvc_yaml_names_only_spec_keys_that_every_spec_file_holds():
    from riskml.config import SPEC_SECTIONS, SPEC_TOP_LEVEL

    listed = _dvc_spec_params()
    for stage, files in listed.items():
        if stage.startswith("register@"):  # one area's model: its own spec only
            assert set(files) == {f"pipelines/{stage.split('@')[1]}.yaml"}, stage
        else:
            assert set(files) == {f"pipelines/{a}.yaml" for a in RISK_AREAS}, stage
        for file, keys in files.items():
            doc = yaml.safe_load((ROOT / file).read_text())
            for key in keys:
                head, _, field = key.partition(".")
                assert head in SPEC_SECTIONS or head in SPEC_TOP_LEVEL, (stage, file, key)
                # DVC stops on a listed key that the file lacks: every file spells every key.
                assert head in doc and (not field or field in doc[head]), (stage, file, key)
    # No stage depends on the whole folder any more (an edit would rerun everything).
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    for name, stage in dvc["stages"].items():
        assert "pipelines" not in stage.get("do", stage).get("deps", []), name


def test_recovery_exponent_and_operating_rate_reach_only_the_stages_that_read_them():
    listed = _dvc_spec_params()

    def readers(key: str) -> set[str]:
        section = key.split(".")[0]
        return {
            stage
            for stage, files in listed.items()
            if any(k in (key, section) for k in files.get("pipelines/revenue.yaml", []))
        }

    exponent = readers("policy.recovery_exponent")
    # no training reads the key: revenue's register stage binds it to the trained estimator,
    # the backtest report measures the stored windows by it; no other area's model, nor the
    # features; explain reads select's picks, not the exponent
    assert exponent == {"register@revenue", "evaluate", "backtest_report", "promote", "select"}
    assert not any(s.startswith(("features", "source", "train@", "backtest@")) for s in exponent)
    assert readers("evaluation.operating_rate") == exponent - {"select"} | {"headline"}
    assert readers("training.train") == {"train@revenue", "backtest@revenue"}
    # which clean results train as negatives: training only, never the features or a measurement
    assert readers("training.negative_kinds") == {"train@revenue", "backtest@revenue"}
    assert "features" in readers("features.legacy_rules")


def test_train_overrides_name_each_changed_global_setting():
    from riskml.config import describe_overrides, train_overrides

    params = load_params(ROOT / "params.yaml")
    specs = load_area_specs(ROOT / "pipelines")
    plain = specs["revenue"].model_copy(update={"train": {}})
    assert train_overrides(params, plain) == {}
    assert "overrides no train setting" in describe_overrides(plain, {})
    assert train_overrides(params, specs["revenue"]) == {
        "training.train.learning_rate": (params.train.learning_rate, 0.02),
        "training.train.early_stopping_rounds": (params.train.early_stopping_rounds, 200),
    }
    drugs = specs["drugs"]
    first = drugs.first_stage.model_copy(
        update={"train": {"num_leaves": 8, "seed": params.train.seed}}
    )
    drugs = drugs.model_copy(update={"train": drugs.train | {"seed": params.train.seed}})
    drugs = drugs.model_copy(update={"first_stage": first})
    found = train_overrides(params, drugs)
    assert found["training.train.num_leaves"] == (params.train.num_leaves, 4)
    assert found["training.first_stage.train.num_leaves"] == (4, 8)
    # Equal to the global (seed) or to the area's value: not an override.
    assert not any(k.endswith(".seed") for k in found)
    line = describe_overrides(drugs, found)
    assert line.startswith("pipelines/drugs.yaml overrides params.yaml's train settings: ")
    assert "training.train.learning_rate 0.05 -> 0.02" in line
