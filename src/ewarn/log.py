"""Logging setup: rich console output, phone numbers masked, no secrets.

Every log record passes :class:`MaskingFilter`, which masks anything that
looks like a phone number (``+84981234567`` → ``+8498*****67``) and the value
of any environment variable whose name says it is a secret.
"""

from __future__ import annotations

import logging
import os
import re

#: Phone-like runs: E.164 (+ then 8–15 digits), or a national/bare Vietnamese number
#: (0… or 84… with 9–11 digits); spaces, dots or dashes may separate the digits.
_PHONE = re.compile(
    r"(?<![\w+])(\+\d(?:[ .\-]?\d){7,14}|(?:0|84)\d(?:[ .\-]?\d){7,10})(?![\w])"
)
_SECRET_NAMES = re.compile(r"(TOKEN|SECRET|PASSWORD|AUTH|API_KEY|SID)$")


def mask_phone(text: str) -> str:
    """Mask phone numbers in ``text``, keeping the first 4 and last 2 digits.

    Examples
    --------
    >>> mask_phone("sent to +84981234567")
    'sent to +8498*****67'
    """

    def _mask(m: re.Match[str]) -> str:
        raw = m.group(1)
        digits = re.sub(r"\D", "", raw)
        plus = "+" if raw.startswith("+") else ""
        keep_head = 4 if plus else 3
        if len(digits) <= keep_head + 2:
            return raw
        return plus + digits[:keep_head] + "*" * (len(digits) - keep_head - 2) + digits[-2:]

    return _PHONE.sub(_mask, text)


def _secret_values() -> list[str]:
    return [v for k, v in os.environ.items() if _SECRET_NAMES.search(k) and v and len(v) >= 6]


def redact(text: str) -> str:
    """Mask phone numbers and the values of secret environment variables."""
    for value in _secret_values():
        text = text.replace(value, "***")
    return mask_phone(text)


class MaskingFilter(logging.Filter):
    """Rewrite each record's message with :func:`redact` (phones, secrets)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        record.msg = redact(msg)
        record.args = None
        return True


def setup_logging(level: str = "INFO") -> None:
    """Configure the ``ewarn`` logger once: rich to stderr, masked."""
    from rich.console import Console
    from rich.logging import RichHandler

    logger = logging.getLogger("ewarn")
    logger.setLevel(level.upper())
    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        handler = RichHandler(console=Console(stderr=True), show_path=False, markup=False)
        handler.addFilter(MaskingFilter())
        logger.addHandler(handler)
    logger.propagate = False
