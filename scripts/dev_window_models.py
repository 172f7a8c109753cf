"""Development worlds only: an area's model of each rolling backtest window, trained as the
train stage trains it (only the labelled rows' features are read: under 1 GB for a 300,000-item
world), with a ``train`` setting changed, scored on the window's truth.

Usage (a world folder built by ``scripts/evaluate_worlds.py``)::

    python scripts/dev_window_models.py WORLD_DIR security,environment \\
        '{"reason_odds": {"intelligence": 6}}' out.json

Per (area, window): ``exp``, the mean oracle probability of the picks at the area's operating
rate over the oracle's own picks' (expected precision: far less noisy than a window's dozen
offences), and ``real``, precision on the truth over the oracle's.
"""

from __future__ import annotations

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
from riskml.metrics import selection_size
from riskml.train import (
    feature_matrix,
    pool_specs,
    train_area,
    training_features,
    training_labels,
)


def main() -> None:
    root, areas = Path(sys.argv[1]), sys.argv[2].split(",")
    change, out = json.loads(sys.argv[3]), Path(sys.argv[4])
    params, specs = load_params(root / "params.yaml"), load_area_specs(root / "pipelines")
    cat = Catalog(root)
    decl = io.read_dataset(cat.declarations, columns=[*KEY, "accepted_date"])
    outcomes = io.read_parquet(cat.outcomes)
    truth = io.read_parquet(cat.truth()).astype({"declaration_id": "string"})
    windows = bt.backtest_windows(
        params.split, n_windows=3, window_months=params.backtest.window_months
    )
    pool, rows = pool_specs(specs, root), []
    for area in areas:
        spec = specs[area]
        train = area_train_params(params, spec).model_copy(update={"num_threads": 1, **change})
        t = truth[truth["risk_area"] == area][[*KEY, "offence", "true_prob"]]
        for w in windows:
            started = time.time()
            own, first = training_labels(
                decl, outcomes, spec, pool, known_before=w.start, labelled_only=True
            )
            feats = training_features(cat.features, spec, w.split, [own, first])
            model = train_area(feats, own, spec, w.split, train, pretrain_labels=first)
            test = io.read_partitioned(
                cat.features,
                months=io.months_overlapping(cat.features, w.start, w.end),
                columns=[*KEY, "accepted_date", *model.feature_names],
            )
            d = pd.to_datetime(test["accepted_date"])
            test = test[(d >= pd.Timestamp(w.start)) & (d < pd.Timestamp(w.end))]
            score = model.booster.predict(feature_matrix(test, model.feature_names))
            keyed = test[KEY].astype({"declaration_id": "string"}).merge(t, on=KEY, how="left")
            p = keyed["true_prob"].fillna(0.0).to_numpy()
            y = keyed["offence"].fillna(False).to_numpy(bool)
            k = selection_size(len(score), rate=spec.operating_rate)
            top, best = np.argsort(-score, kind="stable")[:k], np.argsort(-p, kind="stable")[:k]
            row = {
                "area": area,
                "window": w.index,
                "exp": float(p[top].mean() / p[best].mean()),
                "real": float(y[top].mean() / max(y[best].mean(), 1e-12)),
                "seconds": round(time.time() - started),
            }
            rows.append(row)
            print(row, flush=True)
            out.write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
