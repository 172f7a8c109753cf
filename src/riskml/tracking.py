"""MLflow set-up shared by the stages: tracking URI, experiment, and the tags every run carries.

MLflow owns run history and the model registry; DVC owns the pipeline, data and metrics files.
The default store is a SQLite file at the repository root, resolved to an absolute path so that a
stage run from any directory (or from a DVC experiment's temporary workspace) writes to the same
place; ``MLFLOW_TRACKING_URI`` overrides it for a shared server. Artifacts of a local store go to
``<root>/mlartifacts``, never to the current directory.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import mlflow
from mlflow import MlflowClient

#: Set by ``dvc exp run`` in the environment of every stage command (see ``dvc/env.py``).
DVC_EXP_NAME_ENV = "DVC_EXP_NAME"
#: Set by ``dvc exp run`` too: the git commit the experiment is based on.
DVC_EXP_BASELINE_ENV = "DVC_EXP_BASELINE_REV"
#: Set by ``dvc exp run`` to the root of the parent repository (not of a temporary workspace).
DVC_ROOT_ENV = "DVC_ROOT"

ARTIFACTS_DIR = "mlartifacts"


def store_root(root: Path) -> Path:
    """Folder of the local MLflow store: ``DVC_ROOT`` when DVC runs the stage, else ``root``.

    A queued or ``--temp`` DVC experiment runs its stages in a temporary copy of the repository
    that is deleted afterwards; DVC then points ``DVC_ROOT`` at the parent repository, so runs
    and registered models outlive the copy.
    """
    return Path(os.environ.get(DVC_ROOT_ENV) or root).resolve()


def default_tracking_uri(root: Path) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a SQLite store ``mlflow.db`` at the repository root
    (:func:`store_root`), as an absolute path."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return env
    return f"sqlite:///{store_root(root) / 'mlflow.db'}"


def git_commit(root: Path) -> str | None:
    """The commit checked out in ``root``, or None outside a git repository (or without git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha or None


def dvc_experiment_name() -> str | None:
    """Name of the running DVC experiment (``dvc exp run`` sets it), or None outside one."""
    return os.environ.get(DVC_EXP_NAME_ENV) or None


def run_tags(root: Path, **extra: str) -> dict[str, str]:
    """Tags for a run: git commit (also as MLflow's own source tag), DVC experiment, ``extra``."""
    tags: dict[str, str] = {}
    commit = git_commit(root)
    if commit:
        tags["git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit
    exp = dvc_experiment_name()
    if exp:
        tags["dvc_exp_name"] = exp
    baseline = os.environ.get(DVC_EXP_BASELINE_ENV)
    if baseline:
        tags["dvc_exp_baseline_rev"] = baseline
    tags.update({k: str(v) for k, v in extra.items()})
    return tags


def is_local_store(uri: str) -> bool:
    """True for a store on this machine (SQLite, a file path), where we choose the artifact root."""
    scheme = urlparse(uri).scheme
    return scheme in ("", "file", "sqlite") or len(scheme) == 1  # one letter: a Windows drive


def use_store(tracking_uri: str) -> MlflowClient:
    """Point the fluent API (tracking and registry) at ``tracking_uri``; return a client for it."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def ensure_experiment(root: Path, name: str, tracking_uri: str) -> str:
    """Id of experiment ``name``, created if missing, and make it the active one.

    On a local store the experiment's artifacts go to ``mlartifacts`` beside the store
    (:func:`store_root`); on a server the
    server decides (its artifact proxy).
    """
    client = use_store(tracking_uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        location = None
        if is_local_store(tracking_uri):
            location = (store_root(root) / ARTIFACTS_DIR).as_uri()
        exp_id = client.create_experiment(name, artifact_location=location)
    else:
        exp_id = exp.experiment_id
        if exp.lifecycle_stage == "deleted":  # a deleted name cannot be reused: bring it back
            client.restore_experiment(exp_id)
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id
