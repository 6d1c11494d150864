"""The alert service: assessment → recipients → rendered texts → outbox, state in the same transaction."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from shapely.geometry import box
from sqlalchemy import func, select

from ewarn.alerts import policy, service
from ewarn.alerts.gateways.file import FileGateway
from ewarn.alerts.outbox import outbox, outbox_counts
from ewarn.alerts.policy import load_state
from ewarn.alerts.service import (
    dispatch,
    enqueue_alerts,
    idempotency_keys,
    nearest_shelters,
    prepare_alerts,
    preview,
)
from ewarn.config import AlertSettings
from ewarn.region import Region, write_region
from ewarn.store import Store

C0 = dt.datetime(2024, 9, 7, 12, tzinfo=dt.UTC)
CODES = ["02947", "02998", "04342"]


@pytest.fixture(scope="module")
def region(tmp_path_factory) -> Region:
    communes = gpd.GeoDataFrame(
        {"code": CODES, "name": ["Bảo Yên", "Phúc Khánh", "Khánh Hòa"],
         "province": ["Lào Cai", "Lào Cai", "Tuyên Quang"], "population": [9000, 8500, 7000]},
        geometry=[box(104.40, 22.10, 104.50, 22.20), box(104.50, 22.10, 104.60, 22.20),
                  box(104.60, 22.10, 104.70, 22.20)], crs=4326)
    shelters = pd.DataFrame({
        "shelter_id": ["S1", "S2", "S3"],
        "name": ["Trường THCS Bảo Yên", "Nhà văn hóa Phúc Khánh", "UBND xã Khánh Hòa"],
        "lon": [104.46, 104.54, 104.69], "lat": [22.16, 22.14, 22.11], "capacity": [300, 100, 200],
        "kind": ["school", "hall", "office"]})
    contacts = pd.DataFrame({
        "commune_code": ["02947", "02947", "02947", "02998", "04342", "02947", "04342"],
        "name": ["Hoàng Đức Cường", "Đặng Quang Hoa", "Anna Smith", "Sùng Đức Thảo", "Lò Văn Thắng",
                 "Vũ Thị Tỉnh", "Ma Văn Tuyên"],
        "role": ["Chủ tịch UBND xã", "Trưởng Công an xã", "UNDP liaison", "Chủ tịch UBND xã",
                 "Chủ tịch UBND xã", "province", "Operator"],
        "phone": ["+84912000001", "+84912000002", "+84912000003", "+84912000004", "+84912000005",
                  "+84912000006", "+84912000007"],
        "language": ["vi", "vi", "en", "vi", "vi", "vi", "vi"],
        "unaccented": [False, True, False, False, False, False, True],
        "demo": [False, False, False, True, False, False, False]})
    folder = write_region(tmp_path_factory.mktemp("svc") / "region", name="thử cảnh báo",
                          communes=communes, shelters=shelters, contacts=contacts)
    return Region.load(folder)


def assessment(cycle: dt.datetime, flash: list[int], heavy: list[int] | None = None, hours: int = 24,
               source: str = "test") -> xr.Dataset:
    times = pd.date_range(cycle + dt.timedelta(hours=1), periods=hours, freq="h").tz_localize(None).values
    fl = np.tile(np.asarray(flash, dtype=np.int8), (hours, 1))
    hr = np.tile(np.asarray(heavy or [0, 0, 0], dtype=np.int8), (hours, 1))
    r1 = np.maximum(fl, hr) * 12.0 + 1.0
    ds = xr.Dataset(
        {"level_flash_landslide": (("time", "commune"), fl), "level_heavy_rain": (("time", "commune"), hr),
         "rain_1h": (("time", "commune"), r1), "rain_6h": (("time", "commune"), r1 * 5),
         "rain_24h": (("time", "commune"), r1 * 15)},
        coords={"time": times, "commune": CODES, "commune_name": ("commune", ["Bảo Yên", "Phúc Khánh",
                                                                              "Khánh Hòa"]),
                "province": ("commune", ["Lào Cai", "Lào Cai", "Tuyên Quang"])})
    ds.attrs.update(forecast_reference_time=cycle.strftime("%Y-%m-%dT%H:%M:%SZ"), source=source)
    return ds


@pytest.fixture
def store(tmp_path) -> Store:
    return Store.open(f"sqlite:///{(tmp_path / 'ewarn.db').as_posix()}")


SETTINGS = AlertSettings(min_level=2, gateway="file")


def _count(store: Store) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(outbox)).scalar_one()


def test_officials_get_their_commune_operators_the_province_summary(store, region):
    batch = prepare_alerts(store, region, assessment(C0, [3, 0, 2]), SETTINGS, now=C0)
    assert [(n.commune_code, n.kind, n.level) for n in batch.notices] == [("02947", "warning", 3),
                                                                        ("04342", "warning", 2)]
    rows = batch.rows
    officials = rows[rows["kind"] == "warning"]
    assert Counter(officials["commune_code"]) == {"02947": 3, "04342": 1}
    # the operators (roles "province", "Operator" — case-insensitive) get no commune notice ...
    assert not officials["recipient"].isin(["+84912000006", "+84912000007"]).any()
    # ... but one summary per province, sent to the operators of that province
    summ = rows[rows["kind"] == "summary"].set_index("recipient")
    assert set(summ.index) == {"+84912000006", "+84912000007"}
    assert "Lào Cai" in summ.loc["+84912000006", "body"]
    assert "Tuyen Quang" in summ.loc["+84912000007", "body"]  # that operator reads không dấu
    assert summ.loc["+84912000007", "encoding"] == "GSM-7"
    assert summ["valid_until"].isna().all() and (summ["commune_code"] == "").all()
    # each contact's own language and form
    by = officials.set_index("recipient")
    vi, flat, en = by.loc["+84912000001"], by.loc["+84912000002"], by.loc["+84912000003"]
    assert "Bảo Yên" in vi["body"] and vi["language"] == "vi"
    assert flat["encoding"] == "GSM-7" and flat["segments"] == 1 and "Bao Yen" in flat["body"]
    assert en["language"] == "en" and en["body"] != vi["body"]
    assert (officials["valid_until"] == C0 + dt.timedelta(hours=24)).all()  # the window's end
    assert officials["key"].is_unique and rows["key"].str.fullmatch(r"[0-9a-f]{40}").all()
    # the nearest shelter to the commune's centre is named in the notice; outline for CAP
    n = batch.notices[0]
    assert n.shelter == "Trường THCS Bảo Yên"
    assert 4 <= len(n.polygon) < 100 and n.polygon[0] == n.polygon[-1]
    assert all(22.0 < lat < 22.3 and 104.3 < lon < 104.8 for lat, lon in n.polygon)


def test_the_same_cycle_twice_enqueues_nothing_new(store, region):
    ds = assessment(C0, [3, 0, 2])
    first = prepare_alerts(store, region, ds, SETTINGS, now=C0)
    inserted, dup = enqueue_alerts(store, first)
    assert (inserted, dup) == (len(first.rows), 0) and inserted == 6
    again = prepare_alerts(store, region, ds, SETTINGS, now=C0 + dt.timedelta(minutes=20))
    assert again.notices == []
    assert enqueue_alerts(store, again) == (0, len(again.rows))  # only the cycle's summaries, already there
    # a lost state (crash after a decision, before it was recorded) still cannot double a message
    policy_state = load_state(store)
    assert len(policy_state) == 6
    with store.engine.begin() as conn:
        conn.execute(policy.alert_state.delete())
    replay = prepare_alerts(store, region, ds, SETTINGS, now=C0)
    assert len(replay.notices) == 2 and enqueue_alerts(store, replay) == (0, 6)
    assert _count(store) == 6


def test_next_cycle_summary_again_escalation_and_all_clear(store, region):
    enqueue_alerts(store, prepare_alerts(store, region, assessment(C0, [3, 0, 2]), SETTINGS, now=C0))
    c1 = C0 + dt.timedelta(hours=6)
    b1 = prepare_alerts(store, region, assessment(c1, [4, 0, 0]), SETTINGS, now=c1)
    assert {(n.commune_code, n.kind) for n in b1.notices} == {("02947", "update"), ("04342", "all_clear")}
    enqueue_alerts(store, b1)
    rows = b1.rows
    assert set(rows.loc[rows["kind"] == "summary", "recipient"]) == {"+84912000006"}  # Lào Cai only now
    ac = rows[rows["kind"] == "all_clear"]
    assert list(ac["recipient"]) == ["+84912000005"] and ac["valid_until"].isna().all()  # never expires
    with store.engine.connect() as conn:
        kinds = Counter(conn.execute(select(outbox.c.kind)).scalars())
    assert kinds == {"warning": 4, "summary": 3, "update": 3, "all_clear": 1}


def test_a_failed_enqueue_writes_neither_messages_nor_state(store, region, monkeypatch):
    batch = prepare_alerts(store, region, assessment(C0, [3, 0, 2]), SETTINGS, now=C0)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(service, "save_state", broken)
    with pytest.raises(OSError):
        enqueue_alerts(store, batch)
    assert _count(store) == 0 and load_state(store).empty
    monkeypatch.undo()
    assert enqueue_alerts(store, batch) == (6, 0)


def test_demo_contacts_only_through_safe_gateways(store, region):
    ds = assessment(C0, [0, 3, 0])
    safe = prepare_alerts(store, region, ds, SETTINGS, now=C0)
    assert list(safe.rows.loc[safe.rows["kind"] == "warning", "recipient"]) == ["+84912000004"]
    real = prepare_alerts(store, region, ds, SETTINGS.model_copy(update={"gateway": "twilio"}), now=C0)
    assert (real.rows["kind"] == "warning").sum() == 0  # the made-up number is never texted for real
    forced = prepare_alerts(store, region, ds, SETTINGS.model_copy(update={"gateway": "twilio"}), now=C0,
                            include_demo=True)
    assert (forced.rows["kind"] == "warning").sum() == 1


def test_preview_writes_nothing_and_masks_numbers(store, region):
    ds = assessment(C0, [3, 0, 2])
    df = preview(store, region, ds, SETTINGS, now=C0)
    assert _count(store) == 0 and load_state(store).empty
    assert list(df.columns) == ["commune", "commune_name", "kind", "hazard", "level", "recipient",
                                "contact_name", "language", "unaccented", "segments", "encoding", "text",
                                "queued"]
    assert len(df) == 6 and not df["queued"].any()
    assert df["recipient"].str.contains(r"\*").all()
    assert not df["text"].str.contains("+84912", regex=False).any()
    enqueue_alerts(store, prepare_alerts(store, region, ds, SETTINGS, now=C0))
    after = preview(store, region, ds, SETTINGS, now=C0)
    assert set(after["kind"]) == {"summary"} and after["queued"].all()


def test_dispatch_through_the_file_gateway(store, region, tmp_path):
    enqueue_alerts(store, prepare_alerts(store, region, assessment(C0, [3, 0, 2]), SETTINGS, now=C0))
    gw = FileGateway(tmp_path / "sent.jsonl")
    counts = dispatch(store, gw, SETTINGS, now=C0 + dt.timedelta(minutes=1))
    assert counts.sent + counts.delivered == 6
    lines = [json.loads(x) for x in (tmp_path / "sent.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and len({x["key"] for x in lines}) == 6
    assert outbox_counts(store)["queued"] == 0
    assert dispatch(store, gw, SETTINGS, now=C0 + dt.timedelta(minutes=2)).claimed == 0


def test_a_warning_dispatched_after_its_window_expires(store, region, tmp_path):
    enqueue_alerts(store, prepare_alerts(store, region, assessment(C0, [3, 0, 0], hours=3), SETTINGS, now=C0))
    counts = dispatch(store, FileGateway(tmp_path / "sent.jsonl"), SETTINGS, now=C0 + dt.timedelta(hours=5))
    assert counts.expired == 3 and counts.sent + counts.delivered == 1  # the summary still goes


def test_idempotency_key_changes_with_each_part():
    base = {"source": "ecmwf-ifs", "cycle": C0, "commune_code": "02947", "hazard": "flash_landslide",
            "level": 3, "recipient": "+84912000001", "kind": "warning"}
    variants = [base] + [{**base, k: v} for k, v in [
        ("source", "gfs"), ("cycle", C0 + dt.timedelta(hours=6)), ("commune_code", "02998"),
        ("hazard", "heavy_rain"), ("level", 4), ("recipient", "+84912000002"), ("kind", "reminder")]]
    keys = idempotency_keys(pd.DataFrame(variants))
    assert keys.is_unique
    assert idempotency_keys(pd.DataFrame([base])).iloc[0] == keys.iloc[0]  # stable
    assert "84912" not in keys.iloc[0]


def test_nearest_shelter_per_commune(region):
    got = nearest_shelters(region.communes, region.shelters)
    assert got == {"02947": "Trường THCS Bảo Yên", "02998": "Nhà văn hóa Phúc Khánh",
                   "04342": "UBND xã Khánh Hòa"}
    assert nearest_shelters(region.communes, region.shelters.iloc[:0]) == {}
