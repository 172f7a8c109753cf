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


def test_a_few_rows_match_as_in_a_large_batch():
    """Up to ``SMALL_BATCH`` rows the conditions are tested value by value; each row matches
    exactly as it does inside a large batch (missing values, prefixes, non-text columns)."""
    from riskml.config import load_area_specs
    from riskml.rules import SMALL_BATCH

    specs = load_area_specs("pipelines")
    rules = [r for s in specs.values() for r in s.legacy_rules] + [
        Rule(name="pref", when={"preference_claim": [True]}),
        Rule(name="mode", when={"transport_mode": ["post", "air"], "hs_code": ["6109", "2939"]}),
    ]
    rows = pd.concat([DECL] * 40, ignore_index=True).astype(
        {"hs_code": "string", "origin_country": "string", "transport_mode": "string"}
    )
    rows.loc[::5, "origin_country"] = pd.NA
    rows.loc[::7, "hs_code"] = pd.NA
    countries = ["CO", "EC", "PE", "BO", "BR", "CN", "IN"]
    rows.loc[::3, "origin_country"] = [countries[i % 7] for i in range(len(rows[::3]))]
    assert len(rows) > SMALL_BATCH
    for rule in rules:
        rule = Rule(name=rule.name, when={c: v for c, v in rule.when.items() if c in rows})
        whole = rule_mask(rows, rule).to_numpy()
        one_by_one = [bool(rule_mask(rows.iloc[[i]], rule).iloc[0]) for i in range(len(rows))]
        assert one_by_one == whole.tolist(), rule.name
        assert whole.any() or rule.name != "fruit and coffee from source countries"


def test_rules_matched_together_match_as_each_alone():
    """:func:`rule_masks` reads a column the rules share once: every rule of every area,
    matched together on a few rows and on many, matches as :func:`rule_mask` alone."""
    from riskml.config import load_area_specs
    from riskml.rules import rule_masks

    specs = load_area_specs("pipelines")
    rows = pd.concat([DECL] * 40, ignore_index=True).astype({"hs_code": "string"})
    rows.loc[::4, "hs_code"] = pd.NA
    rules = [
        Rule(name=r.name, when={c: v for c, v in r.when.items() if c in rows})
        for s in specs.values()
        for r in s.legacy_rules
    ]
    for frame in (rows.iloc[:7], rows):
        together = rule_masks(frame, rules)
        assert [m.tolist() for m in together] == [
            rule_mask(frame, r).to_numpy().tolist() for r in rules
        ]
