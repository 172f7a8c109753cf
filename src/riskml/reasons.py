"""Reasons in plain words from TreeSHAP contributions: the domain side of an explanation.

LightGBM computes exact TreeSHAP values with ``Booster.predict(X, pred_contrib=True)`` (the values
``shap.TreeExplainer`` gives); the cost is ~1000x a plain predict, so only candidates are
explained, in chunks, never the whole population. Contributions are in log-odds and, with the
bias column, add up to the raw score: :func:`check_additivity` verifies it on every chunk.

Pure functions of frames (domain layer): the ``explain`` stage (case files, SHAP images) and
``riskml score`` (reasons of a scored batch) both call them; neither imports the other.

Reasons a reviewer can say aloud (issue 12, part 8):

1. **A reason states a fact present about the declaration** (what it *is*: a price 80% below its
   peers, a first import, a targeting profile it matches). A feature whose value states an
   absence ("matches no targeting profile", "no earlier declaration", "no duty", a count of 0) is
   never spoken, whichever way it pushes: its contribution stays in the candidate's "other"
   (:func:`states_absence`), unless it is an entity's empty history that its novelty fact
   states (:func:`novelty_facts`).
2. **Correlated features make one statement** (:data:`TOPICS`): every unit-value feature one
   sentence comparing the declared unit value with its reference; every duty feature one; an
   entity's history and novelty one (importer, declarant, supplier); origin, route and seizure
   intelligence one. A statement's push is the sum of its facts' contributions.
3. **The listed reasons say how much of the score they cover** (:func:`push_summary`): the
   share of the score's rise above the base (the average item's log-odds) the listed
   statements account for; the rest is "other".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pandera.pandas as pa

from riskml.contract import KEY, RiskmlError
from riskml.features.catalogue import FeatureInfo, fill_reason


def contributions(booster: lgb.Booster, X: pd.DataFrame, *, chunk_size: int = 2000) -> pd.DataFrame:
    """TreeSHAP contribution of each feature to each row's raw score (log-odds), plus ``bias``.

    Computed in chunks of ``chunk_size`` rows; each chunk is checked for additivity.
    """
    if chunk_size < 1:
        raise RiskmlError(f"chunk_size must be >= 1, got {chunk_size}")
    names = booster.feature_name()
    missing = [n for n in names if n not in X.columns]
    if missing:
        raise RiskmlError(
            f"the model needs feature(s) {missing} that the frame lacks; rerun features"
        )
    parts = []
    for start in range(0, len(X), chunk_size):
        chunk = X.iloc[start : start + chunk_size][names]
        contrib = np.asarray(booster.predict(chunk, pred_contrib=True))
        check_additivity(contrib, np.asarray(booster.predict(chunk, raw_score=True)))
        parts.append(contrib)
    values = np.vstack(parts) if parts else np.empty((0, len(names) + 1))
    return pd.DataFrame(values, columns=[*names, "bias"], index=X.index)


def check_additivity(contrib: np.ndarray, raw_score: np.ndarray, *, atol: float = 1e-6) -> None:
    """Raise if the contributions (bias included) do not add up to the raw score."""
    gap = np.abs(contrib.sum(axis=1) - raw_score)
    if len(gap) and float(gap.max()) > atol:
        raise RiskmlError(
            f"SHAP additivity check failed: contributions differ from the raw score by up to "
            f"{gap.max():.3g}; the model file and the features may not match"
        )


EXPLANATION_COLUMNS = [
    "declaration_id",
    "item_no",
    "rank",
    "direction",
    "feature",
    "group",
    "features",
    "implied",
    "value",
    "contribution",
    "sentence",
    "base_logodds",
    "total_logodds",
]

#: The one row a random-control pick gets in the explanations table (direction ``none``).
NO_REASONS = "random control: chosen at random to measure compliance, no risk reasons"

DIRECTIONS = ("raises", "lowers", "none")


def _signs_agree(df: pd.DataFrame) -> pd.Series:
    sign = np.sign(df["contribution"])
    want = df["direction"].map({"raises": 1.0, "lowers": -1.0, "none": 0.0})
    return (sign == want) | ((df["direction"] == "none") & df["contribution"].isna())


#: What ``data/explanations/<area>.parquet`` holds: one row per reason of a candidate.
EXPLANATION_SCHEMA = pa.DataFrameSchema(
    {
        "declaration_id": pa.Column(str),
        "item_no": pa.Column("int64", pa.Check.ge(1)),
        "rank": pa.Column("int64", pa.Check.ge(1)),
        "direction": pa.Column(str, pa.Check.isin(DIRECTIONS)),
        "feature": pa.Column(str, nullable=True),
        "group": pa.Column(str, nullable=True),
        "features": pa.Column(str, nullable=True),
        "implied": pa.Column(str, nullable=True),
        "value": pa.Column(float, nullable=True),
        "contribution": pa.Column(float, nullable=True),
        "sentence": pa.Column(str, pa.Check.str_length(min_value=1)),
        "base_logodds": pa.Column(float, nullable=True),
        "total_logodds": pa.Column(float, nullable=True),
    },
    checks=[
        pa.Check(_signs_agree, error="a reason's contribution has the wrong sign"),
        pa.Check(
            lambda df: ~df.duplicated([*KEY, "direction", "rank"]),
            error="two reasons share a candidate, direction and rank",
        ),
    ],
    strict=True,
    ordered=True,
    coerce=False,
)


def validate_explanations(table: pd.DataFrame, *, where: str = "explanations") -> pd.DataFrame:
    """``table`` checked against :data:`EXPLANATION_SCHEMA` (all failures reported at once);
    raises :class:`RiskmlError` naming the column, the check and a failing row."""
    try:
        return EXPLANATION_SCHEMA.validate(table, lazy=True)
    except (pa.errors.SchemaErrors, pa.errors.SchemaError) as exc:
        cases = getattr(exc, "failure_cases", None)
        detail = str(exc).splitlines()[0] if cases is None else cases.head(5).to_string()
        raise RiskmlError(f"{where}: the explanations table breaks its schema:\n{detail}") from exc


def sentence(feature: str, row: Mapping[str, Any], catalogue: Mapping[str, Any]) -> str:
    """The plain-language sentence for ``feature`` on ``row``, from its catalogue template."""
    return fact_sentence(feature, row, catalogue)


def reasons(
    rows: pd.DataFrame,
    contrib: pd.DataFrame,
    catalogue: Mapping[str, Any],
    *,
    n_up: int = 5,
    n_down: int = 2,
) -> pd.DataFrame:
    """Each row's reasons as statements of fact (:func:`candidate_statements`): the ``n_up``
    topics whose facts raise the risk most (rank 1 = strongest) and the ``n_down`` that lower
    it; features stating an absence are never a reason (their push stays in "other"). Every row
    carries the candidate's base and total log-odds, so a reader can say what share of the
    score's rise the reasons cover (:func:`push_summary`).

    ``rows`` holds, for the same index as ``contrib``, the key, the feature values and the
    ``ctx_`` peer facts the templates refer to.
    """
    feats = contrib.drop(columns="bias")
    names = list(feats.columns)
    topics = {n: topic_of(n, catalogue.get(n)) for n in names}
    values = feats.to_numpy()
    base = contrib["bias"].to_numpy(dtype=float)
    total = base + values.sum(axis=1)
    records = []
    for i, row in enumerate(rows.to_dict("records")):
        pushes = {names[j]: float(values[i, j]) for j in np.flatnonzero(values[i])}
        for s in candidate_statements(row, pushes, catalogue, topics, n_up=n_up, n_down=n_down):
            records.append(
                {
                    "declaration_id": row["declaration_id"],
                    "item_no": row["item_no"],
                    **s,
                    "base_logodds": float(base[i]),
                    "total_logodds": float(total[i]),
                }
            )
    out = pd.DataFrame.from_records(records, columns=EXPLANATION_COLUMNS)
    return out.astype({"item_no": "int64", "rank": "int64"})


def candidate_rows(
    candidates: pd.DataFrame, features: pd.DataFrame, names: list[str]
) -> pd.DataFrame:
    """The feature rows (model features and ``ctx_`` facts) of ``candidates``, in their order."""
    rows = candidates[KEY].merge(features, on=KEY, how="left", validate="one_to_one")
    if len(rows) and rows[names].isna().all(axis=1).any():
        raise RiskmlError("some candidates have no features; rerun the features stage")
    return rows


def explain_area(
    model: Any,
    candidates: pd.DataFrame,
    features: pd.DataFrame,
    catalogue: Mapping[str, Any],
    *,
    n_reasons: int,
    chunk_size: int,
    n_lowering: int = 2,
) -> pd.DataFrame:
    """Reasons for ``candidates`` (a frame with the key), using their rows of ``features``;
    ``model``: an :class:`~riskml.area_model.AreaModel` (or a bare LightGBM Booster)."""
    if isinstance(model, lgb.Booster):
        rows = candidate_rows(candidates, features, model.feature_name())
        contrib = contributions(model, rows, chunk_size=chunk_size)
    else:
        rows = candidate_rows(candidates, features, model.feature_names_)
        contrib = model.contributions(rows, chunk_size=chunk_size)
    return reasons(rows, contrib, catalogue, n_up=n_reasons, n_down=n_lowering)


def no_reason_rows(picks: pd.DataFrame) -> pd.DataFrame:
    """One row per random-control pick saying that it carries no risk reasons."""
    out = pd.DataFrame(
        {
            "declaration_id": picks["declaration_id"].astype(str).to_numpy(),
            "item_no": picks["item_no"].astype("int64").to_numpy(),
            "rank": np.ones(len(picks), dtype="int64"),
            "direction": "none",
            "feature": None,
            "group": None,
            "features": None,
            "implied": None,
            "value": np.full(len(picks), np.nan),
            "contribution": np.full(len(picks), np.nan),
            "sentence": NO_REASONS,
            "base_logodds": np.full(len(picks), np.nan),
            "total_logodds": np.full(len(picks), np.nan),
        },
        columns=EXPLANATION_COLUMNS,
    )
    return out.astype({"feature": object, "group": object, "features": object, "implied": object})


def group_contributions(contrib: pd.DataFrame, catalogue: Mapping[str, Any]) -> pd.DataFrame:
    """Contributions summed by catalogue group (all ``imp_*`` features → ``importer history``),
    one column per group in order of first appearance, ``bias`` kept; the raw values stay in
    ``contrib``."""
    feats = contrib.drop(columns="bias", errors="ignore")
    groups = [getattr(catalogue.get(c), "group", "other") for c in feats.columns]
    out = feats.T.groupby(np.asarray(groups), sort=False).sum().T
    if "bias" in contrib:
        out["bias"] = contrib["bias"]
    return out


# --- statements of fact: topics, absences, coverage, waterfalls (issue 12, part 8) ---


#: Statement topics in reading order, with the name the pictures and tables use.
TOPICS: dict[str, str] = {
    "declared value": "declared value against its reference",
    "duty": "duty declared",
    "goods": "kind of goods and its record",
    "shipment": "shipment (mass, quantity, procedure)",
    "importer": "importer's record",
    "declarant": "declarant's record",
    "supplier": "supplier's record",
    "origin and route": "origin, route and seizures reported",
    "targeting profile": "targeting profile matched",
    "calendar": "date of the declaration",
}

#: The catalogue group → topic (features of other groups form a topic of their group's name).
_GROUP_TOPIC = {
    "value": "declared value",
    "goods history": "goods",
    "goods": "shipment",
    "importer history": "importer",
    "declarant history": "declarant",
    "supplier history": "supplier",
    "origin history": "origin and route",
    "route history": "origin and route",
    "route": "origin and route",
    "seizure intelligence": "origin and route",
    "targeting profile": "targeting profile",
    "calendar": "calendar",
}
_NAME_TOPIC = {
    "duty_rate": "duty",
    "duty_to_cif": "duty",
    "duty_rate_gap": "duty",
    # the tariff line the goods fit: what a misclassification saves
    "sibling_fit": "duty",
    "sibling_rate_gap": "duty",
    "preference_claim": "duty",
    # a property of the tariff line: it says what the goods are, as the HS chapter does
    "duty_rate_standard": "goods",
    "hs_chapter": "goods",
    "first_imp_supplier": "supplier",
    "first_imp_declarant": "declarant",
}
_NOVELTY_PREFIX = (("first_imp_", "importer"), ("imp_", "importer"), ("decl_", "declarant"),
                   ("sup_", "supplier"))  # fmt: skip

#: At most this many facts are joined into one statement (the strongest of its push's sign).
MAX_FACTS = 3

#: What a selected item says when none of its facts raises its score (its rise comes from
#: absences, which are never said, or its score is below the average item's).
NO_RAISING_FACT = (
    "no fact about the declaration raises its score: what raises it is the absence of a fact "
    "(not said as a reason) or it is below the average item"
)

#: The name of the rest of the push in tables and pictures.
OTHER = "other features (and facts stated only as absences)"


def topic_of(name: str, info: FeatureInfo | None) -> str:
    """The statement topic of feature ``name`` (:data:`TOPICS`; else its catalogue group)."""
    if name in _NAME_TOPIC:
        return _NAME_TOPIC[name]
    group = getattr(info, "group", "other")
    if group == "novelty":
        return next((t for p, t in _NOVELTY_PREFIX if name.startswith(p)), "importer")
    return _GROUP_TOPIC.get(group, group)


def topic_title(topic: str) -> str:
    """The readable name of a topic."""
    return TOPICS.get(topic, topic)


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def states_absence(info: FeatureInfo | None, row: Mapping[str, Any]) -> bool:
    """True when the feature's value on ``row`` says that a fact is absent (its sentence would be
    "no ...", "never ...", "matches no ...", a rate or count of 0): such a sentence is never a
    reason. A missing value is an absence; a 0 is one when the catalogue says so (a
    ``template_zero`` that is not marked :attr:`FeatureInfo.zero_is_fact`, or
    :attr:`FeatureInfo.none_at_zero`)."""
    if info is None:
        return False
    value = row.get(info.name)
    if _missing(value):
        return True
    try:
        zero = float(value) == 0.0
    except (TypeError, ValueError):
        return False
    if not zero:
        return False
    return info.none_at_zero or (bool(info.template_zero) and not info.zero_is_fact)


def fact_sentence(name: str, row: Mapping[str, Any], catalogue: Mapping[str, Any]) -> str:
    """The sentence of one feature on ``row`` (its catalogue template; the description and the
    value when a fact the template needs is missing)."""
    info = catalogue.get(name)
    if info is None:
        return f"{name} = {_plain(row.get(name))}"
    text = fill_reason(info, row)
    return text if text is not None else f"{info.description}: {_plain(row.get(name))}"


def _plain(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "unknown" if math.isnan(value) else f"{value:,.3g}"
    return str(value)


def _num(row: Mapping[str, Any], key: str) -> float | None:
    value = row.get(key)
    if _missing(value):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def value_statement(row: Mapping[str, Any], names: Sequence[str]) -> str | None:
    """All unit-value facts in one sentence: the declared unit value against the reference it
    was compared with (peer group, size, period); ``None`` without a reference."""
    if not any(n.startswith("uv_") for n in names):
        return None
    uv, ref, gap = (
        _num(row, "ctx_uv_kg"),
        _num(row, "ctx_uv_ref_median"),
        _num(row, "ctx_uv_kg_gap"),
    )
    count, months = _num(row, "ctx_uv_ref_count"), _num(row, "ctx_ref_months")
    group, direction = row.get("ctx_uv_ref_group"), row.get("ctx_uv_kg_dir")
    if None in (uv, ref, gap, count, months) or _missing(group) or _missing(direction):
        return None
    text = (
        f"declared unit value {uv:,.2f} per kg is {gap:.0%} {direction} the reference "
        f"{ref:,.2f} per kg (median of {count:.0f} declarations of {group} in the previous "
        f"{months:.0f} months)"
    )
    unit = row.get("ctx_uv_q_dir") and row.get("ctx_quantity_unit")
    q_uv, q_ref, q_gap = (
        _num(row, "ctx_uv_q"),
        _num(row, "ctx_uv_q_ref_median"),
        _num(row, "ctx_uv_q_gap"),
    )
    if (
        any(n.startswith("uv_q") for n in names)
        and not _missing(unit)
        and unit != "kg"
        and None not in (q_uv, q_ref, q_gap)
    ):
        text += (
            f"; per {unit}: {q_uv:,.2f} against {q_ref:,.2f} "
            f"({q_gap:.0%} {row.get('ctx_uv_q_dir')})"
        )
    return text


def duty_statement(row: Mapping[str, Any], names: Sequence[str]) -> str | None:
    """All duty facts in one sentence: the rate applied and paid against the tariff line's
    standard rate, and a preference claimed; ``None`` when the applied rate is unknown."""
    rate, paid = _num(row, "duty_rate"), _num(row, "duty_to_cif")
    if rate is None:
        return None
    text = f"duty rate {rate:.1%} applied"
    if paid is not None:
        text += f" (duties paid {paid:.1%} of the customs value)"
    standard, hs6 = _num(row, "duty_rate_standard"), row.get("ctx_hs6")
    if standard is not None and not _missing(hs6):
        text += f" against a standard rate of {standard:.1%} for HS {hs6}"
    if _num(row, "preference_claim") == 1.0 and not _missing(row.get("ctx_origin")):
        text += f"; preferential origin claimed for goods from {row.get('ctx_origin')}"
    return text


_COMPOSERS = {"declared value": value_statement, "duty": duty_statement}


def statement(
    topic: str, names: Sequence[str], row: Mapping[str, Any], catalogue: Mapping[str, Any]
) -> str:
    """One sentence for the facts ``names`` of ``topic`` (strongest first): the topic's own
    composition (unit value, duty), else the facts' sentences joined by '; '."""
    compose = _COMPOSERS.get(topic)
    text = compose(row, names) if compose else None
    if text:
        return text
    said: list[str] = []
    for name in names:
        sentence = fact_sentence(name, row, catalogue)
        if sentence not in said:
            said.append(sentence)
        if len(said) == MAX_FACTS:
            break
    return _join(said)


def _join(sentences: list[str]) -> str:
    """Sentences joined by '; ', a subject they repeat ("importer: ...") said once."""
    subject = sentences[0].split(": ", 1)[0] + ": " if ": " in sentences[0] else None
    if subject is None:
        return "; ".join(sentences)
    rest = [s.removeprefix(subject) for s in sentences[1:]]
    return "; ".join([sentences[0], *rest])


def candidate_statements(
    row: Mapping[str, Any],
    contrib: Mapping[str, float],
    catalogue: Mapping[str, Any],
    topics: Mapping[str, str],
    *,
    n_up: int,
    n_down: int,
) -> list[dict[str, Any]]:
    """The statements of one candidate: the ``n_up`` topics whose facts push its score up most
    and the ``n_down`` that push it down most, each with its sentence, push (the sum of its
    facts' contributions, plus its entity's history absences when a novelty fact holds:
    :func:`novelty_facts`), lead feature and the features behind it. ``topics``: feature →
    topic (:func:`topic_of`); ``contrib``: feature → contribution (log-odds, no ``bias``)."""
    facts: dict[str, list[tuple[str, float]]] = {}
    absent: dict[str, list[tuple[str, float]]] = {}
    for name, value in contrib.items():
        if value != 0.0:
            kind = absent if states_absence(catalogue.get(name), row) else facts
            kind.setdefault(topics[name], []).append((name, float(value)))
    novel = {t: novelty_facts(t, row) for t in absent}
    folded = {t: absent[t] for t in absent if novel[t]}
    pushes = {t: sum(v for _, v in facts.get(t, []) + folded.get(t, [])) for t in {*facts, *folded}}
    order = sorted(pushes, key=lambda t: -abs(pushes[t]))
    out = []
    for direction, sign, limit in (("raises", 1.0, n_up), ("lowers", -1.0, n_down)):
        chosen = [t for t in order if pushes[t] * sign > 0][:limit]
        for rank, topic in enumerate(chosen, start=1):
            lead = sorted(
                (f for f in facts.get(topic, []) if f[1] * sign > 0), key=lambda f: -abs(f[1])
            )
            first = novel.get(topic, []) if topic in folded else []
            names = first + [n for n, _ in lead if n not in first]
            implied = [n for n, _ in folded.get(topic, [])]
            out.append(
                {
                    "rank": rank,
                    "direction": direction,
                    "feature": names[0],
                    "group": topic,
                    "features": ", ".join(names),
                    "implied": ", ".join(implied) or None,
                    "value": _as_float(row.get(names[0])),
                    "contribution": pushes[topic],
                    "sentence": statement(topic, names, row, catalogue),
                }
            )
    return out


#: An entity's novelty facts. When one holds (a first import of the heading, an importer seen for
#: less than :data:`NEW_DAYS`), the entity's missing or empty history ("no earlier declaration",
#: "no item before this month") is that same fact measured another way: its push joins the
#: statement that says the novelty, and the absence itself is never said.
NOVELTY: dict[str, tuple[str, ...]] = {
    "importer": ("imp_age_days", "first_imp_hs4", "first_imp_origin"),
    "declarant": ("decl_age_days", "first_imp_declarant"),
    "supplier": ("sup_age_days", "first_imp_supplier"),
}
NEW_DAYS = 365


def novelty_facts(topic: str, row: Mapping[str, Any]) -> list[str]:
    """The novelty facts of ``topic``'s entity that hold on ``row`` (:data:`NOVELTY`)."""
    held = []
    for name in NOVELTY.get(topic, ()):
        value = _num(row, name)
        if value is None:
            continue
        if (name.endswith("_age_days") and value <= NEW_DAYS) or value == 1.0:
            held.append(name)
    return held


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def push_summary(base: float, total: float, listed: Sequence[float]) -> dict[str, Any]:
    """What a candidate's listed reasons cover: ``base`` and ``total`` log-odds (and their
    probabilities), ``listed`` (their summed push), ``other`` (the rest of the rise) and
    ``share`` = listed / (total − base), the share of the score's rise above the base the
    listed reasons account for (``None`` when the score is not above the base)."""
    rise = total - base
    pushed = float(sum(listed))
    return {
        "base": base,
        "total": total,
        "base_probability": _sigmoid(base),
        "probability": _sigmoid(total),
        "listed": pushed,
        "other": rise - pushed,
        "share": pushed / rise if rise > 0 else None,
    }


def coverage_sentence(summary: Mapping[str, Any]) -> str:
    """The share of the score's rise above the base that the listed reasons cover, in words."""
    share, other = summary["share"], summary["other"]
    if share is None:
        return (
            f"the score ({summary['probability']:.3f}) is not above the average item's "
            f"({summary['base_probability']:.3f}): the reasons show what pushes it either way"
        )
    if share >= 0.995:
        return "these reasons account for all of the score's rise above the base" + (
            f"; other features lower it by {-other:.2f} log-odds" if other < -0.005 else ""
        )
    return (
        f"these reasons account for {max(share, 0.0):.0%} of the score's rise above the base; "
        f"other features add {other:+.2f} log-odds"
    )


def waterfall_steps(reasons_of: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The waterfall of one candidate in its reasons' words: the base, each listed reason
    (raising, then lowering, as the tables read), "other" (the rest of the push: features not
    listed and facts stated only as absences) and the total, in log-odds, with the push summary
    (:func:`push_summary`). ``reasons_of``: the candidate's rows of the
    explanations table."""
    spoken = sorted(
        (r for r in reasons_of if r["direction"] in ("raises", "lowers")),
        key=lambda r: (r["direction"] != "raises", r["rank"]),
    )
    if not spoken:
        return {}
    base, total = float(spoken[0]["base_logodds"]), float(spoken[0]["total_logodds"])
    summary = push_summary(base, total, [float(r["contribution"]) for r in spoken])
    steps = [
        {"name": topic_title(r["group"]), "sentence": r["sentence"],
         "push": float(r["contribution"]), "direction": r["direction"]}
        for r in spoken
    ]  # fmt: skip
    steps.append({"name": OTHER, "sentence": "", "push": summary["other"], "direction": "other"})
    position = base
    for step in steps:
        step["start"], position = position, position + step["push"]
    return {"steps": steps, **summary}
