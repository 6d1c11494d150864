"""One forecast cycle, end to end: ingest → assess → alert → plan.

:func:`run_cycle` is the single orchestration function behind the scheduler,
the CLI (``ewarn run-cycle``, ``ewarn demo``) and the web app. Each stage is a
plain function of the rooms; this module only sequences them, records a row
in the ``runs`` table per attempt, and stops at the first failing stage,
leaving the outputs of the last good cycle in place.

Stages are added here as the rooms land; a stage that is not built yet is
simply absent (never faked).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, update

from ewarn.config import Workspace
from ewarn.errors import EwarnError
from ewarn.region import Region
from ewarn.store import Store, runs, utcnow

log = logging.getLogger("ewarn.pipeline")


class PipelineError(EwarnError):
    """A stage of a cycle failed; the message names the stage and the cause."""


@dataclass
class CycleContext:
    """What the stages of one cycle share."""

    workspace: Workspace
    source: str
    path_or_url: str | Path | None
    cycle: dt.datetime | None
    now: dt.datetime | None
    force: bool
    region: Region
    forecast: Any = None  # ArchivedForecast once ingested
    results: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class CycleResult:
    """Outcome of :func:`run_cycle`."""

    run_id: int
    source: str
    cycle: dt.datetime | None
    status: str
    steps: list[str]
    outputs: dict[str, Path]
    counts: dict[str, int]
    results: dict[str, Any]


def _stage_ingest(ctx: CycleContext) -> None:
    """Ingest the forecast (or reuse the archived cycle) — forecasts room."""
    from ewarn import forecasts

    if ctx.path_or_url is not None:
        archived = forecasts.ingest(
            ctx.workspace, ctx.source, ctx.path_or_url, cycle=ctx.cycle, force=ctx.force,
            bounds=ctx.region.bounds, now=ctx.now,
        )
    else:
        found = [a for a in forecasts.list_archived(ctx.workspace, ctx.source)
                 if ctx.cycle is None or a.cycle == ctx.cycle]
        if not found:
            what = f"cycle {ctx.cycle:%Y-%m-%dT%H}Z" if ctx.cycle else "any cycle"
            raise PipelineError(f"no archived forecast of source '{ctx.source}' for {what}; "
                                f"ingest one first: ewarn ingest {ctx.source} FILE")
        archived = max(found, key=lambda a: a.cycle)
    ctx.forecast = archived
    ctx.cycle = archived.cycle
    ctx.outputs["forecast"] = archived.path
    ctx.results["ingest"] = archived
    ctx.counts["forecast_members"] = archived.members


def _stage_assess(ctx: CycleContext) -> None:
    """Score the cycle per commune (hazard models) and store the assessment."""
    from ewarn import forecasts
    from ewarn.hazard_models import assess as hz

    forecast = forecasts.load_archived(ctx.workspace, ctx.source, ctx.cycle)
    before = forecasts.antecedent(ctx.workspace, ctx.source, until=ctx.cycle, days=7)
    has_rain = before.rain.size > 0 and bool(before.rain.notnull().any())
    ctx.counts["antecedent_days_missing"] = len(before.gaps)
    ctx.results["antecedent"] = before.rain if has_rain else None
    ds = hz.assess(forecast, ctx.region, ctx.results["antecedent"], cache_dir=ctx.workspace.path("cache"))
    path = ctx.workspace.path("assessments", ctx.source, f"{ctx.cycle:%Y%m%dT%H}.nc")
    hz.write_assessment(ds, path)
    hz.record_assessment(Store.open(ctx.workspace.database_url), ctx.source, ctx.cycle, ds, path)
    ctx.results["assess"] = ds
    ctx.outputs["assessment"] = path
    level = ds["level_max"].values
    for lv in range(1, 6):
        ctx.counts[f"communes_level_ge{lv}"] = int((level >= lv).sum())


def open_gateway(workspace: Workspace) -> Any:
    """The workspace's configured SMS gateway (``[alerts] gateway``), credentials from the environment."""
    from ewarn.alerts.gateways import load_gateway

    settings = workspace.settings.alerts
    return load_gateway(settings.gateway, settings, os.environ, workspace_root=workspace.root)


def _stage_alerts(ctx: CycleContext) -> None:
    """Decide the warnings of the cycle, queue them in the outbox, send what is due — alerts room."""
    from ewarn.alerts import service

    settings = ctx.workspace.settings.alerts
    store = Store.open(ctx.workspace.database_url)
    now = ctx.now or utcnow()
    batch = service.prepare_alerts(store, ctx.region, ctx.results["assess"], settings, now=now)
    queued, duplicates = service.enqueue_alerts(store, batch)
    ctx.results["alerts"] = batch
    ctx.counts["notices"] = len(batch.notices)
    ctx.counts["messages_queued"] = queued
    ctx.counts["messages_already_queued"] = duplicates
    _write_cap(ctx, batch, now)
    gateway = open_gateway(ctx.workspace)
    try:
        sent = service.dispatch(store, gateway, settings, now=now)
    finally:
        gateway.close()
    ctx.results["dispatch"] = sent
    ctx.counts["messages_sent"] = int(getattr(sent, "sent", 0))


def _write_cap(ctx: CycleContext, batch: Any, now: dt.datetime) -> None:
    """CAP 1.2 files of the cycle's notices and the Atom feed of the active ones (``cap/``)."""
    from ewarn.alerts.capstore import write_cap_files

    folder = ctx.workspace.path("cap")
    written = write_cap_files(batch.notices, folder, settings=ctx.workspace.settings.alerts, now=now)
    ctx.counts["cap_alerts"] = len(written)
    if written:
        ctx.outputs["cap"] = folder


def plan_cycle(workspace: Workspace, region: Region, source: str, cycle: dt.datetime, assessment: Any, *,
               now: dt.datetime | None = None, antecedent: Any = None, **overrides: Any) -> tuple[Any, Path]:
    """Plan the evacuation for an assessed cycle and write it to ``plans/{source}/{cycle}/``.

    With terrain, the hazard grid of the whole forecast says which households
    are in a hazard zone (they move now, even if the threat comes later) and
    the grid of the planning window (from ``now``) says which roads are closed
    or slowed; the first is written beside the assessment
    (``{cycle}-cells.nc``). ``overrides`` replace ``[routing]`` settings
    (e.g. ``mode="walk"``).

    Returns
    -------
    (EvacuationPlan, Path)
        The plan and its folder (plan.csv, routes.geojson, shelters.csv,
        communes.csv, assisted.csv, closures.csv, summary.json).
    """
    from ewarn import forecasts
    from ewarn.hazard_models.cells import HazardCellsError, hazard_cells, write_cells
    from ewarn.routing.plan import PlanOptions, plan_evacuation, write_plan

    start = now or utcnow()
    opts = PlanOptions.from_settings(workspace.settings.routing, now=start, **overrides)
    cells = road_cells = None
    if region.files.get("terrain") is not None:
        forecast = forecasts.load_archived(workspace, source, cycle)
        cache = workspace.path("cache")
        cells = hazard_cells(forecast, region, antecedent=antecedent, cache_dir=cache)
        end = start + dt.timedelta(hours=opts.planning_window_hours)
        try:
            road_cells = hazard_cells(forecast, region, antecedent=antecedent, start=_naive(start),
                                      end=_naive(end), cache_dir=cache)
        except HazardCellsError as exc:  # the planning window lies outside the forecast
            log.warning("plan %s %s: no road is closed by the hazard (%s)", source, cycle, exc)
            road_cells = cells.copy()
            for name in ("stream_threatened", "landslide_triggered"):
                road_cells[name] = road_cells[name] & False
        write_cells(cells, workspace.path("assessments", source, f"{cycle:%Y%m%dT%H}-cells.nc"))
    plan = plan_evacuation(region, assessment, cells, opts, cache_dir=workspace.path("cache", "roads"),
                           road_cells=road_cells)
    folder = workspace.path("plans", source, f"{cycle:%Y%m%dT%H}")
    write_plan(plan, folder)
    return plan, folder


def _stage_plan(ctx: CycleContext) -> None:
    """Who must move, to which shelter, by which road, when — routing room (:func:`plan_cycle`)."""
    plan, folder = plan_cycle(ctx.workspace, ctx.region, ctx.source, ctx.cycle, ctx.results["assess"],
                              now=ctx.now, antecedent=ctx.results.get("antecedent"))
    ctx.results["plan"] = plan
    ctx.outputs["plan"] = folder
    summary = plan.summary()
    for key in ("households_to_move", "people_to_move", "assigned", "unassigned", "late"):
        ctx.counts[f"plan_{key}"] = int(summary[key])


def _naive(t: dt.datetime) -> dt.datetime:
    return t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo else t


#: The stages of a cycle, in order.
STAGES: list[tuple[str, Callable[[CycleContext], None]]] = [
    ("ingest", _stage_ingest),
    ("assess", _stage_assess),
    ("alerts", _stage_alerts),
    ("plan", _stage_plan),
]


def run_cycle(
    workspace: Workspace,
    source: str,
    path_or_url: str | Path | None = None,
    *,
    cycle: dt.datetime | None = None,
    now: dt.datetime | None = None,
    force: bool = False,
    region: Region | None = None,
    progress: Callable[[str], None] | None = None,
    stages: Sequence[str] | None = None,
) -> CycleResult:
    """Run one forecast cycle through every stage that exists.

    Parameters
    ----------
    workspace : Workspace
        The workspace (settings, archive, database).
    source : str
        Forecast source profile name (``demo``, ``gfs``, ``ecmwf-ifs`` ...).
    path_or_url : str or Path, optional
        File, glob or URL to ingest; None reuses the archived cycle.
    cycle : datetime, optional
        Forecast reference time (UTC); default: from the file / the latest archived.
    now : datetime, optional
        The time the cycle is run at (UTC); default the clock. The demo replays
        a past storm by setting it.
    force : bool
        Re-ingest a cycle that is already archived.
    region : Region, optional
        Default: the workspace's region folder.
    progress : callable, optional
        Called with the name of each stage as it starts.
    stages : sequence of str, optional
        Run only these stages (in the pipeline's order), e.g. ``("ingest",
        "assess")``; default all. ``ingest`` without a file reuses the archive.

    Returns
    -------
    CycleResult

    Raises
    ------
    PipelineError
        A stage failed; the run row records the stage and the message, and
        the previous cycle's outputs stay in place.
    """
    known = [name for name, _ in STAGES]
    unknown = sorted(set(stages or ()) - set(known))
    if unknown:
        raise PipelineError(f"unknown stage(s) {', '.join(unknown)}; the stages are {', '.join(known)}")
    selected = [(name, fn) for name, fn in STAGES if stages is None or name in stages]
    store = Store.open(workspace.database_url)
    if region is None:
        region = Region.load(workspace.region_dir)
    ctx = CycleContext(workspace, source, path_or_url, cycle, now, force, region)
    with store.engine.begin() as conn:
        run_id = conn.execute(insert(runs).values(
            job="cycle", source=source, cycle=cycle, started_at=utcnow(), status="running",
        )).inserted_primary_key[0]
    done: list[str] = []
    step = ""
    try:
        for step, fn in selected:
            if progress:
                progress(step)
            log.info("cycle %s/%s: %s", source, cycle or "latest", step)
            fn(ctx)
            done.append(step)
            if step == "ingest" and stages is None and not force and _already_done(store, ctx, run_id):
                log.info("cycle %s %s was already run to the end: nothing to do", source, ctx.cycle)
                _finish(store, run_id, ctx, "unchanged", step, "the cycle was already run to the end")
                return CycleResult(run_id, source, ctx.cycle, "unchanged", done, ctx.outputs, ctx.counts,
                                   ctx.results)
    except EwarnError as exc:
        _finish(store, run_id, ctx, "failed", step, str(exc))
        raise PipelineError(f"cycle of source '{source}' failed at step '{step}': {exc}") from exc
    except Exception as exc:
        _finish(store, run_id, ctx, "failed", step, f"{type(exc).__name__}: {exc}")
        raise
    _finish(store, run_id, ctx, "ok", done[-1] if done else "", "")
    return CycleResult(run_id, source, ctx.cycle, "ok", done, ctx.outputs, ctx.counts, ctx.results)


def _already_done(store: Store, ctx: CycleContext, run_id: int) -> bool:
    """Whether this (source, cycle) already ran every stage, with an unchanged forecast.

    A cycle is idempotent: the same forecast file dropped again, or the
    scheduler polling a source whose newest cycle was processed, changes
    nothing and sends nothing. A run killed part-way has no ``ok`` row, so
    the cycle runs again (the outbox's keys keep its messages single).
    """
    if ctx.forecast is None or ctx.forecast.status != "unchanged":
        return False
    last = STAGES[-1][0]
    with store.engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(runs).where(
            runs.c.source == ctx.source, runs.c.cycle == ctx.cycle, runs.c.status == "ok",
            runs.c.step == last, runs.c.id != run_id)).scalar()
    return bool(n)


def _finish(store: Store, run_id: int, ctx: CycleContext, status: str, step: str, msg: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(runs).where(runs.c.id == run_id).values(
            finished_at=utcnow(), status=status, step=step, message=msg[:4000],
            cycle=ctx.cycle, counts=dict(ctx.counts),
        ))
