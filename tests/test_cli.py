"""The `riskml` command as a user runs it: broken inputs give a clear message or a quarantine
report, never a traceback, and a failed stage leaves no partial output."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from riskml.catalog import Catalog
from riskml.io import read_dataset

ROOT = Path(__file__).resolve().parents[1]
RISKML = str(Path(sys.executable).parent / "riskml")


def _canonical():
    spec = importlib.util.spec_from_file_location(
        "canonical", Path(__file__).parent / "fixtures" / "canonical.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


canonical = _canonical()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(ROOT / "pipelines", tmp_path / "pipelines")
    (tmp_path / "data/raw").mkdir(parents=True)
    return tmp_path


def _riskml(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [RISKML, *args, "--root", str(project)], capture_output=True, text=True, timeout=300
    )


def _write_raw(project: Path, decl: pd.DataFrame, outcomes: pd.DataFrame) -> None:
    decl.to_parquet(project / "data/raw/declarations.parquet", index=False)
    outcomes.to_parquet(project / "data/raw/outcomes.parquet", index=False)


def test_missing_column_is_a_clear_error_and_leaves_no_output(project):
    decl = canonical.declarations(20)
    _write_raw(project, decl.drop(columns="hs_code"), canonical.outcomes(decl))
    proc = _riskml(project, "validate")
    assert proc.returncode == 2
    assert "hs_code" in proc.stderr and "declarations" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not Catalog(project).declarations.exists()
    assert not list((project / "data").rglob("*.tmp"))


def test_bad_rows_are_quarantined_with_reasons_and_nothing_is_lost(project):
    decl = canonical.declarations(40).astype({"cif_value": str})
    decl.loc[3, "cif_value"] = "abc"
    decl.loc[5, "gross_mass_kg"] = -2.0
    decl.loc[7, ["declaration_id", "item_no"]] = decl.loc[8, ["declaration_id", "item_no"]].values
    _write_raw(project, decl, canonical.outcomes(decl.drop(index=[3, 5, 7, 8])))
    proc = _riskml(project, "validate")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    quarantine = pd.read_parquet(project / "data/interim/quarantine.parquet")
    kept = read_dataset(Catalog(project).declarations)
    bad = quarantine[quarantine["table"] == "declarations"]
    reasons = " | ".join(bad["reason"])
    assert "abc" in reasons and "cif_value" in reasons
    assert "gross_mass_kg" in reasons
    assert "duplicate" in reasons
    # rows 3 and 5 are scored without their bad value; both copies of the key are left out
    left_out = bad[~bad["action"].str.startswith("kept")]
    assert sorted(left_out["row"].unique()) == [7, 8]
    assert len(kept) + left_out["row"].nunique() == len(decl)
    report = json.loads((project / "metrics/validation.json").read_text())
    assert report, "the validation report is empty"


def test_unknown_area_and_missing_mapping_are_clear_errors(project):
    proc = _riskml(project, "train", "--area", "smuggling")
    assert proc.returncode == 2
    assert "unknown area 'smuggling'" in proc.stderr and "Traceback" not in proc.stderr
    csv = project / "data/external/file.csv"
    csv.parent.mkdir(parents=True)
    csv.write_text("a,b\n1,2\n")
    proc = _riskml(project, "ingest", str(csv), "--mapping", str(project / "nope.yaml"))
    assert proc.returncode == 2
    assert "nope" in proc.stderr and "Traceback" not in proc.stderr


def test_a_stage_run_before_its_inputs_exist_says_what_to_run(project):
    proc = _riskml(project, "features")
    assert proc.returncode == 2
    assert "data/interim/declarations: file not found" in proc.stderr
    assert "Traceback" not in proc.stderr
