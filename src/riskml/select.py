"""Audit selection: ranked candidate lists per area, within capacity, with a random-control share.

Each list keeps, for every candidate, how it was chosen (``rule`` or ``watchlist`` with the name
that fired, ``model``, or ``random_control``): random picks measure compliance without bias and
carry no risk reasons. The per-area lists are combined into one list where a declaration flagged
in several areas appears once with all its areas (capped by ``select.overall_capacity``), and
optionally aggregated to importer-period level. Outputs: ``data/candidates/*.csv`` and
``data/candidates/candidates.xlsx`` (one sheet per area, the combined list, a summary).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskml.catalog import Catalog
from riskml.config import AreaSpec, Params, SelectParams, SplitParams
from riskml.contract import KEY, data_quality_list

log = logging.getLogger(__name__)

DECLARATION_FIELDS = [
    "accepted_date",
    "office",
    "importer_id",
    "declarant_id",
    "origin_country",
    "hs_code",
    "cif_value",
    "duties_paid",
]

CANDIDATE_COLUMNS = [
    "area",
    "rank",
    "selection_kind",
    "declaration_id",
    "item_no",
    *DECLARATION_FIELDS,
    "score",
    "expected_recovery",
    "fired",
    "flags",
    "reasons",
    "reasons_share",
    "ranked_by",
    "model_version",
]


# The rank key is the domain's (riskml.ranking); re-exported for the lists' code.
from riskml.ranking import (  # noqa: E402
    KEY_PROBABILITY,
    KEY_RECOVERY_MODEL,
    KEY_RECOVERY_RATIO,
    rank_columns,
    rank_key,
    recovery_ratio,
)

__all__ = [
    "KEY_PROBABILITY",
    "KEY_RECOVERY_MODEL",
    "KEY_RECOVERY_RATIO",
    "rank_columns",
    "rank_key",
    "recovery_ratio",
]


def _log_fallback(spec: AreaSpec, source: str, ratio: float, *, where: str) -> None:
    if spec.rank_by != "expected_recovery" or source == KEY_RECOVERY_MODEL:
        return
    how = (
        f"probability × recovery ratio of past findings ({ratio:.4g}) × duties paid"
        if source == KEY_RECOVERY_RATIO
        else "probability (no finding with a recovered amount is known)"
    )
    log.warning(
        "%s: ranks by expected recovery but has no recovery-model prediction (%s); "
        "ranking by %s instead",
        spec.name,
        where,
        how,
    )


def _model_recovery_column(scores: pd.DataFrame) -> pd.Series | None:
    """The scores file's ``expected_recovery`` (written by ``evaluate`` from the recovery
    model) when every row has a finite value, else ``None``."""
    if "expected_recovery" not in scores.columns:
        return None
    col = pd.to_numeric(scores["expected_recovery"], errors="coerce").astype("float64")
    return col if np.isfinite(col.to_numpy()).all() else None


def scored_declarations(declarations: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``declarations`` whose item ``scores`` holds, in the declarations' order:
    ``declarations.merge(scores[KEY], on=KEY, how="inner")``. The merge is first tried on the
    declarations accepted between the scores' first and last dates and kept when it finds
    every scored item (an item is one declaration row: the contract's key is unique), so that
    it hashes the scored period's keys, not the whole history's (at 10 million items the
    period is a quarter of them); else on every declaration."""
    keys = scores[KEY]
    if len(scores) and "accepted_date" in scores.columns and "accepted_date" in declarations:
        dates = pd.to_datetime(scores["accepted_date"])
        accepted = pd.to_datetime(declarations["accepted_date"])
        inside = ((accepted >= dates.min()) & (accepted <= dates.max())).to_numpy(bool)
        out = declarations[inside].merge(keys, on=KEY, how="inner")
        if len(out) == len(scores):
            return out
    return declarations.merge(keys, on=KEY, how="inner")


def period_declarations(
    folder: Path, scores: pd.DataFrame, cache: dict[Any, pd.DataFrame]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The declarations (the validated table ``folder``) of the months ``scores`` holds items
    of, and :func:`scored_declarations` of them: every scored item's row, since the
    declarations are stored by their acceptance month, and the same rows in the same order as
    from every declaration (at 10 million items the scored period is a quarter of the
    history). A project validated before the monthly layout has one file
    (:func:`riskml.catalog.stored_table`), which ``read_dataset`` reads whole. Every declaration
    when the months miss a scored item (a score dated outside its declaration's month).
    ``cache``: the months last read, kept for the next area of the same period."""
    from riskml import io

    stored = set(io.partition_months(folder))
    months = tuple(sorted(set(io.month_labels(scores["accepted_date"])) & stored))
    if months not in cache:
        cache.clear()
        cache[months] = io.read_dataset(folder, months=list(months))
    declarations = cache[months]
    scored = scored_declarations(declarations, scores)
    if len(scored) != len(scores):  # an item scored outside its declaration's month
        declarations = io.read_dataset(folder)
        scored = scored_declarations(declarations, scores)
    return declarations, scored


def finding_declarations(folder: Path, outcomes: pd.DataFrame) -> pd.DataFrame:
    """The key and ``duties_paid`` of the declarations (the validated table ``folder``) of the
    items ``outcomes`` found an offence on, in the table's order: every row
    :func:`recovery_ratio` looks its findings up in (it joins them by key, so these rows give
    the ratio of every declaration), read three columns of a month at a time."""
    from riskml import io
    from riskml.train import key_hashes, key_in

    columns = [*KEY, "duties_paid"]
    found = outcomes.loc[outcomes["offence_found"].astype(bool), KEY]
    wanted = np.unique(key_hashes(found))
    if Path(folder).is_dir():
        return io.read_partitioned(
            folder,
            columns=columns,
            where=lambda table: key_in(table.select(KEY).to_pandas(), wanted),
        )
    frame = io.read_dataset(folder, columns)
    return frame[key_in(frame, wanted)].reset_index(drop=True)


def ranked(
    scores: pd.DataFrame,
    declarations: pd.DataFrame,
    outcomes: pd.DataFrame,
    spec: AreaSpec,
    split: SplitParams,
    *,
    scored: pd.DataFrame | None = None,
    ratio_declarations: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Scored items joined to their declaration fields, with ``expected_recovery`` and
    ``rank_key`` (the area's ranking key, :func:`rank_columns`), sorted from the highest key
    down (ties by key). ``frame.attrs["rank_source"]`` says where the key came from.

    For an area with ``rank_by: expected_recovery`` the key is :func:`rank_key` of the score and
    the recovery model's expected recovery, which ``evaluate`` writes into the scores (column
    ``expected_recovery``); without it, of the ratio estimate of :func:`recovery_ratio` (findings
    known before the test window), with a warning in the log.

    ``scored``: :func:`scored_declarations` of ``declarations`` and ``scores`` when already
    drawn; the scored items' fields are read from it, the ratio from every declaration.
    ``ratio_declarations``: the declarations the ratio's findings are looked up in (their
    duties paid), when not ``declarations``: any rows that hold every finding's item
    (:func:`finding_declarations`) give the same ratio.
    """
    if scored is None:
        scored = scored_declarations(declarations, scores)
    decl_cols = [c for c in DECLARATION_FIELDS if c not in scores.columns or c == "accepted_date"]
    frame = scores.drop(columns=[c for c in decl_cols if c in scores.columns]).merge(
        scored[[*KEY, *decl_cols]], on=KEY, how="left", validate="one_to_one"
    )
    model_recovery = _model_recovery_column(frame) if spec.rank_by == "expected_recovery" else None
    ratio = 0.0  # unused beside the recovery model's expected recovery (rank_columns)
    if model_recovery is None:
        ratio = recovery_ratio(
            declarations if ratio_declarations is None else ratio_declarations,
            outcomes,
            spec.name,
            known_before=pd.Timestamp(split.test_start),
        )
    expected, key, source = rank_columns(
        spec,
        frame["score"].to_numpy(),
        model_recovery=None if model_recovery is None else model_recovery.to_numpy(),
        ratio=ratio,
        duties_paid=frame["duties_paid"].to_numpy(dtype="float64", na_value=np.nan),
    )
    _log_fallback(spec, source, ratio, where=f"no expected_recovery in data/scores/{spec.name}/")
    frame["expected_recovery"] = expected
    frame["rank_key"] = key
    out = frame.sort_values(
        ["rank_key", "declaration_id", "item_no"], ascending=[False, True, True], kind="stable"
    ).reset_index(drop=True)
    out.attrs["rank_source"] = source
    return out


def select_candidates(
    ranked_frame: pd.DataFrame,
    spec: AreaSpec,
    params: SelectParams,
    *,
    hits: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Pick ``spec.capacity`` items: first the items a ``select`` rule or watch list of ``hits``
    matches (by rank key, within the capacity left after the random share), then the best by rank
    key, at most ``max_per_importer`` per importer over both, then a ``random_share`` of the
    capacity drawn uniformly from the rest.

    ``hits`` comes from :func:`riskml.watchlists.profile_hits` (KEY, kind, name, action).
    Deterministic for ``params.seed``. Adds ``selection_kind`` (``rule``, ``watchlist``,
    ``model``, ``random_control``), ``fired`` (the rules/lists that selected the item), ``flags``
    (the ``flag`` rules/lists that match it) and ``rank`` (1 = first).
    """
    n_random = int(round(spec.capacity * params.random_share))
    n_chosen = spec.capacity - n_random
    frame = ranked_frame
    forced = frame.iloc[0:0].assign(selection_kind=pd.Series(dtype="object"))
    if hits is not None and not hits.empty:
        sel = hits[hits["action"] == "select"]
        if not sel.empty:
            fired = sel.groupby(KEY, sort=False).agg(
                fired=("name", lambda s: "; ".join(dict.fromkeys(s))),
                kind=("kind", lambda s: "rule" if (s == "rule").any() else "watchlist"),
            )
            # the exact key test on the rows whose declaration has a hit only (the frame is
            # the whole scored period; a MultiIndex of it hashes every key)
            matched = frame["declaration_id"].isin(fired.index.unique(0)).to_numpy(bool, copy=True)
            near = frame.loc[matched, KEY]
            matched[matched] = pd.MultiIndex.from_frame(near).isin(fired.index)
            forced = frame[matched].head(n_chosen).copy()
            info = fired.loc[pd.MultiIndex.from_frame(forced[KEY])]
            forced["selection_kind"] = info["kind"].to_numpy()
            forced["fired"] = info["fired"].to_numpy()
    rest_pool = frame.drop(index=forced.index)
    already = forced["importer_id"].value_counts()
    per_importer = rest_pool.groupby("importer_id", sort=False).cumcount() + rest_pool[
        "importer_id"
    ].map(already).fillna(0).astype(int)
    eligible = rest_pool[per_importer.to_numpy() < params.max_per_importer]
    model = eligible.head(n_chosen - len(forced)).assign(selection_kind="model")
    rest = rest_pool.drop(index=model.index)
    rng = np.random.default_rng(params.seed)
    pick = rng.choice(len(rest), size=min(n_random, len(rest)), replace=False)
    random = rest.iloc[np.sort(pick)].assign(selection_kind="random_control")
    out = pd.concat([forced, model, random], ignore_index=True)
    if "fired" not in out.columns:
        out["fired"] = ""
    out["fired"] = out["fired"].fillna("").astype(str)
    out["flags"] = _flags(out, hits)
    out["rank"] = np.arange(1, len(out) + 1)
    return out


def _flags(selected: pd.DataFrame, hits: pd.DataFrame | None) -> np.ndarray:
    """'; '-joined names of the ``flag`` rules/lists matching each selected item."""
    if hits is None or hits.empty or selected.empty:
        return np.full(len(selected), "", dtype=object)
    flag = hits[hits["action"] == "flag"]
    joined = flag.groupby(KEY, sort=False)["name"].agg(lambda s: "; ".join(dict.fromkeys(s)))
    merged = selected[KEY].merge(joined.rename("flags").reset_index(), on=KEY, how="left")
    return merged["flags"].fillna("").to_numpy(dtype=object)


def effective_capacity(spec: AreaSpec, n_items: int) -> int:
    """The area's capacity: ``capacity_share`` of the period's items when set, else ``capacity``."""
    if spec.capacity_share is not None:
        return max(1, int(round(spec.capacity_share * n_items)))
    return spec.capacity


AREA_ORDER_SEP = ";"


def combine_areas(
    lists: dict[str, pd.DataFrame],
    *,
    overall_capacity: float,
    n_declarations: int,
    random_share: float,
) -> pd.DataFrame:
    """One row per declaration across the per-area lists, with all its areas.

    Columns: declaration_id, areas, selection_kinds, fired, flags, items, best_score,
    expected_recovery (summed), priority (best rank / list length over its areas, lower first),
    reasons (of its best area), model_versions (the model of each of its areas' lists, in the
    order of ``areas``). ``overall_capacity``: 0 no cap, < 1 a share of
    ``n_declarations``, >= 1 a count; the cap keeps the random-control share: declarations chosen
    only at random fill ``random_share`` of it, the others the rest by priority.
    """
    parts = []
    for area, frame in lists.items():
        if frame.empty:
            continue
        part = frame.assign(area=area, priority=frame["rank"] / max(len(frame), 1))
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=COMBINED_COLUMNS)
    every = pd.concat(parts, ignore_index=True).sort_values(
        ["priority", "declaration_id"], kind="stable"
    )

    def join(s: pd.Series) -> str:
        return AREA_ORDER_SEP.join(dict.fromkeys(str(v) for v in s if str(v)))

    combined = every.groupby("declaration_id", sort=False).agg(
        areas=("area", join),
        selection_kinds=("selection_kind", join),
        fired=("fired", join),
        flags=("flags", join),
        items=("item_no", "nunique"),
        accepted_date=("accepted_date", "first"),
        office=("office", "first"),
        importer_id=("importer_id", "first"),
        best_score=("score", "max"),
        expected_recovery=("expected_recovery", lambda s: s.sum(min_count=1)),
        priority=("priority", "min"),
        reasons=("reasons", "first") if "reasons" in every.columns else ("area", "first"),
        model_versions=("model_version", join)
        if "model_version" in every.columns
        else ("area", "first"),
    )
    combined = combined.reset_index()
    if "reasons" not in every.columns:
        combined["reasons"] = ""
    if "model_version" not in every.columns:
        combined["model_versions"] = ""
    if overall_capacity > 0:
        cap = (
            int(round(overall_capacity * n_declarations))
            if overall_capacity < 1
            else int(overall_capacity)
        )
        only_random = combined["selection_kinds"] == "random_control"
        n_rand = min(int(round(cap * random_share)), int(only_random.sum()))
        chosen = pd.concat(
            [combined[~only_random].head(cap - n_rand), combined[only_random].head(n_rand)]
        )
        combined = chosen.sort_values(["priority", "declaration_id"], kind="stable")
    combined.insert(0, "rank", np.arange(1, len(combined) + 1))
    return combined[COMBINED_COLUMNS].reset_index(drop=True)


COMBINED_COLUMNS = [
    "rank",
    "declaration_id",
    "areas",
    "selection_kinds",
    "fired",
    "flags",
    "items",
    "accepted_date",
    "office",
    "importer_id",
    "best_score",
    "expected_recovery",
    "priority",
    "reasons",
    "model_versions",  # the registered model version and alias of each of its areas' lists
]


def importer_periods(
    frames: dict[str, pd.DataFrame], *, period: str, top_items: int, limit: int
) -> pd.DataFrame:
    """Importer-period audit list (audit a trader over a month or quarter) over the ranked items
    of every area: items, areas, summed expected recovery and score, the ``top_items`` best items
    (``declaration_id/item_no`` by rank key). Sorted by expected recovery then summed score;
    the first ``limit`` rows."""
    cols = [*KEY, "importer_id", "accepted_date", "score", "expected_recovery", "rank_key"]
    parts = [f[cols].assign(area=a) for a, f in frames.items() if not f.empty]
    if not parts:
        return pd.DataFrame(columns=PERIOD_COLUMNS)
    every = pd.concat(parts, ignore_index=True)
    every["period"] = pd.to_datetime(every["accepted_date"]).dt.to_period(period).astype(str)
    every["item"] = every["declaration_id"].astype(str) + "/" + every["item_no"].astype(str)
    every = every.sort_values(["rank_key", "item"], ascending=[False, True], kind="stable")
    grouped = every.groupby(["importer_id", "period"], sort=False)
    out = grouped.agg(
        items=("item", "nunique"),
        areas=("area", lambda s: AREA_ORDER_SEP.join(dict.fromkeys(s))),
        expected_recovery=("expected_recovery", "sum"),
        score_sum=("score", "sum"),
        top_items=("item", lambda s: "; ".join(list(dict.fromkeys(s))[:top_items])),
    ).reset_index()
    out = out.sort_values(
        ["expected_recovery", "score_sum", "importer_id"],
        ascending=[False, False, True],
        kind="stable",
    ).head(limit)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out[PERIOD_COLUMNS].reset_index(drop=True)


PERIOD_COLUMNS = [
    "rank",
    "importer_id",
    "period",
    "items",
    "areas",
    "expected_recovery",
    "score_sum",
    "top_items",
]


def attach_reasons(selected: pd.DataFrame, explanations: pd.DataFrame, *, n: int = 3) -> pd.Series:
    """The top ``n`` risk-raising sentences of each model pick joined by '; ' (random picks get a
    note that they carry no risk reasons; a model pick without a raising fact says so)."""
    from riskml.reasons import NO_RAISING_FACT

    ups = explanations[(explanations["direction"] == "raises") & (explanations["rank"] <= n)]
    joined = (
        ups.sort_values([*KEY, "rank"])
        .groupby(KEY, sort=False)["sentence"]
        .agg("; ".join)
        .rename("reasons")
        .reset_index()
    )
    merged = selected[KEY].merge(joined, on=KEY, how="left")["reasons"]
    kind = selected["selection_kind"].to_numpy()
    # a scored pick none of whose facts raises its score says so (absences are never said)
    merged = merged.mask(merged.isna().to_numpy() & (kind == "model"), NO_RAISING_FACT)
    merged = merged.where(kind != "random_control", None).fillna("")
    random_note = "random control: chosen at random to measure compliance, no risk reasons"
    merged = merged.mask(kind == "random_control", random_note)
    if "fired" in selected.columns:
        by_profile = np.isin(kind, ["rule", "watchlist"])
        note = "selected by " + pd.Series(kind).str.replace("watchlist", "watch list") + ": "
        fired = note + selected["fired"].astype(str).to_numpy()
        both = fired.where(merged.to_numpy() == "", fired + "; " + merged.to_numpy())
        merged = merged.mask(by_profile, both.to_numpy())
    return merged.fillna("").to_numpy()


def reasons_share(selected: pd.DataFrame, explanations: pd.DataFrame, *, n: int = 3) -> np.ndarray:
    """The share of each pick's score rise above the base that its top ``n`` raising reasons
    (the ones :func:`attach_reasons` shows) account for (NaN for random controls, items
    without reasons and scores not above the base; :func:`riskml.reasons.push_summary`)."""
    cols = {"base_logodds", "total_logodds"}
    if not cols <= set(explanations.columns):
        return np.full(len(selected), np.nan)
    ups = explanations[(explanations["direction"] == "raises") & (explanations["rank"] <= n)]
    per = ups.groupby(KEY, sort=False).agg(
        listed=("contribution", "sum"), base=("base_logodds", "first"),
        total=("total_logodds", "first"),
    )  # fmt: skip
    rise = per["total"] - per["base"]
    share = (per["listed"] / rise).where(rise > 0).rename("share").reset_index()
    return selected[KEY].merge(share, on=KEY, how="left")["share"].to_numpy(dtype=float)


READABLE = {
    "area": "Risk area",
    "areas": "Risk areas",
    "rank": "Rank",
    "selection_kind": "Selected by",
    "selection_kinds": "Selected by",
    "declaration_id": "Declaration",
    "item_no": "Item",
    "items": "Items",
    "accepted_date": "Accepted on",
    "office": "Office",
    "importer_id": "Importer",
    "declarant_id": "Declarant",
    "origin_country": "Origin",
    "hs_code": "HS code",
    "cif_value": "CIF value",
    "duties_paid": "Duties paid",
    "score": "Risk score",
    "best_score": "Best risk score",
    "expected_recovery": "Expected recovery",
    "fired": "Rule / watch list",
    "flags": "Flags",
    "reasons": "Reasons",
    "reasons_share": "Share of the score's rise the reasons cover",
    "ranked_by": "Ranked by",
    "model_version": "Model version",
    "priority": "Priority (rank share)",
    "period": "Period",
    "score_sum": "Summed risk score",
    "top_items": "Top items",
}


def selection_summary(lists: dict[str, pd.DataFrame], capacities: dict[str, int]) -> pd.DataFrame:
    """One row per area: capacity, selected, count per selection kind, flagged, model version."""
    rows = []
    for area, frame in lists.items():
        kinds = frame["selection_kind"].value_counts()
        rows.append(
            {
                "area": area,
                "capacity": capacities.get(area, len(frame)),
                "selected": len(frame),
                **{k: int(kinds.get(k, 0)) for k in SELECTION_KINDS},
                "flagged": int((frame["flags"] != "").sum()) if "flags" in frame else 0,
                "model_version": frame["model_version"].iloc[0] if len(frame) else "",
            }
        )
    return pd.DataFrame(rows)


SELECTION_KINDS = ["rule", "watchlist", "model", "random_control"]


def write_xlsx(sheets: dict[str, pd.DataFrame], path: Path) -> Path:
    """Write ``sheets`` to one workbook atomically: readable column names, frozen header row,
    filters on every column, widths fitted to the content (at most 60 characters)."""
    from openpyxl.utils import get_column_letter

    from riskml.io import atomic_path

    with atomic_path(path) as tmp:
        with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
            for name, frame in sheets.items():
                shown = frame.rename(columns=READABLE)
                for col in shown.columns:
                    if pd.api.types.is_datetime64_any_dtype(shown[col]):
                        shown[col] = shown[col].dt.date
                shown.to_excel(writer, sheet_name=name[:31], index=False)
                ws = writer.sheets[name[:31]]
                ws.freeze_panes = "A2"
                if ws.max_row >= 1 and ws.max_column >= 1:
                    ws.auto_filter.ref = ws.dimensions
                for i, col in enumerate(shown.columns, start=1):
                    # an empty column (no expected recovery for an area without duty) is NaN
                    sample = shown[col].head(200).astype(str).str.len().fillna(0)
                    width = max(len(str(col)), int(sample.max()) if len(sample) else 0)
                    ws.column_dimensions[get_column_letter(i)].width = min(60, width + 2)
    return Path(path)


def draw_area(
    scores: pd.DataFrame,
    declarations: pd.DataFrame,
    outcomes: pd.DataFrame,
    spec: AreaSpec,
    params: Params,
    profile: Any,
    model: Any = None,
    *,
    scored: pd.DataFrame | None = None,
    ratio_declarations: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, int, pd.DataFrame]:
    """One area's list as the pipeline draws it: the ranked frame, the effective capacity and
    the selection (rule profiles and watch lists of ``profile``, model picks, random share).
    With ``model`` (the list's champion), the list ranks by that model's own ranking rule
    (``rank_by``, ``recovery_exponent``), not the spec's current one: a champion kept against a
    challenger trained with another exponent keeps the key it was chosen with, the key
    ``riskml score`` and the service use.

    ``scored`` and ``ratio_declarations``: as :func:`ranked` takes them (``run_select`` gives
    the scored months' declarations and the findings' rows instead of every declaration).

    The single place both ``explain`` and ``select`` get their candidates from."""
    from riskml.watchlists import profile_hits

    if model is not None:
        spec = spec.model_copy(
            update={"rank_by": model.rank_by, "recovery_exponent": model.recovery_exponent}
        )
    scored_decl = scored_declarations(declarations, scores) if scored is None else scored
    frame = ranked(
        scores, declarations, outcomes, spec, params.split,
        scored=scored_decl, ratio_declarations=ratio_declarations,
    )  # fmt: skip
    capacity = effective_capacity(spec, len(frame))
    area_spec = spec.model_copy(update={"capacity": capacity})
    hits = profile_hits(scored_decl, profile, spec.name)
    return frame, capacity, select_candidates(frame, area_spec, params.select, hits=hits)


def list_scores(
    root: Path, spec: AreaSpec, model: Any, features: dict[str, pd.DataFrame] | None = None
) -> pd.DataFrame:
    """The scored period as ``model`` (the champion, :func:`riskml.registry.list_model`) scores
    it: ``data/scores/<area>/`` (the evaluate stage's, scored by ``models/<area>/``) with
    ``score`` and ``expected_recovery`` recomputed by ``model`` when it is another model (a kept
    champion), and ``model_version`` naming it. ``features``: a dict caching the features of
    the scored months (the model's columns only, read from the catalog's features when first
    needed)."""
    from riskml import io
    from riskml.io import read_dataset, read_partitioned
    from riskml.registry import local_registration

    catalog = Catalog(root)
    scores = read_dataset(catalog.scores(spec.name))
    trained = local_registration(root, spec.name).get("content_hash")
    if trained != model.content_hash():
        if features is None:
            features = {}
        # the scored months' rows, the model's columns (kept for the next model of the same
        # columns: an area's champion and challenger)
        months = sorted(io.month_labels(scores["accepted_date"]).unique())
        columns = [*KEY, *model.feature_names_]
        cached = (tuple(months), tuple(columns))
        if cached not in features:
            features.clear()
            features[cached] = read_partitioned(catalog.features, months=months, columns=columns)
        rows = scores[KEY].merge(
            features[cached].astype({"declaration_id": scores["declaration_id"].dtype}),
            on=KEY,
            how="left",
            validate="one_to_one",
        )
        proba = model.predict_proba(rows)
        scores["score"] = proba
        if model.rank_by == "expected_recovery" and model.recovery_ is not None:
            scores["expected_recovery"] = model.rank_key(rows, proba)["expected_recovery"].values
        elif "expected_recovery" in scores.columns:
            scores = scores.drop(columns="expected_recovery")
    scores["model_version"] = str(model.registration)
    return scores


#: Columns of the scored period file (every item of the period as the champion ranks it).
PERIOD_SCORE_COLUMNS = [*KEY, "score", "expected_recovery", "rank_key", "model_version"]
#: Says, in a shadow list's rows, that the list is not for audit.
SHADOW_NOTE = (
    "shadow list: drawn by the challenger that lost its promotion, for comparison only; "
    "audit from the champion's list"
)


def _shadow_model(root: Path, area: str, champion: Any) -> Any | None:
    """The area's trained model (``models/<area>/``) when it is not the champion (it lost its
    promotion), else ``None``."""
    from riskml.registry import load_trained

    trained = load_trained(root, area)
    if trained.content_hash() == champion.content_hash() or trained.registration is None:
        return None
    return trained


def _as_listed(selected: pd.DataFrame, area: str, model: Any) -> pd.DataFrame:
    """``selected`` with what every list row says: its area, the model version, the rank key in
    the model's words (``ranked_by``); no expected recovery for an area ranked by probability
    (its findings recover no duty: no "expected recovery 0")."""
    out = selected.assign(
        area=area, model_version=str(model.registration), ranked_by=model.rank_words
    )
    if model.rank_source == KEY_PROBABILITY:
        out["expected_recovery"] = np.nan
    return out


def run_select(root: Path, params: Params, specs: dict[str, AreaSpec]) -> dict[str, Any]:
    """Stage ``riskml select``: each area's picks by its champion (the model
    ``metrics/promotion.json`` names, :func:`riskml.registry.list_model`), drawn by
    :func:`draw_area` on :func:`list_scores`: ``data/selection/picks/<area>.parquet`` (what
    ``explain`` and ``lists`` read) and ``data/selection/scores/<area>.parquet`` (every item of
    the period as the champion scores and ranks it: the service's pages and the importer-period
    list). After a promotion that kept the champion, the challenger's picks are written beside
    them as a shadow (``<area>.shadow.parquet``)."""
    from riskml.io import months_before, read_dataset, write_parquet
    from riskml.registry import list_model
    from riskml.train import split_trained
    from riskml.watchlists import load_profile

    specs, skipped = split_trained(root, specs)  # areas the train stage skipped: no list
    for area, record in skipped.items():
        log.info("select %s %s", area, record["reason"])
    catalog = Catalog(root)
    # the fallback key's findings known before the period (ranking.recovery_ratio): outcomes of
    # items accepted before it, stored by their items' acceptance months
    outcomes = read_dataset(
        catalog.outcomes,
        [*KEY, "offence_found", "risk_area", "result_date", "additional_duty"],
        months=months_before(catalog.outcomes, params.split.test_start),
    )
    # of the declarations, the rows select joins, not the history's every column: the findings'
    # duties paid (the ratio) and the scored months' declarations (read once for the areas)
    ratio_declarations = finding_declarations(catalog.declarations, outcomes)
    read_months: dict[Any, pd.DataFrame] = {}  # the scored months' declarations, last read
    profile = load_profile(root / params.select.watchlists)
    features: dict[Any, pd.DataFrame] = {}  # read only when a model must rescore
    out: dict[str, Any] = {"picks": {}, "rank_key": {}, "models": {}, "shadow": {}}
    for area, spec in specs.items():
        model = list_model(root, area)
        scores = list_scores(root, spec, model, features)
        declarations, scored = period_declarations(catalog.declarations, scores, read_months)
        frame, capacity, selected = draw_area(
            scores, declarations, outcomes, spec, params, profile, model,
            scored=scored, ratio_declarations=ratio_declarations,
        )  # fmt: skip
        period = frame.assign(model_version=str(model.registration))
        keep = [c for c in PERIOD_SCORE_COLUMNS if c in period.columns]
        write_parquet(period[keep], catalog.scored_period(area))
        picks = _as_listed(selected, area, model)
        picks.attrs = {}
        write_parquet(picks, catalog.picks(area))
        out["picks"][area] = len(picks)
        out["rank_key"][area] = frame.attrs.get("rank_source", KEY_PROBABILITY)
        out["models"][area] = str(model.registration)
        shadow_path = catalog.picks(area, shadow=True)
        challenger = _shadow_model(root, area, model)
        if challenger is None:
            shadow_path.unlink(missing_ok=True)
            continue
        shadow_scores = list_scores(root, spec, challenger, features)
        declarations, scored = period_declarations(catalog.declarations, shadow_scores, read_months)
        _, _, shadow = draw_area(
            shadow_scores, declarations, outcomes, spec, params, profile, challenger,
            scored=scored, ratio_declarations=ratio_declarations,
        )  # fmt: skip
        shadow = _as_listed(shadow, area, challenger)
        shadow.attrs = {}
        write_parquet(shadow, shadow_path)
        out["shadow"][area] = str(challenger.registration)
    return out


def shadow_list(picks: pd.DataFrame, explanations: pd.DataFrame) -> pd.DataFrame:
    """A shadow list's rows: the challenger's picks with the challenger's reasons (the
    ``explain`` stage's, by the same code as the champion's), each cell opening with
    :data:`SHADOW_NOTE` so that no row can pass for an audit candidate."""
    out = picks.copy()
    found = pd.Series(attach_reasons(out, explanations), index=out.index, dtype="string")
    by = out["model_version"].astype("string")
    out["reasons"] = (SHADOW_NOTE + ". Reasons by " + by + ": " + found).where(
        found != "", SHADOW_NOTE
    )
    out["reasons_share"] = reasons_share(out, explanations)
    return out


def period_data_quality(
    quarantine: pd.DataFrame, areas: list[str], *, start: Any, end: Any
) -> pd.DataFrame:
    """The data-quality list (:func:`riskml.contract.data_quality_list`) of the declarations of
    the ranked period ``[start, end)``, and of those whose date cannot be read (their period is
    unknown): each with its reasons, whether it was scored and the areas it was not scored for.
    """
    quality = data_quality_list(quarantine, areas)
    dates = pd.to_datetime(quality["accepted_date"], errors="coerce", format="%Y-%m-%d")
    inside = (dates >= pd.Timestamp(start)) & (dates < pd.Timestamp(end))
    return quality[(inside | dates.isna()).to_numpy()].reset_index(drop=True)


def run_lists(root: Path, params: Params, specs: dict[str, AreaSpec]) -> dict[str, Any]:
    """Stage ``riskml lists``: the candidate lists from the picks ``select`` made and the
    reasons ``explain`` wrote (every row names the model version and alias):
    ``data/candidates/<area>.csv`` for every area, ``all_areas.csv`` (one row per declaration),
    ``importer_periods.csv`` (when ``select.aggregate_period`` is set) and ``candidates.xlsx``
    (one sheet per area, the combined list, importer periods, a summary, the data-quality
    list) and ``data_quality.csv`` (the ranked period's declarations that failed a data check:
    reasons, scored or not, areas not scored). A shadow list (the
    challenger that lost its promotion) is written as ``<area>.shadow.csv`` with the
    challenger's reasons (:func:`shadow_list`), each row saying it is a shadow; it enters no
    other list, no workbook sheet and no page of the service."""
    from riskml.io import read_dataset, read_parquet, write_csv
    from riskml.train import split_trained

    specs, skipped = split_trained(root, specs)  # areas the train stage skipped: no list
    for area, record in skipped.items():
        log.info("lists %s %s", area, record["reason"])
    catalog = Catalog(root)
    declarations = read_dataset(
        catalog.declarations, columns=[*KEY, "importer_id", "accepted_date"]
    )
    lists: dict[str, pd.DataFrame] = {}
    frames: dict[str, pd.DataFrame] = {}
    capacities: dict[str, int] = {}
    period_ids: set[str] = set()
    shadows: dict[str, str] = {}
    for area, spec in specs.items():
        picks = read_parquet(catalog.picks(area))
        explanations = read_parquet(catalog.explanations(area))
        picks["reasons"] = attach_reasons(picks, explanations)
        picks["reasons_share"] = reasons_share(picks, explanations)
        lists[area] = picks.reindex(columns=CANDIDATE_COLUMNS)
        period = read_parquet(catalog.scored_period(area))
        capacities[area] = effective_capacity(spec, len(period))
        frames[area] = period.merge(
            declarations[[*KEY, "importer_id", "accepted_date"]], on=KEY, how="left"
        )
        period_ids.update(period["declaration_id"].astype(str))
        write_csv(lists[area], catalog.candidate_list(area))
        shadow_csv = catalog.candidate_list(area, shadow=True)
        if catalog.picks(area, shadow=True).exists():
            shadow = shadow_list(
                read_parquet(catalog.picks(area, shadow=True)),
                read_parquet(catalog.explanations(area, shadow=True)),
            )
            write_csv(shadow.reindex(columns=CANDIDATE_COLUMNS), shadow_csv)
            shadows[area] = str(shadow["model_version"].iloc[0]) if len(shadow) else ""
        else:
            shadow_csv.unlink(missing_ok=True)
    combined = combine_areas(
        lists,
        overall_capacity=params.select.overall_capacity,
        n_declarations=len(period_ids),
        random_share=params.select.random_share,
    )
    write_csv(combined, catalog.all_areas)
    quality = period_data_quality(
        read_parquet(catalog.quarantine),
        list(specs),
        start=params.split.test_start,
        end=params.split.test_end,
    )
    write_csv(quality, catalog.data_quality)
    summary_table = selection_summary(lists, capacities)
    sheets = {"Summary": summary_table, "All areas": combined, **lists, "Data quality": quality}
    if params.select.aggregate_period:
        periods = importer_periods(
            frames,
            period=params.select.aggregate_period,
            top_items=params.select.aggregate_top_items,
            limit=max(capacities.values(), default=0),
        )
        write_csv(periods, catalog.importer_periods)
        sheets["Importer periods"] = periods
    else:
        catalog.importer_periods.unlink(missing_ok=True)
    write_xlsx(sheets, catalog.workbook)
    return {
        "candidates": {a: len(f) for a, f in lists.items()},
        "declarations": len(combined),
        "models": {a: str(f["model_version"].iloc[0]) if len(f) else "" for a, f in lists.items()},
        "shadow": shadows,
        "data_quality": {
            "scored_with_problems": int(quality["scored"].sum()),
            "not_scored": int((~quality["scored"]).sum()),
        },
    } | {a: r["reason"] for a, r in skipped.items()}
