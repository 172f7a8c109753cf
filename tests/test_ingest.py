"""Ingest: external files through a YAML mapping into canonical raw tables."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import yaml

from riskml.contract import SOURCE_ROW, RiskmlError, run_validate, schema, validate
from riskml.ingest import (
    label_outcomes,
    load_mapping,
    map_declarations,
    packaged_mappings,
    read_source,
    run_ingest,
)

SAMPLE = Path(__file__).parent / "fixtures" / "date_sample.csv"
TODAY = date(2026, 1, 1)


@pytest.fixture
def sample() -> pd.DataFrame:
    return pd.read_csv(SAMPLE, dtype="str", keep_default_na=False, na_values=[""])


def _write_mapping(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _date_mapping() -> dict:
    path = next(p for p in packaged_mappings() if p.stem == "date_bacuda")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_date_sample_ingests_and_validates(tmp_path, sample):
    summary = run_ingest(SAMPLE, Path("date_bacuda"), tmp_path / "raw")
    assert summary["rows"] == summary["declarations"] == summary["outcomes"] == len(sample)
    assert not list(tmp_path.rglob("*.tmp"))
    report = run_validate(tmp_path / "raw", tmp_path / "interim", tmp_path / "v.json")
    assert report["quarantine_rows"] == 0
    decl = pd.read_parquet(tmp_path / "interim" / "declarations.parquet")
    outc = pd.read_parquet(tmp_path / "interim" / "outcomes.parquet")
    schema("declarations").validate(decl)
    schema("outcomes").validate(outc)
    assert len(decl) == len(outc) == len(sample)
    assert decl["hs_code"].str.len().eq(10).all()  # lost leading zeros restored
    assert decl.loc[0, "accepted_date"] == pd.Timestamp("20" + sample.loc[0, "sgd.date"])
    assert (decl["transport_mode"] == "unknown").all() and (decl["item_no"] == 1).all()
    found = outc["offence_found"]
    assert found.sum() == (sample["illicit"] == "1").sum()
    assert (outc.loc[found, "risk_area"] == "revenue").all()
    assert outc.loc[~found, "risk_area"].isna().all()  # clean for every area physical detects
    assert (outc["control_kind"] == "physical").all()
    assert (outc["additional_duty"].to_numpy() == sample["revenue"].astype(float)).all()
    assert ((outc["result_date"] - decl["accepted_date"]).dt.days == 30).all()


def test_conversion_failures_reach_the_quarantine(sample):
    bad = sample.copy()
    bad.loc[3, "sgd.date"] = "13-02-30"
    bad.loc[5, "cif.value"] = "n/a"
    bad.loc[7, "illicit"] = "maybe"
    bad.loc[9, "tariff.code"] = "87O3"
    mapping = load_mapping("date_bacuda")
    decl, failures = map_declarations(bad, mapping)
    outc = label_outcomes(bad, decl, mapping.labels)
    assert len(decl) == len(outc) == len(bad)  # nothing dropped at ingest
    assert failures == {"accepted_date": 1, "cif_value": 1}
    res = validate(decl, outc, today=TODAY)
    q = res.quarantine.set_index(["table", "row", "column"])["reason"]
    assert "'13-02-30' is not a date" in q[("declarations", 3, "accepted_date")]
    assert "'n/a' is not a number" in q[("declarations", 5, "cif_value")]
    assert "'maybe' is not a boolean" in q[("outcomes", 7, "offence_found")]
    assert "'87O3' is not 6 to 10 digits" in q[("declarations", 9, "hs_code")]
    assert "quarantined" in q[("outcomes", 3, "declaration_id, item_no")]
    rows = res.quarantine.groupby("table")["row"].nunique()
    assert len(res.declarations) + rows["declarations"] == len(bad)
    assert len(res.outcomes) + rows["outcomes"] == len(bad)


def test_mapping_features(tmp_path):
    src = pd.DataFrame(
        {
            "Declaration ID": ["A", "A", "B"],
            "Date": ["2021-03-01", "2021-03-01", "2021-03-02"],
            "Office ID": ["O1", "O1", "O2"],
            "Mode of Transport": ["10", "40", "99"],
            "Declarant ID": ["d1", "d1", "d2"],
            "Importer ID": ["i1", "i1", "i2"],
            "Seller ID": ["s1", "s1", "s2"],
            "HS6 Code": ["10121", "870323", "950300"],
            "Country of Departure": ["CN", "CN", "US"],
            "Country of Origin": ["CN", "CN", "US"],
            "Tax Rate": ["8", "0", "12.5"],
            "Net Mass": ["10.5", "3", "7"],
            "Item Price": ["1000", "200", "50"],
            "Fraud": ["0", "1", "0"],
        }
    )
    file = tmp_path / "kcs.parquet"
    src.to_parquet(file)
    run_ingest(file, Path("kcs_synthetic"), tmp_path / "raw")
    decl = pd.read_parquet(tmp_path / "raw" / "declarations.parquet")
    assert decl["item_no"].tolist() == [1, 2, 1]
    assert decl["transport_mode"].tolist() == ["sea", "air", "99"]  # unmapped code kept
    assert decl["hs_code"].tolist() == ["010121", "870323", "950300"]
    assert decl["duty_rate"].tolist() == pytest.approx([0.08, 0.0, 0.125])
    assert decl["duties_paid"].tolist() == pytest.approx([80.0, 0.0, 6.25])
    assert decl[SOURCE_ROW].tolist() == [0, 1, 2]
    res = validate(decl, pd.read_parquet(tmp_path / "raw" / "outcomes.parquet"), today=TODAY)
    assert res.quarantine["reason"].str.contains("'99' is not one of").any()
    assert len(res.declarations) == 2 and len(res.outcomes) == 2


def test_truth_is_written_empty(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "truth.parquet").write_text("stale, from a simulated run")
    run_ingest(SAMPLE, Path("date_bacuda"), tmp_path / "raw")
    assert pd.read_parquet(tmp_path / "raw" / "truth.parquet").empty


def test_mapped_column_missing_from_file(tmp_path, sample):
    file = tmp_path / "date.csv"
    sample.drop(columns=["cif.value"]).to_csv(file, index=False)
    with pytest.raises(
        RiskmlError,
        match=r"date.csv: column\(s\) 'cif.value' \(for "
        r"declarations.cif_value\).*not found",
    ):
        run_ingest(file, Path("date_bacuda"), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["declarations"].update(colour="x"), r"declarations.*unknown canonical column"),
        (
            lambda m: m["declarations"].pop("office"),
            r"required column\(s\) \['office'\] not mapped",
        ),
        (lambda m: m["labels"].update(risk_area="piracy"), r"labels.risk_area.*unknown risk area"),
        (lambda m: m["labels"].update(control_kind="x"), r"labels.control_kind.*unknown control"),
        (
            lambda m: m["declarations"].update(office={"from": "a", "value": "b"}),
            r"declarations.office.*exactly one of",
        ),
        (
            lambda m: m["declarations"].update(office={"from": "a", "scale": 2}),
            r"office: scale applies to numeric columns only",
        ),
        (lambda m: m.update(colour="x"), r"colour.*Extra inputs"),
        (lambda m: m["labels"].pop("label_delay_days"), r"labels.label_delay_days.*Field required"),
    ],
)
def test_bad_mapping_names_the_file_and_key(tmp_path, change, message):
    data = _date_mapping()
    change(data)
    path = _write_mapping(tmp_path, data)
    with pytest.raises(RiskmlError, match=rf"(?s)mapping.yaml: invalid ingest mapping.*{message}"):
        load_mapping(path)


def test_unknown_mapping_and_bad_yaml(tmp_path):
    with pytest.raises(RiskmlError, match=r"nope.yaml: mapping file not found.*date_bacuda"):
        load_mapping("nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("declarations: [unclosed", encoding="utf-8")
    with pytest.raises(RiskmlError, match=r"bad.yaml: not valid YAML"):
        load_mapping(bad)


def test_packaged_mappings_load():
    names = {p.stem for p in packaged_mappings()}
    assert {"date_bacuda", "kcs_synthetic"} <= names
    for path in packaged_mappings():
        load_mapping(path)


def test_unreadable_source(tmp_path):
    file = tmp_path / "x.parquet"
    file.write_text("not parquet")
    with pytest.raises(RiskmlError, match=r"x.parquet: cannot be read as parquet"):
        read_source(file, load_mapping("date_bacuda"))
    with pytest.raises(RiskmlError, match=r"missing.csv: file not found"):
        read_source(tmp_path / "missing.csv", load_mapping("date_bacuda"))
