"""Twilio gateway against a fake Twilio API on 127.0.0.1 (through api_base_url); webhooks."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from twilio.request_validator import RequestValidator

from ewarn.alerts.gateways import GatewayError, SmsMessage, load_gateway
from ewarn.alerts.gateways.twilio import (
    TwilioGateway,
    parse_status_callback,
    validate_twilio_signature,
)
from ewarn.config import AlertSettings

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "f00dfacecafe" + "1234" * 5
ENV = {"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN}
SERVICE = "MG" + "fedcba9876543210" * 2
TO = "+84981234567"
BODY = "CẢNH BÁO LŨ QUÉT: xã Bản Hồ, mức 3. Di chuyển đến nơi an toàn."


class FakeTwilio:
    """ThreadingHTTPServer answering queued (status, body, delay) replies; records each request."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.replies: list[tuple[int, str, float]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.requests.append({"path": self.path, "headers": dict(self.headers),
                                      "form": dict(urllib.parse.parse_qsl(raw.decode()))})
                status, body, delay = fake.replies.pop(0) if fake.replies else (201, _created(), 0.0)
                time.sleep(delay)
                out = body.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except OSError:  # the client gave up (timeout test)
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def reply(self, status: int, body: dict | str, delay: float = 0.0) -> None:
        self.replies.append((status, body if isinstance(body, str) else json.dumps(body), delay))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _created(sid: str = "SM" + "a" * 32, status: str = "queued") -> str:
    return json.dumps({"sid": sid, "status": status, "to": TO, "body": BODY, "account_sid": SID})


def _error(code: int, status: int, message: str) -> dict:
    return {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status}


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    server = FakeTwilio()
    yield server
    server.close()


def _gateway(base_url: str, **options: object) -> TwilioGateway:
    table = {"from_number": "+15005550006", "api_base_url": base_url, "timeout_s": 5.0, **options}
    settings = AlertSettings(gateway="twilio", gateways={"twilio": table},
                             public_url="http://127.0.0.1:8080/")
    gw = load_gateway("twilio", settings, environ=ENV)
    assert isinstance(gw, TwilioGateway)
    return gw


def test_request_carries_auth_to_from_body_callback(fake: FakeTwilio) -> None:
    gw = _gateway(fake.url)
    receipt = gw.send(SmsMessage(to=TO, body=BODY, key="k1"))
    assert receipt.accepted and receipt.provider_id == "SM" + "a" * 32
    assert receipt.status == "queued" and receipt.gateway == "twilio" and not receipt.error_code
    (req,) = fake.requests
    assert req["path"] == f"/2010-04-01/Accounts/{SID}/Messages.json"
    scheme, _, cred = req["headers"]["Authorization"].partition(" ")
    assert scheme == "Basic" and base64.b64decode(cred).decode() == f"{SID}:{TOKEN}"
    form = req["form"]
    assert form["To"] == TO and form["From"] == "+15005550006" and form["Body"] == BODY
    # derived from [alerts] public_url
    assert form["StatusCallback"] == "http://127.0.0.1:8080/webhooks/twilio/status"
    assert "MessagingServiceSid" not in form


def test_messaging_service_and_per_message_callback(fake: FakeTwilio) -> None:
    gw = _gateway(fake.url, from_number="", messaging_service_sid=SERVICE,
                  status_callback="http://127.0.0.1:8081/sms")
    assert gw.send(SmsMessage(to=TO, body="a")).accepted
    assert gw.send(SmsMessage(to=TO, body="b", status_callback="http://127.0.0.1:8082/cb")).accepted
    first, second = (r["form"] for r in fake.requests)
    assert first["MessagingServiceSid"] == SERVICE and "From" not in first
    assert first["StatusCallback"] == "http://127.0.0.1:8081/sms"
    assert second["StatusCallback"] == "http://127.0.0.1:8082/cb"


def test_429_is_retryable_and_the_retry_goes_through(fake: FakeTwilio) -> None:
    gw = _gateway(fake.url)
    fake.reply(429, _error(20429, 429, "Too Many Requests"))
    refused = gw.send(SmsMessage(to=TO, body=BODY))
    assert not refused.accepted and refused.retryable and refused.error_code == "20429"
    assert gw.send(SmsMessage(to=TO, body=BODY)).accepted
    assert len(fake.requests) == 2


@pytest.mark.parametrize("code", [21211, 21610, 21408, 21614])
def test_permanent_twilio_codes_are_not_retryable(fake: FakeTwilio, code: int) -> None:
    gw = _gateway(fake.url)
    fake.reply(400, _error(code, 400, f"The 'To' number {TO} is not valid for this message."))
    receipt = gw.send(SmsMessage(to=TO, body=BODY))
    assert not receipt.accepted and not receipt.retryable
    assert receipt.error_code == str(code)
    assert TO not in receipt.error_message and "+8498" in receipt.error_message  # masked, still useful


@pytest.mark.parametrize(("status", "body", "code", "retryable"), [
    (500, "<html>Internal Server Error</html>", "http-500", True),
    (503, _error(20503, 503, "Service Unavailable"), "20503", True),
    (401, _error(20003, 401, "Authenticate"), "20003", True),  # credentials, not the message
    (404, _error(20404, 404, "The requested resource was not found"), "20404", False),
    (400, "not json", "http-400", False),
])
def test_other_answers(fake: FakeTwilio, status: int, body: object, code: str, retryable: bool) -> None:
    gw = _gateway(fake.url)
    fake.reply(status, body)  # type: ignore[arg-type]
    receipt = gw.send(SmsMessage(to=TO, body=BODY))
    assert not receipt.accepted and receipt.error_code == code and receipt.retryable is retryable


def test_server_down_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    receipt = _gateway(f"http://127.0.0.1:{port}").send(SmsMessage(to=TO, body=BODY))
    assert not receipt.accepted and receipt.retryable and receipt.error_code == "connection"


def test_timeout_is_retryable(fake: FakeTwilio) -> None:
    gw = _gateway(fake.url, timeout_s=0.2)
    fake.reply(201, _created(), delay=1.0)
    receipt = gw.send(SmsMessage(to=TO, body=BODY))
    assert not receipt.accepted and receipt.retryable and receipt.error_code == "timeout"


def test_no_credential_or_number_in_receipts_or_logs(fake: FakeTwilio,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    # our loggers and the twilio client's (urllib3's own debug lines are not ewarn's to filter)
    caplog.set_level(logging.DEBUG, logger="ewarn")
    caplog.set_level(logging.DEBUG, logger="twilio")
    gw = _gateway(fake.url)
    fake.reply(400, _error(21211, 400, f"Invalid 'To' {TO} for account {SID}"))
    fake.reply(429, _error(20429, 429, "Too Many Requests"))
    receipts = [gw.send(SmsMessage(to=TO, body=BODY)) for _ in range(3)]
    gw.close()
    assert [r.accepted for r in receipts] == [False, False, True]
    text = caplog.text + repr(receipts)
    assert "twilio" in caplog.text.lower()  # the gateway did log
    for secret in (SID, TOKEN, TO):
        assert secret not in text


def test_missing_credentials_name_the_variable() -> None:
    settings = AlertSettings(gateways={"twilio": {"from_number": "+15005550006"}})
    with pytest.raises(GatewayError, match="TWILIO_AUTH_TOKEN") as err:
        load_gateway("twilio", settings, environ={"TWILIO_ACCOUNT_SID": SID})
    assert SID not in str(err.value) and "TWILIO_ACCOUNT_SID" not in str(err.value)


@pytest.mark.parametrize(("table", "needle"), [
    ({}, "exactly one of from_number and messaging_service_sid"),
    ({"from_number": "+15005550006", "messaging_service_sid": SERVICE}, "exactly one"),
    ({"from_number": "0981 234"}, r"\[alerts.gateways.twilio\] from_number"),
    ({"messaging_service_sid": "MG1"}, r"\[alerts.gateways.twilio\] messaging_service_sid"),
    ({"from_number": "+15005550006", "api_base_url": "localhost:8080"}, "api_base_url"),
    ({"from_number": "+15005550006", "auth_token": "x"}, r"twilio\] auth_token: not a known key"),
])
def test_bad_options_name_the_key(table: dict, needle: str) -> None:
    with pytest.raises(GatewayError, match=needle):
        load_gateway("twilio", AlertSettings(gateways={"twilio": table}), environ=ENV)


def test_status_callback_signature() -> None:
    url = "http://127.0.0.1:8080/webhooks/twilio/status"
    params = {"MessageSid": "SM" + "b" * 32, "MessageStatus": "undelivered", "ErrorCode": "30003",
              "To": TO, "AccountSid": SID}
    good = RequestValidator(TOKEN).compute_signature(url, params)
    assert validate_twilio_signature(url, params, good, TOKEN)
    assert not validate_twilio_signature(url, params, good[:-4] + "AAA=", TOKEN)
    assert not validate_twilio_signature(url, {**params, "MessageStatus": "delivered"}, good, TOKEN)
    assert not validate_twilio_signature(url + "?x=1", params, good, TOKEN)
    assert not validate_twilio_signature(url, params, good, "another-token-0000")
    assert not validate_twilio_signature(url, params, "", TOKEN)


def test_parse_status_callback() -> None:
    sid = "SM" + "c" * 32
    assert parse_status_callback({"MessageSid": sid, "MessageStatus": "delivered"}) == (sid, "delivered", "")
    assert parse_status_callback({"SmsSid": sid, "SmsStatus": "Failed", "ErrorCode": "30006"}) == (
        sid, "failed", "30006")
    with pytest.raises(GatewayError, match="MessageSid"):
        parse_status_callback({"MessageStatus": "sent"})


def test_api_base_url_with_a_path_prefix(fake: FakeTwilio) -> None:
    """A Twilio-compatible provider mounted under a path keeps Twilio's resource path after it."""
    assert _gateway(fake.url + "/compat/").send(SmsMessage(to=TO, body=BODY)).accepted
    assert fake.requests[0]["path"] == f"/compat/2010-04-01/Accounts/{SID}/Messages.json"
