"""Reasons in plain words from TreeSHAP contributions: the domain side of an explanation.

LightGBM computes exact TreeSHAP values with ``Booster.predict(X, pred_contrib=True)`` (the values
``shap.TreeExplainer`` gives); the cost is ~1000x a plain predict, so only candidates are
explained, in chunks, never the whole population. Contributions are in log-odds and, with the
bias column, add up to the raw score: :func:`check_additivity` verifies it on every chunk.

Pure functions of frames (domain layer): the ``explain`` stage (case files, SHAP images) and
``riskml score`` (reasons of a scored batch) both call them; neither imports the other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pandera.pandas as pa

from riskml.contract import KEY, RiskmlError
from riskml.features.catalogue import fill_reason


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

#: The one row a random-control pick gets in the explanations table (direction ``none``).
NO_REASONS = "random control: chosen at random to measure compliance, no risk reasons"

DIRECTIONS = ("raises", "lowers", "none")


def _signs_agree(df: pd.DataFrame) -> pd.Series:
    sign = np.sign(df["contribution"])
    want = df["direction"].map({"raises": 1.0, "lowers": -1.0, "none": 0.0})
    return (sign == want) | ((df["direction"] == "none") & df["contribution"].isna())


#: What ``data/explanations/<area>.parquet`` holds: one row per reason of a candidate.
EXPLANATION_SCHEMA = pa.DataFrameSchema(
    {
        "declaration_id": pa.Column(str),
        "item_no": pa.Column("int64", pa.Check.ge(1)),
        "rank": pa.Column("int64", pa.Check.ge(1)),
        "direction": pa.Column(str, pa.Check.isin(DIRECTIONS)),
        "feature": pa.Column(str, nullable=True),
        "group": pa.Column(str, nullable=True),
        "value": pa.Column(float, nullable=True),
        "contribution": pa.Column(float, nullable=True),
        "sentence": pa.Column(str, pa.Check.str_length(min_value=1)),
    },
    checks=[
        pa.Check(_signs_agree, error="a reason's contribution has the wrong sign"),
        pa.Check(
            lambda df: ~df.duplicated([*KEY, "direction", "rank"]),
            error="two reasons share a candidate, direction and rank",
        ),
    ],
    strict=True,
    ordered=True,
    coerce=False,
)


def validate_explanations(table: pd.DataFrame, *, where: str = "explanations") -> pd.DataFrame:
    """``table`` checked against :data:`EXPLANATION_SCHEMA` (all failures reported at once);
    raises :class:`RiskmlError` naming the column, the check and a failing row."""
    try:
        return EXPLANATION_SCHEMA.validate(table, lazy=True)
    except (pa.errors.SchemaErrors, pa.errors.SchemaError) as exc:
        cases = getattr(exc, "failure_cases", None)
        detail = str(exc).splitlines()[0] if cases is None else cases.head(5).to_string()
        raise RiskmlError(f"{where}: the explanations table breaks its schema:\n{detail}") from exc


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
    # Once a direction has its reasons, a further feature only matters if it can repeat a
    # sentence already given; repeats come from features of one group (a price gap per kg and per
    # quantity unit in kg), so features of other groups are not formatted.
    group_of = {name: getattr(catalogue.get(name), "group", name) for name in names}
    for i, row in enumerate(rows.to_dict("records")):
        order = np.argsort(-values[i], kind="stable")
        for direction, sequence, limit in (
            ("raises", order, n_up),
            ("lowers", order[::-1], n_down),
        ):
            # Two features can say the same thing (a gap as a z-score and as a percentage):
            # a sentence is given once, with the contributions of the features behind it.
            said: dict[str, dict[str, Any]] = {}
            said_groups: set[str] = set()
            for j in sequence:
                value = values[i, j]
                if (direction == "raises" and value <= 0) or (direction == "lowers" and value >= 0):
                    break
                if len(said) == limit and group_of[names[j]] not in said_groups:
                    continue
                text = sentence(names[j], row, catalogue)
                if text in said:
                    said[text]["contribution"] += float(value)
                    continue
                if len(said) == limit:
                    continue
                info = catalogue.get(names[j])
                said_groups.add(group_of[names[j]])
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


def candidate_rows(
    candidates: pd.DataFrame, features: pd.DataFrame, names: list[str]
) -> pd.DataFrame:
    """The feature rows (model features and ``ctx_`` facts) of ``candidates``, in their order."""
    rows = candidates[KEY].merge(features, on=KEY, how="left", validate="one_to_one")
    if len(rows) and rows[names].isna().all(axis=1).any():
        raise RiskmlError("some candidates have no features; rerun the features stage")
    return rows


def explain_area(
    model: Any,
    candidates: pd.DataFrame,
    features: pd.DataFrame,
    catalogue: Mapping[str, Any],
    *,
    n_reasons: int,
    chunk_size: int,
    n_lowering: int = 2,
) -> pd.DataFrame:
    """Reasons for ``candidates`` (a frame with the key), using their rows of ``features``;
    ``model``: an :class:`~riskml.area_model.AreaModel` (or a bare LightGBM Booster)."""
    if isinstance(model, lgb.Booster):
        rows = candidate_rows(candidates, features, model.feature_name())
        contrib = contributions(model, rows, chunk_size=chunk_size)
    else:
        rows = candidate_rows(candidates, features, model.feature_names_)
        contrib = model.contributions(rows, chunk_size=chunk_size)
    return reasons(rows, contrib, catalogue, n_up=n_reasons, n_down=n_lowering)


def no_reason_rows(picks: pd.DataFrame) -> pd.DataFrame:
    """One row per random-control pick saying that it carries no risk reasons."""
    out = pd.DataFrame(
        {
            "declaration_id": picks["declaration_id"].astype(str).to_numpy(),
            "item_no": picks["item_no"].astype("int64").to_numpy(),
            "rank": np.ones(len(picks), dtype="int64"),
            "direction": "none",
            "feature": None,
            "group": None,
            "value": np.full(len(picks), np.nan),
            "contribution": np.full(len(picks), np.nan),
            "sentence": NO_REASONS,
        },
        columns=EXPLANATION_COLUMNS,
    )
    return out.astype({"feature": object, "group": object})


def group_contributions(contrib: pd.DataFrame, catalogue: Mapping[str, Any]) -> pd.DataFrame:
    """Contributions summed by catalogue group (all ``imp_*`` features → ``importer history``),
    one column per group in order of first appearance, ``bias`` kept; the raw values stay in
    ``contrib``."""
    feats = contrib.drop(columns="bias", errors="ignore")
    groups = [getattr(catalogue.get(c), "group", "other") for c in feats.columns]
    out = feats.T.groupby(np.asarray(groups), sort=False).sum().T
    if "bias" in contrib:
        out["bias"] = contrib["bias"]
    return out
