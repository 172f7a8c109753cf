"""Targeting metrics at an inspection rate: precision, recall, revenue share, and oracle forms.

At an inspection rate ``rate`` the ``ceil(rate * n)`` items with the highest score are selected
(ties broken by position: the earlier item first, so results never depend on the sort
algorithm). The field reports, for a test period (see ``docs`` and the domain notes):

* precision@rate: offences among the selected / number selected;
* recall@rate: offences among the selected / all offences;
* revenue@rate: recoverable value among the selected / all recoverable value;
* the same *normalised*: divided by what an oracle ranking by the truth reaches at that rate.

Every function takes arrays and returns numbers; none reads files. Labels must be 0/1: an
unlabelled row (NaN) is not a negative, so it is rejected rather than silently counted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import cached_property

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import average_precision_score

from riskml.contract import RiskmlError

__all__ = [
    "InvalidMetricInput",
    "Ranking",
    "average_precision",
    "bootstrap_precision_at_rate",
    "metrics_at_rates",
    "precision_at_rate",
    "recall_at_rate",
    "revenue_at_rate",
    "selection_size",
    "top_k_mask",
]


class InvalidMetricInput(RiskmlError, ValueError):
    """Bad input to a metric: caught as a :class:`ValueError` or as a :class:`RiskmlError`."""


# --- validation --------------------------------------------------------------------------------


def _check_rate(rate: float) -> float:
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        raise InvalidMetricInput(f"rate must be a number in (0, 1], got {rate!r}") from None
    if not 0 < rate <= 1:
        raise InvalidMetricInput(f"rate must be in (0, 1] (a share of items), got {rate!r}")
    return rate


def _as_1d(x: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise InvalidMetricInput(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _check_score(score: ArrayLike, n: int | None = None) -> np.ndarray:
    s = _as_1d(score, "score")
    if s.size == 0:
        raise InvalidMetricInput("score is empty; a metric needs at least one item")
    if n is not None and s.size != n:
        raise InvalidMetricInput(f"score has {s.size} items but y_true has {n}; pass equal lengths")
    try:
        s = s.astype(float)
    except (TypeError, ValueError):
        raise InvalidMetricInput("score must be numeric") from None
    if not np.isfinite(s).all():
        raise InvalidMetricInput(
            f"score has {int((~np.isfinite(s)).sum())} NaN or infinite values; score every item"
        )
    return s


def _check_labels(y_true: ArrayLike) -> np.ndarray:
    y = _as_1d(y_true, "y_true")
    if y.dtype == object:
        y = np.array([np.nan if v is None else v for v in y], dtype=float)
    try:
        y = y.astype(float)
    except (TypeError, ValueError):
        raise InvalidMetricInput("y_true must be numeric or boolean labels 0/1") from None
    missing = int(np.isnan(y).sum())
    if missing:
        raise InvalidMetricInput(
            f"y_true has {missing} missing labels (NaN); an unlabelled item is not a negative: "
            "keep only labelled items (label 0 or 1) before computing metrics"
        )
    not_01 = (y != 0.0) & (y != 1.0)
    if not_01.any():  # np.unique of the offending values only: no sort of every label
        bad = np.unique(y[not_01])
        raise InvalidMetricInput(
            f"y_true must hold only 0 and 1 (or False/True), found {bad[:5].tolist()}"
        )
    return y


def _check_value(value: ArrayLike, n: int) -> np.ndarray:
    v = _as_1d(value, "value")
    if v.size != n:
        raise InvalidMetricInput(f"value has {v.size} items but score has {n}; pass equal lengths")
    try:
        v = v.astype(float)
    except (TypeError, ValueError):
        raise InvalidMetricInput("value must be numeric (recoverable amount per item)") from None
    if not np.isfinite(v).all() or (v < 0).any():
        raise InvalidMetricInput(
            "value must be finite and >= 0 (recoverable amount per item; 0 when none)"
        )
    return v


def _inputs(
    y_true: ArrayLike | None, score: ArrayLike, value: ArrayLike | None = None
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    y = None if y_true is None else _check_labels(y_true)
    s = _check_score(score, None if y is None else y.size)
    v = None if value is None else _check_value(value, s.size)
    return y, s, v


# --- selection ---------------------------------------------------------------------------------


def selection_size(n: int, *, rate: float) -> int:
    """Number of items inspected at ``rate`` among ``n``: ``ceil(rate * n)``, at least one.

    A rounding guard keeps ``0.07 * 100`` at 7 rather than 8.

    Examples
    --------
    >>> selection_size(1000, rate=0.01)
    10
    >>> selection_size(150, rate=0.01)
    2
    """
    rate = _check_rate(rate)
    if n < 1:
        raise InvalidMetricInput(f"n must be >= 1, got {n}")
    return max(1, min(n, math.ceil(rate * n - 1e-9)))


def _order(score: np.ndarray) -> np.ndarray:
    # Stable sort of the negated score: highest first, ties in original order.
    return np.argsort(-score, kind="stable")


def top_k_mask(score: ArrayLike, *, rate: float) -> np.ndarray:
    """Boolean mask of the items selected at ``rate``: the top ``ceil(rate * n)`` by score.

    Ties are broken by position (the earlier item first).

    Examples
    --------
    >>> top_k_mask([0.1, 0.9, 0.5, 0.9], rate=0.5).tolist()
    [False, True, False, True]
    """
    s = _check_score(score)
    k = selection_size(s.size, rate=rate)
    mask = np.zeros(s.size, dtype=bool)
    mask[_order(s)[:k]] = True
    return mask


def _oracle_hits(y: np.ndarray, k: int) -> float:
    return float(min(k, y.sum()))


def _oracle_value(gain: np.ndarray, k: int) -> float:
    return float(np.sort(gain)[::-1][:k].sum())


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else float("nan")


# --- metrics -----------------------------------------------------------------------------------


def precision_at_rate(
    y_true: ArrayLike, score: ArrayLike, *, rate: float, normalised: bool = False
) -> float:
    """Share of offences among the items selected at inspection rate ``rate``.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Labels 0/1 (or booleans). NaN (unlabelled) is rejected.
    score : array-like of shape (n,)
        Higher means more suspicious.
    rate : float in (0, 1]
        Share of items inspected; ``ceil(rate * n)`` are selected.
    normalised : bool, default=False
        Divide by the precision an oracle reaches at the same rate, ``min(k, P) / k``;
        NaN when there is no positive.

    Returns
    -------
    float

    Examples
    --------
    >>> precision_at_rate([1, 0, 1, 0], [0.9, 0.8, 0.1, 0.2], rate=0.5)
    0.5
    >>> precision_at_rate([1, 0, 0, 0], [0.9, 0.8, 0.1, 0.2], rate=0.5, normalised=True)
    1.0
    """
    y, s, _ = _inputs(y_true, score)
    k = selection_size(s.size, rate=rate)
    hits = float(y[_order(s)[:k]].sum())
    if normalised:
        return _ratio(hits, _oracle_hits(y, k))
    return hits / k


def recall_at_rate(
    y_true: ArrayLike, score: ArrayLike, *, rate: float, normalised: bool = False
) -> float:
    """Share of all offences that are among the items selected at inspection rate ``rate``.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Labels 0/1 (or booleans). NaN (unlabelled) is rejected.
    score : array-like of shape (n,)
        Higher means more suspicious.
    rate : float in (0, 1]
        Share of items inspected; ``ceil(rate * n)`` are selected.
    normalised : bool, default=False
        Divide by the recall an oracle reaches at the same rate, ``min(k, P) / P``.

    Returns
    -------
    float
        NaN when there is no positive (recall is undefined).

    Examples
    --------
    >>> recall_at_rate([1, 0, 1, 0], [0.9, 0.8, 0.1, 0.2], rate=0.5)
    0.5
    """
    y, s, _ = _inputs(y_true, score)
    k = selection_size(s.size, rate=rate)
    hits = float(y[_order(s)[:k]].sum())
    den = _oracle_hits(y, k) if normalised else float(y.sum())
    return _ratio(hits, den)


def revenue_at_rate(
    y_true: ArrayLike | None,
    score: ArrayLike,
    *,
    value: ArrayLike,
    rate: float,
    normalised: bool = False,
) -> float:
    """Share of the total recoverable value that lies among the items selected at ``rate``.

    Parameters
    ----------
    y_true : array-like of shape (n,) or None
        Labels 0/1: only the value of positives counts. None: every item's value counts (use
        when ``value`` is already zero on negatives, e.g. evaded duty from the truth).
    score : array-like of shape (n,)
        Higher means more suspicious.
    value : array-like of shape (n,)
        Recoverable amount per item, >= 0.
    rate : float in (0, 1]
        Share of items inspected; ``ceil(rate * n)`` are selected.
    normalised : bool, default=False
        Divide by the share an oracle ranking by value reaches at the same rate.

    Returns
    -------
    float
        NaN when the total recoverable value is zero.

    Examples
    --------
    >>> revenue_at_rate([1, 0, 1, 0], [0.9, 0.8, 0.1, 0.2], value=[30, 5, 10, 0], rate=0.5)
    0.75
    >>> revenue_at_rate(None, [0.1, 0.9], value=[3.0, 1.0], rate=0.5, normalised=True)
    0.3333333333333333
    """
    y, s, v = _inputs(y_true, score, value)
    gain = v if y is None else v * y
    k = selection_size(s.size, rate=rate)
    got = float(gain[_order(s)[:k]].sum())
    den = _oracle_value(gain, k) if normalised else float(gain.sum())
    return _ratio(got, den)


def average_precision(
    y_true: ArrayLike, score: ArrayLike, weight: ArrayLike | None = None
) -> float:
    """Average precision (area under the precision-recall step curve), NaN without positives;
    ``weight``: each item's weight (finite, >= 0), as LightGBM's ``average_precision`` metric
    weighs a weighted validation set.

    Wraps :func:`sklearn.metrics.average_precision_score` with this module's validation.

    Examples
    --------
    >>> average_precision([1, 0, 1, 0], [0.9, 0.8, 0.1, 0.2])
    0.75
    """
    y, s, w = _inputs(y_true, score, weight)
    if y.sum() == 0:
        return float("nan")
    return float(average_precision_score(y, s, sample_weight=w))


def metrics_at_rates(
    y_true: ArrayLike,
    score: ArrayLike,
    *,
    rates: Iterable[float],
    value: ArrayLike | None = None,
) -> dict:
    """All metrics of one ranking on one population, at each inspection rate.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Labels 0/1 (or booleans). NaN (unlabelled) is rejected.
    score : array-like of shape (n,)
        Higher means more suspicious.
    rates : iterable of float in (0, 1]
        Inspection rates.
    value : array-like of shape (n,), optional
        Recoverable amount per item; only the value of positives counts. Adds the revenue
        share and its normalised form.

    Returns
    -------
    dict
        ``n``, ``positives``, ``prevalence``, ``average_precision`` and ``rates``: for each
        rate (a float key) ``n_selected``, ``precision``, ``recall``, ``precision_normalised``
        (equal to the normalised recall) and, with ``value``, ``revenue_share`` and
        ``revenue_share_normalised``. Undefined values (no positive) are NaN.

    Examples
    --------
    >>> m = metrics_at_rates([1, 0, 1, 0], [0.9, 0.8, 0.1, 0.2], rates=[0.25, 0.5])
    >>> m["rates"][0.5]["precision"], m["rates"][0.25]["recall"]
    (0.5, 0.5)
    """
    rates = [_check_rate(r) for r in rates]
    if not rates:
        raise InvalidMetricInput("rates must hold at least one rate in (0, 1]")
    ranking = Ranking(y_true, score, value=value)
    return {
        "n": ranking.n,
        "positives": int(ranking.positives),
        "prevalence": ranking.prevalence,
        "average_precision": ranking.average_precision,
        "rates": ranking.at_rates(rates),
    }


class Ranking:
    """One ranking of one population, sorted once: its metrics at any inspection rates, its
    average precision and its precision-recall curve, with no further sort.

    The figures are those of :func:`metrics_at_rates`, :func:`average_precision` and
    :func:`sklearn.metrics.precision_recall_curve` on the same items, bit for bit: counts down
    the ranking are exact integers, so the tie groups' order (ties by position here, reversed
    position in scikit-learn) changes no figure.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Labels 0/1 (or booleans). NaN (unlabelled) is rejected.
    score : array-like of shape (n,)
        Higher means more suspicious.
    value : array-like of shape (n,), optional
        Recoverable amount per item; only the value of positives counts. Adds the revenue
        share and its normalised form to :meth:`at_rates`.

    Examples
    --------
    >>> r = Ranking([1, 0, 1, 0], [0.9, 0.8, 0.1, 0.2])
    >>> r.at_rates([0.5])[0.5]["precision"], r.average_precision
    (0.5, 0.75)
    """

    def __init__(self, y_true: ArrayLike, score: ArrayLike, *, value: ArrayLike | None = None):
        y, s, v = _inputs(y_true, score, value)
        order = _order(s)
        self.n = int(s.size)
        self.positives = float(y.sum())
        self.prevalence = float(y.mean())
        # hits down the ranking: exact integers
        self._hits = np.cumsum(y[order], dtype=np.int64)
        # the last item of each group of equal scores: the thresholds of the PR curve
        ranked = s[order]
        self._last_of_tie = np.append(ranked[1:] != ranked[:-1], True)
        self._value = v is not None
        if v is not None:
            gain = v * y
            self._got = np.cumsum(gain[order])
            self._gain_total = float(gain.sum())
            # the oracle's value: the largest gains first (zeros add nothing to the sums)
            self._best = np.cumsum(np.sort(gain[gain > 0])[::-1])

    def _best_value(self, k: int) -> float:
        if not self._best.size:
            return 0.0
        return float(self._best[min(k, self._best.size) - 1])

    def at_rates(self, rates: Iterable[float]) -> dict[float, dict]:
        """The metrics at each rate (a float key), as in :func:`metrics_at_rates`' ``rates``."""
        out: dict[float, dict] = {}
        for rate in rates:
            rate = _check_rate(rate)
            k = selection_size(self.n, rate=rate)
            h = float(self._hits[k - 1])
            block = {
                "n_selected": k,
                "precision": h / k,
                "recall": _ratio(h, self.positives),
                "precision_normalised": _ratio(h, float(min(k, self.positives))),
            }
            if self._value:
                got = float(self._got[k - 1])
                block["revenue_share"] = _ratio(got, self._gain_total)
                block["revenue_share_normalised"] = _ratio(got, self._best_value(k))
            out[rate] = block
        return out

    def precision_recall_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """``(precision, recall)`` as :func:`sklearn.metrics.precision_recall_curve` gives them
        (one point per distinct score, recall decreasing, ending at precision 1, recall 0)."""
        idx = np.flatnonzero(self._last_of_tie)
        tps = self._hits[idx].astype(np.float64)
        precision = tps / (1.0 + idx)  # tps + fps: the items down to the threshold
        recall = tps / tps[-1] if tps[-1] else np.ones(tps.shape)
        return np.concatenate((precision[::-1], [1.0])), np.concatenate((recall[::-1], [0.0]))

    @cached_property
    def average_precision(self) -> float:
        """Average precision (the step integral of the curve, as
        :func:`sklearn.metrics.average_precision_score`), NaN without positives."""
        if self.positives == 0:
            return float("nan")
        precision, recall = self.precision_recall_curve()
        return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))


# --- uncertainty -------------------------------------------------------------------------------


def bootstrap_precision_at_rate(
    y_true: ArrayLike,
    score: ArrayLike,
    *,
    rate: float,
    n_boot: int = 500,
    level: float = 0.95,
    seed: int = 0,
    chunk: int = 100,
) -> dict:
    """Percentile bootstrap confidence interval of :func:`precision_at_rate`.

    Items are resampled with replacement (Poisson bootstrap: each item is drawn a Poisson(1)
    number of times, which is the multinomial bootstrap for large ``n`` and needs a single sort
    of the scores). In each resample the ``ceil(rate * n*)`` best items are selected, ``n*`` the
    resample size, with the same tie rule as :func:`top_k_mask`.

    Parameters
    ----------
    y_true, score : array-like of shape (n,)
        Labels 0/1 and scores, as for :func:`precision_at_rate`.
    rate : float in (0, 1]
        Inspection rate.
    n_boot : int, default=500
        Number of resamples.
    level : float in (0, 1), default=0.95
        Coverage of the interval.
    seed : int, default=0
        Seed of the resampling.
    chunk : int, default=100
        Resamples drawn at once (memory: ``chunk * n`` small integers).

    Returns
    -------
    dict
        ``estimate`` (on the data as given), ``low``, ``high``, ``level``, ``n_boot``,
        ``replicates`` (array of the ``n_boot`` resampled precisions, for averaging across
        windows).

    Examples
    --------
    >>> ci = bootstrap_precision_at_rate([1, 0] * 500, [0.9, 0.1] * 500, rate=0.5, n_boot=50)
    >>> ci["low"] <= ci["estimate"] <= ci["high"]
    True
    """
    rate = _check_rate(rate)
    if not 0 < level < 1:
        raise InvalidMetricInput(f"level must be in (0, 1), got {level!r}")
    if n_boot < 1:
        raise InvalidMetricInput(f"n_boot must be >= 1, got {n_boot!r}")
    y, s, _ = _inputs(y_true, score)
    y_sorted = y[_order(s)]
    rng = np.random.default_rng(seed)
    reps = [
        _boot_chunk(y_sorted, rate, min(chunk, n_boot - start), rng)
        for start in range(0, n_boot, chunk)
    ]
    replicates = np.concatenate(reps)
    alpha = (1 - level) / 2
    low, high = np.quantile(replicates, [alpha, 1 - alpha])
    return {
        "estimate": precision_at_rate(y, s, rate=rate),
        "low": float(low),
        "high": float(high),
        "level": level,
        "n_boot": int(n_boot),
        "replicates": replicates,
    }


def _boot_chunk(y_sorted: np.ndarray, rate: float, b: int, rng: np.random.Generator) -> np.ndarray:
    """``b`` Poisson-bootstrap precisions at ``rate`` of labels sorted by decreasing score."""
    n = y_sorted.size
    # Only the head of the ranking can be selected: draw its counts item by item and the tail's
    # total at once (a sum of Poisson(1) draws is Poisson). The head is doubled in the rare case
    # where a resample's selection does not end inside it.
    head = min(n, math.ceil(2 * rate * n) + 200)
    while True:
        counts = rng.poisson(1.0, size=(b, head)).astype(np.int32)
        total = counts.sum(axis=1) + rng.poisson(float(n - head), size=b)
        k = np.maximum(1, np.ceil(rate * total - 1e-9)).astype(np.int64)
        cum = np.cumsum(counts, axis=1)
        if head == n or (cum[:, -1] >= k).all():
            break
        head = min(n, head * 2)
    # Copies of the item that crosses k are taken only up to k (ties by position).
    taken = np.clip(k[:, None] - (cum - counts), 0, counts)
    return (taken * y_sorted[None, :head]).sum(axis=1) / k
