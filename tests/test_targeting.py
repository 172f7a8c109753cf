"""Targeting-profile features: each area's legacy rules as a causal model input with reasons."""

from pathlib import Path

import pandas as pd

from riskml.config import load_area_specs
from riskml.features import catalogue_for, model_feature_columns
from riskml.features.catalogue import fill_reason
from riskml.features.targeting import rule_features
from riskml.rules import rule_score

SPECS = load_area_specs(Path(__file__).resolve().parents[1] / "pipelines")

DECL = pd.DataFrame(
    {
        "hs_code": ["08030010", "93020000", "61091000", "84713000"],
        "origin_country": ["CO", "US", "CN", "CN"],
        "transport_mode": ["sea", "air", "post", "sea"],
        "preference_claim": [False, False, True, False],
    }
)


def test_rule_features_equal_the_legacy_rule_scores_and_name_the_rules():
    values, context = rule_features(DECL, SPECS)
    for area, spec in SPECS.items():
        assert values[f"rule_{area}"].tolist() == rule_score(DECL, spec.legacy_rules).tolist()
    assert context.loc[0, "ctx_rules_drugs"] == (
        "fruit and coffee from source countries and source-country origin"
    )
    assert context.loc[3, "ctx_rules_drugs"] == ""


def test_every_rule_feature_has_a_sentence():
    values, context = rule_features(DECL, SPECS)
    frame = pd.concat([pd.DataFrame(values), context], axis=1)
    catalogue = catalogue_for(SPECS)
    assert set(model_feature_columns(frame)) <= set(catalogue)
    row = frame.iloc[1].to_dict()
    assert fill_reason(catalogue["rule_security"], row) == (
        "matches the security targeting profile: arms and explosives"
    )
    assert fill_reason(catalogue["rule_drugs"], row) == "matches no drugs targeting profile"
