"""The audit unit's feedback store: audit outcomes recorded by auditors, and API tokens.

A real database through SQLAlchemy: a SQLite file by default (``serve.database_url`` in
params.yaml), PostgreSQL by URL (``postgresql+psycopg://...``). Tokens are stored as SHA-256
hashes only (the plain token is shown once, at creation), expire (``serve.token_days``) and can be
rotated; the last active admin token cannot be revoked. The reviewer pages' sign-ins are
server-side sessions (only a hash of the session id is stored, with its CSRF token and expiry).
Every outcome records the name of the token that wrote it; a repeated post is recognised
(idempotency key or identical natural key) and a contradicting one is stored flagged
``needs_review``, held back from the export until resolved. ``export_outcomes`` writes the
outcomes in the data contract's outcome table, where the next ``dvc repro`` picks them up
(``data/external/feedback_outcomes.parquet``).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
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
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from riskml import catalog
from riskml.catalog import table_file
from riskml.contract import CONTROL_KINDS, OUTCOME_KEY, RISK_AREAS, RiskmlError, column_names

Role = Literal["auditor", "reviewer", "admin"]
ROLES: tuple[str, ...] = ("auditor", "reviewer", "admin")
EXPORT_PATH = catalog.FEEDBACK_EXPORT
#: the contract's outcome columns the service stores; it records no ``control_reason`` yet
#: (optional: its outcomes then weigh as every row did before the column existed)
OUTCOME_EXPORT_COLUMNS = [c for c in column_names("outcomes") if c != "control_reason"]
#: what a stored outcome says; two posts with the same natural key (``OUTCOME_KEY``) and the
#: same content are one outcome, with different content a contradiction
OUTCOME_CONTENT = [
    "result_date",
    "offence_found",
    "offence_code",
    "additional_duty",
    "quantity_seized",
]


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
    expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)  # None: never


class SessionRow(_Base):
    """A reviewer-page sign-in: the hash of the session id the cookie holds, the token it was
    opened with, its CSRF token and its expiry. Sign-out deletes it."""

    __tablename__ = "ui_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    token_id: Mapped[int] = mapped_column(Integer, index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


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
    idempotency_key: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)
    # contradicts another outcome of the same natural key: held back from the export until an
    # admin keeps one (`riskml outcomes resolve ID`); the others are then superseded
    needs_review: Mapped[bool | None] = mapped_column(Boolean, nullable=True, default=False)
    superseded: Mapped[bool | None] = mapped_column(Boolean, nullable=True, default=False)


class WriteLockRow(_Base):
    """One row that every outcome write updates first: the update holds the database's write
    lock (SQLite) or the row's lock (PostgreSQL) until the write commits, so the duplicate and
    contradiction checks of an outcome see every earlier write, from any process
    (``riskml serve --workers N``)."""

    __tablename__ = "write_lock"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    writes: Mapped[int] = mapped_column(Integer, default=0)


@dataclass(frozen=True)
class Identity:
    """Who a valid token belongs to."""

    name: str
    role: str


@dataclass(frozen=True)
class PageSession:
    """A valid reviewer-page session: who, and the CSRF token its forms must carry."""

    identity: Identity
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class Recorded:
    """What :meth:`FeedbackStore.add_outcome` did: the outcome's id, whether this call stored it
    (False: the same outcome was stored before), and the stored outcomes it contradicts."""

    id: int
    created: bool
    needs_review: bool = False
    conflicts_with: list[int] = field(default_factory=list)


def hash_token(token: str) -> str:
    """SHA-256 hex digest of a token (tokens are random, 256 bits: no salt needed)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_name(value: str, what: str = "name") -> str:
    """``value`` stripped, refused when empty or holding control or bidirectional-format
    characters (a right-to-left override would display a name reversed)."""
    value = value.strip()
    if not value:
        raise RiskmlError(f"{what} is empty")
    bad = [c for c in value if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")]
    if bad:
        raise RiskmlError(
            f"{what} holds control or text-direction characters "
            f"({', '.join(f'U+{ord(c):04X}' for c in bad[:3])}); type it plainly"
        )
    return value


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def database_url(url: str, root: Path, *, create: bool = True) -> str:
    """``url`` with a relative SQLite path made relative to ``root`` (its folder created when
    ``create``)."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite://":
        path = (root / url[len(prefix) :]).resolve()
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        return prefix + str(path)
    return url


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (None for another database or in-memory SQLite)."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and len(url) > len(prefix) and ":memory:" not in url:
        return Path(url[len(prefix) :].split("?")[0])
    return None


class FeedbackStore:
    """Outcomes, tokens and page sessions in one database (tables created on first use;
    ``create=False`` refuses a SQLite file that does not exist yet instead of creating it)."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        where = url.split("@")[-1]
        path = sqlite_path(url)
        if not create and path is not None and not path.exists():
            raise RiskmlError(
                f"no feedback database at {path}; create the first admin token there with "
                "`riskml tokens create NAME --role admin` (it creates the database), or check "
                "serve.database_url in params.yaml"
            )
        try:
            self.engine: Engine = _engine(url, path)
            _Base.metadata.create_all(self.engine)
            _add_missing_columns(self.engine)
            _add_write_lock(self.engine)
        except Exception as exc:  # bad URL, missing driver, unreachable server
            raise RiskmlError(
                f"feedback database {where!r} cannot be opened ({type(exc).__name__}:"
                f" {exc}); check serve.database_url in params.yaml"
            ) from exc
        self.url = where
        # one outcome write at a time in this process (and across processes: _serialise)
        self._write = threading.Lock()

    def ping(self) -> None:
        """Raise when the database does not answer (readiness check)."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    # --- tokens ---------------------------------------------------------------------------

    def create_token(self, name: str, role: str, *, days: float | None = None) -> str:
        """Create a token for ``name`` with ``role``, valid for ``days`` (None or 0: no
        expiry); return the plain token (shown once)."""
        if role not in ROLES:
            raise RiskmlError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        name = check_name(name, "the token's name (the person or system that will use it)")
        token = "rml_" + secrets.token_urlsafe(32)
        with Session(self.engine) as s, s.begin():
            if s.scalar(select(TokenRow).where(TokenRow.name == name)) is not None:
                raise RiskmlError(f"a token named {name!r} exists; revoke it or pick another name")
            s.add(
                TokenRow(
                    name=name,
                    role=role,
                    token_hash=hash_token(token),
                    created_at=_now(),
                    expires_at=_expiry(days),
                )
            )
        return token

    def rotate_token(self, name: str, *, days: float | None = None) -> str:
        """A new secret for the token ``name`` (same name and role, new expiry); the old secret
        and the page sessions opened with it stop working at once. Returns the new token."""
        token = "rml_" + secrets.token_urlsafe(32)
        with Session(self.engine) as s, s.begin():
            row = self._active(s, name)
            row.token_hash = hash_token(token)
            row.created_at, row.expires_at = _now(), _expiry(days)
            s.execute(SessionRow.__table__.delete().where(SessionRow.token_id == row.id))
        return token

    def revoke_token(self, name: str) -> None:
        """Revoke the token named ``name`` (it stays listed, marked revoked) and close its page
        sessions. The last active admin token cannot be revoked (nobody could manage tokens
        through the service any more)."""
        with Session(self.engine) as s, s.begin():
            row = s.scalar(select(TokenRow).where(TokenRow.name == name))
            if row is None:
                raise RiskmlError(f"no token named {name!r}; see `riskml tokens list`")
            if row.role == "admin" and _is_active(row):
                others = s.scalar(
                    select(func.count())
                    .select_from(TokenRow)
                    .where(
                        TokenRow.role == "admin",
                        TokenRow.id != row.id,
                        TokenRow.revoked_at.is_(None),
                        (TokenRow.expires_at.is_(None)) | (TokenRow.expires_at > _now()),
                    )
                )
                if not others:
                    raise LastAdminError(
                        f"{name!r} is the last active admin token; create another admin token "
                        "first (`riskml tokens create NAME --role admin`)"
                    )
            row.revoked_at = row.revoked_at or _now()
            s.execute(SessionRow.__table__.delete().where(SessionRow.token_id == row.id))

    def list_tokens(self) -> pd.DataFrame:
        """name, role, created_at, expires_at, revoked_at of every token (no hash, no token)."""
        with Session(self.engine) as s:
            rows = s.scalars(select(TokenRow).order_by(TokenRow.id)).all()
            return pd.DataFrame(
                [(r.name, r.role, r.created_at, r.expires_at, r.revoked_at) for r in rows],
                columns=["name", "role", "created_at", "expires_at", "revoked_at"],
            )

    def identify(self, token: str) -> Identity | None:
        """The identity of a valid token (not revoked, not expired), else None."""
        with Session(self.engine) as s:
            row = s.scalar(select(TokenRow).where(TokenRow.token_hash == hash_token(token)))
            if row is None or not _is_active(row):
                return None
            return Identity(row.name, row.role)

    @staticmethod
    def _active(s: Session, name: str) -> TokenRow:
        row = s.scalar(select(TokenRow).where(TokenRow.name == name))
        if row is None or row.revoked_at is not None:
            raise RiskmlError(f"no active token named {name!r}; see `riskml tokens list`")
        return row

    # --- page sessions --------------------------------------------------------------------

    def open_session(self, token: str, *, hours: float) -> tuple[str, PageSession] | None:
        """Sign in with ``token``: a new session id (for the cookie; only its hash is stored)
        valid ``hours``, or None for an invalid token."""
        session_id = secrets.token_urlsafe(32)
        with Session(self.engine) as s, s.begin():
            row = s.scalar(select(TokenRow).where(TokenRow.token_hash == hash_token(token)))
            if row is None or not _is_active(row):
                return None
            expires = _now() + timedelta(hours=hours)
            if row.expires_at is not None:
                expires = min(expires, row.expires_at)
            csrf = secrets.token_urlsafe(32)
            s.execute(SessionRow.__table__.delete().where(SessionRow.expires_at < _now()))
            s.add(
                SessionRow(
                    session_hash=hash_token(session_id),
                    token_id=row.id,
                    csrf_token=csrf,
                    created_at=_now(),
                    expires_at=expires,
                )
            )
            return session_id, PageSession(Identity(row.name, row.role), csrf, expires)

    def session(self, session_id: str) -> PageSession | None:
        """The valid session ``session_id`` (unexpired, its token still active), else None."""
        with Session(self.engine) as s:
            found = s.execute(
                select(SessionRow, TokenRow)
                .join(TokenRow, TokenRow.id == SessionRow.token_id)
                .where(SessionRow.session_hash == hash_token(session_id))
            ).first()
            if found is None:
                return None
            sess, tok = found
            if sess.expires_at <= _now() or not _is_active(tok):
                return None
            return PageSession(Identity(tok.name, tok.role), sess.csrf_token, sess.expires_at)

    def close_session(self, session_id: str) -> None:
        """Sign out: the session id stops working."""
        with Session(self.engine) as s, s.begin():
            s.execute(
                SessionRow.__table__.delete().where(
                    SessionRow.session_hash == hash_token(session_id)
                )
            )

    # --- outcomes -------------------------------------------------------------------------

    def add_outcome(
        self, *, recorded_by: str, idempotency_key: str | None = None, **fields: object
    ) -> Recorded:
        """Store one audit result (fields as in :class:`OutcomeRow`) unless it is stored
        already: the same ``idempotency_key`` from the same token, or the same natural key
        (declaration, item, control kind, area) with the same content, returns the stored one.
        The same natural key with different content is stored flagged ``needs_review`` (the
        stored ones too). An idempotency key reused for a different outcome is refused."""
        if fields.get("risk_area") not in RISK_AREAS:
            raise RiskmlError(f"unknown risk area {fields.get('risk_area')!r}")
        if fields.get("control_kind") not in CONTROL_KINDS:
            raise RiskmlError(f"unknown control kind {fields.get('control_kind')!r}")
        with self._write, Session(self.engine) as s, s.begin():
            _serialise(s)
            if idempotency_key:
                prior = s.scalar(
                    select(OutcomeRow).where(
                        OutcomeRow.idempotency_key == idempotency_key,
                        OutcomeRow.recorded_by == recorded_by,
                    )
                )
                if prior is not None:
                    if _same(prior, fields, OUTCOME_KEY + OUTCOME_CONTENT):
                        return Recorded(int(prior.id), False, bool(prior.needs_review))
                    raise IdempotencyConflict(
                        f"Idempotency-Key {idempotency_key!r} was used for another outcome "
                        f"(id {prior.id}); send a new key for a new outcome"
                    )
            same_key = s.scalars(
                select(OutcomeRow)
                .where(*(getattr(OutcomeRow, k) == fields.get(k) for k in OUTCOME_KEY))
                .where((OutcomeRow.superseded.is_(None)) | (OutcomeRow.superseded.is_(False)))
                .order_by(OutcomeRow.id)
            ).all()
            for prior in same_key:
                if _same(prior, fields, OUTCOME_CONTENT):
                    return Recorded(int(prior.id), False, bool(prior.needs_review))
            conflicts = [int(p.id) for p in same_key]
            for prior in same_key:
                prior.needs_review = True
            row = OutcomeRow(
                recorded_by=recorded_by,
                recorded_at=_now(),
                idempotency_key=idempotency_key,
                needs_review=bool(conflicts),
                superseded=False,
                **fields,
            )
            s.add(row)
            s.flush()
            return Recorded(int(row.id), True, bool(conflicts), conflicts)

    def resolve_outcome(self, outcome_id: int) -> int:
        """Keep outcome ``outcome_id`` of a contradiction: it loses its ``needs_review`` flag
        and the other outcomes of its natural key are superseded (left out of the export).
        Returns how many were superseded."""
        with self._write, Session(self.engine) as s, s.begin():
            _serialise(s)
            row = s.get(OutcomeRow, outcome_id)
            if row is None:
                raise RiskmlError(f"no outcome with id {outcome_id}; see `GET /outcomes`")
            others = s.scalars(
                select(OutcomeRow).where(
                    *(getattr(OutcomeRow, k) == getattr(row, k) for k in OUTCOME_KEY),
                    OutcomeRow.id != row.id,
                )
            ).all()
            for other in others:
                other.superseded, other.needs_review = True, False
            row.needs_review, row.superseded = False, False
            return len(others)

    def outcomes_for(self, declaration_id: str) -> list[dict[str, object]]:
        """The stored outcomes of one declaration, oldest first."""
        with Session(self.engine) as s:
            rows = s.scalars(
                select(OutcomeRow)
                .where(OutcomeRow.declaration_id == declaration_id)
                .order_by(OutcomeRow.id)
            ).all()
            return [_outcome_record(r) for r in rows]

    def declarations_with_outcomes(self, ids: list[str]) -> dict[str, bool]:
        """Of ``ids``, those with a stored outcome, each with whether one awaits review."""
        if not ids:
            return {}
        with Session(self.engine) as s:
            rows = s.execute(
                select(OutcomeRow.declaration_id, OutcomeRow.needs_review).where(
                    OutcomeRow.declaration_id.in_(set(ids))
                )
            ).all()
        found: dict[str, bool] = {}
        for declaration_id, review in rows:
            found[declaration_id] = found.get(declaration_id, False) or bool(review)
        return found

    def outcomes(self) -> pd.DataFrame:
        """Every stored outcome, oldest first, with who recorded it and its review flags."""
        with Session(self.engine) as s:
            rows = s.scalars(select(OutcomeRow).order_by(OutcomeRow.id)).all()
            return pd.DataFrame([_outcome_record(r) for r in rows], columns=_RECORD_COLUMNS)


class LastAdminError(RiskmlError):
    """Revoking this token would leave no active admin."""


class IdempotencyConflict(RiskmlError):
    """An idempotency key sent again with a different outcome."""


_RECORD_COLUMNS = [
    *OUTCOME_EXPORT_COLUMNS,
    "auditor",
    "recorded_by",
    "recorded_at",
    "id",
    "needs_review",
    "superseded",
]


def _outcome_record(r: OutcomeRow) -> dict[str, object]:
    rec = {c: getattr(r, c) for c in _RECORD_COLUMNS}
    rec["needs_review"], rec["superseded"] = bool(r.needs_review), bool(r.superseded)
    return rec


def _same(row: OutcomeRow, fields: dict[str, object], columns: list[str]) -> bool:
    def norm(v: object) -> object:
        return "" if v is None else v

    return all(norm(getattr(row, c)) == norm(fields.get(c)) for c in columns)


def _expiry(days: float | None) -> datetime | None:
    return _now() + timedelta(days=days) if days else None


def _is_active(row: TokenRow) -> bool:
    return row.revoked_at is None and (row.expires_at is None or row.expires_at > _now())


def _engine(url: str, path: Path | None) -> Engine:
    """The database engine. A SQLite file is opened in WAL mode (readers do not wait for a
    write) with a 30 s busy timeout (a write waits for another process's write instead of
    failing): several service processes share it safely."""
    if path is None:
        return create_engine(url, future=True, pool_pre_ping=True)
    engine = create_engine(url, future=True, pool_pre_ping=True, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _wal(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    return engine


def _add_write_lock(engine: Engine) -> None:
    """The row :func:`_serialise` updates (made once; another process may make it first)."""
    try:
        with Session(engine) as s, s.begin():
            if s.get(WriteLockRow, 1) is None:
                s.add(WriteLockRow(id=1, writes=0))
    except IntegrityError:
        pass


def _serialise(s: Session) -> None:
    """Take the store's write lock for the rest of the transaction ``s`` (its first statement):
    an update of the lock row, which another process's write waits for until this one commits
    (SQLite: the database's write lock, under the busy timeout; PostgreSQL: the row's lock)."""
    s.execute(
        update(WriteLockRow).where(WriteLockRow.id == 1).values(writes=WriteLockRow.writes + 1)
    )


def _add_missing_columns(engine: Engine) -> None:
    """Add the (nullable) columns a newer version declares to tables an older one created."""
    have = inspect(engine)
    with engine.begin() as conn:
        for table in _Base.metadata.sorted_tables:
            present = {c["name"] for c in have.get_columns(table.name)}
            for col in table.columns:
                if col.name not in present and col.nullable:
                    kind = col.type.compile(dialect=engine.dialect)
                    conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{col.name}" {kind}'))


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
    """Write the stored outcomes to ``path`` (Parquet, the contract's outcome columns)
    atomically, leaving out contradicting ones not yet resolved and superseded ones; return the
    number of rows written."""
    from riskml.io import write_parquet

    stored = store.outcomes()
    held = stored["needs_review"].astype(bool) | stored["superseded"].astype(bool)
    table = export_table(stored[~held])
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
    raw_path = table_file(raw_dir, "outcomes")
    raw = read_parquet(raw_path)
    merged = pd.concat([raw, feedback.reindex(columns=raw.columns)], ignore_index=True)
    write_parquet(merged, raw_path)
    return len(feedback)
