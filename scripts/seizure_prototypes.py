"""Development worlds only: two candidate seizure features written into a copy of a world's
feature store, so that ``scripts/dev_window_models.py`` can train on them before any feature code
is written (issue 15, session 12: environment's missing signal).

Usage (a world folder built by ``scripts/evaluate_worlds.py``)::

    python scripts/seizure_prototypes.py /tmp/smug/dev/world-42-300000 /tmp/proto/k42 \\
        commodity_route --areas environment drugs health_safety security
    python scripts/dev_window_models.py /tmp/proto/k42 environment '{"kind": {}}' k42.json \\
        --variants --seeds 42 1

The copy holds the world's ``params.yaml`` and ``pipelines/``, links to its ``data/interim`` and
``data/raw``, and its feature months with one column per area added. Both features count, like
:mod:`riskml.features.seizures`, the area's records reported in the 12 months before the start of
the item's month (report month in [M-12, M-1]; later records change nothing):

* ``commodity_route`` (``sz_<area>_kind_country_12m``): the records on the item's HS heading,
  spread over countries as the records of the same commodity are:
  sum over commodities c of n(heading, c) x n(c, country) / n(c), the larger of the item's origin
  and departure; a heading's few records borrow the route pattern of every heading of their
  commodity (refrigerant gases of HS 2903, 3824, 3827, 8415, 8418 together);
* ``goods_rate`` (``sz_<area>_goods_rate``): the records on the item's HS heading per item of that
  heading declared here in the same 12 months (+ ``--prior`` items): seizure intensity per unit
  of trade instead of the heading's share of all records.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pandas as pd


def _month(dates: pd.Series) -> np.ndarray:
    d = pd.DatetimeIndex(dates)
    return (d.year * 12 + d.month - 1).to_numpy()


def _copy_world(src: Path, dst: Path) -> None:
    (dst / "data").mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "params.yaml", dst / "params.yaml")
    if not (dst / "pipelines").exists():
        shutil.copytree(src / "pipelines", dst / "pipelines")
    for sub in ("interim", "raw"):
        if not (dst / "data" / sub).exists():
            (dst / "data" / sub).symlink_to(src / "data" / sub)


def _records(src: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The seizure records with report month and HS heading, and one row per (record, named
    country): departure, and transit when it differs."""
    s = pd.read_parquet(src / "data/interim/seizures.parquet")
    s["rm"] = _month(s["report_date"])
    hs = s["concealment_hs"].astype("string").str.strip()
    s["hs4"] = hs.where(hs.str.len() >= 4).str.slice(0, 4)
    two = s["transit_country"].notna() & (s["transit_country"] != s["departure_country"])
    named = pd.concat(
        [
            s.assign(country=s["departure_country"]),
            s[two].assign(country=s.loc[two, "transit_country"]),
        ]
    )
    return s, named


def commodity_route(f: pd.DataFrame, recs: pd.DataFrame, named: pd.DataFrame) -> np.ndarray:
    """``sz_<area>_kind_country_12m`` of the rows of ``f`` (one month) from the area's records
    of the window."""
    n_hc = recs.dropna(subset=["hs4"]).groupby(["hs4", "commodity"]).size().rename("n_hc")
    n_cc = named.groupby(["commodity", "country"]).size().rename("share").reset_index()
    n_cc["share"] = n_cc["share"] / n_cc.groupby("commodity")["share"].transform("sum")
    j = n_hc.reset_index().merge(n_cc, on="commodity")
    value = (j["n_hc"] * j["share"]).groupby([j["hs4"], j["country"]]).sum()

    def side(col: str) -> np.ndarray:
        keys = pd.MultiIndex.from_arrays([f["ctx_hs4"].astype(object), f[col].astype(object)])
        return value.reindex(keys).fillna(0.0).to_numpy()

    return np.maximum(side("ctx_origin"), side("ctx_departure"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("world", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("kind", choices=["commodity_route", "goods_rate"])
    ap.add_argument("--areas", nargs="+", default=["environment"])
    ap.add_argument("--prior", type=float, default=20.0, help="goods_rate: items added")
    args = ap.parse_args()
    src, dst = args.world, args.out
    _copy_world(src, dst)
    s, named = _records(src)
    fsrc, fdst = src / "data/features", dst / "data/features"
    fdst.mkdir(exist_ok=True)
    shutil.copy(fsrc / "_inputs.json", fdst / "_inputs.json")
    suffix = "kind_country_12m" if args.kind == "commodity_route" else "goods_rate"
    names = {a: f"sz_{a}_{suffix}" for a in args.areas}
    schema = pd.read_parquet(fsrc / "_schema.parquet")
    for n in names.values():
        schema[n] = pd.Series(dtype="float32")
    schema.to_parquet(fdst / "_schema.parquet")
    months = sorted(fsrc.glob("month=*"))
    items: dict[int, pd.Series] = {}
    if args.kind == "goods_rate":
        for mdir in months:
            f = pd.read_parquet(mdir / "part-0.parquet", columns=["ctx_hs4", "accepted_date"])
            items[_month(f["accepted_date"].iloc[[0]])[0]] = (
                f["ctx_hs4"].astype(object).value_counts()
            )
    for mdir in months:
        f = pd.read_parquet(mdir / "part-0.parquet")
        m = _month(f["accepted_date"].iloc[[0]])[0]
        heading = f["ctx_hs4"].astype(object)
        for area, name in names.items():
            recs = s[(s["risk_area"] == area) & (s["rm"] < m) & (s["rm"] >= m - 12)]
            if args.kind == "commodity_route":
                mine = named[(named["risk_area"] == area) & (named["rm"] < m)]
                value = commodity_route(f, recs, mine[mine["rm"] >= m - 12])
            else:
                seen = [items[k] for k in range(m - 12, m) if k in items]
                n_items = pd.concat(seen).groupby(level=0).sum() if seen else pd.Series()
                n_sz = recs.groupby("hs4").size()
                value = heading.map(n_sz).fillna(0).to_numpy() / (
                    heading.map(n_items).fillna(0).to_numpy() + args.prior
                )
            f[name] = value.astype("float32")
        (fdst / mdir.name).mkdir(exist_ok=True)
        f.to_parquet(fdst / mdir.name / "part-0.parquet", index=False)
        print(mdir.name, {n: round(float((f[n] > 0).mean()), 4) for n in names.values()})


if __name__ == "__main__":
    main()
