"""Who offends, in which area: the logit of each item's offence probability per risk area.

logit = intercept(area) + hidden entity propensities (importer, declarant, supplier)
        + goods and route factors of the area + item noise.

The intercepts are calibrated once per run on a pilot sample so that the prevalence of each
area lands near :data:`TARGET_PREVALENCE`. The offence is drawn from the logistic of the whole
logit. ``true_prob`` in the truth table is what an oracle that knew every hidden trait would
score: the offence probability given the logit without the item noise, the noise averaged out
(:func:`expected_probabilities`). The item noise is part of the outcome's randomness: nothing
recorded before the outcome carries it, so an oracle that ranked by it would know part of the
coin flip and would not be the attainable limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from riskml.contract import RISK_AREAS
from riskml.simulate.catalogue import SECTORS, Catalogue, load_catalogue
from riskml.simulate.entities import Entities
from riskml.simulate.geography import Geography
from riskml.simulate.trade import Batch

A = {a: i for i, a in enumerate(RISK_AREAS)}
TARGET_PREVALENCE: dict[str, float] = {
    "revenue": 0.045,
    "drugs": 0.001,
    "ipr": 0.01,
    "environment": 0.002,
    "health_safety": 0.003,
    "security": 0.00045,
}
NOISE_SD = 0.6
NEW_IMPORTER_DAYS = 180
# Rare areas (drugs, environment, health_safety, security): the entity and route factors of the
# offence logit (see _rare_entity_factors), each area's weight on them, and the penalty of goods
# outside the area's mechanisms (sets the share of offences outside rule-covered goods).
RARE_AREAS = ("drugs", "environment", "health_safety", "security")
RARE_FACTOR = {
    "common": 1.0,
    "front": 2.5,
    "complicit": 1.5,
    "risky_supplier": 1.8,
    "new": 1.0,
    "very_new": 0.5,
    "first_hs4": 1.0,
    "first_origin": 0.7,
    "unrelated": 0.5,
    "rerouted": 0.8,
    "supplier": 1.0,
}
RARE_ENTITY_WEIGHT = {"drugs": 1.0, "environment": 1.0, "health_safety": 1.3, "security": 1.2}
RARE_OUTSIDE = {"drugs": 3.5, "environment": 3.5, "health_safety": 4.2, "security": 4.5}
# The revenue hot spots (HS chapters, origins) before and after the drift month.
REVENUE_OLD_HOT = 0.6  # share of the old hot spots' weight kept after the drift
REVENUE_HOT = {
    False: ((22, 24, 61, 62, 64), ("CN", "TR", "BD", "PK", "VN")),
    True: ((27, 33, 42, 85, 87), ("AE", "MY", "TH", "HK", "IN")),
}


@dataclass(frozen=True)
class GoodsMasks:
    """Boolean arrays over catalogue codes: the goods each fraud mechanism targets."""

    conceal: np.ndarray
    precursor: np.ndarray
    branded: np.ndarray
    ods: np.ndarray
    ods_weak: np.ndarray
    wildlife: np.ndarray
    waste: np.ndarray
    meds: np.ndarray
    toys: np.ndarray
    devices: np.ndarray
    food: np.ndarray
    weapons: np.ndarray
    dual_use: np.ndarray


@lru_cache(maxsize=1)
def goods_masks() -> GoodsMasks:
    """The goods masks over the catalogue."""
    cat = load_catalogue()
    p = cat.prefixed
    return GoodsMasks(
        conceal=p("08", "09", "0303", "0304", "0306", "0710", "0811"),
        precursor=p("2939", "2914", "2932", "291524"),
        branded=p(
            "61",
            "62",
            "64",
            "42",
            "8517",
            "9503",
            "9101",
            "9102",
            "3303",
            "3304",
            "9004",
            "8518",
            "7117",
            "9504",
        ),
        ods=p("290371", "290372", "290377", "290379", "3827", "8415", "8418"),
        ods_weak=p("2903", "3824"),
        wildlife=p(
            "0106",
            "0505",
            "0507",
            "0508",
            "4103",
            "4113",
            "4301",
            "4303",
            "440349",
            "44072",
            "9601",
        ),
        waste=p("3915", "4707", "7204", "6309", "271091", "271099"),
        meds=p("3003", "3004"),
        toys=p("9503"),
        devices=p("9018"),
        food=(cat.chapter >= 2) & (cat.chapter <= 21),
        weapons=p("93", "3601", "3602", "3603", "3604", "2844"),
        dual_use=p("8542", "8517", "8526", "9013", "9014"),
    )


def _rare_entity_factors(
    batch: Batch, ents: Entities, importer_propensity: np.ndarray
) -> np.ndarray:
    """(items, areas) the entity and route part of the rare-area logits (before area weights).

    Every factor is something a causal feature can see, noisily: a front company is new, uses
    complicit brokers and risky suppliers and declares goods it never declared before; risky
    importers, declarants and suppliers leave findings behind (in any area: the propensities
    share a common factor); transshipment shows as departure != origin.
    """
    imp, dcl, sup = batch["importer"], batch["declarant"], batch["supplier"]
    age = batch["importer_age_days"]
    n = len(imp)
    first_hs4 = batch.get("first_hs4", np.zeros(n, dtype=bool))
    first_origin = batch.get("first_origin", np.zeros(n, dtype=bool))
    common = importer_propensity[imp].mean(axis=1)
    one = (
        RARE_FACTOR["common"] * common
        + RARE_FACTOR["front"] * ents.importer_front[imp]
        + RARE_FACTOR["complicit"] * ents.declarant_complicit[dcl]
        + RARE_FACTOR["risky_supplier"] * ents.supplier_risky[sup]
        + RARE_FACTOR["new"] * (age < NEW_IMPORTER_DAYS)
        + RARE_FACTOR["very_new"] * (age < 60)
        + RARE_FACTOR["first_hs4"] * first_hs4
        + RARE_FACTOR["first_origin"] * first_origin
        + RARE_FACTOR["unrelated"] * batch["unrelated"]
        + RARE_FACTOR["rerouted"] * (batch["departure"] != batch["origin"])
    )
    return one[:, None] + RARE_FACTOR["supplier"] * ents.supplier_propensity[sup]


def area_logits(
    rng: np.random.Generator,
    batch: Batch,
    ents: Entities,
    geo: Geography,
    cat: Catalogue,
    importer_propensity: np.ndarray,
    *,
    after_drift: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """(items, areas) offence logits without the area intercepts, and the item noise in them.

    The first array is the whole logit (the noise included), from which the offence is drawn;
    the second is the noise alone, so that the oracle's probability can average it out.
    """
    g = goods_masks()
    hs, origin, dep = batch["hs"], batch["origin"], batch["departure"]
    imp, dcl, sup = batch["importer"], batch["declarant"], batch["supplier"]
    n = len(hs)
    role = geo.role
    new = (batch["importer_age_days"] < NEW_IMPORTER_DAYS).astype(float)
    unrelated = batch["unrelated"].astype(float)
    postal = batch["postal"].astype(float)
    forwarder = ents.importer_forwarder[imp].astype(float)
    complicit = ents.declarant_complicit[dcl].astype(float)
    rerouted = (dep != origin).astype(float)
    rate = np.where(batch["legit_pref"], 0.0, cat.duty_rate[hs])

    noise = rng.normal(0, NOISE_SD, size=(n, len(RISK_AREAS)))
    base = importer_propensity[imp] + ents.declarant_propensity[dcl] + noise
    out = np.empty_like(base)

    chapters, origins = REVENUE_HOT[after_drift]
    hot = 1.2 * np.isin(cat.chapter[hs], chapters) + 0.8 * np.isin(origin, geo.index(origins))
    if after_drift:
        # fraud does not leave its old hot spots at once: they keep part of their weight
        old_chapters, old_origins = REVENUE_HOT[False]
        hot = hot + REVENUE_OLD_HOT * (
            1.2 * np.isin(cat.chapter[hs], old_chapters)
            + 0.8 * np.isin(origin, geo.index(old_origins))
        )
    rev = (
        base[:, A["revenue"]]
        + ents.supplier_propensity[sup, A["revenue"]]
        + 1.2 * complicit
        + 6.0 * rate
        + hot
        + 0.3 * new
    )
    out[:, A["revenue"]] = np.where(rate > 0, rev, -np.inf)

    # rare areas: who and how (entity and route factors, the same for every rare area, scaled
    # per area) on top of what (goods and origin factors of each mechanism)
    ent = _rare_entity_factors(batch, ents, importer_propensity)
    ent_w = RARE_ENTITY_WEIGHT

    route = np.maximum.reduce(
        [role["drug_source"][origin], role["drug_transit"][origin], role["drug_transit"][dep]]
    )
    if after_drift:
        route = np.maximum(route, role["drug_transit_new"][dep])
    conceal, prec = g.conceal[hs], g.precursor[hs]
    out[:, A["drugs"]] = (
        base[:, A["drugs"]]
        + ent_w["drugs"] * ent[:, A["drugs"]]
        + 0.8 * postal
        + 0.5 * forwarder
        + 3.5 * conceal * route
        + prec * (1.0 + 2.5 * role["precursor_source"][origin])
        + 1.0 * (role["drug_source"][origin] > 0)
        - RARE_OUTSIDE["drugs"] * ~(conceal | prec)
    )

    branded = g.branded[hs]
    out[:, A["ipr"]] = (
        base[:, A["ipr"]]
        + ents.supplier_propensity[sup, A["ipr"]]
        + 0.8 * complicit
        + 2.5 * branded
        + 1.5 * role["counterfeit"][origin]
        + 0.6 * role["counterfeit"][dep]
        + 1.2 * postal
        + 0.5 * new
        - 2.0 * ~branded
    )

    ods, wild, waste = g.ods[hs] | g.ods_weak[hs], g.wildlife[hs], g.waste[hs]
    out[:, A["environment"]] = (
        base[:, A["environment"]]
        + ent_w["environment"] * ent[:, A["environment"]]
        + 0.4 * postal
        + ods * (1.5 * g.ods[hs] + 2.0 * role["ods_source"][origin])
        + wild * (0.8 + 2.0 * role["wildlife_source"][origin])
        + waste * (1.0 + 1.5 * role["transit_hub"][dep] * rerouted)
        - RARE_OUTSIDE["environment"] * ~(ods | wild | waste)
    )

    meds, toys, dev, food = g.meds[hs], g.toys[hs], g.devices[hs], g.food[hs]
    not_pharma = ents.importer_sector[imp] != SECTORS.index("pharma")
    out[:, A["health_safety"]] = (
        base[:, A["health_safety"]]
        + ent_w["health_safety"] * ent[:, A["health_safety"]]
        + meds * (2.0 + 1.5 * role["falsified_medicines"][origin] + 1.0 * postal + 1.0 * not_pharma)
        + toys * (1.0 + 1.5 * role["unsafe_toys"][origin])
        + 1.0 * dev
        - 0.5 * food
        - RARE_OUTSIDE["health_safety"] * ~(meds | toys | dev)
    )

    weapons, dual = g.weapons[hs], g.dual_use[hs]
    diversion = role["diversion_hub"][dep] * rerouted
    out[:, A["security"]] = (
        base[:, A["security"]]
        + ent_w["security"] * ent[:, A["security"]]
        + 0.8 * forwarder
        + 0.6 * postal
        + weapons * (4.5 + 1.0 * unrelated)
        + dual * (0.5 + 2.0 * diversion)
        + 1.0 * diversion
        - RARE_OUTSIDE["security"] * ~(weapons | dual)
    )
    return out, noise


def calibrate(
    logits: np.ndarray, areas: tuple[str, ...] | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """Area intercepts such that the mean offence probability meets the target prevalence.

    Only ``areas`` (default: all) are calibrated; the other entries of ``out`` are kept.
    """
    out = np.empty(logits.shape[1]) if out is None else out.copy()
    for area, j in A.items():
        if areas is not None and area not in areas:
            continue
        lo, hi = -20.0, 10.0
        for _ in range(60):
            mid = (lo + hi) / 2
            if _sigmoid(logits[:, j] + mid).mean() < TARGET_PREVALENCE[area]:
                lo = mid
            else:
                hi = mid
        out[j] = (lo + hi) / 2
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def offence_probabilities(logits: np.ndarray, intercepts: np.ndarray) -> np.ndarray:
    """(items, areas) probabilities from logits and calibrated intercepts."""
    return _sigmoid(logits + intercepts)


# Gauss-Hermite nodes and weights for an expectation over N(0, NOISE_SD^2)
_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite_e.hermegauss(24)
_GH_WEIGHTS = _GH_WEIGHTS / _GH_WEIGHTS.sum()


def expected_probabilities(signal: np.ndarray, intercepts: np.ndarray) -> np.ndarray:
    """(items, areas) E[logistic(signal + intercept + e)], e ~ N(0, NOISE_SD^2).

    ``signal`` is the logit without the item noise. This is the offence probability given every
    hidden trait of the item: the oracle's score (``true_prob``).
    """
    z = signal + intercepts
    out = np.zeros_like(z)
    for x, w in zip(_GH_NODES, _GH_WEIGHTS, strict=True):
        out += w * _sigmoid(z + NOISE_SD * x)
    return out


def offence_codes(batch: Batch, cat: Catalogue, mechanism: np.ndarray) -> np.ndarray:
    """(items, areas) national offence code each item would carry if found, per area."""
    g = goods_masks()
    hs = batch["hs"]
    n = len(hs)
    codes = np.empty((n, len(RISK_AREAS)), dtype=object)
    codes[:, A["revenue"]] = mechanism
    codes[:, A["drugs"]] = np.where(g.precursor[hs], "DRG-PRE", "DRG-CON")
    codes[:, A["ipr"]] = "IPR-CF"
    codes[:, A["environment"]] = np.select(
        [g.ods[hs] | g.ods_weak[hs], g.wildlife[hs], g.waste[hs]],
        ["ENV-ODS", "ENV-CITES", "ENV-WST"],
        "ENV-OTH",
    )
    codes[:, A["health_safety"]] = np.select(
        [g.meds[hs], g.toys[hs], g.devices[hs], g.food[hs]],
        ["SAF-MED", "SAF-TOY", "SAF-DEV", "SAF-FOOD"],
        "SAF-OTH",
    )
    codes[:, A["security"]] = np.select(
        [g.weapons[hs], g.dual_use[hs]], ["SEC-WPN", "SEC-DU"], "SEC-OTH"
    )
    return codes
