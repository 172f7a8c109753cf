"""Model variants on one KCS quarter with the features built once (the selection grid).

    python scripts/kcs_selection.py --data ../shared/data/kcs --work /tmp/kcs-sel \
        --quarter selection --variant shipped --variant seeds5 ...

The same stages as ``scripts/kcs_protocol.py`` (ingest with ``kcs_synthetic``, validate, the
features from the outcomes known before the ranked quarter, ``riskml.train.train_area`` per
seed, precision on every item of the ranked quarter), revenue only, but the features are built
once and each variant only retrains. A variant is a set of LightGBM overrides of ``params.yaml``'s
``train`` section (``base``: none; ``shipped``: the protocol's, ``riskml.protocol.KCS_TRAIN``;
the others: their own, over params.yaml's), a list of seeds, and how the seeds' scores are
used: each seed measured on its own (the figure is their mean) or the seeds' probabilities
averaged into one score (one figure). ``--variant`` picks from :data:`VARIANTS` (default:
all). Choices are made on the selection quarter (2020-10..12); the development quarter is
confirmed once (``--quarter development`` or ``scripts/kcs_protocol.py``). Writes
``WORK/kcs_selection.json`` and each variant's scores (``WORK/scores-NAME.parquet``), which
``--compare BASE NAME...`` compares paired; ``--cv-reference`` measures the attainable
reference (:func:`in_quarter_cv`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskml.features import MISCLASSIFICATION_TRACES, ORIGIN_TRACES
from riskml.protocol import KCS_EXCLUDE, KCS_TRAIN

SEEDS = (42, 1, 2)
BANDS = ("hs6vb_", "hs6mb_", "hs6ub_")


def variant(
    train: dict[str, Any] | None = None,
    seeds: tuple[int, ...] = SEEDS,
    use: str = "each",
    exclude: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A variant: ``train`` overrides, ``seeds``, ``use`` "each" (the mean of the seeds'
    figures) or "average" (one score: the seeds' probabilities averaged), and the prefixes of
    the features it leaves out."""
    return {"train": train or {}, "seeds": seeds, "use": use, "exclude": exclude}


def _taking(features: tuple[str, ...]) -> tuple[str, ...]:
    """The protocol's exclusions less ``features`` (a variant that takes them)."""
    return tuple(c for c in KCS_EXCLUDE if c not in features)


VARIANTS: dict[str, dict[str, Any]] = {
    # params.yaml's settings: the KCS protocol's before session 10, the base of every variant
    "base": variant(),
    # the KCS protocol's settings (riskml.protocol.KCS_TRAIN over params.yaml's)
    "shipped": variant(dict(KCS_TRAIN), exclude=KCS_EXCLUDE),
    "no-bands": variant(exclude=BANDS),
    # the protocol with session 24's origin-fraud traces (origin x tariff treatment, supplier x
    # origin), which it leaves out (riskml.protocol.KCS_EXCLUDE)
    "shipped-origin-traces": variant(dict(KCS_TRAIN), exclude=_taking(ORIGIN_TRACES)),
    # the protocol with session 25's misclassification traces (the goods' fit to a dearer code
    # of their heading)
    "shipped-sibling-fit": variant(dict(KCS_TRAIN), exclude=_taking(MISCLASSIFICATION_TRACES)),
    # the protocol with revenue's session-26 patience (200 rounds; its learning rate, 0.02, is
    # the protocol's already), which it leaves out (riskml.protocol.KCS_IGNORE_TRAIN)
    "shipped-patience200": variant(
        dict(KCS_TRAIN) | {"early_stopping_rounds": 200}, exclude=KCS_EXCLUDE
    ),
    "no-unit-value-band": variant(exclude=("hs6ub_",)),
    "seeds3-avg": variant(use="average"),
    "seeds5-avg": variant(seeds=(42, 1, 2, 3, 4), use="average"),
    "seeds5": variant(seeds=(42, 1, 2, 3, 4)),
    "leaves15": variant({"num_leaves": 15}),
    "leaves63": variant({"num_leaves": 63}),
    "lr0.02": variant({"learning_rate": 0.02}),
    "mcs50": variant({"min_child_samples": 50}),
    "mcs5": variant({"min_child_samples": 5}),
    "leaves63-lr0.03-mcs10": variant(
        {"num_leaves": 63, "learning_rate": 0.03, "min_child_samples": 10}
    ),
    "leaves15-lr0.02-mcs50": variant(
        {"num_leaves": 15, "learning_rate": 0.02, "min_child_samples": 50}
    ),
    "ff0.5": variant({"feature_fraction": 0.5}),
    "ff0.5-leaves63-lr0.02": variant(
        {"feature_fraction": 0.5, "num_leaves": 63, "learning_rate": 0.02, "num_boost_round": 3000}
    ),
    "ff0.3-leaves63-lr0.02": variant(
        {"feature_fraction": 0.3, "num_leaves": 63, "learning_rate": 0.02, "num_boost_round": 3000}
    ),
    "ff0.5-leaves127-lr0.02": variant(
        {"feature_fraction": 0.5, "num_leaves": 127, "learning_rate": 0.02, "num_boost_round": 3000}
    ),
    "leaves127-lr0.02-mcs10": variant(
        {"num_leaves": 127, "learning_rate": 0.02, "min_child_samples": 10, "num_boost_round": 3000}
    ),
    "lr0.01": variant(
        {"learning_rate": 0.01, "num_boost_round": 4000, "early_stopping_rounds": 200}
    ),
    "monotone": variant({"monotone_own_intelligence": True}),
}


def route_treatment_reference(decl: pd.DataFrame, params) -> pd.DataFrame:
    """Robust peer statistics of the log unit value per kg, log value and log mass against the
    peers HS6 x route x treatment of the 12 months before (falling back to HS6 x route, then
    HS6 below ``min_reference_count`` peers): z-score against median and MAD, and the peer
    count. Declarations only (no outcome), months before the item's."""
    from riskml.contract import empty_table
    from riskml.features.prepare import prepare
    from riskml.features.reference import reference_for, robust_z
    from riskml.features.row import unit_values

    prep = prepare(decl, empty_table("outcomes"))
    uv = unit_values(prep.declarations)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = pd.DataFrame(
            {
                "uv_kg_log": uv["uv_kg_log"].to_numpy(),
                "value_log": np.log(prep.declarations["cif_value"].astype(float).to_numpy()),
                "mass_log": np.log(prep.declarations["gross_mass_kg"].astype(float).to_numpy()),
            }
        ).replace(-np.inf, np.nan)
    codes = {
        1: prep.code("hs6", "route_treatment"),
        2: prep.code("hs6", "route"),
        3: prep.code("hs6"),
    }
    f = params.features
    ref = reference_for(
        codes, prep.month, logs, codes, prep.month,
        months=f.reference_months, min_count=f.min_reference_count,
    )  # fmt: skip
    out = {f"rt_{c}_rz": robust_z(logs[c].to_numpy(), ref.median[c], ref.mad[c]) for c in logs}
    out["rt_ref_count"] = ref.count
    out["rt_ref_level"] = ref.level.astype(float)
    return pd.DataFrame(out).astype("float32").set_axis(decl.index)


EXTRAS = {"rt-reference": route_treatment_reference}


def build(
    data: Path, work: Path, quarter: str, reference: str | None, root: Path, extra: str | None
):
    """Ingest, validate and build the features of ``quarter``'s cut once (cached in ``work``)."""
    from riskml.catalog import Catalog, interim_table, stored_table
    from riskml.config import load_area_specs, load_params
    from riskml.contract import run_validate
    from riskml.features import build_features
    from riskml.ingest import run_ingest
    from riskml.io import read_dataset, read_parquet, write_parquet
    from riskml.labels import build_labels
    from riskml.protocol import KCS_FILES, KCS_SPLITS, REFERENCES, protocol_spec

    split = KCS_SPLITS[quarter]
    params = load_params(root / "params.yaml")
    # no protocol settings in the spec: each variant's are over params.yaml's (variant "base")
    spec = protocol_spec(load_area_specs(Catalog(root).pipelines)["revenue"], train={}, exclude=())
    if not (work / "interim").exists():
        run_ingest([data / f for f in KCS_FILES], "kcs_synthetic", work / "raw")
        run_validate(work / "raw", work / "interim", work / "validation.json")
    decl = read_dataset(interim_table(work / "interim", "declarations"))
    outcomes = read_dataset(stored_table(work / "interim", "outcomes"))
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
    if extra:
        feats = pd.concat([feats, EXTRAS[extra](decl, params).set_axis(feats.index)], axis=1)
    final = build_labels(decl, outcomes, spec)
    return feats, labels, final, spec, split, params


def in_quarter_cv(feats, labels, final, spec, split, params, *, folds: int = 5, seed: int = 42):
    """The attainable reference of the features: the ranked quarter scored out of fold by
    models that also learnt from its other folds (``folds``-fold, random), as well as from
    every labelled row before it. Such a model has the quarter's own labels, which no deployed
    model has; what it cannot reach, the features cannot separate. Early stopping on a random
    fifth of the training folds; the score is measured on the pooled out-of-fold scores."""
    import lightgbm as lgb

    from riskml.config import area_train_params
    from riskml.protocol import measure, ranked_window
    from riskml.train import feature_columns, feature_matrix, in_window, labelled_rows, lgb_params

    names = feature_columns(feats, spec)
    before = in_window(labelled_rows(feats, labels), split.train_start, split.test_start)
    ranked = ranked_window(feats, final, split)
    rng = np.random.default_rng(seed)
    fold = rng.integers(0, folds, len(ranked))
    score = np.zeros(len(ranked))
    train_params = area_train_params(params, spec)
    for k in range(folds):
        rest = ranked[fold != k]
        pool = pd.concat([before[[*names, "label"]], rest[[*names, "label"]]])
        stop = rng.random(len(pool)) < 0.2
        fit, val = pool[~stop], pool[stop]
        config = lgb_params(train_params, int(fit["label"].sum()))
        dfit = lgb.Dataset(feature_matrix(fit, names), fit["label"].to_numpy())
        dval = lgb.Dataset(feature_matrix(val, names), val["label"].to_numpy(), reference=dfit)
        booster = lgb.train(
            config, dfit, num_boost_round=train_params.num_boost_round, valid_sets=[dval],
            callbacks=[lgb.early_stopping(train_params.early_stopping_rounds, verbose=False)],
        )  # fmt: skip
        held = ranked[fold == k]
        score[fold == k] = booster.predict(
            feature_matrix(held, names), num_iteration=booster.best_iteration
        )
    return measure(ranked["label"].to_numpy(), score)


def _weighted_precision(order: np.ndarray, y: np.ndarray, w: np.ndarray, rate: float) -> np.ndarray:
    """Precision at ``rate`` of the ranking ``order`` in each Poisson-weighted resample (rows of
    ``w``): the ``ceil(rate * n*)`` best drawn items, an item drawn k times counted k times."""
    cw = np.cumsum(w[:, order], axis=1)
    cp = np.cumsum(w[:, order] * y[order], axis=1)
    k = np.ceil(rate * cw[:, -1])
    at = np.minimum((cw < k[:, None]).sum(axis=1), len(order) - 1)
    rows = np.arange(len(w))
    # the item that crosses k counts only for the draws needed to reach k
    over = cw[rows, at] - k
    hits = cp[rows, at] - over * y[order][at]
    return hits / np.maximum(k, 1)


def paired_difference(
    y: np.ndarray,
    base: list[np.ndarray],
    other: list[np.ndarray],
    rates: tuple[float, ...],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """``other`` minus ``base`` (each: the mean over its seeds' scores of precision at each
    rate), with a 95% paired bootstrap interval: the same Poisson resamples of the ranked items
    for both, so the interval is that of the difference, not of either figure."""
    rng = np.random.default_rng(seed)
    orders = [[np.argsort(-s, kind="stable") for s in scores] for scores in (base, other)]
    diffs = {r: [] for r in rates}
    for start in range(0, n_boot, 100):
        w = rng.poisson(1.0, size=(min(100, n_boot - start), len(y))).astype(np.float64)
        for r in rates:
            b, o = (np.mean([_weighted_precision(od, y, w, r) for od in ods], axis=0)
                    for ods in orders)  # fmt: skip
            diffs[r].append(o - b)
    out = {}
    for r in rates:
        d = np.concatenate(diffs[r])
        point = np.mean([precision(y, s, r) for s in other]) - np.mean(
            [precision(y, s, r) for s in base]
        )
        lo, hi = np.quantile(d, [0.025, 0.975])
        out[f"{round(r * 100)}%"] = {"diff": float(point), "ci95": [float(lo), float(hi)]}
    return out


def precision(y: np.ndarray, score: np.ndarray, rate: float) -> float:
    from riskml.metrics import precision_at_rate

    return float(precision_at_rate(y, score, rate=rate))


def compare(work: Path, base: str, names: list[str]) -> dict[str, Any]:
    """Each variant's saved scores (``WORK/scores-NAME.parquet``) against ``base``'s, paired
    (:func:`paired_difference`); a variant of one averaged score is compared as one score."""
    from riskml.protocol import RATES

    def load(name: str) -> tuple[np.ndarray, list[np.ndarray]]:
        frame = pd.read_parquet(work / f"scores-{name}.parquet")
        seeds = [frame[c].to_numpy() for c in frame.columns if c.startswith("seed")]
        return frame["label"].to_numpy(), seeds

    y, b = load(base)
    out = {}
    for name in names:
        y2, o = load(name)
        if not np.array_equal(y, y2):
            raise SystemExit(f"{name}: scored on other items than {base}")
        if VARIANTS.get(name, {}).get("use") == "average":
            o = [np.mean(o, axis=0)]
        out[name] = paired_difference(y, b, o, RATES)
        cells = "  ".join(
            f"{r}: {v['diff']:+.3f} [{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}]"
            for r, v in out[name].items()
        )
        print(f"{name} - {base}: {cells}", flush=True)
    return out


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
    parser.add_argument("--extra", choices=sorted(EXTRAS), default=None)
    parser.add_argument(
        "--cv-reference",
        action="store_true",
        help="also the attainable reference: the ranked quarter scored out of fold (5 folds) by "
        "models that learnt from its other folds too (in_quarter_cv)",
    )
    parser.add_argument("--variant", action="append", default=[], choices=sorted(VARIANTS))
    parser.add_argument(
        "--cv-variant",
        default="shipped",
        choices=sorted(VARIANTS),
        help="the LightGBM settings of the in-quarter CV reference (its seeds: --seed, else 42)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        action="append",
        default=[],
        help="train these seeds instead of each variant's (repeatable)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="LightGBM threads (1: on a shared machine two threads spin more than they gain; "
        "compare only runs of the same thread count)",
    )
    parser.add_argument(
        "--compare",
        nargs="+",
        metavar="NAME",
        help="no training: BASE NAME... paired differences of saved scores (scores-NAME.parquet "
        "in --work, files of earlier runs) against the first, with 95%% paired bootstrap intervals",
    )
    args = parser.parse_args(argv)
    from riskml.io import write_json

    if args.compare:
        out = compare(args.work, args.compare[0], args.compare[1:])
        write_json(out, args.work / f"kcs_compare-{args.compare[0]}.json")
        return 0

    args.work.mkdir(parents=True, exist_ok=True)
    feats, labels, final, spec, split, params = build(
        args.data, args.work, args.quarter, args.reference, args.root, args.extra
    )
    params = params.model_copy(
        update={"train": params.train.model_copy(update={"num_threads": args.threads})}
    )
    ranked = ranked_window(feats, final, split)
    y = ranked["label"].to_numpy()
    out: dict[str, Any] = {
        "quarter": args.quarter,
        "reference": args.reference,
        "extra": args.extra,
        "threads": args.threads,
        "variants": {},
    }
    for name in args.variant or ([] if args.cv_reference else list(VARIANTS)):
        v = VARIANTS[name]
        seeds, use = tuple(args.seed) or v["seeds"], v["use"]
        dropped = [c for c in feats.columns if c.startswith(v["exclude"])] if v["exclude"] else []
        area_spec = spec.model_copy(update={"exclude_features": [*spec.exclude_features, *dropped]})
        started = time.process_time()
        scores, each = [], []
        for seed in seeds:
            train = params.model_copy(
                update={"train": params.train.model_copy(update=v["train"] | {"seed": seed})}
            )
            model = train_area(feats, labels, area_spec, split, area_train_params(train, spec))
            score = model.booster.predict(feature_matrix(ranked, model.feature_names))
            scores.append(score)
            each.append(measure(y, score))
        if use == "average":
            block = measure(y, np.mean(scores, axis=0))
            block["seeds"] = list(seeds)
        else:
            rates = each[0]["precision"]
            block = {
                "precision": {r: float(np.mean([e["precision"][r] for e in each])) for r in rates},
                "average_precision": float(np.mean([e["average_precision"] for e in each])),
                "per_seed_10%": [e["precision"]["10%"] for e in each],
                "per_seed": {str(sd): e for sd, e in zip(seeds, each, strict=True)},
                # the same seeds' probabilities averaged: a seed-averaged model, for free
                "seed_average": measure(y, np.mean(scores, axis=0))["precision"],
                "seeds": list(seeds),
            }
        block["cpu_s"] = round(time.process_time() - started, 1)
        out["variants"][name] = block
        figures = "  ".join(f"P@{r}={v:.3f}" for r, v in block["precision"].items())
        extra = block.get("per_seed_10%")
        tail = f"  seeds@10%={[round(v, 3) for v in extra]}" if extra else ""
        if "seed_average" in block:
            tail += f"  seed-averaged@10%={block['seed_average']['10%']:.3f}"
        pd.DataFrame({f"seed{s}": sc for s, sc in zip(seeds, scores, strict=True)}).assign(
            label=y
        ).to_parquet(args.work / f"scores-{name}.parquet")
        print(
            f"{name}: {figures}  AP={block['average_precision']:.3f}{tail}  cpu={block['cpu_s']}s",
            flush=True,
        )
        write_json(out, args.work / f"kcs_selection{'-' + args.extra if args.extra else ''}.json")
    if args.cv_reference:
        cv_seeds = tuple(args.seed) or (42,)
        settings = VARIANTS[args.cv_variant]["train"]
        blocks = {}
        for seed in cv_seeds:
            started = time.process_time()
            train = params.model_copy(
                update={"train": params.train.model_copy(update=settings | {"seed": seed})}
            )
            block = in_quarter_cv(feats, labels, final, spec, split, train, seed=seed)
            block["cpu_s"] = round(time.process_time() - started, 1)
            blocks[str(seed)] = block
            figures = "  ".join(f"P@{r}={v:.3f}" for r, v in block["precision"].items())
            print(f"in-quarter 5-fold CV (attainable reference), {args.cv_variant}, seed {seed}: "
                  f"{figures}  AP={block['average_precision']:.3f}", flush=True)  # fmt: skip
        rates = blocks[str(cv_seeds[0])]["precision"]
        out["in_quarter_cv"] = {
            "variant": args.cv_variant,
            "precision": {
                r: float(np.mean([b["precision"][r] for b in blocks.values()])) for r in rates
            },
            "per_seed": blocks,
        }
        write_json(out, args.work / f"kcs_selection-cv-{args.cv_variant}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
