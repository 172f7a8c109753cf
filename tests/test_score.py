"""Scoring new declarations: each declaration's features are those the pipeline would have built
on the history and that declaration (causal, as of its date), champions come from the MLflow
registry, odd rows are handled."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from serve_project import AREAS, built_project, new_batch, project_env

from riskml.catalog import Catalog
from riskml.config import load_area_specs, load_params
from riskml.contract import KEY
from riskml.io import read_dataset
from riskml.score import Scorer


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    project = built_project(tmp_path_factory.getbasetemp())
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", project_env(project)["MLFLOW_TRACKING_URI"])
    yield project
    mp.undo()


def _scorer(project, history=None) -> Scorer:
    params = load_params(project / "params.yaml")
    specs = {a: s for a, s in load_area_specs(project / "pipelines").items() if a in AREAS}
    return Scorer(project, params, specs, history=history)


@pytest.mark.parametrize("stored", [False, True], ids=["new", "stored"])
def test_rescoring_reproduces_the_pipeline_scores(project, stored):
    """The last day's declarations, taken out of the history and scored as new, get the
    pipeline's stored scores (rows of one day never count each other); declarations already
    stored, of the last day and of a month two months earlier (late ones), re-scored through the
    feature store, get them too."""
    decl = read_dataset(Catalog(project).declarations)
    outcomes = read_dataset(Catalog(project).outcomes)
    cut = decl["accepted_date"].max()
    last = (decl["accepted_date"] == cut).to_numpy()
    if stored:
        older = decl[decl["accepted_date"] < cut - pd.DateOffset(months=2)].tail(20)
        batch = pd.concat([older, decl[last]], ignore_index=True)
        result = _scorer(project).score_checked(batch)
    else:
        batch = decl[last].reset_index(drop=True)
        # outcomes known before the cut only: a live system does not know the batch's results
        known = outcomes[outcomes["result_date"] < cut]
        result = _scorer(project, history=(decl[~last], known)).score(batch)
        assert result.quarantine.empty
    for area in AREAS:
        stored_scores = read_dataset(project / "data/scores" / area, columns=[*KEY, "score"])
        mine = result.scores[result.scores["area"] == area].merge(
            stored_scores, on=KEY, suffixes=("", "_p")
        )
        assert len(mine) == len(batch)
        np.testing.assert_allclose(mine["score"], mine["score_p"], rtol=1e-6, atol=1e-9)


def test_unseen_importers_unknown_codes_missing_fields_and_bad_rows(project):
    batch = new_batch(project, 30)
    batch.loc[0, "importer_id"] = "IMP-NEVER-SEEN"
    batch.loc[1, "hs_code"] = "99999999"  # not in any reference group
    batch.loc[2, "supplier_id"] = None  # optional
    batch = batch.drop(columns=["description"])  # optional column absent
    batch.loc[3, "cif_value"] = -1.0  # breaks the contract: scored without the value
    batch = batch.astype({"hs_code": object})
    batch.loc[4, "hs_code"] = "12"  # breaks it beyond repair: not scored
    result = _scorer(project).score(batch)
    assert set(result.quarantine["row"]) == {3, 4}
    assert "cif_value" in set(result.quarantine["column"])
    scored = result.scores
    assert len(scored) == 29 * len(AREAS)
    assert scored["score"].between(0, 1).all() and scored["score"].notna().all()
    dq = result.data_quality.set_index("row")
    assert bool(dq.loc[3, "scored"]) and dq.loc[3, "areas_not_scored"] == ""
    assert not dq.loc[4, "scored"] and dq.loc[4, "areas_not_scored"] == ";".join(AREAS)
    assert "hs_code" in dq.loc[4, "reasons"]


def test_score_command_writes_scores_selection_and_quarantine(project, tmp_path):
    batch = new_batch(project, 20, start=100)
    batch.loc[5, "gross_mass_kg"] = 0
    path = tmp_path / "batch.csv"
    batch.assign(accepted_date=batch["accepted_date"].dt.date).to_csv(path, index=False)
    out = tmp_path / "out"
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
    scores = pd.read_csv(out / "scores.csv", encoding="utf-8-sig")
    assert len(scores) == 20 * len(AREAS)  # the zero mass is scored, net mass set missing
    selected = pd.read_csv(out / "selected.csv", encoding="utf-8-sig")
    assert set(selected.columns) == set(scores.columns) and selected["selected"].all()
    quarantine = pd.read_csv(out / "quarantine.csv", encoding="utf-8-sig")
    assert quarantine["row"].unique().tolist() == [5]  # net mass above a gross mass of 0
    quality = pd.read_csv(out / "data_quality.csv", encoding="utf-8-sig")
    assert quality["row"].tolist() == [5] and quality["scored"].all()
    assert "net mass above gross mass" in quality["reasons"].iloc[0]


def test_selected_items_carry_reasons(project):
    scorer = _scorer(project)
    for model in scorer.models.values():
        model.threshold_ = 0.0  # every item reaches the list: all get reasons
    result = scorer.score(new_batch(project, 15, start=200))
    assert result.scores["selected"].all()
    assert (result.scores["reasons"].str.len() > 0).all()
    wide = result.wide()  # what POST /score returns: one row per item
    assert len(wide) == 15 and set(AREAS) <= set(wide.columns)
    assert (wide["selected_areas"].str.split(";").map(set) == set(AREAS)).all()
    for area in AREAS:
        part = result.scores[result.scores["area"] == area].reset_index(drop=True)
        np.testing.assert_array_equal(wide[area].to_numpy(), part["score"].to_numpy())
        assert (wide[f"reasons_{area}"] == part["reasons"]).all()
    quick = scorer.score(new_batch(project, 15, start=200), reasons=False)
    assert (quick.scores["reasons"] == "").all()
    assert not any(c.startswith("reasons_") for c in quick.wide().columns)


def test_a_batch_after_the_history_is_featurised_from_the_store(project):
    """A batch of one day after the stored months gets from the feature store the features of
    the full rebuild on history + batch (rows of one day never count each other)."""
    from riskml.features import build_features

    scorer = _scorer(project)
    batch = new_batch(project, 40, start=300)
    next_month = scorer.declarations["accepted_date"].max() + pd.offsets.MonthBegin(1)
    batch["accepted_date"] = next_month + pd.Timedelta(days=3)
    good, quarantine = scorer.check(batch)
    assert quarantine.empty
    fast = scorer.features(good)
    both = pd.concat([scorer.declarations, good], ignore_index=True)
    full = build_features(
        both, scorer.outcomes, scorer.params.features, specs=scorer.specs, seizures=scorer.seizures
    )
    assert scorer.seizures is not None and not scorer.seizures.empty
    expected = full.iloc[len(scorer.declarations) :].reset_index(drop=True)
    pd.testing.assert_frame_equal(fast, expected, check_exact=True)


def test_threshold_is_the_lists_key_at_the_operating_rate(project):
    """An item is marked selected when its key reaches the champion's operating threshold: the
    key, under the list's own rule (revenue: probability × predicted recovery **
    recovery_exponent, not the expected recovery itself), of the item at the area's operating
    rate in the scored period."""
    from riskml.select import ranked

    params = load_params(project / "params.yaml")
    scorer = _scorer(project)
    spec = scorer.specs["revenue"]
    assert spec.rank_by == "expected_recovery" and 0 < spec.recovery_exponent < 1
    scores = read_dataset(project / "data/scores/revenue")
    decl = read_dataset(Catalog(project).declarations)
    outcomes = read_dataset(Catalog(project).outcomes)
    keys = ranked(scores, decl, outcomes, spec, params.split)["rank_key"].to_numpy()
    n = int(round(spec.operating_rate * len(scores)))
    threshold = scorer.models["revenue"].threshold_
    assert threshold == pytest.approx(keys[n - 1], rel=1e-12)
    # the expected recovery alone would put the bar elsewhere
    by_amount = np.sort(scores["expected_recovery"].to_numpy())[::-1][n - 1]
    assert threshold != pytest.approx(by_amount, rel=1e-6)


def _json_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as the service builds it from a JSON body (values as JSON gives them)."""
    import json

    rows = json.loads(frame.to_json(orient="records", date_format="iso"))
    return pd.DataFrame.from_records(rows)


def test_small_batches_scored_together_get_what_each_gets_alone(project):
    """``check_and_score_many`` (the service's concurrent single declarations in one pass)
    gives every batch its own result bit for bit: good rows, quarantine (rows counted within
    the batch), scores, rank keys, selections and model versions; batches that cannot share a
    pass (a declaration id in two of them, other dtypes) are scored one by one."""
    scorer = _scorer(project)
    fresh = new_batch(project, 12)
    stored = read_dataset(Catalog(project).declarations).head(1)
    bad = fresh.iloc[[5]].assign(declaration_id="BAD1", cif_value=-5.0)  # kept, value missing
    worse = fresh.iloc[[6]].assign(declaration_id="BAD2", hs_code="12")  # not scored
    batches = [
        fresh.iloc[[0]],
        fresh.iloc[[1, 2]],
        pd.concat([fresh.iloc[[3]], bad, fresh.iloc[[3]]]),  # a key twice: not scored
        pd.concat([worse, fresh.iloc[[4]]]),
        stored,  # already stored: not scored
        pd.concat([fresh.iloc[7:12], bad.assign(declaration_id="BAD3")]),
    ]
    batches = [_json_rows(b.reset_index(drop=True)) for b in batches]
    from riskml.score import can_share

    assert can_share(batches)
    together = scorer.check_and_score_many(batches)
    alone = [scorer.check_and_score(b) for b in batches]
    for (good, quarantine, result), (good1, quarantine1, result1) in zip(
        together, alone, strict=True
    ):
        pd.testing.assert_frame_equal(good, good1)
        pd.testing.assert_frame_equal(quarantine, quarantine1)
        pd.testing.assert_frame_equal(result.scores, result1.scores)
        pd.testing.assert_frame_equal(result.wide(), result1.wide())
        assert result.models == result1.models
    assert together[2][1]["row"].tolist() and set(together[2][1]["row"]) <= {0, 1, 2}
    assert len(together[4][0]) == 0 and len(together[5][2].wide()) == 6
    # the same id in two batches, or a float column of text: one by one
    assert not can_share([batches[0], batches[0]])
    assert not can_share([batches[0], batches[1].astype({"office": object}).assign(office=1.5)])


def test_the_service_queue_scores_concurrent_declarations_in_one_pass(project):
    """Single declarations that arrive while a pass is due share it (ScoreQueue of
    ``POST /score``), and each gets its own result: the one it gets alone."""
    import asyncio

    from riskml.serve.routes.scoring import ScoreQueue

    scorer = _scorer(project)
    passes: list[int] = []

    class Counting:
        def check_and_score_many(self, batches):  # type: ignore[no-untyped-def]
            passes.append(len(batches))
            return scorer.check_and_score_many(batches)

        def check_and_score(self, batch):  # type: ignore[no-untyped-def]
            return scorer.check_and_score(batch)

    fresh = new_batch(project, 5)
    batches = [_json_rows(fresh.iloc[[i]].reset_index(drop=True)) for i in range(5)]
    queue = ScoreQueue()

    async def all_at_once():  # type: ignore[no-untyped-def]
        return await asyncio.gather(*(queue.score(Counting(), b) for b in batches))

    results = asyncio.run(all_at_once())
    assert passes == [5]  # one pass for the five
    for batch, (good, quarantine, result) in zip(batches, results, strict=True):
        alone = scorer.check_and_score(batch)
        pd.testing.assert_frame_equal(result.scores, alone[2].scores)
        assert quarantine.empty and len(good) == 1


def _edge_rows(project, n: int = 48) -> pd.DataFrame:
    """New declarations with the cases a lean path could get wrong: unseen importer, unknown
    HS code, missing optional values, zero value and mass, rates above 100%, upper-case codes,
    an unknown origin, dates inside and before the history, and two rows that fail checks
    (one kept without its value, one not scored)."""
    batch = new_batch(project, n)
    decl = read_dataset(Catalog(project).declarations)
    edits = {
        0: {"importer_id": "IMP-NEVER-SEEN"},
        1: {"hs_code": "99999999"},
        2: {"supplier_id": None, "departure_country": None},
        3: {"cif_value": 0.0},
        4: {"gross_mass_kg": 0.0, "net_mass_kg": None},
        5: {"duty_rate": 1.5},
        6: {"duty_rate": 10.0, "duties_paid": 0.0},
        7: {"quantity": 1e-6},
        8: {"cif_value": -1.0},  # fails: scored without the value
        9: {"hs_code": "12"},  # fails: not scored
        10: {"transport_mode": "SEA", "office": " " + str(batch.loc[10, "office"])},
        11: {"origin_country": "ZZ", "preference_claim": None, "tariff_treatment": None},
        12: {"accepted_date": decl["accepted_date"].quantile(0.5)},
        13: {"accepted_date": decl["accepted_date"].min() - pd.Timedelta(days=45)},
        14: {"net_mass_kg": 1e12},  # net above gross: kept without it
    }
    batch = batch.astype(object)
    for row, values in edits.items():
        for column, value in values.items():
            batch.at[row, column] = value
    return _json_rows(batch.infer_objects())


def test_a_declaration_alone_gets_what_a_large_batch_gives_it(project):
    """The lean path of a few rows (row-wise contract check, the model inputs without a
    feature frame) gives each declaration bit for bit what the column-wise path of a large
    batch (with reasons: the whole feature frame) gives it: scores, rank keys, selection, rule
    and watch-list hits, model versions and quarantine decisions; with every optional column
    and without them."""
    scorer = _scorer(project)
    rows = _edge_rows(project)
    optional = [
        c for c in ("description", "supplier_id", "departure_country", "fob_value",
                    "preference_claim", "tariff_treatment", "quantity_unit", "procedure")
        if c in rows.columns
    ]  # fmt: skip
    cases = [rows, rows.head(16).drop(columns=optional)]
    fields = ["score", "expected_recovery", "rank_key", "selected", "fired", "flags"]
    for frame in cases:
        padding = _json_rows(new_batch(project, 80, start=200))[frame.columns]
        big = pd.concat([frame, padding], ignore_index=True)  # > 64 rows: column-wise
        good, quarantine, result = scorer.check_and_score(big, reasons=True)
        together = result.scores.set_index(["declaration_id", "area"])
        lean_taken = 0
        for i in range(len(frame)):
            one = frame.iloc[[i]].reset_index(drop=True)
            from riskml.contract import validate_rows

            lean_taken += validate_rows(one) is not None
            g1, q1, r1 = scorer.check_and_score_many([one])[0]
            mine = quarantine[quarantine["row"] == i].drop(columns="row").reset_index(drop=True)
            pd.testing.assert_frame_equal(q1.drop(columns="row"), mine)
            ident = one["declaration_id"].iloc[0]
            if g1.empty:
                assert ident not in set(good["declaration_id"])
                continue
            alone = r1.scores.set_index(["declaration_id", "area"])
            expect = together.loc[alone.index]
            for f in fields:
                a, b = alone[f].to_numpy(), expect[f].to_numpy()
                if a.dtype.kind == "f":
                    assert np.array_equal(a.view(np.int64), b.view(np.int64)), (i, f)
                else:
                    assert (a == b).all(), (i, f)
            assert (alone["model_version"] == expect["model_version"]).all()
            pd.testing.assert_frame_equal(
                g1, good[good["declaration_id"] == ident].reset_index(drop=True)
            )
        assert lean_taken >= len(frame) - 4  # the clean rows took the row-wise check
