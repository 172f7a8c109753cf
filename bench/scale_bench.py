"""End to end at scale: features, six areas trained, all items scored, explanations of the selected,
out of core on one machine and on a 2-worker Dask LocalCluster.

Usage:  nice python bench/scale_bench.py [--sizes 1000000 3000000 10000000] [--modes ooc dask]
            [--steps validate features train register score evaluate select explain]
            [--cache DIR]
            [--project DIR] [--areas A ...] [--threads N] [--train-set KEY=VALUE ...]

For each size, the default world scaled to that many items (``bench/scaled_world.py``: entities
scale with it; 24 months, seed 42) is simulated once into ``--cache``/<size> (reused when present;
simulation is not timed). A temporary project folder gets that world as its ``data/interim``;
each step then runs in its own child process, as ``dvc repro`` runs each stage in its own
``riskml`` process:

* ``validate`` (only when asked for): the validate stage (:func:`riskml.contract.run_validate`)
  on the project's ``data/raw`` (the world's tables as ``source`` writes them, one file
  each), written to ``data/validated`` (the project's ``data/interim`` is the cached world);
* ``features``: the features stage (:func:`riskml.features_stage.run_features`, six area specs);
* ``train``: one child per area of params.yaml, the train and register stages
  (:func:`riskml.train_stage.train_area_model`: reads the labelled rows it needs month by month,
  fits, binds the list policy and threshold, registers in an MLflow store in the temporary
  folder, writes ``models/<area>/``);
* ``register`` (only when asked for): one child per area, the register stage alone
  (:func:`riskml.train_stage.run_register`: the test window scored for the operating
  threshold, the model registered, ``models/<area>/`` written with the window's scores, which
  the evaluate stage then reads instead of predicting them again), on the estimators an
  earlier ``train`` left;
* ``score``: every item of every month scored by each area's champion (the registered model
  the lists use, :func:`riskml.registry.list_model`), month by month with the evaluate stage's
  :func:`riskml.area_model.score_frame` (:func:`riskml.compute.write_months`), written as
  ``data/bench_scores/<area>/month=YYYY-MM/``;
* ``evaluate``, ``select``, ``explain``: the pipeline's stages themselves
  (:func:`riskml.evaluate.run_evaluate`: the test window scored, labelled and measured;
  :func:`riskml.select.run_select`: each area's picks by its champion;
  :func:`riskml.explain.run_explain`: the picks' reasons by TreeSHAP, SHAP images, case files),
  each list's capacity scaled with the items like the entities.

It prints per step the wall time, the CPU time (the child's own; with Dask plus the workers'
CPU during the step), the child's peak memory (its own high-water mark, ``VmHWM``: not this
script's) and the 1-minute load average at its start and end; per run the totals, the largest
peak of any driver process and each worker's peak. Modes: ``ooc`` (``compute.out_of_core:
true``, local), ``dask`` (``compute.backend: dask`` on ``LocalCluster(n_workers=2,
threads_per_worker=1, processes=True)`` started by this script, its address given to each
step as ``compute.scheduler``), ``memory`` (the features of every item at once, the default of
``params.yaml``; the other steps as ``ooc``). ``--threads 1`` trains with one LightGBM thread:
on a machine shared with other jobs, two OpenMP threads spin-wait for a core and multiply the
time (docs/performance.md). ``--train-set max_training_rows=50000``: train settings over
params.yaml's for every training step (environment ``RISKML_BENCH_TRAIN``, a JSON object, read
by each child; ``bench/train_phases.py`` reads it too).
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

from scaled_world import BASE_ITEMS, ROOT, cached_world

STEPS = ("features", "train", "score", "evaluate", "select", "explain")  # validate: when asked


def _params(mode: str, scheduler: str | None):
    from riskml.config import ComputeParams, load_params

    params = load_params(ROOT / "params.yaml")
    threads = os.environ.get("RISKML_BENCH_THREADS")
    if threads:  # --threads: LightGBM's threads (train.num_threads)
        train = params.train.model_copy(update={"num_threads": int(threads)})
        params = params.model_copy(update={"train": train})
    settings = json.loads(os.environ.get("RISKML_BENCH_TRAIN", "{}"))
    if settings:  # --train-set: train settings over params.yaml's (validated as params.yaml's)
        from riskml.config import TrainParams

        train = TrainParams.model_validate(params.train.model_dump() | settings)
        params = params.model_copy(update={"train": train})
    if mode == "dask":
        compute = ComputeParams(backend="dask", scheduler=scheduler)
    else:
        compute = ComputeParams(out_of_core=mode != "memory")
    return params.model_copy(update={"compute": compute})


def _specs(params, n_items: int, *, every: bool = False):
    """The area specs, each list's capacity scaled with the items like the entities (an
    administration of ``n_items`` audits proportionally more: the select and explain stages
    then draw and explain ``capacity * n_items / BASE_ITEMS`` picks per area)."""
    from riskml.config import load_area_specs

    specs = load_area_specs(ROOT / "pipelines")
    areas = params.areas
    if not every:  # --areas; the features stage builds every area's (their rule_<area> columns)
        areas = os.environ.get("RISKML_BENCH_AREAS", "").split() or areas
    return {
        a: s.model_copy(update={"capacity": max(1, round(s.capacity * n_items / BASE_ITEMS))})
        for a, s in specs.items()
        if a in areas
    }


def _trained(root: Path, specs) -> dict:
    """The areas of ``specs`` that have a model (``--areas`` trains only some), as
    ``dvc repro`` would give the stages after ``score``: their specs."""
    from riskml.catalog import Catalog
    from riskml.train import split_trained

    trained, _ = split_trained(root, specs)
    return {a: s for a, s in trained.items() if Catalog(root).model(a).exists()}


def _score(root: Path, params, specs) -> dict:
    """Every item of every month scored by each area's champion (the registered model the
    lists and the service use: :func:`riskml.registry.list_model`), month by month with the
    evaluate stage's :func:`riskml.area_model.score_frame`, each month written as a partition of
    ``data/bench_scores/<area>/`` (:func:`riskml.compute.write_months`; the evaluate stage's
    own ``data/scores`` hold the test window only)."""
    import functools

    from riskml import compute, io
    from riskml.area_model import score_frame
    from riskml.catalog import Catalog
    from riskml.registry import list_model

    catalog = Catalog(root)
    months = io.partition_months(catalog.features)
    start, end = f"{months[0]}-01", "2100-01-01"
    done, models = {}, {}
    with compute.running_on(params.compute) as client:
        for area in _trained(root, specs):
            model = list_model(root, area)
            score = functools.partial(score_frame, model, start=start, end=end)
            columns = ["declaration_id", "item_no", "accepted_date", *model.feature_names_]
            out = root / "data" / "bench_scores" / area
            done[area] = compute.write_months(
                catalog.features, months, score, out, client=client, columns=columns
            )
            models[area] = str(model.registration)
    return {"scored": done, "models": models}


def _tally_predictions() -> dict:
    """Count, in this process, LightGBM's predictions (``Booster.predict``: the area models'
    probabilities, the recovery regressions, TreeSHAP's contributions): their CPU seconds (the
    process's, so LightGBM's OpenMP threads included) and their work, rows × trees predicted
    (the booster's trees, or the ``num_iteration`` asked for). A prediction costs about the
    same per row and tree whatever the item count, so these split a stage's CPU into the
    model's part (which grows with the items × the trees the training kept) and the stage's
    own (reads, joins, sorts, metrics, writes). The values predicted are untouched."""
    import lightgbm as lgb

    tally = {"predict_cpu_s": 0.0, "row_trees": 0, "shap_cpu_s": 0.0, "shap_row_trees": 0}
    inner = lgb.Booster.predict

    def counted(self, data, *args, **kwargs):
        c0 = time.process_time()
        out = inner(self, data, *args, **kwargs)
        trees = kwargs.get("num_iteration") or self.best_iteration
        trees = trees if trees and trees > 0 else self.current_iteration()
        kind = "shap" if kwargs.get("pred_contrib") else "predict"
        tally[f"{kind}_cpu_s"] += time.process_time() - c0
        tally["shap_row_trees" if kind == "shap" else "row_trees"] += len(data) * trees
        return out

    lgb.Booster.predict = counted
    return tally


def _step(step: str, n_items: int, mode: str, root: Path, scheduler: str | None) -> dict:
    from riskml.evaluate import run_evaluate
    from riskml.explain import run_explain
    from riskml.features_stage import run_features
    from riskml.select import run_select
    from riskml.train_stage import train_area_model

    params = _params(mode, scheduler)
    specs = _specs(params, n_items)
    tally = _tally_predictions()
    load = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    if step == "validate":  # the stage on data/raw, written beside data/interim (a shared cache)
        from riskml.catalog import Catalog
        from riskml.contract import run_validate

        catalog = Catalog(root)
        report = run_validate(catalog.raw, root / "data" / "validated", catalog.validation)
        kept = {
            t: r["rows_kept"] for t, r in report.items() if isinstance(r, dict) and "rows_kept" in r
        }
        facts = {"rows_kept": kept}
    elif step == "features":
        summary = run_features(root, params, _specs(params, n_items, every=True))
        facts = {"months": summary["months"], "items": summary["items"]}
    elif step.startswith("train:"):
        area = step.split(":", 1)[1]
        uri = f"sqlite:///{root}/mlflow.db"
        summary = train_area_model(area, root, params, specs[area], tracking_uri=uri)
        facts = {k: summary[k] for k in ("train_rows", "best_iteration") if k in summary}
    elif step.startswith("register:"):
        from riskml.train_stage import run_register

        area = step.split(":", 1)[1]
        uri = f"sqlite:///{root}/mlflow.db"
        summary = run_register(area, root, params, specs[area], tracking_uri=uri)
        facts = {k: summary[k] for k in ("version", "reused_version") if k in summary}
    elif step == "score":
        facts = _score(root, params, specs)
    elif step == "evaluate":  # the stage: the test window scored, labelled and measured
        facts = {"evaluated": list(run_evaluate(root, params, _trained(root, specs)))}
    elif step == "select":  # the stage: each area's picks by its champion
        facts = {"picks": run_select(root, params, _trained(root, specs))["picks"]}
    elif step == "explain":  # the stage: reasons, SHAP images and case files of the picks
        facts = {"explained": run_explain(root, params, _trained(root, specs))["explained"]}
    else:
        raise SystemExit(f"unknown step {step!r}")
    return {
        "step": step,
        "wall_s": round(time.perf_counter() - t0, 1),
        "cpu_s": round(time.process_time() - c0, 1),
        "peak_rss_gib": _peak_rss_gib(),
        "load_average": [round(load, 1), round(os.getloadavg()[0], 1)],  # 1-min, start and end
        # the predictions' share of the CPU and their work (rows × trees), when any (local
        # steps: a Dask step predicts on the workers)
        **{k: round(v, 1) if isinstance(v, float) else v for k, v in tally.items() if v},
        **facts,
    }


def _peak_rss_gib() -> float:
    """This process's peak memory in GiB: ``VmHWM`` of ``/proc/self/status`` (Linux), the
    high-water mark of the process's own memory since it started its program. Not
    ``ru_maxrss``: Linux carries it over from the parent into a child started by
    ``subprocess`` (vfork, then exec), so each step's figure was at least this script's own
    peak, e.g. 9.8 GiB after simulating a 10M world (docs/performance.md, session 13)."""
    try:
        status = Path("/proc/self/status").read_text()
        kib = int(next(ln for ln in status.splitlines() if ln.startswith("VmHWM:")).split()[1])
    except (OSError, StopIteration):  # not Linux: the rusage figure (a lower floor elsewhere)
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kib / 2**20, 2)


def _worker_usage() -> dict:
    import resource as r

    u = r.getrusage(r.RUSAGE_SELF)
    return {"peak_rss_gib": _peak_rss_gib(), "cpu_s": u.ru_utime + u.ru_stime}


def _project(world: Path, folder: Path) -> Path:
    (folder / "data").mkdir(parents=True)
    (folder / "data/interim").symlink_to(world, target_is_directory=True)
    (folder / "pipelines").symlink_to(ROOT / "pipelines", target_is_directory=True)
    return folder


def _run(
    n_items: int,
    mode: str,
    world: Path,
    steps: list[str],
    project: Path | None = None,
    areas: list[str] | None = None,
) -> dict:
    """One size and mode end to end: each step a child process; returns the figures.
    ``project``: a project folder to use and keep (a later call can run the next steps)."""
    from riskml.config import load_params

    areas = areas or load_params(ROOT / "params.yaml").areas
    cluster = client = None
    scheduler = None
    if mode == "dask":
        from distributed import Client, LocalCluster

        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
            host="127.0.0.1", memory_limit=0,
        )  # fmt: skip
        client = Client(cluster)
        scheduler = cluster.scheduler_address
    run = {"n_items": n_items, "mode": mode, "steps": []}
    tmp = Path(tempfile.mkdtemp(prefix=f"riskml-scale-{n_items}-{mode}-"))
    try:
        if project is None:
            root = _project(world, tmp / "project")
        else:
            root = project if (project / "data").exists() else _project(world, project)
        jobs = [s for s in steps if s not in ("train", "register")]
        # one child per area after the features, before the stages that read the models (a
        # train:<area> child runs the area's register stage too)
        kind = "train" if "train" in steps else "register" if "register" in steps else None
        if kind:
            later = [jobs.index(s) for s in ("score", "evaluate", "select", "explain") if s in jobs]
            at = jobs.index("features") + 1 if "features" in jobs else min(later, default=len(jobs))
            jobs[at:at] = [f"{kind}:{a}" for a in areas]
        for step in jobs:
            before = client.run(_worker_usage) if client else {}
            cmd = [sys.executable, __file__, "--step", step, str(n_items), mode, str(root)]
            if scheduler:
                cmd += ["--scheduler", scheduler]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{n_items:,} {mode} {step}: failed\n{done.stderr[-3000:]}")
            record = json.loads(done.stdout.strip().splitlines()[-1])
            if client:
                after = client.run(_worker_usage)
                workers = sum(after[w]["cpu_s"] - before[w]["cpu_s"] for w in after)
                record["workers_cpu_s"] = round(workers, 1)
            run["steps"].append(record)
            print(json.dumps(record), flush=True)
        if client:
            run["workers_peak_rss_gib"] = [
                u["peak_rss_gib"] for u in client.run(_worker_usage).values()
            ]
    finally:
        if client:
            client.close()
            cluster.close()
        shutil.rmtree(tmp, ignore_errors=True)
    steps_done = run["steps"]
    run["wall_s"] = round(sum(s["wall_s"] for s in steps_done), 1)
    run["cpu_s"] = round(sum(s["cpu_s"] + s.get("workers_cpu_s", 0) for s in steps_done), 1)
    run["peak_rss_gib"] = max(s["peak_rss_gib"] for s in steps_done)
    return run


def _table(results: list[dict]) -> None:
    print("\n| items | mode | step | wall (s) | CPU (s) | peak RSS driver (GiB) |")
    print("|---|---|---|---|---|---|")
    for r in results:
        per_area = ("train:", "register:")
        train = [s for s in r["steps"] if s["step"].startswith(per_area)]
        rows = [s for s in r["steps"] if not s["step"].startswith(per_area)]
        if train:  # one row in the steps' order, after the features
            at = next(i for i, s in enumerate(r["steps"]) if s["step"].startswith(per_area))
            row = {
                "step": f"{train[0]['step'].split(':')[0]} ({len(train)} areas)",
                "wall_s": round(sum(s["wall_s"] for s in train), 1),
                "cpu_s": round(sum(s["cpu_s"] for s in train), 1),
                "peak_rss_gib": max(s["peak_rss_gib"] for s in train),
            }
            if any("workers_cpu_s" in s for s in train):
                row["workers_cpu_s"] = round(sum(s["workers_cpu_s"] for s in train), 1)
            rows.insert(at, row)
        for s in rows:
            cpu = f"{s['cpu_s']}" + (
                f" + {s['workers_cpu_s']} workers" if "workers_cpu_s" in s else ""
            )
            head = f"| {r['n_items']:,} | {r['mode']} | {s['step']}"
            print(f"{head} | {s['wall_s']} | {cpu} | {s['peak_rss_gib']} |")
        workers = ", ".join(f"{w} GiB" for w in r.get("workers_peak_rss_gib", []))
        print(
            f"| {r['n_items']:,} | {r['mode']} | **end to end** | {r['wall_s']} | {r['cpu_s']} | "
            f"{r['peak_rss_gib']}" + (f" (workers {workers})" if workers else "") + " |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 3_000_000])
    parser.add_argument("--modes", nargs="+", default=["ooc", "dask"])
    parser.add_argument("--steps", nargs="+", default=list(STEPS))
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "riskml-scale")
    parser.add_argument(
        "--project", type=Path, default=None,
        help="keep the project folder here (one size and mode): later runs continue its steps",
    )  # fmt: skip
    parser.add_argument(
        "--areas", nargs="+", default=None, help="these areas only (every step but features)"
    )
    parser.add_argument(
        "--threads", type=int, default=None,
        help="LightGBM threads of the training (default: train.num_threads of params.yaml)",
    )  # fmt: skip
    parser.add_argument(
        "--train-set", nargs="+", default=[], metavar="KEY=VALUE",
        help="train settings over params.yaml's, e.g. max_training_rows=50000 (YAML values)",
    )  # fmt: skip
    parser.add_argument("--step", nargs=4, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--scheduler", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step is not None:
        step, n, mode, root = args.step
        print(json.dumps(_step(step, int(n), mode, Path(root), args.scheduler)))
        return

    if args.train_set:
        import yaml

        pairs = (item.split("=", 1) for item in args.train_set)
        os.environ["RISKML_BENCH_TRAIN"] = json.dumps({k: yaml.safe_load(v) for k, v in pairs})
    if args.threads:
        os.environ["RISKML_BENCH_THREADS"] = str(args.threads)  # read by each step's child
    if args.areas:
        os.environ["RISKML_BENCH_AREAS"] = " ".join(args.areas)
    results = []
    for n in args.sizes:
        t0 = time.perf_counter()
        world, simulated = cached_world(n, args.cache)
        if simulated:
            print(f"simulated {n:,} items in {time.perf_counter() - t0:.0f} s", flush=True)
        for mode in args.modes:
            load = os.getloadavg()
            results.append(_run(n, mode, world, args.steps, args.project, args.areas))
            end = os.getloadavg()
            results[-1]["load_average"] = [round(x, 1) for x in (*load, *end)]
            print(json.dumps({k: v for k, v in results[-1].items() if k != "steps"}), flush=True)
    _table(results)


if __name__ == "__main__":
    main()
