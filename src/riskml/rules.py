"""Transparent targeting rules: conditions on declaration fields, as legacy systems use them.

The legacy-rule baseline of the evaluation and the simulated legacy control system both score
declarations with :func:`rule_score`, so the baseline is exactly the system that made the labels.

A condition never holds on a missing value unless its list names ``None`` (YAML ``null``): "no
value recorded" is then one of the values it accepts, as in revenue's goods profiles
(``preference_claim: [false, null]``: at the standard rate, or no claim recorded). A contract
column absent from the data counts as missing on every row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from riskml.config import Rule
from riskml.contract import RiskmlError, column_names

#: Up to this many rows, text conditions are tested value by value (a scored declaration or a
#: few): the same result without the fixed cost of pandas' string methods.
SMALL_BATCH = 64


def rule_mask(declarations: pd.DataFrame, rule: Rule) -> pd.Series:
    """Boolean Series: the rows on which every condition of ``rule`` holds."""
    return pd.Series(rule_masks(declarations, [rule])[0], index=declarations.index, name=rule.name)


def rule_masks(declarations: pd.DataFrame, rules: list[Rule]) -> list[np.ndarray]:
    """:func:`rule_mask` of each of ``rules``, as boolean arrays; a column the rules share is
    read once for them all (its values once, for a few rows)."""
    columns: dict[str, tuple[pd.Series, list]] = {}
    out = []
    for rule in rules:
        mask = np.ones(len(declarations), dtype=bool)
        for column, values in rule.when.items():
            if column not in columns:
                columns[column] = (_column(declarations, column, rule), [])
            col, cells = columns[column]
            mask &= _condition(col, column, values, cells)
        out.append(mask)
    return out


_CONTRACT = frozenset(column_names("declarations"))


def _column(declarations: pd.DataFrame, column: str, rule: Rule) -> pd.Series:
    """The column a condition reads; a contract column the data lacks is missing on every row."""
    if column in declarations.columns:
        return declarations[column]
    if column in _CONTRACT:
        return pd.Series(pd.NA, index=declarations.index, dtype="object", name=column)
    raise RiskmlError(
        f"rule {rule.name!r}: condition on unknown column {column!r}; "
        "use a declarations column of the data contract"
    )


def _condition(col: pd.Series, column: str, values: list, cells: list) -> np.ndarray:
    """Where one condition holds: ``hs_code`` by prefix, other columns by value; on a missing
    value only when ``values`` lists ``None``. ``cells``: the column's values as text (None:
    missing) once read, for the conditions after this one on the same column (empty before)."""
    missing = any(v is None for v in values)
    values = [v for v in values if v is not None]
    text = isinstance(col.dtype, pd.StringDtype) and all(isinstance(v, str) for v in values)
    if len(col) <= SMALL_BATCH and (text or column == "hs_code"):
        if not cells:
            as_text = col if isinstance(col.dtype, pd.StringDtype) else col.astype("string")
            cells.append(as_text.to_numpy(dtype=object, na_value=None))
        if column == "hs_code":
            prefixes = tuple(str(v) for v in values)
            hits = [missing if c is None else c.startswith(prefixes) for c in cells[0]]
            return np.array(hits, bool)
        allowed = set(values)
        return np.array([missing if c is None else c in allowed for c in cells[0]], bool)
    if column == "hs_code":
        prefixes = tuple(str(v) for v in values)
        hit = col.astype("string").str.startswith(prefixes).fillna(False).to_numpy(bool)
    else:
        hit = col.isin(values).fillna(False).to_numpy(bool)
    # pandas' isin treats a listed None differently per dtype: missing values are matched here
    return hit | col.isna().to_numpy(bool) if missing else hit


def rule_score(declarations: pd.DataFrame, rules: list[Rule]) -> pd.Series:
    """Sum of the weights of the rules that fire on each row (0 when none fires)."""
    score = np.zeros(len(declarations), dtype=float)
    for rule in rules:
        score += rule.weight * rule_mask(declarations, rule).to_numpy(float)
    return pd.Series(score, index=declarations.index, name="rule_score")
