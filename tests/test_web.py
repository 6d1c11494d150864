"""The web app of ``ewarn serve``: status page, assessment API, CAP files, Twilio webhook, operator actions.

One demo workspace per module: the demo region, the demo storm run through
ingest → assess → alerts (which fills the outbox, sends through the file
gateway and writes the CAP archive). Each test builds its own app over it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr
from lxml import etree
from sqlalchemy import func, insert, select
from twilio.request_validator import RequestValidator

from ewarn import demo
from ewarn.alerts.cap import ATOM_NS
from ewarn.alerts.capstore import read_index
from ewarn.alerts.outbox import outbox, outbox_counts
from ewarn.config import Workspace, init_workspace
from ewarn.pipeline import run_cycle
from ewarn.region import Region
from ewarn.store import Store, runs
from ewarn.watchdog import incidents

with warnings.catch_warnings():  # starlette's TestClient warns about httpx versions on import
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from ewarn.web import OPERATOR_TOKEN_ENV, create_app

PUBLIC_URL = "http://127.0.0.1:8080/base"
TWILIO_TOKEN = "twilio-auth-token-for-tests"
OPERATOR_TOKEN = "operator-token-for-tests"
NOW = demo.DEMO_CYCLE + dt.timedelta(hours=5)
ENV = {OPERATOR_TOKEN_ENV: OPERATOR_TOKEN, "TWILIO_AUTH_TOKEN": TWILIO_TOKEN}
AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
CALLBACK = "/webhooks/twilio/status"


@pytest.fixture(scope="module")
def demo_ws(tmp_path_factory) -> Workspace:
    root = tmp_path_factory.mktemp("web") / "ws"
    ws = init_workspace(root)
    (root / "ewarn.toml").write_text((root / "ewarn.toml").read_text(encoding="utf-8").replace(
        "min_level = 1", f'min_level = 1\npublic_url = "{PUBLIC_URL}"')
        + '\n[service]\nsources = ["demo"]\n', encoding="utf-8")
    ws = Workspace.open(root)
    demo.build_demo_region(ws.region_dir, demo.DEMO_SEED)
    region = Region.load(ws.region_dir)
    storm = demo.build_demo_storm(region, root / "incoming" / "storm.nc", demo.DEMO_SEED)
    result = run_cycle(ws, demo.DEMO_SOURCE, storm, region=region,
                       now=demo.DEMO_CYCLE + dt.timedelta(hours=3), stages=("ingest", "assess", "alerts"))
    assert result.status == "ok"
    return ws


def _client(ws: Workspace, environ: dict[str, str] | None = None, **kw) -> TestClient:
    return TestClient(create_app(ws, environ=ENV if environ is None else environ, clock=lambda: NOW, **kw))


def _store(ws: Workspace) -> Store:
    return Store.open(ws.database_url)


def _message(ws: Workspace, **where) -> dict:
    with _store(ws).engine.connect() as conn:
        q = select(outbox).order_by(outbox.c.id)
        for k, v in where.items():
            q = q.where(outbox.c[k] == v)
        return dict(conn.execute(q).mappings().first())


def _message_by_provider(ws: Workspace, provider_id: str) -> dict:
    return _message(ws, provider_id=provider_id)


def _sent_provider_ids(ws: Workspace) -> list[str]:
    with _store(ws).engine.connect() as conn:
        return list(conn.execute(select(outbox.c.provider_id).where(outbox.c.status == "sent")
                                 .order_by(outbox.c.id)).scalars())


def _open_incident(ws: Workspace, message: str) -> int:
    with _store(ws).engine.begin() as conn:
        return int(conn.execute(insert(incidents).values(
            kind="failed_cycle", subject="demo", message=message, opened_at=NOW)).inserted_primary_key[0])


def _assessment(ws: Workspace) -> xr.Dataset:
    path = ws.path("assessments", "demo", f"{demo.DEMO_CYCLE:%Y%m%dT%H}.nc")
    with xr.open_dataset(path) as ds:
        return ds.load()


# --------------------------------------------------------------------------- status page


def test_status_page_vietnamese_with_map_of_every_commune(demo_ws):
    r = _client(demo_ws).get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert '<html lang="vi">' in html and '<meta name="viewport"' in html
    svg = re.search(r"<svg.*?</svg>", html, re.S).group(0)
    paths = re.findall(r'<path class="commune" data-code="(\d+)" data-level="(\d)"', svg)
    ds = _assessment(demo_ws)
    assert len(paths) == 12
    expected = dict(zip(ds["commune"].values.astype(str), ds["level_max"].values.astype(int), strict=True))
    assert {c: int(lv) for c, lv in paths} == expected  # coloured by level_max of the latest cycle
    assert "Bản đồ cấp độ rủi ro theo xã" in html and "Hàng đợi tin nhắn" in html
    assert "Phúc Khánh" in html and "Cấp 3" in html
    assert "không phải cấp độ rủi ro thiên tai chính thức" in html  # LEVEL_DISCLAIMER["vi"]
    # cycle 2024-09-07 12Z is 19:00 in Asia/Ho_Chi_Minh; the app's clock says 5 h later
    assert "19:00 07/09/2024" in html and "5.0 giờ" in html
    # the outbox counts of the database, in Vietnamese
    sent = outbox_counts(_store(demo_ws))["sent"]
    assert sent > 0 and re.search(rf"<dt>đã gửi</dt><dd>{sent}</dd>", html)
    # self-contained: no script, no stylesheet or image from elsewhere
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert not re.search(r'(src|href)="(https?:)?//', html)


def test_status_page_in_english(demo_ws):
    html = _client(demo_ws).get("/", params={"lang": "en"}).text
    assert '<html lang="en">' in html
    assert "Risk level by commune" in html and "Message outbox" in html and "Level 3" in html
    assert "it is not the official disaster risk level" in html
    assert "Bản đồ cấp độ rủi ro theo xã" not in html
    assert 'href="?lang=vi"' in html


def test_status_page_puts_incidents_on_top_and_escapes_text(demo_ws):
    iid = _open_incident(demo_ws, "source demo failed: <script>alert(1)</script> & more")
    try:
        html = _client(demo_ws).get("/").text
        assert html.index('id="incidents"') < html.index('id="cycle"')
        assert f"#{iid} failed_cycle" in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html and "<script>" not in html
        assert "Có sự cố" in html
    finally:
        with _store(demo_ws).engine.begin() as conn:
            conn.execute(incidents.update().where(incidents.c.id == iid).values(closed_at=NOW))


def test_status_page_masks_phone_numbers_of_run_messages(demo_ws):
    with _store(demo_ws).engine.begin() as conn:
        rid = conn.execute(insert(runs).values(job="cycle", source="other", started_at=NOW, status="failed",
                                               step="alerts", message="gateway refused +84912345678"
                                               )).inserted_primary_key[0]
    try:
        html = _client(demo_ws).get("/").text
        assert "+84912345678" not in html and "+8491*****78" in html
        body = _client(demo_ws).get("/api/runs").json()
        assert body["runs"][0]["message"] == "gateway refused +8491*****78"
    finally:
        with _store(demo_ws).engine.begin() as conn:
            conn.execute(runs.delete().where(runs.c.id == rid))


def test_empty_workspace_without_region_still_renders(tmp_path):
    ws = init_workspace(tmp_path / "empty")
    client = _client(ws)
    r = client.get("/")
    assert r.status_code == 200
    assert "Chưa có đánh giá rủi ro nào" in r.text and "Không đọc được vùng" in r.text
    r = client.get("/api/assessments/latest")
    assert r.status_code == 404 and "no assessment yet" in r.json()["detail"]
    assert client.get("/api/assessments/latest.geojson").status_code == 404
    assert client.get("/healthz").json() == {"status": "ok", "db": True, "latest_cycle": None, "incidents": 0}
    r = client.get("/cap/feed.atom")
    assert r.status_code == 404 and "no CAP feed yet" in r.json()["detail"]


# --------------------------------------------------------------------------- JSON API


def test_latest_assessment_json_matches_the_netcdf(demo_ws):
    r = _client(demo_ws).get("/api/assessments/latest")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["source"] == "demo" and body["cycle"] == "2024-09-07T12:00:00Z"
    assert set(body["disclaimer"]) == {"vi", "en"}
    ds = _assessment(demo_ws)
    by_code = {c["code"]: c for c in body["communes"]}
    assert set(by_code) == set(ds["commune"].values.astype(str))
    levels = [c["level_max"] for c in body["communes"]]
    assert levels == sorted(levels, reverse=True)  # most severe first
    assert body["levels"] == {str(k): levels.count(k) for k in range(6)}
    for code in ds["commune"].values.astype(str):
        c, row = by_code[code], ds.sel(commune=code)
        assert c["level_max"] == int(row["level_max"])
        assert c["rain_24h_max"] == pytest.approx(float(row["rain_24h_max"]), rel=1e-6)
        onset = row["onset_time"].values
        if np.isnat(onset):
            assert c["onset_time"] is None
        else:
            assert c["onset_time"] == pd.Timestamp(onset).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert by_code["02998"]["name"] == "Phúc Khánh" and by_code["02998"]["level_name_vi"].startswith("Cấp")
    assert "path" not in body["communes"][0]  # no server path is published
    other = _client(demo_ws).get("/api/assessments/latest", params={"source": "gfs"})
    assert other.status_code == 404 and "'gfs'" in other.json()["detail"]
    assert _client(demo_ws).get("/api/assessments/latest", params={"format": "kml"}).status_code == 422


def test_latest_assessment_geojson_is_rfc7946(demo_ws):
    client = _client(demo_ws)
    a = client.get("/api/assessments/latest.geojson")
    b = client.get("/api/assessments/latest", params={"format": "geojson"})
    assert a.status_code == b.status_code == 200
    assert a.headers["content-type"] == "application/geo+json" and a.content == b.content
    fc = a.json()
    assert fc["type"] == "FeatureCollection" and "crs" not in fc and len(fc["features"]) == 12
    levels = {c["code"]: c["level_max"] for c in client.get("/api/assessments/latest").json()["communes"]}
    region = Region.load(demo_ws.region_dir).communes.set_index("code")
    for f in fc["features"]:
        assert f["type"] == "Feature" and f["id"] == f["properties"]["code"]
        assert f["properties"]["level_max"] == levels[f["id"]]
        geom = shapely.geometry.shape(f["geometry"])
        assert geom.geom_type in ("Polygon", "MultiPolygon")
        for poly in getattr(geom, "geoms", [geom]):  # RFC 7946 §3.1.6 right-hand rule
            assert poly.exterior.is_ccw and all(not ring.is_ccw for ring in poly.interiors)
        assert geom.equals(region.loc[f["id"], "geometry"])  # the region's polygon, only re-wound
        lon0, lat0, lon1, lat1 = geom.bounds
        assert 102 < lon0 < lon1 < 106 and 20 < lat0 < lat1 < 24  # lon, lat order (Lào Cai)


def test_runs_and_healthz(demo_ws):
    client = _client(demo_ws)
    body = client.get("/api/runs").json()
    first = next(r for r in body["runs"] if r["job"] == "cycle" and r["source"] == "demo")
    assert first["status"] == "ok" and first["step"] == "alerts" and first["cycle"] == "2024-09-07T12:00:00Z"
    assert first["counts"]["messages_queued"] > 0
    assert len(client.get("/api/runs", params={"limit": 1}).json()["runs"]) == 1
    assert client.get("/api/runs", params={"limit": 0}).status_code == 422
    h = client.get("/healthz")
    assert h.status_code == 200
    assert h.json()["status"] == "ok" and h.json()["db"] is True
    assert h.json()["latest_cycle"] == "2024-09-07T12:00:00Z"
    with _store(demo_ws).engine.connect() as conn:
        n_open = conn.execute(select(func.count()).select_from(incidents)
                              .where(incidents.c.closed_at.is_(None))).scalar()
    assert h.json()["incidents"] == n_open


def test_unreadable_database_is_503_not_a_traceback(tmp_path):
    root = init_workspace(tmp_path / "ws").root
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    ws = Workspace.open(root)
    ws.settings.workspace.database_url = f"sqlite:///{blocker}/ewarn.db"
    client = _client(ws)
    h = client.get("/healthz")
    assert h.status_code == 503 and h.json()["db"] is False and "database" in h.json()["detail"]
    page = client.get("/")
    assert page.status_code == 503 and "Không đọc được cơ sở dữ liệu" in page.text
    r = client.get("/api/runs")
    assert r.status_code == 503 and "database_url" in r.json()["detail"]


# --------------------------------------------------------------------------- CAP


def test_cap_feed_and_one_alert_are_served_with_their_media_types(demo_ws):
    client = _client(demo_ws)
    feed = client.get("/cap/feed.atom")
    assert feed.status_code == 200 and feed.headers["content-type"] == "application/atom+xml"
    assert feed.content == demo_ws.path("cap", "feed.atom").read_bytes()
    root = etree.fromstring(feed.content)
    assert root.tag == f"{{{ATOM_NS}}}feed"
    ident = sorted(read_index(demo_ws.path("cap")))[0]
    alert = client.get(f"/cap/{ident}.xml")
    assert alert.status_code == 200 and alert.headers["content-type"] == "application/cap+xml"
    assert alert.content == demo_ws.path("cap", f"{ident}.xml").read_bytes()
    cap = etree.fromstring(alert.content)
    assert cap.tag == "{urn:oasis:names:tc:emergency:cap:1.2}alert"
    assert cap.findtext("{urn:oasis:names:tc:emergency:cap:1.2}identifier") == ident
    missing = client.get("/cap/ewarn-demo-20000101T00-00000-heavy_rain-warning-1.xml")
    assert missing.status_code == 404 and "feed.atom" in missing.json()["detail"]


@pytest.mark.parametrize("url", [
    "/cap/..%2Fewarn.toml", "/cap/..%2Fsecret.xml", "/cap/..%2F..%2Fsecret.xml", "/cap/%2e%2e.xml",
    "/cap/.hidden.xml", "/cap/index.json", "/cap/a%00b.xml", "/cap/%2Fetc%2Fpasswd.xml",
    "/cap/..\\secret.xml", "/cap/" + "a" * 300 + ".xml",
])
def test_cap_paths_outside_the_archive_are_refused(demo_ws, url):
    (demo_ws.root / "secret.xml").write_text("<secret/>")
    (demo_ws.path("cap") / ".hidden.xml").write_text("<hidden/>")
    r = _client(demo_ws).get(url)
    assert r.status_code in (400, 404)
    assert "secret" not in r.text.replace("secret.xml", "") and "<hidden/>" not in r.text


# --------------------------------------------------------------------------- Twilio webhook


def _signed(url: str, params: dict[str, str], token: str = TWILIO_TOKEN) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, params)}


def test_webhook_with_a_valid_signature_marks_the_message_delivered(demo_ws):
    sid = _sent_provider_ids(demo_ws)[0]
    params = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": "AC" + "0" * 32}
    r = _client(demo_ws).post(CALLBACK, data=params, headers=_signed(PUBLIC_URL + CALLBACK, params))
    assert r.status_code == 204
    row = _message_by_provider(demo_ws, sid)
    assert row["status"] == "delivered" and row["delivered_at"] is not None


def test_webhook_undelivered_keeps_the_error_code(demo_ws):
    sid = _sent_provider_ids(demo_ws)[1]
    params = {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    r = _client(demo_ws).post(CALLBACK, data=params, headers=_signed(PUBLIC_URL + CALLBACK, params))
    assert r.status_code == 204
    row = _message_by_provider(demo_ws, sid)
    assert row["status"] == "undelivered" and "30003" in row["last_error"]


def test_webhook_intermediate_status_changes_nothing(demo_ws):
    sid = _sent_provider_ids(demo_ws)[2]
    params = {"MessageSid": sid, "MessageStatus": "sent"}
    r = _client(demo_ws).post(CALLBACK, data=params, headers=_signed(PUBLIC_URL + CALLBACK, params))
    assert r.status_code == 204 and _message_by_provider(demo_ws, sid)["status"] == "sent"


@pytest.mark.parametrize("case", ["missing", "wrong-token", "wrong-url", "tampered", "garbage"])
def test_webhook_with_a_bad_or_missing_signature_is_403_and_changes_nothing(demo_ws, case):
    sid = _sent_provider_ids(demo_ws)[3]
    before = _message_by_provider(demo_ws, sid)
    params = {"MessageSid": sid, "MessageStatus": "delivered"}
    headers = {
        "missing": {},
        "wrong-token": _signed(PUBLIC_URL + CALLBACK, params, token="another-token"),
        "wrong-url": _signed("http://testserver" + CALLBACK, params),  # not the public URL Twilio calls
        "tampered": _signed(PUBLIC_URL + CALLBACK, {**params, "MessageStatus": "failed"}),
        "garbage": {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
    }[case]
    r = _client(demo_ws).post(CALLBACK, data=params, headers=headers)
    assert r.status_code == 403 and "X-Twilio-Signature" in r.json()["detail"]
    assert _message_by_provider(demo_ws, sid) == before


def test_webhook_without_the_auth_token_never_accepts(demo_ws):
    sid = _sent_provider_ids(demo_ws)[3]
    params = {"MessageSid": sid, "MessageStatus": "delivered"}
    r = _client(demo_ws, {OPERATOR_TOKEN_ENV: OPERATOR_TOKEN}).post(
        CALLBACK, data=params, headers=_signed(PUBLIC_URL + CALLBACK, params))
    assert r.status_code == 503 and "TWILIO_AUTH_TOKEN" in r.json()["detail"]
    assert _message_by_provider(demo_ws, sid)["status"] == "sent"


def test_webhook_without_public_url_checks_the_request_url(demo_ws):
    alerts = demo_ws.settings.alerts.model_copy(update={"public_url": ""})
    ws = Workspace(root=demo_ws.root, settings=demo_ws.settings.model_copy(update={"alerts": alerts}))
    sid = _sent_provider_ids(demo_ws)[4]
    params = {"MessageSid": sid, "MessageStatus": "failed", "ErrorCode": "30008"}
    client = _client(ws)
    assert client.post(CALLBACK, data=params,
                       headers=_signed(PUBLIC_URL + CALLBACK, params)).status_code == 403
    assert _message_by_provider(demo_ws, sid)["status"] == "sent"
    r = client.post(CALLBACK, data=params, headers=_signed("http://testserver" + CALLBACK, params))
    assert r.status_code == 204 and _message_by_provider(demo_ws, sid)["status"] == "failed"


def test_webhook_signed_but_without_message_sid_is_400(demo_ws):
    params = {"MessageStatus": "delivered"}
    r = _client(demo_ws).post(CALLBACK, data=params, headers=_signed(PUBLIC_URL + CALLBACK, params))
    assert r.status_code == 400 and "MessageSid" in r.json()["detail"]


# --------------------------------------------------------------------------- operator actions

OPERATOR_CALLS = [("/api/operator/run-cycle/demo", None), ("/api/operator/incidents/1/ack", None),
                  ("/api/operator/test-message", {"to": "+84912345678"})]


@pytest.mark.parametrize(("url", "body"), OPERATOR_CALLS)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": OPERATOR_TOKEN},
                                     {"Authorization": f"Basic {OPERATOR_TOKEN}"}])
def test_operator_endpoints_need_the_token(demo_ws, url, body, headers):
    calls = []
    before = outbox_counts(_store(demo_ws))
    r = _client(demo_ws, run_job=lambda *a: calls.append(a)).post(url, json=body, headers=headers)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert calls == [] and outbox_counts(_store(demo_ws)) == before


@pytest.mark.parametrize(("url", "body"), OPERATOR_CALLS)
def test_operator_endpoints_are_closed_when_no_token_is_configured(demo_ws, url, body):
    calls = []
    r = _client(demo_ws, {"TWILIO_AUTH_TOKEN": TWILIO_TOKEN}, run_job=lambda *a: calls.append(a)).post(
        url, json=body, headers={"Authorization": "Bearer "})
    assert r.status_code == 503 and OPERATOR_TOKEN_ENV in r.json()["detail"] and calls == []


def test_run_cycle_now_runs_the_job_in_the_background(demo_ws):
    calls = []
    client = _client(demo_ws, run_job=lambda root, source: calls.append((root, source)) or "ok")
    r = client.post("/api/operator/run-cycle/demo", headers=AUTH)
    assert r.status_code == 202 and r.json()["source"] == "demo"
    assert calls == [(str(demo_ws.root), "demo")]
    r = client.post("/api/operator/run-cycle/gfs", headers=AUTH)
    assert r.status_code == 404 and "[service] sources" in r.json()["detail"] and len(calls) == 1
    # a failing job is logged, and the source can be run again
    bad = _client(demo_ws, run_job=lambda root, source: 1 / 0)
    assert bad.post("/api/operator/run-cycle/demo", headers=AUTH).status_code == 202
    assert bad.post("/api/operator/run-cycle/demo", headers=AUTH).status_code == 202


def test_acknowledge_an_incident(demo_ws):
    iid = _open_incident(demo_ws, "source demo failed at step 'ingest'")
    try:
        client = _client(demo_ws)
        r = client.post(f"/api/operator/incidents/{iid}/ack", json={"by": "Trực ban Lào Cai"}, headers=AUTH)
        assert r.status_code == 200 and r.json()["acknowledged_by"] == "Trực ban Lào Cai"
        with _store(demo_ws).engine.connect() as conn:
            row = conn.execute(select(incidents).where(incidents.c.id == iid)).mappings().one()
        assert row["acknowledged_by"] == "Trực ban Lào Cai" and row["acknowledged_at"] is not None
        assert "đã tiếp nhận: Trực ban Lào Cai" in client.get("/").text
        assert client.post(f"/api/operator/incidents/{iid}/ack", headers=AUTH).status_code == 200
        r = client.post("/api/operator/incidents/999999/ack", headers=AUTH)
        assert r.status_code == 404 and "no open incident" in r.json()["detail"]
    finally:
        with _store(demo_ws).engine.begin() as conn:
            conn.execute(incidents.update().where(incidents.c.id == iid).values(closed_at=NOW))


def test_test_message_is_queued_for_the_dispatcher(demo_ws):
    client = _client(demo_ws)
    r = client.post("/api/operator/test-message", json={"to": "0912 345 678"}, headers=AUTH)
    assert r.status_code == 202
    body = r.json()
    assert body["status"] == "queued" and "+84912345678" not in json.dumps(body)  # masked in the answer
    row = _message(demo_ws, id=body["id"])
    assert row["kind"] == "test" and row["status"] == "queued" and row["recipient"] == "+84912345678"
    assert "Tin nhắn thử nghiệm" in row["body"] and "00:00 08/09/2024" in row["body"]  # NOW, Vietnam time
    assert row["segments"] == 1 and row["encoding"] == "UCS-2"
    again = client.post("/api/operator/test-message", json={"to": "+84912345678", "body": "thử"},
                        headers=AUTH)
    assert again.status_code == 202 and again.json()["key"] != body["key"]  # one row per request
    assert _message(demo_ws, id=again.json()["id"])["body"] == "thử"


@pytest.mark.parametrize("payload", [{"to": "+8412"}, {"to": "hello"}, {"to": "+84 1 2"}, {},
                                     {"to": "+84912345678", "extra": 1}, {"to": "+84912345678", "body": ""}])
def test_test_message_with_a_bad_phone_or_body_is_422(demo_ws, payload):
    with _store(demo_ws).engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(outbox)).scalar()
    r = _client(demo_ws).post("/api/operator/test-message", json=payload, headers=AUTH)
    assert r.status_code == 422
    with _store(demo_ws).engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(outbox)).scalar() == before
