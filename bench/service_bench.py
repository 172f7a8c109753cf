"""Benchmark of the audit service on a finished pipeline run (default: /tmp/clean-like folder).

Usage:  python bench/service_bench.py --root PROJECT [--port 8765] [--clients 20] [--requests 50]

Starts `riskml serve` as its own process on a loopback port with a fresh SQLite feedback
database, creates an auditor token, then measures:

* ``POST /score`` wall time and throughput for batches of 10,000 and 100,000 new declarations
  (CSV bodies: stored items copied with fresh ids, dated the day after the data), in
  declarations per second and in declarations scored per second per area (declarations x areas
  / wall time, every area scoring every declaration);
* the server-side split of the same batches (contract check, features from the feature store,
  model prediction, reasons) from a direct Scorer run in this process;
* model prediction alone: declarations per second per area (champion Booster on 100,000
  feature rows, 2 threads);
* ``GET /candidates`` (random filters and pages) and ``GET /declarations/{id}`` (random
  candidates) latency (median, p99) under ``--clients`` concurrent clients, each sending
  ``--requests`` requests;
* ``POST /score`` of one new declaration (JSON) under ``--score-clients`` concurrent clients;
* for each of these latency runs, the server process's CPU time per request (user + system, from
  ``/proc``): on a shared machine the latency depends on what else runs, the CPU time much less;
* ``--single N``: one new declaration scored N times in this process (``Scorer.score``, no
  HTTP), median and p99 of the wall time, the CPU time, and the split per step; then the CPU
  time of 1, 2 and 4 single declarations checked and scored in one pass (what ``POST /score``
  does with declarations that arrive together);
* ``--workers N``: the service runs as N processes (``riskml serve --workers N``).

The load average is printed at the start and at the end: figures taken while other work shares
the cores are several times those of an idle machine.

PROJECT is read only (the database and the token live in a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

BIN = Path(sys.executable).parent


def new_batch(decl: pd.DataFrame, n: int) -> pd.DataFrame:
    """``n`` new items: stored ones (cycled) with fresh ids, dated the day after the data."""
    rows = decl.sample(n=n, replace=n > len(decl), random_state=0).copy()
    rows["declaration_id"] = [f"BENCH{i:08d}" for i in range(n)]
    rows["item_no"] = 1
    rows["accepted_date"] = (decl["accepted_date"].max() + pd.Timedelta(days=1)).date()
    return rows.reset_index(drop=True)


def bench_split(root: Path, env: dict[str, str], decl: pd.DataFrame, sizes: list[int]) -> None:
    """Seconds per step of :meth:`riskml.score.Scorer.score`, run in this process."""
    os.environ.update(env)
    from riskml.config import load_area_specs, load_params
    from riskml.score import Scorer

    params = load_params(root / "params.yaml")
    specs = {a: s for a, s in load_area_specs(root / "pipelines").items() if a in params.areas}
    scorer = Scorer(root, params, specs)
    t0 = time.perf_counter()
    scorer.warm()
    print(f"Scorer start (feature store + champions): {time.perf_counter() - t0:.1f} s")
    for n in sizes:
        batch = new_batch(decl, n).astype(str)  # text, as a CSV body arrives
        t0, c0 = time.perf_counter(), time.process_time()
        result = scorer.score(batch)
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
        split = ", ".join(f"{k} {v:.2f} s" for k, v in result.timings.items())
        print(f"Scorer.score {n:,}: {total:.2f} s, CPU {cpu:.2f} s ({split})")
        c0 = time.process_time()
        scorer.score(batch.assign(declaration_id=batch["declaration_id"] + "B"), reasons=False)
        cpu = time.process_time() - c0
        print(f"Scorer.score {n:,} without reasons (as POST /score): CPU {cpu:.2f} s")


def bench_single(root: Path, env: dict[str, str], decl: pd.DataFrame, repeats: int) -> None:
    """One new declaration (JSON-like text values, a fresh id each time) through
    :meth:`riskml.score.Scorer.score` without reasons, ``repeats`` times after 5 warm-ups."""
    os.environ.update(env)
    from riskml.config import load_area_specs, load_params
    from riskml.score import Scorer

    params = load_params(root / "params.yaml")
    specs = {a: s for a, s in load_area_specs(root / "pipelines").items() if a in params.areas}
    scorer = Scorer(root, params, specs)
    scorer.warm()
    row = json.loads(new_batch(decl, 1).to_json(orient="records", date_format="iso"))[0]
    walls, cpus, steps = [], [], {}
    for i in range(repeats + 5):
        batch = pd.DataFrame.from_records([dict(row, declaration_id=f"SINGLE{i:06d}")])
        t0, c0 = time.perf_counter(), time.process_time()
        result = scorer.score(batch, reasons=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if i >= 5:
            walls.append(1000 * wall)
            cpus.append(1000 * cpu)
            for k, v in result.timings.items():
                steps.setdefault(k, []).append(1000 * v)
    split = ", ".join(f"{k} {np.median(v):.1f} ms" for k, v in steps.items())
    print(
        f"Scorer.score of 1 declaration x {repeats} (in process): median {np.median(walls):.1f} ms"
        f", p99 {np.percentile(walls, 99):.1f} ms; CPU median {np.median(cpus):.1f} ms "
        f"(medians per step: {split})"
    )
    if not hasattr(scorer, "check_and_score_many"):  # code before the service's shared passes
        return
    for k in (1, 2, 4):  # k clients' single declarations in one pass (POST /score's ScoreQueue)
        cpus = []
        for i in range(max(repeats // k, 10)):
            batches = [
                pd.DataFrame.from_records([dict(row, declaration_id=f"SHARED{k}{i:05d}{j}")])
                for j in range(k)
            ]
            c0 = time.process_time()
            scorer.check_and_score_many(batches)
            cpus.append(1000 * (time.process_time() - c0))
        print(
            f"{k} single declaration(s) in one pass (check_and_score_many): CPU median "
            f"{np.median(cpus):.1f} ms, {np.median(cpus) / k:.1f} ms per declaration"
        )


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its live children so far (Linux
    ``/proc``; the children: the worker processes of ``--workers N``)."""
    total = 0.0
    for p in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def _riskml(args: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run(
        [str(BIN / "riskml"), *args], env=env, capture_output=True, text=True, check=True
    )
    return proc.stdout.strip()


def bench_predict(root: Path, env: dict[str, str]) -> dict[str, float]:
    """Declarations per second of the champion Booster of each area on 100,000 feature rows."""
    os.environ.update(env)
    from riskml import io
    from riskml.config import load_area_specs, load_params
    from riskml.score import load_champion, predict

    params = load_params(root / "params.yaml")
    specs = load_area_specs(root / "pipelines")
    feats = io.read_dataset(root / "data/features").tail(100_000)
    out = {}
    for area in params.areas:
        if area not in specs:
            continue
        model = load_champion(root, area)
        predict(model, feats.head(1000))  # warm-up
        t0 = time.perf_counter()
        predict(model, feats)
        out[area] = len(feats) / (time.perf_counter() - t0)
        # the trees' own cost: one thread, CPU time (what a busy machine does not distort)
        rows = feats[model.feature_names_].tail(10_000).to_numpy(np.float32)
        c0 = time.process_time()
        model.classifier_.predict(rows, num_threads=1)
        cpu = time.process_time() - c0
        print(
            f"model prediction {area}: {model.classifier_.num_trees()} trees, 10,000 rows on "
            f"one thread: {cpu:.3f} s CPU ({1e9 * cpu / 10_000 / model.classifier_.num_trees():.0f}"
            " ns per tree and row)"
        )
    return out


def bench_score(url: str, token: str, decl: pd.DataFrame, n: int) -> dict[str, float]:
    body = new_batch(decl, n).to_csv(index=False).encode()
    with httpx.Client(base_url=url, timeout=3600) as c:
        t0 = time.perf_counter()
        r = c.post(
            "/score",
            content=body,
            headers={"Authorization": f"Bearer {token}", "content-type": "text/csv"},
            params={"format": "csv"},
        )
        elapsed = time.perf_counter() - t0
    r.raise_for_status()
    return {"n": n, "seconds": elapsed, "per_second": n / elapsed}


def bench_latency(url: str, token: str, clients: int, requests: int, send) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Latencies (ms) of ``send(client, rng, i)`` from ``clients`` threads, ``requests`` each
    (after one warm-up request per client)."""
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        mine = []
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120
        ) as c:
            send(c, rng, -1 - seed).raise_for_status()
            for i in range(requests):
                t0 = time.perf_counter()
                r = send(c, rng, seed * requests + i)
                mine.append(1000 * (time.perf_counter() - t0))
                r.raise_for_status()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.array(latencies)
    return {
        "requests": len(lat),
        "median_ms": float(np.median(lat)),
        "p99_ms": float(np.percentile(lat, 99)),
        "requests_per_second": len(lat) / wall,
    }


def candidates_request(areas: list[str]):  # type: ignore[no-untyped-def]
    """GET /candidates with random filters and pages."""

    def send(c: httpx.Client, rng: random.Random, i: int) -> httpx.Response:
        params: dict[str, object] = {"page": rng.randint(1, 5), "page_size": 50}
        if rng.random() < 0.7:
            params["area"] = rng.choice(areas)
        if rng.random() < 0.3:
            params["kind"] = rng.choice(["model", "random_control"])
        if rng.random() < 0.3:
            params["sort"] = rng.choice(["score", "expected_recovery", "accepted_date"])
        return c.get("/candidates", params=params)

    return send


def declaration_request(ids: list[str]):  # type: ignore[no-untyped-def]
    """GET /declarations/{id} of random candidates."""

    def send(c: httpx.Client, rng: random.Random, i: int) -> httpx.Response:
        return c.get(f"/declarations/{rng.choice(ids)}")

    return send


def single_score_request(decl: pd.DataFrame):  # type: ignore[no-untyped-def]
    """POST /score of one new declaration (JSON, a fresh id each time)."""
    row = json.loads(new_batch(decl, 1).to_json(orient="records", date_format="iso"))[0]

    def send(c: httpx.Client, rng: random.Random, i: int) -> httpx.Response:
        return c.post("/score", json=[dict(row, declaration_id=f"ONE{i + 10_000:09d}")])

    return send


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--score-clients", type=int, default=4, help="clients of the 1-row /score")
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--no-predict", action="store_true", help="skip the prediction benchmark")
    ap.add_argument("--single", type=int, default=0, help="in-process 1-row scores (0: none)")
    ap.add_argument(
        "--workers", type=int, default=1, help="service processes (riskml serve --workers)"
    )
    args = ap.parse_args()
    print(f"start: {_load()} on {os.cpu_count()} cores; {args.workers} service process(es)")
    root = args.root.resolve()
    tmp = Path(tempfile.mkdtemp(prefix="riskml-service-bench-"))
    db = f"sqlite:///{tmp / 'feedback.db'}"
    env = dict(os.environ)
    env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    token = _riskml(
        [
            "tokens",
            "create",
            "bench",
            "--role",
            "auditor",
            "--root",
            str(root),
            "--database-url",
            db,
        ],
        env,
    ).splitlines()[-1]
    url = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen(
        [
            str(BIN / "riskml"),
            "serve",
            "--root",
            str(root),
            "--port",
            str(args.port),
            "--database-url",
            db,
            *(["--workers", str(args.workers)] if args.workers > 1 else []),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "server.log", "w"),  # noqa: SIM115
    )
    try:
        t0 = time.perf_counter()
        while True:
            try:
                if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.perf_counter() - t0 > 300:
                raise SystemExit(f"server did not start; see {tmp / 'server.log'}")
            time.sleep(0.2)
        print(
            f"server up and ready (models loaded and checked) in {time.perf_counter() - t0:.1f} s"
        )
        areas = httpx.get(f"{url}/health/live").json()["areas"]
        from riskml.catalog import Catalog
        from riskml.io import read_dataset

        decl = read_dataset(Catalog(root).declarations)
        ids = pd.read_csv(root / "data/candidates/all_areas.csv", usecols=["declaration_id"])
        for name, clients, send in (
            ("GET /candidates", args.clients, candidates_request(areas)),
            (
                "GET /declarations/{id}",
                args.clients,
                declaration_request(list(ids["declaration_id"])),
            ),
            ("POST /score, 1 declaration", args.score_clients, single_score_request(decl)),
        ):
            cpu0 = _cpu_seconds(server.pid)
            res = bench_latency(url, token, clients, args.requests, send)
            cpu = 1000 * (_cpu_seconds(server.pid) - cpu0) / (res["requests"] + clients)
            print(
                f"{name}, {clients} clients x {args.requests}: median {res['median_ms']:.1f} ms, "
                f"p99 {res['p99_ms']:.1f} ms, {res['requests_per_second']:.0f} req/s, "
                f"server CPU {cpu:.1f} ms per request"
            )
        for n in args.sizes:
            res = bench_score(url, token, decl, n)
            print(
                f"POST /score {n:,} declarations: {res['seconds']:.2f} s, "
                f"{res['per_second']:,.0f} declarations/s, "
                f"{res['per_second'] * len(areas):,.0f} declarations per second per area "
                f"({len(areas)} areas)"
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
    if args.sizes:
        bench_split(root, env, decl, args.sizes)
    if args.single:
        bench_single(root, env, decl, args.single)
    for area, rate in ({} if args.no_predict else bench_predict(root, env)).items():
        print(f"model prediction {area}: {rate:,.0f} declarations/s")
    print(f"done: {_load()}")


if __name__ == "__main__":
    main()
