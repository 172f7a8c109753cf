"""Datasets partitioned by month (riskml.io): written hive-style (``month=YYYY-MM/``), read back
identical, one period read or rewritten without touching the others, never a partial dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskml import io
from riskml.errors import RiskmlError


def _frame(n: int = 500, seed: int = 0) -> pd.DataFrame:
    """A month-sorted frame with the dtypes the pipeline writes (string, category, float32,
    int8, datetime, missing values)."""
    rng = np.random.default_rng(seed)
    days = np.sort(rng.integers(0, 200, n))
    return pd.DataFrame(
        {
            "declaration_id": pd.array([f"D{i:05d}" for i in range(n)], dtype="string"),
            "item_no": np.arange(n, dtype=np.int64) % 3 + 1,
            "accepted_date": pd.Timestamp("2023-11-20") + pd.to_timedelta(days, unit="D"),
            "x": rng.normal(size=n).astype(np.float32),
            "flag": rng.integers(0, 2, n).astype(np.int8),
            "level": pd.Categorical(rng.choice(["hs6", "hs4"], n), categories=["hs6", "hs4", "x"]),
            "ctx_name": pd.array(rng.choice(["a", None], n), dtype="string"),
            "y": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)),
        }
    )


def test_a_month_sorted_frame_reads_back_identical(tmp_path: Path):
    df = _frame()
    io.write_partitioned(df, tmp_path / "ds")
    assert io.partition_months(tmp_path / "ds") == [
        "2023-11", "2023-12", "2024-01", "2024-02", "2024-03", "2024-04", "2024-05", "2024-06"
    ]  # fmt: skip
    assert (tmp_path / "ds" / "month=2024-01" / "part-0.parquet").is_file()
    pd.testing.assert_frame_equal(io.read_dataset(tmp_path / "ds"), df, check_exact=True)
    # hive-style: any Parquet reader sees the month as a partition column
    seen = pd.read_parquet(tmp_path / "ds" / "month=2024-01")
    assert len(seen) == int((df["accepted_date"].dt.strftime("%Y-%m") == "2024-01").sum())


def test_one_period_is_read_and_rewritten_alone(tmp_path: Path):
    df = _frame()
    folder = tmp_path / "ds"
    io.write_partitioned(df, folder)
    labels = io.month_labels(df["accepted_date"])
    jan = io.read_partitioned(folder, months=["2024-01"])
    pd.testing.assert_frame_equal(jan, df[labels == "2024-01"].reset_index(drop=True))
    months = io.partition_months(folder)
    before = {m: io.partition_path(folder, m).stat().st_mtime_ns for m in months}
    io.write_partition(jan.assign(x=np.float32(1.5)), folder, "2024-01")
    after = {m: io.partition_path(folder, m).stat().st_mtime_ns for m in months}
    assert [m for m in before if before[m] != after[m]] == ["2024-01"]
    whole = io.read_dataset(folder)
    assert (whole.loc[labels.to_numpy() == "2024-01", "x"] == 1.5).all()
    pd.testing.assert_frame_equal(whole[labels != "2024-01"], df[labels != "2024-01"])


def test_an_unsorted_frame_reads_back_identical_and_in_month_order_per_month(tmp_path: Path):
    df = _frame().sample(frac=1.0, random_state=3).reset_index(drop=True)
    folder = tmp_path / "ds"
    io.write_partitioned(df, folder)
    pd.testing.assert_frame_equal(io.read_dataset(folder), df, check_exact=True)
    labels = io.month_labels(df["accepted_date"])
    feb = io.read_partitioned(folder, months=["2024-02"], columns=["declaration_id", "x"])
    pd.testing.assert_frame_equal(
        feb, df.loc[labels == "2024-02", ["declaration_id", "x"]].reset_index(drop=True)
    )
    # a month rewritten keeps its rows' places, given their positions
    rows = np.flatnonzero((labels == "2024-02").to_numpy())
    io.write_partition(df.iloc[rows].assign(x=np.float32(2.0)), folder, "2024-02", rows=rows)
    expected = df.copy()
    expected.loc[rows, "x"] = np.float32(2.0)
    pd.testing.assert_frame_equal(io.read_dataset(folder), expected)
    with pytest.raises(RiskmlError, match="without row positions"):
        io.write_partition(df.iloc[rows], folder, "2024-02")


def test_month_labels_are_strftime_of_every_row():
    """io.month_labels formats the distinct months only: the same Series as ``strftime`` of
    every row (values, dtype, index, name), with missing dates, unsorted rows, another time
    unit, text dates, time zones, no rows and no date at all."""
    rng = np.random.default_rng(5)
    days = pd.to_timedelta(rng.integers(0, 900, 2_000), "D") + pd.to_timedelta(
        rng.integers(0, 86_400, 2_000), "s"
    )
    dates = pd.Series(pd.Timestamp("2019-11-01") + days, index=rng.permutation(2_000) + 7)
    dates.name = "accepted_date"
    missing = dates.copy()
    missing[rng.random(len(missing)) < 0.1] = pd.NaT
    cases = [
        dates,
        missing,
        dates.dt.as_unit("s"),
        dates.dt.tz_localize("UTC"),
        pd.Series(["2021-03-04", None, "1999-12-31"]),
        dates.iloc[:0],
        pd.Series([pd.NaT, pd.NaT], dtype="datetime64[ns]"),
    ]
    for case in cases:
        expected = pd.to_datetime(case).dt.strftime("%Y-%m")
        pd.testing.assert_series_equal(io.month_labels(case), expected, check_exact=True)


def test_an_empty_frame_keeps_its_columns_and_dtypes(tmp_path: Path):
    df = _frame().iloc[:0]
    io.write_partitioned(df, tmp_path / "ds")
    back = io.read_dataset(tmp_path / "ds")
    assert io.partition_months(tmp_path / "ds") == []
    assert len(back) == 0 and list(back.columns) == list(df.columns)
    # a category's categories are not kept by Parquet when no row holds one: compare the kinds
    assert [str(t) if t != "category" else "category" for t in back.dtypes] == [
        str(t) if t != "category" else "category" for t in df.dtypes
    ]


def test_a_failed_write_leaves_the_previous_dataset(tmp_path: Path):
    df = _frame()
    folder = tmp_path / "ds"
    io.write_partitioned(df, folder)
    bad = df.assign(accepted_date="not a date")
    with pytest.raises((ValueError, TypeError)):
        io.write_partitioned(bad, folder)
    pd.testing.assert_frame_equal(io.read_dataset(folder), df)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temporary folder left


def test_a_rewrite_drops_months_no_longer_there(tmp_path: Path):
    df = _frame()
    folder = tmp_path / "ds"
    io.write_partitioned(df, folder)
    late = df[df["accepted_date"] >= "2024-03-01"]
    io.write_partitioned(late, folder)
    assert io.partition_months(folder)[0] == "2024-03"
    pd.testing.assert_frame_equal(io.read_dataset(folder), late.reset_index(drop=True))


def test_a_rewrite_keeps_the_files_of_months_whose_rows_did_not_change(tmp_path: Path):
    """A new month and a corrected one are written; every other month keeps its stored file
    (same inode, bytes and modification time), and the dataset reads back as the new frame."""
    df = _frame()
    folder = tmp_path / "ds"
    first = df[df["accepted_date"] < "2024-06-01"]
    assert io.write_partitioned(first, folder) == io.partition_months(folder)
    files = {m: io.partition_path(folder, m) for m in io.partition_months(folder)}
    before = {m: (f.stat().st_ino, f.stat().st_mtime_ns, f.read_bytes()) for m, f in files.items()}
    fixed = df.copy()
    fixed.loc[fixed["accepted_date"].dt.strftime("%Y-%m") == "2024-02", "x"] += 1
    assert io.write_partitioned(fixed, folder) == ["2024-02", "2024-06"]
    for month, (ino, mtime, data) in before.items():
        stat = files[month].stat()
        same = (stat.st_ino, stat.st_mtime_ns, files[month].read_bytes()) == (ino, mtime, data)
        assert same == (month != "2024-02"), month
    pd.testing.assert_frame_equal(io.read_dataset(folder), fixed, check_exact=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # nothing left beside it
    # a frame not sorted by month keeps its rows' places: a row added at the end leaves the
    # other months' files as they were
    shuffled = df.sample(frac=1, random_state=0).reset_index(drop=True)
    io.write_partitioned(shuffled.iloc[:-1], folder)
    kept = {m: io.partition_path(folder, m).stat().st_mtime_ns for m in io.partition_months(folder)}
    last = io.month_labels(shuffled["accepted_date"]).iloc[-1]
    assert io.write_partitioned(shuffled, folder) == [last]
    assert all(
        io.partition_path(folder, m).stat().st_mtime_ns == t for m, t in kept.items() if m != last
    )
    pd.testing.assert_frame_equal(io.read_dataset(folder), shuffled, check_exact=True)


def test_missing_dataset_or_month_names_what_to_do(tmp_path: Path):
    with pytest.raises(RiskmlError, match="run the stage that produces it"):
        io.read_dataset(tmp_path / "nothing")
    io.write_partitioned(_frame(), tmp_path / "ds")
    with pytest.raises(RiskmlError, match=r"no partition for month\(s\) \['2030-01'\]"):
        io.read_partitioned(tmp_path / "ds", months=["2030-01"])


def test_read_parquet_reads_a_partitioned_folder_as_read_dataset_does(tmp_path: Path):
    """A caller that still reads a validated table with ``io.read_parquet`` (outcomes, truth and
    seizures were one file each) gets the dataset's frame, not pandas' reading of a folder
    (an added ``month`` column, months concatenated out of the rows' order)."""
    df = _frame().sample(frac=1.0, random_state=3).reset_index(drop=True)  # not sorted by month
    io.write_partitioned(df, tmp_path / "t")
    pd.testing.assert_frame_equal(io.read_parquet(tmp_path / "t"), df, check_exact=True)
    cols = list(df.columns[:2])
    pd.testing.assert_frame_equal(io.read_parquet(tmp_path / "t", cols), df[cols], check_exact=True)


def test_a_project_validated_before_the_monthly_layout_reads_its_one_file(tmp_path: Path):
    """``catalog.stored_table`` owns the older layout: while a project's ``data/interim`` holds
    a canonical table as one file only, the catalog names that file and ``read_dataset`` reads
    it whole (with or without months); once validated by month, the folder."""
    from riskml.catalog import PARTITIONED_TABLES, Catalog, interim_table, table_file

    catalog = Catalog(tmp_path)
    catalog.interim.mkdir(parents=True)
    df = _frame()
    for table in PARTITIONED_TABLES:
        io.write_parquet(df, table_file(catalog.interim, table))
    paths = [catalog.declarations, catalog.outcomes, catalog.seizures]
    assert paths == [
        table_file(catalog.interim, t) for t in ("declarations", "outcomes", "seizures")
    ]
    for path in paths:
        pd.testing.assert_frame_equal(io.read_dataset(path, months=["2024-01"]), df)
    io.write_partitioned(df, interim_table(catalog.interim, "declarations"))
    assert catalog.declarations == interim_table(catalog.interim, "declarations")
    assert len(io.read_dataset(catalog.declarations, months=["2024-01"])) < len(df)
