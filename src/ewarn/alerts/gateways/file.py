"""File gateway: every message becomes one JSON line in the workspace outbox (the demo's default).

The file is the delivery record of a demo or a drill, so the numbers in it are
not masked; nothing is logged with an unmasked number.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from ewarn.alerts.gateways.base import GatewayError, GatewayOptions, Receipt, SmsMessage
from ewarn.log import mask_phone
from ewarn.store import utcnow

__all__ = ["DEFAULT_PATH", "FileGateway", "FileOptions"]

log = logging.getLogger(__name__)

#: Where messages go, relative to the workspace.
DEFAULT_PATH = "outbox/sent.jsonl"


class FileOptions(GatewayOptions):
    """``[alerts.gateways.file]``."""

    path: str = Field(DEFAULT_PATH, description="JSON-lines file, relative to the workspace (or absolute)")
    rate_per_second: float = Field(0.0, ge=0, description="0: unlimited")
    workspace_root: str | None = Field(None, description="set by the registry")


class FileGateway:
    """Append one JSON line per message: ``to``, ``body``, ``key``, ``provider_id``, ``time``.

    Each line is written with a single ``write`` on a file opened with
    ``O_APPEND`` and then ``fsync``-ed, so concurrent senders (threads or
    processes) never interleave lines and an accepted message survives a crash.
    ``time`` is ISO 8601 UTC; ``provider_id`` a random UUID.
    """

    name = "file"
    context_keys: ClassVar[tuple[str, ...]] = ("workspace_root",)

    def __init__(self, path: Path | str, rate_per_second: float = 0.0) -> None:
        self.path = Path(path)
        self.default_rate_per_second = rate_per_second
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, options: Mapping[str, Any], environ: Mapping[str, str]) -> FileGateway:
        opts = FileOptions.parse(options, cls.name)
        path = Path(opts.path).expanduser()
        if not path.is_absolute():
            if not opts.workspace_root:
                raise GatewayError(f"[alerts.gateways.file] path '{opts.path}' is relative but no "
                                   "workspace is open; pass --workspace or give an absolute path")
            path = Path(opts.workspace_root) / path
        return cls(path, opts.rate_per_second)

    def send(self, message: SmsMessage) -> Receipt:
        provider_id = str(uuid.uuid4())
        record = {"to": message.to, "body": message.body, "key": message.key,
                  "provider_id": provider_id, "time": utcnow().isoformat(timespec="milliseconds")}
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                try:
                    os.write(fd, line)
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            log.error("file gateway cannot write %s: %s", self.path, exc.strerror)
            return Receipt(accepted=False, error_code="io-error", retryable=True, gateway=self.name,
                           error_message=f"cannot write {self.path}: {exc.strerror}")
        log.debug("file gateway: %s → %s", provider_id, mask_phone(message.to))
        return Receipt(accepted=True, provider_id=provider_id, status="sent", gateway=self.name)

    def close(self) -> None:
        """Nothing to release (the file is opened per message)."""
