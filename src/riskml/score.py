"""Scoring new declarations: contract check, causal features as of each declaration's date,
each area's champion (the whole :class:`~riskml.area_model.AreaModel` from the MLflow registry,
:func:`riskml.registry.list_model`: the version the candidate lists use), selection by the
threshold the model carries, and reasons. Every score row names the model version and alias.

Features of a new batch come from the feature store (:class:`riskml.features.store.FeatureStore`),
built once from the stored history (the validated declarations and outcomes): each row gets its
features as of its own date from the stored history alone, so a declaration's score and reasons do
not depend on the batch it comes in (see docs/service.md).

:class:`Scorer` holds the history, the store and the models (loaded once); :func:`run_score` is
the ``riskml score FILE`` entry.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskml.area_model import AreaModel
from riskml.catalog import Catalog
from riskml.config import AreaSpec, Params
from riskml.contract import (
    KEY,
    NOT_SCORED,
    SOURCE_ERROR,
    SOURCE_FILE,
    SOURCE_ROW,
    TABLES,
    RiskmlError,
    data_quality_list,
    empty_quarantine,
    validate,
    validate_rows,
)
from riskml.features.store import FeatureStore
from riskml.train import feature_matrix, split_trained

SCORE_COLUMNS = [
    *KEY,
    "accepted_date",
    "area",
    "score",
    "expected_recovery",
    "rank_key",
    "selected",
    "fired",
    "flags",
    "reasons",
    "model_version",
]


@dataclass
class ScoreResult:
    """Scores (one row per item and area), quarantined rows, the data-quality list (one row
    per input row that failed a check: scored anyway, or why not and for which areas) and
    timings (seconds)."""

    scores: pd.DataFrame
    quarantine: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)  # area -> version and alias that scored
    data_quality: pd.DataFrame = field(default_factory=pd.DataFrame)

    def not_scored(self) -> pd.DataFrame:
        """The data-quality rows of the input rows that got no score, with their reasons."""
        dq = self.data_quality
        return dq[~dq["scored"].astype(bool)] if len(dq) else dq

    def wide(self) -> pd.DataFrame:
        """One row per item: the key, each area's score (column named after the area), the
        areas whose list it reaches (``selected_areas``, ``;``-joined) and, where reasons were
        computed, ``reasons_<area>`` of the selected areas."""
        scores = self.scores
        areas = list(pd.unique(scores["area"].to_numpy(dtype=object)))
        if not areas:
            return pd.DataFrame(columns=[*KEY, "selected_areas"])
        n = len(scores) // len(areas)  # the areas' parts are stacked, each in the batch's order
        # built in one go: a column added to a frame costs about 0.1 ms whatever its length
        out: dict[str, Any] = {
            c: pd.array(scores[c].to_numpy()[:n], dtype=scores[c].dtype) for c in KEY
        }
        selected = scores["selected"].to_numpy(bool).reshape(len(areas), n)
        reasons = scores["reasons"].to_numpy(object).reshape(len(areas), n)
        for i, area in enumerate(areas):
            out[area] = scores["score"].to_numpy()[i * n : (i + 1) * n]
        joined = np.full(n, "", dtype=object)
        for i, area in enumerate(areas):  # "a;b": each selected area, in area order
            sep = np.where(joined == "", "", ";").astype(object)
            joined = np.where(selected[i], joined + sep + area, joined)
        out["selected_areas"] = joined
        for i, area in enumerate(areas):
            if (reasons[i] != "").any():
                out[f"reasons_{area}"] = np.where(selected[i], reasons[i], "")
        return pd.DataFrame(out)


def load_champion(
    root: Path, area: str, *, tracking_uri: str | None = None, exponent: float | None = None
) -> AreaModel:
    """The area's champion, whole (:func:`riskml.registry.list_model`: the version
    ``metrics/promotion.json`` names, else the ``champion`` alias): classifier, recovery
    regression, rank key and the operating threshold it carries. ``exponent`` is ignored (the
    model carries its ``recovery_exponent``; kept for callers of the old signature)."""
    from riskml.registry import list_model

    return list_model(Path(root), area, tracking_uri=tracking_uri)


def predict(model: AreaModel, features: pd.DataFrame | FeatureBlock) -> np.ndarray:
    """Probabilities of ``model``'s area for the rows of ``features`` (a feature frame, or a
    :class:`FeatureBlock` shared by several areas)."""
    if len(features) == 0:
        return np.zeros(0)
    if isinstance(features, FeatureBlock):
        return model.predict_proba(features.matrix(model.feature_names_))
    return model.predict_proba(features)


def _inputs(model: AreaModel) -> list[str]:
    """Every feature ``model`` reads: its classifier's, then its recovery regression's."""
    recovery = model.recovery_
    return [*model.feature_names_, *([] if recovery is None else recovery.feature_names)]


class FeatureBlock:
    """The model inputs of a feature frame as one float32 matrix, converted once for all the
    areas (the features are float32 already, so no value changes); each area takes its columns.
    """

    def __init__(
        self,
        features: pd.DataFrame | np.ndarray,
        names: list[str],
        positions: dict[tuple[str, ...], list[int]] | None = None,
    ) -> None:
        """``features``: a feature frame, or the matrix of its ``names`` columns as float32
        (:meth:`riskml.features.store.FeatureStore.model_inputs`). ``positions``: a cache of
        :meth:`matrix`'s column positions, kept by the caller for blocks of the same ``names``
        (a scorer's: the same models on every call)."""
        self.names = {n: i for i, n in enumerate(names)}
        self.positions = {} if positions is None else positions
        if isinstance(features, np.ndarray):
            self.values = features
            return
        feature_matrix(features.head(0), names)  # same check and message for missing columns
        self.values = features[names].to_numpy(np.float32)

    def __len__(self) -> int:
        return len(self.values)

    def matrix(self, names: list[str]) -> np.ndarray:
        """The columns ``names``, in that order."""
        key = tuple(names)
        if key not in self.positions:
            self.positions[key] = [self.names[n] for n in names]
        return self.values[:, self.positions[key]]


class Scorer:
    """Scores batches of new declarations against the stored history with the champions."""

    def __init__(
        self,
        root: Path,
        params: Params,
        specs: dict[str, AreaSpec],
        *,
        history: tuple[pd.DataFrame, pd.DataFrame] | None = None,
        models: dict[str, AreaModel] | None = None,
    ) -> None:
        from riskml.io import read_dataset
        from riskml.watchlists import load_profile

        self.root, self.params, self.specs = root, params, specs
        if history is None:
            history = (
                read_dataset(Catalog(root).declarations),
                read_dataset(Catalog(root).outcomes),
            )
        self.declarations, self.outcomes = history
        seizures_path = Catalog(root).seizures
        self.seizures = read_dataset(seizures_path) if seizures_path.exists() else None
        self._models = models
        self._store: FeatureStore | None = None
        self._stored_keys: pd.MultiIndex | None = None
        self._inputs: tuple[dict[str, AreaModel], list[str], dict] | None = None
        self._lock = threading.Lock()
        self.profile = load_profile(root / params.select.watchlists)

    @property
    def models(self) -> dict[str, AreaModel]:
        """The champions, loaded from the registry on first use."""
        with self._lock:
            if self._models is None:
                trained, _ = split_trained(self.root, self.specs)  # skipped: no model
                self._models = {a: load_champion(self.root, a) for a in trained}
            return self._models

    def versions(self) -> dict[str, str]:
        """Area → the model version and alias that scores it (``riskml-revenue v3
        (champion)``)."""
        return {a: m.describe() for a, m in self.models.items()}

    @property
    def store(self) -> FeatureStore:
        """The feature store of the history, built on first use."""
        with self._lock:
            if self._store is None:
                self._store = FeatureStore(
                    self.declarations,
                    self.outcomes,
                    self.params.features,
                    self.specs,
                    seizures=self.seizures,
                )
            return self._store

    @property
    def stored_keys(self) -> pd.MultiIndex:
        """The history's (declaration_id, item_no) keys, indexed once per scorer: rebuilding
        the index on every call cost about 0.4 s per request on the default history."""
        with self._lock:
            if self._stored_keys is None:
                keys = pd.MultiIndex.from_frame(self.declarations[KEY]).unique()
                keys.get_indexer(keys[:1])  # build the hash engine now, not on a request
                self._stored_keys = keys
            return self._stored_keys

    def model_inputs(self) -> tuple[list[str], dict[tuple[str, ...], list[int]]]:
        """Every feature the models read, each once in model order, and the cache of their
        column positions (:class:`FeatureBlock`): worked out once for the loaded models."""
        models = self.models
        inputs = self._inputs
        if inputs is None or inputs[0] is not models:
            names = list(dict.fromkeys(n for m in models.values() for n in _inputs(m)))
            inputs = self._inputs = (models, names, {})
        return inputs[1], inputs[2]

    def warm(self) -> None:
        """Build the feature store and load the champions now (the service does it at start)."""
        _ = self.store, self.models, self.stored_keys

    def check(self, batch: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Contract check of a raw batch: (good rows, quarantine). A row with a value it can
        be scored without is kept with the value missing (its quarantine rows say ``kept``);
        keys already in the history are quarantined too (a new declaration must be new).
        A few rows that pass every check are checked value by value (:func:`validate_rows`:
        the same good rows, without the fixed cost of the column-wise check)."""
        good = validate_rows(batch, source="batch")
        if good is not None and not self._stored(good):
            return good, empty_quarantine()
        # the row checks without pandera's second pass (same checks, a fixed ~40 ms a call)
        result = validate(batch, None, source="batch", schema_check=False)
        good, quarantine = result.declarations, result.quarantine
        if len(good):
            seen = self.stored_keys.get_indexer(pd.MultiIndex.from_frame(good[KEY])) >= 0
            dup = good.duplicated(KEY, keep=False).to_numpy() | seen
            if dup.any():
                rows = _kept_rows(batch, quarantine)[dup]
                bad = good[dup]
                again = pd.DataFrame(
                    {
                        "file": "batch",
                        "table": "declarations",
                        "row": rows,
                        "column": "declaration_id",
                        "check": "new_key",
                        "reason": "declaration_id/item_no is already stored or repeated "
                        "in the batch; send each new item once",
                        "action": NOT_SCORED,
                        "declaration_id": bad["declaration_id"].astype(str).to_numpy(),
                        "item_no": bad["item_no"].astype(str).to_numpy(),
                        "record": batch_records(batch, rows),
                    }
                )
                # a repaired row now left out: its earlier notes say so too
                out = quarantine["row"].isin(rows) & (quarantine["table"] == "declarations")
                quarantine.loc[out, "action"] = NOT_SCORED
                quarantine = pd.concat([quarantine, again], ignore_index=True)
                good = good[~dup].reset_index(drop=True)
        return good, quarantine

    def _stored(self, good: pd.DataFrame) -> bool:
        """Whether a key of the few rows ``good`` is already in the history."""
        keys = self.stored_keys
        ids, items = good["declaration_id"].tolist(), good["item_no"].tolist()
        return any(key in keys for key in zip(ids, items, strict=True))

    def check_and_score(
        self, batch: pd.DataFrame, *, reasons: bool = False
    ) -> tuple[pd.DataFrame, pd.DataFrame, ScoreResult]:
        """(good rows, quarantine, scores) of one raw batch: :meth:`check`, then
        :meth:`score_checked` of the good rows."""
        good, quarantine = self.check(batch)
        return good, quarantine, self.score_checked(good, reasons=reasons)

    def check_and_score_many(
        self, batches: list[pd.DataFrame]
    ) -> list[tuple[pd.DataFrame, pd.DataFrame, ScoreResult]]:
        """:meth:`check_and_score` of each batch (without reasons), in one pass over them all
        when they can share it (:func:`can_share`), else one by one. A contract check and a
        scoring pass cost tens of milliseconds whatever their size, so small batches sent at
        the same time (the service's single declarations) are much cheaper together. The result
        of each batch is the one it gets alone, bit for bit: every check, feature and score is
        a function of the row alone (the batch-independence rule, docs/service.md), the shared
        batches have the same columns and dtypes (so the same parsing), no declaration id in
        two of them (so no duplicate key across them), and quarantine row numbers are counted
        within each batch (tests/test_score.py)."""
        if len(batches) < 2 or not can_share(batches):
            return [self.check_and_score(b) for b in batches]
        sizes = [len(b) for b in batches]
        starts = np.cumsum([0, *sizes])
        good, quarantine, result = self.check_and_score(pd.concat(batches, ignore_index=True))
        left_out = quarantine.loc[
            (quarantine["table"] == "declarations") & (quarantine["action"] == NOT_SCORED), "row"
        ].to_numpy(np.int64)
        rows = quarantine["row"].to_numpy(np.int64)
        scores, n_good = result.scores, len(good)
        part = np.arange(len(scores)) % n_good if n_good else np.zeros(0, np.int64)
        out, at = [], 0
        for i, n in enumerate(sizes):
            lo, hi = starts[i], starts[i + 1]
            kept = n - len(np.unique(left_out[(left_out >= lo) & (left_out < hi)]))
            mine = quarantine[(rows >= lo) & (rows < hi)].reset_index(drop=True)
            mine["row"] = mine["row"] - lo
            if kept:
                sub = scores[(part >= at) & (part < at + kept)].reset_index(drop=True)
                res = ScoreResult(sub, pd.DataFrame(), dict(result.timings), dict(result.models))
            else:  # as alone: no scores, no models named
                res = ScoreResult(pd.DataFrame(columns=SCORE_COLUMNS), pd.DataFrame(), {})
            out.append((good.iloc[at : at + kept].reset_index(drop=True), mine, res))
            at += kept
        return out

    def features(self, good: pd.DataFrame, *, context: bool = True) -> pd.DataFrame:
        """Causal features of the batch rows from the feature store: each row as of its own date
        from the stored history, whatever its batch companions. ``context=False``: leave out the
        ``ctx_`` columns (reason sentences only)."""
        return self.store.features(good, context=context).reset_index(drop=True)

    def score(self, batch: pd.DataFrame, *, reasons: bool = True) -> ScoreResult:
        """Check, featurise and score a batch; rows breaking the contract are quarantined.
        ``reasons``: add the reason sentences of the selected items (TreeSHAP)."""
        t0 = time.perf_counter()
        good, quarantine = self.check(batch)
        result = self.score_checked(good, reasons=reasons)
        result.quarantine = quarantine
        result.data_quality = data_quality_list(quarantine, list(self.models))
        result.timings = {"validate": time.perf_counter() - t0 - sum(result.timings.values())} | (
            result.timings
        )
        return result

    def score_checked(self, good: pd.DataFrame, *, reasons: bool = True) -> ScoreResult:
        """Featurise and score rows that passed :meth:`check`."""
        from riskml.watchlists import hit_names, profile_masks

        timings: dict[str, float] = {}
        quarantine = pd.DataFrame()
        if good.empty:
            return ScoreResult(pd.DataFrame(columns=SCORE_COLUMNS), quarantine, timings)
        t0 = time.perf_counter()
        names, positions = self.model_inputs()
        if reasons:  # the reasons read the whole frame (context columns included)
            feats = self.features(good, context=True)
            block = FeatureBlock(feats, names, positions)
        else:  # the model inputs alone, without a frame of some 340 columns
            matrix = self.store.model_inputs(good.reset_index(drop=True), names)
            block = FeatureBlock(matrix, names, positions)
        timings["features"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        columns: dict[str, list[np.ndarray]] = {}
        paid = None
        if "duties_paid" in good.columns:
            paid = good["duties_paid"].to_numpy(np.float64, na_value=np.nan)
        # the rule and watch-list matches do not depend on the area: found once per batch
        masks = profile_masks(good, self.profile, list(self.models))
        item = None
        if len(good) > 1 and good.duplicated(KEY).any():  # rows of one item share its hits
            item = good.groupby(KEY, sort=False, dropna=False).ngroup().to_numpy()
        for area, model in self.models.items():
            prob = predict(model, block)
            recovery = model.recovery_
            expected, key = model.rank_arrays(
                prob,
                None if recovery is None else block.matrix(recovery.feature_names),
                duties_paid=paid,
            )
            fired = hit_names(masks, area, "select", len(good), item=item)
            flags = hit_names(masks, area, "flag", len(good), item=item)
            part = {
                "area": np.full(len(good), area, dtype=object),
                "score": prob,
                "expected_recovery": expected,
                "rank_key": key,
                "selected": (key >= model.threshold_) | (fired != ""),
                "fired": fired,
                "flags": flags,
                "model_version": np.full(len(good), model.describe(), dtype=object),
            }
            for name, values in part.items():
                columns.setdefault(name, []).append(values)
        # one frame for all areas (the areas' parts stacked, each in the batch's order), built
        # in one go: a column added to a frame costs about 0.1 ms whatever its length
        n_areas = len(self.models)
        data: dict[str, Any] = {
            c: pd.array(np.tile(good[c].to_numpy(), n_areas), dtype=good[c].dtype)
            for c in (*KEY, "accepted_date")
        }
        data |= {name: np.concatenate(parts) for name, parts in columns.items()}
        data["reasons"] = np.full(len(good) * n_areas, "", dtype=object)
        scores = pd.DataFrame(data)
        timings["predict"] = time.perf_counter() - t0
        if reasons:
            t0 = time.perf_counter()
            scores = pd.concat(
                [self._with_reasons(part, feats) for _, part in scores.groupby("area", sort=False)],
                ignore_index=True,
            )
            timings["reasons"] = time.perf_counter() - t0
        return ScoreResult(scores, quarantine, timings, self.versions())

    def _with_reasons(self, part: pd.DataFrame, feats: pd.DataFrame) -> pd.DataFrame:
        """``part`` (one area's scores) with the top raising reasons of its selected items."""
        from riskml.features import catalogue_for
        from riskml.reasons import explain_area

        part = part.reset_index(drop=True)
        chosen = part[part["selected"].astype(bool)]
        if chosen.empty:
            return part
        model = self.models[part["area"].iloc[0]]
        expl = explain_area(
            model,
            chosen[KEY],
            feats,
            catalogue_for(self.specs),
            n_reasons=3,
            chunk_size=self.params.explain.chunk_size,
        )
        from riskml.reasons import NO_RAISING_FACT

        text = part[KEY].merge(_reason_text(expl, 3), on=KEY, how="left")["reasons"]
        # a selected item none of whose facts raises its score says so (absences are never said)
        selected = part["selected"].astype(bool).to_numpy()
        part["reasons"] = text.fillna("").mask(selected & text.isna(), NO_RAISING_FACT).to_numpy()
        return part


#: The contract's float and integer columns: a float dtype there is parsed value by value.
_NUMERIC = {c.name for c in TABLES["declarations"] if c.dtype in ("float", "int")}


def can_share(batches: list[pd.DataFrame]) -> bool:
    """True when ``batches`` (raw declaration tables) get the same contract check and scores
    in one concatenated batch as one by one: the same columns with the same dtypes (so the
    concatenation keeps them), no float dtype outside the numeric columns (text rendering of
    a float column depends on the column's other values), no row numbers or source columns
    of an ingest, and no declaration id in two batches (a key repeated across them would be
    a duplicate of the concatenation only)."""
    first = batches[0]
    shape = list(zip(first.columns, first.dtypes, strict=True))
    seen: set[str] = set()
    for b in batches:
        if list(zip(b.columns, b.dtypes, strict=True)) != shape:
            return False
        if "declaration_id" not in b.columns:
            return False
        ids = {str(v).strip() for v in b["declaration_id"].tolist()}
        if ids & seen:
            return False
        seen |= ids
    if {SOURCE_ROW, SOURCE_FILE, SOURCE_ERROR} & set(first.columns):
        return False
    return all(not pd.api.types.is_float_dtype(dtype) or name in _NUMERIC for name, dtype in shape)


def _kept_rows(batch: pd.DataFrame, quarantine: pd.DataFrame) -> np.ndarray:
    """The quarantine's row numbers of the batch rows :func:`validate` kept, in order."""
    rows = (
        pd.to_numeric(batch[SOURCE_ROW]).to_numpy(np.int64)
        if SOURCE_ROW in batch.columns
        else np.arange(len(batch))
    )
    q = quarantine[quarantine["table"] == "declarations"]
    out = q.loc[q["action"] == NOT_SCORED, "row"].to_numpy(np.int64)
    return rows[~np.isin(rows, out)]


def batch_records(batch: pd.DataFrame, rows: np.ndarray) -> list[str]:
    """The batch rows numbered ``rows`` (positions, or ``source_row``) as JSON text."""
    pos = (
        pd.Index(pd.to_numeric(batch[SOURCE_ROW])).get_indexer(rows)
        if SOURCE_ROW in batch.columns
        else rows
    )
    return [batch.iloc[int(p)].to_json(date_format="iso", default_handler=str) for p in pos]


def _reason_text(expl: pd.DataFrame, n: int) -> pd.DataFrame:
    ups = expl[(expl["direction"] == "raises") & (expl["rank"] <= n)]
    return (
        ups.sort_values([*KEY, "rank"])
        .groupby(KEY, sort=False)["sentence"]
        .agg("; ".join)
        .rename("reasons")
        .reset_index()
    )


def read_batch(path: Path, mapping: str | Path | None = None) -> pd.DataFrame:
    """A batch file: CSV (all text, parsed by the contract) or Parquet in the canonical layout,
    or, with an ingest ``mapping``, any layout the mapping reads (separator, encoding, date
    formats, codes). An empty, header-only or unreadable file is a one-line
    :class:`RiskmlError`."""
    if mapping is not None:
        from riskml.ingest import ingest_declarations

        return ingest_declarations(path, mapping)[1]
    if not path.exists():
        raise RiskmlError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv", ".txt"):
        raise RiskmlError(f"{path}: unsupported file type; send a .csv or .parquet file")
    if path.stat().st_size == 0:
        raise RiskmlError(f"{path}: empty file (no header, no rows); nothing to score")
    try:
        if suffix == ".parquet":
            batch = pd.read_parquet(path)
        else:
            batch = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except Exception as exc:  # parser, codec and Arrow errors all mean the same to the user
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        kind = "Parquet" if suffix == ".parquet" else "CSV (sep ',', UTF-8)"
        raise RiskmlError(
            f"{path}: cannot be read as {kind} ({first}); give the file's layout with --mapping "
            "(an ingest mapping)"
        ) from exc
    if batch.empty:
        raise RiskmlError(f"{path}: header only, no data rows; nothing to score")
    return batch


def run_score(
    file: Path,
    root: Path,
    params: Params,
    specs: dict[str, AreaSpec],
    *,
    out: Path,
    mapping: str | Path | None = None,
) -> dict[str, Any]:
    """``riskml score FILE [--mapping M]``: write ``scores.csv``, ``selected.csv``,
    ``quarantine.csv`` and ``data_quality.csv`` (every row that failed a check: scored anyway,
    or why not) in ``out`` and return counts and timings."""
    from riskml.io import write_csv

    batch = read_batch(file, mapping)  # a bad file fails before any model is loaded
    result = Scorer(root, params, specs).score(batch)
    scores = result.scores
    write_csv(scores, out / "scores.csv")
    write_csv(scores[scores["selected"].astype(bool)], out / "selected.csv")
    write_csv(result.quarantine, out / "quarantine.csv")
    write_csv(result.data_quality, out / "data_quality.csv")
    items = scores[KEY].drop_duplicates()
    return {
        "items_scored": len(items),
        "selected": int(scores["selected"].astype(bool).sum()),
        "not_scored": len(result.not_scored()),
        "scored_with_data_problems": int(result.data_quality["scored"].sum())
        if len(result.data_quality)
        else 0,
        "seconds": {k: round(v, 2) for k, v in result.timings.items()},
        "models": result.models,
    }
