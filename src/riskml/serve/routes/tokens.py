"""API tokens (admins)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from riskml.contract import RiskmlError
from riskml.feedback import LastAdminError
from riskml.serve.deps import Admin, ServiceDep
from riskml.serve.routes.cases import jsonable
from riskml.serve.schemas import READ_ERRORS, WRITE_ERRORS, TokenIn, TokenOut, _responses, error

router = APIRouter(tags=["tokens"])
NamePath = Annotated[str, Path(max_length=100, description="the token's name (may hold '/')")]


def _expiry(service: Any, name: str) -> str | None:
    listed = service.store.list_tokens()
    value = listed.loc[listed["name"] == name, "expires_at"].iloc[0]
    return None if value is None or value != value else str(value)


@router.get("/tokens", responses=READ_ERRORS)
def list_tokens(who: Admin, service: ServiceDep) -> list[dict[str, Any]]:
    """Token names, roles and dates (never a token or a hash)."""
    return jsonable(service.store.list_tokens().to_dict("records"))


@router.post("/tokens", status_code=201, response_model=TokenOut, responses=WRITE_ERRORS)
def create_token(body: TokenIn, who: Admin, service: ServiceDep) -> TokenOut:
    """Create a token valid ``days`` (default ``serve.token_days``); the plain token is in this
    response only."""
    days = service.params.serve.token_days if body.days is None else body.days
    try:
        token = service.store.create_token(body.name, body.role, days=days)
    except RiskmlError as exc:
        raise error(409, "body.name", str(exc), "conflict") from None
    return TokenOut(
        name=body.name, role=body.role, token=token, expires_at=_expiry(service, body.name)
    )


@router.post(
    "/tokens/{name:path}/rotate",
    response_model=TokenOut,
    responses={**WRITE_ERRORS, **_responses(404)},
)
def rotate_token(name: NamePath, who: Admin, service: ServiceDep) -> TokenOut:
    """A new secret for a token (same name and role, new expiry); the old one stops working at
    once."""
    try:
        token = service.store.rotate_token(name, days=service.params.serve.token_days)
    except RiskmlError as exc:
        raise error(404, "path.name", str(exc), "not_found") from None
    role = service.store.list_tokens().set_index("name").loc[name, "role"]
    return TokenOut(name=name, role=str(role), token=token, expires_at=_expiry(service, name))


@router.delete("/tokens/{name:path}", responses={**WRITE_ERRORS, **_responses(404)})
def revoke_token(name: NamePath, who: Admin, service: ServiceDep) -> dict[str, str]:
    """Revoke a token by name (409 for the last active admin token)."""
    try:
        service.store.revoke_token(name)
    except LastAdminError as exc:
        raise error(409, "path.name", str(exc), "conflict") from None
    except RiskmlError as exc:
        raise error(404, "path.name", str(exc), "not_found") from None
    return {"revoked": name}
