"""Assessment of a scored window: populations, methods and their metrics (domain layer).

The pure side of evaluation, shared by the ``evaluate`` stage (the test window), the
``backtest`` (each window's model) and ``promote`` (champion against challenger): the scored
items joined to their legacy-rule score, label and truth (:func:`assemble_scores`), the
populations they are measured on (:func:`population_rows`: labelled, random control, truth),
the rankings compared (:func:`ranking_scores`: model, raw LightGBM, legacy rules, random,
oracle), each ranking of each population sorted once (:func:`assess`) and the metrics per
population, method and rate (:func:`evaluate_scores`, :func:`metrics_of`). No file, no
MLflow: each stage reads and writes its own datasets.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from riskml.config import AreaSpec
from riskml.contract import KEY, keyed
from riskml.metrics import Ranking
from riskml.ranking import rank_key
from riskml.rules import rule_score

LABELLED, RANDOM_CONTROL, TRUTH = "labelled", "random_control", "truth"
POPULATIONS: dict[str, str] = {
    LABELLED: "test-window items with a label once every outcome is known; chosen mostly by "
    "targeting, so biased towards what earlier targeting looked at",
    RANDOM_CONTROL: "test-window items labelled by a random control: the unbiased sample",
    TRUTH: "every test-window item, against the simulator's truth (simulated data only)",
}
METHODS: tuple[str, ...] = ("model", "raw_lightgbm", "legacy_rules", "random", "oracle")
#: Reason given when the outcomes carry no recovered amount (revenue share unavailable).
NO_RECOVERED = (
    "the outcomes carry no recovered amount (additional_duty missing or empty): revenue share "
    "is unavailable on labelled populations, not zero"
)

TRUTH_COLUMNS = ["offence", "evaded_duty", "true_prob"]


def rate_label(rate: float) -> str:
    """``0.05`` → ``"5%"``: the key of a rate in the metrics files."""
    return f"{rate * 100:g}%"


def _same_items(left: pd.DataFrame, right: pd.DataFrame) -> bool:
    """Whether ``right``'s rows are ``left``'s items, one for one in the same order."""
    if len(left) != len(right):
        return False
    items = left["item_no"].astype("int64").to_numpy()
    if not np.array_equal(items, right["item_no"].astype("int64").to_numpy()):
        return False
    same = (
        left["declaration_id"].astype("string").array
        == right["declaration_id"].astype("string").array
    )
    return bool(same.fillna(False).all())


def _join(left: pd.DataFrame, right: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``left`` with ``right``'s ``columns`` of the same item (NaN where it has none): the left
    merge on the key, or, when ``right`` holds ``left``'s items in the same order (the window's
    declarations and labels are in the features' order), the columns by position: the same
    frame, without hashing millions of string keys. The keys are unique (the contract)."""
    if _same_items(left, right):
        out = left.reset_index(drop=True)
        for col in columns:
            out[col] = right[col].set_axis(out.index)
        return out
    other = keyed(right[[*KEY, *columns]])
    return left.merge(other, on=KEY, how="left", validate="one_to_one")


def assemble_scores(
    scored: pd.DataFrame,
    declarations: pd.DataFrame,
    labels: pd.DataFrame,
    spec: AreaSpec,
    truth: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The scored test items with their legacy-rule score, label and (if given) truth.

    ``labels`` from :func:`riskml.labels.build_labels` with every outcome (no ``known_before``);
    ``truth`` in the contract's long form (filtered here to ``spec``'s area).
    """
    decl = declarations[KEY].assign(
        rule_score=rule_score(declarations, spec.legacy_rules).to_numpy()
    )
    out = _join(scored, decl, ["rule_score"])
    out = _join(out, labels, ["label", "control_kind", "recovered"])
    out["rule_score"] = out["rule_score"].fillna(0.0)
    out["recovered"] = out["recovered"].fillna(0.0).astype("float64")
    out["label"] = out["label"].astype("float64")
    out["control_kind"] = out["control_kind"].astype("string")
    if truth is not None:
        t = truth[truth["risk_area"] == spec.name]
        if len(t):
            out = _join(out, t, TRUTH_COLUMNS)
            out["offence"] = out["offence"].astype("boolean")
    return out


def _seed(seed: int, area: str) -> np.random.Generator:
    # The same seed and area give the same random baseline on every run and machine.
    return np.random.default_rng([seed, zlib.crc32(area.encode())])


def ranking_scores(scores: pd.DataFrame, *, seed: int, area: str) -> dict[str, np.ndarray]:
    """Score of each method per row: higher first. Rule ties broken by a seeded random order."""
    rng = _seed(seed, area)
    random_score = rng.random(len(scores))
    jitter = rng.random(len(scores))
    rank = np.empty(len(scores))
    rank[np.lexsort((jitter, scores["rule_score"].to_numpy(float)))] = np.arange(len(scores))
    out = {"model": scores["score"].to_numpy(float)}
    if "score_raw" in scores.columns:
        out["raw_lightgbm"] = scores["score_raw"].to_numpy(float)
    out |= {"legacy_rules": rank / max(len(scores), 1), "random": random_score}
    if "true_prob" in scores.columns:
        out["oracle"] = scores["true_prob"].fillna(0.0).to_numpy(float)
    return out


def population_rows(scores: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """For each population present: (row mask, labels, recoverable value)."""
    labelled = scores["label"].notna().to_numpy()
    random_ctl = labelled & (scores["control_kind"] == "random").fillna(False).to_numpy(bool)
    y = scores["label"].fillna(0).to_numpy(float)
    rec = scores["recovered"].to_numpy(float)
    pops = {LABELLED: (labelled, y, rec), RANDOM_CONTROL: (random_ctl, y, rec)}
    if "offence" in scores.columns and scores["offence"].notna().any():
        known = scores["offence"].notna().to_numpy(bool)
        offence = scores["offence"].fillna(False).to_numpy(float)
        evaded = scores["evaded_duty"].fillna(0.0).to_numpy(float)
        pops[TRUTH] = (known, offence, evaded)
    return pops


def recovered_available(outcomes: pd.DataFrame) -> bool:
    """True when the outcomes carry recovered amounts (``additional_duty`` with a value)."""
    return "additional_duty" in outcomes.columns and bool(outcomes["additional_duty"].notna().any())


@dataclass(frozen=True)
class PopulationRankings:
    """One population of the scored items: its size, positives and each method's ranking."""

    n: int
    positives: int
    prevalence: float | None = None
    rankings: dict[str, Ranking] = field(default_factory=dict)


@dataclass(frozen=True)
class Assessed:
    """Every method's ranking of every population, sorted once (:func:`assess`): the metrics at
    any rates (:func:`metrics_of`) and the precision-recall curves read them."""

    populations: dict[str, PopulationRankings]
    revenue_unavailable: str | None = None


def assess(
    scores: pd.DataFrame,
    spec: AreaSpec,
    *,
    seed: int,
    revenue_unavailable: str | None = None,
    methods: dict[str, np.ndarray] | None = None,
) -> Assessed:
    """Each method's ranking of each population of ``scores``, sorted once.

    ``methods``: the rankings (name → score per row); by default :func:`ranking_scores`. The
    ``oracle`` ranks the truth only. ``revenue_unavailable``: see :func:`evaluate_scores`.
    """
    if methods is None:
        methods = ranking_scores(scores, seed=seed, area=spec.name)
    pops: dict[str, PopulationRankings] = {}
    for pop, (mask, y, value) in population_rows(scores).items():
        n, positives = int(mask.sum()), int(y[mask].sum())
        if not n:
            pops[pop] = PopulationRankings(n, positives)
            continue
        no_value = revenue_unavailable is not None and pop != TRUTH
        v = None if no_value else value[mask]
        rankings = {
            method: Ranking(y[mask], score[mask], value=v)
            for method, score in methods.items()
            if method != "oracle" or pop == TRUTH
        }
        pops[pop] = PopulationRankings(n, positives, float(y[mask].mean()), rankings)
    return Assessed(pops, revenue_unavailable)


def metrics_of(assessed: Assessed, rates: list[float]) -> dict[str, Any]:
    """:func:`evaluate_scores`' metrics of the rankings ``assessed`` at ``rates``."""
    out: dict[str, Any] = {}
    for pop, prank in assessed.populations.items():
        block: dict[str, Any] = {
            "population": pop,
            "description": POPULATIONS[pop],
            "n": prank.n,
            "positives": prank.positives,
        }
        if not prank.n:
            block["note"] = "no item in this population: no metric"
            out[pop] = block
            continue
        block["prevalence"] = prank.prevalence
        no_value = assessed.revenue_unavailable is not None and pop != TRUTH
        if no_value:
            block["revenue_unavailable"] = assessed.revenue_unavailable
        block["methods"] = {}
        for method, ranking in prank.rankings.items():
            at = ranking.at_rates(rates)
            if no_value:
                for r in at.values():
                    r["revenue_share"] = r["revenue_share_normalised"] = None
            mblock: dict[str, Any] = {"average_precision": ranking.average_precision}
            if method == "random":
                mblock["expected_precision"] = ranking.prevalence
            mblock["rates"] = {rate_label(r): v for r, v in at.items()}
            block["methods"][method] = mblock
        out[pop] = block
    return out


def evaluate_scores(
    scores: pd.DataFrame,
    spec: AreaSpec,
    *,
    seed: int,
    rates: list[float] | None = None,
    revenue_unavailable: str | None = None,
    methods: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Metrics per population → method → rate (keys like ``"5%"``) → metric.

    Each population block says its population, description, ``n`` and ``positives``; a method
    block carries ``average_precision`` and ``rates``. The ``oracle`` method exists on the truth
    only; ``random`` also reports its expected precision (the prevalence).

    ``revenue_unavailable``: a reason (e.g. :data:`NO_RECOVERED`) why the labelled populations
    have no recoverable amount; their revenue shares are then ``None`` and the block says why
    (``revenue_unavailable``), rather than a misleading zero. The truth keeps its evaded duty.

    ``methods``: the rankings to measure (name → score per row); by default
    :func:`ranking_scores`. To measure the same rankings at other rates too, :func:`assess`
    them once and call :func:`metrics_of`.
    """
    assessed = assess(
        scores, spec, seed=seed, revenue_unavailable=revenue_unavailable, methods=methods
    )
    return metrics_of(assessed, list(rates or spec.inspection_rates))


#: Name of the block comparing the ranking keys of an area that ranks by expected recovery.
RANK_KEY_COMPARISON = "rank_key_comparison"
RANK_KEY_DESCRIPTION = (
    "test-window list ranked by probability (the model's score) vs by expected recovery "
    "(probability × recovered duty predicted by the area's recovery model) vs by the candidate "
    "lists' key (rank_key: probability × predicted recovered duty ** recovery_exponent); "
    "oracle: ranking by the simulator's true probability"
)


def rank_key_comparison(
    scores: pd.DataFrame,
    spec: AreaSpec,
    *,
    seed: int,
    revenue_unavailable: str | None = None,
) -> dict[str, Any] | None:
    """Precision, recall and revenue share at ``spec``'s inspection rates when the test items are
    ranked by ``probability`` (``score``) vs by ``expected_recovery`` vs by the lists' key
    ``rank_key`` (:func:`riskml.select.rank_key`; and the ``oracle`` on the truth), per
    population, in :func:`evaluate_scores`'s structure.

    ``None`` when ``spec`` does not rank by expected recovery; a block with ``available: false``
    and a note when ``scores`` has no recovery-model ``expected_recovery``.
    """
    if spec.rank_by != "expected_recovery":
        return None
    block: dict[str, Any] = {
        "description": RANK_KEY_DESCRIPTION,
        "rank_by": spec.rank_by,
        "recovery_exponent": spec.recovery_exponent,
        "operating_rate": rate_label(spec.operating_rate),
    }
    if "expected_recovery" not in scores.columns:
        block["available"] = False
        block["note"] = (
            f"no recovery model (models/{spec.name}/recovery.txt): the candidate lists fall "
            "back to probability × recovery ratio × duties paid; no comparison"
        )
        return block
    probability = scores["score"].to_numpy(float)
    expected = scores["expected_recovery"].to_numpy(float)
    methods = {
        "probability": probability,
        "expected_recovery": expected,
        "rank_key": rank_key(probability, expected, spec.recovery_exponent),
    }
    if "true_prob" in scores.columns:
        methods["oracle"] = scores["true_prob"].fillna(0.0).to_numpy(float)
    block["available"] = True
    block["populations"] = evaluate_scores(
        scores, spec, seed=seed, revenue_unavailable=revenue_unavailable, methods=methods
    )
    return block
