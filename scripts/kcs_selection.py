"""Model variants on one KCS quarter with the features built once (the selection grid).

    python scripts/kcs_selection.py --data ../shared/data/kcs --work /tmp/kcs-sel \
        --quarter selection --variant shipped --variant seeds5 ...

The same stages as ``scripts/kcs_protocol.py`` (ingest with ``kcs_synthetic``, validate, the
features from the outcomes known before the ranked quarter, ``riskml.train.train_area`` per
seed, precision on every item of the ranked quarter), revenue only, but the features are built
once and each variant only retrains. A variant is a set of LightGBM overrides of ``params.yaml``'s
``train`` section, a list of seeds, and how the seeds' scores are used: each seed measured on its
own (the figure is their mean) or the seeds' probabilities averaged into one score (one
figure). ``--variant`` picks from :data:`VARIANTS` (default: all). Choices are made on the
selection quarter (2020-10..12); the development quarter is confirmed once with
``scripts/kcs_protocol.py`` (docs/results.md). Writes ``WORK/kcs_selection.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SEEDS = (42, 1, 2)
#: name -> (train overrides, seeds, "each" (mean of the seeds' figures) or "average" (one
#: score: the seeds' probabilities averaged)).
VARIANTS: dict[str, tuple[dict[str, Any], tuple[int, ...], str]] = {
    "shipped": ({}, SEEDS, "each"),
    "seeds3-avg": ({}, SEEDS, "average"),
    "seeds5-avg": ({}, (42, 1, 2, 3, 4), "average"),
    "leaves15": ({"num_leaves": 15}, SEEDS, "each"),
    "leaves63": ({"num_leaves": 63}, SEEDS, "each"),
    "lr0.02": ({"learning_rate": 0.02}, SEEDS, "each"),
    "mcs50": ({"min_child_samples": 50}, SEEDS, "each"),
    "mcs5": ({"min_child_samples": 5}, SEEDS, "each"),
    "leaves63-lr0.03-mcs10": (
        {"num_leaves": 63, "learning_rate": 0.03, "min_child_samples": 10},
        SEEDS,
        "each",
    ),
    "leaves15-lr0.02-mcs50": (
        {"num_leaves": 15, "learning_rate": 0.02, "min_child_samples": 50},
        SEEDS,
        "each",
    ),
    "ff0.5": ({"feature_fraction": 0.5}, SEEDS, "each"),
    "monotone": ({"monotone_own_intelligence": True}, SEEDS, "each"),
}


def build(data: Path, work: Path, quarter: str, reference: str | None, root: Path):
    """Ingest, validate and build the features of ``quarter``'s cut once (cached in ``work``)."""
    from riskml.catalog import Catalog, table_file
    from riskml.config import load_area_specs, load_params
    from riskml.contract import run_validate
    from riskml.features import build_features
    from riskml.ingest import run_ingest
    from riskml.io import read_parquet, write_parquet
    from riskml.labels import build_labels
    from riskml.protocol import KCS_FILES, KCS_SPLITS, REFERENCES, protocol_spec

    split = KCS_SPLITS[quarter]
    params = load_params(root / "params.yaml")
    spec = protocol_spec(load_area_specs(Catalog(root).pipelines)["revenue"])
    if not (work / "interim").exists():
        run_ingest([data / f for f in KCS_FILES], "kcs_synthetic", work / "raw")
        run_validate(work / "raw", work / "interim", work / "validation.json")
    decl = read_parquet(table_file(work / "interim", "declarations"))
    outcomes = read_parquet(table_file(work / "interim", "outcomes"))
    cached = work / f"features-{quarter}.parquet"
    if cached.exists():
        feats = read_parquet(cached)
    else:
        known = (outcomes["result_date"] < pd.Timestamp(split.test_start)).to_numpy(bool)
        feats = build_features(decl, outcomes[known], params.features, specs={"revenue": spec})
        write_parquet(feats, cached)
    labels = build_labels(decl, outcomes, spec, known_before=pd.Timestamp(split.test_start))
    if reference:
        extra = REFERENCES[reference](decl, labels)
        feats = pd.concat([feats, extra.set_axis(feats.index)], axis=1)
    final = build_labels(decl, outcomes, spec)
    return feats, labels, final, spec, split, params


def main(argv: list[str] | None = None) -> int:
    from riskml.config import area_train_params
    from riskml.protocol import measure, ranked_window
    from riskml.train import feature_matrix, train_area

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/kcs"))
    parser.add_argument("--work", type=Path, default=Path("data/kcs-selection"))
    parser.add_argument("--root", type=Path, default=Path("."), help="holds params.yaml")
    parser.add_argument("--quarter", choices=("selection", "development"), default="selection")
    parser.add_argument("--reference", default=None, help="riskml.protocol.REFERENCES key")
    parser.add_argument("--variant", action="append", default=[], choices=sorted(VARIANTS))
    args = parser.parse_args(argv)
    from riskml.io import write_json

    args.work.mkdir(parents=True, exist_ok=True)
    feats, labels, final, spec, split, params = build(
        args.data, args.work, args.quarter, args.reference, args.root
    )
    ranked = ranked_window(feats, final, split)
    y = ranked["label"].to_numpy()
    out: dict[str, Any] = {"quarter": args.quarter, "reference": args.reference, "variants": {}}
    for name in args.variant or list(VARIANTS):
        overrides, seeds, use = VARIANTS[name]
        started = time.process_time()
        scores, each = [], []
        for seed in seeds:
            train = params.model_copy(
                update={"train": params.train.model_copy(update=overrides | {"seed": seed})}
            )
            model = train_area(feats, labels, spec, split, area_train_params(train, spec))
            score = model.booster.predict(feature_matrix(ranked, model.feature_names))
            scores.append(score)
            each.append(measure(y, score))
        if use == "average":
            block = measure(y, np.mean(scores, axis=0))
            block["seeds"] = list(seeds)
        else:
            block = {
                "precision": {
                    r: float(np.mean([e["precision"][r] for e in each])) for r in each[0]["precision"]
                },
                "average_precision": float(np.mean([e["average_precision"] for e in each])),
                "per_seed_10%": [e["precision"]["10%"] for e in each],
                "seeds": list(seeds),
            }
        block["cpu_s"] = round(time.process_time() - started, 1)
        out["variants"][name] = block
        figures = "  ".join(f"P@{r}={v:.3f}" for r, v in block["precision"].items())
        extra = block.get("per_seed_10%")
        tail = f"  seeds@10%={[round(v, 3) for v in extra]}" if extra else ""
        print(
            f"{name}: {figures}  AP={block['average_precision']:.3f}{tail}  "
            f"cpu={block['cpu_s']}s",
            flush=True,
        )
        write_json(out, args.work / "kcs_selection.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
