"""The parties of the simulated world: importers, declarants (brokers) and suppliers.

Entity tables are small (thousands of rows) and stay in memory for the whole run; the hidden
traits (compliance propensities, complicity) are what the fraud model reads, never columns of
the declarations.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from riskml.config import SimulateParams
from riskml.contract import RISK_AREAS
from riskml.simulate.catalogue import SECTOR_SHARE, SECTORS
from riskml.simulate.geography import Geography

N_SLOTS = 6
SLOT_WEIGHTS = np.array([0.4, 0.2, 0.15, 0.1, 0.1, 0.05])
# Spread of the hidden compliance propensity (logit scale) per area, in RISK_AREAS order.
PROPENSITY_SD = np.array([1.6, 1.2, 1.1, 1.0, 1.0, 1.0])
GENERAL = SECTORS.index("general")
# Rare-area traits: share of front companies among importers registered before / during the
# period, their chance to use a complicit declarant and to source from risky suppliers; share of
# risky suppliers (plus a bonus in countries with a rare-area risk role).
FRONT_SHARE = (0.01, 0.06)
FRONT_COMPLICIT = 0.5
FRONT_RISKY_SLOT = 0.5
RISKY_SUPPLIER_SHARE = 0.02
RISKY_SUPPLIER_ROLE_BONUS = 0.06
RARE_ROLES = (
    "drug_source",
    "drug_transit",
    "precursor_source",
    "ods_source",
    "wildlife_source",
    "falsified_medicines",
    "unsafe_toys",
    "diversion_hub",
)


@dataclass
class Entities:
    """Column arrays of importers, declarants and suppliers (index = entity number)."""

    importer_id: np.ndarray
    importer_sector: np.ndarray
    importer_weight: np.ndarray  # Zipf-like share of declarations
    importer_size: np.ndarray  # log-scale shipment size
    importer_registered: np.ndarray  # datetime64[D]
    importer_forwarder: np.ndarray  # bool: a freight forwarder acting as consignee
    importer_office: np.ndarray  # usual office
    importer_declarant: np.ndarray  # usual declarant
    importer_suppliers: np.ndarray  # (n, N_SLOTS) supplier numbers
    importer_propensity: np.ndarray  # (n, areas), initial value of an AR(1) process
    declarant_id: np.ndarray
    declarant_weight: np.ndarray
    declarant_complicit: np.ndarray  # bool
    declarant_propensity: np.ndarray  # (n, areas)
    supplier_id: np.ndarray
    supplier_country: np.ndarray
    supplier_sector: np.ndarray
    supplier_propensity: np.ndarray  # (n, areas)
    # hidden traits of the rare-area offence model (drawn from their own stream, [seed, 102])
    importer_front: np.ndarray  # bool: a front company (smuggling under cover of trade)
    supplier_risky: np.ndarray  # bool: a supplier repeatedly involved in rare-area offences


def _ids(prefix: str, n: int, width: int) -> np.ndarray:
    width = max(width, len(str(n)))
    return np.array([f"{prefix}{i:0{width}d}" for i in range(1, n + 1)], dtype=object)


def _zipf(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    w = np.arange(1, n + 1, dtype=float) ** -exponent
    return rng.permutation(w / w.sum())


def draw_propensity(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    """Hidden compliance propensities (n, areas): a common factor plus an area-specific one."""
    common = rng.normal(size=(n, 1))
    specific = rng.normal(size=(n, len(RISK_AREAS)))
    return scale * PROPENSITY_SD * (0.5 * common + np.sqrt(0.75) * specific)


def _suppliers(rng: np.random.Generator, n: int, geo: Geography) -> tuple[np.ndarray, ...]:
    trading = [s for s in SECTORS if s != "general"]
    share = np.array([SECTOR_SHARE[s] for s in trading])
    sector = rng.choice(len(trading), size=n, p=share / share.sum())
    sector[: len(trading)] = np.arange(len(trading))  # every sector has a supplier
    sector = np.array([SECTORS.index(trading[s]) for s in sector])
    country = np.empty(n, dtype=int)
    for s in np.unique(sector):
        rows = np.flatnonzero(sector == s)
        country[rows] = rng.choice(len(geo.code), size=len(rows), p=geo.sector_weight[s])
    return sector, country


def _supplier_slots(
    rng: np.random.Generator, imp_sector: np.ndarray, sup_sector: np.ndarray
) -> np.ndarray:
    n_sup = len(sup_sector)
    slots = rng.integers(0, n_sup, size=(len(imp_sector), N_SLOTS))  # any supplier
    in_sector = rng.random(slots.shape) < 0.85
    for s in np.unique(imp_sector):
        if s == GENERAL:
            continue
        pool = np.flatnonzero(sup_sector == s)
        rows = np.flatnonzero(imp_sector == s)
        draw = pool[rng.integers(0, len(pool), size=(len(rows), N_SLOTS))]
        slots[rows] = np.where(in_sector[rows], draw, slots[rows])
    return slots


def build_entities(params: SimulateParams, geo: Geography) -> Entities:
    """Draw importers, declarants and suppliers for a run (deterministic for ``params.seed``)."""
    rng = np.random.default_rng([params.seed, 101])
    n_imp, n_dcl, n_sup = params.n_importers, params.n_declarants, params.n_suppliers

    sectors = list(SECTOR_SHARE)
    share = np.array([SECTOR_SHARE[s] for s in sectors])
    imp_sector = np.array(
        [
            SECTORS.index(sectors[i])
            for i in rng.choice(len(sectors), size=n_imp, p=share / share.sum())
        ]
    )
    forwarder = rng.random(n_imp) < 0.05
    imp_sector[forwarder] = GENERAL

    start = np.datetime64(params.start_date, "D")
    end = np.datetime64(add_months(params.start_date, params.months), "D")
    period_days = int((end - start).astype(int))
    before = rng.random(n_imp) < 0.65
    offset = np.where(
        before, -rng.integers(30, 3650, size=n_imp), rng.integers(0, period_days, size=n_imp)
    )
    registered = start + offset.astype("timedelta64[D]")

    propensity = draw_propensity(rng, n_imp, 1.0)
    dcl_weight = _zipf(rng, n_dcl, 0.8)
    complicit = rng.random(n_dcl) < 0.05
    complicit[0 if not complicit.any() else np.flatnonzero(complicit)[0]] = True
    main_dcl = rng.choice(n_dcl, size=n_imp, p=dcl_weight)
    # risky importers seek out complicit brokers
    seek = (propensity.mean(axis=1) > 0.8) & (rng.random(n_imp) < 0.4)
    pool = np.flatnonzero(complicit)
    main_dcl[seek] = pool[rng.integers(0, len(pool), size=seek.sum())]

    sup_sector, sup_country = _suppliers(rng, n_sup, geo)
    office_p = geo.sector_office_kind[imp_sector]
    kind = (rng.random(n_imp)[:, None] > np.cumsum(office_p, axis=1)).sum(axis=1)
    kind = np.minimum(kind, office_p.shape[1] - 1)
    office = np.zeros(n_imp, dtype=int)
    for k in range(5):
        rows = np.flatnonzero(kind == k)
        choices = np.flatnonzero(geo.office_kind == k)
        office[rows] = choices[rng.integers(0, len(choices), size=len(rows))]

    imp_weight = _zipf(rng, n_imp, 0.7)
    imp_size = rng.normal(0, 0.6, size=n_imp)
    slots = _supplier_slots(rng, imp_sector, sup_sector)
    dcl_propensity = draw_propensity(rng, n_dcl, 0.4)
    sup_propensity = draw_propensity(rng, n_sup, 0.5)
    # rare-area traits, from a separate stream so that the draws above stay as they were
    rng2 = np.random.default_rng([params.seed, 102])
    front = rng2.random(n_imp) < np.where(before, FRONT_SHARE[0], FRONT_SHARE[1])
    to_complicit = front & (rng2.random(n_imp) < FRONT_COMPLICIT)
    main_dcl[to_complicit] = pool[rng2.integers(0, len(pool), size=to_complicit.sum())]
    role = np.max([geo.role[r] for r in RARE_ROLES], axis=0)
    risky = rng2.random(n_sup) < (
        RISKY_SUPPLIER_SHARE + RISKY_SUPPLIER_ROLE_BONUS * role[sup_country]
    )
    risky_pool = np.flatnonzero(risky)
    swap = front[:, None] & (rng2.random((n_imp, 2)) < FRONT_RISKY_SLOT)
    if len(risky_pool):
        slots[:, :2] = np.where(
            swap, risky_pool[rng2.integers(0, len(risky_pool), swap.shape)], slots[:, :2]
        )

    return Entities(
        importer_id=_ids("IMP", n_imp, 5),
        importer_sector=imp_sector,
        importer_weight=imp_weight,
        importer_size=imp_size,
        importer_registered=registered,
        importer_forwarder=forwarder,
        importer_office=office,
        importer_declarant=main_dcl,
        importer_suppliers=slots,
        importer_propensity=propensity,
        declarant_id=_ids("DCL", n_dcl, 4),
        declarant_weight=dcl_weight,
        declarant_complicit=complicit,
        declarant_propensity=dcl_propensity,
        supplier_id=_ids("SUP", n_sup, 5),
        supplier_country=sup_country,
        supplier_sector=sup_sector,
        supplier_propensity=sup_propensity,
        importer_front=front,
        supplier_risky=risky,
    )


def add_months(d: date, months: int) -> date:
    """First day of the month ``months`` after the month of ``d``."""
    y, m = divmod(d.month - 1 + months, 12)
    return date(d.year + y, m + 1, 1)
