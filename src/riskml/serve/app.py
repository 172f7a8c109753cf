"""FastAPI application: JSON/CSV API with token roles, and server-rendered reviewer pages.

Roles: ``auditor`` reads candidates and cases, scores batches and records outcomes;
``reviewer`` reads only; ``admin`` manages tokens (and reads). Anonymous: ``/health/live``,
``/health/ready`` and the documentation. The API takes ``Authorization: Bearer <token>``; the
pages sign in to a server-side session (the cookie holds a random session id, never the token;
CSRF token and same-origin check on every form). The guards are in :mod:`riskml.serve.security`,
the dependencies in :mod:`riskml.serve.deps`, one router per resource in
:mod:`riskml.serve.routes`, the model loading in :mod:`riskml.serve.models`.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException

from riskml.config import AreaSpec, Params
from riskml.feedback import FeedbackStore
from riskml.serve.data import ServiceData
from riskml.serve.deps import Service
from riskml.serve.models import ModelSource
from riskml.serve.routes import cases, docs, health, outcomes, pages, scoring, tokens
from riskml.serve.security import Gate, RequestLog, SecurityHeaders, log
from riskml.train import split_trained

HERE = Path(__file__).parent


def create_app(
    root: Path,
    params: Params,
    specs: dict[str, AreaSpec],
    *,
    store: FeedbackStore,
    data: ServiceData | None = None,
    scorer: Any = None,
    warm: bool = False,
    check_models: bool = False,
) -> FastAPI:
    """The service on the outputs under ``root``. The models (each area's champion, through a
    :class:`riskml.score.Scorer`; ``scorer`` when given) load on the first ``POST /score``;
    ``check_models`` loads and probes them now and raises :class:`RiskmlError` naming what is
    missing (``riskml serve``); ``warm`` loads them in a background thread."""
    trained, _ = split_trained(root, specs)  # an area the train stage skipped has no list
    data = data or ServiceData(
        root, list(trained), reference_months=params.features.reference_months
    )
    models = ModelSource(root, params, specs, (data.declarations, data.outcomes), scorer)
    if check_models:
        models.load()
    elif warm:
        threading.Thread(target=_load_quietly, args=(models,), daemon=True).start()
    app = FastAPI(
        title="riskml audit service",
        description="Candidate lists, cases, scoring of new declarations and audit outcomes. "
        "Send `Authorization: Bearer <token>` (create one with `riskml tokens create`).",
        version="2",
        docs_url=None,
        redoc_url=None,
    )
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["nobidi"] = show_bidi_controls
    app.state.service = Service(root, params, specs, data, store, models, templates)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    docs.mount_assets(app)
    for router in (
        health.router,
        cases.router,
        scoring.score_route(params.serve.max_batch),
        outcomes.router,
        tokens.router,
        pages.router,
        docs.router,
    ):
        app.include_router(router)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    # added last = outermost: the log sees every response, the gate runs before any route
    app.add_middleware(Gate, store=store, score_limit=int(params.serve.max_body_mb * 2**20))
    app.add_middleware(SecurityHeaders, secure=params.serve.cookie_secure)
    app.add_middleware(RequestLog, routes=lambda: app.routes)
    return app


_BIDI_CONTROLS = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def show_bidi_controls(value: Any) -> Any:
    """Text with its direction-control characters shown as ``[U+202E]`` instead of obeyed: a
    right-to-left override in stored data would otherwise display a name reversed."""
    if not isinstance(value, str):
        return value
    return _BIDI_CONTROLS.sub(lambda m: f"[U+{ord(m.group()):04X}]", value)


def _load_quietly(models: ModelSource) -> None:
    try:
        models.load()
    except Exception as exc:  # reported by /health/ready and by POST /score (503)
        log.error("models not loaded: %s", exc)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    detail = exc.detail
    if not isinstance(detail, str | list):
        detail = str(detail)
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {
            "loc": [str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": e.get("type"),
        }
        for e in exc.errors()
    ]
    return JSONResponse({"detail": problems}, status_code=422)
