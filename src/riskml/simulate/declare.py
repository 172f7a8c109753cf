"""What the declarant writes: quantities, masses and values, and the revenue fraud mechanisms.

True values follow the catalogue's reference unit value for the code, scaled by the origin's
price level, with noise; counterfeits and unsafe goods really are cheap. The declared values then
differ from the true ones only where a revenue offence was committed:

* ``REV-UV`` undervaluation: declared FOB is 25-70% of the true value;
* ``REV-CL`` misclassification: the lowest-duty code of the same heading is declared;
* ``REV-OR`` false preferential origin: a preference is claimed for goods of a non-FTA origin,
  half of the time with an FTA partner declared as origin (the supplier's country betrays it).

Half of the drugs, environment and security offences are priced far off the usual (x 0.3-0.6,
or x 1.6-3.3), a noisy trace of cover loads, mislabelled and diverted goods.

A few honest items carry genuinely low prices (clearance, related parties), so a low unit value
is a noisy trace, not a proof.
"""

from __future__ import annotations

import numpy as np

from riskml.simulate.catalogue import Catalogue
from riskml.simulate.geography import Geography
from riskml.simulate.offences import A, goods_masks
from riskml.simulate.trade import Batch

MECHANISMS = np.array(["REV-UV", "REV-CL", "REV-OR"], dtype=object)
MECHANISM_WEIGHT = np.array([0.6, 0.25, 0.15])
FALSE_ORIGINS = {"VN": 0.3, "TR": 0.25, "MA": 0.15, "KR": 0.1, "MX": 0.1, "UA": 0.1}
CIF_FACTOR = {
    "sea": (1.06, 1.15),
    "air": (1.04, 1.12),
    "road": (1.03, 1.07),
    "rail": (1.04, 1.09),
    "post": (1.05, 1.15),
}
HONEST_DISCOUNT = 0.03
ODD_PRICE_SHARE = 0.5


def revenue_mechanism(
    rng: np.random.Generator, batch: Batch, cat: Catalogue, geo: Geography
) -> np.ndarray:
    """The revenue fraud each item would use if it offended (only feasible ones)."""
    hs, origin = batch["hs"], batch["origin"]
    feasible = np.column_stack(
        [
            np.ones(len(hs), dtype=bool),
            cat.cheaper_sibling[hs] >= 0,
            ~geo.fta[origin],
        ]
    )
    w = feasible * MECHANISM_WEIGHT
    cum = np.cumsum(w, axis=1)
    u = rng.random(len(hs))[:, None] * cum[:, -1:]
    return MECHANISMS[np.minimum((u > cum).sum(axis=1), 2)]


def _quantities(rng: np.random.Generator, units: np.ndarray, raw: np.ndarray) -> np.ndarray:
    counted = np.isin(units, ["u", "pair"])
    return np.where(counted, np.maximum(1.0, np.round(raw)), np.maximum(0.01, np.round(raw, 2)))


def declare(
    rng: np.random.Generator,
    batch: Batch,
    cat: Catalogue,
    geo: Geography,
    importer_size: np.ndarray,
    offence: np.ndarray,
    mechanism: np.ndarray,
) -> Batch:
    """True and declared values of every item, and the duty evaded by revenue offences."""
    n = len(batch["hs"])
    hs, origin = batch["hs"], batch["origin"]
    g = goods_masks()
    uv = cat.unit_value[hs] * geo.price_level[origin] * rng.lognormal(0, cat.price_sd[hs], n)
    fake = offence[:, A["ipr"]]
    uv = np.where(fake, uv * rng.uniform(0.08, 0.35, n), uv)
    unsafe = offence[:, A["health_safety"]] & (g.meds[hs] | g.toys[hs])
    uv = np.where(unsafe, uv * rng.uniform(0.3, 0.7, n), uv)
    # cover loads of drugs, mislabelled refrigerants and wildlife, diverted dual-use goods: half
    # of them are priced far off the usual (mostly below, sometimes above)
    odd = offence[:, [A["drugs"], A["environment"], A["security"]]].any(axis=1) & (
        rng.random(n) < ODD_PRICE_SHARE
    )
    uv = np.where(
        odd, uv * np.exp(rng.choice([-1.0, 1.0], n, p=[0.75, 0.25]) * rng.uniform(0.5, 1.2, n)), uv
    )

    value = np.where(
        batch["postal"],
        rng.lognormal(np.log(120), 0.9, n),
        rng.lognormal(np.log(12000) + 0.5 * importer_size, 1.0, n),
    )
    units = cat.unit[hs]
    quantity = _quantities(rng, units, value / uv)
    fob_true = quantity * uv
    per_unit = np.where(units == "kg", 1.0, cat.kg_per_unit[hs] * rng.lognormal(0, 0.08, n))
    net = np.maximum(0.01, np.round(quantity * per_unit, 2))
    gross = np.maximum(net, np.round(net * rng.uniform(1.02, 1.25, n), 2))

    mode = geo.office_mode[batch["office"]]
    mode_key = np.where(batch["postal"], "post", mode)
    lo = np.select([mode_key == k for k in CIF_FACTOR], [v[0] for v in CIF_FACTOR.values()])
    hi = np.select([mode_key == k for k in CIF_FACTOR], [v[1] for v in CIF_FACTOR.values()])
    cif_factor = rng.uniform(lo, hi)

    rev = offence[:, A["revenue"]]
    uv_fraud = rev & (mechanism == "REV-UV")
    cl_fraud = rev & (mechanism == "REV-CL")
    or_fraud = rev & (mechanism == "REV-OR")
    declared_share = np.where(uv_fraud, rng.uniform(0.25, 0.7, n), 1.0)
    honest_low = ~rev & (rng.random(n) < HONEST_DISCOUNT)
    declared_share = np.where(honest_low, rng.uniform(0.5, 0.85, n), declared_share)
    fob = np.maximum(0.01, np.round(fob_true * declared_share, 2))
    cif = np.maximum(0.02, np.round(fob * cif_factor, 2))
    cif_true = fob_true * cif_factor

    hs_decl = np.where(cl_fraud, cat.cheaper_sibling[hs], hs)
    fake_origin = or_fraud & (rng.random(n) < 0.5)
    partners = geo.index(tuple(FALSE_ORIGINS))
    p = np.array(list(FALSE_ORIGINS.values()))
    origin_decl = origin.copy()
    origin_decl[fake_origin] = partners[rng.choice(len(partners), fake_origin.sum(), p=p)]
    claim = batch["legit_pref"] | or_fraud
    rate_decl = np.where(claim, 0.0, cat.duty_rate[hs_decl])
    rate_true = np.where(batch["legit_pref"], 0.0, cat.duty_rate[hs])
    duties = np.round(rate_decl * cif, 2)
    evaded = np.where(rev, np.maximum(0.0, np.round(rate_true * cif_true - duties, 2)), 0.0)
    return {
        "hs_decl": hs_decl,
        "origin_decl": origin_decl,
        "preference_claim": claim,
        "quantity": quantity,
        "quantity_unit": units,
        "gross_mass_kg": gross,
        "net_mass_kg": net,
        "fob_value": fob,
        "cif_value": cif,
        "duty_rate": rate_decl,
        "duties_paid": duties,
        "evaded_duty": evaded,
        "transport_mode": mode,
    }
