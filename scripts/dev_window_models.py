"""Development worlds only: an area's model of each rolling backtest window, trained as the
train stage trains it (only the labelled rows' features are read: under 1 GB for a 300,000-item
world), with ``train`` settings changed, scored on the window's truth.

Usage (a world folder built by ``scripts/evaluate_worlds.py``)::

    # one change of the train settings, train seed 42
    python scripts/dev_window_models.py WORLD_DIR security,environment \\
        '{"reason_odds": {"intelligence": 6}}' out.json
    # several named variants (a change for every area under "all", per area under its name;
    # "first_stage": the first stage's own train settings), each with train seeds 42 and 1
    python scripts/dev_window_models.py WORLD_DIR security,drugs \\
        '{"base": {}, "lr05": {"all": {"learning_rate": 0.05}}}' out.json --variants --seeds 42 1
    # only physical and random clean results as environment's negatives (training.negative_kinds)
    python scripts/dev_window_models.py WORLD_DIR environment \\
        '{"base": {}, "nodoc": {"all": {"negative_kinds": ["physical", "random"]}}}' out.json \\
        --variants --seeds 42 1
    # the same models without two feature columns (added to each area's exclude_features)
    python scripts/dev_window_models.py WORLD_DIR revenue \
        '{"base": {}, "without": {"all": {"exclude_features": ["sibling_fit"]}}}' out.json \
        --variants --seeds 42 1
    # never-controlled items as weak negatives (labels and rows built once per share)
    python scripts/dev_window_models.py WORLD_DIR environment \
        '{"base": {}, "pu": {"all": {"unlabelled_share": 0.1, "unlabelled_weight": 0.3}}}' \
        out.json --variants --seeds 42 1

Per (area, window, variant, seed): ``exp``, the mean oracle probability of the picks at the
area's operating rate over the oracle's own picks' (expected precision: far less noisy than a
window's dozen offences), ``real``, precision on the truth over the oracle's, the model's tree
count and the CPU seconds of its training. Each window's labels and training features are read
once for every variant and seed. ``--importance N``: also the model's N features of largest
gain; ``--reference``: also the truth-trained reference of ``scripts/evaluate_worlds.py`` on the
same features, window and seed (its ``exp``, ``real`` and, with ``--importance``, its gains:
which features the attainable limit uses that the label-trained model does not; it reads every
item's features of the window's periods, about 2 GB for a 300,000-item world).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskml import backtest as bt
from riskml import io
from riskml.catalog import Catalog
from riskml.config import AreaSpec, area_train_params, load_area_specs, load_params
from riskml.contract import KEY, RiskmlError
from riskml.features import model_feature_columns
from riskml.metrics import selection_size
from riskml.ranking import rank_key
from riskml.train import (
    feature_matrix,
    pool_specs,
    train_area,
    training_features,
    training_labels,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate_worlds import (  # noqa: E402  (a script beside this one)
    REFERENCE_CANDIDATES,
    REFERENCE_SETTINGS,
    truth_columns,
    truth_reference,
)


def top_gains(booster: Any, names: list[str], n: int) -> dict[str, float]:
    """The ``n`` features of largest total gain, as shares of the model's total gain."""
    gain = pd.Series(booster.feature_importance("gain"), index=names)
    total = gain.sum()
    return {k: round(float(v / total), 4) for k, v in gain.nlargest(n).items() if total > 0}


def window_inputs(
    decl: pd.DataFrame,
    outcomes: pd.DataFrame,
    cat: Catalog,
    spec: AreaSpec,
    pool: dict[str, AreaSpec],
    w: bt.Window,
    share: float,
    cache: dict | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame]:
    """The window's training labels (own, first stage; ``share`` of the never-controlled items
    as weak negatives) and the training rows' features, as the train stage reads them.
    ``cache``: a label cache of :func:`riskml.train.training_labels` shared with the caller's
    other label sets of the same window."""
    own, first = training_labels(
        decl, outcomes, spec, pool, known_before=w.start, labelled_only=True,
        unlabelled_share=share, cache=cache,
    )  # fmt: skip
    return own, first, training_features(cat.features, spec, w.split, [own, first])


def test_window(
    cat: Catalog, truth: pd.DataFrame, w: bt.Window, spec: AreaSpec
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, int, np.ndarray]:
    """Every item of window ``w`` (features), its truth (``truth``: the area's key, offence and
    true_prob; a missing row is no offence), the list's size at the area's operating rate and
    the oracle's picks: (features, true_prob, offence, size, positions of the oracle's picks)."""
    test = io.read_partitioned(
        cat.features, months=io.months_overlapping(cat.features, w.start, w.end)
    )
    d = pd.to_datetime(test["accepted_date"])
    test = test[(d >= pd.Timestamp(w.start)) & (d < pd.Timestamp(w.end))]
    keyed = test[KEY].astype({"declaration_id": "string"}).merge(truth, on=KEY, how="left")
    p = keyed["true_prob"].fillna(0.0).to_numpy()
    y = keyed["offence"].fillna(False).to_numpy(bool)
    k = selection_size(len(test), rate=spec.operating_rate)
    return test, p, y, k, np.argsort(-p, kind="stable")[:k]


def evaded_of(test: pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
    """The truth's evaded duty of each row of ``test`` (``truth``: the area's key and
    ``evaded_duty``; a missing row evaded nothing)."""
    keyed = (
        test[KEY]
        .astype({"declaration_id": "string"})
        .merge(truth[[*KEY, "evaded_duty"]], on=KEY, how="left")
    )
    return keyed["evaded_duty"].fillna(0.0).to_numpy(float)


def list_key_figures(
    model: Any,
    test: pd.DataFrame,
    score: np.ndarray,
    spec: AreaSpec,
    p: np.ndarray,
    y: np.ndarray,
    evaded: np.ndarray,
    k: int,
    best: np.ndarray,
    exponents: list[float],
) -> dict[str, float]:
    """An area ranked by expected recovery: the candidate list's key (probability x predicted
    recovered duty ** exponent, :func:`riskml.ranking.rank_key`) at the spec's exponent
    (``exp_key``, ``real_key``: as ``exp`` and ``real``; ``rev_key``: the evaded duty of the
    picks over the oracle's picks') and at each of ``exponents`` (``exp_key_<e>``,
    ``real_key_<e>``, ``rev_key_<e>``); empty without a recovery model."""
    if model.recovery is None:
        return {}
    expected = model.recovery.expected(test, score)
    out: dict[str, float] = {}
    oracle_evaded = max(evaded[best].sum(), 1e-12)
    tags = [("", spec.recovery_exponent), *((f"_{e:g}", e) for e in exponents)]
    for tag, e in tags:
        top = np.argsort(-rank_key(score, expected, e), kind="stable")[:k]
        out[f"exp_key{tag}"] = float(p[top].mean() / p[best].mean())
        out[f"rev_key{tag}"] = float(evaded[top].sum() / oracle_evaded)
        out[f"real_key{tag}"] = float(y[top].mean() / max(y[best].mean(), 1e-12))
    return out


def variant_of(spec: AreaSpec, variant: dict[str, Any]) -> tuple[AreaSpec, dict[str, Any]]:
    """The area spec and the ``train`` change of one variant for ``spec``'s area
    (``negative_kinds``: the spec's ``training.negative_kinds``; ``exclude_features``: more
    columns left out, added to the spec's ``training.exclude_features``; both validated as the
    file's)."""
    change = {**variant.get("all", {}), **variant.get(spec.name, {})}
    fields: dict[str, Any] = {}
    if "negative_kinds" in change:
        fields["negative_kinds"] = change.pop("negative_kinds")
    if "exclude_features" in change:
        fields["exclude_features"] = [*spec.exclude_features, *change.pop("exclude_features")]
    if fields:
        spec = AreaSpec.model_validate(spec.model_dump() | fields)
    first = change.pop("first_stage", None)
    if first is not None and spec.first_stage is not None:
        spec = spec.model_copy(
            update={"first_stage": spec.first_stage.model_copy(update={"train": first})}
        )
    return spec, change


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("world", type=Path, help="a world folder of scripts/evaluate_worlds.py")
    ap.add_argument("areas", help="comma-separated areas")
    ap.add_argument("change", help="JSON: a train change, or with --variants {name: variant}")
    ap.add_argument("out", type=Path)
    ap.add_argument("--variants", action="store_true")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42], help="train seeds")
    ap.add_argument("--windows", type=int, nargs="+", help="only these windows (1 = earliest)")
    ap.add_argument("--importance", type=int, default=0, help="report the top N gains")
    ap.add_argument("--reference", action="store_true", help="also the truth-trained reference")
    ap.add_argument("--exponents", type=float, nargs="*", default=[],
                    help="areas ranked by expected recovery: also the list key at these "
                    "recovery exponents (the spec's is always reported)")  # fmt: skip
    args = ap.parse_args()
    root, areas = args.world, args.areas.split(",")
    change = json.loads(args.change)
    variants = change if args.variants else {"change": {"all": change}}
    params, specs = load_params(root / "params.yaml"), load_area_specs(root / "pipelines")
    cat = Catalog(root)
    decl = io.read_dataset(cat.declarations, columns=[*KEY, "accepted_date"])
    outcomes = io.read_dataset(cat.outcomes)
    truth = io.read_dataset(cat.truth()).astype({"declaration_id": "string"})
    windows = bt.backtest_windows(
        params.split, n_windows=3, window_months=params.backtest.window_months
    )
    pool, rows = pool_specs(specs, root), []
    for area in areas:
        spec = specs[area]
        t = truth[truth["risk_area"] == area][[*KEY, "offence", "true_prob", "evaded_duty"]]
        recovery = spec.rank_by == "expected_recovery"
        for w in windows:
            if args.windows and w.index not in args.windows:
                continue
            # per share of never-controlled items as negatives and kinds giving negatives
            inputs: dict[tuple[float, tuple[str, ...]], Any] = {}
            test, p, y, k, best = test_window(cat, t, w, spec)
            evaded = evaded_of(test, t) if recovery else None
            if args.reference:
                every = io.read_partitioned(
                    cat.features,
                    months=io.months_overlapping(cat.features, w.split.train_start, w.end),
                )
                every = every[pd.to_datetime(every["accepted_date"]) < pd.Timestamp(w.end)]
                names = model_feature_columns(every)
                X_all = every[names].to_numpy(np.float32)
                y_all = truth_columns(every, truth, area)["offence"].to_numpy(bool)
                dates = pd.to_datetime(every["accepted_date"]).reset_index(drop=True)
                del every
            for name, variant in variants.items():
                vspec, vchange = variant_of(spec, variant)
                for seed in args.seeds:
                    started = time.process_time()
                    train = area_train_params(params, vspec).model_copy(
                        update={"num_threads": 1, "seed": seed, **vchange}
                    )
                    row: dict[str, Any] = {
                        "world": params.simulate.seed, "area": area, "window": w.index,
                        "variant": name, "seed": seed,
                    }  # fmt: skip
                    share = train.unlabelled_share
                    labels_key = (share, tuple(vspec.negative_kinds or ()))
                    if labels_key not in inputs:
                        inputs[labels_key] = window_inputs(
                            decl, outcomes, cat, vspec, pool, w, share
                        )
                    own, first, feats = inputs[labels_key]
                    try:
                        model = train_area(
                            feats, own, vspec, w.split, train, pretrain_labels=first,
                            with_recovery=recovery,
                        )  # fmt: skip
                    except RiskmlError as exc:
                        rows.append(row | {"status": str(exc)})
                        print(rows[-1], flush=True)
                        continue
                    score = model.booster.predict(feature_matrix(test, model.feature_names))
                    top = np.argsort(-score, kind="stable")[:k]
                    row |= {
                        "exp": float(p[top].mean() / p[best].mean()),
                        "real": float(y[top].mean() / max(y[best].mean(), 1e-12)),
                        "trees": model.booster.num_trees(),
                        "cpu_seconds": round(time.process_time() - started, 1),
                    }
                    if recovery:
                        row |= list_key_figures(
                            model, test, score, spec, p, y, evaded, k, best, args.exponents
                        )
                    if args.importance:
                        row["gains"] = top_gains(
                            model.booster, model.feature_names, args.importance
                        )
                    if args.reference and name == next(iter(variants)):
                        settings = REFERENCE_CANDIDATES[REFERENCE_SETTINGS[area]]
                        ref, booster = truth_reference(
                            X_all, y_all, dates, w, settings, seed, params, booster=True
                        )
                        if len(ref) != len(p):
                            raise RuntimeError("the reference scored other rows than the model")
                        top = np.argsort(-ref, kind="stable")[:k]
                        row["reference_exp"] = float(p[top].mean() / p[best].mean())
                        row["reference_real"] = float(y[top].mean() / max(y[best].mean(), 1e-12))
                        if args.importance:
                            row["reference_gains"] = top_gains(booster, names, args.importance)
                    rows.append(row)
                    print(row, flush=True)
                    args.out.write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
