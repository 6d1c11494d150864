"""The durable outbox: idempotent enqueue, atomic claims, retries, rate limit, expiry, delivery reports."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from ewarn.alerts.gateways.base import Gateway, Receipt, SmsMessage
from ewarn.alerts.outbox import (
    Dispatcher,
    OutboxError,
    TokenBucket,
    backoff_delays,
    claim,
    enqueue,
    list_messages,
    mark_delivery,
    outbox,
    outbox_attempts,
    outbox_counts,
)
from ewarn.config import AlertSettings
from ewarn.store import Store

T0 = dt.datetime(2024, 9, 7, 12, tzinfo=dt.UTC)


class FakeClock:
    """Epoch seconds that move only when slept on."""

    def __init__(self, start: dt.datetime = T0) -> None:
        self.t = start.timestamp()
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


class FakeGateway:
    """Implements the Gateway protocol; records every call with the clock's time."""

    name = "fake"
    default_rate_per_second = 0.0

    def __init__(self, clock: FakeClock | None = None, *, down_until: float | None = None,
                 refuse: set[str] | None = None, raise_on: set[str] | None = None,
                 status: str = "queued") -> None:
        self.clock = clock
        self.down_until = down_until
        self.refuse = refuse or set()
        self.raise_on = raise_on or set()
        self.status = status
        self.calls: list[tuple[float, str, bool]] = []

    @classmethod
    def from_settings(cls, options, environ):  # pragma: no cover - protocol only
        return cls()

    def send(self, message: SmsMessage) -> Receipt:
        now = self.clock() if self.clock else 0.0
        if message.key in self.raise_on:
            self.calls.append((now, message.key, False))
            raise ConnectionResetError(f"socket closed while sending to {message.to}")
        if self.down_until is not None and now < self.down_until:
            self.calls.append((now, message.key, False))
            return Receipt(accepted=False, error_code="http-503", error_message="service unavailable",
                           retryable=True, gateway=self.name)
        if message.key in self.refuse:
            self.calls.append((now, message.key, False))
            return Receipt(accepted=False, error_code="21211", error_message="invalid 'To' number",
                           retryable=False, gateway=self.name)
        self.calls.append((now, message.key, True))
        return Receipt(accepted=True, provider_id=f"SM-{message.key}", status=self.status, gateway=self.name)

    def close(self) -> None:
        pass


def _rows(n: int, *, kind: str = "warning", valid_until: dt.datetime | None = None,
          prefix: str = "k") -> list[dict]:
    return [{"key": f"{prefix}{i:05d}", "kind": kind, "hazard": "flash_landslide", "commune_code": "02947",
             "recipient": f"+8498{i:07d}", "contact_name": "Hoàng Đức Cường", "body": f"CẢNH BÁO {i}",
             "valid_until": valid_until, "source": "demo", "cycle": T0} for i in range(n)]


@pytest.fixture
def store(tmp_path) -> Store:
    return Store.open(f"sqlite:///{(tmp_path / 'ewarn.db').as_posix()}")


def _statuses(store: Store) -> Counter:
    with store.engine.connect() as conn:
        return Counter(conn.execute(select(outbox.c.status)).scalars())


def test_fake_gateway_is_a_gateway():
    assert isinstance(FakeGateway(), Gateway)


# --------------------------------------------------------------------------- enqueue


def test_enqueue_counts_inserted_and_duplicates(store):
    assert enqueue(store, _rows(50), now=T0) == (50, 0)
    # a re-run, overlapping rows and a duplicate inside the same call
    again = _rows(60) + _rows(1, prefix="new") + _rows(1, prefix="new")
    assert enqueue(store, again, now=T0) == (11, 51)
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(outbox)).scalar_one() == 61
        row = conn.execute(select(outbox).where(outbox.c.key == "k00003")).mappings().one()
    assert row["status"] == "queued" and row["attempts"] == 0 and row["body"] == "CẢNH BÁO 3"
    assert row["contact_name"] == "Hoàng Đức Cường"


def test_enqueue_accepts_a_dataframe_with_missing_times(store):
    df = pd.DataFrame(_rows(3))
    df.loc[1, "valid_until"] = pd.NaT
    assert enqueue(store, df, now=T0) == (3, 0)
    assert enqueue(store, pd.DataFrame(columns=["key"])) == (0, 0)


@pytest.mark.parametrize(("change", "words"), [
    ({"recipient": "0981234567"}, ["row 2", "recipient", "E.164"]),
    ({"body": ""}, ["row 2", "body"]),
    ({"colour": "red"}, ["unknown column", "colour"]),
])
def test_enqueue_refuses_bad_rows_and_writes_nothing(store, change, words):
    rows = _rows(4)
    rows[2] = {**rows[2], **change}
    with pytest.raises(OutboxError) as err:
        enqueue(store, rows)
    for w in words:
        assert w in str(err.value)
    assert "0981234567" not in str(err.value)  # numbers are masked in messages
    assert sum(_statuses(store).values()) == 0


# --------------------------------------------------------------------------- claim


def test_claim_takes_due_rows_once_and_reclaims_after_the_lease(store):
    enqueue(store, _rows(5), now=T0)
    later = _rows(2, prefix="late")
    for r in later:
        r["next_attempt_at"] = T0 + dt.timedelta(hours=1)
    enqueue(store, later, now=T0)
    first = claim(store, 3, T0, lease=60)
    second = claim(store, 10, T0, lease=60)
    assert [r["key"] for r in first] == ["k00000", "k00001", "k00002"]
    assert {r["key"] for r in second} == {"k00003", "k00004"}  # not the future ones, not the claimed ones
    assert all(r["attempts"] == 1 for r in first + second)
    assert claim(store, 10, T0 + dt.timedelta(seconds=59), lease=60) == []
    again = claim(store, 10, T0 + dt.timedelta(seconds=61), lease=60)  # the holder died
    assert {r["key"] for r in again} == {f"k{i:05d}" for i in range(5)}
    assert all(r["attempts"] == 2 for r in again)
    due_later = {r["key"] for r in claim(store, 10, T0 + dt.timedelta(hours=1), lease=60)}
    assert {"late00000", "late00001"} <= due_later  # (with the k rows, whose second lease passed too)


def test_concurrent_claims_never_share_a_row(store):
    enqueue(store, _rows(400), now=T0)
    got: list[list[str]] = [[], [], []]

    def worker(i: int) -> None:
        while rows := claim(store, 7, T0, lease=600):
            got[i].extend(r["key"] for r in rows)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [k for g in got for k in g]
    assert len(every) == 400 and len(set(every)) == 400


# --------------------------------------------------------------------------- rate, backoff


def test_token_bucket_with_a_fake_clock():
    b = TokenBucket(rate=1.0, burst=1.0, now=0.0)
    assert [b.reserve(0.0) for _ in range(3)] == [0.0, 1.0, 2.0]
    assert b.reserve(10.0) == 0.0  # refilled, but never above the burst
    assert b.reserve(10.0) == pytest.approx(1.0)
    burst = TokenBucket(rate=2.0, burst=3.0, now=0.0)
    assert [burst.reserve(0.0) for _ in range(5)] == pytest.approx([0, 0, 0, 0.5, 1.0])
    assert TokenBucket(rate=0.0).reserve(0.0) == 0.0  # unlimited
    back = TokenBucket(rate=1.0, now=100.0)
    back.reserve(100.0)
    assert back.reserve(50.0) == pytest.approx(1.0)  # a clock going backwards mints nothing


def test_backoff_full_jitter_is_bounded_and_capped():
    rng = np.random.default_rng(1)
    attempts = np.repeat(np.arange(1, 12), 2000)
    d = backoff_delays(attempts, base=10.0, cap=300.0, rng=rng)
    ceiling = np.minimum(300.0, 10.0 * 2.0 ** (attempts - 1))
    assert (d >= 0).all() and (d <= ceiling).all()
    for a in (1, 3, 11):  # full jitter: uniform over [0, ceiling], mean half of it
        sel = d[attempts == a]
        c = min(300.0, 10.0 * 2 ** (a - 1))
        assert sel.mean() == pytest.approx(c / 2, rel=0.05)
        assert sel.min() < 0.05 * c and sel.max() > 0.95 * c


def test_dispatcher_respects_the_rate_limit():
    clock = FakeClock()
    gw = FakeGateway(clock)
    gw.default_rate_per_second = 2.0
    store = Store.open("sqlite://")
    enqueue(store, _rows(9), now=T0)
    d = Dispatcher(store, gw, clock=clock, sleep=clock.sleep, rng=np.random.default_rng(0))
    d.run_until_empty()
    times = np.array([t for t, _, ok in gw.calls if ok])
    assert len(times) == 9
    assert np.diff(times).min() >= 0.5 - 1e-9  # 2 per second
    assert times[-1] - times[0] == pytest.approx(4.0)


def test_batch_fits_in_the_lease_under_a_rate_limit(store):
    d = Dispatcher(store, FakeGateway(), settings=AlertSettings(rate_per_second=1.0, lease_seconds=120,
                                                                batch_size=500))
    assert d.batch_size == 60


# --------------------------------------------------------------------------- dispatch outcomes


def test_gateway_down_for_a_while_then_back_delivers_every_message_once(store):
    clock = FakeClock()
    outage_end = clock() + 900.0  # 15 minutes of HTTP 503
    gw = FakeGateway(clock, down_until=outage_end)
    enqueue(store, _rows(40), now=T0)
    d = Dispatcher(store, gw, settings=AlertSettings(max_attempts=12, backoff_seconds=10,
                                                     backoff_max_seconds=600, batch_size=16),
                   clock=clock, sleep=clock.sleep, rng=np.random.default_rng(3))
    total = d.run_until_empty()
    accepted = Counter(k for _, k, ok in gw.calls if ok)
    assert set(accepted) == {f"k{i:05d}" for i in range(40)}
    assert set(accepted.values()) == {1}  # delivered exactly once each
    assert all(t >= outage_end for t, _, ok in gw.calls if ok)
    refused = sum(not ok for _, _, ok in gw.calls)
    assert refused > 40  # every message was refused at least once, most several times
    assert total.sent == 40 and total.failed == 0 and total.retried == refused
    assert _statuses(store) == Counter({"sent": 40})
    with store.engine.connect() as conn:  # every attempt recorded, numbered 1..n per message
        att = pd.DataFrame(conn.execute(select(outbox_attempts)).mappings().all())
        msgs = pd.DataFrame(conn.execute(select(outbox.c.id, outbox.c.attempts)).mappings().all())
    assert len(att) == len(gw.calls)
    per = att.groupby("message_id")["attempt"].agg(["max", "count"])
    assert (per["max"] == per["count"]).all()
    assert (msgs.set_index("id")["attempts"] == per["max"]).all()
    assert set(att.loc[~att["accepted"], "error_code"]) == {"http-503"}


def test_permanent_refusal_fails_at_once_and_retryable_gives_up_at_max_attempts(store):
    clock = FakeClock()
    gw = FakeGateway(clock, refuse={"k00000"}, raise_on={"k00001"})
    enqueue(store, _rows(3), now=T0)
    d = Dispatcher(store, gw, settings=AlertSettings(max_attempts=4), clock=clock, sleep=clock.sleep,
                   rng=np.random.default_rng(0))
    d.run_until_empty()
    df = list_messages(store, mask=False).set_index("recipient")
    assert df.loc["+84980000000", "status"] == "failed" and df.loc["+84980000000", "attempts"] == 1
    assert df.loc["+84980000000", "last_error"].startswith("21211")
    # a gateway that raises is a retryable error; it ends failed after max_attempts
    assert df.loc["+84980000001", "status"] == "failed" and df.loc["+84980000001", "attempts"] == 4
    assert "gave up after 4 attempts" in df.loc["+84980000001", "last_error"]
    assert "+84980000001" not in df.loc["+84980000001", "last_error"]  # masked
    assert df.loc["+84980000002", "status"] == "sent"
    assert Counter(k for _, k, _ in gw.calls)["k00001"] == 4


def test_a_warning_past_its_window_expires_but_an_all_clear_is_still_sent(store):
    clock = FakeClock()
    gw = FakeGateway(clock)
    gone = T0 - dt.timedelta(hours=1)
    enqueue(store, _rows(2, valid_until=gone) + _rows(1, kind="all_clear", valid_until=gone, prefix="ac")
            + _rows(1, valid_until=T0 + dt.timedelta(hours=6), prefix="ok"), now=T0)
    counts = Dispatcher(store, gw, clock=clock, sleep=clock.sleep).run_once()
    assert (counts.expired, counts.sent) == (2, 2)
    assert {k for _, k, _ in gw.calls} == {"ac00000", "ok00000"}  # nothing sent late
    with store.engine.connect() as conn:
        att = conn.execute(select(outbox_attempts.c.status, outbox_attempts.c.error_message).where(
            outbox_attempts.c.status == "expired")).all()
    assert len(att) == 2 and all("not sent late" in m for _, m in att)
    assert outbox_counts(store)["expired"] == 2


def test_delivered_receipt_and_delivery_reports(store):
    clock = FakeClock()
    enqueue(store, _rows(3), now=T0)
    Dispatcher(store, FakeGateway(clock), clock=clock, sleep=clock.sleep).run_once()
    assert mark_delivery(store, "SM-k00000", "delivered") == 1
    assert mark_delivery(store, "SM-k00000", "delivered") == 0  # a repeated callback changes nothing
    assert mark_delivery(store, "SM-k00001", "undelivered", "30003") == 1
    assert mark_delivery(store, "SM-unknown", "failed") == 0
    with pytest.raises(OutboxError, match="not one of"):
        mark_delivery(store, "SM-k00002", "read")
    df = list_messages(store).set_index("id")
    assert list(df["status"].sort_index()) == ["delivered", "undelivered", "sent"]
    assert df["delivered_at"].notna().sum() == 1
    assert "30003" in df.loc[2, "last_error"]
    assert (df["recipient"].str.contains(r"\*")).all()  # masked for display
    assert outbox_counts(store) == {"queued": 0, "sending": 0, "sent": 1, "delivered": 1, "failed": 0,
                                    "undelivered": 1, "expired": 0}
    with pytest.raises(OutboxError, match="unknown message status"):
        list_messages(store, status="lost")


def test_a_gateway_that_reports_delivered_at_once(store):
    clock = FakeClock()
    enqueue(store, _rows(2), now=T0)
    counts = Dispatcher(store, FakeGateway(clock, status="delivered"), clock=clock,
                        sleep=clock.sleep).run_once()
    assert counts.delivered == 2
    assert len(list_messages(store, status="delivered")) == 2


def test_messages_carry_the_key_and_no_callback_unless_asked(store):
    seen: list[SmsMessage] = []

    class Capture(FakeGateway):
        def send(self, message: SmsMessage) -> Receipt:
            seen.append(message)
            return super().send(message)

    enqueue(store, _rows(2), now=T0)
    settings = AlertSettings(public_url="http://127.0.0.1:8080/", batch_size=1)
    Dispatcher(store, Capture(), settings=settings).run_once(T0)  # the gateway builds its own callback
    Dispatcher(store, Capture(), settings=settings,
               status_callback="http://127.0.0.1:8080/hook").run_once(T0)
    assert [m.status_callback for m in seen] == ["", "http://127.0.0.1:8080/hook"]
    assert [(m.key, m.to, m.body) for m in seen] == [("k00000", "+84980000000", "CẢNH BÁO 0"),
                                                     ("k00001", "+84980000001", "CẢNH BÁO 1")]
