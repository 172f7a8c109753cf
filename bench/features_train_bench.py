"""Time the features and the training of every area at several sizes (default 300k, 1M, 3M items).

Usage:  python bench/features_train_bench.py [--sizes 300000 1000000 3000000] [--cache DIR]

For each size, a child process simulates the default world scaled to that many items
(``bench/scaled_world.py``: entities scale with it; 24 months, seed 42) into a temporary folder
(or into ``--cache``/<size>, reused when present), then times

* ``build_features`` on every item (with the area specs, as ``riskml features`` does);
* labels and ``train_area`` for every area of ``pipelines/`` (plus revenue's recovery model),
  with the thread count of ``params.yaml`` (2), without MLflow logging;

and prints wall times, CPU times (all threads of the child; on a machine shared with other
jobs, wall time grows with the load, CPU time much less) and the child's peak memory (max
RSS). Each size runs in its own child so that its peak memory is its own; the parent prints
every time as a ratio to the first size's.
Simulation time is reported but is not part of the targets.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _one(n_items: int, cache: Path | None) -> dict:
    from scaled_world import ROOT, as_interim, simulate_world

    from riskml import io
    from riskml.catalog import stored_table
    from riskml.config import area_train_params, load_area_specs, load_params
    from riskml.contract import KEY
    from riskml.features import build_features
    from riskml.train import train_area, training_labels

    params = load_params(ROOT / "params.yaml")
    specs = load_area_specs(ROOT / "pipelines")
    out: dict = {"n_items": n_items}
    with tempfile.TemporaryDirectory() as tmp:
        folder = (cache / str(n_items)) if cache else Path(tmp)
        outcomes = stored_table(folder, "outcomes")  # one file, or by month (as_interim)
        if not outcomes.exists():
            t0 = time.perf_counter()
            simulate_world(n_items, folder)
            out["simulate_s"] = round(time.perf_counter() - t0, 1)
        decl = io.read_dataset(as_interim(folder))
        outc = io.read_dataset(stored_table(folder, "outcomes"))

        t0, c0 = time.perf_counter(), time.process_time()
        features = build_features(decl, outc, params.features, specs=specs)
        out["features_s"] = round(time.perf_counter() - t0, 1)
        out["features_cpu_s"] = round(time.process_time() - c0, 1)
        out["n_features"] = features.shape[1]

        t0, c0 = time.perf_counter(), time.process_time()
        keys = decl[KEY]
        del decl
        for area, spec in specs.items():
            a0 = time.perf_counter()
            # as the train stage trains it: the rare areas' first stage over their pool's
            # labelled items included (each area fits its own, as the per-area stages do)
            labels, first = training_labels(
                keys, outc, spec, specs, known_before=params.split.test_start
            )
            train_params = area_train_params(params, spec)
            train_area(
                features,
                labels,
                spec,
                params.split,
                train_params,
                pretrain_labels=first,
                with_recovery=True,
            )
            out[f"train_{area}_s"] = round(time.perf_counter() - a0, 1)
        out["train_all_s"] = round(time.perf_counter() - t0, 1)
        out["train_all_cpu_s"] = round(time.process_time() - c0, 1)
    out["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[300_000, 1_000_000, 3_000_000])
    parser.add_argument("--cache", type=Path, default=None, help="keep simulated data here")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(_one(args.one, args.cache)))
        return

    results = []
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--one", str(n)]
        if args.cache:
            cmd += ["--cache", str(args.cache)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    base = results[0]
    print("\n| items | features (s) | ratio | train 6 areas (s) | ratio | peak RSS (GiB) |")
    print("|---|---|---|---|---|---|")
    for r in results:
        fr = r["features_s"] / base["features_s"]
        tr = r["train_all_s"] / base["train_all_s"]
        print(
            f"| {r['n_items']:,} | {r['features_s']} | {fr:.2f} | {r['train_all_s']} | "
            f"{tr:.2f} | {r['peak_rss_gib']} |"
        )


if __name__ == "__main__":
    main()
