"""Soak: ``ewarn serve`` running many forecast cycles on a small region — memory growth and latency.

A real ``ewarn serve`` process (file gateway, SQLite workspace in a
temporary folder) watches a drop-folder source polled every second, with the
outbox dispatched every second. A feeder in this script drops a new forecast
cycle every ``--interval`` seconds for ``--minutes`` minutes (``--quick``:
3 minutes) and measures:

* **cycle latency**: wall time from the atomic drop of the file
  (``os.replace``) to the ``finished_at`` of the service's ``ok`` run row of
  that (source, cycle) — poll delay, ingest, assessment, alerts, plan;
* **memory**: the resident set size (RSS) of the service process sampled
  every ``--sample`` seconds (psutil when installed, else ``VmRSS`` of
  ``/proc/PID/status``). Steady state starts when the first
  ``WARMUP_CYCLES`` (30) cycles are done: imports, caches of the terrain, the
  cell→commune weights and the road graph are filled by then, and so is
  the archive the 7-day antecedent rain is read from (28 cycles of 6 h;
  before that each cycle reads one archived forecast more than the last, so
  its working memory grows by design). Each steady cycle has a floor (the
  lowest sample from its drop to the next: what the service retains) and a
  peak (the highest: a cycle at work); the medians over the first
  ``WINDOW_CYCLES`` (20) steady cycles are compared with those over the last
  20. Target: growth ≤ 10 % of both (issue #7). ``--analyze DIR`` re-reports
  a soak kept with ``--keep DIR``.

Baselines, measured in the same run: the RSS of the same service idle
(started, polling an empty folder, before the first drop), and the latency
of the first steady cycles (a latency that creeps up over the hour is
something accumulating: rows scanned, files listed, caches).

The region is two real communes of the demo region (Phúc Khánh, crossed by the
demo storm, and Bảo Yên, which holds the province duty officers), cut from the
demo region with its terrain, households, shelters, contacts and roads; each
cycle is the demo storm moved in time (:func:`ewarn.scenarios.rain.shift_time`).

Every cycle needs a reference time of its own. They run every
``CYCLE_STEP_HOURS`` (6 h, a GFS-like cadence, so the antecedent rain reads the
same ~28 archived cycles per cycle as in operation) from 12 h before the start
(younger than ``[service] stale_hours``), so most of them lie in the future
(validation notes it, as a warning). To keep
the work of every cycle the same, the workspace's
``[routing] planning_window_hours`` is widened to cover the last of them: the
roads closed by the hazard are computed for every cycle (with the default 24 h
window a forecast starting after tomorrow closes none); the storm is always
ahead, so every cycle runs the alert policy in earnest (the first warns the
communes, later ones queue the operators' summary and warn again only when a
level changes or a reminder is due). The feeder drops the next
cycle only once the service has finished the previous one (none is
superseded unseen; the time it waits is reported) and keeps the newest
``KEEP_FILES`` files in the folder (a mirror that cleans up after itself).

Measured 2026-11-22 on the shared 2-core machine, 60 min, 180 cycles (code
of commit 262fb1f; other jobs ran on the machine in parts of the hour):
180 ok, 0 failed, 0 tracebacks, 368 SMS, database 4.8 MB. Latency p50 /
p95 / max 14.6 / 16.7 / 19.5 s beside 13.5 s for the first steady cycles
(last cycles: 13.5 s, 1.00×). RSS idle 248 MB; floor (median of 20 cycles)
562 → 571 MB, +1.6 % — PASS; peak (median of 20 cycles) 1272 → 1289 MB,
+1.3 % — PASS; highest sample of the windows 1440 → 1400 MB; floor trend
+8.6 MB per 100 cycles. With the first version of this report (3 warm-up
cycles, windows of 5 cycles, the window's lowest and highest sample) the
same run read floor 548 → 568 MB (+3.6 %, PASS) and peak 1262 → 1394 MB
(+10.4 %, MISS): its first window fell in the cycles whose antecedent
archive was still filling, and one 2-s sample decided each peak (per-cycle
peaks of the whole hour ranged 1030-1440 MB with no trend after cycle 30).
On 2026-11-21, before ``ewarn serve`` capped the malloc arenas, the floor
grew 632 → 1046 MB (+66 %) in an hour.

Run: ``.venv/bin/python benchmarks/soak_service.py --quick`` (about 4 min);
``.venv/bin/python benchmarks/soak_service.py`` (about 62 min).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np

#: Hours between the reference times of successive cycles [h] (a GFS-like cadence).
CYCLE_STEP_HOURS = 6
#: Days of antecedent rain each cycle reads from the archive (``pipeline``: ``antecedent(days=7)``).
ANTECEDENT_DAYS = 7
#: Cycles run before steady state [-]: imports, terrain and road caches, compilation, and the
#: archive filling the antecedent window — until then each cycle reads one archived cycle more
#: than the one before, so its working memory grows by design (7 days of 6-hourly cycles = 28).
WARMUP_CYCLES = ANTECEDENT_DAYS * 24 // CYCLE_STEP_HOURS + 2
#: Cycles in each compared window (start and end of the steady state) [-]. The RSS is sampled
#: every 2 s in cycles of ~15 s, so the peak of one cycle is a sample of its true peak: the
#: windows compare the MEDIAN over 20 cycles of each cycle's floor and peak.
WINDOW_CYCLES = 20
#: Growth limit of the RSS between the two windows [%] (issue #7).
GROWTH_LIMIT_PCT = 10.0
#: Source profile of the drop folder.
SOURCE = "drop"
#: Files kept in each drop folder [-].
KEEP_FILES = 3
#: The two communes of the soak region (Phúc Khánh, Bảo Yên).
COMMUNES = ("02998", "02947")
#: Margin around the communes kept of the terrain and the roads [deg].
MARGIN_DEG = 0.02


# --------------------------------------------------------------------------- the small region
def build_small_region(dest: Path, scratch: Path) -> Path:
    """Cut the demo region down to :data:`COMMUNES` and write it as a region folder.

    Households, shelters and contacts inside the communes are kept; the
    terrain and the roads are cut to the communes' bounds plus
    :data:`MARGIN_DEG` (the largest weakly connected piece of the roads).
    """
    import networkx as nx

    from ewarn.demo import build_demo_region
    from ewarn.region import Region, write_region

    demo = Region.load(build_demo_region(scratch / "demo-region"))
    communes = demo.communes[demo.communes["code"].isin(COMMUNES)].reset_index(drop=True)
    w, s, e, n = communes.total_bounds
    w, s, e, n = w - MARGIN_DEG, s - MARGIN_DEG, e + MARGIN_DEG, n + MARGIN_DEG
    inside = set(communes["code"])
    shelters = demo.shelters[np.isin(demo.commune_of(demo.shelters["lon"].to_numpy(),
                                                      demo.shelters["lat"].to_numpy()), list(inside))]
    terrain = demo.terrain.sel(latitude=slice(s, n), longitude=slice(w, e)).load()
    roads = demo.roads
    keep = [k for k, d in roads.nodes(data=True) if w <= d["x"] <= e and s <= d["y"] <= n]
    sub = roads.subgraph(keep)
    biggest = max(nx.weakly_connected_components(sub), key=len)
    roads = roads.subgraph(biggest).copy()
    legacy = dict(zip(communes["code"], communes["legacy_province"], strict=True))
    return write_region(
        dest, name="Soak: Phúc Khánh – Bảo Yên", communes=communes.drop(columns="legacy_province"),
        households=demo.households[demo.households["commune_code"].isin(inside)],
        shelters=shelters.reset_index(drop=True),
        contacts=demo.contacts[demo.contacts["commune_code"].isin(inside)].drop(columns="demo"),
        terrain=terrain, roads=roads, legacy_province=legacy, meta={"demo": True},
        description="Two communes of the demo region, for the service soak (synthetic data).")


# --------------------------------------------------------------------------- the service
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def configure(ws: Path, window_hours: float) -> None:
    """A drop-folder source polled every second; dispatch every second; a wide planning window."""
    (ws / "incoming" / SOURCE).mkdir(parents=True, exist_ok=True)
    path = ws / "ewarn.toml"
    text = path.read_text(encoding="utf-8")
    text = text.replace("[routing]\n", f"[routing]\nplanning_window_hours = {window_hours:g}\n", 1)
    text += (f'\n[forecasts.sources.{SOURCE}]\nkind = "cf-netcdf"\nvariable = "precipitation"\n'
             f'accumulation = "interval"\npath = "incoming/{SOURCE}"\npattern = "storm-*.nc"\n'
             f'\n[service]\nsources = ["{SOURCE}"]\npoll_seconds = 1\ndispatch_seconds = 1\n'
             "watchdog_seconds = 30\n")
    path.write_text(text, encoding="utf-8")


def start_service(ws: Path, port: int, log: Path,
                  extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EWARN_", "TWILIO_"))}
    env.update({"COLUMNS": "200", "NO_COLOR": "1", **(extra_env or {})})
    with log.open("w", encoding="utf-8") as out:  # a file, not a pipe: nothing to drain, nothing blocks
        return subprocess.Popen([sys.executable, "-m", "ewarn.cli", "serve", "--port", str(port),
                                 "-w", str(ws)], stdout=out, stderr=subprocess.STDOUT, env=env)


def stop_service(proc: subprocess.Popen) -> int | None:
    """SIGTERM, wait for the job in progress, SIGKILL if it does not stop."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def healthy(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


def rss_bytes(pid: int) -> int | None:
    """Resident set size of a process [bytes]; None once it is gone."""
    try:
        import psutil
    except ImportError:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return None


class Sampler(threading.Thread):
    """RSS of a process every ``every`` seconds: a list of (monotonic time [s], RSS [bytes])."""

    def __init__(self, pid: int, every: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            rss = rss_bytes(self.pid)
            if rss is not None:
                self.samples.append((time.monotonic(), rss))
            self.stop.wait(self.every)

    def between(self, t0: float, t1: float) -> list[int]:
        return [r for t, r in self.samples if t0 <= t <= t1]


# --------------------------------------------------------------------------- the feeder
@dataclass
class Drop:
    """One cycle dropped: source, reference time, when (monotonic and UTC), when finished."""

    source: str
    cycle: dt.datetime
    dropped_mono: float
    dropped_utc: dt.datetime
    finished_utc: dt.datetime | None = None
    finished_mono: float | None = None
    status: str | None = None

    @property
    def latency(self) -> float | None:
        if self.finished_utc is None:
            return None
        return (self.finished_utc - self.dropped_utc).total_seconds()


@dataclass
class Feeder:
    """Writes shifted demo storms into the drop folders and follows the run rows of the service."""

    ws: Path
    t0: dt.datetime
    base: object  # the demo storm (xarray.Dataset) on the region's grid
    drops: list[Drop] = field(default_factory=list)
    waited_s: float = 0.0

    def cycle_of(self, k: int) -> dt.datetime:
        """The reference time of the k-th cycle: 12 h before the start, then every CYCLE_STEP_HOURS."""
        return self.t0 + dt.timedelta(hours=CYCLE_STEP_HOURS * k - 12)

    def drop(self, k: int) -> Drop:
        from ewarn.forecasts import synthetic
        from ewarn.scenarios.rain import shift_time

        source, cycle = SOURCE, self.cycle_of(k)
        ds = shift_time(self.base, (cycle - synthetic.DEMO_REFERENCE_TIME).total_seconds() / 3600)
        name = f"storm-{cycle:%Y%m%dT%H}.nc"
        tmp = self.ws / "incoming" / f".{source}-{name}.part"
        synthetic.write_forecast(ds, tmp)
        folder = self.ws / "incoming" / source
        os.replace(tmp, folder / name)  # atomic, as an FTP mirror or rsync finishes a file
        d = Drop(source, cycle, time.monotonic(), dt.datetime.now(dt.UTC))
        self.drops.append(d)
        for old in sorted(folder.glob("storm-*.nc"))[:-KEEP_FILES]:
            old.unlink(missing_ok=True)
        return d

    def follow(self) -> None:
        """Fill in the finish of every dropped cycle whose run row is done (ok or failed)."""
        from sqlalchemy import select

        from ewarn.store import Store, as_utc, runs

        pending = {(d.source, d.cycle): d for d in self.drops if d.finished_utc is None}
        if not pending:
            return
        store = Store.open(f"sqlite:///{self.ws / 'ewarn.db'}")
        oldest = min(c for _, c in pending)
        with store.engine.connect() as conn:
            rows = conn.execute(select(runs.c.source, runs.c.cycle, runs.c.status, runs.c.finished_at)
                                .where(runs.c.status.in_(("ok", "failed")), runs.c.cycle >= oldest,
                                       runs.c.job == "cycle")).all()
        now = time.monotonic()
        for source, cycle, status, finished in rows:
            d = pending.get((source, as_utc(cycle)))
            if d is not None and finished is not None:
                d.finished_utc, d.finished_mono, d.status = as_utc(finished), now, status

    def wait_done(self, d: Drop, timeout: float, proc: subprocess.Popen) -> bool:
        t = time.monotonic()
        while time.monotonic() - t < timeout:
            self.follow()
            if d.finished_utc is not None:
                return True
            if proc.poll() is not None:
                raise RuntimeError(f"ewarn serve exited ({proc.returncode}); see its log")
            time.sleep(0.25)
        return False


# --------------------------------------------------------------------------- report
def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def mb(b: float) -> str:
    return f"{b / 2**20:.0f}"


def print_table(rows: list[tuple]) -> None:
    header = ("measurement", "ewarn serve", "baseline", "ratio", "target", "result")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(5)]
    print("  ".join(h.ljust(w) for h, w in zip(header, [*widths, 6], strict=False)))
    for r in rows:
        verdict = "" if r[5] is None else ("PASS" if r[5] else "MISS")
        print("  ".join(str(c).ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  " + verdict)


def growth(a: float, b: float) -> float:
    return (b - a) / a * 100.0


def warmup(n_ok: int) -> int:
    """Warm-up cycles for a soak of ``n_ok`` cycles: :data:`WARMUP_CYCLES`, or 3 in a short soak
    (``--quick``: too short to fill the antecedent window; its memory windows then compare cycles of
    growing work)."""
    return WARMUP_CYCLES if n_ok >= WARMUP_CYCLES + 8 else min(3, n_ok)


def per_cycle_samples(t: np.ndarray, rss: np.ndarray, drops: list[float], last_end: float
                      ) -> list[np.ndarray]:
    """The RSS samples of each cycle: from its drop to the next cycle's drop (``last_end`` for the last)."""
    edges = np.searchsorted(t, [*drops, last_end], side="left")
    return [rss[a:b] for a, b in pairwise(edges)]


def memory_rows(per_cycle: list[np.ndarray], win: int, idle: float) -> tuple[list[tuple], bool]:
    """The memory part of the report from the RSS samples of each steady cycle [bytes].

    Each cycle's floor (lowest sample from its drop to the next drop: what
    the service retains) and peak (highest: a cycle at work); the median
    floor and median peak of the first ``win`` steady cycles against those of
    the last ``win`` (target: growth ≤ GROWTH_LIMIT_PCT each), the maxima of
    the two windows (info: one sample decides them) and the floor's trend.
    """
    cycles = [c for c in per_cycle if len(c)]
    floors = np.array([min(c) for c in cycles], dtype=float)
    peaks = np.array([max(c) for c in cycles], dtype=float)
    f0, f1 = float(np.median(floors[:win])), float(np.median(floors[-win:]))
    p0, p1 = float(np.median(peaks[:win])), float(np.median(peaks[-win:]))
    floor_g, peak_g = growth(f0, f1), growth(p0, p1)
    per_100 = float(np.polyfit(np.arange(floors.size), floors, 1)[0]) * 100 if floors.size > 2 else np.nan
    lim = f"growth ≤ {GROWTH_LIMIT_PCT:g} %"
    rows: list[tuple] = [
        ("RSS idle service [MB]", mb(idle), "", "", "(info)", None),
        (f"RSS floor, median of {win} cycles, first → last [MB]", f"{mb(f0)} → {mb(f1)}", mb(idle),
         f"{f1 / idle:.2f}× idle", lim, floor_g <= GROWTH_LIMIT_PCT),
        ("RSS floor growth [%]", f"{floor_g:+.1f}", "", "", lim, floor_g <= GROWTH_LIMIT_PCT),
        (f"RSS peak, median of {win} cycles, first → last [MB]", f"{mb(p0)} → {mb(p1)}", mb(idle),
         f"{p1 / idle:.2f}× idle", lim, peak_g <= GROWTH_LIMIT_PCT),
        ("RSS peak growth [%]", f"{peak_g:+.1f}", "", "", lim, peak_g <= GROWTH_LIMIT_PCT),
        (f"RSS highest sample, first → last {win} cycles [MB]",
         f"{mb(peaks[:win].max())} → {mb(peaks[-win:].max())}", "",
         f"{growth(peaks[:win].max(), peaks[-win:].max()):+.1f} %", "(info)", None),
        ("RSS floor trend, steady cycles [MB / 100 cycles]", f"{per_100 / 2**20:+.1f}", "", "", "(info)",
         None),
        ("RSS samples (steady)", f"{sum(len(c) for c in cycles)}", "", "", "(info)", None),
    ]
    return rows, floor_g <= GROWTH_LIMIT_PCT and peak_g <= GROWTH_LIMIT_PCT


def analyze(folder: Path) -> int:
    """Re-report the memory of a kept soak (``rss.csv``, ``cycles.csv`` of ``--keep``) with these windows."""
    import pandas as pd

    rss = pd.read_csv(folder / "rss.csv")
    cyc = pd.read_csv(folder / "cycles.csv")
    ok = cyc[cyc["status"] == "ok"].reset_index(drop=True)
    warm = warmup(len(ok))
    steady = ok.iloc[warm:]
    if len(steady) < 4:
        print(f"{folder}: {len(steady)} steady cycles after {warm} warm-up cycles: too few")
        return 1
    t, r = rss["t_s"].to_numpy(), rss["rss_mb"].to_numpy() * 2**20
    per_cycle = per_cycle_samples(t, r, list(steady["dropped_s"]), float(steady["finished_s"].iloc[-1]) + 1.0)
    idle = float(np.median(r[t < float(ok["dropped_s"].iloc[0])]))
    win = min(WINDOW_CYCLES, len(steady) // 2)
    print(f"{folder}: {len(ok)} ok cycles, {len(steady)} steady (after {warm} warm-up cycles), "
          f"windows of {win} cycles")
    rows, passed = memory_rows(per_cycle, win, idle)
    print_table(rows)
    print(f"soak memory: {'PASS' if passed else 'MISS'}")
    return 0


def report(feeder: Feeder, sampler: Sampler, idle: list[int], minutes: float, interval: float,
           wall_s: float, log: Path, ws: Path) -> bool:
    from sqlalchemy import func, select

    from ewarn.store import Store, runs

    done = [d for d in feeder.drops if d.status == "ok"]
    failed = [d for d in feeder.drops if d.status == "failed"]
    lost = [d for d in feeder.drops if d.status is None]
    warm = warmup(len(done))
    steady = done[warm:]
    lat = [d.latency for d in steady]
    store = Store.open(f"sqlite:///{ws / 'ewarn.db'}")
    with store.engine.connect() as conn:
        by_status = dict(conn.execute(select(runs.c.status, func.count()).group_by(runs.c.status)).all())
    sent_file = ws / "outbox" / "sent.jsonl"
    sent = sum(1 for _ in sent_file.open(encoding="utf-8")) if sent_file.exists() else 0
    db_mb = sum(p.stat().st_size for p in ws.glob("ewarn.db*")) / 2**20
    out = log.read_text(encoding="utf-8", errors="replace")
    tracebacks = out.count("Traceback")

    print(f"soak_service: ewarn serve on {len(COMMUNES)} communes of the demo region, a drop-folder "
          f"source polled every 1 s, dispatch every 1 s; a cycle dropped every {interval:g} s "
          f"for {minutes:g} min ({wall_s / 60:.1f} min of wall time)")
    print("baselines: RSS — the same service idle before the first drop; latency — the first "
          f"{min(WINDOW_CYCLES, len(steady) // 2)} steady cycles (after {warm} warm-up cycles)")
    rows: list[tuple] = [
        ("cycles ok / failed / unfinished", f"{len(done)} / {len(failed)} / {len(lost)}", "", "",
         "none failed", not failed and not lost),
        ("feeder waited for the service [s]", f"{feeder.waited_s:.0f}", "", "", "(info)", None),
        ("run rows by status", ", ".join(f"{k} {v}" for k, v in sorted(by_status.items())), "", "",
         "(info)", None),
        ("SMS sent (file gateway) / database size [MB]", f"{sent} / {db_mb:.1f}", "", "", "(info)", None),
        ("tracebacks in the service log", f"{tracebacks}", "", "", "0", tracebacks == 0),
    ]
    ok = not failed and not lost and tracebacks == 0
    win = min(WINDOW_CYCLES, len(steady) // 2)
    if win < 2:
        print_table(rows)
        print(f"too few steady cycles ({len(steady)}) to compare two windows: run longer")
        return False
    first, last = steady[:win], steady[-win:]
    lat_first = [d.latency for d in first]
    lat_last = [d.latency for d in last]
    idle_med = statistics.median(idle) if idle else float("nan")
    rows += [
        ("steady cycles", f"{len(steady)}", "", "", "(info)", None),
        ("latency p50 / p95 / max [s]", f"{pct(lat, 50):.1f} / {pct(lat, 95):.1f} / {max(lat):.1f}",
         f"{pct(lat_first, 50):.1f} / {pct(lat_first, 95):.1f} / {max(lat_first):.1f}",
         f"{pct(lat, 50) / pct(lat_first, 50):.2f}×", "(info)", None),
        (f"latency p50, last {win} cycles [s]", f"{pct(lat_last, 50):.1f}",
         f"{pct(lat_first, 50):.1f}", f"{pct(lat_last, 50) / pct(lat_first, 50):.2f}×", "(info)", None),
    ]
    t, r = (np.array(v, dtype=float) for v in zip(*sampler.samples, strict=True))
    per_cycle = per_cycle_samples(t, r, [d.dropped_mono for d in steady], steady[-1].finished_mono + 1.0)
    mem_rows, mem_ok = memory_rows(per_cycle, win, idle_med)
    rows += mem_rows
    print_table(rows)
    return ok and mem_ok


def save_samples(folder: Path, sampler: Sampler, feeder: Feeder) -> None:
    """``rss.csv`` (seconds since the first sample, RSS [MB]) and ``cycles.csv`` (per dropped cycle)."""
    t0 = sampler.samples[0][0] if sampler.samples else 0.0
    (folder / "rss.csv").write_text("t_s,rss_mb\n" + "".join(
        f"{t - t0:.1f},{r / 2**20:.1f}\n" for t, r in sampler.samples), encoding="utf-8")
    (folder / "cycles.csv").write_text("cycle,status,dropped_s,finished_s,latency_s\n" + "".join(
        f"{d.cycle:%Y-%m-%dT%H}Z,{d.status},{d.dropped_mono - t0:.1f},"
        f"{'' if d.finished_mono is None else f'{d.finished_mono - t0:.1f}'},"
        f"{'' if d.latency is None else f'{d.latency:.2f}'}\n" for d in feeder.drops), encoding="utf-8")


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=60.0, help="length of the soak [min] (default 60)")
    p.add_argument("--quick", action="store_true", help="a 3-minute soak, to try it out")
    p.add_argument("--interval", type=float, default=20.0,
                   help="a cycle dropped every N seconds (default 20)")
    p.add_argument("--sample", type=float, default=2.0, help="RSS sampled every N seconds (default 2)")
    p.add_argument("--keep", type=Path, default=None,
                   help="keep the workspace, the service log and the samples (rss.csv, cycles.csv) in this "
                   "(new) folder")
    p.add_argument("--service-env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment of the service, e.g. MALLOC_ARENA_MAX=2 (repeatable)")
    p.add_argument("--analyze", type=Path, default=None, metavar="DIR",
                   help="re-report the memory of a soak kept with --keep DIR (no service is run)")
    args = p.parse_args(argv)
    if args.analyze is not None:
        return analyze(args.analyze)
    extra_env = dict(item.split("=", 1) for item in args.service_env)
    minutes = 3.0 if args.quick else args.minutes
    n_cycles = max(1, int(minutes * 60 // args.interval))
    window_h = CYCLE_STEP_HOURS * n_cycles + 72 + 48  # the last cycle's forecast, with room

    from ewarn.config import init_workspace
    from ewarn.forecasts import synthetic
    from ewarn.region import Region

    tmp = None
    if args.keep is None:
        tmp = tempfile.TemporaryDirectory(prefix="ewarn-soak-")
        root = Path(tmp.name)
    else:
        root = args.keep.resolve()
        root.mkdir(parents=True, exist_ok=False)
    proc: subprocess.Popen | None = None
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        ws = init_workspace(root / "ws").root
        build_small_region(ws / "region", root)
        configure(ws, window_h)
        region = Region.load(ws / "region")
        base = synthetic.demo_storm(bounds=region.bounds, terrain=region.terrain).load()
        t0 = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
        feeder = Feeder(ws, t0, base)
        port = free_port()
        log = root / "serve.log"
        print(f"soak_service: {len(region.households)} households, {len(region.shelters)} shelters, "
              f"{region.roads.number_of_nodes()} road nodes; terrain {dict(region.terrain.sizes)}; "
              f"up to {n_cycles} cycles; workspace {ws}", flush=True)

        proc = start_service(ws, port, log, extra_env)
        end = time.monotonic() + 300
        while not healthy(port):
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"ewarn serve did not start:\n{log.read_text()}")
            time.sleep(0.5)
        sampler = Sampler(proc.pid, args.sample)
        sampler.start()
        time.sleep(max(10.0, 3 * args.sample))  # idle: polling empty folders, dispatching nothing
        idle = sampler.between(0, time.monotonic())

        start = time.monotonic()
        deadline = start + minutes * 60
        k = 0
        prev: Drop | None = None
        while time.monotonic() < deadline and k < n_cycles:
            due = start + k * args.interval
            if time.monotonic() < due:
                time.sleep(due - time.monotonic())
            if prev is not None and prev.finished_utc is None:  # the service is behind: wait for it
                t = time.monotonic()
                if not feeder.wait_done(prev, 600, proc):
                    raise RuntimeError(f"cycle {prev.cycle:%Y-%m-%dT%H}Z did not finish in 600 s; see {log}")
                feeder.waited_s += time.monotonic() - t
            prev = feeder.drop(k)
            feeder.follow()
            if k % 10 == 0:
                done = sum(d.status is not None for d in feeder.drops)
                rss = sampler.samples[-1][1] if sampler.samples else 0
                print(f"  {(time.monotonic() - start) / 60:5.1f} min: {k + 1} dropped, {done} finished, "
                      f"RSS {mb(rss)} MB", flush=True)
            k += 1
        if prev is not None:
            feeder.wait_done(prev, 600, proc)
        feeder.follow()
        wall = time.monotonic() - start
        sampler.stop.set()
        sampler.join()
        if extra_env:
            print(f"service environment: {' '.join(f'{k}={v}' for k, v in extra_env.items())}")
        passed = report(feeder, sampler, idle, minutes, args.interval, wall, log, ws)
        if args.keep is not None:
            save_samples(root, sampler, feeder)
        print(f"soak: {'PASS' if passed else 'MISS'}")
        return 0
    finally:
        if proc is not None:
            code = stop_service(proc)
            if code not in (0, None):
                print(f"ewarn serve exited with {code}; log: {root / 'serve.log'}")
        signal.signal(signal.SIGTERM, previous)
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    raise SystemExit(main())
