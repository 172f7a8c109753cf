"""Explanations: TreeSHAP contributions from a real LightGBM model, additivity, sentences."""

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from riskml.config import load_area_specs
from riskml.contract import RiskmlError
from riskml.features import CATALOGUE as FIXED_CATALOGUE
from riskml.features import catalogue_for
from riskml.features.catalogue import FeatureInfo, template_fields
from riskml.reasons import (
    NO_REASONS,
    check_additivity,
    contributions,
    explain_area,
    group_contributions,
    no_reason_rows,
    reasons,
    sentence,
    validate_explanations,
)

CATALOGUE = {
    info.name: info
    for info in (
        FeatureInfo(
            "pct_vs_ref",
            "value",
            "unit value against the reference",
            "unit value {pct_below:.0%} below the median of {ctx_ref_count:.0f} declarations",
        ),
        FeatureInfo(
            "imp_hits", "importer history", "importer findings", "importer: {imp_hits:.0f} findings"
        ),
        FeatureInfo("noise", "other", "noise", "noise is {noise:.2f}"),
    )
}


@pytest.fixture(scope="module")
def model_and_frame():
    rng = np.random.default_rng(0)
    n = 4000
    frame = pd.DataFrame(
        {
            "declaration_id": [f"D{i:05d}" for i in range(n)],
            "item_no": 1,
            "pct_vs_ref": rng.normal(0, 1, n),
            "imp_hits": rng.poisson(1.0, n).astype(float),
            "noise": rng.normal(0, 1, n),
        }
    )
    logit = -2.5 - 1.5 * frame["pct_vs_ref"] + 0.8 * frame["imp_hits"]
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    frame["pct_below"] = -frame["pct_vs_ref"] / 3
    frame["ctx_ref_count"] = 412.0
    X = frame[["pct_vs_ref", "imp_hits", "noise"]]
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 1, "seed": 1},
        lgb.Dataset(X, label=y.astype(int)),
        num_boost_round=60,
    )
    return booster, frame


def test_contributions_add_up_to_raw_score(model_and_frame):
    booster, frame = model_and_frame
    contrib = contributions(booster, frame, chunk_size=333)
    raw = booster.predict(frame[booster.feature_name()], raw_score=True)
    assert list(contrib.columns) == [*booster.feature_name(), "bias"]
    np.testing.assert_allclose(contrib.sum(axis=1), raw, atol=1e-6)


def test_contributions_match_shap_tree_explainer(model_and_frame):
    shap = pytest.importorskip("shap")
    booster, frame = model_and_frame
    X = frame[booster.feature_name()].head(50)
    ours = contributions(booster, X).drop(columns="bias").to_numpy()
    theirs = shap.TreeExplainer(booster).shap_values(X)
    theirs = theirs[1] if isinstance(theirs, list) else theirs
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_additivity_check_fails_on_mismatch():
    with pytest.raises(RiskmlError, match="additivity"):
        check_additivity(np.array([[0.5, 0.5]]), np.array([2.0]))


def test_strongest_reason_is_the_price_gap_for_an_undervalued_item(model_and_frame):
    booster, frame = model_and_frame
    row = frame.iloc[[0]].copy()
    row["pct_vs_ref"] = -3.0
    row["pct_below"] = 0.78
    row["imp_hits"] = 0.0
    out = explain_area(
        booster, row[["declaration_id", "item_no"]], row, CATALOGUE, n_reasons=3, chunk_size=10
    )
    top = out[(out["direction"] == "raises") & (out["rank"] == 1)].iloc[0]
    assert top["feature"] == "pct_vs_ref"
    assert top["sentence"] == "unit value 78% below the median of 412 declarations"
    assert top["contribution"] > 0
    assert (out.loc[out["direction"] == "lowers", "contribution"] < 0).all()


def test_reasons_rank_by_contribution_and_limit_count(model_and_frame):
    booster, frame = model_and_frame
    rows = frame.head(30)
    contrib = contributions(booster, rows)
    out = reasons(rows, contrib, CATALOGUE, n_up=2, n_down=1)
    for _, grp in out[out["direction"] == "raises"].groupby("declaration_id"):
        assert len(grp) <= 2
        assert grp.sort_values("rank")["contribution"].is_monotonic_decreasing


def test_sentence_falls_back_to_description_when_a_fact_is_missing():
    row = {"pct_vs_ref": -1.0, "pct_below": float("nan"), "ctx_ref_count": 3.0}
    assert sentence("pct_vs_ref", row, CATALOGUE) == "unit value against the reference: -1"
    assert sentence("unknown_feature", {"unknown_feature": 2.0}, CATALOGUE) == "unknown_feature = 2"


def test_a_sentence_is_given_once_with_the_contributions_behind_it():
    catalogue = {
        name: FeatureInfo(name, "value", name, "unit value {gap:.0%} below the median")
        for name in ("gap_z", "gap_pct")
    }
    rows = pd.DataFrame(
        {"declaration_id": ["D1"], "item_no": [1], "gap_z": [-3.0], "gap_pct": [-0.6], "gap": [0.6]}
    )
    contrib = pd.DataFrame({"gap_z": [0.5], "gap_pct": [0.25], "bias": [-3.0]})
    out = reasons(rows, contrib, catalogue, n_up=3, n_down=1)
    assert len(out) == 1
    assert out.iloc[0]["sentence"] == "unit value 60% below the median"
    assert out.iloc[0]["contribution"] == pytest.approx(0.75)


# --- schema, random-control rows, groups, images, catalogue coverage ---

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def table(model_and_frame):
    booster, frame = model_and_frame
    reasons_table = explain_area(
        booster, frame.head(20), frame, CATALOGUE, n_reasons=3, chunk_size=7, n_lowering=1
    )
    picks = pd.DataFrame({"declaration_id": ["R1", "R2"], "item_no": [1, 2]})
    return pd.concat([reasons_table, no_reason_rows(picks)], ignore_index=True)


def test_explanations_pass_their_schema_and_random_picks_say_they_have_no_reasons(table):
    checked = validate_explanations(table)
    none = checked[checked["direction"] == "none"]
    assert list(none["declaration_id"]) == ["R1", "R2"]
    assert (none["sentence"] == NO_REASONS).all() and none["contribution"].isna().all()
    assert set(checked["direction"]) == {"raises", "lowers", "none"}


def test_schema_rejects_a_reason_with_the_wrong_sign(table):
    bad = table.copy()
    first = bad.index[bad["direction"] == "raises"][0]
    bad.loc[first, "contribution"] = -0.5
    with pytest.raises(RiskmlError, match="wrong sign"):
        validate_explanations(bad, where="data/explanations/revenue.parquet")


def test_schema_rejects_an_empty_sentence_and_a_missing_column(table):
    bad = table.copy()
    bad.loc[bad.index[0], "sentence"] = ""
    with pytest.raises(RiskmlError, match="sentence"):
        validate_explanations(bad)
    with pytest.raises(RiskmlError, match="contribution"):
        validate_explanations(table.drop(columns="contribution"))


def test_grouped_contributions_sum_the_features_of_a_group_and_keep_the_total(model_and_frame):
    booster, frame = model_and_frame
    contrib = contributions(booster, frame.head(50))
    catalogue = CATALOGUE | {
        "noise": FeatureInfo("noise", "importer history", "noise", "noise {noise}")
    }
    grouped = group_contributions(contrib, catalogue)
    assert list(grouped.columns) == ["value", "importer history", "bias"]
    np.testing.assert_allclose(
        grouped["importer history"], contrib["imp_hits"] + contrib["noise"], atol=1e-12
    )
    np.testing.assert_allclose(grouped.sum(axis=1), contrib.sum(axis=1), atol=1e-9)


def test_every_model_feature_has_a_sentence_template_rule_features_included():
    specs = load_area_specs(ROOT / "pipelines")
    catalogue = catalogue_for(specs)
    for area in specs:
        info = catalogue[f"rule_{area}"]
        assert info.template and info.template_zero, area
        assert template_fields(info.template) == [f"ctx_rules_{area}"]
    for name, info in catalogue.items():
        assert info.template, name
        for field in template_fields(info.template):
            known = field == name or field.startswith("ctx_") or field in FIXED_CATALOGUE
            assert known, (name, field)
