"""The simulated customs world: schema, consistency, prevalence, drift, determinism, Parquet run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from riskml.config import load_area_specs, load_params
from riskml.contract import CONTROL_REASONS, RISK_AREAS, TABLES, column_names
from riskml.simulate import month_plan, run, simulate
from riskml.simulate.catalogue import load_catalogue
from riskml.simulate.engine import World
from riskml.simulate.offences import NOISE_SD, REVENUE_HOT, expected_probabilities

ROOT = Path(__file__).parents[1]
KEY = ["declaration_id", "item_no"]


@pytest.fixture(scope="module")
def specs():
    return load_area_specs(ROOT / "pipelines")


def _params(**kw):
    base = load_params(ROOT / "params.yaml").simulate
    return base.model_copy(update={"n_items": 60_000, "months": 8, "drift_month": 4, **kw})


@pytest.fixture(scope="module")
def world(specs):
    return simulate(_params(), specs)


@pytest.fixture(scope="module")
def truth_wide(world):
    t = world["truth"]
    return t.pivot(index=KEY, columns="risk_area", values=["offence", "true_prob", "evaded_duty"])


def test_columns_and_dtypes_follow_the_contract(world):
    for table in TABLES:
        df = world[table]
        assert list(df.columns) == column_names(table)
        for col in TABLES[table]:
            s = df[col.name]
            if col.dtype == "int":
                assert s.dtype == np.int64, col.name
            elif col.dtype == "float":
                assert s.dtype == np.float64, col.name
            elif col.dtype == "date":
                assert pd.api.types.is_datetime64_dtype(s), col.name
            elif col.dtype == "bool":
                assert s.dtype == bool, col.name
            else:
                assert pd.api.types.is_string_dtype(s) or s.dtype == object, col.name


def test_the_simulator_fills_every_optional_declaration_column(world):
    """Guard: a new optional contract column must be written by the simulator too, with values
    (it broke `riskml source` and the default `make run` twice when it was not)."""
    decl = world["declarations"]
    optional = [c.name for c in TABLES["declarations"] if not c.required]
    assert optional, "the contract has optional declaration columns"
    empty = [c for c in optional if c not in decl.columns or decl[c].isna().all()]
    assert not empty, f"the simulator writes no value in optional column(s) {empty}"


def test_every_optional_contract_column_is_written(world):
    # the simulator is the project's reference data: an optional column it leaves empty is a
    # code path (ingest, features, training) no default run exercises
    for table in TABLES:
        empty = [c.name for c in TABLES[table] if world[table][c.name].isna().all()]
        assert not empty, (table, empty)


def test_every_control_says_why_it_was_made(world, truth_wide):
    o = world["outcomes"]
    assert set(o["control_reason"]) == set(CONTROL_REASONS) - {"other"}
    # a random control is a random draw; audits and the ranked legacy score are profiles
    assert ((o["control_kind"] == "random") == (o["control_reason"] == "random")).all()
    assert (o.loc[o["control_kind"] == "pca", "control_reason"] == "profile").all()
    tipped = o[o["control_reason"] == "intelligence"]
    assert set(tipped["control_kind"]) <= {"documentary", "physical", "scanner"}
    # tip-offs follow the hidden risk: the items they name carry more of it than the items
    # the profiles choose (the oracle's mean probability of a rare-area offence)
    rare = truth_wide["true_prob"][["drugs", "environment", "health_safety", "security"]]
    risk = rare.sum(axis=1).rename("risk").reset_index()
    items = o.drop_duplicates([*KEY, "control_reason"]).merge(risk, on=KEY)
    mean = items.groupby("control_reason")["risk"].mean()
    assert mean["intelligence"] > 3 * mean["profile"]


def test_keys_are_unique_and_well_formed(world):
    d, o, t = world["declarations"], world["outcomes"], world["truth"]
    assert not d.duplicated(KEY).any()
    assert not o.duplicated([*KEY, "control_kind", "risk_area"]).any()
    assert not t.duplicated([*KEY, "risk_area"]).any()
    assert len(t) == len(d) * len(RISK_AREAS)
    assert d["declaration_id"].str.fullmatch(r"D20\d{2}\d{6,}").all()
    assert d["importer_id"].str.fullmatch(r"IMP\d{5}").all()
    assert d["declarant_id"].str.fullmatch(r"DCL\d{4}").all()
    assert d["supplier_id"].str.fullmatch(r"SUP\d{5}").all()
    assert d["hs_code"].str.fullmatch(r"\d{8}").all()
    assert d["origin_country"].str.fullmatch(r"[A-Z]{2}").all()
    sizes = d.groupby("declaration_id")["item_no"].agg(["min", "max", "count"])
    assert (sizes["min"] == 1).all() and (sizes["max"] == sizes["count"]).all()
    assert sizes["count"].between(1, 5).all()
    assert set(o["control_kind"]) <= {"documentary", "physical", "scanner", "pca", "random"}


def test_values_are_mutually_consistent(world):
    d = world["declarations"]
    positive = ["quantity", "gross_mass_kg", "net_mass_kg", "fob_value", "cif_value"]
    assert (d[positive] > 0).all().all()
    assert (d["net_mass_kg"] <= d["gross_mass_kg"]).all()
    ratio = d["cif_value"] / d["fob_value"]
    assert ratio.between(1.02, 1.16).all()
    assert d["duty_rate"].between(0, 1).all()
    assert np.allclose(d["duties_paid"], d["duty_rate"] * d["cif_value"], atol=0.011)
    assert (
        d.loc[d["quantity_unit"] == "kg", "quantity"]
        == d.loc[d["quantity_unit"] == "kg", "net_mass_kg"]
    ).mean() > 0.99
    assert d["preference_claim"].any()
    assert (d.loc[d["preference_claim"], "duty_rate"] == 0).all()


def test_catalogue_covers_every_area_focus():
    cat = load_catalogue()
    assert len(cat) >= 300
    assert len(set(cat.chapter)) >= 40
    for prefix in (
        "2203",
        "2208",
        "2402",
        "2710",
        "61",
        "62",
        "64",
        "8703",
        "08",
        "09",
        "2939",
        "2914",
        "2932",
        "42",
        "8517",
        "9503",
        "9101",
        "3303",
        "3304",
        "2903",
        "3824",
        "8415",
        "8418",
        "01",
        "03",
        "05",
        "41",
        "44",
        "3915",
        "4707",
        "7204",
        "3003",
        "3004",
        "9018",
        "93",
        "3601",
        "3604",
        "2844",
        "8542",
        "8526",
        "90",
    ):
        assert cat.prefixed(prefix).any(), prefix
    assert (cat.cheaper_sibling >= 0).mean() > 0.3


def test_prevalence_per_area(world):
    prev = world["truth"].groupby("risk_area")["offence"].mean()
    bounds = {
        "revenue": (0.03, 0.06),
        "ipr": (0.006, 0.016),
        "health_safety": (0.0015, 0.005),
        "environment": (0.0006, 0.003),
        "drugs": (0.0003, 0.0016),
        "security": (0.00008, 0.0008),
    }
    for area, (lo, hi) in bounds.items():
        assert lo <= prev[area] <= hi, (area, prev[area])


def test_evaded_duty_only_on_revenue_offences(world, truth_wide):
    t = world["truth"]
    assert (t["evaded_duty"] >= 0).all()
    assert (t.loc[t["risk_area"] != "revenue", "evaded_duty"] == 0).all()
    rev = truth_wide.xs("revenue", axis=1, level=1)
    assert (rev.loc[~rev["offence"].astype(bool), "evaded_duty"] == 0).all()
    assert (rev.loc[rev["offence"].astype(bool), "evaded_duty"] > 0).mean() > 0.95
    assert t["true_prob"].between(0, 1).all()


def test_outcomes_reference_items_and_match_the_truth(world, truth_wide):
    d, o = world["declarations"], world["outcomes"]
    items = pd.MultiIndex.from_frame(d[KEY])
    assert pd.MultiIndex.from_frame(o[KEY]).isin(items).all()
    found = o[o["offence_found"]]
    assert found["risk_area"].notna().all() and found["offence_code"].notna().all()
    assert o.loc[~o["offence_found"], "risk_area"].isna().all()
    # no false positive: what a control finds was committed
    hits = truth_wide["offence"].stack().rename("offence").reset_index()
    merged = found.merge(hits, on=[*KEY, "risk_area"], how="left")
    assert merged["offence"].astype(bool).all()
    # a control either found something or has one clean row
    per_control = o.groupby([*KEY, "control_kind"])["offence_found"].agg(["any", "size"])
    assert (per_control.loc[~per_control["any"], "size"] == 1).all()
    # only found areas a kind can detect
    specs = load_area_specs(ROOT / "pipelines")
    for area, spec in specs.items():
        assert set(found.loc[found["risk_area"] == area, "control_kind"]) <= set(spec.detectable_by)
    rev = found[found["risk_area"] == "revenue"].merge(
        truth_wide.xs("revenue", axis=1, level=1)["evaded_duty"].reset_index(), on=KEY
    )
    assert (rev["additional_duty"] <= rev["evaded_duty"] + 0.01).all()
    assert (o["additional_duty"] >= 0).all() and (o["quantity_seized"] >= 0).all()


def test_control_rates_and_label_delays(world):
    d, o = world["declarations"], world["outcomes"]
    p = _params()
    share = o.groupby("control_kind")[KEY].apply(lambda g: len(g.drop_duplicates())) / len(d)
    assert share["random"] == pytest.approx(p.random_control_rate, rel=0.3)
    targeted = share.reindex(["documentary", "physical", "scanner"]).fillna(0).sum()
    assert targeted == pytest.approx(p.targeted_rate, rel=0.15)
    assert share["pca"] == pytest.approx(p.pca_rate, rel=0.15)
    lag = o.merge(d[[*KEY, "accepted_date"]], on=KEY).assign(
        days=lambda x: (x["result_date"] - x["accepted_date"]).dt.days
    )
    assert lag.loc[lag["control_kind"] == "pca", "days"].between(60, 270).all()
    assert lag.loc[lag["control_kind"] != "pca", "days"].between(0, 40).all()


def test_targeted_controls_beat_random_ones(world):
    o = world["outcomes"]
    hit = o.groupby([*KEY, "control_kind"])["offence_found"].any().groupby("control_kind").mean()
    assert hit[["documentary", "physical"]].mean() > hit["random"]


def test_oracle_precision_is_learnable_but_not_trivial(truth_wide):
    prob, off = truth_wide["true_prob"], truth_wide["offence"].astype(bool)
    k = int(0.05 * len(prob))
    precision = {}
    for area in RISK_AREAS:
        top = prob[area].to_numpy().argsort()[::-1][:k]
        precision[area] = off[area].to_numpy()[top].mean()
    assert 0.35 <= precision["revenue"] <= 0.75, precision
    for area in ("drugs", "environment", "health_safety", "security", "ipr"):
        assert precision[area] < precision["revenue"], precision


def test_drift_moves_revenue_fraud(world, truth_wide, specs):
    """After the drift the new hot spots rise; the old ones fall but keep part of their weight
    (``REVENUE_OLD_HOT``: fraud does not leave them at once)."""
    d = world["declarations"].set_index(KEY)
    rev = truth_wide["offence"]["revenue"].astype(bool).reindex(d.index)
    after = d["accepted_date"] >= month_plan(_params())[4].start
    chapter = d["hs_code"].str[:2].astype(int)
    old_hot = chapter.isin(REVENUE_HOT[False][0])
    new_hot = chapter.isin(REVENUE_HOT[True][0])
    before_rate = rev[~after & old_hot].mean(), rev[~after & new_hot].mean()
    after_rate = rev[after & old_hot].mean(), rev[after & new_hot].mean()
    assert after_rate[0] < 0.9 * before_rate[0]
    assert after_rate[1] > 1.3 * before_rate[1]


def test_importer_history_predicts_offences(world, truth_wide):
    d = world["declarations"]
    o = world["outcomes"].merge(d[[*KEY, "importer_id"]], on=KEY)
    mid = month_plan(_params())[4].start
    flagged = set(o.loc[o["offence_found"] & (o["result_date"] < mid), "importer_id"])
    late = d[d["accepted_date"] >= mid].set_index(KEY)
    any_offence = truth_wide["offence"].astype(bool).any(axis=1).reindex(late.index)
    with_history = late["importer_id"].isin(flagged)
    assert any_offence[with_history].mean() > 1.5 * any_offence[~with_history].mean()


def test_new_importers_keep_arriving(world):
    d = world["declarations"]
    first = d.groupby("importer_id")["accepted_date"].min()
    assert (first >= month_plan(_params())[4].start).sum() > 20


def test_month_plan_is_exact_and_seasonal():
    plan = month_plan(_params(n_items=123_457, months=24))
    counts = [m.n_items for m in plan]
    assert sum(counts) == 123_457 and max(counts) > 1.1 * min(counts)


def test_same_params_give_identical_tables(specs):
    p = _params(n_items=8_000, months=6, drift_month=3)
    a, b = simulate(p, specs), simulate(p, specs)
    for table in TABLES:
        pd.testing.assert_frame_equal(a[table], b[table])
    c = simulate(p.model_copy(update={"seed": p.seed + 1}), specs)
    assert not a["declarations"]["cif_value"].equals(c["declarations"]["cif_value"])


def test_run_writes_three_parquet_files_month_by_month(tmp_path, specs):
    p = _params(n_items=8_000, months=6, drift_month=3)
    calls = []
    summary = run(tmp_path, p, specs, progress=lambda i, n: calls.append((i, n)))
    assert sorted(f.name for f in tmp_path.iterdir()) == [f"{t}.parquet" for t in sorted(TABLES)]
    assert calls == [(i, 6) for i in range(1, 7)]
    expected = simulate(p, specs)
    for table in TABLES:
        got = pd.read_parquet(tmp_path / f"{table}.parquet")
        assert summary["rows"][table] == len(got)
        assert pq.ParquetFile(tmp_path / f"{table}.parquet").num_row_groups == 6
        pd.testing.assert_frame_equal(got, expected[table], check_dtype=False)
    assert set(summary["prevalence"]) == set(RISK_AREAS)
    assert 0.04 < summary["share_controlled"] < 0.09


@pytest.fixture(scope="module")
def world_2y(specs):
    """The default 24-month world at half the default size."""
    p = load_params(ROOT / "params.yaml").simulate.model_copy(update={"n_items": 150_000})
    return simulate(p, specs)


def test_rare_areas_get_useful_numbers_of_findings(world_2y):
    """The legacy system targets the strongest rare-area rules hard enough to produce labels."""
    w = world_2y
    found = w["outcomes"].loc[w["outcomes"]["offence_found"], "risk_area"].value_counts()
    for area in ("drugs", "environment", "health_safety", "security"):
        assert found.get(area, 0) >= 8, found.to_dict()
    assert found["revenue"] > 200 and found["ipr"] > 100, found.to_dict()


def test_oracle_beats_legacy_rules_in_rare_areas(world_2y, specs):
    """Rare offences concentrate on traders and routes within (and beyond) the rule goods, so
    ranking by true_prob beats the legacy rules (ties broken at random) at the operating rate."""
    from riskml.metrics import precision_at_rate
    from riskml.rules import rule_score

    d, t = world_2y["declarations"], world_2y["truth"]
    wide = t.pivot(index=KEY, columns="risk_area", values=["offence", "true_prob"]).reindex(
        pd.MultiIndex.from_frame(d[KEY])
    )
    window = (d["accepted_date"] >= "2023-07-01").to_numpy()
    jitter = np.random.default_rng(0).random(window.sum()) * 1e-6
    for area in ("drugs", "environment", "health_safety", "security"):
        spec = specs[area]
        y = wide["offence"][area].to_numpy().astype(bool)[window]
        legacy = precision_at_rate(
            y,
            rule_score(d, spec.legacy_rules).to_numpy()[window] + jitter,
            rate=spec.operating_rate,
        )
        oracle = precision_at_rate(
            y, wide["true_prob"][area].to_numpy()[window], rate=spec.operating_rate
        )
        assert oracle >= 1.5 * legacy, (area, legacy, oracle)
        outside = (rule_score(d, spec.legacy_rules).to_numpy() == 0)[
            wide["offence"][area].to_numpy().astype(bool)
        ]
        assert 0.05 <= outside.mean() <= 0.5, (area, outside.mean())


def test_revenue_legacy_rules_beat_random_before_and_after_the_drift(world, truth_wide, specs):
    """Revenue's legacy profiles target the duty at stake (goods at the standard rate, not under
    a preference, where nothing can be undervalued): on the truth they pick offences at several
    times the base rate at the operating rate, before and after the drift, as real profiles do.
    With a blanket "preference claimed" rule lifting preference claims (a third of the items,
    offending at a third of the base rate) to the top, they tied random selection."""
    from riskml.metrics import precision_at_rate
    from riskml.rules import rule_score

    d = world["declarations"]
    y = truth_wide["offence"]["revenue"].astype(bool).reindex(pd.MultiIndex.from_frame(d[KEY]))
    score = rule_score(d, specs["revenue"].legacy_rules).to_numpy()
    after = (d["accepted_date"] >= month_plan(_params())[4].start).to_numpy()
    jitter = np.random.default_rng(0).random(len(d)) * 1e-6
    for period in (~after, after):
        truth = y.to_numpy()[period]
        rate = specs["revenue"].operating_rate
        lift = precision_at_rate(truth, score[period] + jitter[period], rate=rate) / truth.mean()
        assert 2.0 <= lift <= 5.0, lift


def test_oracle_probability_averages_out_the_item_noise():
    """E[logistic(z + e)], e ~ N(0, NOISE_SD^2), by quadrature: 1/2 at 0 by symmetry, and the
    Monte Carlo mean of a million draws elsewhere; below the logistic of z for z > 0."""
    z = np.array([[-6.0, -2.0, 0.0, 1.5, 4.0]])
    got = expected_probabilities(z, np.zeros(1))[0]
    draws = np.random.default_rng(0).normal(0, NOISE_SD, 1_000_000)
    want = [np.mean(1 / (1 + np.exp(-(v + draws)))) for v in z[0]]
    np.testing.assert_allclose(got, want, atol=5e-4)
    assert got[2] == pytest.approx(0.5, abs=1e-12)
    assert got[3] < 1 / (1 + np.exp(-1.5)) and got[0] > 1 / (1 + np.exp(6.0))


def test_the_oracle_knows_the_hidden_traits_not_the_item_noise(specs):
    """The logit minus its item noise is the same whatever the noise drawn: the oracle's
    probability (``true_prob``) depends on the item's traits only, not on the draw that is part
    of the outcome's randomness."""
    world = World(_params(), specs)
    batch = world._trade(np.random.default_rng(3), 0, 2_000)
    world._novelty(batch)
    a_logit, a_noise = world._logits(np.random.default_rng(4), batch, 0)
    b_logit, b_noise = world._logits(np.random.default_rng(5), batch, 0)
    assert not np.allclose(a_logit, b_logit)
    finite = np.isfinite(a_logit)
    np.testing.assert_allclose((a_logit - a_noise)[finite], (b_logit - b_noise)[finite])
    assert a_noise.std() == pytest.approx(NOISE_SD, rel=0.05)


def test_true_prob_is_calibrated_on_the_offences(truth_wide):
    """The oracle's probability is the offence rate: per area, the mean of true_prob matches the
    share of items that offend (within four binomial standard errors)."""
    prob, off = truth_wide["true_prob"], truth_wide["offence"].astype(float)
    for area in RISK_AREAS:
        p, y = prob[area].to_numpy(), off[area].to_numpy()
        se = np.sqrt(p.mean() * (1 - p.mean()) / len(p))
        assert abs(y.mean() - p.mean()) < 4 * se, area
