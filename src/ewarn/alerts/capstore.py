"""The workspace's CAP archive: one CAP 1.2 file per notice and the Atom feed of the active ones.

Files in ``{workspace}/cap/``:

``{identifier}.xml``
    the CAP alert of one notice (written atomically, never rewritten);
``index.json``
    identifier → sent, expires, commune, hazard, kind (what the feed and the
    ``references`` of later alerts need);
``feed.atom``
    the active alerts: per (commune, hazard) the latest alert, unless it is an
    all-clear or has expired.

CAP ``references`` name earlier alerts as ``sender,identifier,sent``; the
index supplies the sent times. An update or reminder whose earlier alert is
not in the archive (e.g. a workspace started after the first warning) is
issued as a new ``Alert``: CAP forbids an Update without references, and a
warning nobody can link to is still a warning. An all-clear with nothing to
clear in the archive is not written (its SMS still goes out).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from ewarn.alerts.cap import atom_feed, cap_xml
from ewarn.alerts.notice import Notice
from ewarn.config import AlertSettings

__all__ = ["active_alerts", "read_index", "write_cap_files"]

log = logging.getLogger(__name__)

INDEX = "index.json"
FEED = "feed.atom"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def read_index(folder: Path) -> dict[str, dict[str, str]]:
    """identifier → {sent, expires, commune, hazard, kind} of every archived alert."""
    path = Path(folder) / INDEX
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)


def active_alerts(folder: Path, now: dt.datetime) -> list[str]:
    """Identifiers of the active alerts: latest per (commune, hazard), not an all-clear, not expired."""
    index = read_index(folder)
    latest: dict[tuple[str, str], tuple[dt.datetime, str]] = {}
    for ident, e in index.items():
        key = (e["commune"], e["hazard"])
        sent = _utc(e["sent"])
        if key not in latest or sent >= latest[key][0]:
            latest[key] = (sent, ident)
    return sorted(ident for _, ident in latest.values()
                  if index[ident]["kind"] != "all_clear" and _utc(index[ident]["expires"]) > now)


def write_cap_files(notices: Sequence[Notice], folder: Path, *, settings: AlertSettings,
                    now: dt.datetime) -> list[Path]:
    """Write the CAP alert of each notice (once) and refresh ``index.json`` and ``feed.atom``.

    Parameters
    ----------
    notices : sequence of Notice
        The cycle's notices (:func:`ewarn.alerts.service.prepare_alerts`).
    folder : Path
        ``{workspace}/cap``.
    settings : AlertSettings
        ``cap_sender``, ``sender`` (sender name), ``public_url`` (links).
    now : datetime
        Time of the cycle (UTC): which alerts are still active.

    Returns
    -------
    list of Path
        The alert files written now (an alert already archived is not rewritten).
    """
    from ewarn.alerts.cap import parse_cap

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    index = read_index(folder)
    base = settings.public_url.rstrip("/")
    written: list[Path] = []
    for notice in notices:
        path = folder / f"{notice.identifier}.xml"
        if notice.identifier in index and path.exists():
            continue
        known = tuple(r for r in notice.references if r in index)
        if notice.kind != "warning" and not known:
            if notice.kind == "all_clear":
                log.info("CAP: all-clear %s has no archived alert to clear; not written", notice.identifier)
                continue
            notice = dataclasses.replace(notice, kind="warning", references=())
            path = folder / f"{notice.identifier}.xml"
        else:
            notice = dataclasses.replace(notice, references=known)
        data = cap_xml(notice, sender=settings.cap_sender, sender_name=settings.sender,
                       web=f"{base}/cap/{notice.identifier}.xml" if base else None,
                       reference_times={r: _utc(index[r]["sent"]) for r in known})
        parsed = parse_cap(data)
        info = parsed.infos[0] if parsed.infos else None
        expires = getattr(info, "expires", None) or (notice.issued + dt.timedelta(hours=12))
        _write_atomic(path, data)
        index[notice.identifier] = {
            "sent": notice.issued.astimezone(dt.UTC).isoformat(), "expires": _iso(expires),
            "commune": notice.commune_code, "hazard": notice.hazard, "kind": notice.kind}
        written.append(path)
    _write_atomic(folder / INDEX, json.dumps(index, ensure_ascii=False, indent=1, sort_keys=True).encode())
    active = active_alerts(folder, now)
    feed = atom_feed([(folder / f"{i}.xml").read_bytes() for i in active],
                     feed_id=f"{base}/cap/{FEED}" if base else f"urn:ewarn:{settings.cap_sender}:feed",
                     title="ewarn – cảnh báo lũ quét, sạt lở đất đang hiệu lực", updated=now, link_base=base)
    _write_atomic(folder / FEED, feed)
    return written


def _iso(value: object) -> str:
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC).isoformat()
    return _utc(str(value)).isoformat()
