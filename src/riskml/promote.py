"""Promotion: the ``champion`` alias moves to the ``challenger`` only when it is better.

``riskml train`` registers each new area model once per content and points ``challenger`` at it
(and ``champion`` when the area has none yet: the first version). ``riskml promote`` then
decides, per area, by scoring the same window (the latest backtest window, read from the
backtest's output ``metrics/backtest/summary.json``) with both registered area models, loaded
whole by version (the challenger: the version of ``models/<area>/``; the champion: the registry's
alias), each ranking the window **by its list's key** (:meth:`AreaModel.rank_key`: probability,
or for revenue probability × predicted recovered duty ** ``recovery_exponent``), and comparing
``promote.metric`` at the area's operating rate (or average precision) on the headline
population (the truth of every item when known, else the labelled rows). The challenger becomes
champion only when ``challenger > champion + promote.margin``.

A challenger that holds the champion's own estimator (same
:meth:`~riskml.area_model.AreaModel.estimator_hash`: nothing was retrained, only the list policy
of ``pipelines/<area>.yaml`` changed, e.g. ``policy.recovery_exponent``) is no contest between
models: it becomes champion, so that the lists follow the policy the parameters state. The gate
is for retrained models, not for the policy its owner sets.

The decision and both figures are written to ``metrics/promotion.json`` (a DVC metric: the
lists, case files and the service use the champion it names, :func:`riskml.registry.list_model`)
and logged as tags and metrics on the challenger's MLflow run; the aliases end in line with the
file (``riskml registry sync`` restores that after a cached ``dvc repro`` or ``dvc exp apply``).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from riskml import io, registry, tracking
from riskml.assessment import LABELLED, TRUTH, assemble_scores, population_rows
from riskml.catalog import Catalog
from riskml.config import AreaSpec, Params
from riskml.contract import KEY, RiskmlError
from riskml.labels import build_labels, with_result_dates
from riskml.metrics import average_precision, metrics_at_rates
from riskml.registry import CHALLENGER, CHAMPION, registered_model_name
from riskml.train import in_window, split_trained

log = logging.getLogger(__name__)

PROMOTION_PATH = registry.PROMOTION_PATH
PROMOTED, KEPT = "promoted", "kept"


@dataclass(frozen=True)
class Window:
    """The test period both models are scored on: the backtest's latest window."""

    start: date
    end: date


def latest_window(catalog: Catalog) -> Window:
    """The latest test window of the backtest's output (``metrics/backtest/summary.json``:
    ``config.windows[-1].test``); a clear error when the backtest has not run."""
    path = catalog.backtest_summary
    if not path.exists():
        raise RiskmlError(f"{path}: not found; run the backtest stage first (`riskml backtest`)")
    windows = json.loads(path.read_text(encoding="utf-8")).get("config", {}).get("windows") or []
    if not windows or len(windows[-1].get("test") or []) != 2:
        raise RiskmlError(f"{path}: no backtest window (config.windows); rerun `riskml backtest`")
    start, end = windows[-1]["test"]
    return Window(date.fromisoformat(start), date.fromisoformat(end))


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


def list_scores(model: Any, tables: dict[str, Any], spec: AreaSpec, window: Window) -> pd.DataFrame:
    """The window's items scored by ``model`` as its candidate list ranks them: ``score`` is
    the list's key (:meth:`riskml.area_model.AreaModel.rank_key`: the probability, or for an
    area ranked by recovery probability × predicted recovered duty ** exponent)."""
    missing = sorted(set(model.feature_names_) - set(tables["features"].columns))
    if missing:
        raise KeyError(", ".join(missing[:5]))
    rows = in_window(tables["features"], window.start, window.end)
    scored = rows[[*KEY, "accepted_date"]].reset_index(drop=True)
    scored["declaration_id"] = scored["declaration_id"].astype("string")
    scored["item_no"] = scored["item_no"].astype("int64")
    paid = None
    if "duties_paid" in tables["declarations"].columns:
        decl = tables["declarations"][[*KEY, "duties_paid"]].astype({"declaration_id": "string"})
        paid = (
            scored[KEY]
            .merge(decl, on=KEY, how="left")["duties_paid"]
            .to_numpy("float64", na_value=np.nan)
        )
    scored["score"] = model.rank_key(rows, duties_paid=paid)["rank_key"].to_numpy()
    return assemble_scores(scored, tables["declarations"], tables["labels"], spec, tables["truth"])


def promote_area(
    root: Path,
    spec: AreaSpec,
    params: Params,
    tables: dict[str, Any],
    window: Window,
    client: mlflow.MlflowClient,
) -> dict[str, Any]:
    """Compare the area's challenger (the version the train stage registered,
    ``models/<area>/registration.json``) with its champion (the registry's alias) on
    ``window``, each ranking the window as its list would; move ``champion`` when the challenger
    wins by the margin; log the decision on the challenger's run."""
    name = registered_model_name(spec.name)
    trained = registry.local_registration(root, spec.name)
    challenger = str(trained.get("version") or "")
    if not challenger:
        raise RiskmlError(
            f"{Catalog(root).model(spec.name)}/registration.json: not found; train the area first "
            f"(`riskml train --area {spec.name}`)"
        )
    registry.resolve(client, spec.name, version=challenger)  # train the area first, else
    champion = registry.aliases(client, name).get(CHAMPION)
    client.set_registered_model_alias(name, CHALLENGER, challenger)
    metric, margin = params.promote.metric, params.promote.margin
    out: dict[str, Any] = {
        "registered_model": name,
        "metric": metric,
        "ranked_by": "the list's key (probability × predicted recovered duty ** "
        f"{spec.recovery_exponent:g})"
        if spec.rank_by == "expected_recovery"
        else "the list's key (probability)",
        "margin": margin,
        "window": [str(window.start), str(window.end)],
        "challenger_version": challenger,
        "challenger_content_hash": trained.get("content_hash"),
        "champion_version_before": champion,
    }
    if champion is None or champion == challenger:
        client.set_registered_model_alias(name, CHAMPION, challenger)
        out |= {
            "decision": KEPT if champion else PROMOTED,
            "reason": "the challenger is already the champion (same content)"
            if champion
            else "no champion yet: the challenger becomes champion",
            "challenger_value": None,
            "champion_value": None,
        }
    else:
        uri = client.tracking_uri
        chal = registry.load(root, spec.name, version=challenger, tracking_uri=uri)
        chal_value, pop = window_metric(list_scores(chal, tables, spec, window), spec, metric)
        same_estimator = False
        try:
            champ = registry.load(root, spec.name, version=champion, tracking_uri=uri)
            same_estimator = champ.estimator_hash() == chal.estimator_hash()
            champ_scores = list_scores(champ, tables, spec, window)
        except KeyError as exc:
            champ_value, decision = float("nan"), PROMOTED
            reason = f"the champion needs feature(s) the pipeline no longer builds ({exc})"
        except RiskmlError as exc:
            champ_value, decision = float("nan"), PROMOTED
            reason = f"the champion cannot be loaded ({exc})"
        else:
            champ_value, _ = window_metric(champ_scores, spec, metric)
            if same_estimator:
                decision = PROMOTED
                reason = (
                    f"the same trained estimator as the champion v{champion} under the list "
                    f"policy of pipelines/{spec.name}.yaml ({chal.rank_words}): a policy "
                    "change, not a contest between models"
                )
            else:
                decision, reason = decide(chal_value, champ_value, margin=margin)
        if decision == PROMOTED:
            client.set_registered_model_alias(name, CHAMPION, challenger)
        out |= {
            "decision": decision,
            "reason": reason,
            "same_estimator": same_estimator,
            "population": pop,
            "challenger_value": chal_value,
            "champion_value": champ_value,
        }
    out["champion_version_after"] = registry.aliases(client, name).get(CHAMPION)
    _log(client, name, challenger, out)
    return out


def _log(client: mlflow.MlflowClient, name: str, version: str, out: dict[str, Any]) -> None:
    run_id = client.get_model_version(name, version).run_id
    if not run_id or not tracking.may_write_run(client, run_id):
        log.info(
            "%s v%s: its run belongs to another experiment; decision not logged on it",
            name,
            version,
        )
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
    """Stage ``riskml promote``: decide every area on the backtest's latest window (read from
    its output), write ``metrics/promotion.json``."""
    root = Path(root).resolve()
    catalog = Catalog(root)
    client = tracking.open_store(root, tracking_uri)
    window = latest_window(catalog)
    # the latest backtest window's months: what list_scores scores, with its items' declarations,
    # outcomes and truth (these two stored by their item's acceptance month; an older project's
    # single file is read whole: list_scores keeps the window's items either way)
    months = io.months_overlapping(catalog.features, window.start, window.end)
    decl = io.read_dataset(catalog.declarations, months=months)
    outcomes, _ = with_result_dates(
        io.read_dataset(catalog.outcomes, months=months),
        decl,
        delay_days=params.backtest.label_delay_days,
    )
    truth = catalog.truth()
    base = {
        "features": io.read_partitioned(catalog.features, months=months),
        "declarations": decl,
        "truth": None if truth is None else io.read_dataset(truth, months=months),
    }
    specs, skipped = split_trained(root, specs)
    result: dict[str, Any] = {}
    for area, spec in specs.items():
        tables = base | {"labels": build_labels(decl, outcomes, spec)}
        result[area] = promote_area(root, spec, params, tables, window, client)
    for area, record in skipped.items():  # no model: nothing to promote, and why
        log.info("promote %s %s", area, record["reason"])
        result[area] = {"decision": "skipped", "reason": record["reason"]}
    io.write_json(io.json_safe(result), catalog.promotion)
    return {
        area: r["reason"]
        if r["decision"] == "skipped"
        else {
            "decision": r["decision"],
            "champion": r["champion_version_after"],
            "challenger": r["challenger_version"],
        }
        for area, r in result.items()
    }
