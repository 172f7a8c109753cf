"""The audit unit's feedback store: audit outcomes recorded by auditors, and API tokens.

A real database through SQLAlchemy: a SQLite file by default (``serve.database_url`` in
params.yaml), PostgreSQL by URL. Tokens are stored as SHA-256 hashes only (the plain token is
shown once, at creation). Every outcome records the name of the token that wrote it.
``export_outcomes`` writes the outcomes in the data contract's outcome table, where the next
``dvc repro`` picks them up (``data/external/feedback_outcomes.parquet``).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Literal

import pandas as pd
from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    Float,
    Integer,
    String,
    create_engine,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from riskml.contract import CONTROL_KINDS, RISK_AREAS, RiskmlError, column_names

Role = Literal["auditor", "reviewer", "admin"]
ROLES: tuple[str, ...] = ("auditor", "reviewer", "admin")
EXPORT_PATH = "data/external/feedback_outcomes.parquet"
OUTCOME_EXPORT_COLUMNS = column_names("outcomes")


class _Base(DeclarativeBase):
    pass


class TokenRow(_Base):
    """An API token: its name, role and SHA-256 hash (never the token itself)."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class OutcomeRow(_Base):
    """An audit result recorded through the service."""

    __tablename__ = "audit_outcomes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    declaration_id: Mapped[str] = mapped_column(String(64), index=True)
    item_no: Mapped[int] = mapped_column(Integer)
    risk_area: Mapped[str] = mapped_column(String(32))
    control_kind: Mapped[str] = mapped_column(String(20))
    result_date: Mapped[date] = mapped_column(Date)
    offence_found: Mapped[bool] = mapped_column(Boolean)
    offence_code: Mapped[str | None] = mapped_column(String(32), nullable=True)
    additional_duty: Mapped[float] = mapped_column(Float, default=0.0)
    quantity_seized: Mapped[float] = mapped_column(Float, default=0.0)
    auditor: Mapped[str] = mapped_column(String(100))  # the person named on the form
    recorded_by: Mapped[str] = mapped_column(String(100))  # the token that wrote it
    recorded_at: Mapped[datetime] = mapped_column(DateTime)


@dataclass(frozen=True)
class Identity:
    """Who a valid token belongs to."""

    name: str
    role: str


def hash_token(token: str) -> str:
    """SHA-256 hex digest of a token (tokens are random, 256 bits: no salt needed)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def database_url(url: str, root: Path) -> str:
    """``url`` with a relative SQLite path made relative to ``root`` (its folder created)."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite://":
        path = (root / url[len(prefix) :]).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return prefix + str(path)
    return url


class FeedbackStore:
    """Outcomes and tokens in one database (tables created on first use)."""

    def __init__(self, url: str) -> None:
        try:
            self.engine: Engine = create_engine(url, future=True)
            _Base.metadata.create_all(self.engine)
        except Exception as exc:  # bad URL, missing driver, unreachable server
            raise RiskmlError(
                f"feedback database {url.split('@')[-1]!r} cannot be opened ({type(exc).__name__}:"
                f" {exc}); check serve.database_url in params.yaml"
            ) from exc

    # --- tokens ---------------------------------------------------------------------------

    def create_token(self, name: str, role: str) -> str:
        """Create a token for ``name`` with ``role``; return the plain token (shown once)."""
        if role not in ROLES:
            raise RiskmlError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        if not name.strip():
            raise RiskmlError("a token needs a name (the person or system that will use it)")
        token = "rml_" + secrets.token_urlsafe(32)
        with Session(self.engine) as s, s.begin():
            if s.scalar(select(TokenRow).where(TokenRow.name == name)) is not None:
                raise RiskmlError(f"a token named {name!r} exists; revoke it or pick another name")
            s.add(TokenRow(name=name, role=role, token_hash=hash_token(token), created_at=_now()))
        return token

    def revoke_token(self, name: str) -> None:
        """Revoke the token named ``name`` (it stays listed, marked revoked)."""
        with Session(self.engine) as s, s.begin():
            row = s.scalar(select(TokenRow).where(TokenRow.name == name))
            if row is None:
                raise RiskmlError(f"no token named {name!r}; see `riskml tokens list`")
            row.revoked_at = row.revoked_at or _now()

    def list_tokens(self) -> pd.DataFrame:
        """name, role, created_at, revoked_at of every token (no hash, no token)."""
        with Session(self.engine) as s:
            rows = s.scalars(select(TokenRow).order_by(TokenRow.id)).all()
            return pd.DataFrame(
                [(r.name, r.role, r.created_at, r.revoked_at) for r in rows],
                columns=["name", "role", "created_at", "revoked_at"],
            )

    def identify(self, token: str) -> Identity | None:
        """The identity of a valid, unrevoked token, else None."""
        with Session(self.engine) as s:
            row = s.scalar(select(TokenRow).where(TokenRow.token_hash == hash_token(token)))
            if row is None or row.revoked_at is not None:
                return None
            return Identity(row.name, row.role)

    # --- outcomes -------------------------------------------------------------------------

    def add_outcome(self, *, recorded_by: str, **fields: object) -> int:
        """Store one audit result (fields as in :class:`OutcomeRow`); return its id."""
        if fields.get("risk_area") not in RISK_AREAS:
            raise RiskmlError(f"unknown risk area {fields.get('risk_area')!r}")
        if fields.get("control_kind") not in CONTROL_KINDS:
            raise RiskmlError(f"unknown control kind {fields.get('control_kind')!r}")
        with Session(self.engine) as s, s.begin():
            row = OutcomeRow(recorded_by=recorded_by, recorded_at=_now(), **fields)
            s.add(row)
            s.flush()
            return int(row.id)

    def outcomes_for(self, declaration_id: str) -> list[dict[str, object]]:
        """The stored outcomes of one declaration, oldest first."""
        with Session(self.engine) as s:
            rows = s.scalars(
                select(OutcomeRow)
                .where(OutcomeRow.declaration_id == declaration_id)
                .order_by(OutcomeRow.id)
            ).all()
            cols = [*OUTCOME_EXPORT_COLUMNS, "auditor", "recorded_by", "recorded_at", "id"]
            return [{c: getattr(r, c) for c in cols} for r in rows]

    def outcomes(self) -> pd.DataFrame:
        """Every stored outcome, oldest first, with who recorded it."""
        cols = [*OUTCOME_EXPORT_COLUMNS, "auditor", "recorded_by", "recorded_at", "id"]
        with Session(self.engine) as s:
            rows = s.scalars(select(OutcomeRow).order_by(OutcomeRow.id)).all()
            return pd.DataFrame([{c: getattr(r, c) for c in cols} for r in rows], columns=cols)


def export_table(outcomes: pd.DataFrame) -> pd.DataFrame:
    """The stored outcomes as the data contract's outcome table (canonical dtypes)."""
    out = outcomes.reindex(columns=OUTCOME_EXPORT_COLUMNS)
    return pd.DataFrame(
        {
            "declaration_id": out["declaration_id"].astype("string"),
            "item_no": out["item_no"].astype("int64"),
            "control_kind": out["control_kind"].astype("string"),
            "result_date": pd.to_datetime(out["result_date"]).astype("datetime64[ns]"),
            "risk_area": out["risk_area"].astype("string"),
            "offence_found": out["offence_found"].astype("bool"),
            "offence_code": out["offence_code"].astype("string"),
            "additional_duty": out["additional_duty"].astype("float64"),
            "quantity_seized": out["quantity_seized"].astype("float64"),
        }
    )


def export_outcomes(store: FeedbackStore, path: Path) -> int:
    """Write every stored outcome to ``path`` (Parquet, the contract's outcome columns)
    atomically; return the number of rows."""
    from riskml.io import write_parquet

    table = export_table(store.outcomes())
    write_parquet(table, path)
    return len(table)


def append_feedback(raw_dir: Path, feedback_path: Path) -> int:
    """Append the exported feedback outcomes (when ``feedback_path`` exists) to
    ``raw_dir/outcomes.parquet``, so that the ``validate`` stage checks them like any outcome
    and the next training run learns from them. Returns the number of rows appended."""
    from riskml.io import read_parquet, write_parquet

    if not feedback_path.exists():
        return 0
    feedback = read_parquet(feedback_path)
    if feedback.empty:
        return 0
    raw_path = raw_dir / "outcomes.parquet"
    raw = read_parquet(raw_path)
    merged = pd.concat([raw, feedback.reindex(columns=raw.columns)], ignore_index=True)
    write_parquet(merged, raw_path)
    return len(feedback)
