"""End to end: the real DVC pipeline in a temporary git repository, with a real MLflow store.

Runs `dvc repro` on a small simulated world (two areas), then checks what a data scientist relies
on: outputs exist, a second `dvc repro` reruns nothing, `dvc exp run -S` and `dvc exp show` work,
runs and registered models are in MLflow, and candidate lists carry reasons.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from project_files import copy_project

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
AREAS = ["revenue", "ipr"]

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    dest = tmp_path_factory.mktemp("riskml-project")
    copy_project(dest)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["areas"] = AREAS
    params["simulate"]["n_items"] = 60_000
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "riskml test"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "test@riskml.invalid"
    _run(["git", "init", "-q", "-b", "main"], dest, env)
    _run(["git", "add", "-A"], dest, env)
    _run(["git", "commit", "-qm", "project"], dest, env)
    _run(["dvc", "repro"], dest, env)
    return dest, env


def test_repro_leaves_metrics_plots_candidates_and_models(project):
    dest, _ = project
    summary = json.loads((dest / "metrics/summary.json").read_text())
    for area in AREAS:
        assert (dest / "models" / area / "model.txt").exists()
        assert area in summary
        cands = pd.read_csv(dest / "data/candidates" / f"{area}.csv", encoding="utf-8-sig")
        assert len(cands) > 0
        model_picks = cands[cands["selection_kind"] == "model"]
        assert model_picks["reasons"].fillna("").str.len().gt(0).all()
        assert (dest / "data/explanations" / f"{area}.parquet").exists()
    assert (dest / "metrics/validation.json").exists()
    assert any((dest / "plots").rglob("*.csv"))


def test_second_repro_runs_nothing(project):
    dest, env = project
    out = _run(["dvc", "repro"], dest, env).stdout
    assert "Data and pipelines are up to date" in out
    status = _run(["dvc", "status"], dest, env).stdout
    assert "up to date" in status


def _status_after_editing(dest: Path, env: dict[str, str], area: str, edit) -> dict:
    """``dvc status --json`` after ``edit(spec_document)`` of pipelines/<area>.yaml (restored)."""
    path = dest / "pipelines" / f"{area}.yaml"
    original = path.read_text()
    doc = yaml.safe_load(original)
    edit(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    try:
        return json.loads(_run(["dvc", "status", "--json"], dest, env).stdout)
    finally:
        path.write_text(original)


def test_a_spec_edit_reruns_only_the_stages_that_read_it(project):
    dest, env = project

    def exponent(doc):
        doc["policy"]["recovery_exponent"] = 0.5

    status = _status_after_editing(dest, env, "revenue", exponent)
    assert set(status) == {"evaluate", "backtest", "promote", "explain", "select"}
    for stage in status.values():
        assert stage == [
            {"changed deps": {"pipelines/revenue.yaml": {"policy.recovery_exponent": "modified"}}}
        ]

    def leaves(doc):
        doc["training"]["train"] = {"num_leaves": 7}

    assert set(_status_after_editing(dest, env, "ipr", leaves)) == {"train@ipr", "backtest"}

    def capacity(doc):
        doc["policy"]["capacity"] = 77

    assert set(_status_after_editing(dest, env, "ipr", capacity)) == {"explain", "select"}

    def rules(doc):
        doc["features"]["legacy_rules"][0]["weight"] = 9.0

    assert {"source", "features", "evaluate", "backtest", "promote"} == set(
        _status_after_editing(dest, env, "ipr", rules)
    )
    assert "up to date" in _run(["dvc", "status"], dest, env).stdout


def test_mlflow_has_runs_and_registered_models(project):
    from mlflow import MlflowClient

    dest, _ = project
    uri = f"sqlite:///{dest / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for area in AREAS:
        mv = client.get_model_version_by_alias(f"riskml-{area}", "champion")
        run = client.get_run(mv.run_id)
        assert run.data.tags.get("area") == area or area in run.info.run_name
        assert run.data.metrics, f"no metrics logged for {area}"


def test_exp_run_with_a_changed_param_and_exp_show(project):
    dest, env = project
    _run(["dvc", "exp", "run", "-S", "train.num_leaves=15", "-n", "leaves15"], dest, env)
    shown = json.loads(_run(["dvc", "exp", "show", "--json"], dest, env).stdout)
    text = json.dumps(shown)
    assert "leaves15" in text
    assert '"num_leaves": 15' in text
