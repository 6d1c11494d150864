"""Benchmark: the SMS outbox — enqueue 10,000 messages and dispatch them, beside bare INSERTs.

Two measurements on a file-backed SQLite workspace database (WAL, as ewarn
opens it) in a temporary folder:

* **enqueue**: :func:`ewarn.alerts.outbox.enqueue` of 10,000 messages (one
  transaction, ``INSERT ... ON CONFLICT (key) DO NOTHING`` executemany,
  validation and defaults). Baseline: the same 10,000 rows as bare
  ``INSERT``\\ s through :mod:`sqlite3` ``executemany`` in one transaction
  into a table with the outbox's columns and indexes (no SQLAlchemy, no
  validation). Target: ≤ 1 s.
* **dispatch**: a :class:`~ewarn.alerts.outbox.Dispatcher` (default batch of
  100, no rate limit) sends the 10,000 messages through a zero-latency
  gateway: claims, attempt records, status updates, one transaction per batch.
  Baseline: the bare loop calling the same gateway 10,000 times. The
  overhead per message is (dispatch − bare loop) / 10,000. Target: ≤ 0.5 ms.

Each timing is the best of ``REPEATS`` runs on a fresh database.

Measured on the shared 2-core machine (2026-11-21): enqueue 0.26-0.28 s
(2-3× the bare INSERTs), dispatch overhead 0.06 ms per message (about 5×
one bare INSERT); the claim is two index range scans, so it does not grow
with the number of queued messages.

Run: ``.venv/bin/python benchmarks/bench_alerts.py`` (about 10 s).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _timing import timed

from ewarn.alerts.gateways.base import Receipt, SmsMessage
from ewarn.alerts.outbox import Dispatcher, enqueue, outbox_counts
from ewarn.store import Store

N = 10_000
REPEATS = 3
ENQUEUE_TARGET_S = 1.0
OVERHEAD_TARGET_MS = 0.5
# a cycle of this hour, so the warnings' windows (valid_until) are still open when dispatched
CYCLE = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
BODY = ("[ewarn] CẢNH BÁO lũ quét, sạt lở đất cấp 3 tại xã Bảo Yên (Lào Cai) từ 19:00 09/09 đến "
        "19:00 10/09, mưa 24 giờ 427 mm. Tránh xa suối, taluy dốc; sơ tán đến Trường THCS Bảo Yên.")


class ZeroGateway:
    """Accepts everything at once (the Gateway protocol, no I/O)."""

    name = "zero"
    default_rate_per_second = 0.0

    def __init__(self) -> None:
        self.n = 0

    @classmethod
    def from_settings(cls, options, environ):  # pragma: no cover - protocol only
        return cls()

    def send(self, message: SmsMessage) -> Receipt:
        self.n += 1
        return Receipt(accepted=True, provider_id=f"Z{self.n}", status="queued", gateway=self.name)

    def close(self) -> None:
        pass


def make_rows(tag: str) -> list[dict]:
    until = CYCLE + dt.timedelta(days=3)
    return [{"key": f"{tag}-{i:06d}", "kind": "warning", "hazard": "flash_landslide",
             "commune_code": f"{2900 + i % 300:05d}", "recipient": f"+8498{i:07d}",
             "contact_name": "Hoàng Đức Cường", "role": "Chủ tịch UBND xã", "language": "vi",
             "body": BODY, "encoding": "UCS-2", "segments": 3, "valid_until": until, "source": "bench",
             "cycle": CYCLE, "notice_id": f"ewarn-bench-20240907T12-{i % 300:05d}-flash_landslide-warning-3"}
            for i in range(N)]


def fresh_store(folder: Path, name: str) -> Store:
    return Store.open(f"sqlite:///{(folder / name).as_posix()}")


def bare_inserts(path: Path, rows: list[dict]) -> int:
    """The baseline: sqlite3 executemany of the same rows into a same-shaped table, one transaction."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("DROP TABLE IF EXISTS bare")
    con.execute("CREATE TABLE bare AS SELECT * FROM outbox WHERE 0")
    con.execute("CREATE UNIQUE INDEX bare_key ON bare(key)")
    con.execute("CREATE INDEX bare_due ON bare(status, next_attempt_at)")
    con.execute("CREATE INDEX bare_pid ON bare(provider_id)")
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    cols = ["key", "kind", "hazard", "commune_code", "recipient", "contact_name", "role", "language",
            "body", "encoding", "segments", "status", "attempts", "next_attempt_at", "valid_until",
            "created_at", "source", "cycle", "notice_id"]
    params = [(r["key"], r["kind"], r["hazard"], r["commune_code"], r["recipient"], r["contact_name"],
               r["role"], r["language"], r["body"], r["encoding"], r["segments"], "queued", 0, now,
               r["valid_until"].strftime("%Y-%m-%d %H:%M:%S.%f"), now, r["source"],
               r["cycle"].strftime("%Y-%m-%d %H:%M:%S.%f"), r["notice_id"]) for r in rows]

    def run() -> int:
        con.execute("DELETE FROM bare")
        con.execute("BEGIN")
        con.executemany(f"INSERT INTO bare ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                        params)
        con.execute("COMMIT")
        return con.execute("SELECT count(*) FROM bare").fetchone()[0]

    best, n = timed(run, REPEATS)
    con.close()
    return best, n


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="ewarn-bench-alerts-") as tmp:
        folder = Path(tmp)
        rows = make_rows("m")

        # ---- enqueue: a fresh database per repeat
        enq_times, results = [], []
        for i in range(REPEATS):
            store = fresh_store(folder, f"enqueue{i}.db")
            t, res = timed(lambda store=store: enqueue(store, rows, now=CYCLE))
            enq_times.append(t)
            results.append(res)
        enq = min(enq_times)
        again = enqueue(store, rows, now=CYCLE)  # the same rows again: all duplicates
        bare, bare_n = bare_inserts(folder / f"enqueue{REPEATS - 1}.db", rows)

        # ---- dispatch: a fresh, filled database per repeat
        disp_times, sent = [], []
        for i in range(REPEATS):
            store = fresh_store(folder, f"dispatch{i}.db")
            enqueue(store, rows, now=CYCLE)
            gw = ZeroGateway()
            d = Dispatcher(store, gw)
            t, counts = timed(lambda d=d: d.run_until_empty(wait=False))
            disp_times.append(t)
            sent.append((counts.sent, outbox_counts(store)["sent"], gw.n))
        disp = min(disp_times)
        gw = ZeroGateway()
        msgs = [SmsMessage(to=r["recipient"], body=r["body"], key=r["key"]) for r in rows]
        loop, _ = timed(lambda: [gw.send(m) for m in msgs], REPEATS)

    overhead_ms = (disp - loop) / N * 1e3
    bare_ms = bare / N * 1e3
    ok_enqueue = all(r == (N, 0) for r in results) and again == (0, N) and bare_n == N
    ok_sent = all(s == (N, N, N) for s in sent)  # (nothing expired, nothing lost)
    rows_out = [
        ("enqueue 10,000 [s]", f"{enq:.3f}", f"{bare:.3f}", f"{enq / bare:.1f}×",
         f"≤ {ENQUEUE_TARGET_S:g} s", enq <= ENQUEUE_TARGET_S),
        ("enqueue per message [ms]", f"{enq / N * 1e3:.3f}", f"{bare_ms:.3f}", f"{enq / bare:.1f}×",
         "(info)", None),
        ("enqueue counts (new, dup; re-run)", f"{results[0]}; {again}", f"{bare_n} rows", "",
         "(10000, 0); (0, 10000)", ok_enqueue),
        ("dispatch 10,000 [s]", f"{disp:.3f}", f"{loop:.3f}", f"{disp / loop:.0f}×", "(info)", None),
        ("dispatch overhead per message [ms]", f"{overhead_ms:.3f}", f"{bare_ms:.3f}",
         f"{overhead_ms / bare_ms:.1f}× a bare INSERT", f"≤ {OVERHEAD_TARGET_MS:g} ms",
         overhead_ms <= OVERHEAD_TARGET_MS),
        ("messages sent (counts, table, gateway)", f"{sent[0]}", "", "", "all 10,000", ok_sent),
    ]
    print(f"bench_alerts: {N:,} messages (UCS-2 body {len(BODY)} chars), file SQLite (WAL, "
          f"synchronous=NORMAL); best of {REPEATS}")
    print("baselines: enqueue — bare sqlite3 executemany INSERTs of the same rows in one transaction; "
          "dispatch — the bare gateway loop (overhead = dispatch − loop), beside one bare INSERT")
    header = ("measurement", "ewarn", "baseline", "ratio", "target", "result")
    widths = [max(len(str(r[i])) for r in [header, *rows_out]) for i in range(5)]
    print("  ".join(h.ljust(w) for h, w in zip(header, [*widths, 6], strict=False)))
    for r in rows_out:
        verdict = "" if r[5] is None else ("PASS" if r[5] else "MISS")
        print("  ".join(str(c).ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  " + verdict)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
