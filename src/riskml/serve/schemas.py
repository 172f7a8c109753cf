"""Request and response bodies of the API, and the OpenAPI pieces that pydantic cannot infer
(the ``POST /score`` body, the error responses every route may give)."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field, field_validator

from riskml.contract import CONTROL_KINDS, DECLARATION_COLUMNS, RiskmlError
from riskml.feedback import check_name


class OutcomeIn(BaseModel):
    """An audit result recorded by an auditor. Numbers must be finite; the service also checks
    that the item is stored, that the result date lies between the declaration's acceptance and
    today, and that the control kind can detect the area."""

    model_config = ConfigDict(extra="forbid")

    declaration_id: str = Field(min_length=1, max_length=64)
    item_no: int = Field(ge=1, le=100_000)
    risk_area: str = Field(max_length=32)
    offence_found: bool
    offence_code: str | None = Field(None, max_length=32)
    additional_duty: float = Field(0.0, ge=0, allow_inf_nan=False)
    quantity_seized: float = Field(0.0, ge=0, allow_inf_nan=False)
    control_kind: str = "pca"
    result_date: date = Field(default_factory=date.today)
    auditor: str = Field(min_length=1, max_length=100)

    @field_validator("control_kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v not in CONTROL_KINDS:
            raise ValueError(f"unknown control kind; use one of {', '.join(CONTROL_KINDS)}")
        return v

    @field_validator("auditor", "declaration_id")
    @classmethod
    def _plain_text(cls, v: str) -> str:
        try:
            return check_name(v, "the value")
        except RiskmlError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("offence_code")
    @classmethod
    def _code(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        try:
            return check_name(v, "the offence code")
        except RiskmlError as exc:
            raise ValueError(str(exc)) from None


class OutcomeOut(BaseModel):
    """What was recorded: ``created`` false when the same outcome was stored before (nothing
    new written); ``needs_review`` when it contradicts stored outcomes of the same item, area
    and control kind (``conflicts_with``: their ids); held back from the export until resolved."""

    id: int
    recorded_by: str
    created: bool
    needs_review: bool
    conflicts_with: list[int]


class TokenIn(BaseModel):
    """A token to create."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    role: Literal["auditor", "reviewer", "admin"]
    days: float | None = Field(
        None, ge=0, le=3650, allow_inf_nan=False, description="validity; default serve.token_days"
    )

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        try:
            return check_name(v, "the token's name")
        except RiskmlError as exc:
            raise ValueError(str(exc)) from None


class TokenOut(BaseModel):
    """A created or rotated token: the plain token is in this response only."""

    name: str
    role: str
    token: str
    expires_at: str | None


class ErrorItem(BaseModel):
    """One problem: where (``loc``), what (``msg``) and its kind (``type``)."""

    loc: list[str | int]
    msg: str
    type: str | None = None


class RowError(BaseModel):
    """A batch row breaking the data contract (rows counted from 1)."""

    row: int
    field: str
    msg: str


class ErrorBody(BaseModel):
    """Every error response: ``detail`` (a message or a list of problems); a refused
    ``POST /score`` batch also lists the rows that break the contract in ``errors``."""

    detail: str | list[ErrorItem]
    errors: list[RowError] | None = None


def error(status: int, loc: str, msg: str, kind: str = "value_error") -> HTTPException:
    """An HTTP error whose body is :class:`ErrorBody` with one problem at ``loc``
    (dotted, e.g. ``body.risk_area``)."""
    return HTTPException(
        status_code=status, detail=[{"loc": loc.split("."), "msg": msg, "type": kind}]
    )


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    meaning = {
        400: "malformed request (e.g. a bad Content-Length)",
        401: "no valid token (missing, unknown, revoked or expired)",
        403: "the token's role may not do this",
        404: "not found",
        409: "conflicts with stored state",
        413: "request body or batch too large",
        415: "unsupported content type",
        422: "invalid input; the problem is named",
        503: "the models or the database are not ready",
    }
    return {c: {"model": ErrorBody, "description": meaning[c]} for c in codes}


READ_ERRORS = _responses(401, 403, 413, 422)
#: a 200 that may be JSON or, with ``format=csv``, CSV text
JSON_OR_CSV = {
    200: {
        "description": "JSON, or CSV with `format=csv`",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
}
WRITE_ERRORS = _responses(400, 401, 403, 409, 413, 415, 422)
SCORE_ERRORS = _responses(400, 401, 403, 413, 415, 422, 503)

_JSON_TYPES = {"string": "string", "int": "integer", "float": "number", "bool": "boolean"}


def declaration_row_schema() -> dict[str, Any]:
    """JSON schema of one declaration row of ``POST /score``, from the data contract."""
    props: dict[str, Any] = {}
    for col in DECLARATION_COLUMNS:
        if col.dtype == "date":
            schema: dict[str, Any] = {"type": "string", "format": "date"}
        else:
            schema = {"type": _JSON_TYPES[col.dtype]}
        if not col.required:
            schema = {"anyOf": [schema, {"type": "null"}]}
        props[col.name] = {**schema, "description": col.description}
    return {
        "type": "object",
        "properties": props,
        "required": [c.name for c in DECLARATION_COLUMNS if c.required],
    }


def score_request_body(max_batch: int) -> dict[str, Any]:
    """OpenAPI ``requestBody`` of ``POST /score``: JSON rows (a list or ``{"declarations":
    [...]}``) or CSV text with a header row."""
    row = declaration_row_schema()
    rows = {"type": "array", "items": row, "minItems": 1, "maxItems": max_batch}
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        rows,
                        {
                            "type": "object",
                            "properties": {"declarations": rows},
                            "required": ["declarations"],
                        },
                    ]
                }
            },
            "text/csv": {"schema": {"type": "string", "description": "CSV with a header row"}},
        },
    }
