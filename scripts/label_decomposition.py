"""Development worlds only: where a rare area's label-trained model loses against the
truth-trained reference, by retraining the same model (``train_area``, first stage included,
the area's own settings) on labels that know more than the controls did.

Usage (a world folder built by ``scripts/evaluate_worlds.py``)::

    python scripts/label_decomposition.py /tmp/smug/dev/world-42-300000 dec42.json \\
        --area environment --seeds 42 1

Per rolling backtest window and train seed, one fit per variant of the own stage's labels (the
first stage keeps its control labels in each):

* ``model``: the control labels alone (the train stage's, without its weak negatives);
* ``deployed`` (only for an area whose ``train.unlabelled_share`` is set): the control labels
  plus that share of the never-controlled items as weak negatives, as the train stage trains;
* ``truth_labelled``: the same labelled rows, each labelled by the truth: detection misses and
  results not yet known at the cut are corrected, the choice of which items were controlled is
  kept;
* ``truth_labelled_pu``: those rows plus the weak-negative sample (``--share`` of the items never
  controlled, as ``train.unlabelled_share``), every row labelled by the truth;
* ``pu``: the control labels plus the weak-negative sample as negatives (``unlabelled_share``);
* ``truth_controlled`` (``--variants``): every item controlled for the area before the cut,
  labelled by the truth, whether or not its result was known at the cut (``truth_labelled``
  without the label delay: a post-clearance audit's result comes 2-9 months later).

For an area ranked by expected recovery (revenue) each fit also trains its recovered-duty
regression and reports the candidate list's key (``exp_key``, ``real_key``, ``rev_key``: see
``scripts/dev_window_models.py``). A ``facts`` row per window counts the labelled rows and
positives by control kind and, from the simulator's drift month on (``simulate.drift_month``),
the labelled positives against the truth's offences of the same months (every item).

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
from riskml.config import AreaSpec, Params, area_train_params, load_area_specs, load_params
from riskml.contract import KEY
from riskml.train import (
    feature_matrix,
    pool_specs,
    train_area,
    training_features,
    training_labels,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dev_window_models import (  # noqa: E402  (a script beside this one)
    evaded_of,
    list_key_figures,
    test_window,
    window_inputs,
)


def truth_labelled(labels: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """``labels`` with each row's label replaced by the truth's offence (same rows, order)."""
    keyed = labels[KEY].astype({"declaration_id": "string"}).merge(truth, on=KEY, how="left")
    out = labels.copy()
    out["label"] = keyed["offence"].fillna(False).astype(float).to_numpy()
    return out


def window_facts(
    labels: pd.DataFrame, truth: pd.DataFrame, decl: pd.DataFrame, w: bt.Window, drift: pd.Timestamp
) -> dict[str, object]:
    """Labelled rows and positives of the window's training period ``[train_start, test
    start)`` by control kind, and from ``drift`` on: labelled positives, the truth's offences
    of every item and of the labelled rows."""
    d = labels[KEY].merge(decl, on=KEY, how="left")["accepted_date"].to_numpy()
    inside = (d >= np.datetime64(w.split.train_start)) & (d < np.datetime64(w.start))
    after = inside & (d >= np.datetime64(drift))
    lab = labels[inside]
    kinds = lab.groupby(lab["control_kind"].astype("string").fillna("none"))["label"]
    every = decl[(decl["accepted_date"] >= drift) & (decl["accepted_date"] < pd.Timestamp(w.start))]
    offences = every[KEY].merge(truth[truth["offence"]][KEY], on=KEY, how="inner")
    keyed = labels[after][KEY].merge(truth[[*KEY, "offence"]], on=KEY, how="left")
    return {
        "rows": int(inside.sum()),
        "positives": int(lab["label"].sum()),
        "by_kind": {k: [int(g.size), int(g.sum())] for k, g in kinds},
        "after_drift_rows": int(after.sum()),
        "after_drift_positives": int(labels[after]["label"].sum()),
        "after_drift_labelled_offences": int(keyed["offence"].fillna(False).sum()),
        "after_drift_items": len(every),
        "after_drift_offences": len(offences),
    }


def deployed_labels(
    decl: pd.DataFrame,
    outcomes: pd.DataFrame,
    spec: AreaSpec,
    pool: dict[str, AreaSpec],
    w: bt.Window,
    params: Params,
    share: float,
    cache: dict,
) -> dict[str, tuple[pd.DataFrame, pd.DataFrame | None]]:
    """``{"deployed": (own, first)}``, the train stage's labels with its weak negatives, when
    the area's ``train.unlabelled_share`` is set (else empty). The share's sample is a subset of
    ``share``'s (a hash threshold), so the rows read for the ``pu`` variants hold its features.
    ``cache``: the window's label cache of :func:`riskml.train.training_labels`."""
    deployed = area_train_params(params, spec).unlabelled_share
    if deployed <= 0:
        return {}
    if deployed > share:
        raise SystemExit(f"--share {share} is below {spec.name}'s unlabelled_share {deployed}")
    own, first = training_labels(
        decl, outcomes, spec, pool, known_before=w.start, labelled_only=True,
        unlabelled_share=deployed, cache=cache,
    )  # fmt: skip
    return {"deployed": (own, first)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("world", type=Path, help="a world folder of scripts/evaluate_worlds.py")
    ap.add_argument("out", type=Path)
    ap.add_argument("--area", default="environment")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 1])
    ap.add_argument("--share", type=float, default=0.05, help="weak-negative sample share")
    ap.add_argument("--variants", nargs="+", help="only these variants (default: the first four)")
    args = ap.parse_args()
    root, area = args.world, args.area
    params, specs = load_params(root / "params.yaml"), load_area_specs(root / "pipelines")
    cat = Catalog(root)
    decl = io.read_dataset(cat.declarations, columns=[*KEY, "accepted_date"])
    decl = decl.astype({"declaration_id": "string"})
    decl["accepted_date"] = pd.to_datetime(decl["accepted_date"])
    outcomes = io.read_dataset(cat.outcomes)
    truth = io.read_dataset(cat.truth()).astype({"declaration_id": "string"})
    t = truth[truth["risk_area"] == area][[*KEY, "offence", "true_prob", "evaded_duty"]]
    recovery = specs[area].rank_by == "expected_recovery"
    drift = pd.Timestamp(params.simulate.start_date) + pd.DateOffset(
        months=params.simulate.drift_month
    )
    windows = bt.backtest_windows(
        params.split, n_windows=3, window_months=params.backtest.window_months
    )
    pool, spec, rows = pool_specs(specs, root), specs[area], []
    for w in windows:
        test, p, y, k, best = test_window(cat, t, w, spec)
        evaded = evaded_of(test, t) if recovery else None
        # every label set of the window below builds each area's labels once
        labels_cache: dict = {}
        own, first = training_labels(
            decl, outcomes, spec, pool, known_before=w.start, labelled_only=True,
            cache=labels_cache,
        )  # fmt: skip
        facts = {"world": params.simulate.seed, "area": area, "window": w.index,
                 "variant": "facts", "drift": str(drift.date()),
                 **window_facts(own, t, decl, w, drift)}  # fmt: skip
        rows.append(facts)
        print(facts, flush=True)
        # the weak negatives' labels and the training rows' features (theirs hold own's rows)
        own_pu, first_pu, feats = window_inputs(
            decl, outcomes, cat, spec, pool, w, args.share, cache=labels_cache
        )
        variants = {
            "model": (own, first),
            **deployed_labels(decl, outcomes, spec, pool, w, params, args.share, labels_cache),
            "truth_labelled": (truth_labelled(own, t), first),
            "truth_labelled_pu": (truth_labelled(own_pu, t), first_pu),
            "pu": (own_pu, first_pu),
        }
        wanted = args.variants or list(variants)
        if "truth_controlled" in wanted:
            # every controlled item, its result known at the cut or not (no label delay)
            every, _ = training_labels(
                decl, outcomes, spec, pool, known_before=None, labelled_only=True
            )
            every = every[
                every[KEY].merge(decl, on=KEY, how="left")["accepted_date"].to_numpy()
                < np.datetime64(w.start)
            ]
            extra = training_features(cat.features, spec, w.split, [every])
            feats = pd.concat([feats, extra]).drop_duplicates(KEY, ignore_index=True)
            variants["truth_controlled"] = (truth_labelled(every, t), first)
        for name, (labels, pretrain) in variants.items():
            if name not in wanted:
                continue
            for seed in args.seeds:
                started = time.process_time()
                train = area_train_params(params, spec).model_copy(
                    update={"num_threads": 1, "seed": seed}
                )
                model = train_area(
                    feats, labels, spec, w.split, train, pretrain_labels=pretrain,
                    with_recovery=recovery,
                )  # fmt: skip
                score = model.booster.predict(feature_matrix(test, model.feature_names))
                top = np.argsort(-score, kind="stable")[:k]
                row = {
                    "world": params.simulate.seed, "area": area, "window": w.index,
                    "variant": name, "seed": seed, "rows": len(labels),
                    "positives": int(labels["label"].sum()),
                    "exp": float(p[top].mean() / p[best].mean()),
                    "real": float(y[top].mean() / max(y[best].mean(), 1e-12)),
                    "trees": model.booster.num_trees(),
                    "cpu_seconds": round(time.process_time() - started, 1),
                }  # fmt: skip
                if recovery:
                    row |= list_key_figures(model, test, score, spec, p, y, evaded, k, best, [])
                rows.append(row)
                print(row, flush=True)
                args.out.write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
