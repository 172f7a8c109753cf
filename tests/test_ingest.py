"""Ingest: external files through a YAML mapping into canonical raw tables."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import yaml

from riskml.catalog import interim_table
from riskml.contract import SOURCE_ROW, RiskmlError, run_validate, schema, validate
from riskml.ingest import (
    label_outcomes,
    load_mapping,
    map_declarations,
    packaged_mappings,
    read_source,
    run_ingest,
)
from riskml.io import read_dataset

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
    decl = read_dataset(interim_table(tmp_path / "interim", "declarations"))
    outc = read_dataset(interim_table(tmp_path / "interim", "outcomes"))
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
    # the unreadable value is scored without (kept, value missing); the others are left out
    assert q[("declarations", 5, "cif_value")] and res.quarantine.loc[
        res.quarantine["column"] == "cif_value", "action"
    ].tolist() == ["kept: cif_value set missing"]
    left_out = res.quarantine[~res.quarantine["action"].str.startswith("kept")]
    rows = left_out.groupby("table")["row"].nunique()
    assert len(res.declarations) + rows["declarations"] == len(bad)
    assert len(res.outcomes) + rows["outcomes"] == len(bad)


def test_mapping_features(tmp_path):
    src = pd.DataFrame(
        {
            "Declaration ID": ["A", "A", "B"],
            "Date": ["2021-03-01", "2021-03-01", "2021-03-02"],
            "Office ID": ["O1", "O1", "O2"],
            "Import Type": ["11", "11", "87"],
            "Mode of Transport": ["10", "40", "99"],
            "Declarant ID": ["d1", "d1", "d2"],
            "Importer ID": ["i1", "i1", "i2"],
            "Seller ID": ["s1", "s1", "s2"],
            "HS6 Code": ["10121", "870323", "950300"],
            "Country of Departure": ["CN", "CN", "US"],
            "Country of Origin": ["CN", "CN", "US"],
            "Tax Rate": ["8", "0", "12.5"],
            "Tax Type": ["A", "FCN1", "C"],
            "Net Mass": ["10.5", "3", "7"],
            "Item Price": ["1000", "200", "50"],
            "Fraud": ["0", "1", "0"],
            "Critical Fraud": ["0", "2", "0"],
        }
    )
    file = tmp_path / "kcs.parquet"
    src.to_parquet(file)
    run_ingest(file, Path("kcs_synthetic"), tmp_path / "raw")
    decl = pd.read_parquet(tmp_path / "raw" / "declarations.parquet")
    assert decl["item_no"].tolist() == [1, 2, 1]
    assert decl["transport_mode"].tolist() == ["sea", "air", "unknown"]  # unmapped code
    assert decl["hs_code"].tolist() == ["010121", "870323", "950300"]
    assert decl["duty_rate"].tolist() == pytest.approx([0.08, 0.0, 0.125])
    assert decl["duties_paid"].tolist() == pytest.approx([80.0, 0.0, 6.25])
    assert decl["tariff_treatment"].tolist() == ["A", "FCN1", "C"]
    assert decl[SOURCE_ROW].tolist() == [0, 1, 2]
    res = validate(decl, pd.read_parquet(tmp_path / "raw" / "outcomes.parquet"), today=TODAY)
    assert res.quarantine.empty
    assert len(res.declarations) == 3 and len(res.outcomes) == 6  # Fraud and Critical Fraud


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
        (
            lambda m: m["labels"].update(risk_area="piracy"),
            r"labels.0.risk_area.*unknown risk area",
        ),
        (lambda m: m["labels"].update(control_kind="x"), r"labels.0.control_kind.*unknown control"),
        (
            lambda m: m["declarations"].update(office={"from": "a", "value": "b"}),
            r"declarations.office.*exactly one of",
        ),
        (
            lambda m: m["declarations"].update(office={"from": "a", "scale": 2}),
            r"office: scale applies to numeric columns only",
        ),
        (lambda m: m.update(colour="x"), r"colour.*Extra inputs"),
        (
            lambda m: m["labels"].pop("label_delay_days"),
            r"labels.0.label_delay_days.*Field required",
        ),
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
    with pytest.raises(RiskmlError, match=r"x.parquet: cannot be read as Parquet"):
        read_source(file, load_mapping("date_bacuda"))
    with pytest.raises(RiskmlError, match=r"missing.csv: file not found"):
        read_source(tmp_path / "missing.csv", load_mapping("date_bacuda"))


# --- real extracts: partial labels, several areas, control-results tables ---------------------


def _real_extract() -> pd.DataFrame:
    """Six items of a national extract: two label columns, most items never inspected."""
    return pd.DataFrame(
        {
            "decl": ["D1", "D2", "D3", "D4", "D5", "D6"],
            "date": [
                "01/03/2024",
                "02/03/2024",
                "02/03/2024",
                "03/03/2024",
                "04/03/2024",
                "05/03/2024",
            ],
            "office": ["O1"] * 6,
            "mode": ["1", "4", "90", "1", "4", "1"],
            "importer": ["I1", "I2", "I1", "I3", "I2", "I1"],
            "broker": ["B1"] * 6,
            "origin": ["CN", "VN", "CN", "US", "CN", "CN"],
            "hs": ["61091000", "870323", "220830", "12345", "950300", "300490"],
            "qty": ["1", "2", "3", "4", "5", "6"],
            "mass": ["10", "0", "5", "7", "3", "2"],
            "value": ["100", "0", "50", "70", "30", "20"],
            "rate": ["0.12", "2.5", "0.3", "0", "0", "0.08"],
            "duties": ["12", "0", "15", "0", "0", "1.6"],
            "revenue_result": ["1", "0", "", "", "", ""],
            "safety_result": ["", "clean", "", "", "unsafe", ""],
        }
    )


def _real_mapping(**extra) -> dict:
    return {
        "declarations": {
            "declaration_id": "decl",
            "item_no": {"value": 1},
            "accepted_date": {"from": "date", "date_format": "%d/%m/%Y"},
            "office": "office",
            "transport_mode": {"from": "mode", "values": {"1": "sea", "4": "air"}},
            "importer_id": "importer",
            "declarant_id": "broker",
            "origin_country": "origin",
            "hs_code": {"from": "hs", "zfill": 10},  # 9-digit codes lost a zero
            "quantity": "qty",
            "gross_mass_kg": "mass",
            "cif_value": "value",
            "duty_rate": "rate",
            "duties_paid": "duties",
        },
        "labels": [
            {
                "offence_found": "revenue_result",
                "control_kind": "documentary",
                "risk_area": "revenue",
                "clean_scope": "risk_area",
                "label_delay_days": 10,
            },
            {
                "offence_found": "safety_result",
                "positive_values": ["unsafe"],
                "control_kind": "physical",
                "risk_area": "health_safety",
                "clean_scope": "risk_area",
                "label_delay_days": 20,
            },
        ],
        **extra,
    }


def _ingest_extract(tmp_path, frame, mapping, **kwargs):
    file = tmp_path / "extract.csv"
    frame.to_csv(file, index=False)
    summary = run_ingest(file, _write_mapping(tmp_path, mapping), tmp_path / "raw", **kwargs)
    report = run_validate(tmp_path / "raw", tmp_path / "interim", tmp_path / "v.json")
    q = pd.read_parquet(tmp_path / "interim" / "quarantine.parquet")
    return summary, report, q, file


def test_partial_labels_to_several_areas(tmp_path):
    summary, report, q, file = _ingest_extract(tmp_path, _real_extract(), _real_mapping())
    # never inspected: counted, no outcome, no quarantine row
    assert summary["labels"]["revenue_result -> revenue"] == {
        "inspected": 2,
        "not_inspected": 4,
        "offences": 1,
    }
    assert summary["labels"]["safety_result -> health_safety"]["not_inspected"] == 4
    assert summary["not_inspected"] == 8 and summary["outcomes"] == 4
    outc = read_dataset(interim_table(tmp_path / "interim", "outcomes"))
    got = outc.set_index(["declaration_id", "risk_area"])["offence_found"].to_dict()
    assert got == {
        ("D1", "revenue"): True,
        ("D2", "revenue"): False,
        ("D2", "health_safety"): False,
        ("D5", "health_safety"): True,
    }
    kinds = outc.set_index("risk_area")["control_kind"].to_dict()
    assert kinds == {"revenue": "documentary", "health_safety": "physical"}
    # only the 5-digit HS code is quarantined (not padded into chapter 00), naming the file
    assert q["declaration_id"].tolist() == ["D4"] and q["column"].tolist() == ["hs_code"]
    assert q["file"].tolist() == [str(file)] and q["row"].tolist() == [3]
    decl = read_dataset(interim_table(tmp_path / "interim", "declarations")).set_index(
        "declaration_id"
    )
    assert decl.loc["D2", "cif_value"] == 0 and decl.loc["D2", "gross_mass_kg"] == 0
    assert decl.loc["D2", "duty_rate"] == 2.5  # 250%
    assert decl.loc["D3", "transport_mode"] == "unknown"
    assert decl.loc["D6", "hs_code"] == "300490"
    assert summary["unmapped_codes"] == {"transport_mode": {"90": 1}}
    assert report["declarations"]["rows_quarantined"] == 1


def test_unmapped_code_quarantined_when_the_mapping_says_so(tmp_path):
    mapping = _real_mapping()
    mapping["declarations"]["office"] = {
        "from": "office",
        "values": {"O2": "X"},
        "unmapped": "keep",
    }
    mapping["declarations"]["transport_mode"]["unmapped"] = "quarantine"
    _, _, q, file = _ingest_extract(tmp_path, _real_extract(), mapping)
    hit = q[q["declaration_id"] == "D3"]
    assert hit["column"].tolist() == ["transport_mode"]
    assert hit["reason"].iloc[0] == "column transport_mode: '90' is not one of the mapping's values"
    assert hit["file"].iloc[0] == str(file)
    decl = read_dataset(interim_table(tmp_path / "interim", "declarations"))
    assert set(decl["office"]) == {"O1"} and "D3" not in set(decl["declaration_id"])


def test_control_results_table(tmp_path):
    extract = _real_extract().drop(columns=["revenue_result", "safety_result"])
    mapping = _real_mapping(
        outcomes={
            "columns": {
                "declaration_id": "sad",
                "item_no": {"value": 1},
                "control_kind": {
                    "from": "kind",
                    "values": {"DOC": "documentary", "PHY": "physical", "AUD": "pca"},
                },
                "control_reason": {
                    "from": "why",
                    "values": {"PRF": "profile", "INT": "intelligence", "RND": "random"},
                },
                "result_date": {"from": "closed", "date_format": "%d/%m/%Y"},
                "risk_area": {"from": "area", "values": {"REV": "revenue", "IPR": "ipr"}},
                "offence_found": "hit",
                "additional_duty": "duty",
            }
        }
    )
    mapping.pop("labels")
    controls = pd.DataFrame(
        {
            "sad": ["D1", "D1", "D2", "D5", "D9"],
            "kind": ["DOC", "AUD", "PHY", "XX", "DOC"],
            "why": ["PRF", "INT", "", "RND", "PRF"],
            "closed": ["05/03/2024", "01/06/2024", "09/03/2024", "10/03/2024", "10/03/2024"],
            "area": ["", "REV", "IPR", "", ""],
            "hit": ["0", "1", "1", "0", "0"],
            "duty": ["", "250.5", "", "", ""],
        }
    )
    controls_file = tmp_path / "controls.csv"
    controls.to_csv(controls_file, index=False)
    summary, report, q, _ = _ingest_extract(tmp_path, extract, mapping, outcomes_file=controls_file)
    assert summary["control_results"]["rows"] == 5
    outc = read_dataset(interim_table(tmp_path / "interim", "outcomes"))
    assert len(outc) == 3
    pca = outc[outc["control_kind"] == "pca"].iloc[0]
    assert pca["risk_area"] == "revenue" and pca["additional_duty"] == 250.5
    assert outc.loc[outc["control_kind"] == "physical", "risk_area"].tolist() == ["ipr"]
    # why each control was made: mapped from the national codes; an empty code is not recorded
    reasons = outc.set_index("control_kind")["control_reason"]
    assert reasons["pca"] == "intelligence" and reasons["documentary"] == "profile"
    assert pd.isna(reasons["physical"])
    bad = q[q["table"] == "outcomes"].set_index("row")
    assert bad.loc[3, "file"] == str(controls_file)  # unknown control kind: not a canonical one
    assert "'xx' is not one of" in bad.loc[3, "reason"]
    assert "no declaration" in bad.loc[4, "reason"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda m, f: m["declarations"]["accepted_date"].update(date_format="%Y-%m-%d"),
            r"column 'date' \(declarations.accepted_date\): none of its 6 values converts "
            r"\(e.g. '01/03/2024'\); every value must be a date in the mapping's date_format "
            r"'%Y-%m-%d'",
        ),
        (
            lambda m, f: f.__setitem__("value", "n/a"),
            r"column 'value' \(declarations.cif_value\): none of its 6 values converts",
        ),
        (
            lambda m, f: m["declarations"]["accepted_date"].pop("date_format"),
            r"date in ISO format YYYY-MM-DD \(the mapping gives no date_format\)",
        ),
    ],
)
def test_a_column_that_fails_entirely_stops_ingest(tmp_path, change, message):
    mapping, frame = _real_mapping(), _real_extract()
    change(mapping, frame)
    file = tmp_path / "extract.csv"
    frame.to_csv(file, index=False)
    with pytest.raises(RiskmlError, match=rf"extract.csv: .*{message}.*fix the mapping"):
        run_ingest(file, _write_mapping(tmp_path, mapping), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_empty_header_only_and_wrongly_separated_files(tmp_path):
    mapping = _write_mapping(tmp_path, _real_mapping())
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(RiskmlError, match=r"empty.csv: empty file"):
        run_ingest(empty, mapping, tmp_path / "raw")
    header = tmp_path / "header.csv"
    _real_extract().head(0).to_csv(header, index=False)
    with pytest.raises(
        RiskmlError, match=r"header.csv: header only, no data rows \(CSV with sep ','"
    ):
        run_ingest(header, mapping, tmp_path / "raw")
    semi = tmp_path / "semi.csv"
    _real_extract().to_csv(semi, index=False, sep=";")
    with pytest.raises(RiskmlError, match=r"semi.csv: .*one column only: is the separator right"):
        run_ingest(semi, mapping, tmp_path / "raw")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(RiskmlError, match=r"binary.csv: cannot be read as CSV") as err:
        run_ingest(binary, mapping, tmp_path / "raw")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "raw").exists()


def test_several_files_keep_their_names_in_the_quarantine(tmp_path):
    frame = _real_extract()
    first, second = tmp_path / "q1.csv", tmp_path / "q2.csv"
    frame.iloc[:3].to_csv(first, index=False)
    frame.iloc[3:].to_csv(second, index=False)
    summary = run_ingest(
        [first, second], _write_mapping(tmp_path, _real_mapping()), tmp_path / "raw"
    )
    assert summary["rows"] == 6 and summary["files"] == [str(first), str(second)]
    run_validate(tmp_path / "raw", tmp_path / "interim", tmp_path / "v.json")
    q = pd.read_parquet(tmp_path / "interim" / "quarantine.parquet")
    assert q[["file", "row", "declaration_id"]].values.tolist() == [[str(second), 0, "D4"]]
