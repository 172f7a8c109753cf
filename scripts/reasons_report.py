"""Measure the reasons of the candidate lists (issue 12, part 8): how often an absence of a fact
is given as a risk-raising reason, what share of the score's rise the listed reasons cover, and
how many waterfalls end with "other" as their largest bar.

Usage, from a project where ``dvc repro`` has run up to ``explain`` (``make run``)::

    python scripts/reasons_report.py dump --root . --out /tmp/reasons-after
    python scripts/reasons_report.py report /tmp/reasons-before /tmp/reasons-after

``dump`` draws each area's list as the ``explain`` stage does (the champion, the same
selection) and writes, per area, its reasons table with, for each reason, the values of the
features behind it, and per candidate the base and total log-odds and its waterfall's bars. It
runs with the code on ``PYTHONPATH``, so the same command dumps an older commit's reasons ("before",
from a checkout of that commit: ``PYTHONPATH=<checkout>/src python scripts/reasons_report.py
dump ...``). ``report`` (current code) reads dumps and prints per area:

* **absence**: candidates with at least one risk-raising reason whose stated feature states an
  absence (:func:`riskml.reasons.states_absence`: "matches no targeting profile", "no earlier
  declaration", a duty rate of 0...), of the model-scored candidates explained; and, as a check
  independent of that rule, candidates with a raising sentence worded as an absence
  (:data:`ABSENCE_WORDS`); and (current code) candidates whose raising statements count an
  entity's history absences under its novelty fact (the explanations' ``implied``);
* **share**: the median over candidates whose score is above the base of (sum of the listed
  reasons' pushes) / (score − base), in log-odds (:func:`riskml.reasons.push_summary`), and
  the share of candidates at 80% or more;
* **other largest**: waterfalls (one per explained candidate, as drawn for the case files)
  whose largest bar is the rest ("N other features" before, "other" now).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

#: How an absence reads in a sentence ("no ...", "never ...", "matches no ...", a rate of 0.0%).
ABSENCE_WORDS = r"(?:^|; |: )(?:no |none|never|matches no|not declared)|: 0\.0%$"


def _old_waterfall(contrib: pd.Series, max_display: int = 9) -> tuple[float, float]:
    """(largest named bar, "N other features" bar) of the waterfall as drawn before issue 12
    part 8: the ``max_display`` largest contributions, the rest summed."""
    feats = contrib.drop("bias").astype(float)
    top = feats.reindex(feats.abs().sort_values(ascending=False).index[:max_display])
    return float(top.abs().max()), abs(float(feats.sum() - top.sum()))


def dump(root: Path, out: Path) -> None:
    """Write ``<out>/<area>.parquet`` (reasons with their features' values) and
    ``<out>/<area>-candidates.parquet`` (base, total, largest bar, other bar)."""
    from riskml import explain
    from riskml.catalog import Catalog
    from riskml.config import load_area_specs, load_params
    from riskml.features import catalogue_for
    from riskml.io import read_dataset
    from riskml.registry import list_model

    params = load_params(root / "params.yaml")
    specs = load_area_specs(root / "pipelines")
    catalogue = catalogue_for(specs)
    catalog = Catalog(root)
    features = read_dataset(catalog.features)
    declarations = read_dataset(catalog.declarations)
    outcomes = read_dataset(catalog.outcomes)
    out.mkdir(parents=True, exist_ok=True)
    p = params.explain
    for area, spec in specs.items():
        model = list_model(root, area)
        if hasattr(explain, "picks_of"):  # the select stage's picks (since issue 11 part 5)
            from riskml.catalog import Catalog

            selected = explain.picks_of(Catalog(root), area, model)
        else:  # older code: explain draws the list as select does
            selected = explain.area_selection(
                root, spec, params, model, declarations=declarations, outcomes=outcomes,
                features=features,
            )  # fmt: skip
        top = selected[selected["selection_kind"] != "random_control"]
        rows = explain.candidate_rows(top, features, model.feature_names_)
        contrib = model.contributions(rows, chunk_size=p.chunk_size)
        table = explain.reasons(rows, contrib, catalogue, n_up=p.n_reasons, n_down=p.n_lowering)
        by_key = rows.set_index(["declaration_id", "item_no"])
        behind = table["features"] if "features" in table else table["feature"]
        table["feature_values"] = [
            json.dumps({f: _float(by_key.loc[(d, i), f]) for f in str(names).split(", ")})
            for d, i, names in zip(table["declaration_id"], table["item_no"], behind, strict=True)
        ]
        cands = []
        for i, (d, item) in enumerate(zip(rows["declaration_id"], rows["item_no"], strict=True)):
            c = contrib.iloc[i]
            mine = table[(table["declaration_id"] == d) & (table["item_no"] == item)]
            if "base_logodds" in table:
                from riskml.reasons import waterfall_steps

                fall = waterfall_steps(mine.to_dict("records"))
                bars = [abs(s["push"]) for s in fall.get("steps", [])]
                named, other = (max(bars[:-1], default=0.0), bars[-1]) if bars else (0.0, 0.0)
            else:
                named, other = _old_waterfall(c)
            cands.append(
                {"declaration_id": d, "item_no": int(item), "base": float(c["bias"]),
                 "total": float(c.sum()), "largest_named_bar": named, "other_bar": other}
            )  # fmt: skip
        table.to_parquet(out / f"{area}.parquet")
        pd.DataFrame(cands).to_parquet(out / f"{area}-candidates.parquet")
        print(f"{area}: {len(rows)} candidates explained", flush=True)


def _float(value: object) -> float | None:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if np.isnan(x) else x


def figures(folder: Path, area: str) -> dict[str, object]:
    """The three figures of one area's dump."""
    from riskml.config import load_area_specs
    from riskml.features import catalogue_for
    from riskml.reasons import states_absence

    catalogue = catalogue_for(load_area_specs(Path(__file__).resolve().parents[1] / "pipelines"))
    table = pd.read_parquet(folder / f"{area}.parquet")
    cands = pd.read_parquet(folder / f"{area}-candidates.parquet")
    ups = table[table["direction"] == "raises"]
    absent = set()
    for rec in ups.to_dict("records"):
        values = json.loads(rec["feature_values"])
        if any(states_absence(catalogue.get(f), {f: v}) for f, v in values.items()):
            absent.add((rec["declaration_id"], rec["item_no"]))
    worded = ups[ups["sentence"].str.contains(ABSENCE_WORDS)]
    implied = ups[ups["implied"].notna()] if "implied" in ups else ups.iloc[:0]
    spoken = table[table["direction"].isin(["raises", "lowers"])]
    listed = spoken.groupby(["declaration_id", "item_no"])["contribution"].sum()
    c = cands.set_index(["declaration_id", "item_no"])
    rise = c["total"] - c["base"]
    share = (listed.reindex(c.index).fillna(0.0) / rise)[rise > 0]
    n = len(c)
    return {
        "candidates": n,
        "absence": len(absent),
        "absence_share": len(absent) / n if n else float("nan"),
        "worded": worded[["declaration_id", "item_no"]].drop_duplicates().shape[0],
        "implied": implied[["declaration_id", "item_no"]].drop_duplicates().shape[0],
        "median_share": float(share.median()) if len(share) else float("nan"),
        "share_80": float((share >= 0.8).mean()) if len(share) else float("nan"),
        "other_largest": int((c["other_bar"] > c["largest_named_bar"]).sum()),
    }


def report(before: Path, after: Path) -> None:
    """Print the figures of two dumps side by side (Markdown)."""
    areas = [p.stem for p in sorted(after.glob("*.parquet")) if not p.stem.endswith("candidates")]
    print("| area | candidates | absence stated as a raising reason | raising sentence worded "
          "as an absence | history absences counted under a novelty fact (after) | median "
          "share of the rise covered | share ≥ 80% | waterfalls whose largest bar is 'other' "
          "|")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for area in areas:
        b, a = figures(before, area), figures(after, area)
        print(
            f"| {area} | {a['candidates']} | {b['absence']} ({b['absence_share']:.0%}) → "
            f"{a['absence']} ({a['absence_share']:.0%}) | {b['worded']} → {a['worded']} | "
            f"{a['implied']} | {b['median_share']:.0%} → "
            f"{a['median_share']:.0%} | {b['share_80']:.0%} → {a['share_80']:.0%} | "
            f"{b['other_largest']} → {a['other_largest']} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump", help="dump the reasons of each area's list")
    d.add_argument("--root", type=Path, default=Path("."))
    d.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("report", help="compare two dumps")
    r.add_argument("before", type=Path)
    r.add_argument("after", type=Path)
    args = ap.parse_args()
    if args.command == "dump":
        dump(args.root.resolve(), args.out)
    else:
        report(args.before, args.after)


if __name__ == "__main__":
    main()
