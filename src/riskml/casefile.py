"""Case files: self-contained HTML pages an auditor can open offline or print.

One page per candidate list (``index.html``) and one per candidate, rendered with the Jinja2
templates in ``riskml/templates``; images are inlined as base64 so a page needs no other file.
Each page says what was selected and why (reasons with the numbers behind them), the
declaration's fields beside its peer references, the model version and the data snapshot.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
import yaml

from riskml import catalog
from riskml.reasons import coverage_sentence, topic_title, waterfall_steps

#: The features stage output whose hash identifies the data behind a case file.
SNAPSHOT_PATH = catalog.FEATURES

#: How a candidate came onto the list, in words.
KIND_WORDS = {
    "model": "model",
    "rule": "rule profile",
    "watchlist": "watch list",
    "random_control": "random control",
}


@dataclass(frozen=True)
class CaseContext:
    """What every case file of an area's list shares."""

    area: str
    title: str
    capacity: int
    #: the list's rank key in words (:func:`riskml.ranking.rank_key_words`)
    rank_words: str
    random_share: float
    model: Mapping[str, Any]
    snapshot: Mapping[str, Any]
    created: str
    #: the area's findings recover duty (it is ranked by recovery): show the expected recovery
    with_recovery: bool = False


def today() -> str:
    """The date (UTC) printed on case files."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def model_version(mlflow_info: Mapping[str, Any]) -> dict[str, Any]:
    """The model's identity from its registration (:meth:`riskml.registry.Registration.as_dict`):
    registered name, version, aliases, MLflow model id and run id (empty when unknown)."""
    aliases = mlflow_info.get("aliases") or []
    name, version = mlflow_info.get("registered_model", ""), mlflow_info.get("version", "")
    return {
        "name": name,
        "version": str(version),
        "aliases": ", ".join(aliases),
        "model_id": mlflow_info.get("model_id", ""),
        "run_id": mlflow_info.get("run_id", ""),
        "text": f"{name} v{version}" + (f" ({', '.join(aliases)})" if aliases else "")
        if name
        else "unregistered model",
    }


def data_snapshot(root: Path) -> dict[str, str]:
    """Identity of the feature data: the DVC hash of ``data/features`` recorded in ``dvc.lock``,
    else a SHA-256 of its files' contents."""
    lock = root / "dvc.lock"
    if lock.exists():
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        for out in (stages.get("features") or {}).get("outs", []):
            if out.get("path") == SNAPSHOT_PATH and out.get("md5"):
                return {"kind": "DVC md5 (dvc.lock)", "path": SNAPSHOT_PATH, "hash": out["md5"]}
    digest = hashlib.sha256()
    for path in sorted((root / SNAPSHOT_PATH).rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode())
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
    return {"kind": "SHA-256 of the files", "path": SNAPSHOT_PATH, "hash": digest.hexdigest()}


def inline_image(path: Path | None) -> str:
    """A ``data:`` URI of a PNG file (empty string when there is none)."""
    if path is None or not Path(path).exists():
        return ""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _num(value: Any, fmt: str = ",.2f") -> str:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "" if value is None or value is pd.NA else str(value)
    return "" if math.isnan(x) else format(x, fmt)


def _text(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d")
    return str(value)


def peer_table(row: Mapping[str, Any], area: str) -> list[dict[str, str]]:
    """The declaration's fields beside its peer references (rows whose facts are missing are
    left out): unit values against the reference median, duty, the importer's record."""
    g = row.get
    peers = g("ctx_uv_ref_group")
    ref_note = (
        f"median of {_num(g('ctx_uv_ref_count'), '.0f')} declarations of {peers} in the previous "
        f"{_num(g('ctx_ref_months'), '.0f')} months"
        if _text(peers)
        else "no reference: too few comparable declarations"
    )
    unit = _text(g("ctx_quantity_unit")) or "unit"
    lines = [
        ("Accepted", _text(g("accepted_date")), ""),
        ("Office", _text(g("office")), ""),
        ("HS code", _text(g("hs_code")), ""),
        ("Origin", _text(g("origin_country")), ""),
        ("Importer", _text(g("importer_id")), ""),
        ("Declarant", _text(g("declarant_id")), ""),
        ("Customs value (CIF)", _num(g("cif_value")), ""),
        ("Duties paid", _num(g("duties_paid")), ""),
        ("Unit value per kg", _num(g("ctx_uv_kg")), f"{_num(g('ctx_uv_ref_median'))} ({ref_note})"),
        (
            f"Unit value per {unit}",
            _num(g("ctx_uv_q")) if unit != "kg" else "",
            f"{_num(g('ctx_uv_q_ref_median'))} ({ref_note})",
        ),
        (
            "Importer: controls / findings",
            f"{_num(g('imp_n_controls'), '.0f')} / {_num(g('imp_n_find'), '.0f')}",
            "",
        ),
        (
            f"Importer: {area} hit rate",
            _num(g(f"imp_hr_{area}"), ".1%"),
            f"{_num(g(f'ctx_global_hr_{area}'), '.1%')} overall",
        ),
    ]
    return [
        {"field": f, "value": v, "reference": r}
        for f, v, r in lines
        if v.strip(" /") and not r.startswith(" (")
    ]


def how_selected(candidate: Mapping[str, Any], context: CaseContext) -> str:
    """One sentence on how the candidate came onto the list."""
    if candidate["selection_kind"] == "random_control":
        return (
            f"Random control: drawn uniformly from the items the model did not pick "
            f"({context.random_share:.0%} of the list's {context.capacity} places), to measure "
            "compliance without bias. It carries no risk reasons."
        )
    if candidate["selection_kind"] in ("rule", "watchlist"):
        by = "rule profile" if candidate["selection_kind"] == "rule" else "watch list"
        return (
            f"Selected by {by}: {candidate.get('fired') or 'unnamed'} (place "
            f"{int(candidate['rank'])} of {context.capacity}); the model's reasons are shown too."
        )
    return (
        f"Model pick: place {int(candidate['rank'])} of {context.capacity}, ranked by "
        f"{context.rank_words} (at most a fixed number per importer)."
    )


def case_record(
    candidate: Mapping[str, Any],
    reasons: list[Mapping[str, Any]],
    row: Mapping[str, Any],
    image: Path | None,
    context: CaseContext,
) -> dict[str, Any]:
    """Everything a candidate's page shows, as plain values for the templates.

    ``reasons`` are the candidate's rows of the explanations table (as dicts): statements of
    fact (:mod:`riskml.reasons`) with the candidate's base and total log-odds.
    """
    facts = {**row, **candidate}

    def lines(direction: str) -> list[dict[str, str]]:
        picked = sorted(
            (r for r in reasons if r["direction"] == direction), key=lambda r: r["rank"]
        )
        return [
            {
                "sentence": r["sentence"],
                "group": topic_title(_text(r["group"])),
                "contribution": _num(r["contribution"], "+.2f"),
            }
            for r in picked
        ]

    raises = lines("raises")
    notes = [r["sentence"] for r in reasons if r["direction"] == "none"]
    fall = waterfall_steps(reasons)
    return {
        "file": f"{candidate['declaration_id']}-{int(candidate['item_no'])}.html",
        "declaration_id": _text(candidate["declaration_id"]),
        "item_no": int(candidate["item_no"]),
        "rank": int(candidate["rank"]),
        "kind": KIND_WORDS.get(candidate["selection_kind"], str(candidate["selection_kind"])),
        "score": _num(candidate.get("score"), ".3f"),
        "expected_recovery": _num(candidate.get("expected_recovery"), ",.0f")
        if context.with_recovery
        else "",
        "how": how_selected(candidate, context),
        "raises": raises,
        "lowers": lines("lowers"),
        "notes": notes,
        "top_reasons": "; ".join(r["sentence"] for r in raises[:3]) or "; ".join(notes),
        "coverage": coverage_sentence(fall) if fall else "",
        "waterfall": _waterfall_rows(fall),
        "fields": peer_table(facts, context.area),
        "image": inline_image(image),
    }


def _waterfall_rows(fall: Mapping[str, Any]) -> list[dict[str, str]]:
    """The waterfall as table rows: base, each reason, other, score; log-odds with both ends
    also as probabilities."""
    if not fall:
        return []
    rows = [
        {
            "name": "base: the average item",
            "push": "",
            "at": f"{fall['base']:+.2f} (probability {fall['base_probability']:.3f})",
            "kind": "end",
        }
    ]
    for s in fall["steps"]:
        rows.append(
            {
                "name": s["name"],
                "push": f"{s['push']:+.2f}",
                "at": f"{s['start'] + s['push']:+.2f}",
                "kind": s["direction"],
            }
        )
    rows.append(
        {
            "name": "score",
            "push": "",
            "at": f"{fall['total']:+.2f} (probability {fall['probability']:.3f})",
            "kind": "end",
        }
    )
    return rows


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("riskml", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )


def render_case(record: Mapping[str, Any], context: CaseContext) -> str:
    """The HTML page of one candidate."""
    return _environment().get_template("case.html.j2").render(case=record, ctx=asdict(context))


def render_list(records: list[Mapping[str, Any]], context: CaseContext) -> str:
    """The HTML page of an area's candidate list."""
    return _environment().get_template("list.html.j2").render(cases=records, ctx=asdict(context))


def write_case_files(
    selected: pd.DataFrame,
    explanations: pd.DataFrame,
    rows: pd.DataFrame,
    images: Mapping[str, Path],
    context: CaseContext,
    folder: Path,
) -> Path:
    """Write ``index.html`` (the list) and one page per candidate into ``folder`` (emptied of
    old pages first); return the path of ``index.html``.

    ``rows`` are the feature rows of the candidates (with ``declaration_id``/``item_no``).
    """
    from riskml.io import write_text

    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.html"):
        old.unlink()
    by_key: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in explanations.to_dict("records"):
        by_key.setdefault((r["declaration_id"], int(r["item_no"])), []).append(r)
    row_of = {(r["declaration_id"], int(r["item_no"])): r for r in rows.to_dict("records")}
    records = []
    for cand in selected.to_dict("records"):
        key = (cand["declaration_id"], int(cand["item_no"]))
        stem = f"{key[0]}-{key[1]}"
        record = case_record(
            cand,
            by_key.get(key, []),
            row_of.get(key, {}),
            images.get(stem),
            context,
        )
        write_text(render_case(record, context), folder / record["file"])
        records.append(record)
    return write_text(render_list(records, context), folder / "index.html")
