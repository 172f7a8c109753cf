"""File I/O at the edges: atomic writes (temp file, then rename) and friendly reads."""

from __future__ import annotations

import filecmp
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from riskml.errors import RiskmlError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A failed run therefore never leaves a partial output behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)  # mkstemp creates 0600; outputs are ordinary files
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _write(path: str | Path, writer: Callable[[Path], None]) -> Path:
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_parquet(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` to Parquet atomically."""
    return _write(path, lambda p: df.to_parquet(p, index=False))


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` to CSV (UTF-8 with BOM so that Excel opens accents right) atomically."""
    return _write(path, lambda p: df.to_csv(p, index=False, encoding="utf-8-sig"))


def write_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON atomically."""

    def _dump(p: Path) -> None:
        with open(p, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=2, sort_keys=False, default=str)
            fh.write("\n")

    return _write(path, _dump)


def write_text(text: str, path: str | Path) -> Path:
    """Write ``text`` atomically."""
    return _write(path, lambda p: p.write_text(text, encoding="utf-8"))


def read_parquet(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a Parquet file; a missing file is a :class:`RiskmlError` naming the stage to run.
    A month-partitioned folder is read as :func:`read_dataset` reads it (its rows in their
    order, without the partition column), never as a plain Parquet folder."""
    path = Path(path)
    if path.is_dir() and (path / SCHEMA_FILE).exists():
        return read_partitioned(path, columns=columns)
    if not path.exists():
        raise RiskmlError(
            f"{path}: file not found; run the stage that produces it first (see `dvc dag`)"
        )
    return pd.read_parquet(path, columns=columns)


def json_safe(obj: Any) -> Any:
    """JSON-safe copy: NaN and infinities become None (strict JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return None if not math.isfinite(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_plot_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Plot data as plain UTF-8 CSV, atomically.

    Not :func:`write_csv`: its byte-order mark (for Excel) would become part of the
    first column's name and ``dvc plots`` would not find the field.
    """
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, encoding="utf-8")
    return Path(path)


# --- Datasets partitioned by month ------------------------------------------------------------
# A large table (features, scores, canonical tables) is a folder of hive-style partitions, one per
# calendar month of a date column: ``<folder>/month=YYYY-MM/part-0.parquet``, plus
# ``<folder>/_schema.parquet`` (no rows) so that an empty table keeps its columns and dtypes.
# A stage can then read, write or recompute one period without touching the others, and a Dask
# worker can write its month on its own. Reading concatenates the months in calendar order, so a
# frame sorted by month (the pipeline's tables are, by acceptance date) reads back identical,
# dtypes included. A frame not sorted by month carries its row positions in a column ``_row``,
# by which reading restores its order (and which it drops): identical too.

PARTITION = "month"
PART_FILE = "part-0.parquet"
SCHEMA_FILE = "_schema.parquet"
ROW = "_row"


def month_labels(dates: pd.Series) -> pd.Series:
    """The partition label ``YYYY-MM`` of each date (missing where the date is).

    The distinct months are formatted, not every row (``strftime`` row by row cost seconds
    per million rows, three times per features run on the declarations); the same Series
    (values, dtype, index, name: tests/test_partitioned.py)."""
    dates = pd.to_datetime(dates)
    if not (isinstance(dates.dtype, np.dtype) and dates.dtype.kind == "M"):  # tz-aware
        return dates.dt.strftime("%Y-%m")
    codes, months = pd.factorize(dates.to_numpy().astype("datetime64[M]"))
    if not len(months):  # no date at all
        return dates.dt.strftime("%Y-%m")
    names = pd.DatetimeIndex(months).strftime("%Y-%m")
    return pd.Series(names.take(codes, allow_fill=True), index=dates.index, name=dates.name)


def partition_path(folder: str | Path, month: str) -> Path:
    """The file holding ``month``'s rows (``YYYY-MM``) of the dataset ``folder``."""
    return Path(folder) / f"{PARTITION}={month}" / PART_FILE


def partition_months(folder: str | Path) -> list[str]:
    """The months (``YYYY-MM``) that ``folder`` holds a partition of, in calendar order."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    prefix = f"{PARTITION}="
    return sorted(
        p.name[len(prefix) :]
        for p in folder.iterdir()
        if p.name.startswith(prefix) and (p / PART_FILE).exists()
    )


def months_overlapping(folder: str | Path, start: Any, end: Any) -> list[str]:
    """The months stored in the partitioned dataset ``folder`` that overlap the dates
    ``[start, end)``."""
    first, last = pd.Timestamp(start), pd.Timestamp(end)
    return [
        m
        for m in partition_months(folder)
        if pd.Period(m, "M").start_time < last and pd.Period(m, "M").end_time >= first
    ]


def months_before(folder: str | Path, end: Any) -> list[str]:
    """The months stored in the partitioned dataset ``folder`` that hold a date before ``end``."""
    return [m for m in partition_months(folder) if pd.Period(m, "M").start_time < pd.Timestamp(end)]


def write_partition(
    df: pd.DataFrame, folder: str | Path, month: str, *, rows: np.ndarray | None = None
) -> Path:
    """Write (or replace) one month's partition of ``folder`` atomically; the other months stay.

    ``rows``: the rows' positions in the whole table, needed when the dataset is not sorted by
    month (it then keeps them, :data:`ROW`)."""
    folder = Path(folder)
    df = df.reset_index(drop=True)
    if rows is not None:  # added by concat: the frame may be many single-column blocks
        df = pd.concat([df, pd.DataFrame({ROW: np.asarray(rows, dtype=np.int64)})], axis=1)
    if not (folder / SCHEMA_FILE).exists():
        write_parquet(df.iloc[:0], folder / SCHEMA_FILE)
    elif (ROW in dataset_columns(folder)) != (rows is not None):
        raise RiskmlError(
            f"{folder}: month {month} written "
            + ("without" if rows is None else "with")
            + " row positions into a dataset "
            + ("that keeps" if rows is None else "that does not keep")
            + " them; rewrite the whole dataset"
        )
    return write_parquet(df, partition_path(folder, month))


def _write_months(df: pd.DataFrame, labels: np.ndarray, folder: Path, every: list[str]) -> None:
    """Write each month's rows of ``df`` (``labels``: each row's month) as its partition, and an
    empty partition for each month of ``every`` without a row. The frame is converted to Arrow
    once and cut into zero-copy slices, one per run of equal months."""
    if not len(df) and not every:
        return
    table = pa.Table.from_pandas(df, preserve_index=False)
    runs: dict[str, list[pa.Table]] = {}
    if len(df):
        starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
        ends = np.r_[starts[1:], len(labels)]
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            runs.setdefault(labels[start], []).append(table.slice(start, end - start))
    for month in every:
        runs.setdefault(month, [table.slice(0, 0)])
    for month, pieces in runs.items():  # a month in several runs: an unsorted frame
        _write_month(pieces[0] if len(pieces) == 1 else pa.concat_tables(pieces), folder, month)


def _write_month(table: pa.Table, folder: Path, month: str) -> None:
    """One month's file (its bytes depend on the rows, not on how the table is cut in chunks)."""
    path = partition_path(folder, month)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


@contextmanager
def replacing_folder(folder: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``folder``; if the block succeeds it takes ``folder``'s
    place (the previous one removed), else it is removed: never a mix of old and new files."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700
        old = None
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
            os.replace(folder, old / folder.name)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_partitioned(
    df: pd.DataFrame,
    folder: str | Path,
    *,
    by: str = "accepted_date",
    months: np.ndarray | pd.Series | None = None,
    every: list[str] | None = None,
    keep_rows: bool = False,
) -> list[str]:
    """Write ``df`` as a dataset partitioned by the month of its column ``by``, replacing the whole
    folder (:func:`replacing_folder`); returns the months whose partition was (re)written.

    ``months``: each row's partition (``YYYY-MM``) instead, for a table whose month is not one of
    its columns (an outcome or truth row goes with its item's acceptance month). ``every``: months
    stored even without a row (empty partitions), so that a reader can ask for any of them.
    ``keep_rows``: store the row positions (:data:`ROW`) even when the frame is sorted by month,
    for a table that receives rows of earlier months later (a late control result): appending
    one then rewrites its month only, where the switch from sorted to unsorted would rewrite all.

    A month whose file comes out byte for byte as the one stored keeps the stored file (the same
    file, hard-linked into the new folder: same bytes, same modification time), so that a new
    month of data rewrites that month only and whatever watches the files sees the others
    unchanged."""
    with replacing_folder(folder) as tmp:
        return stage_partitioned(df, folder, tmp, by=by, months=months, every=every,
                                 keep_rows=keep_rows)  # fmt: skip


def stage_partitioned(
    df: pd.DataFrame,
    folder: str | Path,
    tmp: Path,
    *,
    by: str = "accepted_date",
    months: np.ndarray | pd.Series | None = None,
    every: list[str] | None = None,
    keep_rows: bool = False,
) -> list[str]:
    """:func:`write_partitioned`'s files written into ``tmp``, the folder that is to replace
    ``folder`` (:func:`replacing_folder`), for a caller that replaces several datasets only
    once all are written; returns the months whose partition differs from ``folder``'s."""
    folder = Path(folder)
    if months is None:
        labels = month_labels(df[by]).to_numpy()
    else:
        labels = np.asarray(months, dtype=object)
        if len(labels) != len(df):
            raise ValueError(f"{folder}: {len(labels)} month labels for {len(df)} rows")
    df = df.reset_index(drop=True)
    if keep_rows or (len(labels) and (labels[1:] < labels[:-1]).any()):
        df[ROW] = np.arange(len(df), dtype=np.int64)
    write_parquet(df.iloc[:0], tmp / SCHEMA_FILE)
    _write_months(df, labels, tmp, every or [])
    return _unchanged_kept(folder, tmp)


def _unchanged_kept(folder: Path, tmp: Path) -> list[str]:
    """Keep ``folder``'s files whose bytes ``tmp`` repeats (:func:`_keep_unchanged`); the months
    written anew."""
    _keep_unchanged(folder, tmp, SCHEMA_FILE)
    return [m for m in partition_months(tmp) if not _keep_unchanged(folder, tmp, m)]


class UnsortedMonths(Exception):
    """Rows given to a :class:`MonthStream` out of month order."""


class MonthStream:
    """A month-partitioned dataset written as its rows arrive in month order, a month's file
    as soon as a later month starts: the files :func:`stage_partitioned` writes for the whole
    frame sorted by month (bytes included), holding one month at a time. Rows of an earlier
    month than one added raise :class:`UnsortedMonths` (the caller then writes the whole frame,
    which keeps its row positions, :data:`ROW`)."""

    def __init__(self, folder: str | Path, tmp: Path) -> None:
        self.folder, self.tmp = Path(folder), tmp
        self.month: str | None = None
        self.pieces: list[pd.DataFrame] = []
        self.empty: pd.DataFrame | None = None

    def add(self, frame: pd.DataFrame, labels: np.ndarray) -> None:
        """Append ``frame``'s rows, ``labels`` their months (``YYYY-MM``)."""
        if self.empty is None:
            self.empty = frame.iloc[:0]
        if not len(frame):
            return
        if (labels[1:] < labels[:-1]).any() or (self.month is not None and labels[0] < self.month):
            raise UnsortedMonths(f"{self.folder}: rows of {labels.min()} after {self.month}")
        starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
        ends = np.r_[starts[1:], len(labels)]
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            if labels[start] != self.month:
                self._flush()
                self.month = labels[start]
            self.pieces.append(frame.iloc[start:end])

    def _flush(self) -> None:
        if self.pieces:
            part = pd.concat(self.pieces, ignore_index=True)
            _write_month(pa.Table.from_pandas(part, preserve_index=False), self.tmp, self.month)
        self.pieces = []

    def close(self, every: list[str] | None = None) -> list[str]:
        """Write the last month, the schema and an empty partition for each month of ``every``
        without a row; returns the months whose partition differs from ``folder``'s."""
        self._flush()
        if self.empty is None:
            raise ValueError(f"{self.folder}: no frame added, not even an empty one")
        write_parquet(self.empty, self.tmp / SCHEMA_FILE)
        table = pa.Table.from_pandas(self.empty, preserve_index=False)
        for month in every or []:
            if not partition_path(self.tmp, month).exists():
                _write_month(table, self.tmp, month)
        return _unchanged_kept(self.folder, self.tmp)


def _keep_unchanged(old: Path, new: Path, month: str) -> bool:
    """Put ``old``'s file of ``month`` (or the schema file) in place of ``new``'s when their bytes
    are equal; whether it did."""
    name = month if month == SCHEMA_FILE else partition_path("", month)
    stored, fresh = old / name, new / name
    if not stored.is_file() or not filecmp.cmp(stored, fresh, shallow=False):
        return False
    fresh.unlink()
    try:
        os.link(stored, fresh)
    except OSError:  # a file system without hard links: a copy keeps the time stamps
        shutil.copy2(stored, fresh)
    return True


def read_partitioned(
    folder: str | Path,
    *,
    months: list[str] | None = None,
    columns: list[str] | None = None,
    where: Callable[[pa.Table], np.ndarray] | None = None,
) -> pd.DataFrame:
    """Read the dataset ``folder`` (all months, or only ``months``), months in calendar order.

    ``where``: a row filter applied to each month as it is read (given the month's Arrow table
    of ``columns``, it returns a boolean mask), so that reading a few rows of a large dataset
    holds one month, not the whole dataset, beside what it keeps.

    A missing folder is a :class:`RiskmlError` naming the stage to run; a month asked for but not
    stored is one too."""
    folder = Path(folder)
    if not (folder / SCHEMA_FILE).exists():
        raise RiskmlError(
            f"{folder}: partitioned dataset not found (no {SCHEMA_FILE}); run the stage that "
            "produces it first (see `dvc dag`)"
        )
    stored = partition_months(folder)
    if months is not None:
        missing = sorted(set(months) - set(stored))
        if missing:
            raise RiskmlError(
                f"{folder}: no partition for month(s) {missing}; stored: "
                f"{stored[0] if stored else 'none'} .. {stored[-1] if stored else ''}"
            )
        stored = [m for m in stored if m in set(months)]
    ordered = ROW in dataset_columns(folder)
    if ordered and columns is not None:
        columns = [*columns, ROW]
    schema = pd.read_parquet(folder / SCHEMA_FILE, columns=columns)
    if not stored:
        return schema.drop(columns=ROW) if ordered else schema
    # one Arrow table of every month, converted to pandas once (a concat of per-month frames
    # costs a copy of every column)
    table = pa.concat_tables([_read_month(folder, m, columns, where) for m in stored])
    frame = table.to_pandas()
    if ordered:
        order = np.argsort(frame[ROW].to_numpy(), kind="stable")
        frame = frame.drop(columns=ROW).take(order).reset_index(drop=True)
    return frame


def _read_month(
    folder: Path,
    month: str,
    columns: list[str] | None,
    where: Callable[[pa.Table], np.ndarray] | None,
) -> pa.Table:
    table = pq.read_table(partition_path(folder, month), columns=columns)
    if where is None:
        return table
    return table.filter(pa.array(np.asarray(where(table), dtype=bool)))


def dataset_columns(path: str | Path) -> list[str]:
    """The column names of a table stored as one Parquet file or a partitioned folder; none when
    it does not exist."""
    path = Path(path)
    schema = path / SCHEMA_FILE if path.is_dir() else path
    return pq.read_schema(schema).names if schema.exists() else []


def read_dataset(
    path: str | Path, columns: list[str] | None = None, *, months: list[str] | None = None
) -> pd.DataFrame:
    """Read a table stored either as a month-partitioned folder (all months, or only ``months``)
    or as one Parquet file, only ``columns`` if given.

    A table stored as one file (a small output, or a validated table of a project built before
    it was partitioned, :func:`riskml.catalog.Catalog.outcomes`) has no months to choose from:
    ``months`` then reads all its rows, so a caller that asks for months keeps the rows of its
    own items (a join on them), which gives the same result from either layout."""
    path = Path(path)
    if path.is_dir() or (months is not None and not path.exists()):
        return read_partitioned(path, months=months, columns=columns)
    return read_parquet(path, columns=columns)
