"""Features at scale: in memory, out of core (month by month) and on a 2-worker Dask LocalCluster.

Usage:  nice python bench/scale_bench.py [--sizes 1000000 3000000] [--modes memory ooc dask]
                                          [--cache DIR]

For each size, the default world scaled to that many items (``bench/scaled_world.py``: entities
scale with it; 24 months, seed 42) is simulated once into ``--cache``/<size> (reused when present;
simulation is not timed). Then each mode runs the ``riskml features`` stage
(:func:`riskml.features_stage.run_features`, with the area specs) in its own child process on a
project folder whose ``data/interim`` is that world, and prints:

* wall and CPU time of the stage (CPU: the child's own threads; in dask mode also the workers'
  CPU, read from each worker process at the end);
* the peak memory (max RSS) of the child, and in dask mode of each worker process;
* the items and months written (``data/features/month=YYYY-MM/``).

Modes: ``memory`` (``compute.out_of_core: false``: every item's features at once, today's
default), ``ooc`` (``compute.out_of_core: true``: the history's profiles, then one month at a
time), ``dask`` (``compute.backend: dask`` on a ``LocalCluster(n_workers=2,
threads_per_worker=1, processes=True)`` started by the child; one task per month).
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

from scaled_world import ROOT, cached_world


def _peak_gib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


def _worker_usage() -> dict:
    import resource as r

    u = r.getrusage(r.RUSAGE_SELF)
    return {"peak_rss_gib": round(u.ru_maxrss / 2**20, 2), "cpu_s": u.ru_utime + u.ru_stime}


def _one(n_items: int, mode: str, world: Path) -> dict:
    from riskml.config import ComputeParams, load_area_specs, load_params
    from riskml.features_stage import run_features

    params = load_params(ROOT / "params.yaml")
    specs = {a: s for a, s in load_area_specs(ROOT / "pipelines").items() if a in params.areas}
    out: dict = {"n_items": n_items, "mode": mode}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        (root / "data/interim").symlink_to(world, target_is_directory=True)
        cluster = None
        if mode == "dask":
            from distributed import Client, LocalCluster

            cluster = LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                host="127.0.0.1", memory_limit=0,
            )  # fmt: skip
            compute = ComputeParams(backend="dask", scheduler=cluster.scheduler_address)
        else:
            compute = ComputeParams(out_of_core=mode == "ooc")
        params = params.model_copy(update={"compute": compute})
        t0, c0 = time.perf_counter(), time.process_time()
        summary = run_features(root, params, specs)
        out["features_s"] = round(time.perf_counter() - t0, 1)
        out["features_cpu_s"] = round(time.process_time() - c0, 1)
        out["months"] = summary["months"]
        out["items_written"] = summary["items"]
        out["peak_rss_gib"] = _peak_gib()
        if cluster is not None:
            with Client(cluster) as client:
                usage = client.run(_worker_usage)
            out["workers"] = [
                {"peak_rss_gib": u["peak_rss_gib"], "cpu_s": round(u["cpu_s"], 1)}
                for u in usage.values()
            ]
            out["features_cpu_s"] = round(
                out["features_cpu_s"] + sum(u["cpu_s"] for u in usage.values()), 1
            )
            cluster.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 3_000_000])
    parser.add_argument("--modes", nargs="+", default=["memory", "ooc", "dask"])
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "riskml-scale")
    parser.add_argument("--one", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        n, mode = int(args.one[0]), args.one[1]
        print(json.dumps(_one(n, mode, args.cache / str(n))))
        return

    results = []
    for n in args.sizes:
        t0 = time.perf_counter()
        _, simulated = cached_world(n, args.cache)
        if simulated:
            print(f"simulated {n:,} items in {time.perf_counter() - t0:.0f} s", flush=True)
        for mode in args.modes:
            cmd = [sys.executable, __file__, "--one", str(n), mode, "--cache", str(args.cache)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{n:,} {mode}: failed\n{done.stderr[-2000:]}", flush=True)
                continue
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
    print("\n| items | mode | features wall (s) | CPU (s) | peak RSS driver (GiB) | workers |")
    print("|---|---|---|---|---|---|")
    for r in results:
        workers = ", ".join(f"{w['peak_rss_gib']} GiB" for w in r.get("workers", [])) or "-"
        print(
            f"| {r['n_items']:,} | {r['mode']} | {r['features_s']} | {r['features_cpu_s']} | "
            f"{r['peak_rss_gib']} | {workers} |"
        )


if __name__ == "__main__":
    main()
