"""What the service reads from the pipeline's outputs: candidate lists, declarations, scores,
explanations; pure look-ups on DataFrames loaded once at start-up."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskml import io
from riskml.catalog import Catalog
from riskml.contract import DATA_QUALITY_COLUMNS, KEY, RiskmlError
from riskml.reasons import coverage_sentence, topic_title, waterfall_steps
from riskml.select import CANDIDATE_COLUMNS

SORT_KEYS = {
    "rank": ("rank", True),
    "score": ("score", False),
    "expected_recovery": ("expected_recovery", False),
    "accepted_date": ("accepted_date", False),
}
SELECTION_KINDS = ("rule", "watchlist", "model", "random_control")
ITEM_FIELDS = [
    "item_no",
    "accepted_date",
    "office",
    "procedure",
    "transport_mode",
    "importer_id",
    "declarant_id",
    "supplier_id",
    "origin_country",
    "departure_country",
    "hs_code",
    "description",
    "quantity",
    "quantity_unit",
    "gross_mass_kg",
    "net_mass_kg",
    "cif_value",
    "duties_paid",
    "preference_claim",
]


#: Cases kept rendered (:meth:`ServiceData.case_json`); a few KB each.
CASE_CACHE = 4096


def render_json(content: Any) -> str:
    """JSON text as Starlette's ``JSONResponse`` renders it (compact, UTF-8, no NaN)."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


@dataclass
class CandidateQuery:
    """Filters, sorting and paging of the candidate list."""

    area: str | None = None
    office: str | None = None
    kind: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    sort: str = "rank"
    page: int = 1
    page_size: int = 50


def read_data_quality(root: Path) -> pd.DataFrame:
    """The ranked period's data-quality list the lists stage wrote (declarations that failed a
    data check: reasons, scored or not, areas not scored); empty before a run that wrote it."""
    path = Catalog(root).data_quality
    if not path.exists():
        return pd.DataFrame(columns=DATA_QUALITY_COLUMNS).astype({"scored": bool})
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    frame = frame.reindex(columns=DATA_QUALITY_COLUMNS, fill_value="")
    return frame.assign(scored=frame["scored"].str.lower() == "true")


class ServiceData:
    """The pipeline's outputs in memory (read once)."""

    def __init__(self, root: Path, areas: list[str], *, reference_months: int = 12) -> None:

        self.root, self.areas, self.reference_months = root, areas, reference_months
        catalog = Catalog(root)
        lists = []
        for area in areas:
            path = catalog.candidate_list(area)
            if not path.exists():
                raise RiskmlError(f"{path}: not found; run the pipeline (`dvc repro`) first")
            frame = pd.read_csv(path, encoding="utf-8-sig", dtype={"hs_code": str})
            lists.append(frame.reindex(columns=CANDIDATE_COLUMNS))
        cands = pd.concat(lists, ignore_index=True)
        cands["accepted_date"] = pd.to_datetime(cands["accepted_date"])
        for col in ("fired", "flags", "reasons", "ranked_by", "model_version"):
            cands[col] = cands[col].fillna("").astype(str)
        self.candidates = cands
        #: each area's rank key in words, as the list's model states it
        self.ranked_by = {
            str(a): str(g.iloc[0]) for a, g in cands.groupby("area")["ranked_by"] if g.iloc[0]
        }
        # pre-computed for fast queries: column arrays, one order per sort key, JSON-ready rows
        self._cols = {
            c: cands[c].astype(str).to_numpy() for c in ("area", "office", "selection_kind")
        }
        self._dates_c = cands["accepted_date"].to_numpy()
        self._orders = {
            key: cands.sort_values(
                [col, "area", "rank"], ascending=[asc, True, True], kind="stable"
            ).index.to_numpy()
            for key, (col, asc) in SORT_KEYS.items()
        }
        shown = cands.assign(accepted_date=cands["accepted_date"].dt.date.astype(str))
        self._records = json.loads(shown.to_json(orient="records"))
        self._record_json = [render_json(r) for r in self._records]  # rendered once
        decl = io.read_dataset(catalog.declarations)
        self.declarations = decl.sort_values(KEY, kind="stable").reset_index(drop=True)
        self._decl_ids = self.declarations["declaration_id"].astype(str).to_numpy()
        scores = []
        for area in areas:
            # the champion's scores (the lists' model), else the evaluated model's
            path = catalog.scored_period(area)
            if not path.exists():
                path = catalog.scores(area)
            if path.exists():
                s = io.read_dataset(path, columns=[*KEY, "score"])
                scores.append(s.assign(area=area))
        self.scores = (
            pd.concat(scores, ignore_index=True).set_index("declaration_id").sort_index()
            if scores
            else pd.DataFrame(columns=["item_no", "score", "area"])
        )
        expl = []
        for area in areas:
            path = catalog.explanations(area)
            if path.exists():
                expl.append(pd.read_parquet(path).assign(area=area))
        self.explanations = (
            pd.concat(expl, ignore_index=True).set_index("declaration_id").sort_index()
            if expl
            else pd.DataFrame()
        )
        self.data_quality = read_data_quality(root)
        outcomes = io.read_dataset(catalog.outcomes)
        self.outcomes = outcomes
        by_importer = outcomes[[*KEY, "result_date", "offence_found"]].merge(
            self.declarations[[*KEY, "importer_id"]], on=KEY, how="inner"
        )
        self._imp_outcomes = {
            k: (g["result_date"].to_numpy(), g["offence_found"].astype(bool).to_numpy())
            for k, g in by_importer.groupby("importer_id", sort=False)
        }
        self.offices = sorted(cands["office"].dropna().astype(str).unique())
        hs6 = self.declarations["hs_code"].astype(str).str[:6]
        self._peer_key = (hs6 + "|" + self.declarations["origin_country"].astype(str)).to_numpy()
        net = (
            self.declarations["net_mass_kg"]
            .astype("float64")
            .fillna(self.declarations["gross_mass_kg"].astype("float64"))
        )
        self._unit_value = (self.declarations["cif_value"].astype("float64") / net).to_numpy()
        self._dates = self.declarations["accepted_date"].to_numpy()
        self._reference = self._feature_reference(catalog.features)
        self._index_for_cases()
        self.case_json = lru_cache(maxsize=CASE_CACHE)(self._case_json)

    def _case_json(self, declaration_id: str) -> str | None:
        """:meth:`case` as compact JSON text (as a JSON response renders it), kept for the
        :data:`CASE_CACHE` cases asked most recently (``case_json``): the stored outputs do not
        change while the service runs, so a case is built once, not on every request."""
        case = self.case(declaration_id)
        return None if case is None else render_json(case)

    def _feature_reference(self, path: Path) -> dict[str, np.ndarray] | None:
        """The reference price each stored item's features were computed against (peer group,
        count, median unit value per kg, the item's own), aligned with the declarations: the
        case page shows the same peers as the unit-value reason. None without the features."""
        cols = ["ctx_uv_kg", "ctx_uv_ref_median", "ctx_uv_ref_count", "ctx_uv_ref_group"]
        names = io.dataset_columns(path)
        if not set(cols) <= set(names):
            return None
        extra = [c for c in ("ctx_uv_ref_level", "ctx_ref_months") if c in names]
        ref = io.read_dataset(path, columns=[*KEY, *cols, *extra])
        ref = self.declarations[KEY].merge(ref, on=KEY, how="left", validate="one_to_one")
        return {
            c: ref[c].to_numpy(object if c in ("ctx_uv_ref_group", "ctx_uv_ref_level") else None)
            for c in [*cols, *extra]
        }

    def _index_for_cases(self) -> None:
        """Look-ups a case needs, built once so that one case costs a few searches, not scans
        of the whole history: each peer group's rows sorted by date, and the scores, candidate
        entries and reasons grouped by declaration."""
        codes, _ = pd.factorize(self._peer_key)
        order = np.lexsort((self._dates, codes))
        self._peer_code = codes
        self._peer_sorted_code = codes[order]
        self._peer_sorted_dates = self._dates[order]
        self._peer_sorted_uv = self._unit_value[order]
        s = self.scores.reset_index()
        self._score_ids = s["declaration_id"].astype(str).to_numpy()
        self._score_cols = (
            s["area"].to_numpy(object),
            s["item_no"].to_numpy(),
            s["score"].to_numpy(np.float64),
        )
        entries = self.candidates[
            [
                "declaration_id",
                "area",
                "rank",
                "selection_kind",
                "item_no",
                "score",
                "fired",
                "flags",
            ]
        ]
        self._cand_by_id: dict[str, list[dict[str, Any]]] = {}
        for rec in entries.to_dict("records"):
            key = str(rec.pop("declaration_id"))
            self._cand_by_id.setdefault(key, []).append({k: _plain(v) for k, v in rec.items()})
        self._reasons_by_id: dict[str, list[dict[str, Any]]] = {}
        if len(self.explanations):
            e = self.explanations.reset_index().sort_values(
                ["declaration_id", "area", "item_no", "rank"], kind="stable"
            )
            for rec in e.to_dict("records"):
                self._reasons_by_id.setdefault(str(rec["declaration_id"]), []).append(
                    {
                        "area": rec["area"],
                        "item_no": int(rec["item_no"]),
                        "rank": int(rec["rank"]),
                        "direction": _plain(rec["direction"]),
                        "group": _plain(rec["group"]),  # the reason's topic
                        "about": topic_title(str(rec["group"])) if _plain(rec["group"]) else None,
                        "feature": _plain(rec["feature"]),  # none for a random control
                        "contribution": _plain(float(rec["contribution"])),
                        "sentence": _plain(rec["sentence"]),
                        "base_logodds": _plain(float(rec.get("base_logodds", np.nan))),
                        "total_logodds": _plain(float(rec.get("total_logodds", np.nan))),
                    }
                )

    # --- candidates -----------------------------------------------------------------------

    def query(self, q: CandidateQuery) -> tuple[int, pd.DataFrame]:
        """(total matching, the requested page) of the candidate list."""
        c = self.candidates
        mask = np.ones(len(c), dtype=bool)
        if q.area:
            mask &= (c["area"] == q.area).to_numpy()
        if q.office:
            mask &= (c["office"] == q.office).to_numpy()
        if q.kind:
            mask &= (c["selection_kind"] == q.kind).to_numpy()
        if q.date_from:
            mask &= (c["accepted_date"] >= pd.Timestamp(q.date_from)).to_numpy()
        if q.date_to:
            mask &= (c["accepted_date"] <= pd.Timestamp(q.date_to)).to_numpy()
        hit = c[mask]
        col, ascending = SORT_KEYS[q.sort]
        hit = hit.sort_values(
            [col, "area", "rank"], ascending=[ascending, True, True], kind="stable"
        )
        start = (q.page - 1) * q.page_size
        return len(hit), hit.iloc[start : start + q.page_size]

    def query_json(self, q: CandidateQuery) -> str:
        """``{"total", "page", "page_size", "items"}`` of :meth:`query_records` as JSON text (as
        a JSON response renders it), from the rows rendered once at start-up."""
        total, rows = self._query_rows(q)
        head = render_json({"total": total, "page": q.page, "page_size": q.page_size})
        return head[:-1] + ',"items":[' + ",".join(self._record_json[i] for i in rows) + "]}"

    def query_records(self, q: CandidateQuery) -> tuple[int, list[dict[str, Any]]]:
        """Like :meth:`query`, as JSON-ready rows (pre-computed; no DataFrame per request)."""
        total, rows = self._query_rows(q)
        return total, [self._records[i] for i in rows]

    def _query_rows(self, q: CandidateQuery) -> tuple[int, np.ndarray]:
        """(total matching, positions of the requested page's rows) of a candidate query."""
        order = self._orders[q.sort]
        mask = np.ones(len(order), dtype=bool)
        for value, col in ((q.area, "area"), (q.office, "office"), (q.kind, "selection_kind")):
            if value:
                mask &= self._cols[col][order] == value
        if q.date_from:
            mask &= self._dates_c[order] >= np.datetime64(q.date_from)
        if q.date_to:
            mask &= self._dates_c[order] <= np.datetime64(q.date_to)
        hit = order[mask]
        start = (q.page - 1) * q.page_size
        return len(hit), hit[start : start + q.page_size]

    def has_item(self, declaration_id: str, item_no: int) -> bool:
        """True when the declaration item is stored."""
        return self.accepted_date(declaration_id, item_no) is not None

    def accepted_date(self, declaration_id: str, item_no: int) -> date | None:
        """The acceptance date of a stored declaration item (None when it is not stored)."""
        rows = self._rows(declaration_id)
        hit = rows.loc[rows["item_no"] == item_no, "accepted_date"]
        return None if hit.empty else pd.Timestamp(hit.iloc[0]).date()

    def _rows(self, declaration_id: str) -> pd.DataFrame:
        lo = np.searchsorted(self._decl_ids, declaration_id, side="left")
        hi = np.searchsorted(self._decl_ids, declaration_id, side="right")
        return self.declarations.iloc[lo:hi]

    # --- one declaration ------------------------------------------------------------------

    def case(self, declaration_id: str) -> dict[str, Any] | None:
        """Items, scores per area, candidate entries, reasons (with contributions for the
        waterfall), peer facts and past controls of one declaration; None when unknown."""
        rows = self._rows(declaration_id)
        if rows.empty:
            return None
        items = [
            {k: _plain(r.get(k)) for k in ITEM_FIELDS if k in rows.columns}
            for r in rows.to_dict("records")
        ]
        scores: dict[str, dict[str, float]] = {}
        lo = np.searchsorted(self._score_ids, declaration_id, side="left")
        hi = np.searchsorted(self._score_ids, declaration_id, side="right")
        area_col, item_col, score_col = self._score_cols
        for j in range(lo, hi):
            scores.setdefault(area_col[j], {})[str(item_col[j])] = _plain(float(score_col[j]))
        reasons = [dict(r) for r in self._reasons_by_id.get(declaration_id, [])]
        return {
            "declaration_id": declaration_id,
            "items": items,
            "scores": scores,
            "candidates": [dict(r) for r in self._cand_by_id.get(declaration_id, [])],
            "reasons": reasons,
            "waterfalls": waterfalls(reasons),
            "peers": [self._peers(int(i), rows) for i in range(len(rows))],
        }

    def _peers(self, i: int, rows: pd.DataFrame) -> dict[str, Any]:
        """Reference facts of item ``i``: the peers its unit-value features were computed
        against (:meth:`_feature_reference`), else recomputed (:meth:`_own_peers`); and the
        importer's earlier controls and findings."""
        pos = rows.index[i]
        if self._reference is None:
            return self._own_peers(i, rows)
        ref = self._reference
        row = rows.iloc[i]
        level = ref.get("ctx_uv_ref_level")
        group = _plain(ref["ctx_uv_ref_group"][pos])
        count = _plain(ref["ctx_uv_ref_count"][pos])
        return {
            "item_no": int(row["item_no"]),
            "peer_group": group or "no reference price (too few comparable declarations)",
            "peer_level": _plain(level[pos]) if level is not None else None,
            "peer_declarations": int(count) if count is not None else 0,
            "peer_median_unit_value": _plain(float(ref["ctx_uv_ref_median"][pos])),
            "unit_value": _plain(float(ref["ctx_uv_kg"][pos])),
            "reference_months": _plain(ref["ctx_ref_months"][pos])
            if "ctx_ref_months" in ref
            else self.reference_months,
            "source": "features",
            **self._importer_facts(row, self._dates[pos]),
        }

    def _importer_facts(self, row: pd.Series, when: Any) -> dict[str, Any]:
        importer = row["importer_id"]
        empty = (np.array([], "datetime64[ns]"), np.array([], bool))
        dates, found = self._imp_outcomes.get(importer, empty)
        before = dates < when
        return {
            "importer_id": str(importer),
            "importer_controls": int(before.sum()),
            "importer_findings": int(found[before].sum()),
        }

    def _own_peers(self, i: int, rows: pd.DataFrame) -> dict[str, Any]:
        """Reference facts of item ``i``: declarations of the same HS6 and origin in the
        reference months before it (count, median and this item's unit value per kg), and the
        importer's earlier controls and findings."""
        pos = rows.index[i]
        when = self._dates[pos]
        start = np.datetime64(pd.Timestamp(when) - pd.DateOffset(months=self.reference_months))
        code = self._peer_code[pos]
        g_lo = np.searchsorted(self._peer_sorted_code, code, side="left")
        g_hi = np.searchsorted(self._peer_sorted_code, code, side="right")
        dates = self._peer_sorted_dates[g_lo:g_hi]
        a, b = np.searchsorted(dates, start, side="left"), np.searchsorted(dates, when, "left")
        uv = self._peer_sorted_uv[g_lo + a : g_lo + b]
        n_peers = int(b - a)
        uv = uv[np.isfinite(uv)]
        row = rows.iloc[i]
        return {
            "item_no": int(row["item_no"]),
            "peer_group": f"HS {str(row['hs_code'])[:6]} from {row['origin_country']}",
            "peer_level": "HS6×origin",
            "peer_declarations": n_peers,
            "peer_median_unit_value": _plain(float(np.median(uv)) if len(uv) else None),
            "unit_value": _plain(float(self._unit_value[pos])),
            "reference_months": self.reference_months,
            "source": "recomputed (no features file)",
            **self._importer_facts(row, when),
        }


def waterfalls(reasons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One waterfall per (area, item) with reasons, in the reasons' words: base, each reason,
    "other", score (log-odds; both ends also as probabilities) and the share of the score's
    rise the reasons cover (:func:`riskml.reasons.waterfall_steps`)."""
    by: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in reasons:
        if r["direction"] in ("raises", "lowers") and r.get("base_logodds") is not None:
            by.setdefault((r["area"], r["item_no"]), []).append(r)
    out = []
    for (area, item), rows in by.items():
        fall = waterfall_steps(rows)
        ends = [fall["base"], fall["total"]] + [s["start"] + s["push"] for s in fall["steps"]]
        lo, span = min(ends), (max(ends) - min(ends)) or 1.0
        steps = [
            {k: _plain(v) for k, v in step.items()}
            | {
                "end": _plain(step["start"] + step["push"]),
                # the bar on the waterfall's common scale, as shares of its width
                "left": (min(step["start"], step["start"] + step["push"]) - lo) / span,
                "width": abs(step["push"]) / span,
            }
            for step in fall["steps"]
        ]
        out.append(
            {
                "area": area,
                "item_no": item,
                "base_logodds": fall["base"],
                "base_probability": fall["base_probability"],
                "total_logodds": fall["total"],
                "probability": fall["probability"],
                "share": fall["share"],
                "coverage": coverage_sentence(fall),
                "base_at": (fall["base"] - lo) / span,
                "total_at": (fall["total"] - lo) / span,
                "steps": steps,
            }
        )
    return out


def _plain(v: Any) -> Any:
    """A JSON-friendly scalar (dates as ISO text, NaN as None)."""
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, pd.Timestamp | np.datetime64):
        return pd.Timestamp(v).date().isoformat()
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    return v
