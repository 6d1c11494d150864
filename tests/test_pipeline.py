"""pipeline.run_cycle: stages in order, a run row per attempt, failures leave the last good outputs."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from ewarn import demo
from ewarn.config import init_workspace
from ewarn.pipeline import PipelineError, run_cycle
from ewarn.region import Region
from ewarn.store import Store, runs


@pytest.fixture(scope="module")
def demo_ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline") / "ws"
    ws = init_workspace(root)
    demo.build_demo_region(ws.region_dir, demo.DEMO_SEED)
    region = Region.load(ws.region_dir)
    storm = demo.build_demo_storm(region, root / "incoming" / "storm.nc", demo.DEMO_SEED)
    now = demo.DEMO_CYCLE + dt.timedelta(hours=3)
    first = run_cycle(ws, demo.DEMO_SOURCE, storm, region=region, now=now)
    return ws, region, storm, now, first


def _runs(ws):
    with Store.open(ws.database_url).engine.connect() as conn:
        return conn.execute(select(runs).order_by(runs.c.id)).mappings().all()


def test_cycle_runs_every_stage_and_records_it(demo_ws):
    ws, _, _, _, first = demo_ws
    assert first.status == "ok"
    assert first.steps == ["ingest", "assess", "alerts", "plan"]
    assert first.cycle == demo.DEMO_CYCLE
    for key in ("assessment", "hazard_cells", "cap", "plan"):
        assert first.outputs.get(key) is None or first.outputs[key].exists(), key
    assert first.outputs["assessment"].exists() and (first.outputs["plan"] / "plan.csv").exists()
    assert first.counts["communes_level_ge2"] >= 1
    assert first.counts["messages_queued"] == first.counts["messages_sent"] > 0
    assert first.counts["plan_households_to_move"] >= first.counts["plan_assigned"] > 0
    row = _runs(ws)[0]
    assert row["status"] == "ok" and row["step"] == "plan" and row["finished_at"] is not None
    assert row["counts"]["communes_level_ge1"] >= row["counts"]["communes_level_ge2"]


def test_running_the_same_cycle_again_changes_nothing(demo_ws):
    ws, region, storm, now, first = demo_ws
    before = first.outputs["assessment"].read_bytes()
    sent = (ws.root / "outbox" / "sent.jsonl").read_bytes()
    again = run_cycle(ws, demo.DEMO_SOURCE, storm, region=region, now=now)
    assert again.results["ingest"].status == "unchanged"
    assert again.status == "unchanged" and again.steps == ["ingest"]  # nothing re-assessed, nothing re-sent
    assert first.outputs["assessment"].read_bytes() == before
    assert (ws.root / "outbox" / "sent.jsonl").read_bytes() == sent
    assert _runs(ws)[-1]["status"] == "unchanged"
    # forced: every stage runs again, and still no message goes out twice (outbox keys)
    forced = run_cycle(ws, demo.DEMO_SOURCE, storm, region=region, now=now, force=True)
    assert forced.status == "ok" and forced.counts["messages_queued"] == 0
    assert (ws.root / "outbox" / "sent.jsonl").read_bytes() == sent


def test_a_failed_stage_is_recorded_and_leaves_the_last_good_assessment(demo_ws, tmp_path):
    ws, region, _, now, first = demo_ws
    before = first.outputs["assessment"].read_bytes()
    corrupt = tmp_path / "corrupt.nc"
    corrupt.write_bytes(b"CDF\x01" + b"\x00" * 64)  # a truncated NetCDF
    with pytest.raises(PipelineError) as e:
        run_cycle(ws, demo.DEMO_SOURCE, corrupt, region=region, now=now,
                  cycle=demo.DEMO_CYCLE + dt.timedelta(hours=12))
    assert "step 'ingest'" in str(e.value) and "corrupt.nc" in str(e.value)
    last = _runs(ws)[-1]
    assert last["status"] == "failed" and last["step"] == "ingest"
    assert "corrupt.nc" in last["message"]
    assert first.outputs["assessment"].read_bytes() == before
    assert sorted(p.name for p in (ws.root / "assessments" / "demo").iterdir()) == [
        "20240907T12-cells.nc", "20240907T12.nc"]


def test_assess_only_reuses_the_archive(demo_ws):
    ws, region, _, _, _ = demo_ws
    result = run_cycle(ws, demo.DEMO_SOURCE, None, region=region, stages=("ingest", "assess"))
    assert result.cycle == demo.DEMO_CYCLE and result.steps == ["ingest", "assess"]


def test_unknown_stage_and_missing_archive(demo_ws):
    ws, region, _, _, _ = demo_ws
    with pytest.raises(PipelineError, match="unknown stage"):
        run_cycle(ws, demo.DEMO_SOURCE, None, region=region, stages=("ingest", "dance"))
    with pytest.raises(PipelineError, match="ewarn ingest gfs"):
        run_cycle(ws, "gfs", None, region=region)
