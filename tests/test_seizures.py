"""Seizure intelligence: the contract's ``seizures`` table, the simulator's seizures made
elsewhere, and the causal route and commodity features built from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskml.config import FeatureParams, SimulateParams, load_area_specs
from riskml.contract import (
    RiskmlError,
    column_names,
    empty_table,
    run_validate,
    validate_seizures,
)
from riskml.features import CATALOGUE, build_features, format_reason
from riskml.features.seizures import SEIZURE_AREAS, feature_names
from riskml.features.store import FeatureStore
from riskml.io import read_dataset
from riskml.simulate import simulate
from riskml.simulate.geography import ROLES
from riskml.simulate.offences import goods_masks

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sim() -> dict[str, pd.DataFrame]:
    """A small simulated world (40,000 items, 24 months) with its seizures."""
    params = SimulateParams(n_items=40_000, n_importers=800, n_declarants=80, n_suppliers=1600)
    return simulate(params, load_area_specs(ROOT / "pipelines"))


def _records(**overrides) -> pd.DataFrame:
    base = {
        "seizure_id": ["S1", "S2", "S3"],
        "seizure_date": ["2024-01-03", "2024-01-05", "2024-02-01"],
        "report_date": ["2024-02-01", "2024-03-01", "2024-03-01"],
        "reporting_country": ["NL", "BE", "ES"],
        "risk_area": ["drugs", "drugs", "environment"],
        "commodity": ["cocaine", "cocaine", "waste"],
        "concealment_hs": ["080300", "0901", "39"],
        "departure_country": ["EC", "CO", "TR"],
        "transit_country": [None, "PA", None],
        "transport_mode": ["sea", "sea", "road"],
        "quantity": [120.0, 40.0, 3.0],
    }
    base.update(overrides)
    return pd.DataFrame(base)


# --- contract ------------------------------------------------------------------------------


def test_validate_seizures_keeps_good_rows_and_quarantines_bad_ones_with_reasons():
    bad = _records(
        seizure_id=["S1", "S1", "S3"],
        report_date=["2024-02-01", "2024-03-01", "2024-01-15"],  # S3 reported before seized
        risk_area=["drugs", "drugs", "weapons"],
        concealment_hs=["080300", "coffee", "39"],
    )
    good, quarantine, report = validate_seizures(pd.concat([_records(), bad], ignore_index=True))
    # every row whose id repeats is out (duplicate key), as are the bad rows
    assert set(good["seizure_id"]) == {"S2"}
    reasons = " | ".join(quarantine["reason"])
    assert "reported before the seizure was made" in reasons
    assert "'weapons' is not one of" in reasons
    assert "'coffee' is not 2 to 10 digits" in reasons
    assert "duplicate key" in reasons
    assert set(quarantine["table"]) == {"seizures"}
    assert report["rows_in"] == 6 and report["rows_kept"] == 1
    assert list(good.columns) == column_names("seizures")
    assert str(good["report_date"].dtype) == "datetime64[ns]"


def test_validate_seizures_names_a_missing_required_column():
    with pytest.raises(RiskmlError, match="report_date"):
        validate_seizures(_records().drop(columns="report_date"), source="cen.csv")


def test_run_validate_writes_seizures_and_an_empty_table_without_them(tmp_path, sim):
    raw = tmp_path / "raw"
    raw.mkdir()
    decl = sim["declarations"].iloc[:200]
    decl.to_parquet(raw / "declarations.parquet")
    empty_table("outcomes").to_parquet(raw / "outcomes.parquet")
    report = run_validate(raw, tmp_path / "interim", tmp_path / "v.json")
    assert "seizures" not in report
    assert read_dataset(tmp_path / "interim/seizures").empty

    records = pd.concat([_records(), _records(seizure_id=["S1", "S8", "S9"])], ignore_index=True)
    records.to_parquet(raw / "seizures.parquet")
    report = run_validate(raw, tmp_path / "interim", tmp_path / "v.json")
    kept = read_dataset(tmp_path / "interim/seizures")
    assert sorted(kept["seizure_id"]) == ["S2", "S3", "S8", "S9"]
    assert report["seizures"]["rows_quarantined"] == 2
    quarantine = pd.read_parquet(tmp_path / "interim/quarantine.parquet")
    assert (quarantine["table"] == "seizures").sum() == 2


# --- simulator -----------------------------------------------------------------------------


def test_simulated_seizures_follow_the_contract_and_report_late(sim):
    s = sim["seizures"]
    good, quarantine, _ = validate_seizures(s)
    assert quarantine.empty and len(good) == len(s)
    assert set(s["risk_area"]) == set(SEIZURE_AREAS)
    assert "declaration_id" not in s.columns  # never linked to this administration's items
    delay = (s["report_date"] - s["seizure_date"]).dt.days
    assert delay.min() >= 0 and 20 <= delay.median() <= 120
    # gaps: cover goods, transport modes missing for some records, countries uneven
    assert 0.05 < s["concealment_hs"].isna().mean() < 0.3
    assert 0.02 < s["transport_mode"].isna().mean() < 0.2
    assert s["reporting_country"].nunique() >= 10


def test_drug_seizures_elsewhere_follow_the_networks_that_ship_here(sim):
    """Most cocaine seized elsewhere hides in concealment goods from drug source or transit
    countries: the same routes as the offences of this administration."""
    s = sim["seizures"]
    cocaine = s[(s["commodity"] == "cocaine") & s["concealment_hs"].str.len().ge(4).fillna(False)]
    route_countries = set(ROLES["drug_source"]) | set(ROLES["drug_transit"])
    route_countries |= set(ROLES["drug_transit_new"])
    on_route = cocaine["departure_country"].isin(route_countries) | cocaine["transit_country"].isin(
        route_countries
    )
    conceal = {h[:4] for h in _concealment_hs6()}
    in_cover = cocaine["concealment_hs"].str.slice(0, 4).isin(conceal)
    assert len(cocaine) >= 30
    assert (on_route & in_cover).mean() > 0.6


def _concealment_hs6() -> list[str]:
    from riskml.simulate.catalogue import load_catalogue

    return list(load_catalogue().hs6[goods_masks().conceal])


def test_seizures_change_none_of_the_other_tables(sim, monkeypatch):
    """Seizures draw from their own random stream: a run without them has the same
    declarations, outcomes and truth."""
    import riskml.simulate.engine as engine

    monkeypatch.setattr(engine, "month_seizures", lambda *a, **k: empty_table("seizures"))
    params = SimulateParams(n_items=40_000, n_importers=800, n_declarants=80, n_suppliers=1600)
    without = simulate(params, load_area_specs(ROOT / "pipelines"))
    assert without["seizures"].empty and not sim["seizures"].empty
    for table in ("declarations", "outcomes", "truth"):
        pd.testing.assert_frame_equal(sim[table], without[table])


# --- features ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def features(sim) -> pd.DataFrame:
    return build_features(
        sim["declarations"], sim["outcomes"], FeatureParams(), seizures=sim["seizures"]
    )


def test_every_seizure_feature_has_a_catalogue_entry_and_a_plain_reason(features):
    for name in feature_names():
        assert name in features.columns
        assert CATALOGUE[name].group == "seizure intelligence"
    row = features.loc[features["sz_drugs_route_12m"].idxmax()]
    sentence = format_reason("sz_drugs_route_12m", row)
    n, reporters = int(row["sz_drugs_route_12m"]), int(row["sz_drugs_route_reporters"])
    assert sentence == (
        f"drug seizures elsewhere on HS heading {row['ctx_hs4']} from or via "
        f"{row['ctx_sz_drugs_country']}: {n} in the last 12 months, reported by {reporters} "
        "countries"
    )
    assert n >= reporters >= 1


def test_route_counts_match_a_direct_count_of_the_records(sim, features):
    """One item's drug route count, recounted by hand from the records reported in the 12
    months before its month."""
    row = features.loc[features["sz_drugs_route_12m"].idxmax()]
    month = row["accepted_date"].to_period("M").to_timestamp()
    s = sim["seizures"]
    known = (s["report_date"] < month) & (s["report_date"] >= month - pd.DateOffset(months=12))
    country = row["ctx_sz_drugs_country"]
    names = (s["departure_country"] == country) | (s["transit_country"] == country).fillna(False)
    on = s["concealment_hs"].str.slice(0, 4).eq(row["ctx_hs4"]).fillna(False)
    hs_len = s["concealment_hs"].str.len().ge(4).fillna(False)
    mine = known & names & on & hs_len & (s["risk_area"] == "drugs")
    assert int(row["sz_drugs_route_12m"]) == int(mine.sum())
    assert int(row["sz_drugs_route_reporters"]) == s.loc[mine, "reporting_country"].nunique()


def test_drug_route_features_rank_drug_offences_higher(sim, features):
    """The learned concealment-goods share and the route counts carry the drug offences."""
    truth = sim["truth"]
    drugs = truth[truth["risk_area"] == "drugs"]["offence"].to_numpy()
    late = (features["accepted_date"] >= "2024-01-01").to_numpy()
    for name in ("sz_drugs_goods_share", "sz_drugs_chapter_country_12m"):
        x = features[name].to_numpy()[late]
        y = drugs[late]
        assert x[y].mean() > 3 * x[~y].mean(), name


def test_seizures_reported_after_a_cut_change_nothing_before_it(sim, features):
    """Leakage: rewrite every record reported on or after the cut (drop half, duplicate the
    rest into every route of the items, move seizure dates); features of items accepted before
    the cut's month are unchanged, and those after do change."""
    cut = pd.Timestamp("2024-03-01")
    s = sim["seizures"]
    late = s["report_date"] >= cut
    rng = np.random.default_rng(3)
    rewritten = s[late].sample(frac=0.5, random_state=1).copy()
    rewritten["seizure_id"] = rewritten["seizure_id"] + "-x"
    decl = sim["declarations"]
    pick = rng.integers(0, len(decl), len(rewritten))
    rewritten["concealment_hs"] = decl["hs_code"].str.slice(0, 6).to_numpy()[pick]
    rewritten["departure_country"] = decl["origin_country"].to_numpy()[pick]
    changed = pd.concat([s[~late], rewritten, s[late]], ignore_index=True)
    other = build_features(decl, sim["outcomes"], FeatureParams(), seizures=changed)
    before = (features["accepted_date"] < cut).to_numpy()
    cols = [*feature_names(), *[f"ctx_sz_{a}_country" for a in SEIZURE_AREAS]]
    pd.testing.assert_frame_equal(features.loc[before, cols], other.loc[before, cols])
    after = features["accepted_date"] >= cut + pd.DateOffset(months=1)
    assert (features.loc[after, feature_names()] != other.loc[after, feature_names()]).any().any()


def test_without_seizures_the_features_are_missing_not_zero(sim):
    decl = sim["declarations"].iloc[:3000]
    frame = build_features(decl, sim["outcomes"], FeatureParams())
    assert frame[feature_names()].isna().all().all()


def test_the_feature_store_gives_the_seizure_features_of_a_new_batch(sim, features):
    """Scoring time: the store's lookups give the pipeline's seizure features of later items."""
    decl, outc = sim["declarations"], sim["outcomes"]
    cut = pd.Timestamp("2024-11-01")
    history = decl[decl["accepted_date"] < cut]
    batch = decl[decl["accepted_date"] >= cut]
    store = FeatureStore(history, outc, FeatureParams(), seizures=sim["seizures"])
    got = store.features(batch)
    want = features[(features["accepted_date"] >= cut).to_numpy()].reset_index(drop=True)
    cols = [*feature_names(), *[f"ctx_sz_{a}_country" for a in SEIZURE_AREAS]]
    pd.testing.assert_frame_equal(got[cols].reset_index(drop=True), want[cols])
    assert want["sz_drugs_country_12m"].sum() > 0


def test_a_few_rows_get_the_seizure_features_a_large_batch_gives_them(sim):
    """Up to 64 rows the item keys are joined value by value: each row alone and 50 together
    get bit for bit the seizure features and countries of a large batch (departure missing,
    transport modes in other forms)."""
    decl, outc = sim["declarations"], sim["outcomes"]
    cut = pd.Timestamp("2024-11-01")
    store = FeatureStore(
        decl[decl["accepted_date"] < cut], outc, FeatureParams(), seizures=sim["seizures"]
    )
    batch = decl[decl["accepted_date"] >= cut].sample(n=150, random_state=0)
    batch.loc[batch.index[::5], "departure_country"] = None
    batch.loc[batch.index[1::7], "transport_mode"] = " Sea "
    big = store.features(batch)
    cols = [*feature_names(), *[f"ctx_sz_{a}_country" for a in SEIZURE_AREAS]]
    assert (big[feature_names()].to_numpy() > 0).any(axis=0).sum() > 10
    pd.testing.assert_frame_equal(store.features(batch.iloc[:50])[cols], big[cols].iloc[:50])
    for i in range(50, len(batch), 2):
        alone = store.features(batch.iloc[[i]])[cols]
        pd.testing.assert_frame_equal(alone, big[cols].iloc[[i]], check_exact=True)


# --- ingest --------------------------------------------------------------------------------


def test_a_cen_export_ingests_through_the_packaged_mapping_and_validates(tmp_path):
    """The packaged CEN mapping: recoded areas and modes, day-first dates; bad rows reach the
    quarantine with their line in the file."""
    from riskml.ingest import load_mapping, run_ingest_seizures

    csv = tmp_path / "cen.csv"
    csv.write_text(
        "Case ID,Seizure Date,Date Reported,Reporting Country,Commodity Group,Commodity,"
        "HS Code,Concealment,Country of Departure,Transit Country,Country of Destination,"
        "Means of Transport,Quantity,Unit,Place of Seizure\n"
        "NL-1,03/01/2024,01/02/2024,NL,Drugs,Cocaine,0803,in bananas,EC,,NL,Sea,120,kg,Rotterdam\n"
        "BE-7,05/01/2024,09/03/2024,BE,ODS,HFC-23,382490,mislabelled,CN,AE,BE,Sea,300,kg,Antwerp\n"
        "ES-2,07/01/2024,02/01/2024,ES,Drugs,Cocaine,0901,in coffee,CO,PA,ES,Air,4,kg,Madrid\n"
        "FR-5,09/01/2024,01/03/2024,FR,Fireworks,Rockets,3604,,CN,,FR,Boat,2,u,Le Havre\n",
        encoding="utf-8",
    )
    mapping = load_mapping("cen_seizures")
    assert "seizure_id" in mapping.seizures
    summary = run_ingest_seizures(csv, "cen_seizures", tmp_path / "raw")
    assert summary["seizures"] == 4
    raw = pd.read_parquet(tmp_path / "raw/seizures.parquet")
    good, quarantine, _ = validate_seizures(raw, source=str(csv))
    assert good["seizure_id"].tolist() == ["NL-1", "BE-7"]
    assert good["risk_area"].tolist() == ["drugs", "environment"]
    assert good["transport_mode"].tolist() == ["sea", "sea"]
    assert good["seizure_date"].iloc[0] == pd.Timestamp("2024-01-03")
    by_row = quarantine.groupby("row")["reason"].apply(" | ".join)
    assert "reported before the seizure was made" in by_row[2]
    assert "'fireworks' is not one of" in by_row[3] and "'boat' is not one of" in by_row[3]


def test_a_seizure_mapping_naming_absent_columns_is_refused(tmp_path):
    from riskml.ingest import run_ingest_seizures

    csv = tmp_path / "cen.csv"
    csv.write_text("Case ID,Seizure Date\nX,01/01/2024\n", encoding="utf-8")
    with pytest.raises(RiskmlError, match=r"cen.csv: column\(s\) .*'Date Reported'"):
        run_ingest_seizures(csv, "cen_seizures", tmp_path / "raw")


def test_the_cli_ingests_seizures_into_data_raw(tmp_path):
    import subprocess
    import sys

    csv = tmp_path / "cen.csv"
    csv.write_text(
        "Case ID,Seizure Date,Date Reported,Reporting Country,Commodity Group,Commodity,"
        "HS Code,Concealment,Country of Departure,Transit Country,Country of Destination,"
        "Means of Transport,Quantity,Unit\n"
        "NL-1,03/01/2024,01/02/2024,NL,Drugs,Cocaine,0803,in bananas,EC,,NL,Sea,120,kg\n",
        encoding="utf-8",
    )
    riskml = str(Path(sys.executable).parent / "riskml")
    done = subprocess.run(
        [riskml, "ingest-seizures", str(csv), "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    raw = pd.read_parquet(tmp_path / "data/raw/seizures.parquet")
    assert raw["seizure_id"].tolist() == ["NL-1"] and raw["risk_area"].tolist() == ["drugs"]
    bad = subprocess.run(
        [riskml, "ingest-seizures", str(tmp_path / "none.csv"), "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode != 0 and "none.csv: file not found" in bad.stdout + bad.stderr
    assert "Traceback" not in bad.stdout + bad.stderr
