"""`riskml score FILE --mapping M`: a national-format file scored through its ingest mapping;
bad files end in a one-line error (exit 2), never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from serve_project import built_project, new_batch, project_env

NATIONAL = {  # canonical column -> the national extract's header
    "declaration_id": "DECL_NO",
    "accepted_date": "ACCEPT_DT",
    "office": "OFFICE",
    "transport_mode": "MODE",
    "importer_id": "IMPORTER",
    "declarant_id": "BROKER",
    "supplier_id": "SELLER",
    "origin_country": "ORIGIN",
    "departure_country": "DEPARTURE",
    "hs_code": "TARIFF",
    "quantity": "QTY",
    "gross_mass_kg": "GROSS",
    "net_mass_kg": "NET",
    "cif_value": "VALUE",
    "duty_rate": "RATE",
    "duties_paid": "DUTIES",
    "procedure": "PROC",
    "description": "GOODS",
    "quantity_unit": "UNIT",
    "fob_value": "FOB",
    "preference_claim": "PREF",
}
MODES = {"sea": "1", "air": "4", "road": "3", "rail": "2", "post": "5"}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return built_project(tmp_path_factory.getbasetemp())


def _riskml(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "riskml", *args, "--root", str(project)],
        cwd=project,
        env=project_env(project),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _mapping(tmp_path: Path) -> Path:
    decl = {k: v for k, v in NATIONAL.items()}
    decl |= {
        "item_no": {"value": 1},
        "accepted_date": {"from": "ACCEPT_DT", "date_format": "%d.%m.%Y"},
        "transport_mode": {"from": "MODE", "values": {v: k for k, v in MODES.items()}},
    }
    path = tmp_path / "national.yaml"
    path.write_text(
        yaml.safe_dump({"csv": {"sep": ";", "encoding": "latin-1"}, "declarations": decl}),
        encoding="utf-8",
    )
    return path


def test_a_national_file_is_scored_through_its_mapping(project, tmp_path):
    batch = new_batch(project, 30)
    national = pd.DataFrame({src: batch[col] for col, src in NATIONAL.items() if col in batch})
    national["ACCEPT_DT"] = batch["accepted_date"].dt.strftime("%d.%m.%Y")
    national["MODE"] = batch["transport_mode"].map(MODES).fillna("9")
    file = tmp_path / "extract.csv"
    national.to_csv(file, sep=";", index=False, encoding="latin-1")
    out = tmp_path / "out"
    proc = _riskml(
        project, "score", str(file), "--mapping", str(_mapping(tmp_path)), "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    scores = pd.read_csv(out / "scores.csv", dtype={"declaration_id": str})
    assert set(scores["declaration_id"]) == set(batch["declaration_id"])
    # the same declarations in the canonical layout get the same scores (numbers are not scaled
    # here: a last-bit difference may move an item across a peer percentile)
    canonical = tmp_path / "canonical.parquet"
    batch.to_parquet(canonical)
    again = _riskml(project, "score", str(canonical), "--out", str(tmp_path / "out2"))
    assert again.returncode == 0, again.stderr
    other = pd.read_csv(tmp_path / "out2" / "scores.csv", dtype={"declaration_id": str})
    key = ["declaration_id", "area"]
    merged = scores.merge(other, on=key, suffixes=("", "_canonical"))
    assert len(merged) == len(scores)
    assert merged["score"].to_numpy() == pytest.approx(
        merged["score_canonical"].to_numpy(), rel=1e-6
    )


@pytest.mark.parametrize(
    ("content", "with_mapping", "message"),
    [
        (b"", False, "empty file"),
        (b"declaration_id,item_no\n", False, "header only, no data rows"),
        (bytes(range(256)) * 16, False, "cannot be read as CSV"),
        (b"", True, "empty file"),
        (b"DECL_NO;ACCEPT_DT\n", True, "header only, no data rows"),
        (b"DECL_NO,ACCEPT_DT,OFFICE\nA,01.01.2025,X\n", True, "is the separator right"),
    ],
)
def test_bad_files_end_in_one_line(project, tmp_path, content, with_mapping, message):
    file = tmp_path / "bad.csv"
    file.write_bytes(content)
    args = ["score", str(file), "--out", str(tmp_path / "out")]
    if with_mapping:
        args += ["--mapping", str(_mapping(tmp_path))]
    proc = _riskml(project, *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "out").exists()
