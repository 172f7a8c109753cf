"""TreeSHAP contributions for audit candidates, turned into reasons in plain words.

LightGBM computes exact TreeSHAP values with ``Booster.predict(X, pred_contrib=True)`` (the values
``shap.TreeExplainer`` gives); the cost is ~1000x a plain predict, so only candidates are
explained, in chunks, never the whole population. Contributions are in log-odds and, with the
bias column, add up to the raw score: :func:`check_additivity` verifies it on every chunk.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from riskml.config import AreaSpec, Params
from riskml.contract import KEY, RiskmlError
from riskml.features.catalogue import fill_reason

EXPLANATION_COLUMNS = [
    "declaration_id",
    "item_no",
    "rank",
    "direction",
    "feature",
    "group",
    "value",
    "contribution",
    "sentence",
]


def contributions(booster: lgb.Booster, X: pd.DataFrame, *, chunk_size: int = 2000) -> pd.DataFrame:
    """TreeSHAP contribution of each feature to each row's raw score (log-odds), plus ``bias``.

    Computed in chunks of ``chunk_size`` rows; each chunk is checked for additivity.
    """
    if chunk_size < 1:
        raise RiskmlError(f"chunk_size must be >= 1, got {chunk_size}")
    names = booster.feature_name()
    missing = [n for n in names if n not in X.columns]
    if missing:
        raise RiskmlError(
            f"the model needs feature(s) {missing} that the frame lacks; rerun features"
        )
    parts = []
    for start in range(0, len(X), chunk_size):
        chunk = X.iloc[start : start + chunk_size][names]
        contrib = np.asarray(booster.predict(chunk, pred_contrib=True))
        check_additivity(contrib, np.asarray(booster.predict(chunk, raw_score=True)))
        parts.append(contrib)
    values = np.vstack(parts) if parts else np.empty((0, len(names) + 1))
    return pd.DataFrame(values, columns=[*names, "bias"], index=X.index)


def check_additivity(contrib: np.ndarray, raw_score: np.ndarray, *, atol: float = 1e-6) -> None:
    """Raise if the contributions (bias included) do not add up to the raw score."""
    gap = np.abs(contrib.sum(axis=1) - raw_score)
    if len(gap) and float(gap.max()) > atol:
        raise RiskmlError(
            f"SHAP additivity check failed: contributions differ from the raw score by up to "
            f"{gap.max():.3g}; the model file and the features may not match"
        )


def sentence(feature: str, row: Mapping[str, Any], catalogue: Mapping[str, Any]) -> str:
    """The plain-language sentence for ``feature`` on ``row``, from its catalogue template."""
    info = catalogue.get(feature)
    if info is None:
        return f"{feature} = {_plain(row.get(feature))}"
    text = fill_reason(info, row)
    if text is None:
        text = f"{info.description}: {_plain(row.get(feature))}"
    return text


def _plain(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "unknown" if math.isnan(value) else f"{value:,.3g}"
    return str(value)


def reasons(
    rows: pd.DataFrame,
    contrib: pd.DataFrame,
    catalogue: Mapping[str, Any],
    *,
    n_up: int = 5,
    n_down: int = 2,
) -> pd.DataFrame:
    """The strongest contributions of each row as sentences: ``n_up`` that raise the risk
    (rank 1 = strongest) and ``n_down`` that lower it (direction ``lowers``).

    ``rows`` holds, for the same index as ``contrib``, the key, the feature values and the
    ``ctx_`` peer facts the templates refer to.
    """
    feats = contrib.drop(columns="bias")
    records = []
    values = feats.to_numpy()
    names = np.asarray(feats.columns)
    for i, row in enumerate(rows.to_dict("records")):
        order = np.argsort(-values[i], kind="stable")
        for direction, sequence, limit in (
            ("raises", order, n_up),
            ("lowers", order[::-1], n_down),
        ):
            # Two features can say the same thing (a gap as a z-score and as a percentage):
            # a sentence is given once, with the contributions of the features behind it.
            said: dict[str, dict[str, Any]] = {}
            for j in sequence:
                value = values[i, j]
                if (direction == "raises" and value <= 0) or (direction == "lowers" and value >= 0):
                    break
                text = sentence(names[j], row, catalogue)
                if text in said:
                    said[text]["contribution"] += float(value)
                    continue
                if len(said) == limit:
                    continue
                info = catalogue.get(names[j])
                said[text] = {
                    "declaration_id": row["declaration_id"],
                    "item_no": row["item_no"],
                    "rank": len(said) + 1,
                    "direction": direction,
                    "feature": names[j],
                    "group": getattr(info, "group", "other"),
                    "value": _as_float(row.get(names[j])),
                    "contribution": float(value),
                    "sentence": text,
                }
            records.extend(said.values())
    out = pd.DataFrame.from_records(records, columns=EXPLANATION_COLUMNS)
    return out.astype({"item_no": "int64", "rank": "int64"})


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def explain_area(
    booster: lgb.Booster,
    candidates: pd.DataFrame,
    features: pd.DataFrame,
    catalogue: Mapping[str, Any],
    *,
    n_reasons: int,
    chunk_size: int,
) -> pd.DataFrame:
    """Reasons for ``candidates`` (a frame with the key), using their rows of ``features``."""
    rows = candidates[KEY].merge(features, on=KEY, how="left", validate="one_to_one")
    if rows[booster.feature_name()].isna().all(axis=1).any():
        raise RiskmlError("some candidates have no features; rerun the features stage")
    contrib = contributions(booster, rows, chunk_size=chunk_size)
    return reasons(rows, contrib, catalogue, n_up=n_reasons, n_down=2)


def run_explain(root: Path, params: Params, specs: dict[str, AreaSpec]) -> dict[str, Any]:
    """Stage entry: explain each area's model-selected candidates (the same selection the
    ``select`` stage makes) into ``data/explanations/<area>.parquet``."""
    from riskml.features import catalogue_for
    from riskml.io import read_parquet, write_parquet
    from riskml.select import ranked, select_candidates

    features = read_parquet(root / "data/features/features.parquet")
    declarations = read_parquet(root / "data/interim/declarations.parquet")
    outcomes = read_parquet(root / "data/interim/outcomes.parquet")
    summary: dict[str, Any] = {}
    for area, spec in specs.items():
        booster = lgb.Booster(model_file=str(root / "models" / area / "model.txt"))
        scores = read_parquet(root / "data/scores" / f"{area}.parquet")
        frame = ranked(scores, declarations, outcomes, spec, params.split)
        selected = select_candidates(frame, spec, params.select)
        # random-control picks carry no reasons: only the model's picks are explained
        top = selected[selected["selection_kind"] == "model"]
        table = explain_area(
            booster,
            top,
            features,
            catalogue_for(specs),
            n_reasons=params.explain.n_reasons,
            chunk_size=params.explain.chunk_size,
        )
        write_parquet(table, root / "data/explanations" / f"{area}.parquet")
        summary[area] = len(top)
    return {"explained": summary}
