"""Choose an area's ``recovery_exponent`` on backtest windows (how docs/results.md chose 0.22).

Usage (from a project whose pipeline has run, with the development split in PARAMS)::

    python scripts/choose_recovery_exponent.py --params dev_params.yaml [--area revenue]
        [--seeds 42 1 7] [--exponents 0 0.1 0.15 0.2 0.22 0.25 0.3 0.4 1]

For each seed and rolling backtest window, the area's model and recovery regression are trained
once on the window's past (:func:`riskml.backtest.window_scores`, as ``riskml backtest`` does);
every exponent is then measured on the same test scores (:func:`riskml.evaluate.
rank_key_comparison`). Printed per exponent: precision and revenue share at the operating rate
on the truth of every item, each as a share of the oracle's, mean over seeds × windows, and the
smaller of the two (the choice maximises it). Choose on development windows, never on the test
windows. Needs simulated data (the oracle) and an area with ``rank_by: expected_recovery``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from riskml import backtest as bt
from riskml.assessment import TRUTH, rank_key_comparison, rate_label
from riskml.config import load_area_specs, load_params
from riskml.contract import RiskmlError


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=Path("."), help="project with a finished run")
    ap.add_argument("--params", type=Path, required=True, help="params.yaml with the dev split")
    ap.add_argument("--area", default="revenue")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 7])
    ap.add_argument(
        "--exponents",
        type=float,
        nargs="+",
        default=[0.0, 0.1, 0.15, 0.2, 0.22, 0.25, 0.3, 0.4, 1.0],
    )
    args = ap.parse_args()
    root = args.root.resolve()
    params = load_params(args.params)
    specs = load_area_specs(root / "pipelines")
    spec = specs[args.area]
    if spec.rank_by != "expected_recovery":
        raise RiskmlError(f"area {args.area!r} does not rank by expected recovery")
    windows = bt.backtest_windows(
        params.split,
        n_windows=params.backtest.n_windows,
        window_months=params.backtest.window_months,
    )
    tables = bt.load_tables(root, params, specs)
    if tables["truth"] is None:
        raise RiskmlError("no truth table: the oracle (and so this choice) needs simulated data")
    frames, positions = bt.protocol_frames(bt.ROLLING, root, tables, windows, params, specs)
    rate = rate_label(spec.operating_rate)
    shares: dict[float, list[tuple[float, float]]] = {e: [] for e in args.exponents}
    for seed in args.seeds:
        seeded = params.model_copy(update={"train": params.train.model_copy(update={"seed": seed})})
        tables["first_stage_cache"] = {}
        for i, window in enumerate(windows):
            scores, _ = bt.window_scores(frames[i], positions[i], tables, spec, window, seeded)
            for e in args.exponents:
                block = rank_key_comparison(
                    scores,
                    spec.model_copy(update={"recovery_exponent": e}),
                    seed=params.evaluate.seed,
                )
                pops = bt._with_oracle_shares(block["populations"])
                m = pops[TRUTH]["methods"]["rank_key"]["rates"][rate]
                shares[e].append((m["precision_vs_oracle"], m["revenue_share_vs_oracle"]))
            print(f"seed {seed}, window {window.start}..{window.end}: trained", flush=True)
    print(f"\n{args.area} at {rate}, mean of {len(args.seeds)} seed(s) x {len(windows)} windows")
    print("exponent | precision / oracle | revenue share / oracle | smaller")
    for e, values in shares.items():
        p, s = np.mean(values, axis=0)
        print(f"{e:8.2f} | {p:18.3f} | {s:22.3f} | {min(p, s):.3f}")


if __name__ == "__main__":
    main()
