"""CAP 1.2 alerts validated against the OASIS schema, the Atom feed, and the safe CAP reader."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta

import pytest
import shapely
from lxml import etree

from ewarn.alerts.cap import (
    ATOM_NS,
    CAP_NS,
    GEOCODE_NAME,
    CapError,
    atom_feed,
    cap_time,
    cap_xml,
    certainty,
    commune_polygon,
    notice_to_cap,
    parse_cap,
    polygon_text,
    safe_parser,
    severity,
    urgency,
    validate_cap,
)
from ewarn.alerts.notice import Notice
from ewarn.errors import EwarnError

SENDER = "ewarn@pctt.laocai.gov.vn"
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+07:00$")
NS = {"c": CAP_NS}
ISSUED = datetime(2024, 9, 7, 15, 10, 30, 123456, tzinfo=UTC)

# a small commune-like square around Phúc Khánh, (lat, lon), closed
SQUARE = [(22.20, 104.55), (22.20, 104.60), (22.25, 104.60), (22.25, 104.55), (22.20, 104.55)]


def notice(**kw) -> Notice:
    base = dict(
        kind="warning", hazard="flash_landslide", commune_code="02998", commune_name="Phúc Khánh",
        province="Lào Cai", level=3, previous_level=0, source="demo",
        cycle=datetime(2024, 9, 7, 12, tzinfo=UTC), onset=datetime(2024, 9, 9, 14, tzinfo=UTC),
        peak=datetime(2024, 9, 9, 20, tzinfo=UTC), until=datetime(2024, 9, 10, 3, tzinfo=UTC),
        rain_24h_max=513.6, rain_6h_max=210.0, rain_1h_max=61.0, issued=ISSUED,
        shelter="Trường Tiểu học Phúc Khánh", polygon=SQUARE,
    )
    base.update(kw)
    return Notice(**base)


WARNING = notice()
UPDATE = notice(kind="update", level=4, previous_level=3, references=(WARNING.identifier,),
                issued=ISSUED + timedelta(hours=6))
ALL_CLEAR = notice(kind="all_clear", level=0, previous_level=4,
                   references=(WARNING.identifier, UPDATE.identifier), issued=ISSUED + timedelta(hours=30))
TIMES = {WARNING.identifier: WARNING.issued, UPDATE.identifier: UPDATE.issued}


@pytest.fixture(scope="module")
def schema(request):
    shared = request.getfixturevalue("shared_data")
    return etree.XMLSchema(etree.parse(str(shared / "cap" / "CAP-v1.2.xsd"), safe_parser()))


def xml(n: Notice, **kw) -> bytes:
    return cap_xml(n, sender=SENDER, reference_times=TIMES, **kw)


def doc(n: Notice, **kw) -> etree._Element:
    return etree.fromstring(xml(n, **kw), safe_parser())


@pytest.mark.parametrize("case", ["warning", "update", "all_clear", "no_polygon", "english_only",
                                  "exercise_with_web", "heavy_rain_level2"])
def test_generated_alerts_validate_against_the_oasis_schema(schema, case):
    n, kw = {
        "warning": (WARNING, {}),
        "update": (UPDATE, {}),
        "all_clear": (ALL_CLEAR, {}),
        "no_polygon": (notice(polygon=[]), {}),
        "english_only": (WARNING, {"languages": ("en",)}),
        "exercise_with_web": (WARNING, {"status": "Exercise", "web": "http://127.0.0.1:8080/cap/x.xml"}),
        "heavy_rain_level2": (notice(hazard="heavy_rain", level=2, onset=None), {}),
    }[case]
    data = xml(n, **kw)
    assert validate_cap(data, schema) == []
    root = etree.fromstring(data, safe_parser())
    for t in root.iter(*(f"{{{CAP_NS}}}{x}" for x in ("sent", "effective", "onset", "expires"))):
        assert TIME_RE.match(t.text), t.text


def test_warning_fields():
    root = doc(WARNING)
    assert root.findtext("c:identifier", namespaces=NS) == WARNING.identifier
    assert root.findtext("c:sender", namespaces=NS) == SENDER
    assert root.findtext("c:sent", namespaces=NS) == "2024-09-07T22:10:30+07:00"  # no fractions
    assert root.findtext("c:msgType", namespaces=NS) == "Alert"
    assert root.findtext("c:status", namespaces=NS) == "Actual"
    assert root.findtext("c:scope", namespaces=NS) == "Public"
    assert root.find("c:references", NS) is None
    infos = root.findall("c:info", NS)
    assert [i.findtext("c:language", namespaces=NS) for i in infos] == ["vi-VN", "en-US"]
    vi, en = infos
    assert [c.text for c in vi.findall("c:category", NS)] == ["Met", "Geo"]
    assert vi.findtext("c:event", namespaces=NS) == "Lũ quét, sạt lở đất"
    assert en.findtext("c:event", namespaces=NS) == "Flash flood and landslide"
    assert vi.findtext("c:responseType", namespaces=NS) == "Evacuate"
    assert vi.findtext("c:urgency", namespaces=NS) == "Future"  # onset 46 h after sending
    assert vi.findtext("c:severity", namespaces=NS) == "Severe"
    assert vi.findtext("c:certainty", namespaces=NS) == "Likely"
    assert vi.findtext("c:onset", namespaces=NS) == "2024-09-09T21:00:00+07:00"
    assert vi.findtext("c:expires", namespaces=NS) == "2024-09-10T10:00:00+07:00"  # end of the window
    assert "cấp 3" in vi.findtext("c:headline", namespaces=NS)
    assert "không phải cấp độ rủi ro thiên tai chính thức" in vi.findtext("c:description", namespaces=NS)
    assert "sơ tán đến Trường Tiểu học Phúc Khánh" in vi.findtext("c:instruction", namespaces=NS)
    area = vi.find("c:area", NS)
    assert area.findtext("c:areaDesc", namespaces=NS) == "xã Phúc Khánh, Lào Cai"
    assert en.find("c:area/c:areaDesc", NS).text == "Phúc Khánh commune, Lào Cai"
    assert area.findtext("c:geocode/c:valueName", namespaces=NS) == GEOCODE_NAME == "VN-commune-code"
    assert area.findtext("c:geocode/c:value", namespaces=NS) == "02998"
    assert area.findtext("c:polygon", namespaces=NS) == (
        "22.20000,104.55000 22.20000,104.60000 22.25000,104.60000 22.25000,104.55000 22.20000,104.55000")


def test_update_references_earlier_alerts():
    root = doc(UPDATE)
    assert root.findtext("c:msgType", namespaces=NS) == "Update"
    assert root.findtext("c:references", namespaces=NS) == (
        f"{SENDER},{WARNING.identifier},2024-09-07T22:10:30+07:00")
    assert root.findtext("c:info/c:severity", namespaces=NS) == "Extreme"
    reminder = notice(kind="reminder", previous_level=3, references=(WARNING.identifier,))
    assert doc(reminder).findtext("c:msgType", namespaces=NS) == "Update"
    # a reference already in the CAP form is kept as it is
    given = "other@x,ABC-1,2024-09-07T10:00:00+07:00"
    assert doc(notice(kind="update", level=4, previous_level=3, references=(given,))).findtext(
        "c:references", namespaces=NS) == given


def test_all_clear_is_an_update_with_allclear():
    root = doc(ALL_CLEAR)
    assert root.findtext("c:msgType", namespaces=NS) == "Update"
    refs = root.findtext("c:references", namespaces=NS).split()
    assert [r.split(",")[1] for r in refs] == [WARNING.identifier, UPDATE.identifier]
    info = root.find("c:info", NS)
    assert info.findtext("c:responseType", namespaces=NS) == "AllClear"
    assert info.findtext("c:urgency", namespaces=NS) == "Past"
    assert info.findtext("c:severity", namespaces=NS) == "Minor"
    assert info.find("c:onset", NS) is None
    assert "chính quyền địa phương cho phép" in info.findtext("c:instruction", namespaces=NS)
    # valid for 12 h after sending
    assert info.findtext("c:expires", namespaces=NS) == cap_time(ALL_CLEAR.issued + timedelta(hours=12))


def test_update_needs_references_and_their_times():
    with pytest.raises(CapError, match="has no references"):
        cap_xml(notice(kind="update", level=4, previous_level=3), sender=SENDER)
    with pytest.raises(CapError, match="sent time is unknown") as err:
        cap_xml(UPDATE, sender=SENDER)
    assert isinstance(err.value, EwarnError)


@pytest.mark.parametrize("bad", ["", "ewarn sender", "a,b", "x<y", "a&b"])
def test_bad_sender_is_refused(bad):
    with pytest.raises(CapError, match="cap_sender"):
        notice_to_cap(WARNING, sender=bad)


def test_bad_status_is_refused():
    with pytest.raises(CapError, match="status"):
        notice_to_cap(WARNING, sender=SENDER, status="Real")


@pytest.mark.parametrize(("lead", "expected"), [
    (timedelta(minutes=-30), "Immediate"),
    (timedelta(minutes=59, seconds=59), "Immediate"),
    (timedelta(hours=1), "Expected"),
    (timedelta(hours=6), "Expected"),
    (timedelta(hours=6, seconds=1), "Future"),
])
def test_urgency_from_lead_time(lead, expected):
    assert urgency(ISSUED + lead, ISSUED) == expected
    root = doc(notice(onset=ISSUED + lead, until=ISSUED + lead + timedelta(hours=3)))
    assert root.findtext("c:info/c:urgency", namespaces=NS) == expected


def test_urgency_without_onset_and_naive_times():
    assert urgency(None, ISSUED) == "Immediate"
    assert urgency(datetime(2024, 9, 7, 18), datetime(2024, 9, 7, 15)) == "Expected"  # naive = UTC


def test_severity_and_certainty():
    assert [severity(k) for k in (1, 2, 3, 4, 5)] == ["Minor", "Moderate", "Severe", "Extreme", "Extreme"]
    assert certainty() == "Likely" and certainty(0.8) == "Likely"
    assert certainty(0.3) == "Possible" and certainty(0.5) == "Possible"
    root = doc(WARNING, probability=0.3)
    assert {c.text for c in root.iterfind("c:info/c:certainty", NS)} == {"Possible"}


def test_response_type_follows_the_level():
    assert doc(notice(level=2)).findtext("c:info/c:responseType", namespaces=NS) == "Prepare"
    assert doc(notice(level=3)).findtext("c:info/c:responseType", namespaces=NS) == "Evacuate"


def test_cap_time():
    assert cap_time(datetime(2024, 12, 31, 17, 0, 0, 999999, tzinfo=UTC)) == "2025-01-01T00:00:00+07:00"
    assert TIME_RE.match(cap_time(datetime(2024, 1, 1)))


def test_real_commune_polygon_is_closed_small_and_faithful(shared_data):
    gpd = pytest.importorskip("geopandas")
    communes = gpd.read_file(shared_data / "communes" / "lao_cai_2025.geojson")
    counts = shapely.get_num_coordinates(communes.geometry.values)
    row = communes.iloc[int(counts.argmax())]  # the most detailed outline (287 points)
    assert counts.max() >= 100
    pts = commune_polygon(row.geometry)
    assert pts[0] == pts[-1]
    assert 4 <= len(pts) < 100
    lats, lons = zip(*pts, strict=True)
    assert min(lats) > 21 and max(lats) < 23.5 and min(lons) > 103 and max(lons) < 106  # (lat, lon)
    simplified = shapely.Polygon([(lon, lat) for lat, lon in pts])
    assert simplified.is_valid
    overlap = simplified.intersection(row.geometry).area / simplified.union(row.geometry).area
    assert overlap > 0.9
    # it validates in a CAP alert and comes back the same
    n = notice(commune_code=row.ma_xa, commune_name=row.ten_xa, polygon=pts)
    back = parse_cap(xml(n)).infos[0].polygons[0]
    assert len(back) == len(pts) and back[0] == back[-1]
    assert [x for p in back for x in p] == pytest.approx([x for p in pts for x in p], abs=1e-5)


def test_every_lao_cai_commune_fits(shared_data):
    gpd = pytest.importorskip("geopandas")
    communes = gpd.read_file(shared_data / "communes" / "lao_cai_2025.geojson")
    for geom in communes.geometry:
        pts = commune_polygon(geom)
        assert pts[0] == pts[-1] and 4 <= len(pts) < 100


def test_commune_polygon_edge_cases():
    big = shapely.Point(104.5, 22.2).buffer(0.1, quad_segs=64)  # 257 points
    small = shapely.Point(104.9, 22.2).buffer(0.01)
    pts = commune_polygon(shapely.MultiPolygon([small, big]))
    assert len(pts) < 100 and pts[0] == pts[-1]
    assert all(abs(lon - 104.5) < 0.11 for _, lon in pts)  # the largest part
    assert commune_polygon(shapely.Polygon()) == []
    with pytest.raises(CapError, match="LineString"):
        commune_polygon(shapely.LineString([(0, 0), (1, 1)]))


def test_polygon_text_closes_and_simplifies():
    assert polygon_text(SQUARE[:-1]) == polygon_text(SQUARE)
    ring = shapely.Point(104.5, 22.2).buffer(0.1, quad_segs=100).exterior.coords
    text = polygon_text([(lat, lon) for lon, lat in ring])
    pairs = text.split()
    assert len(pairs) < 100 and pairs[0] == pairs[-1]
    with pytest.raises(CapError, match=r"not \(lat, lon\)"):
        polygon_text([(lon, lat) for lat, lon in SQUARE])
    with pytest.raises(CapError, match="distinct points"):
        polygon_text([(22.2, 104.5), (22.3, 104.5)])


def test_roundtrip_through_parse_cap():
    msg = parse_cap(xml(UPDATE))
    assert msg.identifier == UPDATE.identifier
    assert msg.sender == SENDER and msg.status == "Actual" and msg.msg_type == "Update"
    assert msg.sent == UPDATE.issued.replace(microsecond=0)
    assert msg.referenced_identifiers == (WARNING.identifier,)
    vi, en = msg.infos
    assert (vi.language, en.language) == ("vi-VN", "en-US")
    assert vi.response_types == ("Evacuate",)
    assert vi.geocodes == ((GEOCODE_NAME, "02998"),)
    assert vi.polygons == (tuple(SQUARE),)


def test_xxe_attack_is_parsed_without_resolving(shared_data):
    data = (shared_data / "cap" / "example-xxe-attack.xml").read_bytes()
    assert b"<!ENTITY xxe SYSTEM" in data and b"file:///etc/passwd" in data  # what it tries
    msg = parse_cap(data)
    assert msg.identifier == "KSTO1055887203"
    info = msg.infos[0]
    assert info.headline == "SEVERE THUNDERSTORM WARNING"
    assert info.area_desc.endswith("SOUTHWESTERN ALPINE COUNTY IN CALIFORNIA")
    texts = [info.headline, info.description, info.instruction, info.area_desc, info.event]
    assert not any("&xxe;" in t or "root:" in t for t in texts)
    # the raw tree keeps the reference as an unresolved entity node, nothing was loaded
    root = etree.fromstring(data, safe_parser())
    sender_name = root.find("c:info/c:senderName", NS)
    assert sender_name.text == "NATIONAL WEATHER SERVICE SACRAMENTO CA"
    assert [c.tag for c in sender_name] == [etree.Entity]
    assert b"root:" not in etree.tostring(root)


def test_local_file_entity_is_not_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    data = (f'<?xml version="1.0"?><!DOCTYPE alert [<!ENTITY x SYSTEM "{secret.as_uri()}">]>'
            f'<alert xmlns="{CAP_NS}"><identifier>A&x;</identifier><sender>s</sender>'
            "<sent>2024-09-07T22:10:30+07:00</sent><status>Actual</status><msgType>Alert</msgType>"
            "<scope>Public</scope></alert>").encode()
    msg = parse_cap(data)
    assert msg.identifier == "A"
    assert "TOPSECRET" not in repr(msg)


def test_entity_expansion_bomb_is_refused():
    lol = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    data = (f'<?xml version="1.0"?><!DOCTYPE alert [<!ENTITY l0 "lol">{lol}]>'
            f'<alert xmlns="{CAP_NS}"><identifier>&l9;</identifier></alert>').encode()
    # refused as over-amplified (libxml2 >= 2.11) or, entities unresolved, as having no identifier
    with pytest.raises(CapError, match=r"not well-formed|<identifier>"):
        parse_cap(data)


def test_spec_example_parses_and_invalid_example_fails_the_schema(shared_data, schema):
    valid = (shared_data / "cap" / "example-valid-nws-thunderstorm.xml").read_bytes()
    assert validate_cap(valid, schema) == []
    msg = parse_cap(valid)
    assert msg.msg_type == "Alert" and msg.infos[0].polygons[0][0] == (38.47, -120.14)
    invalid = (shared_data / "cap" / "example-invalid.xml").read_bytes()
    problems = validate_cap(invalid, schema)
    assert problems and all(p.startswith("line ") for p in problems)


@pytest.mark.parametrize(("data", "match"), [
    (b"<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'><identifier>x</identifier>",
     "not well-formed.*line 1"),
    (b"<alert><identifier>x</identifier></alert>", "not <alert> in namespace"),
    (b"<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'><sender>s</sender></alert>", "<identifier>"),
    (b"<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'><identifier>i</identifier><sender>s</sender>"
     b"<sent>2024-09-07T22:10:30Z</sent></alert>", "not a CAP date-time"),
])
def test_malformed_documents_are_clear_errors(data, match):
    with pytest.raises(CapError, match=match):
        parse_cap(data)


def test_atom_feed_lists_the_active_alerts():
    alerts = [xml(WARNING), notice_to_cap(notice(commune_code="02947", commune_name="Bảo Yên"),
                                          sender=SENDER)]
    data = atom_feed(alerts, feed_id="http://127.0.0.1:8080/cap/feed.atom", title="ewarn CAP",
                     updated=ISSUED, link_base="http://127.0.0.1:8080/")
    feed = etree.fromstring(data, safe_parser())
    a = {"a": ATOM_NS}
    assert feed.tag == f"{{{ATOM_NS}}}feed"
    assert TIME_RE.match(feed.findtext("a:updated", namespaces=a))
    assert feed.findtext("a:author/a:name", namespaces=a) == "ewarn"
    entries = feed.findall("a:entry", a)
    assert len(entries) == 2
    hrefs = [e.find("a:link", a).get("href") for e in entries]
    assert hrefs == [f"http://127.0.0.1:8080/cap/{WARNING.identifier}.xml",
                     "http://127.0.0.1:8080/cap/ewarn-demo-20240907T12-02947-flash_landslide-warning-3.xml"]
    assert {e.find("a:link", a).get("type") for e in entries} == {"application/cap+xml"}
    assert entries[1].findtext("a:title", namespaces=a) == (
        "Cảnh báo lũ quét, sạt lở đất cấp 3 tại xã Bảo Yên, Lào Cai")
    assert [e.findtext("a:id", namespaces=a) for e in entries] == hrefs
    assert all(TIME_RE.match(e.findtext("a:updated", namespaces=a)) for e in entries)


def test_atom_feed_without_base_url_has_stable_ids():
    one = atom_feed([xml(WARNING)], feed_id="urn:ewarn:feed", title="t", updated=ISSUED)
    two = atom_feed([xml(WARNING)], feed_id="urn:ewarn:feed", title="t", updated=ISSUED)
    assert one == two
    entry = etree.fromstring(one, safe_parser()).find(f"{{{ATOM_NS}}}entry")
    assert entry.findtext(f"{{{ATOM_NS}}}id").startswith("urn:uuid:")
    assert entry.find(f"{{{ATOM_NS}}}link").get("href") == f"/cap/{WARNING.identifier}.xml"


def test_empty_feed():
    feed = etree.fromstring(atom_feed([], feed_id="urn:x", title="t", updated=ISSUED), safe_parser())
    assert feed.findall(f"{{{ATOM_NS}}}entry") == []


def test_notice_without_references_for_warning_and_languages():
    root = doc(dataclasses.replace(WARNING, polygon=[]), languages=("vi",))
    assert len(root.findall("c:info", NS)) == 1
    assert root.find("c:info/c:area/c:polygon", NS) is None
