"""Seizures made elsewhere by the smuggling networks that also trade through this administration.

Other administrations (the WCO's Customs Enforcement Network) seize consignments of the same
networks: cocaine in fruit from the same ports, precursors from the same chemical suppliers'
countries, refrigerant gases and waste through the same hubs, dual-use goods through the same
diversion hubs. Their records reach this administration late, incomplete and uneven by country,
and they are **not linked** to its declarations.

Each month, per rare area, the expected offences of the month's items (``true_prob``) are summed
per network cell (HS heading of the goods, origin, departure, transport mode); other countries
seize ``SEIZURES_PER_OFFENCE`` times that, with over-dispersion (a gamma factor per cell and
month). ``BACKGROUND_SHARE`` more seizures fall on the area's goods from countries drawn by trade
weight, networks that do not ship here. A seizure is then reported with its reporter's
completeness (many never reach CEN), after its reporter's delay (weeks to months, some countries
report by quarter), with fields missing or coarse: the cover goods at 6, 4 or 2 digits or not at
all, the transit country often left out, the transport mode sometimes.

Seizures draw from their own random stream (``[seed, 3, month]``), so adding them changes none
of the other tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from riskml.contract import SEIZURE_COLUMNS, TRANSPORT_MODES, canonical_dtype, empty_table
from riskml.simulate.catalogue import Catalogue
from riskml.simulate.geography import Geography
from riskml.simulate.offences import A, goods_masks
from riskml.simulate.trade import Batch

SEIZURE_AREAS = ("drugs", "environment", "health_safety", "security")
# Seizures made elsewhere per expected offence in this administration (networks are larger than
# their share of this territory's trade).
SEIZURES_PER_OFFENCE = {"drugs": 2.0, "environment": 1.0, "health_safety": 0.6, "security": 1.5}
OVERDISPERSION = 2.0  # gamma shape of the per-cell, per-month intensity factor (mean 1)
BACKGROUND_SHARE = 0.25  # extra seizures on the area's goods from unrelated networks
# reporting country: (weight, completeness = share of its seizures that reach CEN, median delay
# in days, reports by quarter)
REPORTERS: dict[str, tuple[float, float, float, bool]] = {
    "NL": (8, 0.95, 30, False),
    "BE": (7, 0.9, 35, False),
    "ES": (7, 0.85, 45, False),
    "DE": (5, 0.9, 40, False),
    "FR": (5, 0.8, 60, False),
    "IT": (4, 0.7, 75, True),
    "GB": (4, 0.85, 40, False),
    "PT": (2, 0.6, 90, True),
    "IE": (1, 0.7, 60, False),
    "PL": (2, 0.6, 70, True),
    "SE": (1, 0.9, 30, False),
    "US": (5, 0.5, 90, True),
    "CA": (1, 0.6, 60, False),
    "AU": (1, 0.7, 45, False),
    "ZA": (1, 0.4, 120, True),
    "MA": (1, 0.4, 120, True),
    "TR": (2, 0.5, 90, True),
    "AE": (2, 0.4, 90, True),
    "SG": (1, 0.7, 45, False),
    "HK": (2, 0.6, 60, False),
    "EC": (2, 0.4, 100, True),
    "CO": (2, 0.5, 100, True),
    "PA": (1, 0.4, 100, True),
    "BR": (2, 0.5, 90, True),
}
EUROPE = ("NL", "BE", "ES", "DE", "FR", "IT", "GB", "PT", "IE", "PL", "SE")
HS_DIGITS_P = {6: 0.5, 4: 0.25, 2: 0.1, 0: 0.15}  # how the cover goods are reported
TRANSIT_MISSING = 0.4
MODE_MISSING = 0.1
QUANTITY_MISSING = 0.15


@dataclass
class SeizureLog:
    """Run-long state of the seizure reports: the next record number per year."""

    next_seq: dict[int, int] = field(default_factory=dict)

    def ids(self, dates: np.ndarray) -> np.ndarray:
        year = dates.astype("datetime64[Y]").astype(int) + 1970
        seq = np.empty(len(dates), dtype=np.int64)
        for y in np.unique(year):
            rows = year == y
            first = self.next_seq.get(int(y), 1)
            seq[rows] = first + np.arange(rows.sum())
            self.next_seq[int(y)] = first + int(rows.sum())
        return np.array([f"CEN{y}-{s:06d}" for y, s in zip(year, seq, strict=True)], dtype=object)


def _commodity(area: str, hs: np.ndarray, origin_code: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What was seized and how it was hidden, per seizure."""
    g = goods_masks()
    n = len(hs)
    if area == "drugs":
        heroin = np.isin(origin_code, ("AF", "MM"))
        commodity = np.where(
            g.precursor[hs], "drug precursors", np.where(heroin, "heroin", "cocaine")
        )
        method = np.where(
            g.precursor[hs],
            "misdeclared as industrial chemicals",
            np.where(g.conceal[hs], "hidden in the cargo of a food container", "hidden in goods"),
        )
    elif area == "environment":
        commodity = np.select(
            [g.ods[hs] | g.ods_weak[hs], g.wildlife[hs], g.waste[hs]],
            ["ozone-depleting substances", "protected wildlife (CITES)", "waste"],
            "environmental goods",
        )
        method = np.where(g.waste[hs], "declared as second-hand goods", "mislabelled")
    elif area == "health_safety":
        commodity = np.select(
            [g.meds[hs], g.toys[hs], g.devices[hs]],
            ["falsified medicines", "unsafe toys", "unsafe medical devices"],
            "unsafe goods",
        )
        method = np.full(n, "misdeclared", dtype=object)
    else:
        commodity = np.select(
            [g.weapons[hs], g.dual_use[hs]],
            ["weapons, ammunition and explosives", "dual-use goods"],
            "controlled goods",
        )
        method = np.where(g.weapons[hs], "hidden in goods", "misdeclared end user")
    return commodity.astype(object), method.astype(object)


def _area_goods(area: str) -> np.ndarray:
    g = goods_masks()
    return {
        "drugs": g.conceal | g.precursor,
        "environment": g.ods | g.ods_weak | g.wildlife | g.waste,
        "health_safety": g.meds | g.toys | g.devices,
        "security": g.weapons | g.dual_use,
    }[area]


def _cells(
    rng: np.random.Generator,
    area: str,
    batch: Batch,
    mode: np.ndarray,
    prob: np.ndarray,
    geo: Geography,
) -> tuple[np.ndarray, ...]:
    """(hs, origin, departure, mode) of each seizure of ``area`` made elsewhere this month."""
    hs, origin, dep = batch["hs"], batch["origin"], batch["departure"]
    n_c, n_m = len(geo.code), len(TRANSPORT_MODES)
    key = ((hs.astype(np.int64) * n_c + origin) * n_c + dep) * n_m + mode
    cells, inverse = np.unique(key, return_inverse=True)
    expected = np.bincount(inverse, weights=prob[:, A[area]], minlength=len(cells))
    factor = rng.gamma(OVERDISPERSION, 1.0 / OVERDISPERSION, size=len(cells))
    count = rng.poisson(SEIZURES_PER_OFFENCE[area] * expected * factor)
    seized = np.repeat(cells, count)
    # unrelated networks: the area's goods from any country (by trade weight), any mode
    n_bg = rng.poisson(BACKGROUND_SHARE * SEIZURES_PER_OFFENCE[area] * expected.sum())
    goods = np.flatnonzero(_area_goods(area))
    weight = geo.weight / geo.weight.sum()
    bg_hs = rng.choice(goods, size=n_bg)
    bg_origin = rng.choice(n_c, size=n_bg, p=weight)
    bg_mode = rng.choice(np.unique(mode), size=n_bg)
    bg = ((bg_hs.astype(np.int64) * n_c + bg_origin) * n_c + bg_origin) * n_m + bg_mode
    seized = np.concatenate([seized, bg])
    m = seized % n_m
    rest = seized // n_m
    d = rest % n_c
    rest //= n_c
    return rest // n_c, rest % n_c, d, m


def month_seizures(
    rng: np.random.Generator,
    batch: Batch,
    declarations: pd.DataFrame,
    prob: np.ndarray,
    geo: Geography,
    cat: Catalogue,
    start: np.datetime64,
    end: np.datetime64,
    log: SeizureLog,
) -> pd.DataFrame:
    """The seizure records of the seizures made elsewhere in the month [start, end)."""
    mode = pd.Categorical(
        declarations["transport_mode"].to_numpy(), categories=TRANSPORT_MODES
    ).codes.astype(np.int64)
    parts = []
    for area in SEIZURE_AREAS:
        hs, origin, dep, m = _cells(rng, area, batch, mode, prob, geo)
        if len(hs):
            parts.append(_records(rng, area, hs, origin, dep, m, geo, cat, start, end))
    if not parts:
        return empty_table("seizures")
    frame = pd.concat(parts, ignore_index=True)
    frame = frame.sort_values("seizure_date", kind="stable").reset_index(drop=True)
    frame.insert(0, "seizure_id", log.ids(frame["seizure_date"].to_numpy().astype("datetime64[D]")))
    return frame.astype({c.name: canonical_dtype(c) for c in SEIZURE_COLUMNS})


def _records(
    rng: np.random.Generator,
    area: str,
    hs: np.ndarray,
    origin: np.ndarray,
    dep: np.ndarray,
    mode: np.ndarray,
    geo: Geography,
    cat: Catalogue,
    start: np.datetime64,
    end: np.datetime64,
) -> pd.DataFrame:
    n = len(hs)
    codes = np.array(list(REPORTERS))
    weight, complete, delay, quarterly = (
        np.array(v) for v in zip(*REPORTERS.values(), strict=True)
    )
    reporter = rng.choice(len(codes), size=n, p=weight / weight.sum())
    days = (end - start).astype(int)
    seized_on = start + rng.integers(0, days, size=n).astype("timedelta64[D]")
    lag = np.round(delay[reporter] * rng.lognormal(0.0, 0.5, size=n)).astype(int)
    reported = seized_on + lag.astype("timedelta64[D]")
    # quarterly reporters send a quarter's seizures together, a month after its end
    q_end = (
        reported.astype("datetime64[M]")
        - (reported.astype("datetime64[M]").astype(int) % 3)
        + np.timedelta64(3, "M")
    ).astype("datetime64[D]") + np.timedelta64(30, "D")
    reported = np.where(quarterly[reporter], q_end, reported)
    kept = rng.random(n) < complete[reporter]

    origin_code, dep_code = geo.code[origin], geo.code[dep]
    commodity, method = _commodity(area, hs, origin_code)
    digits = rng.choice(list(HS_DIGITS_P), size=n, p=list(HS_DIGITS_P.values()))
    hs6 = cat.hs6[hs].astype(str)
    cover = np.array(
        [code[:k] if k else None for code, k in zip(hs6, digits, strict=True)], dtype=object
    )
    transit = np.where((dep != origin) & (rng.random(n) >= TRANSIT_MISSING), dep_code, None)
    destination = np.where(
        rng.random(n) < 0.7, codes[reporter], rng.choice(np.array(EUROPE), size=n)
    )
    mode_text = np.array(TRANSPORT_MODES, dtype=object)[mode]
    mode_text = np.where(rng.random(n) < MODE_MISSING, None, mode_text)
    unit = np.where((area == "drugs") | np.isin(cat.unit[hs], ("kg", "l")), "kg", "u")
    quantity = np.where(unit == "kg", rng.lognormal(3.5, 1.3, size=n), rng.integers(1, 500, n))
    quantity = np.where(rng.random(n) < QUANTITY_MISSING, np.nan, np.round(quantity, 1))
    frame = pd.DataFrame(
        {
            "seizure_date": seized_on.astype("datetime64[ns]"),
            "report_date": reported.astype("datetime64[ns]"),
            "reporting_country": codes[reporter].astype(object),
            "risk_area": area,
            "commodity": commodity,
            "concealment_hs": cover,
            "concealment_method": method,
            "departure_country": origin_code.astype(object),
            "transit_country": transit,
            "destination_country": destination.astype(object),
            "transport_mode": mode_text,
            "quantity": np.maximum(quantity, 0.1),
            "quantity_unit": unit.astype(object),
        }
    )
    return frame[kept].reset_index(drop=True)
