"""The data contract: schemas, validate() and the validate stage."""

from __future__ import annotations

import importlib.util
import json
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskml.catalog import Catalog, interim_table
from riskml.contract import (
    DECLARATION_COLUMNS,
    KEY,
    OUTCOME_COLUMNS,
    QUARANTINE_COLUMNS,
    REPAIRS,
    SOURCE_ROW,
    TRUTH_COLUMNS,
    RiskmlError,
    canonical_dtype,
    column_names,
    run_validate,
    schema,
    validate,
    write_interim,
)
from riskml.io import month_labels, partition_months, partition_path, read_dataset

TODAY = date(2026, 1, 1)


def _fixture_module(name: str):
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).parent / "fixtures" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


canonical = _fixture_module("canonical")


@pytest.fixture
def decl() -> pd.DataFrame:
    return canonical.declarations(12)


@pytest.fixture
def outc(decl) -> pd.DataFrame:
    return canonical.outcomes(decl, 4)


def _set(df: pd.DataFrame, row: int, column: str, value) -> pd.DataFrame:
    df = df.astype({column: object})
    df.loc[row, column] = value
    return df


def _assert_partition(res, n_decl: int, n_out: int) -> None:
    """Nothing silently dropped: kept + distinct quarantined rows == input rows, per table."""
    q = res.quarantine
    out = ~q["action"].str.startswith("kept")
    for table, n, kept in (
        ("declarations", n_decl, res.declarations),
        ("outcomes", n_out, res.outcomes),
    ):
        rows = q.loc[(q["table"] == table) & out, "row"].nunique()
        assert len(kept) + rows == n, table
        assert res.report[table]["rows_kept"] == len(kept)
        assert res.report[table]["rows_quarantined"] == rows
        # a row is either kept (perhaps with a repaired value) or left out, never both
        repaired = set(q.loc[(q["table"] == table) & ~out, "row"])
        assert not repaired & set(q.loc[(q["table"] == table) & out, "row"]), table


# --- good data ------------------------------------------------------------------------------


def test_valid_tables_pass_with_canonical_dtypes(decl, outc):
    res = validate(decl, outc, today=TODAY)
    assert len(res.declarations) == len(decl) and len(res.outcomes) == len(outc)
    assert res.quarantine.empty and list(res.quarantine.columns) == QUARANTINE_COLUMNS
    for table, cols in (("declarations", DECLARATION_COLUMNS), ("outcomes", OUTCOME_COLUMNS)):
        frame = getattr(res, table)
        assert list(frame.columns) == column_names(table)
        assert {c.name: str(frame[c.name].dtype) for c in cols} == {
            c.name: canonical_dtype(c) for c in cols
        }
        schema(table, today=TODAY).validate(frame)  # pandera is the authority downstream
    assert res.declarations["item_no"].dtype == np.int64
    assert res.declarations["accepted_date"].dtype == "datetime64[ns]"
    assert res.outcomes["offence_found"].dtype == bool


def test_the_canonical_fixture_sets_every_contract_column(decl, outc):
    """Guard: tests/fixtures/canonical.py writes every declaration and outcome column of the
    contract, with values (a new optional column once broke test_optional_columns_may_be_absent)."""
    for table, frame in (("declarations", decl), ("outcomes", outc)):
        missing = [c for c in column_names(table) if c not in frame.columns]
        assert not missing, f"tests/fixtures/canonical.py: {table} lacks {missing}"
    empty = [c for c in column_names("declarations") if decl[c].isna().all()]
    assert not empty, f"tests/fixtures/canonical.py: no value in declarations column(s) {empty}"


def test_text_input_is_parsed(decl, outc):
    text = decl.astype(str)
    text["accepted_date"] = decl["accepted_date"].dt.strftime("%Y-%m-%d")
    res = validate(text, outc, today=TODAY)
    assert res.quarantine.empty
    pd.testing.assert_frame_equal(res.declarations, validate(decl, outc, today=TODAY).declarations)


def test_optional_columns_may_be_absent(decl, outc):
    optional = [
        c
        for c in column_names("declarations")
        if c not in column_names("declarations", required_only=True)
    ]
    dropped = ["control_reason", "offence_code"]
    res = validate(decl.drop(columns=optional), outc.drop(columns=dropped), today=TODAY)
    assert res.quarantine.empty
    assert res.declarations[optional].isna().all().all()
    assert res.report["declarations"]["absent_optional_columns"] == optional
    assert res.report["outcomes"]["absent_optional_columns"] == dropped
    assert res.outcomes[dropped].isna().all().all()
    schema("declarations", today=TODAY).validate(res.declarations)
    schema("outcomes", today=TODAY).validate(res.outcomes)


def test_control_reason_is_validated_and_case_folded(decl, outc):
    reasons = ["Intelligence", "random", None, "PROFILE"]
    res = validate(decl, outc.assign(control_reason=reasons), today=TODAY)
    assert res.quarantine.empty
    assert res.outcomes["control_reason"].tolist()[:2] == ["intelligence", "random"]
    assert pd.isna(res.outcomes["control_reason"].iloc[2])


def test_outcomes_none_gives_empty_outcomes(decl):
    res = validate(decl, None, today=TODAY)
    assert res.outcomes.empty and list(res.outcomes.columns) == column_names("outcomes")


# --- whole-file problems --------------------------------------------------------------------


def test_missing_required_column_raises_naming_it(decl, outc):
    with pytest.raises(
        RiskmlError,
        match=r"declarations.csv: missing required column 'hs_code'"
        r".*ingest mapping",
    ):
        validate(decl.drop(columns=["hs_code"]), outc, source="declarations.csv")
    with pytest.raises(RiskmlError, match=r"outcomes.*'control_kind'"):
        validate(decl, outc.drop(columns=["control_kind"]))


def test_unknown_columns_are_dropped_and_reported(decl, outc):
    res = validate(decl.assign(colour="red"), outc, today=TODAY)
    assert "colour" not in res.declarations.columns and res.quarantine.empty
    assert res.report["declarations"]["dropped_columns"] == ["colour"]


# --- row checks -----------------------------------------------------------------------------


def test_real_trade_values_are_accepted(decl):
    """Ad valorem rates above 100%, specific duties (no rate, duties paid), zero value and zero
    mass are lawful."""
    real = decl.copy()
    real.loc[0, "duty_rate"] = 8.874  # 887.4%: a Korean agricultural tariff
    real.loc[1, ["cif_value", "duties_paid"]] = 0.0  # no commercial value (a sample)
    real.loc[2, ["gross_mass_kg", "net_mass_kg"]] = 0.0  # below the declared precision
    real.loc[3, "duty_rate"] = None  # a specific duty: per unit, in duties_paid
    res = validate(real, None, today=TODAY)
    assert res.quarantine.empty, res.quarantine
    assert len(res.declarations) == len(decl)
    assert res.declarations.loc[0, "duty_rate"] == pytest.approx(8.874)


# (column, bad value, quarantine column, reason, the column set missing when the row is kept:
# a declaration is scored without a bad value where it can be, else left out)
BAD_DECLARATION_VALUES = [
    ("cif_value", "abc", "cif_value", "column cif_value: 'abc' is not a number", "cif_value"),
    ("quantity", -3.0, "quantity", "column quantity: -3 is not > 0", "quantity"),
    ("cif_value", -123456.78, "cif_value", "column cif_value: -123456.78 is not >= 0", "cif_value"),
    ("gross_mass_kg", -1.0, "gross_mass_kg", "is not >= 0", "gross_mass_kg"),
    ("net_mass_kg", 1e9, "net_mass_kg, gross_mass_kg", "net mass above gross mass", "net_mass_kg"),
    ("fob_value", -1.0, "fob_value", "is not >= 0", "fob_value"),
    ("duties_paid", -5.0, "duties_paid", "is not >= 0", "duties_paid"),
    ("duty_rate", 12.5, "duty_rate", "column duty_rate: 12.5 is not <= 10", "duty_rate"),
    ("duty_rate", -0.1, "duty_rate", "is not >= 0", "duty_rate"),
    ("hs_code", "12AB56", "hs_code", "'12AB56' is not 6 to 10 digits", None),
    ("hs_code", "0012345", "hs_code", "is not 6 to 10 digits in an HS chapter (01-97)", None),
    ("hs_code", "12345", "hs_code", "is not 6 to 10 digits", None),
    ("hs_code", "12345678901", "hs_code", "is not 6 to 10 digits", None),
    ("accepted_date", "2023-02-30", "accepted_date", "'2023-02-30' is not a date", None),
    ("accepted_date", "1985-06-01", "accepted_date", "is before 1990-01-01", None),
    ("accepted_date", "2030-01-01", "accepted_date", "is in the future", None),
    ("transport_mode", "boat", "transport_mode", "'boat' is not one of sea, air", "transport_mode"),
    ("item_no", "x", "item_no", "'x' is not an integer", None),
    ("item_no", 1.5, "item_no", "'1.5' is not an integer", None),
    ("item_no", 0, "item_no", "0 is not >= 1", None),
    ("office", None, "office", "column office: missing value", "office"),
    ("office", "  ", "office", "missing value", "office"),
    ("importer_id", None, "importer_id", "column importer_id: missing value", "importer_id"),
    ("declarant_id", "", "declarant_id", "missing value", "declarant_id"),
    ("origin_country", None, "origin_country", "missing value", "origin_country"),
    ("preference_claim", "maybe", "preference_claim", "is not a boolean", "preference_claim"),
]


@pytest.mark.parametrize(("column", "value", "where", "reason", "repaired"), BAD_DECLARATION_VALUES)
def test_bad_declaration_value_is_quarantined(decl, column, value, where, reason, repaired):
    bad = _set(decl, 3, column, value)
    res = validate(bad, None, today=TODAY)
    q = res.quarantine
    assert (q["table"] == "declarations").all() and (q["row"] == 3).all(), q
    hit = q[q["column"] == where]
    assert len(hit) == 1 and reason in hit["reason"].iloc[0], q
    assert q.loc[0, "declaration_id"] == decl.loc[3, "declaration_id"]
    assert json.loads(q.loc[0, "record"])["declaration_id"] == decl.loc[3, "declaration_id"]
    kept = res.declarations[
        (res.declarations["declaration_id"] == decl.loc[3, "declaration_id"])
        & (res.declarations["item_no"] == decl.loc[3, "item_no"])
    ]
    if repaired is None:  # nothing to score it on without this value: left out, and why
        assert kept.empty
        assert (q["action"] == "not scored").all()
    else:  # scored on everything else, the bad value missing (the mode unknown)
        assert len(kept) == 1
        value = kept[repaired].iloc[0]
        # a missing code or party becomes a value of its own, a bad number a missing one
        assert value == "unknown" if isinstance(REPAIRS[repaired], str) else pd.isna(value)
        assert hit["action"].iloc[0].startswith(f"kept: {repaired} set")
        others = [c for c in column_names("declarations") if c not in (repaired, "net_mass_kg")]
        expect = validate(decl, None, today=TODAY).declarations.iloc[[3]][others]
        pd.testing.assert_frame_equal(
            kept[others].reset_index(drop=True), expect.reset_index(drop=True)
        )
    _assert_partition(res, len(decl), 0)
    schema("declarations", today=TODAY).validate(res.declarations)


def test_record_keeps_the_raw_value(decl):
    res = validate(_set(decl, 2, "cif_value", "abc"), None, today=TODAY)
    assert json.loads(res.quarantine.loc[0, "record"])["cif_value"] == "abc"


def test_row_failing_several_checks_appears_once_per_reason(decl):
    bad = _set(_set(decl, 1, "cif_value", "abc"), 1, "hs_code", "xx")
    res = validate(bad, None, today=TODAY)
    assert sorted(res.quarantine["column"]) == ["cif_value", "hs_code"]
    assert (res.quarantine["row"] == 1).all()
    assert len(res.declarations) == len(decl) - 1
    assert res.report["declarations"]["reasons"] == {
        "cif_value: not a number": 1,
        "hs_code: not 6 to 10 digits in an HS chapter (01-97)": 1,
    }


def test_duplicate_keys_quarantine_every_copy(decl):
    bad = pd.concat([decl, decl.iloc[[4]]], ignore_index=True)
    res = validate(bad, None, today=TODAY)
    q = res.quarantine
    assert sorted(q["row"]) == [4, len(decl)]
    assert (q["reason"] == "duplicate key").all()
    assert (q["column"] == "declaration_id, item_no").all()
    _assert_partition(res, len(bad), 0)


def test_source_row_names_the_file_row(decl):
    bad = _set(decl, 2, "quantity", -1.0).assign(**{SOURCE_ROW: np.arange(len(decl)) + 100})
    res = validate(bad, None, today=TODAY)
    assert res.quarantine.loc[0, "row"] == 102
    assert SOURCE_ROW not in res.declarations.columns
    assert res.report["declarations"]["dropped_columns"] == []


BAD_OUTCOME_VALUES = [
    ("risk_area", "piracy", "risk_area", "'piracy' is not one of revenue"),
    ("control_kind", "sniffer dog", "control_kind", "is not one of documentary"),
    ("control_reason", "hunch", "control_reason", "'hunch' is not one of profile"),
    ("risk_area", None, "offence_found, risk_area", "offence found without a risk area"),
    ("additional_duty", -10.0, "additional_duty", "is not >= 0"),
    ("result_date", "2023-13-01", "result_date", "is not a date"),
    ("result_date", "2000-01-01", "result_date", "before the declaration's accepted_date"),
    ("declaration_id", "NOPE", "declaration_id, item_no", "no declaration with this"),
]


@pytest.mark.parametrize(("column", "value", "where", "reason"), BAD_OUTCOME_VALUES)
def test_bad_outcome_value_is_quarantined(decl, outc, column, value, where, reason):
    bad = _set(outc, 0, column, value)  # row 0 is an offence found (see the fixture)
    res = validate(decl, bad, today=TODAY)
    q = res.quarantine
    assert len(q) == 1, q
    assert q.loc[0, "table"] == "outcomes" and q.loc[0, "row"] == 0
    assert q.loc[0, "column"] == where and reason in q.loc[0, "reason"]
    _assert_partition(res, len(decl), len(outc))
    schema("outcomes", today=TODAY).validate(res.outcomes)


def test_clean_result_without_risk_area_is_kept(decl, outc):
    res = validate(decl, outc, today=TODAY)
    clean = res.outcomes[~res.outcomes["offence_found"]]
    assert len(clean) == 2 and clean["risk_area"].isna().all()


def test_outcome_of_a_quarantined_declaration_is_quarantined(decl, outc):
    target = decl.index[
        (decl["declaration_id"] == outc.loc[1, "declaration_id"])
        & (decl["item_no"] == outc.loc[1, "item_no"])
    ][0]
    res = validate(_set(decl, target, "hs_code", "bad"), outc, today=TODAY)
    q = res.quarantine.set_index("table")
    assert "was quarantined" in q.loc["outcomes", "reason"]
    assert q.loc["outcomes", "row"] == 1
    _assert_partition(res, len(decl), len(outc))


def test_report_counts(decl, outc):
    bad = _set(_set(decl, 0, "cif_value", "abc"), 5, "cif_value", "n/a")
    report = validate(bad, outc, source="x", today=TODAY).report
    assert report["source"] == "x"
    assert report["declarations"]["rows_in"] == len(decl)
    assert report["declarations"]["reasons"]["cif_value: not a number"] == 2
    assert report["outcomes"]["rows_in"] == len(outc)


# --- property: kept and quarantined rows partition the input --------------------------------

CORRUPTIONS = {
    "cif_value": st.sampled_from(["abc", -1.0, None, "1e400"]),
    "hs_code": st.sampled_from(["", "12", "ABCDEF", "1234567890123"]),
    "accepted_date": st.sampled_from(["2023-02-29", "1989-12-31", "2099-01-01", "soon"]),
    "item_no": st.sampled_from([0, -1, "one", 2.5]),
    "declaration_id": st.sampled_from(["D0000000", None]),
    "transport_mode": st.sampled_from(["ship", None, "SEA"]),
}


OUTCOME_CORRUPTIONS = {
    "risk_area": st.sampled_from([None, "piracy", "IPR"]),
    "control_kind": st.sampled_from(["x", None]),
    "result_date": st.sampled_from(["2000-01-01", None, "2023-02-31"]),
    "offence_found": st.sampled_from(["maybe", None, "yes", 0]),
    "item_no": st.sampled_from([7, "x"]),
}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, 29), st.sampled_from(sorted(CORRUPTIONS)), st.data()), max_size=12
    ),
    st.lists(
        st.tuples(st.integers(0, 7), st.sampled_from(sorted(OUTCOME_CORRUPTIONS)), st.data()),
        max_size=6,
    ),
)
def test_kept_and_quarantined_rows_partition_the_input(edits, outcome_edits):
    decl = canonical.declarations(30)
    outc = canonical.outcomes(decl, 8)
    for row, column, data in edits:
        decl = _set(decl, row, column, data.draw(CORRUPTIONS[column]))
    for row, column, data in outcome_edits:
        outc = _set(outc, row, column, data.draw(OUTCOME_CORRUPTIONS[column]))
    res = validate(decl, outc, today=TODAY)
    _assert_partition(res, len(decl), len(outc))
    schema("declarations", today=TODAY).validate(res.declarations)
    schema("outcomes", today=TODAY).validate(res.outcomes)
    kept = set(zip(res.declarations["declaration_id"], res.declarations["item_no"], strict=True))
    assert set(zip(res.outcomes["declaration_id"], res.outcomes["item_no"], strict=True)) <= kept


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, 29), st.sampled_from(sorted(CORRUPTIONS)), st.data()), max_size=12
    ),
    st.booleans(),
)
def test_without_the_schema_pass_the_result_is_the_same(edits, with_outcomes):
    """``schema_check=False`` (the scorer's check of a batch) keeps and quarantines the same
    rows with the same reasons: pandera's second pass finds nothing the row checks missed."""
    decl = canonical.declarations(30)
    for row, column, data in edits:
        decl = _set(decl, row, column, data.draw(CORRUPTIONS[column]))
    outc = canonical.outcomes(canonical.declarations(30), 8) if with_outcomes else None
    full = validate(decl, outc, today=TODAY)
    fast = validate(decl, outc, today=TODAY, schema_check=False)
    for table in ("declarations", "outcomes", "quarantine"):
        pd.testing.assert_frame_equal(getattr(fast, table), getattr(full, table))
    assert fast.report == full.report
    schema("declarations", today=TODAY).validate(fast.declarations)


# --- the row-wise check of a few rows (the scorer's single declarations) ---------------------

#: Values each column may arrive with: clean ones in other forms, and ones that fail a check.
ROW_VARIANTS: dict[str, list] = {
    "declaration_id": [" D9 ", "", None, 12, True],
    "item_no": [2, 2.0, "3", " 3", 0, -1, 1.5, "x", None, 2**60],
    "accepted_date": [
        "2024-07-01",
        "2024-07-01T00:00:00.000",
        "2024-07-01 10:30",
        "2024-02-30",
        "1989-12-31",
        "2030-01-01",
        "2024-07-01T00:00:00+02:00",
        "01/07/2024",
        "",
        None,
        date(2024, 7, 1),
        pd.Timestamp("2024-07-01 08:00"),
    ],
    "office": ["  AB01 ", "", None, 12, "Zürich", "\u202eAB"],
    "transport_mode": ["SEA", "Sea ", "ship", "", None, "\u212aair"],
    "hs_code": [
        "0012345678",
        "12",
        "6109100000",
        870323,
        "\uff18\uff17\uff10\uff13\uff12\uff13",
        "870323 ",
    ],
    "quantity": [0, -1, "1e3", "1,000", " 5", "inf", "-0", None, "nan"],
    "gross_mass_kg": [0, 0.0, "0", None, -0.5],
    "net_mass_kg": [1e9, None, "0"],
    "cif_value": [0, -5, "abc", None, 1e300, "12.50"],
    "duty_rate": [1.5, 11, "0.05", "10", None],
    "duties_paid": [-1, None, "0"],
    "preference_claim": ["yes", "Y", "0", 1, 0.0, "maybe", None, "", True, 2],
    "tariff_treatment": ["WTO", None, "", 7],
    "colour": ["red"],  # unknown column: dropped
}


def _forms(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A batch as it reaches the scorer: typed, as JSON rows (POST /score) and as CSV text."""
    import io

    rows = json.loads(frame.to_json(orient="records", date_format="iso"))
    text = frame.to_csv(index=False)
    return {
        "typed": frame,
        "json": pd.DataFrame.from_records(rows),
        "csv": pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False),
    }


def _same_bits(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    for c in a.columns:
        if a[c].dtype.kind == "f":  # -0.0 == 0.0: the signs too
            assert (np.signbit(a[c].to_numpy()) == np.signbit(b[c].to_numpy())).all(), c


def test_the_row_wise_check_gives_validate_s_good_rows_or_defers():
    """:func:`validate_rows` (a few rows checked value by value) gives exactly the good rows of
    :func:`validate` when every row passes, and None (the caller runs ``validate``) whenever a
    row fails a check, repeats a key or holds a value in a form it does not read: each
    column's variants (clean in other forms, missing, zero, negative, unknown codes, a rate
    above 100%, unparseable), single rows and small batches, typed, JSON and CSV."""
    from riskml.contract import validate_rows

    base = canonical.declarations(8)
    batches: list[pd.DataFrame] = [base.iloc[[i]] for i in range(8)] + [base, base.head(3)]
    batches.append(base.drop(columns=[c.name for c in DECLARATION_COLUMNS if not c.required]))
    batches.append(pd.concat([base.head(2), base.head(1)]))  # a repeated key
    batches.append(base.head(2).assign(net_mass_kg=[1.0, 5000.0]))  # net above gross
    text = []  # a text variant's typed form is its JSON form
    for column, values in ROW_VARIANTS.items():
        for i, value in enumerate(values):
            one = base.iloc[[i % 8]].reset_index(drop=True)
            if column not in one.columns:
                one[column] = None
            batches.append(_set(one, 0, column, value))
            text.append(isinstance(value, str))
    text = [False] * (len(batches) - len(text)) + text
    fast_taken = checked = 0
    for batch, is_text in zip(batches, text, strict=True):
        for form, frame in _forms(batch.reset_index(drop=True)).items():
            if is_text and form == "typed":
                continue
            full = validate(frame, None, today=TODAY, schema_check=False)
            fast = validate_rows(frame, today=TODAY)
            checked += 1
            if fast is None:
                continue
            fast_taken += 1
            assert full.quarantine.empty, (form, frame.to_dict("records"), full.quarantine)
            _same_bits(fast, full.declarations)
    # the clean rows in every form take the row-wise path (not a check that always defers)
    for form, frame in _forms(base.head(3)).items():
        assert validate_rows(frame, today=TODAY) is not None, form
    assert fast_taken > checked / 3
    with pytest.raises(RiskmlError, match="missing required column"):
        validate_rows(base.drop(columns=["hs_code"]), today=TODAY)
    assert validate_rows(canonical.declarations(100), today=TODAY) is None  # not a few rows


# --- the stage ------------------------------------------------------------------------------


def _write_raw(raw: Path, decl: pd.DataFrame, outc: pd.DataFrame, truth: bool = True) -> None:
    raw.mkdir(parents=True)
    decl.to_parquet(raw / "declarations.parquet")
    outc.to_parquet(raw / "outcomes.parquet")
    if truth:
        pd.DataFrame(
            {
                "declaration_id": decl["declaration_id"],
                "item_no": decl["item_no"],
                "risk_area": "revenue",
                "offence": False,
                "evaded_duty": 0.0,
                "true_prob": 0.01,
            }
        ).to_parquet(raw / "truth.parquet")


def test_run_validate_writes_outputs_atomically(tmp_path, decl, outc):
    _write_raw(tmp_path / "raw", _set(decl, 0, "hs_code", "1"), outc)
    report = run_validate(tmp_path / "raw", tmp_path / "interim", tmp_path / "metrics" / "v.json")
    interim = tmp_path / "interim"
    assert sorted(p.name for p in interim.iterdir()) == [
        "declarations",  # partitioned by acceptance month
        "outcomes",  # by the acceptance month of their items
        "quarantine.parquet",
        "seizures",  # by report month
        "truth",  # by the acceptance month of their items
    ]
    assert not list(tmp_path.rglob("*.tmp"))
    assert json.loads((tmp_path / "metrics" / "v.json").read_text()) == report
    good = read_dataset(interim_table(interim, "declarations"))
    assert partition_months(interim / "declarations") == sorted(
        good["accepted_date"].dt.strftime("%Y-%m").unique()
    )
    schema("declarations").validate(good)
    assert len(good) == len(decl) - 1 == len(read_dataset(interim / "truth"))
    assert len(pd.read_parquet(interim / "quarantine.parquet")) == 1


def test_run_validate_always_writes_quarantine_and_truth(tmp_path, decl, outc):
    _write_raw(tmp_path / "raw", decl, outc, truth=False)
    run_validate(tmp_path / "raw", tmp_path / "interim", tmp_path / "v.json")
    q = pd.read_parquet(tmp_path / "interim" / "quarantine.parquet")
    assert q.empty and list(q.columns) == QUARANTINE_COLUMNS
    truth = read_dataset(interim_table(tmp_path / "interim", "truth"))
    assert truth.empty and list(truth.columns) == column_names("truth")


def test_run_validate_missing_column_leaves_nothing(tmp_path, decl, outc):
    _write_raw(tmp_path / "raw", decl.drop(columns=["office"]), outc)
    with pytest.raises(
        RiskmlError,
        match=r"declarations.parquet: missing required column "
        r"'office'",
    ):
        run_validate(tmp_path / "raw", tmp_path / "interim", tmp_path / "v.json")
    assert not (tmp_path / "interim").exists() and not (tmp_path / "v.json").exists()


def test_run_validate_missing_or_broken_file(tmp_path, decl, outc):
    _write_raw(tmp_path / "raw", decl, outc)
    (tmp_path / "raw" / "outcomes.parquet").write_text("not parquet")
    with pytest.raises(RiskmlError, match=r"outcomes.parquet: cannot be read"):
        run_validate(tmp_path / "raw", tmp_path / "interim", tmp_path / "v.json")
    (tmp_path / "raw" / "outcomes.parquet").unlink()
    with pytest.raises(RiskmlError, match=r"outcomes.parquet: file not found"):
        run_validate(tmp_path / "raw", tmp_path / "interim", tmp_path / "v.json")
    assert not (tmp_path / "interim").exists()


def test_keys_are_canonical(decl):
    assert KEY == ["declaration_id", "item_no"]


@pytest.mark.slow
def test_validate_is_fast_on_a_realistic_volume():
    decl = canonical.declarations(300_000)
    decl["declaration_id"] = [f"D{i:07d}" for i in range(len(decl))]
    outc = canonical.outcomes(decl, 20_000)
    decl = _set(decl, 5, "hs_code", "abc")
    start = time.perf_counter()
    res = validate(decl, outc)
    elapsed = time.perf_counter() - start
    assert len(res.declarations) == len(decl) - 1 and len(res.outcomes) == len(outc)
    assert elapsed < 30, f"validate took {elapsed:.1f} s"  # ~2-4 s here; catch a blow-up only


def test_outcomes_and_truth_are_stored_by_their_items_month_and_a_late_result_rewrites_it(
    tmp_path, world
):
    """Outcome and truth rows go with their item's acceptance month (a partition for every month
    of the declarations, even without a row), read back identical; a control result that comes
    late, appended, rewrites its item's month only; a table naming an unknown item is refused."""
    interim = tmp_path / "interim"
    tables = {t: world[t] for t in ("declarations", "outcomes", "truth")}
    write_interim(interim, tables)
    decl = world["declarations"]
    keys = zip(decl["declaration_id"], decl["item_no"], strict=True)
    month_of = dict(zip(keys, month_labels(decl["accepted_date"]), strict=True))
    months = partition_months(interim / "declarations")
    for table in ("outcomes", "truth"):
        assert partition_months(interim / table) == months
        for month in months:
            part = read_dataset(interim / table, months=[month])
            keys = zip(part["declaration_id"], part["item_no"], strict=True)
            assert {month_of[k] for k in keys} <= {month}
        pd.testing.assert_frame_equal(
            read_dataset(interim / table), tables[table].reset_index(drop=True), check_exact=True
        )

    def stamps(table: str) -> dict[str, tuple[int, int]]:
        files = {m: partition_path(interim / table, m).stat() for m in months}
        return {m: (s.st_ino, s.st_mtime_ns) for m, s in files.items()}

    before = {t: stamps(t) for t in tables}
    late = world["outcomes"].iloc[[0]].assign(result_date=decl["accepted_date"].max())
    first = month_of[(late["declaration_id"].iloc[0], int(late["item_no"].iloc[0]))]
    outcomes = pd.concat([world["outcomes"], late], ignore_index=True)
    written = write_interim(interim, tables | {"outcomes": outcomes})
    assert written == {"declarations": [], "outcomes": [first], "truth": []}
    after = {t: stamps(t) for t in tables}
    assert after["declarations"] == before["declarations"]
    assert after["truth"] == before["truth"]
    assert {m for m in months if after["outcomes"][m] != before["outcomes"][m]} == {first}
    pd.testing.assert_frame_equal(read_dataset(interim / "outcomes"), outcomes, check_exact=True)

    stray = late.assign(declaration_id="NOT-A-DECLARATION")
    with pytest.raises(RiskmlError, match=r"1 outcomes row\(s\) name an item that is not among"):
        write_interim(interim, {"outcomes": pd.concat([outcomes, stray], ignore_index=True)})


def test_a_project_validated_before_the_partitioning_is_read_whole(tmp_path, world):
    """An older project's single files (``data/interim/outcomes.parquet``, ...) are read whole,
    months asked or not, until ``validate`` stores them by month (and removes them)."""
    interim = tmp_path / "data/interim"
    write_interim(interim, {"declarations": world["declarations"]})
    for table in ("outcomes", "truth"):
        world[table].to_parquet(interim / f"{table}.parquet", index=False)
    catalog = Catalog(tmp_path)
    assert catalog.outcomes == interim / "outcomes.parquet"
    assert catalog.truth() == interim / "truth.parquet"
    for table, path in (("outcomes", catalog.outcomes), ("truth", catalog.truth())):
        whole = read_dataset(path, months=partition_months(interim / "declarations")[:1])
        pd.testing.assert_frame_equal(whole, world[table], check_exact=True)
    write_interim(interim, {t: world[t] for t in ("outcomes", "truth")})
    assert not (interim / "outcomes.parquet").exists() and not (interim / "truth.parquet").exists()
    assert catalog.outcomes == interim / "outcomes" and catalog.truth() == interim / "truth"


def test_an_item_goes_with_its_own_month_when_a_declarations_items_span_months(tmp_path, world):
    """A declaration whose items were accepted in different months (the contract allows it):
    each outcome goes with its own item's month, not its declaration's first."""
    decl = world["declarations"]
    first = decl.iloc[[0]]
    later = first.assign(
        item_no=first["item_no"] + 100, accepted_date=first["accepted_date"] + pd.Timedelta(days=62)
    )
    decl = pd.concat([decl, later], ignore_index=True)
    outcome = world["outcomes"].iloc[[0]]
    outcomes = pd.concat(
        [
            world["outcomes"],
            outcome.assign(declaration_id=first["declaration_id"].iloc[0], item_no=101),
            outcome.assign(declaration_id=first["declaration_id"].iloc[0], item_no=1),
        ],
        ignore_index=True,
    )
    write_interim(tmp_path, {"declarations": decl, "outcomes": outcomes})
    month = month_labels(later["accepted_date"]).iloc[0]
    assert month != month_labels(first["accepted_date"]).iloc[0]
    stored = read_dataset(tmp_path / "outcomes", months=[month])
    assert first["declaration_id"].iloc[0] in set(stored["declaration_id"])
    assert set(
        stored.loc[stored["declaration_id"] == first["declaration_id"].iloc[0], "item_no"]
    ) == {101}
    pd.testing.assert_frame_equal(read_dataset(tmp_path / "outcomes"), outcomes, check_exact=True)


def _validate_whole(raw: Path, interim: Path, report_path: Path) -> dict:
    """The validate stage as it ran before it read the raw tables in batches (main c2fee8b):
    every table whole through validate(), the truth joined to the kept declarations, then
    write_interim: the reference the batched stage must repeat file for file."""
    from riskml.contract import offences_by_area, validate_seizures
    from riskml.io import write_json

    result = validate(
        pd.read_parquet(raw / "declarations.parquet"),
        pd.read_parquet(raw / "outcomes.parquet"),
        source=str(raw),
    )
    truth_in = pd.read_parquet(raw / "truth.parquet")
    truth = truth_in[column_names("truth")].astype(
        {c.name: canonical_dtype(c) for c in TRUTH_COLUMNS}
    )
    truth = truth.merge(result.declarations[KEY], on=KEY, how="inner")
    result.report["truth"] = {"rows_in": len(truth_in), "rows_kept": len(truth)}
    result.report["offences_by_area"] = offences_by_area(result.outcomes)
    seizures, q_seizures, result.report["seizures"] = validate_seizures(
        pd.read_parquet(raw / "seizures.parquet"), source=str(raw / "seizures.parquet")
    )
    if not q_seizures.empty:
        result.quarantine = pd.concat([result.quarantine, q_seizures], ignore_index=True)
        result.report["quarantine_rows"] = len(result.quarantine)
    write_interim(
        interim,
        {
            "declarations": result.declarations,
            "outcomes": result.outcomes,
            "quarantine": result.quarantine,
            "truth": truth,
            "seizures": seizures,
        },
    )
    write_json(result.report, report_path)
    return result.report


def _awkward_world(n: int = 60) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Raw tables in acceptance order with a failure of each kind: duplicate keys far apart,
    repairable and unrepairable values, outcomes of quarantined, unknown and other-batch
    declarations, an integer column with a null in one place only, truth and seizures."""
    decl = canonical.declarations(n, seed=3).sort_values("accepted_date", kind="stable")
    decl = decl.reset_index(drop=True)
    decl["declaration_id"] = [f"D{i // 2:07d}" for i in range(n)]
    decl.loc[n - 3, ["declaration_id", "item_no"]] = ["D0000002", 1]  # repeats row 4's key
    decl.loc[n - 5, ["declaration_id", "item_no"]] = ["D0000000", 1]  # repeats row 0's key
    outc = canonical.outcomes(decl.drop(index=[7, 17, 29, n - 3, n - 5, 4, 0]), 12, seed=5)
    decl = _set(decl, 7, "hs_code", "12")  # left out
    decl = _set(decl, 11, "cif_value", -5.0)  # kept, set missing
    decl = _set(decl, 12, "transport_mode", "boat")  # kept, unknown
    decl = _set(decl, 13, "net_mass_kg", 1e9)  # row rule, repaired
    decl = _set(decl, 17, "accepted_date", "not a date")  # left out
    decl = _set(decl, 21, "quantity", "abc")  # not a number
    decl["quantity"] = decl["quantity"].astype(str)  # a text column
    decl = _set(decl, 22, "office", None)  # missing, unknown
    decl = _set(decl, 23, "duty_rate", 11.0)  # above 10
    decl = _set(decl, 29, "hs_code", None)  # missing required
    decl["accepted_date"] = decl["accepted_date"].astype(str)  # text dates, as ingest leaves them
    extra = outc.iloc[:5].copy()
    extra.loc[extra.index[0], ["declaration_id", "item_no"]] = ["D0000003", 2]  # row 7: out
    extra.loc[extra.index[1], ["declaration_id", "item_no"]] = ["D9999999", 1]  # unknown
    extra.loc[extra.index[2], ["declaration_id", "item_no"]] = ["D0000002", 1]  # duplicated decl
    extra.loc[extra.index[3], "result_date"] = pd.Timestamp("2020-01-01")  # before acceptance
    extra.loc[extra.index[4], "control_kind"] = "xray"
    outc = pd.concat([outc, outc.iloc[[2]], extra], ignore_index=True)  # + a duplicate key
    outc["result_date"] = pd.to_datetime(outc["result_date"])
    dates = pd.to_datetime(decl["accepted_date"], errors="coerce")
    truth = pd.DataFrame(
        {
            "declaration_id": np.repeat(decl["declaration_id"].to_numpy(), 2),
            "item_no": np.repeat(decl["item_no"].to_numpy(), 2),
            "risk_area": np.tile(["revenue", "drugs"], n),
            "offence": np.arange(2 * n) % 7 == 0,
            "evaded_duty": np.arange(2 * n, dtype=float),
            "true_prob": 0.01,
        }
    )
    truth = truth.assign(_d=np.repeat(dates.fillna(dates.min()).to_numpy(), 2))
    truth = truth.sort_values("_d", kind="stable").drop(columns="_d").reset_index(drop=True)
    decl["item_no"] = decl["item_no"].astype("Int64")
    decl.loc[33, "item_no"] = pd.NA  # an integer column with one null: read as float whole
    seizures = pd.DataFrame(
        {
            "seizure_id": ["S1", "S2", "S3", "S3"],
            "seizure_date": pd.to_datetime(
                ["2023-02-01", "2023-03-01", "2023-04-01", "2023-04-02"]
            ),
            "report_date": pd.to_datetime(["2023-02-10", "2023-02-01", "2023-05-01", "2023-05-01"]),
            "reporting_country": "DE",
            "risk_area": "drugs",
            "commodity": "cocaine",
        }
    )
    return decl, outc, truth, seizures


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("order", ["acceptance", "shuffled"])
def test_run_validate_in_batches_writes_what_the_whole_tables_give(tmp_path, order):
    decl, outc, truth, seizures = _awkward_world()
    if order == "shuffled":  # months held to the end: the row positions kept, as before
        decl = decl.sample(frac=1, random_state=1).reset_index(drop=True)
        truth = truth.sample(frac=1, random_state=2).reset_index(drop=True)
    raw = tmp_path / "raw"
    raw.mkdir()
    for name, frame in (("declarations", decl), ("outcomes", outc), ("truth", truth)):
        frame.to_parquet(raw / f"{name}.parquet", row_group_size=9)
    seizures.to_parquet(raw / "seizures.parquet")
    whole = _validate_whole(raw, tmp_path / "whole", tmp_path / "whole.json")
    assert whole["declarations"]["rows_quarantined"] >= 6
    assert whole["outcomes"]["rows_quarantined"] >= 5 and whole["seizures"]["rows_quarantined"]
    for rows in (7, 1_000):  # many batches, duplicates and links across them; one batch
        out = tmp_path / f"batched-{rows}"
        report = run_validate(raw, out, tmp_path / f"{rows}.json", batch_rows=rows)
        assert report == whole
        assert (tmp_path / f"{rows}.json").read_bytes() == (tmp_path / "whole.json").read_bytes()
        assert _files(out) == _files(tmp_path / "whole"), rows
    q = pd.read_parquet(tmp_path / "whole" / "quarantine.parquet")
    rows = q.loc[q["table"] == "declarations", "row"]
    assert rows.is_monotonic_increasing and set(rows) >= {7, 17, 29}  # rows of the raw file


def test_run_validate_failing_late_leaves_the_previous_outputs(tmp_path):
    decl, outc, truth, seizures = _awkward_world()
    raw = tmp_path / "raw"
    raw.mkdir()
    for name, frame in (("declarations", decl), ("outcomes", outc), ("truth", truth)):
        frame.to_parquet(raw / f"{name}.parquet")
    seizures.to_parquet(raw / "seizures.parquet")
    run_validate(raw, tmp_path / "interim", tmp_path / "v.json", batch_rows=7)
    before = _files(tmp_path / "interim")
    decl.iloc[::-1].to_parquet(raw / "declarations.parquet")  # another content
    truth.assign(item_no=truth["item_no"].astype(float).where(truth.index != 50)).to_parquet(
        raw / "truth.parquet"
    )  # a missing item number: the truth cannot be read
    with pytest.raises(ValueError):
        run_validate(raw, tmp_path / "interim", tmp_path / "v.json", batch_rows=7)
    assert _files(tmp_path / "interim") == before
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]
