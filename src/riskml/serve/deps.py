"""What the routes depend on (FastAPI ``Depends``): the service's parts, the caller's identity
and role, the page session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.templating import Jinja2Templates

from riskml.config import AreaSpec, Params
from riskml.feedback import FeedbackStore, Identity, PageSession
from riskml.serve.data import ServiceData
from riskml.serve.models import ModelSource

READ = ("auditor", "reviewer", "admin")
WRITE = ("auditor",)
ADMIN = ("admin",)


@dataclass
class Service:
    """Everything a request may use, built once by :func:`riskml.serve.create_app`."""

    root: Path
    params: Params
    specs: dict[str, AreaSpec]
    data: ServiceData
    store: FeedbackStore
    models: ModelSource
    templates: Jinja2Templates

    @property
    def areas(self) -> list[str]:
        return list(self.specs)


async def get_service(request: Request) -> Service:
    """The service of the running app (dependencies are async: no worker-thread hop each)."""
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="An API token: `Authorization: Bearer rml_...` (`riskml tokens create`).",
)


async def identity(
    request: Request,
    service: ServiceDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Identity:
    """The caller of an API route (identified by the gate before the body was read)."""
    state = request.scope.get("state", {})
    who = state.get("identity") if "identity" in state else None
    if who is None and "identity" not in state and credentials is not None:
        who = service.store.identify(credentials.credentials)  # app without the gate
    if who is None:
        msg = (
            "a valid token is required"
            if credentials is None
            else "unknown, revoked or expired token"
        )
        raise HTTPException(
            401,
            [{"loc": ["header", "authorization"], "msg": msg, "type": "unauthorized"}],
            {"WWW-Authenticate": "Bearer"},
        )
    return who


def role(*allowed: str) -> Any:
    """A dependency that admits only the roles ``allowed``."""

    async def check(who: Annotated[Identity, Depends(identity)]) -> Identity:
        if who.role not in allowed:
            msg = f"role {who.role!r} may not do this (needs {' or '.join(allowed)})"
            raise HTTPException(
                403, [{"loc": ["header", "authorization"], "msg": msg, "type": "forbidden"}]
            )
        return who

    return check


Reader = Annotated[Identity, Depends(role(*READ))]
Writer = Annotated[Identity, Depends(role(*WRITE))]
Admin = Annotated[Identity, Depends(role(*ADMIN))]


async def page_session(request: Request) -> PageSession | None:
    """The reviewer-page session of the request (None: not signed in)."""
    return request.scope.get("state", {}).get("page_session")


PageDep = Annotated[PageSession | None, Depends(page_session)]
