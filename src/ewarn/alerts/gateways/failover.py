"""Failover gateway: a primary gateway, and a secondary when the primary cannot take a message.

Example::

    [alerts]
    gateway = "failover"
    [alerts.gateways.failover]
    primary = "twilio"
    secondary = "http"
    [alerts.gateways.twilio]
    from_number = "+15005550006"
    [alerts.gateways.http]
    url = "https://sms.example.vn/api/send"
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar, Self

from pydantic import Field, model_validator

from ewarn.alerts.gateways.base import Gateway, GatewayOptions, Receipt, SmsMessage
from ewarn.alerts.gateways.registry import build_gateway
from ewarn.log import mask_phone

__all__ = ["FailoverGateway", "FailoverOptions"]

log = logging.getLogger(__name__)


class FailoverOptions(GatewayOptions):
    """``[alerts.gateways.failover]``."""

    primary: str = Field(description="gateway name tried first")
    secondary: str = Field(description="gateway name used when the primary fails retryably")
    workspace_root: str | None = Field(None, description="set by the registry")
    public_url: str = Field("", description="set by the registry")
    gateway_tables: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                                      description="set by the registry")

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        if self.primary == self.secondary:
            raise ValueError("primary and secondary must be different gateways")
        if FailoverGateway.name in (self.primary, self.secondary):
            raise ValueError("a failover cannot contain itself")
        return self


class FailoverGateway:
    """Send through ``primary``; on a retryable refusal or an exception, through ``secondary``.

    A permanent refusal (invalid number, opted out...) is returned as it is:
    the secondary would refuse it too. :attr:`Receipt.gateway` names the
    gateway that answered. The sending rate is the lower non-zero rate of the
    two, so the secondary is not overrun when it takes all the traffic.
    """

    name = "failover"
    context_keys: ClassVar[tuple[str, ...]] = ("workspace_root", "public_url", "gateway_tables")

    def __init__(self, primary: Gateway, secondary: Gateway) -> None:
        self.primary = primary
        self.secondary = secondary
        rates = [r for r in (primary.default_rate_per_second, secondary.default_rate_per_second) if r > 0]
        self.default_rate_per_second = min(rates) if rates else 0.0

    @classmethod
    def from_settings(cls, options: Mapping[str, Any], environ: Mapping[str, str]) -> FailoverGateway:
        """Build both gateways from their own ``[alerts.gateways.NAME]`` tables.

        Raises
        ------
        GatewayError
            Bad options, an unknown gateway name, or either gateway's own error.
        """
        opts = FailoverOptions.parse(options, cls.name)
        kw: dict[str, Any] = {"workspace_root": opts.workspace_root, "public_url": opts.public_url}
        primary = build_gateway(opts.primary, opts.gateway_tables, environ, **kw)
        secondary = build_gateway(opts.secondary, opts.gateway_tables, environ, **kw)
        return cls(primary, secondary)

    def send(self, message: SmsMessage) -> Receipt:
        """Send one message; never raises for a provider or network problem."""
        primary_name = getattr(self.primary, "name", "primary")
        try:
            receipt = self.primary.send(message)
        except Exception as exc:  # a misbehaving gateway must not stop the warning
            log.error("gateway %s raised %s while sending to %s; trying %s", primary_name,
                      type(exc).__name__, mask_phone(message.to), getattr(self.secondary, "name", ""))
        else:
            if receipt.accepted or not receipt.retryable:
                return receipt if receipt.gateway else _named(receipt, primary_name)
            log.warning("gateway %s refused (%s, retryable); trying %s", primary_name,
                        receipt.error_code, getattr(self.secondary, "name", "secondary"))
        secondary_name = getattr(self.secondary, "name", "secondary")
        try:
            receipt = self.secondary.send(message)
        except Exception as exc:
            log.error("gateway %s raised %s too", secondary_name, type(exc).__name__)
            return Receipt(accepted=False, status="failed", error_code="gateway-exception", retryable=True,
                           error_message=f"both gateways failed ({secondary_name}: {type(exc).__name__})",
                           gateway=secondary_name)
        return receipt if receipt.gateway else _named(receipt, secondary_name)

    def close(self) -> None:
        for gw in (self.primary, self.secondary):
            gw.close()


def _named(receipt: Receipt, gateway: str) -> Receipt:
    return replace(receipt, gateway=gateway)
