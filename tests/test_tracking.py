"""riskml.tracking: tracking URI, git and DVC tags, experiment with its artifacts in the repo."""

from __future__ import annotations

import subprocess
from pathlib import Path

import mlflow

from riskml import tracking


def test_default_tracking_uri_is_absolute_sqlite_at_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = tracking.default_tracking_uri(Path("."))
    assert uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"


def test_store_follows_dvc_root_out_of_a_temporary_workspace(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    parent = tmp_path / "repo"
    monkeypatch.setenv("DVC_ROOT", str(parent))
    assert tracking.default_tracking_uri(tmp_path / "tmp-exp") == f"sqlite:///{parent}/mlflow.db"


def test_env_var_overrides_tracking_uri(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking.default_tracking_uri(tmp_path) == "http://mlflow.example:5000"


def test_git_commit(tmp_path):
    assert tracking.git_commit(tmp_path) is None  # not a repository
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "a.txt").write_text("a")
    subprocess.run([*git, "add", "a.txt"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "a"], cwd=tmp_path, check=True)
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert tracking.git_commit(tmp_path) == sha
    assert tracking.run_tags(tmp_path)["git_commit"] == sha


def test_dvc_experiment_name(monkeypatch, tmp_path):
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    assert tracking.dvc_experiment_name() is None
    assert "dvc_exp_name" not in tracking.run_tags(tmp_path)
    monkeypatch.setenv("DVC_EXP_NAME", "azure-cobb")
    assert tracking.dvc_experiment_name() == "azure-cobb"
    tags = tracking.run_tags(tmp_path, area="revenue")
    assert tags["dvc_exp_name"] == "azure-cobb"
    assert tags["area"] == "revenue"


def test_experiment_artifacts_go_under_root_not_cwd(tmp_path, monkeypatch, tracking_uri):
    root, cwd = tmp_path / "repo", tmp_path / "elsewhere"
    root.mkdir()
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    exp_id = tracking.ensure_experiment(root, "riskml", tracking_uri)
    assert tracking.ensure_experiment(root, "riskml", tracking_uri) == exp_id
    exp = mlflow.MlflowClient(tracking_uri).get_experiment(exp_id)
    assert exp.artifact_location == (root.resolve() / "mlartifacts").as_uri()
    with mlflow.start_run(experiment_id=exp_id):
        mlflow.log_text("hello", "note.txt")
    assert list((root / "mlartifacts").rglob("note.txt"))
    assert list(cwd.iterdir()) == []


def test_deleted_experiment_is_restored(tmp_path, tracking_uri):
    exp_id = tracking.ensure_experiment(tmp_path, "riskml", tracking_uri)
    mlflow.MlflowClient(tracking_uri).delete_experiment(exp_id)
    assert tracking.ensure_experiment(tmp_path, "riskml", tracking_uri) == exp_id


def test_an_experiment_never_writes_into_another_experiments_run(
    tmp_path, monkeypatch, tracking_uri
):
    """`dvc exp run --temp` restoring another run's model from the cache logs beside that run."""
    exp_id = tracking.ensure_experiment(tmp_path, "riskml", tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    workspace = client.create_run(exp_id, tags=tracking.run_tags(tmp_path)).info.run_id
    assert tracking.writable_run(client, workspace, tmp_path, "explain-revenue") == workspace
    monkeypatch.setenv("DVC_EXP_NAME", "tmp-exp")
    own = tracking.writable_run(client, workspace, tmp_path, "explain-revenue", area="revenue")
    assert own != workspace
    run = client.get_run(own)
    assert run.data.tags["model_run"] == workspace and run.data.tags["dvc_exp_name"] == "tmp-exp"
    assert tracking.may_write_run(client, own)  # the experiment's own run
    assert not tracking.may_write_run(client, "no-such-run")
