"""Evaluate the area models on simulated worlds: development worlds for choices, evaluation
worlds for reporting only (issue 15).

Usage::

    python scripts/evaluate_worlds.py --role evaluation --worlds 1001 1002 1003 \\
        --work /tmp/riskml-worlds --train-seeds 42 1 --out eval.json

For each world (simulator seed), the script builds a project folder ``WORK/world-<seed>-<n>``
(this project's ``params.yaml`` with ``simulate.seed`` and ``simulate.n_items`` set, its
``pipelines/``), runs the package's own ``riskml source``, ``validate`` and ``features`` there
(skipped when the features exist), then, for each rolling backtest window (``--windows``
consecutive windows of ``backtest.window_months``, the last ending at ``split.test_end``), each
area and each train seed:

* ``model``: the area model trained on the window's past exactly as ``riskml backtest`` trains
  it (:func:`riskml.backtest.window_scores`: labels known before the window, first stage, refit);
* ``raw_lightgbm``: the same LightGBM on raw declaration columns (same seed);
* ``legacy_rules`` and ``oracle`` (``true_prob``, the simulator's hidden traits included);
* ``truth_reference``: the same features trained on the **truth** of every item of the window's
  train period (negatives subsampled), early-stopped on the next period's truth, refitted on
  both, same seed: not deployable, the attainable limit of the feature set. Its settings
  (:data:`REFERENCE_SETTINGS`) were chosen on development worlds (``--choose-reference``);
* ``no_seizures`` (``--ablation``): the area model without the ``sz_`` features (the first
  train seed; with ``--no-model`` alone, to pair with another run's models by ``--combine``);
* ``goods_route`` (``--tiers``): the truth reference restricted to goods, value, route and
  seizure features (no importer, declarant or supplier fact): with ``truth_reference``
  (+ observable entity facts) and ``oracle`` (+ hidden traits), how much of the oracle is
  observable at all;
* ``seed_average``: the mean of the train seeds' model scores (does averaging seeds pay?).

Each figure is precision at the area's operating rate on the truth of every test item of the
window. A unit is (world, window, train seed); a unit whose training stops for too few labels
(:class:`riskml.contract.RiskmlError`) or whose window holds no offence is reported with its
reason and left out of the means, never a stop of the run. Summary per area: mean over worlds of
each world's ratio of summed precisions (model / oracle, model / truth reference, ...), with a
bootstrap interval that resamples each world's (window, seed) units (so it holds window and
training-seed variance, every method paired on the same units), and the paired differences to
the baselines. Needs simulated data (the truth).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import yaml

from riskml import backtest as bt
from riskml import io
from riskml.assessment import ranking_scores
from riskml.catalog import Catalog
from riskml.config import Params, load_area_specs, load_params
from riskml.contract import KEY, RiskmlError
from riskml.features import model_feature_columns
from riskml.features.catalogue import CATALOGUE
from riskml.metrics import precision_at_rate, selection_size
from riskml.ranking import rank_key
from riskml.train import refit_rounds

PROJECT = Path(__file__).resolve().parents[1]
AREAS = ("drugs", "security", "environment", "health_safety", "revenue", "ipr")
#: Candidate settings of the truth-trained reference (light tuning on development worlds).
REFERENCE_CANDIDATES: dict[str, dict[str, Any]] = {
    "small": {"num_leaves": 4, "learning_rate": 0.05, "min_child_samples": 10,
              "feature_fraction": 0.3, "lambda_l2": 10.0},
    "medium": {"num_leaves": 15, "learning_rate": 0.05, "min_child_samples": 20,
               "feature_fraction": 0.5, "lambda_l2": 1.0},
    "large": {"num_leaves": 31, "learning_rate": 0.05, "min_child_samples": 50,
              "feature_fraction": 0.8, "lambda_l2": 1.0},
}  # fmt: skip
#: The reference's settings per area, chosen with ``--choose-reference`` on development worlds
#: 42 and 43 (train seed 42; session 17, docs/results.md): the candidate with the highest mean
#: truth_reference / oracle over the two worlds. "small" (the rare areas' own tree shape at a
#: faster learning rate) for the four rare areas: security and environment on the last window,
#: drugs and health and safety on three windows (drugs 0.753 against medium 0.748 and large
#: 0.707; the last window alone had preferred "large", which did not carry over). Revenue and
#: IPR: "large", the shape of params.yaml's train section (not searched).
REFERENCE_SETTINGS: dict[str, str] = {
    "drugs": "small", "security": "small", "environment": "small", "health_safety": "small",
    "revenue": "large", "ipr": "large",
}  # fmt: skip
#: Negatives kept per truth-trained fit (all positives kept): the reference ranks, it need not
#: be calibrated, and 150,000 rows x 300 features per fit would cost minutes each.
MAX_NEGATIVES = 40_000
#: Feature groups of the "goods + route" tier (no fact about a party to the declaration).
GOODS_ROUTE_GROUPS = {
    "value", "goods", "route", "calendar", "goods history", "route history", "origin history",
    "seizure intelligence", "targeting profile",
}  # fmt: skip


# --- worlds ------------------------------------------------------------------------------------


def world_dir(work: Path, seed: int, n_items: int) -> Path:
    return work / f"world-{seed}-{n_items}"


def build_world(work: Path, seed: int, n_items: int) -> Path:
    """The project folder of one world with its features built by the riskml stages."""
    root = world_dir(work, seed, n_items)
    if io.dataset_columns(Catalog(root).features):
        return root
    root.mkdir(parents=True, exist_ok=True)
    doc = yaml.safe_load((PROJECT / "params.yaml").read_text(encoding="utf-8"))
    doc["simulate"]["seed"] = seed
    doc["simulate"]["n_items"] = n_items
    (root / "params.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    shutil.copytree(PROJECT / "pipelines", root / "pipelines", dirs_exist_ok=True)
    riskml = Path(sys.executable).with_name("riskml")
    for stage in ("source", "validate", "features"):
        started = time.perf_counter()
        subprocess.run([str(riskml), stage, "--root", str(root)], check=True)
        print(f"world {seed}: {stage} {time.perf_counter() - started:.0f} s", flush=True)
    return root


# --- the truth-trained reference ---------------------------------------------------------------


def truth_columns(frame: pd.DataFrame, truth: pd.DataFrame, area: str) -> pd.DataFrame:
    """``offence`` and ``true_prob`` of ``area`` for each row of ``frame`` (same order)."""
    t = truth[truth["risk_area"] == area][[*KEY, "offence", "true_prob"]]
    t = t.astype({"declaration_id": "string", "item_no": "int64"})
    keys = frame[KEY].astype({"declaration_id": "string", "item_no": "int64"})
    out = keys.merge(t, on=KEY, how="left", validate="one_to_one")
    out["offence"] = out["offence"].fillna(False).astype(bool)
    out["true_prob"] = out["true_prob"].fillna(0.0).astype(float)
    return out


def _sample(y: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``rows`` with every positive and at most :data:`MAX_NEGATIVES` negatives (sorted)."""
    pos, neg = rows[y[rows]], rows[~y[rows]]
    if len(neg) > MAX_NEGATIVES:
        neg = rng.choice(neg, MAX_NEGATIVES, replace=False)
    return np.sort(np.concatenate([pos, neg]))


def truth_reference(
    X: np.ndarray,
    y: np.ndarray,
    dates: pd.Series,
    window: bt.Window,
    settings: dict[str, Any],
    seed: int,
    params: Params,
    *,
    booster: bool = False,
) -> np.ndarray | tuple[np.ndarray, lgb.Booster]:
    """Scores of the window's test rows by a LightGBM trained on the truth of the window's
    train period, early-stopped on the next period's, refitted on both (see the module text);
    with ``booster``, also the refitted model (its feature gains)."""
    s = window.split
    d = dates.to_numpy()

    def part(a, b):
        return np.flatnonzero((d >= np.datetime64(a)) & (d < np.datetime64(b)))

    rng = np.random.default_rng(seed)
    train = _sample(y, part(s.train_start, s.valid_start), rng)
    valid = _sample(y, part(s.valid_start, s.test_start), rng)
    test = part(s.test_start, s.test_end)
    config = {
        "objective": "binary",
        "metric": "average_precision",
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "seed": seed,
        "num_threads": 1,
        "deterministic": True,
        "force_col_wise": True,
        "verbosity": -1,
        **settings,
    }
    t = params.train
    early = lgb.train(
        config,
        lgb.Dataset(X[train], y[train]),
        num_boost_round=t.num_boost_round,
        valid_sets=[lgb.Dataset(X[valid], y[valid])],
        callbacks=[lgb.early_stopping(t.early_stopping_rounds, verbose=False)],
    )
    best = int(early.best_iteration or early.current_iteration())
    every = np.concatenate([train, valid])
    rounds = refit_rounds(best, len(train), len(every))
    final = lgb.train(config, lgb.Dataset(X[every], y[every]), num_boost_round=rounds)
    scores = final.predict(X[test])
    return (scores, final) if booster else scores


def goods_route_columns(columns: list[str]) -> list[str]:
    """The model features of the "goods + route" tier."""
    out = []
    for c in columns:
        info = CATALOGUE.get(c)
        group = info.group if info is not None else ("targeting profile" if c.startswith("rule_")
                                                     else "unknown")  # fmt: skip
        if group in GOODS_ROUTE_GROUPS and not c.startswith(("imphs", "imporig")):
            out.append(c)
    return out


# --- one world ---------------------------------------------------------------------------------


def _precision(y: np.ndarray, score: np.ndarray, rate: float) -> float:
    return float(precision_at_rate(y, score, rate=rate))


def _expected(true_prob: np.ndarray, score: np.ndarray, rate: float) -> float:
    """Mean oracle probability of the items selected at ``rate``: the precision the picks are
    worth in expectation (development choices: far less noisy than a window's offences)."""
    k = selection_size(len(score), rate=rate)
    return float(true_prob[np.argsort(-score, kind="stable")[:k]].mean())


def _share(value: np.ndarray, score: np.ndarray, rate: float) -> float:
    """Share of the window's total ``value`` held by the items selected at ``rate``."""
    k = selection_size(len(score), rate=rate)
    top = np.argsort(-score, kind="stable")[:k]
    total = value.sum()
    return float(value[top].sum() / total) if total > 0 else float("nan")


def evaluate_world(
    root: Path,
    *,
    areas: list[str],
    n_windows: int,
    train_seeds: list[int],
    ablation: bool,
    tiers: bool,
    reference: dict[str, str] | None,
    models: bool = True,
    raw: bool = True,
    train_overrides: dict[str, Any] | None = None,
    log: Any = print,
    on_area: Any = None,
) -> list[dict[str, Any]]:
    """Rows (world, window, area, seed, method, precision, status) of one world.
    ``reference`` None: no truth-trained reference; ``raw`` False: no raw-column baseline;
    ``train_overrides``: ``train`` settings changed for every model (development
    experiments). Each row holds the precision on the truth and ``expected``, the mean
    oracle probability of the picks."""
    params = load_params(root / "params.yaml")
    if train_overrides:
        params = params.model_copy(
            update={"train": params.train.model_copy(update=train_overrides)}
        )
    specs = load_area_specs(root / "pipelines")
    world = load_params(root / "params.yaml").simulate.seed
    windows = bt.backtest_windows(
        params.split, n_windows=n_windows, window_months=params.backtest.window_months
    )
    tables = bt.load_tables(root, params, specs)
    if tables["truth"] is None:
        raise RiskmlError(f"{root}: no truth table; the evaluation needs simulated data")
    frames, positions = bt.protocol_frames(bt.ROLLING, root, tables, windows, params, specs)
    feats = frames[0]["features"]
    cols = model_feature_columns(feats)
    sz = [c for c in cols if c.startswith("sz_")]
    no_sz = feats.drop(columns=sz) if ablation and sz else None
    X = feats[cols].to_numpy(np.float32)
    goods_cols = goods_route_columns(cols)
    X_goods = feats[goods_cols].to_numpy(np.float32) if tiers else None
    dates = pd.to_datetime(feats["accepted_date"])
    rows: list[dict[str, Any]] = []
    for area in areas:
        spec = specs[area]
        rate = spec.operating_rate
        truth = truth_columns(feats, tables["truth"], area)
        y_all = truth["offence"].to_numpy(bool)
        # the tiers are the reference's settings on fewer features, with or without the reference
        settings = REFERENCE_CANDIDATES[(reference or REFERENCE_SETTINGS).get(area, "medium")]
        for window in windows:
            base = {"world": world, "window": window.index, "test_start": str(window.start),
                    "area": area, "rate": rate}  # fmt: skip
            seed_scores: list[np.ndarray] = []
            y_test = None
            for seed in train_seeds:
                unit = base | {"seed": seed}
                seeded = params.model_copy(
                    update={"train": params.train.model_copy(update={"seed": seed})}
                )
                if models:
                    # first stages are shared by the areas of a window (keyed by their labels
                    # and settings, seed included); the raw cache is not keyed by seed
                    tables.setdefault("first_stage_cache", {})
                    tables["raw_cache"] = {}
                    frame = frames[window.index - 1]
                    pos = positions[window.index - 1]
                    if not raw:
                        frame = {"features": frame["features"]}
                        pos = {"features": pos["features"]}
                    try:
                        scores, facts = bt.window_scores(frame, pos, tables, spec, window, seeded)
                    except RiskmlError as exc:
                        rows.append(unit | {"method": "model", "status": f"too few labels: {exc}"})
                        log(f"world {world} {area} window {window.index} seed {seed}: {exc}")
                        continue
                    # the reference and the tiers score the same test rows, in the frame's order
                    test_pos = bt._positions(feats, scores[KEY])
                else:
                    scores, facts = None, {}
                    test_pos = np.flatnonzero(
                        (dates >= pd.Timestamp(window.start)) & (dates < pd.Timestamp(window.end))
                    )
                if not (np.diff(test_pos) > 0).all():
                    raise RuntimeError("test rows are not in the feature frame's order")
                y = y_all[test_pos]
                if y.sum() == 0:
                    rows.append(unit | {"method": "model", "status": "no offence in the window"})
                    continue
                y_test = y
                got: dict[str, np.ndarray] = {"oracle": truth["true_prob"].to_numpy()[test_pos]}
                shares = {}
                if scores is not None:
                    ranks = ranking_scores(scores, seed=params.evaluate.seed, area=area)
                    got |= {
                        m: ranks[m] for m in ("model", "raw_lightgbm", "legacy_rules") if m in ranks
                    }
                    seed_scores.append(ranks["model"])
                if scores is not None and "expected_recovery" in scores.columns:
                    # the candidate list's key (revenue), and its share of the evaded duty
                    key = rank_key(
                        ranks["model"], scores["expected_recovery"].to_numpy(float),
                        spec.recovery_exponent,
                    )  # fmt: skip
                    got["list_key"] = key
                    evaded = scores["evaded_duty"].fillna(0.0).to_numpy(float)
                    for m in ("list_key", "oracle"):
                        shares[f"{m}_revenue_share"] = _share(evaded, got[m], rate)
                if reference is not None:
                    ref = truth_reference(X, y_all, dates, window, settings, seed, params)
                    if len(ref) != len(y):
                        raise RuntimeError("reference and model scored different rows")
                    got["truth_reference"] = ref
                first_seed = seed == train_seeds[0]
                if tiers and first_seed:
                    got["goods_route"] = truth_reference(
                        X_goods, y_all, dates, window, settings, seed, params
                    )
                if no_sz is not None and first_seed:
                    # also without the model (--no-model): paired with another run's model units
                    part, _ = bt.window_scores(
                        {"features": no_sz}, {"features": positions[window.index - 1]["features"]},
                        tables, spec, window, seeded,
                    )  # fmt: skip
                    if not np.array_equal(bt._positions(feats, part[KEY]), test_pos):
                        raise RuntimeError("the ablation and the model scored different rows")
                    got["no_seizures"] = part["score"].to_numpy(float)
                true_prob = got["oracle"]
                for method, score in got.items():
                    rows.append(unit | {"method": method, "status": "ok",
                                        "precision": _precision(y, score, rate),
                                        "expected": _expected(true_prob, score, rate),
                                        "positives": int(y.sum()), "n": len(y)})  # fmt: skip
                for method, share in shares.items():
                    # a revenue share, in the precision column so that ratios pair alike
                    rows.append(unit | {"method": method, "status": "ok", "precision": share,
                                        "positives": int(y.sum()), "n": len(y)})  # fmt: skip
                trees = facts.get("features", {})
                rows.append(unit | {"method": "facts", "status": "ok", "facts": trees})
                log(
                    f"world {world} {area} window {window.index} seed {seed}: "
                    + ", ".join(f"{m} {_precision(y, s, rate):.4f}" for m, s in got.items())
                )
            if len(seed_scores) > 1 and y_test is not None:
                avg = np.mean([pd.Series(s).rank().to_numpy() for s in seed_scores], axis=0)
                rows.append(base | {"seed": -1, "method": "seed_average", "status": "ok",
                                    "precision": _precision(y_test, avg, rate),
                                    "positives": int(y_test.sum()), "n": len(y_test)})  # fmt: skip
        if on_area is not None:
            on_area(rows)
    return rows


# --- summary -----------------------------------------------------------------------------------


def _unit_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    ok = pd.DataFrame([r for r in rows if r.get("status") == "ok" and "precision" in r])
    ok = ok[ok["seed"] >= 0]
    # a unit's window by its start date: a --windows 1 run numbers its (last) window 1
    return ok.pivot_table(
        index=["area", "world", "test_start", "seed"], columns="method", values="precision"
    )


def _ratio(values: dict[str, np.ndarray], idx: list[np.ndarray], num: str, den: str) -> np.ndarray:
    """Per bootstrap replicate (rows of each world's ``idx``): the mean over worlds of each
    world's sum(num) / sum(den) over its resampled units holding both."""
    per_world = []
    for w, rows in enumerate(idx):
        a, b = values[num][w][rows], values[den][w][rows]
        both = ~(np.isnan(a) | np.isnan(b))
        with np.errstate(invalid="ignore", divide="ignore"):
            per_world.append(np.where(both, a, 0).sum(-1) / np.where(both, b, 0).sum(-1))
    return np.nanmean(np.vstack(per_world), axis=0)


def summarise(
    rows: list[dict[str, Any]], *, n_boot: int = 1000, level: float = 0.95, seed: int = 42
) -> dict[str, Any]:
    """Per area: ratios to the oracle and to the truth reference with bootstrap intervals over
    each world's (window, seed) units (resampled within each world, every method on the same
    units: paired), paired differences to the baselines, and the units left out (why)."""
    table = _unit_table(rows)
    rng = np.random.default_rng(seed)
    alpha = (1 - level) / 2
    out: dict[str, Any] = {}
    for area, units in table.groupby(level="area"):
        units = units.droplevel("area").dropna(subset=["oracle"])
        methods = [m for m in units.columns if units[m].notna().any()]
        worlds = [g for _, g in units.groupby(level="world")]
        values = {m: [g[m].to_numpy(float) for g in worlds] for m in methods}
        whole = [np.arange(len(g))[None, :] for g in worlds]
        boot = [rng.integers(0, len(g), (n_boot, len(g))) for g in worlds]
        figures: dict[str, Any] = {}
        pairs = [(m, "oracle") for m in methods if m != "oracle" and "share" not in m]
        pairs += [("list_key_revenue_share", "oracle_revenue_share")]
        pairs += [(m, "truth_reference") for m in methods
                  if m not in ("truth_reference", "oracle") and "share" not in m]  # fmt: skip
        for num, den in pairs:
            if num not in methods or den not in methods:
                continue
            est = float(_ratio(values, whole, num, den)[0])
            lo, hi = np.nanquantile(_ratio(values, boot, num, den), [alpha, 1 - alpha])
            figures[f"{num}/{den}"] = {"estimate": est, "low": float(lo), "high": float(hi)}
        for base in ("legacy_rules", "raw_lightgbm", "no_seizures"):
            if base not in methods or "model" not in methods:
                continue
            # the paired difference as a share of the oracle's precision
            name = f"model-{base}"
            values[name] = [a - b for a, b in zip(values["model"], values[base], strict=True)]
            est = float(_ratio(values, whole, name, "oracle")[0])
            lo, hi = np.nanquantile(_ratio(values, boot, name, "oracle"), [alpha, 1 - alpha])
            figures[name] = {"estimate": est, "low": float(lo), "high": float(hi)}
        means = {m: float(units[m].dropna().groupby(level="world").mean().mean()) for m in methods}
        per_world = {}
        for w, g in zip(sorted({int(x) for x in units.index.get_level_values("world")}), worlds,
                        strict=True):  # fmt: skip
            per_world[w] = {
                f"{m}/oracle": float(g[[m, "oracle"]].dropna()[m].sum()
                                     / g[[m, "oracle"]].dropna()["oracle"].sum())
                for m in ("model", "truth_reference", "legacy_rules") if m in methods
            }  # fmt: skip
        excluded = [r for r in rows if r["area"] == area and r.get("status", "ok") != "ok"]
        avg = [r for r in rows if r["area"] == area and r.get("method") == "seed_average"]
        out[area] = {
            "units": int(units["model"].notna().sum()) if "model" in units else 0,
            "reference_units": int(units["truth_reference"].notna().sum())
            if "truth_reference" in units
            else 0,
            "worlds": sorted({int(w) for w in units.index.get_level_values("world")}),
            "precision_means": means,
            "per_world": per_world,
            "ratios": figures,
            "seed_average_precision": float(np.mean([r["precision"] for r in avg]))
            if avg
            else None,
            "excluded": [
                {k: r[k] for k in ("world", "window", "seed", "status")} for r in excluded
            ],
        }
    return out


def markdown(summary: dict[str, Any]) -> str:
    """The summary as Markdown tables (ratios with intervals)."""

    def f(d: dict[str, Any] | None) -> str:
        if not d:
            return "n/a"
        return f"{d['estimate']:.2f} [{d['low']:.2f}, {d['high']:.2f}]"

    lines = [
        "| area | units | model / oracle | model / truth ref. | truth ref. / oracle | "
        "legacy / oracle | raw LightGBM / oracle | (model - legacy) / oracle | "
        "(model - raw) / oracle | excluded |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for area, s in summary.items():
        r = s["ratios"]
        lines.append(
            f"| {area} | {s['units']} | {f(r.get('model/oracle'))} | "
            f"{f(r.get('model/truth_reference'))} | {f(r.get('truth_reference/oracle'))} | "
            f"{f(r.get('legacy_rules/oracle'))} | {f(r.get('raw_lightgbm/oracle'))} | "
            f"{f(r.get('model-legacy_rules'))} | {f(r.get('model-raw_lightgbm'))} | "
            f"{len(s['excluded'])} |"
        )
    for area, s in summary.items():
        r = s["ratios"]
        if "list_key/oracle" in r:
            lines += [
                "",
                f"{area}, candidate list key (exponent): precision / oracle "
                f"{f(r.get('list_key/oracle'))}, revenue share / oracle's "
                f"{f(r.get('list_key_revenue_share/oracle_revenue_share'))}",
            ]
    lines += ["", "| area | world | model / oracle | truth ref. / oracle | legacy / oracle |",
              "|---|---|---|---|---|"]  # fmt: skip
    for area, s in summary.items():
        for w, r in s["per_world"].items():
            cells = [r.get(f"{m}/oracle") for m in ("model", "truth_reference", "legacy_rules")]
            lines.append(f"| {area} | {w} | " + " | ".join(
                "n/a" if c is None else f"{c:.2f}" for c in cells) + " |")  # fmt: skip
    lines += [
        "",
        "| area | goods + route / oracle | + entity facts (truth ref.) / oracle | model without "
        "seizure features / oracle | (model - without) / oracle | seed-averaged precision | "
        "model precision |",
        "|---|---|---|---|---|---|---|",
    ]
    for area, s in summary.items():
        r = s["ratios"]
        avg = s["seed_average_precision"]
        lines.append(
            f"| {area} | {f(r.get('goods_route/oracle'))} | "
            f"{f(r.get('truth_reference/oracle'))} | {f(r.get('no_seizures/oracle'))} | "
            f"{f(r.get('model-no_seizures'))} | {'n/a' if avg is None else f'{avg:.4f}'} | "
            f"{s['precision_means'].get('model', float('nan')):.4f} |"
        )
    return "\n".join(lines)


def choose_reference(rows_by_setting: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """Per area, the reference setting with the highest mean truth_reference / oracle."""
    best: dict[str, tuple[float, str]] = {}
    for name, rows in rows_by_setting.items():
        for area, s in summarise(rows, n_boot=10).items():
            value = s["ratios"].get("truth_reference/oracle", {}).get("estimate", -1.0)
            if area not in best or value > best[area][0]:
                best[area] = (value, name)
            print(f"reference {name} {area}: truth_reference/oracle {value:.3f}", flush=True)
    return {a: name for a, (_, name) in best.items()}


def main() -> None:
    warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--role", choices=["development", "evaluation"], required=True)
    ap.add_argument("--worlds", type=int, nargs="*", default=[], help="simulator seeds")
    ap.add_argument("--combine", type=Path, nargs="*", default=[],
                    help="summarise the units of these --out files together (worlds run as "
                    "separate processes) instead of running worlds")  # fmt: skip
    ap.add_argument("--only-seeds", type=int, nargs="+",
                    help="with --combine: only the units of these train seeds")  # fmt: skip
    ap.add_argument("--n-items", type=int, default=300_000)
    ap.add_argument("--work", type=Path, default=Path("worlds"), help="folder of the worlds")
    ap.add_argument("--areas", nargs="+", default=list(AREAS))
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--train-seeds", type=int, nargs="+", default=[42, 1])
    ap.add_argument("--ablation", action="store_true", help="also the models without sz_")
    ap.add_argument("--tiers", action="store_true", help="also the goods + route tier")
    ap.add_argument("--choose-reference", action="store_true",
                    help="development: try every REFERENCE_CANDIDATES setting")  # fmt: skip
    ap.add_argument("--no-reference", action="store_true", help="skip the truth reference")
    ap.add_argument("--no-raw", action="store_true",
                    help="development: skip the raw-column LightGBM baseline")  # fmt: skip
    ap.add_argument("--no-model", "--reference-only", dest="no_model", action="store_true",
                    help="no label-trained model (nor its raw and legacy baselines): only the "
                    "oracle, the truth reference, the tiers and the ablation, the first train "
                    "seed's; a separate process, --combine merges its --out with the models' "
                    "units")  # fmt: skip
    ap.add_argument(
        "--train-param",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="development: override a train setting of every model (YAML value)",
    )
    ap.add_argument("--out", type=Path, help="JSON file: every unit's figures and the summary")
    args = ap.parse_args()
    if args.choose_reference and args.role != "development":
        ap.error("--choose-reference is for development worlds only")
    started = time.perf_counter()
    if args.combine:
        docs = [json.loads(p.read_text(encoding="utf-8")) for p in args.combine]
        if any(d["role"] != args.role for d in docs):
            ap.error(f"--combine: every file must hold {args.role} worlds")
        rows = [r for d in docs for r in d["units"]]
        if args.only_seeds:
            rows = [r for r in rows if r["seed"] in args.only_seeds]
        args.worlds = sorted({w for d in docs for w in d["worlds"]})
        summary = summarise(rows)
        print(f"{args.role} worlds {args.worlds}, from {[str(p) for p in args.combine]}\n")
        print(markdown(summary))
        if args.out:
            doc = {"role": args.role, "worlds": args.worlds, "summary": summary, "units": rows}
            args.out.write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")
        return
    if not args.worlds:
        ap.error("give --worlds (or --combine)")
    roots = [build_world(args.work, s, args.n_items) for s in args.worlds]
    overrides = {k: yaml.safe_load(v) for k, v in (p.split("=", 1) for p in args.train_param)}
    if overrides and args.role != "development":
        ap.error("--train-param is for development worlds only")
    if args.no_raw and args.role != "development":
        ap.error("--no-raw is for development worlds only (reports pair with the baseline)")
    kw = dict(
        areas=args.areas, n_windows=args.windows, train_seeds=args.train_seeds,
        train_overrides=overrides, raw=not args.no_raw,
    )  # fmt: skip
    if args.choose_reference:
        by_setting = {}
        for name in REFERENCE_CANDIDATES:
            ref = dict.fromkeys(args.areas, name)
            by_setting[name] = [
                r for root in roots
                for r in evaluate_world(
                    root, **kw, ablation=False, tiers=False, reference=ref, models=False
                )
            ]  # fmt: skip
        print(json.dumps(choose_reference(by_setting), indent=1))
        return
    rows: list[dict[str, Any]] = []

    def save(doc_rows: list[dict[str, Any]], summary: dict[str, Any] | None = None) -> None:
        if args.out:
            doc = {
                "role": args.role, "worlds": args.worlds, "n_items": args.n_items,
                "windows": args.windows, "train_seeds": args.train_seeds,
                "reference_settings": REFERENCE_SETTINGS, "summary": summary,
                "units": doc_rows,
            }  # fmt: skip
            args.out.write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")

    for root in roots:
        reference = None if args.no_reference else REFERENCE_SETTINGS
        done = list(rows)
        rows = done + evaluate_world(
            root, **kw, ablation=args.ablation, tiers=args.tiers, reference=reference,
            models=not args.no_model,
            # saved after each area: a long run's figures survive a stop
            on_area=lambda world_rows, done=done: save(done + world_rows),
        )  # fmt: skip
    summary = summarise(rows)
    print(f"\n{args.role} worlds {args.worlds} ({args.n_items:,} items each), "
          f"{args.windows} windows, train seeds {args.train_seeds}, "
          f"{time.perf_counter() - started:.0f} s\n")  # fmt: skip
    print(markdown(summary))
    save(rows, summary)


if __name__ == "__main__":
    main()
