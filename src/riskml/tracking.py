"""MLflow set-up shared by the stages: tracking URI, experiment, and the tags every run carries.

MLflow owns run history and the model registry; DVC owns the pipeline, data and metrics files.
The default store is a SQLite file at the repository root, resolved to an absolute path so that a
stage run from any directory (or from a DVC experiment's temporary workspace) writes to the same
place; ``MLFLOW_TRACKING_URI`` overrides it for a shared server. Artifacts of a local store go to
``<root>/mlartifacts``, never to the current directory.

Relocatable: MLflow 3 stores absolute artifact locations in ``mlflow.db`` (experiments, runs,
logged models, model versions). :func:`open_store` notices when the project's own store was
made in another folder (a copied or moved project) and rewrites those locations to this
folder's ``mlartifacts`` before anything reads or writes, so a copy scores with its own models
and never touches the original's.
"""

from __future__ import annotations

import os
import sqlite3
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
#: Project-default URIs computed by :func:`default_tracking_uri` in this process.
_DEFAULT_URIS: set[str] = set()


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
    # mlflow.set_tracking_uri also sets MLFLOW_TRACKING_URI in this process: a project default
    # set that way is not a user's choice and must not leak into another project's root
    if env and env not in _DEFAULT_URIS:
        return env
    uri = f"sqlite:///{store_root(root) / 'mlflow.db'}"
    _DEFAULT_URIS.add(uri)
    return uri


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


def open_store(root: Path, tracking_uri: str | None = None) -> MlflowClient:
    """A client of ``tracking_uri`` (default :func:`default_tracking_uri`), the fluent API
    pointed at it; the project's own SQLite store is relocated first (:func:`relocate`)."""
    uri = tracking_uri or default_tracking_uri(root)
    own = f"sqlite:///{store_root(root) / 'mlflow.db'}"
    if uri == own and (store_root(root) / "mlflow.db").exists():
        relocate(store_root(root))
    return use_store(uri)


#: Columns of MLflow 3's SQLite schema that hold artifact locations.
LOCATION_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
    ("model_versions", "source"),
)


def _old_root(db: sqlite3.Connection) -> str | None:
    """The folder the store's artifacts were written under: the parent of ``mlartifacts`` in
    the artifact location of an experiment (set by :func:`ensure_experiment`)."""
    rows = db.execute("SELECT artifact_location FROM experiments").fetchall()
    for (location,) in rows:
        path = urlparse(location).path if location.startswith("file:") else location
        marker = f"/{ARTIFACTS_DIR}"
        if path.endswith(marker):
            return path[: -len(marker)]
    return None


def relocate(root: Path) -> str | None:
    """Rewrite the artifact locations of the SQLite store ``root/mlflow.db`` from the folder it
    was made in to ``root`` (one transaction); return the old folder, or None when nothing
    moved. Locations outside the old folder (e.g. a server's) are left alone."""
    root = Path(root).resolve()
    db = sqlite3.connect(root / "mlflow.db")
    try:
        old = _old_root(db)
        if old is None or Path(old) == root:
            return None
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        new = str(root)
        with db:
            for table, column in LOCATION_COLUMNS:
                if table not in tables:
                    continue
                for prefix_old, prefix_new in (
                    (f"file://{old}/", f"file://{new}/"),
                    (f"{old}/", f"{new}/"),
                ):
                    db.execute(
                        f"UPDATE {table} SET {column} = ? || substr({column}, ?) "  # noqa: S608
                        f"WHERE substr({column}, 1, ?) = ?",
                        (prefix_new, len(prefix_old) + 1, len(prefix_old), prefix_old),
                    )
        return old
    finally:
        db.close()


def may_write_run(client: MlflowClient, run_id: str) -> bool:
    """True when this process may add to run ``run_id``: the run was made by the same DVC
    experiment (or, both outside one, the workspace). A ``dvc exp run --temp`` or a queued
    experiment that restored another run's model from the cache logs to a run of its own."""
    try:
        run = client.get_run(run_id)
    except Exception:  # noqa: BLE001 - a missing run or a store error: do not write
        return False
    return run.data.tags.get("dvc_exp_name") == dvc_experiment_name()


def writable_run(client: MlflowClient, run_id: str, root: Path, name: str, **tags: str) -> str:
    """``run_id`` when :func:`may_write_run`, else a new finished run ``name`` in the same
    experiment, tagged with ``tags`` and ``model_run`` (the run it stands beside)."""
    if may_write_run(client, run_id):
        return run_id
    exp_id = client.get_run(run_id).info.experiment_id
    own = client.create_run(
        exp_id, run_name=name, tags=run_tags(root, model_run=run_id, **tags)
    ).info.run_id
    client.set_terminated(own)
    return own
