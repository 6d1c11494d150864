"""The workspace CAP archive: one file per notice, references to earlier alerts, the feed of active ones."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from lxml import etree

from ewarn.alerts.cap import ATOM_NS, parse_cap, safe_parser, validate_cap
from ewarn.alerts.capstore import active_alerts, read_index, write_cap_files
from ewarn.alerts.notice import Notice
from ewarn.config import AlertSettings

T0 = dt.datetime(2024, 9, 9, 6, tzinfo=dt.UTC)
ATOM = f"{{{ATOM_NS}}}"


def _notice(kind: str, level: int, *, cycle: dt.datetime = T0, prev: int = 0, refs: tuple[str, ...] = (),
            commune: str = "02998") -> Notice:
    return Notice(kind=kind, hazard="flash_landslide", commune_code=commune, commune_name="Phúc Khánh",
                  province="Lào Cai", level=level, previous_level=prev, source="demo", cycle=cycle,
                  onset=cycle + dt.timedelta(hours=6), peak=cycle + dt.timedelta(hours=12),
                  until=cycle + dt.timedelta(hours=30), rain_24h_max=320.0, rain_6h_max=120.0,
                  rain_1h_max=40.0, issued=cycle + dt.timedelta(hours=1), shelter="UBND xã Phúc Khánh",
                  polygon=[(22.1, 104.5), (22.1, 104.6), (22.2, 104.6), (22.1, 104.5)], references=refs)


@pytest.fixture
def xsd(shared_data):
    path = shared_data / "cap" / "CAP-v1.2.xsd"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return etree.XMLSchema(etree.parse(str(path), safe_parser()))


def test_warning_update_all_clear_chain(tmp_path, xsd):
    settings = AlertSettings(cap_sender="ewarn@laocai.example.org", public_url="http://127.0.0.1:8080")
    warn = _notice("warning", 2)
    assert len(write_cap_files([warn], tmp_path, settings=settings, now=T0)) == 1
    assert write_cap_files([warn], tmp_path, settings=settings, now=T0) == []  # never written twice
    upd = _notice("update", 3, cycle=T0 + dt.timedelta(hours=6), prev=2, refs=(warn.identifier,))
    write_cap_files([upd], tmp_path, settings=settings, now=T0 + dt.timedelta(hours=7))
    msg = parse_cap((tmp_path / f"{upd.identifier}.xml").read_bytes())
    assert msg.msg_type == "Update" and msg.referenced_identifiers == (warn.identifier,)
    sent = "2024-09-09T14:00:00+07:00"  # the warning's issue time, in local time
    assert msg.references == (f"ewarn@laocai.example.org,{warn.identifier},{sent}",)
    assert active_alerts(tmp_path, T0 + dt.timedelta(hours=7)) == [upd.identifier]
    feed = etree.fromstring((tmp_path / "feed.atom").read_bytes(), safe_parser())
    links = [e.find(f"{ATOM}link").get("href") for e in feed.findall(f"{ATOM}entry")]
    assert links == [f"http://127.0.0.1:8080/cap/{upd.identifier}.xml"]

    clear = _notice("all_clear", 0, cycle=T0 + dt.timedelta(hours=24), prev=3, refs=(upd.identifier,))
    write_cap_files([clear], tmp_path, settings=settings, now=T0 + dt.timedelta(hours=25))
    assert active_alerts(tmp_path, T0 + dt.timedelta(hours=25)) == []
    assert etree.fromstring((tmp_path / "feed.atom").read_bytes()).findall(f"{ATOM}entry") == []
    for ident in read_index(tmp_path):
        assert validate_cap((tmp_path / f"{ident}.xml").read_bytes(), xsd) == [], ident


def test_update_without_archived_alert_becomes_an_alert(tmp_path, xsd):
    settings = AlertSettings()
    upd = _notice("update", 3, prev=2, refs=("ewarn-demo-20240908T12-02998-flash_landslide-warning-2",))
    (path,) = write_cap_files([upd], tmp_path, settings=settings, now=T0)
    msg = parse_cap(path.read_bytes())
    assert msg.msg_type == "Alert" and msg.references == ()
    assert validate_cap(path.read_bytes(), xsd) == []
    orphan_clear = _notice("all_clear", 0, commune="02947", prev=2, refs=("nothing",))
    assert write_cap_files([orphan_clear], tmp_path, settings=settings, now=T0) == []


def test_expired_alerts_leave_the_feed(tmp_path):
    n = _notice("warning", 2)
    write_cap_files([n], tmp_path, settings=AlertSettings(), now=T0)
    expires = dt.datetime.fromisoformat(read_index(tmp_path)[n.identifier]["expires"])
    assert active_alerts(tmp_path, expires - dt.timedelta(minutes=1)) == [n.identifier]
    assert active_alerts(tmp_path, expires + dt.timedelta(minutes=1)) == []
    other = dataclasses.replace(n, commune_code="02947")
    write_cap_files([other], tmp_path, settings=AlertSettings(), now=T0)
    assert len(active_alerts(tmp_path, T0)) == 2
