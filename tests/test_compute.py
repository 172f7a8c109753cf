"""The features stage's three ways (in memory, out of core month by month, a Dask cluster) write
the same partitioned dataset bit for bit, equal to ``build_features``; one month is recomputed
alone. The Dask tests run on a real ``LocalCluster`` (two single-threaded worker processes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_features import _specs, make_world

from riskml import io
from riskml.config import ComputeParams, Params, load_params
from riskml.contract import RiskmlError
from riskml.features import build_features
from riskml.features_stage import FEATURES, run_features

ROOT = Path(__file__).resolve().parents[1]


def _root(tmp: Path, decl: pd.DataFrame, outc: pd.DataFrame) -> Path:
    (tmp / "data/interim").mkdir(parents=True)
    decl.to_parquet(tmp / "data/interim/declarations.parquet", index=False)
    outc.to_parquet(tmp / "data/interim/outcomes.parquet", index=False)
    return tmp


@pytest.fixture(scope="module")
def world() -> tuple[pd.DataFrame, pd.DataFrame]:
    return make_world(n=2000, months=9, seed=4)


@pytest.fixture(scope="module")
def expected(world) -> pd.DataFrame:
    decl, outc = world
    return build_features(decl, outc, load_params(ROOT / "params.yaml").features, specs=_specs())


def _params(**compute) -> Params:
    params = load_params(ROOT / "params.yaml")
    return params.model_copy(update={"compute": ComputeParams(**compute)})


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of two single-threaded worker processes, on loopback only."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    ) as c:
        yield c


def test_in_memory_features_are_written_by_month_and_read_back_identical(
    tmp_path, world, expected
):
    root = _root(tmp_path, *world)
    summary = run_features(root, _params(), _specs())
    assert summary["items"] == len(expected) and summary["months"] == 9
    assert io.partition_months(root / FEATURES)[0] == "2023-01"
    pd.testing.assert_frame_equal(io.read_dataset(root / FEATURES), expected, check_exact=True)


def test_out_of_core_features_equal_the_in_memory_ones_bit_for_bit(tmp_path, world, expected):
    root = _root(tmp_path, *world)
    summary = run_features(root, _params(out_of_core=True), _specs())
    assert summary["items"] == len(expected)
    pd.testing.assert_frame_equal(io.read_dataset(root / FEATURES), expected, check_exact=True)


def test_out_of_core_keeps_the_order_of_a_history_not_sorted_by_month(tmp_path, world):
    decl, outc = world
    shuffled = decl.sample(frac=1.0, random_state=7).reset_index(drop=True)
    root = _root(tmp_path, shuffled, outc)
    params = _params(out_of_core=True)
    want = build_features(shuffled, outc, params.features, specs=_specs())
    run_features(root, params, _specs())
    pd.testing.assert_frame_equal(io.read_dataset(root / FEATURES), want, check_exact=True)


def test_one_month_is_recomputed_alone(tmp_path, world, expected):
    root = _root(tmp_path, *world)
    run_features(root, _params(), _specs())
    folder = root / FEATURES
    months = io.partition_months(folder)
    # spoil two months' files; recompute one of them
    for month in ("2023-04", "2023-06"):
        part = io.read_partitioned(folder, months=[month])
        io.write_partition(part.assign(imp_n_items=np.float32(-1)), folder, month)
    stamps = {m: io.partition_path(folder, m).stat().st_mtime_ns for m in months}
    summary = run_features(root, _params(), _specs(), months=["2023-04"])
    assert summary["months"] == 1
    changed = [m for m in months if io.partition_path(folder, m).stat().st_mtime_ns != stamps[m]]
    assert changed == ["2023-04"]
    got = io.read_dataset(folder)
    april = io.month_labels(expected["accepted_date"]) == "2023-04"
    june = io.month_labels(expected["accepted_date"]) == "2023-06"
    pd.testing.assert_frame_equal(got[april.to_numpy()], expected[april], check_exact=True)
    assert (got.loc[june.to_numpy(), "imp_n_items"] == -1).all()  # left alone
    with pytest.raises(RiskmlError, match=r"no declaration of month\(s\) \['2031-01'\]"):
        run_features(root, _params(), _specs(), months=["2031-01"])


def test_dask_features_equal_the_local_ones_bit_for_bit(tmp_path, world, expected, cluster):
    root = _root(tmp_path, *world)
    params = _params(backend="dask", scheduler=cluster.scheduler_address)
    summary = run_features(root, params, _specs())
    assert summary["backend"] == "dask" and summary["items"] == len(expected)
    pd.testing.assert_frame_equal(io.read_dataset(root / FEATURES), expected, check_exact=True)


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path, world):
    root = _root(tmp_path, *world)
    params = _params(backend="dask", scheduler="tcp://127.0.0.1:9", connect_timeout_s=2)
    with pytest.raises(RiskmlError, match="no Dask scheduler answered"):
        run_features(root, params, _specs())
    assert not (root / FEATURES).exists()  # no partial output
