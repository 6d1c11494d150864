"""The jobs ``ewarn serve`` runs, referenced by text from the job store (``"ewarn.jobs:NAME"``).

Each job takes the workspace root as a string (what the job store can hold),
opens the workspace, does one thing, and never lets an exception escape into
the scheduler: a failure is recorded (run rows, outbox attempts) and logged,
and the watchdog turns it into an operator alert.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from sqlalchemy import delete, select

from ewarn.config import Workspace
from ewarn.errors import EwarnError
from ewarn.store import Store, utcnow
from ewarn.store import as_utc as _aware

__all__ = ["dispatch_outbox", "forecast_cycle", "retention", "watchdog"]

log = logging.getLogger("ewarn.jobs")


def forecast_cycle(root: str, source: str) -> str:
    """Run the newest complete cycle of ``source`` that has not been run yet.

    The source's ``path`` (a drop folder, a file refreshed in place, a URL)
    is read through :func:`ewarn.pipeline.run_cycle`, which is idempotent per
    (source, cycle): a cycle already done is recognised after ingestion and
    nothing is assessed or sent again.

    Returns
    -------
    str
        ``ok``, ``unchanged`` (nothing new), ``waiting`` (no complete file yet)
        or ``failed``.
    """
    from ewarn.forecasts import ForecastError
    from ewarn.pipeline import PipelineError, run_cycle

    ws = Workspace.open(Path(root))
    profile = ws.settings.forecasts.sources.get(source)
    target = profile.path if profile is not None and profile.path else None
    if target and not Path(target).is_absolute() and "://" not in target:
        target = str(ws.root / target)
    if profile is not None and target and Path(target).is_dir():
        from ewarn.forecasts.dropfolder import watch_folder
        from ewarn.forecasts.reader import DEFAULT_PATTERNS

        pattern = profile.pattern or DEFAULT_PATTERNS.get(profile.kind, "*")
        try:
            ready = watch_folder(Path(target), pattern, kind=profile.kind)
        except ForecastError as exc:
            log.error("source %s: %s", source, exc)
            return "failed"
        if not ready:  # nothing (complete) dropped yet: not a failed cycle
            log.debug("source %s: no complete file in %s yet", source, target)
            return "waiting"
    try:
        result = run_cycle(ws, source, target)
    except PipelineError as exc:
        cause = exc.__cause__
        if isinstance(cause, ForecastError) and "no complete file" in str(cause):
            log.info("source %s: %s", source, cause)
            return "waiting"
        log.error("%s", exc)
        return "failed"
    except EwarnError as exc:
        log.error("source %s: %s", source, exc)
        return "failed"
    log.info("source %s cycle %s: %s", source, result.cycle, result.status)
    if result.status == "ok":
        from ewarn.scheduler import release_free_memory

        release_free_memory()  # a cycle's large numpy buffers are freed: hand the pages back
    return result.status


def dispatch_outbox(root: str) -> dict[str, int]:
    """Send the messages that are due (the alerts room's dispatcher, one batch round)."""
    from ewarn.alerts import service
    from ewarn.pipeline import open_gateway

    ws = Workspace.open(Path(root))
    store = Store.open(ws.database_url)
    try:
        gateway = open_gateway(ws)
    except EwarnError as exc:
        log.error("dispatch: %s", exc)
        return {}
    try:
        return service.dispatch(store, gateway, ws.settings.alerts).as_dict()
    except EwarnError as exc:
        log.error("dispatch: %s", exc)
        return {}
    finally:
        gateway.close()


def watchdog(root: str) -> list[str]:
    """Check the service's health and alert operators once per incident (see :mod:`ewarn.watchdog`)."""
    from ewarn import watchdog as wd

    ws = Workspace.open(Path(root))
    try:
        return wd.check(ws)
    except EwarnError as exc:
        log.error("watchdog: %s", exc)
        return []


def retention(root: str, *, now: dt.datetime | None = None) -> dict[str, int]:
    """Delete archived forecasts and assessments older than ``[service] retention_days``.

    Files go first, then their database rows; the newest cycle of each source
    is always kept, however old, so the status page and the antecedent rain
    never lose their last good data.

    Returns
    -------
    dict
        Number of forecast and assessment files removed.
    """
    from ewarn.forecasts.archive import forecasts_table
    from ewarn.hazard_models.assess import assessments_table

    ws = Workspace.open(Path(root))
    store = Store.open(ws.database_url)
    cutoff = (now or utcnow()) - dt.timedelta(days=ws.settings.service.retention_days)
    removed = {"forecasts": 0, "assessments": 0}
    for key, table in (("forecasts", forecasts_table), ("assessments", assessments_table)):
        with store.engine.begin() as conn:
            rows = conn.execute(select(table.c.source, table.c.cycle, table.c.path)).all()
        newest: dict[str, dt.datetime] = {}
        for src, cyc, _ in rows:
            newest[src] = max(newest.get(src, cyc), cyc)
        old = {(src, cyc, p) for src, cyc, p in rows
               if _aware(cyc) < cutoff and cyc != newest[src]}
        stuck: set[tuple[str, dt.datetime]] = set()
        for src, cyc, p in old:
            if p:
                path = Path(p) if Path(p).is_absolute() else ws.root / p
                try:
                    path.unlink(missing_ok=True)
                except OSError as exc:  # keep its rows: the file is still there, try again next time
                    log.error("retention: cannot delete %s (%s); its %s rows are kept", path, exc, key)
                    stuck.add((src, cyc))
        with store.engine.begin() as conn:
            for src, cyc in {(src, cyc) for src, cyc, _ in old} - stuck:
                conn.execute(delete(table).where(table.c.source == src, table.c.cycle == cyc))
                removed[key] += 1
    if any(removed.values()):
        log.info("retention: removed %(forecasts)d forecast and %(assessments)d assessment cycle(s)", removed)
    return removed


