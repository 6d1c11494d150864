"""`ewarn serve` end to end, as a real process on 127.0.0.1: a forecast dropped in a folder becomes an
assessment, SMS (file gateway) and a changed status page; killed with SIGKILL mid-cycle and restarted,
the cycle completes once and no message is sent twice; a second service on the workspace is refused."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ewarn.config import init_workspace
from ewarn.demo import build_demo_region
from ewarn.forecasts import synthetic
from ewarn.region import Region
from ewarn.scenarios.rain import shift_time

pytestmark = pytest.mark.slow

#: Generous: a cycle of the demo region takes 20-60 s on a loaded 2-core machine.
WAIT_S = 420


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def _wait(what: str, check, proc: subprocess.Popen | None = None, timeout: float = WAIT_S):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"ewarn serve exited ({proc.returncode}) while waiting for {what}:\n{out}")
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def _serve(ws: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EWARN_", "TWILIO_"))}
    env.update({"COLUMNS": "200", "NO_COLOR": "1"})
    return subprocess.Popen([sys.executable, "-m", "ewarn.cli", "serve", "--port", str(port), "-w", str(ws)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _drop(ws: Path, region: Region, cycle: dt.datetime) -> None:
    """The demo storm moved to ``cycle``, dropped into the folder atomically (what an FTP mirror does)."""
    ds = synthetic.demo_storm(bounds=region.bounds, terrain=region.terrain)
    ds = shift_time(ds, (cycle - synthetic.DEMO_REFERENCE_TIME).total_seconds() / 3600)
    tmp = ws / f"storm-{cycle:%Y%m%dT%H}.nc.part"
    synthetic.write_forecast(ds, tmp)
    os.replace(tmp, ws / "incoming" / f"storm-{cycle:%Y%m%dT%H}.nc")


def _sql(ws: Path, query: str) -> list:
    eng = create_engine(f"sqlite:///{ws / 'ewarn.db'}")
    try:
        with eng.connect() as c:
            return list(c.execute(text(query)))
    except Exception:  # the service may hold the schema half-made at the very start
        return []
    finally:
        eng.dispose()


def _sent(ws: Path) -> list[dict]:
    path = ws / "outbox" / "sent.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_serve_drop_folder_kill_and_restart(tmp_path):
    ws = init_workspace(tmp_path / "ws").root
    build_demo_region(ws / "region")
    (ws / "incoming").mkdir(exist_ok=True)
    with (ws / "ewarn.toml").open("a", encoding="utf-8") as f:
        f.write('\n[forecasts.sources.drop]\nkind = "cf-netcdf"\nvariable = "precipitation"\n'
                'accumulation = "interval"\npath = "incoming"\npattern = "storm-*.nc"\n'
                '\n[service]\nsources = ["drop"]\npoll_seconds = 2\ndispatch_seconds = 1\n'
                'watchdog_seconds = 30\n')
    region = Region.load(ws / "region")
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    first, second = now - dt.timedelta(hours=2), now - dt.timedelta(hours=1)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"

    proc = _serve(ws, port)
    try:
        _wait("/healthz", lambda: _get(f"{base}/healthz")[0] == 200, proc)
        status, page = _get(f"{base}/")
        assert status == 200 and "<svg" in page
        assert _get(f"{base}/api/assessments/latest")[0] == 404  # nothing yet

        # a second service on the same workspace is refused, clearly
        other = subprocess.run([sys.executable, "-m", "ewarn.cli", "serve", "--port", str(_free_port()),
                                "-w", str(ws)], capture_output=True, text=True, timeout=120)
        assert other.returncode != 0 and "already running on workspace" in other.stderr

        _drop(ws, region, first)
        _wait("the first cycle's SMS", lambda: len(_sent(ws)) > 0, proc)
        _, body = _wait("the assessment", lambda: (r := _get(f"{base}/api/assessments/latest"))[0] == 200
                           and r, proc)
        latest = json.loads(body)
        assert latest["source"] == "drop"
        phuc_khanh = next(c for c in latest["communes"] if c["code"] == "02998")
        assert phuc_khanh["level_max"] >= 2
        _wait("the first cycle to finish", lambda: _sql(
            ws, "select count(*) from runs where source='drop' and status='ok' and step='plan'")[0][0] == 1,
              proc)
        status, page = _get(f"{base}/")
        assert "Phúc Khánh" in page and f"{(first + dt.timedelta(hours=7)):%H:%M}" in page
        assert any("Phúc Khánh" in m["body"] for m in _sent(ws))

        # the next cycle: kill the service while it is running it
        _drop(ws, region, second)
        _wait("the second cycle to start", lambda: _sql(
            ws, "select count(*) from runs where source='drop' and status='running'")[0][0] >= 1, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    proc = _serve(ws, port)  # the lock died with the process: the restart is allowed
    try:
        _wait("the second cycle to finish after the restart", lambda: _sql(
            ws, "select count(*) from runs where status='ok' and step='plan' and cycle like "
                f"'{second:%Y-%m-%d %H}%'")[0][0] >= 1, proc)
        time.sleep(4)  # a few more polls and dispatches: nothing may run twice
        per_cycle = _sql(ws, "select cycle, count(*) from runs where status='ok' and step='plan' "
                             "group by cycle order by cycle")
        assert [n for _, n in per_cycle] == [1, 1], per_cycle  # each cycle completed exactly once
        keys = [m["key"] for m in _sent(ws)]
        assert len(keys) == len(set(keys)), "a message was sent twice"
        _wait("the outbox to drain", lambda: _sql(
            ws, "select count(*) from outbox where status in ('queued', 'sending')")[0][0] == 0, proc, 60)
        assert _sql(ws, "select count(*) from outbox")[0][0] == len(keys)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out
    assert "ewarn serve: stopped" in out
    assert "Traceback" not in out, out
    failed = _sql(ws, "select step, message from runs where status = 'failed'")
    assert failed == [], failed
