"""Per-area labels from control outcomes: found, controlled and clean, or never controlled.

An outcome row is one control result. It *informs* an area when

* it found an offence of that area (whatever the control kind): the item is a positive; or
* its control kind can detect the area (``AreaSpec.detectable_by``) and it is either a clean
  result without a risk area (clean for every area the kind can detect), a clean result for this
  very area, or a finding of *another* area (the control looked and found no offence of this one).

A clean row that names another area is a clean result for that area only and says nothing here.
Items no informative outcome reaches have no label: "not inspected" is not "compliant".

Training may take fewer kinds' clean results as negatives (``training.negative_kinds``, see
:func:`negative_kinds`): a kind that misses many offences (a documentary check finds half of
environment's) leaves them among its clean results. Measurements on labelled rows (evaluate,
promote, the backtest's labelled population) keep every detecting kind's, so that a training
choice never moves the yardstick it is judged by.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from riskml.config import AreaSpec
from riskml.contract import CONTROL_KINDS, KEY, RiskmlError

LABEL_COLUMNS: list[str] = [*KEY, "label", "control_kind", "control_reason", "recovered"]

_OUTCOME_NEEDS = [*KEY, "control_kind", "result_date", "risk_area", "offence_found"]


def _check_columns(frame: pd.DataFrame, needed: list[str], table: str) -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise RiskmlError(
            f"{table}: missing column(s) {missing}; build the table with the data contract "
            "(riskml.contract) first"
        )


def negative_kinds(spec: AreaSpec) -> list[str]:
    """The control kinds whose clean results train ``spec``'s area as negatives: its
    ``training.negative_kinds``, or every kind of ``labels.detectable_by`` when not set."""
    return list(spec.detectable_by if spec.negative_kinds is None else spec.negative_kinds)


def _area_rows(
    outcomes: pd.DataFrame, spec: AreaSpec, known_before, negatives_from: Sequence[str] | None
) -> pd.DataFrame:
    """The outcome rows that inform ``spec``'s area, with a positive flag and recovered duty."""
    o = outcomes
    if known_before is not None:
        o = o[(o["result_date"] < pd.Timestamp(known_before)).fillna(False).to_numpy(bool)]
    area = o["risk_area"].astype("string").str.strip()
    no_area = (area.isna() | (area == "")).to_numpy(bool)
    this_area = (area == spec.name).fillna(False).to_numpy(bool)
    found = o["offence_found"].astype("boolean").fillna(False).to_numpy(bool)
    kind = o["control_kind"].astype("string")
    detecting = spec.detectable_by
    if negatives_from is not None:
        detecting = [k for k in detecting if k in negatives_from]
    detects = kind.isin(detecting).fillna(False).to_numpy(bool)

    positive = found & this_area
    clean_here = ~found & (no_area | this_area)
    other_finding = found & ~no_area & ~this_area
    informs = positive | (detects & (clean_here | other_finding))

    duty = o["additional_duty"] if "additional_duty" in o.columns else pd.Series(0.0, o.index)
    reason = (
        o["control_reason"].astype("string")
        if "control_reason" in o.columns
        else pd.Series(pd.NA, index=o.index, dtype="string")
    )
    rows = pd.DataFrame(
        {
            "declaration_id": o["declaration_id"].astype("string").to_numpy(),
            "item_no": o["item_no"].astype("int64").to_numpy(),
            "control_kind": kind.to_numpy(),
            "control_reason": reason.to_numpy(),
            "result_date": o["result_date"].to_numpy(),
            "positive": positive,
            "recovered": np.where(positive, duty.astype("float64").fillna(0.0).to_numpy(), 0.0),
        }
    )[informs]
    # Earliest result first; same-day ties broken by the fixed order of control kinds.
    order = {k: i for i, k in enumerate(CONTROL_KINDS)}
    rows["kind_rank"] = rows["control_kind"].map(order).fillna(len(order)).astype("int64")
    return rows.sort_values(["result_date", "kind_rank"], kind="stable")


def _per_item(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per controlled item: label, deciding control (kind and reason), recovered duty.

    The deciding control is a random one when there is one (the item then belongs to the
    unbiased sample), else the earliest finding for a positive, the earliest control for a
    negative."""
    grouped = rows.groupby(KEY, sort=False)
    agg = grouped.agg(
        positive=("positive", "any"),
        recovered=("recovered", "sum"),
    )
    is_random = rows["control_kind"] == "random"
    agg["any_random"] = is_random.groupby(
        [rows["declaration_id"], rows["item_no"]], sort=False
    ).any()
    control = ["control_kind", "control_reason"]
    first_any = rows.drop_duplicates(KEY).set_index(KEY)[control]
    first_pos = rows[rows["positive"]].drop_duplicates(KEY).set_index(KEY)[control]
    first_random = rows[is_random].drop_duplicates(KEY).set_index(KEY)[control]
    positive = agg["positive"].to_numpy(bool)
    random = agg["any_random"].to_numpy(bool)
    for col in control:
        deciding = first_pos[col].reindex(agg.index).where(positive, first_any[col])
        agg[col] = first_random[col].reindex(agg.index).where(random, deciding)
    agg["label"] = agg["positive"].astype("float64")
    return agg[["label", *control, "recovered"]].reset_index()


def build_labels(
    declarations: pd.DataFrame,
    outcomes: pd.DataFrame,
    spec: AreaSpec,
    *,
    known_before: pd.Timestamp | None = None,
    labelled_only: bool = False,
    negatives_from: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Labels of one risk area, one row per declaration item in the order of ``declarations``.

    Columns: ``declaration_id, item_no``; ``label`` (1.0 an offence of the area was found, 0.0
    controlled by a kind that can detect the area and nothing of the area found, NaN never
    controlled for the area); ``control_kind`` (``"random"`` when a random control was among the
    informative controls, so that random rows form an unbiased sample; otherwise the kind of the
    earliest finding for a positive, of the earliest informative control for a negative; null
    when unlabelled); ``control_reason`` (that deciding control's reason: profile,
    intelligence, random or other; null when unlabelled or not recorded); ``recovered``
    (additional duty of the area's findings, 0 otherwise).

    ``known_before``: only outcomes whose ``result_date`` is strictly before it count (label
    delay: results not known at training time are missing labels).

    ``labelled_only``: only the rows with a label (0 or 1), the same rows and values as the full
    frame's with ``label`` not NaN, on the same index; what training reads, without a frame of
    every item (millions of rows, for a few percent labelled).

    ``negatives_from``: only the controls of these kinds (among ``spec.detectable_by``) give
    negatives; a finding of the area is a positive whatever its kind. ``None``: every kind of
    ``detectable_by`` (the labels every measurement reads). Training passes
    :func:`negative_kinds` of the spec.

    Examples
    --------
    >>> labels = build_labels(decl, outc, specs["revenue"], known_before=pd.Timestamp("2024-04-01"))
    ... # doctest: +SKIP
    """
    _check_columns(declarations, KEY, "declarations")
    _check_columns(outcomes, _OUTCOME_NEEDS, "outcomes")
    keys = pd.DataFrame(
        {
            "declaration_id": declarations["declaration_id"].astype("string").to_numpy(),
            "item_no": declarations["item_no"].astype("int64").to_numpy(),
        }
    )
    per_item = _per_item(_area_rows(outcomes, spec, known_before, negatives_from))
    index = declarations.index
    if labelled_only:
        keys["_pos"] = np.arange(len(keys), dtype=np.int64)
        out = keys.merge(per_item, on=KEY, how="inner", validate="many_to_one", sort=False)
        out = out.sort_values("_pos", kind="stable").reset_index(drop=True)
        index = index[out["_pos"].to_numpy()]
    else:
        out = keys.merge(per_item, on=KEY, how="left", validate="many_to_one", sort=False)
    out["recovered"] = out["recovered"].fillna(0.0).astype("float64")
    out["label"] = out["label"].astype("float64")
    out["control_kind"] = out["control_kind"].astype("string")
    out["control_reason"] = out["control_reason"].astype("string")
    out.index = index
    return out[LABEL_COLUMNS]


def with_result_dates(
    outcomes: pd.DataFrame, declarations: pd.DataFrame, *, delay_days: int
) -> tuple[pd.DataFrame, str | None]:
    """Outcomes with a result date on every row: missing ones are the declaration's acceptance
    date plus ``delay_days``. Returns the outcomes and a note when any date was derived."""
    has = "result_date" in outcomes.columns
    missing = ~outcomes["result_date"].notna() if has else pd.Series(True, outcomes.index)
    if not missing.any():
        return outcomes, None
    acc = declarations[[*KEY, "accepted_date"]].drop_duplicates(KEY).copy()
    acc["declaration_id"] = acc["declaration_id"].astype("string")
    acc["item_no"] = acc["item_no"].astype("int64")
    keys = pd.DataFrame(
        {
            "declaration_id": outcomes["declaration_id"].astype("string").to_numpy(),
            "item_no": outcomes["item_no"].astype("int64").to_numpy(),
        }
    )
    accepted = keys.merge(acc, on=KEY, how="left")["accepted_date"].to_numpy()
    derived = pd.to_datetime(accepted) + pd.Timedelta(days=delay_days)
    out = outcomes.copy()
    current = pd.to_datetime(out["result_date"]) if has else pd.Series(pd.NaT, out.index)
    out["result_date"] = current.where(~missing, pd.Series(derived, index=out.index))
    note = (
        f"{int(missing.sum())} outcome(s) had no result date: derived as the acceptance date "
        f"plus backtest.label_delay_days={delay_days}"
    )
    return out, note


#: ``control_reason`` of an item :func:`with_unlabelled_negatives` adds: never controlled for
#: the area (as known before the cut), taken as a weak negative. Not a contract value.
UNLABELLED = "unlabelled"
#: Salt of the sample's key hash, so the sample is not another hash-based choice's.
_SAMPLE_SALT = "riskml-unlabelled-negatives"


def unlabelled_sample(declarations: pd.DataFrame, share: float) -> np.ndarray:
    """Whether each declaration item belongs to a fixed ``share`` of all items, chosen by a hash
    of its key alone: the same item is in or out whatever the date, the outcomes or the other
    rows, so the sample of a cut cannot depend on anything learnt after it."""
    keys = pd.DataFrame(
        {
            "declaration_id": declarations["declaration_id"].astype("string").to_numpy(),
            "item_no": declarations["item_no"].astype("int64").to_numpy(),
        }
    )
    h = pd.util.hash_pandas_object(keys, index=False, hash_key=_SAMPLE_SALT[:16]).to_numpy()
    return (h >> np.uint64(11)).astype(np.float64) / float(2**53) < share


def unlabelled_rows(frame: pd.DataFrame) -> np.ndarray:
    """Whether each row of ``frame`` (labels, or training rows joined to them) is an item
    :func:`with_unlabelled_negatives` added (``control_reason`` :data:`UNLABELLED`); all false
    when ``frame`` carries no ``control_reason``."""
    if "control_reason" not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    return frame["control_reason"].astype("string").eq(UNLABELLED).fillna(False).to_numpy(bool)


def with_unlabelled_negatives(
    labels: pd.DataFrame,
    declarations: pd.DataFrame,
    share: float,
    *,
    known_before: pd.Timestamp | None,
    labelled_only: bool = False,
) -> pd.DataFrame:
    """``labels`` (:func:`build_labels` of ``declarations``, same ``known_before`` and
    ``labelled_only``) plus, as negatives, the items of :func:`unlabelled_sample` (``share``
    of all items) that have no label and were accepted before ``known_before``:
    ``control_reason`` :data:`UNLABELLED`, ``control_kind`` null (positive-unlabelled learning).

    Controls follow the legacy rules, profiles and tips, so within the labelled items the goods
    the rules pick look no riskier than the rest; offences are rare among items nobody checked,
    so a sample of them as negatives (weighted down in training: ``train.unlabelled_weight``)
    restores the population's contrast. Causal: an item is a candidate when it was accepted
    before the cut and no result for the area was known before it (``labels`` built with
    ``known_before``); the sample itself depends on the key only.
    """
    if share <= 0:
        return labels
    _check_columns(declarations, [*KEY, "accepted_date"], "declarations")
    candidate = unlabelled_sample(declarations, share)
    if known_before is not None:
        accepted = pd.to_datetime(declarations["accepted_date"]).to_numpy()
        candidate &= accepted < np.datetime64(pd.Timestamp(known_before))
    if labelled_only:
        # labels are indexed by the declarations' rows: add the sampled rows without a label
        labelled = declarations.index.isin(labels.index)
        pick = np.flatnonzero(candidate & ~labelled)
        added = pd.DataFrame(
            {
                "declaration_id": declarations["declaration_id"].astype("string").to_numpy()[pick],
                "item_no": declarations["item_no"].astype("int64").to_numpy()[pick],
            },
            index=declarations.index[pick],
        )
        added["label"] = 0.0
        added["control_kind"] = pd.array([None] * len(pick), dtype="string")
        added["control_reason"] = pd.array([UNLABELLED] * len(pick), dtype="string")
        added["recovered"] = 0.0
        out = pd.concat([labels, added[LABEL_COLUMNS]])
        order = np.argsort(declarations.index.get_indexer(out.index), kind="stable")
        return out.iloc[order]
    out = labels.copy()
    pick = candidate & out["label"].isna().to_numpy()
    out.loc[pick, "label"] = 0.0
    reason = out["control_reason"].astype("string")
    reason[pick] = UNLABELLED
    out["control_reason"] = reason
    return out
