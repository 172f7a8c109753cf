"""One LightGBM classifier per risk area, trained on the past, early-stopped on the next period.

Time split (``params.yaml`` → ``split``):

* train on labelled items accepted in ``[train_start, valid_start)``;
* stop early on labelled items accepted in ``[valid_start, test_start)``;
* ``[test_start, test_end)`` is left to :mod:`riskml.evaluate`.

Labels must be those *known before* ``test_start``: :func:`run_train` builds them with
``build_labels(..., known_before=split.test_start)``, so an audit whose result came later is a
missing label here, as it was on the day the model would have been trained. Callers of
:func:`train_area` must do the same.

Areas whose spec has a ``first_stage`` (``pipelines/<area>.yaml``; shipped for the rare areas
with shared perpetrators: drugs, environment, health and safety, security) are trained in two
stages, one Booster at the end: the first stage learns "an offence of *any* pool area was found"
(:func:`first_stage_labels`: the findings of every pool area, several times the positives of one
area, against the area's own negatives: a control that cannot detect the area, such as a
documentary check for drugs, is no negative of it), the second continues from those trees on the
area's own labels (LightGBM ``init_model``). Front companies, complicit brokers and risky
suppliers show in every smuggling area; one area's few dozen findings cannot teach a model who
they are, the pooled findings can, and the second stage learns which goods and routes belong to
this area. The saved model is one Booster over the same features, so scoring, explanations and
the MLflow model are unchanged. :func:`training_labels` builds both stages' labels for the train
stage, ``riskml tune`` and the backtest alike.

Every model is refitted, once early stopping has chosen its number of trees, on every labelled
row known before the cut (``train.refit``, :func:`refit_rounds`): the early-stopping slice holds
the latest months and, for a rare area, a third or more of its positives. With a handful of
positives that slice's choice is unstable (3 to 1,400 trees between train seeds of one window);
``train.tree_folds`` chooses the refit's count instead on several expanding-window time-series
folds (:func:`tree_count_folds`, :func:`fold_tree_count`: one curve of pooled out-of-fold
average precision), ``train.min_refit_trees`` puts a floor under it, and
``train.min_model_trees`` one under both stages' trees together (a guard against a collapsed
slice that leaves a long first stage alone). All are opt-in.

The classes are not re-weighted (no ``is_unbalance`` / ``scale_pos_weight``): the model's output
stays a calibrated-ish probability, which the expected-recovery ranking and the reviewers need;
ranking quality does not depend on the weights. Rare areas get a smaller ``min_child_samples``
instead, so that a leaf can still isolate a small group of positives.

The train stage itself (fit the whole :class:`riskml.area_model.AreaModel`, register it,
write ``models/<area>/``) is :mod:`riskml.train_stage`; this module is the trainer it, ``riskml
tune`` and the backtest share.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, NamedTuple

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd

from riskml import compute, io, tracking
from riskml.catalog import Catalog
from riskml.config import (
    AreaSpec,
    Params,
    SplitParams,
    TrainParams,
    area_train_params,
    first_stage_train_params,
    load_area_specs,
)
from riskml.contract import KEY, RiskmlError, keyed
from riskml.features import check_model_inputs
from riskml.labels import (
    UNLABELLED,
    build_labels,
    negative_kinds,
    unlabelled_rows,
    with_unlabelled_negatives,
)
from riskml.metrics import average_precision

log = logging.getLogger(__name__)

#: Fewer positives than this in a window: the area cannot be trained or early-stopped sensibly.
MIN_POSITIVES = 5
#: Rows of the feature sample used to infer the MLflow signature and the input example.
SIGNATURE_SAMPLE = 200
INPUT_EXAMPLE_ROWS = 5
NON_FEATURES = (*KEY, "accepted_date")
#: The labels' column naming why the deciding control was made (riskml.labels): a training
#: weight (:func:`reason_weights`), never a feature.
REASON = "control_reason"


def model_dir(root: Path, area: str) -> Path:
    """Folder of the area's model files (a DVC output)."""
    return Catalog(root).model(area)


#: Written by the train stage instead of a model when the data has too few positives for the
#: area (``models/<area>/skipped.json``, ``Catalog.skip_record``); every later stage skips the
#: area and says why.
SKIP_FILE = "skipped.json"


def skip_record(root: Path, area: str) -> dict[str, Any] | None:
    """The train stage's record of a skipped area (``area``, ``reason``, ``positives``,
    ``needed``), or None when the area was trained."""
    path = Catalog(root).skip_record(area)
    if not path.exists():
        return None
    return json.loads(path.read_text())


def split_trained(
    root: Path, specs: Mapping[str, AreaSpec]
) -> tuple[dict[str, AreaSpec], dict[str, dict[str, Any]]]:
    """``specs`` split into the areas the train stage trained and the skip records of those it
    skipped (area -> record)."""
    skipped = {a: r for a in specs if (r := skip_record(root, a)) is not None}
    return {a: s for a, s in specs.items() if a not in skipped}, skipped


@dataclass
class TrainedModel:
    """A trained area model and the facts its card and run report."""

    area: str
    booster: lgb.Booster
    feature_names: list[str]
    best_iteration: int
    n_train: int
    n_train_positives: int
    n_valid: int
    n_valid_positives: int
    valid_average_precision: float
    lgb_params: dict[str, Any] = field(default_factory=dict)
    valid_start: date | None = None  # where the early-stopping slice really began
    pretrain: dict[str, Any] | None = None  # the first stage (spec.first_stage), if any
    recovery: RecoveryModel | None = None  # revenue-like areas: the recovered-duty regression
    refit: dict[str, Any] | None = None  # the refit on every labelled row (params.refit), if any
    #: the early-stopped model's scores of the early-stopping slice's rows (out of sample)
    valid_score: np.ndarray | None = None

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Probability of an offence of the area for each row of ``frame``."""
        return self.booster.predict(feature_matrix(frame, self.feature_names))


@dataclass
class RecoveryModel:
    """A regression of the duty an audit recovers, trained on the positive rows of an area."""

    booster: lgb.Booster
    feature_names: list[str]
    best_iteration: int
    n_train: int
    n_valid: int
    valid_mean_abs_error: float

    def predict(
        self, frame: pd.DataFrame | np.ndarray, *, num_threads: int | None = None
    ) -> np.ndarray:
        """Predicted recovered duty (≥ 0) of each row, were it a positive. ``frame``: a frame
        with the model's features, or a matrix of exactly :attr:`feature_names` in that order.
        ``num_threads``: LightGBM threads (default: the booster's own setting); the values do
        not depend on it."""
        threads = {} if num_threads is None else {"num_threads": num_threads}
        X = frame if isinstance(frame, np.ndarray) else feature_matrix(frame, self.feature_names)
        return np.clip(self.booster.predict(X, **threads), 0, None)

    def expected(
        self,
        frame: pd.DataFrame | np.ndarray,
        probability: np.ndarray,
        *,
        num_threads: int | None = None,
    ) -> np.ndarray:
        """Expected recovery of each row: its probability × its predicted recovered duty."""
        predicted = self.predict(frame, num_threads=num_threads)
        return np.asarray(probability, dtype="float64") * predicted


# --- features and windows ----------------------------------------------------------------------


def feature_columns(frame: pd.DataFrame, spec: AreaSpec) -> list[str]:
    """Model input columns of ``frame`` for ``spec``'s area, minus ``spec.exclude_features``.

    Defers to :func:`riskml.features.model_feature_columns` when it exists; otherwise every
    numeric, non-boolean column that is neither a key, the date, nor a ``ctx_`` context column
    (the same rule).
    """
    try:
        from riskml.features import model_feature_columns
    except ImportError:
        cols = [
            c
            for c in frame.columns
            if c not in NON_FEATURES
            and not str(c).startswith("ctx_")
            and pd.api.types.is_numeric_dtype(frame[c])
            and not pd.api.types.is_bool_dtype(frame[c])
        ]
    else:
        cols = list(model_feature_columns(frame))
    unknown = sorted(set(spec.exclude_features) - set(frame.columns))
    if unknown:
        raise RiskmlError(
            f"pipelines/{spec.name}.yaml: training.exclude_features names unknown feature(s) "
            f"{unknown}; use names of data/features columns"
        )
    cols = [c for c in cols if c not in set(spec.exclude_features)]
    if not cols:
        raise RiskmlError(
            f"area {spec.name!r}: no model feature left; check training.exclude_features"
        )
    return cols


def feature_matrix(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """The model's input: ``names`` columns of ``frame`` as float64 (the signature's type)."""
    check_model_inputs(frame.columns, names)
    return frame[names].astype("float64")


#: Column dtypes whose every value float32 holds exactly.
EXACT_IN_FLOAT32 = frozenset(
    np.dtype(t) for t in ("float32", "float16", "int8", "int16", "uint8", "uint16", "bool")
)


def feature_array(frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    """The model's input as one numpy matrix, filled column by column (no pandas copy of the
    frame): float32 when every column is exactly a float32 (the stored features are), else
    float64. LightGBM bins and predicts float32 values as the same doubles, so a model trained
    on it is the one trained on :func:`feature_matrix`, tree for tree, in half the memory."""
    feature_matrix(frame.head(0), names)  # the same check and message for missing columns
    exact = all(isinstance(d, np.dtype) and d in EXACT_IN_FLOAT32 for d in frame.dtypes[names])
    dtype = np.float32 if exact else np.float64
    out = np.empty((len(frame), len(names)), dtype=dtype)
    for j, name in enumerate(names):
        out[:, j] = frame[name].to_numpy(dtype=dtype, na_value=np.nan)
    return out


def _dataset(frame: pd.DataFrame, names: list[str], label: str, **kwargs: Any) -> lgb.Dataset:
    """A LightGBM Dataset of ``frame``'s ``names`` (:func:`feature_array`) and ``label``; the
    matrix is freed once LightGBM has binned it."""
    return lgb.Dataset(
        feature_array(frame, names), label=frame[label].to_numpy(), feature_name=list(names),
        free_raw_data=True, **kwargs,
    )  # fmt: skip


def labelled_rows(features: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Features of the items that have a label (0 or 1), with ``label`` (and the deciding
    control's ``control_reason`` when ``labels`` has it: a training weight, never a feature)
    joined on the key."""
    lab = keyed(labels[[*KEY, "label", *(c for c in [REASON] if c in labels.columns)]])
    lab = lab[lab["label"].notna()]
    out = keyed(features).merge(lab, on=KEY, how="inner", validate="one_to_one")
    out["accepted_date"] = pd.to_datetime(out["accepted_date"])
    return out


def in_window(frame: pd.DataFrame, start: date, end: date) -> pd.DataFrame:
    """Rows with ``accepted_date`` in ``[start, end)``."""
    d = pd.to_datetime(frame["accepted_date"])
    return frame[(d >= pd.Timestamp(start)) & (d < pd.Timestamp(end))]


def early_stopping_start(rows: pd.DataFrame, split: SplitParams, *, min_positives: int) -> date:
    """Start of the early-stopping slice: ``split.valid_start``, moved back month by month (into
    the train window) until the slice up to ``test_start`` holds ``min_positives`` positives.

    Rare areas have a handful of positives per quarter: early stopping on three of them is
    noise. The slice always stays later than every training row, at least half of the train
    window is kept for training, and so are at least :data:`MIN_POSITIVES` positives when the
    train window has them (positives that come late in the period make a shorter slice, not a
    window that cannot be trained).
    """
    start = pd.Timestamp(split.valid_start)
    first = pd.Timestamp(split.train_start)
    earliest = first + (start - first) / 2
    dates = pd.to_datetime(rows["accepted_date"])
    positive = rows["label"].to_numpy() == 1
    end = pd.Timestamp(split.test_start)
    while ((dates >= start) & (dates < end) & positive).sum() < min_positives:
        earlier = start - pd.DateOffset(months=1)
        if earlier < earliest or ((dates >= first) & (dates < earlier) & positive).sum() < (
            MIN_POSITIVES
        ):
            break
        start = earlier
    return start.date()


def label_support(
    features: pd.DataFrame, labels: pd.DataFrame, split: SplitParams, params: TrainParams
) -> dict[str, Any] | None:
    """None when the labels (known before ``split.test_start``) support training the area;
    else why not: ``{"reason": "skipped: 3 positives, need 20", "positives": 3, "needed": 20}``.

    An area needs ``params.min_positives`` positives in ``[train_start, test_start)`` and
    :data:`MIN_POSITIVES` in each of its train and early-stopping windows.
    """
    rows = in_window(labelled_rows(features, labels), split.train_start, split.test_start)
    positives = int((rows["label"] == 1).sum())
    if positives < params.min_positives:
        return {
            "reason": f"skipped: {positives} positives, need {params.min_positives}",
            "positives": positives,
            "needed": params.min_positives,
        }
    valid_start = early_stopping_start(rows, split, min_positives=params.min_valid_positives)
    windows = (("train", split.train_start, valid_start), ("validation", valid_start, None))
    for window, start, end in windows:
        end = end or split.test_start
        n = int((in_window(rows, start, end)["label"] == 1).sum())
        if n < MIN_POSITIVES:
            return {
                "reason": f"skipped: {n} positives in the {window} window [{start}, {end}), "
                f"need {MIN_POSITIVES}",
                "positives": n,
                "needed": MIN_POSITIVES,
            }
    return None


class TooFewPositives(RiskmlError):
    """A training or early-stopping window has fewer than :data:`MIN_POSITIVES` positives: the
    train stage stops with it; the backtest leaves that window out and says so."""


def _check_window(area: str, window: str, start: date, end: date, rows: pd.DataFrame) -> int:
    positives = int(rows["label"].sum())
    if positives < MIN_POSITIVES:
        raise TooFewPositives(
            f"area {area!r}: the {window} window [{start}, {end}) has {len(rows)} labelled items "
            f"and {positives} positive(s), fewer than {MIN_POSITIVES}; widen the window "
            "(split dates in params.yaml), add data (simulate.n_items or more outcomes), or "
            f"leave the area out (`riskml train --area` for the others)"
        )
    return positives


# --- training ----------------------------------------------------------------------------------


def lgb_params(params: TrainParams, n_positives: int) -> dict[str, Any]:
    """LightGBM parameters: the ``train`` section, deterministic, adapted to rare positives."""
    # A leaf needs min_child_samples rows; with few positives, lower it so that a leaf can
    # still hold a small group of them (about a tenth of the positives, never below 5).
    min_child = int(min(params.min_child_samples, max(5, n_positives // 10)))
    return {
        "objective": params.objective,
        "metric": "average_precision",
        "num_leaves": params.num_leaves,
        "learning_rate": params.learning_rate,
        "min_child_samples": min_child,
        "feature_fraction": params.feature_fraction,
        "bagging_fraction": params.bagging_fraction,
        "bagging_freq": params.bagging_freq,
        "lambda_l2": params.lambda_l2,
        "extra_trees": params.extra_trees,
        "seed": params.seed,
        "num_threads": params.num_threads,
        "deterministic": True,
        "force_col_wise": True,
        "verbosity": -1,
    }


def row_sampling(params: TrainParams, n_rows: int) -> dict[str, Any]:
    """The LightGBM settings that bound the rows each tree of a fit on ``n_rows`` rows is grown
    on to ``params.max_rows_per_tree`` (about); none when that is unset or bagging already keeps
    a tree's rows within it (``bagging_fraction`` x ``n_rows``), so smaller fits are unchanged.

    Above it, gradient-based one-side sampling (GOSS, LightGBM ``data_sample_strategy: goss``)
    replaces bagging: each tree is grown on the ``max_rows_per_tree / 2`` rows of largest
    gradient (the positives of a rare area are among them: a positive's gradient is about 1, a
    well-scored negative's about its small probability) and a random ``max_rows_per_tree / 2``
    of the others, whose gradients are weighted up by the inverse of their sampling rate, so
    the split gains and leaf values are unbiased and the model's probability stays calibrated
    (a recovery ranking multiplies it). Every row still updates its score after every tree.
    Early stopping keeps more trees on more rows (docs/performance.md, issue 13: 1,069 trees
    for security at 1M items, 2,442 at 10M); with the rows per tree bounded, a fit's cost
    grows with its rows (gradients, scores) and its trees, no longer with their product."""
    budget = params.max_rows_per_tree
    if budget is None or n_rows * params.bagging_fraction <= budget:
        return {}
    rate = budget / (2 * n_rows)
    return {
        "data_sample_strategy": "goss",
        "top_rate": rate,
        "other_rate": rate,
        "bagging_fraction": 1.0,
        "bagging_freq": 0,
    }


class FitRows(NamedTuple):
    """The rows one fit is grown on, drawn once per fit by :func:`negative_sampling`: the kept
    rows, their weight factor (1 for a positive, 1 / rate for a kept negative; ``None`` when
    every row is kept) and the negatives' rate."""

    rows: pd.DataFrame
    factor: np.ndarray | None
    rate: float

    def weights(self, params: TrainParams, cut: date | pd.Timestamp | None) -> np.ndarray | None:
        """The kept rows' :func:`training_weights` at ``cut`` times the sampling's factor."""
        weight = training_weights(self.rows, params, cut)
        if self.factor is not None:
            weight = self.factor if weight is None else weight * self.factor
        return weight

    def facts(self) -> dict[str, Any]:
        """The model facts of the sampling (none when it kept every row): the rows kept and the
        negatives' rate."""
        if self.factor is None:
            return {}
        return {"sampled_rows": len(self.rows), "negative_rate": round(self.rate, 6)}

    def per_tree(self, params: TrainParams) -> int:
        """About how many of the kept rows each tree is grown on (:func:`row_sampling`)."""
        n_rows = len(self.rows)
        sampling = row_sampling(params, n_rows)
        if sampling:
            return int(round(n_rows * (sampling["top_rate"] + sampling["other_rate"])))
        return int(round(n_rows * (params.bagging_fraction if params.bagging_freq > 0 else 1.0)))


def negative_sampling(rows: pd.DataFrame, params: TrainParams) -> FitRows:
    """``rows`` bounded to about ``params.max_training_rows`` (unchanged, weight ``None`` and
    rate 1 when that is unset or not exceeded): every positive kept, each negative kept with
    probability ``rate`` (chosen so that positives + rate x negatives = the cap, at least half
    the cap for the negatives when positives fill more), decided by a hash of its key and
    ``params.seed`` so that the same row is kept by every fit of the same rate (train,
    early-stopping and refit rows) whatever its order. Returns (kept rows, their weight factor:
    1 for a positive, 1 / rate for a negative, rate).

    The weighted sums of gradients and hessians of the kept rows are unbiased estimates of the
    full rows' (case-control sampling with inverse-probability weights), so leaf values, the
    regularisation's meaning and the model's probabilities stay those of a fit on every row
    (calibration matters: the expected-recovery ranking multiplies the probability). Early
    stopping keeps more trees on more rows (docs/performance.md, issue 13: security 1,069 trees
    at 1M items, 2,442 at 10M); with the rows bounded, so are the trees, and a fit's cost stops
    growing with the labelled rows. Drawn once per fit (:class:`FitRows`)."""
    cap = params.max_training_rows
    if cap is None or len(rows) <= cap:
        return FitRows(rows, None, 1.0)
    positive = rows["label"].to_numpy(float) > 0
    n_neg = int((~positive).sum())
    kept_negatives = max(cap - int(positive.sum()), cap // 2)
    if n_neg <= kept_negatives:
        return FitRows(rows, None, 1.0)
    rate = kept_negatives / n_neg
    mixed = key_hashes(rows) ^ np.uint64((params.seed * 0x9E3779B97F4A7C15) % 2**64)
    mixed = mixed * np.uint64(0xBF58476D1CE4E5B9)  # a multiplicative mix (wraps mod 2**64)
    uniform = (mixed >> np.uint64(11)).astype(np.float64) / float(2**53)
    keep = positive | (uniform < rate)
    factor = np.where(positive[keep], 1.0, 1.0 / rate)
    return FitRows(rows[keep], factor, rate)


def own_intelligence(name: str, area: str) -> bool:
    """True for a feature that counts the area's own intelligence: its past findings and hit
    rates (``*_n_find_<area>``, ``*_hr_<area>``, ``*_hrd_<area>``), its seizures reported
    elsewhere (``sz_<area>_*``) and its legacy-rule score (``rule_<area>``)."""
    return (
        name.startswith(f"sz_{area}_")
        or name == f"rule_{area}"
        or name.endswith((f"_n_find_{area}", f"_hr_{area}", f"_hrd_{area}"))
    )


def monotone_constraints(names: list[str], area: str, params: TrainParams) -> dict[str, Any]:
    """LightGBM settings that keep the score non-decreasing in the area's own intelligence
    (:func:`own_intelligence`) when ``params.monotone_own_intelligence``; else none.

    With a few dozen labels drawn by targeting and tip-offs, a tree can learn that more past
    findings or more seizures elsewhere lower the risk; the constraint rules that out."""
    if not params.monotone_own_intelligence:
        return {}
    return {
        "monotone_constraints": [int(own_intelligence(n, area)) for n in names],
        "monotone_constraints_method": "intermediate",
    }


def pool_specs(specs: Mapping[str, AreaSpec], root: Path) -> dict[str, AreaSpec]:
    """``specs``, plus the spec (from ``root/pipelines``) of every area a ``first_stage.pool``
    of theirs names and ``specs`` lacks (``params.yaml`` may train fewer areas than a pool)."""
    needed = {a for s in specs.values() if s.first_stage is not None for a in s.first_stage.pool}
    if needed <= set(specs):
        return dict(specs)
    return load_area_specs(Catalog(root).pipelines) | dict(specs)


def first_stage_labels(
    labels: Mapping[str, pd.DataFrame], spec: AreaSpec, *, labelled_only: bool = False
) -> pd.DataFrame | None:
    """The first-stage labels of ``spec``'s area from the labels of its pool's areas.

    ``labels``: area → :func:`riskml.labels.build_labels` frame (same declarations, same
    ``known_before``) for ``spec``'s area and every area of ``spec.first_stage.pool``. One row
    per item: ``label`` 1.0 when an offence of any pool area was found; 0.0 when the item is a
    negative of ``spec``'s own area (controlled by a kind in its ``detectable_by``, or its
    ``training.negative_kinds`` when ``labels`` were built so, nothing of it found) and
    positive for no pool area; NaN otherwise. A control that cannot detect the area is no
    negative of it: a documentary check that cleared an item for health and safety
    says nothing about drugs hidden in it, so it is no negative of drugs' first stage (it is
    one of environment's). ``None`` when ``spec`` has no ``first_stage`` (one-stage training).

    ``labelled_only``: ``labels`` hold only their labelled rows (``build_labels(...,
    labelled_only=True)``: indexed by the declarations' rows); the result then holds only its
    labelled rows too, in the declarations' order: the full result's rows with a label.
    """
    if spec.first_stage is None:
        return None
    if spec.name not in labels:
        raise RiskmlError(f"first-stage labels of {spec.name!r}: its own labels are missing")
    areas = list(dict.fromkeys([spec.name, *spec.first_stage.pool]))
    frames = [labels[a] for a in areas]
    if labelled_only:
        # labelled-only frames (indexed by the declarations' rows) aligned on the rows any of
        # them holds, so the rule below reads them as it reads full frames
        rows = frames[0].index
        for f in frames[1:]:
            rows = rows.union(f.index)
        keys = pd.concat([f[KEY] for f in frames])
        keys = keys[~keys.index.duplicated(keep="first")].reindex(rows)
        frames = [f.drop(columns=KEY).reindex(rows).join(keys)[f.columns] for f in frames]
    first = frames[0]
    ids = first["declaration_id"].astype("string").to_numpy()
    items = first["item_no"].to_numpy()
    for area, f in zip(areas, frames, strict=True):
        same = (f["declaration_id"].astype("string").to_numpy() == ids).all()
        if len(f) != len(first) or not same or not (f["item_no"].to_numpy() == items).all():
            raise RiskmlError(f"labels of {area!r}: not the items of the pool's other labels")
    stacked = np.column_stack([f["label"].to_numpy("float64") for f in frames])
    positive = (stacked == 1).any(axis=1)
    negative = stacked[:, 0] == 0  # a negative of the area itself
    out = first[KEY].copy()
    out["label"] = np.where(positive, 1.0, np.where(negative, 0.0, np.nan))
    if all(REASON in f.columns for f in frames):
        # the reason of the control that decided the label: the first pool area found positive,
        # else the area's own negative
        reasons = np.column_stack([f[REASON].astype(object).to_numpy() for f in frames])
        deciding = np.where(positive, (stacked == 1).argmax(axis=1), 0)
        reason = reasons[np.arange(len(out)), deciding]
        out[REASON] = pd.array(np.where(positive | negative, reason, None), dtype="string")
    return out[out["label"].notna()] if labelled_only else out


def training_labels(
    declarations: pd.DataFrame,
    outcomes: pd.DataFrame,
    spec: AreaSpec,
    specs: Mapping[str, AreaSpec],
    *,
    known_before: date | pd.Timestamp | None,
    cache: dict | None = None,
    labelled_only: bool = False,
    unlabelled_share: float = 0.0,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The labels that train ``spec``'s area: its own (:func:`riskml.labels.build_labels`) and,
    when it has a ``first_stage``, the first stage's (:func:`first_stage_labels`), all from the
    results known before ``known_before`` (label delay: a finding known later is no positive),
    with the clean results of the kinds in :func:`riskml.labels.negative_kinds` as negatives.

    ``specs`` must hold every area of the pool (:func:`pool_specs`). ``cache``: a dict kept
    across calls on the same declarations and outcomes (the backtest's areas of one window).
    ``labelled_only``: only the labelled rows of each (what training reads; the train stage).
    ``unlabelled_share`` (``train.unlabelled_share``): that share of the items never controlled
    for the area join its labels as weak negatives (:func:`riskml.labels.with_unlabelled_negatives`;
    so they are negatives of the first stage too, unless a pool area found an offence there).
    """

    def labels_of(s: AreaSpec) -> pd.DataFrame:
        def build() -> pd.DataFrame:
            return build_labels(
                declarations, outcomes, s, known_before=known_before,
                labelled_only=labelled_only, negatives_from=negative_kinds(s),
            )  # fmt: skip

        if cache is None:
            return build()
        when = None if known_before is None else pd.Timestamp(known_before)
        key = (s.model_dump_json(), when, labelled_only)
        if key not in cache:
            cache[key] = build()
        return cache[key]

    own = with_unlabelled_negatives(
        labels_of(spec), declarations, unlabelled_share,
        known_before=known_before, labelled_only=labelled_only,
    )  # fmt: skip
    if spec.first_stage is None:
        return own, None
    missing = [a for a in spec.first_stage.pool if a != spec.name and a not in specs]
    if missing:
        raise RiskmlError(
            f"pipelines/{spec.name}.yaml: training.first_stage.pool names area(s) {missing} "
            "without a spec; add pipelines/<area>.yaml or take them out of the pool"
        )
    pool = {a: own if a == spec.name else labels_of(specs[a]) for a in spec.first_stage.pool}
    return own, first_stage_labels(pool | {spec.name: own}, spec, labelled_only=labelled_only)


#: Mean length of a month in days (ages of training rows in months).
DAYS_PER_MONTH = 365.25 / 12


def reason_weights(
    rows: pd.DataFrame, weights: Mapping[str, float], odds: Mapping[str, float] | None = None
) -> np.ndarray | None:
    """Each row's weight by the reason of its deciding control (``control_reason``):
    ``weights[reason]`` (1 for a reason not listed or not recorded), and a positive row's
    divided by ``odds[reason]``; ``None`` (equal weights) when neither is set or ``rows`` carry
    no reason.

    Controls chosen by a risk profile or at random follow what the declaration shows, so among
    them an item's hit rate given its features is the population's; a tip-off follows what
    informants know of the hidden risk, so items it names are offences far more often than
    items that look the same (security, world 42: dual-use goods labelled positive at 5.4%
    against 0.9% true, docs/results.md). ``weights`` scale such rows' influence (0 drops them;
    a leaf of tipped rows alone keeps their rate whatever the weight). ``odds`` correct their
    rate instead, as a case-control study does: with a tip's positives weighing 1/``odds``,
    the weighted odds of an offence among tipped items are the population's, and their
    findings still teach the model which goods, routes and parties carry the risk.
    """
    odds = odds or {}
    if not (weights or odds) or REASON not in rows.columns:
        return None
    reason = rows[REASON].astype("string")
    positive = rows["label"].to_numpy() == 1
    out = np.ones(len(rows))
    for name, w in weights.items():
        out[(reason == name).fillna(False).to_numpy(bool)] = w
    for name, ratio in odds.items():
        out[(reason == name).fillna(False).to_numpy(bool) & positive] /= ratio
    return out


def training_weights(
    rows: pd.DataFrame, params: TrainParams, cut: date | pd.Timestamp | None
) -> np.ndarray | None:
    """The weights of training rows: :func:`recency_weights` at ``cut`` (none without ``cut``)
    times :func:`reason_weights` (sampled never-controlled items, ``train.unlabelled_share``,
    weigh ``train.unlabelled_weight``), scaled to mean 1 (``None``: every row weighs the same)."""
    recency = None
    if cut is not None:
        recency = recency_weights(rows["accepted_date"], cut, params.recency_half_life_months)
    weights = dict(params.reason_weights)
    if params.unlabelled_weight != 1.0:  # sampled never-controlled items (training_labels)
        weights[UNLABELLED] = params.unlabelled_weight
    reason = reason_weights(rows, weights, params.reason_odds)
    if recency is None and reason is None:
        return None
    w = np.ones(len(rows)) if recency is None else recency
    w = w * (1.0 if reason is None else reason)
    mean = w.mean() if len(w) else 1.0
    if not mean > 0:
        raise RiskmlError(
            "train.reason_weights: every training row weighs 0; give a reason a weight above 0"
        )
    return w / mean


def recency_weights(
    accepted: pd.Series, cut: date | pd.Timestamp, half_life_months: float
) -> np.ndarray | None:
    """Training weights that halve every ``half_life_months`` of a row's age at ``cut`` (the end
    of its training window), scaled to mean 1 so that the regularisation settings keep their
    meaning; ``None`` (equal weights) when ``half_life_months`` is 0.

    A fraud pattern that drifts shows first in the latest months; weighting them up lets the
    model follow it without dropping the older rows. The same weights serve the train stage,
    ``riskml tune`` and the backtest (all train through :func:`train_area`).
    """
    if half_life_months <= 0 or len(accepted) == 0:
        return None
    age_days = (pd.Timestamp(cut) - pd.to_datetime(accepted)).dt.days.to_numpy(np.float64)
    weights = 0.5 ** (np.maximum(age_days, 0.0) / DAYS_PER_MONTH / half_life_months)
    return weights / weights.mean()


def _fit(
    train: FitRows,
    valid: FitRows,
    names: list[str],
    config: dict[str, Any],
    params: TrainParams,
    init_model: lgb.Booster | None = None,
    *,
    cut: date | None = None,
) -> tuple[lgb.Booster, int]:
    """One early-stopped LightGBM fit (continuing ``init_model`` when given), cut at its best
    iteration so that model.txt, the MLflow model and every later predict agree without anyone
    passing num_iteration. Training rows are weighted by :func:`training_weights` (recency at
    ``cut``, the end of the training window, and the control's reason); the early-stopping rows
    by their reason only, so that early stopping judges the population the weights stand for.
    The iteration count includes ``init_model``'s trees. ``train`` and ``valid``: the rows after
    :func:`negative_sampling`, drawn once by the caller, whose facts describe the same draw."""
    weight, valid_weight = train.weights(params, cut), valid.weights(params, None)
    train, valid = train.rows, valid.rows
    config = config | row_sampling(params, len(train))
    client = compute.active_client()
    if client is not None and init_model is None:
        return _fit_dask(client, train, valid, names, config, params, weight, valid_weight)
    dtrain = _dataset(train, names, "label", weight=weight)
    dvalid = _dataset(valid, names, "label", reference=dtrain, weight=valid_weight)
    booster = lgb.train(
        config,
        dtrain,
        num_boost_round=params.num_boost_round,
        valid_sets=[dvalid],
        valid_names=["valid"],
        init_model=init_model,
        callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)],
    )
    best = int(booster.best_iteration or booster.current_iteration())
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best)), best


def refit_rounds(
    best: int, n_fit: int, n_all: int, *, at_least: int = 0, shrink: bool = False
) -> int:
    """Trees of the refit on ``n_all`` rows when early stopping chose ``best`` on ``n_fit``:
    scaled by the rows gained (more rows support proportionally more trees of the same learning
    rate), at least ``best``, and at least ``at_least`` (``train.min_refit_trees``). With
    ``shrink`` (a fit on fewer rows than ``n_fit``: a tree-count fold's past) the count scales
    down too, to one tree at least."""
    scaled = int(round(best * n_all / max(n_fit, 1)))
    return max(scaled if shrink else max(best, scaled), 1 if shrink else 0, at_least)


def _refit(
    rows: FitRows,
    names: list[str],
    config: dict[str, Any],
    params: TrainParams,
    rounds: int,
    init_model: lgb.Booster | None = None,
    *,
    cut: date,
) -> lgb.Booster:
    """``rounds`` boosting rounds (after ``init_model``'s trees) on ``rows``, no early stopping:
    the refit on every labelled row known before ``cut`` (weighted at ``cut`` like :func:`_fit`;
    ``rows`` after :func:`negative_sampling`)."""
    if rounds <= 0:
        return init_model
    weight, rows = rows.weights(params, cut), rows.rows
    config = config | row_sampling(params, len(rows))
    client = compute.active_client()
    if client is not None and init_model is None:  # compute.backend dask (docs/cluster.md)
        return _dask_booster(client, rows, names, config, rounds, weight)
    data = _dataset(rows, names, "label", weight=weight)
    booster = lgb.train(config, data, num_boost_round=rounds, init_model=init_model)
    return lgb.Booster(model_str=booster.model_to_string())


def _labels_digest(labels: pd.DataFrame) -> str:
    values = np.nan_to_num(labels["label"].to_numpy("float64"), nan=-1.0)
    digest = hashlib.sha1(values.tobytes())
    if REASON in labels.columns:  # the reasons weigh the rows (train.reason_weights)
        digest.update(labels[REASON].astype("string").fillna("").str.cat(sep="|").encode())
    return digest.hexdigest()


def _fit_dask(
    client: Any,
    train: pd.DataFrame,
    valid: pd.DataFrame,
    names: list[str],
    config: dict[str, Any],
    params: TrainParams,
    weight: np.ndarray | None,
    valid_weight: np.ndarray | None,
) -> tuple[lgb.Booster, int]:
    """:func:`_fit` on a Dask cluster with LightGBM's own Dask interface (data-parallel trees:
    each worker holds a share of the rows, histograms are summed over the network), early-stopped
    by the same rule as the local fit: :class:`ValidationStop`, the whole validation set (weighted
    as :func:`_fit` weights it) shipped inside the callback to every worker, which all hold the
    same trees after each iteration and so stop at the same one (a distributed ``eval_set``
    would give each worker a different share and a different stopping point: LightGBM's Dask
    interface refuses early stopping for that reason, LightGBM issues 3712, 4189). The model is
    cut at its best iteration, as the local fit is. Trees differ slightly from the local fit's
    (each worker bins its own rows and bagging draws per worker), so scores and the best
    iteration match within a tolerance, not bit for bit (tests/test_compute.py)."""
    stop = ValidationStop(
        feature_array(valid, names), valid["label"].to_numpy(), valid_weight,
        params.early_stopping_rounds,
    )  # fmt: skip
    booster = _dask_booster(
        client, train, names, config, params.num_boost_round, weight, callbacks=[stop]
    )
    best = int(booster.best_iteration or booster.current_iteration())
    log.info("Dask fit: %d trees grown, best iteration %d", booster.trees_grown, best)
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best)), best


def _dask_booster(
    client: Any,
    rows: pd.DataFrame,
    names: list[str],
    config: dict[str, Any],
    rounds: int,
    weight: np.ndarray | None,
    *,
    callbacks: list[Any] | None = None,
) -> lgb.Booster:
    """At most ``rounds`` boosting rounds on ``rows`` with ``lightgbm.DaskLGBMClassifier`` on
    ``client``'s workers (the rows split evenly over them), as one local Booster. ``callbacks``
    travel pickled to each worker's ``LGBMClassifier.fit`` (one copy per worker); the model
    returned is the first worker's, which holds the same trees as the others. When a callback
    stopped the fit (:class:`ValidationStop`), the Booster holds the trees up to its
    ``best_iteration`` (LightGBM keeps those) and ``trees_grown`` says how many were grown;
    else every tree (``best_iteration`` 0, ``trees_grown`` the trees)."""
    import dask.dataframe as dd
    from lightgbm import DaskLGBMClassifier

    n_workers = max(1, len(client.scheduler_info()["workers"]))
    frame = feature_matrix(rows, names).reset_index(drop=True)
    frame["__label"] = rows["label"].to_numpy()
    if weight is not None:
        frame["__weight"] = weight
    parts = dd.from_pandas(frame, npartitions=min(n_workers, max(1, len(frame) // 1000)))
    parts = client.persist(parts)
    settings = {k: v for k, v in config.items() if k not in ("metric", "num_threads", "verbosity")}
    model = DaskLGBMClassifier(client=client, n_estimators=rounds, verbose=-1, **settings)
    model.fit(
        parts[names],
        parts["__label"],
        sample_weight=parts["__weight"] if weight is not None else None,
        callbacks=callbacks,
    )
    fitted = model.to_local().booster_
    booster = lgb.Booster(model_str=fitted.model_to_string(num_iteration=-1))
    booster.best_iteration = fitted.best_iteration
    booster.trees_grown = getattr(fitted, "trees_grown", fitted.current_iteration())
    return booster


class ValidationStop:
    """A LightGBM callback that stops a fit as :func:`_fit`'s ``lightgbm.early_stopping`` does:
    the first iteration of highest validation average precision, searching until ``rounds``
    iterations bring no gain (the rule is ``lightgbm.early_stopping`` itself, fed here). The
    average precision is computed on the whole validation set the callback holds (features
    ``X``, labels ``y``, weights ``weight`` or None) from raw scores that each new tree adds to
    (the cost stays linear in the trees); it is LightGBM's ``average_precision`` metric (equal
    to about 1e-9: LightGBM keeps weights as float32).

    Made for data-parallel training on a cluster (:func:`_fit_dask`): every worker receives its
    own copy with the same rows and holds the same trees after each iteration, so it computes
    the same score and raises ``lightgbm.callback.EarlyStopException`` at the same iteration as
    the others: none is left waiting in LightGBM's network. One copy serves one fit at a time
    (a fit from scratch: no ``init_model``). When it stops the fit, it sets the Booster's
    ``trees_grown`` (the iterations run; the fit keeps the first ``best_iteration``)."""

    order = 30  # lightgbm.early_stopping's place among the callbacks
    before_iteration = False

    def __init__(self, X: np.ndarray, y: np.ndarray, weight: np.ndarray | None, rounds: int):
        self.X, self.y, self.weight, self.rounds = X, y, weight, rounds
        self._raw = np.zeros(len(y))
        self._stop: Any = None

    def __call__(self, env: lgb.callback.CallbackEnv) -> None:
        if env.iteration == env.begin_iteration:
            self._raw = np.zeros(len(self.y))
            self._stop = lgb.early_stopping(self.rounds, verbose=False)
        self._raw += env.model.predict(
            self.X, start_iteration=env.iteration, num_iteration=1, raw_score=True
        )
        score = average_precision(self.y, self._raw, self.weight)
        result = ("valid", "average_precision", score, True)
        try:
            self._stop(
                lgb.callback.CallbackEnv(
                    model=env.model,
                    params=env.params,
                    iteration=env.iteration,
                    begin_iteration=env.begin_iteration,
                    end_iteration=env.end_iteration,
                    # lightgbm >= 4.7 reads the fields by name, earlier versions by position
                    evaluation_result_list=[
                        lgb.EvalResult(*result) if hasattr(lgb, "EvalResult") else result
                    ],
                )
            )
        except lgb.callback.EarlyStopException:
            # the trees grown (the fit keeps only the best ones): travels with the Booster
            env.model.trees_grown = env.iteration + 1
            raise


def tree_count_folds(
    rows: pd.DataFrame, split: SplitParams, *, n_folds: int, min_positives: int
) -> list[tuple[date, date]]:
    """The validation blocks ``[start, end)`` of the expanding-window folds that choose the tree
    count (``train.tree_folds``): ``n_folds`` consecutive blocks of whole months (fewer when the
    region has fewer months), the last ending at ``split.test_start``. Their region reaches back
    like :func:`early_stopping_start`'s slice until it holds ``n_folds x min_positives``
    positives (at most to half of the train window, keeping :data:`MIN_POSITIVES` positives
    before it), so it holds at least the slice. Fold k trains on the rows of
    ``[train_start, start_k)`` and validates on block k: no fold sees a row of its block or
    later."""
    region = pd.Timestamp(early_stopping_start(rows, split, min_positives=n_folds * min_positives))
    end = pd.Timestamp(split.test_start)
    months = max(1, (end.year - region.year) * 12 + end.month - region.month)
    sizes = [len(c) for c in np.array_split(np.arange(months), min(n_folds, months))]
    bounds = [region]
    for size in sizes[:-1]:
        bounds.append(bounds[-1] + pd.DateOffset(months=size))
    bounds.append(end)
    return [(a.date(), b.date()) for a, b in zip(bounds[:-1], bounds[1:], strict=False)]


def fold_tree_count(
    rows: pd.DataFrame,
    names: list[str],
    config: dict[str, Any],
    params: TrainParams,
    split: SplitParams,
    folds: list[tuple[date, date]],
    init_models: Mapping[date, lgb.Booster] | None = None,
) -> tuple[int, dict[str, Any]]:
    """The number of trees chosen by time-series folds (:func:`tree_count_folds`): one LightGBM
    per fold on the labelled rows of ``[split.train_start, start)`` (weighted at ``start`` as
    :func:`_fit` weights at its cut; continuing ``init_models[start]`` when given: a two-stage
    area's first stage fitted on the same rows' past), all boosted in lockstep; after each round
    the folds' predictions of their own blocks are pooled and scored by average precision (the
    blocks' rows weighted by their reason, as :func:`_fit`'s early-stopping rows). The count is
    the first maximum of that pooled out-of-fold curve, searching until
    ``early_stopping_rounds`` rounds bring no gain (at most ``num_boost_round``); trees of
    ``init_models`` are not counted.

    One slice of a rare area holds a handful of positives and its curve peaks wherever two of
    them happen to rank well (9 to 75 trees in some fits); the pooled curve of several blocks
    holds every positive of the region. Returns (trees, facts: the folds, the pooled curve's
    best average precision and the mean training rows of the folds, which the refit scales
    from, see :func:`refit_rounds`)."""

    boosters, ys, ws, facts = [], [], [], []
    for start, end in folds:
        every_train = in_window(rows, split.train_start, start)
        every_valid = in_window(rows, start, end)
        # above train.max_training_rows, the fold's rows sampled as _fit samples them
        train, valid = (
            negative_sampling(every_train, params),
            negative_sampling(every_valid, params),
        )
        weight, valid_weight = train.weights(params, start), valid.weights(params, None)
        train, valid = train.rows, valid.rows
        init = init_models.get(start) if init_models is not None else None
        extra: dict[str, Any] = {}
        extra_valid: dict[str, Any] = {}
        if init is not None:
            extra["init_score"] = init.predict(feature_matrix(train, names), raw_score=True)
            extra_valid["init_score"] = init.predict(feature_matrix(valid, names), raw_score=True)
        fold_config = config | row_sampling(params, len(train)) | {"metric": "None"}
        dtrain = _dataset(train, names, "label", weight=weight, params=fold_config, **extra)
        dvalid = _dataset(valid, names, "label", reference=dtrain, **extra_valid)
        booster = lgb.Booster(fold_config, dtrain)
        booster.add_valid(dvalid, f"fold {start}")
        boosters.append(booster)
        ys.append(valid["label"].to_numpy())
        ws.append(np.ones(len(valid)) if valid_weight is None else valid_weight)
        facts.append(
            {
                "train": [str(split.train_start), str(start)],
                "valid": [str(start), str(end)],
                "n_train": len(every_train),
                "n_train_positives": int(every_train["label"].sum()),
                "n_valid": len(every_valid),
                "n_valid_positives": int(every_valid["label"].sum()),
            }
        )
    y, w = np.concatenate(ys), np.concatenate(ws)
    if not (y == 1).any():
        raise RiskmlError("train.tree_folds: the folds' blocks hold no positive")
    preds: list[np.ndarray] = [np.empty(0)] * len(boosters)

    def keep(k: int) -> Any:
        def feval(pred: np.ndarray, _data: lgb.Dataset) -> tuple[str, float, bool]:
            preds[k] = pred
            return "oof", 0.0, True

        return feval

    fevals = [keep(k) for k in range(len(boosters))]
    best, best_score = 1, -np.inf
    for i in range(params.num_boost_round):
        for booster, feval in zip(boosters, fevals, strict=True):
            booster.update()
            booster.eval_valid(feval=feval)
        score = average_precision(y, np.concatenate(preds), w)
        if score > best_score:
            best, best_score = i + 1, score
        elif i + 1 - best >= params.early_stopping_rounds:
            break
    mean_train = int(round(np.mean([f["n_train"] for f in facts])))
    return best, {
        "folds": facts,
        "trees": best,
        "pooled_average_precision": round(best_score, 6),
        "mean_train_rows": mean_train,
    }


def _pretrain(
    features: pd.DataFrame,
    pretrain_labels: pd.DataFrame,
    names: list[str],
    spec: AreaSpec,
    split: SplitParams,
    params: TrainParams,
    *,
    cache: dict[Any, Any] | None = None,
    fold_starts: tuple[date, ...] = (),
) -> tuple[lgb.Booster, lgb.Booster | None, dict[str, Any], dict[date, lgb.Booster]]:
    """The first stage on ``[train_start, valid_start)`` with ``spec.first_stage.train`` over
    ``params``, early-stopped on the next window (moved back like the area's own, see
    :func:`early_stopping_start`); with ``params.refit``, also its refit on every labelled row
    before ``test_start`` (its tree count chosen by its own folds with ``tree_folds`` > 1).
    ``fold_starts``: the starts of the area's own tree-count folds; for each, the first stage
    fitted on the rows before it only (the refit's count scaled to those rows), which that
    fold's own stage continues. Returns (early-stopped booster, refit booster or None, facts,
    {fold start: booster}). ``cache`` (see :func:`train_area`) is keyed by pool, labels,
    features, settings, split and fold starts."""
    params = first_stage_train_params(params, spec)
    pool = spec.first_stage.pool if spec.first_stage is not None else [spec.name]
    key = (
        tuple(pool), _labels_digest(pretrain_labels), tuple(names), repr(params), repr(split),
        fold_starts,
    )  # fmt: skip
    if cache is not None and key in cache:
        early, refit, facts, fold_models = cache[key]
        return early, refit, dict(facts), fold_models
    rows = labelled_rows(features, pretrain_labels)
    start = early_stopping_start(rows, split, min_positives=params.min_valid_positives)
    train = in_window(rows, split.train_start, start)
    valid = in_window(rows, start, split.test_start)
    name = f"{spec.name} (first stage)"
    train_pos = _check_window(name, "train", split.train_start, start, train)
    valid_pos = _check_window(name, "validation", start, split.test_start, valid)
    config = lgb_params(params, train_pos)
    train_rows = negative_sampling(train, params)
    early, best = _fit(
        train_rows, negative_sampling(valid, params), names, config, params, cut=start
    )
    facts = {
        "pool": list(pool),
        "trees": best,
        "n_train": len(train),
        "n_train_positives": train_pos,
        "n_valid": len(valid),
        "n_valid_positives": valid_pos,
        "valid_start": str(start),
        "num_leaves": config["num_leaves"],
        "learning_rate": config["learning_rate"],
        "min_child_samples": config["min_child_samples"],
        "rows_per_tree": train_rows.per_tree(params),
        **train_rows.facts(),
    }
    trees, n_fit = best, len(train)
    if params.tree_folds > 1 and (params.refit or fold_starts):
        folds = tree_count_folds(
            rows, split, n_folds=params.tree_folds, min_positives=params.min_valid_positives
        )
        trees, facts["tree_folds"] = fold_tree_count(rows, names, config, params, split, folds)
        n_fit = facts["tree_folds"]["mean_train_rows"]
    refit = None
    if params.refit:
        every = in_window(rows, split.train_start, split.test_start)
        every_rows = negative_sampling(every, params)
        rounds = refit_rounds(trees, n_fit, len(every), at_least=params.min_refit_trees)
        refit = _refit(every_rows, names, config, params, rounds, cut=split.test_start)
        facts |= {
            "refit_trees": rounds,
            "refit_rows": len(every),
            "refit_rows_per_tree": every_rows.per_tree(params),
            **{f"refit_{k}": v for k, v in every_rows.facts().items()},
        }
    fold_models = {}
    for start in fold_starts:
        before = in_window(rows, split.train_start, start)
        rounds = refit_rounds(
            trees, n_fit, len(before), at_least=params.min_refit_trees, shrink=True
        )
        fold_models[start] = _refit(
            negative_sampling(before, params), names, config, params, rounds, cut=start
        )
    if cache is not None:
        cache[key] = (early, refit, facts, fold_models)
    return early, refit, dict(facts), fold_models


def train_area(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    spec: AreaSpec,
    split: SplitParams,
    params: TrainParams,
    *,
    pretrain_labels: pd.DataFrame | None = None,
    first_stage_cache: dict[Any, Any] | None = None,
    with_recovery: bool = False,
) -> TrainedModel:
    """Train ``spec``'s area model: early-stopped on ``[valid_start, test_start)`` after
    training on ``[train_start, valid_start)``, then (``params.refit``, the default) refitted on
    every labelled row of ``[train_start, test_start)`` with the early-stopped number of trees
    scaled by the rows gained (:func:`refit_rounds`), so that the latest labelled months and
    every positive count. ``valid_average_precision`` and ``valid_score`` are the early-stopped
    model's on the early-stopping slice (out of sample); the refit model has seen that slice.

    ``labels`` (from :func:`riskml.labels.build_labels`) must be built with
    ``known_before=split.test_start``; unlabelled rows (NaN) are left out. Raises
    :class:`RiskmlError` when a window has fewer than :data:`MIN_POSITIVES` positives.

    ``pretrain_labels`` (from :func:`training_labels`, same ``known_before``): train a first
    stage on them (settings: ``spec.first_stage.train`` over ``params``) and continue from its
    trees on ``labels``; the result is one Booster (with ``refit``: the refit second stage
    continues the refit first stage). ``features`` must then hold the first stage's labelled
    rows too.

    ``first_stage_cache``: a dict shared by calls on the same rows and first-stage labels (the
    areas of one pool in one backtest window): areas whose first stage has the same pool,
    labels, features, settings and windows reuse the first one's trees instead of refitting
    them.

    ``with_recovery``: for an area ranked by expected recovery, also train its recovered-duty
    regression on the same windows (:func:`train_recovery`, ``model.recovery``), as the train
    stage and the backtest need; the tune trials and the raw baseline do not.
    """
    names = feature_columns(features, spec)
    rows = labelled_rows(features, labels)
    screen_facts = None
    if params.unlabelled_screen > 0:
        rows, screen_facts = screen_unlabelled(
            rows, features, labels, spec, split, params,
            pretrain_labels=pretrain_labels, first_stage_cache=first_stage_cache,
        )  # fmt: skip
    valid_start = early_stopping_start(rows, split, min_positives=params.min_valid_positives)
    train = in_window(rows, split.train_start, valid_start)
    valid = in_window(rows, valid_start, split.test_start)
    train_pos = _check_window(spec.name, "train", split.train_start, valid_start, train)
    valid_pos = _check_window(spec.name, "validation", valid_start, split.test_start, valid)

    # the refit's tree count from time-series folds (train.tree_folds) instead of the slice
    folds = []
    if params.refit and params.tree_folds > 1:
        folds = tree_count_folds(
            rows, split, n_folds=params.tree_folds, min_positives=params.min_valid_positives
        )
    first, first_refit, pretrain, first_of_fold = None, None, None, None
    if pretrain_labels is not None:
        first, first_refit, pretrain, first_of_fold = _pretrain(
            features, pretrain_labels, names, spec, split, params, cache=first_stage_cache,
            fold_starts=tuple(start for start, _ in folds),
        )  # fmt: skip
    # the area's own stage only (a first stage is the pool's, shared by its areas)
    own_limits = monotone_constraints(names, spec.name, params)
    config = lgb_params(params, train_pos) | own_limits
    train_rows = negative_sampling(train, params)
    booster, best = _fit(
        train_rows, negative_sampling(valid, params), names, config, params, init_model=first,
        cut=valid_start,
    )  # fmt: skip
    valid_score = booster.predict(feature_matrix(valid, names))
    valid_ap = average_precision(valid["label"].to_numpy(), valid_score)
    refit_facts = None
    if params.refit:
        every = in_window(rows, split.train_start, split.test_start)
        first_trees = first.num_trees() if first is not None else 0
        own_trees, n_fit, fold_facts = best - first_trees, len(train), None
        if folds:
            own_trees, fold_facts = fold_tree_count(
                rows, names, config, params, split, folds, first_of_fold
            )
            n_fit = fold_facts["mean_train_rows"]
        first_refit_trees = first_refit.num_trees() if first_refit is not None else 0
        floor = max(params.min_refit_trees, params.min_model_trees - first_refit_trees)
        own = refit_rounds(own_trees, n_fit, len(every), at_least=floor)
        refit_config = lgb_params(params, train_pos + valid_pos) | own_limits
        every_rows = negative_sampling(every, params)
        booster = _refit(
            every_rows, names, refit_config, params, own, init_model=first_refit,
            cut=split.test_start,
        )  # fmt: skip
        refit_facts = {
            "rows": len(every),
            "rows_per_tree": every_rows.per_tree(params),
            **every_rows.facts(),
            "positives": train_pos + valid_pos,
            "trees": booster.num_trees(),
            "window": [str(split.train_start), str(split.test_start)],
        }
        if fold_facts is not None:
            refit_facts["tree_folds"] = fold_facts | {"slice_trees": best - first_trees}
        if screen_facts is not None:
            refit_facts["unlabelled_screen"] = screen_facts
    model = TrainedModel(
        area=spec.name,
        booster=booster,
        feature_names=names,
        best_iteration=best,
        n_train=len(train),
        n_train_positives=train_pos,
        n_valid=len(valid),
        n_valid_positives=valid_pos,
        valid_average_precision=valid_ap,
        lgb_params={
            k: v
            for k, v in (config | row_sampling(params, len(train_rows.rows))).items()
            if k != "monotone_constraints"
        }
        | (
            {"monotone_features": [n for n in names if own_intelligence(n, spec.name)]}
            if own_limits
            else {}
        ),
        valid_start=valid_start,
        pretrain=pretrain,
        refit=refit_facts,
        valid_score=valid_score,
    )
    if with_recovery and spec.rank_by == "expected_recovery":
        model.recovery = train_recovery(features, labels, spec, split, params)
    return model


def screen_unlabelled(
    rows: pd.DataFrame,
    features: pd.DataFrame,
    labels: pd.DataFrame,
    spec: AreaSpec,
    split: SplitParams,
    params: TrainParams,
    *,
    pretrain_labels: pd.DataFrame | None = None,
    first_stage_cache: dict[Any, Any] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """``rows`` (:func:`labelled_rows`) without the ``params.unlabelled_screen`` share of the
    sampled never-controlled items (``control_reason`` :data:`riskml.labels.UNLABELLED`) that
    a first fit scores highest, and the facts of the screen (``None`` when ``rows`` hold no
    sampled item).

    Positive-unlabelled learning with reliable negatives: an item nobody checked is a negative
    only by assumption, and the offences among such items are those that look like the
    findings. The first fit is :func:`train_area` on the labels alone (the same settings and
    windows, first stage included, no sample), so the screen knows only what the labels before
    the cut know; the sampled items are not among its training rows, so their scores are out of
    sample. Its cost is one more fit of the area."""
    sampled = unlabelled_rows(rows)
    if not sampled.any():
        return rows, None
    own = labels[~unlabelled_rows(labels)]
    first = train_area(
        features, own, spec, split, params.model_copy(update={"unlabelled_screen": 0.0}),
        pretrain_labels=pretrain_labels, first_stage_cache=first_stage_cache,
    )  # fmt: skip
    score = first.predict(rows[sampled])
    n_drop = int(round(params.unlabelled_screen * len(score)))
    drop = np.zeros(len(rows), dtype=bool)
    if n_drop > 0:
        order = np.argsort(-score, kind="stable")[:n_drop]
        drop[np.flatnonzero(sampled)[order]] = True
    facts = {
        "sampled": int(sampled.sum()),
        "left_out": int(drop.sum()),
        "first_fit_trees": first.booster.num_trees(),
    }
    return rows[~drop], facts


#: Fewer positive rows with a recovered amount than this: no recovery model (rank by probability).
MIN_RECOVERY_ROWS = 30


def recovery_params(params: TrainParams) -> dict[str, Any]:
    """LightGBM settings of the recovery regression: gamma deviance (positive, skewed amounts;
    log link, so the prediction is a mean, not a median), small trees for a few hundred rows."""
    return {
        "objective": "gamma",
        "metric": "l1",
        "num_leaves": min(params.num_leaves, 15),
        "learning_rate": params.learning_rate,
        "min_child_samples": 10,
        "feature_fraction": params.feature_fraction,
        "lambda_l2": max(params.lambda_l2, 1.0),
        "seed": params.seed,
        "num_threads": params.num_threads,
        "deterministic": True,
        "force_col_wise": True,
        "verbosity": -1,
    }


def train_recovery(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    spec: AreaSpec,
    split: SplitParams,
    params: TrainParams,
) -> RecoveryModel | None:
    """The recovered-duty regression of ``spec``'s area: positive rows whose ``recovered`` > 0,
    trained on ``[train_start, valid_start)`` and early-stopped on ``[valid_start, test_start)``
    (the classifier's windows, same label delay: ``labels`` built with
    ``known_before=split.test_start``). ``None`` when either window has fewer than
    :data:`MIN_RECOVERY_ROWS` (training) or 5 (stopping) such rows."""
    names = feature_columns(features, spec)
    lab = labels[(labels["label"] == 1) & (labels["recovered"] > 0)]
    rows = keyed(features).merge(
        keyed(lab[[*KEY, "label", "recovered"]]), on=KEY, how="inner", validate="one_to_one"
    )
    rows["accepted_date"] = pd.to_datetime(rows["accepted_date"])
    train = in_window(rows, split.train_start, split.valid_start)
    valid = in_window(rows, split.valid_start, split.test_start)
    if len(train) < MIN_RECOVERY_ROWS or len(valid) < MIN_POSITIVES:
        return None
    dtrain = lgb.Dataset(feature_matrix(train, names), label=train["recovered"].to_numpy())
    dvalid = lgb.Dataset(
        feature_matrix(valid, names), label=valid["recovered"].to_numpy(), reference=dtrain
    )
    booster = lgb.train(
        recovery_params(params),
        dtrain,
        num_boost_round=params.num_boost_round,
        valid_sets=[dvalid],
        callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)],
    )
    best = int(booster.best_iteration or booster.current_iteration())
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    model = RecoveryModel(booster, names, best, len(train), len(valid), float("nan"))
    error = np.abs(model.predict(valid) - valid["recovered"].to_numpy())
    model.valid_mean_abs_error = float(error.mean())
    return model


# --- hyperparameter search (opt-in: `riskml tune --area A`, not part of dvc repro) -------------

#: The random search's space: each trial draws one value per setting.
SEARCH_SPACE: dict[str, tuple[Any, ...]] = {
    "num_leaves": (4, 7, 15, 31, 63),
    "learning_rate": (0.01, 0.02, 0.05, 0.1),
    "min_child_samples": (5, 10, 20, 50, 100),
    "feature_fraction": (0.3, 0.5, 0.8, 1.0),
    "lambda_l2": (0.0, 1.0, 10.0, 50.0),
}


def draw_trials(n_trials: int, seed: int) -> list[dict[str, Any]]:
    """``n_trials`` distinct settings drawn at random from :data:`SEARCH_SPACE` (seeded)."""
    rng = np.random.default_rng(seed)
    size = math.prod(len(v) for v in SEARCH_SPACE.values())
    trials: list[dict[str, Any]] = []
    seen: set[tuple] = set()
    while len(trials) < min(n_trials, size):
        trial = {k: v[int(rng.integers(len(v)))] for k, v in SEARCH_SPACE.items()}
        key = tuple(trial.values())
        if key not in seen:
            seen.add(key)
            trials.append(trial)
    return trials


def tune_area(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    spec: AreaSpec,
    split: SplitParams,
    params: TrainParams,
    *,
    n_trials: int,
    seed: int,
    log: Any = None,
    pretrain_labels: pd.DataFrame | None = None,
) -> list[dict[str, Any]]:
    """Random search: train ``spec``'s model with each drawn setting (over ``params``) and score
    it on the early-stopping slice's average precision. Returns one dict per trial (settings,
    ``valid_average_precision``, ``best_iteration``), best first. ``log(trial, result)`` is
    called after each trial when given.

    The score is the early-stopping slice's: it chose the number of trees too, so it is
    optimistic; judge the chosen settings on the test window (``riskml evaluate``) or the
    backtests, never on this figure alone.
    """
    results = []
    for i, trial in enumerate(draw_trials(n_trials, seed)):
        model = train_area(
            features,
            labels,
            spec,
            split,
            # the trial is judged on the early-stopping slice: no refit (it would see it)
            params.model_copy(update={**trial, "refit": False}),
            pretrain_labels=pretrain_labels,
        )
        result = {
            **trial,
            "valid_average_precision": model.valid_average_precision,
            "best_iteration": model.best_iteration,
        }
        if log is not None:
            log(i, result)
        results.append(result)
    return sorted(results, key=lambda r: -np.nan_to_num(r["valid_average_precision"], nan=-1))


def tune_yaml(area: str, best: dict[str, Any]) -> str:
    """The ``training.train`` snippet of ``pipelines/<area>.yaml`` with the best settings."""
    lines = [
        f"# pipelines/{area}.yaml (best of `riskml tune --area {area}`: "
        f"validation average precision {best['valid_average_precision']:.4f})",
        "training:",
        "  train:",
    ]
    lines += [f"    {k}: {best[k]}" for k in SEARCH_SPACE]
    return "\n".join(lines) + "\n"


def key_hashes(frame: pd.DataFrame) -> np.ndarray:
    """A 64-bit hash of each row's key (the same for the same key whatever its dtypes)."""
    return pd.util.hash_pandas_object(keyed(frame[KEY]), index=False).to_numpy()


def key_in(frame: pd.DataFrame, wanted: np.ndarray) -> np.ndarray:
    """Whether each row's key is one of ``wanted`` (key hashes, :func:`key_hashes`), by a hash
    table of ``wanted`` (pandas' ``isin``), not numpy's sort of both: at 10 million items the
    tables tested hold tens of millions of rows."""
    return pd.Series(key_hashes(frame)).isin(wanted).to_numpy(bool)


def training_features(
    folder: Path, spec: AreaSpec, split: SplitParams, labels: list[pd.DataFrame | None]
) -> pd.DataFrame:
    """What training reads of the features dataset ``folder``: the key, date and model columns
    (:func:`feature_columns`) of the items that one of ``labels`` (the area's own, its first
    stage's) labels, accepted in ``[train_start, test_start)``. Read month by month with those
    rows filtered out as each month is read, so that peak memory is the labelled rows plus one
    month, not the history's features; the rows keep the dataset's order and dtypes, so
    training on them equals training on the whole dataset (tests/test_train.py)."""
    schema = io.read_partitioned(folder, months=[])
    # the excluded features too: naming them is checked on the frame (feature_columns)
    wanted_columns = {*KEY, "accepted_date", *feature_columns(schema, spec), *spec.exclude_features}
    columns = [c for c in schema.columns if c in wanted_columns]
    wanted = np.unique(
        np.concatenate(
            [key_hashes(f[f["label"].notna()]) for f in labels if f is not None]
            or [np.zeros(0, np.uint64)]
        )
    )
    start, end = pd.Timestamp(split.train_start), pd.Timestamp(split.test_start)

    def labelled(table: Any) -> np.ndarray:
        dates = pd.to_datetime(table.column("accepted_date").to_pandas())
        return ((dates >= start) & (dates < end)).to_numpy() & key_in(
            table.select(list(KEY)).to_pandas(), wanted
        )

    months = io.months_overlapping(folder, split.train_start, split.test_start)
    return io.read_partitioned(folder, months=months, columns=columns, where=labelled)


def _stage_inputs(
    root: Path, params: Params, spec: AreaSpec
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """The train and tune stages' inputs: the labelled items' features
    (:func:`training_features`), the area's labels and its first stage's (known before
    ``split.test_start``; the pool's specs read from ``pipelines/``)."""
    catalog = Catalog(root)
    share = area_train_params(params, spec).unlabelled_share
    # the acceptance date only to sample never-controlled items before the cut
    columns = [*KEY, "accepted_date"] if share > 0 else list(KEY)
    declarations = io.read_dataset(catalog.declarations, columns=columns)
    # results known before the test window: of items accepted before it (stored by their month)
    outcomes = io.read_dataset(
        catalog.outcomes, months=io.months_before(catalog.outcomes, params.split.test_start)
    )
    labels, pretrain = training_labels(
        declarations,
        outcomes,
        spec,
        pool_specs({spec.name: spec}, root),
        known_before=params.split.test_start,
        labelled_only=True,  # training reads the labelled items only: no frame of every item
        unlabelled_share=share,
    )
    del declarations, outcomes
    features = training_features(catalog.features, spec, params.split, [labels, pretrain])
    return features, labels, pretrain


def run_tune(
    area: str,
    root: Path,
    params: Params,
    spec: AreaSpec,
    *,
    n_trials: int | None = None,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """``riskml tune --area A``: random search over :data:`SEARCH_SPACE` for one area, every trial
    a nested MLflow run under one ``tune-<area>`` run; returns the trials and the YAML snippet.
    Writes no file and registers no model."""
    root = Path(root).resolve()
    tune = params.tune
    features, labels, pretrain = _stage_inputs(root, params, spec)
    base = area_train_params(params, spec)
    uri = tracking_uri or tracking.default_tracking_uri(root)
    exp_id = tracking.ensure_experiment(root, params.mlflow.experiment, uri)
    tracking.use_store(uri)
    tags = tracking.run_tags(root, area=spec.name, stage="tune")

    def log(i: int, result: dict[str, Any]) -> None:
        with mlflow.start_run(
            experiment_id=exp_id, run_name=f"tune-{spec.name}-{i}", nested=True, tags=tags
        ):
            mlflow.log_params({k: result[k] for k in SEARCH_SPACE})
            mlflow.log_metrics(
                {
                    "valid_average_precision": result["valid_average_precision"],
                    "best_iteration": result["best_iteration"],
                }
            )

    with mlflow.start_run(experiment_id=exp_id, run_name=f"tune-{spec.name}", tags=tags) as run:
        mlflow.log_params({"n_trials": n_trials or tune.n_trials, "seed": tune.seed})
        results = tune_area(
            features, labels, spec, params.split, base,
            n_trials=n_trials or tune.n_trials, seed=tune.seed, log=log,
            pretrain_labels=pretrain,
        )  # fmt: skip
        best = results[0]
        mlflow.log_metric("best_valid_average_precision", best["valid_average_precision"])
        snippet = tune_yaml(spec.name, best)
        mlflow.log_text(snippet, "best_train_settings.yaml")
    return {"area": spec.name, "run_id": run.info.run_id, "trials": results, "yaml": snippet}
