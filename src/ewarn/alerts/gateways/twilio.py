"""Twilio gateway (official ``twilio`` client), status-callback signature check and parsing.

Credentials come from the environment only (``TWILIO_ACCOUNT_SID``,
``TWILIO_AUTH_TOKEN``) and never appear in a receipt or a log line. The
``api_base_url`` option points the official client at a Twilio-compatible
provider or a local test server: a small :class:`twilio.http.http_client.TwilioHttpClient`
subclass rewrites the scheme and host of every request URL.

Error classification follows the Twilio error dictionary
(https://www.twilio.com/docs/api/errors) and the Messages resource reference
(https://www.twilio.com/docs/messaging/api/message-resource).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit, urlunsplit

import requests
from pydantic import Field, field_validator, model_validator
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from ewarn.alerts.gateways.base import GatewayError, GatewayOptions, Receipt, SmsMessage
from ewarn.log import mask_phone

__all__ = [
    "ACCOUNT_SID_ENV",
    "AUTH_TOKEN_ENV",
    "DEFAULT_API_BASE_URL",
    "PERMANENT_CODES",
    "RETRYABLE_CODES",
    "STATUS_CALLBACK_PATH",
    "TwilioGateway",
    "TwilioOptions",
    "classify_twilio_error",
    "parse_status_callback",
    "validate_twilio_signature",
]

log = logging.getLogger(__name__)

ACCOUNT_SID_ENV = "TWILIO_ACCOUNT_SID"
AUTH_TOKEN_ENV = "TWILIO_AUTH_TOKEN"
DEFAULT_API_BASE_URL = "https://api.twilio.com"
#: Path of the status webhook of ``ewarn serve`` under ``[alerts] public_url``.
STATUS_CALLBACK_PATH = "/webhooks/twilio/status"

#: Twilio error codes worth trying again later (Twilio error dictionary):
#: 20429 too many requests, 20500 internal server error, 20503 service
#: unavailable, 20003/20005 authentication failed / account not active — a
#: gateway-wide credential problem, not the message's fault: keep the message,
#: fix the credentials (and a failover moves on to its secondary).
RETRYABLE_CODES = frozenset({20429, 20500, 20503, 20003, 20005})
#: Twilio error codes that will fail again for this number (Twilio error
#: dictionary): 21211 invalid 'To' number, 21610 recipient unsubscribed (STOP),
#: 21408 permission to send to this region not enabled, 21614 'To' is not a
#: mobile number. Any other 4xx is permanent as well.
PERMANENT_CODES = frozenset({21211, 21610, 21408, 21614})

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_ALPHA_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")  # Twilio alphanumeric sender ID


class TwilioOptions(GatewayOptions):
    """``[alerts.gateways.twilio]`` (exactly one of ``from_number`` and ``messaging_service_sid``)."""

    from_number: str = Field("", description="E.164 sender number or alphanumeric sender ID")
    messaging_service_sid: str = Field("", description="Messaging Service SID (MG...)")
    status_callback: str = Field("", description="status webhook URL; default public_url + "
                                 + STATUS_CALLBACK_PATH)
    api_base_url: str = Field(DEFAULT_API_BASE_URL, description="scheme://host[:port] of the API")
    timeout_s: float = Field(15.0, gt=0, description="per-request timeout [s]")
    rate_per_second: float = Field(
        1.0, ge=0, description="messages per second; 1/s is Twilio's rate for a long code "
        "(Twilio 'Understanding Twilio rate limits and message queues')")
    public_url: str = Field("", description="set by the registry from [alerts] public_url")

    @field_validator("from_number")
    @classmethod
    def _sender(cls, v: str) -> str:
        if v and not (_E164.match(v) or _ALPHA_SENDER.match(v)):
            raise ValueError("must be an E.164 number (+15005550006) or an alphanumeric sender ID "
                             "of at most 11 characters")
        return v

    @field_validator("messaging_service_sid")
    @classmethod
    def _service(cls, v: str) -> str:
        if v and not re.fullmatch(r"MG[0-9a-fA-F]{32}", v):
            raise ValueError("must be a Messaging Service SID: 'MG' and 32 hex digits")
        return v

    @field_validator("api_base_url", "status_callback", "public_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v and (urlsplit(v).scheme not in ("http", "https") or not urlsplit(v).netloc):
            raise ValueError("must be an http(s) URL")
        return v

    @model_validator(mode="after")
    def _one_sender(self) -> Self:
        if bool(self.from_number) == bool(self.messaging_service_sid):
            raise ValueError("set exactly one of from_number and messaging_service_sid")
        return self


class _BaseUrlHttpClient(TwilioHttpClient):
    """The official HTTP client, sending to ``base_url`` instead of ``*.twilio.com``.

    It also replaces the client's request/response logging (which prints the
    account SID in the URL) by one masked debug line.
    """

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__(timeout=timeout, logger=log)
        parts = urlsplit(base_url)
        self._scheme, self._netloc, self._prefix = parts.scheme, parts.netloc, parts.path.rstrip("/")
        self._rewrite = base_url.rstrip("/") != DEFAULT_API_BASE_URL

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if self._rewrite:
            p = urlsplit(url)
            url = urlunsplit((self._scheme, self._netloc, self._prefix + p.path, p.query, p.fragment))
        return super().request(method, url, *args, **kwargs)

    def log_request(self, kwargs: dict[str, Any]) -> None:
        log.debug("Twilio API %s %s", kwargs["method"], urlsplit(kwargs["url"]).netloc)

    def log_response(self, status_code: int, response: Any) -> None:
        log.debug("Twilio API answered HTTP %s", status_code)


def classify_twilio_error(status: int | None, code: int | None) -> bool:
    """Whether a refused request may succeed if tried again later.

    Parameters
    ----------
    status : int or None
        HTTP status of the answer.
    code : int or None
        Twilio error code (``21211``...), None when absent.

    Returns
    -------
    bool
        True for :data:`RETRYABLE_CODES`, HTTP 429, 5xx, 401 and no status at
        all; False for :data:`PERMANENT_CODES` and any other 4xx.
    """
    if code in PERMANENT_CODES:
        return False
    if code in RETRYABLE_CODES:
        return True
    if status is None:
        return True
    return status in (401, 429) or status >= 500


class TwilioGateway:
    """Send SMS through Twilio's Messages API with the official client.

    Parameters
    ----------
    account_sid, auth_token : str
        Credentials (from the environment).
    options : TwilioOptions
        Validated ``[alerts.gateways.twilio]``.
    """

    name = "twilio"
    context_keys: ClassVar[tuple[str, ...]] = ("public_url",)

    def __init__(self, account_sid: str, auth_token: str, options: TwilioOptions) -> None:
        self.options = options
        self.default_rate_per_second = options.rate_per_second
        self._secrets = (account_sid, auth_token)
        self._client = Client(
            account_sid, auth_token, environment={},  # no TWILIO_EDGE/REGION surprises
            http_client=_BaseUrlHttpClient(options.api_base_url, options.timeout_s),
        )
        self.status_callback = options.status_callback or (
            options.public_url.rstrip("/") + STATUS_CALLBACK_PATH if options.public_url else "")

    @classmethod
    def from_settings(cls, options: Mapping[str, Any], environ: Mapping[str, str]) -> TwilioGateway:
        """Build from ``[alerts.gateways.twilio]`` and the credentials in ``environ``.

        Raises
        ------
        GatewayError
            Bad options, or ``TWILIO_ACCOUNT_SID`` / ``TWILIO_AUTH_TOKEN`` unset.
        """
        opts = TwilioOptions.parse(options, cls.name)
        missing = [v for v in (ACCOUNT_SID_ENV, AUTH_TOKEN_ENV) if not environ.get(v)]
        if missing:
            raise GatewayError(f"the twilio gateway needs the environment variable(s) "
                               f"{', '.join(missing)}; export them before running "
                               "(credentials are never read from ewarn.toml)")
        return cls(environ[ACCOUNT_SID_ENV], environ[AUTH_TOKEN_ENV], opts)

    def _clean(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return mask_phone(text)

    def _refused(self, code: str, message: str, retryable: bool) -> Receipt:
        message = self._clean(message)
        log.warning("twilio refused a message: %s %s (%s)", code, message,
                    "will retry" if retryable else "permanent")
        return Receipt(accepted=False, status="failed", error_code=code, error_message=message,
                       retryable=retryable, gateway=self.name)

    def send(self, message: SmsMessage) -> Receipt:
        """Send one message; never raises for a provider or network problem."""
        kwargs: dict[str, Any] = {"to": message.to, "body": message.body}
        if self.options.messaging_service_sid:
            kwargs["messaging_service_sid"] = self.options.messaging_service_sid
        else:
            kwargs["from_"] = self.options.from_number
        callback = message.status_callback or self.status_callback
        if callback:
            kwargs["status_callback"] = callback
        try:
            sent = self._client.messages.create(**kwargs)
        except TwilioRestException as exc:
            # the client puts the HTTP status in .code when the answer has no Twilio code
            code = exc.code if isinstance(exc.code, int) and exc.code >= 10000 else None
            return self._refused(str(code or f"http-{exc.status}"), str(exc.msg),
                                 classify_twilio_error(exc.status, code))
        except TwilioServiceException as exc:
            return self._refused(str(exc.code or f"http-{exc.status}"), str(exc.detail or exc.title),
                                 classify_twilio_error(exc.status, exc.code))
        except requests.Timeout:
            return self._refused("timeout", f"no answer from the Twilio API within "
                                 f"{self.options.timeout_s:g} s", True)
        except requests.RequestException as exc:
            return self._refused("connection", f"cannot reach the Twilio API: {type(exc).__name__}", True)
        except (TwilioException, ValueError) as exc:  # unreadable answer: maybe sent, retry
            return self._refused("bad-response", f"unreadable Twilio answer: {type(exc).__name__}", True)
        log.debug("twilio accepted %s for %s", sent.sid, mask_phone(message.to))
        return Receipt(accepted=True, provider_id=sent.sid or "", status=str(sent.status or "queued"),
                       gateway=self.name)

    def close(self) -> None:
        session = getattr(self._client.http_client, "session", None)
        if session is not None:
            session.close()


def validate_twilio_signature(url: str, params: Mapping[str, str], signature: str, auth_token: str) -> bool:
    """Whether a webhook request really comes from Twilio.

    Parameters
    ----------
    url : str
        Full URL Twilio called (as configured, including query string).
    params : mapping
        The POSTed form fields.
    signature : str
        The ``X-Twilio-Signature`` header ("" when absent → False).
    auth_token : str
        The account's auth token.

    Notes
    -----
    HMAC-SHA1 of the URL and sorted parameters, base64 (Twilio "Webhooks
    security"), checked with :class:`twilio.request_validator.RequestValidator`.
    """
    if not signature or not auth_token:
        return False
    return bool(RequestValidator(auth_token).validate(url, dict(params), signature))


def parse_status_callback(params: Mapping[str, str]) -> tuple[str, str, str]:
    """``(provider_id, status, error_code)`` of a Twilio status callback.

    Reads ``MessageSid`` (or ``SmsSid``), ``MessageStatus`` (or ``SmsStatus``;
    ``queued``, ``sent``, ``delivered``, ``undelivered``, ``failed``...) and
    ``ErrorCode`` ("" when absent).

    Raises
    ------
    GatewayError
        No message id or status in the request.
    """
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    status = (params.get("MessageStatus") or params.get("SmsStatus") or "").lower()
    if not sid or not status:
        raise GatewayError("Twilio status callback without MessageSid or MessageStatus; "
                           "point the status callback URL only at Twilio message webhooks")
    return sid, status, str(params.get("ErrorCode") or "")
