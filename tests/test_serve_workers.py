"""Several service processes on one feedback database (``riskml serve --workers N``): outcome
writes from different processes still see each other (an identical post is stored once, a
contradiction is flagged), and no acknowledged write is lost when every process is killed with
SIGKILL."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import httpx
import pandas as pd
import pytest
from serve_project import built_project, free_port, project_env
from sqlalchemy import create_engine

from riskml.catalog import Catalog
from riskml.feedback import FeedbackStore, _Base
from riskml.io import read_dataset

BIN = Path(sys.executable).parent
OUTCOME = {
    "declaration_id": "D1",
    "item_no": 1,
    "risk_area": "revenue",
    "control_kind": "documentary",
    "result_date": date(2024, 9, 2),
    "offence_found": True,
    "offence_code": "REV-UV",
    "additional_duty": 100.0,
    "quantity_seized": 0.0,
    "auditor": "A. Auditor",
}


def _write(url: str, start: multiprocessing.synchronize.Event, n: int) -> list[int]:  # type: ignore[name-defined]
    """In a process of its own: ``n`` posts of the same outcome for each of 10 items."""
    store = FeedbackStore(url)
    start.wait()
    ids = []
    for i in range(n):
        fields = dict(OUTCOME, declaration_id=f"D{i % 10}")
        ids.append(store.add_outcome(recorded_by="auditor-1", **fields).id)
    return ids


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'feedback.db'}"
    url = request.getfixturevalue("pg_url")
    engine = create_engine(url)
    _Base.metadata.drop_all(engine)
    engine.dispose()
    return url


def test_identical_posts_from_several_processes_are_stored_once(store_url):
    url = store_url
    FeedbackStore(url)  # the tables exist before the writers start
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Manager().Event()
    with ctx.Pool(4) as pool:
        results = [pool.apply_async(_write, (url, start, 40)) for _ in range(4)]
        time.sleep(2)  # every writer waiting at the start line
        start.set()
        ids = [r.get(timeout=120) for r in results]
    stored = FeedbackStore(url).outcomes()
    assert len(stored) == 10  # 160 posts of 10 outcomes, from 4 processes
    assert not stored["needs_review"].any()
    for i in range(10):  # every process got the one stored id of each outcome
        assert {ids[p][j] for p in range(4) for j in range(i, 40, 10)} == {
            int(stored.loc[stored["declaration_id"] == f"D{i}", "id"].iloc[0])
        }
    # a contradiction from another process is seen and flagged
    other = FeedbackStore(url)
    rec = other.add_outcome(recorded_by="auditor-2", **dict(OUTCOME, additional_duty=5.0))
    assert rec.created and rec.needs_review and len(rec.conflicts_with) == 1


def _serve(project: Path, env: dict[str, str], db: str, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "riskml"), "serve", "--root", str(project), "--port", str(port)]
        + ["--database-url", db, "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: SIGKILL reaches every worker
    )


def _wait_ready(server: subprocess.Popen, url: str) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stderr.read()
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("riskml serve --workers 2 did not become ready")


def _workers(server: subprocess.Popen) -> set[int]:
    """Process ids in the server's process group other than the supervisor."""
    out = subprocess.run(["ps", "-o", "pid=,pgid=", "-e"], capture_output=True, text=True).stdout
    return {
        int(pid)
        for pid, group in (line.split() for line in out.splitlines())
        if int(group) == server.pid and int(pid) != server.pid
    }


def test_two_worker_processes_lose_no_acknowledged_outcome_under_kill_9(tmp_path_factory):
    project = built_project(tmp_path_factory.getbasetemp())
    env = project_env(project)
    db = f"sqlite:///{tmp_path_factory.mktemp('workers') / 'feedback.db'}"
    token = FeedbackStore(db).create_token("auditor-1", "auditor")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cands = pd.read_csv(project / "data/candidates/revenue.csv", dtype={"hs_code": str})
    cands = cands[cands["selection_kind"] == "model"].drop_duplicates("declaration_id").head(12)
    server = _serve(project, env, db, port)
    try:
        _wait_ready(server, url)
        assert len(_workers(server)) >= 2  # the supervisor's two service processes

        def post(i: int) -> tuple[int, dict]:
            row = cands.iloc[i % len(cands)]
            body = {
                "declaration_id": str(row["declaration_id"]),
                "item_no": int(row["item_no"]),
                "risk_area": str(row["area"]),
                "offence_found": bool(i % 2),
                "additional_duty": 10.0 * (i % 2),
                "auditor": "A. Auditor",
            }
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
                r = c.post("/outcomes", json=body)
            return r.status_code, r.json()

        # 12 items, each posted 4 times identically (48 posts from 8 clients at once)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(post, [i % 12 for i in range(48)]))
        acknowledged = {a["id"] for code, a in answers if code in (200, 201)}
        assert all(code in (200, 201) for code, _ in answers), answers
        assert sum(code == 201 for code, _ in answers) == 12  # one stored per item
        # scoring in a worker process names the model version
        decl = read_dataset(Catalog(project).declarations)
        day = (decl["accepted_date"].max() + pd.Timedelta(days=1)).date().isoformat()
        row = decl.tail(1).assign(declaration_id="NEWWORKER1", accepted_date=day)
        body = row.astype(str).to_dict("records")
        r = httpx.post(
            f"{url}/score", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=120
        )
        assert r.status_code == 200 and set(r.json()["models"]) and r.headers["X-Riskml-Models"]
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
    stored = FeedbackStore(db).outcomes()
    assert acknowledged <= set(stored["id"].astype(int))
    assert len(stored) == 12 and not stored["needs_review"].any()


def test_workers_whose_models_do_not_load_stop_the_service_with_the_reason(tmp_path_factory):
    project = built_project(tmp_path_factory.getbasetemp())
    env = project_env(project)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path_factory.mktemp('none') / 'mlflow.db'}"
    db = f"sqlite:///{tmp_path_factory.mktemp('failing') / 'feedback.db'}"
    FeedbackStore(db).create_token("admin-1", "admin")
    server = _serve(project, env, db, free_port())
    try:
        _, err = server.communicate(timeout=240)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
    assert server.returncode != 0
    assert "no MLflow store" in err  # the worker's reason, once, from the parent
