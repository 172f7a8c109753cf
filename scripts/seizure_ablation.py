"""Measure the seizure-intelligence features: the same models with and without them.

Usage (from a project whose ``source``, ``validate`` and ``features`` stages have run)::

    python scripts/seizure_ablation.py --params params.yaml [--areas drugs security ...]
        [--seeds 42 1 7]

For each area, train seed and rolling backtest window (``params``' split and backtest
sections), the area's model is trained on the window's past exactly as ``riskml backtest``
trains it (:func:`riskml.backtest.window_scores`, first stage included), once on the feature
frame and once on the same frame without the ``sz_`` columns (its own first stage). Printed per
area: precision at the operating rate on the truth of every test item as a share of the
oracle's, mean over seeds x windows with the sample standard deviation over those (training-seed
and window variance together), for both variants, their paired difference, and the legacy rules
and raw-column LightGBM on the same windows. Needs simulated data (the oracle).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from riskml import backtest as bt
from riskml.assessment import TRUTH, evaluate_scores, rate_label
from riskml.config import load_area_specs, load_params
from riskml.contract import RiskmlError

VARIANTS = ("with", "without")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=Path("."), help="project with features built")
    ap.add_argument("--params", type=Path, required=True)
    ap.add_argument(
        "--areas", nargs="+", default=["drugs", "environment", "health_safety", "security"]
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 7])
    ap.add_argument("--out", type=Path, help="JSON file for the per-window figures")
    args = ap.parse_args()
    root = args.root.resolve()
    params = load_params(args.params)
    specs = load_area_specs(root / "pipelines")
    windows = bt.backtest_windows(
        params.split,
        n_windows=params.backtest.n_windows,
        window_months=params.backtest.window_months,
    )
    tables = bt.load_tables(root, params, specs)
    if tables["truth"] is None:
        raise RiskmlError("no truth table: the oracle needs simulated data")
    frames, positions = bt.protocol_frames(bt.ROLLING, root, tables, windows, params, specs)
    with_sz = frames[0]["features"]
    sz = [c for c in with_sz.columns if c.startswith("sz_")]
    if not sz or with_sz[sz].isna().all().all():
        raise RiskmlError("the feature frame has no seizure features: rebuild the features")
    without_sz = with_sz.drop(columns=sz)
    variant_frames = {"with": with_sz, "without": without_sz}
    figures: dict[str, dict[str, list[float]]] = {}
    for area in args.areas:
        spec = specs[area]
        rate = rate_label(spec.operating_rate)
        got: dict[str, list[float]] = {v: [] for v in (*VARIANTS, "legacy_rules", "raw")}
        for seed in args.seeds:
            seeded = params.model_copy(
                update={"train": params.train.model_copy(update={"seed": seed})}
            )
            for i, window in enumerate(windows):
                for variant, frame in variant_frames.items():
                    tables["first_stage_cache"] = {}  # a fresh first stage per seed
                    scores, _ = bt.window_scores(
                        {"features": frame, "raw": frames[i]["raw"]},
                        positions[i],
                        tables,
                        spec,
                        window,
                        seeded,
                    )
                    result = evaluate_scores(scores, spec, seed=params.evaluate.seed)
                    bt._with_oracle_shares(result)
                    methods = result[TRUTH]["methods"]
                    got[variant].append(methods["model"]["rates"][rate]["precision_vs_oracle"])
                    if variant == "with" and seed == args.seeds[0]:
                        for base in ("legacy_rules", "raw_lightgbm"):
                            if base in methods:
                                got[base.removesuffix("_lightgbm")].append(
                                    methods[base]["rates"][rate]["precision_vs_oracle"]
                                )
                print(f"{area} seed {seed} window {window.start}: {got['with'][-1]:.3f} / "
                      f"{got['without'][-1]:.3f}", flush=True)  # fmt: skip
        figures[area] = got
        w, wo = np.array(got["with"]), np.array(got["without"])
        print(
            f"\n{area} at {rate}, share of the oracle's precision, {len(args.seeds)} seeds x "
            f"{len(windows)} windows: with seizures {w.mean():.3f} ± {w.std(ddof=1):.3f}, "
            f"without {wo.mean():.3f} ± {wo.std(ddof=1):.3f}, paired difference "
            f"{(w - wo).mean():+.3f} ± {(w - wo).std(ddof=1):.3f}; legacy rules "
            f"{np.mean(got['legacy_rules']):.3f}, raw LightGBM {np.mean(got['raw']):.3f}\n",
            flush=True,
        )
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
