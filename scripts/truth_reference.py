"""The truth-trained reference: what the feature set can reach when labels are not the limit.

Usage (from a project whose ``source``, ``validate`` and ``features`` stages have run on
simulated data)::

    python scripts/truth_reference.py --params params.yaml [--areas drugs security ...]
        [--seeds 42 1 7] [--without-seizures]

Per area and seed: one LightGBM (``params``' train section) trained on the **truth** of every item
accepted in [split.train_start, split.valid_start), early-stopped on the truth of
[split.valid_start, split.test_start), scored on [split.test_start, split.test_end). No selection
bias, no detection noise, about 15 times the labelled positives: not a deployable model, the
attainable limit of the features (issue 15). Printed: precision at the area's operating rate on
the truth of every test item, as a share of the oracle's (``true_prob``), per seed and mean.
``--without-seizures`` drops the ``sz_`` features (the seizure-intelligence ablation).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from riskml import io
from riskml.config import load_area_specs, load_params
from riskml.contract import KEY
from riskml.features import model_feature_columns
from riskml.metrics import precision_at_rate


def _truth(root: Path, area: str, frame: pd.DataFrame) -> pd.DataFrame:
    truth = io.read_parquet(root / "data/interim/truth.parquet")
    t = truth[truth["risk_area"] == area][[*KEY, "offence", "true_prob"]]
    keys = frame[KEY].astype({"declaration_id": "string", "item_no": "int64"})
    t = t.astype({"declaration_id": "string", "item_no": "int64"})
    return keys.merge(t, on=KEY, how="left", validate="one_to_one")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=Path("."))
    ap.add_argument("--params", type=Path, required=True)
    ap.add_argument(
        "--areas", nargs="+", default=["drugs", "environment", "health_safety", "security"]
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[42])
    ap.add_argument("--without-seizures", action="store_true")
    args = ap.parse_args()
    root = args.root.resolve()
    params = load_params(args.params)
    specs = load_area_specs(root / "pipelines")
    frame = io.read_dataset(root / "data/features")
    cols = model_feature_columns(frame)
    if args.without_seizures:
        cols = [c for c in cols if not c.startswith("sz_")]
    s = params.split
    date = pd.to_datetime(frame["accepted_date"])
    part = {
        "train": (date >= pd.Timestamp(s.train_start)) & (date < pd.Timestamp(s.valid_start)),
        "valid": (date >= pd.Timestamp(s.valid_start)) & (date < pd.Timestamp(s.test_start)),
        "test": (date >= pd.Timestamp(s.test_start)) & (date < pd.Timestamp(s.test_end)),
    }
    X = frame[cols].to_numpy(np.float32)
    t = params.train
    for area in args.areas:
        spec = specs[area]
        truth = _truth(root, area, frame)
        y = truth["offence"].fillna(False).to_numpy(bool)
        shares = []
        for seed in args.seeds:
            lgb_params = {
                "objective": "binary",
                "num_leaves": t.num_leaves,
                "learning_rate": t.learning_rate,
                "min_child_samples": t.min_child_samples,
                "feature_fraction": t.feature_fraction,
                "bagging_fraction": t.bagging_fraction,
                "bagging_freq": t.bagging_freq,
                "lambda_l2": t.lambda_l2,
                "seed": seed,
                "num_threads": 1,
                "verbose": -1,
            }
            tr, va, te = (part[k].to_numpy() for k in ("train", "valid", "test"))
            booster = lgb.train(
                lgb_params,
                lgb.Dataset(X[tr], y[tr]),
                num_boost_round=t.num_boost_round,
                valid_sets=[lgb.Dataset(X[va], y[va])],
                callbacks=[lgb.early_stopping(t.early_stopping_rounds, verbose=False)],
            )
            score = booster.predict(X[te])
            rate = spec.operating_rate
            model = precision_at_rate(y[te], score, rate=rate)
            oracle = precision_at_rate(y[te], truth["true_prob"].to_numpy()[te], rate=rate)
            shares.append(model / oracle)
            print(
                f"{area} seed {seed}: precision {model:.4f}, oracle {oracle:.4f}, "
                f"share {model / oracle:.3f}, trees {booster.best_iteration}, "
                f"train positives {int(y[tr].sum())}",
                flush=True,
            )
        label = "without seizure features" if args.without_seizures else "with seizure features"
        print(f"{area} ({label}): mean share of the oracle {np.mean(shares):.3f}\n", flush=True)


if __name__ == "__main__":
    main()
