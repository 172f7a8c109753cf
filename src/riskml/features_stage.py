"""Stage ``riskml features``: the causal features of every declaration item, written as a dataset
partitioned by acceptance month (``data/features/month=YYYY-MM/``, riskml.io).

Three ways, same values (tests/test_compute.py): in memory (default: every item at once,
:func:`riskml.features.build_features`), out of core (``compute.out_of_core``: month by month from
the history's profiles) and on a Dask cluster (``compute.backend: dask``: one task per month).
``months`` recomputes only those periods in place (say, after a correction of one month's
declarations), leaving the other partitions as they are.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskml import compute, io
from riskml.catalog import Catalog
from riskml.config import AreaSpec, Params
from riskml.contract import RiskmlError
from riskml.features import build_features, model_feature_columns


def _client(params: Params) -> Any:
    """A Dask client context when ``compute.backend`` is dask, else a context yielding None."""
    if params.compute.backend == "dask":
        return compute.dask_client(params.compute)
    return nullcontext(None)


#: Beside the partitions: what each month's features were computed from (see :func:`month_inputs`).
MANIFEST = "_inputs.json"
#: The code the features depend on (as the stage's DVC deps): a change recomputes every month.
CODE = ("features", "features_stage.py", "compute.py", "io.py", "rules.py")


def _digest(frame: pd.DataFrame) -> bytes:
    """A digest of ``frame``'s rows (values and order; not its index)."""
    if frame.empty:
        return hashlib.sha256(",".join(map(str, frame.columns)).encode()).digest()
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes() + ",".join(map(str, frame.columns)).encode()).digest()


def _by_month(
    frame: pd.DataFrame, labels: pd.Series, months: list[str], *, ordered: bool = False
) -> dict[str, bytes]:
    """Per month of ``months``, the digest of ``frame``'s rows labelled with it. ``ordered``:
    ``labels`` are sorted (``is_monotonic_increasing``: no missing label), so each month's
    rows are one run, digested as a slice (the same rows as a mask of the whole frame per
    month, without scanning and copying the history once per month)."""
    values = labels.to_numpy(dtype=object)
    if ordered:
        lo = np.searchsorted(values, months, side="left")
        hi = np.searchsorted(values, months, side="right")
        return {m: _digest(frame.iloc[a:b]) for m, a, b in zip(months, lo, hi, strict=True)}
    return {m: _digest(frame[values == m]) for m in months}


def _known_in(frame: pd.DataFrame, column: str, months: list[str]) -> pd.Series:
    """Each row's month label of ``column``; before the first of ``months``: "0000-00"."""
    if frame.empty:
        return pd.Series([], dtype=object)
    labels = io.month_labels(frame[column]).astype(object)
    return labels.where(labels >= months[0], "0000-00") if months else labels


def setup_digest(params: Params, specs: Mapping[str, AreaSpec]) -> str:
    """What every month's features depend on besides the data: the feature settings, the areas'
    specs (targeting profiles, detectable controls) and the code of the features."""
    h = hashlib.sha256(params.features.model_dump_json().encode())
    for name in sorted(specs):
        h.update(specs[name].model_dump_json().encode())
    package = Path(__file__).parent
    for name in CODE:
        path = package / name
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            h.update(file.read_bytes())
    return h.hexdigest()


def month_inputs(
    declarations: pd.DataFrame, outcomes: pd.DataFrame, seizures: pd.DataFrame | None
) -> dict[str, str]:
    """Per declaration month *m*, a digest of everything its features are computed from: the
    declarations of months up to *m*, the outcomes whose result is known before *m* and the
    seizure records reported before *m* (the causality rule: nothing later counts). A new month
    of data changes the digest of that month and the later ones only; a corrected month, of it
    and every later month. Declarations not sorted by month are stored with each row's place in
    the table (``riskml.io.ROW``): a month's digest then covers its rows' places too, so a row
    inserted before them rewrites the month."""
    labels = io.month_labels(declarations["accepted_date"])
    months = sorted(labels.unique())
    ordered = labels.is_monotonic_increasing
    decl = _by_month(declarations, labels, months, ordered=ordered)
    if not ordered:
        values = labels.to_numpy(dtype=object)
        for m in months:
            decl[m] += hashlib.sha256(np.flatnonzero(values == m).tobytes()).digest()
    # what became known before the first month counts from the first month on ("0000-00")
    periods = ["0000-00", *months]
    outc = _by_month(outcomes, _known_in(outcomes, "result_date", months), periods)
    seiz: dict[str, bytes] = {}
    if seizures is not None and len(seizures):
        seiz = _by_month(seizures, _known_in(seizures, "report_date", months), periods)
    out, running = {}, hashlib.sha256(outc["0000-00"] + seiz.get("0000-00", b""))
    for month in months:
        running.update(decl[month])  # this month's declarations
        out[month] = running.hexdigest()
        running.update(outc[month] + seiz.get(month, b""))  # known from the next month on
    return out


def _stale_months(
    out: Path, inputs: dict[str, str], setup: str, *, sorted_by_month: bool
) -> list[str] | None:
    """The months whose stored partition no longer matches its inputs; None when the dataset
    cannot be updated in place (missing, no manifest, other settings or code, or declarations
    sorted by month where they were not, or the reverse: the rows' places, ``riskml.io.ROW``,
    are kept by the whole dataset or not at all)."""
    manifest = out / MANIFEST
    if not manifest.exists() or (io.ROW in io.dataset_columns(out)) == sorted_by_month:
        return None
    try:
        stored = json.loads(manifest.read_text())
    except json.JSONDecodeError:
        return None
    if stored.get("setup") != setup:
        return None
    have = set(io.partition_months(out))
    return [m for m, digest in inputs.items() if stored["months"].get(m) != digest or m not in have]


def run_features(
    root: Path,
    params: Params,
    specs: Mapping[str, AreaSpec],
    *,
    months: list[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Build and write the features dataset (all months, or only ``months``: ``YYYY-MM``).

    Without ``months``, a dataset written before from the same settings and code is updated in
    place: only the months whose inputs changed (:func:`month_inputs`) are recomputed (a new
    month of data: that month), the partitions of months no longer declared are removed."""
    root = Path(root)
    catalog = Catalog(root)
    out = catalog.features
    declarations = io.read_dataset(catalog.declarations)
    all_months = sorted(io.month_labels(declarations["accepted_date"]).unique())
    mode = params.compute.backend + (
        " (out of core)" if params.compute.out_of_core and params.compute.backend == "local" else ""
    )
    if months:
        unknown = sorted(set(months) - set(all_months))
        if unknown:
            raise RiskmlError(
                f"riskml features --month: no declaration of month(s) {unknown} in "
                f"{catalog.declarations} (it holds {all_months[0]} .. {all_months[-1]})"
            )
        io.read_partitioned(out, months=[])  # the dataset must exist: a clear error if not
        with _client(params) as client:
            n = compute.features_by_month(
                root, params.features, specs, sorted(set(months)), out, client=client
            )
        (out / MANIFEST).unlink(missing_ok=True)  # recomputed by hand: next run checks all
        return _summary(out, n, len(set(months)), mode)

    outcomes = io.read_dataset(catalog.outcomes)
    seizures = io.read_dataset(catalog.seizures) if catalog.seizures.exists() else None
    inputs, setup = month_inputs(declarations, outcomes, seizures), setup_digest(params, specs)
    manifest = {"setup": setup, "months": inputs}
    ordered = io.month_labels(declarations["accepted_date"]).is_monotonic_increasing
    stale = _stale_months(out, inputs, setup, sorted_by_month=ordered)
    if stale is not None and len(stale) < len(all_months):
        (out / MANIFEST).unlink()  # until the update is complete
        with _client(params) as client:
            n = compute.features_by_month(root, params.features, specs, stale, out, client=client)
        for month in set(io.partition_months(out)) - set(all_months):
            shutil.rmtree(io.partition_path(out, month).parent)
        io.write_json(manifest, out / MANIFEST)
        return _summary(out, n, len(stale), mode + f", {len(stale)} of {len(all_months)} months")
    if params.compute.backend == "local" and not params.compute.out_of_core:
        frame = build_features(
            declarations, outcomes, params.features,
            progress=progress, specs=specs, seizures=seizures,
        )  # fmt: skip
        del declarations, outcomes
        with io.replacing_folder(out) as tmp:
            io.write_partitioned(frame, tmp)
            io.write_json(manifest, tmp / MANIFEST)
        n = len(frame)
    else:
        del declarations, outcomes
        with io.replacing_folder(out) as tmp, _client(params) as client:
            n = compute.features_by_month(
                root, params.features, specs, all_months, tmp, client=client
            )
            io.write_json(manifest, tmp / MANIFEST)
    return _summary(out, n, len(all_months), mode)


def _summary(out: Path, n: int, months: int, mode: str) -> dict[str, Any]:
    schema = io.read_partitioned(out, months=[])
    return {
        "items": n,
        "model_features": len(model_feature_columns(schema)),
        "months": months,
        "backend": mode,
    }
