"""Time the explanation of N candidates of one area on a finished pipeline run.

Usage:  python bench/explain_bench.py [--root /path/to/finished/run] [--area revenue]
                                      [--n 10000] [--threads 2] [--pages 500]

Reads ``data/features`` (month partitions) and ``models/<area>/model.txt`` under ``--root`` (a
folder where ``make run`` / ``dvc repro`` completed; nothing is written there). Takes ``--n``
scored test-window items as candidates and times each step of the explain stage: TreeSHAP
contributions (``pred_contrib``, in chunks, additivity checked), reason sentences, the pandera
schema, grouped contributions, then ``--pages`` case files and one waterfall image. LightGBM
uses ``--threads`` OpenMP threads.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd

from riskml.config import load_area_specs, load_params
from riskml.explain import plot_waterfall
from riskml.features import catalogue_for
from riskml.reasons import contributions, group_contributions, reasons, validate_explanations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--area", default="revenue")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pages", type=int, default=500)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before LightGBM's OpenMP loads
    import lightgbm as lgb

    from riskml import io

    root = args.root.resolve()
    params = load_params(root / "params.yaml")
    specs = load_area_specs(root / "pipelines")
    catalogue = catalogue_for(specs)

    booster = lgb.Booster(model_file=str(root / "models" / args.area / "model.txt"))
    names = booster.feature_name()
    features = io.read_dataset(root / "data/features")
    dates = features["accepted_date"]
    window = features[
        (dates >= pd.Timestamp(params.split.test_start))
        & (dates < pd.Timestamp(params.split.test_end))
    ]
    rows = window.sample(min(args.n, len(window)), random_state=0).reset_index(drop=True)
    print(
        f"area {args.area}: {len(rows):,} candidates, {len(names)} features, "
        f"{booster.num_trees()} trees, {args.threads} LightGBM threads, cpus {os.cpu_count()}"
    )

    timings: dict[str, float] = {}

    def timed(step: str, func):
        start = time.perf_counter()
        out = func()
        timings[step] = time.perf_counter() - start
        print(f"  {step:<42} {timings[step]:7.2f} s")
        return out

    contrib = timed(
        "contributions (pred_contrib, additivity)",
        lambda: contributions(booster, rows, chunk_size=params.explain.chunk_size),
    )
    table = timed(
        "reason sentences",
        lambda: reasons(
            rows,
            contrib,
            catalogue,
            n_up=params.explain.n_reasons,
            n_down=params.explain.n_lowering,
        ),
    )
    timed("pandera schema", lambda: validate_explanations(table))
    timed("grouped contributions", lambda: group_contributions(contrib, catalogue))
    explain_total = sum(timings.values())
    print(f"  {'explain total (reasons table)':<42} {explain_total:7.2f} s "
          f"({len(rows) / explain_total:,.0f} candidates/s)")  # fmt: skip

    from riskml import casefile

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        image = timed(
            "one waterfall image",
            lambda: plot_waterfall(
                table[
                    (table["declaration_id"] == rows.iloc[0]["declaration_id"])
                    & (table["item_no"] == rows.iloc[0]["item_no"])
                ].to_dict("records"),
                tmp_path / "w.png",
                title="bench",
            ),
        )
        context = casefile.CaseContext(
            area=args.area, title=args.area, capacity=args.pages,
            rank_words="probability of an offence",
            random_share=0.0, model={"text": "bench", "model_id": "", "run_id": ""},
            snapshot={"kind": "bench", "path": "data/features", "hash": "-"},
            created=casefile.today(),
        )  # fmt: skip
        picks = rows.head(args.pages)[["declaration_id", "item_no"]].assign(
            selection_kind="model", rank=range(1, min(args.pages, len(rows)) + 1)
        )
        img_name = f"{rows.iloc[0]['declaration_id']}-{int(rows.iloc[0]['item_no'])}"
        timed(
            f"{len(picks)} case files + list page",
            lambda: casefile.write_case_files(
                picks, table, rows.head(args.pages), {img_name: image}, context,
                tmp_path / "cases",
            ),
        )  # fmt: skip
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (max RSS) {peak:,.0f} MB")


if __name__ == "__main__":
    main()
