"""What the per-area backtest stages cost against one process that shares a pool's first stage.

Usage:  python bench/backtest_pool_bench.py --root PROJECT [--pair drugs,security ...]
        python bench/backtest_pool_bench.py --n-items 300000 [--pair ...] [--keep]

``backtest@<area>`` (``riskml backtest --area A``) is one DVC stage per area, so the two areas
of a pool that share their first stage (drugs and security, environment and health_safety:
same pool, same detectable controls, hence the same first-stage labels) each fit it once per
window and protocol, and each stage reads the tables and rebuilds the static protocol's
features itself. For each pair this prints the CPU time (user + system, of the child
processes) and the wall time of

* ``separate``: ``riskml backtest --area A`` then ``--area B``, two processes (what
  ``dvc repro`` runs);
* ``shared``: one process that loads the tables once, builds each protocol's frames once and
  scores both areas' windows with one first-stage cache (what the single backtest stage did
  before issue 11 split it),
* ``tables``: the same one process, each area fitting its own first stage: what sharing the
  reading alone saves (``shared`` minus this: what sharing the first stage saves),

the number of first-stage fits in each, and the largest difference between the two runs'
window scores (0: the shared first stage is the same model).

``--root``: a project whose ``data/features`` and ``data/interim`` exist (after ``dvc repro
features``); its ``data/backtest/<area>/`` is overwritten. ``--n-items``: copy the project into
a temporary folder, build those stages there with that many simulated items, and time there.
"""

from __future__ import annotations

import argparse
import json
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
BIN = Path(sys.executable).parent


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """CPU seconds and wall seconds of ``cmd`` as a child process, and its stderr."""
    cpu, wall = _cpu_children(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return _cpu_children() - cpu, time.perf_counter() - wall, proc.stderr


def _build(n_items: int) -> Path:
    """A copy of the project with ``n_items`` simulated items and its features built."""
    sys.path.insert(0, str(ROOT / "tests"))
    from project_files import copy_project

    dest = Path(tempfile.mkdtemp(prefix="riskml-pool-bench-"))
    copy_project(dest)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["simulate"]["n_items"] = n_items
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stage in ("source", "validate", "features"):
        subprocess.run([str(BIN / "riskml"), stage], cwd=dest, check=True, capture_output=True)
    return dest


def shared_run(root: Path, areas: list[str], out: Path, *, own_first_stage: bool) -> None:
    """One process: both areas' windows of every protocol, one first-stage cache per protocol
    (as the single backtest stage did; ``own_first_stage``: one per area); each area's scores
    to ``out/<area>.parquet``, the number of first-stage fits to ``out/fits.json``."""
    import pandas as pd

    from riskml.backtest import (
        backtest_windows,
        load_tables,
        protocol_frames,
        score_area_windows,
        unsupported_areas,
    )
    from riskml.config import load_area_specs, load_params

    params = load_params(root / "params.yaml")
    every = load_area_specs(root / "pipelines")
    specs = {a: every[a] for a in areas}
    bt = params.backtest
    windows = backtest_windows(params.split, n_windows=bt.n_windows, window_months=bt.window_months)
    skipped = unsupported_areas(root, params, specs)
    specs = {a: s for a, s in specs.items() if a not in skipped}
    tables = load_tables(root, params, specs)
    parts: dict[str, list[pd.DataFrame]] = {a: [] for a in specs}
    fits = 0
    for protocol in bt.protocols:
        tables["first_stage_cache"] = {}
        frames, positions = protocol_frames(protocol, root, tables, windows, params, every)
        for area, spec in specs.items():
            if own_first_stage:
                fits += sum(len(c) for c in tables["first_stage_cache"].values())
                tables["first_stage_cache"] = {}
            scored = score_area_windows(frames, positions, tables, spec, windows, params)
            for frame, window in zip(scored["scores"], scored["windows"], strict=True):
                parts[area].append(frame.assign(protocol=protocol, window=window["window"]))
        fits += sum(len(c) for c in tables["first_stage_cache"].values())
    out.mkdir(parents=True, exist_ok=True)
    for area, frames_ in parts.items():
        pd.concat(frames_, ignore_index=True).to_parquet(out / f"{area}.parquet", index=False)
    (out / "fits.json").write_text(json.dumps({"first_stage_fits": fits, "skipped": skipped}))


def _first_stage_fits(root: Path, area: str) -> int:
    """First-stage fits of ``riskml backtest --area``: one per kept window and protocol of a
    two-stage area (its ``windows.json``)."""
    from riskml.config import load_area_specs

    if load_area_specs(root / "pipelines")[area].first_stage is None:
        return 0
    record = json.loads((root / "data/backtest" / area / "windows.json").read_text())
    return sum(len(block["windows"]) for block in record.get("protocols", {}).values())


def compare_pair(root: Path, areas: list[str], env: dict[str, str]) -> dict[str, object]:
    """Both ways of running ``areas``' backtests: figures and the largest score difference."""
    import numpy as np
    import pandas as pd

    separate_cpu = separate_wall = 0.0
    for area in areas:
        cpu, wall, _ = _timed([str(BIN / "riskml"), "backtest", "--area", area], root, env)
        separate_cpu, separate_wall = separate_cpu + cpu, separate_wall + wall
    out = Path(tempfile.mkdtemp(prefix="riskml-pool-shared-"))
    cmd = [sys.executable, __file__, "--shared-run", ",".join(areas), "--root", str(root)]
    tables_cpu, tables_wall, _ = _timed([*cmd, "--out", str(out), "--own-first-stage"], root, env)
    tables_fits = json.loads((out / "fits.json").read_text())["first_stage_fits"]
    shared_cpu, shared_wall, _ = _timed([*cmd, "--out", str(out)], root, env)
    diff = 0.0
    for area in areas:
        alone = pd.read_parquet(root / "data/backtest" / area / "scores.parquet")
        together = pd.read_parquet(out / f"{area}.parquet")
        keys = ["protocol", "window", "declaration_id", "item_no"]
        both = alone.merge(together, on=keys, suffixes=("", "_shared"), validate="1:1")
        if len(both) != len(alone) or len(both) != len(together):
            raise SystemExit(f"{area}: the two runs scored different items")
        for col in ("score", "score_raw", "expected_recovery"):
            if col in alone:
                gap = np.nanmax(np.abs(both[col].to_numpy() - both[f"{col}_shared"].to_numpy()))
                diff = max(diff, float(gap))
    shared_fits = json.loads((out / "fits.json").read_text())["first_stage_fits"]
    shutil.rmtree(out)
    return {
        "pair": "+".join(areas),
        "separate_cpu_s": round(separate_cpu, 1),
        "separate_wall_s": round(separate_wall, 1),
        "separate_first_stage_fits": sum(_first_stage_fits(root, a) for a in areas),
        "tables_cpu_s": round(tables_cpu, 1),
        "tables_wall_s": round(tables_wall, 1),
        "tables_first_stage_fits": tables_fits,
        "shared_cpu_s": round(shared_cpu, 1),
        "shared_wall_s": round(shared_wall, 1),
        "shared_first_stage_fits": shared_fits,
        "max_score_difference": diff,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="a project with data/features built")
    parser.add_argument("--n-items", type=int, help="build a temporary project of this size")
    parser.add_argument(
        "--pair", action="append", help="two areas, comma-separated (default: both pools' pairs)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary project")
    parser.add_argument("--shared-run", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--own-first-stage", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.shared_run:
        shared_run(
            args.root.resolve(), args.shared_run.split(","), args.out,
            own_first_stage=args.own_first_stage,
        )  # fmt: skip
        return
    if (args.root is None) == (args.n_items is None):
        raise SystemExit("give --root PROJECT or --n-items N")
    root = _build(args.n_items) if args.n_items else args.root.resolve()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    pairs = [p.split(",") for p in (args.pair or ["drugs,security", "environment,health_safety"])]
    items = yaml.safe_load((root / "params.yaml").read_text())["simulate"]["n_items"]
    print(f"project: {root}; simulated items: {items:,}; cores: {os.cpu_count()}")
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    for pair in pairs:
        print(json.dumps(compare_pair(root, pair, env)))
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    if args.n_items and not args.keep:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
