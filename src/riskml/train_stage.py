"""The train and register stages of an area model.

* ``riskml train --area A`` fits the area's estimator (:func:`fit_estimator`: the classifier(s),
  revenue's recovery regression, the recovery ratio, calibration and fingerprint) and writes it
  without any list policy to ``models/estimators/<area>/`` (``model.txt``, ``recovery.txt``,
  ``estimator.json``). It reads no ``recovery_exponent`` and no operating rate.
* ``riskml register --area A`` binds the area's list policy to that estimator without refitting
  it (:func:`bind_policy`: ``rank_by``, ``recovery_exponent`` and the operating threshold, the
  rank key at ``evaluation.operating_rate`` of the test window), registers the whole area model
  in MLflow once per content (:func:`riskml.registry.register`: alias ``challenger``;
  ``champion`` too for the first version) and writes ``models/<area>/{model.txt,
  recovery.txt, model.json, model_card.md, registration.json}``. The model card is also the
  registered version's description. The test window's scores it computed for the threshold
  stay beside them (``window_scores/``, :func:`riskml.area_model.write_window_scores`): the
  evaluate stage reads them instead of scoring every test item again.

An edit of the list policy therefore reruns the register stage (seconds), never a training: the
new version holds the same estimator (same ``estimator_hash``) under the new key.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from riskml import compute, io, registry
from riskml.area_model import (
    CARD_FILE,
    REGISTRATION_FILE,
    AreaModel,
    duties_paid_of,
    recovery_ratio,
    score_frame,
    score_months,
    write_window_scores,
)
from riskml.catalog import Catalog
from riskml.config import (
    AreaSpec,
    Params,
    SplitParams,
    area_train_params,
    describe_overrides,
    train_overrides,
)
from riskml.contract import KEY, RiskmlError
from riskml.fairness import check_protected
from riskml.train import (
    SIGNATURE_SAMPLE,
    SKIP_FILE,
    _stage_inputs,
    feature_columns,
    in_window,
    label_support,
)

log = logging.getLogger(__name__)

# --- the train stage: fit the area model, register it, write models/<area>/ -------------------


def _run_params(model: Any, spec: AreaSpec):
    facts = model.facts_
    out: dict[str, Any] = {f"train.{k}": v for k, v in facts["train_params"].items()}
    out.update({f"split.{k}": v for k, v in facts["split"].items()})
    out.update(
        {
            "area": spec.name,
            "area.detectable_by": ",".join(spec.detectable_by),
            "area.exclude_features": ",".join(spec.exclude_features) or "none",
            "area.rank_by": model.rank_by,
            "area.recovery_exponent": model.recovery_exponent,
            "area.operating_rate": spec.operating_rate,
            "estimator_hash": model.estimator_hash(),
            "lgb.min_child_samples": facts["lgb_params"]["min_child_samples"],
            "n_features": len(model.feature_names_),
            "split.valid_start_used": facts["valid_window"][0],
        }
    )
    if spec.negative_kinds is not None:  # set: fewer kinds' clean results are negatives
        out["area.negative_kinds"] = ",".join(spec.negative_kinds)
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
    folds = refit.get("tree_folds")
    chosen = "the early-stopped count"
    if folds:
        blocks = ", ".join(f"[{a}, {b})" for a, b in (f["valid"] for f in folds["folds"]))
        chosen = (
            f"the count chosen by {len(folds['folds'])} time-series folds (`train.tree_folds`: "
            f"each trained on the labels before its block {blocks}; {folds['trees']} trees at "
            f"the best pooled out-of-fold average precision, where early stopping alone chose "
            f"{folds['slice_trees']})"
        )
    return [
        f"**Refit on every label** (`train.refit`): after early stopping chose the number of "
        f"trees, the model was refitted on every labelled item of [{start}, {end}) "
        f"({refit['rows']:,} items, {refit['positives']:,} positives) with {refit['trees']} "
        f"trees in all ({chosen}, scaled by the rows gained). The validation "
        "figures above are the early-stopped model's, measured before the refit saw that "
        "slice." + _negative_sampling_card(refit),
        "",
    ]


def _negative_kinds_card(spec: AreaSpec) -> str:
    """The card's sentence on ``training.negative_kinds`` when set; empty otherwise."""
    if spec.negative_kinds is None:
        return ""
    left = [k for k in spec.detectable_by if k not in spec.negative_kinds]
    return (
        f" Training took as negatives only the clean results of {', '.join(spec.negative_kinds)}"
        f" (`training.negative_kinds`): a clean result of {', '.join(left) or 'no other kind'}"
        " was no label; the test window's labelled rows keep every kind's."
    )


def _negative_sampling_card(refit: dict[str, Any]) -> str:
    """The card's sentence on ``train.max_training_rows`` when it bound the refit
    (:func:`riskml.train.negative_sampling`); empty otherwise."""
    if "sampled_rows" not in refit:
        return ""
    return (
        f" Above `train.max_training_rows` the fits keep every positive and a share of the "
        f"negatives: the refit was grown on {refit['sampled_rows']:,} of those items, each "
        f"negative kept with probability {refit['negative_rate']:.4f} and weighted by its "
        "inverse (unbiased probabilities)."
    )


def model_card(model: Any, spec: AreaSpec, registration: Any) -> str:
    """A short Markdown card: what the model predicts, on which data, how well, and which
    registered version it is (also the version's description in the MLflow registry). The
    training figures come from the estimator's facts, the policy from the model."""
    facts = model.facts_
    train_start, t = facts["split"]["train_start"], facts["train_params"]
    randomised = ", extremely randomised (random split thresholds)" if t.get("extra_trees") else ""
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
            f"before {facts['labels_known_before']} count." + _negative_kinds_card(spec),
            "",
            "## Data",
            "",
            "| window | dates | labelled items | positives |",
            "|---|---|---|---|",
            f"| train | [{train_start}, {vs}) | {facts['n_train']:,} | "
            f"{facts['n_train_positives']:,} |",
            f"| validation (early stopping) | [{vs}, {facts['labels_known_before']}) | "
            f"{facts['n_valid']:,} | {facts['n_valid_positives']:,} |",
            "",
            "Labelled items are the controlled ones, chosen mostly by targeting: they are not a "
            "random sample, see `metrics/` for the random-control and test-window figures. "
            f"Training-data fingerprint: `{model.fingerprint_[:16]}`.",
            "",
            "## Model",
            "",
            f"LightGBM binary classifier, {len(model.feature_names_)} features, "
            f"{facts['best_iteration']} trees (best iteration), learning rate "
            f"{t['learning_rate']}, {t['num_leaves']} leaves{randomised}, min_child_samples "
            f"{facts['lgb_params']['min_child_samples']}, seed {t['seed']}; no class "
            "re-weighting, "
            "no recalibration (the calibration record in `model.json` is measured on the "
            "early-stopping slice)." + _sampling_card(facts["lgb_params"], t),
            "",
            *_refit_card(facts.get("refit")),
            f"Validation average precision: {ap:.4f} (prevalence {prevalence:.4f}).",
            "",
            f"Settings: {facts['settings']}.",
            "",
            *_pretrain_card(facts.get("pretrain"), facts["labels_known_before"]),
            *_recovery_card(model, spec),
            *_threshold_card(model),
            f"MLflow: registered model `{reg.registered_model}` version {reg.version} (run "
            f"`{reg.run_id}`, content hash `{reg.content_hash[:16]}`, estimator "
            f"`{model.estimator_hash()[:16]}`: the same for every list policy bound to this "
            "training).",
            "",
        ]
    )


def _sampling_card(lgb: dict[str, Any], t: dict[str, Any]) -> str:
    """The model card's sentence on the rows each tree saw when ``train.max_rows_per_tree``
    bound (:func:`riskml.train.row_sampling`); empty otherwise."""
    if lgb.get("data_sample_strategy") != "goss":
        return ""
    return (
        f" Each tree was grown on about {t['max_rows_per_tree']:,} of the training rows "
        "(`train.max_rows_per_tree`: gradient-based one-side sampling, the rows of largest "
        "gradient and a random share of the others weighted up)."
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
        f"Ranking key: {model.rank_words} (`policy.recovery_exponent` "
        f"{model.recovery_exponent:g} of `pipelines/{spec.name}.yaml`, bound to the trained "
        "models by the register stage: they do not depend on it; the expected recovery shown "
        "to auditors is probability × predicted recovered duty). "
        "The recovered duty comes from a "
        "second LightGBM (gamma regression, `recovery.txt`) trained on the positive rows with a "
        f"recovered amount: {rec.n_train:,} in the train window, {rec.n_valid:,} in the "
        f"validation window ({rec.best_iteration} trees, validation mean absolute error "
        f"{rec.valid_mean_abs_error:,.0f}).",
        "",
    ]


def fit_estimator(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    params: Params,
    spec: AreaSpec,
    *,
    pretrain_labels: pd.DataFrame | None = None,
    declarations: pd.DataFrame | None = None,
    outcomes: pd.DataFrame | None = None,
) -> AreaModel:
    """The train stage's estimator: the :class:`riskml.area_model.AreaModel` fitted on the
    split's windows, with the recovery-ratio fallback (findings known before ``test_start``,
    when ``declarations`` and ``outcomes`` are given), and no list policy bound yet. Its facts
    keep the settings it was trained with (the card and the MLflow run report them)."""
    split = params.split
    train_params = area_train_params(params, spec)
    check_protected(
        feature_columns(features, spec),
        params.fairness.protected_features,  # riskml.fairness: never in a model
        where=f"area {spec.name!r}",
    )
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
        train_params,
        pretrain_labels=pretrain_labels,
        recovery_ratio=ratio,
    )
    model.facts_ |= {
        "train_params": train_params.model_dump(mode="json"),
        "split": {k: str(v) for k, v in split.model_dump().items()},
        "settings": describe_overrides(spec, train_overrides(params, spec)),
    }
    return model


def bind_policy(
    estimator: AreaModel,
    spec: AreaSpec,
    split: SplitParams,
    *,
    features: pd.DataFrame | None = None,
    folder: Path | None = None,
    declarations: pd.DataFrame | None = None,
) -> AreaModel:
    """The area model: ``estimator`` (not refitted) under ``spec``'s list policy (``rank_by``,
    ``recovery_exponent``) with its operating threshold, the rank key at the area's operating
    rate (``evaluation.operating_rate``) of the test window's items: those of the features
    dataset ``folder``, scored month by month, or of the frame ``features``
    (:func:`bind_policy_scored`)."""
    return bind_policy_scored(
        estimator, spec, split, features=features, folder=folder, declarations=declarations
    )[0]


def bind_policy_scored(
    estimator: AreaModel,
    spec: AreaSpec,
    split: SplitParams,
    *,
    features: pd.DataFrame | None = None,
    folder: Path | None = None,
    declarations: pd.DataFrame | None = None,
) -> tuple[AreaModel, pd.DataFrame]:
    """:func:`bind_policy`, and the window's scores it computed for the threshold (the evaluate
    stage's :func:`riskml.area_model.score_frame` columns and ``rank_key``), which
    :func:`run_register` keeps with the model for the evaluate stage. The items of the
    features dataset ``folder`` (:func:`riskml.area_model.score_months`, the evaluate stage's
    month loop) or of the frame ``features``."""
    model = estimator.with_policy(spec.rank_by, spec.recovery_exponent)
    window = {"start": split.test_start, "end": split.test_end}
    if folder is not None:
        keyed = score_months(model, folder, **window, rank_key=True, declarations=declarations)
    elif features is not None:
        rows = in_window(features, **window)
        paid = duties_paid_of(rows, declarations)
        keyed = score_frame(model, rows, **window, rank_key=True, duties_paid=paid)
    else:
        raise ValueError("bind_policy needs the test window's items: features or folder")
    n_picks = int(round(spec.operating_rate * len(keyed)))
    model.set_threshold(keyed, n_picks, keys=keyed["rank_key"].to_numpy())
    return model, keyed


def signature_sample(model: AreaModel, folder: Path, split: SplitParams, seed: int) -> pd.DataFrame:
    """Rows of the last month before ``split.test_start`` (the model's columns) for the MLflow
    signature and input example: one partition read, not the train window."""
    months = io.months_overlapping(folder, split.train_start, split.test_start)
    if not months:
        return pd.DataFrame(columns=model.feature_names_)
    rows = io.read_partitioned(folder, months=months[-1:], columns=model.feature_names_)
    return rows.sample(min(SIGNATURE_SAMPLE, len(rows)), random_state=seed)


def register_area_model(
    model: AreaModel,
    sample: pd.DataFrame,
    root: Path,
    params: Params,
    spec: AreaSpec,
    *,
    tracking_uri: str | None = None,
    window_scores: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Register the bound area model in MLflow once per content
    (:func:`riskml.registry.register`; ``sample``: rows of the model's features for the
    signature and input example) and write ``models/<area>/``: the model's files, its card and
    ``registration.json``, and ``window_scores``, the test window's scores of
    :func:`bind_policy_scored`, for the evaluate stage
    (:func:`riskml.area_model.write_window_scores`); return a summary."""
    root = Path(root).resolve()
    facts = model.facts_
    reg = registry.register(
        model,
        root=root,
        experiment=params.mlflow.experiment,
        run_params=_run_params(model, spec),
        run_metrics=_run_metrics(model),
        card=lambda r: model_card(model, spec, r),
        tracking_uri=tracking_uri,
        sample=sample,
    )
    folder = Catalog(root).model(spec.name)
    if folder.exists():  # files of an earlier model (or format) must not outlive it
        shutil.rmtree(folder)
    model.save(folder)
    io.write_text(model_card(model, spec, reg), folder / CARD_FILE)
    record = reg.as_dict()
    record.pop("aliases")  # aliases move; the version of this content does not
    record.pop("reused")
    io.write_json(record | {"estimator_hash": model.estimator_hash()}, folder / REGISTRATION_FILE)
    if window_scores is not None and len(window_scores) and "score" in window_scores.columns:
        write_window_scores(
            window_scores, folder, model, Catalog(root).features,
            start=params.split.test_start, end=params.split.test_end,
        )  # fmt: skip
    return {
        "area": spec.name,
        "rank_key": model.rank_words,
        "threshold": model.threshold_,
        "best_iteration": facts["best_iteration"],
        "valid_average_precision": round(facts["valid_average_precision"], 4),
        "run_id": reg.run_id,
        "version": reg.version,
        "reused_version": reg.reused,
        "aliases": list(reg.aliases),
        "estimator_hash": model.estimator_hash()[:16],
        "model_dir": str(folder),
    }


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
) -> dict[str, Any]:
    """Both stages in one call on frames in memory: :func:`fit_estimator`,
    :func:`bind_policy`, :func:`register_area_model`."""
    estimator = fit_estimator(
        features, labels, params, spec, pretrain_labels=pretrain_labels,
        declarations=declarations, outcomes=outcomes,
    )  # fmt: skip
    model = bind_policy(estimator, spec, params.split, features=features, declarations=declarations)
    window = in_window(features, params.split.train_start, params.split.test_start)
    sample = window.sample(min(SIGNATURE_SAMPLE, len(window)), random_state=params.train.seed)
    return register_area_model(model, sample, root, params, spec, tracking_uri=tracking_uri)


def write_skip_record(folder: Path, area: str, lacking: dict[str, Any]) -> dict[str, Any]:
    """``folder`` holding only ``skipped.json`` (the area, why, positives, needed): the data
    does not support the area, and every later stage skips it and says why."""
    if folder.exists():  # a model of earlier data must not outlive it
        shutil.rmtree(folder)
    record = {"area": area, **lacking}
    io.write_json(record, folder / SKIP_FILE)
    log.info("%s %s", area, record["reason"])
    return {"area": area, "skipped": record["reason"]}


def run_train(area: str, root: Path, params: Params, spec: AreaSpec) -> dict[str, Any]:
    """Stage ``riskml train --area <area>``: read features and outcomes, fit the estimator
    (:func:`fit_estimator`) and write it to ``models/estimators/<area>/``; an area whose labels
    lack positives (:func:`riskml.train.label_support`) is skipped: ``skipped.json`` there says
    why.

    Reads the catalog's features and validated declarations and outcomes under ``root`` (and
    ``pipelines/`` for the specs of a ``first_stage.pool``); labels are built with
    ``known_before=split.test_start``. No list policy, no MLflow: :func:`run_register` follows.
    """
    if spec.name != area:
        raise RiskmlError(f"area {area!r} does not match the spec's name {spec.name!r}")
    root = Path(root).resolve()
    folder = Catalog(root).estimator(area)
    features, labels, pretrain = _stage_inputs(root, params, spec)
    lacking = label_support(features, labels, params.split, area_train_params(params, spec))
    if lacking is not None:
        return write_skip_record(folder, area, lacking)
    catalog = Catalog(root)
    # what the recovery ratio reads of the declarations: key and duty paid
    declarations = _declarations(catalog)
    outcomes = io.read_dataset(catalog.outcomes)
    # compute.backend dask: the LightGBM fits run on the cluster (riskml.train._fit_dask)
    with compute.running_on(params.compute):
        model = fit_estimator(
            features, labels, params, spec, pretrain_labels=pretrain,
            declarations=declarations, outcomes=outcomes,
        )  # fmt: skip
    if folder.exists():  # files of an earlier estimator must not outlive it
        shutil.rmtree(folder)
    model.save_estimator(folder)
    facts = model.facts_
    return {
        "area": area,
        "train_rows": facts["n_train"],
        "train_positives": facts["n_train_positives"],
        "valid_rows": facts["n_valid"],
        "valid_positives": facts["n_valid_positives"],
        "best_iteration": facts["best_iteration"],
        "valid_average_precision": round(facts["valid_average_precision"], 4),
        "estimator_hash": model.estimator_hash()[:16],
        "estimator_dir": str(folder),
    }


def run_register(
    area: str,
    root: Path,
    params: Params,
    spec: AreaSpec,
    *,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Stage ``riskml register --area <area>``: bind the area's list policy to the estimator
    the train stage wrote (:func:`bind_policy`, nothing refitted), register the area model
    (once per content) and write ``models/<area>/``. A skipped area's record is carried over
    to ``models/<area>/skipped.json``, which every later stage reads."""
    if spec.name != area:
        raise RiskmlError(f"area {area!r} does not match the spec's name {spec.name!r}")
    root = Path(root).resolve()
    catalog = Catalog(root)
    source = catalog.estimator(area)
    if (source / SKIP_FILE).exists():
        record = json.loads((source / SKIP_FILE).read_text(encoding="utf-8"))
        record.pop("area", None)
        return write_skip_record(catalog.model(area), area, record)
    estimator = AreaModel.load_estimator(source)
    split = params.split
    declarations = in_window(_declarations(catalog), split.test_start, split.test_end)
    model, scored = bind_policy_scored(
        estimator, spec, split, folder=catalog.features, declarations=declarations
    )
    seed = int(model.facts_["train_params"]["seed"])
    sample = signature_sample(model, catalog.features, split, seed)
    return register_area_model(
        model, sample, root, params, spec, tracking_uri=tracking_uri, window_scores=scored
    )


def _declarations(catalog: Catalog) -> pd.DataFrame:
    """What the recovery ratio and the rank key read of the declarations: key, date and duty
    paid (when the data has it)."""
    wanted = [*KEY, "accepted_date", "duties_paid"]
    have = set(io.dataset_columns(catalog.declarations))
    return io.read_dataset(catalog.declarations, columns=[c for c in wanted if c in have])


def train_area_model(
    area: str, root: Path, params: Params, spec: AreaSpec, **register: Any
) -> dict[str, Any]:
    """``riskml train`` then ``riskml register`` for one area (what ``dvc repro`` runs as
    ``train@<area>`` and ``register@<area>``); the two summaries in one. ``register``: the
    keyword options of :func:`run_register` (``tracking_uri``), which owns them."""
    # a wrong option fails before the training, not after it
    inspect.signature(run_register).bind(area, root, params, spec, **register)
    trained = run_train(area, root, params, spec)
    return trained | run_register(area, root, params, spec, **register)
