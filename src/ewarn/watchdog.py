"""The watchdog of ``ewarn serve``: tell operators, once, when the service itself is failing.

Four checks, each per subject (a forecast source, a gateway, the outbox):

``stale_forecast``
    the newest archived cycle of a scheduled source is older than
    ``[service] stale_hours`` (or no cycle has arrived that long after the
    first attempt);
``failed_cycle``
    the latest run of a source's cycle failed (the step and the cause are
    quoted);
``gateway``
    the last ``[service] gateway_failures`` send attempts through a gateway
    were all refused;
``backlog``
    more than ``[service] backlog_limit`` messages are waiting to be sent.

A failing check opens an **incident** (table ``incidents``) and queues one
operator SMS through the same outbox as warnings (contacts whose role is in
``[alerts] operator_roles``); while it stays open nothing more is sent; when
the check passes again the incident is closed and a recovery SMS is queued.
Idempotency keys make a repeated check, or two watchdogs racing, harmless.
Operators can acknowledge an incident (status page); that silences nothing
(there is nothing more to silence) but records who took it.

Texts are Vietnamese (with diacritics, or không dấu for contacts who asked)
or English per contact; times shown are Asia/Ho_Chi_Minh.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import Column, DateTime, Integer, String, Table, Text, and_, func, insert, select, update

from ewarn.config import LOCAL_TZ, Workspace
from ewarn.store import Store, metadata, runs, utcnow
from ewarn.store import as_utc as _aware

__all__ = ["INCIDENT_KINDS", "Finding", "acknowledge", "check", "evaluate", "incidents", "open_incidents"]

log = logging.getLogger("ewarn.watchdog")

INCIDENT_KINDS = ("stale_forecast", "failed_cycle", "gateway", "backlog")

incidents = Table(
    "incidents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("subject", String(128), nullable=False, default=""),
    Column("message", Text, nullable=False, default=""),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True)),
    Column("acknowledged_at", DateTime(timezone=True)),
    Column("acknowledged_by", Text),
)


@dataclass(frozen=True)
class Finding:
    """The result of one check for one subject: ``problem`` is None when healthy."""

    kind: str
    subject: str
    problem: str | None
    problem_vi: str | None = None


def _local(t: dt.datetime) -> str:
    return f"{t.astimezone(ZoneInfo(LOCAL_TZ)):%H:%M %d/%m}"


def evaluate(ws: Workspace, now: dt.datetime | None = None) -> list[Finding]:
    """Run every check; one :class:`Finding` per (kind, subject), healthy ones included."""
    from ewarn.alerts.outbox import outbox, outbox_attempts
    from ewarn.forecasts.archive import forecasts_table

    now = now or utcnow()
    svc = ws.settings.service
    store = Store.open(ws.database_url)
    store.ensure()
    found: list[Finding] = []
    with store.engine.connect() as conn:
        for source in svc.sources:
            newest = _aware(conn.execute(select(func.max(forecasts_table.c.cycle))
                                         .where(forecasts_table.c.source == source)).scalar())
            first_try = _aware(conn.execute(select(func.min(runs.c.started_at))
                                            .where(runs.c.source == source)).scalar())
            limit = dt.timedelta(hours=svc.stale_hours)
            problem = problem_vi = None
            if newest is not None and now - newest > limit:
                age = (now - newest).total_seconds() / 3600
                problem = (f"no new forecast from source {source} since cycle {newest:%Y-%m-%d %H}Z "
                           f"({age:.0f} h, limit {svc.stale_hours:g} h): check the source")
                problem_vi = (f"nguồn dự báo {source} không có bản tin mới từ {_local(newest)} "
                              f"({age:.0f} giờ, quá {svc.stale_hours:g} giờ): kiểm tra nguồn dữ liệu")
            elif newest is None and first_try is not None and now - first_try > limit:
                problem = f"no forecast from source {source} has arrived since {first_try:%Y-%m-%d %H:%M}Z"
                problem_vi = f"chưa nhận được dự báo nào của nguồn {source} từ {_local(first_try)}"
            found.append(Finding("stale_forecast", source, problem, problem_vi))

            last = conn.execute(select(runs.c.status, runs.c.step, runs.c.message, runs.c.cycle)
                                .where(runs.c.source == source, runs.c.status != "running")
                                .order_by(runs.c.id.desc()).limit(1)).first()
            problem = problem_vi = None
            if last is not None and last.status == "failed":
                problem = f"the cycle of source {source} failed at step '{last.step}': {last.message[:200]}"
                problem_vi = f"chu trình dự báo nguồn {source} lỗi ở bước '{last.step}': {last.message[:120]}"
            found.append(Finding("failed_cycle", source, problem, problem_vi))

        n = svc.gateway_failures
        recent = conn.execute(select(outbox_attempts.c.gateway, outbox_attempts.c.accepted)
                              .order_by(outbox_attempts.c.id.desc()).limit(50 * n)).all()
        by_gateway: dict[str, list[bool]] = {}
        for gw, accepted in recent:
            by_gateway.setdefault(gw or "?", []).append(bool(accepted))
        for gw, outcomes in by_gateway.items():
            last_n = outcomes[:n]
            failing = len(last_n) >= n and not any(last_n)
            found.append(Finding(
                "gateway", gw,
                f"the last {n} messages through gateway {gw} were all refused" if failing else None,
                f"{n} tin nhắn gần nhất qua cổng SMS {gw} đều bị từ chối" if failing else None))

        waiting = int(conn.execute(select(func.count()).select_from(outbox)
                                   .where(outbox.c.status.in_(("queued", "sending")))).scalar() or 0)
        over = waiting > svc.backlog_limit
        found.append(Finding(
            "backlog", "outbox",
            f"{waiting} messages are waiting to be sent (limit {svc.backlog_limit})" if over else None,
            f"{waiting} tin nhắn đang chờ gửi (giới hạn {svc.backlog_limit})" if over else None))
    return found


def open_incidents(store: Store) -> pd.DataFrame:
    """Open incidents, oldest first (for the status page and ``ewarn status``)."""
    store.ensure()
    with store.engine.connect() as conn:
        rows = conn.execute(select(incidents).where(incidents.c.closed_at.is_(None))
                            .order_by(incidents.c.id)).mappings().all()
    return pd.DataFrame(rows, columns=[c.name for c in incidents.columns])


def acknowledge(store: Store, incident_id: int, by: str, now: dt.datetime | None = None) -> bool:
    """Record that an operator took an incident; False if there is no such open incident."""
    with store.engine.begin() as conn:
        res = conn.execute(update(incidents).where(incidents.c.id == incident_id,
                                                   incidents.c.closed_at.is_(None))
                           .values(acknowledged_at=now or utcnow(), acknowledged_by=by[:200]))
    return res.rowcount > 0


def _operator_rows(ws: Workspace, incident_id: int, phase: str, text_vi: str, text_en: str,
                   now: dt.datetime) -> list[dict]:
    from ewarn.alerts.encoding import segments, sms_encoding, unaccented
    from ewarn.region import Region

    try:
        contacts = Region.load(ws.region_dir).contacts
    except Exception as exc:  # the watchdog must keep running even if the region is broken
        log.error("watchdog: cannot read the contacts of the region (%s); incident %d is not sent",
                  exc, incident_id)
        return []
    roles = {r.strip().casefold() for r in ws.settings.alerts.operator_roles}
    ops = contacts[contacts["role"].astype(str).str.strip().str.casefold().isin(roles)]
    rows = []
    for c in ops.itertuples(index=False):
        body = text_en if str(c.language) == "en" else text_vi
        if bool(c.unaccented):
            body = unaccented(body)
        rows.append({"key": f"incident-{incident_id}-{phase}-{c.phone}", "kind": "incident",
                     "hazard": "", "commune_code": "", "recipient": c.phone, "contact_name": c.name,
                     "role": c.role, "language": c.language, "body": body, "encoding": sms_encoding(body),
                     "segments": segments(body), "notice_id": f"incident-{incident_id}",
                     "next_attempt_at": now})
    return rows


def check(ws: Workspace, now: dt.datetime | None = None) -> list[str]:
    """Run the checks, open and close incidents, queue the operator SMS.

    Returns
    -------
    list of str
        What changed, e.g. ``["opened stale_forecast:gfs", "closed gateway:twilio"]``.
    """
    from ewarn.alerts.outbox import enqueue

    now = now or utcnow()
    store = Store.open(ws.database_url)
    store.ensure()
    findings = evaluate(ws, now)
    current = open_incidents(store)
    open_by_key = {(r.kind, r.subject): r for r in current.itertuples(index=False)}
    changes: list[str] = []
    sender = ws.settings.alerts.sender
    for f in findings:
        key = (f.kind, f.subject)
        if f.problem is not None and key not in open_by_key:
            with store.engine.begin() as conn:
                iid = conn.execute(insert(incidents).values(kind=f.kind, subject=f.subject, message=f.problem,
                                                            opened_at=now)).inserted_primary_key[0]
            rows = _operator_rows(ws, iid, "open", f"[{sender}] SỰ CỐ hệ thống: {f.problem_vi}",
                                  f"[{sender}] SYSTEM INCIDENT: {f.problem}", now)
            if rows:
                enqueue(store, rows, now=now)
            log.warning("incident %d opened: %s", iid, f.problem)
            changes.append(f"opened {f.kind}:{f.subject}")
        elif f.problem is None and key in open_by_key:
            inc = open_by_key[key]
            with store.engine.begin() as conn:
                conn.execute(update(incidents).values(closed_at=now).where(
                    and_(incidents.c.id == inc.id, incidents.c.closed_at.is_(None))))
            opened = _aware(inc.opened_at)
            rows = _operator_rows(
                ws, int(inc.id), "close",
                f"[{sender}] ĐÃ KHẮC PHỤC sự cố từ {_local(opened)}: {_incident_vi(f.kind, f.subject)}",
                f"[{sender}] RESOLVED since {opened:%Y-%m-%d %H:%M}Z: {inc.message[:100]}", now)
            if rows:
                enqueue(store, rows, now=now)
            log.warning("incident %d closed (%s %s recovered)", inc.id, f.kind, f.subject)
            changes.append(f"closed {f.kind}:{f.subject}")
    return changes


def _incident_vi(kind: str, subject: str) -> str:
    return {
        "stale_forecast": f"nguồn dự báo {subject} đã có bản tin mới",
        "failed_cycle": f"chu trình dự báo nguồn {subject} đã chạy lại thành công",
        "gateway": f"cổng SMS {subject} gửi được trở lại",
        "backlog": "hàng đợi tin nhắn đã giảm",
    }.get(kind, f"{kind} {subject}")
