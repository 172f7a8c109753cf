"""The Korea Customs Service research file: mapping, ingest and the development protocol.

On a file in the KCS layout that the test writes itself, and, where ``../shared/data/kcs/``
exists next to the repository (as in CI), on the real files (skipped cleanly otherwise).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskml.catalog import interim_table
from riskml.contract import run_validate
from riskml.ingest import run_ingest
from riskml.io import read_dataset
from riskml.protocol import KCS_DEV_SPLIT, KCS_FILES, KCS_TRAIN, protocol_spec, run_protocol

_spec = importlib.util.spec_from_file_location("kcs", Path(__file__).parent / "fixtures" / "kcs.py")
kcs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kcs)

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "kcs"
needs_real = pytest.mark.skipif(
    not all((REAL / f).exists() for f in KCS_FILES), reason=f"{REAL} not present"
)


@pytest.fixture(scope="module")
def kcs_folder(tmp_path_factory) -> Path:
    return kcs.write_kcs_files(tmp_path_factory.mktemp("kcs"))


def _ingest(folder: Path, out: Path, **kwargs) -> tuple[dict, dict]:
    summary = run_ingest([folder / f for f in KCS_FILES], "kcs_synthetic", out / "raw", **kwargs)
    report = run_validate(out / "raw", out / "interim", out / "validation.json")
    return summary, report


def _check_every_row_kept(summary: dict, report: dict) -> None:
    # rates above 100%, zero masses and prices and the national code 90 are all lawful
    assert report["declarations"]["rows_quarantined"] == 0, report["declarations"]["reasons"]
    assert report["outcomes"]["rows_quarantined"] == 0, report["outcomes"]["reasons"]
    assert report["declarations"]["rows_kept"] == summary["rows"]
    assert set(summary["unmapped_codes"]) <= {"transport_mode", "preference_claim"}
    # every Tax Type of the files says whether a preference was claimed, but the bare F
    assert set(summary["unmapped_codes"].get("preference_claim", {})) <= {"F"}
    labels = summary["labels"]
    assert labels["Fraud -> revenue"]["inspected"] == summary["rows"]
    assert labels["Critical Fraud -> health_safety"]["inspected"] == summary["rows"]
    assert summary["outcomes"] == 2 * summary["rows"]  # one per area and row
    found = report["offences_by_area"]
    assert found["revenue"] == labels["Fraud -> revenue"]["offences"]
    assert found["health_safety"] == labels["Critical Fraud -> health_safety"]["offences"]
    assert found["drugs"] == found["ipr"] == found["security"] == found["environment"] == 0


def test_kcs_layout_ingests_without_losing_a_declaration(kcs_folder, tmp_path):
    summary, report = _ingest(kcs_folder, tmp_path)
    _check_every_row_kept(summary, report)
    assert summary["unmapped_codes"]["transport_mode"]["90"] > 0
    decl = read_dataset(interim_table(tmp_path / "interim", "declarations"))
    assert (decl["duty_rate"] > 1).any() and (decl["cif_value"] == 0).any()
    assert (decl["net_mass_kg"] == 0).any()
    assert set(decl["transport_mode"]) <= {"sea", "air", "post", "road", "rail", "unknown"}
    outc = read_dataset(interim_table(tmp_path / "interim", "outcomes"))
    src = pd.concat([pd.read_csv(kcs_folder / f, dtype=str) for f in KCS_FILES])
    found = outc[outc["offence_found"]].groupby("risk_area").size().to_dict()
    assert found == {
        "revenue": int((src["Fraud"] == "1").sum()),
        "health_safety": int((src["Critical Fraud"] == "2").sum()),
    }


def test_tax_type_says_whether_a_preference_was_claimed(tmp_path):
    """The mapping derives ``preference_claim`` from the Tax Type (FTA, APTA and LDC rates:
    claimed; basic, WTO, adjustment and quota rates: not; a code of unknown meaning: missing)
    and keeps the code itself as ``tariff_treatment``; revenue's goods profiles then fire on
    the standard rate and on an unknown code, the preference rule on the claims."""
    from riskml.config import load_area_specs
    from riskml.rules import rule_mask

    codes = {
        "A": False, "C": False, "C3": False, "CIT": False, "W2": False, "L": False,
        "P1": False, "FCN1": True, "FEU1": True, "FUS5": True, "E1": True, "R": True,
        "F": None, "ZZ9": None,
    }  # fmt: skip
    frame = kcs.kcs_frame(len(codes), "2020-01-01", "2020-01-31", seed=3)
    frame["Tax Type"] = list(codes)
    frame["HS6 Code"] = "620342"  # apparel
    frame.to_csv(tmp_path / "kcs.csv", index=False)
    summary = run_ingest(tmp_path / "kcs.csv", "kcs_synthetic", tmp_path / "raw")
    report = run_validate(tmp_path / "raw", tmp_path / "interim", tmp_path / "validation.json")
    assert report["declarations"]["rows_quarantined"] == 0
    assert summary["unmapped_codes"]["preference_claim"] == {"F": 1, "ZZ9": 1}
    decl = read_dataset(interim_table(tmp_path / "interim", "declarations"))
    decl = decl.set_index(decl["tariff_treatment"].astype(str)).loc[list(codes)]
    claim = {c: None if pd.isna(v) else bool(v) for c, v in decl["preference_claim"].items()}
    assert claim == codes
    rules = {r.name: r for r in load_area_specs(REPO / "pipelines")["revenue"].legacy_rules}
    apparel = rule_mask(decl, rules["apparel and footwear at the standard rate"])
    assert apparel.to_dict() == {c: v is not True for c, v in codes.items()}
    assert rule_mask(decl, rules["preference claimed"]).to_dict() == {
        c: v is True for c, v in codes.items()
    }


def test_the_protocol_leaves_out_the_origin_traces_revenue_takes():
    """Session 24: revenue's pipeline takes the origin-fraud traces, every other area's and the
    KCS protocol's model leave them out (the protocol's selection quarter did not gain).
    Session 25: the misclassification traces go the same way. Session 26: revenue's learning
    settings too."""
    from riskml.config import load_area_specs
    from riskml.features import MISCLASSIFICATION_TRACES, ORIGIN_TRACES

    assert len(ORIGIN_TRACES) == 8
    specs = load_area_specs(Path(__file__).parents[1] / "pipelines")
    revenue = specs["revenue"]
    for traces in (ORIGIN_TRACES, MISCLASSIFICATION_TRACES):
        assert not set(traces) & set(revenue.exclude_features)
        for area in ("drugs", "ipr", "environment", "health_safety", "security"):
            assert set(traces) <= set(specs[area].exclude_features), area
    protocol = protocol_spec(revenue)
    assert set(ORIGIN_TRACES) <= set(protocol.exclude_features)
    assert set(MISCLASSIFICATION_TRACES) <= set(protocol.exclude_features)
    # Session 26: revenue's learning rate and patience were chosen on the simulated worlds, not
    # on the protocol's selection quarter: the protocol trains as it was chosen.
    assert revenue.train == {"learning_rate": 0.02, "early_stopping_rounds": 200}
    assert protocol.train == KCS_TRAIN
    bare = protocol_spec(revenue, train={}, exclude=())
    assert bare.exclude_features == revenue.exclude_features
    assert bare.train == {}
    security = specs["security"]
    assert protocol_spec(security).train == security.train | KCS_TRAIN  # no setting left out


def test_development_protocol_command(kcs_folder, tmp_path):
    """The documented command runs the protocol; nothing of the ranked quarter reaches a model:
    rewriting every label of 2021-Q1 leaves the scores, hence the ranking, unchanged."""
    work = tmp_path / "work"
    proc = subprocess.run(
        [sys.executable, "scripts/kcs_protocol.py", "--data", str(kcs_folder), "--work", str(work)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((work / "kcs_protocol.json").read_text())
    assert result["split"] == KCS_DEV_SPLIT.model_dump(mode="json")
    revenue = result["areas"]["revenue"]
    assert f"revenue: P@1%={revenue['precision']['1%']:.3f}" in proc.stdout
    ranked = pd.read_csv(kcs_folder / KCS_FILES[1], dtype=str)
    assert revenue["n_ranked"] == len(ranked)
    base_rate = (ranked["Fraud"] == "1").mean()
    assert revenue["positive_rate"] == pytest.approx(base_rate)
    # the planted undervaluation and repeat offenders are found well above the base rate
    assert revenue["precision"]["5%"] > base_rate + 0.3
    assert revenue["n_train"] > 0 and revenue["n_valid"] > 0
    assert revenue["train_overrides"] == KCS_TRAIN  # the protocol's own LightGBM settings
    # each rate's figure comes with its bootstrap interval over the ranked items
    assert set(revenue["precision_ci95"]) == set(revenue["precision"])
    for rate, (low, high) in revenue["precision_ci95"].items():
        assert low <= revenue["precision"][rate] <= high
    assert "revenue 95% bootstrap intervals over the ranked items: P@1%=[" in proc.stdout
    assert "health_safety" in result["areas"]  # measured, or skipped with its reason

    flipped = tmp_path / "flipped"
    flipped.mkdir()
    (flipped / KCS_FILES[0]).write_bytes((kcs_folder / KCS_FILES[0]).read_bytes())
    ranked["Fraud"] = (ranked["Fraud"] == "0").astype(int).astype(str)
    ranked["Critical Fraud"] = "0"
    ranked.to_csv(flipped / KCS_FILES[1], index=False)
    again = run_protocol(flipped, tmp_path / "work2", root=REPO)
    first = pd.read_parquet(work / "scores_revenue.parquet")
    second = pd.read_parquet(tmp_path / "work2" / "scores_revenue.parquet")
    pd.testing.assert_series_equal(first["score"], second["score"])
    assert again["areas"]["revenue"]["precision"] != revenue["precision"]  # labels did change


@needs_real
def test_real_kcs_files_ingest_whole(tmp_path):
    summary, report = _ingest(REAL, tmp_path)
    _check_every_row_kept(summary, report)
    assert summary["rows"] == 37_385 + 8_134
    decl = read_dataset(interim_table(tmp_path / "interim", "declarations"))
    assert decl["accepted_date"].min() == pd.Timestamp("2020-01-01")
    assert decl["accepted_date"].max() < pd.Timestamp(KCS_DEV_SPLIT.test_end)  # no test quarter
    assert (decl["duty_rate"] > 1).sum() > 100 and (decl["cif_value"] == 0).sum() > 100


@needs_real
def test_real_kcs_sample_through_the_protocol(tmp_path):
    result = run_protocol(REAL, tmp_path, root=REPO, sample=6000, only=("revenue",))
    assert list(result["areas"]) == ["revenue"]  # only the area asked for is trained
    revenue = result["areas"]["revenue"]
    assert result["validation"]["declarations"]["rows_quarantined"] == 0
    assert revenue["n_ranked"] > 1000
    # far above the base rate (about 0.21) even on a sixth of the file: 0.735 with the peer
    # profiles hs6r/hs6rt/hs6tl (0.598 without them, which this bound would fail; about 100
    # items ranked at 5%)
    assert revenue["precision"]["5%"] > 0.65


def test_value_band_reference_leaves_out_the_items_near_the_own_value():
    """``--reference value-bands``: earlier labelled items of the HS6 in the item's decade of
    declared value, minus those within about 1% of its value (the exact-repeat artefact)."""
    from riskml.protocol import value_band_history

    decl = pd.DataFrame(
        {
            "accepted_date": pd.to_datetime(
                ["2020-01-05", "2020-01-20", "2020-02-03", "2020-03-01", "2020-02-10"]
            ),
            "hs_code": ["392690"] * 5,
            "cif_value": [2e6, 5e6, 2.01e6, 3e7, 0.0],
            "net_mass_kg": [10.0, 10.0, 10.0, 10.0, 10.0],
        }
    )
    labels = pd.DataFrame({"label": [1.0, 0.0, 1.0, 0.0, 0.0]})  # overall rate 0.4
    out = value_band_history(decl, labels)
    # January: nothing earlier; February's 2.01e6 sees January's two items of its decade, but
    # not the 2e6 offence within 1% of its value: one clean peer left
    assert out["hs6vb_n"].tolist()[:4] == [0.0, 0.0, 1.0, 0.0]
    assert out["hs6vb_hr"].iloc[2] == pytest.approx((0 + 20 * 0.4) / (1 + 20))
    assert out["hs6vb_hr"].iloc[0] == pytest.approx(0.4)
    assert np.isnan(out["hs6vb_n"].iloc[4])  # a value of 0 has no decade
    # the same masses: every earlier peer is within 1%, none is left
    assert (out["hs6mb_n"] == 0).all()


_sel_spec = importlib.util.spec_from_file_location(
    "kcs_selection", REPO / "scripts" / "kcs_selection.py"
)
kcs_selection = importlib.util.module_from_spec(_sel_spec)
_sel_spec.loader.exec_module(kcs_selection)


def test_paired_difference_of_rankings():
    """The resampled precision equals precision_at_rate without resampling; a ranking against
    itself differs by exactly 0; a ranking that puts every offence first beats a random one,
    with an interval above 0."""
    from riskml.metrics import precision_at_rate

    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.2).astype(float)
    noisy = y + rng.normal(0, 0.8, len(y))
    order = np.argsort(-noisy, kind="stable")
    for rate in (0.01, 0.05, 0.1):
        once = kcs_selection._weighted_precision(order, y, np.ones((1, len(y))), rate)[0]
        assert once == pytest.approx(precision_at_rate(y, noisy, rate=rate))
    same = kcs_selection.paired_difference(y, [noisy], [noisy], (0.05,), n_boot=200)
    assert same["5%"] == {"diff": 0.0, "ci95": [0.0, 0.0]}
    better = kcs_selection.paired_difference(y, [rng.random(len(y))], [y], (0.1,), n_boot=200)
    assert better["10%"]["diff"] > 0.6 and better["10%"]["ci95"][0] > 0.5


def test_selection_script_on_the_kcs_layout(kcs_folder, tmp_path, capsys):
    """The selection grid runs the protocol's stages (interim tables as validate stores them),
    measures each variant on the ranked quarter and compares saved scores, paired."""
    work = tmp_path / "sel"
    args = ["--data", str(kcs_folder), "--work", str(work), "--root", str(REPO)]
    run = [*args, "--quarter", "development", "--seed", "42", "--seed", "1"]
    assert kcs_selection.main([*run, "--variant", "base", "--variant", "leaves15"]) == 0
    result = json.loads((work / "kcs_selection.json").read_text())
    block = result["variants"]["leaves15"]
    assert block["seeds"] == [42, 1] and len(block["per_seed_10%"]) == 2
    assert result["threads"] == 1
    scores = pd.read_parquet(work / "scores-base.parquet")
    assert len(scores) == len(pd.read_csv(kcs_folder / KCS_FILES[1]))  # every ranked item
    assert kcs_selection.main([*args, "--compare", "base", "leaves15"]) == 0
    compared = json.loads((work / "kcs_compare-base.json").read_text())["leaves15"]
    assert set(compared) == {"1%", "2%", "5%", "10%"}
    for cell in compared.values():
        assert cell["ci95"][0] <= cell["diff"] <= cell["ci95"][1]
    assert "leaves15 - base: 1%:" in capsys.readouterr().out
    # the attainable reference: the ranked quarter scored out of fold, one seed
    cv = [*args, "--quarter", "development", "--seed", "42", "--cv-reference", "--cv-variant"]
    assert kcs_selection.main([*cv, "base"]) == 0
    reference = json.loads((work / "kcs_selection-cv-base.json").read_text())["in_quarter_cv"]
    assert list(reference["per_seed"]) == ["42"]
    assert 0 < reference["precision"]["10%"] <= 1
