"""Development worlds only: how much of the oracle's precision each hidden part of the simulator's
offence model carries (issue 15: which part of the oracle's advantage is observable at all).

Usage (a world folder built by ``scripts/evaluate_worlds.py``)::

    python scripts/oracle_parts.py /tmp/worlds/world-42-300000

The simulator is re-run for the world's ``params.yaml`` (deterministic: the same items), keeping
each item's offence signal (the logit without the item noise, which the oracle's ``true_prob``
averages out) and the hidden parts of it (``riskml.simulate.offences``): the party traits (a
front company, a complicit declarant, a risky supplier), the party propensities (the importer's,
declarant's and supplier's hidden compliance, and the importer's common factor) and the importer's
registration age (the simulator's "new importer", which the features can only approach by the
first declaration seen). For each smuggling area and two-month test window of ``split`` (three
windows ending at ``test_end``), the items are ranked by the signal **with a part taken out** and
the picks at the area's operating rate are valued by ``true_prob``: the expected precision as a
share of the oracle's. "Without any hidden part" is a ranking that knows every goods, route and
observable party fact exactly as the simulator weighs them, and nothing hidden.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from riskml import backtest as bt
from riskml import io
from riskml.catalog import Catalog
from riskml.config import load_area_specs, load_params
from riskml.metrics import selection_size
from riskml.simulate import engine
from riskml.simulate.offences import NEW_IMPORTER_DAYS, RARE_ENTITY_WEIGHT, RARE_FACTOR, A

AREAS = ("drugs", "environment", "health_safety", "security")


def hidden_parts(root: Path) -> pd.DataFrame:
    """Per simulated item (key, month start), each area's offence signal and its hidden parts."""
    params = load_params(root / "params.yaml")
    world = engine.World(params.simulate, load_area_specs(root / "pipelines"))
    seen: dict = {}
    logits_of = world._logits

    def keep(rng, batch, m):  # the month's batch, signal and the importer propensity then
        logits, noise = logits_of(rng, batch, m)
        seen.update(batch=batch, signal=logits - noise, propensity=world.propensity.copy())
        return logits, noise

    world._logits = keep
    e, parts = world.ents, []
    for m in range(params.simulate.months):
        decl = world.month(m)["declarations"]
        b, prop = seen["batch"], seen["propensity"]
        imp, dcl, sup = b["importer"], b["declarant"], b["supplier"]
        age = b["importer_age_days"]
        frame = {
            "declaration_id": decl["declaration_id"].astype(str).to_numpy(),
            "item_no": decl["item_no"].to_numpy(),
            "month_start": np.datetime64(world.plan[m].start, "D"),
        }
        for area in AREAS:
            w = RARE_ENTITY_WEIGHT[area]
            frame[f"signal_{area}"] = seen["signal"][:, A[area]]
            frame[f"traits_{area}"] = w * (
                RARE_FACTOR["front"] * e.importer_front[imp]
                + RARE_FACTOR["complicit"] * e.declarant_complicit[dcl]
                + RARE_FACTOR["risky_supplier"] * e.supplier_risky[sup]
            )
            frame[f"propensities_{area}"] = (
                prop[imp, A[area]]
                + e.declarant_propensity[dcl, A[area]]
                + w * RARE_FACTOR["common"] * prop[imp].mean(axis=1)
                + w * RARE_FACTOR["supplier"] * e.supplier_propensity[sup, A[area]]
            )
            frame[f"registration_{area}"] = w * (
                RARE_FACTOR["new"] * (age < NEW_IMPORTER_DAYS)
                + RARE_FACTOR["very_new"] * (age < 60)
            )
        parts.append(pd.DataFrame(frame))
    return pd.concat(parts, ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("world", type=Path, help="a world folder of scripts/evaluate_worlds.py")
    ap.add_argument("--out", type=Path, help="JSON file of the figures")
    args = ap.parse_args()
    params = load_params(args.world / "params.yaml")
    specs = load_area_specs(args.world / "pipelines")
    items = hidden_parts(args.world).astype({"declaration_id": "string"})
    truth = io.read_dataset(Catalog(args.world).truth()).astype({"declaration_id": "string"})
    windows = bt.backtest_windows(
        params.split, n_windows=3, window_months=params.backtest.window_months
    )
    removed = {
        "without the party traits": ["traits"],
        "without the propensities": ["propensities"],
        "without the registration age": ["registration"],
        "without any hidden part": ["traits", "propensities", "registration"],
    }
    out = []
    for area in AREAS:
        t = truth[truth["risk_area"] == area][["declaration_id", "item_no", "true_prob"]]
        a = items.merge(t, on=["declaration_id", "item_no"], how="inner")
        row: dict = {"world": params.simulate.seed, "area": area}
        for name, kinds in removed.items():
            ratios = []
            for w in windows:
                sel = (a["month_start"] >= pd.Timestamp(w.start)) & (
                    a["month_start"] < pd.Timestamp(w.end)
                )
                part = a[sel]
                p = part["true_prob"].to_numpy()
                k = selection_size(len(part), rate=specs[area].operating_rate)
                score = part[f"signal_{area}"].to_numpy() - sum(
                    part[f"{kind}_{area}"].to_numpy() for kind in kinds
                )
                best = p[np.argsort(-p, kind="stable")[:k]].mean()
                ratios.append(p[np.argsort(-score, kind="stable")[:k]].mean() / best)
            row[name] = round(float(np.mean(ratios)), 3)
        out.append(row)
        print(row, flush=True)
    if args.out:
        args.out.write_text(json.dumps(out, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
