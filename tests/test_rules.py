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
        {
            "hs_code": "string",
            "origin_country": "string",
            "transport_mode": "string",
            "preference_claim": "boolean",
        }
    )
    rows.loc[::5, "origin_country"] = pd.NA
    rows.loc[::6, "preference_claim"] = pd.NA  # revenue's goods profiles list null
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


def test_null_in_a_condition_matches_a_missing_value():
    """A missing value never matches, unless the condition lists ``None`` (YAML ``null``); the
    same on a few rows (value by value) as in a large batch, for text, boolean and HS codes."""
    from riskml.rules import SMALL_BATCH

    frame = pd.DataFrame(
        {
            "hs_code": pd.array(["22030010", None, "61091000", "08051000"], dtype="string"),
            "origin_country": pd.array(["CO", None, "CN", None], dtype="string"),
            "preference_claim": pd.array([False, None, True, None], dtype="boolean"),
        }
    )
    expected = {
        "standard": ({"preference_claim": [False]}, [True, False, False, False]),
        "standard or none": ({"preference_claim": [False, None]}, [True, True, False, True]),
        "none only": ({"preference_claim": [None]}, [False, True, False, True]),
        "origin or none": ({"origin_country": ["CO", None]}, [True, True, False, True]),
        "hs or none": ({"hs_code": ["2203", None]}, [True, True, False, False]),
        "both": (
            {"hs_code": ["22", "61"], "preference_claim": [False, None]},
            [True, False, False, False],
        ),
    }
    large = pd.concat([frame] * (SMALL_BATCH // 4 + 1), ignore_index=True)
    assert len(large) > SMALL_BATCH
    for name, (when, mask) in expected.items():
        rule = Rule(name=name, when=when)
        assert rule_mask(frame, rule).tolist() == mask, name
        assert rule_mask(large, rule).tolist() == mask * (len(large) // 4), name


def test_a_contract_column_absent_from_the_data_is_missing_on_every_row():
    """Data without ``preference_claim`` (e.g. DATE/BACUDA): revenue's goods profiles take the
    claim as not recorded and fire on their goods; the preference rule stays silent. A column
    outside the contract is still an error."""
    from riskml.config import load_area_specs

    rules = {r.name: r for r in load_area_specs("pipelines")["revenue"].legacy_rules}
    without = DECL.drop(columns="preference_claim").assign(
        hs_code=["22030010", "61091000", "87032319", "29391100"]
    )
    for frame in (without, pd.concat([without] * 20, ignore_index=True)):
        n = len(frame) // 4
        high_duty = rule_mask(frame, rules["high-duty goods at the standard rate"]).tolist()
        apparel = rule_mask(frame, rules["apparel and footwear at the standard rate"]).tolist()
        assert high_duty == [True, False, True, False] * n
        assert apparel == [False, True, False, False] * n
        assert not rule_mask(frame, rules["preference claimed"]).any()
        assert rule_score(frame, list(rules.values())).tolist() == [2.0, 1.0, 2.0, 0.0] * n
    # a recorded claim still silences them (the simulated world records one on every row)
    claimed = without.assign(preference_claim=[True, True, False, False])
    assert rule_score(claimed, list(rules.values())).tolist() == [1.0, 1.0, 2.0, 0.0]
    with pytest.raises(RiskmlError, match="unknown column 'colour'"):
        rule_mask(without, Rule(name="x", when={"colour": ["red", None]}))
