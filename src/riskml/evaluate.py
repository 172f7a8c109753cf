"""Evaluation of each area's model on the test window, beside random and legacy-rule baselines.

Every item accepted in ``[test_start, test_end)`` is scored (and only those: no training or
validation row ever enters a metric). Metrics are reported on three populations, because a
labelled item is one that a control chose, mostly by targeting:

* ``labelled``: test items with a label once every outcome is known (biased towards what the
  legacy rules looked at);
* ``random_control``: test items labelled by a random control, the unbiased sample (small);
* ``truth``: every test item against the simulator's truth (simulated data only).

Methods ranked: ``model`` (probability), ``raw_lightgbm`` (a plain LightGBM on raw declaration
columns, when the scores carry ``score_raw``: see :mod:`riskml.backtest`), ``legacy_rules``
(:func:`riskml.rules.rule_score`, ties broken by a seeded random order), ``random`` (a seeded
random ranking; its expected precision is the prevalence), and on the truth ``oracle``
(ranking by ``true_prob``).

The model evaluated is the area model the train stage wrote (``models/<area>/``, loaded whole:
:class:`riskml.area_model.AreaModel`), named in the metrics file and the scores by its registered
version (``model_version``). For an area with ``rank_by: expected_recovery`` and a recovery
model, the scores file also gets ``expected_recovery`` (:meth:`AreaModel.rank_key`: probability
× predicted recovered duty), the key its candidate lists are ranked by, and the metrics file a
``rank_key_comparison`` block: the same populations and rates, ranking by ``probability`` vs by
``expected_recovery`` (and the ``oracle``), on test-window items only.

:func:`score_frame`, :func:`assemble_scores`, :func:`evaluate_scores` and the plot tables are
pure; :func:`run_evaluate` is the stage entry that reads and writes files and logs to MLflow.
Each area's rankings are sorted once (:func:`riskml.assessment.assess`) and read by its
metrics, rate curves and precision-recall curves (:func:`rate_curves`, :func:`pr_curves`,
:func:`pr_interpolated`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from riskml import compute, io, tracking
from riskml.area_model import score_months, stored_window_scores
from riskml.assessment import (  # the pure side of evaluation, shared with backtest and promote
    LABELLED,
    NO_RECOVERED,
    RANK_KEY_COMPARISON,
    TRUTH,
    Assessed,
    assemble_scores,
    assess,
    metrics_of,
    rank_key_comparison,
    rate_label,
    recovered_available,
)
from riskml.catalog import Catalog
from riskml.config import AreaSpec, Params
from riskml.contract import KEY, RiskmlError
from riskml.io import json_safe, write_plot_csv
from riskml.train import in_window, key_hashes, key_in, split_trained

log = logging.getLogger(__name__)

#: Inspection rates of the plot data: 0.5% to 20% by 0.5%.
PLOT_RATES: tuple[float, ...] = tuple(round(0.005 * i, 3) for i in range(1, 41))
PR_CURVE_POINTS = 200
SCORE_COLUMNS = [
    *KEY,
    "accepted_date",
    "score",
    "rule_score",
    "label",
    "control_kind",
    "recovered",
]


# --- pure computations -------------------------------------------------------------------------


def rank_key_headline(comparison: dict[str, Any]) -> dict[str, Any]:
    """The comparison at the operating rate on the headline population, for the summary."""
    if not comparison.get("available"):
        return {k: comparison[k] for k in ("rank_by", "available", "note")}
    pops = comparison["populations"]
    pop = TRUTH if TRUTH in pops else LABELLED
    key = comparison["operating_rate"]
    out: dict[str, Any] = {"population": pop, "rate": key}
    for method, mblock in pops[pop].get("methods", {}).items():
        m = mblock["rates"].get(key)
        if m is not None:
            out[method] = {k: m.get(k) for k in ("precision", "recall", "revenue_share")}
    return out


def rate_curve_table(
    scores: pd.DataFrame,
    spec: AreaSpec,
    *,
    seed: int,
    rates: tuple[float, ...] = PLOT_RATES,
    revenue_unavailable: str | None = None,
) -> pd.DataFrame:
    """Long table for ``dvc plots``: rate, method, population, precision, recall, revenue_share."""
    assessed = assess(scores, spec, seed=seed, revenue_unavailable=revenue_unavailable)
    return rate_curves(assessed, rates)


def rate_curves(assessed: Assessed, rates: tuple[float, ...] = PLOT_RATES) -> pd.DataFrame:
    """:func:`rate_curve_table` of the rankings ``assessed`` (:func:`riskml.assessment.assess`):
    the same figures as the metrics file's at a rate both hold."""
    rows = []
    for pop, block in metrics_of(assessed, list(rates)).items():
        for method, mblock in block.get("methods", {}).items():
            for rate in rates:
                m = mblock["rates"][rate_label(rate)]
                rows.append(
                    {
                        "rate": rate,
                        "method": method,
                        "population": pop,
                        "precision": m["precision"],
                        "recall": m["recall"],
                        "revenue_share": m.get("revenue_share"),
                    }
                )
    return pd.DataFrame(
        rows, columns=["rate", "method", "population", "precision", "recall", "revenue_share"]
    )


def method_columns(curves: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One column per method (rate as x) for ``dvc plots``, on the headline population: the truth
    of every item when known, else the labelled rows."""
    pops = set(curves["population"])
    pop = TRUTH if TRUTH in pops else "labelled"
    block = curves[curves["population"] == pop]
    wide = block.pivot_table(index="rate", columns="method", values=metric, dropna=False)
    return wide.reset_index().rename_axis(columns=None)


def pr_curve_table(
    scores: pd.DataFrame, spec: AreaSpec, *, seed: int, max_points: int = PR_CURVE_POINTS
) -> pd.DataFrame:
    """Precision-recall curves (at most ``max_points`` per curve): population, method, recall,
    precision."""
    return pr_curves(assess(scores, spec, seed=seed), max_points=max_points)


def pr_curves(assessed: Assessed, *, max_points: int = PR_CURVE_POINTS) -> pd.DataFrame:
    """:func:`pr_curve_table` of the rankings ``assessed`` (:func:`riskml.assessment.assess`)."""
    parts = []
    for pop, prank in assessed.populations.items():
        if not prank.n or prank.positives == 0:
            continue
        for method, ranking in prank.rankings.items():
            precision, recall = ranking.precision_recall_curve()
            keep = np.unique(
                np.linspace(0, len(recall) - 1, min(max_points, len(recall))).round().astype(int)
            )
            parts.append(
                pd.DataFrame(
                    {
                        "population": pop,
                        "method": method,
                        "recall": recall[keep],
                        "precision": precision[keep],
                    }
                )
            )
    cols = ["population", "method", "recall", "precision"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


#: Recall grid of the interpolated precision-recall table (``dvc plots`` needs one x column).
RECALL_GRID: tuple[float, ...] = tuple(round(0.01 * i, 2) for i in range(101))
CALIBRATION_BINS = 10


def pr_interpolated_table(scores: pd.DataFrame, spec: AreaSpec, *, seed: int) -> pd.DataFrame:
    """Interpolated precision (best precision at recall >= r) on :data:`RECALL_GRID`, one column
    per method, on the headline population (truth when known, else labelled rows)."""
    return pr_interpolated(assess(scores, spec, seed=seed))


def pr_interpolated(assessed: Assessed) -> pd.DataFrame:
    """:func:`pr_interpolated_table` of the rankings ``assessed``
    (:func:`riskml.assessment.assess`)."""
    pop = TRUTH if TRUTH in assessed.populations else LABELLED
    prank = assessed.populations[pop]
    grid = np.array(RECALL_GRID)
    out = pd.DataFrame({"recall": grid})
    if not prank.n or prank.positives == 0:
        return out
    for method, ranking in prank.rankings.items():
        precision, recall = ranking.precision_recall_curve()
        # recall is decreasing, so the points with recall >= r are a prefix: the best
        # precision among them is a running max from the start.
        best = np.maximum.accumulate(precision)
        last = len(recall) - 1 - np.searchsorted(recall[::-1], grid, side="left")
        out[method] = best[np.clip(last, 0, None)]
    return out


def calibration_table(scores: pd.DataFrame, *, bins: int = CALIBRATION_BINS) -> pd.DataFrame:
    """Reliability curve of the model: mean predicted probability per score decile against the
    observed offence rate on the truth (every item, when known) and on the labelled rows."""
    score = scores["score"].to_numpy(float)
    ranks = pd.Series(score).rank(method="first").to_numpy()
    b = np.minimum((ranks - 1) * bins // max(len(score), 1), bins - 1).astype(int)
    frame = pd.DataFrame({"bin": b, "predicted": score})
    frame["label"] = scores["label"].to_numpy(float)
    if "offence" in scores.columns:
        frame["offence"] = scores["offence"].astype("Float64").to_numpy(float, na_value=np.nan)
    grouped = frame.groupby("bin")
    out = pd.DataFrame({"predicted": grouped["predicted"].mean()})
    if "offence" in frame.columns:
        out["observed_truth"] = grouped["offence"].mean()
    out["observed_labelled"] = grouped["label"].mean()
    out["n_labelled"] = grouped["label"].count()
    out["perfect"] = out["predicted"]
    return out.reset_index(drop=True)


def plot_pngs(
    curves: pd.DataFrame, pr: pd.DataFrame, calibration: pd.DataFrame, spec: AreaSpec, folder: Path
) -> list[Path]:
    """PNG figures (matplotlib, Agg): precision and revenue share against inspection rate,
    interpolated precision-recall curves, calibration. Returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    pop = TRUTH if TRUTH in set(curves["population"]) else LABELLED
    for metric in ("precision", "revenue_share"):
        wide = method_columns(curves, metric)
        fig, ax = plt.subplots(figsize=(6, 4))
        for col in wide.columns.drop("rate"):
            ax.plot(wide["rate"], wide[col], label=col)
        ax.axvline(spec.operating_rate, color="grey", linestyle=":", linewidth=1)
        ax.set(xlabel="inspection rate", ylabel=f"{metric} ({pop})", title=f"{spec.name}: {metric}")
        ax.legend()
        paths.append(_save(fig, folder / f"{metric}_at_rate.png"))
    fig, ax = plt.subplots(figsize=(6, 4))
    for col in pr.columns.drop("recall"):
        ax.plot(pr["recall"], pr[col], label=col)
    ax.set(xlabel="recall", ylabel=f"precision ({pop})", title=f"{spec.name}: precision-recall")
    ax.legend()
    paths.append(_save(fig, folder / "pr_curve.png"))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(calibration["predicted"], calibration["perfect"], "k:", label="perfect")
    for col in ("observed_truth", "observed_labelled"):
        if col in calibration.columns:
            ax.plot(calibration["predicted"], calibration[col], "o-", label=col)
    ax.set(
        xlabel="mean predicted probability (score decile)",
        ylabel="observed offence rate",
        title=f"{spec.name}: calibration",
    )
    ax.legend()
    paths.append(_save(fig, folder / "calibration.png"))
    plt.close("all")
    return paths


def _save(fig: Any, path: Path) -> Path:
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    return path


def headline(result: dict[str, Any], spec: AreaSpec) -> dict[str, Any]:
    """Model vs legacy rules vs random at the operating rate, on the truth if any, else labelled."""
    pop = TRUTH if TRUTH in result else LABELLED
    block = result[pop]
    out: dict[str, Any] = {
        "population": pop,
        "n": block["n"],
        "positives": block["positives"],
        "rate": spec.operating_rate,
    }
    key = rate_label(spec.operating_rate)
    for method, mblock in block.get("methods", {}).items():
        if method == "oracle":
            continue
        m = mblock["rates"].get(key)
        if m is None:  # the operating rate is not among the inspection rates
            continue
        out[method] = {
            "precision": m["precision"],
            "recall": m["recall"],
            "revenue_share": m.get("revenue_share"),
            "average_precision": mblock["average_precision"],
        }
    return out


def mlflow_metrics(result: dict[str, Any]) -> dict[str, float]:
    """Flat MLflow metric names, e.g. ``test.truth.model.precision_at_5pct``."""
    out: dict[str, float] = {}
    for pop, block in result.items():
        out[f"test.{pop}.n"] = block["n"]
        out[f"test.{pop}.positives"] = block["positives"]
        for method, mblock in block.get("methods", {}).items():
            prefix = f"test.{pop}.{method}"
            out[f"{prefix}.average_precision"] = mblock["average_precision"]
            for rate, m in mblock["rates"].items():
                suffix = rate.replace("%", "pct")
                for name, value in m.items():
                    if name != "n_selected":
                        out[f"{prefix}.{name}_at_{suffix}"] = value
    return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(v)}


# --- stage entry -------------------------------------------------------------------------------


def _log_test_metrics(
    run_id: str | None,
    result: dict,
    tracking_uri: str,
    area: str,
    pngs: list[Path] = (),
    *,
    ranking: dict | None = None,
) -> bool:
    if not run_id:
        log.warning("%s: the model is not registered; test metrics not logged", area)
        return False
    client = tracking.use_store(tracking_uri)
    try:
        client.get_run(run_id)
    except MlflowException:
        log.warning(
            "%s: MLflow run %s not found in %s; test metrics not logged", area, run_id, tracking_uri
        )
        return False
    # another experiment's run (its model restored from the cache): log beside it, not into it
    run_id = tracking.writable_run(
        client, run_id, Path("."), f"evaluate-{area}", area=area, stage="evaluate"
    )
    now = int(pd.Timestamp.now(tz="UTC").timestamp() * 1000)
    flat = mlflow_metrics(result)
    if ranking:  # e.g. test.rank_key.truth.expected_recovery.revenue_share_at_5pct
        flat |= {f"test.rank_key.{k[5:]}": v for k, v in mlflow_metrics(ranking).items()}
    metrics = [Metric(k, v, now, 0) for k, v in flat.items()]
    for i in range(0, len(metrics), 500):  # under the store's batch limit
        client.log_batch(run_id, metrics=metrics[i : i + 500])
    for png in pngs:
        client.log_artifact(run_id, str(png), artifact_path="evaluation")
    client.set_tag(run_id, "evaluated", "true")
    return True


def scored_period(declarations: pd.DataFrame, split: Any) -> pd.DataFrame:
    """The declarations' items accepted in the test window ``[test_start, test_end)``: the items
    :func:`score_months` scores (the same rule, :func:`riskml.train.in_window`)."""
    return in_window(declarations, split.test_start, split.test_end)


def items_of(table: pd.DataFrame, declarations: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``table`` (e.g. the truth, one row per item and area) whose key is one of
    ``declarations``' items, in ``table``'s order."""
    return table[key_in(table, key_hashes(declarations))]


def evaluate_area(
    root: Path,
    params: Params,
    spec: AreaSpec,
    tables: dict[str, Any],
    tracking_uri: str,
) -> dict[str, Any]:
    """Score, measure and write the files of one area; return its headline."""
    from riskml import registry
    from riskml.labels import build_labels

    log.info("evaluate %s", spec.name)
    model = registry.load_trained(root, spec.name, tracking_uri=tracking_uri)
    reg = model.registration
    split, seed = params.split, params.evaluate.seed
    catalog = Catalog(root)
    window = {"start": split.test_start, "end": split.test_end}
    # the register stage's scores of the window when they are still the model's on these
    # features (one prediction of every test item per pipeline run, not two)
    scored = stored_window_scores(catalog.model(spec.name), model, catalog.features, **window)
    if scored is None:
        scored = score_months(
            model, catalog.features, **window, client=compute.active_client()
        )  # fmt: skip
    else:
        log.info("%s: the test window's scores of the register stage", spec.name)
    if scored.empty:
        raise RiskmlError(
            f"area {spec.name!r}: no item accepted in the test window "
            f"[{split.test_start}, {split.test_end}); check split dates in params.yaml"
        )
    labels = build_labels(tables["declarations"], tables["outcomes"], spec)
    scores = assemble_scores(scored, tables["declarations"], labels, spec, tables["truth"])
    recovered = tables.get("recovered")  # given by run_evaluate: the whole history's
    if recovered is None:
        recovered = recovered_available(tables["outcomes"])
    reason = None if recovered else NO_RECOVERED
    # each method's ranking of each population sorted once: the metrics at the inspection
    # rates, the rate curves and the precision-recall curves all read it
    assessed = assess(scores, spec, seed=seed, revenue_unavailable=reason)
    result = metrics_of(assessed, list(spec.inspection_rates))
    comparison = rank_key_comparison(scores, spec, seed=seed, revenue_unavailable=reason)
    doc = {
        "area": spec.name,
        "test_window": [str(split.test_start), str(split.test_end)],
        "model": {
            "registered_model": getattr(reg, "registered_model", None),
            "version": getattr(reg, "version", None),
            "content_hash": model.content_hash(),
        },
        "populations": result,
    }
    if comparison is not None:
        doc[RANK_KEY_COMPARISON] = comparison
    io.write_json(json_safe(doc), catalog.evaluation(spec.name))
    plots = catalog.evaluation_plots(spec.name)
    curves = rate_curves(assessed)
    write_plot_csv(curves, plots / "precision_at_rate.csv")
    for metric in ("precision", "revenue_share"):
        write_plot_csv(method_columns(curves, metric), plots / f"{metric}.csv")
    write_plot_csv(pr_curves(assessed), plots / "pr_curve.csv")
    pr = pr_interpolated(assessed)
    del assessed
    calibration = calibration_table(scores)
    write_plot_csv(pr, plots / "pr_interpolated.csv")
    write_plot_csv(calibration, plots / "calibration.csv")
    pngs = plot_pngs(curves, pr, calibration, spec, plots)
    scores["model_version"] = (
        model.describe() if reg is None else (f"{reg.registered_model} v{reg.version}")
    )
    io.write_partitioned(scores, catalog.scores(spec.name))
    logged = _log_test_metrics(
        getattr(reg, "run_id", None),
        result,
        tracking_uri,
        spec.name,
        pngs,
        ranking=(comparison or {}).get("populations"),
    )
    head = headline(result, spec)
    if comparison is not None:
        head[RANK_KEY_COMPARISON] = rank_key_headline(comparison)
    head["mlflow_logged"] = logged
    return head


def run_evaluate(
    root: Path,
    params: Params,
    specs: dict[str, AreaSpec],
    *,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Stage ``riskml evaluate``: every area's test metrics, plot data, scores and summary.

    Reads ``models/<area>/``, ``data/features``,
    the validated declarations and outcomes and, when present, the simulator's truth
    (:class:`riskml.catalog.Catalog` names each path). Writes ``metrics/areas/<area>.json``,
    ``metrics/summary.json``, the plot data in ``plots/evaluation/<area>/`` and
    ``data/scores/<area>/`` (by month), and logs the test metrics to each area's training run.
    """
    root = Path(root).resolve()
    uri = tracking_uri or tracking.default_tracking_uri(root)
    from riskml.area_model import AreaModel

    catalog = Catalog(root)
    specs, skipped = split_trained(root, specs)
    for area in specs:  # fail before any work when a model is missing
        AreaModel.load(catalog.model(area))
    truth = catalog.truth()
    # the scored items' rows only: each declaration's labels, rule score and truth depend on
    # its own rows, so the test window's rows give the same scores file and metrics as the
    # whole tables, with memory the window's items instead of the history's (tests/test_evaluate.py)
    months = io.months_overlapping(
        catalog.declarations, params.split.test_start, params.split.test_end
    )
    window = scored_period(io.read_dataset(catalog.declarations, months=months), params.split)
    # outcomes and truth are stored by their item's acceptance month: the window's months hold
    # every row of the window's items (an older project's single file: all rows, same result)
    tables = {
        "declarations": window,
        "outcomes": io.read_dataset(catalog.outcomes, months=months),
        "truth": None if truth is None else items_of(io.read_dataset(truth, months=months), window),
        # whether the source records recovered duties at all: the history's, not the window's
        "recovered": recovered_available(io.read_dataset(catalog.outcomes, ["additional_duty"])),
    }
    # compute.backend dask: each month of the test window is scored on the cluster
    with compute.running_on(params.compute):
        summary = {a: evaluate_area(root, params, spec, tables, uri) for a, spec in specs.items()}
    for area, record in skipped.items():  # not trained: the reason instead of figures
        log.info("evaluate %s %s", area, record["reason"])
        summary[area] = {"skipped": record["reason"], **_skip_facts(record)}
        io.write_json(json_safe({"area": area, **summary[area]}), catalog.evaluation(area))
    io.write_json(json_safe(summary), catalog.evaluation_summary)
    return {area: _short(head) for area, head in summary.items()}


def _skip_facts(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record[k] for k in ("positives", "needed") if k in record}


def _short(head: dict[str, Any]) -> dict[str, Any] | str:
    """One line per area for the CLI: precision at the operating rate per method."""
    if "skipped" in head:  # the CLI prints "drugs=skipped: 3 positives, need 20"
        return head["skipped"]
    out: dict[str, Any] = {"on": head["population"], "n": head["n"], "rate": head["rate"]}
    for method in ("model", "legacy_rules", "random"):
        if method in head:
            out[f"{method}_precision"] = head[method]["precision"]
    return out
