"""Time every pipeline stage at the default size (or --n-items) on this machine.

Usage:  python bench/pipeline_timing.py [--n-items 300000] [--keep]

Copies the project's tracked files into a temporary folder, then runs each `riskml` stage in
order as its own process and prints wall time and peak memory (max RSS) per stage, plus the
total. The MLflow store is the copy's own `mlflow.db`, so the repository is left untouched.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _copy_project(dest: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    for rel in filter(None, files):
        # dvc.lock is local pipeline state: a copy must start without it, as a clone does
        if rel != "dvc.lock" and (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-items", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the temporary project")
    args = parser.parse_args()

    dest = Path(tempfile.mkdtemp(prefix="riskml-bench-"))
    _copy_project(dest)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    if args.n_items:
        params["simulate"]["n_items"] = args.n_items
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    riskml = str(Path(sys.executable).parent / "riskml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}

    stages = [
        ["source"],
        ["validate"],
        ["features"],
        ["train"],
        ["register"],
        ["evaluate"],
        ["backtest"],  # every area's windows, then the report
        ["promote"],
        ["select"],
        ["explain"],
        ["lists"],
    ]
    print(
        f"project copy: {dest}; items: {params['simulate']['n_items']:,}; cores: {os.cpu_count()}"
    )
    print(f"{'stage':<10} {'seconds':>8} {'peak RSS MiB':>13}")
    total = 0.0
    for stage in stages:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        started = time.perf_counter()
        subprocess.run([riskml, *stage], cwd=dest, env=env, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        total += seconds
        # ru_maxrss of children is the max over all children so far (KiB on Linux)
        rss = f"{peak / 1024:,.0f}" if peak > before else "<= previous"
        print(f"{stage[0]:<10} {seconds:>8.1f} {rss:>13}")
    print(f"{'total':<10} {total:>8.1f}")
    if not args.keep:
        shutil.rmtree(dest)


if __name__ == "__main__":
    main()
