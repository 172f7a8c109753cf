"""Rule profiles and watch lists beside the models, as in the WCO Cargo Targeting System.

A **rule** is a set of conditions on declaration fields (every condition must hold; a list is a
set of values; ``hs_code`` values are prefixes). A **watch list** names values of one field
(importers, suppliers, declarants, HS codes by prefix, or routes written ``origin>departure``).
Each one either ``select`` s the declarations it matches (they enter the list before the model's
picks) or ``flag`` s them (the flag is shown on any candidate it matches). Both apply to the areas
they name (all areas when ``areas`` is empty). The file is YAML
(``pipelines/rules/watchlists.yaml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import ValidationError, field_validator

from riskml.config import Rule, _explain, _read_yaml, _Section
from riskml.contract import KEY, RISK_AREAS, RiskmlError
from riskml.rules import SMALL_BATCH, rule_mask, rule_masks

HIT_COLUMNS = [*KEY, "kind", "name", "action"]
WATCH_FIELDS = ("importer_id", "supplier_id", "declarant_id", "hs_code", "route", "origin_country")


class _Targeted(_Section):
    name: str
    areas: list[str] = []
    action: Literal["select", "flag"] = "flag"

    @field_validator("areas")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = sorted(set(v) - set(RISK_AREAS))
        if bad:
            raise ValueError(f"unknown risk area(s) {bad}; allowed: {', '.join(RISK_AREAS)}")
        return v

    def applies_to(self, area: str) -> bool:
        """True when the entry covers ``area``."""
        return not self.areas or area in self.areas


class TargetRule(_Targeted):
    """Conditions on declaration fields (AND of the fields; a value list is an OR)."""

    when: dict[str, list[Any]]


class WatchList(_Targeted):
    """Values of one declaration field to watch."""

    field: Literal[WATCH_FIELDS]  # type: ignore[valid-type]
    values: list[str]


class RuleProfile(_Section):
    """The whole rule-profile file."""

    rules: list[TargetRule] = []
    watchlists: list[WatchList] = []


def load_profile(path: str | Path) -> RuleProfile:
    """Read and validate the rule profiles and watch lists; a missing file is an empty profile."""
    path = Path(path)
    if not path.exists():
        return RuleProfile()
    try:
        return RuleProfile.model_validate(_read_yaml(path))
    except ValidationError as exc:
        raise _explain(path, exc) from exc


def _route(declarations: pd.DataFrame) -> pd.Series:
    return (
        declarations["origin_country"].astype("string").fillna("")
        + ">"
        + declarations["departure_country"].astype("string").fillna("")
    )


def watch_mask(declarations: pd.DataFrame, watch: WatchList) -> np.ndarray:
    """Boolean array: the rows whose ``watch.field`` is on the list (HS codes by prefix)."""
    if len(declarations) <= SMALL_BATCH and (
        watch.field == "route" or watch.field in declarations.columns
    ):
        return _watch_cells(declarations, watch)
    if watch.field == "route":
        col = _route(declarations)
    elif watch.field in declarations.columns:
        col = declarations[watch.field].astype("string")
    else:
        raise RiskmlError(
            f"watch list {watch.name!r}: field {watch.field!r} is not in the declarations; "
            "use a declarations column of the data contract"
        )
    if watch.field == "hs_code":
        return col.str.startswith(tuple(watch.values)).fillna(False).to_numpy(bool)
    return col.isin(watch.values).fillna(False).to_numpy(bool)


def _cells(declarations: pd.DataFrame, column: str) -> list[Any]:
    col = declarations[column]
    if not isinstance(col.dtype, pd.StringDtype):
        col = col.astype("string")
    return col.to_numpy(dtype=object, na_value=None).tolist()


def _watch_cells(declarations: pd.DataFrame, watch: WatchList) -> np.ndarray:
    """:func:`watch_mask` of a few rows, value by value (the same matches)."""
    if watch.field == "route":
        origin = _cells(declarations, "origin_country")
        departure = _cells(declarations, "departure_country")
        text = [f"{o or ''}>{d or ''}" for o, d in zip(origin, departure, strict=True)]
    else:
        text = _cells(declarations, watch.field)
    if watch.field == "hs_code":
        prefixes = tuple(watch.values)
        return np.array([t is not None and t.startswith(prefixes) for t in text], dtype=bool)
    listed = set(watch.values)
    return np.array([t is not None and t in listed for t in text], dtype=bool)


def profile_hits(declarations: pd.DataFrame, profile: RuleProfile, area: str) -> pd.DataFrame:
    """One row per (item, rule or list) that fires for ``area``: KEY, kind (``rule`` or
    ``watchlist``), name, action (``select`` or ``flag``)."""
    parts = []
    for rule in profile.rules:
        if rule.applies_to(area):
            mask = rule_mask(declarations, Rule(name=rule.name, when=rule.when)).to_numpy()
            parts.append(_hits(declarations, mask, "rule", rule.name, rule.action))
    for watch in profile.watchlists:
        if watch.applies_to(area):
            mask = watch_mask(declarations, watch)
            parts.append(_hits(declarations, mask, "watchlist", watch.name, watch.action))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in HIT_COLUMNS})
    return pd.concat(parts, ignore_index=True)


def profile_masks(
    declarations: pd.DataFrame, profile: RuleProfile, areas: list[str]
) -> list[tuple[TargetRule | WatchList, np.ndarray]]:
    """Each rule and watch list of ``profile`` that applies to one of ``areas`` (rules first,
    in file order, as :func:`profile_hits` lists them) with the rows it matches: matched once
    for all the areas."""
    rules = [r for r in profile.rules if any(r.applies_to(a) for a in areas)]
    matched = rule_masks(declarations, [Rule(name=r.name, when=r.when) for r in rules])
    masks: list[tuple[TargetRule | WatchList, np.ndarray]] = list(zip(rules, matched, strict=True))
    for watch in profile.watchlists:
        if any(watch.applies_to(a) for a in areas):
            masks.append((watch, watch_mask(declarations, watch)))
    return masks


def hit_names(
    masks: list[tuple[TargetRule | WatchList, np.ndarray]],
    area: str,
    action: str,
    n_rows: int,
    *,
    item: np.ndarray | None = None,
) -> np.ndarray:
    """Per row, the names of the entries of ``masks`` (:func:`profile_masks`) for ``area`` with
    ``action`` that match it, each once, in profile order, ``"; "``-joined ("" when none): the
    ``fired`` (select) and ``flags`` (flag) columns of a score. ``item``: each row's item code
    when rows may repeat an item (a repeated item gets the names of all its rows)."""
    chosen = [(e.name, m) for e, m in masks if e.action == action and e.applies_to(area)]
    out = np.full(n_rows, "", dtype=object)
    if not chosen:
        return out
    hit = np.column_stack([m for _, m in chosen])
    if item is not None:  # every row of an item answers for the item
        per_item = np.zeros((int(item.max(initial=-1)) + 1, hit.shape[1]), dtype=bool)
        np.logical_or.at(per_item, item, hit)
        hit = per_item[item]
    names = [name for name, _ in chosen]
    for i in np.flatnonzero(hit.any(axis=1)).tolist():
        out[i] = "; ".join(dict.fromkeys(n for n, h in zip(names, hit[i], strict=True) if h))
    return out


def _hits(declarations: pd.DataFrame, mask: np.ndarray, kind: str, name: str, action: str):
    rows = declarations.loc[mask, KEY].reset_index(drop=True)
    return rows.assign(kind=kind, name=name, action=action)
