"""Time the feature store: its start-up, one declaration of any date, and batches.

Usage:  python bench/feature_store_bench.py --root PROJECT [--repeat 30] [--rebuild]

PROJECT is a finished pipeline run (its ``data/interim`` declarations and outcomes, its
``params.yaml`` and ``pipelines/``); it is only read. The bench builds
:class:`riskml.features.store.FeatureStore` on the stored history, as ``riskml score`` and the
service do at start, then times :meth:`FeatureStore.features` (with the ``ctx_`` columns, as
scoring with reasons needs them) for

* one declaration dated the day after the history (a live system's new declaration);
* one declaration dated in the history's first, middle and next-to-last months (a late
  declaration: before the store answered any date, such a row rebuilt the features of the whole
  history + the row);
* one declaration dated a month before the history's first day;
* batches of 1,000 and 50,000 declarations dated over the whole history and the month after.

Each single-row case runs ``--repeat`` times (median and p99 in milliseconds); each step prints
its added peak memory (the process's high-water mark, reset before the step through
``/proc/self/clear_refs``, minus the resident memory before it). ``--rebuild`` also times the
former path of a late row, ``build_features`` on history + the row, once.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd


def _status(field: str) -> int:
    """A ``/proc/self/status`` memory field in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


class Peak:
    """Added peak memory of a step: the high-water mark (reset at start) minus the RSS then."""

    def __enter__(self) -> Peak:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        self.start = _status("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        self.added_mib = (_status("VmHWM") - self.start) / 2**20


def _rows(decl: pd.DataFrame, n: int, dates: pd.Series | pd.Timestamp, seed: int) -> pd.DataFrame:
    rows = decl.sample(n=n, replace=n > len(decl), random_state=seed)
    return rows.assign(
        declaration_id=[f"BENCH{seed}-{i:07d}" for i in range(n)], item_no=1, accepted_date=dates
    ).reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()

    from riskml.catalog import Catalog
    from riskml.config import load_area_specs, load_params
    from riskml.features import build_features
    from riskml.features.store import FeatureStore
    from riskml.io import read_dataset

    root = args.root
    params = load_params(root / "params.yaml")
    specs = {a: s for a, s in load_area_specs(root / "pipelines").items() if a in params.areas}
    decl = read_dataset(Catalog(root).declarations)
    outc = read_dataset(Catalog(root).outcomes)
    first, last = decl["accepted_date"].min(), decl["accepted_date"].max()
    print(f"history: {len(decl):,} items, {first.date()} to {last.date()}, {len(outc):,} outcomes")

    with Peak() as peak:
        t0 = time.perf_counter()
        store = FeatureStore(decl, outc, params.features, specs)
        built = time.perf_counter() - t0
    print(f"store build: {built:.2f} s, +{max(peak.added_mib, 0):.0f} MiB")

    months = pd.date_range(first, last, freq="MS")
    singles = {
        "day after the history": last + pd.Timedelta(days=1),
        "first month (late)": months[0] + pd.Timedelta(days=14),
        "middle month (late)": months[len(months) // 2] + pd.Timedelta(days=14),
        "next-to-last month (late)": months[-2] + pd.Timedelta(days=14),
        "a month before the history": first - pd.Timedelta(days=31),
    }
    for i, (name, date) in enumerate(singles.items()):
        row = _rows(decl, 1, date, seed=i)
        store.features(row)  # first call of a month fills its caches
        times = []
        with Peak() as peak:
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                store.features(row)
                times.append(time.perf_counter() - t0)
        lean = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            store.features(row, context=False)
            lean.append(time.perf_counter() - t0)
        ms, lean_ms = np.array(times) * 1000, np.array(lean) * 1000
        print(
            f"one row, {name}: median {np.median(ms):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms "
            f"({args.repeat} calls), +{max(peak.added_mib, 0):.0f} MiB; without ctx_ columns "
            f"(POST /score without reasons) median {np.median(lean_ms):.1f} ms, "
            f"p99 {np.percentile(lean_ms, 99):.1f} ms"
        )

    rng = np.random.default_rng(0)
    span = (last - first).days + 31
    for n in (1_000, 50_000):
        dates = first + pd.to_timedelta(rng.integers(0, span, n), unit="D")
        batch = _rows(decl, n, dates, seed=100 + n)
        with Peak() as peak:
            t0 = time.perf_counter()
            store.features(batch)
            took = time.perf_counter() - t0
        print(
            f"batch of {n:,} over {batch['accepted_date'].dt.to_period('M').nunique()} months: "
            f"{took:.2f} s ({n / took:,.0f} rows/s), +{max(peak.added_mib, 0):.0f} MiB"
        )

    if args.rebuild:
        row = _rows(decl, 1, singles["middle month (late)"], seed=7)
        with Peak() as peak:
            t0 = time.perf_counter()
            build_features(
                pd.concat([decl, row], ignore_index=True), outc, params.features, specs=specs
            )
            took = time.perf_counter() - t0
        print(
            f"former path of a late row (build_features on history + row): {took:.1f} s, "
            f"+{max(peak.added_mib, 0):.0f} MiB"
        )


if __name__ == "__main__":
    main()
