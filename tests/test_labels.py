"""Labels per area on hand-built frames with known answers."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from riskml.config import AreaSpec, load_area_spec, load_area_specs, load_params
from riskml.labels import LABEL_COLUMNS, build_labels, negative_kinds
from riskml.simulate import simulate
from riskml.train import training_labels


def _spec(name: str, detectable_by: list[str]) -> AreaSpec:
    return AreaSpec(
        name=name,
        title=name,
        positive="found",
        detectable_by=detectable_by,
        inspection_rates=[0.01],
        operating_rate=0.01,
        capacity=10,
    )


REVENUE = _spec("revenue", ["documentary", "physical", "pca", "random"])
DRUGS = _spec("drugs", ["physical", "scanner", "random"])


@pytest.fixture
def declarations() -> pd.DataFrame:
    ids = ["D1", "D1", "D2", "D3", "D4", "D5", "D6", "D7"]
    items = [1, 2, 1, 1, 1, 1, 1, 1]
    return pd.DataFrame(
        {
            "declaration_id": ids,
            "item_no": items,
            "accepted_date": pd.to_datetime(["2024-01-01"] * len(ids)),
        },
        index=range(10, 10 + len(ids)),
    )


def _outcome(did, item, kind, date, area=None, found=False, duty=0.0):
    return {
        "declaration_id": did,
        "item_no": item,
        "control_kind": kind,
        "result_date": pd.Timestamp(date),
        "risk_area": area,
        "offence_found": found,
        "offence_code": None,
        "additional_duty": duty,
        "quantity_seized": 0.0,
    }


@pytest.fixture
def outcomes() -> pd.DataFrame:
    rows = [
        # D1/1: revenue found by a documentary check, 120 recovered, plus a later PCA finding 30.
        _outcome("D1", 1, "documentary", "2024-01-05", "revenue", True, 120.0),
        _outcome("D1", 1, "pca", "2024-06-01", "revenue", True, 30.0),
        # D1/2: clean physical control without area: clean for revenue and drugs.
        _outcome("D1", 2, "physical", "2024-01-10"),
        # D2/1: scanner clean: clean for drugs only (revenue cannot be seen by a scanner).
        _outcome("D2", 1, "scanner", "2024-01-03"),
        # D3/1: random control found drugs: revenue 0 (random looked), drugs 1.
        _outcome("D3", 1, "random", "2024-01-04", "drugs", True, 0.0),
        # D4/1: documentary clean for ipr only: says nothing about revenue or drugs.
        _outcome("D4", 1, "documentary", "2024-01-04", "ipr", False),
        # D5/1: random clean, later a PCA finds revenue: positive, kind random.
        _outcome("D5", 1, "random", "2024-01-02"),
        _outcome("D5", 1, "pca", "2024-09-01", "revenue", True, 50.0),
        # D6/1: controlled only after the training cut-off.
        _outcome("D6", 1, "physical", "2024-12-01", "revenue", True, 10.0),
        # D7/1: never controlled.
    ]
    return pd.DataFrame(rows)


def _by_key(frame: pd.DataFrame) -> dict:
    return {
        (r.declaration_id, r.item_no): (r.label, r.control_kind, r.recovered)
        for r in frame.itertuples()
    }


def _same(a, b) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if a is pd.NA or b is pd.NA:
        return a is b
    return a == b


def _check(frame: pd.DataFrame, expected: dict) -> None:
    got = _by_key(frame)
    assert set(got) == set(expected)
    for key, want in expected.items():
        assert all(_same(g, w) for g, w in zip(got[key], want, strict=True)), (key, got[key], want)


def test_revenue_labels(declarations, outcomes):
    nan = float("nan")
    labels = build_labels(declarations, outcomes, REVENUE)
    assert list(labels.columns) == LABEL_COLUMNS
    assert list(labels.index) == list(declarations.index)
    assert list(labels["declaration_id"]) == list(declarations["declaration_id"])
    _check(
        labels,
        {
            ("D1", 1): (1.0, "documentary", 150.0),
            ("D1", 2): (0.0, "physical", 0.0),
            ("D2", 1): (nan, pd.NA, 0.0),
            ("D3", 1): (0.0, "random", 0.0),
            ("D4", 1): (nan, pd.NA, 0.0),
            ("D5", 1): (1.0, "random", 50.0),
            ("D6", 1): (1.0, "physical", 10.0),
            ("D7", 1): (nan, pd.NA, 0.0),
        },
    )


def test_drugs_labels(declarations, outcomes):
    nan = float("nan")
    labels = build_labels(declarations, outcomes, DRUGS)
    _check(
        labels,
        {
            # the documentary revenue finding says nothing (documentary cannot see drugs),
            # the PCA neither; so D1/1 is unlabelled for drugs.
            ("D1", 1): (nan, pd.NA, 0.0),
            ("D1", 2): (0.0, "physical", 0.0),
            ("D2", 1): (0.0, "scanner", 0.0),
            ("D3", 1): (1.0, "random", 0.0),
            ("D4", 1): (nan, pd.NA, 0.0),
            ("D5", 1): (0.0, "random", 0.0),
            ("D6", 1): (0.0, "physical", 0.0),
            ("D7", 1): (nan, pd.NA, 0.0),
        },
    )


def test_known_before_hides_late_results(declarations, outcomes):
    nan = float("nan")
    labels = build_labels(declarations, outcomes, REVENUE, known_before=pd.Timestamp("2024-06-01"))
    _check(
        labels,
        {
            # the PCA result of 2024-06-01 is not known strictly before 2024-06-01
            ("D1", 1): (1.0, "documentary", 120.0),
            ("D1", 2): (0.0, "physical", 0.0),
            ("D2", 1): (nan, pd.NA, 0.0),
            ("D3", 1): (0.0, "random", 0.0),
            ("D4", 1): (nan, pd.NA, 0.0),
            ("D5", 1): (0.0, "random", 0.0),
            ("D6", 1): (nan, pd.NA, 0.0),
            ("D7", 1): (nan, pd.NA, 0.0),
        },
    )


def test_no_outcomes_means_no_labels(declarations, outcomes):
    labels = build_labels(declarations, outcomes.iloc[0:0], REVENUE)
    assert labels["label"].isna().all()
    assert labels["control_kind"].isna().all()
    assert (labels["recovered"] == 0).all()
    assert labels["label"].dtype == "float64"


def test_earliest_informative_kind_decides_negative(declarations):
    outcomes = pd.DataFrame(
        [
            _outcome("D7", 1, "pca", "2024-05-01"),
            _outcome("D7", 1, "documentary", "2024-02-01"),
        ]
    )
    labels = build_labels(declarations, outcomes, REVENUE)
    row = labels[labels["declaration_id"] == "D7"].iloc[0]
    assert row["label"] == 0.0 and row["control_kind"] == "documentary"


def test_missing_column_is_a_clear_error(declarations, outcomes):
    from riskml.contract import RiskmlError

    with pytest.raises(RiskmlError, match="control_kind"):
        build_labels(declarations, outcomes.drop(columns="control_kind"), REVENUE)


REASONS = {  # the reason of each outcome row of the fixture, in its order
    ("D1", 1, "documentary"): "intelligence",
    ("D1", 1, "pca"): "profile",
    ("D1", 2, "physical"): "profile",
    ("D2", 1, "scanner"): "intelligence",
    ("D3", 1, "random"): "random",
    ("D4", 1, "documentary"): "profile",
    ("D5", 1, "random"): "random",
    ("D5", 1, "pca"): "profile",
    ("D6", 1, "physical"): "intelligence",
}


def test_control_reason_is_the_deciding_control_s_and_only_of_labelled_items(
    declarations, outcomes
):
    keyed = zip(
        outcomes["declaration_id"], outcomes["item_no"], outcomes["control_kind"], strict=True
    )
    with_reason = outcomes.assign(control_reason=[REASONS[k] for k in keyed])
    got = {}
    for spec in (REVENUE, DRUGS):
        labels = build_labels(declarations, with_reason, spec)
        keys = labels["declaration_id"] + "/" + labels["item_no"].astype(str)
        reasons = labels["control_reason"].astype(object)
        got[spec.name] = {k: None if pd.isna(v) else v for k, v in zip(keys, reasons, strict=True)}
        # a reason is known only where a control labelled the item for the area
        assert (labels["control_reason"].notna() == labels["label"].notna()).all()
    # revenue: D1/1 positive by its first finding (documentary, intelligence); D5/1 decided by
    # its random control although a PCA (profile) found the offence; D6/1 intelligence
    assert got["revenue"] == {
        "D1/1": "intelligence", "D1/2": "profile", "D2/1": None, "D3/1": "random",
        "D4/1": None, "D5/1": "random", "D6/1": "intelligence", "D7/1": None,
    }  # fmt: skip
    # drugs: the scanner check (intelligence) decides D2/1; D1/1 is unlabelled
    assert got["drugs"]["D2/1"] == "intelligence" and got["drugs"]["D1/1"] is None
    # without the column: today's labels, no reason
    plain = build_labels(declarations, outcomes, REVENUE)
    assert plain["control_reason"].isna().all()
    pd.testing.assert_frame_equal(
        plain.drop(columns="control_reason"),
        build_labels(declarations, with_reason, REVENUE).drop(columns="control_reason"),
    )


# --- training.negative_kinds on a simulated world and the shipped specs ----------------------

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def sim_world() -> dict[str, pd.DataFrame]:
    """A small simulated world of the shipped params and specs (read-only)."""
    base = load_params(ROOT / "params.yaml").simulate
    params = base.model_copy(update={"n_items": 30_000, "months": 8, "drift_month": 4})
    return simulate(params, load_area_specs(ROOT / "pipelines"))


def _spec_with(tmp_path: Path, area: str, negative_kinds: list[str]) -> AreaSpec:
    """The shipped ``pipelines/<area>.yaml`` with ``training.negative_kinds`` set, read back."""
    doc = yaml.safe_load((ROOT / f"pipelines/{area}.yaml").read_text())
    doc["training"]["negative_kinds"] = negative_kinds
    path = tmp_path / f"{area}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_area_spec(path)


def test_shipped_specs_train_on_the_labels_every_measurement_reads(sim_world):
    """No shipped spec sets negative_kinds: training's labels (own and first stage) are the
    labels built without the option, today's, frame for frame."""
    decl, outc = sim_world["declarations"], sim_world["outcomes"]
    specs = load_area_specs(ROOT / "pipelines")
    cut = pd.Timestamp("2023-07-01")
    for spec in specs.values():
        assert spec.negative_kinds is None and negative_kinds(spec) == spec.detectable_by
        for labelled_only in (False, True):
            today = build_labels(decl, outc, spec, known_before=cut, labelled_only=labelled_only)
            own, _ = training_labels(
                decl, outc, spec, specs, known_before=cut, labelled_only=labelled_only
            )
            pd.testing.assert_frame_equal(own, today, check_exact=True)


def test_negative_kinds_drops_exactly_the_clean_results_of_the_kinds_left_out(sim_world, tmp_path):
    decl, outc = sim_world["declarations"], sim_world["outcomes"]
    specs = load_area_specs(ROOT / "pipelines")
    spec = _spec_with(tmp_path, "environment", ["physical", "random"])
    assert spec.detectable_by == ["documentary", "physical", "random"]
    every = build_labels(decl, outc, specs["environment"], labelled_only=True)
    fewer = build_labels(decl, outc, spec, labelled_only=True, negatives_from=negative_kinds(spec))
    # the items that keep a label: an environment finding (any kind), or a control of a kind
    # kept that found nothing of environment (clean, or a finding of another area)
    area = outc["risk_area"].astype("string")
    found_here = outc["offence_found"].astype(bool) & (area == "environment").fillna(False)
    clean_other = ~outc["offence_found"].astype(bool) & area.notna() & (area != "environment")
    kept_kind = outc["control_kind"].isin(["physical", "random"])
    keeps = outc[found_here | (kept_kind & ~clean_other)]
    keys = set(zip(keeps["declaration_id"], keeps["item_no"], strict=True))
    every_keys = zip(every["declaration_id"], every["item_no"], strict=True)
    expected = every[[k in keys for k in every_keys]]
    dropped = every.loc[every.index.difference(expected.index)]
    assert len(dropped) > 100 and (dropped["label"] == 0).all()
    assert set(dropped["control_kind"]) == {"documentary"}
    # the same items, the same labels; a negative's deciding kind is now a kept one
    assert fewer.index.equals(expected.index)
    assert (fewer["label"] == expected["label"]).all()
    assert set(fewer.loc[fewer["label"] == 0, "control_kind"]) <= {"physical", "random"}
    assert fewer["label"].sum() == every["label"].sum() > 0
    # training's labels follow the spec, the first stage's negatives with them
    own, first = training_labels(decl, outc, spec, specs, known_before=None, labelled_only=True)
    pd.testing.assert_frame_equal(own, fewer)
    _, first_every = training_labels(
        decl, outc, specs["environment"], specs, known_before=None, labelled_only=True
    )
    gone = first_every.index.difference(first.index)
    assert len(gone) > 0 and set(gone) <= set(dropped.index)
    assert (first_every.loc[gone, "label"] == 0).all()
