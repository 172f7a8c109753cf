"""Time every pipeline stage at the default size (or --n-items) on this machine.

Usage:  python bench/pipeline_timing.py [--n-items 300000] [--keep]
                [--train AREA:KEY=VALUE ...]

Copies the project's tracked files into a temporary folder, then runs each `riskml` stage in
order as its own process and prints wall time, CPU time (user + system of the stage's process
and its children: the figure to compare on a shared machine) and peak memory (max RSS) per
stage, plus the totals. The MLflow store is the copy's own `mlflow.db`, so the repository is
left untouched. ``--train AREA:KEY=VALUE`` sets ``training.train.KEY`` of
``pipelines/AREA.yaml`` in the copy (a YAML value), e.g. ``--train security:unlabelled_share=0``
to time a run without an area's weak negatives beside one with them.
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
    parser.add_argument(
        "--train",
        action="append",
        default=[],
        metavar="AREA:KEY=VALUE",
        help="set training.train.KEY of pipelines/AREA.yaml in the copy (repeatable)",
    )
    args = parser.parse_args()

    dest = Path(tempfile.mkdtemp(prefix="riskml-bench-"))
    _copy_project(dest)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    if args.n_items:
        params["simulate"]["n_items"] = args.n_items
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for setting in args.train:
        area, _, assignment = setting.partition(":")
        key, _, value = assignment.partition("=")
        if not (area and key and value):
            parser.error(f"--train {setting!r}: expected AREA:KEY=VALUE")
        path = dest / "pipelines" / f"{area}.yaml"
        spec = yaml.safe_load(path.read_text())
        spec.setdefault("training", {}).setdefault("train", {})[key] = yaml.safe_load(value)
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
    riskml = str(Path(sys.executable).parent / "riskml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}

    # train@ and backtest@ one process per area, as dvc.yaml runs them: each area's cost apart
    areas = params["areas"]
    stages = [
        ["source"],
        ["validate"],
        ["features"],
        *(["train", "--area", a] for a in areas),
        ["register"],
        ["evaluate"],
        *(["backtest", "--area", a] for a in areas),
        ["backtest-report"],
        ["promote"],
        ["select"],
        ["explain"],
        ["lists"],
    ]
    print(
        f"project copy: {dest}; items: {params['simulate']['n_items']:,}; cores: {os.cpu_count()}"
        f"; load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    print(f"{'stage':<24} {'seconds':>8} {'CPU s':>8} {'peak RSS MiB':>13}")
    total = total_cpu = 0.0
    for stage in stages:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run([riskml, *stage], cwd=dest, env=env, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        total += seconds
        total_cpu += cpu
        # ru_maxrss of children is the max over all children so far (KiB on Linux)
        peak = after.ru_maxrss
        rss = f"{peak / 1024:,.0f}" if peak > before.ru_maxrss else "<= previous"
        name = f"{stage[0]}@{stage[2]}" if len(stage) == 3 else stage[0]
        print(f"{name:<24} {seconds:>8.1f} {cpu:>8.1f} {rss:>13}", flush=True)
    print(f"{'total':<24} {total:>8.1f} {total_cpu:>8.1f}")
    print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if not args.keep:
        shutil.rmtree(dest)


if __name__ == "__main__":
    main()
