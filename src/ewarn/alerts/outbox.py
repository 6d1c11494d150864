"""The durable SMS outbox: every message is written before it is sent.

One row of the ``outbox`` table per message and recipient, with a unique
idempotency key (the same warning for the same person is never queued twice);
one row of ``outbox_attempts`` per send attempt (what the gateway answered).
A :class:`Dispatcher` claims due messages in batches, sends them through a
:class:`~ewarn.alerts.gateways.base.Gateway` under a per-gateway
:class:`TokenBucket` rate limit, and records each batch's results in one
transaction.

Statuses (:data:`STATUSES`)::

    queued ──claim──► sending ──accepted──► sent ──webhook──► delivered | undelivered | failed
      ▲                  │  └──refused, permanent or max_attempts──► failed
      └──retryable──────┘  └──window passed before sending──► expired

Durability. A claim sets ``lease_until``; a dispatcher that dies between
sending and recording leaves its batch in ``sending``, and once the lease has
passed the next claim takes those rows again: no message is lost, and at most
the messages of the batch that was in flight are sent twice (the gateway gets
the idempotency key, so a provider that honours client references can drop
them). Claims are atomic: ``UPDATE ... WHERE id IN (SELECT ... LIMIT n)
RETURNING`` inside ``BEGIN IMMEDIATE`` on SQLite, ``FOR UPDATE SKIP LOCKED``
on PostgreSQL, so two dispatchers never claim the same row.

Retries use capped exponential backoff with full jitter (M. Brooker,
"Exponential Backoff And Jitter", AWS Architecture Blog, 2015):
``delay = uniform(0, min(cap, base * 2**(attempt - 1)))``.

A warning whose window (``valid_until``) has ended before it could be sent is
not sent late: it becomes ``expired`` with an attempt record saying so.
All-clears and province summaries (``valid_until`` empty) never expire.

Times are stored UTC. Log lines mask phone numbers (:func:`ewarn.log.mask_phone`).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    bindparam,
    func,
    insert,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ewarn.alerts.gateways.base import Gateway, Receipt, SmsMessage
from ewarn.config import AlertSettings
from ewarn.errors import EwarnError
from ewarn.log import mask_phone
from ewarn.store import Store, metadata, utcnow
from ewarn.store import as_utc as _aware

__all__ = [
    "FINAL_STATUSES",
    "STATUSES",
    "DispatchCounts",
    "Dispatcher",
    "OutboxError",
    "TokenBucket",
    "backoff_delays",
    "claim",
    "enqueue",
    "list_messages",
    "mark_delivery",
    "outbox",
    "outbox_attempts",
    "outbox_counts",
    "transaction",
]

log = logging.getLogger(__name__)

#: Every status a message can have (the gateway protocol's ``DeliveryStatus``).
STATUSES: tuple[str, ...] = ("queued", "sending", "sent", "delivered", "failed", "undelivered", "expired")
#: Statuses after which the dispatcher never touches a message again.
FINAL_STATUSES: tuple[str, ...] = ("sent", "delivered", "failed", "undelivered", "expired")
#: Kinds that never expire (they are still true when late).
_TIMELESS_KINDS = ("all_clear", "summary")
#: Statuses a delivery callback may set.
_CALLBACK_STATUSES = ("delivered", "undelivered", "failed")


class OutboxError(EwarnError):
    """Rows given to the outbox are unusable (names the row and field, and the fix)."""


outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(128), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # warning | update | reminder | all_clear | summary
    Column("hazard", String(32), nullable=False, default=""),
    Column("commune_code", String(16), nullable=False, default=""),
    Column("recipient", String(32), nullable=False),  # E.164
    Column("contact_name", Text, nullable=False, default=""),
    Column("role", Text, nullable=False, default=""),
    Column("language", String(8), nullable=False, default="vi"),
    Column("body", Text, nullable=False),
    Column("encoding", String(8), nullable=False, default=""),
    Column("segments", Integer, nullable=False, default=1),
    Column("status", String(16), nullable=False, default="queued"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("lease_until", DateTime(timezone=True)),
    Column("valid_until", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True)),
    Column("delivered_at", DateTime(timezone=True)),
    Column("provider_id", String(128)),
    Column("gateway", String(64)),
    Column("last_error", Text),
    Column("source", String(64), nullable=False, default=""),
    Column("cycle", DateTime(timezone=True)),
    Column("notice_id", Text, nullable=False, default=""),
    Index("ix_outbox_due", "status", "next_attempt_at"),
    Index("ix_outbox_lease", "status", "lease_until"),
    Index("ix_outbox_provider_id", "provider_id"),
)

outbox_attempts = Table(
    "outbox_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", Integer, ForeignKey("outbox.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("gateway", String(64), nullable=False, default=""),
    Column("accepted", Boolean, nullable=False),
    Column("provider_id", String(128), nullable=False, default=""),
    Column("status", String(16), nullable=False, default=""),
    Column("error_code", String(64), nullable=False, default=""),
    Column("error_message", Text, nullable=False, default=""),
    Column("retryable", Boolean, nullable=False, default=False),
)

#: Columns a caller must give to :func:`enqueue`.
_REQUIRED = ("key", "kind", "recipient", "body")
_TEXT_DEFAULTS: dict[str, str] = {
    "hazard": "", "commune_code": "", "contact_name": "", "role": "", "language": "vi",
    "encoding": "", "source": "", "notice_id": ""}
_TIME_COLUMNS = ("valid_until", "cycle", "next_attempt_at")


# --------------------------------------------------------------------------- time helpers


def _as_datetime(now: dt.datetime | float | None, clock: Callable[[], float]) -> dt.datetime:
    if now is None:
        now = clock()
    if isinstance(now, int | float):
        return dt.datetime.fromtimestamp(float(now), dt.UTC)
    out = _aware(now)
    if out is None:
        raise OutboxError("the dispatch time is missing; pass a datetime (UTC) or epoch seconds")
    return out


def _db_time(value: Any) -> dt.datetime | None:
    """A value read back from the database as aware UTC (SQLite returns naive UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


@contextmanager
def transaction(store: Store, *, immediate: bool = True) -> Iterator[Connection]:
    """One database transaction; on SQLite a write lock is taken first (``BEGIN IMMEDIATE``).

    Taking the write lock at the start means a second dispatcher or enqueuer
    waits (``busy_timeout``) instead of working on a snapshot it cannot
    commit. Commits on success, rolls back on any exception.
    """
    with store.engine.connect() as conn:
        if immediate and conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


# --------------------------------------------------------------------------- enqueue


def _frame(rows: pd.DataFrame | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    df = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if df.empty:
        return df
    missing = [c for c in _REQUIRED if c not in df.columns]
    if missing:
        raise OutboxError(f"outbox rows: column(s) {', '.join(missing)} missing; every message needs "
                          f"{', '.join(_REQUIRED)}")
    unknown = sorted(set(df.columns) - set(outbox.c.keys()))
    if unknown:
        raise OutboxError(f"outbox rows: unknown column(s) {', '.join(map(str, unknown))}; the outbox "
                          f"columns are {', '.join(outbox.c.keys())}")
    for col in _REQUIRED:
        bad = np.flatnonzero(df[col].isna().to_numpy() | (df[col].astype(str).str.len() == 0).to_numpy())
        if bad.size:
            raise OutboxError(f"outbox rows: row {int(bad[0])} (and {bad.size - 1} more) has an empty "
                              f"field '{col}'; give every message a {col}")
    recip = df["recipient"].astype(str)
    bad = np.flatnonzero(~recip.str.fullmatch(r"\+[1-9]\d{6,14}").to_numpy())
    if bad.size:
        raise OutboxError(f"outbox rows: row {int(bad[0])}: field 'recipient' "
                          f"{mask_phone(recip.iloc[bad[0]])!r} is not an E.164 number (+ and 7-15 "
                          "digits); fix the contact's phone")
    return df


def _records(df: pd.DataFrame, now: dt.datetime) -> list[dict[str, Any]]:
    """Insert parameters, one dict per row, with defaults and Python datetimes."""
    n = len(df)
    cols: dict[str, Any] = {c: df[c].astype(str).tolist() for c in ("key", "kind", "recipient", "body")}
    for c, default in _TEXT_DEFAULTS.items():
        cols[c] = (df[c].fillna(default).astype(str).tolist() if c in df.columns else [default] * n)
    cols["segments"] = (pd.to_numeric(df["segments"]).fillna(1).astype(int).tolist()
                        if "segments" in df.columns else [1] * n)
    for c in _TIME_COLUMNS:
        if c in df.columns:
            ts = pd.to_datetime(df[c], utc=True)
            cols[c] = [None if v is pd.NaT else v.to_pydatetime() for v in ts]
        else:
            cols[c] = [None] * n
    cols["next_attempt_at"] = [now if v is None else v for v in cols["next_attempt_at"]]
    cols["status"] = ["queued"] * n
    cols["attempts"] = [0] * n
    cols["created_at"] = [now] * n
    names = list(cols)
    return [dict(zip(names, vals, strict=True)) for vals in zip(*cols.values(), strict=True)]


def _insert_ignore(conn: Connection):
    dialect = conn.dialect.name
    if dialect == "sqlite":
        return sqlite_insert(outbox).on_conflict_do_nothing(index_elements=["key"])
    if dialect == "postgresql":
        return pg_insert(outbox).on_conflict_do_nothing(index_elements=["key"])
    raise OutboxError(f"the outbox needs SQLite or PostgreSQL (INSERT ... ON CONFLICT), not {dialect}; "
                      "set [workspace] database_url accordingly")


def enqueue(store: Store, rows: pd.DataFrame | Sequence[Mapping[str, Any]], *,
            now: dt.datetime | None = None, conn: Connection | None = None) -> tuple[int, int]:
    """Write messages to the outbox; a key already there is skipped, not duplicated.

    All rows go in ONE transaction as one ``INSERT ... ON CONFLICT (key) DO
    NOTHING`` executed for many parameter sets (executemany).

    Parameters
    ----------
    store : Store
    rows : pandas.DataFrame or sequence of dict
        Outbox columns; ``key``, ``kind``, ``recipient`` (E.164) and ``body``
        are required; ``next_attempt_at`` defaults to ``now``; ``valid_until``
        (end of the warning window, UTC) may be empty.
    now : datetime, optional
        Creation time (default: now, UTC).
    conn : sqlalchemy.Connection, optional
        Run inside the caller's transaction (e.g. with the alert state) instead
        of a transaction of its own.

    Returns
    -------
    (int, int)
        Rows inserted, rows skipped as duplicates.

    Raises
    ------
    OutboxError
        A required column is missing or empty, or a recipient is not E.164.
    """
    df = _frame(rows)
    if df.empty:
        return 0, 0
    params = _records(df, _aware(now) or utcnow())
    if conn is not None:
        inserted = _run_insert(conn, params)
    else:
        with transaction(store) as c:
            inserted = _run_insert(c, params)
    log.info("outbox: %d message(s) queued, %d duplicate(s) skipped", inserted, len(params) - inserted)
    return inserted, len(params) - inserted


def _run_insert(conn: Connection, params: list[dict[str, Any]]) -> int:
    stmt = _insert_ignore(conn)
    if conn.dialect.name == "sqlite":
        before = conn.exec_driver_sql("SELECT total_changes()").scalar_one()
        conn.execute(stmt, params)
        return int(conn.exec_driver_sql("SELECT total_changes()").scalar_one() - before)
    res = conn.execute(stmt, params)
    if res.rowcount is not None and res.rowcount >= 0:
        return int(res.rowcount)
    keys = [p["key"] for p in params]  # driver without executemany rowcount
    return int(conn.execute(select(func.count()).select_from(outbox).where(
        outbox.c.key.in_(keys), outbox.c.created_at == params[0]["created_at"])).scalar_one())


# --------------------------------------------------------------------------- claim


def claim(store: Store, n: int, now: dt.datetime, lease: float) -> list[dict[str, Any]]:
    """Atomically take up to ``n`` due messages for sending.

    Due: ``queued`` with ``next_attempt_at <= now``, or ``sending`` whose
    lease has passed (a dispatcher died holding it). Claimed rows become
    ``sending`` with ``lease_until = now + lease`` and one more attempt.

    Parameters
    ----------
    store : Store
    n : int
        Most rows to claim.
    now : datetime
        Current time (UTC).
    lease : float
        Lease length [s]; pick it longer than a batch takes to send.

    Returns
    -------
    list of dict
        The claimed rows (``id``, ``key``, ``kind``, ``recipient``, ``body``,
        ``attempts`` (this attempt's number), ``valid_until``, ...), oldest due first.
    """
    now = _aware(now)
    until = now + dt.timedelta(seconds=float(lease))
    t = outbox
    # Two index range scans (crashed leases first, then the oldest due), each
    # stopping after n rows; one OR over both would read every due row and sort.
    stale = (select(t.c.id).where(t.c.status == "sending", t.c.lease_until <= now)
             .order_by(t.c.lease_until, t.c.id).limit(int(n)).with_for_update(skip_locked=True).subquery())
    fresh = (select(t.c.id).where(t.c.status == "queued", t.c.next_attempt_at <= now)
             .order_by(t.c.next_attempt_at, t.c.id).limit(int(n)).with_for_update(skip_locked=True)
             .subquery())
    both = union_all(select(stale.c.id), select(fresh.c.id)).subquery()
    ids = select(both.c.id).limit(int(n)).scalar_subquery()
    stmt = (update(t).where(t.c.id.in_(ids))
            .values(status="sending", lease_until=until, attempts=t.c.attempts + 1)
            .returning(t.c.id, t.c.key, t.c.kind, t.c.hazard, t.c.commune_code, t.c.recipient, t.c.body,
                       t.c.attempts, t.c.valid_until, t.c.next_attempt_at))
    with transaction(store) as conn:
        rows = [dict(r) for r in conn.execute(stmt).mappings()]
    rows.sort(key=lambda r: (r["next_attempt_at"], r["id"]))
    for r in rows:
        r["valid_until"] = _db_time(r["valid_until"])
    return rows


# --------------------------------------------------------------------------- rate and backoff


class TokenBucket:
    """Token-bucket rate limiter with reservations (pure: time is passed in).

    ``rate`` tokens per second accrue up to ``burst``; each message takes one.
    :meth:`reserve` always grants the token and returns how long to wait
    before using it, so a caller sleeping that long never exceeds ``rate``
    over any interval beyond the initial ``burst`` (token bucket, e.g. A. S.
    Tanenbaum, *Computer Networks*, 5th ed., §5.4.2).

    Parameters
    ----------
    rate : float
        Sustained rate [messages/s]; 0 or less means unlimited.
    burst : float
        Bucket size [messages], at least 1.
    now : float
        Start time [s]; the bucket starts full.
    """

    def __init__(self, rate: float, burst: float = 1.0, now: float = 0.0) -> None:
        self.rate = float(rate)
        self.burst = max(1.0, float(burst))
        self.tokens = self.burst
        self.updated = float(now)

    def reserve(self, now: float, n: float = 1.0) -> float:
        """Take ``n`` tokens at time ``now`` [s]; return the wait before sending [s]."""
        if self.rate <= 0:
            return 0.0
        now = max(float(now), self.updated)  # a clock going backwards never mints tokens
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


def backoff_delays(attempts: np.ndarray | Sequence[int], base: float, cap: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Retry delays [s] after ``attempts`` failed attempts: capped exponential, full jitter.

    ``delay = uniform(0, min(cap, base * 2 ** (attempts - 1)))`` (M. Brooker,
    "Exponential Backoff And Jitter", AWS Architecture Blog, 2015: "Full
    Jitter" spreads retries of many clients and finishes the work soonest).

    Parameters
    ----------
    attempts : array_like of int
        Attempts made so far (>= 1).
    base, cap : float
        First ceiling and largest ceiling [s].
    rng : numpy.random.Generator
    """
    a = np.maximum(np.asarray(attempts, dtype=float), 1.0)
    ceiling = np.minimum(float(cap), float(base) * np.exp2(np.minimum(a - 1.0, 62.0)))
    return rng.uniform(0.0, 1.0, size=ceiling.shape) * ceiling


# --------------------------------------------------------------------------- dispatcher


@dataclass
class DispatchCounts:
    """What a dispatch did: messages claimed and how each attempt ended."""

    claimed: int = 0
    sent: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    expired: int = 0
    batches: int = 0
    by_error: dict[str, int] = field(default_factory=dict)

    def add(self, other: DispatchCounts) -> None:
        for name in ("claimed", "sent", "delivered", "retried", "failed", "expired", "batches"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for k, v in other.by_error.items():
            self.by_error[k] = self.by_error.get(k, 0) + v

    def as_dict(self) -> dict[str, Any]:
        return {"claimed": self.claimed, "sent": self.sent, "delivered": self.delivered,
                "retried": self.retried, "failed": self.failed, "expired": self.expired,
                "batches": self.batches, "by_error": dict(self.by_error)}


_UPDATE_RESULT = (
    update(outbox).where(outbox.c.id == bindparam("b_id"), outbox.c.status == "sending")
    .values(status=bindparam("b_status"), next_attempt_at=bindparam("b_next"), lease_until=None,
            sent_at=bindparam("b_sent_at"), delivered_at=bindparam("b_delivered_at"),
            provider_id=bindparam("b_provider_id"), gateway=bindparam("b_gateway"),
            last_error=bindparam("b_last_error"))
)


class Dispatcher:
    """Sends due outbox messages through one gateway, batch by batch.

    Parameters
    ----------
    store : Store
    gateway : Gateway
        A gateway instance (its ``send`` never raises for provider problems;
        an exception is still caught and treated as a retryable error).
    settings : AlertSettings, optional
        ``max_attempts``, ``backoff_seconds``, ``backoff_max_seconds``,
        ``lease_seconds``, ``batch_size``, ``rate_per_second`` (0: the
        gateway's ``default_rate_per_second``).
    clock : callable
        Current time [s since the epoch] (default :func:`time.time`).
    sleep : callable
        Waits a number of seconds (default :func:`time.sleep`).
    rng : numpy.random.Generator, optional
        Jitter source (default: a fresh unseeded generator).
    burst : float
        Token-bucket size [messages].
    status_callback : str
        Delivery-report URL put on every message; "" (default) lets the
        gateway use its own (e.g. the Twilio gateway's ``public_url`` +
        its webhook path).
    **overrides
        Any of the settings above by name, e.g. ``batch_size=10``.
    """

    def __init__(self, store: Store, gateway: Gateway, *, settings: AlertSettings | None = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 rng: np.random.Generator | None = None, burst: float = 1.0, status_callback: str = "",
                 **overrides: Any) -> None:
        base = settings or AlertSettings()
        self.settings = base.model_copy(update=overrides) if overrides else base
        s = self.settings
        self.store = store
        self.gateway = gateway
        self.gateway_name = str(getattr(gateway, "name", type(gateway).__name__))
        self.clock = clock
        self.sleep = sleep
        self.rng = rng if rng is not None else np.random.default_rng()
        self.rate = float(s.rate_per_second or getattr(gateway, "default_rate_per_second", 0.0) or 0.0)
        self.bucket = TokenBucket(self.rate, burst, now=clock())
        # A batch must be sent well within its lease, or another dispatcher would
        # take it again: with a rate limit, claim at most half a lease's worth.
        self.batch_size = int(s.batch_size)
        if self.rate > 0:
            self.batch_size = max(1, min(self.batch_size, math.floor(0.5 * s.lease_seconds * self.rate)))
        self.status_callback = status_callback

    # ---- one batch
    def run_once(self, now: dt.datetime | float | None = None) -> DispatchCounts:
        """Claim one batch of due messages, send them, record the results (one transaction).

        Parameters
        ----------
        now : datetime or float, optional
            Claim time (UTC datetime or epoch seconds); default ``clock()``.
        """
        now_dt = _as_datetime(now, self.clock)
        rows = claim(self.store, self.batch_size, now_dt, self.settings.lease_seconds)
        counts = DispatchCounts(claimed=len(rows), batches=int(bool(rows)))
        if not rows:
            return counts
        results: list[dict[str, Any]] = []
        attempts: list[dict[str, Any]] = []
        for row in rows:  # one gateway call per message is the protocol; the database work is batched
            valid = row["valid_until"]
            if valid is not None and valid < now_dt and row["kind"] not in _TIMELESS_KINDS:
                msg = (f"warning window ended {valid:%Y-%m-%d %H:%M}Z before it could be sent; "
                       "not sent late")
                results.append(self._result(row, "expired", None, None, None, msg))
                attempts.append(self._attempt(row, now_dt, now_dt, Receipt(
                    accepted=False, status="expired", error_code="expired", error_message=msg,
                    gateway=self.gateway_name)))
                counts.expired += 1
                continue
            wait = self.bucket.reserve(self.clock())
            if wait > 0:
                self.sleep(wait)
            started = _as_datetime(self.clock(), self.clock)
            receipt = self._send(row)
            finished = _as_datetime(self.clock(), self.clock)
            attempts.append(self._attempt(row, started, finished, receipt))
            results.append(self._outcome(row, receipt, finished, counts))
        self._retry_times(results, now_dt)
        with transaction(self.store) as conn:
            conn.execute(_UPDATE_RESULT, results)
            conn.execute(insert(outbox_attempts), attempts)
        log.info("dispatch via %s: %d claimed, %d sent, %d retry later, %d failed, %d expired",
                 self.gateway_name, counts.claimed, counts.sent + counts.delivered, counts.retried,
                 counts.failed, counts.expired)
        return counts

    def _send(self, row: Mapping[str, Any]) -> Receipt:
        msg = SmsMessage(to=row["recipient"], body=row["body"], key=row["key"],
                         status_callback=self.status_callback)
        try:
            return self.gateway.send(msg)
        except Exception as exc:  # a gateway breaking its protocol must not lose the batch
            text = mask_phone(f"{exc.__class__.__name__}: {exc}")
            log.warning("gateway %s raised on message %s: %s", self.gateway_name, row["id"], text)
            return Receipt(accepted=False, error_code="exception", error_message=text, retryable=True,
                           gateway=self.gateway_name)

    def _attempt(self, row: Mapping[str, Any], started: dt.datetime, finished: dt.datetime,
                 r: Receipt) -> dict[str, Any]:
        return {"message_id": row["id"], "attempt": int(row["attempts"]), "started_at": started,
                "finished_at": finished, "gateway": r.gateway or self.gateway_name,
                "accepted": bool(r.accepted), "provider_id": r.provider_id or "",
                "status": r.status or ("accepted" if r.accepted else "refused"),
                "error_code": r.error_code or "", "error_message": mask_phone(r.error_message or ""),
                "retryable": bool(r.retryable)}

    @staticmethod
    def _result(row: Mapping[str, Any], status: str, sent_at: dt.datetime | None,
                provider_id: str | None, gateway: str | None, error: str | None,
                delivered_at: dt.datetime | None = None) -> dict[str, Any]:
        return {"b_id": row["id"], "b_status": status, "b_next": row["next_attempt_at"],
                "b_sent_at": sent_at, "b_delivered_at": delivered_at, "b_provider_id": provider_id,
                "b_gateway": gateway, "b_last_error": error, "_attempts": int(row["attempts"])}

    def _outcome(self, row: Mapping[str, Any], r: Receipt, finished: dt.datetime,
                 counts: DispatchCounts) -> dict[str, Any]:
        gw = r.gateway or self.gateway_name
        if r.accepted:
            if r.status == "delivered":
                counts.delivered += 1
                return self._result(row, "delivered", finished, r.provider_id, gw, None, finished)
            counts.sent += 1
            return self._result(row, "sent", finished, r.provider_id, gw, None)
        code = r.error_code or "refused"
        counts.by_error[code] = counts.by_error.get(code, 0) + 1
        error = mask_phone(f"{code}: {r.error_message}" if r.error_message else code)
        if r.retryable and int(row["attempts"]) < self.settings.max_attempts:
            counts.retried += 1
            return self._result(row, "queued", None, None, gw, error)
        counts.failed += 1
        why = "" if not r.retryable else f" (gave up after {row['attempts']} attempts)"
        return self._result(row, "failed", None, None, gw, error + why)

    def _retry_times(self, results: list[dict[str, Any]], now: dt.datetime) -> None:
        """Set the next attempt time of every retried message (vectorized backoff)."""
        idx = [i for i, r in enumerate(results) if r["b_status"] == "queued"]
        if idx:
            delays = backoff_delays([results[i]["_attempts"] for i in idx], self.settings.backoff_seconds,
                                    self.settings.backoff_max_seconds, self.rng)
            for i, d in zip(idx, delays.tolist(), strict=True):
                results[i]["b_next"] = now + dt.timedelta(seconds=d)
        for r in results:
            del r["_attempts"]

    # ---- until done
    def next_due(self) -> dt.datetime | None:
        """When the next message becomes due (queued retry or expiring lease); None if none pending."""
        t = outbox
        with self.store.engine.connect() as conn:
            q1 = conn.execute(select(func.min(t.c.next_attempt_at)).where(t.c.status == "queued")).scalar()
            q2 = conn.execute(select(func.min(t.c.lease_until)).where(t.c.status == "sending")).scalar()
        times = [_db_time(v) for v in (q1, q2) if v is not None]
        return min(times) if times else None

    def run_until_empty(self, *, wait: bool = True, max_seconds: float | None = None,
                        max_batches: int | None = None) -> DispatchCounts:
        """Dispatch batches until nothing is queued or in flight.

        Parameters
        ----------
        wait : bool
            Sleep until retries and expired leases become due (True), or stop
            when nothing is due now (False, e.g. in a scheduled job).
        max_seconds : float, optional
            Stop after this long by ``clock`` [s].
        max_batches : int, optional
            Stop after this many batches.
        """
        total = DispatchCounts()
        start = self.clock()
        while max_batches is None or total.batches < max_batches:
            counts = self.run_once()
            total.add(counts)
            if counts.claimed:
                continue
            due = self.next_due()
            if due is None or not wait:
                break
            now = self.clock()
            if max_seconds is not None and now - start >= max_seconds:
                break
            delay = max(0.0, due.timestamp() - now)
            if max_seconds is not None:
                delay = min(delay, max(0.0, start + max_seconds - now))
            self.sleep(delay if delay > 0 else 0.01)
        return total


# --------------------------------------------------------------------------- webhook and status


def mark_delivery(store: Store, provider_id: str, status: str, error_code: str = "", *,
                  now: dt.datetime | None = None) -> int:
    """Record a provider's delivery report for the message with ``provider_id``.

    Parameters
    ----------
    provider_id : str
        The id the gateway returned when it accepted the message.
    status : {"delivered", "undelivered", "failed"}
        Final status reported by the provider.
    error_code : str
        Provider error code for an undelivered/failed message.

    Returns
    -------
    int
        Messages updated (0 when the id is unknown or the message already has
        this final status).

    Raises
    ------
    OutboxError
        ``status`` is not a delivery status.
    """
    if status not in _CALLBACK_STATUSES:
        raise OutboxError(f"delivery report for {provider_id!r}: status {status!r} is not one of "
                          f"{', '.join(_CALLBACK_STATUSES)}; map the provider's word first")
    if not provider_id:
        return 0
    when = _aware(now) or utcnow()
    values: dict[str, Any] = {"status": status}
    if status == "delivered":
        values["delivered_at"] = when
    elif error_code:
        values["last_error"] = f"{error_code}: {status} (delivery report)"
    t = outbox
    with transaction(store) as conn:
        res = conn.execute(update(t).where(
            t.c.provider_id == provider_id, t.c.status.in_(("sent", "delivered", "undelivered", "failed")),
            t.c.status != status).values(**values))
        n = int(res.rowcount or 0)
    log.info("delivery report %s: %s (%d message(s))", provider_id, status, n)
    return n


def outbox_counts(store: Store) -> dict[str, int]:
    """Number of messages in each status (every status listed, zeros included)."""
    t = outbox
    with store.engine.connect() as conn:
        got = dict(conn.execute(select(t.c.status, func.count()).group_by(t.c.status)).all())
    return {s: int(got.get(s, 0)) for s in STATUSES}


def list_messages(store: Store, status: str | None = None, limit: int = 50, *,
                  mask: bool = True) -> pd.DataFrame:
    """The latest messages (newest first) for ``ewarn alerts status``.

    Columns: id, created_at, kind, hazard, commune_code, recipient (masked
    unless ``mask=False``), contact_name, status, attempts, next_attempt_at,
    sent_at, delivered_at, gateway, provider_id, last_error, segments, body.
    """
    if status is not None and status not in STATUSES:
        raise OutboxError(f"unknown message status {status!r}; use one of {', '.join(STATUSES)}")
    t = outbox
    cols = [t.c.id, t.c.created_at, t.c.kind, t.c.hazard, t.c.commune_code, t.c.recipient,
            t.c.contact_name, t.c.status, t.c.attempts, t.c.next_attempt_at, t.c.sent_at,
            t.c.delivered_at, t.c.gateway, t.c.provider_id, t.c.last_error, t.c.segments, t.c.body]
    q = select(*cols).order_by(t.c.id.desc()).limit(int(limit))
    if status is not None:
        q = q.where(t.c.status == status)
    with store.engine.connect() as conn:
        df = pd.DataFrame(conn.execute(q).mappings().all(), columns=[c.name for c in cols])
    for c in ("created_at", "next_attempt_at", "sent_at", "delivered_at"):
        df[c] = pd.to_datetime(df[c], utc=True)
    if mask and not df.empty:
        df["recipient"] = df["recipient"].map(mask_phone)
    return df
