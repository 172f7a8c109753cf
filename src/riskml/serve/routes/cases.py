"""Candidate lists and declarations (cases), read by every role."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse, Response

from riskml.serve.data import SELECTION_KINDS, SORT_KEYS, CandidateQuery, render_json
from riskml.serve.deps import Reader, Service, ServiceDep
from riskml.serve.schemas import JSON_OR_CSV, READ_ERRORS, _responses, error

router = APIRouter(responses=READ_ERRORS)


def candidate_query(
    service: Service,
    area: str | None,
    office: str | None,
    kind: str | None,
    date_from: date | None,
    date_to: date | None,
    sort: str,
    page: int,
    size: int,
) -> CandidateQuery:
    """The checked filters of a candidate query (422 naming a bad one)."""
    areas = service.areas
    if area and area not in areas:
        raise error(422, "query.area", f"unknown area {area!r}; areas: {', '.join(areas)}")
    if kind and kind not in SELECTION_KINDS:
        raise error(422, "query.kind", f"unknown kind; use one of {', '.join(SELECTION_KINDS)}")
    if sort not in SORT_KEYS:
        raise error(422, "query.sort", f"unknown sort; use one of {', '.join(SORT_KEYS)}")
    return CandidateQuery(
        area or None, office or None, kind or None, date_from, date_to, sort, page, size
    )


@router.get("/candidates", tags=["candidates"], responses=JSON_OR_CSV)
async def candidates(
    who: Reader,
    service: ServiceDep,
    area: Annotated[str | None, Query(max_length=32)] = None,
    office: Annotated[str | None, Query(max_length=64)] = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    date_from: date | None = None,
    date_to: date | None = None,
    sort: Annotated[str, Query(max_length=32)] = "rank",
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int | None, Query(ge=1, le=1000)] = None,
    format: Literal["json", "csv"] = "json",
) -> Response:
    """The candidate lists (every area, or one), filtered, sorted and paged; JSON or CSV."""
    size = page_size or service.params.serve.page_size
    q = candidate_query(service, area, office, kind, date_from, date_to, sort, page, size)
    if format == "csv":
        _, rows = service.data.query(q)
        rows = rows.assign(accepted_date=rows["accepted_date"].dt.date.astype(str))
        return Response(rows.to_csv(index=False), media_type="text/csv")
    return Response(service.data.query_json(q), media_type="application/json")


@router.get("/data-quality", tags=["candidates"], responses=JSON_OR_CSV)
async def data_quality(
    who: Reader, service: ServiceDep, format: Literal["json", "csv"] = "json"
) -> Response:
    """The ranked period's data-quality list: every declaration that failed a data check, with
    its reasons, whether it was scored anyway (a value set missing) and the areas it was not
    scored for. With the candidate lists, every declaration of the period has a score or a
    stated reason."""
    rows = service.data.data_quality
    if format == "csv":
        return Response(rows.to_csv(index=False), media_type="text/csv")
    items = json.loads(rows.to_json(orient="records"))
    return JSONResponse(
        {"total": len(rows), "not_scored": int((~rows["scored"]).sum()), "items": items}
    )


@router.get("/declarations/{declaration_id}", tags=["cases"], responses=_responses(404))
def declaration(
    declaration_id: Annotated[str, Path(max_length=64)], who: Reader, service: ServiceDep
) -> Response:
    """One declaration: items, scores per area, candidate entries, reasons, peer facts and
    the outcomes recorded through the service. A plain function (served from the worker
    threads): on the shared 2-core machine, 20 clients got 46-70 requests/s with it on the
    event loop against 117-171 in threads (bench/service_bench.py, docs/performance.md)."""
    case = service.data.case_json(declaration_id)  # the stored part, rendered once
    if case is None:
        raise error(404, "path.declaration_id", "unknown declaration", "not_found")
    recorded = render_json(jsonable(service.store.outcomes_for(declaration_id)))
    body = case[:-1] + ',"recorded_outcomes":' + recorded + "}"
    return Response(body.encode("utf-8"), media_type="application/json")


def jsonable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with dates and timestamps as text."""
    return json.loads(json.dumps(rows, default=str))
