"""Audit selection: ranked candidate lists per area, within capacity, with a random-control share.

Each list keeps, for every candidate, how it was chosen (``model`` or ``random_control``): random
picks measure compliance without bias and carry no risk reasons.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskml.config import AreaSpec, Params, SelectParams, SplitParams
from riskml.contract import KEY

DECLARATION_FIELDS = [
    "accepted_date",
    "office",
    "importer_id",
    "declarant_id",
    "origin_country",
    "hs_code",
    "cif_value",
    "duties_paid",
]

CANDIDATE_COLUMNS = [
    "area",
    "rank",
    "selection_kind",
    "declaration_id",
    "item_no",
    "accepted_date",
    "office",
    "importer_id",
    "declarant_id",
    "origin_country",
    "hs_code",
    "cif_value",
    "duties_paid",
    "score",
    "expected_recovery",
    "reasons",
    "model_version",
]


def recovery_ratio(
    declarations: pd.DataFrame, outcomes: pd.DataFrame, area: str, *, known_before: pd.Timestamp
) -> float:
    """Recovered duty per unit of duty paid on the area's findings known before ``known_before``.

    A first, honest estimate of what an audit of an item recovers; 0 when nothing is known.
    """
    found = outcomes[
        outcomes["offence_found"].astype(bool)
        & (outcomes["risk_area"] == area)
        & (outcomes["result_date"] < known_before)
    ]
    if found.empty:
        return 0.0
    paid = found[KEY].drop_duplicates().merge(declarations[[*KEY, "duties_paid"]], on=KEY)
    total_paid = float(paid["duties_paid"].sum())
    recovered = float(found["additional_duty"].fillna(0).sum())
    return recovered / total_paid if total_paid > 0 else 0.0


def ranked(
    scores: pd.DataFrame,
    declarations: pd.DataFrame,
    outcomes: pd.DataFrame,
    spec: AreaSpec,
    split: SplitParams,
) -> pd.DataFrame:
    """Scored items joined to their declaration fields, with ``expected_recovery`` and
    ``rank_key`` (the area's ranking key), sorted from the highest key down (ties by key)."""
    decl_cols = [c for c in DECLARATION_FIELDS if c not in scores.columns or c == "accepted_date"]
    frame = scores.drop(columns=[c for c in decl_cols if c in scores.columns]).merge(
        declarations[[*KEY, *decl_cols]], on=KEY, how="left", validate="one_to_one"
    )
    ratio = recovery_ratio(
        declarations, outcomes, spec.name, known_before=pd.Timestamp(split.test_start)
    )
    frame["expected_recovery"] = frame["score"] * ratio * frame["duties_paid"].fillna(0)
    use_recovery = spec.rank_by == "expected_recovery" and ratio > 0
    frame["rank_key"] = frame["expected_recovery"] if use_recovery else frame["score"]
    return frame.sort_values(
        ["rank_key", "declaration_id", "item_no"], ascending=[False, True, True], kind="stable"
    ).reset_index(drop=True)


def select_candidates(
    ranked_frame: pd.DataFrame, spec: AreaSpec, params: SelectParams
) -> pd.DataFrame:
    """Pick ``spec.capacity`` items: the best by rank key (at most ``max_per_importer`` per
    importer), then a ``random_share`` of the capacity drawn uniformly from the rest.

    Deterministic for ``params.seed``. Adds ``selection_kind`` and ``rank`` (1 = first).
    """
    n_random = int(round(spec.capacity * params.random_share))
    n_model = spec.capacity - n_random
    per_importer = ranked_frame.groupby("importer_id", sort=False).cumcount()
    eligible = ranked_frame[per_importer < params.max_per_importer]
    model = eligible.head(n_model).assign(selection_kind="model")
    rest = ranked_frame.drop(index=model.index)
    rng = np.random.default_rng(params.seed)
    pick = rng.choice(len(rest), size=min(n_random, len(rest)), replace=False)
    random = rest.iloc[np.sort(pick)].assign(selection_kind="random_control")
    out = pd.concat([model, random], ignore_index=True)
    out["rank"] = np.arange(1, len(out) + 1)
    return out


def attach_reasons(selected: pd.DataFrame, explanations: pd.DataFrame, *, n: int = 3) -> pd.Series:
    """The top ``n`` risk-raising sentences of each model pick joined by '; ' (random picks get a
    note that they carry no risk reasons)."""
    ups = explanations[(explanations["direction"] == "raises") & (explanations["rank"] <= n)]
    joined = (
        ups.sort_values([*KEY, "rank"])
        .groupby(KEY, sort=False)["sentence"]
        .agg("; ".join)
        .rename("reasons")
        .reset_index()
    )
    merged = selected[KEY].merge(joined, on=KEY, how="left")["reasons"]
    merged = merged.where(selected["selection_kind"].to_numpy() == "model", None)
    random_note = "random control: chosen at random to measure compliance, no risk reasons"
    merged = merged.mask(selected["selection_kind"].to_numpy() == "random_control", random_note)
    return merged.fillna("").to_numpy()


def run_select(root: Path, params: Params, specs: dict[str, AreaSpec]) -> dict[str, Any]:
    """Stage entry: write ``data/candidates/<area>.csv`` for every area."""
    import json

    from riskml.io import read_parquet, write_csv

    declarations = read_parquet(root / "data/interim/declarations.parquet")
    outcomes = read_parquet(root / "data/interim/outcomes.parquet")
    summary: dict[str, Any] = {}
    for area, spec in specs.items():
        scores = read_parquet(root / "data/scores" / f"{area}.parquet")
        explanations = read_parquet(root / "data/explanations" / f"{area}.parquet")
        frame = ranked(scores, declarations, outcomes, spec, params.split)
        selected = select_candidates(frame, spec, params.select)
        selected["reasons"] = attach_reasons(selected, explanations)
        selected["area"] = area
        info_path = root / "models" / area / "features.json"
        info = json.loads(info_path.read_text()) if info_path.exists() else {}
        mlf = info.get("mlflow", {})
        version = f"{mlf.get('registered_model', '')} v{mlf.get('version', '')}" if mlf else ""
        selected["model_version"] = version
        write_csv(selected[CANDIDATE_COLUMNS], root / "data/candidates" / f"{area}.csv")
        summary[area] = len(selected)
    return {"candidates": summary}
