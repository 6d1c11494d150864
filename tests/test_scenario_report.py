"""The scenario report (issue #8): one self-contained HTML file, offline, bilingual, map and charts."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import lxml.html
import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr

from ewarn.errors import WorkspaceError
from ewarn.hazard_models.levels import LEVEL_DISCLAIMER, LEVELS
from ewarn.routing.graph import region_network
from ewarn.routing.plan import PlanOptions, permanent_relocation, plan_evacuation
from ewarn.scenarios import report
from ewarn.scenarios.runner import run_scenario
from ewarn.scenarios.schema import parse_scenario

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
MAP = "//svg[contains(concat(' ', normalize-space(@class), ' '), ' ewarn-map ')]"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The bridge-out scenario run once by the runner (which writes report.html through write_report)."""
    root = tmp_path_factory.mktemp("scenario_report")
    result = run_scenario(SCENARIOS / "yagi-2024-bridge-out.toml", root / "out", cache_dir=root / "cache")
    return {"root": root, "result": result, "html": (result.out / "report.html").read_text(encoding="utf-8")}


@pytest.fixture(scope="module")
def html_en(run):
    return report.render_report(run["result"], language="en")


def _doc(text: str):
    return lxml.html.fromstring(text.encode("utf-8"))


def _external_resources(text: str) -> list[str]:
    """Attributes or CSS that would fetch something, and URLs that are not namespace names."""
    attr = r"""\b(?:src|href|action|data|poster|srcset)\s*=\s*["']?\s*(?:https?:|ftp:)?//[^"'\s>]*"""
    found = re.findall(attr, text, flags=re.I)
    found += re.findall(r"""url\(\s*["']?\s*(?:https?:)?//[^)]*\)""", text, flags=re.I)
    found += re.findall(r"@import", text)
    namespaces = set(re.findall(r'xmlns(?::\w+)?="(https?://[^"]+)"', text))
    found += sorted(set(re.findall(r"""https?://[^\s"'<>)]+""", text)) - namespaces)
    return found


def _en(td) -> str:
    """Text of a table cell as the English view shows it (the Vietnamese spans dropped)."""
    td = lxml.html.fromstring(lxml.html.tostring(td))
    for el in td.xpath(".//*[contains(concat(' ', @class, ' '), ' vi ')]"):
        el.drop_tree()
    return td.text_content().strip()


def _number(text: str) -> float:
    return float(text.replace(",", ""))


# --------------------------------------------------------------------------- the report of a run


def test_report_is_one_offline_file(run):
    text = run["html"]
    assert text.startswith("<!DOCTYPE html>")
    assert "<script" not in text.lower()
    assert "<link" not in text.lower() and "<iframe" not in text.lower()
    assert _external_resources(text) == []
    assert len(text.encode("utf-8")) < 2_000_000


def test_map_has_one_shape_per_commune_coloured_by_level(run):
    result = run["result"]
    doc = _doc(run["html"])
    maps = doc.xpath(MAP)
    assert len(maps) == 1
    shapes = maps[0].xpath(".//path[@class='commune']")
    codes = result.region.communes["code"].astype(str)
    assert len(shapes) == len(codes)
    assert sorted(s.get("data-code") for s in shapes) == sorted(codes)
    level = dict(zip(result.assessment["commune"].values.astype(str),
                     result.assessment["level_max"].values.astype(int), strict=True))
    for s in shapes:
        assert int(s.get("data-level")) == level[s.get("data-code")]
        assert s.get("fill") == LEVELS[level[s.get("data-code")]].colour_hex


def test_map_draws_streams_closed_roads_routes_and_shelter_loads(run):
    result = run["result"]
    plan = result.plan
    assert (plan.closures["action"] == "closed").any()  # the cut crossing of the scenario
    assert int(result.cells["stream_threatened"].sum()) > 0 and len(plan.routes) > 0
    svg = _doc(run["html"]).xpath(MAP)[0]
    for cls in ("streams", "closed-roads", "routes", "roads"):
        paths = svg.xpath(f".//path[@class='{cls}']")
        assert len(paths) == 1 and len(paths[0].get("d")) > 20, cls
    circles = svg.xpath(".//circle[@class='shelter']")
    assert len(circles) == len(plan.shelters)
    full = plan.shelters.sort_values("load", ascending=False).iloc[0]
    tips = [c.findtext("title") for c in circles]
    assert any(f"{full['name']} ({full['shelter_id']}): {full['load']}/{full['capacity']}" in t for t in tips)
    excluded = plan.shelters[~plan.shelters["usable"]]
    assert sum("không dùng" in t for t in tips) == len(excluded)


def test_threatened_streams_of_the_grid_are_joined_cell_to_cell():
    lat = np.arange(5) * 0.001 + 22.0
    lon = np.arange(5) * 0.001 + 104.0
    thr = np.zeros((5, 5), dtype=bool)
    thr[1, 1] = thr[2, 2] = True  # diagonal neighbours: one segment between the centres
    thr[4, 4] = True  # alone: a tick one cell wide
    cells = xr.Dataset({"stream_threatened": (("latitude", "longitude"), thr)},
                       coords={"latitude": lat, "longitude": lon})
    lines = report.threatened_stream_lines(cells)
    assert lines.length == pytest.approx(0.001 * np.sqrt(2) + 0.001)
    assert lines.distance(shapely.Point(lon[1], lat[1])) < 1e-12
    assert lines.distance(shapely.Point(lon[2], lat[2])) < 1e-12
    assert lines.distance(shapely.Point(lon[4], lat[4])) < 1e-12
    assert lines.distance(shapely.Point(lon[3], lat[3])) > 5e-4
    none = cells.assign(stream_threatened=cells["stream_threatened"] & False)
    assert report.threatened_stream_lines(none) is None
    assert report.threatened_stream_lines(None) is None


def test_charts_are_inline_svg_in_both_languages(run):
    result = run["result"]
    doc = _doc(run["html"])
    for name in ("hyetograph", "clearance", "shelters"):
        for lang in ("vi", "en"):
            found = doc.xpath(f"//figure[@class='{lang}']//svg[contains(@class, 'chart-{name}')]")
            assert len(found) == 1, (name, lang)
    vi = doc.xpath("//figure[@class='vi']//svg[contains(@class, 'chart-hyetograph')]")[0].text_content()
    en = doc.xpath("//figure[@class='en']//svg[contains(@class, 'chart-hyetograph')]")[0].text_content()
    assert "Mưa 1 giờ (mm)" in vi and "Giờ Việt Nam" in vi
    assert "1-hour rain (mm)" in en and "Vietnam time" in en
    worst = report.worst_communes(result.assessment)
    names = result.assessment["commune_name"].sel(commune=worst).values.astype(str)
    assert len(worst) == 5 and all(n in vi for n in names)
    ids = re.findall(r'\sid="([^"]+)"', run["html"])
    assert len(ids) == len(set(ids))  # charts of one page never share an id


def test_worst_communes_by_level_then_rain():
    ds = xr.Dataset({"level_max": ("commune", [1, 3, 3, 0]),
                     "rain_24h_max": ("commune", [500.0, 100.0, 200.0, 900.0])},
                    coords={"commune": ["00001", "00002", "00003", "00004"]})
    assert report.worst_communes(ds, 3) == ["00003", "00002", "00001"]


def test_clearance_curve_counts_people_arrived():
    t0 = pd.Timestamp("2024-09-07T12:00Z")
    hh = pd.DataFrame({
        "must_move": [True, True, True, False, True],
        "people": [2, 3, 5, 7, 4],
        "arrival": pd.to_datetime([t0 + pd.Timedelta(minutes=10), t0 + pd.Timedelta(minutes=10), pd.NaT,
                                   t0 + pd.Timedelta(minutes=5), t0 + pd.Timedelta(minutes=30)], utc=True),
    })
    curve = report.clearance_curve(hh, t0)
    assert list(curve["time"]) == [t0, t0 + pd.Timedelta(minutes=10), t0 + pd.Timedelta(minutes=30)]
    assert curve["people_safe"].tolist() == [0, 5, 9]
    assert curve["share"].tolist() == pytest.approx([0, 5 / 14, 9 / 14])  # the unassigned 5 never arrive
    assert report.clearance_curve(hh.assign(must_move=False), t0).empty


def test_vietnamese_first_with_an_english_switch(run, html_en):
    doc = _doc(run["html"])
    assert doc.get("lang") == "vi"
    assert doc.xpath("//input[@id='lang-vi']")[0].get("checked") is not None
    assert doc.xpath("//input[@id='lang-en']")[0].get("checked") is None
    assert doc.xpath("//label[@for='lang-en']") and doc.xpath("//label[@for='lang-vi']")
    assert "#lang-en:checked ~ .page .vi{display:none}" in run["html"]
    text = doc.text_content()
    for vi, en in (("Báo cáo kịch bản", "Scenario report"), ("Bản đồ", "Map"),
                   ("Đường cong sơ tán", "Clearance curve"),
                   ("Hộ chưa có nơi tạm trú", "Households without")):
        assert vi in text and en in text
    assert LEVEL_DISCLAIMER["vi"] in text and LEVEL_DISCLAIMER["en"] in text
    assert run["result"].scenario.name in doc.findtext(".//h1") + doc.xpath("string(//h1)")
    assert "19:00 07/09/2024" in text  # 2024-09-07T12Z in Asia/Ho_Chi_Minh
    en = _doc(html_en)
    assert en.get("lang") == "en"
    assert en.xpath("//input[@id='lang-en']")[0].get("checked") is not None
    legend = en.xpath(MAP)[0].xpath("string(.//*[@class='legend'])")
    assert "Level 3" in legend and "Cấp 3" not in legend


def test_communes_table_matches_the_plan(run):
    result = run["result"]
    rows = _doc(run["html"]).xpath("//table[@class='communes']/tbody/tr")
    assert len(rows) == len(result.region.communes)
    pc = result.plan.communes.set_index(result.plan.communes["commune_code"].astype(str))
    for tr in rows:
        code = tr.get("data-code")
        cells = tr.xpath("./td")
        assert _number(_en(cells[6])) == pc.loc[code, "people_to_move"]
        assert _number(_en(cells[8])) == pc.loc[code, "unassigned"]
    levels = [int(LEVELS_BY_NAME[_en(tr.xpath("./td")[2])]) for tr in rows]
    assert levels == sorted(levels, reverse=True)  # worst first


LEVELS_BY_NAME = {v.name_en: k for k, v in LEVELS.items()}


def test_unassigned_reasons_and_message_previews(run):
    result = run["result"]
    doc = _doc(run["html"])
    mv = result.plan.households[result.plan.households["must_move"]]
    counts = mv.loc[mv["unassigned_reason"] != "", "unassigned_reason"].value_counts()
    assert len(counts) > 0  # the cut valley
    rows = {tr.get("data-reason"): tr for tr in doc.xpath("//table[@class='reasons']/tbody/tr")}
    assert set(rows) == set(counts.index)
    for code, n in counts.items():
        assert _number(_en(rows[code].xpath("./td")[1])) == n
    previews = result.previews
    assert len(previews) > 0
    shown = doc.xpath("//tr[@class='preview']")
    assert len(shown) == min(previews["text"].nunique(), report.MAX_PREVIEWS)
    texts = {tr.xpath("./td[@class='msg']")[0].text_content() for tr in shown}
    assert set(previews["text"].astype(str)) <= texts
    assert re.search(r"\+84\d{9}", run["html"]) is None  # recipients stay masked


def test_same_result_same_report(run):
    assert report.render_report(run["result"], language="vi") == run["html"]


def test_no_plan_and_escaped_text_still_render(run, tmp_path):
    result = run["result"]
    toml = '[scenario]\nname = "<script>alert(1)</script> & Co"\ndescription = "a < b"\n'
    evil = parse_scenario(toml, tmp_path / "evil.toml")
    bare = dataclasses.replace(result, scenario=evil, plan=None, cells=None, relocation=None, notes=["<b>"])
    text = report.render_report(bare)
    assert "<script" not in text and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in text
    assert "<b>" not in text
    doc = _doc(text)
    svg = doc.xpath(MAP)[0]
    assert len(svg.xpath(".//path[@class='commune']")) == len(result.region.communes)
    assert not svg.xpath(".//path[@class='routes']") and not svg.xpath(".//path[@class='streams']")
    assert len(svg.xpath(".//circle[@class='shelter']")) == len(result.region.shelters)
    assert doc.xpath("//svg[contains(@class, 'chart-hyetograph')]")
    assert not doc.xpath("//svg[contains(@class, 'chart-clearance')]")
    assert "Lần chạy này không có kế hoạch sơ tán." in doc.text_content()
    assert _external_resources(text) == []


def test_plan_where_nobody_moves_and_relocation(run):
    result = run["result"]
    net = region_network(result.region, run["root"] / "roads")
    nobody = plan_evacuation(result.region, result.assessment, result.cells, PlanOptions(level=5),
                             network=net)
    assert not nobody.households["must_move"].any() and len(nobody.routes) == 0
    rel = permanent_relocation(result.region, susceptibility=result.cells["susceptibility"], network=net)
    text = report.render_report(dataclasses.replace(result, plan=nobody, relocation=rel))
    doc = _doc(text)
    assert "Không hộ nào phải sơ tán." in doc.text_content()
    assert not doc.xpath("//svg[contains(@class, 'chart-clearance')]")
    assert doc.xpath("//svg[contains(@class, 'chart-shelters')]")
    assert not doc.xpath(MAP)[0].xpath(".//path[@class='routes']")
    section = doc.xpath("//section[@id='relocation']")
    assert len(section) == 1
    values = [_number(_en(v)) for v in section[0].xpath(".//div[@class='v' or starts-with(@class, 'v ')]")]
    s = rel.summary()
    assert values[:4] == [s["households"], s["people"], s["assigned"], s["unassigned"]]


def test_write_report_is_atomic(run, tmp_path, monkeypatch):
    monkeypatch.setattr(report, "render_report", lambda result, language="vi": f"<html>{language}</html>")
    path = report.write_report(run["result"], tmp_path / "out" / "report.html")
    assert path.read_text(encoding="utf-8") == "<html>vi</html>"  # the scenario's [outputs] language
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report.os, "replace", fail)
    with pytest.raises(WorkspaceError, match="No space left on device"):
        report.write_report(run["result"], path, language="en")
    assert path.read_text(encoding="utf-8") == "<html>vi</html>"
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(WorkspaceError, match="cannot write the scenario report"):
        report.write_report(run["result"], blocker / "report.html")


def test_unknown_language_is_refused(run):
    with pytest.raises(ValueError, match="vi, en"):
        report.render_report(run["result"], language="fr")


# --------------------------------------------------------------------------- comparison


def test_comparison_highlights_differences():
    df = pd.DataFrame({"metric": ["people_to_move", "travel_time_p95", "unassigned", "note"],
                       "yagi-2024": [9219, 103.2, 39, "a"], "bridge-out": [9219, 110.5, 80, "b"]})
    text = report.render_comparison(df)
    assert _external_resources(text) == [] and "<script" not in text
    doc = _doc(text)
    rows = {tr.xpath("./th")[0].text_content(): tr.xpath("./td") for tr in
            doc.xpath("//table[@class='comparison']/tbody/tr")}
    assert set(rows) == set(df["metric"])
    assert "up" not in (rows["people_to_move"][1].get("class") or "")
    assert "up" in rows["unassigned"][1].get("class")
    assert "(+41)" in _en(rows["unassigned"][1])
    assert "(+7.3)" in _en(rows["travel_time_p95"][1])
    assert "changed" in rows["note"][1].get("class")
    assert [th.text_content() for th in doc.xpath("//thead//th")][1:] == ["yagi-2024", "bridge-out"]
    diffs = pd.DataFrame({"a": [1, 2], "b": [1, 5], "Δ b": [0, 3]}, index=["x", "y"])
    doc = _doc(report.render_comparison(diffs, language="en"))
    assert doc.get("lang") == "en"
    cells = doc.xpath("//table[@class='comparison']/tbody/tr/td")
    assert "up" not in (cells[2].get("class") or "") and "up" in cells[5].get("class")
    assert _en(cells[5]) == "+3"


# --------------------------------------------------------------------------- headless Chromium


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


def _browser(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    exe = _chromium()
    if exe is None:
        pytest.skip("headless Chromium not installed (chromium, chromium-browser or google-chrome on PATH); "
                    "install it (apt-get install chromium) to run the browser test")
    cmd = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
           "--proxy-server=127.0.0.1:9", f"--user-data-dir={tmp_path / 'profile'}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_report_opens_in_headless_chromium_offline(run, tmp_path):
    page = run["result"].out / "report.html"
    done = _browser(tmp_path, "--dump-dom", page.as_uri())
    doc = _doc(done.stdout)
    maps = doc.xpath(MAP)
    assert len(maps) == 1
    assert len(maps[0].xpath(".//path[@class='commune']")) == len(run["result"].region.communes)
    assert len(doc.xpath("//svg[contains(@class, 'chart-')]")) == 6


def test_report_screenshot_shows_the_map(run, tmp_path):
    import matplotlib.image as mpimg

    shot = tmp_path / "report.png"
    page = run["result"].out / "report.html"
    _browser(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri())
    assert shot.is_file()
    img = mpimg.imread(shot)[..., :3]
    assert img.shape[:2] == (2000, 1280)
    assert (img.min(axis=2) < 0.9).mean() > 0.05  # not a blank page
    top = int(run["result"].assessment["level_max"].max())
    rgb = np.array([int(LEVELS[top].colour_hex[i:i + 2], 16) for i in (1, 3, 5)]) / 255.0
    assert (np.abs(img - rgb).max(axis=2) < 0.02).sum() > 5000  # the worst communes are painted
