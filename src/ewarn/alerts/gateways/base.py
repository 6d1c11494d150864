"""The SMS gateway protocol: send one message to one number, get a :class:`Receipt`.

Gateways are found by name through the Python entry-point group
``ewarn.sms_gateways`` (see ``pyproject.toml``), so a carrier's gateway can
ship as a separate package. A gateway class is built with
``cls.from_settings(options, environ)`` where ``options`` is the
``[alerts.gateways.NAME]`` table of the workspace settings (plus
``workspace_root`` for gateways that write files) and ``environ`` the process
environment (credentials come only from there).

The registry adds to ``options`` the context keys a gateway class lists in
its ``context_keys`` attribute (default ``("workspace_root",)``):
``workspace_root`` (the workspace folder, for gateways that write files),
``public_url`` (``[alerts] public_url``, for provider status callbacks) and
``gateway_tables`` (every ``[alerts.gateways.*]`` table, for gateways built
from others, e.g. ``failover``). :class:`GatewayOptions` is a pydantic base
for a gateway's options whose errors name ``[alerts.gateways.NAME] key``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, Self, runtime_checkable

from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError

from ewarn.errors import EwarnError

__all__ = [
    "CONTEXT_KEYS",
    "DeliveryStatus",
    "Gateway",
    "GatewayError",
    "GatewayOptions",
    "Receipt",
    "SmsMessage",
]

#: Keys the registry may add to a gateway's options (see the module docstring).
CONTEXT_KEYS = ("workspace_root", "public_url", "gateway_tables")


class GatewayError(EwarnError):
    """A gateway cannot be configured or found (names the setting or variable and the fix)."""


@dataclass(frozen=True)
class SmsMessage:
    """One SMS to one recipient.

    Attributes
    ----------
    to : str
        E.164 number (``+84...``).
    body : str
        Text as it will be sent (GSM-7 or UCS-2 is the gateway's business).
    key : str
        The outbox idempotency key (gateways that support it pass it on, e.g.
        as a client reference, so the provider can drop a duplicate).
    status_callback : str
        URL the provider calls back with delivery status ("" for none).
    """

    to: str
    body: str
    key: str = ""
    status_callback: str = ""


@dataclass(frozen=True)
class Receipt:
    """What a gateway answered for one message.

    Attributes
    ----------
    accepted : bool
        The provider took the message (it may still be undelivered later).
    provider_id : str
        The provider's message id ("" if refused).
    status : str
        Provider status word (``queued``, ``sent``, ``delivered``, ``failed`` ...).
    error_code : str
        Provider error code ("" if accepted), e.g. Twilio ``21211``, ``http-503``, ``timeout``.
    error_message : str
        Human-readable error (never contains credentials).
    retryable : bool
        For a refused message: whether trying again later may succeed.
    gateway : str
        Name of the gateway that answered (a failover reports the one used).
    """

    accepted: bool
    provider_id: str = ""
    status: str = ""
    error_code: str = ""
    error_message: str = ""
    retryable: bool = False
    gateway: str = ""


@runtime_checkable
class Gateway(Protocol):
    """An SMS gateway.

    ``send`` never raises for a provider or network problem: it returns a
    refused :class:`Receipt` with ``retryable`` set. ``default_rate_per_second``
    is the provider's sending rate the dispatcher's token bucket respects
    (0 = unlimited).
    """

    name: str
    default_rate_per_second: float

    @classmethod
    def from_settings(cls, options: Mapping[str, Any], environ: Mapping[str, str]) -> Gateway: ...

    def send(self, message: SmsMessage) -> Receipt: ...

    def close(self) -> None: ...


DeliveryStatus = Literal["queued", "sending", "sent", "delivered", "failed", "undelivered", "expired"]


class GatewayOptions(BaseModel):
    """Base of a gateway's options model (``[alerts.gateways.NAME]``; unknown keys refused).

    Subclasses declare their keys as pydantic fields; :meth:`parse` validates
    a table and turns every problem into one :class:`GatewayError` naming
    ``[alerts.gateways.NAME] key``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def parse(cls, options: Mapping[str, Any], gateway: str) -> Self:
        """Validate ``options`` of gateway ``gateway``.

        Raises
        ------
        GatewayError
            One line per bad key: ``[alerts.gateways.NAME] key: problem (got ...)``.
        """
        try:
            return cls.model_validate(dict(options))
        except PydanticValidationError as exc:
            lines = [f"invalid settings of gateway '{gateway}' (ewarn.toml or EWARN_ALERTS__GATEWAYS__*)"]
            for e in exc.errors():
                key = ".".join(str(p) for p in e["loc"]) or "(table)"
                where = f"[alerts.gateways.{gateway}] {key}"
                if e["type"] == "extra_forbidden":
                    known = ", ".join(k for k in cls.model_fields if k not in CONTEXT_KEYS)
                    lines.append(f"  - {where}: not a known key (known: {known})")
                elif e["type"] == "missing":
                    lines.append(f"  - {where}: required; set it in ewarn.toml")
                else:
                    lines.append(f"  - {where}: {e['msg']} (got {e.get('input')!r})")
            raise GatewayError("\n".join(lines)) from None
