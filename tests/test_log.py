"""Phone numbers and secrets never reach the logs."""

from __future__ import annotations

import logging

from ewarn.log import MaskingFilter, mask_phone, redact


def test_mask_phone_forms():
    assert mask_phone("+84981234567") == "+8498*****67"
    assert mask_phone("gọi 0981 234 567 ngay") == "gọi 098*****67 ngay"
    assert "981234" not in mask_phone("tel:84981234567")
    # cycle stamps, ids and counts are not phone numbers
    assert mask_phone("cycle 2024090712, 5000 households") == "cycle 2024090712, 5000 households"


def test_secret_values_redacted(monkeypatch):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "s3cr3t-token-value")
    assert "s3cr3t" not in redact("auth failed with s3cr3t-token-value")


def test_filter_rewrites_records(caplog):
    logger = logging.getLogger("ewarn.test-mask")
    logger.addFilter(MaskingFilter())
    with caplog.at_level(logging.INFO, logger="ewarn.test-mask"):
        logger.info("sent to %s", "+84981234567")
    assert "+84981234567" not in caplog.text
    assert "+8498*****67" in caplog.text
