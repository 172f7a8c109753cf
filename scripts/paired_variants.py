"""Paired comparison of the variants of ``scripts/dev_window_models.py`` (or of
``scripts/label_decomposition.py``) against a base variant, on development worlds.

Usage::

    python scripts/paired_variants.py var_42.json var_43.json --base base \\
        --metrics exp exp_key rev_key

A unit is (world, window, train seed). Per variant and metric: the mean over units, the paired
mean change against ``--base`` (same world, window and seed), the units better / worse / equal,
and the mean change of each (world, seed) cell over its windows: the adoption rule of issue 15's
development work is a change better in every cell (both worlds, both train seeds, on average
over the windows). Also the paired change's spread over units (``sd``) and a 95% t interval of
its mean (``ci95``), and the mean training CPU seconds of the variant's fits. Reference rows
(``reference_exp``) are reported as a variant named ``reference`` when present.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from scipy import stats


def unit_table(paths: list[Path]) -> pd.DataFrame:
    """Every fit's row of the files, the truth-trained reference as its own variant."""
    rows = [r for p in paths for r in json.loads(p.read_text(encoding="utf-8"))]
    rows = [r for r in rows if "exp" in r]
    out = pd.DataFrame(rows)
    if "reference_exp" in out:
        ref = out.dropna(subset=["reference_exp"]).copy()
        ref["variant"] = "reference"
        ref["exp"] = ref["reference_exp"]
        ref["real"] = ref.get("reference_real")
        keep = ["world", "area", "window", "variant", "seed", "exp", "real"]
        out = pd.concat([out, ref[[c for c in keep if c in ref]]], ignore_index=True)
    return out


def _t_interval(d: pd.Series) -> str:
    """95% t interval of the mean of ``d`` (empty with fewer than two units)."""
    if len(d) < 2:
        return ""
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / len(d) ** 0.5
    return f"[{d.mean() - half:+.4f}, {d.mean() + half:+.4f}]"


def compare(table: pd.DataFrame, base: str, metric: str, tol: float = 1e-9) -> pd.DataFrame:
    """Per variant: mean, paired change against ``base``, units better/worse/equal, the
    (world, seed) cells' mean changes and whether every cell is better."""
    key = ["area", "world", "window", "seed"]
    wide = table.pivot_table(index=key, columns="variant", values=metric)
    if base not in wide:
        raise SystemExit(f"no variant {base!r} with {metric}")
    out = []
    for v in wide.columns:
        both = pd.DataFrame({"base": wide[base], "v": wide[v]}).dropna()
        d = both["v"] - both["base"]
        cells = d.groupby(level=["area", "world", "seed"]).mean()
        cpu = table.loc[table["variant"] == v, "cpu_seconds"] if "cpu_seconds" in table else None
        out.append(
            {
                "variant": v,
                "metric": metric,
                "units": len(d),
                "mean": both["v"].mean(),
                "change": d.mean(),
                # spread of the paired change over units, and a t interval of its mean (units
                # share worlds and windows, so it is a rough guide, not a test)
                "sd": d.std(ddof=1) if len(d) > 1 else float("nan"),
                "ci95": _t_interval(d),
                "better": int((d > tol).sum()),
                "worse": int((d < -tol).sum()),
                "equal": int((d.abs() <= tol).sum()),
                "cells": " ".join(f"{w}/{s}:{c:+.4f}" for (_, w, s), c in cells.items()),
                "every_cell_better": bool((cells > tol).all()) if v != base else False,
                "cpu_s": float(cpu.mean()) if cpu is not None and cpu.notna().any() else None,
            }
        )
    return pd.DataFrame(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", type=Path, nargs="+")
    ap.add_argument("--base", default="base")
    ap.add_argument("--metrics", nargs="+", default=["exp"])
    args = ap.parse_args()
    table = unit_table(args.files)
    pd.set_option("display.width", 250, "display.max_colwidth", 80)
    for metric in args.metrics:
        if metric not in table:
            continue
        print(compare(table, args.base, metric).to_string(index=False, float_format="%.4f"))
        print()


if __name__ == "__main__":
    main()
