"""The web app of ``ewarn serve``: status page, assessment API, CAP feed, delivery webhook, operator actions.

:func:`create_app` builds a FastAPI application over one workspace (kept in
``app.state``; nothing global), served by uvicorn inside ``ewarn serve``.

Public, read-only:

``GET /``
    status page (Vietnamese first, ``?lang=en``): open incidents (red banner),
    the current cycle and its age, an inline SVG map of the communes coloured
    by level (:func:`ewarn.maps.render_map`), the communes at risk, the
    pipeline's health, the outbox counts, the last runs. No script, no
    external resource; times in Asia/Ho_Chi_Minh.
``GET /api/assessments/latest`` (``?format=geojson``, ``?source=``), ``GET /api/assessments/latest.geojson``
    the latest assessment as JSON, or as an RFC 7946 FeatureCollection of
    the commune polygons.
``GET /api/runs?limit=20``, ``GET /healthz``
``GET /cap/feed.atom``, ``GET /cap/{identifier}.xml``
    the workspace's CAP archive (:mod:`ewarn.alerts.capstore`).

Provider callbacks:

``POST /webhooks/twilio/status``
    Twilio message status callback; the ``X-Twilio-Signature`` (HMAC-SHA1 of
    the URL Twilio called and the form fields, Twilio "Webhooks security") is
    checked against ``[alerts] public_url`` + the path with the auth token
    ``TWILIO_AUTH_TOKEN``; a bad or missing signature is answered 403 and
    changes nothing.

Operator actions (``Authorization: Bearer $EWARN_OPERATOR_TOKEN``; 401
without it, 503 when the variable is unset — never open):

``POST /api/operator/run-cycle/{source}``
    run a cycle of a ``[service] sources`` source now, in the background (202);
``POST /api/operator/incidents/{id}/ack``
    record who took an incident;
``POST /api/operator/test-message``
    queue one test SMS (``{"to": "+84..."}``) for the dispatcher.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import jinja2
import numpy as np
import pandas as pd
import phonenumbers
import shapely
from fastapi import BackgroundTasks, Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from markupsafe import Markup
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from ewarn.alerts.capstore import FEED
from ewarn.alerts.encoding import segments, sms_encoding
from ewarn.alerts.gateways.base import GatewayError
from ewarn.alerts.gateways.twilio import (
    AUTH_TOKEN_ENV,
    STATUS_CALLBACK_PATH,
    parse_status_callback,
    validate_twilio_signature,
)
from ewarn.alerts.outbox import enqueue, mark_delivery, outbox, outbox_counts
from ewarn.config import LOCAL_TZ, Workspace
from ewarn.errors import ConfigError, EwarnError, WorkspaceError
from ewarn.hazard_models.assess import assessments_table, latest_assessment
from ewarn.hazard_models.levels import LEVEL_DISCLAIMER, LEVELS
from ewarn.log import mask_phone, redact
from ewarn.maps import render_map
from ewarn.region import Region
from ewarn.store import Store, runs, utcnow
from ewarn.store import as_utc as _aware
from ewarn.watchdog import acknowledge, incidents, open_incidents

__all__ = ["CAP_IDENTIFIER", "OPERATOR_TOKEN_ENV", "create_app"]

log = logging.getLogger("ewarn.web")

#: Environment variable holding the operator's bearer token.
OPERATOR_TOKEN_ENV = "EWARN_OPERATOR_TOKEN"
#: What a CAP identifier served from ``{workspace}/cap`` may look like (no path, no hidden file).
CAP_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
#: Media types: CAP 1.2 (IANA registration, OASIS CAP-v1.2 §3.5), Atom (RFC 4287), GeoJSON (RFC 7946).
CAP_MEDIA_TYPE = "application/cap+xml"
ATOM_MEDIA_TYPE = "application/atom+xml"
GEOJSON_MEDIA_TYPE = "application/geo+json"

_TEMPLATES = Path(__file__).with_name("templates_web")
_DB_DOWN = "the workspace database cannot be read; see the service log and check [workspace] database_url"
#: Twilio MessageStatus values that end a message (Twilio Messages resource, "Message status values");
#: "read" (WhatsApp/RCS) implies delivered. Other values (queued, sending, sent...) change nothing.
_TWILIO_DELIVERY = {"delivered": "delivered", "read": "delivered", "undelivered": "undelivered",
                    "failed": "failed"}

_TEXT: dict[str, dict[str, str]] = {
    "vi": {
        "title": "ewarn – cảnh báo lũ quét, sạt lở đất", "switch": "English",
        "db_error": "Không đọc được cơ sở dữ liệu", "incidents": "Sự cố hệ thống đang mở",
        "opened": "mở lúc", "acknowledged": "đã tiếp nhận:", "cycle": "Bản tin dự báo hiện tại",
        "source": "Nguồn", "cycle_time": "thời điểm bản tin", "local_time": "giờ Việt Nam",
        "age": "đã qua", "stale": "bản tin đã cũ", "hours": "giờ", "days": "ngày",
        "no_assessment": "Chưa có đánh giá rủi ro nào: chưa chạy chu trình dự báo nào.",
        "map": "Bản đồ cấp độ rủi ro theo xã", "communes_at_risk": "Các xã có rủi ro",
        "commune": "Xã", "level": "Cấp độ", "onset": "Bắt đầu", "peak": "Cao điểm",
        "rain24": "Mưa 24 giờ lớn nhất (mm)", "more": "và {n} xã khác (xem JSON)",
        "health": "Tình trạng hệ thống", "healthy": "Hoạt động bình thường",
        "unhealthy": "Có sự cố – xem thông báo ở đầu trang", "last_run": "Lần chạy cuối",
        "status": "Trạng thái", "step": "Bước", "outbox": "Hàng đợi tin nhắn",
        "runs": "Các lần chạy gần nhất", "started": "Bắt đầu", "job": "Công việc",
        "message": "Ghi chú", "no_runs": "Chưa có lần chạy nào.", "generated": "Cập nhật lúc",
        "cap_feed": "Nguồn tin CAP", "no_region": "Không đọc được vùng: {error}",
    },
    "en": {
        "title": "ewarn – flash flood and landslide warnings", "switch": "Tiếng Việt",
        "db_error": "The database cannot be read", "incidents": "Open system incidents",
        "opened": "opened", "acknowledged": "acknowledged by", "cycle": "Current forecast cycle",
        "source": "Source", "cycle_time": "cycle", "local_time": "Vietnam time",
        "age": "age", "stale": "the forecast is stale", "hours": "h", "days": "days",
        "no_assessment": "No risk assessment yet: no forecast cycle has run.",
        "map": "Risk level by commune", "communes_at_risk": "Communes at risk",
        "commune": "Commune", "level": "Level", "onset": "Onset", "peak": "Peak",
        "rain24": "Max 24 h rain (mm)", "more": "and {n} more communes (see the JSON)",
        "health": "Pipeline health", "healthy": "Working normally",
        "unhealthy": "Incidents – see the top of the page", "last_run": "Last run",
        "status": "Status", "step": "Step", "outbox": "Message outbox",
        "runs": "Latest runs", "started": "Started", "job": "Job",
        "message": "Message", "no_runs": "No run yet.", "generated": "Generated",
        "cap_feed": "CAP feed", "no_region": "The region cannot be read: {error}",
    },
}
_STATUS_WORDS_VI = {"queued": "chờ gửi", "sending": "đang gửi", "sent": "đã gửi", "delivered": "đã nhận",
                    "failed": "lỗi", "undelivered": "không tới", "expired": "hết hạn", "ok": "thành công",
                    "running": "đang chạy", "unchanged": "không đổi"}


# --------------------------------------------------------------------------- time and value helpers


def _iso(value: Any) -> str | None:
    """``YYYY-MM-DDTHH:MM:SSZ`` (UTC) or None."""
    t = _aware(value)
    return None if t is None else t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _local(value: Any) -> str:
    """``HH:MM DD/MM/YYYY`` in Asia/Ho_Chi_Minh, "–" when missing."""
    t = _aware(value)
    return "–" if t is None else f"{t.astimezone(ZoneInfo(LOCAL_TZ)):%H:%M %d/%m/%Y}"


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows: times as UTC ISO strings, NaN/NaT as None, Python scalars."""
    out = df.copy()
    for c in out.columns:
        if isinstance(out[c].dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(out[c]):
            ts = pd.to_datetime(out[c], utc=True)
            out[c] = ts.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return out.astype(object).where(out.notna(), None).to_dict("records")


# --------------------------------------------------------------------------- app state


@dataclass
class _State:
    """What the app holds: the workspace, its environment, caches and the run-now claims."""

    workspace: Workspace
    environ: Mapping[str, str]
    clock: Callable[[], dt.datetime]
    run_job: Callable[[str, str], Any]
    templates: jinja2.Environment
    lock: threading.Lock = field(default_factory=threading.Lock)
    running: set[str] = field(default_factory=set)
    _store: Store | None = None
    _region: tuple[Any, Any, str] | None = None  # (key, communes, error)
    _svg: dict[tuple[Any, ...], str] = field(default_factory=dict)

    def store(self) -> Store:
        """The workspace database (opened once; tables ensured)."""
        if self._store is None:
            self._store = Store.open(self.workspace.database_url)
        return self._store

    def region_key(self) -> tuple[Any, ...]:
        folder = self.workspace.region_dir
        try:
            return tuple(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size)
                                for e in os.scandir(folder) if e.is_file()))
        except OSError:
            return ()

    def communes(self) -> tuple[Any, str]:
        """The region's communes (GeoDataFrame) or None and why; reloaded when a region file changes."""
        key = self.region_key()
        with self.lock:
            cached = self._region
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        communes, error = None, ""
        try:
            communes = Region.load(self.workspace.region_dir).communes
        except EwarnError as exc:
            error = str(exc).splitlines()[0]
            log.error("status page: region %s: %s", self.workspace.region_dir, exc)
        with self.lock:
            self._region = (key, communes, error)
            self._svg.clear()
        return communes, error

    def svg(self, key: tuple[Any, ...], make: Callable[[], str]) -> str:
        """A rendered map, cached per (cycle, language, region) — the last few only."""
        with self.lock:
            hit = self._svg.get(key)
        if hit is None:
            hit = make()
            with self.lock:
                if len(self._svg) >= 8:
                    self._svg.clear()
                self._svg[key] = hit
        return hit

    def claim(self, source: str) -> bool:
        """Take the run-now slot of ``source`` (False when a run started here is still going)."""
        with self.lock:
            if source in self.running:
                return False
            self.running.add(source)
            return True

    def run_source(self, source: str) -> None:
        """Background task: one forecast cycle of ``source`` (the job of the scheduler)."""
        try:
            outcome = self.run_job(str(self.workspace.root), source)
            log.info("operator run of source %s: %s", source, outcome)
        except Exception:  # a background task must not die silently
            log.exception("operator run of source %s failed", source)
        finally:
            with self.lock:
                self.running.discard(source)


def _state(request: Request) -> _State:
    return request.app.state.ewarn


def _lang(state: _State, lang: str | None) -> str:
    return lang if lang in ("vi", "en") else state.workspace.settings.workspace.language


# --------------------------------------------------------------------------- operator auth


def _operator(request: Request) -> str:
    """Dependency: the bearer token of ``EWARN_OPERATOR_TOKEN`` (constant-time compare)."""
    state = _state(request)
    token = state.environ.get(OPERATOR_TOKEN_ENV) or ""
    if not token:
        raise HTTPException(503, f"operator token not configured (set {OPERATOR_TOKEN_ENV} in the "
                                 "environment of 'ewarn serve' to enable operator actions)")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise HTTPException(401, "operator action: send 'Authorization: Bearer <token>' with the token of "
                                 f"{OPERATOR_TOKEN_ENV}",
                            headers={"WWW-Authenticate": 'Bearer realm="ewarn operator"'})
    return "operator"


# --------------------------------------------------------------------------- request bodies


class AckRequest(BaseModel):
    """Body of ``POST /api/operator/incidents/{id}/ack`` (optional)."""

    model_config = ConfigDict(extra="forbid")
    by: str = Field("operator", min_length=1, max_length=200, description="who takes the incident")


class TestMessageRequest(BaseModel):
    """Body of ``POST /api/operator/test-message``."""

    __test__ = False  # not a pytest class
    model_config = ConfigDict(extra="forbid")
    to: str = Field(..., min_length=3, max_length=32, description="phone number, E.164 (+84...)")
    body: str | None = Field(None, min_length=1, max_length=1600, description="text; default a test text")
    language: Literal["vi", "en"] = "vi"


def _e164(number: str) -> str:
    """``number`` as E.164 (national Vietnamese numbers accepted), or 422 naming the field."""
    try:
        parsed = phonenumbers.parse(number, "VN")
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is None or not phonenumbers.is_valid_number(parsed):
        raise HTTPException(422, f"field 'to': {mask_phone(number)!r} is not a valid phone number; give it "
                                 "in E.164 form, e.g. +84912345678")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _test_text(sender: str, language: str, now: dt.datetime) -> str:
    when = _local(now)
    if language == "en":
        return (f"[{sender}] Test message sent at {when} (Vietnam time) from the flash flood and landslide "
                "warning system. No reply needed.")
    return f"[{sender}] Tin nhắn thử nghiệm lúc {when}. Không cần trả lời."  # one UCS-2 segment


# --------------------------------------------------------------------------- data for the pages


def _runs(store: Store, limit: int) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(runs).order_by(runs.c.id.desc()).limit(int(limit))).mappings().all()
    return [{
        "id": int(r["id"]), "job": r["job"], "source": r["source"], "cycle": _iso(r["cycle"]),
        "started_at": _iso(r["started_at"]), "finished_at": _iso(r["finished_at"]), "status": r["status"],
        "step": r["step"], "message": redact(r["message"] or ""), "counts": r["counts"] or {},
    } for r in rows]


def _last_run_per_source(store: Store, sources: list[str]) -> list[dict[str, Any]]:
    """The latest finished run of each source (configured ones first, then any other seen)."""
    with store.engine.connect() as conn:
        last = (select(func.max(runs.c.id)).where(runs.c.status != "running", runs.c.source.is_not(None))
                .group_by(runs.c.source))
        rows = conn.execute(select(runs.c.source, runs.c.status, runs.c.step, runs.c.finished_at)
                            .where(runs.c.id.in_(last))).all()
    found = {r.source: r for r in rows}
    order = list(dict.fromkeys([*sources, *sorted(found)]))
    return [{"source": s, "status": found[s].status if s in found else "–",
             "step": (found[s].step or "") if s in found else "",
             "when": _local(found[s].finished_at) if s in found else "–"} for s in order]


def _assessment_frame(state: _State, source: str | None) -> pd.DataFrame:
    df = latest_assessment(state.store(), source)
    if df.empty:
        which = f"of source {source!r} " if source else ""
        raise HTTPException(404, f"no assessment {which}yet: it is written by the first forecast cycle "
                                 "(run 'ewarn run' or wait for the next cycle of 'ewarn serve')")
    return df


def _commune_properties(df: pd.DataFrame) -> pd.DataFrame:
    """Per-commune properties of the API: the summary columns plus the level's names and colour."""
    props = df.drop(columns=["source", "cycle", "path"])
    lv = props["level_max"].astype(int).clip(0, max(LEVELS)).to_numpy()
    at = props.columns.get_loc("level_max") + 1
    for i, (column, attr) in enumerate((("level_name_vi", "name_vi"), ("level_name_en", "name_en"),
                                        ("level_colour", "colour_hex"))):
        lookup = np.array([getattr(LEVELS[k], attr) for k in range(max(LEVELS) + 1)], dtype=object)
        props.insert(at + i, column, lookup[lv])
    return props


# --------------------------------------------------------------------------- the app


def create_app(workspace: Workspace, *, environ: Mapping[str, str] = os.environ,
               clock: Callable[[], dt.datetime] = utcnow,
               run_job: Callable[[str, str], Any] | None = None) -> FastAPI:
    """The FastAPI application of ``ewarn serve`` over one workspace.

    Parameters
    ----------
    workspace : Workspace
        The workspace served (settings, database, region, CAP archive).
    environ : mapping
        Where ``EWARN_OPERATOR_TOKEN`` and ``TWILIO_AUTH_TOKEN`` are read, at
        each request (default ``os.environ``).
    clock : callable
        Current time, aware UTC (the age of the cycle, acknowledgements).
    run_job : callable ``(root, source)``, optional
        What "run a cycle now" runs in the background; default
        :func:`ewarn.jobs.forecast_cycle`.

    Returns
    -------
    fastapi.FastAPI
        The app; its state is ``app.state.ewarn`` (nothing global).
    """
    if run_job is None:
        from ewarn.jobs import forecast_cycle

        run_job = forecast_cycle
    templates = jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATES),
                                   autoescape=jinja2.select_autoescape(["html"]),
                                   undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    app = FastAPI(title="ewarn", summary="flash-flood and landslide early warning: status, CAP, webhooks",
                  docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    app.state.ewarn = _State(workspace=workspace, environ=environ, clock=clock, run_job=run_job,
                             templates=templates)

    @app.exception_handler(SQLAlchemyError)
    async def _db_error(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        log.error("%s %s: database error: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": _DB_DOWN}, status_code=503)

    @app.exception_handler(WorkspaceError)
    async def _ws_error(request: Request, exc: WorkspaceError) -> JSONResponse:
        log.error("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": _DB_DOWN}, status_code=503)

    _status_routes(app)
    _api_routes(app)
    _cap_routes(app)
    _webhook_routes(app)
    _operator_routes(app)
    return app


def _status_routes(app: FastAPI) -> None:
    @app.get("/", response_class=HTMLResponse, summary="status page")
    def status_page(request: Request, lang: str | None = None) -> HTMLResponse:
        state = _state(request)
        language = _lang(state, lang)
        html, code = _render_status(state, language)
        return HTMLResponse(html, status_code=code, headers={"Cache-Control": "no-cache"})


def _render_status(state: _State, lang: str) -> tuple[str, int]:
    """The status page's HTML and HTTP status (503 when the database cannot be read)."""
    t = _TEXT[lang]
    now = state.clock()
    ctx: dict[str, Any] = {
        "lang": lang, "other_lang": "en" if lang == "vi" else "vi", "t": t, "db_error": "",
        "incidents": [], "cycle": None, "level_counts": [], "svg": "", "map_error": "", "communes": [],
        "communes_more": "", "healthy": True, "sources": [], "outbox": [], "runs": [],
        "disclaimer": LEVEL_DISCLAIMER[lang], "generated": _local(now)}
    df = pd.DataFrame()

    def word(status: str) -> str:
        return _STATUS_WORDS_VI.get(status, status) if lang == "vi" else status

    try:
        store = state.store()
        df = latest_assessment(store)
        inc = open_incidents(store)
        ctx["incidents"] = [{
            "id": int(r.id), "kind": r.kind, "subject": r.subject, "message": redact(r.message or ""),
            "opened": _local(r.opened_at), "acknowledged": _local(r.acknowledged_at),
            "acknowledged_by": r.acknowledged_by or ""} for r in inc.itertuples(index=False)]
        sources = _last_run_per_source(store, list(state.workspace.settings.service.sources))
        ctx["healthy"] = inc.empty and all(s["status"] != "failed" for s in sources)
        ctx["sources"] = [{**s, "status": word(s["status"]), "failed": s["status"] == "failed"}
                          for s in sources]
        ctx["outbox"] = [(word(k), n) for k, n in outbox_counts(store).items()]
        ctx["runs"] = [{**r, "started": _local(r["started_at"]), "source": r["source"] or "",
                        "step": r["step"] or "", "status": word(r["status"]),
                        "failed": r["status"] == "failed"} for r in _runs(store, 10)]
    except (WorkspaceError, ConfigError, SQLAlchemyError) as exc:
        log.error("status page: %s", exc)
        ctx["db_error"] = _DB_DOWN
        ctx["healthy"] = False

    levels: dict[str, int] = {}
    if not df.empty:
        cycle = _aware(df["cycle"].iloc[0])
        age_h = (now - cycle).total_seconds() / 3600
        ctx["cycle"] = {"source": str(df["source"].iloc[0]), "local": _local(cycle),
                        "age": f"{age_h:.1f} {t['hours']}" if age_h < 48 else f"{age_h / 24:.0f} {t['days']}",
                        "stale": age_h > state.workspace.settings.service.stale_hours}
        lv = df["level_max"].astype(int).clip(0, max(LEVELS))
        n_by_level = lv.value_counts()
        ctx["level_counts"] = [{"name": LEVELS[k].name_vi if lang == "vi" else LEVELS[k].name_en,
                                "colour": LEVELS[k].colour_hex, "n": int(n_by_level.get(k, 0))}
                               for k in sorted(LEVELS)]
        levels = dict(zip(df["code"].astype(str), lv.tolist(), strict=True))
        risky = df[lv >= 1].head(100)
        ctx["communes"] = [{
            "code": r.code, "name": r.name, "level_name": (LEVELS[int(r.level_max)].name_vi if lang == "vi"
                                                           else LEVELS[int(r.level_max)].name_en),
            "colour": LEVELS[int(r.level_max)].colour_hex, "onset": _local(r.onset_time),
            "peak": _local(r.peak_time), "rain": "–" if pd.isna(r.rain_24h_max) else f"{r.rain_24h_max:.0f}",
        } for r in risky.itertuples(index=False)]
        extra = int((lv >= 1).sum()) - len(risky)
        if extra > 0:
            ctx["communes_more"] = t["more"].format(n=extra)

    communes, region_error = state.communes()
    if communes is not None and len(communes):
        key = ("" if df.empty else (str(df["source"].iloc[0]), str(df["cycle"].iloc[0])), lang,
               state.region_key())
        svg = state.svg(key, lambda: render_map(communes, levels, language=lang, title=t["map"]))
        ctx["svg"] = Markup(svg)  # render_map escapes every text it writes
    else:
        ctx["map_error"] = t["no_region"].format(error=region_error or "no communes")
    html = state.templates.get_template("status.html").render(**ctx)
    return html, 503 if ctx["db_error"] else 200


def _api_routes(app: FastAPI) -> None:
    @app.get("/api/assessments/latest", summary="latest assessment (JSON or GeoJSON)", response_model=None)
    def latest(request: Request, format: Literal["json", "geojson"] = "json",
               source: str | None = Query(None, max_length=64)) -> Response | dict[str, Any]:
        if format == "geojson":
            return _geojson(_state(request), source)
        df = _assessment_frame(_state(request), source)
        props = _commune_properties(df)
        counts = props["level_max"].value_counts()
        return {
            "source": str(df["source"].iloc[0]), "cycle": _iso(df["cycle"].iloc[0]),
            "levels": {str(k): int(counts.get(k, 0)) for k in sorted(LEVELS)},
            "disclaimer": dict(LEVEL_DISCLAIMER), "communes": _records(props)}

    @app.get("/api/assessments/latest.geojson", summary="latest assessment as GeoJSON (RFC 7946)")
    def latest_geojson(request: Request, source: str | None = Query(None, max_length=64)) -> Response:
        return _geojson(_state(request), source)

    @app.get("/api/runs", summary="latest runs, newest first")
    def list_runs(request: Request, limit: int = Query(20, ge=1, le=500)) -> dict[str, Any]:
        return {"runs": _runs(_state(request).store(), limit)}

    @app.get("/healthz", summary="liveness and database check", response_model=None)
    def healthz(request: Request) -> JSONResponse | dict[str, Any]:
        state = _state(request)
        try:
            store = state.store()
            with store.engine.connect() as conn:
                latest_cycle = conn.execute(select(func.max(assessments_table.c.cycle))).scalar()
                n = conn.execute(select(func.count()).select_from(incidents)
                                 .where(incidents.c.closed_at.is_(None))).scalar()
        except (WorkspaceError, SQLAlchemyError) as exc:
            log.error("healthz: %s", exc)
            return JSONResponse({"status": "error", "db": False, "detail": _DB_DOWN}, status_code=503)
        return {"status": "ok", "db": True, "latest_cycle": _iso(latest_cycle), "incidents": int(n or 0)}


def _geojson(state: _State, source: str | None) -> Response:
    """RFC 7946 FeatureCollection of the assessed communes (polygons wound counter-clockwise)."""
    import geopandas as gpd

    df = _assessment_frame(state, source)
    communes, error = state.communes()
    if communes is None:
        raise HTTPException(503, f"the region's communes cannot be read ({error}); fix the region folder "
                                 f"{state.workspace.region_dir}")
    props = _commune_properties(df)
    geo = communes[["code", "geometry"]].assign(code=communes["code"].astype(str))
    merged = geo.merge(pd.DataFrame(_records(props)).astype({"code": str}), on="code", how="inner")
    # RFC 7946 §3.1.6: exterior rings counter-clockwise, holes clockwise.
    geoms = shapely.orient_polygons(merged.geometry.to_numpy(), exterior_cw=False)
    out = gpd.GeoDataFrame(merged.drop(columns="geometry"), geometry=geoms, crs="EPSG:4326")
    out.index = out["code"].to_numpy()
    body = out.to_json(na="null", drop_id=False, to_wgs84=True)
    return Response(body, media_type=GEOJSON_MEDIA_TYPE)


def _cap_routes(app: FastAPI) -> None:
    @app.get("/cap/feed.atom", summary="Atom feed of the active CAP alerts")
    def cap_feed(request: Request) -> FileResponse:
        path = _state(request).workspace.path("cap", FEED)
        if not path.is_file():
            raise HTTPException(404, "no CAP feed yet: it is written by the first forecast cycle with alerts")
        return FileResponse(path, media_type=ATOM_MEDIA_TYPE, headers={"Cache-Control": "no-cache"})

    @app.get("/cap/{identifier}.xml", summary="one CAP 1.2 alert")
    def cap_alert(request: Request, identifier: str) -> FileResponse:
        if not CAP_IDENTIFIER.fullmatch(identifier):
            raise HTTPException(400, "a CAP identifier has only letters, digits, '.', '_' and '-' and "
                                     "starts with a letter or digit")
        folder = _state(request).workspace.path("cap").resolve()
        path = (folder / f"{identifier}.xml").resolve()
        if path.parent != folder or not path.is_file():
            raise HTTPException(404, f"no CAP alert {identifier!r} in this workspace; the active alerts are "
                                     "listed in /cap/feed.atom")
        return FileResponse(path, media_type=CAP_MEDIA_TYPE)


def _webhook_routes(app: FastAPI) -> None:
    @app.post(STATUS_CALLBACK_PATH, status_code=204, summary="Twilio message status callback")
    async def twilio_status(request: Request) -> Response:
        state = _state(request)
        token = state.environ.get(AUTH_TOKEN_ENV) or ""
        if not token:
            log.error("Twilio status callback refused: %s is not set", AUTH_TOKEN_ENV)
            raise HTTPException(503, f"the Twilio status webhook needs {AUTH_TOKEN_ENV} in the environment "
                                     "of 'ewarn serve' to check signatures; nothing was changed")
        raw = await request.body()
        params = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        url = _signed_url(state, request)
        signature = request.headers.get("x-twilio-signature", "")
        if not validate_twilio_signature(url, params, signature, token):
            log.warning("Twilio status callback with a %s signature refused (checked against %s)",
                        "bad" if signature else "missing", url)
            raise HTTPException(403, "X-Twilio-Signature is missing or does not match; nothing was changed "
                                     "(check [alerts] public_url: it must be the URL Twilio calls)")
        try:
            sid, status, error_code = parse_status_callback(params)
        except GatewayError as exc:
            raise HTTPException(400, str(exc)) from None
        final = _TWILIO_DELIVERY.get(status)
        if final is not None:
            await run_in_threadpool(lambda: mark_delivery(state.store(), sid, final, error_code,
                                                          now=state.clock()))
        return Response(status_code=204)


def _signed_url(state: _State, request: Request) -> str:
    """The URL Twilio signed: the configured callback URL, else ``public_url`` + path, else the request's."""
    settings = state.workspace.settings.alerts
    explicit = str(settings.gateways.get("twilio", {}).get("status_callback") or "")
    query = f"?{request.url.query}" if request.url.query else ""
    if explicit:
        return explicit
    if settings.public_url:
        return settings.public_url.rstrip("/") + STATUS_CALLBACK_PATH + query
    return str(request.url)


def _operator_routes(app: FastAPI) -> None:
    @app.post("/api/operator/run-cycle/{source}", status_code=202, summary="run a forecast cycle now")
    def run_cycle_now(request: Request, source: str, background: BackgroundTasks,
                      _: str = Depends(_operator)) -> dict[str, Any]:
        state = _state(request)
        sources = list(state.workspace.settings.service.sources)
        if source not in sources:
            raise HTTPException(404, f"source {source!r} is not run by this service; the sources are "
                                     f"{', '.join(sources) or 'none'} ([service] sources in ewarn.toml)")
        if not state.claim(source):
            raise HTTPException(409, f"a run of source {source!r} started from here is still going; "
                                     "wait for it to finish (see /api/runs)")
        background.add_task(state.run_source, source)
        log.info("operator asked for a cycle of source %s", source)
        return {"status": "accepted", "source": source, "runs": "/api/runs"}

    @app.post("/api/operator/incidents/{incident_id}/ack", summary="acknowledge an incident")
    def ack_incident(request: Request, incident_id: int, body: AckRequest | None = Body(None),
                     _: str = Depends(_operator)) -> dict[str, Any]:
        state = _state(request)
        by = body.by if body is not None else "operator"
        now = state.clock()
        if not acknowledge(state.store(), incident_id, by, now=now):
            raise HTTPException(404, f"no open incident {incident_id}; the open ones are on the status page")
        log.info("incident %d acknowledged by %s", incident_id, by)
        return {"id": incident_id, "acknowledged_by": by, "acknowledged_at": _iso(now)}

    @app.post("/api/operator/test-message", status_code=202, summary="queue one test SMS")
    def test_message(request: Request, body: TestMessageRequest,
                     _: str = Depends(_operator)) -> dict[str, Any]:
        state = _state(request)
        to = _e164(body.to)
        now = state.clock()
        text = body.body or _test_text(state.workspace.settings.alerts.sender, body.language, now)
        key = f"test-{uuid.uuid4().hex}"
        store = state.store()
        enqueue(store, [{"key": key, "kind": "test", "recipient": to, "role": "test",
                         "language": body.language, "body": text, "encoding": sms_encoding(text),
                         "segments": segments(text), "next_attempt_at": now}], now=now)
        with store.engine.connect() as conn:
            mid = conn.execute(select(outbox.c.id).where(outbox.c.key == key)).scalar_one()
        log.info("operator queued test message %d to %s", mid, mask_phone(to))
        return {"id": int(mid), "key": key, "status": "queued", "recipient": mask_phone(to),
                "segments": segments(text)}
