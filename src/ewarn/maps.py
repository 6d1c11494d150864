"""Inline SVG maps: communes coloured by level, streams, roads, routes, shelters.

One renderer for the scenario report and the status page of ``ewarn serve``:
the output is a self-contained ``<svg>`` element (no script, no external
resource) that opens offline and scales to the width of a phone. Communes are
``<path>`` elements with a ``<title>`` tooltip and ``data-code`` /
``data-level`` attributes, so a test (or a stylesheet) can find them.

Coordinates are lon/lat (EPSG:4326) projected with an equirectangular
projection scaled by cos(mean latitude) — at commune-to-province scale the
distortion is far below a pixel's worth of what the map is for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

import numpy as np
import shapely

from ewarn.hazard_models.levels import LEVELS

__all__ = ["SVG_NS", "MapLayers", "render_map"]

#: The SVG namespace (W3C SVG 1.1 §5.1): the map's root element declares it.
SVG_NS = "http://www.w3.org/2000/svg"

_LEGEND_H = 28


@dataclass
class MapLayers:
    """What to draw over the communes (all optional, lon/lat EPSG:4326).

    Attributes
    ----------
    streams : sequence of shapely geometries
        Threatened streams (blue lines).
    roads : sequence of shapely geometries
        Roads (grey lines).
    closed_roads : sequence of shapely geometries
        Closed or cut roads (red dashed lines).
    routes : sequence of shapely geometries
        Evacuation routes (green lines).
    shelters : array_like (n, 2) lon, lat
        Shelter points.
    shelter_fill : array_like (n,), optional
        Load / capacity of each shelter (0..1+); sizes and colours the dot.
    shelter_labels : sequence of str, optional
        Tooltip of each shelter.
    """

    streams: Sequence[Any] = ()
    roads: Sequence[Any] = ()
    closed_roads: Sequence[Any] = ()
    routes: Sequence[Any] = ()
    shelters: Any = None
    shelter_fill: Any = None
    shelter_labels: Sequence[str] | None = None


class _Projection:
    def __init__(self, bounds: tuple[float, float, float, float], width: float, margin: float) -> None:
        x0, y0, x1, y1 = bounds
        self.k = float(np.cos(np.deg2rad((y0 + y1) / 2)))
        span_x = max((x1 - x0) * self.k, 1e-9)
        span_y = max(y1 - y0, 1e-9)
        self.scale = (width - 2 * margin) / span_x
        self.x0, self.y1, self.margin = x0, y1, margin
        self.width = width
        self.height = span_y * self.scale + 2 * margin

    def xy(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = (lon - self.x0) * self.k * self.scale + self.margin
        y = (self.y1 - lat) * self.scale + self.margin
        return x, y


def _path_data(geom: Any, proj: _Projection, closed: bool) -> str:
    """SVG path ``d`` of a (multi)polygon's rings or a (multi)line's parts."""
    parts: list[str] = []
    rings: list[Any]
    if geom is None or geom.is_empty:
        return ""
    if closed:
        polys = getattr(geom, "geoms", [geom])
        rings = [r for p in polys for r in (p.exterior, *p.interiors)]
    else:
        rings = list(getattr(geom, "geoms", [geom]))
    for ring in rings:
        xy = shapely.get_coordinates(ring)
        if len(xy) < 2:
            continue
        x, y = proj.xy(xy[:, 0], xy[:, 1])
        pts = " ".join(np.char.add(np.char.add(np.round(x, 1).astype(str), ","),
                                   np.round(y, 1).astype(str)))
        parts.append(f"M{pts}{'Z' if closed else ''}")
    return " ".join(parts)


def _lines(geoms: Sequence[Any], proj: _Projection, cls: str, style: str) -> str:
    if geoms is None or len(geoms) == 0:
        return ""
    merged = shapely.union_all(np.asarray(list(geoms), dtype=object)) if len(geoms) < 5000 else None
    items = [merged] if merged is not None else list(geoms)
    d = " ".join(filter(None, (_path_data(g, proj, False) for g in items)))
    return f'<path class="{cls}" d="{d}" fill="none" {style}/>' if d else ""


def render_map(
    communes: Any,
    levels: Mapping[str, int] | None = None,
    *,
    layers: MapLayers | None = None,
    width: int = 800,
    language: str = "vi",
    title: str = "",
    labels: bool = True,
) -> str:
    """Draw communes coloured by their Decision 18 level, with optional layers, as inline SVG.

    Parameters
    ----------
    communes : geopandas.GeoDataFrame
        ``code``, ``name`` and polygon geometry, EPSG:4326.
    levels : mapping of commune code to level (0..5), optional
        Missing communes are drawn at level 0.
    layers : MapLayers, optional
        Streams, roads, closed roads, routes and shelters.
    width : int
        Width of the drawing [px]; the height follows the region's shape.
    language : {"vi", "en"}
        Language of the tooltips and the legend.
    title : str
        Accessible title of the map.
    labels : bool
        Write commune names at their representative points.

    Returns
    -------
    str
        One ``<svg>`` element with ``class="ewarn-map"``, one
        ``<path class="commune">`` per commune.

    Notes
    -----
    Level colours are ``LEVELS[level].colour_hex`` of
    :mod:`ewarn.hazard_models.levels` (Decision 18/2021 Art. 5 colour names).
    """
    layers = layers or MapLayers()
    levels = levels or {}
    geoms = np.asarray(communes.geometry.values, dtype=object)
    bounds = tuple(float(v) for v in shapely.total_bounds(geoms))
    margin = 8.0
    proj = _Projection(bounds, float(width), margin)  # type: ignore[arg-type]
    height = proj.height + _LEGEND_H
    codes = communes["code"].astype(str).to_numpy()
    names = communes["name"].astype(str).to_numpy()
    out = [f'<svg xmlns="{SVG_NS}" class="ewarn-map" viewBox="0 0 {width} {height:.0f}" '
           f'width="100%" role="img" aria-label="{escape(title)}" '
           'style="max-width:100%;height:auto;font-family:sans-serif">']
    if title:
        out.append(f"<title>{escape(title)}</title>")
    out.append('<g class="communes" stroke="#555" stroke-width="0.8">')
    for code, name, geom in zip(codes, names, geoms, strict=True):
        lv = int(levels.get(code, 0))
        info = LEVELS.get(lv, LEVELS[0])
        level_name = info.name_vi if language == "vi" else info.name_en
        word = "xã" if language == "vi" else "commune"
        tip = f"{name} ({word} {code}): {level_name}"
        out.append(f'<path class="commune" data-code="{escape(code)}" data-level="{lv}" '
                   f'fill="{info.colour_hex}" d="{_path_data(geom, proj, True)}" fill-rule="evenodd">'
                   f"<title>{escape(tip)}</title></path>")
    out.append("</g>")
    out.append(_lines(layers.roads, proj, "roads", 'stroke="#888" stroke-width="0.7"'))
    out.append(_lines(layers.streams, proj, "streams", 'stroke="#1f6fd1" stroke-width="1.2"'))
    out.append(_lines(layers.closed_roads, proj, "closed-roads",
                      'stroke="#d62728" stroke-width="2" stroke-dasharray="4 3"'))
    out.append(_lines(layers.routes, proj, "routes", 'stroke="#2ca02c" stroke-width="1.4" opacity="0.8"'))
    if layers.shelters is not None and len(layers.shelters):
        pts = np.asarray(layers.shelters, dtype=float).reshape(-1, 2)
        x, y = proj.xy(pts[:, 0], pts[:, 1])
        fill = (np.zeros(len(pts)) if layers.shelter_fill is None
                else np.asarray(layers.shelter_fill, dtype=float))
        r = 3.0 + 4.0 * np.clip(np.nan_to_num(fill), 0, 1.5)
        tips = layers.shelter_labels or [""] * len(pts)
        out.append('<g class="shelters" stroke="#000" stroke-width="0.6">')
        for xi, yi, ri, fi, tip in zip(x, y, r, fill, tips, strict=True):
            colour = "#d62728" if fi > 1 else ("#ff7f0e" if fi > 0.9 else "#ffffff")
            out.append(f'<circle class="shelter" cx="{xi:.1f}" cy="{yi:.1f}" r="{ri:.1f}" fill="{colour}">'
                       f"<title>{escape(tip)}</title></circle>")
        out.append("</g>")
    if labels:
        reps = shapely.point_on_surface(geoms)
        rx, ry = proj.xy(shapely.get_x(reps), shapely.get_y(reps))
        out.append('<g class="labels" font-size="9" text-anchor="middle" fill="#222" '
                   'pointer-events="none">')
        out.extend(f'<text x="{a:.1f}" y="{b:.1f}">{escape(n)}</text>'
                   for a, b, n in zip(rx, ry, names, strict=True))
        out.append("</g>")
    out.append(_legend(proj.height, width, language))
    out.append("</svg>")
    return "".join(out)


def _legend(top: float, width: int, language: str) -> str:
    items = []
    step = width / 6
    for lv in range(6):
        info = LEVELS[lv]
        name = info.name_vi if language == "vi" else info.name_en
        x = 8 + lv * step
        items.append(f'<rect x="{x:.0f}" y="{top + 6:.0f}" width="14" height="14" fill="{info.colour_hex}" '
                     f'stroke="#555"/><text x="{x + 18:.0f}" y="{top + 17:.0f}" font-size="11">'
                     f"{escape(name)}</text>")
    return f'<g class="legend">{"".join(items)}</g>'
