"""The development protocol on the Korea Customs Service synthetic file, end to end.

    python scripts/kcs_protocol.py --data ../shared/data/kcs --work data/kcs

Protocol (the dataset's own, one quarter earlier, so that its test quarter stays held out):
train on items accepted 2020-01..09, early-stop on 2020-10..12, rank 2021-01..03.
``--quarter selection`` is the same shape one quarter earlier again (train 2020-01..07,
early-stop 2020-08..09, rank 2020-10..12): features and settings are chosen there, and the
development quarter is measured once as the confirmation. Every item of the file was
inspected, so precision is measured on every item of the ranked quarter. No outcome of the
ranked quarter feeds any feature (features are built with the outcomes whose result date is
before the ranked quarter, as the static backtest protocol does) and training labels are those
known before it.

It runs the package's own stages: ``riskml.ingest.run_ingest`` (mapping ``kcs_synthetic``),
``riskml.contract.run_validate``, the features, ``riskml.train.train_area`` per area the mapping
labels and ``riskml.metrics``. It prints one line per area and rate and writes the figures to
``WORK/kcs_protocol.json``. ``--sample N`` keeps the first N rows of each file (tests).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from riskml.protocol import KCS_SPLITS, REFERENCES, run_protocol


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/kcs"))
    parser.add_argument("--work", type=Path, default=Path("data/kcs"))
    parser.add_argument("--root", type=Path, default=Path("."), help="holds params.yaml")
    parser.add_argument("--sample", type=int, default=0, help="first N rows of each file")
    parser.add_argument("--seed", type=int, default=None, help="override train.seed")
    parser.add_argument(
        "--quarter",
        choices=sorted(KCS_SPLITS),
        default="development",
        help="development: rank 2021-01..03 (the protocol); selection: rank 2020-10..12 "
        "(train 2020-01..07, early-stop 2020-08..09), where features and settings are chosen",
    )
    parser.add_argument(
        "--reference",
        choices=sorted(REFERENCES),
        default=None,
        help="a measured reference, not the shipped features: exact-values adds the history of "
        "the exact declared value and mass per HS6 (a generator artefact on this file); "
        "value-bands the history of the HS6 in the item's decade of value and of mass, leaving "
        "out the items within about 1%% of its own value (riskml.protocol.value_band_history)",
    )
    parser.add_argument(
        "--area",
        action="append",
        default=[],
        help="train and measure only this area (repeatable; default: every area the mapping "
        "labels); the features are the same",
    )
    args = parser.parse_args(argv)
    result = run_protocol(
        args.data,
        args.work,
        root=args.root,
        sample=args.sample or None,
        seed=args.seed,
        reference=args.reference,
        only=tuple(args.area),
        split=KCS_SPLITS[args.quarter],
    )
    split = KCS_SPLITS[args.quarter].model_dump(mode="json")
    print(f"split: {split}")
    for area, block in result["areas"].items():
        if "skipped" in block:
            print(f"{area}: skipped ({block['skipped']})")
            continue
        figures = "  ".join(f"P@{r}={v:.3f}" for r, v in block["precision"].items())
        print(f"{area}: {figures}  AP={block['average_precision']:.3f}  n={block['n_ranked']}")
        ci = block.get("precision_ci95", {})
        if ci:
            bounds = "  ".join(f"P@{r}=[{lo:.3f}, {hi:.3f}]" for r, (lo, hi) in ci.items())
            print(f"{area} 95% bootstrap intervals over the ranked items: {bounds}")
    print(f"written: {args.work / 'kcs_protocol.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
