"""Development worlds only: where a rare area's label-trained model loses against the
truth-trained reference, by retraining the same model (``train_area``, first stage included,
the area's own settings) on labels that know more than the controls did.

Usage (a world folder built by ``scripts/evaluate_worlds.py``)::

    python scripts/label_decomposition.py /tmp/smug/dev/world-42-300000 dec42.json \\
        --area environment --seeds 42 1

Per rolling backtest window and train seed, four fits of the own stage's labels (the first
stage keeps its control labels in each):

* ``model``: the control labels (as the train stage);
* ``truth_labelled``: the same labelled rows, each labelled by the truth: detection misses and
  results not yet known at the cut are corrected, the choice of which items were controlled is
  kept;
* ``truth_labelled_pu``: those rows plus the weak-negative sample (``--share`` of the items never
  controlled, as ``train.unlabelled_share``), every row labelled by the truth;
* ``pu``: the control labels plus the weak-negative sample as negatives (``unlabelled_share``).

``exp`` as in ``scripts/dev_window_models.py``: the mean oracle probability of the picks at the
area's operating rate over the oracle's own picks'. None of this is deployable (the truth is
hidden): ``model -> truth_labelled`` is what label noise costs, ``truth_labelled ->
truth_labelled_pu`` what the controls' selection costs that a population sample can restore,
and the rest to the truth-trained reference is the number of positives.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from riskml import backtest as bt
from riskml import io
from riskml.catalog import Catalog
from riskml.config import area_train_params, load_area_specs, load_params
from riskml.contract import KEY
from riskml.train import feature_matrix, pool_specs, train_area, training_labels

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dev_window_models import test_window, window_inputs  # noqa: E402  (a script beside this one)


def truth_labelled(labels: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """``labels`` with each row's label replaced by the truth's offence (same rows, order)."""
    keyed = labels[KEY].astype({"declaration_id": "string"}).merge(truth, on=KEY, how="left")
    out = labels.copy()
    out["label"] = keyed["offence"].fillna(False).astype(float).to_numpy()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("world", type=Path, help="a world folder of scripts/evaluate_worlds.py")
    ap.add_argument("out", type=Path)
    ap.add_argument("--area", default="environment")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 1])
    ap.add_argument("--share", type=float, default=0.05, help="weak-negative sample share")
    args = ap.parse_args()
    root, area = args.world, args.area
    params, specs = load_params(root / "params.yaml"), load_area_specs(root / "pipelines")
    cat = Catalog(root)
    decl = io.read_dataset(cat.declarations, columns=[*KEY, "accepted_date"])
    outcomes = io.read_dataset(cat.outcomes)
    truth = io.read_dataset(cat.truth()).astype({"declaration_id": "string"})
    t = truth[truth["risk_area"] == area][[*KEY, "offence", "true_prob"]]
    windows = bt.backtest_windows(
        params.split, n_windows=3, window_months=params.backtest.window_months
    )
    pool, spec, rows = pool_specs(specs, root), specs[area], []
    for w in windows:
        test, p, _, k, best = test_window(cat, t, w, spec)
        own, first = training_labels(
            decl, outcomes, spec, pool, known_before=w.start, labelled_only=True
        )
        # the weak negatives' labels and the training rows' features (theirs hold own's rows)
        own_pu, first_pu, feats = window_inputs(decl, outcomes, cat, spec, pool, w, args.share)
        variants = {
            "model": (own, first),
            "truth_labelled": (truth_labelled(own, t), first),
            "truth_labelled_pu": (truth_labelled(own_pu, t), first_pu),
            "pu": (own_pu, first_pu),
        }
        for name, (labels, pretrain) in variants.items():
            for seed in args.seeds:
                started = time.process_time()
                train = area_train_params(params, spec).model_copy(
                    update={"num_threads": 1, "seed": seed}
                )
                model = train_area(feats, labels, spec, w.split, train, pretrain_labels=pretrain)
                score = model.booster.predict(feature_matrix(test, model.feature_names))
                top = np.argsort(-score, kind="stable")[:k]
                row = {
                    "world": params.simulate.seed, "area": area, "window": w.index,
                    "variant": name, "seed": seed, "rows": len(labels),
                    "positives": int(labels["label"].sum()),
                    "exp": float(p[top].mean() / p[best].mean()),
                    "trees": model.booster.num_trees(),
                    "cpu_seconds": round(time.process_time() - started, 1),
                }  # fmt: skip
                rows.append(row)
                print(row, flush=True)
                args.out.write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
