"""Shared fixtures: a fresh MLflow store per test, a small synthetic customs world and a
PostgreSQL feedback database (``pg_url``)."""

from __future__ import annotations

import os
from collections import Counter
from datetime import date
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, make_url, text

from riskml.config import AreaSpec, Params, Rule, SplitParams, TrainParams
from riskml.contract import write_interim
from riskml.feedback import _Base
from riskml.io import write_partitioned


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The files holding the most end-to-end tests (marked ``slow``) run first, each file's
    tests in their order: `make test` hands whole files to parallel workers in this order
    (pytest-xdist, ``--dist loadfile --no-loadscope-reorder``), and the longest file started
    last would end alone on one core."""
    slow = Counter(item.path for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[item.path])


@pytest.fixture
def tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh SQLite MLflow store in ``tmp_path``; the fluent API points at it for the test."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()


HIGH_DUTY = ("2203", "2402", "6109")
SYNTH_SPLIT = SplitParams(
    train_start=date(2023, 1, 1),
    valid_start=date(2023, 10, 1),
    test_start=date(2024, 1, 1),
    test_end=date(2024, 7, 1),
)


def make_world(n: int = 6000, seed: int = 0) -> dict[str, pd.DataFrame]:
    """A tiny customs world for the ``revenue`` area with a learnable signal.

    ``f_signal`` drives the true probability; high-duty HS codes add to it (the legacy rule sees
    only those). 25% of items are controlled (two thirds targeted by the rule, the rest at
    random, control kind ``random``); results are known 30 days after acceptance.
    """
    rng = np.random.default_rng(seed)
    days = (pd.Timestamp("2024-07-01") - pd.Timestamp("2023-01-01")).days
    accepted = pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, days, n), unit="D")
    hs = np.where(rng.random(n) < 0.3, rng.choice(HIGH_DUTY, n), "847130")
    f_signal = rng.normal(size=n)
    f_noise = rng.normal(size=n)
    value = rng.lognormal(8, 1, n)
    high = np.isin(hs, HIGH_DUTY)
    logit = -3.2 + 1.8 * f_signal + 1.0 * high
    true_prob = 1 / (1 + np.exp(-logit))
    offence = rng.random(n) < true_prob
    evaded = np.where(offence, value * rng.uniform(0.05, 0.3, n), 0.0)
    ids = np.array([f"D{i:06d}" for i in range(n)])

    declarations = pd.DataFrame(
        {
            "declaration_id": ids,
            "item_no": np.ones(n, dtype="int64"),
            "accepted_date": accepted,
            "hs_code": hs,
            "origin_country": rng.choice(["CN", "DE", "US"], n),
            "preference_claim": rng.random(n) < 0.2,
            "cif_value": value,
        }
    )
    features = pd.DataFrame(
        {
            "declaration_id": ids,
            "item_no": np.ones(n, dtype="int64"),
            "accepted_date": accepted,
            "f_signal": f_signal,
            "f_noise": f_noise,
            "f_high_duty": high.astype("float64"),
            "f_log_value": np.log(value),
            "ctx_peer_count": rng.integers(0, 100, n),
        }
    )
    targeted = (high & (rng.random(n) < 0.5)) | (rng.random(n) < 0.05)
    random_ctl = ~targeted & (rng.random(n) < 0.08)
    controlled = targeted | random_ctl
    outcomes = pd.DataFrame(
        {
            "declaration_id": ids[controlled],
            "item_no": np.ones(controlled.sum(), dtype="int64"),
            "control_kind": np.where(random_ctl, "random", "physical")[controlled],
            "result_date": (accepted + pd.Timedelta(days=30))[controlled],
            "risk_area": pd.array(np.where(offence, "revenue", None)[controlled], dtype="string"),
            "offence_found": offence[controlled],
            "offence_code": pd.array([None] * int(controlled.sum()), dtype="string"),
            "additional_duty": evaded[controlled],
            "quantity_seized": np.zeros(controlled.sum()),
        }
    )
    truth = pd.DataFrame(
        {
            "declaration_id": ids,
            "item_no": np.ones(n, dtype="int64"),
            "risk_area": "revenue",
            "offence": offence,
            "evaded_duty": evaded,
            "true_prob": true_prob,
        }
    )
    return {
        "declarations": declarations,
        "features": features,
        "outcomes": outcomes,
        "truth": truth,
    }


@pytest.fixture(scope="session")
def world() -> dict[str, pd.DataFrame]:
    """The synthetic world (read-only: copy before changing a frame)."""
    return make_world()


@pytest.fixture
def revenue_spec() -> AreaSpec:
    return AreaSpec(
        name="revenue",
        title="Revenue",
        positive="an undervaluation or misclassification found by a control",
        detectable_by=["physical", "random"],
        inspection_rates=[0.01, 0.02, 0.05, 0.1],
        operating_rate=0.05,
        capacity=100,
        legacy_rules=[Rule(name="high duty", when={"hs_code": list(HIGH_DUTY)}, weight=1.0)],
    )


@pytest.fixture
def params() -> Params:
    return Params(
        split=SYNTH_SPLIT,
        train=TrainParams(
            num_boost_round=200, early_stopping_rounds=20, num_threads=1, learning_rate=0.1
        ),
    )


@pytest.fixture
def world_root(tmp_path: Path, world: dict[str, pd.DataFrame]) -> Path:
    """A repository root with the world's files where the stages read them."""
    root = tmp_path / "repo"
    (root / "data/interim").mkdir(parents=True)
    write_partitioned(world["features"], root / "data/features")
    write_interim(
        root / "data/interim",
        {t: world[t] for t in ("declarations", "outcomes", "truth")},
    )
    return root


DEFAULT_URL = "postgresql+psycopg://riskml:riskml@127.0.0.1:5432/riskml_test"


@pytest.fixture(scope="module")
def pg_url():
    """A fresh PostgreSQL feedback database per module (its tables dropped before and after; a
    schema of its own per parallel test worker): ``RISKML_TEST_POSTGRES_URL``, which `.ci/run`
    sets after starting Debian's cluster; skips, saying why, when no server answers (fails with
    ``RISKML_REQUIRE_POSTGRES``)."""
    url = os.environ.get("RISKML_TEST_POSTGRES_URL", DEFAULT_URL)
    shown = url.split("@")[-1]
    engine = create_engine(url)
    # parallel test workers (pytest-xdist, `make test`) share the database: each gets a schema
    # of its own, so that one module's drop_all never removes another's tables
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            if worker:
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "riskml_{worker}"'))
                conn.commit()
    except Exception as exc:  # no server, no role, no database
        why = f"no PostgreSQL server answers at {shown} ({type(exc).__name__})"
        if os.environ.get("RISKML_REQUIRE_POSTGRES"):
            pytest.fail(f"{why}; .ci/run should have started it")
        pytest.skip(
            f"{why}; `bash .ci/run` starts Debian's cluster, or set RISKML_TEST_POSTGRES_URL"
        )
    if worker:
        engine.dispose()
        search_path = {"options": f"-csearch_path=riskml_{worker}"}
        url = make_url(url).update_query_dict(search_path).render_as_string(hide_password=False)
        engine = create_engine(url)
    _Base.metadata.drop_all(engine)  # a fresh store each run
    yield url
    _Base.metadata.drop_all(engine)
    engine.dispose()
