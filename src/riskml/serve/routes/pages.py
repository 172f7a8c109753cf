"""The reviewer pages (server-rendered, Jinja2): sign-in to a server-side session, the
candidate list, a case and, for auditors, the outcome form. Every form carries a CSRF token and
must come from this service's own origin."""

from __future__ import annotations

import secrets
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from riskml.contract import CONTROL_KINDS
from riskml.feedback import PageSession
from riskml.serve.data import SELECTION_KINDS, SORT_KEYS, CandidateQuery
from riskml.serve.deps import WRITE, PageDep, Service, ServiceDep
from riskml.serve.routes.cases import candidate_query
from riskml.serve.routes.outcomes import record
from riskml.serve.schemas import OutcomeIn
from riskml.serve.security import LOGIN_COOKIE, SESSION_COOKIE, csrf_ok

router = APIRouter(include_in_schema=False)


def render(
    request: Request,
    service: Service,
    name: str,
    page: PageSession | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page with what every page shows (who is signed in, the CSRF token of its forms)."""
    base = {
        "who": page.identity if page else None,
        "csrf": page.csrf_token if page else "",
        "currency": service.params.serve.currency,
    }
    return service.templates.TemplateResponse(
        request, name, {**base, **context}, status_code=status
    )


def _signin() -> RedirectResponse:
    return RedirectResponse("/ui/login", status_code=303)


def _forbidden(msg: str) -> HTTPException:
    return HTTPException(403, [{"loc": ["body", "csrf_token"], "msg": msg, "type": "forbidden"}])


@router.get("/")
def index() -> RedirectResponse:
    return RedirectResponse("/ui/candidates", status_code=303)


def _login_page(request: Request, service: Service, error: str | None, status: int) -> Response:
    csrf = secrets.token_urlsafe(32)
    response = render(request, service, "login.html", None, status, error=error, login_csrf=csrf)
    response.set_cookie(
        LOGIN_COOKIE,
        csrf,
        httponly=True,
        samesite="strict",
        secure=service.params.serve.cookie_secure,
        path="/ui/login",
        max_age=3600,
    )
    return response


@router.get("/ui/login", response_class=HTMLResponse)
def login_page(request: Request, service: ServiceDep) -> Response:
    return _login_page(request, service, None, 200)


@router.post("/ui/login")
def login(
    request: Request,
    service: ServiceDep,
    token: Annotated[str, Form(max_length=200)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    if not csrf_ok(request, request.cookies.get(LOGIN_COOKIE), csrf_token):
        raise _forbidden("the sign-in form was not sent from this service; reload it")
    opened = (
        service.store.open_session(token.strip(), hours=service.params.serve.session_hours)
        if token.strip()
        else None
    )
    if opened is None:
        return _login_page(request, service, "Unknown, revoked or expired token.", 401)
    session_id, session = opened
    response = RedirectResponse("/ui/candidates", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        httponly=True,
        samesite="strict",
        secure=service.params.serve.cookie_secure,
        path="/ui",
        max_age=int(service.params.serve.session_hours * 3600),
    )
    response.delete_cookie(LOGIN_COOKIE, path="/ui/login")
    return response


@router.post("/ui/logout")
def logout(
    request: Request,
    service: ServiceDep,
    page: PageDep,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> RedirectResponse:
    if page is None:
        return _signin()
    if not csrf_ok(request, page.csrf_token, csrf_token):
        raise _forbidden("the sign-out form was not sent from this service")
    service.store.close_session(request.cookies.get(SESSION_COOKIE, ""))
    response = _signin()
    response.delete_cookie(SESSION_COOKIE, path="/ui")
    return response


def _date(text: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise HTTPException(
            422, [{"loc": ["query", "date"], "msg": f"not a date: {text!r}; use YYYY-MM-DD"}]
        ) from None


@router.get("/ui/candidates", response_class=HTMLResponse)
def candidates_page(
    request: Request,
    service: ServiceDep,
    page: PageDep,
    area: str = "",
    office: str = "",
    kind: str = "",
    date_from: str = "",
    date_to: str = "",
    sort: str = "rank",
    page_no: Annotated[int, Query(alias="page")] = 1,
) -> Response:
    if page is None:
        return _signin()
    size = service.params.serve.page_size
    try:
        q = candidate_query(
            service,
            area,
            office,
            kind,
            _date(date_from),
            _date(date_to),
            sort,
            min(max(page_no, 1), 1_000_000),
            size,
        )
        error = None
    except HTTPException as exc:
        q, error = CandidateQuery(page_size=size), exc.detail[0]["msg"]
    total, rows = service.data.query(q)
    records = rows.to_dict("records")
    recorded = service.store.declarations_with_outcomes([r["declaration_id"] for r in records])
    filters = {
        "area": area,
        "office": office,
        "kind": kind,
        "date_from": date_from,
        "date_to": date_to,
    }
    return render(
        request,
        service,
        "candidates.html",
        page,
        rows=records,
        recorded=recorded,
        total=total,
        q=q,
        filters=filters,
        areas=service.areas,
        offices=service.data.offices,
        kinds=SELECTION_KINDS,
        sorts=list(SORT_KEYS),
        pages=max(1, -(-total // size)),
        error=error,
        ranking=ranking_notes(service),
    )


@router.get("/ui/data-quality", response_class=HTMLResponse)
def data_quality_page(request: Request, service: ServiceDep, page: PageDep) -> Response:
    """The declarations of the ranked period that failed a data check: each with its reasons,
    scored anyway or not, and the areas it could not be scored for."""
    if page is None:
        return _signin()
    rows = service.data.data_quality
    return render(
        request,
        service,
        "data_quality.html",
        page,
        rows=rows.to_dict("records"),
        not_scored=int((~rows["scored"]).sum()),
    )


def ranking_notes(service: Service) -> dict[str, str]:
    """How each area's list is ordered, in the words of its key as the model that drew the list
    states it (the lists' ``ranked_by``, from :func:`riskml.ranking.rank_key_words`): not
    "expected recovery" when the key is probability × (predicted recovered duty)^0.22."""
    from riskml.ranking import rank_key_words

    words = service.data.ranked_by
    return {
        area: words.get(area) or rank_key_words(spec.rank_by, spec.recovery_exponent)
        for area, spec in service.specs.items()
    }


def case_page_response(
    request: Request,
    service: Service,
    page: PageSession,
    declaration_id: str,
    *,
    status: int = 200,
    **extra: Any,
) -> Response:
    """The case page of one declaration (404 page when unknown)."""
    case = service.data.case(declaration_id)
    if case is None:
        return render(request, service, "missing.html", page, 404, declaration_id=declaration_id)
    default_area = case["candidates"][0]["area"] if case["candidates"] else service.areas[0]
    context = {
        "case": case,
        "areas": service.areas,
        "default_area": extra.pop("form_area", None) or default_area,
        "control_kinds": CONTROL_KINDS,
        "detectable": {a: s.detectable_by for a, s in service.specs.items()},
        "recorded": service.store.outcomes_for(declaration_id),
        "form_error": None,
        "confirmation": None,
        "today": date.today().isoformat(),
        **extra,
    }
    return render(request, service, "case.html", page, status, **context)


@router.get("/ui/cases/{declaration_id}", response_class=HTMLResponse)
def case_page(
    request: Request,
    declaration_id: str,
    service: ServiceDep,
    page: PageDep,
    recorded: int | None = None,
) -> Response:
    if page is None:
        return _signin()
    confirmation = None
    if recorded is not None:
        mine = [o for o in service.store.outcomes_for(declaration_id) if o["id"] == recorded]
        if mine:
            o = mine[0]
            confirmation = (
                f"Outcome {o['id']} recorded: item {o['item_no']}, {o['risk_area']}, "
                f"{'offence found' if o['offence_found'] else 'no offence found'}."
                + (
                    " It contradicts an earlier outcome and awaits review."
                    if o["needs_review"]
                    else ""
                )
            )
    return case_page_response(request, service, page, declaration_id, confirmation=confirmation)


@router.post("/ui/cases/{declaration_id}/outcome")
async def outcome_form(
    request: Request, declaration_id: str, service: ServiceDep, page: PageDep
) -> Response:
    if page is None:
        return _signin()
    if page.identity.role not in WRITE:
        raise HTTPException(403, f"role {page.identity.role!r} may not record outcomes")
    form = dict(await request.form())
    if not csrf_ok(request, page.csrf_token, str(form.pop("csrf_token", ""))):
        raise _forbidden("the outcome form was not sent from this service; reload the case")
    form["declaration_id"] = declaration_id
    form["offence_found"] = form.get("offence_found") == "yes"
    for key in ("offence_code", "additional_duty", "quantity_seized", "result_date"):
        if form.get(key) in ("", None):
            form.pop(key, None)
    area = str(form.get("risk_area", ""))
    try:
        outcome = OutcomeIn.model_validate(form)
        rec = record(service, outcome, page.identity)
    except ValidationError as exc:
        msg = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False)
        )
        return case_page_response(
            request, service, page, declaration_id, form_error=msg, status=422, form_area=area
        )
    except HTTPException as exc:
        detail = exc.detail[0]["msg"] if isinstance(exc.detail, list) else str(exc.detail)
        return case_page_response(
            request, service, page, declaration_id, form_error=detail, status=422, form_area=area
        )
    return RedirectResponse(f"/ui/cases/{declaration_id}?recorded={rec.id}", status_code=303)
