"""A dispatcher SIGKILLed in the middle of a batch loses nothing and repeats only the in-flight batch.

A real subprocess runs a :class:`~ewarn.alerts.outbox.Dispatcher` over a
file-backed SQLite workspace database with a gateway that appends one JSON
line per accepted message (the provider's record) and then takes ~50 ms (the
provider's latency). The test kills it with SIGKILL once some lines exist,
restarts a dispatcher (the short lease has passed by then) and counts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from sqlalchemy import select

from ewarn.alerts.outbox import enqueue, outbox, outbox_attempts
from ewarn.store import Store

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")

N_MESSAGES = 60
BATCH = 8
LEASE_S = 1.0

SCRIPT = r"""
import json, os, sys, time
from ewarn.alerts.gateways.base import Receipt
from ewarn.alerts.outbox import Dispatcher
from ewarn.store import Store

url, sent_path, batch, lease = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])


class SlowFileGateway:
    name = "slowfile"
    default_rate_per_second = 0.0

    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    @classmethod
    def from_settings(cls, options, environ):
        raise NotImplementedError

    def send(self, message):
        line = json.dumps({"key": message.key, "to": message.to, "pid": os.getpid()}) + "\n"
        os.write(self.fd, line.encode())  # the provider has it now
        time.sleep(0.05)  # provider latency: the kill lands here, before the batch is recorded
        return Receipt(accepted=True, provider_id=message.key, status="queued", gateway=self.name)

    def close(self):
        os.close(self.fd)


store = Store.open(url)
d = Dispatcher(store, SlowFileGateway(sent_path), batch_size=batch, lease_seconds=lease)
d.run_until_empty(wait=True, max_seconds=120)
print("done", flush=True)
"""


def _lines(path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _run(args: list[str]) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EWARN_")}
    return subprocess.Popen([sys.executable, "-c", SCRIPT, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_sigkill_mid_batch_then_restart_loses_nothing(tmp_path):
    url = f"sqlite:///{(tmp_path / 'ewarn.db').as_posix()}"
    sent = tmp_path / "sent.jsonl"
    store = Store.open(url)
    keys = [f"crash-{i:03d}" for i in range(N_MESSAGES)]
    enqueue(store, [{"key": k, "kind": "warning", "recipient": f"+8498{i:07d}", "body": f"CẢNH BÁO {i}"}
                    for i, k in enumerate(keys)])
    args = [url, str(sent), str(BATCH), str(LEASE_S)]

    proc = _run(args)
    deadline = time.monotonic() + 120  # a safety net for a broken child, not a performance limit
    while len(_lines(sent)) < 2 * BATCH + 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, f"the dispatcher ended before it was killed: {proc.communicate()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    before = Counter(x["key"] for x in _lines(sent))
    with store.engine.connect() as conn:
        status = dict(conn.execute(select(outbox.c.key, outbox.c.status)).all())
    in_flight = {k for k, s in status.items() if s == "sending"}
    assert 0 < len(in_flight) <= BATCH  # killed mid-batch
    assert set(before.values()) == {1}
    assert {k for k, s in status.items() if s == "sent"} <= set(before)  # recorded ⇒ really sent
    in_flight_sent = in_flight & set(before)  # the provider had them, the outbox did not know
    assert in_flight_sent  # the kill landed after at least one send of the batch

    time.sleep(LEASE_S + 0.2)  # the killed dispatcher's lease runs out
    proc = _run(args)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and out.strip() == "done", err

    after = Counter(x["key"] for x in _lines(sent))
    assert set(after) == set(keys)  # no message lost
    duplicates = {k: n - 1 for k, n in after.items() if n > 1}
    assert set(duplicates) == in_flight_sent  # exactly the ones in flight at the kill were repeated
    assert set(duplicates.values()) == {1}
    assert sum(duplicates.values()) <= BATCH
    with store.engine.connect() as conn:
        final = Counter(conn.execute(select(outbox.c.status)).scalars())
        attempts = Counter(conn.execute(select(outbox.c.attempts)).scalars())
        recorded = conn.execute(select(outbox_attempts.c.message_id)).scalars().all()
    assert final == Counter({"sent": N_MESSAGES})  # nothing left queued or sending
    assert attempts == Counter({1: N_MESSAGES - len(in_flight), 2: len(in_flight)})
    assert len(recorded) == N_MESSAGES  # the killed batch's attempts were never recorded
