"""Liveness and readiness (anonymous, no data)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from riskml.serve.deps import ServiceDep

router = APIRouter(tags=["service"])


@router.get("/health/live")
async def live(service: ServiceDep) -> dict[str, Any]:
    """Liveness: the process answers."""
    return {"status": "ok", "areas": service.areas}


@router.get("/health", include_in_schema=False)
async def health(service: ServiceDep) -> dict[str, Any]:
    """Liveness (the older path)."""
    return await live(service)


@router.get(
    "/health/ready",
    responses={503: {"description": "models not loaded or unusable, or database unreachable"}},
)
def ready(service: ServiceDep) -> JSONResponse:
    """Readiness: every area's champion loaded and answering a probe, the feedback database
    reachable. 503 with the reason otherwise."""
    models = service.models.status()
    try:
        service.store.ping()
        database: dict[str, Any] = {"status": "ready"}
    except Exception as exc:  # any driver error: the database does not answer
        database = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:300]}
    ok = models["status"] == "ready" and database["status"] == "ready"
    body = {"status": "ready" if ok else "not ready", "models": models, "database": database}
    return JSONResponse(body, status_code=200 if ok else 503)
