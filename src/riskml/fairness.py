"""Fairness guard: features that may never enter a model, whatever the data offers.

``params.yaml`` → ``fairness.protected_features`` lists names or shell-style patterns
(``*nationality*``). Training refuses a feature set that holds one, and so does the explain stage
for a model file that uses one: the pipeline stops with an error naming the feature and the entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

from riskml.contract import RiskmlError

CONFIG_ENTRY = "params.yaml fairness.protected_features"


def protected_hits(features: Iterable[str], protected: Sequence[str]) -> list[tuple[str, str]]:
    """``(feature, pattern)`` for every feature matched by a protected name or pattern
    (case-insensitive), in the order of ``features``."""
    hits = []
    for name in features:
        for pattern in protected:
            if fnmatchcase(str(name).lower(), pattern.lower()):
                hits.append((str(name), pattern))
                break
    return hits


def check_protected(
    features: Iterable[str], protected: Sequence[str], *, where: str = "the model"
) -> None:
    """Raise :class:`RiskmlError` if a protected feature is among ``features``.

    ``where`` says what holds the features (e.g. ``"area 'revenue' training"``).
    """
    hits = protected_hits(features, protected)
    if hits:
        listed = ", ".join(f"{f!r} (matches {p!r})" for f, p in hits)
        raise RiskmlError(
            f"{where} would use protected feature(s) {listed}, listed in {CONFIG_ENTRY}: such a "
            "feature may never enter a model. Drop the column from the features stage, or add it "
            "to training.exclude_features in pipelines/<area>.yaml"
        )
