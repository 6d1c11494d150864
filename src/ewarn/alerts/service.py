"""The alert service: from an assessment to queued SMS, and from the outbox to the gateway.

:func:`prepare_alerts` decides (:func:`ewarn.alerts.policy.decide`), picks the
recipients (commune officials get their commune's notices; contacts whose
role is one of ``[alerts] operator_roles`` get one province summary per
cycle), renders each text once per (notice, language, unaccented form) and
builds the outbox rows with their idempotency keys. :func:`enqueue_alerts`
writes the rows AND the new alert state in one transaction, so a crash can
neither lose a decision nor make it twice; running the same cycle again
queues nothing new (the keys are already there, the state says it was told).
:func:`dispatch` sends what is due; :func:`preview` shows what would be sent.

Idempotency key: the first 40 hex digits of SHA-256 over
``source|cycle|commune|hazard|level|recipient|kind`` (a province summary:
``summary:{province}`` as the commune, no hazard, level 0: one per cycle).
The key carries no phone number, so it can go to a provider as a client
reference.

Demo contacts (``contacts.csv`` ``demo = true``: made-up numbers that may
belong to real people) get messages only through the ``file`` and
``console`` gateways unless the caller says otherwise.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely
import xarray as xr
from scipy.spatial import cKDTree
from sqlalchemy import select

from ewarn.alerts.gateways.base import Gateway
from ewarn.alerts.notice import Notice, ProvinceSummary
from ewarn.alerts.outbox import DispatchCounts, Dispatcher, enqueue, outbox, transaction
from ewarn.alerts.policy import assessment_cycle, decide, load_state, province_summaries, save_state
from ewarn.config import AlertSettings
from ewarn.log import mask_phone
from ewarn.region import Region
from ewarn.store import Store

__all__ = [
    "SAFE_DEMO_GATEWAYS",
    "AlertBatch",
    "commune_outlines",
    "dispatch",
    "enqueue_alerts",
    "idempotency_keys",
    "nearest_shelters",
    "prepare_alerts",
    "preview",
]

log = logging.getLogger(__name__)

#: Gateways that never reach a telephone network: demo contacts may be sent to.
SAFE_DEMO_GATEWAYS = ("file", "console")
#: Most points of a commune outline in a notice (CAP polygons stay small).
MAX_OUTLINE_POINTS = 100

_ROW_COLUMNS = ["key", "kind", "hazard", "commune_code", "commune_name", "level", "recipient",
                "contact_name", "role", "language", "unaccented", "body", "encoding", "segments",
                "valid_until", "source", "cycle", "notice_id"]


@dataclass(frozen=True)
class AlertBatch:
    """What one decision produced, before anything is written.

    Attributes
    ----------
    notices : list of Notice
        Commune notices, most severe first.
    summaries : list of ProvinceSummary
        One per province with a commune at or above ``min_level``.
    rows : pandas.DataFrame
        One outbox row per message and recipient (outbox columns plus
        ``commune_name``, ``level`` and ``unaccented`` for previews).
    state : pandas.DataFrame
        The alert state once these notices are sent (saved with the rows).
    now : datetime
        Decision time (UTC).
    """

    notices: list[Notice]
    summaries: list[ProvinceSummary]
    rows: pd.DataFrame
    state: pd.DataFrame
    now: dt.datetime


def nearest_shelters(communes: pd.DataFrame, shelters: pd.DataFrame) -> dict[str, str]:
    """Name of the shelter nearest each commune's centroid (straight line, projected metres).

    Communes and shelters are projected to the communes' UTM zone
    (``GeoDataFrame.estimate_utm_crs``) and matched with a k-d tree. The
    nearest shelter by distance may be across a river; a plan's assignment
    (``routing``) is better when the caller has one.

    Returns
    -------
    dict of str to str
        Commune code to shelter name; empty without shelters.
    """
    if shelters is None or len(shelters) == 0 or len(communes) == 0:
        return {}
    import geopandas as gpd

    crs = communes.estimate_utm_crs()
    centroids = communes.to_crs(crs).geometry.centroid
    pts = gpd.GeoSeries(gpd.points_from_xy(shelters["lon"], shelters["lat"]), crs="EPSG:4326").to_crs(crs)
    tree = cKDTree(np.column_stack([pts.x.to_numpy(), pts.y.to_numpy()]))
    _, idx = tree.query(np.column_stack([centroids.x.to_numpy(), centroids.y.to_numpy()]))
    names = shelters["name"].astype(str).to_numpy()[idx]
    return dict(zip(communes["code"].astype(str), names, strict=True))


def commune_outlines(communes: pd.DataFrame, codes: list[str]) -> dict[str, list[tuple[float, float]]]:
    """Closed outline (lat, lon) of each commune's largest polygon, simplified below 100 points.

    For CAP ``<polygon>`` (CAP 1.2 §3.2.4: a closed ring, first point = last).
    """
    if not codes:
        return {}
    sel = communes[communes["code"].astype(str).isin(codes)]
    out: dict[str, list[tuple[float, float]]] = {}
    geoms = np.asarray(sel.geometry.values)
    parts = [max(shapely.get_parts(g), key=lambda p: p.area) if g is not None else None for g in geoms]
    for code, poly in zip(sel["code"].astype(str), parts, strict=True):  # communes with notices only
        if poly is None or poly.is_empty:
            out[code] = []
            continue
        tol, ring = 0.0, poly.exterior
        while len(ring.coords) > MAX_OUTLINE_POINTS - 1:
            tol = tol * 2 if tol else 1e-4
            ring = shapely.simplify(poly, tol, preserve_topology=True).exterior
        out[code] = [(round(y, 5), round(x, 5)) for x, y in ring.coords]
    return out


def idempotency_keys(frame: pd.DataFrame) -> pd.Series:
    """Outbox keys of message rows (columns source, cycle, commune_code, hazard, level, recipient, kind).

    SHA-256 (first 40 hex digits, 160 bits) of
    ``source|cycle(%Y%m%dT%H%MZ)|commune|hazard|level|recipient|kind``.
    """
    cycle = pd.to_datetime(frame["cycle"], utc=True).dt.strftime("%Y%m%dT%H%MZ")
    text = (frame["source"].astype(str) + "|" + cycle + "|" + frame["commune_code"].astype(str) + "|"
            + frame["hazard"].astype(str) + "|" + frame["level"].astype(int).astype(str) + "|"
            + frame["recipient"].astype(str) + "|" + frame["kind"].astype(str))
    return pd.Series([hashlib.sha256(t.encode()).hexdigest()[:40] for t in text], index=frame.index,
                     dtype=object)


def _contacts(region: Region, settings: AlertSettings, include_demo: bool | None) -> pd.DataFrame:
    c = region.contacts.copy()
    if include_demo is None:
        include_demo = settings.gateway in SAFE_DEMO_GATEWAYS
    if not include_demo and "demo" in c.columns and c["demo"].astype(bool).any():
        n = int(c["demo"].astype(bool).sum())
        log.warning("%d demo contact(s) skipped: gateway %r reaches real phones", n, settings.gateway)
        c = c[~c["demo"].astype(bool)]
    c["commune_code"] = c["commune_code"].astype(str)
    lang = (c["language"].fillna("").astype(str).str.strip() if "language" in c
            else pd.Series("", index=c.index))
    c["language"] = lang.where(lang != "", settings.language)
    c["unaccented"] = c["unaccented"].fillna(False).astype(bool) if "unaccented" in c else False
    c["role"] = c["role"].fillna("").astype(str) if "role" in c else ""
    roles = {r.strip().casefold() for r in settings.operator_roles}
    c["operator"] = c["role"].str.strip().str.casefold().isin(roles)
    prov = dict(zip(region.communes["code"].astype(str), region.communes["province"].astype(str),
                    strict=True))
    c["province"] = c["commune_code"].map(prov).fillna("")
    return c.rename(columns={"name": "contact_name", "phone": "recipient"}).reset_index(drop=True)


def _render_texts(items: list, forms: pd.DataFrame, render: Callable, sender: str) -> pd.DataFrame:
    """Render each (item, language, unaccented) once; one row per form."""
    out = []
    for i, lang, flat in forms[["item", "language", "unaccented"]].itertuples(index=False):
        msg = render(items[i], language=lang, unaccented=bool(flat), sender=sender)
        out.append((i, lang, bool(flat), msg.text, str(msg.encoding), int(msg.segments)))
    return pd.DataFrame(out, columns=["item", "language", "unaccented", "body", "encoding", "segments"])


def _message_rows(notices: list[Notice], summaries: list[ProvinceSummary], contacts: pd.DataFrame,
                  sender: str) -> pd.DataFrame:
    from ewarn.alerts.messages import render, render_summary

    frames = []
    if notices:
        nf = pd.DataFrame({
            "item": np.arange(len(notices)),
            "commune_code": [n.commune_code for n in notices],
            "commune_name": [n.commune_name for n in notices],
            "kind": [n.kind for n in notices], "hazard": [n.hazard for n in notices],
            "level": [n.level for n in notices],
            "valid_until": pd.to_datetime([n.until if n.kind != "all_clear" else None for n in notices],
                                          utc=True),
            "source": [n.source for n in notices],
            "cycle": pd.to_datetime([n.cycle for n in notices], utc=True),
            "notice_id": [n.identifier for n in notices]})
        officials = contacts[~contacts["operator"]]
        pairs = nf.merge(officials[["commune_code", "recipient", "contact_name", "role", "language",
                                    "unaccented"]], on="commune_code", how="inner")
        if len(pairs):
            forms = pairs[["item", "language", "unaccented"]].drop_duplicates()
            texts = _render_texts(notices, forms, render, sender)
            frames.append(pairs.merge(texts, on=["item", "language", "unaccented"], how="left"))
    if summaries:
        sf = pd.DataFrame({
            "item": np.arange(len(summaries)),
            "province": [s.province for s in summaries],
            "commune_code": [f"summary:{s.province}" for s in summaries],
            "commune_name": [s.province for s in summaries],
            "kind": "summary", "hazard": "", "level": [max(s.counts, default=0) for s in summaries],
            "valid_until": pd.to_datetime([None] * len(summaries), utc=True),
            "source": [s.source for s in summaries],
            "cycle": pd.to_datetime([s.cycle for s in summaries], utc=True),
            "notice_id": [s.identifier for s in summaries]})
        ops = contacts[contacts["operator"]]
        pairs = sf.merge(ops[["province", "recipient", "contact_name", "role", "language", "unaccented"]],
                         on="province", how="inner")
        if len(pairs):
            forms = pairs[["item", "language", "unaccented"]].drop_duplicates()
            texts = _render_texts(summaries, forms, render_summary, sender)
            pairs = pairs.merge(texts, on=["item", "language", "unaccented"], how="left")
            key_level = pairs["level"]
            pairs["level"] = 0  # one summary per cycle whatever its content
            pairs["key"] = idempotency_keys(pairs)
            pairs["level"] = key_level
            pairs["commune_code"] = ""
            frames.append(pairs.drop(columns="province"))
    if not frames:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in _ROW_COLUMNS})
    rows = pd.concat(frames, ignore_index=True)
    has_key = rows["key"].notna() if "key" in rows else pd.Series(False, index=rows.index)
    if (~has_key).any():
        rows.loc[~has_key, "key"] = idempotency_keys(rows[~has_key])
    return rows[_ROW_COLUMNS].reset_index(drop=True)


def prepare_alerts(store: Store, region: Region, assessment: xr.Dataset, settings: AlertSettings, *,
                   now: dt.datetime, shelters: Mapping[str, str] | None = None,
                   include_demo: bool | None = None) -> AlertBatch:
    """Decide and build every message of one assessment, without writing anything.

    Parameters
    ----------
    store : Store
        Workspace database (the alert state is read from it).
    region : Region
        Communes (names, provinces, outlines), shelters and contacts.
    assessment : xarray.Dataset
        Per-commune risk assessment of one cycle.
    settings : AlertSettings
        ``min_level``, ``reminder_hours``, ``all_clear``, ``operator_roles``,
        ``language`` (for contacts without one), ``sender``, ``gateway``.
    now : datetime
        Decision time (UTC).
    shelters : mapping of str to str, optional
        Shelter name per commune code (e.g. from an evacuation plan); default:
        the shelter nearest each commune's centroid.
    include_demo : bool, optional
        Send to demo contacts; default only through the file/console gateways.

    Returns
    -------
    AlertBatch
    """
    state = load_state(store)
    if shelters is None:
        shelters = nearest_shelters(region.communes, region.shelters)
    notices, new_state = decide(assessment, state, min_level=settings.min_level,
                                reminder_hours=settings.reminder_hours, all_clear=settings.all_clear,
                                now=now, shelters=shelters)
    outlines = commune_outlines(region.communes, sorted({n.commune_code for n in notices}))
    notices = [dataclasses.replace(n, polygon=outlines.get(n.commune_code, [])) for n in notices]
    summaries = province_summaries(assessment, min_level=settings.min_level, now=now)
    contacts = _contacts(region, settings, include_demo)
    rows = _message_rows(notices, summaries, contacts, settings.sender)
    when = pd.Timestamp(now)
    when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
    source, cycle = assessment_cycle(assessment)
    uncovered = sorted({n.commune_code for n in notices} - set(rows["commune_code"]))
    if uncovered:
        log.warning("%s %s: %d commune(s) with a notice have no official in contacts.csv: %s", source,
                    f"{cycle:%Y-%m-%dT%HZ}", len(uncovered), ", ".join(uncovered[:20]))
    return AlertBatch(notices=notices, summaries=summaries, rows=rows, state=new_state,
                      now=when.to_pydatetime())


def enqueue_alerts(store: Store, batch: AlertBatch) -> tuple[int, int]:
    """Queue the batch's messages and save its alert state in ONE transaction.

    Returns
    -------
    (int, int)
        Messages queued, messages skipped as already queued (same key).
    """
    rows = batch.rows[[c for c in batch.rows.columns if c in outbox.c]]
    with transaction(store) as conn:
        inserted, duplicates = enqueue(store, rows, now=batch.now, conn=conn)
        save_state(store, batch.state, conn=conn, now=batch.now)
    log.info("alerts: %d notice(s), %d summary(ies): %d message(s) queued, %d already queued",
             len(batch.notices), len(batch.summaries), inserted, duplicates)
    return inserted, duplicates


def dispatch(store: Store, gateway: Gateway, settings: AlertSettings, *, now: dt.datetime | None = None,
             wait: bool = False, max_seconds: float | None = None,
             clock: Callable[[], float] = time.time,
             sleep: Callable[[float], None] = time.sleep) -> DispatchCounts:
    """Send the due messages through ``gateway`` (see :class:`~ewarn.alerts.outbox.Dispatcher`).

    Parameters
    ----------
    now : datetime, optional
        Time to dispatch at (UTC); the clock runs on from it. Default: ``clock()``.
    wait : bool
        Also wait for retries to come due (until the outbox is empty or
        ``max_seconds`` have passed); False sends what is due now and returns.
    """
    if now is not None:
        offset = pd.Timestamp(now).timestamp() - clock()
        base_clock = clock

        def clock() -> float:
            return base_clock() + offset

    d = Dispatcher(store, gateway, settings=settings, clock=clock, sleep=sleep)
    return d.run_until_empty(wait=wait, max_seconds=max_seconds)


def preview(store: Store, region: Region, assessment: xr.Dataset, settings: AlertSettings, *,
            now: dt.datetime, shelters: Mapping[str, str] | None = None,
            include_demo: bool | None = None) -> pd.DataFrame:
    """What :func:`prepare_alerts` would queue, for people: nothing is written.

    Returns
    -------
    pandas.DataFrame
        Columns commune, commune_name, kind, hazard, level, recipient (masked),
        contact_name, language, unaccented, segments, encoding, text, queued
        (True: this message is already in the outbox, it will not be queued again).
    """
    batch = prepare_alerts(store, region, assessment, settings, now=now, shelters=shelters,
                           include_demo=include_demo)
    r = batch.rows
    keys = r["key"].astype(str).tolist()
    with store.engine.connect() as conn:
        known = (set(conn.execute(select(outbox.c.key).where(outbox.c.key.in_(keys))).scalars())
                 if keys else set())
    return pd.DataFrame({
        "commune": r["commune_code"], "commune_name": r["commune_name"], "kind": r["kind"],
        "hazard": r["hazard"], "level": r["level"], "recipient": r["recipient"].map(mask_phone),
        "contact_name": r["contact_name"], "language": r["language"], "unaccented": r["unaccented"],
        "segments": r["segments"], "encoding": r["encoding"], "text": r["body"],
        "queued": r["key"].isin(known)}).reset_index(drop=True)
