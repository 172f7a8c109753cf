"""Reasons a reviewer can say aloud (issue 12, part 8): no absence of a fact as a reason,
correlated features grouped into one statement that says what it compares with, the share of
the score the reasons cover, and waterfalls in the reasons' words."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskml.config import load_area_specs
from riskml.explain import plot_waterfall
from riskml.features import catalogue_for
from riskml.ranking import (
    KEY_PROBABILITY,
    KEY_RECOVERY_MODEL,
    KEY_RECOVERY_RATIO,
    rank_key_words,
)
from riskml.reasons import (
    OTHER,
    candidate_statements,
    coverage_sentence,
    push_summary,
    reasons,
    states_absence,
    topic_of,
    waterfall_steps,
)

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = catalogue_for(load_area_specs(ROOT / "pipelines"))
TOPICS = {name: topic_of(name, info) for name, info in CATALOGUE.items()}
#: How an absence reads in the catalogue's sentences.
ABSENCE = re.compile(r"(^|; |: )(no |none|never|matches no|not declared)", re.IGNORECASE)

ROW = {
    "declaration_id": "D1",
    "item_no": 1,
    "rule_ipr": 0.0,  # matches no counterfeit targeting profile
    "rule_revenue": 2.0,
    "ctx_rules_revenue": "high-duty goods",
    "imp_age_days": 0.0,  # a first declaration: a fact
    "imp_n_controls": 0.0,  # never controlled: an absence
    "imp_volume_ratio": np.nan,  # no earlier volume: an absence
    "first_imp_hs4": 1.0,
    "ctx_hs4": "6110",
    "duty_rate_standard": 0.0,
    "duty_rate": 0.0,
    "duty_to_cif": 0.0,
    "ctx_hs6": "6110.11",
    "uv_kg_pct_vs_ref": -0.8,
    "uv_kg_rz": -4.1,
    "uv_q_pct_vs_ref": -0.7,
    "uv_kg_log": 1.2,
    "ctx_uv_kg": 3.32,
    "ctx_uv_ref_median": 16.6,
    "ctx_uv_kg_gap": 0.8,
    "ctx_uv_kg_dir": "below",
    "ctx_uv_ref_count": 26.0,
    "ctx_uv_ref_group": "HS 6110.11 from CN",
    "ctx_ref_months": 12.0,
    "ctx_uv_q": 1.5,
    "ctx_uv_q_ref_median": 5.0,
    "ctx_uv_q_gap": 0.7,
    "ctx_uv_q_dir": "below",
    "ctx_quantity_unit": "u",
    "sz_drugs_route_3m": 0.0,
}


@pytest.mark.parametrize(
    ("name", "absent"),
    [
        ("rule_ipr", True),  # template_zero "matches no ... targeting profile"
        ("rule_revenue", False),
        ("imp_age_days", False),  # zero_is_fact: "first declaration of this importer"
        ("imp_n_controls", True),  # "never controlled before"
        ("imp_volume_ratio", True),  # missing: "no earlier monthly volume"
        ("duty_rate", True),  # none_at_zero: no duty
        ("sz_drugs_route_3m", True),  # none_at_zero: no seizure
        ("first_imp_hs4", False),
        ("uv_kg_pct_vs_ref", False),
    ],
)
def test_an_absence_is_recognised_from_the_catalogue_and_the_value(name, absent):
    assert states_absence(CATALOGUE[name], ROW) is absent


def test_no_catalogue_sentence_that_states_an_absence_can_be_a_reason():
    """Every feature at 0 and at missing: wherever the sentence reads as an absence ("no ...",
    "never ...", "matches no ..."), :func:`states_absence` must say so (else it would be
    spoken)."""
    leaks = []
    for name, info in CATALOGUE.items():
        for value in (0.0, np.nan):
            row = {**ROW, name: value}
            row.update({k: 1.0 for k in ("imp_n_controls",) if k != name})
            from riskml.reasons import fact_sentence

            text = fact_sentence(name, row, CATALOGUE)
            if ABSENCE.search(text) and not states_absence(info, row):
                leaks.append((name, value, text))
    assert not leaks, leaks


def _statements(contrib: dict[str, float], row=ROW, n_up=5, n_down=2):
    return candidate_statements(row, contrib, CATALOGUE, TOPICS, n_up=n_up, n_down=n_down)


def test_an_absence_never_raises_the_risk_aloud_and_its_push_stays_in_other():
    row = {**ROW, "imp_age_days": 800.0, "first_imp_hs4": 0.0}  # an established importer
    contrib = {"rule_ipr": 0.9, "imp_n_controls": 0.5, "imp_volume_ratio": 0.4,
               "rule_revenue": 0.3, "imp_age_days": 0.2}  # fmt: skip
    said = _statements(contrib, row=row)
    text = " | ".join(s["sentence"] for s in said)
    assert "matches no" not in text and "never" not in text and "no earlier" not in text
    assert [s["group"] for s in said] == ["targeting profile", "importer"]
    assert said[0]["sentence"] == "matches the revenue targeting profile: high-duty goods"
    assert said[1]["sentence"] == "importer first seen 800 days ago"
    summary = push_summary(-3.0, -3.0 + sum(contrib.values()), [s["contribution"] for s in said])
    assert summary["other"] == pytest.approx(0.9 + 0.5 + 0.4)  # the unspoken absences
    assert summary["share"] == pytest.approx(0.5 / 2.3)


def test_a_new_importers_missing_history_counts_with_the_novelty_it_measures():
    """For a first declaration, "never controlled" and "no earlier volume" are the novelty fact
    measured another way: their push joins the statement that says it, never said themselves;
    "matches no targeting profile" has no such fact and stays in other."""
    contrib = {"rule_ipr": 0.9, "imp_n_controls": 0.5, "imp_volume_ratio": 0.4,
               "rule_revenue": 0.3, "imp_age_days": 0.2}  # fmt: skip
    said = _statements(contrib)
    assert [s["group"] for s in said] == ["importer", "targeting profile"]
    importer = said[0]
    assert importer["contribution"] == pytest.approx(0.2 + 0.5 + 0.4)
    assert importer["sentence"] == (
        "first declaration of this importer; first import of HS heading 6110 by this importer"
    )
    assert importer["features"] == "imp_age_days, first_imp_hs4"
    assert importer["implied"] == "imp_n_controls, imp_volume_ratio"
    summary = push_summary(-3.0, -3.0 + sum(contrib.values()), [s["contribution"] for s in said])
    assert summary["other"] == pytest.approx(0.9)


def test_unit_value_features_make_one_statement_that_names_its_reference():
    contrib = {"uv_kg_pct_vs_ref": 0.6, "uv_kg_rz": 0.3, "uv_q_pct_vs_ref": 0.2,
               "uv_kg_log": -0.05, "first_imp_hs4": 0.4}  # fmt: skip
    said = _statements(contrib)
    value = [s for s in said if s["group"] == "declared value"]
    assert len(value) == 1 and value[0]["direction"] == "raises"
    assert value[0]["contribution"] == pytest.approx(0.6 + 0.3 + 0.2 - 0.05)
    assert value[0]["features"] == "uv_kg_pct_vs_ref, uv_kg_rz, uv_q_pct_vs_ref"
    assert value[0]["sentence"] == (
        "declared unit value 3.32 per kg is 80% below the reference 16.60 per kg (median of 26 "
        "declarations of HS 6110.11 from CN in the previous 12 months); per u: 1.50 against "
        "5.00 (70% below)"
    )
    assert [s["group"] for s in said if s["direction"] == "raises"] == [
        "declared value",
        "importer",
    ]


def test_a_zero_duty_tariff_line_is_said_as_the_goods_it_is():
    said = _statements({"duty_rate_standard": 0.7, "duty_rate": 0.2, "duty_to_cif": 0.1})
    assert [s["sentence"] for s in said] == [
        "goods declared under HS 6110.11, a tariff line whose standard duty rate is 0.0%"
    ]
    assert said[0]["contribution"] == pytest.approx(0.7)  # no duty paid: not a reason


def test_statements_respect_the_limits_and_rank_by_push():
    contrib = {"uv_kg_pct_vs_ref": 0.6, "rule_revenue": 0.9, "first_imp_hs4": 0.4,
               "imp_age_days": -0.3, "uv_kg_log": 0.01}  # fmt: skip
    said = _statements(contrib, n_up=2, n_down=1)
    ups = [s for s in said if s["direction"] == "raises"]
    assert [s["group"] for s in ups] == ["targeting profile", "declared value"]
    assert [s["rank"] for s in ups] == [1, 2]
    assert [s["group"] for s in said if s["direction"] == "lowers"] == []  # importer nets +0.1


def test_coverage_sentence_states_the_share_of_the_rise():
    assert coverage_sentence(push_summary(-4.0, -1.0, [2.4, 0.3])) == (
        "these reasons account for 90% of the score's rise above the base; other features add "
        "+0.30 log-odds"
    )
    assert coverage_sentence(push_summary(-4.0, -1.0, [3.5])).startswith(
        "these reasons account for all of the score's rise above the base; other features "
        "lower it by 0.50"
    )
    assert "not above the average item" in coverage_sentence(push_summary(-1.0, -2.0, [0.2]))


def _table(contrib: dict[str, float], base: float = -4.0) -> pd.DataFrame:
    rows = pd.DataFrame([ROW])
    frame = pd.DataFrame([{**contrib, "bias": base}])
    return reasons(rows, frame, CATALOGUE)


def test_the_waterfall_goes_from_base_through_the_reasons_and_other_to_the_score():
    contrib = {"uv_kg_pct_vs_ref": 1.2, "rule_ipr": 0.8, "rule_revenue": 0.9,
               "imp_age_days": -0.4}  # fmt: skip
    table = _table(contrib)
    fall = waterfall_steps(table.to_dict("records"))
    names = [s["name"] for s in fall["steps"]]
    assert names == ["declared value against its reference", "targeting profile matched",
                     "importer's record", OTHER]  # fmt: skip
    assert fall["steps"][-1]["push"] == pytest.approx(0.8)  # "matches no" profile, unspoken
    end = fall["steps"][-1]["start"] + fall["steps"][-1]["push"]
    assert end == pytest.approx(fall["total"]) and fall["total"] == pytest.approx(-4 + 2.5)
    assert fall["probability"] == pytest.approx(1 / (1 + math.exp(1.5)))
    assert fall["base_probability"] == pytest.approx(1 / (1 + math.exp(4.0)))


def test_waterfall_image_is_a_png_and_none_without_reasons(tmp_path):
    table = _table({"uv_kg_pct_vs_ref": 1.2, "rule_revenue": 0.9})
    path = plot_waterfall(table.to_dict("records"), tmp_path / "w.png", title="case 1")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    assert plot_waterfall([], tmp_path / "none.png", title="none") is None


def test_the_rank_key_is_named_as_the_area_model_computes_it():
    assert rank_key_words("expected_recovery", 0.22, KEY_RECOVERY_MODEL) == (
        "probability × (predicted recovered duty)^0.22"
    )
    assert rank_key_words("expected_recovery", 1.0, KEY_RECOVERY_MODEL).startswith(
        "expected recovery"
    )
    assert "recovery ratio" in rank_key_words("expected_recovery", 0.5, KEY_RECOVERY_RATIO)
    assert rank_key_words("expected_recovery", 0.22, KEY_PROBABILITY) == (
        "probability of an offence"
    )
    assert rank_key_words("probability", 1.0) == "probability of an offence"
