"""The audit service attacked as a security review would: each attack of issue 12 against a real
uvicorn server (or, to prove that a body is never read, the ASGI app itself) on a real pipeline
run, with its own SQLite feedback database. Every test here failed before the hardening."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
import time

import httpx
import pandas as pd
import pytest
from serve_project import AREAS, LiveServer, built_project, new_batch, project_env

from riskml.config import load_area_specs, load_params
from riskml.contract import RiskmlError
from riskml.feedback import FeedbackStore, export_outcomes
from riskml.serve import create_app
from riskml.serve.security import SESSION_COOKIE


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    project = built_project(tmp_path_factory.getbasetemp())
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", project_env(project)["MLFLOW_TRACKING_URI"])
    params = load_params(project / "params.yaml")
    serve = params.serve.model_copy(update={"max_body_mb": 2.0, "max_batch": 500})
    params = params.model_copy(update={"serve": serve})
    specs = {a: s for a, s in load_area_specs(project / "pipelines").items() if a in AREAS}
    db = tmp_path_factory.mktemp("sec") / "feedback.db"
    store = FeedbackStore(f"sqlite:///{db}")
    tokens = {
        "auditor": store.create_token("Sec Auditor", "auditor"),
        "reviewer": store.create_token("Sec Reviewer", "reviewer"),
        "admin": store.create_token("Sec Admin", "admin"),
    }
    app = create_app(project, params, specs, store=store, check_models=True)
    with LiveServer(app) as server:
        yield {
            "url": server.url,
            "port": server.port,
            "app": app,
            "store": store,
            "tokens": tokens,
            "project": project,
            "params": params,
            "specs": specs,
            "db": db,
        }
    mp.undo()


def _api(world, role: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {world['tokens'][role]}"} if role else {}
    return httpx.Client(base_url=world["url"], headers=headers, timeout=120)


def _candidate(world) -> dict:
    with _api(world, "reviewer") as c:
        return c.get("/candidates", params={"kind": "model", "page_size": 1}).json()["items"][0]


def _sign_in(world, role: str) -> tuple[httpx.Client, str]:
    """A browser-like client signed in to the pages; returns it and the page's CSRF token."""
    c = httpx.Client(base_url=world["url"], timeout=60, headers={"origin": world["url"]})
    login = c.get("/ui/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text).group(1)
    r = c.post("/ui/login", data={"token": world["tokens"][role], "csrf_token": csrf})
    assert r.status_code == 303, r.text
    page = c.get("/ui/candidates")
    assert page.status_code == 200
    return c, re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def _outcome(cand: dict, **over) -> dict:
    body = {
        "declaration_id": cand["declaration_id"],
        "item_no": cand["item_no"],
        "risk_area": cand["area"],
        "offence_found": True,
        "offence_code": "X-1",
        "additional_duty": 10.0,
        "control_kind": "pca",
        "result_date": pd.Timestamp(cand["accepted_date"]).date().isoformat(),
        "auditor": "A. Auditor",
    }
    return body | over


# --- 1. CSRF, sessions, headers ---------------------------------------------------------------


def test_outcome_form_from_another_origin_is_refused(world):
    cand = _candidate(world)
    browser, csrf = _sign_in(world, "auditor")
    form = {
        "item_no": str(cand["item_no"]),
        "risk_area": cand["area"],
        "control_kind": "pca",
        "offence_found": "yes",
        "auditor": "forged",
        "result_date": pd.Timestamp(cand["accepted_date"]).date().isoformat(),
    }
    url = f"/ui/cases/{cand['declaration_id']}/outcome"
    evil = f"http://127.0.0.1:{world['port'] + 1}"  # a page on another port of the same host
    before = len(world["store"].outcomes())
    # the attacker's page cannot read the CSRF token: the post carries the cookie only
    assert browser.post(url, data=form, headers={"origin": evil}).status_code == 403
    # even with the right token, another origin is refused
    r = browser.post(url, data=form | {"csrf_token": csrf}, headers={"origin": evil})
    assert r.status_code == 403
    # same origin without the token: refused too
    assert browser.post(url, data=form).status_code == 403
    assert len(world["store"].outcomes()) == before
    ok = browser.post(url, data=form | {"csrf_token": csrf, "auditor": "real"})
    assert ok.status_code == 303 and "recorded=" in ok.headers["location"]
    assert len(world["store"].outcomes()) == before + 1
    # the sign-in form is protected as well (login CSRF)
    fresh = httpx.Client(base_url=world["url"], timeout=30)
    r = fresh.post(
        "/ui/login", data={"token": world["tokens"]["auditor"]}, headers={"origin": evil}
    )
    assert r.status_code == 403


def test_session_cookie_is_not_the_token_and_sign_out_ends_it(world):
    browser, csrf = _sign_in(world, "reviewer")
    cookie = browser.cookies.get(SESSION_COOKIE)
    assert cookie and cookie != world["tokens"]["reviewer"]
    with sqlite3.connect(world["db"]) as db:
        stored = " ".join(str(v) for row in db.execute("select * from ui_sessions") for v in row)
    assert cookie not in stored  # only a hash of the session id is stored
    r = browser.post("/ui/logout", data={"csrf_token": csrf})
    assert r.status_code == 303
    replay = httpx.Client(base_url=world["url"], cookies={SESSION_COOKIE: cookie}, timeout=30)
    r = replay.get("/ui/candidates")
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    # the API never accepts the page cookie
    assert replay.get("/candidates").status_code == 401


def test_cookie_attributes_and_secure_setting(world, tmp_path):
    login = httpx.get(f"{world['url']}/ui/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text).group(1)
    r = httpx.post(
        f"{world['url']}/ui/login",
        data={"token": world["tokens"]["reviewer"], "csrf_token": csrf},
        cookies=login.cookies,
        headers={"origin": world["url"]},
    )
    set_cookie = r.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie
    assert "secure" not in set_cookie.replace("samesite", "")  # plain HTTP deployment
    params = world["params"]
    secure = params.model_copy(
        update={"serve": params.serve.model_copy(update={"cookie_secure": True})}
    )
    store = FeedbackStore(f"sqlite:///{tmp_path / 'f.db'}")
    token = store.create_token("tls", "reviewer")
    app = create_app(world["project"], secure, world["specs"], store=store)
    with LiveServer(app) as server:
        login = httpx.get(f"{server.url}/ui/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text).group(1)
        login_cookie = re.search(r"riskml_login=([^;]+)", login.headers["set-cookie"]).group(1)
        assert "; secure" in login.headers["set-cookie"].lower()
        r = httpx.post(
            f"{server.url}/ui/login",
            data={"token": token, "csrf_token": csrf},
            cookies={"riskml_login": login_cookie},  # as a browser over TLS would send it
            headers={"origin": server.url},
        )
        assert "; secure" in r.headers["set-cookie"].lower()
        assert "strict-transport-security" in r.headers


def test_security_headers_on_pages_and_api(world):
    with _api(world, "reviewer") as c:
        for path in ("/ui/login", "/candidates", "/health/live", "/docs"):
            h = c.get(path).headers
            assert "frame-ancestors 'none'" in h["content-security-policy"], path
            assert "script-src 'self'" in h["content-security-policy"]
            assert h["x-content-type-options"] == "nosniff"
            assert h["x-frame-options"] == "DENY"
            assert h["referrer-policy"] == "same-origin"
        assert c.get("/candidates").headers["cache-control"] == "no-store"


def test_tokens_expire_rotate_and_the_last_admin_stays(world, tmp_path):
    store = world["store"]
    short = store.create_token("short-lived", "reviewer", days=1e-9)
    assert store.identify(short) is None  # expired at once
    with _api(world, "admin") as admin:
        r = admin.post("/tokens", json={"name": "rot/ating", "role": "reviewer", "days": 30})
        assert r.status_code == 201 and r.json()["expires_at"]
        old = r.json()["token"]
        r = admin.post("/tokens/rot/ating/rotate")
        assert r.status_code == 200, r.text
        new = r.json()["token"]
        assert new != old
        assert (
            httpx.get(
                f"{world['url']}/outcomes", headers={"authorization": f"Bearer {old}"}
            ).status_code
            == 401
        )
        assert (
            httpx.get(
                f"{world['url']}/outcomes", headers={"authorization": f"Bearer {new}"}
            ).status_code
            == 200
        )
        # a name with '/' can be revoked through the API
        assert admin.delete("/tokens/rot/ating").status_code == 200
        # the last active admin cannot be revoked (not even by itself)
        r = admin.delete("/tokens/Sec Admin")
        assert r.status_code == 409 and "last active admin" in r.text
        assert store.identify(world["tokens"]["admin"]) is not None
        r = admin.post("/tokens", json={"name": "admin-2", "role": "admin"})
        assert r.status_code == 201
        assert admin.delete("/tokens/admin-2").status_code == 200
        bad = admin.post("/tokens", json={"name": "evil\u202egnp.exe", "role": "reviewer"})
        assert bad.status_code == 422 and "text-direction" in bad.text


# --- 2. bodies: limit and authentication before parsing ---------------------------------------


def _asgi(app, method: str, path: str, headers: dict[str, str]) -> tuple[int, bool]:
    """Call the ASGI app with a body that must never be read: (status, body was read)."""
    read = {"called": False}
    sent: list[dict] = []

    async def receive():
        read["called"] = True
        return {"type": "http.request", "body": b"x" * 1024, "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], read["called"]


def test_anonymous_and_oversized_bodies_are_refused_unread(world):
    app = world["app"]
    huge = {"content-type": "application/json", "content-length": str(125 * 2**20)}
    for path in ("/outcomes", "/tokens", "/score"):
        assert _asgi(app, "POST", path, huge) == (413, False), path
    small = {"content-type": "application/json", "content-length": "1000"}
    for path in ("/outcomes", "/tokens", "/score"):
        assert _asgi(app, "POST", path, small) == (401, False), path  # anonymous
    auditor = small | {"authorization": f"Bearer {world['tokens']['auditor']}"}
    big_outcome = auditor | {"content-length": str(200 * 1024)}
    assert _asgi(app, "POST", "/outcomes", big_outcome) == (413, False)
    # over real HTTP: an anonymous 5 MB post, and a chunked body without Content-Length
    with _api(world) as c:
        r = c.post(
            "/outcomes", content=b"[" * (5 * 2**20), headers={"content-type": "application/json"}
        )
        assert r.status_code in (401, 413)
    with _api(world, "auditor") as c:

        def chunks():
            for _ in range(40):
                yield b" " * 100_000

        r = c.post("/score", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413  # 4 MB streamed against a 2 MB limit
        assert c.get("/health/live").status_code == 200


# --- 3. outcomes held to the contract, idempotent, contradictions flagged ----------------------


def test_out_of_range_outcomes_are_refused_and_export_keeps_working(world, tmp_path):
    cand = _candidate(world)
    store = world["store"]
    before = len(store.outcomes())
    accepted = pd.Timestamp(cand["accepted_date"])
    bad = [
        _outcome(cand, result_date="2924-01-01"),
        _outcome(
            cand, result_date=(pd.Timestamp.today() + pd.Timedelta(days=2)).date().isoformat()
        ),
        _outcome(cand, result_date=(accepted - pd.Timedelta(days=1)).date().isoformat()),
        _outcome(cand, result_date="1800-01-01"),
        _outcome(cand, item_no=10**9),
        _outcome(cand, offence_found=False, additional_duty=5.0),
        _outcome(cand, auditor="\u202eroduA"),
        _outcome(cand, unknown_field=1),
    ]
    spec = world["specs"][cand["area"]]
    blind = [
        k
        for k in ("documentary", "physical", "scanner", "pca", "random")
        if k not in spec.detectable_by
    ]
    if blind:
        clean = {"offence_found": False, "additional_duty": 0.0, "offence_code": None}
        bad.append(_outcome(cand, control_kind=blind[0], **clean))
    with _api(world, "auditor") as c:
        for body in bad:
            r = c.post("/outcomes", json=body)
            assert r.status_code == 422, (body, r.text)
            assert r.json()["detail"][0]["msg"]
        for raw in (b"NaN", b"Infinity", b"1e999", b"-1"):
            text = json.dumps(_outcome(cand)).replace("10.0", raw.decode())
            r = c.post(
                "/outcomes", content=text.encode(), headers={"content-type": "application/json"}
            )
            assert r.status_code == 422, (raw, r.text)
    assert len(store.outcomes()) == before
    assert export_outcomes(store, tmp_path / "export.parquet") >= 0  # still exports


def test_repeated_posts_store_one_outcome_and_contradictions_are_flagged(world, tmp_path):
    with _api(world, "reviewer") as c:
        cand = c.get("/candidates", params={"kind": "model", "page_size": 5}).json()["items"][3]
    store = world["store"]
    body = _outcome(cand, offence_code="DUP-1")
    with _api(world, "auditor") as c:
        first = c.post("/outcomes", json=body)
        assert first.status_code == 201 and first.json()["created"]
        for _ in range(2):
            again = c.post("/outcomes", json=body)
            assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
        keyed = _outcome(
            cand,
            control_kind="physical"
            if "physical" in world["specs"][cand["area"]].detectable_by
            else "pca",
            offence_code="KEY-1",
        )
        k1 = c.post("/outcomes", json=keyed, headers={"idempotency-key": "client-42"})
        k2 = c.post("/outcomes", json=keyed, headers={"idempotency-key": "client-42"})
        assert k1.json()["id"] == k2.json()["id"] and k2.status_code == 200
        reuse = c.post(
            "/outcomes",
            json=keyed | {"offence_code": "KEY-2"},
            headers={"idempotency-key": "client-42"},
        )
        assert reuse.status_code == 409
        contra = c.post(
            "/outcomes",
            json=body | {"offence_found": False, "additional_duty": 0.0, "offence_code": None},
        )
        assert contra.status_code == 201
        out = contra.json()
        assert out["needs_review"] and first.json()["id"] in out["conflicts_with"]
    mine = store.outcomes()
    mine = mine[
        (mine["declaration_id"] == cand["declaration_id"]) & (mine["control_kind"] == "pca")
    ]
    assert len(mine) == 2 and mine["needs_review"].all()
    exported = (
        pd.read_parquet(tmp_path / "x.parquet")
        if export_outcomes(store, tmp_path / "x.parquet")
        else pd.DataFrame(columns=["declaration_id", "control_kind"])
    )
    held = exported[
        (exported["declaration_id"] == cand["declaration_id"]) & (exported["control_kind"] == "pca")
    ]
    assert held.empty  # held back until resolved
    assert store.resolve_outcome(int(first.json()["id"])) == 1
    export_outcomes(store, tmp_path / "y.parquet")
    kept = pd.read_parquet(tmp_path / "y.parquet")
    kept = kept[
        (kept["declaration_id"] == cand["declaration_id"]) & (kept["control_kind"] == "pca")
    ]
    assert len(kept) == 1 and bool(kept["offence_found"].iloc[0])


# --- 4. malformed bodies: 4xx, never a 500, always in the log ---------------------------------


def test_malformed_bodies_get_4xx_and_every_error_is_logged(world, caplog):
    batch = new_batch(world["project"], 3, start=80)
    rows = json.loads(batch.to_json(orient="records", date_format="iso"))
    only_keys = [{"declaration_id": "NEWX1", "item_no": 1}]
    huge_value = json.dumps(rows).replace(str(rows[0]["cif_value"]), "1e999", 1)
    nested = b"[" * 100_000 + b"]" * 100_000
    with caplog.at_level(logging.INFO, logger="riskml.serve"), _api(world, "auditor") as c:
        cases = [
            ("/score", json.dumps(only_keys).encode()),
            ("/score", huge_value.encode()),
            ("/score", nested),
            ("/score", json.dumps([{"declaration_id": {"a": 1}, "item_no": [1]}]).encode()),
            ("/outcomes", b'{"declaration_id": "x", "additional_duty": NaN}'),
            ("/outcomes", nested[:60_000]),
            ("/outcomes", b"\xff\xfe"),
        ]
        for path, body in cases:
            r = c.post(path, content=body, headers={"content-type": "application/json"})
            assert 400 <= r.status_code < 500, (path, body[:80], r.status_code, r.text[:300])
            assert "detail" in r.json()
        r = c.post("/score", content=b"a,b\n1,2", headers={"content-type": "text/csv"})
        assert r.status_code == 422
        # a value that is not a number is a data problem of one row, not a malformed body:
        # the row is scored without it and listed with its reason
        r = c.post("/score", json=[dict(rows[0], cif_value="NaN")])
        assert r.status_code == 200, r.text
        (note,) = r.json()["data_quality"]
        assert note["scored"] and "'NaN' is not a number" in note["reasons"]
        r = c.post("/score", content=b"x", headers={"content-type": "application/xml"})
        assert r.status_code == 415
        deadline = time.monotonic() + 5  # the server thread logs once the response is sent
        while "POST /score 415" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
    text = caplog.text
    assert text.count("POST /score 422") >= 5 and "POST /outcomes 422" in text
    assert "POST /score 415" in text


# --- 5. readiness and missing models ----------------------------------------------------------


def test_missing_model_store_fails_start_and_readiness_without_creating_it(
    world, tmp_path, monkeypatch
):
    missing = tmp_path / "nowhere" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{missing}")
    store = FeedbackStore(f"sqlite:///{tmp_path / 'f.db'}")
    token = store.create_token("aud", "auditor")
    with pytest.raises(RiskmlError, match="no MLflow store"):
        create_app(
            world["project"], world["params"], world["specs"], store=store, check_models=True
        )
    assert not missing.exists()
    app = create_app(world["project"], world["params"], world["specs"], store=store)
    with LiveServer(app) as server:
        ready = httpx.get(f"{server.url}/health/ready")
        assert ready.status_code == 503 and "no MLflow store" in ready.text
        assert httpx.get(f"{server.url}/health/live").status_code == 200
        batch = new_batch(world["project"], 2)
        body = json.loads(batch.to_json(orient="records", date_format="iso"))
        r = httpx.post(
            f"{server.url}/score",
            json=body,
            headers={"authorization": f"Bearer {token}"},
            timeout=60,
        )
        assert r.status_code == 503 and "no MLflow store" in r.text
    assert not missing.exists()


def test_ready_names_the_loaded_models(world):
    r = httpx.get(f"{world['url']}/health/ready")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ready" and set(body["models"]["models"]) == set(AREAS)
    assert all("riskml-" in v for v in body["models"]["models"].values())


def test_serve_refuses_a_missing_feedback_database(tmp_path):
    with pytest.raises(RiskmlError, match="no feedback database"):
        FeedbackStore(f"sqlite:///{tmp_path / 'absent.db'}", create=False)
    assert not (tmp_path / "absent.db").exists()


# --- 6. offline documentation and the OpenAPI document ---------------------------------------


def test_docs_are_offline_and_openapi_documents_security_bodies_and_errors(world):
    with _api(world) as c:
        page = c.get("/docs")
        assert page.status_code == 200
        assert "http://" not in page.text and "https://" not in page.text  # no CDN
        for src in re.findall(r'(?:src|href)="([^"]+)"', page.text):
            asset = c.get(src)
            assert asset.status_code == 200 and len(asset.content) > 100, src
        spec = c.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert any(s.get("scheme") == "bearer" for s in schemes.values())
    score = spec["paths"]["/score"]["post"]
    assert score["security"]
    content = score["requestBody"]["content"]
    assert {"application/json", "text/csv"} <= set(content)
    assert "cif_value" in json.dumps(content["application/json"]["schema"])
    for code in ("401", "403", "413", "415", "422", "503"):
        assert code in score["responses"], code
    assert "ErrorBody" in json.dumps(spec["paths"]["/outcomes"]["post"]["responses"]["422"])
    with _api(world, "auditor") as c:
        r = c.post("/outcomes", json={"declaration_id": "x"})
        assert r.status_code == 422
        problem = r.json()["detail"][0]
        assert set(problem) == {"loc", "msg", "type"}  # as ErrorItem declares


def test_a_right_to_left_override_in_stored_names_is_shown_not_obeyed(world):
    """Names are refused with direction controls at the door; one already stored (an older
    database) is displayed with the control shown, not reversing the text."""
    from sqlalchemy.orm import Session

    from riskml.feedback import TokenRow, _now, hash_token

    token = "rml_bidi-test-token-0123456789abcdef"
    with Session(world["store"].engine) as s, s.begin():
        s.add(
            TokenRow(
                name="ana\u202eexe.gnp",
                role="reviewer",
                token_hash=hash_token(token),
                created_at=_now(),
            )
        )
    world["tokens"]["bidi"] = token
    browser, _ = _sign_in(world, "bidi")
    page = browser.get("/ui/candidates").text
    assert "\u202e" not in page and "ana[U+202E]exe.gnp" in page
