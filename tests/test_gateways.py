"""SMS gateways: registry (entry points), http (fake provider on 127.0.0.1), file, console, failover."""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from ewarn.alerts.gateways import (
    Gateway,
    GatewayError,
    Receipt,
    SmsMessage,
    available_gateways,
    load_gateway,
    registry,
)
from ewarn.alerts.gateways.console import ConsoleGateway
from ewarn.alerts.gateways.failover import FailoverGateway
from ewarn.alerts.gateways.file import FileGateway
from ewarn.alerts.gateways.http import HttpGateway, json_path
from ewarn.alerts.gateways.twilio import TwilioGateway
from ewarn.config import AlertSettings

TO = "+84981234567"
BODY = "CẢNH BÁO LŨ QUÉT: xã Bản Hồ, mức 3."
TOKEN = "sk-live-7f3a9c2e5b"
API_KEY = "ak-91b2c3d4e5f6"
ENV = {"EWARN_SMS_TOKEN": TOKEN, "EWARN_SMS_KEY": API_KEY,
       "TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "TWILIO_AUTH_TOKEN": "2" * 32}


class FakeProvider:
    """A brandname-SMS provider on 127.0.0.1: records requests, answers queued (status, body)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.replies: list[tuple[int, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.requests.append({"method": self.command, "path": self.path,
                                      "headers": dict(self.headers), "body": raw.decode()})
                status, body = fake.replies.pop(0) if fake.replies else (200, "{}")
                out = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def do_POST(self) -> None:
                self._handle()

            def do_GET(self) -> None:
                self._handle()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/send"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def reply(self, status: int, body: dict | str) -> None:
        self.replies.append((status, body if isinstance(body, str) else json.dumps(body)))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    fake = FakeProvider()
    yield fake
    fake.close()


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/api/send"


def _brandname(url: str, **over: object) -> dict:
    """An eSMS-like JSON brandname provider table."""
    return {"url": url, "format": "json", "auth_header": "Authorization", "auth_env": "EWARN_SMS_TOKEN",
            "auth_scheme": "Bearer", "sender": "EWARN", "phone_format": "digits",
            "fields": {"to": "Phone", "body": "Content", "sender": "Brandname", "key": "RequestId"},
            "extra": {"SmsType": "2"}, "id_path": "SMSID", "error_path": "CodeResult",
            "message_path": "ErrorMessage", "success_codes": ["100"], "retry_codes": ["99"],
            "timeout_s": 5.0, **over}


def _http(table: dict) -> HttpGateway:
    gw = load_gateway("http", AlertSettings(gateway="http", gateways={"http": table}), environ=ENV)
    assert isinstance(gw, HttpGateway)
    return gw


# --- registry -------------------------------------------------------------------------------

def test_registry_finds_the_five_builtin_gateways(tmp_path: Path) -> None:
    assert {"twilio", "http", "file", "console", "failover"} <= set(available_gateways())
    tables = {"twilio": {"from_number": "+15005550006"}, "http": {"url": "https://sms.example.vn/send"},
              "failover": {"primary": "http", "secondary": "file"}}
    settings = AlertSettings(gateways=tables)
    expected = {"twilio": TwilioGateway, "http": HttpGateway, "file": FileGateway,
                "console": ConsoleGateway, "failover": FailoverGateway}
    for name, cls in expected.items():
        gw = load_gateway(name, settings, environ=ENV, workspace_root=tmp_path)
        assert type(gw) is cls and gw.name == name
        assert isinstance(gw, Gateway) and gw.default_rate_per_second >= 0
        gw.close()
    assert load_gateway("twilio", settings, environ=ENV).default_rate_per_second == 1.0  # long code


def test_unknown_gateway_lists_the_available_ones() -> None:
    with pytest.raises(GatewayError) as err:
        load_gateway("viettel", AlertSettings(gateway="viettel"), environ={})
    msg = str(err.value)
    assert "viettel" in msg and "[alerts] gateway" in msg
    for name in ("console", "failover", "file", "http", "twilio"):
        assert name in msg


def test_third_party_entry_point_and_broken_package(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = {"carrier": EntryPoint("carrier", "ewarn.alerts.gateways.console:ConsoleGateway",
                                 registry.ENTRY_POINT_GROUP),
           "broken": EntryPoint("broken", "ewarn_no_such_package.sms:Gateway", registry.ENTRY_POINT_GROUP)}
    monkeypatch.setattr(registry, "_entry_points", lambda: eps)
    assert available_gateways() == ["broken", "carrier"]
    assert isinstance(load_gateway("carrier", AlertSettings(), environ={}), ConsoleGateway)
    with pytest.raises(GatewayError, match=r"'broken'.*cannot be loaded.*reinstall"):
        load_gateway("broken", AlertSettings(), environ={})


def test_unknown_option_names_the_table_and_key() -> None:
    with pytest.raises(GatewayError, match=r"\[alerts.gateways.console\] colour: not a known key"):
        load_gateway("console", AlertSettings(gateways={"console": {"colour": "red"}}), environ={})
    with pytest.raises(GatewayError, match=r"\[alerts.gateways.http\] url: required"):
        load_gateway("http", AlertSettings(gateways={"http": {}}), environ={})


# --- http -------------------------------------------------------------------------------------

def test_http_json_request_mapping_and_auth(provider: FakeProvider) -> None:
    gw = _http(_brandname(provider.url))
    provider.reply(200, {"CodeResult": "100", "SMSID": "b5c1-42", "CountRegenerate": 0})
    receipt = gw.send(SmsMessage(to=TO, body=BODY, key="cycle-20240907T12/bh/1"))
    assert receipt == Receipt(accepted=True, provider_id="b5c1-42", status="sent", gateway="http")
    (req,) = provider.requests
    assert req["method"] == "POST" and req["path"] == "/api/send"
    assert req["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert req["headers"]["Content-Type"].startswith("application/json")
    assert json.loads(req["body"]) == {"Phone": "84981234567", "Content": BODY, "Brandname": "EWARN",
                                       "RequestId": "cycle-20240907T12/bh/1", "SmsType": "2"}


def test_http_form_request_with_secret_field(provider: FakeProvider) -> None:
    table = {"url": provider.url + "?v=2", "format": "form", "phone_format": "national",
             "fields": {"to": "phone", "body": "message"}, "secret_fields": {"api_key": "EWARN_SMS_KEY"},
             "id_path": "data.0.id", "error_path": "status", "success_codes": ["success"]}
    gw = _http(table)
    provider.reply(200, {"status": "success", "data": [{"id": 9001}]})
    receipt = gw.send(SmsMessage(to=TO, body=BODY))
    assert receipt.accepted and receipt.provider_id == "9001"
    (req,) = provider.requests
    assert req["path"] == "/api/send?v=2"
    assert req["headers"]["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert dict(urllib.parse.parse_qsl(req["body"])) == {"phone": "0981234567", "message": BODY,
                                                         "api_key": API_KEY}
    assert "Authorization" not in req["headers"]


@pytest.mark.parametrize(("status", "body", "code", "retryable"), [
    (200, {"CodeResult": "104", "ErrorMessage": "Brandname chưa được đăng ký"}, "104", False),
    (200, {"CodeResult": "99", "ErrorMessage": "Hệ thống bận"}, "99", True),   # retry_codes
    (429, {"CodeResult": "429"}, "429", True),
    (503, "Service Unavailable", "http-503", True),
    (400, "<html>Bad Request</html>", "http-400", False),
    (200, "not json", "", False),                                             # no CodeResult at all
])
def test_http_error_mapping(provider: FakeProvider, status: int, body: object, code: str,
                            retryable: bool) -> None:
    gw = _http(_brandname(provider.url))
    provider.reply(status, body)  # type: ignore[arg-type]
    receipt = gw.send(SmsMessage(to=TO, body=BODY))
    assert not receipt.accepted and receipt.error_code == code and receipt.retryable is retryable
    assert receipt.gateway == "http" and receipt.error_message


def test_http_without_error_path_accepts_any_2xx(provider: FakeProvider) -> None:
    gw = _http({"url": provider.url})
    provider.reply(202, "")
    assert gw.send(SmsMessage(to=TO, body="x")).accepted
    assert json.loads(provider.requests[0]["body"]) == {"to": TO, "body": "x"}


def test_http_server_down_is_retryable() -> None:
    receipt = _http(_brandname(_closed_port_url())).send(SmsMessage(to=TO, body=BODY))
    assert not receipt.accepted and receipt.retryable and receipt.error_code == "connection"


def test_http_credentials_come_from_the_environment_only() -> None:
    settings = AlertSettings(gateways={"http": _brandname("https://sms.example.vn/send")})
    with pytest.raises(GatewayError, match="EWARN_SMS_TOKEN"):
        load_gateway("http", settings, environ={})
    with pytest.raises(GatewayError, match="auth_header and auth_env go together"):
        _http({"url": "https://sms.example.vn/send", "auth_header": "X-Api-Key"})
    with pytest.raises(GatewayError, match=r"\[alerts.gateways.http\] fields"):
        _http({"url": "https://sms.example.vn/send", "fields": {"to": "p", "body": "c", "phone": "x"}})


def test_http_no_secret_or_number_in_receipt_or_logs(provider: FakeProvider,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ewarn")
    gw = _http(_brandname(provider.url, secret_fields={"ApiKey": "EWARN_SMS_KEY"}))
    provider.reply(401, {"CodeResult": "101", "ErrorMessage": f"Sai ApiKey {API_KEY} / {TOKEN} cho {TO}"})
    receipt = gw.send(SmsMessage(to=TO, body=BODY))
    assert not receipt.accepted and receipt.error_code == "101" and receipt.retryable  # credentials
    text = caplog.text + repr(receipt)
    assert "Sai ApiKey" in text
    for secret in (API_KEY, TOKEN, TO):
        assert secret not in text


def test_json_path() -> None:
    doc = {"data": [{"id": 7}, {"id": 8}], "code": 0}
    assert json_path(doc, "data.1.id") == 8
    assert json_path(doc, "code") == 0
    assert json_path(doc, "data.5.id") is None and json_path(doc, "nope.x") is None


# --- file and console -------------------------------------------------------------------------

def test_file_gateway_writes_json_lines_in_the_workspace(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ewarn")
    gw = load_gateway("file", AlertSettings(), environ={}, workspace_root=tmp_path)  # the default
    before = dt.datetime.now(dt.UTC)
    receipts = [gw.send(SmsMessage(to=TO, body=BODY, key=f"k{i}")) for i in range(3)]
    lines = (tmp_path / "outbox" / "sent.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["key"] for r in records] == ["k0", "k1", "k2"]
    assert all(r["to"] == TO and r["body"] == BODY for r in records)  # the delivery record: unmasked
    assert [r["provider_id"] for r in records] == [r.provider_id for r in receipts]
    assert len({r.provider_id for r in receipts}) == 3 and all(r.accepted for r in receipts)
    times = [dt.datetime.fromisoformat(r["time"]) for r in records]
    assert all(t.utcoffset() == dt.timedelta(0) and t >= before - dt.timedelta(seconds=1) for t in times)
    assert TO not in caplog.text


def test_file_gateway_concurrent_appends_do_not_interleave(tmp_path: Path) -> None:
    path = tmp_path / "sent.jsonl"
    body = "Sơ tán ngay. " * 40  # ~560 bytes: a torn write would break the JSON
    gateways = [FileGateway(path) for _ in range(6)]  # separate instances: no shared lock

    def work(i: int) -> None:
        for j in range(40):
            assert gateways[i].send(SmsMessage(to=TO, body=body, key=f"{i}-{j}")).accepted

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert sorted(r["key"] for r in records) == sorted(f"{i}-{j}" for i in range(6) for j in range(40))
    assert all(r["body"] == body for r in records)


def test_file_gateway_options(tmp_path: Path) -> None:
    gw = load_gateway("file", AlertSettings(gateways={"file": {"path": "drill/out.jsonl"}}), environ={},
                      workspace_root=tmp_path)
    assert gw.send(SmsMessage(to=TO, body="x")).accepted
    assert (tmp_path / "drill" / "out.jsonl").exists()
    with pytest.raises(GatewayError, match="relative but no workspace"):
        load_gateway("file", AlertSettings(), environ={})
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a folder")
    refused = FileGateway(blocked / "sent.jsonl").send(SmsMessage(to=TO, body="x"))
    assert not refused.accepted and refused.retryable and refused.error_code == "io-error"


def test_console_gateway_masks_the_number(capsys: pytest.CaptureFixture[str]) -> None:
    receipt = load_gateway("console", AlertSettings(), environ={}).send(SmsMessage(to=TO, body=BODY))
    out = capsys.readouterr().out
    assert receipt.accepted and receipt.gateway == "console"
    assert out == f"→ +8498*****67: {BODY}\n"


# --- failover ---------------------------------------------------------------------------------

def _failover(provider_url: str, tmp_path: Path) -> Gateway:
    tables = {"failover": {"primary": "http", "secondary": "file"}, "http": _brandname(provider_url)}
    return load_gateway("failover", AlertSettings(gateway="failover", gateways=tables), environ=ENV,
                        workspace_root=tmp_path)


def _outbox(tmp_path: Path) -> list[dict]:
    path = tmp_path / "outbox" / "sent.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_failover_uses_the_secondary_on_a_retryable_failure(provider: FakeProvider, tmp_path: Path) -> None:
    gw = _failover(provider.url, tmp_path)
    provider.reply(200, {"CodeResult": "100", "SMSID": "p-1"})
    provider.reply(503, "down")
    first = gw.send(SmsMessage(to=TO, body=BODY, key="a"))
    second = gw.send(SmsMessage(to=TO, body=BODY, key="b"))
    assert (first.accepted, first.gateway, first.provider_id) == (True, "http", "p-1")
    assert second.accepted and second.gateway == "file"
    assert [r["key"] for r in _outbox(tmp_path)] == ["b"]


def test_failover_keeps_a_permanent_refusal(provider: FakeProvider, tmp_path: Path) -> None:
    gw = _failover(provider.url, tmp_path)
    provider.reply(200, {"CodeResult": "104", "ErrorMessage": "Số điện thoại không hợp lệ"})
    receipt = gw.send(SmsMessage(to=TO, body=BODY, key="a"))
    assert not receipt.accepted and not receipt.retryable and receipt.gateway == "http"
    assert _outbox(tmp_path) == []


def test_failover_on_unreachable_primary_and_on_an_exception(tmp_path: Path) -> None:
    gw = _failover(_closed_port_url(), tmp_path)
    assert gw.send(SmsMessage(to=TO, body=BODY, key="a")).gateway == "file"

    class Raising:
        name = "raising"
        default_rate_per_second = 5.0

        def send(self, message: SmsMessage) -> Receipt:
            raise RuntimeError("bug")

        def close(self) -> None:
            pass

    both = FailoverGateway(Raising(), FileGateway(tmp_path / "x.jsonl", rate_per_second=0.0))  # type: ignore[arg-type]
    assert both.default_rate_per_second == 5.0
    receipt = both.send(SmsMessage(to=TO, body=BODY))
    assert receipt.accepted and receipt.gateway == "file"
    worse = FailoverGateway(Raising(), Raising())  # type: ignore[arg-type]
    refused = worse.send(SmsMessage(to=TO, body=BODY))
    assert not refused.accepted and refused.retryable


@pytest.mark.parametrize(("table", "needle"), [
    ({"primary": "http"}, r"\[alerts.gateways.failover\] secondary: required"),
    ({"primary": "file", "secondary": "file"}, "must be different"),
    ({"primary": "failover", "secondary": "file"}, "cannot contain itself"),
    ({"primary": "viettel", "secondary": "file"}, "unknown SMS gateway 'viettel'.*available"),
])
def test_failover_bad_options(table: dict, needle: str, tmp_path: Path) -> None:
    settings = AlertSettings(gateway="failover", gateways={"failover": table})
    with pytest.raises(GatewayError, match=needle):
        load_gateway("failover", settings, environ={}, workspace_root=tmp_path)


def test_http_get_sends_the_fields_in_the_query(provider: FakeProvider) -> None:
    gw = _http({"url": provider.url, "method": "GET", "fields": {"to": "dest", "body": "text"},
                "extra": {"unicode": 1}})
    assert gw.send(SmsMessage(to=TO, body=BODY)).accepted
    (req,) = provider.requests
    assert req["method"] == "GET" and req["body"] == ""
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(req["path"]).query))
    assert query == {"dest": TO, "text": BODY, "unicode": "1"}
