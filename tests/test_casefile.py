"""Case files and explain outputs of a real (small) pipeline run: the numbers in the sentences
match the data, pages name the model and data snapshot, and they render and print in Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from explain_project import AREA, small_project

from riskml.catalog import Catalog
from riskml.io import read_dataset
from riskml.reasons import NO_REASONS, validate_explanations

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

SENTENCE = re.compile(
    r"declared unit value (?P<uv>[\d,.]+) per kg is (?P<gap>\d+)% (?P<dir>below|above) the "
    r"reference (?P<ref>[\d,.]+) per kg \(median of (?P<n>\d+) declarations of HS "
    r"(?P<hs>\d{4}\.\d{2})(?: from (?P<origin>[A-Z]{2}))? in the previous (?P<months>\d+) months\)"
)


@pytest.fixture(scope="module")
def project() -> Path:
    return small_project()


@pytest.fixture(scope="module")
def explanations(project) -> pd.DataFrame:
    return pd.read_parquet(project / "data/explanations" / f"{AREA}.parquet")


def test_explanations_file_passes_the_schema_and_covers_the_candidate_list(project, explanations):
    validate_explanations(explanations)
    cands = pd.read_csv(project / "data/candidates" / f"{AREA}.csv", encoding="utf-8-sig")
    keys = set(zip(explanations["declaration_id"], explanations["item_no"], strict=True))
    assert set(zip(cands["declaration_id"], cands["item_no"], strict=True)) == keys
    randoms = cands[cands["selection_kind"] == "random_control"]
    assert len(randoms) > 0
    said = explanations.set_index(["declaration_id", "item_no"])
    for key in zip(randoms["declaration_id"], randoms["item_no"], strict=True):
        assert said.loc[[key], "sentence"].tolist() == [NO_REASONS]
    scored = explanations[explanations["direction"] == "raises"]
    assert scored.groupby(["declaration_id", "item_no"]).size().max() <= 5


def test_a_peer_median_in_a_sentence_matches_the_data(project, explanations):
    """Recompute the reference median of a candidate's unit value per kg from the declarations of
    its peer group in the previous months, and compare with the sentence's numbers."""
    decl = read_dataset(Catalog(project).declarations)
    hits = explanations[
        (explanations["group"] == "declared value") & explanations["sentence"].str.match(SENTENCE)
    ]
    assert len(hits) >= 3, "no unit-value sentence among the reasons"
    month = decl["accepted_date"].dt.year * 12 + decl["accepted_date"].dt.month
    mass = decl["net_mass_kg"].where(decl["net_mass_kg"] > 0, decl["gross_mass_kg"])
    log_uv = np.log(decl["cif_value"] / mass)
    hs6 = decl["hs_code"].astype(str).str.slice(0, 6)
    for reason in hits.head(5).to_dict("records"):
        m = SENTENCE.match(reason["sentence"])
        row = decl[
            (decl["declaration_id"] == reason["declaration_id"])
            & (decl["item_no"] == reason["item_no"])
        ].index[0]
        months = int(m["months"])
        peers = (month < month[row]) & (month >= month[row] - months)
        peers &= hs6 == m["hs"].replace(".", "")
        if m["origin"]:
            peers &= decl["origin_country"] == m["origin"]
        values = log_uv[peers & np.isfinite(log_uv)]
        assert len(values) == int(m["n"]), reason["sentence"]
        median = float(np.exp(values.median()))
        assert abs(float(m["ref"].replace(",", "")) - median) <= max(0.01, 0.005 * median)
        gap = np.exp(log_uv[row]) / median - 1
        assert m["dir"] == ("below" if gap < 0 else "above"), reason["sentence"]
        assert abs(round(abs(gap) * 100) - int(m["gap"])) <= 1, (reason["sentence"], gap)
        page = (project / "data/casefiles" / AREA / f"{reason['declaration_id']}-"
                f"{reason['item_no']}.html").read_text()  # fmt: skip
        assert f"{median:,.2f} (median of {m['n']} declarations" in page


def test_case_files_name_model_version_data_snapshot_and_reasons(project, explanations):
    info = json.loads((project / "models" / AREA / "registration.json").read_text())
    folder = project / "data/casefiles" / AREA
    cands = pd.read_csv(project / "data/candidates" / f"{AREA}.csv", encoding="utf-8-sig")
    assert len(list(folder.glob("*.html"))) == len(cands) + 1
    index = (folder / "index.html").read_text()
    first = cands.iloc[0]
    page = (folder / f"{first['declaration_id']}-{first['item_no']}.html").read_text()
    for html in (index, page):
        assert info["model_id"] in html
        # the exact version and its alias: the lists are the champion's
        assert f"{info['registered_model']} v{info['version']} (challenger, champion)" in html
        assert re.search(r"data/features SHA-256 of the files [0-9a-f]{64}", html)
    top = explanations[
        (explanations["declaration_id"] == first["declaration_id"])
        & (explanations["item_no"] == first["item_no"])
        & (explanations["direction"] == "raises")
    ]
    from markupsafe import escape  # the templates' own escaping (an apostrophe is &#39;)

    for sentence in top["sentence"]:
        assert str(escape(sentence)) in page
    assert "data:image/png;base64," in page and "<img" in page  # waterfall inlined
    assert 'src="http' not in page and "<script" not in page  # opens offline


def test_plots_are_written_and_logged_to_the_areas_mlflow_run(project):
    from mlflow import MlflowClient

    plots = project / "plots/explain" / AREA
    assert {p.name for p in plots.glob("*.png")} == {"importance.png", "beeswarm.png"}
    assert len(list((plots / "cases").glob("*.png"))) == 5
    run_id = json.loads((project / "models" / AREA / "registration.json").read_text())["run_id"]
    uri = f"sqlite:///{project / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    logged = {a.path for a in client.list_artifacts(run_id, "explain")}
    assert {"explain/importance.png", "explain/beeswarm.png", "explain/cases"} <= logged
    assert "explain/casefiles/index.html" in {
        a.path for a in client.list_artifacts(run_id, "explain/casefiles")
    }


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
def test_case_file_renders_in_headless_chromium_and_prints_to_pdf(project, tmp_path):
    from matplotlib.image import imread

    folder = project / "data/casefiles" / AREA
    cands = pd.read_csv(project / "data/candidates" / f"{AREA}.csv", encoding="utf-8-sig")
    first = cands.iloc[0]
    page = folder / f"{first['declaration_id']}-{first['item_no']}.html"
    shot, pdf = tmp_path / "case.png", tmp_path / "case.pdf"
    for extra in (
        [f"--screenshot={shot}", "--window-size=1100,1600"],
        [f"--print-to-pdf={pdf}", "--no-pdf-header-footer"],
    ):
        subprocess.run(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *extra,
             page.as_uri()],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    image = imread(shot)
    assert image.shape[:2] == (1600, 1100)
    ink = (image[..., :3] < 0.5).any(axis=2).mean()
    assert 0.01 < ink < 0.5, f"screenshot looks blank or black ({ink:.3f} dark pixels)"
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 20_000
    assert b"/Type /Page" in data or b"/Type/Page" in data


def test_the_stage_reads_the_picks_and_the_sample_only_and_explains_them_as_from_the_period(
    project, tmp_path
):
    """explain reads the rows of the picks and of the global sample, not the scored period's
    features of every item; its reasons, sample and case-file rows are those the whole period
    gives (bit for bit), and the file it wrote is that table."""
    from riskml import io
    from riskml.catalog import Catalog
    from riskml.config import load_area_specs, load_params
    from riskml.explain import explain_picks, explained_rows, global_sample, picks_of
    from riskml.features import catalogue_for
    from riskml.reasons import candidate_rows
    from riskml.registry import list_model

    params = load_params(project / "params.yaml")
    catalogue = catalogue_for(load_area_specs(project / "pipelines"))
    catalog, split, p = Catalog(project), params.split, params.explain
    months = io.months_overlapping(catalog.features, split.test_start, split.test_end)
    whole = io.read_partitioned(catalog.features, months=months)
    features, sample = explained_rows(project, params, [AREA])
    model = list_model(project, AREA)
    picks = picks_of(catalog, AREA, model)
    assert len(picks) + p.global_sample >= len(features)  # those rows only (a few shared)
    assert len(features) < len(whole) / 5

    expected = global_sample(whole, params, size=p.global_sample, seed=p.seed)
    assert len(sample) == p.global_sample
    pd.testing.assert_frame_equal(sample.reset_index(drop=True), expected.reset_index(drop=True))
    names = model.feature_names_
    pd.testing.assert_frame_equal(
        candidate_rows(picks, features, names), candidate_rows(picks, whole, names)
    )
    table, rows = explain_picks(model, picks, features, catalogue, params)
    table_whole, rows_whole = explain_picks(model, picks, whole, catalogue, params)
    pd.testing.assert_frame_equal(table, table_whole)
    pd.testing.assert_frame_equal(rows, rows_whole)
    io.write_parquet(table_whole, tmp_path / "whole.parquet")
    pd.testing.assert_frame_equal(
        pd.read_parquet(catalog.explanations(AREA)), pd.read_parquet(tmp_path / "whole.parquet")
    )
