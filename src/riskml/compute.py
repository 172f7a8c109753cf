"""Where the heavy work runs: in this process (default) or on a Dask cluster (``compute`` in
params.yaml), and the per-month work that both share.

The features of a month's items are lookups in the stored history's profiles (per entity and
month: :class:`riskml.features.store.FeatureStore`), so they can be built one month at a time, in
any order and on any machine, and equal the in-memory :func:`riskml.features.build_features`
bit for bit (tests/test_compute.py). Out of core, peak memory is the store (the history's
aggregates, its codes and unit values) plus one month's features, not every item's features.

With ``compute.backend: dask`` each month is one task on the cluster: a worker builds the store
once from the canonical tables (cached for its later tasks) and writes its month's partition
itself, so the cluster needs the project folder on a shared file system (docs/cluster.md).
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskml import io
from riskml.catalog import Catalog
from riskml.config import AreaSpec, ComputeParams, FeatureParams
from riskml.contract import RiskmlError
from riskml.features.store import FeatureStore

log = logging.getLogger(__name__)

# One store per process (a Dask worker keeps it for its later months): the key names the inputs.
_STORES: dict[str, FeatureStore] = {}
# The Dask client of the work in progress (:func:`running_on`); None: this process.
_CLIENT: ContextVar[Any] = ContextVar("riskml_dask_client", default=None)


def _store_key(root: Path, params: FeatureParams, specs: Mapping[str, AreaSpec] | None) -> str:
    parts: list[Any] = [str(root), params.model_dump(), sorted(specs or {})]
    catalog = Catalog(root)
    for path in (catalog.declarations, catalog.outcomes, catalog.seizures):
        parts.append(path.stat().st_mtime_ns if path.exists() else None)
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def history_store(
    root: Path, params: FeatureParams, specs: Mapping[str, AreaSpec] | None
) -> FeatureStore:
    """The feature store of the project's canonical tables, built once per process."""
    root = Path(root)
    key = _store_key(root, params, specs)
    if key not in _STORES:
        _STORES.clear()  # one history at a time: a store is large
        catalog = Catalog(root)
        seizures = catalog.seizures
        _STORES[key] = FeatureStore(
            io.read_dataset(catalog.declarations),
            io.read_dataset(catalog.outcomes),
            params,
            specs,
            io.read_dataset(seizures) if seizures.exists() else None,
        )
    return _STORES[key]


def release_stores() -> int:
    """Drop this process's history stores (:func:`history_store`) and give their memory back:
    a garbage collection, then, on glibc, ``malloc_trim(0)`` (freed heap pages returned to the
    system). Returns the number of stores dropped. Run on every worker of a cluster after the
    features step (:func:`features_by_month`): nothing later uses them, and a long-lived
    cluster's workers would otherwise keep one each (7.6 GiB at 10M items) into every later
    stage."""
    dropped = len(_STORES)
    _STORES.clear()
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the allocator keeps its pages
        pass
    return dropped


def month_features(store: FeatureStore, month: str) -> pd.DataFrame:
    """The features of the stored declarations of ``month`` (``YYYY-MM``), in stored order; the
    index is each row's position in the stored declarations."""
    decl = store.declarations
    rows = np.flatnonzero(store.declaration_months == np.datetime64(month, "M"))
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows):  # one run (a history sorted by date):
        batch = decl.iloc[rows[0] : rows[-1] + 1]  # a slice, no copy of the month's columns
    else:
        batch = decl.iloc[rows]
    return store.features(batch, consolidate=False)  # written out as it is


def write_month_features(
    root: str, params: FeatureParams, specs: Mapping[str, AreaSpec] | None, month: str, out: str
) -> int:
    """Build ``month``'s features from the project's history and write them as that month's
    partition of the dataset ``out``; returns the number of items. Runs on a Dask worker as well
    as in this process (paths are strings: they travel to the worker)."""
    store = history_store(Path(root), params, specs)
    frame = month_features(store, month)
    months = store.declaration_months.astype(np.int64)
    # a history not sorted by month: the dataset keeps each row's place (riskml.io.ROW)
    rows = None if (np.diff(months) >= 0).all() else frame.index.to_numpy()
    io.write_partition(frame, out, month, rows=rows)
    return len(frame)


@contextmanager
def dask_client(params: ComputeParams) -> Iterator[Any]:
    """A ``distributed.Client`` on ``params.scheduler``, or on a ``LocalCluster`` of
    ``params.n_workers`` single-threaded worker processes started here (and stopped after)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise RiskmlError(
            "compute.backend is 'dask' but dask.distributed is not installed; "
            "pip install 'dask[distributed]'"
        ) from exc
    if params.scheduler:
        try:
            client = Client(params.scheduler, timeout=params.connect_timeout_s)
        except OSError as exc:
            raise RiskmlError(
                f"params.yaml compute.scheduler {params.scheduler!r}: no Dask scheduler answered "
                f"({exc}); start one (`dask scheduler`) or set compute.scheduler: null"
            ) from exc
        with client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=params.n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def features_by_month(
    root: Path,
    params: FeatureParams,
    specs: Mapping[str, AreaSpec] | None,
    months: list[str],
    out: Path,
    *,
    client: Any = None,
) -> int:
    """Write the partitions of ``months`` of the features dataset ``out``, one month at a time
    in this process, or as one task per month on ``client``'s cluster; returns the items done.
    On a cluster, every worker then drops the history store its tasks built
    (:func:`release_stores`), whether the tasks succeeded or not."""
    args = (str(Path(root).resolve()), params, dict(specs or {}))
    if client is None:
        done = 0
        for month in months:
            done += write_month_features(*args, month, str(out))
            log.info("features %s: %s items so far", month, f"{done:,}")
        return done
    futures = client.map(
        write_month_features, *[[a] * len(months) for a in args], months, [str(out)] * len(months),
        pure=False,
    )  # fmt: skip
    try:
        return sum(client.gather(futures))
    finally:
        del futures  # a failed step's pending months are dropped
        client.run(release_stores)


@contextmanager
def running_on(params: ComputeParams) -> Iterator[Any]:
    """Run the block's training (riskml.train) and per-month work on the cluster ``params``
    names when ``backend`` is dask (yields the client), else in this process (yields None)."""
    if params.backend != "dask":
        with nullcontext(None) as none:
            yield none
        return
    with dask_client(params) as client:
        token = _CLIENT.set(client)
        try:
            yield client
        finally:
            _CLIENT.reset(token)


def active_client() -> Any:
    """The Dask client of the enclosing :func:`running_on` block, or None (local work)."""
    return _CLIENT.get()


def _apply_to_month(
    folder: str,
    month: str,
    func: Callable[[pd.DataFrame], pd.DataFrame],
    columns: list[str] | None = None,
):
    return func(io.read_partitioned(folder, months=[month], columns=columns))


def map_months(
    folder: Path,
    months: list[str],
    func: Callable[[pd.DataFrame], pd.DataFrame],
    *,
    client: Any = None,
    columns: list[str] | None = None,
) -> pd.DataFrame:
    """``func`` applied to each month's partition of the dataset ``folder`` (only ``columns``
    when given; in this process, or one task per month on ``client``'s cluster, each worker
    reading its month), the results concatenated in month order. ``func`` must be row-wise (a
    row's result independent of the other rows: a model's prediction is), so the result equals
    ``func`` on the whole dataset when that is sorted by month (the pipeline's are; else the
    same rows in month order)."""
    if client is None:
        parts = [_apply_to_month(str(folder), m, func, columns) for m in months]
    else:
        remote = client.scatter(func, broadcast=True)  # the model travels once per worker
        futures = [
            client.submit(_apply_to_month, str(folder), m, remote, columns, pure=False)
            for m in months
        ]
        parts = client.gather(futures)
    if not parts:
        return func(io.read_partitioned(folder, months=[], columns=columns))
    return pd.concat(parts, ignore_index=True)


def _apply(func: Callable[[pd.DataFrame], pd.DataFrame], frame: pd.DataFrame) -> pd.DataFrame:
    return func(frame)


def map_rows(
    frame: pd.DataFrame,
    func: Callable[[pd.DataFrame], pd.DataFrame],
    *,
    client: Any = None,
    rows_per_task: int,
) -> pd.DataFrame:
    """``func(frame)``: in this process, or on ``client``'s cluster as tasks of consecutive
    rows (at most ``rows_per_task``, and one per worker at least while the rows allow; ``func``
    sent once per worker, the rows as they are), the results concatenated in row order.
    ``func`` must be row-wise (as :func:`map_months`'), so both give the same frame: the work
    of a few thousand rows that costs much per row (TreeSHAP, :meth:`AreaModel.contributions`)
    on the workers, the rows read in this process."""
    if client is None or not len(frame):
        return func(frame)
    workers = max(1, len(client.scheduler_info()["workers"]))
    size = max(1, min(rows_per_task, -(-len(frame) // workers)))
    remote = client.scatter(func, broadcast=True)
    pieces = client.scatter([frame.iloc[lo : lo + size] for lo in range(0, len(frame), size)])
    futures = [client.submit(_apply, remote, piece, pure=False) for piece in pieces]
    return pd.concat(client.gather(futures))


def _write_month(
    folder: str,
    month: str,
    func: Callable[[pd.DataFrame], pd.DataFrame],
    columns: list[str] | None,
    out: str,
) -> int:
    result = _apply_to_month(folder, month, func, columns)
    io.write_partition(result, out, month)
    return len(result)


def write_months(
    folder: Path,
    months: list[str],
    func: Callable[[pd.DataFrame], pd.DataFrame],
    out: Path,
    *,
    client: Any = None,
    columns: list[str] | None = None,
) -> int:
    """:func:`map_months`, each month's result written as that month's partition of the dataset
    ``out`` where it was computed (by the worker, on ``client``'s cluster) instead of gathered:
    scoring every item of a history holds one month at a time. Returns the rows written."""
    if client is None:
        return sum(_write_month(str(folder), m, func, columns, str(out)) for m in months)
    remote = client.scatter(func, broadcast=True)
    futures = [
        client.submit(_write_month, str(folder), m, remote, columns, str(out), pure=False)
        for m in months
    ]
    return sum(client.gather(futures))
