"""Causal features of declaration items, and the catalogue that explains them.

``build_features(declarations, outcomes, params)`` returns one row per item, in input order:
the key, ``accepted_date``, the model features (numeric) and ``ctx_`` context columns (peer facts
for reason sentences, never model inputs). Every feature of a declaration accepted on day *t*
uses only declarations accepted before *t* and outcomes whose result date is before *t*:
entity histories and reference prices are snapshots at the start of *t*'s month (see
``docs/features.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

import numpy as np
import pandas as pd

from riskml.config import AreaSpec, FeatureParams
from riskml.contract import KEY, RiskmlError
from riskml.features.bands import BAND_STATS, VALUE_BANDS, band_features
from riskml.features.behaviour import outside_usual_share, volume_features
from riskml.features.catalogue import (
    CATALOGUE,
    GROUPS,
    FeatureInfo,
    detectable_catalogue,
    format_reason,
)
from riskml.features.context import context_columns
from riskml.features.history import (
    PROFILES,
    ProfileTable,
    global_rates,
    lookup,
    profile_features,
    profile_table,
    stat_names,
    table_stats,
)
from riskml.features.novelty import novelty_features
from riskml.features.prepare import Prepared, prepare
from riskml.features.reference import Reference, reference_prices, robust_z
from riskml.features.row import (
    calendar_features,
    goods_features,
    route_features,
    unit_values,
    value_features,
)
from riskml.features.seizures import SeizureIntel
from riskml.features.siblings import sibling_features
from riskml.features.targeting import rule_catalogue, rule_features
from riskml.features.tariff import applied_rates, rate_cells, rate_features, standard_for

__all__ = [
    "CATALOGUE",
    "GROUPS",
    "MISCLASSIFICATION_TRACES",
    "ORIGIN_TRACES",
    "FeatureInfo",
    "build_features",
    "catalogue_for",
    "format_reason",
    "model_feature_columns",
]

ID_COLUMNS: list[str] = [*KEY, "accepted_date"]
#: The origin-fraud traces (session 24): the origin x tariff treatment and supplier x origin
#: profiles and their shares (:data:`SHARES`). Revenue's model takes them; the areas and
#: protocols they did not improve list them as excluded.
ORIGIN_TRACES: tuple[str, ...] = (
    *(f"{p.prefix}_{stat}" for p in PROFILES if p.prefix in ("origtr", "suporig")
      for stat in stat_names(p.stats)),
    "orig_treatment_share",
    "sup_origin_share",
)  # fmt: skip
#: The misclassification traces (session 25, :mod:`riskml.features.siblings`): how much better
#: the goods fit a dearer code of their heading, and that code's extra duty. Taken and left out
#: as :data:`ORIGIN_TRACES` are.
MISCLASSIFICATION_TRACES: tuple[str, ...] = ("sibling_fit", "sibling_rate_gap")


def model_feature_columns(frame: pd.DataFrame) -> list[str]:
    """The model inputs of a feature frame: every numeric column but the key and ``ctx_``."""
    return [
        c
        for c in frame.columns
        if c not in ID_COLUMNS
        and not c.startswith("ctx_")
        and pd.api.types.is_numeric_dtype(frame[c])
        and not pd.api.types.is_bool_dtype(frame[c])
    ]


def catalogue_for(specs: Mapping[str, AreaSpec] | None = None) -> dict[str, FeatureInfo]:
    """The catalogue of a frame built with ``specs``: the fixed entries plus the targeting
    profiles of those areas."""
    if not specs:
        return dict(CATALOGUE)
    return CATALOGUE | detectable_catalogue(list(specs)) | rule_catalogue(specs)


def reference_features(uv: pd.DataFrame, ref: Reference) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for col, short in (("uv_kg_log", "uv_kg"), ("uv_q_log", "uv_q")):
        x, med = uv[col].to_numpy(), ref.median[col]
        out[col] = x.astype(np.float32)
        out[f"{short}_rz"] = robust_z(x, med, ref.mad[col]).astype(np.float32)
        out[f"{short}_pct_vs_ref"] = np.expm1(x - med).astype(np.float32)
    out["uv_ref_count"] = ref.count.astype(np.float32)
    out["uv_ref_level"] = ref.level
    return out


def as_float32(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v if v.dtype.kind == "i" else v.astype(np.float32) for k, v in values.items()}


#: Shares of an entity's earlier items (snapshots at the start of the row's month): feature name
#: -> (profile of the part, profile of the whole). The importer's items in the row's HS heading
#: and chapter; the origin's items under the row's tariff treatment (a preference the origin's
#: goods never claim: no trade agreement) and the supplier's items of the row's origin (an
#: origin the supplier never shipped from): the origin-fraud traces.
SHARES: dict[str, tuple[str, str]] = {
    "imp_hs4_share": ("imphs4", "imp"),
    "imp_hs2_share": ("imphs2", "imp"),
    "orig_treatment_share": ("origtr", "orig"),
    "sup_origin_share": ("suporig", "sup"),
}


def pair_shares(
    features: dict[str, np.ndarray], names: Collection[str] = tuple(SHARES)
) -> dict[str, np.ndarray]:
    """The :data:`SHARES` ``names``: the part's earlier items over the whole's (NaN when the
    whole had none), from the profiles' ``n_items``."""
    out = {}
    for name in names:
        part, whole = SHARES[name]
        n = features[f"{whole}_n_items"]
        with np.errstate(invalid="ignore", divide="ignore"):
            share = features[f"{part}_n_items"] / n
        out[name] = np.where(n > 0, share, np.nan).astype(np.float32)
    return out


def row_features(prep: Prepared) -> dict[str, np.ndarray]:
    """The features of each row on its own: goods, route and calendar."""
    return as_float32(goods_features(prep)) | route_features(prep) | calendar_features(prep)


def assemble(
    prep: Prepared,
    features: dict[str, np.ndarray],
    context: pd.DataFrame | None,
    specs: Mapping[str, AreaSpec] | None,
    index: pd.Index,
    *,
    consolidate: bool = True,
) -> pd.DataFrame:
    """The feature frame: key, ``accepted_date``, the features in catalogue order, the ``ctx_``
    columns (with each area's targeting profile when ``specs`` are given), on ``index``.
    ``context`` None: model features only (no ``ctx_`` columns). ``consolidate`` False: the
    features are not copied into one block (same values; for a frame written out as it is)."""
    decl = prep.declarations
    if specs:
        rule_values, rule_context = rule_features(decl, specs, context=context is not None)
        features |= rule_values
        if context is not None and rule_context is not None:
            context = pd.concat([context, rule_context.set_axis(context.index)], axis=1)
    frame = pd.DataFrame(
        {
            "declaration_id": decl["declaration_id"].astype("string"),
            "item_no": decl["item_no"].astype("int64"),
            "accepted_date": decl["accepted_date"],
        }
    )
    # Catalogue order; a feature without an entry still comes out (and fails the catalogue test).
    catalogue = catalogue_for(specs)
    ordered = [n for n in catalogue if n in features] + [n for n in features if n not in catalogue]
    # Pop the arrays as they go into the frame: peak memory two copies of the features, not three.
    # consolidate=False: each array stays its own column instead of being copied into one 2-D
    # block (for a frame that is only written out: a month of a large history).
    values = pd.DataFrame({n: features.pop(n) for n in ordered}, copy=consolidate)
    frame = pd.concat([frame, values] + ([] if context is None else [context]), axis=1)
    frame.index = index
    return frame


def check_model_inputs(columns: Collection[str], names: list[str]) -> None:
    """Raise :class:`RiskmlError` naming the model inputs ``names`` that ``columns`` lack
    (:func:`riskml.train.feature_matrix` and :func:`model_inputs` check with it)."""
    missing = [c for c in names if c not in columns]
    if missing:
        raise RiskmlError(
            f"features: missing model input column(s) {missing}; rebuild the features "
            "(`riskml features`) or retrain the model"
        )


def model_inputs(
    prep: Prepared,
    features: dict[str, np.ndarray],
    specs: Mapping[str, AreaSpec] | None,
    names: list[str],
) -> np.ndarray:
    """The model inputs ``names`` of the features :func:`assemble` would put in a frame, as one
    float32 matrix (what :class:`riskml.score.FeatureBlock` takes of that frame, value for
    value), without the frame: a frame of some 340 columns costs milliseconds to build
    whatever its length, more than the features of a few rows."""
    if specs:
        features = features | rule_features(prep.declarations, specs, context=False)[0]
    check_model_inputs(features, names)  # the same check and message as for a frame
    # column by column into a column-major matrix (as a frame's block is): contiguous writes
    out = np.empty((len(names), len(prep.declarations)), dtype=np.float32)
    for j, name in enumerate(names):
        out[j] = features[name]
    return out.T


def build_features(
    declarations: pd.DataFrame,
    outcomes: pd.DataFrame,
    params: FeatureParams,
    *,
    progress: Callable[[int, int], None] | None = None,
    specs: Mapping[str, AreaSpec] | None = None,
    seizures: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Causal features of every declaration item, one row per item in the input order.

    ``progress(done, total)`` is called after each step when given. With ``specs``, each area's
    targeting profile (its legacy rules) is added as ``rule_<area>``. ``seizures`` (the
    contract's seizure intelligence) gives the ``sz_`` route and commodity features, counted on
    the records reported before each item's month; without it they are missing (NaN). New
    declarations scored against a stored history get the same features from
    :class:`riskml.features.store.FeatureStore`.

    Examples
    --------
    >>> frame = build_features(declarations, outcomes, FeatureParams())  # doctest: +SKIP
    >>> X = frame[model_feature_columns(frame)]  # doctest: +SKIP
    """
    total = 6 + len(PROFILES)
    step = iter(range(1, total + 1))

    def tick() -> None:
        if progress is not None:
            progress(next(step), total)

    prep: Prepared = prepare(declarations, outcomes)
    decl = prep.declarations
    tick()
    uv = unit_values(decl)
    ref = reference_prices(
        prep, uv, months=params.reference_months, min_count=params.min_reference_count
    )
    features = reference_features(uv, ref) | as_float32(value_features(decl))
    # the duty-rate cells, counted once: the standard rates and the siblings' tables read them
    hs6 = prep.code("hs6")
    rate, pref = applied_rates(prep)
    cells = rate_cells(hs6, rate, pref, prep.month)
    features |= rate_features(standard_for(cells, hs6, prep.month, params.reference_months), rate)
    siblings, sibling_context = sibling_features(
        prep, uv, cells, months=params.reference_months, min_count=params.min_reference_count
    )
    features |= siblings
    tick()
    detectable = {a: list(s.detectable_by) for a, s in specs.items()} if specs else None
    rates = global_rates(prep, detectable)
    tables: dict[tuple[str, ...], ProfileTable] = {}
    for profile in PROFILES:
        code = prep.code(*profile.columns)
        tables[profile.columns] = profile_table(code, prep, table_stats(profile.stats))
        snap = lookup(tables[profile.columns], code, prep.month)
        features |= profile_features(
            profile, snap, prep.month, prep.day, rates, params.prior_strength, detectable
        )
        tick()
    for band in VALUE_BANDS:
        whole, near = (
            lookup(profile_table(code, prep, BAND_STATS), code, prep.month)
            for code in (prep.code(*band.band), prep.code(*band.near))
        )
        features |= band_features(band, whole, near, prep.month, rates, params.prior_strength)
    tick()
    features |= novelty_features(prep)
    features |= pair_shares(features)
    features["imp_outside_usual_share"] = outside_usual_share(
        prep.code("importer_id"), prep.month, features["imp_hs2_share"]
    )

    def items_before(column: str, month: np.ndarray) -> np.ndarray:
        code = prep.code(column)
        return lookup(tables[(column,)], code, month, ["n_items"])["n_items"]

    features |= volume_features(items_before, prep.month, params.reference_months)
    tick()
    features |= row_features(prep)
    intel, intel_context = SeizureIntel(seizures).features(prep)
    features |= intel
    tick()
    context = context_columns(prep, uv, ref, rates, params)
    context = pd.concat(
        [context, *(c.set_axis(context.index) for c in (intel_context, sibling_context))], axis=1
    )
    tick()
    return assemble(prep, features, context, specs, declarations.index)
