"""End to end: the real DVC pipeline in a temporary git repository, with a real MLflow store.

Runs `dvc repro` on a small simulated world (two areas), then checks what a data scientist relies
on: outputs exist, a second `dvc repro` reruns nothing, `dvc exp run -S` and `dvc exp show` work,
runs and registered models are in MLflow, and candidate lists carry reasons.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from project_files import copy_project, run_checked

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
AREAS = ["revenue", "ipr"]
# What the train stage and the model card say of each area's own train settings (the shipped
# pipelines/: revenue learns slower with longer patience, session 26; IPR puts a floor of 200
# trees under its refit, session 19).
OVERRIDES_SAID = {
    "revenue": "pipelines/revenue.yaml overrides params.yaml's train settings: "
    "training.train.learning_rate 0.05 -> 0.02, training.train.early_stopping_rounds 50 -> 200",
    "ipr": "pipelines/ipr.yaml overrides params.yaml's train settings: "
    "training.train.min_refit_trees 0 -> 200",
}
# The page template `make install` writes (Vega inlined), named by .dvc/config.
PLOTS_TEMPLATE = Path(".venv/share/riskml/dvc-plots.html")
CHROMIUM = shutil.which("chromium")

pytestmark = pytest.mark.slow


_run = run_checked
# What the first `dvc repro` printed (stdout and stderr): the stages' progress lines.
FIRST_REPRO: dict[str, str] = {}


def _git_project(dest: Path, edit) -> dict[str, str]:
    """A copy of the project in ``dest`` with ``edit(params)`` applied to params.yaml, committed
    to a new git repository; returns the environment to run git, dvc and riskml in it."""
    copy_project(dest)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    edit(params)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "riskml test"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "test@riskml.invalid"
    _run(["git", "init", "-q", "-b", "main"], dest, env)
    _run(["git", "add", "-A"], dest, env)
    _run(["git", "commit", "-qm", "project"], dest, env)
    return env


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    dest = tmp_path_factory.mktemp("riskml-project")

    def small_world(params: dict) -> None:
        params["areas"] = AREAS
        params["simulate"]["n_items"] = 60_000

    env = _git_project(dest, small_world)
    proc = _run(["dvc", "repro"], dest, env)
    FIRST_REPRO["output"] = proc.stdout + proc.stderr
    # A clone has no .venv: the one `make install` built for this checkout provides the template.
    if (ROOT / PLOTS_TEMPLATE).exists():
        (dest / PLOTS_TEMPLATE).parent.mkdir(parents=True)
        shutil.copy(ROOT / PLOTS_TEMPLATE, dest / PLOTS_TEMPLATE)
    return dest, env


def test_repro_leaves_metrics_plots_candidates_and_models(project):
    dest, _ = project
    summary = json.loads((dest / "metrics/summary.json").read_text())
    for area in AREAS:
        assert (dest / "models" / area / "model.txt").exists()
        assert area in summary
        cands = pd.read_csv(dest / "data/candidates" / f"{area}.csv", encoding="utf-8-sig")
        assert len(cands) > 0
        model_picks = cands[cands["selection_kind"] == "model"]
        assert model_picks["reasons"].fillna("").str.len().gt(0).all()
        assert (dest / "data/explanations" / f"{area}.parquet").exists()
    assert (dest / "metrics/validation.json").exists()
    assert any((dest / "plots").rglob("*.csv"))


def test_long_stages_show_progress_and_train_states_its_overrides(project):
    """`dvc repro` shows where the long stages are: one time-stamped line per area (evaluate,
    explain) and per area and window (backtest); each train stage says which of params.yaml's
    train settings the area changes, and the model card says the same."""
    import re

    dest, _ = project
    out = FIRST_REPRO["output"]
    params = yaml.safe_load((dest / "params.yaml").read_text())
    n_windows = params["backtest"]["n_windows"]
    stamp = r"\d\d:\d\d:\d\d "
    for area in AREAS:
        for protocol in params["backtest"]["protocols"]:
            assert re.search(f"{stamp}backtest {protocol} {area}\n", out), protocol
        for i in range(1, n_windows + 1):
            assert len(re.findall(f"{stamp}backtest {area}: window {i}/{n_windows} ", out)) == len(
                params["backtest"]["protocols"]
            ), (area, i)
        assert re.search(f"{stamp}evaluate {area}\n", out), area
        position = AREAS.index(area) + 1
        assert re.search(f"{stamp}explain {area} \\(area {position}/{len(AREAS)}\\)", out)
        said = OVERRIDES_SAID[area]
        assert f"train {area}: {said}" in out
        assert said in (dest / "models" / area / "model_card.md").read_text()


def test_second_repro_runs_nothing(project):
    dest, env = project
    out = _run(["dvc", "repro"], dest, env).stdout
    assert "Data and pipelines are up to date" in out
    status = _run(["dvc", "status"], dest, env).stdout
    assert "up to date" in status


def _files(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Each partition file of a month-partitioned dataset: (inode, modification time, SHA-256
    of its bytes)."""
    return {
        str(f.relative_to(folder)): (
            f.stat().st_ino,
            f.stat().st_mtime_ns,
            hashlib.sha256(f.read_bytes()).hexdigest(),
        )
        for f in sorted(folder.glob("month=*/*.parquet"))
    }


def test_a_new_month_of_data_rewrites_that_months_partitions_only(tmp_path):
    """An administration's extract (DATE layout, `data.source: ingest`) gets a new month
    appended; `dvc repro features` then rewrites that month's partition of the validated
    declarations, outcomes and truth and of the features, every other month's files keep their
    bytes and time stamps. A late control result of an earlier month's item (the audit unit's
    export) then rewrites that item's month of the outcomes only. Every dataset equals those of
    a run from scratch on the same data."""
    from riskml import io
    from riskml.catalog import FEEDBACK_EXPORT, Catalog
    from riskml.feedback import export_table

    dest = tmp_path / "project"
    extract = pd.read_csv(ROOT / "tests/fixtures/date_sample.csv", dtype=str)
    december = extract["sgd.date"].str.startswith("13-12")
    csv = dest / "data/external/declarations.csv"

    def ingest(params: dict) -> None:
        params["data"] |= {"source": "ingest", "ingest_file": str(csv.relative_to(dest))}
        params["data"]["ingest_mapping"] = "src/riskml/mappings/date_bacuda.yaml"

    env = _git_project(dest, ingest)
    csv.parent.mkdir(parents=True, exist_ok=True)
    extract[~december].to_csv(csv, index=False)
    _run(["dvc", "repro", "features"], dest, env)
    catalog = Catalog(dest)
    datasets = {
        "declarations": catalog.declarations,
        "outcomes": catalog.outcomes,
        "truth": catalog.interim / "truth",  # empty (real data), a partition per month
        "features": catalog.features,
    }
    assert catalog.outcomes == catalog.interim / "outcomes" and catalog.truth() == datasets["truth"]
    first = {name: _files(folder) for name, folder in datasets.items()}
    assert {len(files) for files in first.values()} == {11}

    # December's declarations arrive at the end of the extract
    pd.concat([extract[~december], extract[december]]).to_csv(csv, index=False)
    proc = _run(["dvc", "repro", "features"], dest, env)
    ran = " ".join((proc.stdout + proc.stderr).split())  # the console wraps long lines
    assert all(f"Running stage '{s}'" in ran for s in ("source", "validate", "features")), ran
    assert "1 of 12 months" in ran  # the features stage recomputed one month
    for name, folder in datasets.items():
        before, after = first[name], _files(folder)
        new = sorted(set(after) - set(before))
        assert new == ["month=2013-12/part-0.parquet"], name
        assert {k: after[k] for k in before} == before, name  # same inode, time stamp, bytes

    # a late result: an item of March found in breach by an audit in December
    second = {name: _files(folder) for name, folder in datasets.items()}
    march = io.read_dataset(catalog.declarations, months=["2013-03"]).iloc[0]
    late = {
        "declaration_id": [march["declaration_id"]],
        "item_no": [march["item_no"]],
        "control_kind": ["pca"],
        "result_date": [pd.Timestamp("2013-12-20")],
        "risk_area": ["revenue"],
        "offence_found": [True],
        "offence_code": [None],
        "additional_duty": [1234.0],
        "quantity_seized": [None],
    }
    (dest / FEEDBACK_EXPORT).parent.mkdir(parents=True, exist_ok=True)
    export_table(pd.DataFrame(late)).to_parquet(dest / FEEDBACK_EXPORT, index=False)
    proc = _run(["dvc", "repro", "features"], dest, env)
    ran = " ".join((proc.stdout + proc.stderr).split())
    assert all(f"Running stage '{s}'" in ran for s in ("source", "validate")), ran
    for name, folder in datasets.items():
        after = _files(folder)
        changed = sorted(k for k in after if after[k] != second[name].get(k))
        assert changed == (["month=2013-03/part-0.parquet"] if name == "outcomes" else []), name
    incremental = {name: io.read_dataset(folder) for name, folder in datasets.items()}
    assert len(incremental["declarations"]) == len(incremental["features"]) > 0
    assert incremental["declarations"]["accepted_date"].max() >= pd.Timestamp("2013-12-01")
    assert incremental["outcomes"]["additional_duty"].iloc[-1] == 1234.0  # appended, last
    stored = {name: {k: v[2] for k, v in _files(f).items()} for name, f in datasets.items()}

    # from scratch on the same extract and export: the same datasets, bit for bit
    shutil.rmtree(catalog.interim)
    shutil.rmtree(catalog.features)
    _run(["dvc", "repro", "features"], dest, env)
    for name, frame in incremental.items():
        pd.testing.assert_frame_equal(io.read_dataset(datasets[name]), frame, check_exact=True)
        assert {k: v[2] for k, v in _files(datasets[name]).items()} == stored[name], name


def _status_after_editing(dest: Path, env: dict[str, str], area: str, edit) -> dict:
    """``dvc status --json`` after ``edit(spec_document)`` of pipelines/<area>.yaml (restored)."""
    path = dest / "pipelines" / f"{area}.yaml"
    original = path.read_text()
    doc = yaml.safe_load(original)
    edit(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    try:
        return json.loads(_run(["dvc", "status", "--json"], dest, env).stdout)
    finally:
        path.write_text(original)


def test_a_spec_edit_reruns_only_the_stages_that_read_it(project):
    dest, env = project

    def exponent(doc):
        doc["policy"]["recovery_exponent"] = 0.5

    status = _status_after_editing(dest, env, "revenue", exponent)
    # no training reads the key: revenue's register stage binds it to the trained estimator,
    # the backtest report measures the stored windows by it; explain and lists read select's
    # picks (they rerun when the picks change), not the key
    assert set(status) == {"register@revenue", "evaluate", "backtest_report", "promote", "select"}
    for stage in status.values():  # a stage lists the key, or the whole section it reads
        (change,) = stage
        assert change["changed deps"] in (
            {"pipelines/revenue.yaml": {"policy.recovery_exponent": "modified"}},
            {"pipelines/revenue.yaml": {"policy": "modified"}},
        )

    def leaves(doc):
        doc["training"]["train"] = {"num_leaves": 7}

    assert set(_status_after_editing(dest, env, "ipr", leaves)) == {"train@ipr", "backtest@ipr"}

    def capacity(doc):
        doc["policy"]["capacity"] = 77

    assert set(_status_after_editing(dest, env, "ipr", capacity)) == {"select", "lists"}

    def rules(doc):
        doc["features"]["legacy_rules"][0]["weight"] = 9.0

    assert {
        "source", "features", "evaluate", "promote", "explain",
        *(f"backtest@{a}" for a in AREAS),  # the static protocol's features use every rule
    } == set(_status_after_editing(dest, env, "ipr", rules))  # fmt: skip
    assert "up to date" in _run(["dvc", "status"], dest, env).stdout


def test_an_exponent_edit_binds_the_new_key_to_the_same_training(project):
    """After a finished repro, revenue's policy.recovery_exponent edited: `dvc repro` reruns
    register@revenue, the backtest report, evaluate, promote, headline, select, explain and lists;
    no features, no train@*, no backtest@* (no window retrained). The lists then name the
    champion that metrics/promotion.json and the registry name: a new version holding the same
    trained estimator (same files, same estimator hash) under the new key. Going back restores
    every output from DVC's cache."""
    import re

    from riskml.area_model import AreaModel

    dest, env = project
    path = dest / "pipelines/revenue.yaml"
    original = path.read_text()
    trained = dest / "models/estimators/revenue"
    estimator = {f.name: f.read_bytes() for f in trained.iterdir()}
    before = json.loads((dest / "models/revenue/registration.json").read_text())
    ipr_before = (dest / "models/ipr/registration.json").read_text()
    doc = yaml.safe_load(original)
    assert doc["policy"]["recovery_exponent"] != 0.5
    doc["policy"]["recovery_exponent"] = 0.5
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    try:
        out = _run(["dvc", "repro"], dest, env).stdout
        ran = set(re.findall(r"Running stage '([^']+)'", out))
        assert ran == {
            "register@revenue", "evaluate", "backtest_report", "promote", "headline",
            "select", "explain", "lists",
        }, out  # fmt: skip
        assert {f.name: f.read_bytes() for f in trained.iterdir()} == estimator
        reg = json.loads((dest / "models/revenue/registration.json").read_text())
        assert reg["estimator_hash"] == before["estimator_hash"]
        assert reg["version"] != before["version"]  # a version holds its key: immutable
        assert (dest / "models/ipr/registration.json").read_text() == ipr_before
        model = AreaModel.load(dest / "models/revenue")
        assert model.recovery_exponent == 0.5 and model.estimator_hash() == reg["estimator_hash"]
        decision = json.loads((dest / "metrics/promotion.json").read_text())["revenue"]
        assert decision["decision"] == "promoted" and decision["same_estimator"]
        assert decision["champion_version_after"] == reg["version"]
        assert _registry_state(dest)["revenue"]["champion"] == reg["version"]
        name = f"riskml-revenue v{reg['version']} (challenger, champion)"
        cands = pd.read_csv(dest / "data/candidates/revenue.csv", encoding="utf-8-sig")
        assert (cands["model_version"] == name).all()
        assert cands["ranked_by"].str.contains(r"\^0\.5").all()
        model_rows = cands[cands["selection_kind"] == "model"]
        assert model_rows["reasons"].fillna("").str.len().gt(0).all()
        index = (dest / "data/casefiles/revenue/index.html").read_text()
        assert name in index
        metrics = json.loads((dest / "metrics/backtest/areas/revenue.json").read_text())
        assert metrics["protocols"]["rolling"]["rank_key_comparison"]["recovery_exponent"] == 0.5
    finally:
        path.write_text(original)
        out = _run(["dvc", "repro"], dest, env).stdout
        _riskml(["registry", "sync"], dest, env)
    assert "Running stage" not in out  # every stage restored from the run cache
    back = json.loads((dest / "models/revenue/registration.json").read_text())
    assert back["version"] == before["version"]
    assert _registry_state(dest)["revenue"]["champion"] == before["version"]


def test_mlflow_has_runs_and_registered_models(project):
    from mlflow import MlflowClient

    dest, _ = project
    uri = f"sqlite:///{dest / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for area in AREAS:
        mv = client.get_model_version_by_alias(f"riskml-{area}", "champion")
        run = client.get_run(mv.run_id)
        assert run.data.tags.get("area") == area or area in run.info.run_name
        assert run.data.metrics, f"no metrics logged for {area}"


def test_metrics_show_and_exp_show_display_the_headline_only(project):
    dest, env = project
    shown = json.loads(_run(["dvc", "metrics", "show", "--json"], dest, env).stdout)
    files = shown[""]["data"]
    assert list(files) == ["metrics/headline.json"]
    figures = files["metrics/headline.json"]["data"]
    assert set(AREAS) <= set(figures)
    for area in AREAS:
        assert 5 <= len(figures[area]) <= 15, figures[area]
        assert 0 < figures[area]["precision"] <= 1
    summary = json.loads((dest / "metrics/summary.json").read_text())
    assert figures["revenue"]["precision"] == summary["revenue"]["model"]["precision"]
    table = _run(["dvc", "exp", "show", "--no-pager", "--csv"], dest, env).stdout
    header = table.splitlines()[0].split(",")
    metric_columns = [c for c in header if c.startswith(("revenue.", "ipr."))]
    assert 10 <= len(metric_columns) <= 30  # was 8,373 metrics with every metric file reported


DRAWN = """() => [...document.querySelectorAll('canvas')].filter(c => c.width > 0).map(c => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let inked = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) inked++;
    return inked;
})"""


def _draw_offline(page_file: Path) -> tuple[list[int], list[str]]:
    """Open ``page_file`` in headless Chromium with every non-file request refused; return the
    inked pixels of each chart canvas and the refused URLs."""
    from playwright.sync_api import sync_playwright

    refused: list[str] = []

    def closed_network(route):
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort("internetdisconnected")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page()
            page.route("**/*", closed_network)
            page.goto(page_file.as_uri(), wait_until="load")
            page.wait_for_timeout(1500)  # vegaEmbed draws asynchronously after load
            return page.evaluate(DRAWN), refused
        finally:
            browser.close()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium not installed")
def test_plots_show_draws_the_charts_with_the_network_closed(project):
    dest, env = project
    assert (ROOT / PLOTS_TEMPLATE).exists(), f"{PLOTS_TEMPLATE} missing: run `make install`"
    _run(["dvc", "plots", "show", "-o", "offline"], dest, env)
    html = (dest / "offline/index.html").read_text()
    assert "cdn.jsdelivr.net" not in html and "<script src=" not in html
    # dvc.yaml's charts of the areas this project trains (the others have no data here).
    defs = yaml.safe_load((dest / "dvc.yaml").read_text())["plots"]
    with_data = [d for d in defs for spec in d.values() if (dest / next(iter(spec["y"]))).exists()]
    assert len(with_data) == 4 * len(AREAS)
    inked, refused = _draw_offline(dest / "offline/index.html")
    assert refused == []
    assert len(inked) == len(with_data) and min(inked) > 1000, inked
    # The same check on DVC's own page (libraries from a CDN) finds nothing drawn.
    from dvc_render.html import PAGE_HTML

    (dest / "dvc-page.html").write_text(PAGE_HTML)
    _run(["dvc", "plots", "show", "-o", "cdn", "--html-template", "dvc-page.html"], dest, env)
    inked, refused = _draw_offline(dest / "cdn/index.html")
    assert inked == [] and any("vega" in url for url in refused)


# --- experiments never write into another run's artifacts (issue 11) ------------------------


def _runs_snapshot(dest: Path) -> dict[str, dict]:
    """Every MLflow run of the project: its artifact files (size, modification time), metrics,
    tags and status."""
    from urllib.parse import unquote, urlparse

    from mlflow import MlflowClient

    uri = f"sqlite:///{dest / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # not the process's registry URI
    out = {}
    for exp in client.search_experiments():
        for run in client.search_runs([exp.experiment_id], max_results=5000):
            folder = Path(unquote(urlparse(run.info.artifact_uri).path))
            files = {
                str(f.relative_to(folder)): (f.stat().st_size, f.stat().st_mtime_ns)
                for f in folder.rglob("*")
                if f.is_file()
            }
            out[run.info.run_id] = {
                "files": files,
                "metrics": dict(run.data.metrics),
                "tags": dict(run.data.tags),
                "status": run.info.status,
            }
    return out


def _outputs_snapshot(dest: Path) -> dict[str, int]:
    folders = ("data/explanations", "data/casefiles", "data/candidates", "data/selection")
    return {
        str(f.relative_to(dest)): f.stat().st_mtime_ns
        for folder in folders
        for f in (dest / folder).rglob("*")
        if f.is_file()
    }


def test_temp_and_queued_experiments_leave_other_runs_untouched(project):
    """`dvc exp run --temp` and a queued experiment (run by the queue's workers) that rerun
    explain with the workspace's models restored from the cache: the champion's training run
    (and every other existing run) keeps its artifacts, metrics and tags; each experiment logs
    its case files and SHAP images to a run of its own beside it; the workspace's outputs are
    not touched."""
    from mlflow import MlflowClient

    dest, env = project
    before, outputs = _runs_snapshot(dest), _outputs_snapshot(dest)
    uri = f"sqlite:///{dest / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # not another test's registry
    champions = {client.get_model_version_by_alias(f"riskml-{a}", "champion").run_id for a in AREAS}
    assert champions <= set(before)
    _run(["dvc", "exp", "run", "--temp", "-S", "explain.n_reasons=4", "-n", "temp-explain"],
         dest, env)  # fmt: skip
    _run(["dvc", "exp", "run", "--queue", "-S", "explain.n_lowering=1", "-n", "queued-explain"],
         dest, env)  # fmt: skip
    _run(["dvc", "exp", "run", "--run-all"], dest, env)  # the queue's workers (dvc queue start)
    after = _runs_snapshot(dest)
    for run_id, state in before.items():
        assert after[run_id] == state, f"run {run_id} was written into by an experiment"
    assert _outputs_snapshot(dest) == outputs
    for name in ("temp-explain", "queued-explain"):
        beside = [
            r for r in after.values()
            if r["tags"].get("dvc_exp_name") == name and r["tags"].get("stage") == "explain"
        ]  # fmt: skip
        # one run beside each champion's, holding the SHAP images and the case files
        assert sorted(r["tags"]["model_run"] for r in beside) == sorted(champions), name
        for r in beside:
            assert any(f.startswith("explain/casefiles/") for f in r["files"]), r["files"]
            assert "explain/importance.png" in r["files"], r["files"]
    shown = json.dumps(json.loads(_run(["dvc", "exp", "show", "--json"], dest, env).stdout))
    assert "temp-explain" in shown and "queued-explain" in shown


# --- one lineage: DVC and MLflow agree (issue 11) ---------------------------------------------


def _riskml(args: list[str], dest: Path, env: dict[str, str]) -> str:
    return _run([str(BIN / "riskml"), *args], dest, env).stdout


def _registry_state(dest: Path) -> dict[str, dict[str, str]]:
    from riskml import registry

    client = registry.client_for(dest, f"sqlite:///{dest / 'mlflow.db'}")
    return {a: registry.aliases(client, f"riskml-{a}") for a in AREAS}


def _promotion(dest: Path) -> dict[str, dict[str, str]]:
    doc = json.loads((dest / "metrics/promotion.json").read_text())
    return {
        a: {"champion": str(doc[a]["champion_version_after"]),
            "challenger": str(doc[a]["challenger_version"])}
        for a in AREAS
    }  # fmt: skip


def _lists_name_and_use(dest: Path, version: str) -> None:
    """Every list, XLSX sheet and case file of each area names ``version`` as champion, and the
    list's scores are that version's predictions."""
    from riskml import registry
    from riskml.io import read_dataset

    feats = read_dataset(dest / "data/features")
    book = pd.read_excel(dest / "data/candidates/candidates.xlsx", sheet_name=None)
    for area in AREAS:
        name = f"riskml-{area} v{version}"
        cands = pd.read_csv(dest / "data/candidates" / f"{area}.csv", encoding="utf-8-sig")
        assert cands["model_version"].str.startswith(name).all(), cands["model_version"].iloc[0]
        assert cands["model_version"].str.contains("champion").all()
        assert book[area]["Model version"].str.startswith(name).all()
        index = (dest / "data/casefiles" / area / "index.html").read_text()
        assert f"{name} (" in index and "champion" in index
        model = registry.load(
            dest, area, version=version, tracking_uri=f"sqlite:///{dest / 'mlflow.db'}"
        )
        rows = cands[["declaration_id", "item_no"]].merge(
            feats.astype({"declaration_id": str}), on=["declaration_id", "item_no"], how="left"
        )
        np.testing.assert_allclose(cands["score"], model.predict_proba(rows), rtol=1e-9)


def _as_text(path: Path) -> pd.DataFrame:
    """A CSV output as the text it holds (every cell a string)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")


def test_one_lineage_a_losing_challenger_going_back_and_a_copied_project(project, tmp_path):
    """Train; change a parameter (`dvc exp run -S`, listed by `dvc exp show`) and the
    challenger loses: every list, case file, score file and service response names and uses
    the champion, and the challenger's list is written beside it as a shadow. Go back to the
    first parameters (a cached `dvc repro`, which runs no code): the first command that loads
    a model brings the registry's aliases in line with metrics/promotion.json, with no manual
    `riskml registry sync`. A copy of the project scores with its own models. A declaration
    scored alone gets what it gets in a batch, bit for bit."""
    from serve_project import LiveServer, new_batch

    from riskml.area_model import AreaModel
    from riskml.config import load_area_specs, load_params
    from riskml.feedback import FeedbackStore
    from riskml.serve import create_app

    dest, env = project
    # the first parameters, whatever the earlier tests left in the workspace
    _run(["git", "checkout", "--", "params.yaml"], dest, env)
    _run(["dvc", "repro"], dest, env)
    _riskml(["registry", "show"], dest, env)  # syncs first, as every model consumer does
    first = _promotion(dest)
    assert _registry_state(dest) == first
    for area in AREAS:
        assert not (dest / "data/candidates" / f"{area}.shadow.csv").exists()
    first_hash = {a: AreaModel.load(dest / "models" / a).content_hash() for a in AREAS}

    # a challenger that does not beat the champion by the margin is kept
    _run(["dvc", "exp", "run", "-S", "train.num_leaves=7", "-S", "promote.margin=1.0",
          "-n", "loses"], dest, env)  # fmt: skip
    # `dvc exp show` lists the experiment by its name, with the parameters it changed
    shown = json.dumps(json.loads(_run(["dvc", "exp", "show", "--json"], dest, env).stdout))
    assert "loses" in shown and '"num_leaves": 7' in shown and '"margin": 1.0' in shown
    kept = json.loads((dest / "metrics/promotion.json").read_text())
    for area in AREAS:
        assert kept[area]["decision"] == "kept"
        assert kept[area]["challenger_version"] != kept[area]["champion_version_after"]
        assert kept[area]["champion_version_after"] == first[area]["champion"]
    champion = {a: kept[a]["champion_version_after"] for a in AREAS}
    assert len(set(champion.values())) == 1  # both areas' first versions
    _lists_name_and_use(dest, champion[AREAS[0]])
    assert _registry_state(dest) == _promotion(dest)
    for area in AREAS:  # the losing challenger's list, beside the champion's, marked shadow
        shadow = pd.read_csv(dest / "data/candidates" / f"{area}.shadow.csv", encoding="utf-8-sig")
        loser = f"riskml-{area} v{kept[area]['challenger_version']}"
        assert len(shadow) > 0 and shadow["model_version"].str.startswith(loser).all()
        assert shadow["reasons"].str.startswith("shadow list:").all()
        # the challenger's own reasons, by the reasons code, naming the challenger
        by_model = shadow[shadow["selection_kind"] == "model"]
        assert by_model["reasons"].str.contains(f"Reasons by {loser} ", regex=False).all()
        assert (dest / "data/explanations" / f"{area}.shadow.parquet").exists()
        cands = pd.read_csv(dest / "data/candidates" / f"{area}.csv", encoding="utf-8-sig")
        assert not cands["reasons"].str.startswith("shadow").any()

    batch = new_batch(dest, 30)
    batch.to_csv(tmp_path / "batch.csv", index=False)
    _riskml(["score", str(tmp_path / "batch.csv"), "--out", str(tmp_path / "scored")], dest, env)
    scored = pd.read_csv(tmp_path / "scored/scores.csv", encoding="utf-8-sig")
    for area in AREAS:
        names = scored.loc[scored["area"] == area, "model_version"].unique()
        assert list(names) == [f"riskml-{area} v{champion[area]} (champion)"]
    # a declaration scored alone gets what it gets in the batch, bit for bit (the same text)
    one = batch["declaration_id"].iloc[3]
    batch.iloc[[3]].to_csv(tmp_path / "one.csv", index=False)
    _riskml(["score", str(tmp_path / "one.csv"), "--out", str(tmp_path / "one")], dest, env)
    alone = _as_text(tmp_path / "one/scores.csv")
    in_batch = _as_text(tmp_path / "scored/scores.csv")
    in_batch = in_batch[in_batch["declaration_id"] == one].reset_index(drop=True)
    assert len(alone) == len(AREAS) and alone["score"].ne("").all()
    pd.testing.assert_frame_equal(alone, in_batch, check_exact=True)

    old_uri = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{dest / 'mlflow.db'}"
    try:
        params = load_params(dest / "params.yaml")
        specs = {a: s for a, s in load_area_specs(dest / "pipelines").items() if a in AREAS}
        store = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.db'}")
        token = store.create_token("auditor-1", "auditor")
        app = create_app(dest, params, specs, store=store)
        import httpx

        headers = {"Authorization": f"Bearer {token}", "content-type": "text/csv"}
        body = (tmp_path / "batch.csv").read_bytes()
        with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=300) as c:
            r = c.post("/score", content=body, headers=headers)
            as_csv = c.post("/score", params={"format": "csv"}, content=body, headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["models"] == {a: f"riskml-{a} v{champion[a]} (champion)" for a in AREAS}
        # the service's numbers are the command's, to the last digit (CSV: every digit)
        assert as_csv.status_code == 200, as_csv.text
        served = pd.read_csv(io.StringIO(as_csv.text), dtype=str, keep_default_na=False)
        command = _as_text(tmp_path / "scored/scores.csv")
        for area in AREAS:
            part = command[command["area"] == area].merge(served, on=["declaration_id", "item_no"])
            assert len(part) == len(batch)
            assert (part["score"] == part[area]).all()
    finally:
        if old_uri is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old_uri

    # back to the first parameters: DVC restores every output from its cache and runs no code,
    # so the registry still says what the experiment left, until the first command that loads
    # a model (here the audit unit scoring a batch) brings it in line: no manual sync
    _run(["git", "checkout", "--", "params.yaml"], dest, env)
    out = _run(["dvc", "repro"], dest, env).stdout
    assert "Running stage" not in out  # every stage restored from the run cache
    assert _promotion(dest) == first
    assert _registry_state(dest) != first  # the challenger alias still names the loser
    _riskml(["score", str(tmp_path / "batch.csv"), "--out", str(tmp_path / "back")], dest, env)
    assert _registry_state(dest) == first == _promotion(dest)
    back = pd.read_csv(tmp_path / "back/scores.csv", encoding="utf-8-sig")
    for area in AREAS:
        names = back.loc[back["area"] == area, "model_version"].unique()
        assert list(names) == [f"riskml-{area} v{first[area]['champion']} (challenger, champion)"]
        assert not (dest / "data/candidates" / f"{area}.shadow.csv").exists()
        assert not (dest / "data/explanations" / f"{area}.shadow.parquet").exists()
    # the kept champion scored the batch then: the numbers are those of the first version now
    # (models/<area>/ held the losing challenger then, the first version now)
    figures = ["area", "score", "expected_recovery", "rank_key", "selected"]
    pd.testing.assert_frame_equal(
        _as_text(tmp_path / "back/scores.csv")[figures],
        _as_text(tmp_path / "scored/scores.csv")[figures],
        check_exact=True,
    )
    for area in AREAS:
        assert AreaModel.load(dest / "models" / area).content_hash() == first_hash[area]
        reg = json.loads((dest / "models" / area / "registration.json").read_text())
        assert reg["version"] == first[area]["champion"]
        from mlflow import MlflowClient

        client = MlflowClient(f"sqlite:///{dest / 'mlflow.db'}")
        hashes = [v.tags["content_hash"] for v in
                  client.search_model_versions(f"name = 'riskml-{area}'")]  # fmt: skip
        assert len(hashes) == len(set(hashes))  # registered once per content
    _lists_name_and_use(dest, first[AREAS[0]]["champion"])

    # a copied project scores with its own models, even with the original's store gone
    copy = tmp_path / "copied" / "riskml"
    shutil.copytree(dest, copy, symlinks=True)
    moved = dest.parent / "mlartifacts.moved"
    (dest / "mlartifacts").rename(moved)
    try:
        _riskml(["score", str(tmp_path / "batch.csv"), "--out", str(tmp_path / "copy-scored")],
                copy, env)  # fmt: skip
        assert not (dest / "mlartifacts").exists()  # nothing written into the original
    finally:
        (moved).rename(dest / "mlartifacts")
    again = pd.read_csv(tmp_path / "copy-scored/scores.csv", encoding="utf-8-sig")
    assert again["model_version"].str.endswith("(challenger, champion)").all()
    from mlflow import MlflowClient

    exp = MlflowClient(f"sqlite:///{copy / 'mlflow.db'}").get_experiment_by_name("riskml")
    assert exp.artifact_location == (copy.resolve() / "mlartifacts").as_uri()
