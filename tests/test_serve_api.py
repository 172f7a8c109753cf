"""The audit service over real HTTP: a uvicorn server on a loopback port, on the outputs of a
real (small) pipeline run, with a real SQLite feedback database. Every endpoint, every role
(401 without or with a bad token, 403 for the wrong role) and bad input (nothing written)."""

from __future__ import annotations

import io
import json
import logging

import httpx
import pandas as pd
import pytest
from serve_project import AREAS, LiveServer, built_project, new_batch, project_env

from riskml.catalog import Catalog
from riskml.config import load_area_specs, load_params
from riskml.feedback import FeedbackStore, hash_token
from riskml.io import read_dataset
from riskml.serve import create_app
from riskml.serve.data import render_json


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    project = built_project(tmp_path_factory.getbasetemp())
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", project_env(project)["MLFLOW_TRACKING_URI"])
    params = load_params(project / "params.yaml")
    params = params.model_copy(update={"serve": params.serve.model_copy(update={"max_batch": 500})})
    specs = {a: s for a, s in load_area_specs(project / "pipelines").items() if a in AREAS}
    db = tmp_path_factory.mktemp("db") / "feedback.db"
    store = FeedbackStore(f"sqlite:///{db}")
    tokens = {
        role: store.create_token(f"{role}-1", role) for role in ("auditor", "reviewer", "admin")
    }
    app = create_app(project, params, specs, store=store)
    with LiveServer(app) as server:
        yield {
            "url": server.url,
            "store": store,
            "tokens": tokens,
            "project": project,
            "db": db,
            "app": app,
        }
    mp.undo()


def _client(service, role: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {service['tokens'][role]}"} if role else {}
    return httpx.Client(base_url=service["url"], headers=headers, timeout=120)


def _a_candidate(service, kind: str = "model") -> dict:
    with _client(service, "reviewer") as c:
        items = c.get("/candidates", params={"kind": kind, "page_size": 1}).json()["items"]
    return items[0]


def test_health_is_the_only_anonymous_endpoint(service):
    with _client(service) as c:
        assert c.get("/health").json()["status"] == "ok"
        assert c.get("/docs").status_code == 200  # OpenAPI page
        schema = c.get("/openapi.json").json()
        assert {"/candidates", "/score", "/outcomes", "/declarations/{declaration_id}"} <= set(
            schema["paths"]
        )
        for method, path in [
            ("GET", "/candidates"),
            ("GET", "/declarations/X"),
            ("POST", "/score"),
            ("POST", "/outcomes"),
            ("GET", "/outcomes"),
            ("GET", "/tokens"),
        ]:
            r = c.request(method, path)
            assert r.status_code == 401, (method, path, r.text)
        bad = c.get("/candidates", headers={"Authorization": "Bearer rml_not-a-token"})
        assert bad.status_code == 401


def test_roles_are_enforced(service):
    cand = _a_candidate(service)
    outcome = {
        "declaration_id": cand["declaration_id"],
        "item_no": cand["item_no"],
        "risk_area": cand["area"],
        "offence_found": False,
        "auditor": "R. Viewer",
    }
    before = len(service["store"].outcomes())
    with _client(service, "reviewer") as c:
        assert c.get("/candidates").status_code == 200
        assert c.get(f"/declarations/{cand['declaration_id']}").status_code == 200
        assert c.post("/outcomes", json=outcome).status_code == 403
        assert c.post("/score", json=[]).status_code == 403
        assert c.get("/tokens").status_code == 403
    with _client(service, "auditor") as c:
        assert c.get("/tokens").status_code == 403
        assert c.post("/tokens", json={"name": "x", "role": "admin"}).status_code == 403
    assert len(service["store"].outcomes()) == before
    with _client(service, "admin") as c:
        r = c.post("/tokens", json={"name": "temp-reviewer", "role": "reviewer"})
        assert r.status_code == 201
        token = r.json()["token"]
        listed = c.get("/tokens").json()
        assert "temp-reviewer" in [t["name"] for t in listed]
        assert token not in json.dumps(listed) and hash_token(token) not in json.dumps(listed)
        auth = {"Authorization": f"Bearer {token}"}
        assert c.get("/candidates", headers=auth).status_code == 200
        assert c.delete("/tokens/temp-reviewer").status_code == 200
        assert c.get("/candidates", headers=auth).status_code == 401  # revoked


def test_candidates_filter_sort_page_and_csv(service):
    with _client(service, "reviewer") as c:
        everything = c.get("/candidates", params={"page_size": 1000}).json()
        assert everything["total"] == len(everything["items"]) == 120  # 2 areas x 60
        ipr = c.get("/candidates", params={"area": "ipr", "page_size": 1000}).json()
        assert ipr["total"] == 60 and {i["area"] for i in ipr["items"]} == {"ipr"}
        rnd = c.get("/candidates", params={"kind": "random_control", "page_size": 1000}).json()
        assert rnd["total"] == 12 and all(i["reasons"].startswith("random") for i in rnd["items"])
        office = everything["items"][0]["office"]
        by_office = c.get("/candidates", params={"office": office, "page_size": 1000}).json()
        assert by_office["total"] == sum(i["office"] == office for i in everything["items"])
        dates = sorted(i["accepted_date"] for i in everything["items"])
        mid = dates[len(dates) // 2]
        later = c.get("/candidates", params={"date_from": mid, "page_size": 1000}).json()
        assert later["total"] == sum(d >= mid for d in dates)
        p1 = c.get("/candidates", params={"page_size": 7, "sort": "score"}).json()["items"]
        p2 = c.get("/candidates", params={"page_size": 7, "page": 2, "sort": "score"}).json()
        scores = [i["score"] for i in p1 + p2["items"]]
        assert scores == sorted(scores, reverse=True)
        keys = [(i["area"], i["declaration_id"], i["item_no"]) for i in p1 + p2["items"]]
        assert len(set(keys)) == 14
        csv = c.get("/candidates", params={"area": "revenue", "format": "csv", "page_size": 1000})
        assert csv.headers["content-type"].startswith("text/csv")
        frame = pd.read_csv(io.StringIO(csv.text))
        assert len(frame) == 60 and "selection_kind" in frame.columns
        for params in (
            {"area": "smuggling"},
            {"date_from": "yesterday"},
            {"kind": "x"},
            {"page": 0},
        ):
            r = c.get("/candidates", params=params)
            assert r.status_code == 422, params
        assert "smuggling" in c.get("/candidates", params={"area": "smuggling"}).text


def test_a_candidate_page_is_the_rendering_of_its_rows_byte_for_byte(service):
    """The page body is spliced from rows rendered once at start-up: the bytes a JSON response
    of the same rows gives (filters, sorts and pages, empty pages included)."""
    from riskml.serve.data import CandidateQuery, render_json

    data = service["app"].state.service.data
    queries = [
        CandidateQuery(page_size=50),
        CandidateQuery(area="ipr", sort="score", page=2, page_size=7),
        CandidateQuery(kind="random_control", sort="accepted_date", page_size=1000),
        CandidateQuery(area="revenue", page=99, page_size=50),  # past the end: no items
    ]
    for q in queries:
        total, items = data.query_records(q)
        expect = {"total": total, "page": q.page, "page_size": q.page_size, "items": items}
        assert data.query_json(q) == render_json(expect)
    with _client(service, "reviewer") as c:
        r = c.get("/candidates", params={"area": "ipr", "sort": "score", "page": 2, "page_size": 7})
        assert r.content == render_json(r.json()).encode("utf-8")
        assert r.content == data.query_json(queries[1]).encode("utf-8")


def test_declaration_case_has_scores_reasons_and_peers(service):
    cand = _a_candidate(service)
    with _client(service, "auditor") as c:
        case = c.get(f"/declarations/{cand['declaration_id']}").json()
        assert case["declaration_id"] == cand["declaration_id"]
        assert set(case["scores"]) == set(AREAS)
        assert case["scores"][cand["area"]][str(cand["item_no"])] == pytest.approx(cand["score"])
        raises = [r for r in case["reasons"] if r["direction"] == "raises"]
        assert raises and all(r["sentence"] for r in raises)
        assert len(case["peers"]) == len(case["items"])
        assert {"peer_declarations", "peer_median_unit_value", "importer_controls"} <= set(
            case["peers"][0]
        )
        assert c.get("/declarations/D-NOPE").status_code == 404


def test_a_case_is_rendered_once_and_its_recorded_outcomes_stay_current(service):
    """The stored part of a case is kept rendered (ServiceData.case_json); the outcomes
    recorded through the service are read on every request: an outcome posted after a case was
    read shows on the next read, and the rest of the case is byte for byte the same."""
    cand = _a_candidate(service, "random_control")
    path = f"/declarations/{cand['declaration_id']}"
    with _client(service, "auditor") as c:
        first = c.get(path)
        assert first.headers["content-type"] == "application/json"
        body = {
            "declaration_id": cand["declaration_id"],
            "item_no": cand["item_no"],
            "risk_area": cand["area"],
            "control_kind": "physical",
            "offence_found": False,
            "auditor": "C. Cache",
        }
        posted = c.post("/outcomes", json=body)
        assert posted.status_code == 201, posted.text
        second = c.get(path)
    before, after = first.json(), second.json()
    assert len(after["recorded_outcomes"]) == len(before["recorded_outcomes"]) + 1
    assert after["recorded_outcomes"][-1]["auditor"] == "C. Cache"
    assert {k: v for k, v in after.items() if k != "recorded_outcomes"} == {
        k: v for k, v in before.items() if k != "recorded_outcomes"
    }
    data = service["app"].state.service.data
    assert data.case_json(cand["declaration_id"]) is data.case_json(cand["declaration_id"])
    expected = data.case(cand["declaration_id"]) | {"recorded_outcomes": after["recorded_outcomes"]}
    assert second.content == render_json(expected).encode("utf-8")


def test_outcome_is_stored_with_who_and_bad_input_writes_nothing(service):
    cand = _a_candidate(service)
    good = {
        "declaration_id": cand["declaration_id"],
        "item_no": cand["item_no"],
        "risk_area": cand["area"],
        "offence_found": True,
        "offence_code": "REV-UV",
        "additional_duty": 1234.5,
        "auditor": "A. Auditor",
    }
    store = service["store"]
    before = len(store.outcomes())
    with _client(service, "auditor") as c:
        bad_inputs = [
            dict(good, risk_area="smuggling"),
            dict(good, item_no="abc"),
            dict(good, additional_duty=-1),
            dict(good, declaration_id="D-UNKNOWN"),
            dict(good, control_kind="telepathy"),
            {k: v for k, v in good.items() if k != "auditor"},
        ]
        for body in bad_inputs:
            r = c.post("/outcomes", json=body)
            assert r.status_code == 422, (body, r.text)
        r = c.post(
            "/outcomes",
            content=b'{"declaration_id": ',
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 422
        assert len(store.outcomes()) == before
        r = c.post("/outcomes", json=good)
        assert r.status_code == 201 and r.json()["recorded_by"] == "auditor-1"
    stored = store.outcomes().iloc[-1]
    assert stored["recorded_by"] == "auditor-1" and stored["auditor"] == "A. Auditor"
    assert stored["additional_duty"] == 1234.5 and bool(stored["offence_found"])
    with _client(service, "reviewer") as c:
        case = c.get(f"/declarations/{cand['declaration_id']}").json()
        assert case["recorded_outcomes"][-1]["offence_code"] == "REV-UV"
        assert len(c.get("/outcomes").json()) == before + 1


def test_score_json_and_csv_batches(service):
    batch = new_batch(service["project"], 40)
    body = json.loads(batch.to_json(orient="records", date_format="iso"))
    with _client(service, "auditor") as c:
        r = c.post("/score", json={"declarations": body})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["items"] == 40
        first = out["scores"][0]
        assert set(AREAS) <= set(first) and 0 <= first["revenue"] <= 1
        csv_text = batch.assign(accepted_date=batch["accepted_date"].dt.date).to_csv(index=False)
        r = c.post(
            "/score",
            content=csv_text.encode(),
            headers={"content-type": "text/csv"},
            params={"format": "csv"},
        )
        assert r.status_code == 200, r.text
        scored = pd.read_csv(io.StringIO(r.text))
        assert len(scored) == 40
        merged = pd.DataFrame(out["scores"]).merge(scored, on=["declaration_id", "item_no"])
        assert (merged["revenue_x"] - merged["revenue_y"]).abs().max() < 1e-9


def test_score_gives_every_row_a_score_or_a_stated_reason(service):
    """Deliberately broken rows: a bad value the row can be scored without (a number, a
    transport code, a missing party or office) is scored with the value missing (or unknown)
    and listed; a row that cannot be scored
    (no date, no valid HS code, a repeated key) is listed with its reason and areas. Every
    input row is counted once: in the scores or on the data-quality list as not scored."""
    batch = new_batch(service["project"], 12, start=50)
    body = json.loads(batch.to_json(orient="records", date_format="iso"))
    body[3]["cif_value"] = "lots"
    body[4]["importer_id"] = None  # a missing party: scored with the importer unknown
    body[5]["office"] = " "
    body[6]["gross_mass_kg"] = -2
    body[7]["transport_mode"] = "camel"
    body[8]["accepted_date"] = "2024-02-30"
    body[9]["hs_code"] = "12AB"
    body[10] = dict(body[11])  # the same key twice
    unseen = dict(body[0], declaration_id="NEW-UNSEEN", importer_id="IMP-NEVER-SEEN")
    unseen.pop("supplier_id")  # optional field missing
    with _client(service, "auditor") as c:
        r = c.post("/score", json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        quality = {q["row"]: q for q in out["data_quality"]}  # 1-based rows of the batch
        assert set(quality) == {4, 5, 6, 7, 8, 9, 10, 11, 12}
        repaired = ((4, "cif_value"), (5, "importer_id"), (6, "office"))
        for row, field in (*repaired, (7, "gross_mass_kg"), (8, "transport_mode")):
            assert quality[row]["scored"] and field in quality[row]["reasons"], quality[row]
            assert quality[row]["areas_not_scored"] == ""
        for row, words in ((9, "not a date"), (10, "not 6 to 10 digits"), (11, "duplicate key")):
            assert not quality[row]["scored"] and words in quality[row]["reasons"]
            assert quality[row]["areas_not_scored"].split(";") == AREAS
        assert out["not_scored"] == 4  # rows 9, 10 and both copies of the repeated key
        scored = {(s["declaration_id"], s["item_no"]) for s in out["scores"]}
        listed = {(q["declaration_id"], str(q["item_no"])) for q in quality.values()}
        for i, row in enumerate(body, start=1):
            key = (str(row["declaration_id"]), row["item_no"])
            in_scores = key in scored
            lost = i in quality and not quality[i]["scored"]
            assert in_scores != lost, (i, key)  # a score, or a stated reason: never neither
            assert (str(key[0]), str(key[1])) in listed or i not in quality
        csv_text = pd.DataFrame(body).to_csv(index=False)
        r = c.post(
            "/score",
            content=csv_text.encode(),
            headers={"content-type": "text/csv"},
            params={"format": "csv"},
        )
        table = pd.read_csv(io.StringIO(r.text), dtype={"item_no": str})
        assert len(table) == len(body)  # one line per input row: scores or the reason
        assert table["revenue"].isna().sum() == 4 and table["data_quality"].notna().sum() == 9
        assert (
            c.post(
                "/score", content=b"[{", headers={"content-type": "application/json"}
            ).status_code
            == 422
        )
        assert c.post("/score", json={"rows": 3}).status_code == 422
        assert c.post("/score", json=[body[0]] * 501).status_code == 413  # max_batch 500
        r = c.post("/score", json=[unseen])
        assert r.status_code == 200, r.text  # an unseen importer and a missing optional field
        assert r.json()["items"] == 1


def test_logs_name_routes_never_tokens_or_declarations(service, caplog):
    cand = _a_candidate(service)
    with caplog.at_level(logging.INFO, logger="riskml.serve"):
        with _client(service, "auditor") as c:
            c.get(f"/declarations/{cand['declaration_id']}")
            c.get("/candidates", params={"office": cand["office"]})
    text = caplog.text
    assert "GET /declarations/{declaration_id} 200" in text
    assert cand["declaration_id"] not in text and cand["office"] not in text
    for token in service["tokens"].values():
        assert token not in text


def test_outcome_recorded_through_the_api_becomes_a_training_label(service, tmp_path):
    """Round trip: API -> database -> `riskml outcomes export` -> source stage appends it to the
    raw outcomes -> validate -> the labels the next training run builds."""
    import shutil
    import subprocess
    import sys

    from riskml.config import load_area_specs
    from riskml.contract import run_validate
    from riskml.feedback import EXPORT_PATH, append_feedback
    from riskml.labels import build_labels

    project = service["project"]
    decl = read_dataset(Catalog(project).declarations)
    spec = load_area_specs(project / "pipelines")["ipr"]
    labels = build_labels(decl, read_dataset(Catalog(project).outcomes), spec)
    unlabelled = decl[labels["label"].isna().to_numpy()].iloc[-1]
    body = {
        "declaration_id": unlabelled["declaration_id"],
        "item_no": int(unlabelled["item_no"]),
        "risk_area": "ipr",
        "offence_found": True,
        "offence_code": "IPR-CF",
        "control_kind": "pca",
        "result_date": (unlabelled["accepted_date"] + pd.Timedelta(days=20)).date().isoformat(),
        "auditor": "A. Auditor",
    }
    with _client(service, "auditor") as c:
        assert c.post("/outcomes", json=body).status_code == 201

    work = tmp_path / "next-run"
    shutil.copytree(project / "data/raw", work / "data/raw")
    shutil.copy(project / "params.yaml", work / "params.yaml")
    shutil.copytree(project / "pipelines", work / "pipelines")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "riskml",
            "outcomes",
            "export",
            "--root",
            str(work),
            "--database-url",
            f"sqlite:///{service['db']}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert append_feedback(work / "data/raw", work / EXPORT_PATH) >= 1
    run_validate(work / "data/raw", work / "data/interim", work / "metrics/validation.json")
    new_decl = read_dataset(Catalog(work).declarations)
    new_out = read_dataset(Catalog(work).outcomes)
    new_labels = build_labels(new_decl, new_out, spec).set_index(["declaration_id", "item_no"])
    key = (unlabelled["declaration_id"], int(unlabelled["item_no"]))
    assert new_labels.loc[key, "label"] == 1.0
    assert new_labels.loc[key, "control_kind"] == "pca"


def test_case_peers_are_the_reference_the_reason_was_computed_from(service):
    """The unit-value reason and the peer table cite the same peer group and count (the page
    shows the features' reference, it does not recompute peers its own way)."""
    with _client(service, "reviewer") as c:
        items = c.get("/candidates", params={"kind": "model", "page_size": 200}).json()["items"]
        checked = 0
        for cand in items:
            case = c.get(f"/declarations/{cand['declaration_id']}").json()
            peers = {p["item_no"]: p for p in case["peers"]}
            for reason in case["reasons"]:
                if " declarations of " not in (reason["sentence"] or ""):
                    continue
                peer = peers[reason["item_no"]]
                assert peer["source"] == "features"
                cited = f"{peer['peer_declarations']} declarations of {peer['peer_group']}"
                assert cited in reason["sentence"], (cited, reason["sentence"])
                checked += 1
            if checked >= 3:
                break
    assert checked >= 1


def test_data_quality_list_through_the_api(service):
    """GET /data-quality: the ranked period's declarations that failed a data check (two were
    broken in serve_project), each with its reasons, scored or not, and the areas not scored;
    with the candidates' scores, every declaration of the period is accounted for."""
    project = service["project"]
    raw = pd.read_parquet(project / "data/raw/declarations.parquet")
    keys = list(zip(raw["declaration_id"].astype(str), raw["item_no"].astype(str), strict=True))
    scored_key = keys[raw.index[raw["cif_value"] < 0][0]]
    lost_key = keys[raw.index[raw["hs_code"] == "12"][0]]
    with _client(service, "reviewer") as c:
        out = c.get("/data-quality").json()
        assert out["total"] == 2 and out["not_scored"] == 1
        items = {(i["declaration_id"], str(i["item_no"])): i for i in out["items"]}
        assert items[scored_key]["scored"] and items[scored_key]["areas_not_scored"] == ""
        assert not items[lost_key]["scored"]
        assert items[lost_key]["areas_not_scored"].split(";") == AREAS
        assert "hs_code" in items[lost_key]["reasons"]
        csv = pd.read_csv(io.StringIO(c.get("/data-quality", params={"format": "csv"}).text))
        assert len(csv) == 2
    dates = raw["accepted_date"]
    in_period = {
        k
        for k, d in zip(keys, dates, strict=True)
        if pd.Timestamp("2024-07-01") <= d < pd.Timestamp("2025-01-01")
    }
    for area in AREAS:  # every declaration of the period: scored, or listed as not scored
        scores = pd.read_parquet(project / "data/selection/scores" / f"{area}.parquet")
        ids, items = scores["declaration_id"].astype(str), scores["item_no"].astype(str)
        have = set(zip(ids, items, strict=True))
        assert scored_key in have and lost_key not in have, area
        assert in_period == have | {lost_key}, area


def _kcs_fixture():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent / "fixtures" / "kcs.py"
    spec = importlib.util.spec_from_file_location("kcs_fixture", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_score_reads_the_body_through_a_shipped_mapping(service):
    """POST /score?mapping=kcs_synthetic: a body in the KCS layout (national transport codes,
    tax rates in percent) is scored like the canonical one, a broken row gets its reason; bad
    bodies and unknown mappings are one-line 4xx, never a 500."""
    frame = _kcs_fixture().kcs_frame(30, "2024-12-01", "2024-12-31", seed=3).astype(str)
    frame.loc[4, "Date"] = "2024-13-01"  # cannot be scored: no date
    frame.loc[5, "Item Price"] = "n/a"  # scored without a value
    with _client(service, "auditor") as c:

        def post(body: bytes, kind: str = "text/csv", **params):
            return c.post(
                "/score",
                content=body,
                headers={"content-type": kind},
                params={"mapping": "kcs_synthetic", **params},
            )

        r = post(frame.to_csv(index=False).encode())
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["items"] == 29 and out["not_scored"] == 1
        quality = {q["row"]: q for q in out["data_quality"]}
        assert not quality[5]["scored"] and "accepted_date" in quality[5]["reasons"]
        assert quality[6]["scored"] and "cif_value" in quality[6]["reasons"]
        scored = {s["declaration_id"] for s in out["scores"]}
        assert scored == set(frame["Declaration ID"]) - {frame.loc[4, "Declaration ID"]}
        rows = json.loads(frame.to_json(orient="records"))
        again = post(json.dumps(rows).encode(), "application/json")  # JSON rows, its columns
        assert again.status_code == 200 and again.json()["items"] == 29
        header = ",".join(frame.columns).encode()
        for body, words in (
            (b"", "empty"),
            (header + b"\n", "header only"),
            (frame.to_csv(index=False, sep=";").encode(), "sep"),
            (b"\x00\xff\xfe\x00binary", ""),
        ):
            r = post(body)
            assert r.status_code == 422, (body[:40], r.text)
            detail = r.json()["detail"][0]["msg"]
            assert words in detail and "\n" not in detail, detail
        r = post(header, mapping="../../etc/passwd")
        assert r.status_code == 422 and "unknown mapping" in r.text
        assert post(header, mapping="cen_seizures").status_code == 422  # not a declaration layout
