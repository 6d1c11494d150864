"""Console gateway: print each message with the number masked (drills, development)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar, TextIO

from pydantic import Field

from ewarn.alerts.gateways.base import GatewayOptions, Receipt, SmsMessage
from ewarn.log import mask_phone

__all__ = ["ConsoleGateway", "ConsoleOptions"]


class ConsoleOptions(GatewayOptions):
    """``[alerts.gateways.console]``."""

    rate_per_second: float = Field(0.0, ge=0, description="0: unlimited")


class ConsoleGateway:
    """Print ``→ +8498*****78: body`` for every message; always accepted."""

    name = "console"
    context_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, stream: TextIO | None = None, rate_per_second: float = 0.0) -> None:
        self._stream = stream
        self.default_rate_per_second = rate_per_second

    @classmethod
    def from_settings(cls, options: Mapping[str, Any], environ: Mapping[str, str]) -> ConsoleGateway:
        opts = ConsoleOptions.parse(options, cls.name)
        return cls(rate_per_second=opts.rate_per_second)

    def send(self, message: SmsMessage) -> Receipt:
        stream = self._stream or sys.stdout  # looked up per call: follows redirection
        print(f"→ {mask_phone(message.to)}: {message.body}", file=stream, flush=True)
        return Receipt(accepted=True, provider_id=f"console-{uuid.uuid4()}", status="sent",
                       gateway=self.name)

    def close(self) -> None:
        """Nothing to release."""
