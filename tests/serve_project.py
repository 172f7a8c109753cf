"""A small finished project for the service tests: the real pipeline stages (simulate, validate,
features, train, evaluate, select, explain, lists) on a small simulated world of two areas, with
a real MLflow store, built once per test session and shared by the service test modules."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
AREAS = ["revenue", "ipr"]
_BUILT: dict[str, Path] = {}

_SCRIPT = """
from pathlib import Path
import pandas as pd
from riskml import cli
root = Path(".")
cli.source(root=root)
# two deliberately broken declarations of the ranked period: one scored without its value, one
# that cannot be scored (both on the data-quality list)
raw = pd.read_parquet("data/raw/declarations.parquet")
ranked = raw.index[(raw["accepted_date"] >= pd.Timestamp("2024-07-01")) & (raw["item_no"] == 1)]
raw.loc[ranked[0], "cif_value"] = -1.0
raw.loc[ranked[1], "hs_code"] = "12"
raw.to_parquet("data/raw/declarations.parquet", index=False)
cli.validate(root=root)
cli.features(root=root)
for area in {areas!r}:
    cli.train(root=root, area=area)
    cli.register(root=root, area=area)
cli.evaluate(root=root)
cli.select_(root=root)
cli.explain(root=root)
cli.lists(root=root)
"""


def project_env(dest: Path) -> dict[str, str]:
    """Environment of a subprocess working in ``dest`` (its own MLflow store)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{dest / 'mlflow.db'}"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def built_project(base: Path) -> Path:
    """The finished project (built on the first call, under ``base``)."""
    if "project" in _BUILT:
        return _BUILT["project"]
    reuse = os.environ.get("RISKML_SERVE_PROJECT")  # a project built earlier (local iteration)
    if reuse:
        _BUILT["project"] = Path(reuse)
        return _BUILT["project"]
    dest = base / "serve-project"
    dest.mkdir(parents=True)
    shutil.copytree(ROOT / "pipelines", dest / "pipelines")
    for area in AREAS:  # short lists keep the explain stage quick
        spec_path = dest / "pipelines" / f"{area}.yaml"
        spec = yaml.safe_load(spec_path.read_text())
        spec["policy"]["capacity"] = 60
        spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    (dest / "data/external").mkdir(parents=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["areas"] = AREAS
    params["simulate"]["n_items"] = 40_000
    params["serve"]["database_url"] = "sqlite:///feedback.db"
    params["train"]["num_boost_round"] = 150
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(areas=AREAS)],
        cwd=dest,
        env=project_env(dest),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise AssertionError(f"pipeline failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    _BUILT["project"] = dest
    return dest


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """A real uvicorn server on a free loopback port, in a background thread."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        import threading

        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, access_log=False, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise AssertionError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def new_batch(project: Path, n: int, *, start: int = 0):  # type: ignore[no-untyped-def]
    """``n`` new declaration items: stored ones copied with fresh ids, dated after the data."""
    import pandas as pd

    from riskml.catalog import Catalog
    from riskml.io import read_dataset

    decl = read_dataset(Catalog(project).declarations)
    rows = decl.tail(n + start).head(n).copy()
    rows["declaration_id"] = [f"NEW{start + i:07d}" for i in range(len(rows))]
    rows["item_no"] = 1
    rows["accepted_date"] = decl["accepted_date"].max() + pd.Timedelta(days=1)
    return rows.reset_index(drop=True)
