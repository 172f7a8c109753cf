"""The legacy control system that produced the labels: random, targeted and post-clearance controls.

Per month, whole declarations are controlled:

* ``random``: a share ``random_control_rate`` of declarations, a physical check that can find
  every area;
* targeted (``documentary``, ``physical``, ``scanner``): the declarations with the highest legacy
  score, the weighted sum of every area's :func:`riskml.rules.rule_score` plus the importer's
  findings known at the time, until ``targeted_rate`` of the items are covered; the area that
  dominates the score chooses the kind (scanner for drugs and security, documentary mostly for
  revenue);
* ``pca``: post-clearance audits, ``pca_rate`` of the items, drawn with weights on revenue rules,
  duty rate and the importer's known revenue findings; results come 2-9 months later.

A control finds an offence of an area only if its kind can detect the area (``detectable_by`` of
the area spec) and then only with the kind's detection probability, so labels are noisy.

Every control records why it was made (``control_reason``): ``random`` for the random controls,
``intelligence`` for a declaration an item of which a tip-off named, ``profile`` for the rest (the
rare-area rules and officers' profiles, the ranked legacy score, the post-clearance audits'
weighted draw: all on facts the declaration and the importer's known record show). Tip-offs
follow the hidden risk, so their hit rates are not the population's (docs/results.md, issue 15).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from riskml.config import AreaSpec, SimulateParams
from riskml.contract import RISK_AREAS
from riskml.rules import rule_score
from riskml.simulate.offences import A
from riskml.simulate.trade import Batch

DETECTION: dict[str, dict[str, float]] = {
    "physical": {"*": 0.85},
    "random": {"*": 0.85},
    "documentary": {"revenue": 0.6, "*": 0.5},
    "scanner": {"drugs": 0.7, "security": 0.75, "*": 0.4},
    "pca": {"revenue": 0.9, "*": 0.3},
}
AREA_WEIGHT = {
    "revenue": 1.0,
    "drugs": 1.2,
    "security": 1.2,
    "ipr": 0.8,
    "environment": 0.8,
    "health_safety": 0.8,
}
TARGET_KIND: dict[str, tuple[tuple[str, str], float]] = {  # area -> kinds, P(first kind)
    "revenue": (("documentary", "physical"), 0.7),
    "drugs": (("scanner", "physical"), 0.5),
    "security": (("physical", "scanner"), 0.6),
    "environment": (("physical", "documentary"), 0.6),
    "health_safety": (("physical", "documentary"), 0.6),
}
DEFAULT_KIND = (("documentary", "physical"), 0.5)
DELAY_DAYS = {
    "documentary": (1, 10),
    "physical": (2, 21),
    "scanner": (0, 5),
    "random": (2, 21),
    "pca": (60, 270),
}
LAB_DAYS = (0, 14)  # extra delay for seized goods sent to a laboratory
HISTORY_WEIGHT = 0.6
# Rare areas: probability that an item hit by the area's strongest legacy rule is controlled
# (licensed and sensitive goods are checked very often); weaker rules fall off steeply.
# q = min(RARE_CAP, RARE_RATE x (rule score / strongest rule weight) ** RULE_GAMMA): a score
# above the strongest rule (two rules at once) is checked even more often.
RARE_RATE = {"security": 0.7, "drugs": 0.2, "health_safety": 0.15, "environment": 0.2}
RARE_CAP = 0.7
RULE_GAMMA = 3.0
# Officers' profiles on top of the rare-area rules: an item of a new importer or of an importer
# with known findings, or shipped by an abnormal route (departure != origin), is drawn with
# q x (1 + PROFILE_NEW x new + PROFILE_HISTORY x log(1 + known) + PROFILE_ROUTE x rerouted).
PROFILE_NEW = 1.0
PROFILE_HISTORY = 1.0
PROFILE_ROUTE = 1.0
# Intelligence (tip-offs): tips per expected rare-area offence of the month. A tip names an item,
# not an offence: items are drawn with weight true_prob ** TIP_FOCUS (what informants know of the
# network) x exp(observable leads: new importer, abnormal route, first goods of this kind), so
# tips often name honest items and miss most offences.
TIP_RATE = {"security": 1.3, "drugs": 0.1, "environment": 0.1, "health_safety": 0.07}
TIP_FOCUS = 1.0
TIP_LEADS = {"new": 0.7, "rerouted": 0.7, "first_hs4": 0.5}
MIN_GENERIC_SHARE = 0.5  # share of the targeted budget always left to revenue, ipr and history


@dataclass
class ControlHistory:
    """Findings per importer as known to the control system, and findings still pending."""

    n_importers: int
    known: np.ndarray = field(init=False)
    known_revenue: np.ndarray = field(init=False)
    _pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.known = np.zeros(self.n_importers)
        self.known_revenue = np.zeros(self.n_importers)

    def record(self, dates: np.ndarray, importers: np.ndarray, revenue: np.ndarray) -> None:
        """Remember findings that become known at ``dates``."""
        self._pending.append((dates, importers, revenue))

    def advance(self, until: np.datetime64) -> None:
        """Make known every finding whose result date is before ``until``."""
        still: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for dates, imp, rev in self._pending:
            due = dates < until
            np.add.at(self.known, imp[due], 1.0)
            np.add.at(self.known_revenue, imp[due & rev], 1.0)
            if (~due).any():
                still.append((dates[~due], imp[~due], rev[~due]))
        self._pending = still


def _detect_p(kind: np.ndarray, area: str, spec: AreaSpec) -> np.ndarray:
    p = np.zeros(len(kind))
    for k, table in DETECTION.items():
        if k in spec.detectable_by:
            p[kind == k] = table.get(area, table["*"])
    return p


def _fill(n_target: float, order: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Declarations taken in ``order`` until their items cover ``n_target`` items."""
    if n_target <= 0 or len(order) == 0:
        return order[:0]
    cum = np.cumsum(sizes[order])
    return order[: int(np.searchsorted(cum, n_target)) + 1]


def _targeted_kind(rng: np.random.Generator, dominant: np.ndarray, areas: list[str]) -> np.ndarray:
    kind = np.empty(len(dominant), dtype=object)
    u = rng.random(len(dominant))
    for j in range(-1, len(areas)):
        rows = dominant == j
        (first, second), p = TARGET_KIND.get(areas[j], DEFAULT_KIND) if j >= 0 else DEFAULT_KIND
        kind[rows] = np.where(u[rows] < p, first, second)
    return kind


def _strongest(rules) -> float:
    return max((r.weight for r in rules if r.weight > 0), default=1.0)


def rare_target_probability(declarations: pd.DataFrame, specs: dict[str, AreaSpec]) -> np.ndarray:
    """(items, areas) probability that the rules of a rare area send the item to a control.

    ``RARE_RATE[area] x (rule score / strongest rule weight) ** RULE_GAMMA``, capped at
    ``RARE_CAP``:
    the strongest rule of an area (arms, fruit from cocaine source countries, refrigerant gases,
    medicines) is checked at the area's rate, weaker rules much less. 0 for the other areas.
    """
    q = np.zeros((len(declarations), len(specs)))
    for j, (area, spec) in enumerate(specs.items()):
        if area in RARE_RATE:
            s = rule_score(declarations, spec.legacy_rules).to_numpy()
            r = s / _strongest(spec.legacy_rules)
            q[:, j] = np.minimum(RARE_CAP, RARE_RATE[area] * r**RULE_GAMMA)
    return q


def tip_offs(
    rng: np.random.Generator, prob: np.ndarray, batch: Batch, specs: dict[str, AreaSpec]
) -> np.ndarray:
    """(items, areas in ``specs`` order): items named by intelligence before clearance.

    Per rare area, Poisson(``TIP_RATE`` x the month's expected offences) items, drawn without
    replacement with weight ``prob ** TIP_FOCUS x exp(leads)`` (Gumbel top-k): tips follow what
    the network's informants know and what officers can see, with noise; they are not drawn
    among the offences themselves.
    """
    n = len(prob)
    tips = np.zeros((n, len(specs)), dtype=bool)
    leads = (
        TIP_LEADS["new"] * (batch["importer_age_days"] < 180)
        + TIP_LEADS["rerouted"] * (batch["departure"] != batch["origin"])
        + TIP_LEADS["first_hs4"] * batch.get("first_hs4", np.zeros(n, dtype=bool))
    )
    for j, a in enumerate(specs):
        if a not in TIP_RATE or n == 0:
            continue
        k = min(n, int(rng.poisson(TIP_RATE[a] * prob[:, A[a]].sum())))
        key = TIP_FOCUS * np.log(np.maximum(prob[:, A[a]], 1e-300)) + leads + rng.gumbel(size=n)
        tips[np.argpartition(-key, k - 1)[:k] if k else [], j] = True
    return tips


def select_controls(
    rng: np.random.Generator,
    declarations: pd.DataFrame,
    batch: Batch,
    specs: dict[str, AreaSpec],
    history: ControlHistory,
    params: SimulateParams,
    tips: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(item numbers, kinds, reasons) of every control made on this month's items.

    ``tips`` (items, areas in ``specs`` order; optional) marks items named by intelligence: their
    declarations are controlled first, within the rare-area share of the targeted budget.
    """
    starts, n = batch["decl_start"], len(batch["hs"])
    sizes = np.diff(np.append(starts, n))
    n_decl = len(starts)
    areas = list(specs)
    imp = batch["importer"]

    # rare areas: a per-declaration probability from the strongest rule hit of its items
    q = rare_target_probability(declarations, specs)
    profile = (
        1.0
        + PROFILE_NEW * (batch["importer_age_days"] < 180)
        + PROFILE_HISTORY * np.log1p(history.known[imp])
        + PROFILE_ROUTE * (batch["departure"] != batch["origin"])
    )
    q = np.minimum(RARE_CAP, q * profile[:, None])
    if tips is not None:
        q = np.where(tips, 1.0, q)
    q_decl = np.maximum.reduceat(q, starts, axis=0) if len(areas) else np.zeros((n_decl, 1))
    p_rare = 1.0 - np.prod(1.0 - q_decl, axis=1)
    # the other areas (revenue, ipr) and the importer's known findings: a ranked score
    norm = np.zeros((n, max(len(areas), 1)))
    for j, area in enumerate(areas):
        if area not in RARE_RATE:
            rules = specs[area].legacy_rules
            top = sum(r.weight for r in rules if r.weight > 0) or 1.0
            score = rule_score(declarations, rules).to_numpy()
            norm[:, j] = AREA_WEIGHT.get(area, 1.0) * score / top
    item_score = (
        norm.sum(axis=1) + HISTORY_WEIGHT * np.log1p(history.known[imp]) + rng.normal(0, 0.25, n)
    )
    decl_score = np.maximum.reduceat(item_score, starts)
    decl_area = np.maximum.reduceat(norm, starts, axis=0)

    u = rng.random(n_decl)
    random_decl = np.flatnonzero(rng.random(n_decl) < params.random_control_rate)
    is_random = np.zeros(n_decl, dtype=bool)
    is_random[random_decl] = True
    budget = params.targeted_rate * n
    # drawn with p_rare; draws beyond their share of the budget are thinned evenly (key = u/p)
    key = u / np.maximum(p_rare, 1e-12)
    if tips is not None:
        key[np.maximum.reduceat(tips, starts, axis=0).any(axis=1)] = -1.0  # tip-offs first
    cand = np.flatnonzero((key < 1.0) & ~is_random)
    rare = _fill(
        (1.0 - MIN_GENERIC_SHARE) * budget, cand[np.argsort(key[cand], kind="stable")], sizes
    )
    taken = is_random.copy()
    taken[rare] = True
    rest = np.flatnonzero(~taken)
    order = rest[np.argsort(-decl_score[rest], kind="stable")]
    generic = _fill(budget - sizes[rare].sum(), order, sizes)
    targeted = np.concatenate([rare, generic])
    dominant = np.concatenate(
        [
            q_decl[rare].argmax(axis=1) if len(areas) else np.full(len(rare), -1),
            np.where(decl_area[generic].max(axis=1) > 0, decl_area[generic].argmax(axis=1), -1),
        ]
    )
    kinds_t = _targeted_kind(rng, dominant, areas)

    rev = norm[:, areas.index("revenue")] if "revenue" in areas else np.zeros(n)
    weight = (
        0.1
        + 2.0 * rev
        + 1.5 * np.log1p(history.known_revenue[imp])
        + 5.0 * declarations["duty_rate"].to_numpy()
    )
    key = np.log(np.maximum.reduceat(weight, starts)) + rng.gumbel(size=n_decl)
    pca = _fill(params.pca_rate * n, np.argsort(-key, kind="stable"), sizes)

    decls = np.concatenate([random_decl, targeted, pca])
    kinds = np.concatenate(
        [
            np.full(len(random_decl), "random", dtype=object),
            kinds_t,
            np.full(len(pca), "pca", dtype=object),
        ]
    )
    tipped = np.zeros(n_decl, dtype=bool)
    if tips is not None and len(areas):
        tipped = np.maximum.reduceat(tips, starts, axis=0).any(axis=1)
    reasons = np.concatenate(
        [
            np.full(len(random_decl), "random", dtype=object),
            # a tipped declaration is drawn first among the rare areas' share (the tip's
            # doing); one taken later by the ranked score was not chosen for its tip
            np.where(tipped[rare], "intelligence", "profile").astype(object),
            np.full(len(generic), "profile", dtype=object),
            np.full(len(pca), "profile", dtype=object),
        ]
    )
    counts = sizes[decls]
    offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return (
        np.repeat(starts[decls], counts) + offset,
        np.repeat(kinds, counts),
        np.repeat(reasons, counts),
    )


def control_outcomes(
    rng: np.random.Generator,
    declarations: pd.DataFrame,
    batch: Batch,
    item: np.ndarray,
    kind: np.ndarray,
    reason: np.ndarray,
    offence: np.ndarray,
    codes: np.ndarray,
    evaded: np.ndarray,
    specs: dict[str, AreaSpec],
) -> tuple[pd.DataFrame, np.ndarray]:
    """Outcome rows of the controls: one row per area found, or one clean row per control.

    Also returns the item numbers (within the month) of the found rows, which come first.
    """
    m = len(item)
    lo = np.select([kind == k for k in DELAY_DAYS], [v[0] for v in DELAY_DAYS.values()], 0)
    hi = np.select([kind == k for k in DELAY_DAYS], [v[1] for v in DELAY_DAYS.values()], 1)
    result = batch["date"][item] + rng.integers(lo, hi + 1).astype("timedelta64[D]")
    u = rng.random((m, len(RISK_AREAS)))
    quantity = declarations["quantity"].to_numpy()[item]

    frames_idx, frames_area = [], []
    found_any = np.zeros(m, dtype=bool)
    for area, spec in specs.items():
        j = A[area]
        hit = offence[item, j] & (u[:, j] < _detect_p(kind, area, spec))
        found_any |= hit
        frames_idx.append(np.flatnonzero(hit))
        frames_area.append(np.full(hit.sum(), j))
    found_idx = np.concatenate(frames_idx) if frames_idx else np.zeros(0, dtype=int)
    found_area = np.concatenate(frames_area) if frames_area else np.zeros(0, dtype=int)
    clean_idx = np.flatnonzero(~found_any)

    fi = item[found_idx]
    is_rev = found_area == A["revenue"]
    is_drug = found_area == A["drugs"]
    recovery = np.where(
        kind[found_idx] == "documentary",
        rng.uniform(0.7, 1.0, len(fi)),
        rng.uniform(0.85, 1.0, len(fi)),
    )
    code = codes[fi, found_area]
    seized = np.where(
        is_drug & (code == "DRG-CON"),
        np.round(rng.lognormal(np.log(40), 1.0, len(fi)), 1),
        quantity[found_idx],
    )
    lab = np.where(is_rev, 0, rng.integers(LAB_DAYS[0], LAB_DAYS[1] + 1, len(fi)))
    rows = np.concatenate([found_idx, clean_idx])
    n_found = len(found_idx)
    ids = declarations["declaration_id"].to_numpy()
    frame = pd.DataFrame(
        {
            "declaration_id": ids[item[rows]],
            "item_no": batch["item_no"][item[rows]].astype(np.int64),
            "control_kind": kind[rows],
            "control_reason": reason[rows],
            "result_date": np.concatenate(
                [result[found_idx] + lab.astype("timedelta64[D]"), result[clean_idx]]
            ).astype("datetime64[ns]"),
            "risk_area": np.concatenate(
                [
                    np.array(RISK_AREAS, dtype=object)[found_area],
                    np.full(len(clean_idx), None, dtype=object),
                ]
            ),
            "offence_found": np.arange(len(rows)) < n_found,
            "offence_code": np.concatenate([code, np.full(len(clean_idx), None, dtype=object)]),
            "additional_duty": np.concatenate(
                [
                    np.where(is_rev, np.round(evaded[fi] * recovery, 2), 0.0),
                    np.zeros(len(clean_idx)),
                ]
            ),
            "quantity_seized": np.concatenate(
                [np.where(is_rev, 0.0, seized), np.zeros(len(clean_idx))]
            ),
        }
    )
    return frame, fi
