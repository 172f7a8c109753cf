"""The headline metrics file: a few figures per area, taken from the stages' detailed files."""

import json
from pathlib import Path

import pytest
import yaml

from riskml.config import load_area_specs, load_params
from riskml.contract import RiskmlError
from riskml.headline import HEADLINE, SOURCES, headline, run_headline

ROOT = Path(__file__).resolve().parents[1]
SPECS = {a: s for a, s in load_area_specs(ROOT / "pipelines").items() if a in ("revenue", "ipr")}


def _method(p: float, share: float | None = None) -> dict:
    return {"precision": p, "recall": p / 2, "revenue_share": share, "average_precision": p / 3}


def _sources() -> dict:
    summary = {
        "revenue": {
            "population": "truth",
            "model": _method(0.4, 0.6),
            "legacy_rules": _method(0.03, 0.1),
            "random": _method(0.02, 0.02),
            "rank_key_comparison": {"rank_key": {"precision": 0.35, "revenue_share": 0.65}},
        },
        "ipr": {
            "population": "truth",
            "model": _method(0.5) | {"average_precision": float("nan")},
            "legacy_rules": _method(0.07),
        },
    }
    model_bt = {"precision": {"mean": 0.39}, "precision_ci": {"low": 0.37, "high": 0.41}}
    backtest = {
        "config": {},
        "areas": {
            "revenue": {
                "rolling": {"methods": {"model": model_bt}},
                "static": {"methods": {"model": {"precision": {"mean": 0.1}}}},
            },
        },
    }
    promotion = {"revenue": {"champion_version_after": "3"}, "ipr": {"champion_version_after": "1"}}
    return {
        "summary": summary,
        "backtest": backtest,
        "promotion": promotion,
        "validation": {"quarantine_rows": 12},
    }


def test_headline_keeps_a_few_figures_per_area():
    src = _sources()
    out = headline(SPECS, **src, protocol="rolling")
    assert out["population"] == "truth" and out["quarantined_rows"] == 12
    assert out["revenue"] == {
        "operating_rate": SPECS["revenue"].operating_rate,
        "precision": 0.4,
        "recall": 0.2,
        "revenue_share": 0.6,
        "average_precision": pytest.approx(0.4 / 3),
        "legacy_precision": 0.03,
        "list_precision": 0.35,
        "list_revenue_share": 0.65,
        "backtest_precision": 0.39,
        "backtest_precision_low": 0.37,
        "backtest_precision_high": 0.41,
        "champion_version": 3,
    }
    # No revenue share, no list key, a NaN and no backtest: left out, not written as null.
    assert out["ipr"] == {
        "operating_rate": SPECS["ipr"].operating_rate,
        "precision": 0.5,
        "recall": 0.25,
        "legacy_precision": 0.07,
        "champion_version": 1,
    }
    static = headline(SPECS, **src, protocol="static")
    assert static["revenue"]["backtest_precision"] == 0.1
    assert "backtest_precision_low" not in static["revenue"]


def test_headline_refuses_an_area_the_evaluation_did_not_measure():
    src = _sources()
    del src["summary"]["ipr"]
    with pytest.raises(RiskmlError, match="no figures for area 'ipr'; run `riskml evaluate`"):
        headline(SPECS, **src, protocol="rolling")


def test_run_headline_reads_the_stage_files_and_writes_the_headline(tmp_path):
    params = load_params(ROOT / "params.yaml")
    with pytest.raises(RiskmlError, match="metrics/summary.json: not found"):
        run_headline(tmp_path, params, SPECS)
    for name, data in _sources().items():
        path = tmp_path / SOURCES[name]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))
    counts = run_headline(tmp_path, params, SPECS)
    written = json.loads((tmp_path / HEADLINE).read_text())
    assert written == json.loads(json.dumps(headline(SPECS, **_sources(), protocol="rolling")))
    assert counts == {"areas": 2, "figures": 12 + 5 + 2}


def test_dvc_yaml_reports_only_the_headline_as_metrics():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    metrics = [
        m for stage in dvc["stages"].values() for m in stage.get("do", stage).get("metrics", [])
    ]
    assert metrics == [str(HEADLINE)]
    outs = [o for stage in dvc["stages"].values() for o in stage.get("outs", [])]
    for path in ("metrics/summary.json", "metrics/areas", "metrics/backtest"):
        assert path in outs
