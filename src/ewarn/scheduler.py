"""The schedule of ``ewarn serve``: forecast cycles, outbox dispatch, watchdog, retention.

APScheduler 3.x with its jobs persisted in the workspace database
(``SQLAlchemyJobStore``), so a publication time missed while the service was
down runs once when it comes back (``coalesce=True`` merges the missed runs,
``misfire_grace_time`` bounds how late is still useful), never twice
(``max_instances=1``). Jobs are referenced by text (``"ewarn.jobs:..."``) so
that the job store holds no pickled code, and carry explicit ids. All times
are UTC.

One scheduler per workspace: :class:`ServiceLock` holds an OS file lock on
``{workspace}/ewarn.lock`` for the life of the process; a second
``ewarn serve`` on the same workspace stops with a clear message.

References
----------
APScheduler 3.x user guide, "Missed job executions and coalescing" and
"Limiting the number of concurrently executing instances of a job".
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from ewarn.config import Workspace
from ewarn.errors import EwarnError

__all__ = ["JOBS_TABLE", "JobSpec", "ServiceError", "ServiceLock", "build_scheduler", "job_specs",
           "limit_malloc_arenas", "release_free_memory", "schedule_jobs"]

log = logging.getLogger("ewarn.scheduler")

#: Table of the APScheduler job store in the workspace database.
JOBS_TABLE = "apscheduler_jobs"
LOCK_FILE = "ewarn.lock"


class ServiceError(EwarnError):
    """The service cannot start (another one holds the workspace, a bad schedule); says what to do."""


class ServiceLock:
    """An exclusive OS lock on a workspace for the life of one ``ewarn serve``.

    ``fcntl.flock`` on ``{workspace}/ewarn.lock``: the kernel drops the lock
    when the process dies, even by SIGKILL, so a crashed service never
    blocks its restart.
    """

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / LOCK_FILE
        self._fh: Any = None

    def acquire(self) -> ServiceLock:
        """Take the lock, or raise :class:`ServiceError` naming the process that holds it."""
        fh = self.path.open("a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise ServiceError(
                f"another 'ewarn serve' (pid {holder}) is already running on workspace {self.path.parent}; "
                "only one service may run per workspace: stop it first (or use another workspace)"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        """Give the lock back (idempotent)."""
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> ServiceLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass(frozen=True)
class JobSpec:
    """One scheduled job: id, function reference (text), arguments and trigger."""

    id: str
    func: str
    args: tuple[Any, ...]
    trigger: Any
    name: str


def _cron_hours(schedule_hours: list[int], delay_hours: float) -> tuple[str, int]:
    """Cron hour list and minute at which the cycles of a source become available.

    A cycle at ``h`` UTC published ``delay`` hours later is looked for at
    ``(h + delay) mod 24`` (the minute part of the delay is kept).
    """
    minutes = round(delay_hours * 60)
    hours = sorted({(h * 60 + minutes) // 60 % 24 for h in schedule_hours})
    return ",".join(str(h) for h in hours), minutes % 60


def job_specs(workspace: Workspace) -> list[JobSpec]:
    """The jobs a workspace's settings call for.

    - ``forecast:{source}``: poll each ``[service] sources`` entry every
      ``poll_seconds`` (a drop folder or a path that is refreshed);
    - ``forecast-publication:{source}``: for sources with ``schedule_hours``,
      also at each publication time (cycle hour + ``availability_delay_hours``);
      this is the job whose missed runs are caught up after a restart;
    - ``dispatch``, ``watchdog``, ``retention``.

    Raises
    ------
    ServiceError
        A source in ``[service] sources`` is not a configured profile.
    """
    s = workspace.settings
    root = str(workspace.root)
    specs: list[JobSpec] = []
    for name in s.service.sources:
        profile = s.forecasts.sources.get(name)
        if profile is None:
            known = ", ".join(sorted(s.forecasts.sources)) or "none"
            raise ServiceError(f"[service] sources names '{name}', which is not a forecast source; "
                               f"the sources are: {known} (define it under [forecasts.sources.{name}])")
        specs.append(JobSpec(f"forecast:{name}", "ewarn.jobs:forecast_cycle", (root, name),
                             IntervalTrigger(seconds=s.service.poll_seconds, timezone=dt.UTC),
                             f"poll source {name}"))
        if profile.schedule_hours:
            hours, minute = _cron_hours(profile.schedule_hours, profile.availability_delay_hours)
            specs.append(JobSpec(f"forecast-publication:{name}", "ewarn.jobs:forecast_cycle", (root, name),
                                 CronTrigger(hour=hours, minute=minute, timezone=dt.UTC),
                                 f"source {name} at its publication times"))
    specs.append(JobSpec("dispatch", "ewarn.jobs:dispatch_outbox", (root,),
                         IntervalTrigger(seconds=s.service.dispatch_seconds, timezone=dt.UTC),
                         "send queued messages"))
    specs.append(JobSpec("watchdog", "ewarn.jobs:watchdog", (root,),
                         IntervalTrigger(seconds=s.service.watchdog_seconds, timezone=dt.UTC),
                         "check forecasts, cycles, gateway, outbox"))
    specs.append(JobSpec("retention", "ewarn.jobs:retention", (root,),
                         CronTrigger(hour=3, minute=17, timezone=dt.UTC), "delete old forecasts"))
    return specs


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas for a long-running service (no-op elsewhere).

    Each thread that allocates (the scheduler's workers, uvicorn) may get its
    own arena, and the large, short-lived numpy buffers of a forecast cycle
    then fragment them: the resident size of ``ewarn serve`` grew by 66 % over
    a 1-hour soak with the default, and by about 1 % with 2 arenas
    (``benchmarks/soak_service.py``). Same effect as ``MALLOC_ARENA_MAX=2``,
    set from inside the process before the worker threads start
    (``mallopt(M_ARENA_MAX)``, glibc ``malloc.h``).

    Returns
    -------
    bool
        Whether the limit was set (False on non-glibc systems).
    """
    try:
        return bool(_libc().mallopt(-8, int(arenas)))  # M_ARENA_MAX = -8
    except (OSError, AttributeError):
        return False


def release_free_memory() -> None:
    """Give freed heap pages back to the system after a cycle (glibc ``malloc_trim``; no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        _libc().malloc_trim(0)


@functools.cache
def _libc() -> Any:
    """The C library (``ctypes.CDLL``); OSError where there is none to load."""
    import ctypes
    import ctypes.util

    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def build_scheduler(workspace: Workspace, *, threads: int = 2) -> BackgroundScheduler:
    """A (not started) background scheduler whose jobs live in the workspace database."""
    grace = int(workspace.settings.service.misfire_grace_seconds)
    return BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=workspace.database_url, tablename=JOBS_TABLE)},
        executors={"default": ThreadPoolExecutor(threads)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": grace},
        timezone=dt.UTC,
    )


def schedule_jobs(scheduler: BackgroundScheduler, specs: list[JobSpec]) -> dict[str, str]:
    """Put the jobs in the store, keeping the pending run time of an unchanged job.

    ``add_job(..., replace_existing=True)`` would recompute the next run
    time and so drop a run missed while the service was down; a job whose
    function, arguments and trigger are unchanged is therefore left as stored
    (its overdue run fires once when the scheduler resumes). Jobs of the
    store that the settings no longer ask for are removed.

    The scheduler must be started paused (``scheduler.start(paused=True)``)
    so the stored jobs can be read; resume it afterwards.

    Returns
    -------
    dict of str to str
        Job id → ``kept``, ``added`` or ``removed``.
    """
    outcome: dict[str, str] = {}
    wanted = {spec.id for spec in specs}
    for job in scheduler.get_jobs():
        if job.id not in wanted:
            scheduler.remove_job(job.id)
            outcome[job.id] = "removed"
    for spec in specs:
        job = scheduler.get_job(spec.id)
        if (job is not None and job.func_ref == spec.func and tuple(job.args) == spec.args
                and str(job.trigger) == str(spec.trigger) and job.next_run_time is not None):
            outcome[spec.id] = "kept"
            continue
        scheduler.add_job(spec.func, trigger=spec.trigger, args=list(spec.args), id=spec.id, name=spec.name,
                          replace_existing=True)
        outcome[spec.id] = "added"
    return outcome
