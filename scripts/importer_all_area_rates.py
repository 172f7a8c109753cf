"""Development worlds only: a copy of a world with the importer's hit rates over all areas
appended to its feature files (issue 15, session 27; a prototype, not a feature of main).

Usage (a world folder built by ``scripts/evaluate_worlds.py`` with session 26's prototype
``imp_12m_*`` columns, branch ``s26-recent``)::

    python scripts/importer_all_area_rates.py /tmp/s26/dev/world-42-300000 \\
        /tmp/s27/dev/world-42-300000
    python scripts/dev_window_models.py /tmp/s27/dev/world-42-300000 environment \\
        '{"hrall": {"all": {"exclude_features": [...]}}}' out.json --variants --seeds 42 1

The simulator's rare-area offences depend on the importer's *common* propensity, the mean of
its six drifting area propensities, while each ``imp_hr_<area>`` sees one area. Three columns
pool them (appended after every existing column, so a model that leaves them out sees the same
columns in the same order as on the source world and reproduces its units):

* ``imp_hr_all``: the importer's findings in any area (``imp_n_find``) over its controls,
  smoothed by ``--prior-strength`` controls towards the month's overall rate;
* ``imp_12m_n_find_all`` and ``imp_12m_hr_all``: the same over the last 12 months (the sum of
  the ``imp_12m_n_find_<area>`` columns over ``imp_12m_n_controls``).

The month's overall rate is the rate over the month's rows' own snapshots (known at the start
of the month), so the columns are as causal as the snapshots. ``data/raw`` and
``data/interim`` are linked, not copied; ``params.yaml`` and ``pipelines/`` are copied.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from riskml import io
from riskml.contract import RISK_AREAS


def smoothed(found: np.ndarray, controls: np.ndarray, strength: float) -> np.ndarray:
    """``found / controls`` smoothed towards the rows' overall rate (NaN where ``controls`` is)."""
    known = ~np.isnan(controls)
    prior = np.nansum(found[known]) / max(np.nansum(controls[known]), 1.0)
    return (found + strength * prior) / (controls + strength)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("source", type=Path, help="a world folder of scripts/evaluate_worlds.py")
    ap.add_argument("target", type=Path, help="the copy to write")
    ap.add_argument("--prior-strength", type=float, default=20.0)
    args = ap.parse_args()
    src, dst = args.source, args.target
    (dst / "data").mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "params.yaml", dst / "params.yaml")
    shutil.copytree(src / "pipelines", dst / "pipelines", dirs_exist_ok=True)
    for name in ("raw", "interim"):
        if not (dst / "data" / name).exists():
            (dst / "data" / name).symlink_to((src / "data" / name).resolve())
    source, target = src / "data" / "features", dst / "data" / "features"
    target.mkdir(exist_ok=True)
    shutil.copy(source / "_inputs.json", target / "_inputs.json")
    schema = None
    needed = ["imp_n_find", "imp_n_controls", "imp_12m_n_controls"]
    needed += [f"imp_12m_n_find_{a}" for a in RISK_AREAS]
    for month in io.partition_months(source):
        table = pq.read_table(io.partition_path(source, month))
        col = {n: table.column(n).to_numpy(zero_copy_only=False).astype(float) for n in needed}
        recent = sum(col[f"imp_12m_n_find_{a}"] for a in RISK_AREAS)
        strength = args.prior_strength
        new = {
            "imp_hr_all": smoothed(col["imp_n_find"], col["imp_n_controls"], strength),
            "imp_12m_n_find_all": recent,
            "imp_12m_hr_all": smoothed(recent, col["imp_12m_n_controls"], strength),
        }
        for name, values in new.items():
            table = table.append_column(name, pa.array(values.astype(np.float32)))
        with io.atomic_path(io.partition_path(target, month)) as tmp:
            pq.write_table(table, tmp)
        schema = table.schema
    if schema is None:
        raise SystemExit(f"{source}: no month partitions; build the world's features first")
    with io.atomic_path(target / io.SCHEMA_FILE) as tmp:
        pq.write_table(schema.empty_table(), tmp)
    print(f"{dst}: {len(new)} columns appended")


if __name__ == "__main__":
    main()
