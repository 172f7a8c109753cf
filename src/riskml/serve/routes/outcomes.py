"""Audit outcomes: recorded by auditors (held to the data contract at the door, idempotent,
contradictions flagged), read by every role."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse

from riskml.feedback import IdempotencyConflict, Identity, Recorded
from riskml.serve.deps import Reader, Service, ServiceDep, Writer
from riskml.serve.routes.cases import jsonable
from riskml.serve.schemas import READ_ERRORS, WRITE_ERRORS, OutcomeIn, OutcomeOut, error

router = APIRouter(tags=["outcomes"])


def check_outcome(service: Service, outcome: OutcomeIn) -> None:
    """The outcome against the data contract and the stored data, or a 422 naming the field:
    a served area; a stored declaration item; a result dated from the declaration's acceptance
    to today; for a clean result, a control kind that can detect the area; nothing recovered or
    seized when nothing was found."""
    areas = service.areas
    if outcome.risk_area not in areas:
        msg = f"unknown area {outcome.risk_area!r}; areas: {', '.join(areas)}"
        raise error(422, "body.risk_area", msg)
    accepted = service.data.accepted_date(outcome.declaration_id, outcome.item_no)
    if accepted is None:
        msg = "unknown declaration item (declaration_id, item_no)"
        raise error(422, "body.declaration_id", msg)
    if outcome.result_date > date.today():
        raise error(422, "body.result_date", f"{outcome.result_date} is in the future")
    if outcome.result_date < accepted:
        msg = f"{outcome.result_date} is before the declaration was accepted ({accepted})"
        raise error(422, "body.result_date", msg)
    detectable = service.specs[outcome.risk_area].detectable_by
    if not outcome.offence_found and outcome.control_kind not in detectable:
        # a finding proves the control could see it; a clean result only counts from a kind
        # that can detect the area (riskml.labels), so anything else is a mistake at the door
        msg = (
            f"a {outcome.control_kind} control cannot detect {outcome.risk_area} offences, so "
            f"its clean result says nothing; use one of {', '.join(detectable)}"
        )
        raise error(422, "body.control_kind", msg)
    if not outcome.offence_found:
        for field in ("additional_duty", "quantity_seized"):
            if getattr(outcome, field):
                msg = f"{field} must be 0 when no offence was found"
                raise error(422, f"body.{field}", msg)


def record(service: Service, outcome: OutcomeIn, who: Identity, key: str | None = None) -> Recorded:
    """Check and store an outcome (see :meth:`riskml.feedback.FeedbackStore.add_outcome`)."""
    check_outcome(service, outcome)
    try:
        return service.store.add_outcome(
            recorded_by=who.name, idempotency_key=key, **outcome.model_dump()
        )
    except IdempotencyConflict as exc:
        raise error(409, "header.idempotency-key", str(exc), "conflict") from None


@router.post(
    "/outcomes",
    status_code=201,
    response_model=OutcomeOut,
    responses={200: {"model": OutcomeOut, "description": "already stored"}, **WRITE_ERRORS},
)
def add_outcome(
    outcome: OutcomeIn,
    who: Writer,
    service: ServiceDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=100,
            description="a key of the client's choosing: the same key again returns the stored "
            "outcome instead of a second one",
        ),
    ] = None,
) -> Any:
    """Record an audit result; the token's name is stored as who recorded it. The same outcome
    posted again (same ``Idempotency-Key``, or same item, area, control kind and content) is
    stored once (200); one contradicting a stored outcome is stored flagged ``needs_review``."""
    rec = record(service, outcome, who, idempotency_key)
    body = OutcomeOut(
        id=rec.id,
        recorded_by=who.name,
        created=rec.created,
        needs_review=rec.needs_review,
        conflicts_with=rec.conflicts_with,
    )
    return JSONResponse(body.model_dump(), status_code=201 if rec.created else 200)


@router.get("/outcomes", responses=READ_ERRORS)
def list_outcomes(who: Reader, service: ServiceDep) -> list[dict[str, Any]]:
    """Every outcome recorded through the service (``needs_review``: contradicts another)."""
    return jsonable(service.store.outcomes().to_dict("records"))
