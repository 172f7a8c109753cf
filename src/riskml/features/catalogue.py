"""The feature catalogue: group, description and a plain-language reason template per feature.

Templates are ``str.format`` strings over one row of the feature frame (model features and
``ctx_`` columns). :func:`format_reason` picks the right sentence: ``template_missing`` when a
referenced value is missing, ``template_zero`` when a flag or count is 0, ``template`` otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from string import Formatter
from typing import Any

import pandas as pd

from riskml.contract import RISK_AREAS
from riskml.features.bands import VALUE_BANDS, ValueBand, band_stat_names
from riskml.features.history import PROFILES, has_rates, stat_names
from riskml.features.seizures import SEIZURE_AREAS, STATS, WINDOW

GROUPS: tuple[str, ...] = (
    "value",
    "importer history",
    "declarant history",
    "supplier history",
    "origin history",
    "goods history",
    "route history",
    "novelty",
    "goods",
    "route",
    "calendar",
    "targeting profile",
    "seizure intelligence",
)


@dataclass(frozen=True)
class FeatureInfo:
    """What a feature means and how to say it to a reviewer."""

    name: str
    group: str
    description: str
    template: str
    template_zero: str = ""
    template_missing: str = ""
    #: ``template_zero`` states what the declaration is (a first declaration, goods shipped from
    #: their origin), not that a fact is absent: it may stand as a reason
    zero_is_fact: bool = False
    #: 0 means "none" (no duty, no seizure, nothing recovered) even without a ``template_zero``:
    #: the sentence of a 0 states an absence and is never given as a reason
    none_at_zero: bool = False


AREA_WORDS: dict[str, str] = {
    "revenue": "revenue",
    "drugs": "drugs",
    "ipr": "counterfeit",
    "environment": "environmental",
    "health_safety": "health and safety",
    "security": "security",
}

_PEERS = (
    "the median of {ctx_uv_ref_count:.0f} declarations of {ctx_uv_ref_group} "
    "in the previous {ctx_ref_months:.0f} months"
)

_STATIC: list[FeatureInfo] = [
    FeatureInfo(
        "uv_kg_log", "value", "log unit value per kg (CIF / net mass, else gross mass)",
        "unit value of {ctx_uv_kg:,.2f} per kg",
    ),
    FeatureInfo(
        "uv_kg_rz", "value",
        "robust z-score of the log unit value per kg against the reference median and MAD",
        "unit value per kg {ctx_uv_kg_gap:.0%} {ctx_uv_kg_dir} " + _PEERS,
        template_missing="no reference price: too few comparable declarations in the "
        "previous {ctx_ref_months:.0f} months",
    ),
    FeatureInfo(
        "uv_kg_pct_vs_ref", "value",
        "relative gap of the unit value per kg to the reference median (-0.78 = 78% below)",
        "unit value per kg {ctx_uv_kg_gap:.0%} {ctx_uv_kg_dir} " + _PEERS,
        template_missing="no reference price: too few comparable declarations in the "
        "previous {ctx_ref_months:.0f} months",
    ),
    FeatureInfo(
        "uv_q_log", "value", "log unit value per unit of quantity (CIF / quantity)",
        "unit value of {ctx_uv_q:,.2f} per {ctx_quantity_unit}",
    ),
    FeatureInfo(
        "uv_q_rz", "value",
        "robust z-score of the log unit value per quantity unit against the reference",
        "unit value per {ctx_quantity_unit} {ctx_uv_q_gap:.0%} {ctx_uv_q_dir} " + _PEERS,
        template_missing="no reference price: too few comparable declarations",
    ),
    FeatureInfo(
        "uv_q_pct_vs_ref", "value",
        "relative gap of the unit value per quantity unit to the reference median",
        "unit value per {ctx_quantity_unit} {ctx_uv_q_gap:.0%} {ctx_uv_q_dir} " + _PEERS,
        template_missing="no reference price: too few comparable declarations",
    ),
    FeatureInfo(
        "uv_ref_count", "value", "number of peer declarations behind the reference price",
        "reference price from {uv_ref_count:.0f} declarations of {ctx_uv_ref_group} "
        "in the previous {ctx_ref_months:.0f} months",
        template_missing="no reference price: too few comparable declarations",
    ),
    FeatureInfo(
        "uv_ref_level", "value",
        "level of the reference price: 1 HS6×origin, 2 HS6, 3 HS4, 0 none",
        "reference price taken at the {ctx_uv_ref_level} level ({ctx_uv_ref_group})",
        template_zero="no reference price: too few comparable declarations",
    ),
    FeatureInfo(
        "duty_rate", "value", "applied ad valorem duty rate", "duty rate {duty_rate:.1%}",
        none_at_zero=True,
    ),
    FeatureInfo(
        "duty_to_cif", "value", "duties paid / CIF value",
        "duties paid are {duty_to_cif:.1%} of the customs value",
        none_at_zero=True,
    ),
    FeatureInfo(
        "cif_to_fob", "value", "CIF value / FOB value (missing without FOB)",
        "customs value is {cif_to_fob:.2f} times the invoice value",
    ),
    FeatureInfo(
        "log_cif", "value", "log CIF value", "customs value of {ctx_cif_value:,.0f}",
    ),
    FeatureInfo(
        "zero_value", "value",
        "1 when the declared CIF value is 0 (no commercial value: samples, gifts), 0 when "
        "positive, missing when not declared",
        "declared customs value of 0 (no commercial value)",
        template_zero="a customs value above 0 declared",
        template_missing="no customs value declared",
    ),
    FeatureInfo(
        "preference_claim", "value", "a preferential origin was claimed (1/0)",
        "preferential origin claimed for goods from {ctx_origin}",
        template_zero="no preferential origin claimed for goods from {ctx_origin}",
    ),
    FeatureInfo(
        "duty_rate_standard", "value",
        "most common duty rate of the HS6 among non-preference declarations of the previous "
        "reference months",
        "goods declared under HS {ctx_hs6}, a tariff line whose standard duty rate is "
        "{duty_rate_standard:.1%}",
        template_missing="no standard duty rate known for HS {ctx_hs6}",
    ),
    FeatureInfo(
        "duty_rate_gap", "value",
        "standard duty rate of the HS6 minus the applied rate (a preference or exemption saves "
        "this share of the value)",
        "duty rate {duty_rate:.1%} applied where the standard rate of HS {ctx_hs6} is "
        "{duty_rate_standard:.1%}",
        template_zero="the standard duty rate of HS {ctx_hs6} applied", zero_is_fact=True,
        template_missing="no standard duty rate known for HS {ctx_hs6}",
    ),
    FeatureInfo(
        "sibling_fit", "value",
        "how much better the item's unit value and mass per unit fit the dearer code of its HS "
        "heading that fits them best than the declared code (log-likelihood ratio against each "
        "code's declarations of the previous reference months; positive: a misclassification's "
        "trace)",
        "the goods' value and mass per unit fit HS {ctx_sibling_hs6} (standard duty "
        "{ctx_sibling_rate:.1%}) {ctx_sibling_word} than the declared HS {ctx_hs6}",
        template_missing="no dearer code of heading {ctx_hs4} to compare the goods with",
    ),
    FeatureInfo(
        "sibling_rate_gap", "value",
        "standard duty rate of the dearer code of the heading that best fits the item's value "
        "and mass per unit, minus the declared code's (the duty a misclassification saves)",
        "HS {ctx_sibling_hs6}, the dearer code of the heading closest to the goods, pays "
        "{sibling_rate_gap:.1%} more duty than the declared HS {ctx_hs6}",
        template_missing="no dearer code of heading {ctx_hs4} to compare the goods with",
    ),
    FeatureInfo(
        "imp_age_days", "novelty", "days since the importer's first declaration",
        "importer first seen {imp_age_days:.0f} days ago",
        template_zero="first declaration of this importer", zero_is_fact=True,
    ),
    FeatureInfo(
        "decl_age_days", "novelty", "days since the declarant's first declaration",
        "declarant first seen {decl_age_days:.0f} days ago",
        template_zero="first declaration of this declarant", zero_is_fact=True,
    ),
    FeatureInfo(
        "sup_age_days", "novelty", "days since the supplier's first declaration",
        "supplier first seen {sup_age_days:.0f} days ago",
        template_zero="first declaration with this supplier", zero_is_fact=True,
        template_missing="supplier not declared",
    ),
    FeatureInfo(
        "first_imp_hs4", "novelty", "1 when the importer never declared this HS4 before",
        "first import of HS heading {ctx_hs4} by this importer",
        template_zero="the importer has declared HS heading {ctx_hs4} before", zero_is_fact=True,
    ),
    FeatureInfo(
        "first_imp_origin", "novelty", "1 when the importer never declared this origin before",
        "first import from {ctx_origin} by this importer",
        template_zero="the importer has imported from {ctx_origin} before", zero_is_fact=True,
    ),
    FeatureInfo(
        "first_imp_supplier", "novelty",
        "1 when the importer never declared goods of this supplier before",
        "first purchase by this importer from this supplier",
        template_zero="the importer has bought from this supplier before", zero_is_fact=True,
        template_missing="supplier not declared",
    ),
    FeatureInfo(
        "first_imp_declarant", "novelty",
        "1 when the importer never used this declarant before",
        "first declaration lodged for this importer by this declarant",
        template_zero="the declarant has lodged declarations for this importer before",
        zero_is_fact=True,
    ),
    FeatureInfo(
        "imp_hs4_share", "novelty",
        "share of the importer's earlier items (before this month) in this HS4",
        "{imp_hs4_share:.0%} of the importer's earlier items were in HS heading {ctx_hs4}",
        template_missing="no earlier declaration of this importer", none_at_zero=True,
    ),
    FeatureInfo(
        "imp_hs2_share", "novelty",
        "share of the importer's earlier items (before this month) in this HS chapter",
        "{imp_hs2_share:.0%} of the importer's earlier items were in HS chapter {ctx_hs2}",
        template_missing="no earlier declaration of this importer", none_at_zero=True,
    ),
    FeatureInfo(
        "orig_treatment_share", "origin history",
        "share of the earlier items (before this month) from the origin that were declared "
        "under this item's tariff treatment (low for a preference the origin's goods rarely "
        "claim, as outside any trade agreement)",
        "{orig_treatment_share:.1%} of the earlier items from {ctx_origin} were declared under "
        "this tariff treatment",
        template_zero="the first item from {ctx_origin} declared under this tariff treatment",
        template_missing="no earlier item from {ctx_origin}", zero_is_fact=True,
    ),
    FeatureInfo(
        "sup_origin_share", "supplier history",
        "share of the supplier's earlier items (before this month) declared of this origin (a "
        "supplier's goods declared of another origin than usual)",
        "{sup_origin_share:.0%} of this supplier's earlier items were declared of {ctx_origin} "
        "origin",
        template_zero="the first of this supplier's items declared of {ctx_origin} origin",
        template_missing="no earlier item of this supplier", zero_is_fact=True,
    ),
    FeatureInfo(
        "imp_outside_usual_share", "novelty",
        "share of the importer's items of the previous month in chapters holding under 5% of "
        "its items before that month",
        "{imp_outside_usual_share:.0%} of the importer's items last month were outside its "
        "usual HS chapters",
        template_zero="the importer's items last month were all in its usual HS chapters",
        zero_is_fact=True,
        template_missing="no earlier trade of this importer to compare with",
    ),
    FeatureInfo(
        "imp_items_prev_month", "novelty", "importer: items declared in the previous month",
        "importer: {imp_items_prev_month:.0f} items declared last month",
        template_zero="importer: no item declared last month",
    ),
    FeatureInfo(
        "imp_volume_ratio", "novelty",
        "importer: items of the previous month / its average month over the reference months "
        "before",
        "importer declared {imp_volume_ratio:.1f} times its usual monthly volume last month",
        template_zero="importer declared nothing last month, against a usual monthly volume",
        template_missing="importer: no earlier monthly volume to compare with",
    ),
    FeatureInfo(
        "decl_items_prev_month", "novelty", "declarant: items declared in the previous month",
        "declarant: {decl_items_prev_month:.0f} items lodged last month",
        template_zero="declarant: no item lodged last month",
    ),
    FeatureInfo(
        "decl_volume_ratio", "novelty",
        "declarant: items of the previous month / its average month over the reference months "
        "before",
        "declarant lodged {decl_volume_ratio:.1f} times its usual monthly volume last month",
        template_zero="declarant lodged nothing last month, against a usual monthly volume",
        template_missing="declarant: no earlier monthly volume to compare with",
    ),
    FeatureInfo("hs_chapter", "goods", "HS chapter (2 digits)", "goods of HS chapter {ctx_hs2}"),
    FeatureInfo(
        "log_gross_mass", "goods", "log gross mass in kg", "gross mass {ctx_gross_mass:,.0f} kg"
    ),
    FeatureInfo(
        "net_to_gross", "goods", "net mass / gross mass", "net mass is {net_to_gross:.0%} of gross"
    ),
    FeatureInfo(
        "zero_mass", "goods",
        "1 when the declared gross mass is 0 (below the declared precision), 0 when positive, "
        "missing when not declared",
        "declared gross mass of 0 kg",
        template_zero="a gross mass above 0 declared",
        template_missing="no gross mass declared",
    ),
    FeatureInfo(
        "log_quantity", "goods", "log quantity in the supplementary unit",
        "quantity {ctx_quantity:,.0f} {ctx_quantity_unit}",
    ),
    FeatureInfo(
        "procedure_requested", "goods", "requested customs procedure (first 2 digits)",
        "customs procedure {ctx_procedure}",
    ),
    FeatureInfo(
        "transport_mode_code", "route",
        "transport mode, index in riskml.contract.TRANSPORT_MODES",
        "transport by {ctx_transport_mode}",
    ),
    FeatureInfo(
        "departure_not_origin", "route", "1 when the country of departure differs from origin",
        "goods of {ctx_origin} origin shipped from {ctx_departure}",
        template_zero="shipped from the country of origin {ctx_origin}", zero_is_fact=True,
    ),
    FeatureInfo(
        "weekday", "calendar", "weekday of acceptance (0 = Monday)",
        "declared on a {ctx_weekday_name}",
    ),
    FeatureInfo(
        "month_of_year", "calendar", "month of acceptance (1-12)", "declared in {ctx_month_name}"
    ),
]  # fmt: skip

_PROFILE_GROUPS = {
    "imp": "importer history",
    "decl": "declarant history",
    "sup": "supplier history",
    "orig": "origin history",
    "hs6o": "goods history",
    "imphs4": "goods history",
    "hs6": "goods history",
    "hs4": "goods history",
    "hs2": "goods history",
    "dep": "route history",
    "off": "route history",
    "imporig": "importer history",
    "declimp": "declarant history",
    "imphs2": "goods history",
    "dephs4": "route history",
    "hs6r": "route history",
    "hs6rt": "route history",
    "hs6tl": "goods history",
    "origtr": "origin history",
    "suporig": "supplier history",
}
_WHO = {
    "imp": "importer",
    "decl": "declarant",
    "sup": "supplier",
    "orig": "goods from {ctx_origin}",
    "hs6o": "HS {ctx_hs6} from {ctx_origin}",
    "imphs4": "this importer in HS heading {ctx_hs4}",
    "hs6": "HS {ctx_hs6}",
    "hs4": "HS heading {ctx_hs4}",
    "hs2": "HS chapter {ctx_hs2}",
    "dep": "goods shipped from {ctx_departure}",
    "off": "office {ctx_office}",
    "imporig": "this importer's goods from {ctx_origin}",
    "declimp": "this declarant for this importer",
    "imphs2": "this importer in HS chapter {ctx_hs2}",
    "dephs4": "HS heading {ctx_hs4} shipped from {ctx_departure}",
    "hs6r": "HS {ctx_hs6} from {ctx_origin} shipped from {ctx_departure}",
    "hs6rt": "HS {ctx_hs6} from {ctx_origin} shipped from {ctx_departure} under this tariff "
    "treatment",
    "hs6tl": "HS {ctx_hs6} at this tariff treatment and duty rate",
    "origtr": "goods from {ctx_origin} under this tariff treatment",
    "suporig": "this supplier's goods declared of {ctx_origin} origin",
}


def _profile_info(prefix: str, stat: str, stats: str) -> FeatureInfo:
    name, who = f"{prefix}_{stat}", _WHO[prefix]
    group = _PROFILE_GROUPS[prefix]
    known = "known at the start of the month"
    if stat == "n_items":
        return FeatureInfo(
            name,
            group,
            f"{who}: items declared in earlier months",
            f"{who}: {{{name}:.0f}} items declared before this month",
            template_zero=f"{who}: no item declared before this month",
        )
    if stat == "n_controls":
        return FeatureInfo(
            name,
            group,
            f"{who}: controls with a result {known}",
            f"{who}: controls with a known result: {{{name}:.0f}}",
            template_zero=f"{who}: never controlled before",
        )
    if stat == "n_find":
        return FeatureInfo(
            name,
            group,
            f"{who}: findings of any area {known}",
            f"{who}: offences found in {{{name}:.0f}} of {{{prefix}_n_controls:.0f}} controls",
            template_zero=f"{who}: no offence found in {{{prefix}_n_controls:.0f}} controls",
        )
    if stat == "recovered":
        return FeatureInfo(
            name,
            group,
            f"{who}: additional duties recovered, {known}",
            f"{who}: {{{name}:,.0f}} in additional duties recovered so far",
            none_at_zero=True,
        )
    if stat == "days_since_find":
        return FeatureInfo(
            name,
            group,
            f"{who}: days since the latest finding {known}",
            f"{who}: last finding {{{name}:.0f}} days ago",
            template_missing=f"{who}: no finding on record",
        )
    area = stat.removeprefix("n_find_").removeprefix("hr_")
    words = AREA_WORDS[area]
    if stat.startswith("n_find_"):
        return FeatureInfo(
            name,
            group,
            f"{who}: {words} findings {known}",
            f"{who}: {words} offences found in {{{name}:.0f}} of {{{prefix}_n_controls:.0f}} "
            "controls",
            template_zero=f"{who}: no {words} offence found in "
            f"{{{prefix}_n_controls:.0f}} controls",
        )
    counts = (
        f"found in {{{prefix}_n_find_{area}:.0f}} of {{{prefix}_n_controls:.0f}} controls"
        if stats in ("full", "areas")
        else f"over {{{prefix}_n_controls:.0f}} controls"
    )
    return FeatureInfo(
        name, group,
        f"{who}: {words} hit rate, empirical-Bayes smoothed towards the overall rate",
        f"{who}: {words} hit rate {{{name}:.1%}} ({counts}) against "
        f"{{ctx_global_hr_{area}:.1%}} overall",
    )  # fmt: skip


def _detectable_info(prefix: str, area: str) -> FeatureInfo:
    name, who, words = f"{prefix}_hrd_{area}", _WHO[prefix], AREA_WORDS[area]
    return FeatureInfo(
        name, _PROFILE_GROUPS[prefix],
        f"{who}: {words} hit rate over the controls able to detect it (the area's "
        "detectable_by), empirical-Bayes smoothed towards the overall rate",
        f"{who}: {words} hit rate {{{name}:.1%}} over the controls able to detect it, against "
        f"{{ctx_global_hrd_{area}:.1%}} overall",
    )  # fmt: skip


def detectable_catalogue(areas: list[str]) -> dict[str, FeatureInfo]:
    """Entries of the hit rates over detecting controls, ``<prefix>_hrd_<area>``, of ``areas``
    (built only when ``build_features`` receives the area specs)."""
    return {
        f"{p.prefix}_hrd_{a}": _detectable_info(p.prefix, a)
        for p in PROFILES
        if has_rates(p.stats)
        for a in areas
    }


SEIZURE_WORDS: dict[str, str] = {
    "drugs": "drug",
    "environment": "environmental",
    "health_safety": "health and safety",
    "security": "security",
}


def _seizure_info(area: str, stat: str) -> FeatureInfo:
    """Entry of ``sz_<area>_<stat>`` (:mod:`riskml.features.seizures`)."""
    name, words = f"sz_{area}_{stat}", SEIZURE_WORDS[area]
    group = "seizure intelligence"
    known = "reported before the start of the month"
    country = f"{{ctx_sz_{area}_country}}"
    both = "the goods' origin or departure country ({ctx_origin}, {ctx_departure})"
    last = f"in the last {WINDOW} months"
    texts = {
        "route_12m": (
            f"{words} seizures made elsewhere on goods of this HS heading from or via the item's "
            f"origin or departure country (the larger), {known}, last {WINDOW} months",
            f"{words} seizures elsewhere on HS heading {{ctx_hs4}} from or via {country}: "
            f"{{{name}:.0f}} {last}, reported by {{sz_{area}_route_reporters:.0f}} countries",
            f"no {words} seizure reported elsewhere on HS heading {{ctx_hs4}} from or via "
            f"{both} {last}",
        ),
        "route_3m": (
            "the same seizures, last 3 months (the route's trend)",
            f"{words} seizures elsewhere on HS heading {{ctx_hs4}} from or via {country}: "
            f"{{{name}:.0f}} in the last 3 months (of {{sz_{area}_route_12m:.0f}} {last})",
            "",
        ),
        "route_reporters": (
            f"distinct countries that reported those seizures, last {WINDOW} months",
            f"{words} seizures on HS heading {{ctx_hs4}} from or via {country} reported by "
            f"{{{name}:.0f}} countries {last}",
            "",
        ),
        "chapter_country_12m": (
            f"{words} seizures made elsewhere on goods of this HS chapter naming the item's "
            f"origin or departure country (the larger), {known}, last {WINDOW} months",
            f"{words} seizures elsewhere on HS chapter {{ctx_hs2}} goods naming {both}: "
            f"{{{name}:.0f}} {last}",
            "",
        ),
        "country_12m": (
            f"{words} seizures made elsewhere naming the item's origin or departure country "
            f"(the larger), any goods, {known}, last {WINDOW} months",
            f"{words} seizures elsewhere naming {both}: {{{name}:.0f}} {last}",
            "",
        ),
        "mode_country_12m": (
            f"{words} seizures made elsewhere by the item's transport mode naming its origin or "
            f"departure country (the larger), {known}, last {WINDOW} months",
            f"{words} seizures elsewhere by {{ctx_transport_mode}} naming {both}: "
            f"{{{name}:.0f}} {last}",
            "",
        ),
        "goods_share": (
            f"share of the {words} seizures made elsewhere ({known}, last {WINDOW} months) whose "
            "cover or misdeclared goods are of this HS heading: a concealment-goods indicator "
            "learned from the seizure records",
            f"{{{name}:.0%}} of the {words} seizures reported elsewhere {last} were on goods of "
            f"HS heading {{ctx_hs4}}",
            "",
        ),
    }
    description, template, zero = texts[stat]
    return FeatureInfo(name, group, description, template, template_zero=zero, none_at_zero=True)


def _band_info(band: ValueBand, stat: str) -> FeatureInfo:
    """Entry of ``<prefix>_<stat>`` of a value band (:mod:`riskml.features.bands`)."""
    name, prefix = f"{band.prefix}_{stat}", band.prefix
    who = f"{band.label} (items within about 1% of it left out)"
    measure = band.measure.replace("_", " ")
    known = "known at the start of the month, leaving out the peers within about 1% of the item"
    if stat == "n_items":
        return FeatureInfo(
            name, "goods history",
            f"peers ({' x '.join(band.peers)}) declared in earlier months at a {measure} in the "
            f"item's decade, leaving out those within about 1% of the item's {measure}",
            f"{who}: {{{name}:.0f}} items declared before this month",
            template_zero=f"{who}: no item declared before this month",
        )  # fmt: skip
    if stat == "n_controls":
        return FeatureInfo(
            name, "goods history",
            f"controls with a known result of those peers, {known}",
            f"{who}: controls with a known result: {{{name}:.0f}}",
            template_zero=f"{who}: never controlled before",
        )  # fmt: skip
    area = stat.removeprefix("hr_")
    words = AREA_WORDS[area]
    return FeatureInfo(
        name, "goods history",
        f"{words} hit rate of those peers, {known}, empirical-Bayes smoothed towards the "
        "overall rate",
        f"{who}: {words} hit rate {{{name}:.1%}} over {{{prefix}_n_controls:.0f}} controls "
        f"against {{ctx_global_hr_{area}:.1%}} overall",
    )  # fmt: skip


def band_catalogue() -> dict[str, FeatureInfo]:
    """Entries of the value-band features, ``<prefix>_<stat>`` of each of ``VALUE_BANDS``."""
    return {f"{b.prefix}_{s}": _band_info(b, s) for b in VALUE_BANDS for s in band_stat_names()}


def seizure_catalogue() -> dict[str, FeatureInfo]:
    """Entries of the seizure-intelligence features, ``sz_<area>_<stat>``."""
    return {f"sz_{a}_{s}": _seizure_info(a, s) for a in SEIZURE_AREAS for s in STATS}


def _catalogue() -> dict[str, FeatureInfo]:
    entries = {info.name: info for info in _STATIC}
    for profile in PROFILES:
        for stat in stat_names(profile.stats):
            info = _profile_info(profile.prefix, stat, profile.stats)
            entries[info.name] = info
    return entries | band_catalogue() | seizure_catalogue()


CATALOGUE: dict[str, FeatureInfo] = _catalogue()
assert set(AREA_WORDS) == set(RISK_AREAS)
assert all(info.group in GROUPS for info in CATALOGUE.values())


def template_fields(template: str) -> list[str]:
    """The row fields a template refers to."""
    return [f for _, f, _, _ in Formatter().parse(template) if f]


def _missing(value: Any) -> bool:
    """True for None, pandas NA and NaN scalars."""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def format_reason(name: str, row: Mapping[str, Any]) -> str | None:
    """The reason sentence of feature ``name`` for one row (a dict or a Series of the frame).

    Returns ``None`` when a value the sentence needs is missing and there is no sentence for it.
    """
    return fill_reason(CATALOGUE[name], row)


def fill_reason(info: FeatureInfo, row: Mapping[str, Any]) -> str | None:
    """The sentence of ``info`` for one row: its zero or missing variant where the value calls for
    it; ``None`` when a value the sentence needs is missing and there is nothing to say."""
    value = row.get(info.name)
    if _missing(value):
        template = info.template_missing
    elif info.template_zero and float(value) == 0:
        template = info.template_zero
    else:
        template = info.template
    if not template:
        return None
    values = {f: row.get(f) for f in template_fields(template)}
    if any(_missing(v) for v in values.values()):
        return None
    return template.format(**values)


def catalogue_markdown() -> str:
    """The catalogue as a Markdown table (the one in ``docs/features.md``)."""
    lines = ["| feature | group | description | reason template |", "|---|---|---|---|"]
    for info in CATALOGUE.values():
        template = info.template.replace("|", "\\|")
        lines.append(f"| `{info.name}` | {info.group} | {info.description} | `{template}` |")
    return "\n".join(lines) + "\n"
