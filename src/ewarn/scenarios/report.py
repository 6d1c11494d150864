"""The scenario report: one self-contained HTML file that opens offline (issue #8).

:func:`render_report` turns a :class:`~ewarn.scenarios.runner.ScenarioResult`
into one HTML document for planners:

* a header with the scenario's name and question, the forecast reference time
  in Asia/Ho_Chi_Minh and :data:`~ewarn.hazard_models.levels.LEVEL_DISCLAIMER`;
* the key figures (communes and population per level, households and people
  to move, assigned, unassigned, late, travel times, shelters over capacity,
  closed roads);
* the map — :func:`ewarn.maps.render_map`, inline SVG: communes coloured by
  ``level_max``, threatened streams (:func:`threatened_stream_lines`), roads,
  closed roads, evacuation routes and shelters sized and coloured by
  load / capacity;
* charts drawn with matplotlib (``Figure`` objects, no pyplot state) as
  inline SVG with real ``<text>`` (``svg.fonttype = none``): the hyetograph
  of the worst communes (:func:`worst_communes`), the clearance curve
  (:func:`clearance_curve`) and shelter utilisation;
* the table of communes, the reasons households have no shelter, the
  permanent relocation (when run), the message previews (never sent) and
  the run's notes; ``summary.json`` as it was written.

**Languages.** Vietnamese by default, English beside it in the same file: each
text is written in both languages (``<span class="vi">`` / ``<span
class="en">``) and a pure-CSS switch (two radio inputs before the page and
``:checked ~`` sibling selectors) shows one of them — no script. The
``language`` argument picks the language shown when the file opens (and the
language of the map's own tooltips and legend: the map is drawn once, so a
test or a stylesheet finds exactly one ``svg.ewarn-map``). Charts are drawn
once per language.

**Offline.** No ``<script>``, no ``src``/``href`` to another host: the only
URLs in the file are SVG ``xmlns`` namespace names. matplotlib's SVG
metadata (which names its web site), DOCTYPE and unreferenced element ids
are removed, and each chart's ids are salted (``svg.hashsalt``) by chart and
language, so the charts' clip paths do not collide inside one document and
the same result always gives the same file (no wall-clock time is written).

:func:`render_comparison` is the HTML table of ``ewarn scenario compare``.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import math
import os
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import numpy as np
import pandas as pd
import shapely
from markupsafe import Markup

from ewarn.config import LOCAL_TZ
from ewarn.errors import WorkspaceError
from ewarn.hazard_models.levels import LEVEL_DISCLAIMER, LEVELS
from ewarn.maps import MapLayers, render_map

if TYPE_CHECKING:
    import geopandas as gpd
    import xarray as xr

    from ewarn.scenarios.runner import ScenarioResult

__all__ = [
    "LANGUAGES",
    "clearance_curve",
    "render_comparison",
    "render_report",
    "report_layers",
    "threatened_stream_lines",
    "worst_communes",
    "write_report",
]

#: Languages of the report (the first is the default).
LANGUAGES = ("vi", "en")
#: Communes in the hyetograph (the worst by level, then 24 h rain).
HYETOGRAPH_COMMUNES = 5
#: Most shelters in the utilisation chart (the fullest first); the table says how many were left out.
MAX_SHELTER_BARS = 40
#: Most message previews listed (distinct texts; the most severe first).
MAX_PREVIEWS = 200
#: Points of the clearance chart (the curve is sampled on a regular time grid).
CLEARANCE_POINTS = 300
#: Width of the map drawing [px].
MAP_WIDTH = 900

_TEMPLATES = Path(__file__).parent / "templates"
_DASH = "—"

#: Every text of the report, Vietnamese first.
TEXTS: Mapping[str, Mapping[str, str]] = {
    "title": {"vi": "Báo cáo kịch bản", "en": "Scenario report"},
    "switch": {"vi": "Ngôn ngữ", "en": "Language"},
    "question": {"vi": "Câu hỏi của kịch bản", "en": "What the scenario asks"},
    "file": {"vi": "Tệp kịch bản", "en": "Scenario file"},
    "reference_time": {"vi": "Thời điểm bắt đầu dự báo", "en": "Forecast reference time"},
    "local": {"vi": "giờ Việt Nam, UTC+7", "en": "Vietnam time, UTC+7"},
    "rain_source": {"vi": "Nguồn mưa", "en": "Rain source"},
    "plan_start": {"vi": "Bắt đầu kế hoạch sơ tán", "en": "Evacuation plan starts"},
    "changes": {"vi": "Thay đổi trong kịch bản", "en": "What the scenario changes"},
    "key_figures": {"vi": "Số liệu chính", "en": "Key figures"},
    "by_level": {"vi": "Xã và dân số theo cấp độ rủi ro (cao nhất trong dự báo)",
                 "en": "Communes and population by risk level (highest in the forecast)"},
    "level": {"vi": "Cấp độ", "en": "Level"},
    "communes": {"vi": "Số xã", "en": "Communes"},
    "population": {"vi": "Dân số", "en": "Population"},
    "households_to_move": {"vi": "Hộ phải sơ tán", "en": "Households to move"},
    "people_to_move": {"vi": "Người phải sơ tán", "en": "People to move"},
    "assigned": {"vi": "Hộ đã có nơi tạm trú", "en": "Households with a shelter"},
    "unassigned": {"vi": "Hộ chưa có nơi tạm trú", "en": "Households without a shelter"},
    "late": {"vi": "Hộ đến sau thời hạn an toàn", "en": "Households arriving after the deadline"},
    "travel": {"vi": "Thời gian đi (phút): trung bình / 95 % / lớn nhất",
               "en": "Travel time (min): mean / 95th percentile / max"},
    "over_capacity": {"vi": "Nơi tạm trú quá tải", "en": "Shelters over capacity"},
    "closed_roads": {"vi": "Đoạn đường bị đóng / đi chậm", "en": "Road segments closed / slowed"},
    "assisted": {"vi": "Người cần hỗ trợ di chuyển", "en": "People needing help to move"},
    "evacuation_level": {"vi": "Sơ tán từ cấp", "en": "Evacuate from level"},
    "mode": {"vi": "Phương tiện", "en": "Travel mode"},
    "map": {"vi": "Bản đồ", "en": "Map"},
    "map_caption": {
        "vi": ("Màu xã: cấp độ rủi ro cao nhất trong dự báo. Xanh dương: suối bị đe dọa lũ quét; xám: "
               "đường; đỏ nét đứt: đường bị đóng; xanh lá: tuyến sơ tán; vòng tròn: nơi tạm trú (càng "
               "lớn càng đầy; cam: trên 90 %, đỏ: quá tải). Đưa chuột lên để xem chi tiết."),
        "en": ("Commune colour: highest risk level in the forecast. Blue: streams threatened by flash "
               "floods; grey: roads; red dashed: closed roads; green: evacuation routes; circles: "
               "shelters (larger = fuller; orange: over 90 %, red: over capacity). Hover for details. "
               "The map's own labels are in the report's first language."),
    },
    "hyetograph": {"vi": "Mưa theo giờ ở các xã nguy hiểm nhất", "en": "Hourly rain in the worst communes"},
    "rain_axis": {"vi": "Mưa 1 giờ (mm)", "en": "1-hour rain (mm)"},
    "time_axis": {"vi": "Giờ Việt Nam (UTC+7)", "en": "Vietnam time (UTC+7)"},
    "clearance": {"vi": "Đường cong sơ tán", "en": "Clearance curve"},
    "clearance_help": {
        "vi": "Tỷ lệ số người phải sơ tán đã đến nơi tạm trú theo thời gian.",
        "en": "Share of the people who must move that have reached a shelter, over time."},
    "safe_axis": {"vi": "Đã đến nơi an toàn (%)", "en": "Safe (%)"},
    "assigned_share": {"vi": "có nơi tạm trú", "en": "with a shelter"},
    "first_deadline": {"vi": "thời hạn sớm nhất", "en": "earliest deadline"},
    "shelters": {"vi": "Mức sử dụng nơi tạm trú", "en": "Shelter utilisation"},
    "load_axis": {"vi": "Số người / sức chứa (%)", "en": "Load / capacity (%)"},
    "not_used": {"vi": "không dùng", "en": "not used"},
    "shelters_left_out": {"vi": "nơi tạm trú ít người hơn không được vẽ",
                          "en": "emptier shelters are not drawn"},
    "communes_table": {"vi": "Các xã", "en": "Communes"},
    "commune": {"vi": "Xã", "en": "Commune"},
    "code": {"vi": "Mã", "en": "Code"},
    "onset": {"vi": "Bắt đầu nguy hiểm", "en": "Hazard onset"},
    "rain24": {"vi": "Mưa 24 giờ lớn nhất (mm)", "en": "Max 24-hour rain (mm)"},
    "hh_move": {"vi": "Hộ phải đi", "en": "Households to move"},
    "ppl_move": {"vi": "Người phải đi", "en": "People to move"},
    "hh_assigned": {"vi": "Hộ có chỗ", "en": "Assigned"},
    "hh_unassigned": {"vi": "Hộ chưa có chỗ", "en": "Unassigned"},
    "clearance_time": {"vi": "Hoàn tất sơ tán", "en": "Clearance time"},
    "reasons": {"vi": "Vì sao còn hộ chưa có nơi tạm trú", "en": "Why households have no shelter"},
    "reason": {"vi": "Lý do", "en": "Reason"},
    "households": {"vi": "Số hộ", "en": "Households"},
    "people": {"vi": "Số người", "en": "People"},
    "all_assigned": {"vi": "Mọi hộ phải sơ tán đều có nơi tạm trú.",
                     "en": "Every household that must move has a shelter."},
    "relocation": {"vi": "Di dời lâu dài (vùng nguy cơ sạt lở rất cao)",
                   "en": "Permanent relocation (very high landslide susceptibility)"},
    "site": {"vi": "Khu tái định cư", "en": "Resettlement site"},
    "capacity": {"vi": "Sức chứa", "en": "Capacity"},
    "load": {"vi": "Số người", "en": "Load"},
    "previews": {"vi": "Xem trước tin nhắn (không gửi)", "en": "Message previews (not sent)"},
    "previews_help": {
        "vi": "Tin nhắn mà hệ thống sẽ gửi cho cán bộ xã; mỗi nội dung một dòng, kèm số người nhận.",
        "en": "The SMS ewarn would send to commune officials; one row per text, with its recipients."},
    "kind": {"vi": "Loại", "en": "Kind"},
    "hazard": {"vi": "Hiểm họa", "en": "Hazard"},
    "recipients": {"vi": "Người nhận", "en": "Recipients"},
    "language": {"vi": "Ngôn ngữ", "en": "Language"},
    "segments": {"vi": "Số đoạn SMS", "en": "Segments"},
    "encoding": {"vi": "Mã hóa", "en": "Encoding"},
    "text": {"vi": "Nội dung", "en": "Text"},
    "unaccented": {"vi": "không dấu", "en": "unaccented"},
    "no_previews": {"vi": "Không có tin nhắn nào được tạo.", "en": "No message would be sent."},
    "previews_left_out": {"vi": "nội dung khác không được liệt kê", "en": "more texts are not listed"},
    "notes": {"vi": "Ghi chú của lần chạy", "en": "Notes of the run"},
    "no_plan": {"vi": "Lần chạy này không có kế hoạch sơ tán.", "en": "This run has no evacuation plan."},
    "nobody_moves": {"vi": "Không hộ nào phải sơ tán.", "en": "No household must move."},
    "no_shelters": {"vi": "Vùng không có nơi tạm trú.", "en": "The region has no shelter."},
    "summary_json": {"vi": "Tệp summary.json", "en": "The summary.json file"},
    "comparison": {"vi": "So sánh kịch bản", "en": "Scenario comparison"},
    "comparison_help": {
        "vi": "Chênh lệch so với kịch bản đầu tiên; ô tô màu là chỉ số thay đổi.",
        "en": "Differences from the first scenario; shaded cells changed."},
    "metric": {"vi": "Chỉ số", "en": "Metric"},
}

#: Kinds of message (``ewarn.alerts.notice``) for people.
KIND_NAMES = {
    "warning": {"vi": "Cảnh báo", "en": "Warning"},
    "update": {"vi": "Cập nhật", "en": "Update"},
    "reminder": {"vi": "Nhắc lại", "en": "Reminder"},
    "all_clear": {"vi": "Hết cảnh báo", "en": "All clear"},
    "summary": {"vi": "Tổng hợp tỉnh", "en": "Province summary"},
}
#: Hazards of the alert policy (``ewarn.alerts.notice.HAZARDS``) for people.
HAZARD_NAMES = {
    "flash_landslide": {"vi": "lũ quét, sạt lở đất", "en": "flash flood, landslide"},
    "heavy_rain": {"vi": "mưa lớn", "en": "heavy rain"},
    "": {"vi": _DASH, "en": _DASH},
}
#: Why a household has no shelter (codes of ``ewarn.routing.plan``), English beside the Vietnamese.
REASONS_EN = {
    "no_road_nearby": "no road within reach of the house",
    "road_closed": "the roads near the house are closed by the hazard or by order",
    "no_road_within_limit": "no road to a shelter within the time limit",
    "no_capacity": "the shelters within reach are full",
    "no_site": "no resettlement site",
    "arrives_after_deadline": "reaches the shelter after the safety deadline; needs help or an earlier start",
}
#: Why a shelter is not used (``EvacuationPlan.shelters.excluded_reason``).
SHELTER_EXCLUDED = {
    "stream_bank": {"vi": "ven suối bị đe dọa", "en": "on a threatened stream bank"},
    "landslide": {"vi": "vùng sạt lở", "en": "in a landslide zone"},
    "no_road_nearby": {"vi": "không có đường gần", "en": "no road nearby"},
}


# --------------------------------------------------------------------------- formatting


def _both(vi: str, en: str) -> Markup:
    """One text in both languages; the page's CSS shows one."""
    if vi == en:
        return Markup(html.escape(vi))
    return Markup(f'<span class="vi" lang="vi">{html.escape(vi)}</span>'
                  f'<span class="en" lang="en">{html.escape(en)}</span>')


def _t(key: str) -> Markup:
    return _both(TEXTS[key]["vi"], TEXTS[key]["en"])


def _num(value: Any, digits: int = 0) -> Markup:
    """A number in Vietnamese (1.234,5) and English (1,234.5) notation; ``—`` when missing."""
    if value is None or (isinstance(value, float | np.floating) and not math.isfinite(value)) \
            or value is pd.NA:
        return Markup(_DASH)
    en = f"{float(value):,.{digits}f}"
    vi = en.replace(",", "\0").replace(".", ",").replace("\0", ".")
    return _both(vi, en)


def _local(value: Any) -> str:
    """A UTC time (naive = UTC) as ``HH:MM dd/mm/yyyy`` in Asia/Ho_Chi_Minh; ``—`` when missing."""
    if value is None or value is pd.NaT or (not isinstance(value, str) and pd.isna(value)):
        return _DASH
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts
    return ts.tz_convert(LOCAL_TZ).strftime("%H:%M %d/%m/%Y")


def _local_naive(values: Any) -> pd.DatetimeIndex:
    """UTC times (naive = UTC) as naive Asia/Ho_Chi_Minh wall-clock times (for chart axes)."""
    t = pd.DatetimeIndex(pd.to_datetime(values))
    t = t.tz_localize("UTC") if t.tz is None else t
    return t.tz_convert(LOCAL_TZ).tz_localize(None)


def _level_chip(level: int) -> Markup:
    info = LEVELS.get(int(level), LEVELS[0])
    dark = int(level) >= 4
    style = f"background:{info.colour_hex};color:{'#fff' if dark else '#000'}"
    return Markup(f'<span class="chip" style="{style}">{_both(info.name_vi, info.name_en)}</span>')


def _named(table: Mapping[str, Mapping[str, str]], code: Any) -> Markup:
    item = table.get(str(code))
    return _both(item["vi"], item["en"]) if item else Markup(html.escape(str(code)))


# --------------------------------------------------------------------------- data for the report


def _commune_var(assessment: xr.Dataset, name: str) -> pd.Series:
    """A per-commune variable of the assessment, indexed by commune code (extra dims: max)."""
    da = assessment[name]
    extra = [d for d in da.dims if d != "commune"]
    if extra:
        da = da.max(extra)
    return pd.Series(da.to_numpy(), index=assessment["commune"].to_numpy().astype(str))


def worst_communes(assessment: xr.Dataset, n: int = HYETOGRAPH_COMMUNES) -> list[str]:
    """Codes of the ``n`` worst communes: highest ``level_max``, then highest 24 h rain.

    Parameters
    ----------
    assessment : xarray.Dataset
        Risk assessment (``ewarn.hazard_models.assess``): ``level_max`` and
        ``rain_24h_max`` [mm] over ``commune``.
    n : int
        How many.

    Returns
    -------
    list of str
        Commune codes, worst first (ties: commune code).
    """
    level = _commune_var(assessment, "level_max").astype(np.int64)
    rain = (_commune_var(assessment, "rain_24h_max").astype(np.float64) if "rain_24h_max" in assessment
            else pd.Series(0.0, index=level.index))
    frame = pd.DataFrame({"level": level, "rain": rain.fillna(-1.0), "code": level.index})
    frame = frame.sort_values(["level", "rain", "code"], ascending=[False, False, True])
    return frame["code"].head(n).tolist()


def clearance_curve(households: pd.DataFrame, start: Any) -> pd.DataFrame:
    """Share of the people who must move that are safe (have arrived at a shelter) over time.

    Parameters
    ----------
    households : pandas.DataFrame
        ``EvacuationPlan.households``: ``must_move`` (bool), ``people``,
        ``arrival`` (UTC; NaT without a shelter).
    start : time
        Plan start (UTC): the curve begins there at 0.

    Returns
    -------
    pandas.DataFrame
        ``time`` (tz-aware UTC), ``people_safe`` (cumulative people arrived)
        and ``share`` (people safe / people who must move, 0..1): one row at
        ``start`` and one per distinct arrival time, ascending. People without
        a shelter never arrive, so the curve ends below 1 when some are
        unassigned. Empty when nobody must move.
    """
    mv = households[households["must_move"].to_numpy(dtype=bool)]
    total = float(mv["people"].sum())
    t0 = pd.Timestamp(start)
    t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")
    if total <= 0:
        return pd.DataFrame({"time": pd.DatetimeIndex([], tz="UTC"), "people_safe": np.zeros(0, np.int64),
                             "share": np.zeros(0)})
    arrived = mv[mv["arrival"].notna()]
    people = arrived.groupby(arrived["arrival"].dt.tz_convert("UTC"))["people"].sum().sort_index()
    times = pd.DatetimeIndex([t0]).append(pd.DatetimeIndex(people.index))
    safe = np.concatenate([[0], np.cumsum(people.to_numpy(np.int64))])
    return pd.DataFrame({"time": times, "people_safe": safe, "share": safe / total})


def threatened_stream_lines(cells: xr.Dataset | None) -> shapely.Geometry | None:
    """Threatened stream cells of a hazard grid as lines, for the map.

    Each ``stream_threatened`` cell is joined to its threatened neighbours
    (8-connectivity: east, north, north-east and north-west links, so every
    pair is drawn once) by a segment between the cell centres; a threatened
    cell with no threatened neighbour becomes a short east-west tick of one
    cell width. The segments are merged into lines (``shapely.line_merge``).

    Parameters
    ----------
    cells : xarray.Dataset or None
        Hazard grid (``ewarn.hazard_models.cells.hazard_cells``):
        ``stream_threatened`` (bool) on ascending ``(latitude, longitude)``.

    Returns
    -------
    shapely geometry or None
        (Multi)LineString in lon/lat; None without a grid or a threatened cell.
    """
    if cells is None or "stream_threatened" not in cells:
        return None
    thr = cells["stream_threatened"].transpose("latitude", "longitude").to_numpy().astype(bool)
    if not thr.any():
        return None
    lat = cells["latitude"].to_numpy().astype(np.float64)
    lon = cells["longitude"].to_numpy().astype(np.float64)
    dx = float(np.abs(np.diff(lon)).min()) if lon.size > 1 else 1e-3
    pad = np.pad(thr, 1)
    rows, cols = np.nonzero(thr)
    segs = []
    linked = np.zeros(rows.size, dtype=bool)
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        other = pad[rows + 1 + dr, cols + 1 + dc]
        back = pad[rows + 1 - dr, cols + 1 - dc]
        linked |= other | back
        a, b = rows[other], cols[other]
        segs.append(np.stack([lon[b], lat[a], lon[b + dc], lat[a + dr]], axis=1))
    lone = ~linked
    segs.append(np.stack([lon[cols[lone]] - dx / 2, lat[rows[lone]], lon[cols[lone]] + dx / 2,
                          lat[rows[lone]]], axis=1))
    seg = np.concatenate(segs)
    lines = shapely.linestrings(seg.reshape(-1, 2), indices=np.repeat(np.arange(len(seg)), 2))
    return shapely.line_merge(shapely.multilinestrings(lines))


def _road_edges(region: Any) -> gpd.GeoDataFrame | None:
    """The region's road edges (osmnx edge GeoDataFrame, index u, v, key); None without roads."""
    graph = region.roads
    if graph is None or graph.number_of_edges() == 0:
        return None
    import osmnx as ox

    return ox.graph_to_gdfs(graph, nodes=False, fill_edge_geometry=True)


def _simplify(geoms: Sequence[Any], tolerance: float) -> list[Any]:
    arr = np.asarray([g for g in geoms if g is not None], dtype=object)
    if arr.size == 0:
        return []
    return list(shapely.simplify(arr, tolerance, preserve_topology=False))


def _shelter_tip(name: str, sid: str, load: int, cap: int, excluded: str, language: str) -> str:
    people = "người" if language == "vi" else "people"
    pct = f" ({100.0 * load / cap:.0f} %)" if cap > 0 else ""
    tip = f"{name} ({sid}): {load}/{cap} {people}{pct}"
    if excluded:
        why = SHELTER_EXCLUDED.get(excluded, {"vi": excluded, "en": excluded})[language]
        tip += f" — {TEXTS['not_used'][language]}: {why}"
    return tip


def report_layers(result: ScenarioResult, *, language: str = "vi", width: int = MAP_WIDTH) -> MapLayers:
    """The map layers of a scenario result (:class:`ewarn.maps.MapLayers`).

    Streams: :func:`threatened_stream_lines` of ``result.cells``. Roads: the
    region's road graph, each two-way road once. Closed roads: the edges of
    ``plan.closures`` whose action is ``closed`` (matched on their OSM end
    nodes). Routes: ``plan.routes``. Shelters: the plan's shelters with
    load / capacity (the region's shelters, empty, without a plan). Lines are
    simplified to half a pixel of the map ``width`` (Douglas-Peucker,
    ``shapely.simplify``) to keep the SVG small.
    """
    communes = result.region.communes
    x0, y0, x1, y1 = shapely.total_bounds(np.asarray(communes.geometry.values, dtype=object))
    k = math.cos(math.radians((y0 + y1) / 2))
    tol = 0.5 * max((x1 - x0) * k, 1e-9) / width
    plan = result.plan
    streams = threatened_stream_lines(result.cells)
    edges = _road_edges(result.region)
    roads: list[Any] = []
    closed: list[Any] = []
    if edges is not None:
        u = edges.index.get_level_values("u").to_numpy()
        v = edges.index.get_level_values("v").to_numpy()
        once = ~pd.DataFrame({"a": np.minimum(u, v), "b": np.maximum(u, v),
                              "k": edges.index.get_level_values("key")}).duplicated().to_numpy()
        roads = _simplify(edges.geometry.to_numpy()[once], tol)
        if plan is not None and len(plan.closures) and "u_osmid" in plan.closures:
            c = plan.closures[plan.closures["action"].astype(str) == "closed"]
            want = pd.MultiIndex.from_arrays([c["u_osmid"].to_numpy(np.int64),
                                              c["v_osmid"].to_numpy(np.int64)])
            hit = pd.MultiIndex.from_arrays([u.astype(np.int64), v.astype(np.int64)]).isin(want)
            closed = _simplify(edges.geometry.to_numpy()[hit], tol)
    routes = _simplify(plan.routes.geometry.to_numpy(), tol) if plan is not None and len(plan.routes) else []
    if plan is not None:
        sh = plan.shelters
        load = sh["load"].to_numpy(np.int64)
        excluded = sh["excluded_reason"].fillna("").astype(str).to_numpy()
    else:
        sh = result.region.shelters
        load = np.zeros(len(sh), dtype=np.int64)
        excluded = np.full(len(sh), "", dtype=object)
    cap = sh["capacity"].to_numpy(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        fill = np.where(cap > 0, load / np.maximum(cap, 1), np.where(load > 0, np.inf, 0.0))
    tips = [_shelter_tip(str(n), str(i), int(lo), int(ca), str(ex), language)
            for n, i, lo, ca, ex in zip(sh["name"], sh["shelter_id"], load, cap, excluded, strict=True)]
    return MapLayers(streams=[streams] if streams is not None else [],
                     roads=roads, closed_roads=closed, routes=routes,
                     shelters=np.column_stack([sh["lon"].to_numpy(float), sh["lat"].to_numpy(float)]),
                     shelter_fill=fill, shelter_labels=tips)


def _levels(assessment: xr.Dataset) -> dict[str, int]:
    return {k: int(v) for k, v in _commune_var(assessment, "level_max").items()}


def _communes_table(result: ScenarioResult) -> list[dict[str, Any]]:
    """One row per commune, worst first: level, onset, 24 h rain, households and people to move."""
    a = result.assessment
    codes = a["commune"].to_numpy().astype(str)
    names = (a["commune_name"].to_numpy().astype(str) if "commune_name" in a.coords or "commune_name" in a
             else codes)
    onset = pd.to_datetime(_commune_var(a, "onset_time").to_numpy()) if "onset_time" in a else pd.NaT
    rain24 = _commune_var(a, "rain_24h_max").to_numpy(np.float64) if "rain_24h_max" in a else np.nan
    frame = pd.DataFrame({"code": codes, "name": names,
                          "level": _commune_var(a, "level_max").astype(np.int64).to_numpy(),
                          "onset": onset, "rain24": rain24})
    plan = result.plan
    cols = ["households_to_move", "people_to_move", "assigned", "unassigned", "clearance_time"]
    if plan is not None:
        pc = plan.communes.assign(code=plan.communes["commune_code"].astype(str))[["code", *cols]]
        frame = frame.merge(pc, on="code", how="left")
    else:
        for c in cols:
            frame[c] = None
    frame = frame.sort_values(["level", "onset", "code"], ascending=[False, True, True], na_position="last")
    rows = []
    for r in frame.itertuples(index=False):
        has_plan = plan is not None and pd.notna(r.households_to_move)
        rows.append({
            "code": r.code, "name": r.name, "level": _level_chip(r.level), "onset": _local(r.onset),
            "rain24": _num(r.rain24, 0),
            "hh_move": _num(r.households_to_move) if has_plan else _DASH,
            "ppl_move": _num(r.people_to_move) if has_plan else _DASH,
            "hh_assigned": _num(r.assigned) if has_plan else _DASH,
            "hh_unassigned": _num(r.unassigned) if has_plan else _DASH,
            "unassigned_n": int(r.unassigned) if has_plan else 0,
            "clearance": _local(r.clearance_time) if has_plan else _DASH,
        })
    return rows


def _by_level(result: ScenarioResult) -> list[dict[str, Any]]:
    """Communes, their population, and the region's households and people per level (highest first)."""
    level = _commune_var(result.assessment, "level_max").astype(np.int64)
    c = result.region.communes
    pop = pd.Series(pd.to_numeric(c["population"], errors="coerce").to_numpy(np.float64),
                    index=c["code"].astype(str).to_numpy())
    frame = pd.DataFrame({"level": level, "population": pop.reindex(level.index)})
    g = frame.groupby("level").agg(communes=("level", "size"), population=("population", "sum"))
    hh = result.region.households
    hh_level = level.reindex(hh["commune_code"].astype(str).to_numpy()).fillna(0).astype(np.int64)
    people = pd.Series(hh["people"].to_numpy(np.int64), index=hh_level.index)
    g["households"] = hh_level.value_counts().reindex(g.index).fillna(0).astype(np.int64)
    g["people"] = people.groupby(hh_level.to_numpy()).sum().reindex(g.index).fillna(0).astype(np.int64)
    return [{"level": _level_chip(lv), "communes": _num(row.communes), "population": _num(row.population),
             "households": _num(row.households), "people": _num(row.people)}
            for lv, row in g.sort_index(ascending=False).iterrows()]


def _changes(scenario: Any) -> list[Markup]:
    """What the scenario changes, one line each in both languages (rain, roads, shelters, settlements)."""
    out: list[Markup] = []
    rain, ch = scenario.rain, scenario.changes
    if rain.scale != 1:
        out.append(_both(f"Mưa × {rain.scale:g}".replace(".", ","), f"Rain × {rain.scale:g}"))
    if rain.shift_hours:
        out.append(_both(f"Bão dời {rain.shift_hours:+g} giờ", f"Storm moved {rain.shift_hours:+g} h"))
    east, north = rain.shift_km
    if east or north:
        out.append(_both(f"Bão dời {east:+g} km về phía đông, {north:+g} km về phía bắc",
                         f"Storm moved {east:+g} km east, {north:+g} km north"))
    for poly in ch.close_polygons:
        name = poly.name or _DASH
        out.append(_both(f"Đóng đường trong vùng: {name}", f"Roads closed in the area: {name}"))
    if ch.close_ways:
        ways = ", ".join(str(w) for w in ch.close_ways)
        out.append(_both(f"Đóng các tuyến đường OSM: {ways}", f"OSM ways closed: {ways}"))
    words = {"open": ("Mở nơi tạm trú", "Shelter opened"), "close": ("Đóng nơi tạm trú", "Shelter closed"),
             "resize": ("Đổi sức chứa nơi tạm trú", "Shelter resized")}
    for sc in ch.shelters:
        vi, en = words.get(sc.action, (sc.action, sc.action))
        what = sc.shelter_id + (f" ({sc.name})" if sc.name else "")
        cap_vi = f", {sc.capacity} người" if sc.capacity is not None else ""
        cap_en = f", {sc.capacity} people" if sc.capacity is not None else ""
        out.append(_both(f"{vi}: {what}{cap_vi}", f"{en}: {what}{cap_en}"))
    for st in ch.settlements:
        out.append(_both(f"Khu dân cư mới: {st.name} ({st.households} hộ)",
                         f"New settlement: {st.name} ({st.households} households)"))
    return out


def _reasons_table(plan: Any) -> list[dict[str, Any]]:
    from ewarn.routing.plan import UNASSIGNED_REASONS

    hh = plan.households
    hh = hh[hh["must_move"].to_numpy(dtype=bool) & (hh["unassigned_reason"].fillna("").astype(str) != "")]
    if hh.empty:
        return []
    g = hh.groupby(hh["unassigned_reason"].astype(str)).agg(households=("people", "size"),
                                                            people=("people", "sum"))
    g = g.sort_values("households", ascending=False)
    vi = {**UNASSIGNED_REASONS,
          "arrives_after_deadline": "đến điểm sơ tán sau thời hạn an toàn; cần hỗ trợ hoặc đi sớm hơn"}
    return [{"reason": _both(vi.get(code, code), REASONS_EN.get(code, code)), "code": code,
             "households": _num(row.households), "people": _num(row.people)} for code, row in g.iterrows()]


def _previews_table(previews: pd.DataFrame | None) -> tuple[list[dict[str, Any]], int]:
    """Distinct message texts, most severe first, with their recipients; and how many were left out."""
    if previews is None or len(previews) == 0:
        return [], 0
    p = previews.copy()
    for c, default in (("commune_name", ""), ("kind", ""), ("hazard", ""), ("level", 0), ("language", ""),
                       ("unaccented", False), ("segments", 0), ("encoding", ""), ("text", ""),
                       ("recipient", "")):
        if c not in p:
            p[c] = default
    p["hazard"] = p["hazard"].fillna("").astype(str)
    keys = ["commune_name", "kind", "hazard", "level", "language", "unaccented", "segments", "encoding",
            "text"]
    p = p.astype({"commune_name": str, "kind": str, "language": str, "encoding": str, "text": str,
                  "recipient": str})
    g = (p.groupby(keys, sort=False, dropna=False)["recipient"]
         .agg(lambda s: ", ".join(dict.fromkeys(s))).reset_index())
    g = g.sort_values(["level", "commune_name", "hazard", "language", "unaccented"],
                      ascending=[False, True, True, False, True], kind="stable")
    left = max(0, len(g) - MAX_PREVIEWS)
    rows = []
    for r in g.head(MAX_PREVIEWS).itertuples(index=False):
        lang = str(r.language) + (f" ({TEXTS['unaccented']['vi']})" if bool(r.unaccented) else "")
        lang_en = str(r.language) + (f" ({TEXTS['unaccented']['en']})" if bool(r.unaccented) else "")
        rows.append({"commune": r.commune_name, "kind": _named(KIND_NAMES, r.kind),
                     "hazard": _named(HAZARD_NAMES, r.hazard), "level": _level_chip(int(r.level)),
                     "recipients": r.recipient, "language": _both(lang, lang_en),
                     "segments": int(r.segments), "encoding": r.encoding, "text": r.text})
    return rows, left


def _key_figures(result: ScenarioResult) -> list[dict[str, Any]]:
    plan = result.plan
    opts = result.scenario.options
    rows: list[dict[str, Any]] = [
        {"label": _t("evacuation_level"), "value": _level_chip(int(opts.evacuation_level))},
        {"label": _t("mode"), "value": Markup(html.escape(str(result.scenario.changes.mode)))},
    ]
    if plan is None:
        return rows
    s = plan.summary()
    tt = s["travel_time_minutes"]
    rows += [
        {"label": _t("households_to_move"), "value": _num(s["households_to_move"])},
        {"label": _t("people_to_move"), "value": _num(s["people_to_move"])},
        {"label": _t("assigned"), "value": _num(s["assigned"])},
        {"label": _t("unassigned"), "value": _num(s["unassigned"]), "alert": s["unassigned"] > 0},
        {"label": _t("late"), "value": _num(s["late"]), "alert": s["late"] > 0},
        {"label": _t("travel"), "value": Markup(" / ").join(_num(tt[k], 1) for k in ("mean", "p95", "max"))},
        {"label": _t("over_capacity"), "value": _num(s["shelters_over_capacity"]),
         "alert": s["shelters_over_capacity"] > 0},
        {"label": _t("closed_roads"), "value": Markup(" / ").join([_num(s["closed_edges"]),
                                                                    _num(s["slowed_edges"])])},
        {"label": _t("assisted"), "value": _num(s["assisted_people"])},
    ]
    return rows


def _notes(result: ScenarioResult) -> list[str]:
    """The run's notes, then the plan's warnings the notes do not already hold."""
    notes = [str(n) for n in (getattr(result, "notes", None) or [])]
    plan = result.plan
    warns = [str(w) for w in (plan.warnings if plan is not None else [])]
    return notes + [w for w in warns if not any(w in n for n in notes)]


def _relocation(result: ScenarioResult) -> dict[str, Any] | None:
    rel = getattr(result, "relocation", None)
    if rel is None:
        return None
    s = rel.summary()
    sites = [{"name": str(r.name), "capacity": _num(r.capacity), "load": _num(r.load),
              "over": int(r.load) > int(r.capacity)} for r in rel.sites.itertuples(index=False)]
    return {"figures": [{"label": _t("households"), "value": _num(s["households"])},
                        {"label": _t("people"), "value": _num(s["people"])},
                        {"label": _t("assigned"), "value": _num(s["assigned"])},
                        {"label": _t("unassigned"), "value": _num(s["unassigned"]),
                         "alert": s["unassigned"] > 0}],
            "sites": sites}


# --------------------------------------------------------------------------- charts


def _svg_text(fig: Any, name: str, language: str, label: str) -> Markup:
    """A matplotlib figure as an inline ``<svg>`` element: no prolog, metadata or unused ids."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"ewarn-{name}-{language}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    text = re.sub(r"<style[^>]*>.*?</style>\s*", "", text, flags=re.S)
    refs = set(re.findall(r"url\(#([^)]+)\)", text)) | set(re.findall(r'href="#([^"]+)"', text))
    text = re.sub(r'\sid="([^"]+)"', lambda m: m.group(0) if m.group(1) in refs else "", text)
    head_end = text.index(">")
    head = re.sub(r'\s(width|height)="[^"]*"', "", text[:head_end])
    head = head.replace("<svg", f'<svg class="chart chart-{name}" role="img" '
                                f'aria-label="{html.escape(label)}" width="100%" '
                                'style="max-width:100%;height:auto"', 1)
    return Markup(head + text[head_end:])


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)  # savefig(bbox_inches="tight") fits the labels


def _hyetograph_svg(assessment: xr.Dataset, language: str) -> Markup | None:
    import matplotlib.dates as mdates

    if "rain_1h" not in assessment or assessment.sizes.get("time", 0) == 0:
        return None
    codes = worst_communes(assessment)
    rain = assessment["rain_1h"]
    extra = [d for d in rain.dims if d not in ("time", "commune")]
    if extra:
        rain = rain.median(extra)
    rain = rain.sel(commune=np.asarray(codes, dtype=assessment["commune"].dtype)).transpose("time", "commune")
    times = _local_naive(assessment["time"].to_numpy()).to_pydatetime()
    names = (assessment["commune_name"].sel(commune=rain["commune"]).to_numpy().astype(str)
             if "commune_name" in assessment else np.asarray(codes))
    level = _commune_var(assessment, "level_max").reindex(codes).to_numpy(np.int64)
    fig = _figure(8.0, 3.2)
    ax = fig.add_subplot()
    word = "cấp" if language == "vi" else "level"
    values = rain.to_numpy().astype(np.float64)
    for j, (name, lv) in enumerate(zip(names, level, strict=True)):
        ax.step(times, values[:, j], where="pre", lw=1.4, label=f"{name} ({word} {lv})")
    ax.set_ylabel(TEXTS["rain_axis"][language])
    ax.set_xlabel(TEXTS["time_axis"][language])
    ax.set_ylim(bottom=0)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d/%m\n%H:%M"))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return _svg_text(fig, "hyetograph", language, TEXTS["hyetograph"][language])


def _clearance_svg(plan: Any, language: str) -> Markup | None:
    import matplotlib.dates as mdates

    curve = clearance_curve(plan.households, plan.start)
    if curve.empty:
        return None
    # sampled on a regular grid of CLEARANCE_POINTS steps (the exact curve has one step per arrival time)
    t_ns = curve["time"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[ns]")
    t_ns = t_ns.astype(np.int64)
    grid = np.unique(np.linspace(t_ns[0], t_ns[-1], CLEARANCE_POINTS + 1).astype(np.int64))
    share = 100.0 * curve["share"].to_numpy()[np.searchsorted(t_ns, grid, side="right") - 1]
    times = _local_naive(grid.astype("datetime64[ns]")).to_pydatetime()
    fig = _figure(8.0, 3.0)
    ax = fig.add_subplot()
    ax.step(times, share, where="post", color="#2ca02c", lw=1.8)
    ax.fill_between(times, share, step="post", color="#2ca02c", alpha=0.15)
    mv = plan.households[plan.households["must_move"].to_numpy(dtype=bool)]
    ceiling = 100.0 * mv.loc[mv["shelter_id"].notna(), "people"].sum() / max(mv["people"].sum(), 1)
    ax.axhline(ceiling, color="#555", ls=":", lw=1)
    ax.annotate(f"{ceiling:.1f} % {TEXTS['assigned_share'][language]}", (times[0], ceiling),
                xytext=(4, -12), textcoords="offset points", fontsize=8, color="#333")
    deadlines = plan.communes.loc[plan.communes["households_to_move"] > 0, "deadline"].dropna()
    if len(deadlines):
        first = _local_naive([deadlines.min()]).to_pydatetime()[0]
        if first <= times[-1] + (times[-1] - times[0]):
            ax.axvline(first, color="#d62728", ls="--", lw=1)
            ax.annotate(TEXTS["first_deadline"][language], (first, 5), xytext=(-4, 0),
                        textcoords="offset points", ha="right", fontsize=8, color="#d62728")
    ax.set_ylim(0, 105)
    ax.set_ylabel(TEXTS["safe_axis"][language])
    ax.set_xlabel(TEXTS["time_axis"][language])
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d/%m\n%H:%M"))
    ax.grid(alpha=0.3)
    return _svg_text(fig, "clearance", language, TEXTS["clearance"][language])


def _shelters_svg(shelters: pd.DataFrame, language: str) -> tuple[Markup | None, int]:
    if shelters is None or len(shelters) == 0:
        return None, 0
    sh = shelters.copy()
    cap = sh["capacity"].to_numpy(np.float64)
    load = sh["load"].to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        sh["pct"] = np.where(cap > 0, 100.0 * load / np.maximum(cap, 1), np.where(load > 0, np.inf, 0.0))
    usable = sh["usable"].to_numpy(dtype=bool) if "usable" in sh else np.ones(len(sh), bool)
    sh["usable_"] = usable
    sh = sh.sort_values(["usable_", "pct", "load", "shelter_id"], ascending=[False, False, False, True],
                        kind="stable")
    left = max(0, len(sh) - MAX_SHELTER_BARS)
    sh = sh.head(MAX_SHELTER_BARS).iloc[::-1]
    pct = np.minimum(sh["pct"].to_numpy(np.float64), 300.0)
    ok = sh["usable_"].to_numpy(dtype=bool)
    colour = np.select([~ok, pct > 100, pct > 90], ["#bbbbbb", "#d62728", "#ff7f0e"], "#2ca02c")
    fig = _figure(8.0, 0.8 + 0.2 * len(sh))
    ax = fig.add_subplot()
    y = np.arange(len(sh))
    ax.barh(y, pct, color=colour, height=0.7)
    labels = [f"{n}" for n in sh["name"].astype(str)]
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_ylim(-0.6, len(sh) - 0.4)
    ax.axvline(100, color="#333", lw=1)
    not_used = TEXTS["not_used"][language]
    for yi, p, lo, ca, u in zip(y, pct, sh["load"].to_numpy(np.int64), sh["capacity"].to_numpy(np.int64), ok,
                                strict=True):
        ax.text(p + 2, yi, f"{lo}/{ca}" + ("" if u else f" ({not_used})"), va="center", fontsize=7)
    ax.set_xlim(0, max(130.0, float(pct.max()) * 1.2 if pct.size else 130.0))
    ax.set_xlabel(TEXTS["load_axis"][language])
    ax.grid(axis="x", alpha=0.3)
    return _svg_text(fig, "shelters", language, TEXTS["shelters"][language]), left


def _charts(render: Callable[[str], Markup | None]) -> dict[str, Markup] | None:
    out = {lang: render(lang) for lang in LANGUAGES}
    return None if any(v is None for v in out.values()) else out  # type: ignore[misc]


# --------------------------------------------------------------------------- rendering


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATES), undefined=jinja2.StrictUndefined,
                              autoescape=True, trim_blocks=True, lstrip_blocks=True)


def _check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise ValueError(f"language {language!r}: use one of {', '.join(LANGUAGES)}")
    return language


def render_report(result: ScenarioResult, *, language: str = "vi") -> str:
    """The scenario report as one self-contained HTML document (see the module docstring).

    Parameters
    ----------
    result : ScenarioResult
        What :func:`ewarn.scenarios.runner.run_scenario` returns: the
        scenario, the region after its changes, the assessment, the hazard
        grid (or None), the plan (or None), the relocation (or None), the
        message previews, ``summary`` and ``notes``.
    language : {"vi", "en"}
        Language shown when the file opens (the other is one click away) and
        of the map's tooltips and legend.

    Returns
    -------
    str
        The HTML text (UTF-8 when written). No script, no external resource.
    """
    language = _check_language(language)
    a = result.assessment
    plan = result.plan
    scen = result.scenario
    levels = _levels(a)
    title = f"{TEXTS['title'][language]}: {scen.scenario.name}"
    layers = report_layers(result, language=language)
    svg_map = Markup(render_map(result.region.communes, levels, layers=layers, width=MAP_WIDTH,
                                language=language, title=title))
    hyeto = _charts(lambda lang: _hyetograph_svg(a, lang))
    clearance = _charts(lambda lang: _clearance_svg(plan, lang)) if plan is not None else None
    shelters = shelters_left = None
    if plan is not None:
        rendered = {lang: _shelters_svg(plan.shelters, lang) for lang in LANGUAGES}
        shelters_left = rendered[language][1]
        shelters = None if rendered[language][0] is None else {k: v[0] for k, v in rendered.items()}
    previews, previews_left = _previews_table(result.previews)
    frt = a.attrs.get("forecast_reference_time")
    file = getattr(scen, "file", None)
    ctx = {
        "kind": "report", "lang": language, "langs": LANGUAGES, "t": _t, "T": TEXTS, "both": _both,
        "name": scen.scenario.name, "description": scen.scenario.description,
        "file": Path(file).name if file is not None else "",
        "reference_time": _local(frt) if frt else _DASH,
        "rain_source": str(a.attrs.get("source", "")),
        "plan_start": _local(plan.start) if plan is not None else None,
        "disclaimer": LEVEL_DISCLAIMER,
        "by_level": _by_level(result), "figures": _key_figures(result), "changes": _changes(scen),
        "map": svg_map, "hyetograph": hyeto, "clearance": clearance, "shelters": shelters,
        "shelters_left": shelters_left, "has_plan": plan is not None,
        "nobody_moves": plan is not None and not bool(plan.households["must_move"].any()),
        "communes": _communes_table(result),
        "reasons": _reasons_table(plan) if plan is not None else [],
        "relocation": _relocation(result),
        "previews": previews, "previews_left": previews_left,
        "notes": _notes(result),
        "summary_json": json.dumps(getattr(result, "summary", None) or {}, ensure_ascii=False, indent=2,
                                   sort_keys=True, default=str),
    }
    return _environment().get_template("report.html.j2").render(**ctx)


def _atomic_write(path: Path, text: str) -> Path:
    path = Path(path).expanduser()
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8", newline="\n")
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise WorkspaceError(f"cannot write the scenario report {path}: {exc.strerror}; choose a writable "
                             "output folder (--out DIR) or free some space") from None
    return path


def write_report(result: ScenarioResult, path: Path | str, *, language: str | None = None) -> Path:
    """Write :func:`render_report` to ``path`` atomically (temporary file in the same folder, then replace).

    Parameters
    ----------
    result : ScenarioResult
    path : Path or str
        The HTML file (e.g. ``out / "report.html"``).
    language : {"vi", "en"}, optional
        Language shown first; default the scenario's ``[outputs] language``.

    Returns
    -------
    Path

    Raises
    ------
    ewarn.errors.WorkspaceError
        When the file cannot be written (the previous report, if any, is kept).
    """
    if language is None:
        outputs = getattr(result.scenario, "outputs", None)
        language = getattr(outputs, "language", "vi") or "vi"
    return _atomic_write(Path(path), render_report(result, language=language))


# --------------------------------------------------------------------------- comparison


def _is_diff_column(name: Any) -> bool:
    n = str(name).strip().lower()
    return n.startswith(("δ", "diff", "delta", "chênh")) or n.endswith(("_diff", " diff", "δ", "_delta"))


def _cell_number(value: Any) -> float | None:
    if isinstance(value, bool | np.bool_) or value is None or value is pd.NA:
        return None
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value) if math.isfinite(float(value)) else None
    return None


def _fmt(value: Any) -> Markup:
    v = _cell_number(value)
    if v is None:
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            return Markup(_DASH)
        return Markup(html.escape(str(value)))
    digits = 0 if float(v).is_integer() else 1
    return _num(v, digits)


def render_comparison(rows: pd.DataFrame, *, language: str = "vi") -> str:
    """The HTML table of ``ewarn scenario compare``, differences highlighted; one self-contained document.

    Parameters
    ----------
    rows : pandas.DataFrame
        One row per summary metric (its label in a ``metric`` column, or the
        index), one column per scenario, in order; the first scenario is the
        reference. Columns whose name starts with ``Δ``, ``diff`` or ``delta``
        (or ends with ``_diff`` / ``Δ``) are differences already computed: their
        non-zero cells are highlighted. Without such columns the difference
        from the first scenario is written beside each other scenario's
        number (``+12``) and the cell highlighted (``class="up"`` /
        ``"down"``; text that differs: ``class="changed"``).
    language : {"vi", "en"}
        Language shown first.

    Returns
    -------
    str
        An HTML document with one ``<table class="comparison">``.
    """
    language = _check_language(language)
    df = rows.copy()
    if "metric" in df.columns:
        labels = df["metric"].astype(str).tolist()
        df = df.drop(columns="metric")
    else:
        labels = [str(i) for i in df.index]
    columns = [str(c) for c in df.columns]
    diff_cols = [c for c in columns if _is_diff_column(c)]
    value_cols = [c for c in columns if c not in diff_cols]
    df.columns = columns
    body = []
    for i, label in enumerate(labels):
        cells = []
        ref = df[value_cols[0]].iloc[i] if value_cols else None
        ref_n = _cell_number(ref)
        for j, c in enumerate(columns):
            value = df[c].iloc[i]
            n = _cell_number(value)
            cls = ""
            extra = Markup("")
            if c in diff_cols:
                if n is not None and n != 0:
                    cls = "up" if n > 0 else "down"
                    extra = Markup("+") if n > 0 else Markup("")
            elif not diff_cols and j > 0 and c in value_cols:
                if n is not None and ref_n is not None and n != ref_n:
                    d = n - ref_n
                    cls = "up" if d > 0 else "down"
                    extra = Markup(' <small class="delta">(') + Markup("+" if d > 0 else "") + \
                        _fmt(round(d, 1) if not float(d).is_integer() else d) + Markup(")</small>")
                elif n is None and ref_n is None and str(value) != str(ref):
                    cls = "changed"
            if c in diff_cols:
                cells.append({"cls": cls, "html": extra + _fmt(value)})
            else:
                cells.append({"cls": cls, "html": _fmt(value) + extra})
        body.append({"label": label, "cells": cells})
    return _environment().get_template("report.html.j2").render(
        kind="comparison", lang=language, langs=LANGUAGES, t=_t, T=TEXTS, columns=columns,
        diff_cols=diff_cols, rows=body)
