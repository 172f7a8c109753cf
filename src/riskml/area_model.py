"""The area model: everything one risk area's score depends on, in one object.

An :class:`AreaModel` holds the area's classifier (one LightGBM Booster; for the rare areas the
two stages of :func:`riskml.train.train_area` folded into it), revenue's recovered-duty
regression, the feature list, the ranking key and its parameters (``rank_by``,
``recovery_exponent``, the recovery-ratio fallback), the operating threshold of the candidate
list, the calibration record and the fingerprint of the rows it was trained on. It is the fitted
object *and* the artifact (scikit-learn style: learned attributes end in ``_``):

* :meth:`AreaModel.fit` trains it (through :func:`riskml.train.train_area`, the one trainer of
  the train stage, ``riskml tune`` and the backtest);
* :meth:`predict_proba`, :meth:`rank_key`, :meth:`contributions` are what the stages and the
  service call; nobody reads a Booster or a threshold file beside it;
* :meth:`save` / :meth:`load` write and read the folder ``models/<area>/`` (native Booster text
  files plus ``model.json``), :meth:`content_hash` identifies it: the registry registers one
  version per content (:mod:`riskml.registry`).

Two parts, saved apart by two DVC stages, so that a policy edit refits nothing:

* the **estimator** (what :meth:`fit` learns: classifier, recovery regression, feature list,
  recovery ratio, calibration, fingerprint, facts), written by the train stage with
  :meth:`save_estimator` (``estimator.json`` beside the Boosters) and identified by
  :meth:`estimator_hash`;
* the **list policy** (``rank_by``, ``recovery_exponent`` and the operating threshold, the rank
  key at the operating rate), bound to an estimator without refitting by :meth:`with_policy`
  and :meth:`set_threshold` (the register stage) before the whole model is saved and registered.

Layer: this module sits above the domain (features, labels, metrics, the lists' rank key in
:mod:`riskml.ranking`, TreeSHAP in :mod:`riskml.reasons`) and below the stages; it does no MLflow
and reads no project path.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from riskml import compute, io
from riskml.config import AreaSpec, SplitParams, TrainParams
from riskml.contract import KEY, RiskmlError, keyed
from riskml.ranking import (
    KEY_PROBABILITY,
    KEY_RECOVERY_MODEL,
    KEY_RECOVERY_RATIO,
    rank_columns,
    rank_key,
    rank_key_words,
    recovery_ratio,
)
from riskml.reasons import check_additivity, contributions
from riskml.train import (
    RecoveryModel,
    feature_array,
    feature_matrix,
    in_window,
    labelled_rows,
    train_area,
)

#: Files of a saved area model; :meth:`AreaModel.content_hash` covers these (not the card).
MODEL_FILE, RECOVERY_FILE, STATE_FILE = "model.txt", "recovery.txt", "model.json"
#: The fitted estimator's state without the list policy (:meth:`AreaModel.save_estimator`).
ESTIMATOR_FILE = "estimator.json"
#: Keys of ``model.json`` that are the list policy, not the estimator.
POLICY_KEYS = ("rank_by", "recovery_exponent", "threshold", "threshold_basis")
#: Written beside the model by the train stage (who registered it, as which version).
CARD_FILE, REGISTRATION_FILE = "model_card.md", "registration.json"
__all__ = [  # the rank key and TreeSHAP live in the domain layer; re-exported here
    "KEY_PROBABILITY",
    "KEY_RECOVERY_MODEL",
    "KEY_RECOVERY_RATIO",
    "AreaModel",
    "check_additivity",
    "contributions",
    "rank_columns",
    "rank_key",
    "recovery_ratio",
]
#: Bins of the calibration record (score deciles of the early-stopping slice).
CALIBRATION_BINS = 10
FORMAT_VERSION = 1
#: Below this many rows a prediction runs on one thread: starting LightGBM's OpenMP threads costs
#: more than a few hundred rows of trees (and on a busy machine a second thread spin-waits for a
#: core, 20 ms for one row). Each row's value is the same whatever the thread count.
SMALL_PREDICTION = 2000


def predict_threads(n_rows: int) -> int:
    """LightGBM threads for a prediction of ``n_rows`` rows (see :data:`SMALL_PREDICTION`)."""
    return 1 if n_rows < SMALL_PREDICTION else 2


@dataclass(eq=False)
class AreaModel:
    """One area's whole model (see the module docstring). Build with :meth:`for_spec`, then
    :meth:`fit` (or :meth:`load`)."""

    area: str
    rank_by: str = "probability"
    recovery_exponent: float = 1.0
    classifier_: lgb.Booster | None = None
    feature_names_: list[str] = field(default_factory=list)
    recovery_: RecoveryModel | None = None
    #: recovered duty per duty paid of the findings known at training: the rank key's fallback
    #: (``score × ratio × duties_paid``) when there is no recovery regression
    recovery_ratio_: float = 0.0
    #: rank key of the item at the operating rate of the scored period (inf: none)
    threshold_: float = math.inf
    threshold_basis_: dict[str, Any] = field(default_factory=dict)
    #: identity (LightGBM's probability, classes not re-weighted) and its reliability measured
    #: on the early-stopping slice's labelled items
    calibration_: dict[str, Any] = field(default_factory=dict)
    fingerprint_: str = ""
    facts_: dict[str, Any] = field(default_factory=dict)
    #: set by :mod:`riskml.registry` when loaded from or registered in MLflow (not saved)
    registration: Any = None

    # --- construction ------------------------------------------------------------------------

    @classmethod
    def for_spec(cls, spec: AreaSpec) -> AreaModel:
        """An unfitted model of ``spec``'s area with its ranking rule."""
        return cls(area=spec.name, rank_by=spec.rank_by, recovery_exponent=spec.recovery_exponent)

    def with_policy(self, rank_by: str, recovery_exponent: float) -> AreaModel:
        """The same fitted estimator (Boosters shared, nothing refitted) under another list
        policy; its threshold is unset until :meth:`set_threshold`."""
        return replace(
            self,
            rank_by=rank_by,
            recovery_exponent=float(recovery_exponent),
            threshold_=math.inf,
            threshold_basis_={},
            registration=None,
        )

    def fit(
        self,
        features: pd.DataFrame,
        labels: pd.DataFrame,
        spec: AreaSpec,
        split: SplitParams,
        params: TrainParams,
        *,
        pretrain_labels: pd.DataFrame | None = None,
        first_stage_cache: dict[Any, Any] | None = None,
        recovery_ratio: float = 0.0,
    ) -> AreaModel:
        """Train the classifier (two stages when ``pretrain_labels`` is given) and, for an area
        ranked by expected recovery, the recovery regression, by :func:`riskml.train.train_area`
        (labels known before ``split.test_start``); record calibration and fingerprint.

        ``recovery_ratio``: the rank key's fallback without a recovery regression
        (:func:`riskml.select.recovery_ratio` of the findings known before ``test_start``)."""
        trained = train_area(
            features,
            labels,
            spec,
            split,
            params,
            pretrain_labels=pretrain_labels,
            first_stage_cache=first_stage_cache,
            with_recovery=True,
        )
        self.classifier_ = trained.booster
        self.feature_names_ = list(trained.feature_names)
        self.recovery_ = trained.recovery
        self.recovery_ratio_ = float(recovery_ratio)
        valid_start = trained.valid_start or split.valid_start
        self.facts_ = {
            "best_iteration": trained.best_iteration,
            "n_train": trained.n_train,
            "n_train_positives": trained.n_train_positives,
            "n_valid": trained.n_valid,
            "n_valid_positives": trained.n_valid_positives,
            "valid_average_precision": trained.valid_average_precision,
            "lgb_params": trained.lgb_params,
            "train_window": [str(split.train_start), str(valid_start)],
            "valid_window": [str(valid_start), str(split.test_start)],
            "labels_known_before": str(split.test_start),
            "pretrain": trained.pretrain,
            "refit": trained.refit,
        }
        rows = labelled_rows(features, labels)
        train_rows = in_window(rows, split.train_start, split.test_start)
        valid = in_window(rows, valid_start, split.test_start)
        # measured out of sample: the early-stopped model's scores of the slice (the refit
        # model, params.refit, has trained on it)
        valid_score = trained.valid_score
        if valid_score is None or len(valid_score) != len(valid):
            valid_score = self.predict_proba(valid)
        self.calibration_ = calibration_record(valid["label"].to_numpy(float), valid_score)
        self.fingerprint_ = fingerprint(train_rows, self.feature_names_, pretrain_labels)
        return self

    def set_threshold(
        self,
        rows: pd.DataFrame,
        n_picks: int,
        *,
        duties_paid: np.ndarray | None = None,
        keys: np.ndarray | None = None,
    ) -> AreaModel:
        """The operating threshold: the rank key of the ``n_picks``-th item of ``rows`` (the
        train stage: the test window's items, ``n_picks`` = the area's operating rate × their
        number), so that a new item whose key reaches it would be inspected at that rate.
        ``keys``: the rows' rank keys when already computed (``rows`` then needs only
        ``accepted_date``)."""
        if n_picks <= 0 or len(rows) == 0:
            self.threshold_ = math.inf
        else:
            if keys is None:
                keys = self.rank_key(rows, duties_paid=duties_paid)["rank_key"].to_numpy()
            keys = np.sort(np.asarray(keys))
            self.threshold_ = float(keys[::-1][min(n_picks, len(keys)) - 1])
        dates = pd.to_datetime(rows["accepted_date"]) if len(rows) else pd.Series(dtype="M8[ns]")
        self.threshold_basis_ = {
            "model_picks": int(n_picks),
            "items": len(rows),
            "period": [str(dates.min().date()), str(dates.max().date())] if len(rows) else [],
        }
        return self

    # --- prediction --------------------------------------------------------------------------

    def _check_fitted(self) -> lgb.Booster:
        if self.classifier_ is None:
            raise RiskmlError(f"area model {self.area!r} is not fitted; call fit() or load()")
        return self.classifier_

    def predict_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Probability of an offence of the area for each row (one column: the class of
        interest, i.e. scikit-learn's ``predict_proba(X)[:, 1]``). ``X``: a frame with the
        model's features, or a matrix of exactly :attr:`feature_names_` in that order."""
        booster = self._check_fitted()
        if len(X) == 0:
            return np.zeros(0)
        threads = predict_threads(len(X))
        if isinstance(X, np.ndarray):
            return booster.predict(X, num_threads=threads)
        return booster.predict(feature_matrix(X, self.feature_names_), num_threads=threads)

    def rank_key(
        self,
        X: pd.DataFrame,
        proba: np.ndarray | None = None,
        *,
        duties_paid: np.ndarray | None = None,
        recovery_input: np.ndarray | None = None,
    ) -> pd.DataFrame:
        """``expected_recovery`` and ``rank_key`` of each row (index of ``X``), by the one rule
        of the candidate lists (:func:`rank_columns`): the probability, or for an
        area ranked by expected recovery probability × predicted recovered duty **
        ``recovery_exponent`` (without a regression: the recovery ratio × ``duties_paid``).
        ``proba``: the rows' :meth:`predict_proba` when already computed; ``recovery_input``:
        the rows' recovery-regression features as a matrix (``recovery_.feature_names`` in
        order) when already converted."""
        if proba is None:
            proba = self.predict_proba(X)
        if duties_paid is None and "duties_paid" in getattr(X, "columns", ()):
            duties_paid = X["duties_paid"].to_numpy(np.float64, na_value=np.nan)
        expected, key = self.rank_arrays(
            proba, X if recovery_input is None else recovery_input, duties_paid=duties_paid
        )
        return pd.DataFrame({"expected_recovery": expected, "rank_key": key}, index=X.index)

    def rank_arrays(
        self,
        proba: np.ndarray,
        recovery_input: pd.DataFrame | np.ndarray,
        *,
        duties_paid: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(expected_recovery, rank_key)`` arrays of :meth:`rank_key` from the rows'
        probabilities and recovery-regression inputs (a frame, or the matrix of
        ``recovery_.feature_names``), without a frame."""
        amount = None
        if self.rank_by == "expected_recovery" and self.recovery_ is not None:
            amount = self.recovery_.expected(
                recovery_input, proba, num_threads=predict_threads(len(proba))
            )
        expected, key, _ = rank_columns(
            self._rank_spec(),
            proba,
            model_recovery=amount,
            ratio=self.recovery_ratio_,
            duties_paid=duties_paid,
        )
        return expected, key

    @property
    def rank_words(self) -> str:
        """The model's rank key in words (:func:`rank_key_words`)."""
        return rank_key_words(self.rank_by, self.recovery_exponent, self.rank_source)

    @property
    def rank_source(self) -> str:
        """Where the rank key comes from (:data:`KEY_RECOVERY_MODEL`, ...)."""
        if self.rank_by != "expected_recovery":
            return KEY_PROBABILITY
        if self.recovery_ is not None:
            return KEY_RECOVERY_MODEL
        return KEY_RECOVERY_RATIO if self.recovery_ratio_ > 0 else KEY_PROBABILITY

    def _rank_spec(self) -> Any:
        # rank_columns reads only these two fields of a spec
        from types import SimpleNamespace

        return SimpleNamespace(rank_by=self.rank_by, recovery_exponent=self.recovery_exponent)

    def contributions(
        self, X: pd.DataFrame, *, chunk_size: int = 2000, client: Any = None
    ) -> pd.DataFrame:
        """TreeSHAP contribution of each feature to each row's raw score (log-odds) plus
        ``bias``, additivity checked per chunk (:func:`contributions`); in this process, or on
        ``client``'s Dask cluster in tasks of at most ``chunk_size`` rows, the model sent once
        per worker with the rows' model columns (:func:`riskml.compute.map_rows`): the same
        frame, bit for bit (a row's contributions do not depend on the other rows)."""
        booster = self._check_fitted()
        explain = functools.partial(contributions, booster, chunk_size=chunk_size)
        if client is None:
            return explain(X)
        sent = [name for name in booster.feature_name() if name in X.columns]  # else: the error
        return compute.map_rows(X[sent], explain, client=client, rows_per_task=chunk_size)

    # --- persistence -------------------------------------------------------------------------

    def estimator_state(self) -> dict[str, Any]:
        """What :meth:`fit` learnt, without the list policy: ``estimator.json``."""
        rec = self.recovery_
        return {
            "format": FORMAT_VERSION,
            "area": self.area,
            "features": self.feature_names_,
            "recovery_ratio": self.recovery_ratio_,
            "calibration": self.calibration_,
            "fingerprint": self.fingerprint_,
            "facts": self.facts_,
            "recovery": None
            if rec is None
            else {
                "features": rec.feature_names,
                "objective": "gamma",
                "best_iteration": rec.best_iteration,
                "n_train": rec.n_train,
                "n_valid": rec.n_valid,
                "valid_mean_abs_error": rec.valid_mean_abs_error,
            },
        }

    def state(self) -> dict[str, Any]:
        """Everything but the Booster files, as saved in ``model.json``: the estimator's state,
        its hash and the list policy."""
        return self.estimator_state() | {
            "estimator_hash": self.estimator_hash(),
            "rank_by": self.rank_by,
            "recovery_exponent": self.recovery_exponent,
            "threshold": None if math.isinf(self.threshold_) else self.threshold_,
            "threshold_basis": self.threshold_basis_,
        }

    def _boosters(self) -> dict[str, str]:
        texts = {MODEL_FILE: self._check_fitted().model_to_string()}
        if self.recovery_ is not None:
            texts[RECOVERY_FILE] = self.recovery_.booster.model_to_string()
        return texts

    def _estimator_texts(self) -> dict[str, str]:
        """The estimator's files as :meth:`save_estimator` writes them."""
        return self._boosters() | {ESTIMATOR_FILE: _json_text(self.estimator_state())}

    def _texts(self) -> dict[str, str]:
        """The saved files' contents, exactly as written (the content hash is over these)."""
        return self._boosters() | {STATE_FILE: _json_text(self.state())}

    def content_hash(self) -> str:
        """SHA-256 of the model's files (classifier, recovery regression, ``model.json``): two
        models with the same hash score, rank and explain every row the same."""
        return _digest(self._texts())

    def estimator_hash(self) -> str:
        """SHA-256 of the fitted estimator alone (Boosters and ``estimator.json``): the same for
        every list policy bound to it, so a registered version shows which training it holds."""
        return _digest(self._estimator_texts())

    def save(self, folder: Path) -> dict[str, Path]:
        """Write the model's files into ``folder`` atomically (a stale ``recovery.txt`` of an
        earlier model is removed); return their paths."""
        return _write(folder, self._texts())

    def save_estimator(self, folder: Path) -> dict[str, Path]:
        """Write the fitted estimator (Boosters and ``estimator.json``, no list policy) into
        ``folder``: the train stage's output."""
        return _write(folder, self._estimator_texts())

    @classmethod
    def load_estimator(cls, folder: Path) -> AreaModel:
        """The estimator saved in ``folder`` by :meth:`save_estimator`, without a list policy
        (bind one with :meth:`with_policy`)."""
        return cls.load(folder, state_file=ESTIMATOR_FILE)

    @classmethod
    def load(cls, folder: Path, *, state_file: str = STATE_FILE) -> AreaModel:
        """The model saved in ``folder`` by :meth:`save`; :class:`RiskmlError` naming the file
        when something is missing."""
        folder = Path(folder)
        for name in (MODEL_FILE, state_file):
            if not (folder / name).exists():
                raise RiskmlError(
                    f"{folder / name}: not found; train the area first (`riskml train --area "
                    f"{folder.name}`)"
                )
        state = json.loads((folder / state_file).read_text(encoding="utf-8"))
        if state.get("format") != FORMAT_VERSION:
            raise RiskmlError(
                f"{folder / state_file}: not an area model of format {FORMAT_VERSION}; retrain "
                f"the area (`riskml train --area {folder.name}`)"
            )
        rec = state.get("recovery")
        recovery = None
        if rec is not None:
            recovery = RecoveryModel(
                booster=lgb.Booster(model_file=str(folder / RECOVERY_FILE)),
                feature_names=rec["features"],
                best_iteration=int(rec["best_iteration"]),
                n_train=int(rec["n_train"]),
                n_valid=int(rec["n_valid"]),
                valid_mean_abs_error=float(rec["valid_mean_abs_error"]),
            )
        threshold = state.get("threshold")
        return cls(
            area=state["area"],
            rank_by=state.get("rank_by", "probability"),
            recovery_exponent=float(state.get("recovery_exponent", 1.0)),
            classifier_=lgb.Booster(model_file=str(folder / MODEL_FILE)),
            feature_names_=list(state["features"]),
            recovery_=recovery,
            recovery_ratio_=float(state.get("recovery_ratio", 0.0)),
            threshold_=math.inf if threshold is None else float(threshold),
            threshold_basis_=state.get("threshold_basis", {}),
            calibration_=state.get("calibration", {}),
            fingerprint_=state.get("fingerprint", ""),
            facts_=state.get("facts", {}),
        )

    # --- description -------------------------------------------------------------------------

    def describe(self) -> str:
        """``riskml-revenue v3 (champion)`` when registered, else the area and the hash."""
        if self.registration is not None:
            return str(self.registration)
        return f"{self.area} (unregistered, {self.content_hash()[:12]})"


def calibration_record(y: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    """Reliability of ``proba`` on labelled rows ``y``: mean predicted and observed rate per
    score decile, and the Brier score. The model applies no recalibration (``identity``)."""
    out: dict[str, Any] = {
        "method": "identity",
        "population": "early-stopping slice, labelled items",
        "n": len(y),
    }
    if len(y) == 0:
        return out | {"bins": [], "brier": None}
    order = np.argsort(proba, kind="stable")
    bins = []
    for part in np.array_split(order, min(CALIBRATION_BINS, len(order))):
        bins.append(
            {
                "predicted": float(proba[part].mean()),
                "observed": float(y[part].mean()),
                "n": len(part),
            }
        )
    return out | {"bins": bins, "brier": float(np.mean((proba - y) ** 2))}


def fingerprint(
    rows: pd.DataFrame, names: list[str], pretrain_labels: pd.DataFrame | None = None
) -> str:
    """SHA-256 of the training data: key, date, label and features of the labelled rows of the
    train and early-stopping windows (and the first stage's labels, if any)."""
    digest = hashlib.sha256()
    cols = [*KEY, "accepted_date", "label", *names]
    ordered = rows[cols].sort_values(KEY, kind="stable").reset_index(drop=True)
    digest.update(pd.util.hash_pandas_object(ordered, index=False).to_numpy().tobytes())
    if pretrain_labels is not None:
        pre = pretrain_labels[[*KEY, "label"]].dropna(subset=["label"])
        pre = pre.astype({"declaration_id": "string"}).sort_values(KEY, kind="stable")
        digest.update(
            pd.util.hash_pandas_object(pre.reset_index(drop=True), index=False).to_numpy().tobytes()
        )
    return digest.hexdigest()


def _json_text(state: dict[str, Any]) -> str:
    return json.dumps(_plain(state), indent=2, sort_keys=True) + "\n"


def _digest(texts: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for name, text in sorted(texts.items()):
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _write(folder: Path, texts: dict[str, str]) -> dict[str, Path]:
    """Write ``texts`` (file name → content) into ``folder`` atomically; a stale
    ``recovery.txt`` of an earlier model is removed."""
    folder = Path(folder)
    paths = {name: io.write_text(text, folder / name) for name, text in texts.items()}
    if RECOVERY_FILE not in paths and (folder / RECOVERY_FILE).exists():
        (folder / RECOVERY_FILE).unlink()
    return paths


def _plain(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf → None, numpy scalars → Python."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# --- the test window scored (evaluate, and the register stage that keeps it for evaluate) -------


def score_frame(
    model: Any,
    features: pd.DataFrame,
    *,
    start: date,
    end: date,
    rank_key: bool = False,
    duties_paid: np.ndarray | None = None,
) -> pd.DataFrame:
    """Key, ``accepted_date``, ``score`` (probability) of every item accepted in [start, end)
    by ``model`` (an :class:`~riskml.area_model.AreaModel`), and for an area ranked by expected
    recovery with a recovery model its ``expected_recovery`` (the lists' key needs it).

    ``rank_key``: add the lists' key of each item (:meth:`AreaModel.rank_key`, its fallback
    reading ``duties_paid``: the window's items' duties paid, in their order), from the same
    prediction (the register stage's operating threshold: :func:`score_months`)."""
    rows = in_window(features, start, end)
    out = keyed(rows[[*KEY, "accepted_date"]].reset_index(drop=True))
    # the model's columns as one matrix, float32 when the stored features are (they are): the
    # same doubles in LightGBM's trees as the float64 frame, so the same probabilities bit for
    # bit (tests/test_evaluate.py), without a float64 copy and a second block of every row
    proba = model.predict_proba(feature_array(rows, model.feature_names_))
    out["score"] = proba
    recovery = model.rank_by == "expected_recovery" and model.recovery_ is not None
    if recovery or rank_key:
        # with a recovery model the expected recovery is its prediction, whatever duties_paid
        ranked = model.rank_key(rows, proba, duties_paid=duties_paid)
        if recovery:
            out["expected_recovery"] = ranked["expected_recovery"].to_numpy()
        if rank_key:
            out["rank_key"] = ranked["rank_key"].to_numpy()
    return out


#: Rows scored at once by :func:`score_months` (a month of ten million items is 420,000): the
#: model's input matrix and its predictions are per slice.
SCORE_SLICE = 100_000


def duties_paid_of(rows: pd.DataFrame, declarations: pd.DataFrame | None) -> np.ndarray | None:
    """Each of ``rows``' duty paid (from ``declarations``, by key); None without the column."""
    if declarations is None or "duties_paid" not in declarations.columns:
        return None
    paid = keyed(rows[KEY]).merge(keyed(declarations[[*KEY, "duties_paid"]]), on=KEY, how="left")
    return paid["duties_paid"].to_numpy(np.float64, na_value=np.nan)


def _score_slices(
    model: Any,
    rows: pd.DataFrame,
    *,
    start: date,
    end: date,
    rank_key: bool = False,
    declarations: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """:func:`score_frame` of ``rows``' items of ``[start, end)`` in slices of
    :data:`SCORE_SLICE` rows (row-wise: the same frame as one pass), with the rank key's duties
    paid from ``declarations`` when ``rank_key``."""
    rows = in_window(rows, start, end)
    paid = duties_paid_of(rows, declarations) if rank_key else None
    parts = []
    for lo in range(0, max(len(rows), 1), SCORE_SLICE):
        cut = None if paid is None else paid[lo : lo + SCORE_SLICE]
        part = rows.iloc[lo : lo + SCORE_SLICE]
        parts.append(
            score_frame(model, part, start=start, end=end, rank_key=rank_key, duties_paid=cut)
        )
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def score_months(
    model: Any,
    folder: Path,
    *,
    start: date,
    end: date,
    client: Any = None,
    rank_key: bool = False,
    declarations: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """:func:`score_frame` of every item of ``[start, end)`` of the partitioned features dataset
    ``folder``, one month at a time (each month read with the model's columns only, a large
    month in slices of :data:`SCORE_SLICE` rows), in this process or as one task per month on
    ``client``'s Dask cluster (:func:`riskml.compute.map_months`): the same frame, bit for bit,
    as :func:`score_frame` on the whole dataset (tests/test_compute.py), with peak memory one
    month's items. The evaluate stage's scores; with ``rank_key`` also the lists' key
    (``declarations``: the window's duties paid, for the key's fallback), which the register
    stage's threshold reads (:func:`riskml.train_stage.bind_policy`)."""
    columns = [*KEY, "accepted_date", *model.feature_names_]
    months = io.months_overlapping(folder, start, end)
    score = functools.partial(
        _score_slices, model, start=start, end=end, rank_key=rank_key, declarations=declarations
    )
    scored = compute.map_months(folder, months, score, client=client, columns=columns)
    return _in_stored_order(scored, folder, months)


def _in_stored_order(scored: pd.DataFrame, folder: Path, months: list[str]) -> pd.DataFrame:
    """``scored`` (the months' items, month after month) in the row order of the features
    dataset ``folder`` read whole: the same frame unless the dataset is not sorted by month."""
    if io.ROW not in io.dataset_columns(folder):
        return scored
    # a dataset not sorted by month: its stored row order, as reading it whole gives
    order = keyed(io.read_partitioned(folder, months=months, columns=list(KEY)))
    return order.merge(scored, on=list(KEY), how="inner", validate="one_to_one")


#: The test window's scores kept with the area model by the register stage (``models/<area>/``):
#: the scores of :func:`score_frame` it computed for the operating threshold, with the record of
#: what they were computed from (:func:`write_window_scores`). The evaluate stage reads them
#: instead of predicting every item of the window a second time (:func:`stored_window_scores`).
WINDOW_SCORES = "window_scores"
WINDOW_SCORES_RECORD = "window_scores.json"


def _window_sources(model: Any, folder: Path, start: date, end: date) -> dict[str, Any]:
    """What the window's scores depend on: the model's content, the window, and each stored
    features partition of the window (file size and modification time: a rewritten month of
    features is a changed month; :func:`riskml.io.write_partitioned` keeps an unchanged one's
    file)."""
    parts = {}
    for month in io.months_overlapping(folder, start, end):
        stat = io.partition_path(folder, month).stat()
        parts[month] = [stat.st_size, stat.st_mtime_ns]
    return {
        "content_hash": model.content_hash(),
        "window": [str(start), str(end)],
        "feature_partitions": parts,
    }


def write_window_scores(
    scored: pd.DataFrame, model_folder: Path, model: Any, features: Path, *, start: date, end: date
) -> None:
    """Keep ``scored`` (:func:`score_frame`'s columns of every item of ``[start, end)`` of the
    features dataset ``features``, by ``model`` as saved in ``model_folder``) in
    ``model_folder``: the register stage, which scored the window for the threshold."""
    folder = Path(model_folder)
    (folder / WINDOW_SCORES_RECORD).unlink(missing_ok=True)  # no record: no stale scores read
    io.write_partitioned(scored.reset_index(drop=True), folder / WINDOW_SCORES)
    record = _window_sources(model, features, start, end) | {"rows": len(scored)}
    io.write_json(record, folder / WINDOW_SCORES_RECORD)


def stored_window_scores(
    model_folder: Path, model: Any, features: Path, *, start: date, end: date
) -> pd.DataFrame | None:
    """The scores :func:`write_window_scores` kept in ``model_folder``, when they are those
    :func:`score_months` would compute now: the same model content, window and features
    partitions (else None: score them). The same frame, bit for bit (tests/test_evaluate.py)."""
    folder = Path(model_folder)
    path = folder / WINDOW_SCORES_RECORD
    if not path.exists():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    rows = record.pop("rows", None)
    if record != _window_sources(model, features, start, end):
        return None
    scored = io.read_dataset(folder / WINDOW_SCORES)
    if len(scored) != rows:
        return None
    scored = scored.drop(columns=["rank_key"])
    return _in_stored_order(scored, features, list(record["feature_partitions"]))
