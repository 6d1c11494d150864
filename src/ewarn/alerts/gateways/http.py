"""Generic HTTP gateway: a JSON or form POST per message, configured by a field mapping.

This is what Vietnamese brandname-SMS providers expose (one POST with the
number, the text and the brandname; a JSON answer carrying a result code and
a message id). Example for a provider answering ``{"CodeResult": "100",
"SMSID": "..."}``::

    [alerts.gateways.http]
    url = "https://sms.example.vn/api/send"
    format = "json"
    auth_header = "Authorization"
    auth_env = "EWARN_SMS_TOKEN"        # the header value is read from this variable
    auth_scheme = "Bearer"
    sender = "EWARN"
    phone_format = "digits"             # 84981234567
    fields = {to = "Phone", body = "Content", sender = "Brandname", key = "RequestId"}
    extra = {SmsType = "2"}
    id_path = "SMSID"
    error_path = "CodeResult"
    success_codes = ["100"]

Secrets never go in the file: the auth header value and any ``secret_fields``
are read from environment variables.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import phonenumbers
from pydantic import Field, field_validator

from ewarn.alerts.gateways.base import GatewayError, GatewayOptions, Receipt, SmsMessage
from ewarn.log import mask_phone

__all__ = ["HttpGateway", "HttpOptions", "json_path"]

log = logging.getLogger(__name__)

_MESSAGE_FIELDS = ("to", "body", "key", "sender")


class HttpOptions(GatewayOptions):
    """``[alerts.gateways.http]``."""

    url: str = Field(description="endpoint URL (http or https)")
    method: Literal["POST", "PUT", "GET"] = "POST"
    format: Literal["json", "form"] = Field("json", description="request body encoding "
                                           "(GET sends the fields as the query string)")
    auth_header: str = Field("", description="header carrying the credential, e.g. Authorization")
    auth_env: str = Field("", description="environment variable holding the header value")
    auth_scheme: str = Field("", description="prefix of the header value, e.g. Bearer or Basic")
    secret_fields: dict[str, str] = Field(
        default_factory=dict, description="provider field → environment variable, for providers "
        "that want the API key in the body")
    fields: dict[str, str] = Field(
        default_factory=lambda: {"to": "to", "body": "body"},
        description="message attribute (to, body, key, sender) → provider field name")
    sender: str = Field("", description="brandname / sender id sent in fields.sender")
    extra: dict[str, str | int | float | bool] = Field(default_factory=dict,
                                                       description="static fields added to every request")
    phone_format: Literal["e164", "digits", "national"] = Field(
        "e164", description="e164 +84981234567, digits 84981234567, national 0981234567")
    id_path: str = Field("", description="dot path of the provider message id in the JSON answer")
    error_path: str = Field("", description="dot path of the provider result/error code")
    message_path: str = Field("", description="dot path of the provider error text")
    success_codes: list[str] = Field(
        default_factory=list, description="values at error_path that mean accepted (empty list: "
        "absent, empty or 0 means accepted); without error_path any 2xx answer is accepted")
    retry_codes: list[str] = Field(default_factory=list,
                                   description="provider codes worth retrying (e.g. rate limited)")
    timeout_s: float = Field(15.0, gt=0, description="per-request timeout [s]")
    rate_per_second: float = Field(0.0, ge=0, description="your provider's rate; 0: unlimited")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        p = urllib.parse.urlsplit(v)
        if p.scheme not in ("http", "https") or not p.netloc:
            raise ValueError("must be an http(s) URL")
        return v

    @field_validator("fields")
    @classmethod
    def _fields(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(_MESSAGE_FIELDS))
        if unknown:
            raise ValueError(f"unknown message attribute(s) {unknown}; use {list(_MESSAGE_FIELDS)}")
        for need in ("to", "body"):
            if not v.get(need):
                raise ValueError(f"must name the provider field of '{need}'")
        return v


def json_path(document: Any, path: str) -> Any:
    """The value at dot path ``path`` (``data.0.id``) in parsed JSON, None if absent."""
    node = document
    for part in path.split("."):
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _format_phone(number: str, style: str) -> str:
    if style == "e164":
        return number
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return number  # the provider will refuse it with its own code
    if style == "digits":
        return f"{parsed.country_code}{parsed.national_number}"
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL).replace(" ", "")


class HttpGateway:
    """Send each message as one HTTP request built from :class:`HttpOptions`.

    HTTP 429, 5xx, timeouts and connection errors give a retryable refusal, and so
    does 401 (a credential problem of the whole gateway: the message waits for
    the fix, and a failover moves on);
    other 4xx and provider codes outside ``success_codes`` (unless listed in
    ``retry_codes``) a permanent one.
    """

    name = "http"
    context_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: HttpOptions, headers: Mapping[str, str], secret_values: Mapping[str, str],
                 secrets: tuple[str, ...] = ()) -> None:
        self.options = options
        self.default_rate_per_second = options.rate_per_second
        self._headers = dict(headers)
        self._secret_values = dict(secret_values)
        self._secrets = tuple(x for x in (*secrets, *secret_values.values()) if x)

    @classmethod
    def from_settings(cls, options: Mapping[str, Any], environ: Mapping[str, str]) -> HttpGateway:
        """Build from ``[alerts.gateways.http]``; credentials from ``environ``.

        Raises
        ------
        GatewayError
            Bad options or an unset credential variable.
        """
        opts = HttpOptions.parse(options, cls.name)
        if bool(opts.auth_header) != bool(opts.auth_env):
            raise GatewayError("[alerts.gateways.http] auth_header and auth_env go together: name the "
                               "header and the environment variable holding its value")
        needed = ([opts.auth_env] if opts.auth_env else []) + list(opts.secret_fields.values())
        missing = [v for v in needed if not environ.get(v)]
        if missing:
            raise GatewayError(f"the http gateway needs the environment variable(s) {', '.join(missing)} "
                               "([alerts.gateways.http] auth_env / secret_fields); export them first")
        headers = {"Accept": "application/json"}
        if opts.auth_header:
            value = environ[opts.auth_env]
            headers[opts.auth_header] = f"{opts.auth_scheme} {value}" if opts.auth_scheme else value
        return cls(opts, headers, {f: environ[v] for f, v in opts.secret_fields.items()},
                   secrets=tuple(environ[v] for v in needed))

    def _payload(self, message: SmsMessage) -> dict[str, Any]:
        o = self.options
        values = {"to": _format_phone(message.to, o.phone_format), "body": message.body,
                  "key": message.key, "sender": o.sender}
        payload: dict[str, Any] = dict(o.extra)
        payload.update({field: values[attr] for attr, field in o.fields.items() if field})
        payload.update(self._secret_values)
        return payload

    def _request(self, message: SmsMessage) -> urllib.request.Request:
        o = self.options
        payload = self._payload(message)
        headers = dict(self._headers)
        url, data = o.url, None
        if o.method == "GET":
            sep = "&" if urllib.parse.urlsplit(url).query else "?"
            url = url + sep + urllib.parse.urlencode(payload)
        elif o.format == "json":
            data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json; charset=utf-8"
        else:
            data = urllib.parse.urlencode(payload).encode("utf-8")
            headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
        return urllib.request.Request(url, data=data, headers=headers, method=o.method)

    def _clean(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return mask_phone(text)

    def _refused(self, code: str, message: str, retryable: bool) -> Receipt:
        message = self._clean(message)[:300]
        log.warning("http gateway refused a message: %s %s (%s)", code, message,
                    "will retry" if retryable else "permanent")
        return Receipt(accepted=False, status="failed", error_code=code, error_message=message,
                       retryable=retryable, gateway=self.name)

    def send(self, message: SmsMessage) -> Receipt:
        """Send one message; never raises for a provider or network problem."""
        o = self.options
        try:
            with urllib.request.urlopen(self._request(message), timeout=o.timeout_s) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read() if exc.fp is not None else b""
        except TimeoutError:
            return self._refused("timeout", f"no answer from {o.url} within {o.timeout_s:g} s", True)
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                return self._refused("timeout", f"no answer from {o.url} within {o.timeout_s:g} s", True)
            return self._refused("connection", f"cannot reach {o.url}: {exc.reason}", True)
        except OSError as exc:
            return self._refused("connection", f"cannot reach {o.url}: {exc}", True)
        return self._receipt(status, raw)

    def _receipt(self, status: int, raw: bytes) -> Receipt:
        o = self.options
        text = raw.decode("utf-8", errors="replace")
        try:
            doc: Any = json.loads(text) if text.strip() else None
        except ValueError:
            doc = None
        code = json_path(doc, o.error_path) if o.error_path and doc is not None else None
        code_s = "" if code is None else str(code)
        detail = json_path(doc, o.message_path) if o.message_path and doc is not None else None
        detail_s = str(detail) if detail is not None else text.strip()[:200]
        if status in (401, 429) or status >= 500:  # 401: credentials, not the message
            return self._refused(code_s or f"http-{status}", f"HTTP {status}: {detail_s}", True)
        if not 200 <= status < 300:
            return self._refused(code_s or f"http-{status}", f"HTTP {status}: {detail_s}",
                                 code_s in o.retry_codes)
        if not o.error_path:
            ok = True
        elif o.success_codes:
            ok = code_s in o.success_codes
        else:
            ok = code_s in ("", "0")
        if not ok:
            return self._refused(code_s, f"provider code {code_s}: {detail_s}", code_s in o.retry_codes)
        provider_id = json_path(doc, o.id_path) if o.id_path and doc is not None else None
        return Receipt(accepted=True, provider_id="" if provider_id is None else str(provider_id),
                       status="sent", gateway=self.name)

    def close(self) -> None:
        """Nothing to release (one connection per request)."""
