"""The feedback store and the audit service on a real PostgreSQL server, beside SQLite: the
same tokens, sessions, outcomes (idempotent, contradictions flagged), last-admin guard and
export; an older database gains the new columns. `.ci/run` installs Debian's postgresql, starts
its cluster and sets ``RISKML_TEST_POSTGRES_URL`` and ``RISKML_REQUIRE_POSTGRES`` (in CI these
tests must run); elsewhere they skip, saying why, when no server answers."""

from __future__ import annotations

import re
from datetime import date

import httpx
import pandas as pd
import pytest
from serve_project import AREAS, LiveServer, built_project, project_env
from sqlalchemy import create_engine, inspect, text

from riskml.config import load_area_specs, load_params
from riskml.contract import RiskmlError
from riskml.feedback import FeedbackStore, _Base, export_outcomes
from riskml.serve import create_app


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        return FeedbackStore(f"sqlite:///{tmp_path / 'feedback.db'}")
    url = request.getfixturevalue("pg_url")
    engine = create_engine(url)
    _Base.metadata.drop_all(engine)
    engine.dispose()
    return FeedbackStore(url)


def test_store_behaves_the_same_on_sqlite_and_postgresql(store, tmp_path):
    admin = store.create_token("admin/1", "admin", days=30)
    auditor = store.create_token("ana", "auditor")
    assert store.identify(admin).role == "admin" and store.identify(auditor).name == "ana"
    with pytest.raises(RiskmlError, match="last active admin"):
        store.revoke_token("admin/1")
    new = store.rotate_token("ana", days=10)
    assert store.identify(auditor) is None and store.identify(new).name == "ana"
    opened = store.open_session(new, hours=1)
    assert opened is not None
    session_id, session = opened
    assert store.session(session_id).identity.name == "ana"
    store.close_session(session_id)
    assert store.session(session_id) is None
    fields = {
        "declaration_id": "D1",
        "item_no": 1,
        "risk_area": "revenue",
        "control_kind": "pca",
        "result_date": date(2024, 3, 1),
        "offence_found": True,
        "offence_code": "REV-UV",
        "additional_duty": 55.0,
        "quantity_seized": 0.0,
        "auditor": "Ana",
    }
    first = store.add_outcome(recorded_by="ana", **fields)
    again = store.add_outcome(recorded_by="ana", **fields)
    assert first.created and not again.created and again.id == first.id
    contra = store.add_outcome(recorded_by="ana", **(fields | {"offence_found": False}))
    assert contra.needs_review and contra.conflicts_with == [first.id]
    assert export_outcomes(store, tmp_path / "out.parquet") == 0  # both held back
    store.resolve_outcome(first.id)
    assert export_outcomes(store, tmp_path / "out.parquet") == 1
    assert pd.read_parquet(tmp_path / "out.parquet")["offence_code"].tolist() == ["REV-UV"]
    store.ping()


def test_an_older_database_gains_the_new_columns(pg_url):
    engine = create_engine(pg_url)
    _Base.metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE api_tokens (id SERIAL PRIMARY KEY, name VARCHAR(100) UNIQUE, "
                "role VARCHAR(20), token_hash VARCHAR(64) UNIQUE, created_at TIMESTAMP, "
                "revoked_at TIMESTAMP)"
            )
        )
    store = FeedbackStore(pg_url)
    columns = {c["name"] for c in inspect(engine).get_columns("api_tokens")}
    assert "expires_at" in columns
    assert store.identify(store.create_token("x", "reviewer")).name == "x"
    engine.dispose()


def test_service_on_postgresql(pg_url, tmp_path_factory):
    engine = create_engine(pg_url)
    _Base.metadata.drop_all(engine)
    engine.dispose()
    project = built_project(tmp_path_factory.getbasetemp())
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", project_env(project)["MLFLOW_TRACKING_URI"])
    try:
        params = load_params(project / "params.yaml")
        specs = {a: s for a, s in load_area_specs(project / "pipelines").items() if a in AREAS}
        store = FeedbackStore(pg_url)
        admin = store.create_token("pg-admin", "admin")
        app = create_app(project, params, specs, store=store)
        with LiveServer(app) as server:
            c = httpx.Client(base_url=server.url, timeout=60)
            assert c.get("/health/ready").json()["database"]["status"] == "ready"
            auth = {"authorization": f"Bearer {admin}"}
            r = c.post("/tokens", json={"name": "pg-auditor", "role": "auditor"}, headers=auth)
            assert r.status_code == 201
            aud = {"authorization": f"Bearer {r.json()['token']}"}
            cand = c.get("/candidates", params={"kind": "model", "page_size": 1}, headers=aud)
            item = cand.json()["items"][0]
            body = {
                "declaration_id": item["declaration_id"],
                "item_no": item["item_no"],
                "risk_area": item["area"],
                "offence_found": True,
                "additional_duty": 12.5,
                "result_date": item["accepted_date"],
                "auditor": "PG Auditor",
            }
            assert c.post("/outcomes", json=body, headers=aud).status_code == 201
            assert c.post("/outcomes", json=body, headers=aud).status_code == 200
            assert len(c.get("/outcomes", headers=aud).json()) == 1
            assert c.delete("/tokens/pg-admin", headers=auth).status_code == 409
            login = c.get("/ui/login")
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text).group(1)
            r = c.post(
                "/ui/login",
                data={"token": admin, "csrf_token": csrf},
                headers={"origin": server.url},
            )
            assert r.status_code == 303
            assert c.get("/ui/candidates").status_code == 200
        stored = store.outcomes()
        assert stored["recorded_by"].tolist() == ["pg-auditor"]
    finally:
        mp.undo()
