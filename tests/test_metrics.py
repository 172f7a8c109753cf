"""riskml.metrics: known answers, validation messages, and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskml.contract import RiskmlError
from riskml.metrics import (
    InvalidMetricInput,
    Ranking,
    average_precision,
    bootstrap_precision_at_rate,
    metrics_at_rates,
    precision_at_rate,
    recall_at_rate,
    revenue_at_rate,
    selection_size,
    top_k_mask,
)

Y = np.array([1, 0, 1, 0, 0, 0, 0, 1, 0, 0])
S = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
V = np.array([100.0, 50.0, 10.0, 0.0, 0.0, 0.0, 0.0, 40.0, 0.0, 0.0])


def test_selection_size_is_ceiling_with_rounding_guard():
    assert selection_size(10, rate=0.1) == 1
    assert selection_size(10, rate=0.25) == 3
    assert selection_size(100, rate=0.07) == 7  # 0.07 * 100 = 7.000000000000001
    assert selection_size(3, rate=0.01) == 1
    assert selection_size(5, rate=1.0) == 5


def test_known_answers():
    assert precision_at_rate(Y, S, rate=0.2) == 0.5
    assert precision_at_rate(Y, S, rate=0.3) == pytest.approx(2 / 3)
    assert recall_at_rate(Y, S, rate=0.3) == pytest.approx(2 / 3)
    assert recall_at_rate(Y, S, rate=0.8) == 1.0
    # value of positives only: 100 + 10 + 40 = 150
    assert revenue_at_rate(Y, S, value=V, rate=0.2) == pytest.approx(100 / 150)
    assert revenue_at_rate(Y, S, value=V, rate=0.3) == pytest.approx(110 / 150)
    # without labels every value counts: 200 in all
    assert revenue_at_rate(None, S, value=V, rate=0.2) == pytest.approx(150 / 200)
    # precision: (1 + 2/3 + 3/8) / 3
    assert average_precision(Y, S) == pytest.approx((1 + 2 / 3 + 3 / 8) / 3)


def test_normalised_by_oracle():
    # k = 3, P = 3: an oracle finds 3, the ranking 2
    assert precision_at_rate(Y, S, rate=0.3, normalised=True) == pytest.approx(2 / 3)
    assert recall_at_rate(Y, S, rate=0.3, normalised=True) == pytest.approx(2 / 3)
    # k = 1: oracle takes 100 of 150 and the ranking does too
    assert revenue_at_rate(Y, S, value=V, rate=0.1, normalised=True) == 1.0
    # k = 2: oracle 140, ranking 100
    assert revenue_at_rate(Y, S, value=V, rate=0.2, normalised=True) == pytest.approx(100 / 140)
    assert precision_at_rate(Y, Y.astype(float), rate=0.3, normalised=True) == 1.0


def test_ties_broken_by_position():
    score = np.zeros(4)
    assert top_k_mask(score, rate=0.5).tolist() == [True, True, False, False]
    assert precision_at_rate([1, 1, 0, 0], score, rate=0.5) == 1.0
    assert precision_at_rate([0, 0, 1, 1], score, rate=0.5) == 0.0


def test_undefined_without_positives_is_nan():
    y = np.zeros(5)
    assert math.isnan(recall_at_rate(y, np.arange(5), rate=0.2))
    assert math.isnan(average_precision(y, np.arange(5)))
    assert precision_at_rate(y, np.arange(5), rate=0.2) == 0.0
    assert math.isnan(precision_at_rate(y, np.arange(5), rate=0.2, normalised=True))


def test_metrics_at_rates_block():
    m = metrics_at_rates(Y, S, rates=[0.1, 0.3], value=V)
    assert (m["n"], m["positives"], m["prevalence"]) == (10, 3, 0.3)
    assert list(m["rates"]) == [0.1, 0.3]
    block = m["rates"][0.3]
    assert block["n_selected"] == 3
    assert block["precision"] == pytest.approx(2 / 3)
    assert block["revenue_share"] == pytest.approx(110 / 150)
    assert "revenue_share" not in metrics_at_rates(Y, S, rates=[0.1])["rates"][0.1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"y_true": [1, np.nan, 0], "score": [1, 2, 3], "rate": 0.5}, "missing labels"),
        ({"y_true": [1, 2, 0], "score": [1, 2, 3], "rate": 0.5}, "only 0 and 1"),
        ({"y_true": [1, 0], "score": [1, 2, 3], "rate": 0.5}, "equal lengths"),
        ({"y_true": [1, 0], "score": [1, np.nan], "rate": 0.5}, "NaN or infinite"),
        ({"y_true": [1, 0], "score": [1, 2], "rate": 0.0}, "rate must be in (0, 1]"),
        ({"y_true": [1, 0], "score": [1, 2], "rate": 1.5}, "rate must be in (0, 1]"),
        ({"y_true": [], "score": [], "rate": 0.5}, "empty"),
        ({"y_true": [[1, 0]], "score": [[1, 2]], "rate": 0.5}, "one-dimensional"),
    ],
)
def test_validation_names_the_argument(kwargs, message):
    with pytest.raises(InvalidMetricInput, match=message.replace("(", r"\(").replace("]", r"\]")):
        precision_at_rate(kwargs.pop("y_true"), kwargs.pop("score"), **kwargs)


def test_error_is_both_value_error_and_project_error():
    with pytest.raises(ValueError):
        recall_at_rate([np.nan], [1.0], rate=0.5)
    with pytest.raises(RiskmlError):
        revenue_at_rate([1], [1.0], value=[-1.0], rate=0.5)


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        precision_at_rate(Y, S, 0.1)  # type: ignore[misc]


labels_and_scores = st.integers(min_value=1, max_value=60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
        st.lists(st.floats(0, 1, allow_nan=False), min_size=n, max_size=n),
        st.lists(st.floats(0, 1000, allow_nan=False), min_size=n, max_size=n),
    )
)
rate_pairs = st.tuples(st.floats(0.001, 1.0), st.floats(0.001, 1.0)).map(sorted)


@settings(max_examples=150, deadline=None)
@given(labels_and_scores, rate_pairs)
def test_recall_and_revenue_monotone_in_rate(data, rates):
    y, s, v = map(np.asarray, data)
    lo, hi = rates
    if y.sum() > 0:
        assert recall_at_rate(y, s, rate=lo) <= recall_at_rate(y, s, rate=hi) + 1e-12
    if (v * y).sum() > 0:
        lo_rev = revenue_at_rate(y, s, value=v, rate=lo)
        assert lo_rev <= revenue_at_rate(y, s, value=v, rate=hi) + 1e-12


@settings(max_examples=150, deadline=None)
@given(labels_and_scores, st.floats(0.001, 1.0))
def test_normalised_between_zero_and_one_and_oracle_is_one(data, rate):
    y, s, v = map(np.asarray, data)
    if y.sum() == 0:
        return
    for value in (
        precision_at_rate(y, s, rate=rate, normalised=True),
        recall_at_rate(y, s, rate=rate, normalised=True),
    ):
        assert 0.0 <= value <= 1.0 + 1e-12
    assert precision_at_rate(y, y.astype(float), rate=rate, normalised=True) == 1.0
    if (v * y).sum() > 0:
        rev = revenue_at_rate(y, s, value=v, rate=rate, normalised=True)
        assert 0.0 <= rev <= 1.0 + 1e-12
        assert revenue_at_rate(y, v * y, value=v, rate=rate, normalised=True) == 1.0


@settings(max_examples=100, deadline=None)
@given(labels_and_scores, st.floats(0.001, 1.0))
def test_precision_times_selected_equals_recall_times_positives(data, rate):
    y, s, _ = map(np.asarray, data)
    k = selection_size(len(y), rate=rate)
    hits = precision_at_rate(y, s, rate=rate) * k
    assert hits == pytest.approx(round(hits))
    if y.sum():
        assert recall_at_rate(y, s, rate=rate) * y.sum() == pytest.approx(hits)


@settings(max_examples=100, deadline=None)
@given(labels_and_scores, st.lists(st.floats(0.001, 1.0), min_size=1, max_size=4))
def test_metrics_at_rates_agrees_with_single_rate_functions(data, rates):
    y, s, v = map(np.asarray, data)
    m = metrics_at_rates(y, s, rates=rates, value=v)
    for rate in rates:
        block = m["rates"][float(rate)]
        expected = {
            "precision": precision_at_rate(y, s, rate=rate),
            "recall": recall_at_rate(y, s, rate=rate),
            "precision_normalised": precision_at_rate(y, s, rate=rate, normalised=True),
            "revenue_share": revenue_at_rate(y, s, value=v, rate=rate),
            "revenue_share_normalised": revenue_at_rate(y, s, value=v, rate=rate, normalised=True),
        }
        for key, want in expected.items():
            got = block[key]
            assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want), key


def _ranked_sample(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.beta(1, 12, n)
    return (rng.random(n) < p).astype(float), p + rng.normal(0, 0.02, n)


def test_bootstrap_interval_contains_estimate_and_narrows_with_more_data():
    y, s = _ranked_sample(2_000)
    small = bootstrap_precision_at_rate(y, s, rate=0.05, n_boot=400, seed=1)
    assert small["estimate"] == precision_at_rate(y, s, rate=0.05)
    assert small["low"] <= small["estimate"] <= small["high"]
    assert small["replicates"].shape == (400,)
    y, s = _ranked_sample(40_000)
    large = bootstrap_precision_at_rate(y, s, rate=0.05, n_boot=400, seed=1)
    assert large["low"] <= large["estimate"] <= large["high"]
    # sqrt(20) times more selected items: the interval is several times narrower.
    assert (large["high"] - large["low"]) < 0.5 * (small["high"] - small["low"])


def test_bootstrap_matches_a_plain_resampling_bootstrap():
    """The Poisson head-only shortcut agrees with resampling the items themselves."""
    y, s = _ranked_sample(3_000, seed=2)
    fast = bootstrap_precision_at_rate(y, s, rate=0.02, n_boot=1000, seed=3)
    rng = np.random.default_rng(4)
    plain = []
    for _ in range(1000):
        idx = rng.integers(0, y.size, y.size)
        plain.append(precision_at_rate(y[idx], s[idx], rate=0.02))
    low, high = np.quantile(plain, [0.025, 0.975])
    assert fast["low"] == pytest.approx(low, abs=0.03)
    assert fast["high"] == pytest.approx(high, abs=0.03)


def test_bootstrap_is_seeded_and_validates():
    y, s = _ranked_sample(1_000)
    a = bootstrap_precision_at_rate(y, s, rate=0.1, n_boot=50, seed=7)
    b = bootstrap_precision_at_rate(y, s, rate=0.1, n_boot=50, seed=7)
    np.testing.assert_array_equal(a["replicates"], b["replicates"])
    with pytest.raises(InvalidMetricInput, match="level"):
        bootstrap_precision_at_rate(y, s, rate=0.1, level=1.5)
    with pytest.raises(InvalidMetricInput, match="missing labels"):
        bootstrap_precision_at_rate([1.0, np.nan], [0.1, 0.2], rate=0.5)


# --- Ranking: one sort for the metrics at every rate, the average precision and the PR curve --


def _reference_metrics_at_rates(y, s, rates, v):
    """metrics_at_rates as written before the Ranking (session 12): a full sort of the gains for
    the oracle and scikit-learn's average precision."""
    from sklearn.metrics import average_precision_score

    order = np.argsort(-s, kind="stable")
    hits = np.cumsum(y[order])
    best_hits = np.minimum(np.arange(1, s.size + 1), y.sum())
    gain = v * y
    got = np.cumsum(gain[order])
    best = np.cumsum(np.sort(gain)[::-1])
    out = {}
    for rate in rates:
        k = selection_size(s.size, rate=rate)
        h = float(hits[k - 1])
        p = float(y.sum())
        out[float(rate)] = {
            "n_selected": k,
            "precision": h / k,
            "recall": h / p if p > 0 else math.nan,
            "precision_normalised": h / best_hits[k - 1] if best_hits[k - 1] > 0 else math.nan,
            "revenue_share": got[k - 1] / gain.sum() if gain.sum() > 0 else math.nan,
            "revenue_share_normalised": got[k - 1] / best[k - 1] if best[k - 1] > 0 else math.nan,
        }
    ap = float(average_precision_score(y, s)) if y.sum() else math.nan
    return out, ap


def _same(a, b):
    return (isinstance(a, float) and math.isnan(a) and math.isnan(b)) or a == b


@settings(max_examples=200, deadline=None)
@given(labels_and_scores, st.lists(st.floats(0.001, 1.0), min_size=1, max_size=6))
def test_ranking_gives_the_one_rate_at_a_time_figures_bit_for_bit(data, rates):
    """The Ranking (one sort, any rates) gives exactly what metrics_at_rates gave before it."""
    y, s, v = (np.asarray(x, dtype=float) for x in data)
    s = np.round(s, 1)  # ties
    want, want_ap = _reference_metrics_at_rates(y, s, rates, v)
    m = metrics_at_rates(y, s, rates=rates, value=v)
    assert _same(m["average_precision"], want_ap)
    assert _same(Ranking(y, s).average_precision, average_precision(y, s))
    for rate, block in want.items():
        assert list(m["rates"][rate]) == list(block)
        for key, value in block.items():
            assert _same(m["rates"][rate][key], value), (rate, key)


@pytest.mark.parametrize("kind", ["distinct", "rounded", "three_values", "signed_zeros"])
def test_ranking_precision_recall_curve_is_sklearns_bit_for_bit(kind):
    from sklearn.metrics import average_precision_score, precision_recall_curve

    rng = np.random.default_rng(7)
    for n in (1, 2, 17, 1_000, 50_000):
        p = rng.beta(1, 8, n)
        y = (rng.random(n) < p).astype(float)
        y[0] = 1.0  # at least one positive
        s = {
            "distinct": p,
            "rounded": np.round(p, 2),
            "three_values": rng.integers(0, 3, n).astype(float),
            "signed_zeros": np.where(rng.random(n) < 0.5, 0.0, -0.0),
        }[kind]
        ranking = Ranking(y, s)
        precision, recall, _ = precision_recall_curve(y, s)
        got_p, got_r = ranking.precision_recall_curve()
        np.testing.assert_array_equal(got_p, precision)
        np.testing.assert_array_equal(got_r, recall)
        assert ranking.average_precision == float(average_precision_score(y, s))
