"""Rolling-origin backtests: several consecutive test windows, each model trained on its past only.

The windows (``params.yaml`` → ``backtest``) are ``n_windows`` consecutive periods of
``window_months`` months; the last ends at ``split.test_end``. For each window the whole split of
``params.yaml`` is shifted with it (train, early-stopping and test windows keep their lengths),
training labels are those known before the window starts, and the window is then scored and
measured like :mod:`riskml.evaluate` does (three populations: labelled, random control, truth).

Two protocols (``backtest.protocols``):

* ``rolling``: the standard features (``data/features``): outcomes feed the
  profiles once their result date has passed, as in production. Built once, reused by every
  window.
* ``static``: as the published baselines did: features are rebuilt per window with the outcomes
  whose result date is before the end of the window's training period (its ``valid_start``), so
  no outcome of the validation or test period feeds any feature; the model is frozen there too.

Methods, in the same run: ``model`` (the area's LightGBM on the features), ``raw_lightgbm`` (the
same LightGBM settings on raw declaration columns only: numeric columns and simple codes, no
history or profile: :func:`raw_features`), ``legacy_rules``, ``random`` and, on the truth,
``oracle`` (ranking by the simulator's ``true_prob``).

Per area, protocol, population and method: every metric of each window, and their mean, sample
standard deviation, min and max; on the truth, each method's precision and revenue share as a
share of the oracle's (``*_vs_oracle``). The headline figure of each area (precision at its
operating rate on the truth, else on the labelled rows) gets a bootstrap confidence interval per
window and for the mean over windows.

Data without recovered amounts: revenue shares on labelled populations are null with a reason.
Outcomes without result dates: result dates are the acceptance date plus
``backtest.label_delay_days`` (said in the output).

The rolling protocol's first window has the train stage's own split: its model is the train
stage's estimator (``models/estimators/<area>``), read instead of fitted again when its split,
settings and training rows are the window's (:func:`train_stage_model`).

:func:`backtest_windows`, :func:`raw_features`, :func:`score_area_windows` (the windows of one
area trained and scored), :func:`measure_area` (their metrics) and :func:`aggregate_windows` are
pure; :func:`run_backtest_area` (``backtest@<area>``) and :func:`run_backtest_report`
(``backtest_report``) are the stage entries.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskml import assessment, io
from riskml.area_model import ESTIMATOR_FILE, AreaModel, fingerprint
from riskml.catalog import Catalog
from riskml.config import AreaSpec, Params, SplitParams, area_train_params
from riskml.contract import KEY, RiskmlError
from riskml.io import json_safe, write_plot_csv
from riskml.labels import build_labels, negative_kinds, with_result_dates
from riskml.metrics import bootstrap_precision_at_rate
from riskml.train import (
    TooFewPositives,
    TrainedModel,
    feature_columns,
    feature_matrix,
    in_window,
    label_support,
    labelled_rows,
    pool_specs,
    train_area,
    training_labels,
)

log = logging.getLogger(__name__)

ROLLING, STATIC = "rolling", "static"
PROTOCOLS: dict[str, str] = {
    ROLLING: "standard features: outcomes feed the profiles once their result date has passed",
    STATIC: "features rebuilt with the outcomes known at the end of each window's training "
    "period (valid_start): no outcome of the validation or test period feeds any feature",
}
#: Declaration columns of the raw baseline: numbers as declared.
RAW_NUMERIC = (
    "quantity",
    "gross_mass_kg",
    "net_mass_kg",
    "fob_value",
    "cif_value",
    "duty_rate",
    "duties_paid",
)
#: Declaration columns of the raw baseline turned into integer codes (no history).
RAW_CODES = ("office", "procedure", "transport_mode", "origin_country", "departure_country")
STATS = ("mean", "std", "min", "max")


@dataclass(frozen=True)
class Window:
    """One backtest window: its index, test period and the shifted split it trains on."""

    index: int
    split: SplitParams

    @property
    def start(self) -> date:
        return self.split.test_start

    @property
    def end(self) -> date:
        return self.split.test_end

    def describe(self) -> dict[str, Any]:
        s = self.split
        return {
            "window": self.index,
            "train": [str(s.train_start), str(s.valid_start)],
            "early_stopping": [str(s.valid_start), str(s.test_start)],
            "test": [str(s.test_start), str(s.test_end)],
            "labels_known_before": str(s.test_start),
        }


# --- windows and frames ------------------------------------------------------------------------


def _shift(d: date, months: int) -> date:
    return (pd.Timestamp(d) + pd.DateOffset(months=months)).date()


def backtest_windows(split: SplitParams, *, n_windows: int, window_months: int) -> list[Window]:
    """``n_windows`` consecutive test windows of ``window_months`` months, the last ending at
    ``split.test_end``; each window's train and early-stopping periods are ``split``'s, shifted
    so that the test period starts where the window does."""
    if n_windows < 1 or window_months < 1:
        raise RiskmlError("params.yaml: backtest.n_windows and window_months must be >= 1")
    windows = []
    for i in range(n_windows):
        start = _shift(split.test_end, -(n_windows - i) * window_months)
        offset = (start.year - split.test_start.year) * 12 + start.month - split.test_start.month
        if start.day != split.test_start.day:
            raise RiskmlError(
                "params.yaml: split.test_start and split.test_end must fall on the same day of "
                "the month for the backtest windows to line up"
            )
        shifted = SplitParams(
            train_start=_shift(split.train_start, offset),
            valid_start=_shift(split.valid_start, offset),
            test_start=start,
            test_end=_shift(start, window_months),
        )
        windows.append(Window(i + 1, shifted))
    return windows


def raw_features(declarations: pd.DataFrame) -> pd.DataFrame:
    """Key, ``accepted_date`` and raw model inputs: numeric declaration columns, the preference
    flag, HS chapter/heading/subheading as numbers and the other codes as integer codes.

    No history, profile or reference price: the plain baseline of the published studies.
    """
    d = declarations
    out = pd.DataFrame(
        {
            "declaration_id": d["declaration_id"].astype("string").to_numpy(),
            "item_no": d["item_no"].astype("int64").to_numpy(),
            "accepted_date": pd.to_datetime(d["accepted_date"]).to_numpy(),
        }
    )
    for col in RAW_NUMERIC:
        if col in d.columns:
            out[f"raw_{col}"] = pd.to_numeric(d[col], errors="coerce").astype("float64").to_numpy()
    if "preference_claim" in d.columns:
        pref = d["preference_claim"].astype("boolean")
        out["raw_preference_claim"] = pref.astype("Float64").astype("float64").to_numpy()
    hs = d["hs_code"].astype("string").str.replace(r"\D", "", regex=True)
    for digits in (2, 4, 6):
        code = pd.to_numeric(hs.str[:digits], errors="coerce")
        out[f"raw_hs{digits}"] = code.astype("float64").to_numpy()
    for col in RAW_CODES:
        if col in d.columns:
            # Codes in sorted order of the values: a fixed mapping, no statistic of outcomes.
            codes, _ = pd.factorize(d[col].astype("string"), sort=True)
            out[f"raw_{col}"] = np.where(codes < 0, np.nan, codes).astype("float64")
    return out


def static_features(
    declarations: pd.DataFrame,
    outcomes: pd.DataFrame,
    params: Params,
    specs: dict[str, AreaSpec],
    *,
    cut: date,
    seizures: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Features built with only the outcomes whose result date is before ``cut`` (static
    protocol): no later outcome can feed any feature of any item. Seizure records (reported
    before each item's month) feed the seizure features as in the rolling protocol."""
    from riskml.features import build_features

    known = (pd.to_datetime(outcomes["result_date"]) < pd.Timestamp(cut)).fillna(False)
    return build_features(
        declarations,
        outcomes[known.to_numpy(bool)],
        params.features,
        specs=specs,
        seizures=seizures,
    )


def _positions(frame: pd.DataFrame, declarations: pd.DataFrame) -> np.ndarray:
    """Row position in ``frame`` of each declaration item (same key), -1 when absent."""
    index = pd.MultiIndex.from_arrays(
        [frame["declaration_id"].astype("string"), frame["item_no"].astype("int64")]
    )
    keys = pd.MultiIndex.from_arrays(
        [declarations["declaration_id"].astype("string"), declarations["item_no"].astype("int64")]
    )
    return index.get_indexer(keys)


# --- one area, one window ----------------------------------------------------------------------


def _train_rows(
    frame: pd.DataFrame, pos: np.ndarray, labelled: np.ndarray, dates: pd.Series, window: Window
) -> pd.DataFrame:
    """The rows of ``frame`` that training can use: ``labelled`` (per declaration item), accepted
    in [train_start, test_start). Passing only those keeps :func:`riskml.train.train_area`
    cheap."""
    s = window.split
    keep = (
        labelled
        & (dates >= pd.Timestamp(s.train_start)).to_numpy()
        & (dates < pd.Timestamp(s.test_start)).to_numpy()
        & (pos >= 0)
    )
    return frame.iloc[pos[keep]]


def _test_rows(frame: pd.DataFrame, window: Window) -> pd.DataFrame:
    d = pd.to_datetime(frame["accepted_date"])
    return frame[(d >= pd.Timestamp(window.start)) & (d < pd.Timestamp(window.end))]


def _window_labels(
    tables: dict[str, Any], spec: AreaSpec, window: Window, params: Params
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The area's training labels for ``window`` as the train stage builds them
    (:func:`riskml.train.training_labels`, known before the window), shared across areas."""
    return training_labels(
        tables["declarations"],
        tables["outcomes"],
        spec,
        tables.get("specs") or {spec.name: spec},
        known_before=window.start,
        cache=tables.setdefault("label_cache", {}),
        unlabelled_share=area_train_params(params, spec).unlabelled_share,
    )


def _window_model(
    rows: pd.DataFrame,
    known: pd.DataFrame,
    pretrain: pd.DataFrame | None,
    spec: AreaSpec,
    window: Window,
    params: Params,
    *,
    cache: dict | None = None,
) -> TrainedModel:
    """The model of one frame for ``window``, trained on ``rows`` (labelled, before the window)
    exactly as the train stage trains the area (:func:`riskml.train.train_area`: first stage
    included when given, recovery regression when ``spec`` ranks by it; ``cache``: the first
    stages already fitted on this frame and window). Every model of a window is trained here."""
    # One thread: OpenMP threads spin-wait when the cores are busy, which made a 2-thread fit of
    # these small models ten times slower than a 1-thread fit on a shared 2-core machine.
    train_params = area_train_params(params, spec).model_copy(
        update={"num_threads": params.backtest.num_threads}
    )
    model = train_area(
        rows,
        known,
        spec,
        window.split,
        train_params,
        pretrain_labels=pretrain,
        first_stage_cache=cache,
        with_recovery=True,
    )
    # Leakage guard: nothing the model learnt from was accepted in its own test window.
    if pd.to_datetime(rows["accepted_date"]).max() >= pd.Timestamp(window.start):
        raise RuntimeError(f"backtest window {window.index}: a training row is not before it")
    return model


#: Train settings that do not change a fitted model: LightGBM's deterministic, column-wise fits
#: give the same trees on any number of threads (the train stage fits on two, the backtest on
#: one: their models of the same window scored every item alike, max difference 0.0, in a
#: default run; tests/test_backtest.py).
MODEL_NEUTRAL_SETTINGS = ("num_threads",)


def train_stage_model(
    estimator: AreaModel | None,
    rows: pd.DataFrame,
    labels: pd.DataFrame,
    pretrain: pd.DataFrame | None,
    spec: AreaSpec,
    window: Window,
    params: Params,
) -> TrainedModel | None:
    """The train stage's model of ``spec``'s area (``estimator``: ``models/estimators/<area>``)
    as ``window``'s model, when it is the very model :func:`_window_model` would fit: the same
    split (train, early-stopping and test start), the same train settings (but
    :data:`MODEL_NEUTRAL_SETTINGS`), the same features, the same training rows, labels and
    first-stage labels (the estimator's :func:`riskml.area_model.fingerprint` of ``rows``
    labelled by ``labels``), trained in this process's way (``compute.backend`` local: a Dask
    fit differs within a tolerance). Else None: the window is trained.

    The rolling protocol's first window is the train stage's split shifted by nothing, so a
    default run fitted the same model twice (four LightGBM fits of a two-stage area)."""
    if estimator is None or params.compute.backend != "local":
        return None
    facts = estimator.facts_
    split = facts.get("split") or {}
    for key in ("train_start", "valid_start", "test_start"):
        if split.get(key) != str(getattr(window.split, key)):
            return None
    settings = area_train_params(params, spec).model_dump(mode="json")
    stored = dict(facts.get("train_params") or {})
    for key in MODEL_NEUTRAL_SETTINGS:
        settings.pop(key, None)
        stored.pop(key, None)
    if stored != settings:
        return None
    names = feature_columns(rows, spec)
    if names != estimator.feature_names_:
        return None
    trained = in_window(labelled_rows(rows, labels), window.split.train_start, window.start)
    if fingerprint(trained, names, pretrain) != estimator.fingerprint_:
        return None
    if pd.to_datetime(rows["accepted_date"]).max() >= pd.Timestamp(window.start):
        raise RuntimeError(f"backtest window {window.index}: a training row is not before it")
    return TrainedModel(
        area=spec.name,
        booster=estimator.classifier_,
        feature_names=names,
        best_iteration=int(facts["best_iteration"]),
        n_train=int(facts["n_train"]),
        n_train_positives=int(facts["n_train_positives"]),
        n_valid=int(facts["n_valid"]),
        n_valid_positives=int(facts["n_valid_positives"]),
        valid_average_precision=float(facts["valid_average_precision"]),
        lgb_params=dict(facts.get("lgb_params") or {}),
        valid_start=date.fromisoformat(facts["valid_window"][0]),
        pretrain=facts.get("pretrain"),
        recovery=estimator.recovery_,
        refit=facts.get("refit"),
    )


def window_scores(
    frames: dict[str, pd.DataFrame],
    positions: dict[str, np.ndarray],
    tables: dict[str, Any],
    spec: AreaSpec,
    window: Window,
    params: Params,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Train the area's model (and the raw baseline) for ``window`` and score its test items.

    ``frames``: ``features`` (the protocol's) and ``raw`` (:func:`raw_features`), with their row
    positions per declaration in ``positions``. ``tables["specs"]``: the specs of every area a
    ``first_stage.pool`` names (:func:`riskml.train.pool_specs`). Returns the scored test items
    (as :func:`riskml.evaluate.assemble_scores`, plus ``score_raw``) and facts on the training.
    """
    decl, dates = tables["declarations"], tables["dates"]
    known, pretrain = _window_labels(tables, spec, window, params)
    own = known["label"].notna().to_numpy()
    facts: dict[str, Any] = {}
    scored = None
    cache = tables.setdefault("raw_cache", {})
    for name, frame in frames.items():
        if name == "raw" and (spec.name, window.index) in cache:
            # Raw columns carry no outcome: the raw baseline is the same under every protocol.
            part, facts[name] = cache[(spec.name, window.index)]
            scored = scored.merge(part[[*KEY, "score_raw"]], on=KEY, how="left")
            continue
        if name == "features":
            # The area's model, trained as the train stage trains it (first stage included).
            area_spec, first = spec, pretrain
            labelled = own if first is None else own | first["label"].notna().to_numpy()
        else:
            # The raw baseline stays a plain one-stage LightGBM on every raw column.
            area_spec = spec.model_copy(
                update={"exclude_features": [], "first_stage": None, "rank_by": "probability"}
            )
            first, labelled = None, own
        rows = _train_rows(frame, positions[name], labelled, dates, window)
        model = None
        if name == "features":
            # the train stage's estimator when it is this window's model (the rolling protocol's
            # first window has the train stage's split): read, not fitted again
            model = train_stage_model(
                tables.get("estimator"), rows, known, first, spec, window, params
            )
        reused = model is not None
        if model is None:
            # the areas of a pool share one first stage per window and frame (riskml.train)
            shared = tables.setdefault("first_stage_cache", {}).setdefault(
                (id(frame), window.index), {}
            )
            model = _window_model(rows, known, first, area_spec, window, params, cache=shared)
        test = _test_rows(frame, window)
        part = test[[*KEY, "accepted_date"]].reset_index(drop=True)
        part["declaration_id"] = part["declaration_id"].astype("string")
        part["item_no"] = part["item_no"].astype("int64")
        col = "score" if name == "features" else "score_raw"
        part[col] = model.booster.predict(feature_matrix(test, model.feature_names))
        if name == "features" and spec.rank_by == "expected_recovery":
            # the lists' key needs the recovered-duty regression, trained on the same past
            if model.recovery is not None:
                part["expected_recovery"] = model.recovery.expected(test, part["score"])
                facts["recovery"] = {
                    "n_train": model.recovery.n_train,
                    "trees": model.recovery.best_iteration,
                }
            else:
                facts["recovery"] = {"note": "too few positives with a recovered amount"}
        cols = [c for c in (col, "expected_recovery") if c in part.columns]
        scored = part if scored is None else scored.merge(part[[*KEY, *cols]], on=KEY, how="left")
        facts[name] = {
            "n_train": model.n_train,
            "n_train_positives": model.n_train_positives,
            "n_valid": model.n_valid,
            "n_valid_positives": model.n_valid_positives,
            "best_iteration": model.best_iteration,
            "last_train_date": str(pd.to_datetime(rows["accepted_date"]).max().date()),
        }
        if model.pretrain is not None:
            facts[name]["first_stage"] = model.pretrain
        if reused:
            facts[name]["from_train_stage"] = True  # models/estimators/<area>, not refitted
        if name == "raw":
            cache[(spec.name, window.index)] = (part, facts[name])
    if scored is None or scored.empty:
        raise RiskmlError(
            f"area {spec.name!r}: no item accepted in backtest window [{window.start}, "
            f"{window.end}); check split.test_end and backtest settings in params.yaml"
        )
    scores = assessment.assemble_scores(
        scored, decl, tables["labels"][spec.name], spec, tables["truth"]
    )
    return scores, facts


def _with_oracle_shares(result: dict[str, Any]) -> dict[str, Any]:
    """On the truth, add each method's precision and revenue share as a share of the oracle's."""
    methods = result.get(assessment.TRUTH, {}).get("methods", {})
    oracle = methods.get("oracle")
    if oracle is None:
        return result
    for mblock in methods.values():
        for rate, m in mblock["rates"].items():
            o = oracle["rates"][rate]
            for name in ("precision", "revenue_share"):
                num, den = m.get(name), o.get(name)
                ok = num is not None and den is not None and den > 0 and math.isfinite(num)
                m[f"{name}_vs_oracle"] = num / den if ok else None
    return result


def aggregate_windows(per_window: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, sample std, min and max (and the values) of every metric across windows.

    ``per_window``: results of :func:`riskml.evaluate.evaluate_scores`, one per window. Output:
    population → ``methods`` → method → metric key (``average_precision`` or
    ``<metric>@<rate>``) → ``{mean, std, min, max, values}``; a metric missing or null in every
    window is null with ``values`` all null.
    """
    out: dict[str, Any] = {}
    pops = dict.fromkeys(p for r in per_window for p in r)
    for pop in pops:
        blocks = [r.get(pop, {}) for r in per_window]
        agg: dict[str, Any] = {
            "n": [b.get("n", 0) for b in blocks],
            "positives": [b.get("positives", 0) for b in blocks],
        }
        reason = next(
            (b["revenue_unavailable"] for b in blocks if "revenue_unavailable" in b), None
        )
        if reason:
            agg["revenue_unavailable"] = reason
        methods: dict[str, Any] = {}
        names = dict.fromkeys(m for b in blocks for m in b.get("methods", {}))
        for method in names:
            flats = [_flatten(b.get("methods", {}).get(method) or {}) for b in blocks]
            keys = dict.fromkeys(k for f in flats for k in f)
            methods[method] = {k: summarise([f.get(k) for f in flats]) for k in keys}
        agg["methods"] = methods
        out[pop] = agg
    return out


def _flatten(mblock: dict[str, Any]) -> dict[str, float | None]:
    if not mblock:
        return {}
    flat: dict[str, float | None] = {"average_precision": mblock.get("average_precision")}
    for rate, m in mblock.get("rates", {}).items():
        for name, value in m.items():
            if name != "n_selected":
                flat[f"{name}@{rate}"] = value
    return flat


def summarise(values: list[float | None]) -> dict[str, Any]:
    """``{mean, std, min, max, values}`` of the finite values (std: sample, ddof=1; null with
    fewer than two)."""
    finite = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if finite.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "values": values}
    return {
        "mean": float(finite.mean()),
        "std": float(finite.std(ddof=1)) if finite.size > 1 else None,
        "min": float(finite.min()),
        "max": float(finite.max()),
        "values": values,
    }


# --- one area over every window ----------------------------------------------------------------


def headline_intervals(
    window_scores_: list[pd.DataFrame],
    spec: AreaSpec,
    *,
    seed: int,
    n_boot: int,
    level: float,
    methods: tuple[str, ...] = ("model", "raw_lightgbm", "legacy_rules", "oracle"),
) -> dict[str, Any]:
    """Bootstrap intervals of the headline figure (precision at the operating rate on the truth,
    else on the labelled rows) per window and for the mean over windows, for each method.

    Items are resampled within each window; the interval of the mean averages the windows'
    replicates (same replicate index), so it reflects every window's sampling noise.
    """
    pop = (
        assessment.TRUTH
        if all(assessment.TRUTH in assessment.population_rows(s) for s in window_scores_)
        else assessment.LABELLED
    )
    per_method: dict[str, Any] = {}
    for method in methods:
        windows, reps = [], []
        for i, scores in enumerate(window_scores_):
            ranks = assessment.ranking_scores(scores, seed=seed, area=spec.name)
            if method not in ranks:
                break
            mask, y, _ = assessment.population_rows(scores)[pop]
            if not mask.any():
                break
            ci = bootstrap_precision_at_rate(
                y[mask],
                ranks[method][mask],
                rate=spec.operating_rate,
                n_boot=n_boot,
                level=level,
                seed=seed + i,
            )
            reps.append(ci.pop("replicates"))
            windows.append(ci)
        if len(windows) != len(window_scores_):
            continue
        mean_reps = np.mean(reps, axis=0)
        alpha = (1 - level) / 2
        low, high = np.quantile(mean_reps, [alpha, 1 - alpha])
        per_method[method] = {
            "estimate": float(np.mean([w["estimate"] for w in windows])),
            "low": float(low),
            "high": float(high),
            "windows": windows,
        }
    return {
        "figure": f"precision at {assessment.rate_label(spec.operating_rate)} (operating rate)",
        "population": pop,
        "level": level,
        "n_boot": n_boot,
        "methods": per_method,
    }


def score_area_windows(
    frames: list[dict[str, pd.DataFrame]],
    positions: list[dict[str, np.ndarray]],
    tables: dict[str, Any],
    spec: AreaSpec,
    windows: list[Window],
    params: Params,
) -> dict[str, Any]:
    """One protocol's windows of one area, trained and scored (the expensive part, which reads
    no list policy): ``scores`` (one frame per window kept, :func:`window_scores`), ``windows``
    (each window's description and training facts) and ``left_out`` (windows with too few
    positives, and why).

    ``frames[i]`` / ``positions[i]``: the frames of window ``i`` (see :func:`window_scores`).
    """
    scores_list, facts, excluded = [], [], []
    for i, window in enumerate(windows):
        log.info(
            "backtest %s: window %d/%d (test %s to %s)",
            spec.name, i + 1, len(windows), window.start, window.end,
        )  # fmt: skip
        try:
            scores, fact = window_scores(frames[i], positions[i], tables, spec, window, params)
        except TooFewPositives as exc:
            # reported as such and left out of the means, never a stop of the whole run
            log.info("backtest %s: window %d left out: %s", spec.name, i + 1, exc)
            excluded.append(window.describe() | {"left_out": str(exc)})
            continue
        scores_list.append(scores)
        facts.append(window.describe() | {"training": fact})
    return {"scores": scores_list, "windows": facts, "left_out": excluded}


def measure_area(
    scored: dict[str, Any], spec: AreaSpec, params: Params, *, revenue_unavailable: str | None
) -> dict[str, Any]:
    """The metrics of one protocol's scored windows (:func:`score_area_windows`): per-window
    results, their aggregate, the headline intervals, a long per-window table for plots and,
    for an area ranked by recovery, its list key's figures (``spec.recovery_exponent``: the
    cheap part, which no training precedes)."""
    bt = params.backtest
    results, rows, keys = [], [], []
    for scores, window in zip(scored["scores"], scored["windows"], strict=True):
        result = assessment.evaluate_scores(
            scores, spec, seed=params.evaluate.seed, revenue_unavailable=revenue_unavailable
        )
        _with_oracle_shares(result)
        results.append(result)
        rows.extend(_long_rows(result, window))
        comparison = assessment.rank_key_comparison(
            scores, spec, seed=params.evaluate.seed, revenue_unavailable=revenue_unavailable
        )
        if comparison is not None and comparison.get("available"):
            keys.append(_with_oracle_shares(comparison["populations"]))
    if not results:
        return {"left_out": scored["left_out"]}
    intervals = headline_intervals(
        scored["scores"], spec, seed=bt.seed, n_boot=bt.n_boot, level=bt.ci_level
    )
    out = {
        "windows": scored["windows"],
        "left_out": scored["left_out"],
        "per_window": results,
        "aggregate": aggregate_windows(results),
        "headline": intervals,
        "table": pd.DataFrame(rows),
    }
    if keys and len(keys) == len(results):
        # areas ranked by recovery: probability vs expected recovery vs the lists' key, per
        # window and over windows (each window's recovery model trained on its own past)
        out[assessment.RANK_KEY_COMPARISON] = {
            "description": assessment.RANK_KEY_DESCRIPTION,
            "recovery_exponent": spec.recovery_exponent,
            "per_window": keys,
            "aggregate": aggregate_windows(keys),
        }
    return out


def _long_rows(result: dict[str, Any], window: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for pop, block in result.items():
        for method, mblock in block.get("methods", {}).items():
            for rate, m in mblock["rates"].items():
                rows.append(
                    {
                        "window": window["window"],
                        "test_start": window["test"][0],
                        "population": pop,
                        "method": method,
                        "rate": rate,
                        "precision": m["precision"],
                        "recall": m["recall"],
                        "revenue_share": m.get("revenue_share"),
                        "average_precision": mblock["average_precision"],
                    }
                )
    return rows


def headline_summary(area_result: dict[str, Any], spec: AreaSpec) -> dict[str, Any]:
    """Mean ± spread of precision, recall and revenue share at the operating rate per method,
    on the headline population, with the bootstrap interval of the mean precision."""
    head = area_result["headline"]
    pop = head["population"]
    key = assessment.rate_label(spec.operating_rate)
    methods = area_result["aggregate"].get(pop, {}).get("methods", {})
    out: dict[str, Any] = {"population": pop, "rate": spec.operating_rate, "methods": {}}
    for method, metrics in methods.items():
        entry = _at_rate(
            metrics, key, ("precision", "recall", "revenue_share", "precision_vs_oracle")
        )
        entry["average_precision"] = {s: metrics["average_precision"].get(s) for s in STATS}
        ci = head["methods"].get(method)
        if ci:
            entry["precision_ci"] = {"low": ci["low"], "high": ci["high"], "level": head["level"]}
        out["methods"][method] = entry
    comparison = area_result.get(assessment.RANK_KEY_COMPARISON)
    if comparison is not None:
        keys = comparison["aggregate"].get(pop, {}).get("methods", {})
        names = ("precision", "revenue_share", "precision_vs_oracle", "revenue_share_vs_oracle")
        out[assessment.RANK_KEY_COMPARISON] = {
            "recovery_exponent": comparison["recovery_exponent"],
            "methods": {method: _at_rate(m, key, names) for method, m in keys.items()},
        }
    return out


def _at_rate(metrics: dict[str, Any], rate: str, names: tuple[str, ...]) -> dict[str, Any]:
    """``{name: {mean, std, min, max}}`` of the aggregated ``<name>@<rate>`` metrics present."""
    return {
        name: {s: metrics[f"{name}@{rate}"].get(s) for s in STATS}
        for name in names
        if f"{name}@{rate}" in metrics
    }


# --- stage entry -------------------------------------------------------------------------------


def _read_truth(root: Path, windows: list[Window] | None = None) -> pd.DataFrame | None:
    """The truth (stored by its items' acceptance months): of ``windows``' test months only when
    given (what :func:`score_area_windows` joins to a window's scored items), else all."""
    path = Catalog(root).truth()
    if path is None:
        return None
    months = None
    if windows:
        spans = [io.months_overlapping(path, w.start, w.end) for w in windows]
        months = sorted({m for span in spans for m in span})
    return io.read_dataset(path, months=months)


def _read_seizures(root: Path) -> pd.DataFrame | None:
    path = Catalog(root).seizures
    return io.read_dataset(path) if path.exists() else None


def load_tables(
    root: Path,
    params: Params,
    specs: dict[str, AreaSpec],
    *,
    windows: list[Window] | None = None,
) -> dict[str, Any]:
    """The stage's inputs: declarations, outcomes (with result dates), truth, full labels (every
    detecting kind's clean results as negatives: the labelled population every window is
    measured on, whatever ``training.negative_kinds`` trains on).
    ``windows``: the truth of their test months only (the backtest's; else every month's)."""
    decl = io.read_dataset(Catalog(root).declarations)
    outcomes = io.read_dataset(Catalog(root).outcomes)
    outcomes, note = with_result_dates(outcomes, decl, delay_days=params.backtest.label_delay_days)
    return {
        "declarations": decl,
        "outcomes": outcomes,
        "dates": pd.to_datetime(decl["accepted_date"]).reset_index(drop=True),
        "truth": _read_truth(root, windows),
        "seizures": _read_seizures(root),
        "labels": {a: build_labels(decl, outcomes, s) for a, s in specs.items()},
        "specs": pool_specs(specs, root),  # with the areas of every first_stage.pool
        "revenue_reason": None
        if assessment.recovered_available(outcomes)
        else assessment.NO_RECOVERED,
        "result_date_note": note,
    }


def protocol_frames(
    protocol: str,
    root: Path,
    tables: dict[str, Any],
    windows: list[Window],
    params: Params,
    specs: dict[str, AreaSpec],
) -> tuple[list[dict[str, pd.DataFrame]], list[dict[str, np.ndarray]]]:
    """Per window: the feature frames (``features``, ``raw``) and their row positions."""
    decl = tables["declarations"]
    raw = tables.setdefault("raw", raw_features(decl))
    raw_pos = tables.setdefault("raw_pos", _positions(raw, decl))
    if protocol == ROLLING:
        feats = io.read_dataset(Catalog(root).features)
        pos = _positions(feats, decl)
        frames = [{"features": feats, "raw": raw} for _ in windows]
        positions = [{"features": pos, "raw": raw_pos} for _ in windows]
        return frames, positions
    frames, positions = [], []
    for w in windows:
        feats = static_features(
            decl,
            tables["outcomes"],
            params,
            specs,
            cut=w.split.valid_start,
            seizures=tables.get("seizures"),
        )
        frames.append({"features": feats, "raw": raw})
        positions.append({"features": _positions(feats, decl), "raw": raw_pos})
    return frames, positions


#: Files of ``data/backtest/<area>/`` (``backtest@<area>``): every kept window's scored test
#: items, and the windows with their training facts (or the area's skip record).
WINDOW_SCORES, WINDOW_RECORD = "scores.parquet", "windows.json"


def run_backtest_area(
    area: str, root: Path, params: Params, specs: dict[str, AreaSpec]
) -> dict[str, Any]:
    """Stage ``riskml backtest --area A`` (``backtest@<area>``): every protocol's windows of
    one area retrained on their past and scored (probability, raw baseline, predicted
    recovery); writes ``data/backtest/<area>/``. Reads no list policy: the list key's figures
    are :func:`run_backtest_report`'s. ``specs``: every area's (static features use them all)."""
    root = Path(root).resolve()
    bt = params.backtest
    spec = specs[area]
    folder = Catalog(root).backtest_windows(area)
    windows = backtest_windows(params.split, n_windows=bt.n_windows, window_months=bt.window_months)
    record: dict[str, Any] = {"area": area}
    skipped = unsupported_areas(root, params, {area: spec})
    parts = []
    if area in skipped:
        record["skipped"] = skipped[area]
    else:
        tables = load_tables(root, params, {area: spec}, windows=windows)
        record |= {
            "result_dates": tables["result_date_note"] or "from the outcomes",
            "revenue_unavailable": tables["revenue_reason"],
            "protocols": {},
        }
        # the train stage's estimator: the rolling protocol's window of the train stage's split
        # takes it instead of fitting it again (train_stage_model)
        estimator = _read_estimator(root, area)
        for protocol in bt.protocols:
            tables["first_stage_cache"] = {}  # keyed by frame: never across protocols
            tables["estimator"] = estimator if protocol == ROLLING else None
            frames, positions = protocol_frames(protocol, root, tables, windows, params, specs)
            log.info("backtest %s %s", protocol, area)
            scored = score_area_windows(frames, positions, tables, spec, windows, params)
            del frames, positions
            record["protocols"][protocol] = {
                "windows": scored["windows"],
                "left_out": scored["left_out"],
                # a window may lack a column (no recovery model): read back exactly its own
                "columns": [list(frame.columns) for frame in scored["scores"]],
            }
            for frame, window in zip(scored["scores"], scored["windows"], strict=True):
                parts.append(frame.assign(protocol=protocol, window=window["window"]))
    if folder.exists():  # an earlier run's windows must not outlive it
        shutil.rmtree(folder)
    if parts:
        io.write_parquet(pd.concat(parts, ignore_index=True), folder / WINDOW_SCORES)
    io.write_json(json_safe(record), folder / WINDOW_RECORD)
    if "skipped" in record:
        return {"area": area, "skipped": record["skipped"]["reason"]}
    return {
        "area": area,
        **{
            p: f"{len(r['windows'])} window(s), {len(r['left_out'])} left out"
            for p, r in record["protocols"].items()
        },
    }


def _read_estimator(root: Path, area: str) -> AreaModel | None:
    """The train stage's estimator of ``area`` (``models/estimators/<area>``), None when the
    train stage has not written one (a backtest run alone, or a skipped area)."""
    folder = Catalog(root).estimator(area)
    if not (folder / ESTIMATOR_FILE).exists():
        return None
    return AreaModel.load_estimator(folder)


def read_area_windows(root: Path, area: str) -> dict[str, Any]:
    """``data/backtest/<area>/`` as :func:`run_backtest_area` wrote it: the record, with each
    protocol's ``scores`` (one frame per kept window, in window order)."""
    folder = Catalog(root).backtest_windows(area)
    path = folder / WINDOW_RECORD
    if not path.exists():
        raise RiskmlError(
            f"{path}: not found; run the area's backtest first (`riskml backtest --area {area}`)"
        )
    record = json.loads(path.read_text(encoding="utf-8"))
    if "skipped" in record:
        return record
    table = io.read_parquet(folder / WINDOW_SCORES) if (folder / WINDOW_SCORES).exists() else None
    for protocol, block in record["protocols"].items():
        block["scores"] = []
        for window, columns in zip(block["windows"], block.pop("columns"), strict=True):
            mask = (table["protocol"] == protocol) & (table["window"] == window["window"])
            block["scores"].append(table.loc[mask.to_numpy(bool), columns].reset_index(drop=True))
    return record


def run_backtest_report(root: Path, params: Params, specs: dict[str, AreaSpec]) -> dict[str, Any]:
    """Stage ``riskml backtest-report``: every area's backtest windows (``data/backtest/``)
    measured, the list key's figures included; writes ``metrics/backtest/summary.json``,
    ``metrics/backtest/areas/<area>.json`` and ``plots/backtest/<area>.csv``; returns the
    headline means for the CLI. Trains nothing."""
    root = Path(root).resolve()
    bt = params.backtest
    windows = backtest_windows(params.split, n_windows=bt.n_windows, window_months=bt.window_months)
    records = {area: read_area_windows(root, area) for area in specs}
    notes = next((r for r in records.values() if "skipped" not in r), {})
    config = {
        "protocols": {p: PROTOCOLS[p] for p in bt.protocols},
        "windows": [w.describe() for w in windows],
        "n_boot": bt.n_boot,
        "ci_level": bt.ci_level,
        "result_dates": notes.get("result_dates", "from the outcomes"),
        "revenue": notes.get("revenue_unavailable") or "recovered amounts from the outcomes",
    }
    summary: dict[str, Any] = {"config": config, "areas": {}, "skipped": {}}
    for area, spec in specs.items():
        record = records[area]
        if "skipped" in record:  # the train stage's reason: not backtested
            summary["skipped"][area] = record["skipped"]["reason"]
            io.write_json(json_safe(record["skipped"]), Catalog(root).backtest(area))
            continue
        doc = {"area": area, "config": config, "protocols": {}}
        tables_out = []
        summary["areas"][area] = {}
        for protocol, block in record["protocols"].items():
            res = measure_area(
                block, spec, params, revenue_unavailable=record.get("revenue_unavailable")
            )
            if "per_window" not in res:  # every window left out: too few positives
                doc["protocols"][protocol] = {"left_out": res["left_out"]}
                continue
            summary["areas"][area][protocol] = headline_summary(res, spec)
            doc["protocols"][protocol] = {
                "windows": res["windows"],
                "aggregate": res["aggregate"],
                "headline": res["headline"],
                "per_window": res["per_window"],
                "left_out": res["left_out"],
            }
            if assessment.RANK_KEY_COMPARISON in res:
                doc["protocols"][protocol][assessment.RANK_KEY_COMPARISON] = res[
                    assessment.RANK_KEY_COMPARISON
                ]
            tables_out.append(res["table"].assign(protocol=protocol))
        if not tables_out:  # no window of any protocol had enough positives: as skipped
            reason = "every backtest window left out: " + "; ".join(
                w["left_out"] for b in record["protocols"].values() for w in b["left_out"]
            )
            del summary["areas"][area]
            summary["skipped"][area] = reason
            io.write_json(json_safe({"area": area, "reason": reason}), Catalog(root).backtest(area))
            continue
        io.write_json(json_safe(doc), Catalog(root).backtest(area))
        write_plot_csv(pd.concat(tables_out, ignore_index=True), Catalog(root).backtest_plot(area))
    io.write_json(json_safe(summary), Catalog(root).backtest_summary)
    return _short(summary)


def run_backtest(root: Path, params: Params, specs: dict[str, AreaSpec]) -> dict[str, Any]:
    """Every area's :func:`run_backtest_area`, then :func:`run_backtest_report` (what
    ``dvc repro`` runs as ``backtest@<area>`` and ``backtest_report``)."""
    for area in specs:
        run_backtest_area(area, root, params, specs)
    return run_backtest_report(root, params, specs)


def unsupported_areas(
    root: Path, params: Params, specs: dict[str, AreaSpec]
) -> dict[str, dict[str, Any]]:
    """Areas whose labels known before ``split.test_start`` do not support training
    (:func:`riskml.train.label_support`, the train stage's own test): area -> record with the
    reason. The backtest skips them, as the train stage does."""
    catalog = Catalog(root)
    decl = io.read_dataset(catalog.declarations, columns=[*KEY, "accepted_date"])
    # the labels known before the test window: their items' months (by acceptance) come first
    outcomes = io.read_dataset(
        catalog.outcomes, months=io.months_before(catalog.outcomes, params.split.test_start)
    )
    out = {}
    for area, spec in specs.items():
        labels = build_labels(
            decl, outcomes, spec, known_before=params.split.test_start,
            negatives_from=negative_kinds(spec),
        )  # fmt: skip
        lacking = label_support(decl, labels, params.split, area_train_params(params, spec))
        if lacking is not None:
            log.info("backtest %s %s", area, lacking["reason"])
            out[area] = {"area": area, **lacking}
    return out


def _short(summary: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = dict(summary.get("skipped", {}))
    for area, protocols in summary["areas"].items():
        for protocol, head in protocols.items():
            prec = head["methods"].get("model", {}).get("precision", {})
            out[f"{area}.{protocol}"] = {"on": head["population"], "precision": prec.get("mean")}
    return out
