"""A small pipeline run shared by the explanation, case-file and notebook tests.

Built once per test session (cached): the project copied into a temporary folder, one area
(revenue) on a small simulated world, and the stages run as `riskml` sub-commands up to
``lists``, with the project's own MLflow store (``mlflow.db``) in that folder.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from project_files import copy_project

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
AREA = "revenue"
STAGES = [
    ["source"],
    ["validate"],
    ["features"],
    ["train", "--area", AREA],
    ["register", "--area", AREA],
    ["evaluate"],
    ["select"],
    ["explain"],
    ["lists"],
]


def project_env() -> dict[str, str]:
    """The environment of the stage commands: this venv first, no MLflow/DVC overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    return env


@functools.cache
def small_project() -> Path:
    """Root of the small finished run (built on first call)."""
    dest = Path(tempfile.mkdtemp(prefix="riskml-explain-"))
    atexit.register(shutil.rmtree, dest, ignore_errors=True)
    copy_project(dest)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["areas"] = [AREA]
    params["simulate"]["n_items"] = 40_000
    params["explain"]["global_sample"] = 500
    params["explain"]["case_images"] = 5
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for spec in (dest / "pipelines").glob("*.yaml"):
        if spec.stem != AREA:
            spec.unlink()
    env = project_env()
    for stage in STAGES:
        proc = subprocess.run(
            [str(BIN / "riskml"), *stage],
            cwd=dest,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if proc.returncode != 0:
            raise AssertionError(f"riskml {' '.join(stage)} failed:\n{proc.stdout}\n{proc.stderr}")
    return dest
