"""The HS goods catalogue of the simulated world: real HS6 codes with duty rate and reference value.

Each heading line below gives the importer business sector that usually trades it, the
quantity unit, a reference unit value (local currency per unit), the mass of one unit (kg),
the heading's base ad valorem duty rate and its real HS6 subheadings. A subheading may pin its
own rate with ``suffix:rate``; otherwise the rate varies deterministically around the base so
that most headings hold a lower-duty sibling (the target of misclassification). National codes
are HS6 + ``00``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# heading | sector | unit | unit value | kg per unit | base rate | description | subheadings
_HEADINGS = """
0106|animals|u|150|2|0|live animals (other)|11 14 19 20 31 32 39 41 90
0201|food_fresh|kg|8|1|0.12|bovine meat, fresh or chilled|10 20 30
0202|food_fresh|kg|6|1|0.12|bovine meat, frozen|10 20 30
0207|food_fresh|kg|3|1|0.1|poultry meat|11 12 13 14
0302|food_fresh|kg|6|1|0.08|fish, fresh or chilled|13 14 19
0303|food_fresh|kg|3.5|1|0.1|fish, frozen|42 43 54 89
0304|food_fresh|kg|7|1|0.09|fish fillets|41 62 71 87 89
0306|food_fresh|kg|9|1|0.12|crustaceans, frozen|14 16 17
0402|food_grocery|kg|3|1|0.1|milk and cream, concentrated|10 21 29
0406|food_grocery|kg|7|1|0.08|cheese and curd|10 20 30 90
0505|animals|kg|15|1|0|skins and feathers of birds|10 90
0507|animals|kg|200|1|0|ivory, tortoise-shell, horns|10 90
0508|animals|kg|80|1|0|coral and shells|00
0703|food_fresh|kg|0.5|1|0.09|onions, shallots, garlic|10 20
0710|food_fresh|kg|1.2|1|0.12|vegetables, frozen|10 21 22 29 40 80
0801|food_grocery|kg|6|1|0.03|coconuts, brazil nuts, cashew nuts|11 22 31 32
0803|food_fresh|kg|0.7|1|0.16|bananas, fresh or dried|10 90
0804|food_fresh|kg|2|1|0.05|dates, avocados, mangoes|10 40 50
0805|food_fresh|kg|0.8|1|0.12|citrus fruit|10 21 22 29 40 50
0806|food_fresh|kg|2|1|0.11|grapes|10 20
0810|food_fresh|kg|3|1|0.07|other fruit, fresh|10 20 40 50 90
0811|food_fresh|kg|2|1|0.14|fruit, frozen|10 20 90
0901|food_grocery|kg|3.5|1|0.04|coffee|11:0 12:0 21:0.075 22:0.09
0902|food_grocery|kg|4|1|0.02|tea|10 20 30 40
0904|food_grocery|kg|4|1|0.02|pepper and capsicum|11 12 21 22
0910|food_grocery|kg|3|1|0.03|ginger, turmeric, spices|11 30 91 99
1006|food_grocery|kg|0.6|1|0.15|rice|10 20 30 40
1511|food_grocery|kg|0.9|1|0.04|palm oil|10 90
1604|food_grocery|kg|5|1|0.2|prepared or preserved fish|14 15 16 20
1701|food_grocery|kg|0.5|1|0.25|cane or beet sugar|12 14 91 99
1806|food_grocery|kg|5|1|0.08|chocolate|10 20 31 32 90
1905|food_grocery|kg|4|1|0.09|bread, pastry, biscuits|31 32 90
2009|food_grocery|l|1.2|1.1|0.15|fruit juices|11 12 19 61 71 89
2106|food_grocery|kg|6|1|0.1|food preparations|10 90
2203|beverages_tobacco|l|1.5|1.1|0.12|beer made from malt|00
2204|beverages_tobacco|l|4|1.3|0.14|wine of fresh grapes|10:0.25 21:0.14 22:0.12 29:0.1 30:0.08
2205|beverages_tobacco|l|3.5|1.3|0.12|vermouth|10 90
2206|beverages_tobacco|l|2.5|1.2|0.14|cider, perry, mead|00
2207|beverages_tobacco|l|1|1|0.3|ethyl alcohol|10:0.35 20:0.12
2208|beverages_tobacco|l|12|1.4|0.3|spirits, liqueurs|20 30 40 50 60 70 90
2401|beverages_tobacco|kg|5|1|0.15|unmanufactured tobacco|10 20 30
2402|beverages_tobacco|kg|40|1|0.45|cigars and cigarettes|10:0.26 20:0.57 90:0.3
2403|beverages_tobacco|kg|20|1|0.45|other manufactured tobacco|11:0.5 19:0.45 91:0.35 99:0.3
2709|fuel|kg|0.5|1|0|crude petroleum oils|00
2710|fuel|l|0.8|0.85|0.2|petroleum oils, not crude|12:0.3 19:0.2 20:0.15 91:0.05 99:0.05
2711|fuel|kg|0.6|1|0.05|petroleum gases|12 13 19 21
2844|defense|kg|5000|1|0|radioactive elements and isotopes|10 20 30 41 43 50
2903|chemicals|kg|6|1|0.055|halogenated hydrocarbons|11 12 13 14 21 22 23 71 72 77 79
2905|chemicals|kg|0.5|1|0.055|acyclic alcohols|11 12 13
2914|chemicals|kg|2|1|0.055|ketones and quinones|11 12 13 19 31 39
2915|chemicals|kg|1|1|0.05|saturated acyclic monocarboxylic acids|21 24
2932|chemicals|kg|8|1|0.06|heterocyclic compounds (oxygen)|11 12 13 19 91 92 93 94 99
2933|chemicals|kg|20|1|0.06|heterocyclic compounds (nitrogen)|11 21 39 99
2939|chemicals|kg|200|1|0.05|alkaloids and their derivatives|11 41 42 44 49 79 80
3002|pharma|kg|300|1|0|blood, antisera, vaccines|12 13 15 20 30 90
3003|pharma|kg|40|1|0|medicaments, not in measured doses|10 20 31 39 41 49 60 90
3004|pharma|kg|60|1|0|medicaments, in measured doses|10 20 31 32 39 41 42 43 49 50 60 90
3006|pharma|kg|20|1|0|pharmaceutical goods|10 50 60
3303|cosmetics|l|60|1.3|0.065|perfumes and toilet waters|00
3304|cosmetics|kg|40|1|0.065|beauty and make-up preparations|10 20 30 91 99
3305|cosmetics|kg|6|1|0.05|hair preparations|10 20 30 90
3401|cosmetics|kg|2|1|0.05|soap|11 19 20 30
3601|defense|kg|15|1|0.06|propellent powders|00
3602|defense|kg|5|1|0.065|prepared explosives|00
3603|defense|u|3|0.1|0.065|safety fuses, detonating cords, detonators|00
3604|defense|kg|8|1|0.065|fireworks and signalling flares|10 90
3808|chemicals|kg|6|1|0.06|insecticides, herbicides, disinfectants|91 92 93 94 99
3824|chemicals|kg|3|1|0.065|chemical preparations n.e.s.|10 30 40 50 99
3827|chemicals|kg|6|1|0.065|mixtures of halogenated hydrocarbons|11 12 20 39 51 61 69 90
3915|recycling|kg|0.2|1|0|waste and scrap of plastics|10 20 30 90
3923|home_wood|kg|3|1|0.065|plastic packaging|10 21 29 30 50 90
3926|home_wood|kg|5|1|0.065|other articles of plastics|10 20 90
4011|vehicles|u|60|9|0.045|new pneumatic tyres|10 20 40 70 80 90
4101|animals|kg|1.5|1|0|raw hides of bovine animals|20 50 90
4103|animals|kg|10|1|0|other raw hides and skins|20 30 90
4113|leather_luxury|kg|40|1|0.02|leather of other animals|10 20 30 90
4202|leather_luxury|u|25|0.6|0.03|trunks, handbags, wallets|11 12 19 21 22 29 31 32 39 91 92 99
4203|leather_luxury|u|60|1|0.04|articles of apparel of leather|10 21 29 30
4301|animals|kg|30|1|0|raw furskins|10 30 60 80 90
4303|leather_luxury|u|400|1.5|0.022|articles of furskin|10 90
4403|home_wood|kg|0.3|1|0|wood in the rough|11 12 21 41 49 91 99
4407|home_wood|kg|0.5|1|0|wood sawn lengthwise|11 12 19 21 22 25 26 27 28 29 91 92 99
4412|home_wood|kg|0.8|1|0.07|plywood|31 33 34 39 94 99
4707|recycling|kg|0.15|1|0|recovered paper or paperboard|10 20 30 90
4819|home_wood|kg|1.5|1|0.02|cartons, boxes, cases|10 20 30 40 50
5208|apparel|kg|6|1|0.08|woven fabrics of cotton|11 12 21 31 32 42 51 52
6103|apparel|u|12|0.4|0.12|men's suits and trousers, knitted|10 22 23 42 43
6104|apparel|u|12|0.35|0.12|women's suits and dresses, knitted|42 43 44 62 63
6105|apparel|u|10|0.25|0.12|men's shirts, knitted|10 20 90
6109|apparel|u|5|0.2|0.12|T-shirts, singlets, vests|10 90
6110|apparel|u|15|0.45|0.12|jerseys, pullovers, cardigans|11 12 19 20 30 90
6115|apparel|pair|2|0.06|0.12|hosiery and socks|10 21 22 29 30 94 95 96 99
6201|apparel|u|40|1|0.12|men's overcoats and anoraks|11 12 13 19 91 92 93 99
6203|apparel|u|20|0.5|0.12|men's suits and trousers|11 12 31 42 43
6204|apparel|u|20|0.4|0.12|women's suits and dresses|31 42 43 44 62 63
6205|apparel|u|12|0.25|0.12|men's shirts|20 30 90
6206|apparel|u|12|0.2|0.12|women's blouses and shirts|30 40 90
6309|recycling|kg|0.8|1|0.053|worn clothing|00
6402|apparel|pair|12|0.8|0.17|footwear of rubber or plastics|12 19 20 91 99
6403|apparel|pair|35|1|0.08|footwear with leather uppers|12 19 20 40 51 59 91 99
6404|apparel|pair|18|0.7|0.17|footwear with textile uppers|11 19 20
6911|home_wood|kg|4|1|0.12|porcelain tableware|10 90
7013|home_wood|kg|3|1|0.11|glassware|22 28 37 41 49 91 99
7113|leather_luxury|u|300|0.02|0.025|articles of jewellery|11 19 20
7117|leather_luxury|u|3|0.03|0.04|imitation jewellery|11 19 90
7204|recycling|kg|0.3|1|0|ferrous waste and scrap|10 21 29 30 41 49 50
7208|machinery|kg|0.6|1|0.02|flat-rolled iron, hot-rolled|10 25 36 37 38 39 51 52 53 54 90
7318|machinery|kg|2.5|1|0.037|screws, bolts, nuts|11 12 14 15 16 19 21 22 23 24 29
7326|machinery|kg|3|1|0.027|other articles of iron or steel|11 19 20 90
7606|machinery|kg|3|1|0.075|aluminium plates and sheets|11 12 91 92
8415|machinery|u|400|45|0.027|air conditioning machines|10 20 81 82 83 90
8418|machinery|u|350|55|0.022|refrigerators, freezers, heat pumps|10 21 29 30 40 50 61 69 91 99
8443|machinery|u|150|8|0|printing machinery and printers|31 32 39 91 99
8467|machinery|u|60|2.5|0.027|hand tools, pneumatic or motorised|11 19 21 22 29 81 89 91 92 99
8471|electronics|u|500|2.5|0|computers|30 41 49 50 60 70 80 90
8481|machinery|kg|15|1|0.022|taps, cocks, valves|10 20 30 40 80 90
8504|electronics|u|30|1|0.027|transformers and static converters|10 21 31 40 50 90
8507|electronics|u|40|1.2|0.027|electric accumulators|10 20 30 50 60 80 90
8516|machinery|u|40|3|0.027|electric heaters and ovens|10 21 29 31 32 40 50 60 71 72 79 80 90
8517|electronics|u|300|0.3|0|telephone sets and network apparatus|11 12 18 61 62 69 70
8518|electronics|u|25|0.3|0.02|microphones, loudspeakers, headphones|10 21 22 29 30 40 50 90
8525|electronics|u|200|0.5|0.02|transmission apparatus and cameras|50 60 80
8526|electronics|u|3000|15|0.037|radar and radio navigational apparatus|10 91 92
8528|electronics|u|300|12|0.14|monitors and television receivers|42 49 52 59 62 69 71 72 73
8542|electronics|u|2|0.002|0|electronic integrated circuits|31 32 33 39 90
8544|electronics|kg|8|1|0.037|insulated wire and cable|11 19 20 30 42 49 60 70
8703|vehicles|u|18000|1300|0.1|motor cars|10 21 22 23 24 31 32 33 40 50 60 70 80 90
8708|vehicles|kg|8|1|0.045|parts of motor vehicles|10 21 29 30 40 50 70 80 91 92 93 94 95 99
8711|vehicles|u|4000|150|0.06|motorcycles|10 20 30 40 50 60 90
8712|vehicles|u|150|14|0.14|bicycles|00
9004|leather_luxury|u|20|0.05|0.029|spectacles and sunglasses|10 90
9013|electronics|u|200|0.5|0.047|lasers and optical devices|10 20 80 90
9014|electronics|u|500|1|0.027|navigational instruments|10 20 80 90
9018|pharma|u|30|0.3|0|medical and surgical instruments|11 12 13 14 19 20 31 32 39 41 49 50 90
9020|pharma|u|100|2|0.017|breathing appliances and gas masks|00
9027|pharma|u|2000|10|0|instruments for chemical analysis|10 20 30 50 80 90
9101|leather_luxury|u|2000|0.1|0.045|watches with precious-metal case|11 19 21 29 91 99
9102|leather_luxury|u|80|0.1|0.045|wrist watches, other|11 12 19 21 29 91 99
9301|defense|u|3000|10|0.032|military weapons|10 20 90
9302|defense|u|600|1|0.032|revolvers and pistols|00
9303|defense|u|800|3.5|0.032|other firearms|10 20 30 90
9304|defense|u|100|2|0.032|other arms|00
9305|defense|u|50|0.5|0.032|parts of arms|10 20 91 99
9306|defense|kg|15|1|0.027|munitions and cartridges|21 29 30 90
9307|defense|u|100|1|0.017|swords and bayonets|00
9401|home_wood|u|80|10|0.02|seats|30 40 61 71 79 80 90
9403|home_wood|u|150|25|0.02|other furniture|10 20 30 40 50 60 70 89 90
9405|home_wood|u|20|1|0.037|lamps and lighting fittings|10 20 30 40 50 60 91 92 99
9503|toys_leisure|u|8|0.4|0.047|toys, puzzles, scale models|00
9504|toys_leisure|u|250|2|0.02|video game consoles and games|20 30 40 50 90
9505|toys_leisure|kg|5|1|0.027|festive and carnival articles|10 90
9506|toys_leisure|kg|10|1|0.027|sports equipment|11 12 21 29 31 32 39 40 51 59 61 62 69 70 91 99
9601|animals|kg|500|1|0|worked ivory, bone, coral|10 90
9603|home_wood|u|1|0.02|0.037|brooms and brushes|10 21 29 30 40 50 90
"""

SECTORS: tuple[str, ...] = (
    "food_fresh",
    "food_grocery",
    "beverages_tobacco",
    "fuel",
    "chemicals",
    "pharma",
    "cosmetics",
    "apparel",
    "leather_luxury",
    "electronics",
    "machinery",
    "vehicles",
    "home_wood",
    "toys_leisure",
    "recycling",
    "animals",
    "defense",
    "general",
)

# Share of importers by business sector; "general" traders buy from every sector.
SECTOR_SHARE: dict[str, float] = {
    "food_fresh": 0.08,
    "food_grocery": 0.09,
    "beverages_tobacco": 0.05,
    "fuel": 0.02,
    "chemicals": 0.05,
    "pharma": 0.04,
    "cosmetics": 0.04,
    "apparel": 0.12,
    "leather_luxury": 0.04,
    "electronics": 0.10,
    "machinery": 0.10,
    "vehicles": 0.05,
    "home_wood": 0.07,
    "toys_leisure": 0.04,
    "recycling": 0.02,
    "animals": 0.005,
    "defense": 0.005,
    "general": 0.08,
}

# Relative frequency of some headings within their sector (default 1): cooling equipment and
# chemical preparations are a small part of machinery and chemicals trade.
POPULARITY_SCALE: dict[str, float] = {"8415": 0.25, "8418": 0.25, "3824": 0.5}

UNITS: tuple[str, ...] = ("kg", "u", "l", "pair")


@dataclass(frozen=True)
class Catalogue:
    """Column arrays over the HS6 codes of the catalogue (index = code number)."""

    hs6: np.ndarray  # str, 6 digits
    hs_code: np.ndarray  # str, 8 digits (national)
    heading: np.ndarray  # str, 4 digits
    chapter: np.ndarray  # int
    description: np.ndarray  # str
    sector: np.ndarray  # int index into SECTORS
    unit: np.ndarray  # str
    unit_value: np.ndarray  # float, reference value per unit
    kg_per_unit: np.ndarray  # float
    duty_rate: np.ndarray  # float, MFN ad valorem rate
    popularity: np.ndarray  # float, relative frequency within its sector
    cheaper_sibling: np.ndarray  # int, lowest-duty code of the same heading, -1 if none
    price_sd: np.ndarray  # float, log-sd of honest unit values of the code from one origin

    def __len__(self) -> int:
        return len(self.hs6)

    def prefixed(self, *prefixes: str) -> np.ndarray:
        """Boolean mask of the codes that start with any of ``prefixes``."""
        return np.array([code.startswith(prefixes) for code in self.hs6], dtype=bool)


# Honest unit values of one HS6 code from one origin scatter lognormally with a log-sd drawn per
# code from this range (mean 0.75): quality grades, contract terms and quantities make real
# within-HS6 price spreads several times the 0.25 the simulator first used.
PRICE_SD = (0.45, 1.05)


def _code_rng(code: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(code.encode()))


@lru_cache(maxsize=1)
def load_catalogue() -> Catalogue:
    """The HS catalogue, built deterministically from the heading table above."""
    rows: list[tuple] = []
    for line in _HEADINGS.strip().splitlines():
        heading, sector, unit, uv, kg, rate, desc, subs = line.split("|")
        for token in subs.split():
            suffix, _, pinned = token.partition(":")
            code = heading + suffix
            rng = _code_rng(code)
            base = float(rate)
            r = float(pinned) if pinned else base * rng.choice([0.5, 0.75, 1.0, 1.0, 1.25, 1.5])
            rows.append(
                (
                    code,
                    desc,
                    SECTORS.index(sector),
                    unit,
                    float(uv) * float(np.exp(rng.normal(0, 0.3))),
                    1.0 if unit == "kg" else float(kg) * float(np.exp(rng.normal(0, 0.15))),
                    round(r, 3),
                    float(rng.lognormal(0, 1.0)) * POPULARITY_SCALE.get(heading, 1.0),
                    float(rng.uniform(*PRICE_SD)),
                )
            )
    hs6 = np.array([r[0] for r in rows], dtype=object)
    heading = np.array([c[:4] for c in hs6], dtype=object)
    rate = np.array([r[6] for r in rows])
    sibling = np.full(len(rows), -1)
    for h in np.unique(heading):
        idx = np.flatnonzero(heading == h)
        low = idx[np.argmin(rate[idx])]
        sibling[idx[rate[idx] > rate[low]]] = low
    return Catalogue(
        hs6=hs6,
        hs_code=np.array([c + "00" for c in hs6], dtype=object),
        heading=heading,
        chapter=np.array([int(c[:2]) for c in hs6]),
        description=np.array([r[1] for r in rows], dtype=object),
        sector=np.array([r[2] for r in rows]),
        unit=np.array([r[3] for r in rows], dtype=object),
        unit_value=np.array([r[4] for r in rows]),
        kg_per_unit=np.array([r[5] for r in rows]),
        duty_rate=rate,
        popularity=np.array([r[7] for r in rows]),
        cheaper_sibling=sibling,
        price_sd=np.array([r[8] for r in rows]),
    )
