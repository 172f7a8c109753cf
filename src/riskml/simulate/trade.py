"""Legitimate trade flows of one month: who imports what, from where, through which office.

A month is a batch of column arrays (``dict[str, np.ndarray]``), one entry per goods item, with
items of the same declaration next to each other. Everything is vectorised over items.
"""

from __future__ import annotations

import numpy as np

from riskml.simulate.catalogue import SECTOR_SHARE, SECTORS, Catalogue
from riskml.simulate.entities import GENERAL, N_SLOTS, SLOT_WEIGHTS, Entities
from riskml.simulate.geography import OFFICE_KINDS, Geography

Batch = dict[str, np.ndarray]

ITEMS_PER_DECLARATION = np.array([0.45, 0.25, 0.15, 0.10, 0.05])  # 1..5 items
WEEKDAY_WEIGHT = np.array([1.1, 1.0, 1.0, 1.0, 0.9, 0.25, 0.08])  # Monday first
SAME_SECTOR_ITEM = 0.92
TRANSSHIPMENT = 0.07
DIVERSION_ROUTE = 0.03
NEW_ROUTE_SHARE = 0.06
POSTAL = (OFFICE_KINDS.index("post"), OFFICE_KINDS.index("express"))


def _declaration_sizes(rng: np.random.Generator, n_items: int) -> np.ndarray:
    guess = int(n_items / 2.0) + 10
    sizes = rng.choice(5, size=guess, p=ITEMS_PER_DECLARATION) + 1
    while sizes.sum() < n_items:
        sizes = np.concatenate([sizes, rng.choice(5, size=guess, p=ITEMS_PER_DECLARATION) + 1])
    cum = np.cumsum(sizes)
    n_decl = int(np.searchsorted(cum, n_items)) + 1
    sizes = sizes[:n_decl].copy()
    sizes[-1] -= cum[n_decl - 1] - n_items
    return sizes


def _dates(
    rng: np.random.Generator, n: int, start: np.datetime64, end: np.datetime64
) -> np.ndarray:
    days = np.arange(start, end, dtype="datetime64[D]")
    weekday = (days.astype(np.int64) + 3) % 7
    p = WEEKDAY_WEIGHT[weekday]
    return rng.choice(days, size=n, p=p / p.sum())


def _pick(rng: np.random.Generator, p_rows: np.ndarray) -> np.ndarray:
    """One categorical draw per row of a (n, k) probability matrix."""
    cum = np.cumsum(p_rows, axis=1)
    u = rng.random(len(p_rows))[:, None] * cum[:, -1:]
    return np.minimum((u > cum).sum(axis=1), p_rows.shape[1] - 1)


def _offices(
    rng: np.random.Generator, ents: Entities, geo: Geography, imp: np.ndarray
) -> np.ndarray:
    office = ents.importer_office[imp].copy()
    other = rng.random(len(imp)) < 0.25
    kind = _pick(rng, geo.sector_office_kind[ents.importer_sector[imp]])
    for k in range(len(OFFICE_KINDS)):
        rows = np.flatnonzero(other & (kind == k))
        choices = np.flatnonzero(geo.office_kind == k)
        office[rows] = choices[rng.integers(0, len(choices), size=len(rows))]
    return office


def _hub(rng: np.random.Generator, geo: Geography, role: str, n: int) -> np.ndarray:
    w = geo.role[role] * (0.5 + geo.weight / geo.weight.max())
    return rng.choice(len(geo.code), size=n, p=w / w.sum())


def _routes(
    rng: np.random.Generator,
    geo: Geography,
    origin: np.ndarray,
    office: np.ndarray,
    sup_sector: np.ndarray,
    after_drift: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Departure country and office after the land-border fix; abnormal routes included."""
    n = len(origin)
    departure = origin.copy()
    land = geo.office_kind[office] == OFFICE_KINDS.index("land")
    far = land & ~geo.neighbour[origin]
    via_neighbour = far & (rng.random(n) < 0.3)
    neighbours = np.flatnonzero(geo.neighbour)
    departure[via_neighbour] = neighbours[rng.integers(0, len(neighbours), via_neighbour.sum())]
    to_sea = far & ~via_neighbour
    seaports = np.flatnonzero(geo.office_kind == OFFICE_KINDS.index("sea"))
    office = office.copy()
    office[to_sea] = seaports[rng.integers(0, len(seaports), to_sea.sum())]

    tranship = ~land & (rng.random(n) < TRANSSHIPMENT)
    departure[tranship] = _hub(rng, geo, "transit_hub", tranship.sum())
    sensitive = np.isin(
        sup_sector,
        [SECTORS.index("electronics"), SECTORS.index("defense"), SECTORS.index("machinery")],
    )
    divert = sensitive & (rng.random(n) < DIVERSION_ROUTE)
    departure[divert] = _hub(rng, geo, "diversion_hub", divert.sum())
    if after_drift:
        src = (geo.role["drug_source"][origin] + geo.role["drug_transit"][origin]) > 0
        fresh = sup_sector == SECTORS.index("food_fresh")
        new_route = src & fresh & ~land & (rng.random(n) < NEW_ROUTE_SHARE)
        departure[new_route] = _hub(rng, geo, "drug_transit_new", new_route.sum())
    return departure, office


def _item_codes(rng: np.random.Generator, cat: Catalogue, sup_sector: np.ndarray) -> np.ndarray:
    trading = [SECTORS.index(s) for s in SECTOR_SHARE if s != "general"]
    share = np.array([SECTOR_SHARE[SECTORS[s]] for s in trading])
    share[trading.index(SECTORS.index("defense"))] = 0.0005  # stray arms are rare
    other = np.array(trading)[rng.choice(len(trading), size=len(sup_sector), p=share / share.sum())]
    sector = np.where(rng.random(len(sup_sector)) < SAME_SECTOR_ITEM, sup_sector, other)
    hs = np.empty(len(sector), dtype=int)
    for s in np.unique(sector):
        rows = np.flatnonzero(sector == s)
        codes = np.flatnonzero(cat.sector == s)
        p = cat.popularity[codes]
        hs[rows] = codes[rng.choice(len(codes), size=len(rows), p=p / p.sum())]
    return hs


def month_trade(
    rng: np.random.Generator,
    ents: Entities,
    geo: Geography,
    cat: Catalogue,
    start: np.datetime64,
    end: np.datetime64,
    n_items: int,
    *,
    after_drift: bool,
) -> Batch:
    """The legitimate shape of one month's goods items (before any fraud is applied)."""
    sizes = _declaration_sizes(rng, n_items)
    n_decl = len(sizes)
    eligible = ents.importer_registered < end
    w = ents.importer_weight * eligible
    imp = rng.choice(len(w), size=n_decl, p=w / w.sum())
    date = np.maximum(_dates(rng, n_decl, start, end), ents.importer_registered[imp])
    order = np.argsort(date, kind="stable")
    sizes, imp, date = sizes[order], imp[order], date[order]

    declarant = ents.importer_declarant[imp].copy()
    switch = rng.random(n_decl) < 0.15
    declarant[switch] = rng.choice(
        len(ents.declarant_weight), size=switch.sum(), p=ents.declarant_weight
    )
    slot = rng.choice(N_SLOTS, size=n_decl, p=SLOT_WEIGHTS)
    supplier = ents.importer_suppliers[imp, slot]
    sup_sector = ents.supplier_sector[supplier]
    origin = ents.supplier_country[supplier].copy()
    elsewhere = rng.random(n_decl) < 0.05
    origin[elsewhere] = _pick(rng, geo.sector_weight[sup_sector[elsewhere]])
    office = _offices(rng, ents, geo, imp)
    departure, office = _routes(rng, geo, origin, office, sup_sector, after_drift)
    procedure = np.array(["4000", "4071", "4200"], dtype=object)[
        rng.choice(3, size=n_decl, p=[0.9, 0.06, 0.04])
    ]

    decl = np.repeat(np.arange(n_decl), sizes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    item_no = np.arange(n_items) - np.repeat(starts, sizes) + 1
    hs = _item_codes(rng, cat, np.repeat(sup_sector, sizes))
    imp_i = imp[decl]
    imp_sector = ents.importer_sector[imp_i]
    item_origin = origin[decl]
    legit_pref = geo.fta[item_origin] & (cat.duty_rate[hs] > 0) & (rng.random(n_items) < 0.65)
    return {
        "decl": decl,
        "decl_start": starts,
        "item_no": item_no,
        "date": date[decl],
        "importer": imp_i,
        "declarant": declarant[decl],
        "supplier": supplier[decl],
        "origin": item_origin,
        "legit_pref": legit_pref,
        "departure": departure[decl],
        "office": office[decl],
        "procedure": procedure[decl],
        "hs": hs,
        "unrelated": (cat.sector[hs] != imp_sector) & (imp_sector != GENERAL),
        "postal": np.isin(geo.office_kind[office[decl]], POSTAL),
        "importer_age_days": (date[decl] - ents.importer_registered[imp_i]).astype(np.int64),
    }
