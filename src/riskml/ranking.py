"""The rank key: the one rule by which candidate lists, scores and promotion order items.

An area ranks by probability, or (``rank_by: expected_recovery``, revenue) by probability ×
predicted recovered duty ** ``recovery_exponent``; without a recovery model, by the ratio of
duty recovered to duty paid on past findings. Pure functions of arrays and frames (domain
layer); :class:`riskml.area_model.AreaModel` applies them with its own parameters.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from riskml.config import AreaSpec
from riskml.contract import KEY


def recovery_ratio(
    declarations: pd.DataFrame, outcomes: pd.DataFrame, area: str, *, known_before: pd.Timestamp
) -> float:
    """Recovered duty per unit of duty paid on the area's findings known before ``known_before``.

    A first, honest estimate of what an audit of an item recovers; 0 when nothing is known.
    """
    found = outcomes[
        outcomes["offence_found"].astype(bool)
        & (outcomes["risk_area"] == area)
        & (outcomes["result_date"] < known_before)
    ]
    if found.empty:
        return 0.0
    keys = found[KEY].drop_duplicates()
    # the declarations of the findings' declarations only, then the exact join: the same rows
    # in the same order as joining every declaration, without hashing the whole history's keys
    near = declarations["declaration_id"].isin(keys["declaration_id"]).to_numpy(bool)
    paid = keys.merge(declarations.loc[near, [*KEY, "duties_paid"]], on=KEY)
    total_paid = float(paid["duties_paid"].sum())
    recovered = float(found["additional_duty"].fillna(0).sum())
    return recovered / total_paid if total_paid > 0 else 0.0


#: Where an area's rank key comes from (see :func:`rank_columns`).
KEY_RECOVERY_MODEL = "recovery_model"
KEY_RECOVERY_RATIO = "recovery_ratio"
KEY_PROBABILITY = "probability"


def rank_columns(
    spec: AreaSpec,
    score: np.ndarray,
    *,
    model_recovery: np.ndarray | None,
    ratio: float,
    duties_paid: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """``(expected_recovery, rank_key, source)`` of scored rows: the one rule of the ranking key.

    ``expected_recovery`` is the recovery model's (``model_recovery``) when given, else
    ``score × ratio × duties_paid`` (0 without duties). The rank key is ``score`` unless
    ``spec.rank_by`` is ``expected_recovery``; then it is :func:`rank_key` of the model's
    expected recovery, or, without a model, of the ratio estimate (when ``ratio`` > 0), else
    ``score``. ``source`` says
    which: :data:`KEY_RECOVERY_MODEL`, :data:`KEY_RECOVERY_RATIO` or :data:`KEY_PROBABILITY`.
    """
    score = np.asarray(score, dtype="float64")
    if model_recovery is not None:
        expected = np.asarray(model_recovery, dtype="float64")
        source = KEY_RECOVERY_MODEL
    else:
        paid = np.zeros_like(score) if duties_paid is None else np.nan_to_num(duties_paid)
        expected = score * ratio * paid
        source = KEY_RECOVERY_RATIO if ratio > 0 else KEY_PROBABILITY
    if spec.rank_by != "expected_recovery":
        source = KEY_PROBABILITY
    if source == KEY_PROBABILITY:
        return expected, score, source
    return expected, rank_key(score, expected, spec.recovery_exponent), source


def rank_key(score: np.ndarray, expected: np.ndarray, exponent: float) -> np.ndarray:
    """The list key of an area ranked by recovery: ``probability × recovered duty ** exponent``,
    from the probability and the expected recovery (``probability × recovered duty``).

    ``exponent`` 1 is the expected recovery itself (the most duty per audit), 0 the probability
    (the most hits); in between trades one for the other (``recovery_exponent`` of the area's
    spec, chosen on development windows).
    """
    score = np.clip(np.asarray(score, dtype="float64"), 0.0, None)
    expected = np.clip(np.asarray(expected, dtype="float64"), 0.0, None)
    if exponent >= 1.0:
        return expected
    # p × (E / p) ** w written without the division, so that p = 0 gives 0
    return np.power(score, 1.0 - exponent) * np.power(expected, exponent)


def rank_key_words(rank_by: str, exponent: float, source: str | None = None) -> str:
    """The rank key of :func:`rank_columns` in words, exactly as lists, case files and pages must
    name it (not "expected recovery" when the key is probability × duty ** 0.22). ``source``:
    where the key came from (:data:`KEY_RECOVERY_MODEL`, ...; default: the recovery model)."""
    if rank_by != "expected_recovery" or source == KEY_PROBABILITY:
        return "probability of an offence"
    amount = (
        "duties paid × recovery ratio of past findings"
        if source == KEY_RECOVERY_RATIO
        else "predicted recovered duty"
    )
    if exponent >= 1.0:
        return f"expected recovery (probability × {amount})"
    if exponent <= 0.0:
        return "probability of an offence"
    return f"probability × ({amount})^{exponent:g}"
