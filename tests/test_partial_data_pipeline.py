"""End to end on an administration's own extract: the real DVC pipeline in a temporary git
repository, fed by `riskml ingest` with a KCS-layout file that carries revenue labels only and
deliberately broken rows.

Checks that the pipeline trains the areas the data supports and says which it skipped and why
(train, evaluate, backtest, promote, headline, explain, select), and that every declaration of
the ranked period gets a decision: a score, or a line on the data-quality list with its reason
and the areas it was not scored for.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from project_files import copy_project, run_checked

BIN = Path(sys.executable).parent
_spec = importlib.util.spec_from_file_location("kcs", Path(__file__).parent / "fixtures" / "kcs.py")
kcs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kcs)

pytestmark = pytest.mark.slow

AREAS = ["revenue", "drugs"]
RANKED = ("2021-01-01", "2021-04-01")
SKIPPED = "skipped: 0 positives, need 20"
# Broken rows of the ranked quarter: (row, column, value, scored anyway?)
BROKEN = [
    (0, "Item Price", "abc", True),  # scored without a value
    (1, "Net Mass", "-5", True),  # scored without a mass
    (2, "Mode of Transport", "", True),  # scored with an unknown transport mode
    (3, "Date", "2021-02-30", False),  # no date: no history as of a day, period unknown
    (4, "HS6 Code", "12AB", False),  # no goods code
    (5, "Importer ID", "", True),  # scored with the importer unknown (a value of its own)
    (6, "Office ID", "", True),  # likewise the office
    (7, "Country of Origin", "", True),  # and the origin
]


def _extract(path: Path) -> pd.DataFrame:
    """One KCS-layout file over 2020-01..2021-03, revenue labels only (no Critical Fraud 2),
    with the broken rows of :data:`BROKEN` in the ranked quarter."""
    frame = kcs.kcs_frame(4000, "2020-01-01", "2021-03-31", seed=11).astype(str)
    frame["Critical Fraud"] = frame["Critical Fraud"].replace("2", "1")
    ranked = frame.index[frame["Date"] >= RANKED[0]]
    for i, column, value, _ in BROKEN:
        frame.loc[ranked[10 * i], column] = value
    frame.to_csv(path, index=False)
    return frame


_run = run_checked


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, pd.DataFrame, str]:
    dest = copy_project(tmp_path_factory.mktemp("riskml-partial"))
    (dest / "data/external").mkdir(parents=True, exist_ok=True)
    extract = _extract(dest / "data/external/kcs.csv")
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["areas"] = AREAS
    params["data"] |= {
        "source": "ingest",
        "ingest_file": "data/external/kcs.csv",
        "ingest_mapping": "kcs_synthetic",
    }
    params["split"] = {
        "train_start": "2020-02-01",
        "valid_start": "2020-10-01",
        "test_start": RANKED[0],
        "test_end": RANKED[1],
    }
    params["backtest"] |= {"n_windows": 2, "window_months": 1, "n_boot": 50}
    params["explain"] |= {"case_images": 2, "global_sample": 200}
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "riskml test"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "test@riskml.invalid"
    _run(["git", "init", "-q", "-b", "main"], dest, env)
    _run(["git", "add", "-A"], dest, env)
    _run(["git", "commit", "-qm", "project"], dest, env)
    proc = _run(["dvc", "repro"], dest, env)
    return dest, extract, proc.stdout + proc.stderr


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_areas_without_labels_are_skipped_and_said(project):
    dest, _, output = project
    record = _json(dest / "models/drugs/skipped.json")
    assert record["reason"] == SKIPPED and record["positives"] == 0
    assert not (dest / "models/drugs/model.txt").exists()
    assert (dest / "models/revenue/model.txt").exists()  # what the data supports is trained
    assert f"train drugs: {SKIPPED}" in output  # the train stage's own line
    assert _json(dest / "metrics/summary.json")["drugs"]["skipped"] == SKIPPED
    assert _json(dest / "metrics/areas/drugs.json")["skipped"] == SKIPPED
    assert _json(dest / "metrics/backtest/summary.json")["skipped"] == {"drugs": SKIPPED}
    assert "drugs" not in _json(dest / "metrics/backtest/summary.json")["areas"]
    promotion = _json(dest / "metrics/promotion.json")
    assert promotion["drugs"] == {"decision": "skipped", "reason": SKIPPED}
    assert promotion["revenue"]["champion_version_after"] is not None
    headline = _json(dest / "metrics/headline.json")
    assert headline["drugs"]["skipped"] == SKIPPED and headline["drugs"]["needed"] == 20
    assert headline["revenue"]["precision"] > 0
    assert (dest / "data/candidates/revenue.csv").exists()
    assert not (dest / "data/candidates/drugs.csv").exists()
    assert not (dest / "data/explanations/drugs.parquet").exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    shown = _run([str(BIN / "riskml"), "registry", "show", "--root", str(dest)], dest, env)
    assert f"drugs: {SKIPPED}" in shown.stdout + shown.stderr


def test_every_declaration_of_the_ranked_period_gets_a_score_or_a_reason(project):
    dest, extract, _ = project
    scores = pd.read_parquet(dest / "data/selection/scores/revenue.parquet")
    scored = set(scores["declaration_id"].astype(str))
    quality = pd.read_csv(dest / "data/candidates/data_quality.csv", dtype=str)
    quality["scored"] = quality["scored"] == "True"
    lost = set(quality.loc[~quality["scored"], "declaration_id"])
    dates = pd.to_datetime(extract["Date"], errors="coerce", format="%Y-%m-%d")
    period = (dates >= RANKED[0]) & (dates < RANKED[1]) | dates.isna()
    ids = extract.loc[period, "Declaration ID"]
    assert len(ids) > 500
    for i in ids:  # a score or a stated reason, never neither and never both
        assert (i in scored) != (i in lost), i
    ranked = extract.index[extract["Date"] >= RANKED[0]]
    by_id = quality.set_index("declaration_id")
    for i, column, _, scored_anyway in BROKEN:
        row = by_id.loc[extract.loc[ranked[10 * i], "Declaration ID"]]
        assert bool(row["scored"]) is scored_anyway, (column, row.to_dict())
        assert row["reasons"], column
        assert row["areas_not_scored"] == ("" if scored_anyway else "revenue") or (
            scored_anyway and pd.isna(row["areas_not_scored"])
        )
    # the same list is a sheet of the workbook the audit unit opens
    sheet = pd.read_excel(dest / "data/candidates/candidates.xlsx", sheet_name="Data quality")
    assert len(sheet) == len(quality)
