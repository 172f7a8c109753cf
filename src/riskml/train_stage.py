"""The train stage (``riskml train --area A``): fit the area's
:class:`~riskml.area_model.AreaModel`, register it in MLflow once per content
(:func:`riskml.registry.register`: alias ``challenger``; ``champion`` too for the first
version) and write ``models/<area>/{model.txt, recovery.txt, model.json, model_card.md,
registration.json}``. The model card is also the registered version's description.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskml import compute, io, registry
from riskml.area_model import CARD_FILE, REGISTRATION_FILE, AreaModel, recovery_ratio
from riskml.catalog import Catalog
from riskml.config import (
    AreaSpec,
    Params,
    SplitParams,
    TrainParams,
    area_train_params,
    describe_overrides,
    train_overrides,
)
from riskml.contract import KEY, RiskmlError
from riskml.fairness import check_protected
from riskml.train import (
    SIGNATURE_SAMPLE,
    _keyed,
    _stage_inputs,
    feature_columns,
    in_window,
    label_support,
    model_dir,
)

log = logging.getLogger(__name__)

# --- the train stage: fit the area model, register it, write models/<area>/ -------------------


def _run_params(model: Any, spec: AreaSpec, split: SplitParams, params: TrainParams):
    facts = model.facts_
    out: dict[str, Any] = {f"train.{k}": v for k, v in params.model_dump().items()}
    out.update({f"split.{k}": str(v) for k, v in split.model_dump().items()})
    out.update(
        {
            "area": spec.name,
            "area.detectable_by": ",".join(spec.detectable_by),
            "area.exclude_features": ",".join(spec.exclude_features) or "none",
            "area.rank_by": spec.rank_by,
            "area.recovery_exponent": spec.recovery_exponent,
            "area.operating_rate": spec.operating_rate,
            "lgb.min_child_samples": facts["lgb_params"]["min_child_samples"],
            "n_features": len(model.feature_names_),
            "split.valid_start_used": facts["valid_window"][0],
        }
    )
    pre = facts.get("pretrain")
    if pre is not None:
        out["first_stage.pool"] = ",".join(pre["pool"])
        out["first_stage.rows"] = "pool findings and the area's own negatives"
        out["first_stage.positive"] = "a finding of any pool area known before split.test_start"
        for key in ("num_leaves", "learning_rate", "min_child_samples", "valid_start"):
            out[f"first_stage.{key}"] = pre[key]
    return out


def _run_metrics(model: Any) -> dict[str, float]:
    facts = model.facts_
    metrics = {
        "best_iteration": facts["best_iteration"],
        "n_train": facts["n_train"],
        "n_train_positives": facts["n_train_positives"],
        "n_valid": facts["n_valid"],
        "n_valid_positives": facts["n_valid_positives"],
        "valid_prevalence": facts["n_valid_positives"] / facts["n_valid"],
    }
    if not math.isnan(facts["valid_average_precision"]):
        metrics["valid_average_precision"] = facts["valid_average_precision"]
    if math.isfinite(model.threshold_):
        metrics["threshold"] = model.threshold_
    if model.calibration_.get("brier") is not None:
        metrics["valid_brier"] = model.calibration_["brier"]
    refit = facts.get("refit")
    if refit:
        metrics["refit_rows"] = refit["rows"]
        metrics["refit_positives"] = refit["positives"]
        metrics["refit_trees"] = refit["trees"]
    pre = facts.get("pretrain")
    if pre is not None:
        for key in ("trees", "n_train", "n_train_positives", "n_valid", "n_valid_positives"):
            metrics[f"first_stage_{key}"] = pre[key]
    if model.recovery_ is not None:
        rec = model.recovery_
        metrics["recovery_n_train"] = rec.n_train
        metrics["recovery_n_valid"] = rec.n_valid
        metrics["recovery_best_iteration"] = rec.best_iteration
        metrics["recovery_valid_mae"] = rec.valid_mean_abs_error
    return metrics


def _refit_card(refit: dict[str, Any] | None) -> list[str]:
    if not refit:
        return []
    start, end = refit["window"]
    return [
        f"**Refit on every label** (`train.refit`): after early stopping chose the number of "
        f"trees, the model was refitted on every labelled item of [{start}, {end}) "
        f"({refit['rows']:,} items, {refit['positives']:,} positives) with {refit['trees']} "
        "trees in all (the early-stopped count scaled by the rows gained). The validation "
        "figures above are the early-stopped model's, measured before the refit saw that "
        "slice.",
        "",
    ]


def model_card(model: Any, spec: AreaSpec, params: Params, registration: Any) -> str:
    """A short Markdown card: what the model predicts, on which data, how well, and which
    registered version it is (also the version's description in the MLflow registry)."""
    s, t = params.split, area_train_params(params, spec)
    facts = model.facts_
    vs = facts["valid_window"][0]
    ap = facts["valid_average_precision"]
    prevalence = facts["n_valid_positives"] / facts["n_valid"]
    reg = registration
    return "\n".join(
        [
            f"# Model card: {spec.title} (`{spec.name}`)",
            "",
            f"**Predicts**: probability that a declaration item holds a {spec.name} offence, "
            f"where a positive is: {spec.positive}.",
            "",
            "**Label**: 1 when a control found an offence of the area, 0 when a control that "
            f"can detect it ({', '.join(spec.detectable_by)}) found none; items never "
            "controlled for the area have no label and were not used. Only results known "
            f"before {facts['labels_known_before']} count.",
            "",
            "## Data",
            "",
            "| window | dates | labelled items | positives |",
            "|---|---|---|---|",
            f"| train | [{s.train_start}, {vs}) | {facts['n_train']:,} | "
            f"{facts['n_train_positives']:,} |",
            f"| validation (early stopping) | [{vs}, {s.test_start}) | "
            f"{facts['n_valid']:,} | {facts['n_valid_positives']:,} |",
            "",
            "Labelled items are the controlled ones, chosen mostly by targeting: they are not a "
            "random sample, see `metrics/` for the random-control and test-window figures. "
            f"Training-data fingerprint: `{model.fingerprint_[:16]}`.",
            "",
            "## Model",
            "",
            f"LightGBM binary classifier, {len(model.feature_names_)} features, "
            f"{facts['best_iteration']} trees (best iteration), learning rate {t.learning_rate}, "
            f"{t.num_leaves} leaves, min_child_samples "
            f"{facts['lgb_params']['min_child_samples']}, seed {t.seed}; no class re-weighting, "
            "no recalibration (the calibration record in `model.json` is measured on the "
            "early-stopping slice).",
            "",
            *_refit_card(facts.get("refit")),
            f"Validation average precision: {ap:.4f} (prevalence {prevalence:.4f}).",
            "",
            f"Settings: {describe_overrides(spec, train_overrides(params, spec))}.",
            "",
            *_pretrain_card(facts.get("pretrain"), facts["labels_known_before"]),
            *_recovery_card(model, spec),
            *_threshold_card(model),
            f"MLflow: registered model `{reg.registered_model}` version {reg.version} (run "
            f"`{reg.run_id}`, content hash `{reg.content_hash[:16]}`).",
            "",
        ]
    )


def _threshold_card(model: Any) -> list[str]:
    basis = model.threshold_basis_
    if not math.isfinite(model.threshold_):
        return []
    return [
        "## Operating threshold",
        "",
        f"A new item is selected when its ranking key reaches {model.threshold_:.6g}: the key "
        f"of the {basis.get('model_picks')}-th of {basis.get('items', 0):,} items of "
        f"{' to '.join(basis.get('period', []))} (the area's operating rate).",
        "",
    ]


def _pretrain_card(pre: dict[str, Any] | None, known_before: Any) -> list[str]:
    if pre is None:
        return []
    return [
        "## First stage (pooled areas)",
        "",
        f"The first {pre['trees']} trees were trained on the findings of any of "
        f"{', '.join(pre['pool'])} known before {known_before} (positives) and this area's own "
        "negatives (items a control able to detect it cleared; a control that cannot detect "
        f"it is no negative): {pre['n_train']:,} items ({pre['n_train_positives']:,} positive) "
        f"in the train window, early stopping from {pre['valid_start']} on {pre['n_valid']:,} "
        f"items ({pre['n_valid_positives']:,} positive); {pre['num_leaves']} leaves, learning "
        f"rate {pre['learning_rate']}, min_child_samples {pre['min_child_samples']}"
        + (
            f"; refitted on all {pre['refit_rows']:,} of them with {pre['refit_trees']} trees"
            if "refit_trees" in pre
            else ""
        )
        + ". The later trees continue from them on this area's own labels. Those areas share "
        "their offenders (front companies, complicit brokers, risky suppliers), which one area's "
        "few findings cannot describe.",
        "",
    ]


def _recovery_card(model: Any, spec: AreaSpec) -> list[str]:
    rec = model.recovery_
    if rec is None:
        return []
    return [
        "## Expected recovery",
        "",
        "Ranking key: probability × predicted recovered duty ** `policy.recovery_exponent` "
        f"of `pipelines/{spec.name}.yaml` (`riskml.select.rank_key`, applied when the lists are "
        "drawn: the trained models do not depend on it; the expected recovery shown to auditors "
        "is probability × predicted recovered duty). "
        "The recovered duty comes from a "
        "second LightGBM (gamma regression, `recovery.txt`) trained on the positive rows with a "
        f"recovered amount: {rec.n_train:,} in the train window, {rec.n_valid:,} in the "
        f"validation window ({rec.best_iteration} trees, validation mean absolute error "
        f"{rec.valid_mean_abs_error:,.0f}).",
        "",
    ]


def fit_area_model(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    params: Params,
    spec: AreaSpec,
    *,
    pretrain_labels: pd.DataFrame | None = None,
    declarations: pd.DataFrame | None = None,
    outcomes: pd.DataFrame | None = None,
    period: Callable[[AreaModel], pd.DataFrame] | None = None,
) -> Any:
    """The train stage's :class:`riskml.area_model.AreaModel`: fitted on the split's windows,
    with the recovery-ratio fallback (findings known before ``test_start``, when
    ``declarations`` and ``outcomes`` are given) and the operating threshold: the rank key at
    the area's operating rate (``evaluation.operating_rate``) of the test window's items.

    ``period``: given the fitted model, the ``accepted_date`` and ``rank_key`` of every item of
    the test window (:func:`period_rank_keys`: month by month from the features dataset);
    without it the test window's items are ``features``' own."""
    split = params.split
    ratio = 0.0
    known = declarations is not None and outcomes is not None
    if spec.rank_by == "expected_recovery" and known and "duties_paid" in declarations.columns:
        ratio = recovery_ratio(
            declarations, outcomes, spec.name, known_before=pd.Timestamp(split.test_start)
        )
    model = AreaModel.for_spec(spec).fit(
        features,
        labels,
        spec,
        split,
        area_train_params(params, spec),
        pretrain_labels=pretrain_labels,
        recovery_ratio=ratio,
    )
    if period is not None:
        keyed = period(model)
        n_picks = int(round(spec.operating_rate * len(keyed)))
        return model.set_threshold(keyed, n_picks, keys=keyed["rank_key"].to_numpy())
    rows = in_window(features, split.test_start, split.test_end)
    n_picks = int(round(spec.operating_rate * len(rows)))
    return model.set_threshold(rows, n_picks, duties_paid=_duties_paid(rows, declarations))


def _duties_paid(rows: pd.DataFrame, declarations: pd.DataFrame | None) -> np.ndarray | None:
    """Each of ``rows``' duty paid (from ``declarations``, by key); None without the column."""
    if declarations is None or "duties_paid" not in declarations.columns:
        return None
    paid = _keyed(rows[KEY]).merge(_keyed(declarations[[*KEY, "duties_paid"]]), on=KEY, how="left")
    return paid["duties_paid"].to_numpy(np.float64, na_value=np.nan)


def period_rank_keys(
    model: AreaModel, folder: Path, split: SplitParams, declarations: pd.DataFrame | None
) -> pd.DataFrame:
    """``accepted_date`` and ``rank_key`` of every item of the test window ``[test_start,
    test_end)`` of the features dataset ``folder``, scored month by month (the model's columns
    only), so that peak memory is one month's items, not the window's."""
    start, end = pd.Timestamp(split.test_start), pd.Timestamp(split.test_end)
    columns = [*KEY, "accepted_date", *model.feature_names_]
    parts = []
    for month in io.months_overlapping(folder, split.test_start, split.test_end):
        rows = io.read_partitioned(folder, months=[month], columns=columns)
        dates = pd.to_datetime(rows["accepted_date"])
        rows = rows[(dates >= start) & (dates < end)]
        key = model.rank_key(rows, duties_paid=_duties_paid(rows, declarations))["rank_key"]
        parts.append(pd.DataFrame({"accepted_date": rows["accepted_date"], "rank_key": key}))
    if not parts:
        return pd.DataFrame({"accepted_date": pd.Series(dtype="M8[ns]"), "rank_key": []})
    return pd.concat(parts, ignore_index=True)


def train_and_register(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    root: Path,
    params: Params,
    spec: AreaSpec,
    *,
    tracking_uri: str | None = None,
    pretrain_labels: pd.DataFrame | None = None,
    declarations: pd.DataFrame | None = None,
    outcomes: pd.DataFrame | None = None,
    period: Callable[[AreaModel], pd.DataFrame] | None = None,
) -> dict[str, Any]:
    """Fit the area model (:func:`fit_area_model`), register it in MLflow once per content
    (:func:`riskml.registry.register`) and write ``models/<area>/``: the model's files, its card
    and ``registration.json``; return a summary."""
    root = Path(root).resolve()
    protected = params.fairness.protected_features  # riskml.fairness: never in a model
    check_protected(feature_columns(features, spec), protected, where=f"area {spec.name!r}")
    model = fit_area_model(
        features, labels, params, spec, pretrain_labels=pretrain_labels,
        declarations=declarations, outcomes=outcomes, period=period,
    )  # fmt: skip
    window = in_window(features, params.split.train_start, params.split.test_start)
    sample = window.sample(min(SIGNATURE_SAMPLE, len(window)), random_state=params.train.seed)
    reg = registry.register(
        model,
        root=root,
        experiment=params.mlflow.experiment,
        run_params=_run_params(model, spec, params.split, area_train_params(params, spec)),
        run_metrics=_run_metrics(model),
        card=lambda r: model_card(model, spec, params, r),
        tracking_uri=tracking_uri,
        sample=sample,
    )
    folder = model_dir(root, spec.name)
    if folder.exists():  # files of an earlier model (or format) must not outlive it
        shutil.rmtree(folder)
    model.save(folder)
    io.write_text(model_card(model, spec, params, reg), folder / CARD_FILE)
    record = reg.as_dict()
    record.pop("aliases")  # aliases move; the version of this content does not
    record.pop("reused")
    io.write_json(record, folder / REGISTRATION_FILE)
    facts = model.facts_
    return {
        "area": spec.name,
        "train_rows": facts["n_train"],
        "train_positives": facts["n_train_positives"],
        "valid_rows": facts["n_valid"],
        "valid_positives": facts["n_valid_positives"],
        "best_iteration": facts["best_iteration"],
        "valid_average_precision": round(facts["valid_average_precision"], 4),
        "run_id": reg.run_id,
        "version": reg.version,
        "reused_version": reg.reused,
        "aliases": list(reg.aliases),
        "model_dir": str(folder),
    }


def write_skip_record(root: Path, area: str, lacking: dict[str, Any]) -> dict[str, Any]:
    """``models/<area>/`` holding only ``skipped.json`` (the area, why, positives, needed): the
    data does not support the area, and every later stage skips it and says why."""
    folder = model_dir(root, area)
    if folder.exists():  # a model of earlier data must not outlive it
        shutil.rmtree(folder)
    record = {"area": area, **lacking}
    io.write_json(record, Catalog(root).skip_record(area))
    log.info("train %s %s", area, record["reason"])
    return {"area": area, "skipped": record["reason"]}


def run_train(
    area: str,
    root: Path,
    params: Params,
    spec: AreaSpec,
    *,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Stage ``riskml train --area <area>``: read features and outcomes, train, register, write
    ``models/<area>/``; an area whose labels lack positives (:func:`riskml.train.label_support`)
    is skipped: ``models/<area>/skipped.json`` says why.

    Reads the catalog's features and validated declarations and outcomes
    under ``root`` (and ``pipelines/`` for the specs of a ``first_stage.pool``); labels are built
    with ``known_before=split.test_start``.
    """
    if spec.name != area:
        raise RiskmlError(f"area {area!r} does not match the spec's name {spec.name!r}")
    root = Path(root).resolve()
    features, labels, pretrain = _stage_inputs(root, params, spec)
    lacking = label_support(features, labels, params.split, area_train_params(params, spec))
    if lacking is not None:
        return write_skip_record(root, area, lacking)
    catalog = Catalog(root)
    # what the recovery ratio and the rank key read of the declarations: key and duty paid
    wanted = [*KEY, "accepted_date", "duties_paid"]
    have = set(io.dataset_columns(catalog.declarations))
    declarations = io.read_parquet(catalog.declarations, columns=[c for c in wanted if c in have])
    outcomes = io.read_parquet(catalog.outcomes)
    split = params.split
    in_period = in_window(declarations, split.test_start, split.test_end)

    def period(model: AreaModel) -> pd.DataFrame:
        return period_rank_keys(model, catalog.features, split, in_period)

    # compute.backend dask: the LightGBM fits run on the cluster (riskml.train._fit_dask)
    with compute.running_on(params.compute):
        return train_and_register(
            features, labels, root, params, spec, tracking_uri=tracking_uri,
            pretrain_labels=pretrain, declarations=declarations, outcomes=outcomes,
            period=period,
        )  # fmt: skip
