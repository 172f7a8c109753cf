"""FastAPI application: JSON/CSV API with token roles, and server-rendered reviewer pages.

Roles: ``auditor`` reads candidates and cases, scores batches and records outcomes;
``reviewer`` reads only; ``admin`` manages tokens (and reads). Only ``/health`` is anonymous.
The API takes ``Authorization: Bearer <token>``; the pages keep the token in an HttpOnly,
SameSite=Strict cookie after sign-in. The request log names the method, the route template
(never the declaration id in the path, never a query string or token) and the status.
"""

import io
import json
import logging
import threading
import time
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field, ValidationError, field_validator

from riskml.config import AreaSpec, Params
from riskml.contract import CONTROL_KINDS, RiskmlError
from riskml.feedback import FeedbackStore, Identity
from riskml.serve.data import SELECTION_KINDS, SORT_KEYS, CandidateQuery, ServiceData

log = logging.getLogger("riskml.serve")
HERE = Path(__file__).parent
COOKIE = "riskml_session"
READ = ("auditor", "reviewer", "admin")
WRITE = ("auditor",)
ADMIN = ("admin",)


class OutcomeIn(BaseModel):
    """An audit result recorded by an auditor."""

    declaration_id: str = Field(min_length=1, max_length=64)
    item_no: int = Field(ge=1)
    risk_area: str
    offence_found: bool
    offence_code: str | None = Field(None, max_length=32)
    additional_duty: float = Field(0.0, ge=0)
    quantity_seized: float = Field(0.0, ge=0)
    control_kind: str = "pca"
    result_date: date = Field(default_factory=date.today)
    auditor: str = Field(min_length=1, max_length=100)

    @field_validator("control_kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v not in CONTROL_KINDS:
            raise ValueError(f"unknown control kind; use one of {', '.join(CONTROL_KINDS)}")
        return v


class TokenIn(BaseModel):
    """A token to create."""

    name: str = Field(min_length=1, max_length=100)
    role: Literal["auditor", "reviewer", "admin"]


def _error(status: int, field: str, msg: str) -> HTTPException:
    return HTTPException(status_code=status, detail=[{"loc": field.split("."), "msg": msg}])


def create_app(
    root: Path,
    params: Params,
    specs: dict[str, AreaSpec],
    *,
    store: FeedbackStore,
    data: ServiceData | None = None,
    scorer: Any = None,
    warm: bool = False,
) -> FastAPI:
    """The service on the outputs under ``root``; ``scorer`` (a :class:`riskml.score.Scorer`)
    is built on the first ``POST /score`` when not given, or at start in a background thread
    with ``warm`` (``riskml serve``)."""
    areas = list(specs)
    data = data or ServiceData(root, areas, reference_months=params.features.reference_months)
    state: dict[str, Any] = {"scorer": scorer}

    def _scorer() -> Any:
        """The scorer, built on the service's history when first needed."""
        if state["scorer"] is None:
            from riskml.score import Scorer

            state["scorer"] = Scorer(
                root, params, specs, history=(data.declarations, data.outcomes)
            )
        return state["scorer"]

    if warm:
        # build the feature store and load the champions now, not on the first request
        threading.Thread(target=_scorer().warm, daemon=True).start()
    max_batch, page_size = params.serve.max_batch, params.serve.page_size
    app = FastAPI(
        title="riskml audit service",
        description="Candidate lists, cases, scoring of new declarations and audit outcomes. "
        "Send `Authorization: Bearer <token>` (create one with `riskml tokens create`).",
        version="1",
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")

    @app.middleware("http")
    async def _log_requests(request: Request, call_next):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        log.info(
            "%s %s %s %.1f ms",
            request.method,
            path,
            response.status_code,
            1000 * (time.perf_counter() - started),
        )
        return response

    # --- auth -----------------------------------------------------------------------------

    def _token(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return header[7:].strip() or None
        return request.cookies.get(COOKIE)

    def identity(request: Request) -> Identity:
        token = _token(request)
        if not token:
            raise HTTPException(401, "a token is required", {"WWW-Authenticate": "Bearer"})
        who = store.identify(token)
        if who is None:
            raise HTTPException(401, "unknown or revoked token", {"WWW-Authenticate": "Bearer"})
        return who

    def role(*allowed: str):  # type: ignore[no-untyped-def]
        def check(who: Annotated[Identity, Depends(identity)]) -> Identity:
            if who.role not in allowed:
                raise HTTPException(
                    403, f"role {who.role!r} may not do this (needs {' or '.join(allowed)})"
                )
            return who

        return check

    Reader = Annotated[Identity, Depends(role(*READ))]
    Writer = Annotated[Identity, Depends(role(*WRITE))]
    Admin = Annotated[Identity, Depends(role(*ADMIN))]

    def _query(
        area: str | None,
        office: str | None,
        kind: str | None,
        date_from: date | None,
        date_to: date | None,
        sort: str,
        page: int,
        size: int,
    ) -> CandidateQuery:
        if area and area not in areas:
            raise _error(422, "query.area", f"unknown area {area!r}; areas: {', '.join(areas)}")
        if kind and kind not in SELECTION_KINDS:
            raise _error(
                422, "query.kind", f"unknown kind; use one of {', '.join(SELECTION_KINDS)}"
            )
        if sort not in SORT_KEYS:
            raise _error(422, "query.sort", f"unknown sort; use one of {', '.join(SORT_KEYS)}")
        return CandidateQuery(
            area or None, office or None, kind or None, date_from, date_to, sort, page, size
        )

    # --- API ------------------------------------------------------------------------------

    @app.get("/health", tags=["service"])
    def health() -> dict[str, Any]:
        """Liveness: anonymous, no data."""
        return {"status": "ok", "areas": areas}

    @app.get("/candidates", tags=["candidates"])
    def candidates(
        who: Reader,
        area: str | None = None,
        office: str | None = None,
        kind: str | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
        sort: str = "rank",
        page: Annotated[int, Query(ge=1)] = 1,
        page_size: Annotated[int, Query(ge=1, le=1000)] = page_size,
        format: Literal["json", "csv"] = "json",
    ) -> Response:
        """The candidate lists (every area, or one), filtered, sorted and paged; JSON or CSV."""
        q = _query(area, office, kind, date_from, date_to, sort, page, page_size)
        if format == "csv":
            _, rows = data.query(q)
            rows = rows.assign(accepted_date=rows["accepted_date"].dt.date.astype(str))
            return Response(rows.to_csv(index=False), media_type="text/csv")
        total, items = data.query_records(q)
        return JSONResponse({"total": total, "page": page, "page_size": page_size, "items": items})

    @app.get("/declarations/{declaration_id}", tags=["cases"])
    def declaration(declaration_id: str, who: Reader) -> dict[str, Any]:
        """One declaration: items, scores per area, candidate entries, reasons, peer facts and
        the outcomes recorded through the service."""
        case = data.case(declaration_id)
        if case is None:
            raise _error(404, "path.declaration_id", "unknown declaration")
        case["recorded_outcomes"] = _jsonable(store.outcomes_for(declaration_id))
        return case

    @app.post("/score", tags=["scoring"])
    async def score(
        request: Request,
        who: Writer,
        format: Annotated[
            Literal["json", "csv"], Query(description="response format: json or csv")
        ] = "json",
        reasons: Annotated[
            bool, Query(description="add reasons_<area>: the risk reasons of selected areas")
        ] = False,
    ) -> Response:
        """Score a batch of new declarations (JSON list of rows, ``{"declarations": [...]}``
        or CSV with a header): one row per item with each area's score and ``selected_areas``
        (the areas whose current list it reaches). Rows breaking the data contract: 422 naming
        row and field, nothing scored. More than ``serve.max_batch`` rows: 413."""
        batch = await _read_batch(request, max_batch)
        sc = _scorer()
        good, quarantine = await run_in_threadpool(sc.check, batch)
        if len(quarantine):
            errors = [
                {"row": int(r["row"]) + 1, "field": r["column"], "msg": r["reason"]}
                for r in quarantine.sort_values(["row", "column"]).head(100).to_dict("records")
            ]
            return JSONResponse(
                {"detail": "rows break the data contract; nothing was scored", "errors": errors},
                status_code=422,
            )
        # scoring is CPU work: run it off the event loop so that other requests are served
        result = await run_in_threadpool(sc.score_checked, good, reasons=reasons)
        wide = result.wide()
        if format == "csv":
            return Response(wide.to_csv(index=False), media_type="text/csv")
        head = {"items": len(wide), "selected": int((wide["selected_areas"] != "").sum())}
        # one serialisation of the rows (to_json), not a round trip through Python objects
        body = json.dumps(head)[:-1] + ', "scores": ' + wide.to_json(orient="records") + "}"
        return Response(body, media_type="application/json")

    @app.post("/outcomes", tags=["outcomes"], status_code=201)
    def add_outcome(outcome: OutcomeIn, who: Writer) -> dict[str, Any]:
        """Record an audit result; the token's name is stored as who recorded it."""
        return {"id": _record(outcome, who), "recorded_by": who.name}

    @app.get("/outcomes", tags=["outcomes"])
    def list_outcomes(who: Reader) -> list[dict[str, Any]]:
        """Every outcome recorded through the service."""
        return _jsonable(store.outcomes().to_dict("records"))

    @app.get("/tokens", tags=["tokens"])
    def list_tokens(who: Admin) -> list[dict[str, Any]]:
        """Token names, roles and dates (never a token or a hash)."""
        return _jsonable(store.list_tokens().to_dict("records"))

    @app.post("/tokens", tags=["tokens"], status_code=201)
    def create_token(body: TokenIn, who: Admin) -> dict[str, str]:
        """Create a token; the plain token is in this response only."""
        try:
            return {
                "name": body.name,
                "role": body.role,
                "token": store.create_token(body.name, body.role),
            }
        except RiskmlError as exc:
            raise _error(409, "body.name", str(exc)) from None

    @app.delete("/tokens/{name}", tags=["tokens"])
    def revoke_token(name: str, who: Admin) -> dict[str, str]:
        """Revoke a token by name."""
        try:
            store.revoke_token(name)
        except RiskmlError as exc:
            raise _error(404, "path.name", str(exc)) from None
        return {"revoked": name}

    def _record(outcome: OutcomeIn, who: Identity) -> int:
        if outcome.risk_area not in areas:
            raise _error(
                422,
                "body.risk_area",
                f"unknown area {outcome.risk_area!r}; areas: {', '.join(areas)}",
            )
        if not data.has_item(outcome.declaration_id, outcome.item_no):
            raise _error(
                422, "body.declaration_id", "unknown declaration item (declaration_id, item_no)"
            )
        return store.add_outcome(recorded_by=who.name, **outcome.model_dump())

    # --- pages ----------------------------------------------------------------------------

    def _page_identity(request: Request) -> Identity | None:
        token = request.cookies.get(COOKIE)
        return store.identify(token) if token else None

    def _signin() -> RedirectResponse:
        return RedirectResponse("/ui/login", status_code=303)

    @app.get("/", include_in_schema=False)
    def index() -> RedirectResponse:
        return RedirectResponse("/ui/candidates", status_code=303)

    @app.get("/ui/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(request, "login.html", {"error": None, "who": None})

    @app.post("/ui/login", include_in_schema=False)
    def login(request: Request, token: Annotated[str, Form()] = "") -> Response:
        who = store.identify(token.strip()) if token.strip() else None
        if who is None:
            return templates.TemplateResponse(
                request,
                "login.html",
                {"error": "Unknown or revoked token.", "who": None},
                status_code=401,
            )
        response = RedirectResponse("/ui/candidates", status_code=303)
        response.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict")
        return response

    @app.post("/ui/logout", include_in_schema=False)
    def logout() -> RedirectResponse:
        response = _signin()
        response.delete_cookie(COOKIE)
        return response

    @app.get("/ui/candidates", response_class=HTMLResponse, include_in_schema=False)
    def candidates_page(
        request: Request,
        area: str = "",
        office: str = "",
        kind: str = "",
        date_from: str = "",
        date_to: str = "",
        sort: str = "rank",
        page: int = 1,
    ) -> Response:
        who = _page_identity(request)
        if who is None:
            return _signin()
        try:
            q = _query(
                area, office, kind, _date(date_from), _date(date_to), sort, max(page, 1), page_size
            )
            error = None
        except HTTPException as exc:
            q, error = CandidateQuery(page_size=page_size), exc.detail[0]["msg"]
        total, rows = data.query(q)
        filters = {
            "area": area,
            "office": office,
            "kind": kind,
            "date_from": date_from,
            "date_to": date_to,
        }
        return templates.TemplateResponse(
            request,
            "candidates.html",
            {
                "who": who,
                "rows": rows.to_dict("records"),
                "total": total,
                "q": q,
                "filters": filters,
                "areas": areas,
                "offices": data.offices,
                "kinds": SELECTION_KINDS,
                "sorts": list(SORT_KEYS),
                "pages": max(1, -(-total // page_size)),
                "error": error,
            },
        )

    def _case_page(
        request: Request, who: Identity, declaration_id: str, *, status: int = 200, **extra: Any
    ) -> Response:
        case = data.case(declaration_id)
        if case is None:
            return templates.TemplateResponse(
                request,
                "missing.html",
                {"who": who, "declaration_id": declaration_id},
                status_code=404,
            )
        contributions = [abs(r["contribution"]) for r in case["reasons"] if r["contribution"]]
        max_abs = max(contributions, default=1.0) or 1.0
        context = {
            "who": who,
            "case": case,
            "max_abs": max_abs,
            "areas": areas,
            "control_kinds": CONTROL_KINDS,
            "recorded": store.outcomes_for(declaration_id),
            "form_error": None,
            "today": date.today().isoformat(),
            **extra,
        }
        return templates.TemplateResponse(request, "case.html", context, status_code=status)

    @app.get("/ui/cases/{declaration_id}", response_class=HTMLResponse, include_in_schema=False)
    def case_page(request: Request, declaration_id: str) -> Response:
        who = _page_identity(request)
        if who is None:
            return _signin()
        return _case_page(request, who, declaration_id)

    @app.post("/ui/cases/{declaration_id}/outcome", include_in_schema=False)
    async def outcome_form(request: Request, declaration_id: str) -> Response:
        who = _page_identity(request)
        if who is None:
            return _signin()
        if who.role not in WRITE:
            raise HTTPException(403, f"role {who.role!r} may not record outcomes")
        form = dict(await request.form())
        form["declaration_id"] = declaration_id
        form["offence_found"] = form.get("offence_found") == "yes"
        for key in ("offence_code", "additional_duty", "quantity_seized", "result_date"):
            if form.get(key) in ("", None):
                form.pop(key, None)
        try:
            outcome = OutcomeIn.model_validate(form)
            _record(outcome, who)
        except ValidationError as exc:
            msg = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            return _case_page(request, who, declaration_id, form_error=msg, status=422)
        except HTTPException as exc:
            return _case_page(
                request, who, declaration_id, form_error=exc.detail[0]["msg"], status=422
            )
        return RedirectResponse(f"/ui/cases/{declaration_id}?recorded=1", status_code=303)

    return app


def _date(text: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _error(422, "query.date", f"not a date: {text!r}; use YYYY-MM-DD") from None


def _jsonable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return json.loads(json.dumps(rows, default=str))


async def _read_batch(request: Request, max_batch: int) -> pd.DataFrame:
    """The request body as a raw declarations table (JSON rows or CSV), or an HTTP error."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if kind in ("text/csv", "application/csv"):
        try:
            frame = pd.read_csv(
                io.BytesIO(body), dtype=str, keep_default_na=False, encoding="utf-8-sig"
            )
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise _error(422, "body", f"not a readable CSV with a header ({exc})") from None
    elif kind in ("application/json", ""):
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _error(422, "body", f"malformed JSON ({exc.__class__.__name__}: {exc})") from None
        if isinstance(payload, dict) and "declarations" in payload:
            payload = payload["declarations"]
        if not isinstance(payload, list) or not all(isinstance(r, dict) for r in payload):
            raise _error(422, "body", "expected a list of declaration rows (JSON objects)")
        frame = pd.DataFrame.from_records(payload)
    else:
        raise _error(415, "content-type", "send application/json or text/csv")
    if len(frame) > max_batch:
        raise _error(413, "body", f"{len(frame):,} rows; at most {max_batch:,} per request")
    if frame.empty:
        raise _error(422, "body", "the batch holds no rows")
    missing = [c for c in ("declaration_id", "item_no") if c not in frame.columns]
    if missing:
        raise _error(422, "body", f"missing required column(s) {missing}")
    return frame
