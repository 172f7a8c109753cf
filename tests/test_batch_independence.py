"""A score does not depend on its batch companions (issue 11, part 4): a declaration scored alone,
in a batch of 1,000 or in a shuffled batch of 50,000, through :class:`riskml.score.Scorer`, the
``riskml score`` command or ``POST /score``, gets the same features, score, rank key, selection
and reasons, bit for bit. Its features come from the stored history as of its own date.

The companions are chosen to tempt the old behaviour: copies of the same declaration (same
importer, HS code, origin, supplier, values) on the days before it, which would feed its profile,
novelty and reference price if a batch counted its own rows, and rows of every month."""

from __future__ import annotations

import io
import subprocess
import sys

import httpx
import numpy as np
import pandas as pd
import pytest
from serve_project import AREAS, LiveServer, built_project, project_env

from riskml.catalog import Catalog
from riskml.config import load_area_specs, load_params
from riskml.contract import KEY
from riskml.feedback import FeedbackStore
from riskml.io import read_dataset
from riskml.score import Scorer

SCORE_FIELDS = ["score", "expected_recovery", "rank_key", "selected", "fired", "flags", "reasons"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    project = built_project(tmp_path_factory.getbasetemp())
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", project_env(project)["MLFLOW_TRACKING_URI"])
    yield project
    mp.undo()


def _scorer(project) -> Scorer:
    params = load_params(project / "params.yaml")
    specs = {a: s for a, s in load_area_specs(project / "pipelines").items() if a in AREAS}
    return Scorer(project, params, specs)


@pytest.fixture(scope="module")
def batches(project) -> dict[str, pd.DataFrame]:
    """The targets (a late declaration dated inside the stored months, and one dated after
    them), and the batches of 1,000 and 50,000 holding them, as text (as a CSV arrives)."""
    decl = read_dataset(Catalog(project).declarations)
    ranks = [
        read_dataset(project / "data/scores" / a, columns=[*KEY, "score"])
        .set_index(KEY)["score"]
        .rank(pct=True)
        for a in AREAS
    ]
    top = pd.concat(ranks, axis=1).min(axis=1).idxmax()  # high in every area: on every list
    source = decl.set_index(KEY).loc[[top]].reset_index()
    after = decl["accepted_date"].max() + pd.Timedelta(days=3)
    targets = pd.concat(
        [
            source.assign(declaration_id="TARGET-LATE"),
            source.assign(declaration_id="TARGET-NEW", accepted_date=after),
        ],
        ignore_index=True,
    )
    # Tempting companions: the same declaration on the 20 days before each target.
    echoes = pd.concat(
        [
            targets.iloc[[i]].assign(
                declaration_id=f"ECHO-{i}-{k}",
                accepted_date=targets["accepted_date"].iloc[i] - pd.Timedelta(days=k),
            )
            for i in range(len(targets))
            for k in range(1, 21)
        ],
        ignore_index=True,
    )
    rng = np.random.default_rng(11)
    first, last = decl["accepted_date"].min(), after + pd.Timedelta(days=30)
    n_other = 50_000 - len(targets) - len(echoes)
    others = decl.sample(n=n_other, replace=True, random_state=11).assign(
        declaration_id=[f"OTHER{i:06d}" for i in range(n_other)],
        item_no=1,
        accepted_date=first + pd.to_timedelta(rng.integers(0, (last - first).days, n_other), "D"),
    )
    big = pd.concat([targets, echoes, others], ignore_index=True).sample(frac=1.0, random_state=3)
    small = pd.concat([echoes, others.head(1000 - len(targets) - len(echoes)), targets])
    small = small.sample(frac=1.0, random_state=5)

    def as_text(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.assign(accepted_date=frame["accepted_date"].dt.date)
        return read_batch_text(frame.reset_index(drop=True))

    return {"targets": as_text(targets), "1000": as_text(small), "50000": as_text(big)}


def read_batch_text(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` through a CSV file's text, as ``riskml score`` and ``POST /score`` read it."""
    text = frame.to_csv(index=False)
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


def _rows(frame: pd.DataFrame, ids: list[str]) -> pd.DataFrame:
    """The rows of ``frame`` whose declaration_id is in ``ids``, in that order (per area)."""
    keep = frame[frame["declaration_id"].isin(ids)]
    order = {d: i for i, d in enumerate(ids)}
    sort = [c for c in ("area",) if c in keep] + ["_order"]
    keep = keep.assign(_order=keep["declaration_id"].map(order)).sort_values(sort)
    return keep.drop(columns="_order").reset_index(drop=True)


def test_a_declaration_scores_the_same_alone_and_in_any_batch(project, batches):
    """Through :class:`Scorer`: features, scores, rank keys, selection and reasons of each target
    alone equal its rows in the batch of 1,000 and in the shuffled batch of 50,000. The lists'
    thresholds are set at the targets' own keys so that their reasons are computed."""
    scorer = _scorer(project)
    targets = batches["targets"]
    ids = list(targets["declaration_id"])
    first = scorer.score(targets, reasons=False).scores
    for area, model in scorer.models.items():
        model.threshold_ = float(first.loc[first["area"] == area, "rank_key"].min())
    alone = [scorer.score(targets.iloc[[i]]) for i in range(len(targets))]
    assert all(r.quarantine.empty for r in alone)
    alone_scores = _rows(pd.concat([r.scores for r in alone]), ids)
    assert alone_scores["selected"].all() and (alone_scores["reasons"] != "").all()
    good, _ = scorer.check(targets)
    alone_features = pd.concat([scorer.features(good.iloc[[i]]) for i in range(len(good))])
    for size in ("1000", "50000"):
        batch = batches[size]
        result = scorer.score(batch)
        # a stored item with a value set missing (serve_project's broken row) is sampled as a
        # companion too: listed, and scored like every other row
        assert result.quarantine["action"].str.startswith("kept").all()
        assert len(result.scores) == len(batch) * len(AREAS)
        mine = _rows(result.scores, ids)
        pd.testing.assert_frame_equal(mine, alone_scores, check_exact=True)
        good, _ = scorer.check(batch)
        features = _rows(scorer.features(good), ids)
        pd.testing.assert_frame_equal(
            features, alone_features.reset_index(drop=True), check_exact=True
        )
    # the echoes are not ignored by accident: once stored, they count for the new target
    echoes = batches["1000"][batches["1000"]["declaration_id"].str.startswith("ECHO-1-")]
    stored, _ = scorer.check(echoes)
    grown = Scorer(
        project,
        scorer.params,
        scorer.specs,
        history=(pd.concat([scorer.declarations, stored], ignore_index=True), scorer.outcomes),
        models=scorer.models,
    )
    new_target = good[good["declaration_id"] == "TARGET-NEW"]
    before, after = scorer.features(new_target), grown.features(new_target)
    assert after["imp_n_items"].iloc[0] > before["imp_n_items"].iloc[0]


def _cli(project, path, out) -> pd.DataFrame:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "riskml",
            "score",
            str(path),
            "--root",
            str(project),
            "--out",
            str(out),
        ],
        env=project_env(project),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return pd.read_csv(out / "scores.csv", encoding="utf-8-sig", dtype=str, keep_default_na=False)


def test_the_score_command_and_the_service_agree_alone_and_in_a_batch(project, batches, tmp_path):
    """``riskml score`` on the batch of 1,000 and ``POST /score`` (CSV in and out, with reasons)
    on each target alone and on the batch: the targets' rows are the same text, and the command
    gives the numbers the service gives."""
    from riskml.serve import create_app

    targets, batch = batches["targets"], batches["1000"]
    ids = list(targets["declaration_id"])
    path = tmp_path / "batch.csv"
    batch.to_csv(path, index=False)
    cli = _rows(_cli(project, path, tmp_path / "out"), ids)
    assert len(cli) == len(ids) * len(AREAS)

    params = load_params(project / "params.yaml")
    specs = {a: s for a, s in load_area_specs(project / "pipelines").items() if a in AREAS}
    feedback = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.db'}")
    token = feedback.create_token("auditor-1", "auditor")
    app = create_app(project, params, specs, store=feedback)
    with (
        LiveServer(app) as server,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=300
        ) as client,
    ):

        def post(frame: pd.DataFrame) -> pd.DataFrame:
            r = client.post(
                "/score",
                params={"format": "csv", "reasons": "true"},
                content=frame.to_csv(index=False),
                headers={"Content-Type": "text/csv"},
            )
            assert r.status_code == 200, r.text
            return pd.read_csv(io.StringIO(r.text), dtype=str, keep_default_na=False)

        alone = pd.concat([post(targets.iloc[[i]]) for i in range(len(targets))])
        in_batch = post(batch)
    alone, in_batch = _rows(alone, ids), _rows(in_batch, ids)
    assert len(in_batch) == len(ids)
    assert (in_batch["selected_areas"] != "").any()  # on a list: reasons come with them
    alone = alone.reindex(columns=in_batch.columns).fillna("")
    pd.testing.assert_frame_equal(in_batch, alone, check_exact=True, check_dtype=False)
    for area in AREAS:
        part = cli[cli["area"] == area].reset_index(drop=True)
        assert (part["score"] == in_batch[area]).all()
        on_list = part["selected"] == "True"
        listed = [area in a.split(";") for a in in_batch["selected_areas"]]
        assert on_list.tolist() == listed
        if f"reasons_{area}" in in_batch:
            assert (part["reasons"][on_list] == in_batch[f"reasons_{area}"][on_list]).all()
