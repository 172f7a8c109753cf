"""Targeting-profile features: each area's legacy rules as a model input.

A rule is a condition on the declaration's own fields (HS heading, origin, transport mode...), so
its score is known on the day of the declaration and obeys the causality rule. For rare areas,
where labels are few, the profile is the prior the model refines with histories.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from riskml.config import AreaSpec
from riskml.features.catalogue import AREA_WORDS, FeatureInfo
from riskml.rules import rule_masks


def rule_features(
    declarations: pd.DataFrame, specs: Mapping[str, AreaSpec], *, context: bool = True
) -> tuple[dict[str, np.ndarray], pd.DataFrame | None]:
    """Per area: ``rule_<area>`` (sum of the weights of the rules that fire) and the context
    column ``ctx_rules_<area>`` (the names of those rules, joined by ' and '); ``context=False``:
    no context (None)."""
    values: dict[str, np.ndarray] = {}
    sentences = {}
    # every area's rules matched in one go: the columns they share are read once
    hits = iter(rule_masks(declarations, [r for s in specs.values() for r in s.legacy_rules]))
    for area, spec in specs.items():
        score = np.zeros(len(declarations), dtype=np.float32)
        fired = np.zeros(len(declarations), dtype=np.int64)  # bit i: rule i fires
        for i, rule in enumerate(spec.legacy_rules):
            hit = next(hits)
            score += np.float32(rule.weight) * hit
            fired |= hit.astype(np.int64) << i
        values[f"rule_{area}"] = score
        if not context:
            continue
        # One sentence per combination of rules that occurs, taken by code (no per-row strings).
        combos, codes = np.unique(fired, return_inverse=True)
        labels = [
            " and ".join(r.name for i, r in enumerate(spec.legacy_rules) if combo >> i & 1)
            for combo in combos
        ]
        sentences[f"ctx_rules_{area}"] = pd.array(
            np.array(labels, dtype=object)[codes], dtype="string"
        )
    return values, pd.DataFrame(sentences, index=declarations.index) if context else None


def rule_catalogue(specs: Mapping[str, AreaSpec]) -> dict[str, FeatureInfo]:
    """Catalogue entries of the targeting-profile features of ``specs``."""
    return {
        f"rule_{area}": FeatureInfo(
            name=f"rule_{area}",
            group="targeting profile",
            description=f"weight of the {AREA_WORDS.get(area, area)} targeting profiles that match",
            template=f"matches the {AREA_WORDS.get(area, area)} targeting profile: "
            f"{{ctx_rules_{area}}}",
            template_zero=f"matches no {AREA_WORDS.get(area, area)} targeting profile",
        )
        for area in specs
    }
