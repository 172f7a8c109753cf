"""Causal features: known answers per family, catalogue coverage, and the leakage test."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskml.config import FeatureParams
from riskml.contract import TRANSPORT_MODES
from riskml.features import (
    GROUPS,
    build_features,
    catalogue_for,
    format_reason,
    model_feature_columns,
)
from riskml.features.catalogue import fill_reason, template_fields
from riskml.features.reference import MAD_TO_SD, MIN_SCALE
from riskml.features.store import FeatureStore

START = pd.Timestamp("2023-01-01")


# ---------------------------------------------------------------- hand-built frames


def _decl(rows: list[dict]) -> pd.DataFrame:
    """Declarations with defaults for every column a row does not set."""
    base = {
        "office": "O1",
        "procedure": "4000",
        "transport_mode": "sea",
        "importer_id": "I1",
        "declarant_id": "B1",
        "supplier_id": "S1",
        "origin_country": "CN",
        "departure_country": "CN",
        "hs_code": "61091000",
        "quantity": 10.0,
        "quantity_unit": "u",
        "gross_mass_kg": 12.0,
        "net_mass_kg": 10.0,
        "fob_value": 90.0,
        "cif_value": 100.0,
        "duty_rate": 0.12,
        "duties_paid": 12.0,
        "preference_claim": False,
    }
    out = []
    for i, r in enumerate(rows):
        row = {"declaration_id": f"D{i:04d}", "item_no": 1, **base, **r}
        row["accepted_date"] = pd.Timestamp(row["accepted_date"])
        out.append(row)
    return pd.DataFrame(out)


def _outc(rows: list[dict]) -> pd.DataFrame:
    cols = [
        "declaration_id",
        "item_no",
        "control_kind",
        "result_date",
        "risk_area",
        "offence_found",
        "offence_code",
        "additional_duty",
        "quantity_seized",
    ]
    base = {
        "item_no": 1,
        "control_kind": "physical",
        "risk_area": None,
        "offence_found": False,
        "offence_code": None,
        "additional_duty": 0.0,
        "quantity_seized": 0.0,
    }
    frame = pd.DataFrame([{**base, **r} for r in rows], columns=cols)
    frame["result_date"] = pd.to_datetime(frame["result_date"])
    return frame


NO_OUTCOMES = _outc([])


def _row(frame: pd.DataFrame, declaration_id: str) -> pd.Series:
    return frame.set_index("declaration_id").loc[declaration_id]


# ---------------------------------------------------------------- value


def test_reference_median_of_five_peers():
    peers = [{"accepted_date": "2023-02-10", "cif_value": 10.0 * v} for v in (1, 2, 3, 4, 5)]
    decl = _decl(
        peers
        + [
            # same month as the query: not a peer yet (monthly snapshot)
            {"accepted_date": "2023-03-01", "cif_value": 10_000.0},
            {"accepted_date": "2023-03-15", "cif_value": 15.0},  # unit value 1.5 per kg
        ]
    )
    frame = build_features(decl, NO_OUTCOMES, FeatureParams(min_reference_count=5))
    row = frame.iloc[-1]
    logs = np.log([1.0, 2.0, 3.0, 4.0, 5.0])
    mad = np.median(np.abs(logs - np.log(3.0)))
    assert row["uv_ref_level"] == 1
    assert row["uv_ref_count"] == 5
    assert row["ctx_uv_ref_level"] == "HS6×origin"
    assert row["ctx_uv_ref_group"] == "HS 6109.10 from CN"
    assert row["ctx_uv_ref_median"] == pytest.approx(3.0)
    assert row["uv_kg_pct_vs_ref"] == pytest.approx(-0.5, rel=1e-6)
    want_z = (np.log(1.5) - np.log(3.0)) / max(MAD_TO_SD * mad, MIN_SCALE)
    assert row["uv_kg_rz"] == pytest.approx(want_z, rel=1e-5)
    assert row["ctx_uv_kg_gap"] == pytest.approx(0.5)
    assert row["ctx_uv_kg_dir"] == "below"
    sentence = format_reason("uv_kg_pct_vs_ref", row)
    assert sentence == (
        "unit value per kg 50% below the median of 5 declarations of HS 6109.10 from CN "
        "in the previous 12 months"
    )
    # the first month has no earlier peers at all
    assert frame.iloc[0]["uv_ref_level"] == 0 and math.isnan(frame.iloc[0]["uv_ref_count"])


def test_reference_falls_back_to_hs6_then_hs4_and_respects_the_window():
    peers = (
        [{"accepted_date": "2023-02-10", "cif_value": 30.0, "origin_country": "CN"}] * 2
        + [{"accepted_date": "2023-02-10", "cif_value": 30.0, "origin_country": "VN"}] * 3
        + [{"accepted_date": "2023-02-10", "cif_value": 50.0, "hs_code": "610990"}] * 4
        # too old for a 2-month window seen from April
        + [{"accepted_date": "2023-01-05", "cif_value": 999.0, "hs_code": "610990"}] * 9
    )
    decl = _decl(
        peers
        + [
            {"accepted_date": "2023-03-20", "cif_value": 30.0},  # HS6: 5 peers (CN + VN)
            {"accepted_date": "2023-03-20", "cif_value": 30.0, "origin_country": "TR"},
            {"accepted_date": "2023-04-20", "cif_value": 30.0, "hs_code": "610930"},  # HS4
        ]
    )
    params = FeatureParams(min_reference_count=5, reference_months=2)
    frame = build_features(decl, NO_OUTCOMES, params)
    cn, tr, hs4 = frame.iloc[-3], frame.iloc[-2], frame.iloc[-1]
    assert (cn["uv_ref_level"], cn["uv_ref_count"], cn["ctx_uv_ref_group"]) == (2, 5, "HS 6109.10")
    assert (tr["uv_ref_level"], tr["uv_ref_count"]) == (2, 5)
    # April window = February and March: 5 + 4 + 2 peers of HS 6109, not the January ones
    assert (hs4["uv_ref_level"], hs4["uv_ref_count"]) == (3, 11)
    assert hs4["ctx_uv_ref_group"] == "HS 6109"
    assert hs4["ctx_uv_ref_median"] == pytest.approx(3.0)


def test_value_ratios():
    decl = _decl(
        [
            {"accepted_date": "2023-01-02", "cif_value": 200.0, "fob_value": 160.0,
             "duties_paid": 24.0, "net_mass_kg": None, "gross_mass_kg": 8.0,
             "quantity": 4.0, "preference_claim": True},
            {"accepted_date": "2023-01-02", "fob_value": None},
        ]
    )  # fmt: skip
    frame = build_features(decl, NO_OUTCOMES, FeatureParams())
    first, second = frame.iloc[0], frame.iloc[1]
    assert first["uv_kg_log"] == pytest.approx(np.log(200.0 / 8.0))  # gross mass fall-back
    assert first["uv_q_log"] == pytest.approx(np.log(50.0))
    assert first["duty_to_cif"] == pytest.approx(0.12)
    assert first["cif_to_fob"] == pytest.approx(1.25)
    assert first["log_cif"] == pytest.approx(np.log(200.0))
    assert first["preference_claim"] == 1.0 and second["preference_claim"] == 0.0
    assert math.isnan(second["cif_to_fob"])


def test_zero_value_and_zero_mass_are_flags_not_ratios():
    """A sample of no commercial value with a mass below the declared precision: flagged, its
    value ratios missing (not infinite), and the flags missing where the value is."""
    decl = _decl(
        [
            {"accepted_date": "2023-01-02", "cif_value": 0.0, "gross_mass_kg": 0.0,
             "net_mass_kg": 0.0, "duties_paid": 0.0},
            {"accepted_date": "2023-01-02", "cif_value": 50.0, "gross_mass_kg": 2.0},
            {"accepted_date": "2023-01-02", "cif_value": None, "gross_mass_kg": None},
        ]
    )  # fmt: skip
    frame = build_features(decl, NO_OUTCOMES, FeatureParams())
    zero, normal, missing = frame.iloc[0], frame.iloc[1], frame.iloc[2]
    assert (zero["zero_value"], zero["zero_mass"]) == (1.0, 1.0)
    assert (normal["zero_value"], normal["zero_mass"]) == (0.0, 0.0)
    assert math.isnan(missing["zero_value"]) and math.isnan(missing["zero_mass"])
    for name in ("log_cif", "uv_kg_log", "duty_to_cif", "log_gross_mass"):
        assert math.isnan(zero[name]), name


# ---------------------------------------------------------------- history


def test_hit_rate_after_two_findings_in_four_controls():
    decl = _decl(
        [{"accepted_date": "2023-01-10", "importer_id": "I1"}] * 4
        + [{"accepted_date": "2023-01-10", "importer_id": "I2"}] * 6
        + [{"accepted_date": "2023-03-10", "importer_id": "I1"}]
    )
    ids = decl["declaration_id"]
    outc = _outc(
        [
            {"declaration_id": ids[0], "result_date": "2023-01-20", "risk_area": "revenue",
             "offence_found": True, "additional_duty": 100.0},
            {"declaration_id": ids[1], "result_date": "2023-02-03", "risk_area": "revenue",
             "offence_found": True, "additional_duty": 50.0},
            {"declaration_id": ids[2], "result_date": "2023-02-04"},
            {"declaration_id": ids[3], "result_date": "2023-02-05"},
            # known in March, the query's month: not in the March snapshot
            {"declaration_id": ids[3], "control_kind": "pca", "result_date": "2023-03-01",
             "risk_area": "revenue", "offence_found": True, "additional_duty": 999.0},
        ]
        + [{"declaration_id": ids[i], "result_date": "2023-01-25"} for i in range(4, 10)]
    )  # fmt: skip
    frame = build_features(decl, outc, FeatureParams(prior_strength=20.0))
    row = frame.iloc[-1]
    assert row["imp_n_items"] == 4
    assert row["imp_n_controls"] == 4
    assert row["imp_n_find_revenue"] == 2
    assert row["imp_recovered"] == pytest.approx(150.0)
    global_rate = 2 / 10  # two findings in the ten controls known before March
    assert row["ctx_global_hr_revenue"] == pytest.approx(global_rate)
    assert row["imp_hr_revenue"] == pytest.approx((2 + 20 * global_rate) / (4 + 20))
    assert row["imp_hr_drugs"] == pytest.approx(0.0)
    last_finding = pd.Timestamp("2023-02-03")
    assert row["imp_days_since_find"] == (pd.Timestamp("2023-03-10") - last_finding).days
    assert row["decl_n_controls"] == 10
    assert format_reason("imp_hr_revenue", row) == (
        "importer: revenue hit rate 25.0% (found in 2 of 4 controls) against 20.0% overall"
    )
    # January rows: nothing known at the start of January
    jan = frame.iloc[0]
    assert jan["imp_n_items"] == 0 and jan["imp_n_controls"] == 0
    assert math.isnan(jan["imp_days_since_find"])
    assert format_reason("imp_days_since_find", jan) == "importer: no finding on record"


def test_profile_tables_hold_exactly_the_totals_known_before_each_month():
    """The profile tables store counts as int32 and only the statistics a profile kind reads
    (memory at scale); every snapshot must still equal the definition, counted row by row here:
    counts exactly, as float64 (what the all-float64 tables gave), recovered duty to 1e-12
    relative (the order of the sum differs)."""
    from riskml.contract import CONTROL_KINDS, RISK_AREAS
    from riskml.features.history import lookup, profile_table, table_stats
    from riskml.features.prepare import prepare

    decl, outc = make_world(n=1500, months=8, seed=3)
    prep = prepare(decl, outc)
    code = prep.code("importer_id")
    table = profile_table(code, prep)
    assert table.through["n_items"].dtype == np.int32
    assert table.through["recovered"].dtype == np.float64
    counts_only = profile_table(code, prep, table_stats("counts"))
    assert list(counts_only.through) == ["n_items", "n_controls", "n_find"]
    snap, small = lookup(table, code, prep.month), lookup(counts_only, code, prep.month)

    ctl, f = prep.controls, prep.findings
    ctl_code, f_code = code[ctl["row"].to_numpy()], code[f["row"].to_numpy()]
    for r in np.flatnonzero(code >= 0)[::7]:
        e, m = code[r], prep.month[r]
        c = (ctl_code == e) & (ctl["month"].to_numpy() < m)
        found = (f_code == e) & (f["month"].to_numpy() < m)
        want = {
            "n_items": ((code == e) & (prep.month < m)).sum(),
            "n_controls": c.sum(),
            "n_find": f["count"].to_numpy()[found].sum(),
            "recovered": f["duty"].to_numpy()[found].sum(),
        }
        want |= {f"n_ctl_{k}": (c & (ctl["kind"] == k).to_numpy()).sum() for k in CONTROL_KINDS}
        for a in RISK_AREAS:
            want[f"n_find_{a}"] = f["count"].to_numpy()[found & (f["area"] == a).to_numpy()].sum()
        for name, value in want.items():
            assert snap[name][r] == pytest.approx(value, rel=1e-12, abs=0), (name, r)
            assert snap[name].dtype == np.float64
        for name in counts_only.through:
            assert small[name][r] == want[name]
        days = f["day"].to_numpy()[found]
        assert (
            (snap["last_find_day"][r] == days.max())
            if len(days)
            else np.isnan(snap["last_find_day"][r])
        )


def test_missing_supplier_gives_missing_supplier_history():
    decl = _decl([{"accepted_date": "2023-01-10", "supplier_id": None}])
    row = build_features(decl, NO_OUTCOMES, FeatureParams()).iloc[0]
    assert math.isnan(row["sup_n_items"]) and math.isnan(row["first_imp_supplier"])


# ---------------------------------------------------------------- novelty, route, calendar


def test_first_time_hs4_and_importer_age():
    decl = _decl(
        [
            {"accepted_date": "2023-01-05", "hs_code": "610910"},
            {"accepted_date": "2023-02-07", "hs_code": "610990"},  # same HS4: not first
            {"accepted_date": "2023-02-07", "hs_code": "620342"},  # new HS4
            {"accepted_date": "2023-02-07", "hs_code": "620343"},  # same day: still first
            {"accepted_date": "2023-02-08", "hs_code": "620342"},  # next day: known
            {"accepted_date": "2023-02-08", "importer_id": "I9"},
        ]
    )
    frame = build_features(decl, NO_OUTCOMES, FeatureParams())
    assert list(frame["first_imp_hs4"]) == [1, 0, 1, 1, 0, 1]
    assert list(frame["imp_age_days"]) == [0, 33, 33, 33, 34, 0]
    assert format_reason("first_imp_hs4", frame.iloc[2]) == (
        "first import of HS heading 6203 by this importer"
    )
    assert format_reason("first_imp_hs4", frame.iloc[1]) == (
        "the importer has declared HS heading 6109 before"
    )
    # share of the importer's items before February in HS 6109: 1 of 1
    assert frame.iloc[1]["imp_hs4_share"] == 1.0 and frame.iloc[2]["imp_hs4_share"] == 0.0


def test_route_and_calendar_codes_are_stable():
    decl = _decl(
        [
            {"accepted_date": "2023-01-02", "transport_mode": "post", "departure_country": "NL"},
            {"accepted_date": "2023-06-04", "transport_mode": "Air"},
            {"accepted_date": "2023-06-04", "transport_mode": "camel"},
        ]
    )
    frame = build_features(decl, NO_OUTCOMES, FeatureParams())
    assert list(frame["transport_mode_code"]) == [
        TRANSPORT_MODES.index("post"),
        TRANSPORT_MODES.index("air"),
        TRANSPORT_MODES.index("unknown"),
    ]
    assert list(frame["departure_not_origin"]) == [1, 0, 0]
    assert list(frame["weekday"]) == [0, 6, 6]  # Monday, Sunday
    assert list(frame["month_of_year"]) == [1, 6, 6]
    assert format_reason("weekday", frame.iloc[1]) == "declared on a Sunday"


# ---------------------------------------------------------------- catalogue extensions

SPECS = None


def _specs():
    global SPECS
    if SPECS is None:
        from riskml.config import load_area_specs

        SPECS = load_area_specs(Path(__file__).parents[1] / "pipelines")
    return SPECS


def test_goods_route_and_pair_histories_with_detectable_hit_rates():
    same = {"importer_id": "I1", "declarant_id": "B1", "office": "O1", "departure_country": "NL"}
    other = {
        "importer_id": "I2",
        "declarant_id": "B2",
        "office": "O2",
        "hs_code": "22042100",
        "origin_country": "VN",
        "departure_country": "VN",
    }
    decl = _decl(
        [{"accepted_date": "2023-01-10", **same}] * 4
        + [{"accepted_date": "2023-01-10", **other}] * 2
        + [{"accepted_date": "2023-02-10", **same, "importer_id": "I3", "hs_code": "61099000"}]
        + [{"accepted_date": "2023-03-10", **same}]
    )  # fmt: skip
    ids = decl["declaration_id"]
    outc = _outc(
        [
            {"declaration_id": ids[0], "result_date": "2023-01-20", "risk_area": "revenue",
             "offence_found": True, "additional_duty": 100.0},
            {"declaration_id": ids[1], "result_date": "2023-02-03", "risk_area": "revenue",
             "offence_found": True, "additional_duty": 50.0},
            {"declaration_id": ids[2], "control_kind": "scanner", "result_date": "2023-02-04"},
            {"declaration_id": ids[3], "result_date": "2023-02-05"},
            {"declaration_id": ids[4], "result_date": "2023-01-25"},
            {"declaration_id": ids[5], "control_kind": "scanner", "result_date": "2023-01-25"},
        ]
    )  # fmt: skip
    frame = build_features(decl, outc, FeatureParams(prior_strength=20.0), specs=_specs())
    row = frame.iloc[-1]
    # items before March: 4 of I1 (HS 6109.10), 1 of I3 (HS 6109.90), 2 of I2 (HS 2204)
    expected_items = {"hs6": 4, "hs4": 5, "hs2": 5, "dep": 5, "off": 5, "imporig": 4,
                      "declimp": 4}  # fmt: skip
    for prefix, n in expected_items.items():
        assert row[f"{prefix}_n_items"] == n, prefix
        assert row[f"{prefix}_n_controls"] == 4, prefix
        assert row[f"{prefix}_n_find_revenue"] == 2, prefix
        assert row[f"{prefix}_n_find_ipr"] == 0, prefix
    # six controls known before March, four able to detect revenue (scanners cannot)
    assert row["ctx_global_hr_revenue"] == pytest.approx(2 / 6)
    assert row["ctx_global_hrd_revenue"] == pytest.approx(2 / 4)
    assert row["hs6_hr_revenue"] == pytest.approx((2 + 20 * 2 / 6) / (4 + 20))
    # the entity's four controls: three physical (detect revenue), one scanner (does not)
    for prefix in ("imp", "hs4", "off", "declimp"):
        assert row[f"{prefix}_hrd_revenue"] == pytest.approx((2 + 20 * 0.5) / (3 + 20)), prefix
    # security is found by scanners and physical controls: all four of the entity's count
    assert row["imp_hrd_security"] == pytest.approx(0.0)
    assert format_reason("hs2_n_find_revenue", row) == (
        "HS chapter 61: revenue offences found in 2 of 4 controls"
    )
    assert format_reason("off_n_items", row) == "office O1: 5 items declared before this month"
    info = catalogue_for(_specs())["imp_hrd_revenue"]
    assert fill_reason(info, row) == (
        "importer: revenue hit rate 52.2% over the controls able to detect it, against 50.0% "
        "overall"
    )
    # nothing of another importer leaks into the pair histories
    assert frame.iloc[6]["imporig_n_items"] == 0 and frame.iloc[6]["hs4_n_items"] == 4


def test_departure_and_heading_history_keeps_routes_of_one_heading_apart():
    """Bananas (HS 0803) shipped from EC carry their own history, apart from bananas shipped
    from elsewhere and from EC's other goods."""
    ec_fruit = {"departure_country": "EC", "hs_code": "08039010"}
    decl = _decl(
        [{"accepted_date": "2023-01-10", **ec_fruit}] * 3
        + [{"accepted_date": "2023-01-10", "departure_country": "CR", "hs_code": "08039010"}] * 2
        + [{"accepted_date": "2023-01-10", "departure_country": "EC", "hs_code": "09011100"}]
        + [{"accepted_date": "2023-02-03", **ec_fruit}]  # result of January known in February
        + [{"accepted_date": "2023-03-10", **ec_fruit}]
        + [{"accepted_date": "2023-03-10", "departure_country": None, "hs_code": "08039010"}]
    )  # fmt: skip
    ids = decl["declaration_id"]
    outc = _outc(
        [
            {"declaration_id": ids[0], "result_date": "2023-01-25", "risk_area": "drugs",
             "offence_found": True},
            {"declaration_id": ids[1], "result_date": "2023-02-20"},
            {"declaration_id": ids[3], "result_date": "2023-01-25", "risk_area": "drugs",
             "offence_found": True},  # CR bananas: another route
            {"declaration_id": ids[5], "result_date": "2023-01-25"},  # EC coffee: another heading
        ]
    )  # fmt: skip
    frame = build_features(decl, outc, FeatureParams(prior_strength=10.0))
    feb, mar = frame.iloc[6], frame.iloc[7]
    assert (feb["dephs4_n_items"], feb["dephs4_n_controls"], feb["dephs4_n_find_drugs"]) == (
        3,
        1,
        1,
    )
    # the February control of EC bananas and the February item are known in March
    assert (mar["dephs4_n_items"], mar["dephs4_n_controls"], mar["dephs4_n_find_drugs"]) == (
        4,
        2,
        1,
    )
    assert mar["dep_n_items"] == 5 and mar["hs4_n_items"] == 6  # the single profiles mix routes
    assert mar["dephs4_hr_drugs"] == pytest.approx((1 + 10 * 2 / 4) / (2 + 10))
    assert frame.iloc[0]["dephs4_n_items"] == 0
    assert math.isnan(frame.iloc[8]["dephs4_n_items"])  # no departure country declared
    assert format_reason("dephs4_n_find_drugs", mar) == (
        "HS heading 0803 shipped from EC: drugs offences found in 1 of 2 controls"
    )


def test_value_band_history_leaves_out_the_peers_near_the_own_value():
    """The band of HS 6109 at a value of 1,000-9,999: the peers declared in earlier months in
    that decade, minus those within about 1% of the item's value, with the results known at the
    start of the item's month; another decade, another HS6 and a result not yet known stay out.
    The feature store answers the same for the same rows as new declarations."""
    t = {"hs_code": "61091000"}
    decl = _decl(
        [
            {"accepted_date": "2023-01-05", "cif_value": 1000.0, **t},  # 0: near (found)
            {"accepted_date": "2023-01-06", "cif_value": 1005.0, **t},  # 1: near (+0.5%)
            {"accepted_date": "2023-01-07", "cif_value": 5000.0, **t},  # 2: band, clean
            {"accepted_date": "2023-01-08", "cif_value": 20000.0, **t},  # 3: next decade
            {"accepted_date": "2023-01-28", "cif_value": 3000.0, **t},  # 4: found, known Feb 15
            {"accepted_date": "2023-01-09", "cif_value": 3000.0, "hs_code": "62034200"},  # 5
            {"accepted_date": "2023-02-10", "cif_value": 1000.0, **t},  # 6: target, February
            {"accepted_date": "2023-03-10", "cif_value": 1000.0, **t},  # 7: target, March
            {"accepted_date": "2023-03-10", "cif_value": 0.0, **t},  # 8: no value, no band
            {"accepted_date": "2023-03-10", "cif_value": 1030.0, **t},  # 9: 3% away: 0, 1, 6 count
        ]
    )  # fmt: skip
    ids = decl["declaration_id"]
    found = {"risk_area": "revenue", "offence_found": True}
    outc = _outc(
        [
            {"declaration_id": ids[0], "result_date": "2023-01-20", **found},
            {"declaration_id": ids[2], "result_date": "2023-01-25"},
            {"declaration_id": ids[3], "result_date": "2023-01-25", **found},
            {"declaration_id": ids[4], "result_date": "2023-02-15", **found},
            {"declaration_id": ids[5], "result_date": "2023-01-25", **found},
        ]
    )  # fmt: skip
    frame = build_features(decl, outc, FeatureParams(prior_strength=10.0))
    feb, mar, zero, away = frame.iloc[6], frame.iloc[7], frame.iloc[8], frame.iloc[9]
    # February: items 2 and 4 (0 and 1 are near); only 2's control is known, clean
    assert (feb["hs6vb_n_items"], feb["hs6vb_n_controls"]) == (2, 1)
    global_feb = 3 / 4  # controls of 0, 2, 3, 5 known before February; 0, 3, 5 found
    assert feb["hs6vb_hr_revenue"] == pytest.approx((0 + 10 * global_feb) / (1 + 10))
    # March: item 4's finding is known; item 6 (February, the same value) is near
    assert (mar["hs6vb_n_items"], mar["hs6vb_n_controls"]) == (2, 2)
    global_mar = 4 / 5
    assert mar["hs6vb_hr_revenue"] == pytest.approx((1 + 10 * global_mar) / (2 + 10))
    # 3% away from 1,000: the near peers of 1,000 are its band peers (0, 1, 6 and 2, 4)
    assert (away["hs6vb_n_items"], away["hs6vb_n_controls"]) == (5, 3)
    assert math.isnan(zero["hs6vb_n_items"]) and math.isnan(zero["hs6vb_hr_revenue"])
    # every item weighs 10 kg: all its mass peers are near, none is left in its mass band
    assert math.isnan(zero["hs6ub_n_items"]) and zero["hs6mb_n_items"] == 0
    assert frame.iloc[0]["hs6vb_n_items"] == 0
    assert format_reason("hs6vb_hr_revenue", mar) == (
        "HS 6109.10 at a declared value of this order (items within about 1% of it left out): "
        f"revenue hit rate {mar['hs6vb_hr_revenue']:.1%} over 2 controls against 80.0% overall"
    )
    # the store, built on the history before March, answers the March rows the same
    from riskml.features.store import FeatureStore

    past = (decl["accepted_date"] < pd.Timestamp("2023-03-01")).to_numpy()
    store = FeatureStore(decl[past], outc, FeatureParams(prior_strength=10.0))
    batch = store.features(decl[~past])
    bands = [c for c in frame.columns if c.startswith(("hs6vb_", "hs6mb_", "hs6ub_"))]
    assert len(bands) == 24
    pd.testing.assert_frame_equal(
        batch[bands].reset_index(drop=True),
        frame.loc[~past, bands].reset_index(drop=True),
        check_exact=True,
    )


def test_band_bins_of_a_few_rows_equal_the_column_wise_bins():
    """The value-band bins read value by value for a few rows (the scoring path) are the
    column-wise ones: decade boundaries, values below 1 (negative bins), zero and missing."""
    from riskml.features.prepare import BAND_MEASURES, prepare

    values = [1000.0, 999.999, 1005.0, 0.5, 0.0, None, 10.0, 123456.7]
    masses = [10.0, 0.0, None, 0.25, 3.0, 1.0, 1000.0, 7.0]
    decl = _decl(
        [
            {"accepted_date": "2023-01-05", "cif_value": v, "net_mass_kg": m, "gross_mass_kg": g}
            for v, m, g in zip(
                values, masses, [12.0, 2.0, 5.0, 1.0, 3.0, None, 1.0, 8.0], strict=True
            )
        ]
    )  # fmt: skip
    prep = prepare(decl, NO_OUTCOMES)
    for measure in BAND_MEASURES:
        for kind in ("decade", "near"):
            name = f"{measure}_{kind}"
            wide = prep.column(name).to_numpy(dtype=object, na_value=None)
            assert list(prep.cells(name)) == list(wide), name
    assert list(prep.cells("value_decade")) == [3, 2, 3, -1, None, None, 1, 5]
    assert prep.cells("value_near")[0] == 600 and prep.cells("value_near")[2] == 600


def test_volume_against_the_entitys_own_past():
    months = ["2023-01-10"] * 2 + ["2023-02-10"] * 4 + ["2023-03-10"] * 6 + ["2023-04-10"]
    decl = _decl([{"accepted_date": d} for d in months])
    frame = build_features(decl, NO_OUTCOMES, FeatureParams(reference_months=12))
    by_month = frame.groupby(frame["accepted_date"].dt.month)
    prev = by_month["imp_items_prev_month"].first()
    ratio = by_month["imp_volume_ratio"].first()
    assert list(prev) == [0, 2, 4, 6]
    assert math.isnan(ratio[1]) and math.isnan(ratio[2])  # no month before the previous one
    assert ratio[3] == pytest.approx(4 / 2) and ratio[4] == pytest.approx(6 / 3)
    assert format_reason("imp_volume_ratio", frame.iloc[-1]) == (
        "importer declared 2.0 times its usual monthly volume last month"
    )
    short = build_features(decl, NO_OUTCOMES, FeatureParams(reference_months=1))
    assert short.iloc[-1]["imp_volume_ratio"] == pytest.approx(6 / 4)  # February only
    assert short.iloc[-1]["decl_items_prev_month"] == 6


def test_share_of_trade_outside_the_usual_chapters():
    decl = _decl(
        [{"accepted_date": "2023-01-10"}] * 20
        + [{"accepted_date": "2023-02-10"}] * 3
        + [{"accepted_date": "2023-02-11", "hs_code": "93020000"}]
        + [{"accepted_date": "2023-03-10"}]
    )
    frame = build_features(decl, NO_OUTCOMES, FeatureParams())
    assert frame["imp_outside_usual_share"].iloc[:24].isna().all()  # nothing earlier to compare
    row = frame.iloc[-1]
    assert row["imp_outside_usual_share"] == pytest.approx(0.25)  # HS 93 in February
    assert row["imp_hs2_share"] == pytest.approx(23 / 24)
    assert frame.iloc[23]["imp_hs2_share"] == 0.0  # the first HS 93 item
    assert format_reason("imp_outside_usual_share", row) == (
        "25% of the importer's items last month were outside its usual HS chapters"
    )


def test_standard_duty_rate_and_the_gap_of_a_preference_claim():
    jan = [{"accepted_date": "2023-01-10", "duty_rate": 0.12}] * 3 + [
        {"accepted_date": "2023-01-11", "duty_rate": 0.05},
        {"accepted_date": "2023-01-12", "duty_rate": 0.0, "preference_claim": True},
        {"accepted_date": "2023-01-12", "duty_rate": 0.0, "preference_claim": True},
    ]
    feb = [
        {"accepted_date": "2023-02-10", "duty_rate": 0.0, "preference_claim": True},
        {"accepted_date": "2023-02-10", "duty_rate": 0.12},
        {"accepted_date": "2023-02-10", "hs_code": "99999900"},
    ]
    frame = build_features(_decl(jan + feb), NO_OUTCOMES, FeatureParams())
    assert frame["duty_rate_standard"].iloc[:6].isna().all()  # no earlier month
    claim, plain, unknown = frame.iloc[6], frame.iloc[7], frame.iloc[8]
    assert claim["duty_rate_standard"] == pytest.approx(0.12)
    assert claim["duty_rate_gap"] == pytest.approx(0.12)
    assert plain["duty_rate_gap"] == pytest.approx(0.0)
    assert math.isnan(unknown["duty_rate_gap"])
    assert format_reason("duty_rate_gap", claim) == (
        "duty rate 0.0% applied where the standard rate of HS 6109.10 is 12.0%"
    )
    assert format_reason("duty_rate_gap", plain) == "the standard duty rate of HS 6109.10 applied"


def test_origin_fraud_traces_a_claim_no_one_from_the_origin_makes_and_a_supplier_off_its_origin():
    """A preference claimed for goods of an origin whose earlier goods were all declared under
    the standard treatment (no trade agreement) has a treatment share of 0; a supplier whose
    earlier goods were all of one origin, declared of another, a supplier-origin share of 0.
    Both count earlier months only: the same month's rows change nothing."""
    jan = [{"accepted_date": "2023-01-10"}] * 3 + [
        {"accepted_date": "2023-01-11", "origin_country": "VN", "supplier_id": "S2"},
        {"accepted_date": "2023-01-11", "origin_country": "VN", "supplier_id": "S2",
         "duty_rate": 0.0, "preference_claim": True},
    ]  # fmt: skip
    feb = [
        # CN goods were never declared under a preference: the claim is the first
        {"accepted_date": "2023-02-03", "duty_rate": 0.0, "preference_claim": True},
        {"accepted_date": "2023-02-03"},
        # VN: one of its two earlier items claimed one
        {"accepted_date": "2023-02-04", "origin_country": "VN", "supplier_id": "S2",
         "duty_rate": 0.0, "preference_claim": True},
        # supplier S1's goods (all CN so far) declared of VN origin, with a claim
        {"accepted_date": "2023-02-05", "origin_country": "VN", "duty_rate": 0.0,
         "preference_claim": True},
        {"accepted_date": "2023-02-05", "origin_country": "KR", "supplier_id": "S9"},
    ]  # fmt: skip
    frame = build_features(_decl(jan + feb), NO_OUTCOMES, FeatureParams())
    assert frame["orig_treatment_share"].iloc[:5].isna().all()  # no earlier month
    assert frame["sup_origin_share"].iloc[:5].isna().all()
    claim_cn, plain_cn, claim_vn, off_origin, new = (frame.iloc[i] for i in range(5, 10))
    assert claim_cn["orig_treatment_share"] == 0.0
    assert plain_cn["orig_treatment_share"] == 1.0
    assert claim_vn["orig_treatment_share"] == pytest.approx(0.5)
    assert off_origin["orig_treatment_share"] == pytest.approx(0.5)
    assert math.isnan(new["orig_treatment_share"])  # no earlier item from KR
    assert claim_cn["sup_origin_share"] == 1.0 and claim_vn["sup_origin_share"] == 1.0
    assert off_origin["sup_origin_share"] == 0.0
    assert math.isnan(new["sup_origin_share"])  # a supplier never seen
    assert format_reason("orig_treatment_share", claim_cn) == (
        "the first item from CN declared under this tariff treatment"
    )
    assert format_reason("sup_origin_share", off_origin) == (
        "the first of this supplier's items declared of VN origin"
    )
    assert format_reason("orig_treatment_share", claim_vn) == (
        "50.0% of the earlier items from VN were declared under this tariff treatment"
    )


def test_sibling_fit_goods_that_fit_a_dearer_code_of_their_heading():
    """A misclassification's trace: goods declared under the cheaper code of heading 6109
    whose value and mass per unit are those of the dearer code's earlier items. The ratio is
    the two codes' robust normal log-likelihoods (z clipped at 6), against earlier months
    only; the dearer code itself has no dearer sibling; the feature store agrees."""
    cheap = {"hs_code": "61091000", "duty_rate": 0.12}
    dear = {"hs_code": "61099000", "duty_rate": 0.2, "net_mass_kg": 20.0}
    jan = [
        {"accepted_date": "2023-01-10", **cheap, "cif_value": v} for v in (90, 95, 100, 105, 110)
    ]
    jan += [
        {"accepted_date": "2023-01-12", **dear, "cif_value": v} for v in (290, 295, 300, 305, 310)
    ]
    feb = [
        # the dearer code's goods (value 30 and 2 kg a unit) declared under the cheaper code
        {"accepted_date": "2023-02-03", **cheap, "cif_value": 300.0, "net_mass_kg": 20.0},
        {"accepted_date": "2023-02-03", **cheap, "cif_value": 100.0},  # the cheaper code's goods
        {"accepted_date": "2023-02-04", **dear, "cif_value": 300.0},  # no dearer sibling
        {"accepted_date": "2023-02-04", **cheap, "quantity": None},  # nothing to compare
    ]
    frame = build_features(_decl(jan + feb), NO_OUTCOMES, FeatureParams())
    assert frame["sibling_fit"].iloc[:10].isna().all()  # no earlier month
    misfiled, own, dearer = (frame.iloc[i] for i in range(10, 13))

    def log_likelihood(x: float, peers: list[float]) -> float:
        logs = np.log(peers)
        median = np.median(logs)
        scale = max(MAD_TO_SD * np.median(np.abs(logs - median)), MIN_SCALE)
        z = np.clip((np.log(x) - median) / scale, -6, 6)
        return -0.5 * z**2 - np.log(scale)

    def ratio(uv: float, kg: float) -> float:  # dearer code over the declared one
        dear_ll = log_likelihood(uv, [29, 29.5, 30, 30.5, 31]) + log_likelihood(kg, [2.0] * 5)
        own_ll = log_likelihood(uv, [9, 9.5, 10, 10.5, 11]) + log_likelihood(kg, [1.0] * 5)
        return dear_ll - own_ll

    assert misfiled["sibling_fit"] == pytest.approx(ratio(30, 2), rel=1e-5)
    assert misfiled["sibling_fit"] > 30
    assert own["sibling_fit"] == pytest.approx(ratio(10, 1), rel=1e-5)
    assert own["sibling_fit"] < 0
    assert misfiled["sibling_rate_gap"] == pytest.approx(0.08)
    assert math.isnan(dearer["sibling_fit"]) and math.isnan(dearer["sibling_rate_gap"])
    assert math.isnan(frame["sibling_fit"].iloc[13])
    assert format_reason("sibling_fit", misfiled) == (
        "the goods' value and mass per unit fit HS 6109.90 (standard duty 20.0%) better than "
        "the declared HS 6109.10"
    )
    assert format_reason("sibling_fit", own).startswith("the goods' value and mass per unit fit")
    assert "less well" in format_reason("sibling_fit", own)
    assert format_reason("sibling_fit", dearer) == (
        "no dearer code of heading 6109 to compare the goods with"
    )
    # the store, holding January, answers February's rows with the same values
    decl = _decl(jan + feb)
    stored = FeatureStore(decl.iloc[:10], NO_OUTCOMES, FeatureParams()).features(decl.iloc[10:])
    for name in ("sibling_fit", "sibling_rate_gap", "ctx_sibling_hs6", "ctx_sibling_rate"):
        pd.testing.assert_series_equal(
            stored[name].reset_index(drop=True), frame[name].iloc[10:].reset_index(drop=True)
        )


def test_supplier_age():
    decl = _decl(
        [
            {"accepted_date": "2023-01-10"},
            {"accepted_date": "2023-03-01"},
            {"accepted_date": "2023-03-01", "supplier_id": "S9"},
            {"accepted_date": "2023-03-01", "supplier_id": None},
        ]
    )
    frame = build_features(decl, NO_OUTCOMES, FeatureParams())
    assert list(frame["sup_age_days"].iloc[:3]) == [0, 50, 0]
    assert math.isnan(frame["sup_age_days"].iloc[3])
    assert format_reason("sup_age_days", frame.iloc[1]) == "supplier first seen 50 days ago"


# ---------------------------------------------------------------- a random world


def make_world(n: int = 1500, months: int = 8, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small random world: a few importers, HS codes and origins; 15% of items controlled."""
    rng = np.random.default_rng(seed)
    days = np.sort(rng.integers(0, months * 30, n))
    decl = pd.DataFrame(
        {
            "declaration_id": [f"D{i // 2:06d}" for i in range(n)],
            "item_no": [i % 2 + 1 for i in range(n)],
            "accepted_date": START + pd.to_timedelta(days, unit="D"),
            "office": rng.choice(["O1", "O2"], n),
            "procedure": rng.choice(["4000", "4200", None], n),
            "transport_mode": rng.choice(["sea", "air", "post", "road"], n),
            "importer_id": rng.choice([f"I{i}" for i in range(40)], n),
            "declarant_id": rng.choice([f"B{i}" for i in range(8)], n),
            "supplier_id": rng.choice([f"S{i}" for i in range(60)] + [None], n),
            "origin_country": rng.choice(["CN", "VN", "TR", "CO"], n),
            "departure_country": rng.choice(["CN", "NL", None], n),
            "hs_code": rng.choice(["610910", "610990", "620342", "220421", "080390"], n),
            "quantity": rng.integers(1, 500, n).astype(float),
            "quantity_unit": rng.choice(["u", "kg"], n),
            "gross_mass_kg": rng.uniform(10, 1000, n),
            "net_mass_kg": rng.uniform(5, 900, n),
            "fob_value": rng.uniform(100, 10000, n),
            "cif_value": rng.uniform(120, 12000, n),
            "duty_rate": rng.choice([0.0, 0.05, 0.12], n),
            "duties_paid": rng.uniform(0, 1000, n),
            "preference_claim": rng.choice([True, False], n),
        }
    )
    idx = np.flatnonzero(rng.random(n) < 0.15)
    found = rng.random(len(idx)) < 0.3
    outc = pd.DataFrame(
        {
            "declaration_id": decl["declaration_id"].to_numpy()[idx],
            "item_no": decl["item_no"].to_numpy()[idx],
            "control_kind": rng.choice(["documentary", "physical", "random", "pca"], len(idx)),
            "result_date": decl["accepted_date"].to_numpy()[idx]
            + pd.to_timedelta(rng.integers(0, 90, len(idx)), unit="D"),
            "risk_area": np.where(found, rng.choice(["revenue", "drugs", "ipr"], len(idx)), None),
            "offence_found": found,
            "offence_code": None,
            "additional_duty": np.where(found, rng.uniform(0, 500, len(idx)), 0.0),
            "quantity_seized": 0.0,
        }
    )
    return decl, outc


@pytest.fixture(scope="module")
def world() -> tuple[pd.DataFrame, pd.DataFrame]:
    return make_world()


@pytest.fixture(scope="module")
def world_features(world) -> pd.DataFrame:
    """Every feature: with the area specs (detectable hit rates, targeting profiles)."""
    decl, outc = world
    return build_features(decl, outc, FeatureParams(), specs=_specs())


def test_one_row_per_item_in_input_order(world):
    decl, outc = world
    shuffled = decl.sample(frac=1.0, random_state=3)
    frame = build_features(shuffled, outc, FeatureParams())
    assert list(frame.index) == list(shuffled.index)
    assert list(frame["declaration_id"]) == list(shuffled["declaration_id"])
    base = build_features(decl, outc, FeatureParams())
    pd.testing.assert_frame_equal(frame.sort_index(), base.sort_index(), check_exact=False)


def test_every_model_feature_has_a_catalogue_entry(world_features):
    columns = model_feature_columns(world_features)
    assert columns, "no model features"
    catalogue = catalogue_for(_specs())
    assert set(columns) == set(catalogue)
    for name in columns:
        info = catalogue[name]
        assert info.group in GROUPS and info.description and info.template
        assert pd.api.types.is_numeric_dtype(world_features[name])
    assert not any(c.startswith("ctx_") or c.endswith("_id") for c in columns)


def test_every_template_formats_on_real_rows(world_features):
    catalogue = catalogue_for(_specs())
    for info in catalogue.values():
        for template in (info.template, info.template_zero, info.template_missing):
            for field in template_fields(template):
                assert field.split(":")[0] in world_features.columns, (info.name, field)
    rows = world_features.iloc[[0, 10, 500, -1]]
    for _, row in rows.iterrows():
        for info in catalogue.values():
            sentence = fill_reason(info, row)
            assert sentence is None or ("nan" not in sentence and "{" not in sentence)


# ---------------------------------------------------------------- leakage


def _rewrite_future(
    decl: pd.DataFrame, outc: pd.DataFrame, cutoff: pd.Timestamp, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Change everything known on or after ``cutoff``: outcomes and declarations."""
    rng = np.random.default_rng(seed)
    outc = outc.copy()
    late = (outc["result_date"] >= cutoff).to_numpy()
    outc.loc[late, "offence_found"] = ~outc.loc[late, "offence_found"].astype(bool)
    areas = ["revenue", "security", "ipr", "environment", "health_safety", "drugs"]
    outc.loc[late, "risk_area"] = rng.choice(areas, late.sum())
    outc.loc[late, "additional_duty"] = outc.loc[late, "additional_duty"] * 3 + 7
    outc.loc[late, "control_kind"] = "pca"
    k = 50
    pick = rng.integers(0, len(decl), k)
    extra = pd.DataFrame(
        {
            "declaration_id": decl["declaration_id"].to_numpy()[pick],
            "item_no": decl["item_no"].to_numpy()[pick],
            "control_kind": "random",
            "result_date": cutoff + pd.to_timedelta(rng.integers(0, 60, k), unit="D"),
            "risk_area": "drugs",
            "offence_found": True,
            "offence_code": "X",
            "additional_duty": 1000.0,
            "quantity_seized": 1.0,
        }
    )
    outc = pd.concat([outc, extra], ignore_index=True)

    decl = decl.copy()
    fut = (decl["accepted_date"] >= cutoff).to_numpy()
    m = int(fut.sum())
    decl.loc[fut, "importer_id"] = rng.choice(["I1", "I2", "NEW"], m)
    decl.loc[fut, "supplier_id"] = "S1"
    decl.loc[fut, "hs_code"] = rng.choice(["610910", "999999"], m)
    decl.loc[fut, "origin_country"] = "CO"
    decl.loc[fut, "cif_value"] = decl.loc[fut, "cif_value"] * 0.01
    decl.loc[fut, "transport_mode"] = "rail"
    decl.loc[fut, "declarant_id"] = rng.choice(["B1", "B99"], m)
    decl.loc[fut, "office"] = rng.choice(["O1", "O9"], m)
    decl.loc[fut, "departure_country"] = "AE"
    decl.loc[fut, "duty_rate"] = rng.choice([0.0, 0.3], m)
    decl.loc[fut, "preference_claim"] = rng.choice([True, False], m)
    return decl, outc


@given(
    cut_day=st.integers(min_value=5, max_value=235),
    seed=st.integers(min_value=0, max_value=2**16),
)
@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_future_rewrites_leave_past_features_unchanged(world, world_features, cut_day, seed):
    decl, outc = world
    cutoff = START + pd.Timedelta(days=cut_day)
    decl2, outc2 = _rewrite_future(decl, outc, cutoff, seed)
    rewritten = build_features(decl2, outc2, FeatureParams(), specs=_specs())
    past = (decl["accepted_date"] < cutoff).to_numpy()
    assert past.any()
    pd.testing.assert_frame_equal(world_features[past], rewritten[past], check_exact=True)
    # the rewrite did change something later on, so the test has teeth
    cols = model_feature_columns(world_features)
    assert not world_features.loc[~past, cols].equals(rewritten.loc[~past, cols])


#: Features computed from the row alone; every other one is built from other rows' history.
ROW_ONLY = {"uv_kg_log", "uv_q_log", "duty_rate", "duty_to_cif", "cif_to_fob", "log_cif",
            "zero_value", "preference_claim"}  # fmt: skip
ROW_GROUPS = ("goods", "route", "calendar", "targeting profile")
# Built from the seizures table, not from declarations or outcomes: their leakage test (records
# reported after a cut-off) is in tests/test_seizures.py.
OTHER_SOURCES = ("seizure intelligence",)


def test_the_leakage_rewrite_reaches_every_history_feature(world, world_features):
    """At one cut-off: past rows identical, and each feature built from other rows' history
    (profiles, hit rates, reference prices, standard rates, novelty, volume) changed on some
    later row, so the leakage test above really exercises every one of them."""
    decl, outc = world
    cutoff = START + pd.Timedelta(days=100)
    decl2, outc2 = _rewrite_future(decl, outc, cutoff, seed=11)
    rewritten = build_features(decl2, outc2, FeatureParams(), specs=_specs())
    past = (decl["accepted_date"] < cutoff).to_numpy()
    pd.testing.assert_frame_equal(world_features[past], rewritten[past], check_exact=True)
    history = [
        n for n, info in catalogue_for(_specs()).items()
        if info.group not in ROW_GROUPS + OTHER_SOURCES and n not in ROW_ONLY
    ]  # fmt: skip
    assert len(history) > 200
    before = world_features.loc[~past, history].to_numpy(np.float64)
    after = rewritten.loc[~past, history].to_numpy(np.float64)
    changed = ~((before == after) | (np.isnan(before) & np.isnan(after)))
    untouched = [n for n, c in zip(history, changed.any(axis=0), strict=True) if not c]
    assert not untouched, f"the rewrite never changed {untouched}"


def test_docs_list_every_feature():
    from riskml.features.catalogue import catalogue_markdown

    docs = (Path(__file__).parents[1] / "docs" / "features.md").read_text(encoding="utf-8")
    assert catalogue_markdown() in docs, "regenerate the table with catalogue_markdown()"


def test_simulated_world_leakage():
    """The same rewrite on a small simulated world, at a mid-month cut-off."""
    from riskml.config import SimulateParams, load_area_specs
    from riskml.simulate import simulate

    specs = load_area_specs(Path(__file__).parents[1] / "pipelines")
    params = SimulateParams(n_items=20_000, months=8, n_importers=300, n_suppliers=600)
    world = simulate(params, specs)
    decl, outc = world["declarations"], world["outcomes"]
    cutoff = pd.Timestamp(params.start_date) + pd.Timedelta(days=140)
    base = build_features(decl, outc, FeatureParams(), specs=specs)
    decl2, outc2 = _rewrite_future(decl, outc, cutoff, seed=7)
    rewritten = build_features(decl2, outc2, FeatureParams(), specs=specs)
    past = (decl["accepted_date"] < cutoff).to_numpy()
    pd.testing.assert_frame_equal(base[past], rewritten[past], check_exact=True)
    assert outc["result_date"].ge(cutoff).any()


def test_control_reason_reaches_no_feature(world, world_features):
    # why a control was made is known only for controlled items: no feature may depend on it,
    # even when it marks every finding (a reason that "explains" the labels)
    decl, outc = world
    found = outc["offence_found"].to_numpy(bool)
    marked = outc.assign(control_reason=np.where(found, "intelligence", "profile"))
    frame = build_features(decl, marked, FeatureParams(), specs=_specs())
    pd.testing.assert_frame_equal(frame, world_features)
    assert not [c for c in frame.columns if "reason" in c]
