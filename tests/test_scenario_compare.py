"""ewarn.scenarios.compare: side-by-side metrics of runs, and the rain-scale sweep.

The example runs are those of test_scenario_runner.py (:func:`shared_run`:
each example runs once per session, whichever module asks first); compare
reads them back from their output folders (summary.json, plan.csv).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from ewarn.scenarios.compare import (
    METRICS,
    CompareError,
    compare,
    compare_text,
    first_break,
    labelled,
    metrics,
    parse_scales,
    sweep,
    sweep_text,
)
from ewarn.scenarios.runner import ScenarioResult
from ewarn.scenarios.schema import load_scenario
from test_scenario_runner import EXAMPLES, _base, shared_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Output folders of the three Yagi scenarios (run once per session, shared with the runner's tests)."""
    return {name: shared_run(tmp_path_factory, name).out
            for name in ("yagi-2024", "yagi-2024-bridge-out", "yagi-2024-new-shelter")}


@pytest.fixture(scope="module")
def table(runs) -> pd.DataFrame:
    return compare([runs["yagi-2024"], runs["yagi-2024-bridge-out"], runs["yagi-2024-new-shelter"]])


def _summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text(encoding="utf-8"))


def test_compare_lays_metrics_side_by_side_with_differences(table, runs):
    assert list(table.columns) == ["yagi-2024", "yagi-2024-bridge-out", "yagi-2024-new-shelter",
                                   "Δ yagi-2024-bridge-out", "Δ yagi-2024-new-shelter"]
    base = _summary(runs["yagi-2024"])["plan"]
    cut = _summary(runs["yagi-2024-bridge-out"])["plan"]
    assert table.loc["people_to_move", "yagi-2024"] == base["people_to_move"]
    assert table.loc["assigned", "yagi-2024-bridge-out"] == cut["assigned"]
    for key in ("assigned", "unassigned", "unreachable", "travel_mean_min", "travel_p95_min",
                "shelters_over_capacity", "closed_edges"):
        a, b = table.loc[key, "yagi-2024"], table.loc[key, "yagi-2024-bridge-out"]
        assert table.loc[key, "Δ yagi-2024-bridge-out"] == pytest.approx(b - a), key
    minutes = (pd.Timestamp(cut["latest_clearance"]) - pd.Timestamp(base["latest_clearance"])).total_seconds()
    assert table.loc["latest_clearance", "Δ yagi-2024-bridge-out"] == pytest.approx(minutes / 60, abs=0.05)
    assert (table.loc["shelters_over_capacity", ["yagi-2024", "yagi-2024-bridge-out",
                                                 "yagi-2024-new-shelter"]] == 0).all()


def test_bridge_out_cuts_households_off_and_lengthens_trips(table):
    """What the cut shows in this run (demo region, demo storm).

    The polygon cuts the Phúc Khánh valley road above Quốc lộ 70: the upper
    valley (Làng Nủ among it) has no road to a shelter within the limit, so
    about 150 households become unreachable (``no_road_within_limit``) and
    are not placed. Their trips were among the longest of the baseline, so
    the plain mean and 95th percentile of the placed households FALL; the
    cost shows in the paired rows: of the households placed in both runs,
    hundreds travel longer (shelters they used fill with others, or the
    detour), by tens of minutes on average.
    """
    col, d = "yagi-2024-bridge-out", "Δ yagi-2024-bridge-out"
    assert table.loc["unreachable", "yagi-2024"] == 0
    assert table.loc["unreachable", col] > 100
    assert table.loc["unassigned_no_road_within_limit", col] == table.loc["unreachable", col]
    assert table.loc["unassigned", d] > 0
    assert table.loc["newly_unassigned", col] >= table.loc["unreachable", col]
    assert table.loc["paired_longer_trip", col] > 100
    assert table.loc["paired_extra_minutes", col] > 5
    assert table.loc["closed_edges", d] > 0
    assert table.loc["households_to_move", d] == 0  # same storm: the same households must move
    assert table.loc["paired_longer_trip", "yagi-2024"] is None  # the reference has no paired row


def test_new_shelter_places_households_that_had_no_room(table):
    col, d = "yagi-2024-new-shelter", "Δ yagi-2024-new-shelter"
    assert table.loc["unassigned_no_capacity", col] < table.loc["unassigned_no_capacity", "yagi-2024"]
    assert table.loc["unassigned", d] < 0 and table.loc["assigned", d] > 0
    assert table.loc["shelter_capacity", d] == 300
    assert table.loc["unreachable", col] == 0


def test_compare_reads_results_and_folders_alike(runs):
    folder = runs["yagi-2024"]
    summary = _summary(folder)
    assert metrics(summary)["unassigned"] == summary["plan"]["unassigned"]
    # a run in memory (what the CLI holds after running): the same households and summary
    hh = pd.read_csv(folder / "plan.csv", dtype={"household_id": str, "shelter_id": str})
    result = ScenarioResult(scenario=load_scenario(EXAMPLES / "yagi-2024.toml"), region=None, forecast=None,
                            assessment=None, cells=None, plan=SimpleNamespace(households=hh.assign(
                                must_move=True)), relocation=None, previews=pd.DataFrame(),
                            summary=summary, notes=[], out=folder)
    df = compare([result, folder / "summary.json"])
    assert list(df.columns) == ["yagi-2024", "yagi-2024 (2)", "Δ yagi-2024 (2)"]
    numeric = [k for k in df.index if df.loc[k, "Δ yagi-2024 (2)"] is not None]
    assert "unassigned" in numeric and all(df.loc[k, "Δ yagi-2024 (2)"] == 0 for k in numeric)
    assert df.loc["paired_longer_trip", "yagi-2024 (2)"] == 0
    assert df.loc["newly_unassigned", "yagi-2024 (2)"] == 0
    # a plan with one household placed no more shows in the paired rows
    lost = hh.assign(must_move=True)
    placed = lost.index[lost["shelter_id"].notna()][0]
    lost.loc[placed, "shelter_id"] = None
    other = dataclasses.replace(result, plan=SimpleNamespace(households=lost))
    assert compare([result, other]).loc["newly_unassigned", "yagi-2024 (2)"] == 1


def test_compare_refuses_what_it_cannot_compare(tmp_path, runs):
    with pytest.raises(CompareError, match="at least two"):
        compare([runs["yagi-2024"]])
    with pytest.raises(CompareError, match=r"no summary\.json"):
        compare([runs["yagi-2024"], tmp_path])


def test_labels_and_text(table):
    vi = labelled(table, "vi")
    assert vi["metric"].iloc[0] == METRICS[table.index[0]][0]
    assert "Chưa có nơi sơ tán" in " ".join(vi["metric"])
    text = compare_text(table, "en")
    assert "Households with no road to a shelter" in text and "Δ yagi-2024-bridge-out" in text
    with pytest.raises(CompareError):
        labelled(table, "fr")
    from ewarn.scenarios.report import render_comparison

    html = render_comparison(labelled(table, "vi"))
    assert "Số hộ không có đường tới nơi sơ tán" in html


def test_parse_scales():
    assert parse_scales("0.5:2.0:0.25") == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    assert parse_scales("0.5:1.0") == [0.5, 0.75, 1.0]
    assert parse_scales("1.5, 0.5,1") == [0.5, 1.0, 1.5]
    for bad in ("0:1:0.5", "1:0.5:0.1", "a:b", "0.5:2:0", "-1,2", ""):
        with pytest.raises(CompareError):
            parse_scales(bad)


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> pd.DataFrame:
    base = _base(tmp_path_factory)
    return sweep(EXAMPLES / "yagi-2024.toml", [1.0, 0.5], cache_dir=base / "cache")


def test_sweep_finds_the_first_scale_where_a_household_cannot_be_placed(swept, runs):
    assert swept["scale"].tolist() == [0.5, 1.0]
    assert (swept[[f"communes_level_{k}" for k in range(6)]].sum(axis=1) == 12).all()
    assert swept["people_to_move"].is_monotonic_increasing
    assert (swept["shelters_over_capacity"] == 0).all()
    broken = swept[swept["unassigned"] > 0]
    assert len(broken) and len(broken) < len(swept)  # this range holds both sides of the break
    scale, what = first_break(swept)
    assert scale == broken["scale"].min()
    assert swept.loc[swept["first_break"], "scale"].tolist() == [scale]
    row = swept.set_index("scale").loc[scale]
    assert f"{row['unassigned']} household(s) cannot be placed" in what
    # the sweep's run at the scenario's own scale is the scenario's run
    base = _summary(runs["yagi-2024"])["plan"]
    at1 = swept.set_index("scale").loc[1.0]
    assert (at1["people_to_move"], at1["assigned"], at1["unassigned"]) == \
        (base["people_to_move"], base["assigned"], base["unassigned"])
    assert f"×{scale:g}" in sweep_text(swept)


def test_first_break_without_a_break():
    df = pd.DataFrame({"scale": [0.5, 1.0], "unassigned": [0, 0], "breaks": ["", ""]})
    assert first_break(df) is None
    df = pd.DataFrame({"scale": [2.0, 1.0, 0.5], "unassigned": [3, 1, 0], "breaks": ["c", "b", "a"]})
    assert first_break(df) == (1.0, "b")
