"""The service schedule: one scheduler per workspace, persistent jobs, missed runs caught up once."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
import time

import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

from ewarn.config import Workspace, init_workspace
from ewarn.scheduler import (
    JOBS_TABLE,
    ServiceError,
    ServiceLock,
    _cron_hours,
    build_scheduler,
    job_specs,
    schedule_jobs,
)

CALLS: list[str] = []
CALLED = threading.Event()


def record(tag: str) -> None:
    """A job for these tests (referenced by text, like the real jobs)."""
    CALLS.append(tag)
    CALLED.set()


@pytest.fixture
def ws(tmp_path) -> Workspace:
    root = init_workspace(tmp_path / "ws").root
    (root / "ewarn.toml").write_text(
        (root / "ewarn.toml").read_text() + '\n[forecasts.sources.drop]\nkind = "cf-netcdf"\n'
        'path = "incoming"\nschedule_hours = [0, 12]\navailability_delay_hours = 7.5\n'
        '\n[service]\nsources = ["drop"]\npoll_seconds = 60\n')
    return Workspace.open(root)


def test_lock_is_exclusive_and_released(tmp_path):
    with ServiceLock(tmp_path), pytest.raises(
            ServiceError, match=r"another 'ewarn serve' \(pid \d+\) is already running"):
        ServiceLock(tmp_path).acquire()
    ServiceLock(tmp_path).acquire().release()  # free again once released


def test_lock_is_dropped_when_the_holder_is_killed(tmp_path):
    code = ("import sys, time; from pathlib import Path; from ewarn.scheduler import ServiceLock;"
            f"lock = ServiceLock(Path({str(tmp_path)!r})).acquire(); print('locked', flush=True);"
            "time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(ServiceError, match=f"pid {proc.pid}"):
            ServiceLock(tmp_path).acquire()
    finally:
        proc.kill()
        proc.wait()
    ServiceLock(tmp_path).acquire().release()


def test_publication_hours():
    assert _cron_hours([0, 6, 12, 18], 7.0) == ("1,7,13,19", 0)
    assert _cron_hours([0, 12], 7.5) == ("7,19", 30)


def test_job_specs_from_settings(ws):
    specs = {s.id: s for s in job_specs(ws)}
    assert set(specs) == {"forecast:drop", "forecast-publication:drop", "dispatch", "watchdog", "retention"}
    assert specs["forecast:drop"].func == "ewarn.jobs:forecast_cycle"
    assert specs["forecast:drop"].args == (str(ws.root), "drop")
    assert "hour='7,19', minute='30'" in str(specs["forecast-publication:drop"].trigger)


def test_unknown_source_is_refused(ws):
    ws.settings.service.sources.append("nope")
    with pytest.raises(ServiceError, match="'nope', which is not a forecast source"):
        job_specs(ws)


def test_job_defaults_and_store(ws):
    sched = build_scheduler(ws)
    sched.start(paused=True)
    try:
        outcome = schedule_jobs(sched, job_specs(ws))
        assert set(outcome.values()) == {"added"}
        job = sched.get_job("forecast-publication:drop")
        assert job.coalesce is True and job.max_instances == 1
        assert job.misfire_grace_time == ws.settings.service.misfire_grace_seconds
        assert job.next_run_time.utcoffset() == dt.timedelta(0)
    finally:
        sched.shutdown(wait=False)
    sched = build_scheduler(ws)
    sched.start(paused=True)
    try:  # restarted: the same jobs are found in the database and kept
        assert set(schedule_jobs(sched, job_specs(ws)).values()) == {"kept"}
    finally:
        sched.shutdown(wait=False)


def test_missed_run_fires_once_after_restart(ws):
    """Down across three publication times: on restart the job runs once, not zero times, not thrice."""
    from apscheduler.triggers.cron import CronTrigger

    from ewarn.scheduler import JobSpec

    spec = JobSpec("pub", "test_scheduler:record", ("pub",), CronTrigger(minute=0, timezone=dt.UTC), "t")
    sched = build_scheduler(ws)
    sched.start(paused=True)
    schedule_jobs(sched, [spec])
    sched.shutdown(wait=False)
    # the service was down for 3 h (hourly publications, inside the 6 h misfire grace)
    store = SQLAlchemyJobStore(url=ws.database_url, tablename=JOBS_TABLE)
    store.start(build_scheduler(ws), "default")
    job = store.lookup_job("pub")
    job.next_run_time = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
    store.update_job(job)
    store.shutdown()

    CALLS.clear()
    CALLED.clear()
    sched = build_scheduler(ws)
    sched.start(paused=True)
    try:
        assert schedule_jobs(sched, [spec]) == {"pub": "kept"}
        sched.resume()
        assert CALLED.wait(20), "the missed publication run did not fire after the restart"
        time.sleep(1.0)  # would a second (uncoalesced) run follow?
        assert CALLS == ["pub"]
        assert sched.get_job("pub").next_run_time > dt.datetime.now(dt.UTC)
    finally:
        sched.shutdown(wait=False)


def test_changed_trigger_replaces_the_job(ws):
    from apscheduler.triggers.cron import CronTrigger

    from ewarn.scheduler import JobSpec

    sched = build_scheduler(ws)
    sched.start(paused=True)
    try:
        schedule_jobs(sched, [JobSpec("j", "test_scheduler:record", ("a",), CronTrigger(hour=1), "t"),
                              JobSpec("old", "test_scheduler:record", ("b",), CronTrigger(hour=2), "t")])
        out = schedule_jobs(sched, [JobSpec("j", "test_scheduler:record", ("a",), CronTrigger(hour=5), "t")])
        assert out == {"old": "removed", "j": "added"}
        assert "hour='5'" in str(sched.get_job("j").trigger)
    finally:
        sched.shutdown(wait=False)
