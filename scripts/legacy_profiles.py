"""The legacy targeting rules of a simulated world against its truth (docs/simulator.md, "A more
honest world").

Simulates a world in memory (params.yaml and pipelines/ of ``--root``, the simulator seed
replaced) and prints, per area, the legacy rules' precision at the operating rate on the truth of
the test window over the base rate and over the oracle's (mean of the two-month windows), the
findings (two years, accepted in the train window, in the test window), the labelled rows and
positives known at each backtest cut (the 15 months before it); and, for ``--area``, each rule's
share of the items and offence rate before the drift, after it and in the test window, and the
share of the rule's items that a targeted control took.

Usage::

    python scripts/legacy_profiles.py --root . --seeds 42 43 --area revenue
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from riskml.assessment import ranking_scores
from riskml.config import load_area_specs, load_params
from riskml.contract import KEY
from riskml.labels import build_labels
from riskml.metrics import precision_at_rate
from riskml.rules import rule_mask, rule_score
from riskml.simulate import month_plan, simulate

TRAIN = ("2023-04-01", "2024-04-01")
TEST = ("2024-07-01", "2025-01-01")
CUTS = ("2024-07-01", "2024-09-01", "2024-11-01")
TARGETED = ("documentary", "physical", "scanner")


def _between(dates: pd.Series, lo: str, hi: str) -> np.ndarray:
    return ((dates >= lo) & (dates < hi)).to_numpy()


def _precision(y: np.ndarray, score: np.ndarray, rate: float, area: str) -> float:
    """The legacy baseline's precision as the evaluation ranks it (rule score, ties in a seeded
    random order: :func:`riskml.assessment.ranking_scores`)."""
    ranked = ranking_scores(pd.DataFrame({"score": score, "rule_score": score}), seed=0, area=area)
    return precision_at_rate(y, ranked["legacy_rules"], rate=rate)


def world_report(root: Path, seed: int, area: str | None) -> None:
    """Print the figures of one world (simulator seed ``seed``)."""
    params = load_params(root / "params.yaml").simulate.model_copy(update={"seed": seed})
    specs = load_area_specs(root / "pipelines")
    tables = simulate(params, specs)
    d, out = tables["declarations"], tables["outcomes"]
    wide = tables["truth"].pivot(index=KEY, columns="risk_area", values=["offence", "true_prob"])
    wide = wide.reindex(pd.MultiIndex.from_frame(d[KEY]))
    date = d["accepted_date"]
    test = _between(date, *TEST)
    windows = [(CUTS[i], CUTS[i + 1] if i + 1 < len(CUTS) else TEST[1]) for i in range(len(CUTS))]
    found = out[out["offence_found"]].merge(d[[*KEY, "accepted_date"]], on=KEY)
    print(f"== world {seed}")
    for name, spec in specs.items():
        y = wide["offence"][name].to_numpy().astype(bool)
        p = wide["true_prob"][name].to_numpy()
        score = rule_score(d, spec.legacy_rules).to_numpy()
        rate = spec.operating_rate
        lift = _precision(y[test], score[test], rate, name) / y[test].mean()
        of_oracle = np.mean(
            [
                _precision(y[w], score[w], rate, name) / precision_at_rate(y[w], p[w], rate=rate)
                for w in (_between(date, lo, hi) for lo, hi in windows)
            ]
        )
        fd = found.loc[found["risk_area"] == name, "accepted_date"]
        labelled = []
        for cut in CUTS:
            c = pd.Timestamp(cut)
            rows = d[(date >= c - pd.DateOffset(months=15)) & (date < c)]
            lab = build_labels(rows, out, spec, known_before=c, labelled_only=True)
            labelled.append(f"{len(lab):,} / {int((lab['label'] == 1).sum())}")
        print(
            f"{name:14s} legacy / base {lift:5.2f}  legacy / oracle {of_oracle:.3f}  "
            f"findings {len(fd)}, {int(_between(fd, *TRAIN).sum())}, "
            f"{int(_between(fd, *TEST).sum())}  labelled / positives at the cuts "
            + ", ".join(labelled)
        )
    if area is None:
        return
    y = wide["offence"][area].to_numpy().astype(bool)
    targeted = out[out["control_kind"].isin(TARGETED)].drop_duplicates(KEY)
    taken = pd.MultiIndex.from_frame(d[KEY]).isin(pd.MultiIndex.from_frame(targeted[KEY]))
    drift = str(month_plan(params)[params.drift_month].start)
    periods = {
        "before the drift": (date < drift).to_numpy(),
        "after the drift": (date >= drift).to_numpy(),
        "test window": test,
    }
    for label, period in periods.items():
        base = y[period].mean()
        print(f"  {area}, {label} (base rate {base:.4f}):")
        for rule in specs[area].legacy_rules:
            m = rule_mask(d, rule).to_numpy() & period
            print(
                f"    {rule.name:42s} items {m.sum() / period.sum():6.1%}  offence rate "
                f"{y[m].mean():.4f} ({y[m].mean() / base:.2f}x)  targeted {taken[m].mean():.2%}"
            )
        none = (rule_score(d, specs[area].legacy_rules).to_numpy() == 0) & period
        print(
            f"    {'no rule':42s} items {none.sum() / period.sum():6.1%}  "
            f"offence rate {y[none].mean():.4f}  targeted {taken[none].mean():.2%}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("."), help="params.yaml and pipelines/")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42])
    ap.add_argument("--area", default=None, help="also each rule of this area")
    args = ap.parse_args()
    for seed in args.seeds:
        world_report(args.root, seed, args.area)


if __name__ == "__main__":
    main()
