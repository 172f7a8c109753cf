"""Promotion: the ``champion`` alias moves to the ``challenger`` only when it is better.

``riskml train`` registers each new model version as ``challenger`` (and as ``champion`` when the
area has none yet: the first version). ``riskml promote`` then decides, per area, by scoring the
same window (the latest backtest window, see :func:`riskml.backtest.backtest_windows`) with both
registered models, ``models:/riskml-<area>@champion`` and ``@challenger``, and comparing the
metric chosen in ``params.yaml`` (``promote.metric`` at the area's operating rate, or average
precision) on the headline population (the truth of every item when known, else the labelled
rows). The challenger becomes champion only when ``challenger > champion + promote.margin``.

The decision and both figures are logged as tags and metrics on the challenger's MLflow run and
written to ``metrics/promotion.json``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from riskml import io, tracking
from riskml.backtest import Window
from riskml.config import AreaSpec, Params
from riskml.contract import RiskmlError
from riskml.evaluate import LABELLED, TRUTH, assemble_scores, population_rows, score_frame
from riskml.labels import build_labels
from riskml.metrics import average_precision, metrics_at_rates
from riskml.train import CHALLENGER, CHAMPION, registered_model_name

log = logging.getLogger(__name__)

PROMOTION_PATH = "metrics/promotion.json"
PROMOTED, KEPT = "promoted", "kept"


def decide(challenger: float, champion: float, *, margin: float) -> tuple[str, str]:
    """``(decision, reason)``: promoted only when ``challenger > champion + margin``.

    An undefined figure (NaN) never promotes.

    Examples
    --------
    >>> decide(0.40, 0.38, margin=0.01)[0]
    'promoted'
    >>> decide(0.385, 0.38, margin=0.01)[0]
    'kept'
    """
    if not (math.isfinite(challenger) and math.isfinite(champion)):
        return KEPT, "a figure is undefined (no positive in the window): champion kept"
    if challenger > champion + margin:
        return PROMOTED, f"challenger {challenger:.4f} > champion {champion:.4f} + margin {margin}"
    return KEPT, f"challenger {challenger:.4f} <= champion {champion:.4f} + margin {margin}"


def window_metric(scores: pd.DataFrame, spec: AreaSpec, metric: str) -> tuple[float, str]:
    """``metric`` at the operating rate (or average precision) of ``scores['score']`` on the
    headline population; returns the figure and the population."""
    pops = population_rows(scores)
    pop = TRUTH if TRUTH in pops else LABELLED
    mask, y, value = pops[pop]
    if not mask.any():
        return float("nan"), pop
    s = scores["score"].to_numpy(float)[mask]
    if metric == "average_precision":
        return average_precision(y[mask], s), pop
    m = metrics_at_rates(y[mask], s, rates=[spec.operating_rate], value=value[mask])
    return float(m["rates"][spec.operating_rate][metric]), pop


def _aliases(client: mlflow.MlflowClient, name: str) -> dict[str, str]:
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        raise RiskmlError(
            f"MLflow registry: no registered model {name!r}; train the area first (`riskml train`)"
        ) from exc
    # The SQLite store returns versions as int, a server as str: normalise to str.
    return {a: str(v) for a, v in model.aliases.items()}


def _load(name: str, alias: str) -> lgb.Booster:
    return mlflow.lightgbm.load_model(f"models:/{name}@{alias}")


def _score(
    booster: lgb.Booster, tables: dict[str, Any], spec: AreaSpec, window: Window
) -> pd.DataFrame:
    names = booster.feature_name()
    missing = sorted(set(names) - set(tables["features"].columns))
    if missing:
        raise KeyError(", ".join(missing[:5]))
    scored = score_frame(booster, tables["features"], names, start=window.start, end=window.end)
    return assemble_scores(scored, tables["declarations"], tables["labels"], spec, tables["truth"])


def promote_area(
    spec: AreaSpec,
    params: Params,
    tables: dict[str, Any],
    window: Window,
    client: mlflow.MlflowClient,
) -> dict[str, Any]:
    """Compare the area's challenger with its champion on ``window``; move ``champion`` when the
    challenger wins by the margin; log the decision on the challenger's run."""
    name = registered_model_name(spec.name)
    aliases = _aliases(client, name)
    challenger = aliases.get(CHALLENGER)
    if challenger is None:
        raise RiskmlError(
            f"MLflow registry: {name} has no {CHALLENGER!r} alias; run `riskml train`"
        )
    champion = aliases.get(CHAMPION)
    metric, margin = params.promote.metric, params.promote.margin
    out: dict[str, Any] = {
        "registered_model": name,
        "metric": metric,
        "margin": margin,
        "window": [str(window.start), str(window.end)],
        "challenger_version": challenger,
        "champion_version_before": champion,
    }
    if champion is None or champion == challenger:
        client.set_registered_model_alias(name, CHAMPION, challenger)
        out |= {
            "decision": KEPT if champion else PROMOTED,
            "reason": "the challenger is already the champion (first version)"
            if champion
            else "no champion yet: the challenger becomes champion",
            "challenger_value": None,
            "champion_value": None,
        }
    else:
        chal_scores = _score(_load(name, CHALLENGER), tables, spec, window)
        chal_value, pop = window_metric(chal_scores, spec, metric)
        try:
            champ_scores = _score(_load(name, CHAMPION), tables, spec, window)
        except KeyError as exc:
            champ_value, decision = float("nan"), PROMOTED
            reason = f"the champion needs feature(s) the pipeline no longer builds ({exc})"
        else:
            champ_value, _ = window_metric(champ_scores, spec, metric)
            decision, reason = decide(chal_value, champ_value, margin=margin)
        if decision == PROMOTED:
            client.set_registered_model_alias(name, CHAMPION, challenger)
        out |= {
            "decision": decision,
            "reason": reason,
            "population": pop,
            "challenger_value": chal_value,
            "champion_value": champ_value,
        }
    out["champion_version_after"] = _aliases(client, name).get(CHAMPION)
    _log(client, name, challenger, out)
    return out


def _log(client: mlflow.MlflowClient, name: str, version: str, out: dict[str, Any]) -> None:
    run_id = client.get_model_version(name, version).run_id
    if not run_id:
        log.warning("%s version %s has no run: decision not logged to MLflow", name, version)
        return
    tags = {
        "promote.decision": out["decision"],
        "promote.reason": out["reason"],
        "promote.metric": out["metric"],
        "promote.window": " to ".join(out["window"]),
        "promote.champion_version_before": str(out["champion_version_before"]),
        "promote.champion_version_after": str(out["champion_version_after"]),
    }
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    client.log_metric(run_id, "promote.margin", out["margin"])
    for key in ("challenger_value", "champion_value"):
        value = out.get(key)
        if value is not None and math.isfinite(value):
            client.log_metric(run_id, f"promote.{key}", float(value))


def run_promote(
    root: Path,
    params: Params,
    specs: dict[str, AreaSpec],
    *,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Stage ``riskml promote``: decide every area, write ``metrics/promotion.json``."""
    from riskml.backtest import backtest_windows, with_result_dates
    from riskml.evaluate import _clean, _read_truth

    root = Path(root).resolve()
    client = tracking.use_store(tracking_uri or tracking.default_tracking_uri(root))
    bt = params.backtest
    window = backtest_windows(params.split, n_windows=bt.n_windows, window_months=bt.window_months)[
        -1
    ]
    decl = io.read_parquet(root / "data/interim/declarations.parquet")
    outcomes, _ = with_result_dates(
        io.read_parquet(root / "data/interim/outcomes.parquet"),
        decl,
        delay_days=bt.label_delay_days,
    )
    base = {
        "features": io.read_parquet(root / "data/features/features.parquet"),
        "declarations": decl,
        "truth": _read_truth(root),
    }
    result = {}
    for area, spec in specs.items():
        tables = base | {"labels": build_labels(decl, outcomes, spec)}
        result[area] = promote_area(spec, params, tables, window, client)
    io.write_json(_clean(result), root / PROMOTION_PATH)
    return {
        area: {
            "decision": r["decision"],
            "champion": r["champion_version_after"],
            "challenger": r["challenger_version"],
        }
        for area, r in result.items()
    }
