"""Countries (ISO 3166 alpha-2) with their trade weight, price level and risk roles, and offices.

Countries here are origins and departure points of *goods*, a lawful selection criterion (WTO
TFA art. 7.4). The simulated world has no notion of a person's nationality.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from riskml.simulate.catalogue import SECTORS

# code: (general trade weight, price level of its exports)
_COUNTRIES: dict[str, tuple[float, float]] = {
    "CN": (20, 0.8),
    "US": (8, 1.2),
    "DE": (8, 1.2),
    "FR": (4, 1.2),
    "IT": (4, 1.15),
    "ES": (3, 1.05),
    "NL": (3, 1.15),
    "BE": (2, 1.15),
    "PL": (3, 0.95),
    "GB": (4, 1.2),
    "CH": (2, 1.4),
    "NO": (1, 1.3),
    "TR": (4, 0.85),
    "IN": (5, 0.75),
    "JP": (3, 1.25),
    "KR": (3, 1.1),
    "VN": (4, 0.75),
    "TH": (2, 0.85),
    "MY": (2, 0.9),
    "ID": (2, 0.8),
    "SG": (1, 1.1),
    "HK": (2, 0.95),
    "TW": (2, 1.05),
    "BD": (2, 0.65),
    "PK": (1.5, 0.7),
    "LK": (0.5, 0.75),
    "AE": (1, 1.0),
    "SA": (0.5, 1.0),
    "IL": (0.5, 1.2),
    "EG": (0.5, 0.75),
    "MA": (1, 0.8),
    "TN": (0.7, 0.8),
    "ZA": (1, 0.9),
    "NG": (0.3, 0.8),
    "GH": (0.2, 0.8),
    "KE": (0.3, 0.8),
    "ET": (0.2, 0.75),
    "CI": (0.2, 0.8),
    "CM": (0.1, 0.8),
    "CO": (0.5, 0.85),
    "EC": (0.4, 0.8),
    "PE": (0.4, 0.85),
    "BO": (0.1, 0.8),
    "BR": (2, 0.9),
    "AR": (0.5, 0.9),
    "CL": (0.5, 0.95),
    "CR": (0.3, 0.9),
    "PA": (0.2, 0.95),
    "MX": (1.5, 0.9),
    "DO": (0.2, 0.85),
    "CA": (1.5, 1.15),
    "AU": (0.7, 1.15),
    "NZ": (0.3, 1.1),
    "UA": (0.5, 0.8),
    "KZ": (0.2, 0.85),
    "AM": (0.1, 0.85),
    "GE": (0.1, 0.85),
    "KG": (0.05, 0.8),
    "AF": (0.02, 0.7),
    "MM": (0.2, 0.7),
    "MG": (0.1, 0.75),
    "IE": (0.5, 1.2),
    "PT": (0.8, 1.0),
    "SE": (1, 1.2),
    "AT": (1, 1.2),
    "CZ": (1.5, 1.0),
    "HU": (1, 0.95),
}

# Countries whose suppliers usually serve each sector (weight), on top of general trade.
SECTOR_COUNTRIES: dict[str, dict[str, float]] = {
    "food_fresh": {
        "EC": 4,
        "CO": 3,
        "CR": 3,
        "PE": 3,
        "ZA": 4,
        "MA": 4,
        "ES": 6,
        "NL": 3,
        "BR": 3,
        "CL": 3,
        "AR": 2,
        "NO": 4,
        "VN": 3,
        "TH": 2,
        "IN": 2,
        "PA": 2,
        "DO": 2,
        "EG": 2,
        "KE": 1,
        "GH": 1,
        "CI": 1,
        "US": 2,
        "PL": 2,
        "MX": 2,
    },
    "food_grocery": {
        "BR": 3,
        "CO": 2,
        "VN": 4,
        "ET": 2,
        "IN": 4,
        "ID": 3,
        "CI": 3,
        "GH": 2,
        "KE": 2,
        "LK": 2,
        "TH": 3,
        "MY": 3,
        "DE": 4,
        "FR": 3,
        "IT": 4,
        "NL": 3,
        "US": 3,
        "CN": 3,
        "TR": 2,
        "PE": 1,
        "EC": 1,
    },
    "beverages_tobacco": {
        "FR": 6,
        "IT": 5,
        "ES": 4,
        "GB": 4,
        "DE": 3,
        "US": 2,
        "CL": 2,
        "AR": 2,
        "ZA": 2,
        "AU": 2,
        "MX": 2,
        "PT": 2,
        "CN": 2,
        "TR": 1,
        "AE": 1,
        "BE": 2,
        "NL": 2,
        "IN": 1,
        "DO": 1,
    },
    "fuel": {"NO": 5, "SA": 4, "AE": 3, "US": 3, "NL": 4, "BE": 2, "IN": 2, "KZ": 2, "NG": 2},
    "chemicals": {
        "CN": 8,
        "IN": 6,
        "DE": 5,
        "US": 3,
        "NL": 3,
        "BE": 3,
        "FR": 2,
        "JP": 2,
        "KR": 2,
        "CH": 2,
        "TR": 1,
    },
    "pharma": {
        "IN": 6,
        "DE": 5,
        "CH": 5,
        "US": 4,
        "IE": 3,
        "CN": 3,
        "FR": 2,
        "BE": 2,
        "IT": 2,
        "GB": 2,
        "IL": 1,
    },
    "cosmetics": {
        "FR": 6,
        "IT": 3,
        "US": 3,
        "KR": 4,
        "CN": 4,
        "DE": 3,
        "ES": 2,
        "GB": 2,
        "TR": 1,
        "AE": 1,
    },
    "apparel": {
        "CN": 10,
        "BD": 7,
        "TR": 5,
        "VN": 5,
        "IN": 4,
        "PK": 3,
        "IT": 3,
        "MA": 2,
        "TN": 2,
        "LK": 2,
        "PT": 2,
        "ID": 2,
        "MM": 1,
        "HK": 1,
    },
    "leather_luxury": {
        "IT": 6,
        "FR": 5,
        "CH": 4,
        "CN": 6,
        "HK": 3,
        "IN": 2,
        "TR": 2,
        "ES": 2,
        "JP": 1,
        "AE": 1,
    },
    "electronics": {
        "CN": 12,
        "TW": 4,
        "KR": 4,
        "JP": 3,
        "VN": 4,
        "MY": 3,
        "US": 3,
        "DE": 2,
        "HK": 2,
        "SG": 2,
        "TH": 1,
        "MX": 1,
    },
    "machinery": {
        "DE": 8,
        "CN": 8,
        "IT": 4,
        "US": 3,
        "JP": 3,
        "KR": 2,
        "PL": 2,
        "CZ": 2,
        "TR": 2,
        "FR": 2,
        "AT": 1,
        "ES": 1,
        "IN": 2,
        "UA": 1,
    },
    "vehicles": {
        "DE": 8,
        "JP": 6,
        "KR": 5,
        "US": 3,
        "FR": 3,
        "CN": 4,
        "GB": 2,
        "IT": 2,
        "CZ": 2,
        "ES": 2,
        "MX": 2,
        "TR": 1,
        "TH": 1,
        "IN": 1,
    },
    "home_wood": {
        "CN": 8,
        "PL": 3,
        "VN": 3,
        "IT": 3,
        "DE": 3,
        "MY": 2,
        "ID": 2,
        "BR": 2,
        "TR": 2,
        "IN": 2,
        "CM": 1,
        "GH": 1,
        "CI": 1,
        "SE": 2,
    },
    "toys_leisure": {"CN": 12, "VN": 2, "DE": 2, "US": 1, "HK": 2, "JP": 1, "TW": 1, "IN": 1},
    "recycling": {
        "US": 3,
        "GB": 3,
        "DE": 3,
        "NL": 3,
        "BE": 2,
        "IE": 1,
        "FR": 2,
        "AE": 2,
        "HK": 1,
        "SG": 1,
        "TR": 1,
        "PL": 1,
    },
    "animals": {
        "ZA": 2,
        "KE": 1,
        "MG": 2,
        "ID": 2,
        "TH": 1,
        "VN": 1,
        "CM": 2,
        "NG": 1,
        "BR": 1,
        "CO": 1,
        "AU": 1,
        "NZ": 1,
        "US": 1,
        "CN": 1,
        "IN": 1,
    },
    "defense": {
        "US": 5,
        "DE": 3,
        "IT": 2,
        "BE": 2,
        "CZ": 2,
        "TR": 2,
        "CH": 1,
        "FR": 2,
        "IL": 1,
        "GB": 1,
    },
    "general": {},
}

# Risk roles of countries, as a risk weight in [0, 1] (absent = 0).
ROLES: dict[str, dict[str, float]] = {
    # coca and opium source countries, and the usual transit points of concealed shipments
    "drug_source": {"CO": 1.0, "PE": 1.0, "BO": 1.0, "AF": 1.0, "MM": 0.8},
    "drug_transit": {"EC": 1.0, "BR": 0.7, "CR": 0.8, "PA": 0.8, "MX": 0.6, "DO": 0.7},
    # the new route that opens at the drift month (West African transshipment)
    "drug_transit_new": {"GH": 1.0, "NG": 1.0, "CI": 1.0},
    "precursor_source": {"CN": 1.0, "IN": 0.8},
    "counterfeit": {
        "CN": 1.0,
        "HK": 1.0,
        "TR": 0.8,
        "TH": 0.5,
        "AE": 0.6,
        "IN": 0.4,
        "MY": 0.3,
        "VN": 0.3,
        "MA": 0.3,
    },
    "ods_source": {"CN": 1.0, "IN": 0.7, "TR": 0.3},
    "wildlife_source": {
        "MG": 1.0,
        "CM": 1.0,
        "NG": 0.8,
        "ID": 0.8,
        "VN": 0.8,
        "TH": 0.6,
        "KE": 0.6,
        "ZA": 0.4,
        "BR": 0.4,
        "MM": 0.8,
    },
    "falsified_medicines": {"IN": 0.8, "CN": 1.0, "PK": 0.8, "HK": 0.6, "AE": 0.5},
    "unsafe_toys": {"CN": 1.0, "HK": 0.8, "VN": 0.4, "IN": 0.4},
    # trade hubs where goods are transshipped; waste and diverted goods pass through them
    "transit_hub": {
        "AE": 1.0,
        "SG": 0.8,
        "HK": 0.8,
        "PA": 0.8,
        "TR": 0.6,
        "MY": 0.6,
        "NL": 0.3,
        "BE": 0.3,
    },
    # departure points of dual-use diversion (abnormal routes)
    "diversion_hub": {
        "AE": 0.8,
        "TR": 0.6,
        "AM": 1.0,
        "KZ": 1.0,
        "KG": 1.0,
        "GE": 1.0,
        "HK": 0.6,
        "MY": 0.4,
    },
}

# Partners with a free-trade agreement: goods of these origins may claim a zero preferential rate.
FTA_PARTNERS: frozenset[str] = frozenset(
    "CH NO KR JP CA MX CL CO PE EC VN SG MA TN ZA IL TR GE UA CR PA NZ DE FR IT ES NL BE PL IE "
    "PT SE AT CZ HU GB".split()
)

# Land neighbours of the simulated customs territory (road and rail borders).
NEIGHBOURS: frozenset[str] = frozenset({"DE", "PL", "CZ", "AT", "HU", "UA"})


@dataclass(frozen=True)
class Office:
    """A customs office: code, kind and the transport mode(s) it handles."""

    code: str
    name: str
    kind: str  # sea, air, land, post, express
    mode: str


OFFICES: tuple[Office, ...] = (
    Office("SEA001", "North Sea container port", "sea", "sea"),
    Office("SEA002", "River delta port", "sea", "sea"),
    Office("SEA003", "Southern bulk and reefer port", "sea", "sea"),
    Office("AIR001", "Capital international airport cargo", "air", "air"),
    Office("AIR002", "Regional airport cargo", "air", "air"),
    Office("LND001", "Western motorway border", "land", "road"),
    Office("LND002", "Eastern motorway border", "land", "road"),
    Office("LND003", "Eastern rail terminal", "land", "rail"),
    Office("PST001", "International mail centre", "post", "post"),
    Office("EXP001", "Express courier hub", "express", "air"),
)

OFFICE_KINDS: tuple[str, ...] = ("sea", "air", "land", "post", "express")

# How each importer sector ships (probability of office kind, order of OFFICE_KINDS).
SECTOR_OFFICE_KIND: dict[str, tuple[float, ...]] = {
    "food_fresh": (0.75, 0.10, 0.15, 0, 0),
    "food_grocery": (0.70, 0.05, 0.20, 0.02, 0.03),
    "beverages_tobacco": (0.60, 0.05, 0.35, 0, 0),
    "fuel": (0.80, 0, 0.20, 0, 0),
    "chemicals": (0.65, 0.10, 0.20, 0, 0.05),
    "pharma": (0.20, 0.40, 0.10, 0.10, 0.20),
    "cosmetics": (0.30, 0.20, 0.10, 0.20, 0.20),
    "apparel": (0.50, 0.10, 0.10, 0.15, 0.15),
    "leather_luxury": (0.30, 0.30, 0.10, 0.10, 0.20),
    "electronics": (0.35, 0.35, 0.10, 0.05, 0.15),
    "machinery": (0.60, 0.10, 0.28, 0, 0.02),
    "vehicles": (0.70, 0, 0.30, 0, 0),
    "home_wood": (0.70, 0.02, 0.25, 0.01, 0.02),
    "toys_leisure": (0.60, 0.05, 0.10, 0.12, 0.13),
    "recycling": (0.70, 0, 0.30, 0, 0),
    "animals": (0.40, 0.50, 0.10, 0, 0),
    "defense": (0.40, 0.40, 0.20, 0, 0),
    "general": (0.45, 0.15, 0.20, 0.10, 0.10),
}


@dataclass(frozen=True)
class Geography:
    """Column arrays over countries (index = country number) and offices."""

    code: np.ndarray  # str
    weight: np.ndarray  # general trade weight
    price_level: np.ndarray
    role: dict[str, np.ndarray]  # role -> risk weight per country
    fta: np.ndarray  # bool
    neighbour: np.ndarray  # bool
    sector_weight: np.ndarray  # (n_sectors, n_countries), normalised rows
    office_code: np.ndarray
    office_kind: np.ndarray  # int index into OFFICE_KINDS
    office_mode: np.ndarray
    sector_office_kind: np.ndarray  # (n_sectors, n_kinds)

    def index(self, codes: list[str] | tuple[str, ...]) -> np.ndarray:
        """Country numbers of ``codes``."""
        lookup = {c: i for i, c in enumerate(self.code)}
        return np.array([lookup[c] for c in codes], dtype=int)


@lru_cache(maxsize=1)
def load_geography() -> Geography:
    """The countries and offices of the simulated world."""
    codes = list(_COUNTRIES)
    weight = np.array([_COUNTRIES[c][0] for c in codes], dtype=float)
    general = weight / weight.sum()
    sector_weight = np.empty((len(SECTORS), len(codes)))
    for s, sector in enumerate(SECTORS):
        specific = np.array([SECTOR_COUNTRIES[sector].get(c, 0.0) for c in codes])
        if specific.sum() == 0:
            sector_weight[s] = general
        else:
            sector_weight[s] = 0.8 * specific / specific.sum() + 0.2 * general
    return Geography(
        code=np.array(codes, dtype=object),
        weight=general,
        price_level=np.array([_COUNTRIES[c][1] for c in codes]),
        role={r: np.array([m.get(c, 0.0) for c in codes]) for r, m in ROLES.items()},
        fta=np.array([c in FTA_PARTNERS for c in codes]),
        neighbour=np.array([c in NEIGHBOURS for c in codes]),
        sector_weight=sector_weight,
        office_code=np.array([o.code for o in OFFICES], dtype=object),
        office_kind=np.array([OFFICE_KINDS.index(o.kind) for o in OFFICES]),
        office_mode=np.array([o.mode for o in OFFICES], dtype=object),
        sector_office_kind=np.array(
            [np.array(SECTOR_OFFICE_KIND[s]) / sum(SECTOR_OFFICE_KIND[s]) for s in SECTORS]
        ),
    )
