"""Targeting rules: HS prefixes, value sets, AND of conditions, weighted score."""

import pandas as pd
import pytest

from riskml.config import Rule
from riskml.contract import RiskmlError
from riskml.rules import rule_mask, rule_score

DECL = pd.DataFrame(
    {
        "hs_code": ["08030010", "61091000", "08051000", "29391100"],
        "origin_country": ["CO", "CN", "ES", "IN"],
        "transport_mode": ["sea", "post", "sea", "air"],
        "preference_claim": [False, True, True, False],
    }
)


def test_hs_prefix_and_origin_must_both_hold():
    rule = Rule(name="fruit from CO", when={"hs_code": ["08"], "origin_country": ["CO", "EC"]})
    assert rule_mask(DECL, rule).tolist() == [True, False, False, False]


def test_score_adds_weights_of_rules_that_fire():
    rules = [
        Rule(name="fruit", when={"hs_code": ["08"]}, weight=2.0),
        Rule(name="pref", when={"preference_claim": [True]}, weight=1.0),
        Rule(name="precursor", when={"hs_code": ["2939"]}, weight=3.0),
    ]
    assert rule_score(DECL, rules).tolist() == [2.0, 1.0, 3.0, 3.0]
    assert rule_score(DECL, []).tolist() == [0.0] * 4


def test_condition_on_unknown_column_is_a_clear_error():
    with pytest.raises(RiskmlError, match="unknown column 'colour'"):
        rule_mask(DECL, Rule(name="x", when={"colour": ["red"]}))
