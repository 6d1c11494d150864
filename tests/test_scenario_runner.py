"""ewarn.scenarios.runner: every example scenario runs; outputs, summary.json, determinism, no SMS.

The four examples of scenarios/ run once per session (:func:`shared_run`,
which test_scenario_compare.py imports) on the demo region, built once into a
session-wide cache folder under pytest's base temp.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from ewarn.errors import EwarnError, WorkspaceError
from ewarn.scenarios import runner
from ewarn.scenarios.runner import DEMO_MARKER, ScenarioResult, demo_region, run_scenario, write_outputs
from ewarn.scenarios.schema import ScenarioError

EXAMPLES = Path(__file__).resolve().parents[1] / "scenarios"
NAMES = ("yagi-2024", "yagi-2024-bridge-out", "yagi-2024-new-shelter", "relocation-2026")


def _base(factory: pytest.TempPathFactory) -> Path:
    """Session-wide folder shared with test_scenario_compare.py (runner cache and run outputs)."""
    base = factory.getbasetemp() / "scenario-runs"
    base.mkdir(exist_ok=True)
    return base


@contextmanager
def no_send() -> Iterator[None]:
    """Everything that could queue or send a message raises (a run that tries fails)."""

    def trap(name: str):
        def fail(*args, **kwargs):
            raise AssertionError(f"{name} called by a scenario run")

        return fail

    import ewarn.alerts.gateways as gateways
    import ewarn.alerts.outbox as outbox
    import ewarn.alerts.service as service

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gateways, "load_gateway", trap("load_gateway"))
        mp.setattr(service, "enqueue_alerts", trap("enqueue_alerts"))
        mp.setattr(service, "dispatch", trap("dispatch"))
        mp.setattr(service, "enqueue", trap("outbox.enqueue"))
        mp.setattr(outbox, "enqueue", trap("outbox.enqueue"))
        mp.setattr(outbox.Dispatcher, "run_until_empty", trap("Dispatcher.run_until_empty"))
        yield


#: Runs of the examples, once per session; test_scenario_compare.py imports :func:`shared_run`.
_RUNS: dict[str, ScenarioResult] = {}


def shared_run(factory: pytest.TempPathFactory, name: str) -> ScenarioResult:
    """The example ``name`` run once per session (with every way to send a message trapped)."""
    if name not in _RUNS:
        base = _base(factory)
        with no_send():
            _RUNS[name] = run_scenario(EXAMPLES / f"{name}.toml", base / name, cache_dir=base / "cache")
    return _RUNS[name]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, ScenarioResult]:
    return {name: shared_run(tmp_path_factory, name) for name in NAMES}


def test_every_example_writes_its_outputs(results):
    for name, res in results.items():
        out = res.out
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        written = sorted(p.name for p in out.iterdir())
        assert written == summary["outputs"], name
        assert {"risk.nc", "levels.csv", "plan.csv", "routes.geojson", "summary.json",
                "report.html"} <= set(written), name
        assert not list(out.parent.glob(f".{out.name}.*")), "a temporary folder was left behind"
        # risk.nc: the assessment, readable
        with xr.open_dataset(out / "risk.nc") as risk:
            np.testing.assert_array_equal(risk["level_max"].values, res.assessment["level_max"].values)
        # levels.csv: one row per commune, most severe first, local time = UTC + 7 h
        levels = pd.read_csv(out / "levels.csv", dtype={"code": str})
        assert sorted(levels["code"]) == sorted(res.region.communes["code"].astype(str))
        assert levels["level_max"].is_monotonic_decreasing
        onset = levels.dropna(subset=["onset_time"])
        assert len(onset)
        utc = pd.to_datetime(onset["onset_time"], utc=True)
        local = pd.to_datetime(onset["onset_time_local"], format="%Y-%m-%d %H:%M %z")
        assert (local.dt.tz_convert("UTC") == utc).all()
        assert onset["onset_time_local"].str.endswith("+0700").all()
        # plan.csv: one row per household that must move; routes: RFC 7946 lines
        plan = pd.read_csv(out / "plan.csv", dtype={"household_id": str})
        assert len(plan) == summary["plan"]["households_to_move"] > 0
        routes = gpd.read_file(out / "routes.geojson")
        assert len(routes) == len(res.plan.routes) > 0
        assert set(routes.geom_type) == {"LineString"}
        html = (out / "report.html").read_text(encoding="utf-8")
        assert "<svg" in html and res.scenario.name in html


def test_relocation_example_lists_the_households_to_resettle(results):
    res = results["relocation-2026"]
    s = res.summary["relocation"]
    rel = pd.read_csv(res.out / "relocation.csv", dtype={"household_id": str, "site_id": str})
    assert len(rel) == s["households"] > 0
    assert (rel["susceptibility"] == 5).all()
    sites = pd.read_csv(res.out / "relocation_sites.csv")
    assert (sites["load"] <= sites["capacity"]).all()
    assert int(rel["site_id"].notna().sum()) == s["assigned"]
    # the scenario's 40-household settlement is in the region the plan used
    assert res.region.households["household_id"].str.startswith("HH-NEW1-").sum() == 40
    assert "relocation.csv" not in results["yagi-2024"].summary["outputs"]


def test_summary_counts_are_consistent(results):
    for name, res in results.items():
        s = res.summary
        assert json.loads((res.out / "summary.json").read_text(encoding="utf-8")) == s
        region = res.region
        levels = s["levels"]
        assert sum(levels["people_by_level"].values()) == int(region.households["people"].sum())
        assert sum(levels["communes_by_level"].values()) == len(region.communes)
        p = s["plan"]
        assert p["assigned"] + p["unassigned"] == p["households_to_move"], name
        assert sum(r["households"] for r in p["unassigned_by_reason"].values()) == p["unassigned"]
        assert sum(r["people"] for r in p["unassigned_by_reason"].values()) == p["unassigned_people"]
        loads = {sh["shelter_id"]: sh for sh in p["shelters"]}
        assert sum(sh["load"] for sh in loads.values()) == p["assigned_people"]
        assert all(sh["load"] <= sh["capacity"] for sh in loads.values())
        assert p["shelters_over_capacity"] == 0
        tt = p["travel_time_minutes"]
        assert 0 < tt["mean"] <= tt["p95"] <= tt["max"] <= s["options"]["max_travel_minutes"]
        assert p["latest_clearance"] == max(v for v in p["clearance_time"].values() if v)
        assert p["start"] == "2024-09-07T12:00:00Z"  # the plan starts at the forecast reference time
    opened = results["yagi-2024-new-shelter"].summary["plan"]["shelters"]
    assert any(sh["shelter_id"] == "SH-02998-TAM1" and sh["capacity"] == 300 for sh in opened)


def test_summary_holds_no_run_time_or_local_path(results):
    text = (results["yagi-2024"].out / "summary.json").read_text(encoding="utf-8")
    today = dt.datetime.now(dt.UTC)
    assert today.strftime("%Y-%m-%dT") not in text
    assert str(EXAMPLES) not in text and "/tmp" not in text
    assert json.dumps(json.loads(text), ensure_ascii=False, indent=2, sort_keys=True) + "\n" == text


def test_two_runs_of_the_same_file_give_identical_summary(results, tmp_path_factory):
    base = _base(tmp_path_factory)
    again = run_scenario(EXAMPLES / "yagi-2024.toml", base / "yagi-2024-again", cache_dir=base / "cache")
    first = results["yagi-2024"].out
    assert (again.out / "summary.json").read_bytes() == (first / "summary.json").read_bytes()
    for name in ("levels.csv", "plan.csv", "shelters.csv", "routes.geojson"):
        assert (again.out / name).read_bytes() == (first / name).read_bytes(), name


def test_bridge_out_closes_the_valley_road(results):
    base = results["yagi-2024"].summary["plan"]
    cut = results["yagi-2024-bridge-out"].summary["plan"]
    assert base["closed_edges"] == 0 < cut["closed_edges"]
    assert cut["options"]["closures_polygons"] and not base["options"]["closures_polygons"]
    # the upper valley has no road out: households that must move become unreachable
    assert cut["unreachable"] > base["unreachable"] == 0


def test_no_sms_is_queued_or_sent(results):
    """The runs were made with every gateway, enqueue and dispatch trapped (:func:`no_send`)."""
    from ewarn.alerts import gateways, outbox
    from ewarn.config import AlertSettings

    with no_send():
        with pytest.raises(AssertionError, match="load_gateway"):
            gateways.load_gateway("file", AlertSettings(), {})
        with pytest.raises(AssertionError):
            outbox.enqueue(None, None)
        res = results["yagi-2024"]
        again = runner.message_previews(res.region, res.assessment, now=dt.datetime(2024, 9, 7, 12))
    pd.testing.assert_frame_equal(again, res.previews)
    for res in results.values():
        pv = res.previews
        assert len(pv) == res.summary["messages"]["count"] > 0
        assert {"commune", "kind", "level", "recipient", "language", "segments", "text"} <= set(pv.columns)
        assert pv["recipient"].str.contains(r"\*").all()  # masked
        assert not any(res.out.glob("*.db")) and not any(res.out.glob("*.sqlite*"))
    texts = results["yagi-2024"].previews
    assert texts.loc[texts["language"] == "vi", "text"].str.contains("xã|Xã|XÃ").any()


def test_a_bad_file_is_a_scenario_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[scenario]\nname = "x"\n[rain]\nscale = -1\nkind = "demo"\nwat = 2\n', encoding="utf-8")
    with pytest.raises(ScenarioError) as exc:
        run_scenario(bad, tmp_path / "out", cache_dir=tmp_path / "cache")
    fields = {p.field for p in exc.value.problems}
    assert {"rain.scale", "rain.wat"} <= fields
    with pytest.raises(ScenarioError):
        run_scenario(tmp_path / "missing.toml", tmp_path / "out")
    broken = tmp_path / "broken.toml"
    broken.write_text("[scenario\nname = 1\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        run_scenario(broken)
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_changes_that_do_not_fit_the_region_are_a_scenario_error(tmp_path, tmp_path_factory):
    base = _base(tmp_path_factory)
    f = tmp_path / "close.toml"
    f.write_text('[scenario]\nname = "đóng điểm sơ tán không có"\n'
                 '[[changes.shelters]]\naction = "close"\nshelter_id = "SH-NOPE"\n', encoding="utf-8")
    with pytest.raises(ScenarioError) as exc:
        run_scenario(f, tmp_path / "out", cache_dir=base / "cache")
    assert exc.value.problems[0].field == "changes.shelters.shelter_id"
    assert not (tmp_path / "out").exists()
    assert isinstance(exc.value, EwarnError)


def test_a_failed_write_keeps_the_previous_outputs(results, tmp_path, monkeypatch):
    res = results["yagi-2024"]
    original = res.out
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("previous run", encoding="utf-8")
    import ewarn.hazard_models.assess as assess_mod

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(assess_mod, "write_assessment", disk_full)
    with pytest.raises(WorkspaceError, match="previous outputs are kept"):
        write_outputs(res, out, write_report=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    monkeypatch.undo()
    try:
        write_outputs(res, out, write_report=False)
    finally:
        res.out = original  # shared with other tests
    assert (out / "summary.json").is_file() and not (out / "old.txt").exists()
    assert sorted(p.name for p in out.iterdir()) == [f for f in res.summary["outputs"] if f != "report.html"]


def test_the_demo_region_is_built_once_and_reused(results, tmp_path_factory, monkeypatch):
    base = _base(tmp_path_factory)
    folder = demo_region(base / "cache")
    marker = json.loads((folder / DEMO_MARKER).read_text(encoding="utf-8"))
    assert marker["seed"] == 2024 and marker["ewarn"]
    assert results["yagi-2024"].region.folder == folder

    def no_build(*args, **kwargs):
        raise AssertionError("the cached demo region was built again")

    monkeypatch.setattr("ewarn.demo.build_demo_region", no_build)
    assert demo_region(base / "cache") == folder


def test_default_out_is_beside_the_scenario(tmp_path):
    from ewarn.scenarios.schema import parse_scenario

    sc = parse_scenario('[scenario]\nname = "x"\n', tmp_path / "my-case.toml")
    assert runner.default_out(sc) == tmp_path.resolve() / "out" / "my-case"


def test_output_list_follows_the_scenario(tmp_path):
    from ewarn.scenarios.schema import parse_scenario

    sc = parse_scenario('[scenario]\nname = "x"\n[outputs]\nfiles = ["levels.csv", "relocation.csv"]\n',
                        tmp_path / "a.toml")
    assert runner._output_names(sc) == ["levels.csv", "relocation.csv", "relocation_sites.csv",
                                        "summary.json"]
    assert runner._wants_relocation(sc)
    sc = parse_scenario('[scenario]\nname = "x"\n', tmp_path / "b.toml")
    assert not runner._wants_relocation(sc)
    names = runner._output_names(sc, report=False)
    assert "report.html" not in names and {"plan.csv", "shelters.csv", "closures.csv"} <= set(names)
