"""Explanations: TreeSHAP contributions from a real LightGBM model, additivity, sentences."""

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from riskml.contract import RiskmlError
from riskml.explain import check_additivity, contributions, explain_area, reasons, sentence
from riskml.features.catalogue import FeatureInfo

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
