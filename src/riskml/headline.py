"""The headline metrics: a few figures per area, the file `dvc metrics show` and `dvc exp show`
display (``metrics/headline.json``).

The detailed files (``metrics/summary.json``, ``metrics/areas/``, ``metrics/backtest/``,
``metrics/promotion.json``, ``metrics/validation.json``) are plain outputs of their stages; the
``headline`` stage reads them and keeps, per area, what a data scientist compares between two
experiments: the test window at the operating rate (model, legacy rules, and for an area ranked
by expected recovery the list's own key), the backtest's mean with its bootstrap interval, and the
champion's version after promotion.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from riskml import catalog, io
from riskml.config import AreaSpec, Params
from riskml.contract import RiskmlError

HEADLINE = Path(catalog.HEADLINE)
SOURCES = {
    "summary": Path(catalog.EVALUATION_SUMMARY),
    "backtest": Path(catalog.BACKTEST_SUMMARY),
    "promotion": Path(catalog.PROMOTION),
    "validation": Path(catalog.VALIDATION),
}


def _number(value: Any) -> float | None:
    """``value`` as a float, ``None`` when missing or not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _test_window(block: dict[str, Any]) -> dict[str, float | None]:
    """The evaluate stage's figures of one area (``metrics/summary.json``)."""
    model, legacy = block.get("model", {}), block.get("legacy_rules", {})
    out = {
        "precision": _number(model.get("precision")),
        "recall": _number(model.get("recall")),
        "revenue_share": _number(model.get("revenue_share")),
        "average_precision": _number(model.get("average_precision")),
        "legacy_precision": _number(legacy.get("precision")),
    }
    listed = block.get("rank_key_comparison", {}).get("rank_key")
    if listed:  # an area ranked by expected recovery: the list's key, not the probability
        out["list_precision"] = _number(listed.get("precision"))
        out["list_revenue_share"] = _number(listed.get("revenue_share"))
    return out


def _backtest(block: dict[str, Any], protocol: str) -> dict[str, float | None]:
    """The backtest's mean precision at the operating rate and its bootstrap interval."""
    model = block.get(protocol, {}).get("methods", {}).get("model", {})
    ci = model.get("precision_ci", {})
    return {
        "backtest_precision": _number(model.get("precision", {}).get("mean")),
        "backtest_precision_low": _number(ci.get("low")),
        "backtest_precision_high": _number(ci.get("high")),
    }


def headline(
    specs: dict[str, AreaSpec],
    summary: dict[str, Any],
    backtest: dict[str, Any],
    promotion: dict[str, Any],
    validation: dict[str, Any],
    *,
    protocol: str,
) -> dict[str, Any]:
    """Per area: operating rate, test-window, backtest and champion figures; plus the test
    window's population and the rows the contract check quarantined. An area the train stage
    skipped gets its reason (``skipped: 3 positives, need 20``) instead. Figures that a source does
    not hold (revenue share of an area without duties, a list key of an area ranked by
    probability) are left out."""
    # Which items the test figures count: every item ("truth", simulated data) or the labelled.
    populations = sorted(
        {str(summary[a]["population"]) for a in specs if "population" in summary.get(a, {})}
    )
    out: dict[str, Any] = {
        "population": ", ".join(populations),
        "quarantined_rows": validation.get("quarantine_rows"),
    }
    for area, spec in specs.items():
        if area not in summary:
            raise RiskmlError(
                f"{SOURCES['summary']}: no figures for area {area!r}; run `riskml evaluate` first"
            )
        figures: dict[str, Any] = {"operating_rate": spec.operating_rate}
        if "skipped" in summary[area]:  # not trained: why, instead of figures
            out[area] = figures | {
                k: summary[area][k]
                for k in ("skipped", "positives", "needed")
                if k in summary[area]
            }
            continue
        figures |= _test_window(summary[area])
        figures |= _backtest(backtest.get("areas", {}).get(area, {}), protocol)
        champion = promotion.get(area, {}).get("champion_version_after")
        figures["champion_version"] = int(champion) if champion is not None else None
        out[area] = {k: v for k, v in figures.items() if v is not None}
    return out


def _read(root: Path, name: str) -> dict[str, Any]:
    path = root / SOURCES[name]
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RiskmlError(f"{path}: not found; run the stage that writes it (dvc repro)") from exc


def run_headline(root: Path, params: Params, specs: dict[str, AreaSpec]) -> dict[str, Any]:
    """Write ``metrics/headline.json`` from the stages' detailed metric files."""
    protocols = params.backtest.protocols
    figures = headline(
        specs,
        _read(root, "summary"),
        _read(root, "backtest"),
        _read(root, "promotion"),
        _read(root, "validation"),
        protocol="rolling" if "rolling" in protocols else protocols[0],
    )
    io.write_json(figures, root / HEADLINE)
    n = sum(len(v) for v in figures.values() if isinstance(v, dict))
    skipped = {
        a: v["skipped"] for a, v in figures.items() if isinstance(v, dict) and "skipped" in v
    }
    return {"areas": len(specs), "figures": n + 2} | skipped
