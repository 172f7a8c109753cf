"""Stage ``riskml features``: the causal features of every declaration item, written as a dataset
partitioned by acceptance month (``data/features/month=YYYY-MM/``, riskml.io).

Three ways, same values (tests/test_compute.py): in memory (default: every item at once,
:func:`riskml.features.build_features`), out of core (``compute.out_of_core``: month by month from
the history's profiles) and on a Dask cluster (``compute.backend: dask``: one task per month).
``months`` recomputes only those periods in place (say, after a correction of one month's
declarations), leaving the other partitions as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from riskml import compute, io
from riskml.config import AreaSpec, Params
from riskml.contract import RiskmlError
from riskml.features import build_features, model_feature_columns

#: The features dataset, under the project folder.
FEATURES = "data/features"


def _client(params: Params) -> Any:
    """A Dask client context when ``compute.backend`` is dask, else a context yielding None."""
    if params.compute.backend == "dask":
        return compute.dask_client(params.compute)
    return nullcontext(None)


def run_features(
    root: Path,
    params: Params,
    specs: Mapping[str, AreaSpec],
    *,
    months: list[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Build and write the features dataset (all months, or only ``months``: ``YYYY-MM``)."""
    root = Path(root)
    out = root / FEATURES
    stored = io.month_labels(
        io.read_parquet(root / compute.DECLARATIONS, columns=["accepted_date"])["accepted_date"]
    )
    all_months = sorted(stored.unique())
    if months:
        unknown = sorted(set(months) - set(all_months))
        if unknown:
            raise RiskmlError(
                f"riskml features --month: no declaration of month(s) {unknown} in "
                f"{compute.DECLARATIONS} (it holds {all_months[0]} .. {all_months[-1]})"
            )
        io.read_partitioned(out, months=[])  # the dataset must exist: a clear error if not
        with _client(params) as client:
            n = compute.features_by_month(
                root, params.features, specs, sorted(set(months)), out, client=client
            )
    elif params.compute.backend == "local" and not params.compute.out_of_core:
        declarations = io.read_parquet(root / compute.DECLARATIONS)
        outcomes = io.read_parquet(root / compute.OUTCOMES)
        seizures_path = root / compute.SEIZURES
        seizures = io.read_parquet(seizures_path) if seizures_path.exists() else None
        frame = build_features(
            declarations, outcomes, params.features,
            progress=progress, specs=specs, seizures=seizures,
        )  # fmt: skip
        del declarations, outcomes
        io.write_partitioned(frame, out)
        n = len(frame)
    else:
        with io.replacing_folder(out) as tmp, _client(params) as client:
            n = compute.features_by_month(
                root, params.features, specs, all_months, tmp, client=client
            )
    schema = io.read_partitioned(out, months=[])
    return {
        "items": n,
        "model_features": len(model_feature_columns(schema)),
        "months": len(months) if months else len(all_months),
        "backend": params.compute.backend
        + (" (out of core)" if params.compute.out_of_core and params.compute.backend == "local"
           else ""),
    }
