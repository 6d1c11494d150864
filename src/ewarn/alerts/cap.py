"""CAP 1.2 alerts of notices, an Atom feed of the active ones, and a safe CAP reader.

One CAP alert per :class:`~ewarn.alerts.notice.Notice` (one commune, one
hazard, one cycle), built with lxml after OASIS *Common Alerting Protocol
Version 1.2* (2010), namespace ``urn:oasis:names:tc:emergency:cap:1.2``:

=============  ================================================================
element        value
=============  ================================================================
identifier     :attr:`Notice.identifier` (no spaces, commas, ``<`` or ``&``; CAP §3.2.1)
sender         settings ``[alerts] cap_sender``
sent           :attr:`Notice.issued` as ``YYYY-MM-DDThh:mm:ss+07:00`` (Asia/Ho_Chi_Minh,
               no fractions; CAP §3.3.2)
status         ``Actual`` (``Exercise`` / ``Test`` for drills and tests)
msgType        warning → ``Alert``; update and reminder → ``Update``; all_clear →
               ``Update`` with responseType ``AllClear`` (see below)
references     ``sender,identifier,sent`` of each earlier notice, space-separated
scope          ``Public``
info           one block in ``vi-VN`` and one in ``en-US`` (texts:
               :func:`ewarn.alerts.messages.cap_texts`)
category       ``Met`` and ``Geo`` (rain-driven flash flood and landslide)
responseType   level >= 3 (:data:`~ewarn.alerts.messages.EVACUATE_LEVEL`) ``Evacuate``,
               below ``Prepare``, all-clear ``AllClear``
urgency        from the lead time onset − sent: < 1 h ``Immediate``, <= 6 h
               ``Expected``, more ``Future``; all-clear ``Past`` (SCIENCE.md §7)
severity       level 1 ``Minor``, 2 ``Moderate``, 3 ``Severe``, 4-5 ``Extreme``
               (SCIENCE.md §7); all-clear ``Minor``
certainty      ``Likely`` for a deterministic forecast; ``Possible`` when an ensemble
               probability below 0.5 is given
area           areaDesc, the commune outline as one closed ``lat,lon`` polygon of at
               most 99 points, geocode ``VN-commune-code`` = the 5-digit official
               commune code (Decision 19/2025/QĐ-TTg; an ewarn valueName, CAP has no
               registry for Vietnamese codes)
=============  ================================================================

The all-clear is an ``Update`` with ``responseType`` ``AllClear`` and urgency
``Past``, not a ``Cancel``: CAP 1.2 §3.2.1 defines ``Cancel`` as withdrawing
the earlier message (as when it was sent in error), while ``AllClear`` (new in
CAP 1.2, §3.2.2: "the subject event no longer poses a threat or concern")
ends a warning that was right. A reader that only knows ``Cancel`` still
drops the earlier alert because the update supersedes it.

Incoming XML is read by :func:`parse_cap` with entity resolution, DTD
loading and network access off (XXE, OWASP XML External Entity Prevention).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import shapely
from lxml import etree

from ewarn.alerts.messages import EVACUATE_LEVEL, cap_texts, local_time
from ewarn.alerts.notice import Notice
from ewarn.errors import EwarnError

__all__ = [
    "ATOM_NS",
    "CAP_LANGUAGES",
    "CAP_NS",
    "GEOCODE_NAME",
    "MAX_POLYGON_POINTS",
    "CapError",
    "CapInfo",
    "CapMessage",
    "atom_feed",
    "cap_time",
    "cap_xml",
    "certainty",
    "commune_polygon",
    "notice_to_cap",
    "parse_cap",
    "polygon_text",
    "response_type",
    "safe_parser",
    "severity",
    "urgency",
    "validate_cap",
]

#: CAP 1.2 namespace (OASIS CAP 1.2 §3.3.1).
CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
#: Atom namespace (RFC 4287 §2).
ATOM_NS = "http://www.w3.org/2005/Atom"
#: CAP ``<language>`` (RFC 3066 tags) of each message language.
CAP_LANGUAGES: Mapping[str, str] = {"vi": "vi-VN", "en": "en-US"}
#: geocode valueName of the 5-digit commune code (an ewarn name, see the module docstring).
GEOCODE_NAME = "VN-commune-code"
#: Most points of a CAP polygon ewarn writes, the closing point included (an ewarn choice:
#: a commune outline at ~100 m detail, and a small alert for SMS-era readers).
MAX_POLYGON_POINTS = 99
#: An alert stays valid at least this long after it was sent (the next cycle replaces it).
MIN_VALIDITY = timedelta(hours=12)

_CAP_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
_FORBIDDEN_ID = re.compile(r"[\s,<&]")
_SEVERITY = {0: "Minor", 1: "Minor", 2: "Moderate", 3: "Severe", 4: "Extreme", 5: "Extreme"}


class CapError(EwarnError):
    """A CAP document cannot be written or read (the message names the element and the fix)."""


# --------------------------------------------------------------------------- value mappings


def cap_time(t: datetime) -> str:
    """``t`` as a CAP date-time in Vietnam time: ``YYYY-MM-DDThh:mm:ss+07:00`` (CAP 1.2 §3.3.2).

    A naive ``t`` is taken as UTC; fractions of a second are dropped.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> cap_time(datetime(2024, 9, 7, 12, 30, 5, 123, tzinfo=timezone.utc))
    '2024-09-07T19:30:05+07:00'
    """
    return local_time(t).replace(microsecond=0).isoformat()


def severity(level: int) -> str:
    """CAP severity of a Decision 18 level: 1 Minor, 2 Moderate, 3 Severe, 4-5 Extreme (SCIENCE.md §7)."""
    return _SEVERITY[int(level)]


def urgency(onset: datetime | None, sent: datetime, *, all_clear: bool = False) -> str:
    """CAP urgency from the lead time onset − sent (SCIENCE.md §7).

    Parameters
    ----------
    onset, sent : datetime
        First time the level is reached and the sending time (naive = UTC). No
        onset, or an onset already past, is ``Immediate``.
    all_clear : bool
        ``Past``: "responsive action is no longer required" (CAP 1.2 §3.2.2).

    Returns
    -------
    {"Immediate", "Expected", "Future", "Past"}
        Lead time < 1 h, <= 6 h, > 6 h.
    """
    if all_clear:
        return "Past"
    if onset is None:
        return "Immediate"
    lead = local_time(onset) - local_time(sent)
    if lead < timedelta(hours=1):
        return "Immediate"
    return "Expected" if lead <= timedelta(hours=6) else "Future"


def certainty(probability: float | None = None) -> str:
    """``Likely`` for a deterministic forecast; with an ensemble probability, ``Possible`` below 0.5.

    CAP 1.2 §3.2.2: Likely "p > ~50%", Possible "p <= ~50%".
    """
    if probability is None or probability > 0.5:
        return "Likely"
    return "Possible"


def response_type(notice: Notice) -> str:
    """``AllClear`` for an all-clear, ``Evacuate`` from level 3, else ``Prepare``."""
    if notice.kind == "all_clear":
        return "AllClear"
    return "Evacuate" if notice.level >= EVACUATE_LEVEL else "Prepare"


# --------------------------------------------------------------------------- polygons


def commune_polygon(geometry: Any, *, max_points: int = MAX_POLYGON_POINTS) -> list[tuple[float, float]]:
    """The outline of a commune as a closed CAP polygon: (lat, lon) pairs, at most ``max_points``.

    Parameters
    ----------
    geometry : shapely Polygon or MultiPolygon
        Commune geometry in EPSG:4326 (x = lon, y = lat).
    max_points : int
        Most points, the closing point included (CAP 1.2 §3.2.4 requires a closed
        ring of at least 4 points).

    Returns
    -------
    list of (lat, lon)
        Closed (first point == last point); empty for an empty geometry. Holes are
        dropped (a CAP polygon has none); of a MultiPolygon the largest part is kept
        (CAP readers differ on several polygons per area).

    Notes
    -----
    Douglas-Peucker (``shapely.simplify``, topology preserved) with a tolerance
    doubled from 0.0005° (≈ 50 m) until the ring fits; coordinates are rounded
    to 5 decimals (≈ 1 m).
    """
    if geometry is None or geometry.is_empty:
        return []
    if geometry.geom_type == "MultiPolygon":
        geometry = max(geometry.geoms, key=lambda g: g.area)
    if geometry.geom_type != "Polygon":
        raise CapError(f"commune geometry is a {geometry.geom_type}, not a polygon; fix the commune outline "
                       "(communes.geojson)")
    if max_points < 4:
        raise CapError(f"max_points={max_points}: a closed polygon needs at least 4 points")
    ring = shapely.Polygon(geometry.exterior)
    tolerance = 0.0005
    coords = list(ring.exterior.coords)
    while len(coords) > max_points:
        simpler = shapely.simplify(ring, tolerance, preserve_topology=True)
        coords = list(simpler.exterior.coords)
        tolerance *= 2
    out = [(round(lat, 5), round(lon, 5)) for lon, lat, *_ in coords]
    if out[0] != out[-1]:
        out.append(out[0])
    return out


def polygon_text(points: Sequence[tuple[float, float]], *, max_points: int = MAX_POLYGON_POINTS) -> str:
    """A CAP ``<polygon>``: "lat,lon lat,lon ...", closed, at most ``max_points`` points.

    An open ring is closed; a longer one is simplified (:func:`commune_polygon`).

    Raises
    ------
    CapError
        Fewer than 3 distinct points, or a latitude outside ±90 / longitude outside
        ±180 (e.g. (lon, lat) given instead of (lat, lon)).
    """
    pts = [(float(a), float(b)) for a, b in points]
    for i, (lat, lon) in enumerate(pts):
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise CapError(f"polygon point {i + 1} ({lat}, {lon}) is not (lat, lon) in degrees; give the "
                           "commune outline as (lat, lon) pairs (ewarn.alerts.cap.commune_polygon)")
    if len(set(pts)) < 3:
        raise CapError(f"polygon has {len(set(pts))} distinct points; a CAP polygon needs at least 3 "
                       "(or leave Notice.polygon empty)")
    if pts[0] != pts[-1]:
        pts.append(pts[0])
    if len(pts) > max_points:
        pts = commune_polygon(shapely.Polygon([(lon, lat) for lat, lon in pts]), max_points=max_points)
    return " ".join(f"{lat:.5f},{lon:.5f}" for lat, lon in pts)


# --------------------------------------------------------------------------- writing


def _sub(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    if text is not None:
        el.text = text
    return el


def _check_id(what: str, value: str) -> str:
    if not value or _FORBIDDEN_ID.search(value):
        fix = "set [alerts] cap_sender, e.g. ewarn@pctt.laocai.gov.vn" if what == "sender" else "fix it"
        raise CapError(f"CAP {what} {value!r} is empty or has a space, comma, '<' or '&' (CAP 1.2 §3.2.1); "
                       f"{fix}")
    return value


def _references(notice: Notice, sender: str, reference_times: Mapping[str, datetime] | None) -> str:
    refs = []
    for ref in notice.references:
        if ref.count(",") == 2:  # already "sender,identifier,sent"
            refs.append(ref)
            continue
        t = (reference_times or {}).get(ref)
        if t is None:
            raise CapError(f"notice {notice.identifier} references {ref} but its sent time is unknown; pass "
                           f"reference_times={{'{ref}': <issued time of that notice>}} (CAP references are "
                           "'sender,identifier,sent')")
        refs.append(f"{sender},{_check_id('reference', ref)},{cap_time(t)}")
    return " ".join(refs)


def _default_expires(notice: Notice) -> datetime:
    """The end of the window, but at least :data:`MIN_VALIDITY` after sending."""
    issued = local_time(notice.issued)
    floor = issued + MIN_VALIDITY
    if notice.kind == "all_clear" or notice.until is None:
        return floor
    return max(local_time(notice.until), floor)


def notice_to_cap(
    notice: Notice,
    *,
    sender: str,
    expires: datetime | None = None,
    web: str | None = None,
    sender_name: str = "ewarn",
    languages: Sequence[str] = ("vi", "en"),
    status: str = "Actual",
    reference_times: Mapping[str, datetime] | None = None,
    probability: float | None = None,
) -> etree._Element:
    """One CAP 1.2 ``<alert>`` for a notice (mapping: module docstring).

    Parameters
    ----------
    notice : Notice
    sender : str
        CAP sender, settings ``[alerts] cap_sender`` (no spaces, commas, ``<``, ``&``).
    expires : datetime, optional
        Default: the end of the window (``notice.until``), but at least 12 h
        after sending (:data:`MIN_VALIDITY`).
    web : str, optional
        URL of a page about the alert (``<web>``), e.g. ``{public_url}/cap/{identifier}.xml``.
    sender_name : str
        Human-readable sender (``<senderName>``).
    languages : sequence of {"vi", "en"}
        One ``<info>`` block per language, Vietnamese first.
    status : {"Actual", "Exercise", "System", "Test", "Draft"}
    reference_times : mapping of str to datetime, optional
        Sent time of each identifier in ``notice.references`` (CAP references are
        ``sender,identifier,sent``); entries already in that form need none.
    probability : float, optional
        Ensemble probability of the level [0-1]: below 0.5 gives certainty ``Possible``.

    Returns
    -------
    lxml.etree._Element
        The ``<alert>`` element (serialize with :func:`cap_xml`).

    Raises
    ------
    CapError
        Bad sender or identifier, an update or all-clear without references, a
        reference without its sent time, a bad polygon or status.
    ewarn.alerts.messages.MessageError
        A notice the texts cannot be written for (unknown kind, level ...).
    """
    if status not in ("Actual", "Exercise", "System", "Test", "Draft"):
        raise CapError(f"CAP status {status!r} is not one of Actual, Exercise, System, Test, Draft")
    _check_id("sender", sender)
    _check_id("identifier", notice.identifier)
    if notice.kind != "warning" and not notice.references:
        raise CapError(f"notice {notice.identifier} is a {notice.kind} but has no references; an Update "
                       "must name the alerts it supersedes (Notice.references)")
    texts = [cap_texts(notice, language=lang) for lang in languages]
    sent = local_time(notice.issued)

    alert = etree.Element(f"{{{CAP_NS}}}alert", nsmap={None: CAP_NS})
    _sub(alert, "identifier", notice.identifier)
    _sub(alert, "sender", sender)
    _sub(alert, "sent", cap_time(sent))
    _sub(alert, "status", status)
    _sub(alert, "msgType", "Alert" if notice.kind == "warning" else "Update")
    _sub(alert, "scope", "Public")
    refs = _references(notice, sender, reference_times)
    if refs:
        _sub(alert, "references", refs)

    exp = cap_time(expires if expires is not None else _default_expires(notice))
    clear = notice.kind == "all_clear"
    for t in texts:
        info = _sub(alert, "info")
        _sub(info, "language", CAP_LANGUAGES[t.language])
        _sub(info, "category", "Met")
        _sub(info, "category", "Geo")
        _sub(info, "event", t.event)
        _sub(info, "responseType", response_type(notice))
        _sub(info, "urgency", urgency(notice.onset, sent, all_clear=clear))
        _sub(info, "severity", severity(0 if clear else notice.level))
        _sub(info, "certainty", certainty(probability))
        _sub(info, "effective", cap_time(sent))
        if notice.onset is not None and not clear:
            _sub(info, "onset", cap_time(notice.onset))
        _sub(info, "expires", exp)
        _sub(info, "senderName", sender_name)
        _sub(info, "headline", t.headline)
        _sub(info, "description", t.description)
        _sub(info, "instruction", t.instruction)
        if web:
            _sub(info, "web", web)
        for name, value in (("VN-Decision18-level", str(int(notice.level))),
                            ("ewarn-hazard", notice.hazard),
                            ("ewarn-forecast", f"{notice.source} {cap_time(notice.cycle)}")):
            param = _sub(info, "parameter")
            _sub(param, "valueName", name)
            _sub(param, "value", value)
        area = _sub(info, "area")
        _sub(area, "areaDesc", t.area_desc)
        if notice.polygon:
            _sub(area, "polygon", polygon_text(notice.polygon))
        geocode = _sub(area, "geocode")
        _sub(geocode, "valueName", GEOCODE_NAME)
        _sub(geocode, "value", notice.commune_code)
    return alert


def cap_xml(notice: Notice, **kwargs: Any) -> bytes:
    """:func:`notice_to_cap` serialized: UTF-8 bytes with the XML declaration, indented."""
    return etree.tostring(notice_to_cap(notice, **kwargs), xml_declaration=True, encoding="UTF-8",
                          pretty_print=True)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class CapInfo:
    """One ``<info>`` block of a parsed CAP alert (first ``<area>``)."""

    language: str
    event: str
    urgency: str
    severity: str
    certainty: str
    response_types: tuple[str, ...]
    headline: str
    description: str
    instruction: str
    onset: datetime | None
    expires: datetime | None
    area_desc: str
    polygons: tuple[tuple[tuple[float, float], ...], ...]
    geocodes: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class CapMessage:
    """A parsed CAP 1.2 alert.

    ``references`` holds the raw ``sender,identifier,sent`` triples;
    :attr:`referenced_identifiers` the identifiers alone.
    """

    identifier: str
    sender: str
    sent: datetime
    status: str
    msg_type: str
    scope: str
    references: tuple[str, ...]
    infos: tuple[CapInfo, ...]

    @property
    def referenced_identifiers(self) -> tuple[str, ...]:
        return tuple(r.split(",")[1] for r in self.references if r.count(",") == 2)


def safe_parser() -> etree.XMLParser:
    """An lxml parser for untrusted XML: no entity resolution, no DTD, no network, no huge trees.

    Source: OWASP XML External Entity Prevention Cheat Sheet (lxml section).
    """
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                           dtd_validation=False, remove_comments=True, remove_pis=True)


def _text(el: etree._Element | None) -> str:
    """Text of an element without unresolved entity references (``&xxe;`` stays out)."""
    if el is None:
        return ""
    parts = [el.text or ""] + [child.tail or "" for child in el]
    return "".join(parts).strip()


def _time(el: etree._Element | None, where: str) -> datetime | None:
    value = _text(el)
    if not value:
        return None
    if not _CAP_TIME.match(value):
        raise CapError(f"CAP {where}: '{value}' is not a CAP date-time YYYY-MM-DDThh:mm:ss±hh:mm")
    return datetime.fromisoformat(value)


def _polygon(text: str, where: str) -> tuple[tuple[float, float], ...]:
    try:
        return tuple((float(a), float(b)) for a, b in (p.split(",") for p in text.split()))
    except ValueError:
        raise CapError(f"CAP {where}: polygon '{text[:60]}' is not 'lat,lon lat,lon ...'") from None


def parse_cap(data: bytes) -> CapMessage:
    """Read a CAP 1.2 alert from untrusted bytes, safely (:func:`safe_parser`).

    Entities are not resolved (their references are dropped from the text), no
    DTD or other file is loaded and nothing is fetched.

    Parameters
    ----------
    data : bytes
        The document.

    Returns
    -------
    CapMessage

    Raises
    ------
    CapError
        Not well-formed XML (with line and column), not a CAP 1.2 ``<alert>``, a
        required element missing or a bad date-time.
    """
    try:
        root = etree.fromstring(data, safe_parser())
    except etree.XMLSyntaxError as exc:
        raise CapError(f"CAP document is not well-formed XML: {exc}; ask the sender for a valid CAP 1.2 "
                       "document") from None
    if root.tag != f"{{{CAP_NS}}}alert":
        raise CapError(f"CAP document root is {root.tag}, not <alert> in namespace {CAP_NS}; only CAP 1.2 "
                       "is read")
    ns = {"c": CAP_NS}

    def required(parent: etree._Element, name: str, where: str) -> str:
        value = _text(parent.find(f"c:{name}", ns))
        if not value:
            raise CapError(f"CAP {where}: required element <{name}> is missing or empty (CAP 1.2 §3.2)")
        return value

    identifier = required(root, "identifier", "alert")
    where = f"alert {identifier}"
    infos = []
    for i, info in enumerate(root.findall("c:info", ns), start=1):
        iw = f"{where}, info {i}"
        area = info.find("c:area", ns)
        infos.append(CapInfo(
            language=_text(info.find("c:language", ns)) or "en-US",
            event=required(info, "event", iw),
            urgency=required(info, "urgency", iw),
            severity=required(info, "severity", iw),
            certainty=required(info, "certainty", iw),
            response_types=tuple(_text(e) for e in info.findall("c:responseType", ns)),
            headline=_text(info.find("c:headline", ns)),
            description=_text(info.find("c:description", ns)),
            instruction=_text(info.find("c:instruction", ns)),
            onset=_time(info.find("c:onset", ns), f"{iw} <onset>"),
            expires=_time(info.find("c:expires", ns), f"{iw} <expires>"),
            area_desc=_text(area.find("c:areaDesc", ns)) if area is not None else "",
            polygons=tuple(_polygon(_text(p), iw) for p in area.findall("c:polygon", ns))
            if area is not None else (),
            geocodes=tuple((_text(g.find("c:valueName", ns)), _text(g.find("c:value", ns)))
                           for g in area.findall("c:geocode", ns)) if area is not None else (),
        ))
    return CapMessage(
        identifier=identifier,
        sender=required(root, "sender", where),
        sent=_time(root.find("c:sent", ns), f"{where} <sent>") or _missing("sent", where),
        status=required(root, "status", where),
        msg_type=required(root, "msgType", where),
        scope=required(root, "scope", where),
        references=tuple(_text(root.find("c:references", ns)).split()),
        infos=tuple(infos),
    )


def _missing(name: str, where: str) -> datetime:
    raise CapError(f"CAP {where}: required element <{name}> is missing or empty (CAP 1.2 §3.2)")


def validate_cap(document: bytes | etree._Element, schema: str | Path | etree.XMLSchema) -> list[str]:
    """Problems of a CAP document against an XML schema (e.g. the OASIS ``CAP-v1.2.xsd``).

    Parameters
    ----------
    document : bytes or lxml element
    schema : path of an .xsd file, or a loaded ``lxml.etree.XMLSchema``

    Returns
    -------
    list of str
        "line N: message" per problem; empty when the document is valid.
    """
    if not isinstance(schema, etree.XMLSchema):
        schema = etree.XMLSchema(etree.parse(str(schema), safe_parser()))
    doc = etree.fromstring(document, safe_parser()) if isinstance(document, bytes) else document
    if schema.validate(doc):
        return []
    return [f"line {e.line}: {e.message}" for e in schema.error_log]


# --------------------------------------------------------------------------- Atom feed


def _atom(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attrs)
    if text is not None:
        el.text = text
    return el


def atom_feed(
    entries: Iterable[bytes | etree._Element],
    *,
    feed_id: str,
    title: str,
    updated: datetime,
    link_base: str = "",
    author: str = "ewarn",
) -> bytes:
    """An Atom feed (RFC 4287) of active CAP alerts, one entry per alert.

    Parameters
    ----------
    entries : iterable of bytes or lxml elements
        The active CAP alerts (as :func:`cap_xml` / :func:`notice_to_cap` made
        them, or read back from storage); read with :func:`parse_cap`.
    feed_id : str
        Permanent IRI of the feed (``<id>``), e.g. ``{public_url}/cap/feed.atom``.
    title : str
    updated : datetime
        Last change of the feed (naive = UTC).
    link_base : str
        Public base URL: each entry links to ``{link_base}/cap/{identifier}.xml``
        (type ``application/cap+xml``), the feed to itself. Empty: relative links
        and ``urn:uuid`` entry ids (uuid5 of the identifier, stable).
    author : str

    Returns
    -------
    bytes
        UTF-8 XML. Entry: id, title (headline of the first info block), updated
        (sent), link, summary (its description), category (event).
    """
    base = link_base.rstrip("/")
    feed = etree.Element(f"{{{ATOM_NS}}}feed", nsmap={None: ATOM_NS})
    _atom(feed, "id", feed_id)
    _atom(feed, "title", title)
    _atom(feed, "updated", cap_time(updated))
    _atom(_atom(feed, "author"), "name", author)
    if base:
        _atom(feed, "link", rel="self", type="application/atom+xml", href=f"{base}/cap/feed.atom")
    for doc in entries:
        msg = parse_cap(doc if isinstance(doc, bytes) else etree.tostring(doc))
        href = f"{base}/cap/{msg.identifier}.xml"
        first = msg.infos[0] if msg.infos else None
        entry = _atom(feed, "entry")
        _atom(entry, "id", href if base else f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, msg.identifier)}")
        _atom(entry, "title", first.headline if first and first.headline else msg.identifier)
        _atom(entry, "updated", cap_time(msg.sent))
        _atom(entry, "link", rel="alternate", type="application/cap+xml", href=href)
        if first is not None:
            _atom(entry, "category", term=first.event)
            if first.description:
                _atom(entry, "summary", first.description)
    return etree.tostring(feed, xml_declaration=True, encoding="UTF-8", pretty_print=True)
