"""SMS gateways: one protocol (send one message, get a receipt), found by name via entry points.

Built-in gateways (entry-point group ``ewarn.sms_gateways``): ``twilio``,
``http``, ``file``, ``console``, ``failover``. The concrete modules are not
imported here (``twilio`` pulls in the Twilio client); the registry imports
the one that is configured.
"""

from ewarn.alerts.gateways.base import (
    CONTEXT_KEYS,
    DeliveryStatus,
    Gateway,
    GatewayError,
    GatewayOptions,
    Receipt,
    SmsMessage,
)
from ewarn.alerts.gateways.registry import available_gateways, build_gateway, load_gateway

__all__ = [
    "CONTEXT_KEYS",
    "DeliveryStatus",
    "Gateway",
    "GatewayError",
    "GatewayOptions",
    "Receipt",
    "SmsMessage",
    "available_gateways",
    "build_gateway",
    "load_gateway",
]
