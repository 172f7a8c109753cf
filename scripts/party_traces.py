"""Development worlds only: how well the features reveal each hidden party trait of the simulator.

Usage (a world folder built by ``scripts/evaluate_worlds.py``, its features built)::

    python scripts/party_traces.py /tmp/smug/dev/world-42-300000 --out traces42.json

The simulator's parties are rebuilt for the world's ``params.yaml`` (``build_entities`` is
deterministic for the seed; no month is re-run) and each item of the test period (``split``:
``test_start`` to ``test_end``) gets its parties' hidden traits: the importer is a front company,
the declarant complicit, the supplier risky, the importer a freight forwarder. For each trait the
script prints the univariate AUC of every feature of the world's feature frame against the trait
(``max(AUC, 1 - AUC)``, missing values ranked last), the best ``--top`` of them, and the AUC of
a LightGBM classifier of the trait from all the features (trained on the items of the twelve
months before ``test_start``, scored on the test period): how much of the trait the feature set
reveals together. ``--features`` gives the feature columns of interest (printed whatever their
rank), e.g. new columns built in a second folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from riskml import io
from riskml.catalog import Catalog
from riskml.config import load_params
from riskml.features import model_feature_columns
from riskml.simulate.entities import build_entities
from riskml.simulate.geography import load_geography


def traits_of(root: Path, decl: pd.DataFrame) -> pd.DataFrame:
    """Per declaration row, the hidden traits of its parties (bool columns)."""
    params = load_params(root / "params.yaml")
    ents = build_entities(params.simulate, load_geography())

    def by_id(ids: np.ndarray, values: np.ndarray, column: pd.Series) -> np.ndarray:
        return pd.Series(values, index=ids).reindex(column.astype(str)).to_numpy(bool)

    return pd.DataFrame(
        {
            "front": by_id(ents.importer_id, ents.importer_front, decl["importer_id"]),
            "complicit": by_id(ents.declarant_id, ents.declarant_complicit, decl["declarant_id"]),
            "risky_supplier": by_id(ents.supplier_id, ents.supplier_risky, decl["supplier_id"]),
            "forwarder": by_id(ents.importer_id, ents.importer_forwarder, decl["importer_id"]),
        },
        index=decl.index,
    )


def auc(y: np.ndarray, x: np.ndarray) -> float:
    """max(AUC, 1 - AUC) of ``x`` against ``y``; missing values ranked below every value."""
    x = np.where(np.isnan(x), np.nanmin(x) - 1 if np.isfinite(x).any() else 0.0, x)
    a = roc_auc_score(y, x)
    return round(float(max(a, 1 - a)), 3)


def trait_model(
    frame: pd.DataFrame, names: list[str], y: np.ndarray, train: np.ndarray, test: np.ndarray
) -> float:
    """AUC on the test rows of a LightGBM classifier of ``y`` from every feature ``names``,
    trained on the ``train`` rows (200 trees; how much of the trait the features reveal
    together)."""
    model = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 2, "seed": 42,
         "learning_rate": 0.1, "num_leaves": 31, "min_child_samples": 50},
        lgb.Dataset(frame.loc[train, names].to_numpy(np.float32), y[train]),
        num_boost_round=200,
    )  # fmt: skip
    return auc(y[test], model.predict(frame.loc[test, names].to_numpy(np.float32)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("world", type=Path)
    ap.add_argument("--features-root", type=Path, help="read the features of this folder")
    ap.add_argument("--features", nargs="*", default=[], help="columns always reported")
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--model", action="store_true", help="also the all-features classifier")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    params = load_params(args.world / "params.yaml")
    cat = Catalog(args.features_root or args.world)
    frame = io.read_dataset(cat.features)
    names = model_feature_columns(frame)
    decl = io.read_dataset(
        Catalog(args.world).declarations,
        ["declaration_id", "item_no", "importer_id", "declarant_id", "supplier_id"],
    )
    frame = frame.merge(
        decl.astype({"declaration_id": "string"}), on=["declaration_id", "item_no"], how="inner"
    )
    traits = traits_of(args.world, frame)
    date = pd.to_datetime(frame["accepted_date"])
    test = ((date >= pd.Timestamp(params.split.test_start))
            & (date < pd.Timestamp(params.split.test_end))).to_numpy()  # fmt: skip
    train = ((date >= pd.Timestamp(params.split.test_start) - pd.DateOffset(months=12))
             & ~test & (date < pd.Timestamp(params.split.test_start))).to_numpy()  # fmt: skip
    out = []
    for trait in traits.columns:
        y = traits[trait].to_numpy()
        ranks = {n: auc(y[test], frame[n].to_numpy(np.float64)[test]) for n in names}
        best = dict(sorted(ranks.items(), key=lambda kv: -kv[1])[: args.top])
        joint = None
        if args.model:
            joint = trait_model(frame, names, y, train, test)
        row = {
            "world": params.simulate.seed,
            "trait": trait,
            "items_share": round(float(y[test].mean()), 4),
            "best": best,
            "asked": {n: ranks.get(n) for n in args.features},
            "all_features_model": joint,
        }
        out.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        args.out.write_text(json.dumps(out, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
