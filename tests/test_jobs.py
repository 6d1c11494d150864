"""The jobs of ``ewarn serve``: retention of old cycles, and what one poll of a drop-folder source returns.

Retention works on archive rows and files built here (ages around the limit, the
newest cycle of a source kept however old). The poll tests run the real
pipeline on one commune of the demo region without terrain (fast) fed with the
demo storm moved to the present.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3  # noqa: F401  before any NetCDF is read: see test_poll_in_a_process_that_read_netcdf_first
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest
from sqlalchemy import func, insert, select

from ewarn import jobs
from ewarn.alerts.outbox import outbox
from ewarn.config import Workspace, init_workspace
from ewarn.demo import build_demo_region
from ewarn.forecasts import synthetic
from ewarn.forecasts.archive import forecasts_table
from ewarn.hazard_models.assess import assessments_table
from ewarn.region import Region, write_region
from ewarn.scenarios.rain import shift_time
from ewarn.store import Store, as_utc, runs
from ewarn.watchdog import incidents

NOW = dt.datetime(2026, 11, 21, 6, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)


# --------------------------------------------------------------------------- retention
@pytest.fixture
def ret_ws(tmp_path) -> Workspace:
    root = init_workspace(tmp_path / "ws").root
    with (root / "ewarn.toml").open("a", encoding="utf-8") as f:
        f.write("\n[service]\nretention_days = 10\n")
    ws = Workspace.open(root)
    Store.open(ws.database_url).ensure()
    return ws


def _add_cycle(ws: Workspace, source: str, cycle: dt.datetime, *, files: bool = True) -> tuple[Path, Path]:
    """One archived forecast (path relative to the workspace, as the archive records it) and its
    assessment (two communes; absolute path, as the pipeline records it), with their files."""
    rel = Path("forecasts") / source / f"{cycle:%Y%m%dT%H}.nc"
    fc = ws.root / rel
    asm = ws.path("assessments", source, f"{cycle:%Y%m%dT%H}.nc")
    if files:
        for p in (fc, asm):
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"CDF\x01")
    with Store.open(ws.database_url).engine.begin() as conn:
        conn.execute(insert(forecasts_table).values(
            source=source, cycle=cycle, path=str(rel), checksum="0" * 64, valid_from=cycle,
            valid_to=cycle + 72 * HOUR, members=0, status="archived", ingested_at=cycle))
        conn.execute(insert(assessments_table), [
            {"source": source, "cycle": cycle, "commune_code": code, "level_max": 2, "path": str(asm),
             "recorded_at": cycle} for code in ("02998", "02947")])
    return fc, asm


def _cycles(ws: Workspace, table) -> dict[str, list[dt.datetime]]:
    with Store.open(ws.database_url).engine.connect() as conn:
        rows = conn.execute(select(table.c.source, table.c.cycle).distinct()).all()
    out: dict[str, list[dt.datetime]] = {}
    for source, cycle in rows:
        out.setdefault(source, []).append(as_utc(cycle))
    return {k: sorted(v) for k, v in out.items()}


def test_retention_deletes_cycles_older_than_the_limit_files_and_rows(ret_ws):
    ws = ret_ws
    old = [NOW - 30 * DAY, NOW - 10 * DAY - HOUR]  # beyond the 10 days
    kept = [NOW - 10 * DAY, NOW - 9 * DAY, NOW - DAY]  # at the limit, inside it, the newest
    files = {c: _add_cycle(ws, "gfs", c) for c in old + kept}
    _add_cycle(ws, "gfs", NOW - 20 * DAY, files=False)  # its files are gone already: the rows still go
    lone_fc, lone_asm = _add_cycle(ws, "ecmwf", NOW - 60 * DAY)  # the only cycle of its source

    removed = jobs.retention(str(ws.root), now=NOW)

    assert removed == {"forecasts": 3, "assessments": 3}  # cycles, not commune rows
    for c in old:
        assert not any(p.exists() for p in files[c]), c
    for c in kept:
        assert all(p.exists() for p in files[c]), c
    assert lone_fc.exists() and lone_asm.exists()  # the newest cycle of a source is kept, however old
    expected = {"gfs": kept, "ecmwf": [NOW - 60 * DAY]}
    assert _cycles(ws, forecasts_table) == expected
    assert _cycles(ws, assessments_table) == expected
    with Store.open(ws.database_url).engine.connect() as conn:  # both communes of a kept cycle stay
        assert conn.execute(select(func.count()).select_from(assessments_table)).scalar() == 2 * 4

    assert jobs.retention(str(ws.root), now=NOW) == {"forecasts": 0, "assessments": 0}  # idempotent


def test_retention_keeps_the_newest_cycle_even_when_every_cycle_is_old(ret_ws):
    ws = ret_ws
    cycles = [NOW - 90 * DAY, NOW - 60 * DAY, NOW - 45 * DAY]
    files = {c: _add_cycle(ws, "gfs", c) for c in cycles}
    assert jobs.retention(str(ws.root), now=NOW) == {"forecasts": 2, "assessments": 2}
    assert _cycles(ws, forecasts_table) == {"gfs": [NOW - 45 * DAY]}
    assert all(p.exists() for p in files[NOW - 45 * DAY])
    assert not any(p.exists() for c in cycles[:2] for p in files[c])


def test_retention_counts_the_limit_from_now(ret_ws):
    ws = ret_ws
    fc, _ = _add_cycle(ws, "gfs", NOW - 11 * DAY)
    _add_cycle(ws, "gfs", NOW)
    assert jobs.retention(str(ws.root), now=NOW - 2 * DAY) == {"forecasts": 0, "assessments": 0}
    assert fc.exists()
    assert jobs.retention(str(ws.root), now=NOW) == {"forecasts": 1, "assessments": 1}
    assert not fc.exists()


def test_retention_keeps_the_rows_of_a_file_it_cannot_delete(ret_ws):
    ws = ret_ws
    stuck, _ = _add_cycle(ws, "gfs", NOW - 30 * DAY, files=False)
    stuck.mkdir(parents=True)  # a folder where the file should be: unlink fails
    gone, _ = _add_cycle(ws, "gfs", NOW - 20 * DAY)
    _add_cycle(ws, "gfs", NOW - DAY)
    removed = jobs.retention(str(ws.root), now=NOW)  # never raises into the scheduler
    assert not gone.exists()
    assert removed["forecasts"] == 1
    assert NOW - 30 * DAY in _cycles(ws, forecasts_table)["gfs"]  # files first: its rows wait for the file


# --------------------------------------------------------------------------- forecast_cycle
CODE = "02998"  # Phúc Khánh, under the demo storm


@pytest.fixture(scope="module")
def tiny_region(tmp_path_factory) -> Path:
    """Phúc Khánh of the demo region without terrain (every cycle then takes ~1 s): its households,
    shelters, roads, its officials and the province duty officers (moved to this commune)."""
    base = tmp_path_factory.mktemp("jobs")
    demo = Region.load(build_demo_region(base / "demo"))
    com = demo.communes[demo.communes["code"] == CODE].reset_index(drop=True)
    w, s, e, n = com.total_bounds
    shelters = demo.shelters[demo.commune_of(demo.shelters["lon"].to_numpy(),
                                             demo.shelters["lat"].to_numpy()) == CODE]
    contacts = demo.contacts[(demo.contacts["commune_code"] == CODE)
                             | (demo.contacts["role"] == "Ban Chỉ huy PCTT tỉnh")]
    roads = demo.roads
    near = [k for k, d in roads.nodes(data=True)
            if w - 0.01 <= d["x"] <= e + 0.01 and s - 0.01 <= d["y"] <= n + 0.01]
    piece = max(nx.weakly_connected_components(roads.subgraph(near)), key=len)
    return write_region(
        base / "region", name="Phúc Khánh", communes=com.drop(columns="legacy_province"),
        households=demo.households[demo.households["commune_code"] == CODE], shelters=shelters,
        contacts=contacts.drop(columns="demo").assign(commune_code=CODE), roads=roads.subgraph(piece).copy(),
        legacy_province={CODE: str(com["legacy_province"].iloc[0])})


@pytest.fixture(scope="module")
def storm(tiny_region):
    """The demo storm on the region's grid (each test moves it to its own cycle)."""
    region = Region.load(tiny_region)
    return synthetic.demo_storm(bounds=region.bounds).load()


@pytest.fixture
def drop_ws(tmp_path, tiny_region) -> Workspace:
    root = init_workspace(tmp_path / "ws").root
    (root / "incoming").mkdir()
    settings = root / "ewarn.toml"
    settings.write_text(
        settings.read_text(encoding="utf-8").replace('region = "region"', f'region = "{tiny_region}"')
        + '\n[forecasts.sources.drop]\nkind = "cf-netcdf"\nvariable = "precipitation"\n'
        'accumulation = "interval"\npath = "incoming"\npattern = "storm-*.nc"\n'
        '\n[service]\nsources = ["drop"]\n', encoding="utf-8")
    return Workspace.open(root)


def _now_hour() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)


def _drop(ws: Workspace, storm, cycle: dt.datetime, order: int) -> Path:
    """The storm moved to ``cycle``, dropped as ``storm-{cycle}.nc``; ``order`` sets its mtime (the
    newest file of the folder is the one read)."""
    ds = shift_time(storm, (cycle - synthetic.DEMO_REFERENCE_TIME).total_seconds() / 3600)
    path = synthetic.write_forecast(ds, ws.root / "incoming" / f"storm-{cycle:%Y%m%dT%H}.nc")
    os.utime(path, (1_700_000_000 + order, 1_700_000_000 + order))
    return path


def _runs(ws: Workspace) -> list[dict]:
    with Store.open(ws.database_url).engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(runs).order_by(runs.c.id)).mappings()]


def _count(ws: Workspace, table, *where) -> int:
    with Store.open(ws.database_url).engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar())


def test_poll_waits_quietly_for_an_empty_drop_folder(drop_ws):
    ws = drop_ws
    assert jobs.forecast_cycle(str(ws.root), "drop") == "waiting"
    (ws.root / "incoming" / "storm-20261121T00.nc.part").write_bytes(b"CDF\x01")  # still being copied
    (ws.root / "incoming" / "storm-20261121T00.nc").write_bytes(b"CDF\x01\x00\x00")  # truncated
    assert jobs.forecast_cycle(str(ws.root), "drop") == "waiting"
    assert _runs(ws) == []  # no run row: an empty folder is not a failed cycle
    assert jobs.watchdog(str(ws.root)) == []


def test_poll_runs_a_new_cycle_once_then_reports_it_unchanged(drop_ws, storm):
    ws = drop_ws
    cycle = _now_hour() - 3 * HOUR
    _drop(ws, storm, cycle, 1)

    assert jobs.forecast_cycle(str(ws.root), "drop") == "ok"
    (row,) = _runs(ws)
    assert (row["status"], row["step"], as_utc(row["cycle"])) == ("ok", "plan", cycle)
    assessment = ws.path("assessments", "drop", f"{cycle:%Y%m%dT%H}.nc")
    assert assessment.exists() and (ws.path("plans", "drop", f"{cycle:%Y%m%dT%H}") / "plan.csv").exists()
    assert _count(ws, assessments_table, assessments_table.c.commune_code == CODE) == 1
    messages = _count(ws, outbox)
    assert messages > 0  # the storm ahead warns the commune
    before = assessment.stat().st_mtime_ns

    assert jobs.forecast_cycle(str(ws.root), "drop") == "unchanged"  # the next poll: same newest file
    assert [r["status"] for r in _runs(ws)] == ["ok", "unchanged"]
    assert assessment.stat().st_mtime_ns == before and _count(ws, outbox) == messages  # nothing redone


def test_a_corrupt_file_fails_the_cycle_and_the_watchdog_opens_one_incident(drop_ws, storm):
    ws = drop_ws
    good = _now_hour() - 3 * HOUR
    _drop(ws, storm, good, 1)
    assert jobs.forecast_cycle(str(ws.root), "drop") == "ok"
    assert jobs.watchdog(str(ws.root)) == []

    # an HTTP error page saved as the next forecast: complete (not a partial file), but no NetCDF
    bad = ws.root / "incoming" / f"storm-{good + 6 * HOUR:%Y%m%dT%H}.nc"
    bad.write_text("<html><body>503 Service Unavailable</body></html>", encoding="utf-8")
    os.utime(bad, (1_700_000_002, 1_700_000_002))
    assert jobs.forecast_cycle(str(ws.root), "drop") == "failed"
    last = _runs(ws)[-1]
    assert last["status"] == "failed" and last["step"] == "ingest" and bad.name in last["message"]
    assert ws.path("assessments", "drop", f"{good:%Y%m%dT%H}.nc").exists()  # the last good one stays

    assert jobs.watchdog(str(ws.root)) == ["opened failed_cycle:drop"]
    (inc,) = _incidents(ws)
    assert inc["kind"] == "failed_cycle" and inc["closed_at"] is None and "ingest" in inc["message"]
    ops = _count(ws, outbox, outbox.c.kind == "incident")
    assert ops == 2  # the two province duty officers, once
    assert jobs.forecast_cycle(str(ws.root), "drop") == "failed"  # the next poll fails again...
    assert jobs.watchdog(str(ws.root)) == []  # ...and nothing more is sent
    assert _count(ws, outbox, outbox.c.kind == "incident") == ops

    bad.unlink()  # the operator removes it; the next good cycle arrives
    _drop(ws, storm, good + HOUR, 3)
    assert jobs.forecast_cycle(str(ws.root), "drop") == "ok"
    assert jobs.watchdog(str(ws.root)) == ["closed failed_cycle:drop"]
    assert _count(ws, outbox, outbox.c.kind == "incident") == 2 * ops  # one recovery message each


def _incidents(ws: Workspace) -> list[dict]:
    with Store.open(ws.database_url).engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(incidents).order_by(incidents.c.id)).mappings()]


def test_poll_in_a_process_that_read_netcdf_first(drop_ws, storm):
    """A fresh process that opens a NetCDF file (e.g. the region's terrain) before its first database
    access still runs a cycle: the poll is 'ok', never an exception out of the job.

    xarray's backend discovery imports cfgrib → eccodes, whose wheel loads its own libsqlite3 3.26
    globally; ewarn/__init__.py imports sqlite3 and pyproj first so they keep the right libraries."""
    ws = drop_ws
    path = _drop(ws, storm, _now_hour() - 3 * HOUR, 1)
    code = ("import xarray as xr; from ewarn import jobs; import sys;"
            f"xr.open_dataset({str(path)!r}).close();"
            f"print(jobs.forecast_cycle({str(ws.root)!r}, 'drop'))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EWARN_")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "ok"
