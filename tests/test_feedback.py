"""The feedback store: tokens stored hashed, revocation, outcomes with who recorded them, and the
export in the data contract's outcome table. A real SQLite file."""

from __future__ import annotations

import sqlite3
from datetime import date

import pandas as pd
import pytest

from riskml.contract import RiskmlError, validate
from riskml.feedback import FeedbackStore, append_feedback, export_outcomes, hash_token


@pytest.fixture
def store(tmp_path):
    return FeedbackStore(f"sqlite:///{tmp_path / 'feedback.db'}")


def test_tokens_are_stored_hashed_and_can_be_revoked(store, tmp_path):
    token = store.create_token("ana", "auditor")
    assert store.identify(token).role == "auditor"
    assert store.identify(token + "x") is None
    with sqlite3.connect(tmp_path / "feedback.db") as db:
        rows = db.execute("select * from api_tokens").fetchall()
    flat = " ".join(str(v) for row in rows for v in row)
    assert token not in flat and hash_token(token) in flat
    listed = store.list_tokens()
    assert list(listed.columns) == ["name", "role", "created_at", "expires_at", "revoked_at"]
    store.revoke_token("ana")
    assert store.identify(token) is None
    assert store.list_tokens()["revoked_at"].notna().all()
    with pytest.raises(RiskmlError, match="exists"):
        store.create_token("ana", "reviewer")
    with pytest.raises(RiskmlError, match="role"):
        store.create_token("bob", "superuser")
    with pytest.raises(RiskmlError, match="no token"):
        store.revoke_token("nobody")


def test_bad_database_url_is_a_clear_error():
    with pytest.raises(RiskmlError, match="database_url"):
        FeedbackStore("nosuchdialect://x")


def test_export_is_a_valid_outcome_table_that_source_appends(store, tmp_path):
    decl = pd.DataFrame(
        {
            "declaration_id": ["D1", "D1"],
            "item_no": [1, 2],
            "accepted_date": pd.to_datetime(["2024-01-02", "2024-01-02"]),
            "office": "SEA1",
            "transport_mode": "sea",
            "importer_id": "IMP1",
            "declarant_id": "DCL1",
            "origin_country": "CN",
            "hs_code": "61091000",
            "quantity": 10.0,
            "gross_mass_kg": 12.0,
            "cif_value": 100.0,
            "duties_paid": 10.0,
        }
    )
    store.add_outcome(
        recorded_by="ana",
        declaration_id="D1",
        item_no=2,
        risk_area="revenue",
        control_kind="pca",
        result_date=date(2024, 3, 1),
        offence_found=True,
        offence_code="REV-UV",
        additional_duty=55.0,
        quantity_seized=0.0,
        auditor="Ana",
    )
    with pytest.raises(RiskmlError, match="risk area"):
        store.add_outcome(recorded_by="ana", risk_area="smuggling", control_kind="pca")
    path = tmp_path / "data/external/feedback_outcomes.parquet"
    assert export_outcomes(store, path) == 1
    exported = pd.read_parquet(path)
    result = validate(decl, exported)
    assert result.quarantine.empty and len(result.outcomes) == 1
    raw = tmp_path / "data/raw"
    raw.mkdir(parents=True)
    result.outcomes.iloc[0:0].to_parquet(raw / "outcomes.parquet")
    assert append_feedback(raw, path) == 1
    assert pd.read_parquet(raw / "outcomes.parquet")["offence_code"].tolist() == ["REV-UV"]
