"""The features stage's three ways (in memory, out of core month by month, a Dask cluster) write
the same partitioned dataset bit for bit, equal to ``build_features``; one month is recomputed
alone. The Dask tests run on a real ``LocalCluster`` (two single-threaded worker processes)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from test_features import _specs, make_world

from riskml import compute, io
from riskml.area_model import AreaModel, score_frame, score_months
from riskml.catalog import FEATURES
from riskml.config import ComputeParams, Params, load_params
from riskml.contract import RiskmlError, write_interim
from riskml.features import build_features
from riskml.features_stage import run_features
from riskml.labels import build_labels
from riskml.train import (
    ValidationStop,
    _dask_booster,
    early_stopping_start,
    feature_array,
    feature_columns,
    feature_matrix,
    in_window,
    labelled_rows,
    lgb_params,
    train_area,
)

ROOT = Path(__file__).resolve().parents[1]


def _root(tmp: Path, decl: pd.DataFrame, outc: pd.DataFrame) -> Path:
    (tmp / "data/interim").mkdir(parents=True)
    write_interim(tmp / "data/interim", {"declarations": decl})
    outc.to_parquet(tmp / "data/interim/outcomes.parquet", index=False)
    return tmp


@pytest.fixture(scope="module")
def items() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Declarations and outcomes of a small random world (tests/test_features.py)."""
    return make_world(n=2000, months=9, seed=4)


@pytest.fixture(scope="module")
def expected(items) -> pd.DataFrame:
    decl, outc = items
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


def test_in_memory_features_are_written_by_month_and_read_back_identical(tmp_path, items, expected):
    root = _root(tmp_path, *items)
    summary = run_features(root, _params(), _specs())
    assert summary["items"] == len(expected) and summary["months"] == 9
    assert io.partition_months(root / FEATURES)[0] == "2023-01"
    pd.testing.assert_frame_equal(io.read_dataset(root / FEATURES), expected, check_exact=True)


def test_out_of_core_features_equal_the_in_memory_ones_bit_for_bit(tmp_path, items, expected):
    root = _root(tmp_path, *items)
    summary = run_features(root, _params(out_of_core=True), _specs())
    assert summary["items"] == len(expected)
    pd.testing.assert_frame_equal(io.read_dataset(root / FEATURES), expected, check_exact=True)


def test_out_of_core_keeps_the_order_of_a_history_not_sorted_by_month(tmp_path, items):
    decl, outc = items
    shuffled = decl.sample(frac=1.0, random_state=7).reset_index(drop=True)
    root = _root(tmp_path, shuffled, outc)
    params = _params(out_of_core=True)
    want = build_features(shuffled, outc, params.features, specs=_specs())
    run_features(root, params, _specs())
    pd.testing.assert_frame_equal(io.read_dataset(root / FEATURES), want, check_exact=True)


def test_one_month_is_recomputed_alone(tmp_path, items, expected):
    root = _root(tmp_path, *items)
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


def test_dask_features_equal_the_local_ones_bit_for_bit(tmp_path, items, expected, cluster):
    """The features on Dask equal the local ones, and the workers hold no history store
    afterwards (the later stages of a long-lived cluster do not keep it:
    ``compute.release_stores``)."""
    from distributed import Client

    root = _root(tmp_path, *items)
    params = _params(backend="dask", scheduler=cluster.scheduler_address)
    summary = run_features(root, params, _specs())
    assert summary["backend"] == "dask" and summary["items"] == len(expected)
    pd.testing.assert_frame_equal(io.read_dataset(root / FEATURES), expected, check_exact=True)

    def held(client) -> list[int]:  # each worker's stores (a lambda travels by value)
        return list(client.run(lambda: len(compute._STORES)).values())

    with Client(cluster) as client:
        assert held(client) == [0, 0]
        # a month's task alone (as features_by_month sends them) leaves its worker's store
        args = (str(root.resolve()), params.features, dict(_specs()))
        months = sorted(io.partition_months(root / FEATURES))[:4]
        futures = client.map(
            compute.write_month_features, *[[a] * len(months) for a in args], months,
            [str(tmp_path / "again")] * len(months), pure=False,
        )  # fmt: skip
        client.gather(futures)
        assert sum(held(client)) >= 1
        assert sum(client.run(compute.release_stores).values()) >= 1
        assert held(client) == [0, 0]


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path, items):
    root = _root(tmp_path, *items)
    params = _params(backend="dask", scheduler="tcp://127.0.0.1:9", connect_timeout_s=2)
    with pytest.raises(RiskmlError, match="no Dask scheduler answered"):
        run_features(root, params, _specs())
    assert not (root / FEATURES).exists()  # no partial output


def test_dask_scoring_by_month_equals_local_scoring_bit_for_bit(
    tmp_path, world, revenue_spec, params, cluster
):
    """Each worker reads its month's partition (the model's columns only) and scores it with
    the same model: the scores are the local ones on the whole frame, bit for bit (a prediction
    is row-wise), whether the dataset is sorted by month or keeps its rows' order (``_row``).
    This is how the evaluate stage scores the test window (:func:`score_months`)."""
    from distributed import Client

    model = _fitted(world, revenue_spec, params)
    start, end = params.split.test_start, params.split.test_end
    score = functools.partial(score_frame, model, start=start, end=end)
    unsorted = world["features"]
    assert not unsorted["accepted_date"].is_monotonic_increasing
    for name, frame in (("sorted", unsorted.sort_values("accepted_date", kind="stable")),
                        ("unsorted", unsorted)):  # fmt: skip
        folder = tmp_path / name
        io.write_partitioned(frame, folder)
        local = score_frame(model, io.read_dataset(folder), start=start, end=end)
        assert len(local) > 1000
        with Client(cluster) as client:
            remote = score_months(model, folder, start=start, end=end, client=client)
        pd.testing.assert_frame_equal(remote, local, check_exact=True)
        # and in this process, month by month
        here = score_months(model, folder, start=start, end=end)
        pd.testing.assert_frame_equal(here, local, check_exact=True)
    months = io.partition_months(folder)
    pd.testing.assert_frame_equal(
        compute.map_months(folder, months, score).sort_values(["declaration_id", "item_no"])
        .reset_index(drop=True),
        local.sort_values(["declaration_id", "item_no"]).reset_index(drop=True),
    )  # fmt: skip


def _fitted(world, spec, params) -> AreaModel:
    labels = build_labels(
        world["declarations"], world["outcomes"], spec, known_before=params.split.test_start
    )
    return AreaModel.for_spec(spec).fit(world["features"], labels, spec, params.split, params.train)


def _nonlinear_rows() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features of a world of 12,000 items and a label with a non-linear part, so that many
    trees are kept and a local and a Dask fit can differ."""
    from conftest import make_world

    features = make_world(n=12_000)["features"]
    logit = 1.5 * features["f_signal"] + np.sin(3 * features["f_noise"]) - 2
    hit = np.random.default_rng(0).random(len(features)) < 1 / (1 + np.exp(-logit))
    return features, features[["declaration_id", "item_no"]].assign(label=hit.astype(float))


def _fit_rows(features, labels, spec, split, settings):
    """The names, LightGBM settings, training and early-stopping rows of ``train_area``."""
    names = feature_columns(features, spec)
    rows = labelled_rows(features, labels)
    valid_start = early_stopping_start(rows, split, min_positives=settings.min_valid_positives)
    train = in_window(rows, split.train_start, valid_start)
    valid = in_window(rows, valid_start, split.test_start)
    return names, lgb_params(settings, int(train["label"].sum())), train, valid


def test_validation_stop_keeps_lightgbms_early_stopping_iteration(revenue_spec, params):
    """The Dask fit's callback (:class:`riskml.train.ValidationStop`, the whole validation set
    inside it) applies the local fit's rule: on a local fit it stops at the iteration
    ``lightgbm.early_stopping`` keeps on LightGBM's own weighted ``average_precision``, with
    the same trees."""
    features, labels = _nonlinear_rows()
    settings = params.train.model_copy(update={"num_boost_round": 300})
    names, config, train, valid = _fit_rows(features, labels, revenue_spec, params.split, settings)
    weight = np.random.default_rng(1).uniform(0.2, 3.0, len(valid))  # as reason weights would
    bests, models = [], []
    for by_callback in (False, True):
        dtrain = lgb.Dataset(feature_array(train, names), train["label"].to_numpy())
        if by_callback:
            stop = ValidationStop(
                feature_array(valid, names), valid["label"].to_numpy(), weight,
                settings.early_stopping_rounds,
            )  # fmt: skip
            booster = lgb.train(
                config, dtrain, settings.num_boost_round, callbacks=[stop],
                keep_training_booster=True,  # every tree grown
            )  # fmt: skip
        else:
            dvalid = lgb.Dataset(
                feature_array(valid, names), valid["label"].to_numpy(), weight=weight,
                reference=dtrain,
            )  # fmt: skip
            booster = lgb.train(
                config, dtrain, settings.num_boost_round, valid_sets=[dvalid],
                callbacks=[lgb.early_stopping(settings.early_stopping_rounds, verbose=False)],
                keep_training_booster=True,
            )  # fmt: skip
        bests.append(booster.best_iteration)
        assert booster.current_iteration() == booster.best_iteration + 20 < 300  # it stopped
        models.append(booster.model_to_string(num_iteration=booster.best_iteration))
    assert bests[0] == bests[1] >= 1
    assert models[0] == models[1]


def test_dask_training_stops_every_worker_early_at_its_best_iteration(
    revenue_spec, params, cluster
):
    """LightGBM's Dask interface has no early stopping; riskml's Dask fit sends the whole
    validation set inside a callback to every worker, which all hold the same trees, so all
    stop at the same iteration (else the one still training would wait for the other in
    LightGBM's network: this test would hang). The workers grow ``early_stopping_rounds`` trees
    past the best iteration, not ``num_boost_round``, and the model returned is cut there."""
    from distributed import Client

    features, labels = _nonlinear_rows()
    settings = params.train.model_copy(update={"num_boost_round": 1000, "refit": False})
    rounds = settings.early_stopping_rounds
    names, config, train, valid = _fit_rows(features, labels, revenue_spec, params.split, settings)
    stop = ValidationStop(feature_array(valid, names), valid["label"].to_numpy(), None, rounds)
    with Client(cluster) as client:
        grown = _dask_booster(client, train, names, config, 1000, None, callbacks=[stop])
    assert 1 <= grown.best_iteration
    assert grown.trees_grown == grown.best_iteration + rounds <= 100
    assert grown.current_iteration() == grown.best_iteration  # LightGBM kept the best trees
    dask_params = ComputeParams(backend="dask", scheduler=cluster.scheduler_address)
    with compute.running_on(dask_params):
        model = train_area(features, labels, revenue_spec, params.split, settings)
    assert 1 <= model.best_iteration <= 80
    assert model.booster.num_trees() == model.best_iteration


def test_dask_training_gives_the_same_candidate_lists_within_tolerance(
    revenue_spec, params, cluster
):
    """LightGBM's Dask training (two workers, each with half the rows) against the local fit on
    the same rows and settings. Not bit for bit: in data-parallel training each worker bins
    its own rows and draws its own bagging sample, so the trees differ, and so does the
    iteration early stopping keeps (by the same rule: the tests above); nor is the Dask fit
    reproducible run to run (which worker gets which rows, and the machines' order in
    LightGBM's network, vary). Measured on this world (session 15, eight Dask runs): best
    iteration 12 locally, 7 or 25 on Dask (the validation curve is flat about its top); the top
    5% share 78-85% of their items, Spearman 0.986-0.988. Tolerance: the test window's top 5%
    (the list at the operating rate) shares at least 75% of its items, the scores rank it
    alike (Spearman >= 0.95), the validation average precision is within 0.03 and the best
    iteration within a factor of 3 of the local one. (The first trees are identical: a world
    whose best iteration is 2 or 5 gives the same lists bit for bit.)"""
    features, labels = _nonlinear_rows()
    settings = params.train.model_copy(update={"num_boost_round": 150})
    local = train_area(features, labels, revenue_spec, params.split, settings)
    dask_params = ComputeParams(backend="dask", scheduler=cluster.scheduler_address)
    with compute.running_on(dask_params) as client:
        assert compute.active_client() is client is not None
        remote = train_area(features, labels, revenue_spec, params.split, settings)
    assert compute.active_client() is None
    # early-stopped at its best iteration, then refitted on every labelled row (train.refit)
    assert local.best_iteration / 3 <= remote.best_iteration <= 3 * local.best_iteration
    assert remote.booster.current_iteration() >= remote.best_iteration
    assert abs(remote.valid_average_precision - local.valid_average_precision) < 0.03
    rows = in_window(features, params.split.test_start, params.split.test_end)
    X = feature_matrix(rows, local.feature_names)
    a, b = local.booster.predict(X), remote.booster.predict(X)
    assert not np.array_equal(a, b)  # the distributed trees do differ here
    k = int(round(0.05 * len(rows)))
    top_a, top_b = set(np.argsort(-a, kind="stable")[:k]), set(np.argsort(-b, kind="stable")[:k])
    assert len(top_a & top_b) / k >= 0.75
    assert pd.Series(a).corr(pd.Series(b), method="spearman") >= 0.95


def test_the_train_stage_on_a_dask_cluster_registers_a_model_that_names_its_version(
    world_root, revenue_spec, params, tracking_uri, cluster
):
    """``riskml train`` with ``compute.backend: dask``: the classifier is fitted on the cluster,
    registered and written like a local one (models/<area>/, registration.json)."""
    from riskml.area_model import AreaModel as Model
    from riskml.train_stage import train_area_model

    on_dask = params.model_copy(
        update={"compute": ComputeParams(backend="dask", scheduler=cluster.scheduler_address)}
    )
    summary = train_area_model(
        "revenue", world_root, on_dask, revenue_spec, tracking_uri=tracking_uri
    )
    assert summary["version"] == "1" and summary["best_iteration"] >= 1
    model = Model.load(world_root / "models/revenue")
    assert model.facts_["best_iteration"] == summary["best_iteration"]
    record = json.loads((world_root / "models/revenue/registration.json").read_text())
    assert record["version"] == "1" and record["content_hash"] == model.content_hash()


def _known_by(decl: pd.DataFrame, outc: pd.DataFrame, start: str):
    """The world as known on ``start``: declarations before it, outcomes with a result before it."""
    cut = pd.Timestamp(start)
    return (
        decl[decl["accepted_date"] < cut].reset_index(drop=True),
        outc[pd.to_datetime(outc["result_date"]) < cut].reset_index(drop=True),
    )


def test_a_new_month_of_data_recomputes_that_month_only(tmp_path, items):
    """``riskml features`` (as ``dvc repro`` runs it) after a new month of declarations and
    outcomes: only the new month's partition is written, and the dataset equals the features
    of the whole history bit for bit. A correction of an earlier month recomputes that month
    and the later ones; a settings change, every month."""
    decl, outc = items
    params = _params()
    root = _root(tmp_path, *_known_by(decl, outc, "2023-09-01"))
    first = run_features(root, params, _specs())
    assert first["months"] == 8
    folder = root / FEATURES
    months = io.partition_months(folder)
    stamps = {m: io.partition_path(folder, m).stat().st_mtime_ns for m in months}

    write_interim(root / "data/interim", {"declarations": decl})
    outc.to_parquet(root / "data/interim/outcomes.parquet", index=False)
    second = run_features(root, params, _specs())
    assert second["months"] == 1 and "1 of 9 months" in second["backend"]
    assert io.partition_months(folder)[-1] == "2023-09"
    assert all(io.partition_path(folder, m).stat().st_mtime_ns == t for m, t in stamps.items())
    whole = build_features(decl, outc, params.features, specs=_specs())
    pd.testing.assert_frame_equal(io.read_dataset(folder), whole, check_exact=True)

    again = run_features(root, params, _specs())  # nothing changed: nothing recomputed
    assert again["months"] == 0

    # a correction in June: June to September again
    fixed = decl.copy()
    june = (fixed["accepted_date"].dt.strftime("%Y-%m") == "2023-06").to_numpy()
    fixed.loc[np.flatnonzero(june)[:3], "cif_value"] = 1e6
    write_interim(root / "data/interim", {"declarations": fixed})
    third = run_features(root, params, _specs())
    assert third["months"] == 4
    want = build_features(fixed, outc, params.features, specs=_specs())
    pd.testing.assert_frame_equal(io.read_dataset(folder), want, check_exact=True)

    # a late declaration of August at the end of the table: no longer sorted by month, so the
    # dataset keeps each row's place (riskml.io.ROW): rebuilt whole; then a September item added
    # at the end recomputes September only, and an item inserted near the top moves the rows of
    # every month: all recomputed
    august = fixed.index[fixed["accepted_date"].dt.strftime("%Y-%m") == "2023-08"]
    late = pd.concat([fixed, fixed.loc[august[:1]].assign(declaration_id="LATE")])
    late = late.reset_index(drop=True)
    for table, recomputed in (
        (late, 9),
        (pd.concat([late, late.iloc[-2:-1].assign(declaration_id="LAST")]), 1),
        (
            pd.concat(
                [late.iloc[:5], late.iloc[-1:].assign(declaration_id="EARLY"), late.iloc[5:]]
            ),
            9,
        ),
    ):
        table = table.reset_index(drop=True)
        write_interim(root / "data/interim", {"declarations": table})
        assert run_features(root, params, _specs())["months"] == recomputed
        want = build_features(table, outc, params.features, specs=_specs())
        pd.testing.assert_frame_equal(io.read_dataset(folder), want, check_exact=True)

    other = params.model_copy(
        update={"features": params.features.model_copy(update={"prior_strength": 5.0})}
    )
    assert run_features(root, other, _specs())["months"] == 9


def test_month_inputs_follow_the_causality_rule(items):
    """A month's digest covers what its features may use: a later outcome or declaration
    leaves it unchanged."""
    from riskml.features_stage import month_inputs

    decl, outc = items
    base = month_inputs(decl, outc, None)
    late = outc.copy()
    late.loc[pd.to_datetime(late["result_date"]) >= "2023-07-01", "offence_found"] = True
    changed = month_inputs(decl, late, None)
    assert [m for m in base if base[m] != changed[m]] == ["2023-08", "2023-09"]


def test_evaluate_stage_on_the_cluster_writes_the_local_scores_and_metrics(
    world_root, revenue_spec, params, tracking_uri, cluster
):
    """``compute.backend: dask``: the evaluate stage scores the test window one month per task
    on the cluster; its scores and metrics are the local run's, bit for bit."""
    from riskml.evaluate import run_evaluate
    from riskml.train_stage import train_area_model

    specs = {"revenue": revenue_spec}
    train_area_model("revenue", world_root, params, revenue_spec, tracking_uri=tracking_uri)
    # not the register stage's scores of the window (tests/test_evaluate.py): scored by the stage
    (world_root / "models/revenue/window_scores.json").unlink()
    run_evaluate(world_root, params, specs, tracking_uri=tracking_uri)
    local = io.read_dataset(world_root / "data/scores/revenue")
    metrics = json.loads((world_root / "metrics/areas/revenue.json").read_text())
    remote = params.model_copy(
        update={"compute": ComputeParams(backend="dask", scheduler=cluster.scheduler_address)}
    )
    run_evaluate(world_root, remote, specs, tracking_uri=tracking_uri)
    assert len(local) > 1000
    pd.testing.assert_frame_equal(
        io.read_dataset(world_root / "data/scores/revenue"), local, check_exact=True
    )
    assert json.loads((world_root / "metrics/areas/revenue.json").read_text()) == metrics


def test_dask_contributions_equal_the_local_ones_bit_for_bit(world, revenue_spec, params, cluster):
    """TreeSHAP on the cluster (:meth:`AreaModel.contributions` with a client: tasks of at most
    ``chunk_size`` rows, one per worker at least) is the local frame, values and index, bit for
    bit, whatever the rows' order and the task size."""
    from distributed import Client

    model = _fitted(world, revenue_spec, params)
    rows = world["features"].sample(1500, random_state=3)  # an index out of order
    local = model.contributions(rows, chunk_size=400)
    with Client(cluster) as client:
        for chunk_size in (400, 2000, 1):
            remote = model.contributions(rows.iloc[:60] if chunk_size == 1 else rows,
                                         chunk_size=chunk_size, client=client)  # fmt: skip
            want = local.iloc[:60] if chunk_size == 1 else local
            pd.testing.assert_frame_equal(remote, want, check_exact=True)
        empty = model.contributions(rows.iloc[:0], client=client)
    pd.testing.assert_frame_equal(empty, local.iloc[:0], check_exact=True)


def _files(folders: list[Path], root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for folder in folders
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_the_explain_stage_on_the_cluster_writes_the_local_reasons_and_case_files(
    tmp_path, cluster, monkeypatch
):
    """``compute.backend: dask``: the explain stage computes the TreeSHAP contributions of the
    picks, of the shadow picks and of the global sample on the cluster (tasks of rows, the model
    sent once per worker); the reasons tables, case files and images are the local run's, byte
    for byte. Two exceptions, neither from the contributions: the beeswarm image is left out
    (shap shuffles and jitters its dots with NumPy's global random state, which the stage does
    not seed: it differs between two local runs too), and the case files' print date
    (``casefile.today``, to the minute) is held fixed. The small project
    has no shadow list (its one model is the champion): its picks are copied as the shadow's,
    drawn by the same model, so that the shadow's reasons are computed too."""
    import shutil

    from explain_project import AREA, small_project

    from riskml import casefile
    from riskml.catalog import Catalog
    from riskml.config import load_area_specs
    from riskml.explain import run_explain

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "DVC_EXP_NAME", "DVC_ROOT"):
        monkeypatch.delenv(name, raising=False)  # the project's own store (mlflow.db)
    monkeypatch.setattr(casefile, "today", lambda: "2026-01-01 00:00 UTC")
    root = tmp_path / "project"
    shutil.copytree(small_project(), root, symlinks=True)
    catalog = Catalog(root)
    shutil.copyfile(catalog.picks(AREA), catalog.picks(AREA, shadow=True))
    params = load_params(root / "params.yaml")
    specs = load_area_specs(root / "pipelines")
    outputs = [
        root / "data/explanations",
        catalog.casefiles(AREA),
        catalog.explain_plots(AREA),
    ]

    on_cluster = []  # the TreeSHAP sets sent to a cluster (picks, shadow picks, global sample)
    map_rows = compute.map_rows

    def counted(frame, func, *, client=None, rows_per_task):
        on_cluster.extend([len(frame)] if client is not None else [])
        return map_rows(frame, func, client=client, rows_per_task=rows_per_task)

    monkeypatch.setattr(compute, "map_rows", counted)

    def run(on: Params) -> dict[str, bytes]:
        for folder in outputs:
            shutil.rmtree(folder, ignore_errors=True)
        summary = run_explain(root, on, specs)
        assert summary["explained"][AREA] > 0
        files = _files(outputs, root)
        assert f"data/explanations/{AREA}.shadow.parquet" in files
        return {name: data for name, data in files.items() if not name.endswith("beeswarm.png")}

    local = run(params)
    assert on_cluster == []
    remote = run(
        params.model_copy(
            update={"compute": ComputeParams(backend="dask", scheduler=cluster.scheduler_address)}
        )
    )
    assert len(on_cluster) == 3 and min(on_cluster) > 0  # picks, shadow picks, global sample
    assert sorted(remote) == sorted(local) and len(local) > 10
    assert [name for name in local if remote[name] != local[name]] == []
