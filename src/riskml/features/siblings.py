"""The trace of a misclassification: goods that fit a dearer code of their heading better.

A misclassified item declares a code of its HS heading with a lower duty rate than the code the
goods belong to. The goods keep their own value and mass per unit, so they look unlike the
declared code's usual items and like a dearer sibling's.

For a row of month *m*, each HS6 code's peers are the declarations of months *m - R* to *m - 1*
of every origin (``R = reference_months``): the median and MAD of the log unit value per quantity
unit and of the log mass per quantity unit. A code needs ``min_reference_count`` peers with a
unit value and a standard duty rate (:func:`riskml.features.tariff.standard_modes`). For each
dearer sibling of the declared code (same heading, higher standard rate), the row's
log-likelihood ratio of the two codes' robust normal models (each z clipped at :data:`Z_CLIP`):

* ``sibling_fit``: the largest ratio (positive: a dearer code fits the goods better);
* ``sibling_rate_gap``: that sibling's standard rate minus the declared code's.

Both are NaN when the declared code has no reference or no dearer sibling with one, or the row
has neither value (no quantity). The ``ctx_sibling_hs6``, ``ctx_sibling_rate`` and
``ctx_sibling_word`` columns name the sibling and say "better" or "less well" for the reasons.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pandas as pd

from riskml.features.context import hs6_text
from riskml.features.prepare import Prepared
from riskml.features.reference import MAD_TO_SD, MIN_SCALE, window_stats
from riskml.features.tariff import standard_modes

#: A robust z beyond this counts as this far: one wild value does not decide the ratio.
Z_CLIP = 6.0

#: One month's (code, dearer sibling) pairs, column by column (:func:`sibling_pairs`).
Pairs = dict[str, np.ndarray]

#: The two log values compared, per row: (unit value per quantity unit, mass per quantity unit).
COLUMNS = ("uv_q_log", "kg_q_log")


def sibling_values(uv: pd.DataFrame) -> pd.DataFrame:
    """The log unit value and the log mass per quantity unit of each row of ``uv`` (the frame
    of :func:`riskml.features.row.unit_values`)."""
    return pd.DataFrame(
        {
            "uv_q_log": uv["uv_q_log"].to_numpy(np.float64),
            "kg_q_log": (uv["uv_q_log"] - uv["uv_kg_log"]).to_numpy(np.float64),
        }
    )


def sibling_pairs(
    groups: np.ndarray,
    values: pd.DataFrame,
    headings: np.ndarray,
    standard: pd.Series,
    min_count: int,
) -> Pairs:
    """The (code, dearer sibling) pairs of one month with both codes' reference.

    ``groups``: the HS6 code of each row of the month's window; ``values``: their
    :func:`sibling_values`; ``headings``: the heading of each HS6 code (by code); ``standard``:
    each code's standard rate (indexed by code). Arrays with one value per pair, sorted by
    ``code``: ``code``, ``sibling``, ``gap`` (the rate difference), ``rate_s`` (the sibling's
    rate) and each code's median and scale of both columns (``m0``, ``s0``, ``m0_s``, ...).
    """
    n_codes = len(headings)
    median, mad, count = window_stats(groups, values, n_codes)
    rate = standard.reindex(np.arange(n_codes)).to_numpy(np.float64)
    ok = np.flatnonzero((count[:, 0] >= min_count) & ~np.isnan(rate))
    scale = np.maximum(MAD_TO_SD * np.nan_to_num(mad, nan=0.0), MIN_SCALE)
    table = pd.DataFrame(
        {
            "code": ok,
            "heading": headings[ok],
            "rate": rate[ok],
            "m0": median[ok, 0],
            "m1": median[ok, 1],
            "s0": scale[ok, 0],
            "s1": scale[ok, 1],
        }
    )
    pairs = table.merge(table, on="heading", suffixes=("", "_s"))
    pairs = pairs[pairs["rate_s"] > pairs["rate"]]
    pairs = pairs.iloc[np.argsort(pairs["code"].to_numpy(), kind="stable")]
    return {
        "code": pairs["code"].to_numpy(np.int64),
        "sibling": pairs["code_s"].to_numpy(np.int64),
        "gap": (pairs["rate_s"] - pairs["rate"]).to_numpy(np.float64),
        "rate_s": pairs["rate_s"].to_numpy(np.float64),
        **{c: pairs[c].to_numpy(np.float64) for c in ("m0", "m1", "s0", "s1")},
        **{f"{c}_s": pairs[f"{c}_s"].to_numpy(np.float64) for c in ("m0", "m1", "s0", "s1")},
    }


def _log_likelihood(x: np.ndarray, median: np.ndarray, scale: np.ndarray) -> np.ndarray:
    z = np.clip((x - median) / scale, -Z_CLIP, Z_CLIP)
    return -0.5 * z**2 - np.log(scale)


def _fit(
    pairs_of: Callable[[int], Pairs],
    code: np.ndarray,
    month: np.ndarray,
    values: pd.DataFrame,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Per row: the features (``sibling_fit``, ``sibling_rate_gap``), the best sibling's code
    (-1: none) and its standard rate. ``pairs_of(m)``: the :func:`sibling_pairs` of month
    ``m``; ``code``: each row's HS6 code (in the pairs' code space, -1 missing)."""
    n = len(code)
    fit, gap, rate = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    best = np.full(n, -1, dtype=np.int64)
    x = values.to_numpy(np.float64)
    comparable = (code >= 0) & ~np.isnan(x).all(axis=1)
    for m in np.unique(month).tolist():
        rows = np.flatnonzero((month == m) & comparable)
        if len(rows) == 0:
            continue
        pairs = pairs_of(m)
        if len(pairs["code"]) == 0:
            continue
        # each row's pairs: the slice of its code in the pairs (sorted by code)
        lo = np.searchsorted(pairs["code"], code[rows], side="left")
        counts = np.searchsorted(pairs["code"], code[rows], side="right") - lo
        total = int(counts.sum())
        if total == 0:
            continue
        r = np.repeat(rows, counts)
        at = np.repeat(lo - (np.cumsum(counts) - counts), counts) + np.arange(total)
        llr = np.zeros(total)
        for j in range(len(COLUMNS)):
            xj = x[r, j]
            own = _log_likelihood(xj, pairs[f"m{j}"][at], pairs[f"s{j}"][at])
            sib = _log_likelihood(xj, pairs[f"m{j}_s"][at], pairs[f"s{j}_s"][at])
            # a missing value (no quantity) says nothing either way
            llr += np.nan_to_num(sib - own, nan=0.0)
        # per row its largest ratio (ties: the first pair)
        order = np.lexsort((-llr, r))
        first = order[np.r_[True, r[order][1:] != r[order][:-1]]]
        top, pick = r[first], at[first]
        fit[top] = llr[first]
        gap[top] = pairs["gap"][pick]
        rate[top] = pairs["rate_s"][pick]
        best[top] = pairs["sibling"][pick]
    features = {
        "sibling_fit": fit.astype(np.float32),
        "sibling_rate_gap": gap.astype(np.float32),
    }
    return features, best, rate


def _context(
    names: np.ndarray, best: np.ndarray, rate: np.ndarray, fit: np.ndarray
) -> pd.DataFrame:
    """The ``ctx_`` columns: the best sibling as ``6109.10`` text, its standard rate and
    whether it fits the goods better or less well than the declared code."""
    code = pd.Series(np.where(best >= 0, names[np.maximum(best, 0)], None), dtype="string")
    return pd.DataFrame(
        {
            "ctx_sibling_hs6": hs6_text(code),
            "ctx_sibling_rate": rate,
            "ctx_sibling_word": pd.Categorical(
                np.where(np.isnan(fit), None, np.where(fit > 0, "better", "less well")),
                categories=["better", "less well"],
            ),
        }
    )


class SiblingPairs:
    """The :func:`sibling_pairs` of each month over a pool of rows sorted by month (the
    history's declarations), computed once per month (thread-safe).

    ``codes``: each pool row's HS6 code; ``uv``: its
    :func:`riskml.features.row.unit_values`; ``names``: the HS6 of each code; ``standard(m)``: the
    standard rate of each code for rows of month ``m``."""

    def __init__(
        self,
        codes: np.ndarray,
        month: np.ndarray,
        uv: pd.DataFrame,
        names: np.ndarray,
        standard: Callable[[int], pd.Series],
        *,
        months: int,
        min_count: int,
    ) -> None:
        self.codes, self.month, self.uv = codes, month, uv
        self.names = names
        self.headings = np.array([str(v)[:4] for v in names], dtype=object)
        self.standard, self.months, self.min_count = standard, months, min_count
        self._cache: dict[int, Pairs] = {}
        self._lock = threading.Lock()

    def __call__(self, m: int) -> Pairs:
        with self._lock:
            return self._pairs(m)

    def _pairs(self, m: int) -> Pairs:
        if m not in self._cache:
            lo, hi = np.searchsorted(self.month, [m - self.months, m])
            window = np.arange(lo, hi)
            window = window[self.codes[window] >= 0]
            self._cache[m] = sibling_pairs(
                self.codes[window],
                sibling_values(self.uv.iloc[window]),
                self.headings,
                self.standard(m),
                self.min_count,
            )
        return self._cache[m]


def sibling_fit(
    pairs: SiblingPairs, code: np.ndarray, month: np.ndarray, values: pd.DataFrame
) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """The features and ``ctx_`` columns of rows (HS6 ``code`` in the pool's code space, month
    index, :func:`sibling_values`) against the pool's months."""
    features, best, rate = _fit(pairs, code, month, values)
    return features, _context(pairs.names, best, rate, features["sibling_fit"])


def code_names(code: np.ndarray, hs6: pd.Series) -> np.ndarray:
    """The HS6 of each code of ``code`` (the rows' codes of ``hs6``), indexed by code."""
    names = np.full(int(code.max(initial=-1)) + 1, "", dtype=object)
    keyed = code >= 0
    names[code[keyed]] = hs6.to_numpy(dtype=object, na_value="")[keyed]
    return names


def sibling_features(
    prep: Prepared, uv: pd.DataFrame, cells: pd.DataFrame, *, months: int, min_count: int
) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """The features and ``ctx_`` columns of every row of ``prep`` against the earlier rows
    (``uv``: the rows' :func:`riskml.features.row.unit_values`; ``cells``: their
    :func:`riskml.features.tariff.rate_cells`)."""
    code = prep.code("hs6")
    order = np.argsort(prep.month, kind="stable")
    pairs = SiblingPairs(
        code[order],
        prep.month[order],
        uv.iloc[order].reset_index(drop=True),
        code_names(code, prep.hs6),
        lambda m: standard_modes(cells, m, months),
        months=months,
        min_count=min_count,
    )
    return sibling_fit(pairs, code, prep.month, sibling_values(uv))
