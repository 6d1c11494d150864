"""The service watchdog: one operator alert per incident, one recovery, nothing in between."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from sqlalchemy import insert, select

from ewarn.alerts.outbox import outbox, outbox_attempts
from ewarn.config import Workspace, init_workspace
from ewarn.demo import build_demo_region
from ewarn.forecasts.archive import forecasts_table
from ewarn.store import Store, runs
from ewarn.watchdog import acknowledge, check, evaluate, open_incidents

T0 = dt.datetime(2026, 11, 21, 0, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def region_dir(tmp_path_factory):
    """The demo region: two province duty officers (vi, en) among its contacts, plus one who asked for
    unaccented messages under the English default role word 'operator'."""
    dest = tmp_path_factory.mktemp("wd") / "region"
    build_demo_region(dest)
    contacts = pd.read_csv(dest / "contacts.csv", dtype=str)
    extra = pd.DataFrame([("02998", "Lò Văn Trực", "operator", "+84912345678", "vi", "true", "false")],
                         columns=["commune_code", "name", "role", "phone", "language", "unaccented", "demo"])
    pd.concat([contacts, extra]).to_csv(dest / "contacts.csv", index=False)
    return dest


def _operators(ws: Workspace) -> pd.DataFrame:
    c = pd.read_csv(ws.region_dir / "contacts.csv", dtype=str)
    return c[c["role"].isin(["Ban Chỉ huy PCTT tỉnh", "operator"])]


@pytest.fixture
def ws(tmp_path, region_dir) -> Workspace:
    root = init_workspace(tmp_path / "ws").root
    (root / "ewarn.toml").write_text((root / "ewarn.toml").read_text().replace(
        'region = "region"', f'region = "{region_dir}"')
        + '\n[forecasts.sources.drop]\nkind = "cf-netcdf"\npath = "incoming"\n'
        '\n[service]\nsources = ["drop"]\nstale_hours = 6\nbacklog_limit = 20\ngateway_failures = 3\n')
    ws = Workspace.open(root)
    Store.open(ws.database_url).ensure()
    return ws


def _archive(ws: Workspace, cycle: dt.datetime) -> None:
    with Store.open(ws.database_url).engine.begin() as conn:
        conn.execute(insert(forecasts_table).values(
            source="drop", cycle=cycle, path=f"forecasts/drop/{cycle:%Y%m%dT%H}.nc", checksum="0" * 64,
            valid_from=cycle, valid_to=cycle + dt.timedelta(hours=72), members=0, status="archived",
            ingested_at=cycle))


def _operator_messages(ws: Workspace) -> pd.DataFrame:
    with Store.open(ws.database_url).engine.connect() as conn:
        rows = conn.execute(select(outbox.c.key, outbox.c.recipient, outbox.c.body, outbox.c.kind)
                            .where(outbox.c.kind == "incident").order_by(outbox.c.id)).all()
    return pd.DataFrame(rows, columns=["key", "recipient", "body", "kind"])


def test_stale_source_alerts_once_then_recovers(ws):
    _archive(ws, T0)
    assert check(ws, T0 + dt.timedelta(hours=5)) == []
    assert check(ws, T0 + dt.timedelta(hours=7)) == ["opened stale_forecast:drop"]
    for h in (8, 9, 12):  # still stale: nothing more is sent
        assert check(ws, T0 + dt.timedelta(hours=h)) == []
    msgs = _operator_messages(ws)
    ops = _operators(ws)
    assert len(ops) == 3 and sorted(msgs["recipient"]) == sorted(ops["phone"])
    by_phone = dict(zip(msgs["recipient"], msgs["body"], strict=True))
    vi = by_phone[ops.loc[(ops["language"] == "vi") & (ops["unaccented"] == "false"), "phone"].item()]
    assert "SỰ CỐ" in vi and "nguồn dự báo drop" in vi and "07:00 21/11" in vi  # local time of the 00Z cycle
    en = by_phone[ops.loc[ops["language"] == "en", "phone"].item()]
    assert en.startswith("[ewarn] SYSTEM INCIDENT") and en.isascii()
    flat = by_phone["+84912345678"]
    assert flat.startswith("[ewarn] SU CO") and flat.isascii()
    assert len(open_incidents(Store.open(ws.database_url))) == 1

    _archive(ws, T0 + dt.timedelta(hours=12))
    assert check(ws, T0 + dt.timedelta(hours=13)) == ["closed stale_forecast:drop"]
    assert check(ws, T0 + dt.timedelta(hours=14)) == []
    msgs = _operator_messages(ws)
    assert len(msgs) == 6 and msgs["body"].str.contains("ĐÃ KHẮC PHỤC").sum() == 1
    assert open_incidents(Store.open(ws.database_url)).empty


def test_failing_gateway_alerts_once_then_recovers(ws):
    store = Store.open(ws.database_url)
    _archive(ws, T0)

    def attempts(accepted: list[bool]) -> None:
        with store.engine.begin() as conn:
            mid = conn.execute(insert(outbox).values(
                key=f"m{pd.Timestamp.now().value}", kind="warning", recipient="+84900000000", body="x",
                next_attempt_at=T0, created_at=T0)).inserted_primary_key[0]
            for i, ok in enumerate(accepted):
                conn.execute(insert(outbox_attempts).values(
                    message_id=mid, attempt=i + 1, started_at=T0, finished_at=T0, gateway="twilio",
                    accepted=ok, error_code="" if ok else "http-503", retryable=not ok))

    attempts([True, False, False])
    assert check(ws, T0 + dt.timedelta(hours=1)) == []  # two refusals in a row: not yet
    attempts([False])
    assert check(ws, T0 + dt.timedelta(hours=1)) == ["opened gateway:twilio"]
    attempts([False, False])
    assert check(ws, T0 + dt.timedelta(hours=1)) == []
    attempts([True])
    assert check(ws, T0 + dt.timedelta(hours=2)) == ["closed gateway:twilio"]
    bodies = _operator_messages(ws)["body"]
    assert len(bodies) == 6  # 3 operators × (incident + recovery)
    assert bodies.str.contains("cổng SMS twilio").sum() == 2  # the accented Vietnamese one, twice


def test_failed_cycle_and_backlog(ws):
    store = Store.open(ws.database_url)
    _archive(ws, T0)
    with store.engine.begin() as conn:
        conn.execute(insert(runs).values(job="cycle", source="drop", cycle=T0, started_at=T0, finished_at=T0,
                                         status="failed", step="assess", message="terrain unreadable"))
        for i in range(25):
            conn.execute(insert(outbox).values(key=f"b{i}", kind="warning", recipient="+84900000000",
                                               body="x", next_attempt_at=T0, created_at=T0))
    found = {(f.kind, f.subject): f for f in evaluate(ws, T0 + dt.timedelta(hours=1))}
    assert "step 'assess': terrain unreadable" in found[("failed_cycle", "drop")].problem
    assert "25 messages are waiting" in found[("backlog", "outbox")].problem
    changes = check(ws, T0 + dt.timedelta(hours=1))
    assert sorted(changes) == ["opened backlog:outbox", "opened failed_cycle:drop"]
    inc = open_incidents(store)
    assert acknowledge(store, int(inc["id"].iloc[0]), "trực ban")
    assert not acknowledge(store, 999, "x")
    with store.engine.begin() as conn:
        conn.execute(insert(runs).values(job="cycle", source="drop", cycle=T0, started_at=T0, finished_at=T0,
                                         status="ok", step="assess", message=""))
    assert check(ws, T0 + dt.timedelta(hours=2)) == ["closed failed_cycle:drop"]
