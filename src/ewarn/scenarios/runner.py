"""Run a planner's scenario: the operational chain on the scenario's rain, region and options.

:func:`run_scenario` drives the SAME room functions as the forecast pipeline
(:mod:`ewarn.pipeline`), in the same order, without a workspace:

1. the region: the built-in demo region (built once into a cache folder,
   :func:`demo_region`) or ``Region.load`` of the scenario's region folder;
2. the rain: :func:`ewarn.scenarios.rain.scenario_rain` (forecast contract
   and antecedent rain);
3. the changes: :func:`ewarn.scenarios.changes.apply_changes` (shelters,
   settlements; in memory) and :func:`~ewarn.scenarios.changes.road_closures`;
4. the assessment: :func:`ewarn.hazard_models.assess.assess` with the
   scenario's antecedent rain;
5. the hazard grid: :func:`ewarn.hazard_models.cells.hazard_cells` of the
   whole forecast (who must move) and of the planning window (which roads
   close), exactly as :func:`ewarn.pipeline.plan_cycle` does;
6. the plan: :func:`ewarn.routing.plan.plan_evacuation` with
   :class:`~ewarn.routing.plan.PlanOptions` from the scenario's options, mode
   and road closures; with ``options.relocation`` (or ``relocation.csv``
   among the outputs) also
   :func:`~ewarn.routing.plan.permanent_relocation` (sites: the shelters of
   kind ``resettlement``, those the scenario opens included);
7. message previews: :func:`ewarn.alerts.service.preview` on a throw-away
   in-memory SQLite database (empty alert state: every warning is new).
   Nothing is queued, no gateway is opened, no SMS is ever sent.

The plan starts ("now") at the forecast reference time: a planner's what-if
asks what the plan would have been when the forecast was issued. The demo
region is always the one of :data:`ewarn.demo.DEMO_SEED` (the scenario's seed
seeds the rain and new settlements, not the landscape, so that way ids and
coordinates in scenario files keep their meaning).

Outputs (:func:`write_outputs`), into a temporary folder beside ``out`` that
is then swapped in (never a half-written output folder): ``risk.nc``
(:func:`~ewarn.hazard_models.assess.write_assessment`), ``levels.csv`` (one
row per commune), the plan files of :func:`~ewarn.routing.plan.write_plan`
(``plan.csv``, ``routes.geojson``, ``shelters.csv``, ``communes.csv``,
``assisted.csv``, ``closures.csv``), ``relocation.csv`` and
``relocation_sites.csv`` when asked, ``summary.json`` (:func:`scenario_summary`,
always written: it is the record compare reads) and ``report.html``
(:func:`ewarn.scenarios.report.write_report`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ewarn.config import LOCAL_TZ
from ewarn.errors import EwarnError, WorkspaceError
from ewarn.region import Region
from ewarn.scenarios.changes import RoadClosures, apply_changes, road_closures
from ewarn.scenarios.rain import scenario_rain
from ewarn.scenarios.schema import Scenario, ScenarioError, load_scenario

__all__ = [
    "DEMO_MARKER",
    "Prepared",
    "ScenarioResult",
    "ScenarioRunError",
    "default_cache_dir",
    "default_out",
    "demo_region",
    "execute",
    "levels_table",
    "message_previews",
    "prepare",
    "run_scenario",
    "scenario_summary",
    "summary_text",
    "write_outputs",
]

log = logging.getLogger(__name__)

#: File inside a cached demo region folder: the ewarn version and seed it was built with.
DEMO_MARKER = ".ewarn-demo-region.json"
#: Floats in summary.json are rounded to this many decimals (deterministic text).
SUMMARY_DECIMALS = 3
#: Unassigned reasons that mean "no way out by road" (the rest is a lack of shelter places or time).
UNREACHABLE_REASONS = ("no_road_nearby", "road_closed", "no_road_within_limit")


class ScenarioRunError(EwarnError):
    """A stage of a scenario run failed; the message names the scenario file, the stage and the cause."""


@dataclass
class ScenarioResult:
    """Everything one scenario run produced (what the report and compare read).

    Attributes
    ----------
    scenario : Scenario
        As loaded.
    region : Region
        The region after the scenario's changes.
    forecast : xarray.Dataset
        The scenario's rain (forecast contract).
    assessment : xarray.Dataset
        :func:`ewarn.hazard_models.assess.assess` of the forecast.
    cells : xarray.Dataset or None
        Hazard grid of the whole forecast (who must move); None without terrain.
    plan : EvacuationPlan or None
        The evacuation plan.
    relocation : RelocationPlan or None
        Permanent relocation (``options.relocation``).
    previews : pandas.DataFrame
        Message previews: commune, commune_name, kind, hazard, level,
        recipient (masked), contact_name, language, unaccented, segments,
        encoding, text.
    summary : dict
        Exactly what summary.json holds (:func:`scenario_summary`).
    notes : list of str
        What the runner assumed, and warnings.
    out : Path
        Output folder.
    closures : RoadClosures
        The planner's road closures.
    antecedent : xarray.DataArray or None
        Daily rain before the forecast [mm].
    road_cells : xarray.Dataset or None
        Hazard grid of the planning window (which roads close).
    """

    scenario: Scenario
    region: Region
    forecast: xr.Dataset
    assessment: xr.Dataset
    cells: xr.Dataset | None
    plan: Any
    relocation: Any
    previews: pd.DataFrame
    summary: dict[str, Any]
    notes: list[str]
    out: Path
    closures: RoadClosures | None = None
    antecedent: xr.DataArray | None = None
    road_cells: xr.Dataset | None = None
    files: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- caches and the region


def default_cache_dir() -> Path:
    """The runner's cache folder: ``$XDG_CACHE_HOME/ewarn`` (default ``~/.cache/ewarn``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "ewarn"


def _version() -> str:
    from ewarn import __version__

    return str(__version__)


def demo_region(cache_dir: Path | str | None = None, seed: int | None = None) -> Path:
    """The demo region folder, built once into ``cache_dir/demo-region-<seed>``.

    The demo region is deterministic (:func:`ewarn.demo.build_demo_region`),
    so a folder whose marker (:data:`DEMO_MARKER`) names this ewarn version
    and seed is reused; otherwise it is built into a temporary sibling and
    renamed into place (another process building it at the same time is
    harmless: the first rename wins).

    Parameters
    ----------
    cache_dir : path, optional
        Default :func:`default_cache_dir`.
    seed : int, optional
        Default :data:`ewarn.demo.DEMO_SEED`.

    Returns
    -------
    Path
        The region folder.
    """
    from ewarn.demo import DEMO_SEED, build_demo_region

    seed = DEMO_SEED if seed is None else int(seed)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    dest = (root / f"demo-region-{seed}").resolve()
    marker = {"ewarn": _version(), "seed": seed}
    if _marker_ok(dest, marker):
        return dest
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
        log.info("building the demo region into %s (once)", dest)
        build_demo_region(tmp, seed)
        (tmp / DEMO_MARKER).write_text(json.dumps(marker), encoding="utf-8")
        if dest.exists() and not _marker_ok(dest, marker):  # stale: another version or half-built
            old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(dest, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not _marker_ok(dest, marker):
                raise
        shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        raise WorkspaceError(f"cannot build the demo region in {dest}: {exc.strerror or exc}; give a "
                             "writable cache folder (cache_dir, or XDG_CACHE_HOME)") from None
    return dest


def _marker_ok(folder: Path, marker: dict[str, Any]) -> bool:
    try:
        return json.loads((folder / DEMO_MARKER).read_text(encoding="utf-8")) == marker
    except (OSError, ValueError):
        return False


def _load_region(scenario: Scenario, cache_root: Path) -> tuple[Region, list[str]]:
    if scenario.region.is_demo:
        folder = demo_region(cache_root)
        note = "region: the built-in demo region (synthetic households, shelters, roads and terrain; " \
               "commune names and codes are real)"
    else:
        folder = Path(scenario.region.path)
        note = f"region: {folder.name}"
    return Region.load(folder), [note]


# --------------------------------------------------------------------------- the run


@dataclass
class Prepared:
    """What does not depend on the rain (region, changes, road network, caches): shared by a sweep's runs."""

    region: Region
    changed: Region
    closures: RoadClosures
    network: Any
    cache: Path
    notes: list[str]


@contextmanager
def _stage(scenario: Scenario, name: str) -> Iterator[None]:
    """A room's EwarnError becomes a ScenarioRunError naming the scenario and the stage."""
    try:
        yield
    except (ScenarioError, ScenarioRunError, WorkspaceError):
        raise
    except EwarnError as exc:
        raise ScenarioRunError(f"scenario {scenario.file}: the {name} stage failed: {exc}") from exc


def prepare(scenario: Scenario, cache_root: Path) -> Prepared:
    """Load the scenario's region, apply its changes, read its road network (once per scenario).

    Raises
    ------
    ScenarioError
        The changes do not fit the region.
    ScenarioRunError
        The region or its road network cannot be read.
    """
    from ewarn.routing.graph import region_network

    cache = Path(cache_root)  # terrain/, communegrid/, roads/ as in a workspace's cache folder
    with _stage(scenario, "region"):
        region, notes = _load_region(scenario, cache_root)
    changed = apply_changes(region, scenario.changes, seed=scenario.scenario.seed, file=str(scenario.file))
    notes += [f"warning: {p.where + ': ' if p.where else ''}{p.message}"
              for p in changed.warnings[len(region.warnings):]]
    closures = road_closures(scenario.changes)
    with _stage(scenario, "road network"):
        network = region_network(changed, cache / "roads")
    return Prepared(region, changed, closures, network, cache, notes)


def _naive(t: dt.datetime) -> dt.datetime:
    return t.astimezone(dt.UTC).replace(tzinfo=None)


def execute(scenario: Scenario, prep: Prepared, out: Path, *, report: bool = True) -> ScenarioResult:
    """The pipeline's chain on one scenario: rain → assess → hazard grid → plan → previews.

    Nothing is written and nothing is sent; ``out`` is only recorded. The
    region, changes and network come from :func:`prepare`.
    """
    from ewarn.hazard_models.assess import assess
    from ewarn.hazard_models.cells import HazardCellsError, hazard_cells
    from ewarn.routing.plan import PlanOptions, permanent_relocation, plan_evacuation

    region = prep.changed
    notes = list(prep.notes)
    rain = scenario_rain(scenario, region)
    notes += [f"rain: {n}" for n in rain.notes]
    forecast, antecedent = rain.forecast, rain.antecedent
    if antecedent is None:
        notes.append("no antecedent rain given: the ground is taken as dry before the forecast "
                     "(levels are lower bounds)")
    with _stage(scenario, "assessment"):
        assessment = assess(forecast, region, antecedent, cache_dir=prep.cache)
    start = pd.Timestamp(forecast.attrs["forecast_reference_time"])
    start = (start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")).to_pydatetime()
    notes.append(f"the plan starts at the forecast reference time {start:%Y-%m-%dT%H:%MZ} (a what-if "
                 "asks what the plan would have been when the forecast was issued)")
    opts = PlanOptions.from_settings(
        scenario.routing_settings(), now=start, closures_way_ids=prep.closures.way_ids,
        closures_polygons=tuple(prep.closures.polygons.values))
    cells = road_cells = None
    with _stage(scenario, "hazard grid"):
        if region.files.get("terrain") is not None:
            cells = hazard_cells(forecast, region, antecedent=antecedent, cache_dir=prep.cache)
            end = start + dt.timedelta(hours=opts.planning_window_hours)
            try:
                road_cells = hazard_cells(forecast, region, antecedent=antecedent, start=_naive(start),
                                          end=_naive(end), cache_dir=prep.cache)
            except HazardCellsError as exc:  # the planning window lies outside the forecast
                notes.append(f"warning: no road is closed by the hazard ({exc})")
                road_cells = cells.copy()
                for name in ("stream_threatened", "landslide_triggered"):
                    road_cells[name] = road_cells[name] & False
        else:
            notes.append("the region has no terrain: every household of a commune at the evacuation "
                         "level must move and no road is closed by the hazard")
    with _stage(scenario, "evacuation plan"):
        plan = plan_evacuation(region, assessment, cells, opts, network=prep.network,
                               cache_dir=prep.cache / "roads", road_cells=road_cells)
    notes += [f"warning: {w}" for w in plan.warnings]
    relocation = None
    if _wants_relocation(scenario):
        with _stage(scenario, "permanent relocation"):
            susceptibility = cells["susceptibility"] if cells is not None else None
            relocation = permanent_relocation(region, susceptibility=susceptibility, network=prep.network,
                                              options=opts, terrain_cache_dir=prep.cache / "terrain")
        notes += [f"warning: {w}" for w in relocation.warnings]
    with _stage(scenario, "message previews"):
        previews = message_previews(region, assessment, now=start)
    notes.append("messages are previews only: nothing is queued and no SMS is sent")
    result = ScenarioResult(scenario=scenario, region=region, forecast=forecast, assessment=assessment,
                            cells=cells, plan=plan, relocation=relocation, previews=previews, summary={},
                            notes=notes, out=out, closures=prep.closures, antecedent=antecedent,
                            road_cells=road_cells)
    result.files = _output_names(scenario, report=report)
    result.summary = scenario_summary(result)
    return result


def message_previews(region: Region, assessment: xr.Dataset, *, now: dt.datetime,
                     settings: Any = None) -> pd.DataFrame:
    """What the alerts stage would queue for this assessment, as previews (never sent).

    Calls :func:`ewarn.alerts.service.preview` on a throw-away in-memory
    SQLite database (not the cached engine of ``Store.open``; no alert
    state: every warning is new), demo contacts included (nothing reaches a
    phone, nothing is written anywhere).

    Parameters
    ----------
    region : Region
    assessment : xarray.Dataset
    now : datetime
        Decision time (UTC).
    settings : AlertSettings, optional
        Default: the built-in ``[alerts]`` defaults.

    Returns
    -------
    pandas.DataFrame
        commune, commune_name, kind, hazard, level, recipient (masked),
        contact_name, language, unaccented, segments, encoding, text.
    """
    from sqlalchemy import create_engine
    from sqlalchemy.pool import StaticPool

    from ewarn.alerts.service import preview
    from ewarn.config import AlertSettings
    from ewarn.store import Store

    settings = settings or AlertSettings()
    store = Store(create_engine("sqlite://", poolclass=StaticPool))  # one connection: the tables live on
    try:
        store.ensure()
        frame = preview(store, region, assessment, settings, now=now, include_demo=True)
    finally:
        store.engine.dispose()
    return frame.drop(columns=["queued"], errors="ignore").reset_index(drop=True)


#: Files :func:`~ewarn.routing.plan.write_plan` writes beside plan.csv and routes.geojson.
PLAN_EXTRA_FILES = ("assisted.csv", "closures.csv", "communes.csv", "shelters.csv")


def _wants_relocation(scenario: Scenario) -> bool:
    """``options.relocation``, or relocation.csv among the outputs (the planner asked for the list)."""
    return scenario.options.relocation or "relocation.csv" in scenario.outputs.files


def _output_names(scenario: Scenario, *, report: bool = True) -> list[str]:
    """The files a run writes (sorted): the scenario's list, plan extras, relocation, summary.json."""
    files = set(scenario.outputs.files) | {"summary.json"}
    if _wants_relocation(scenario):
        files.update(("relocation.csv", "relocation_sites.csv"))
    if files & {"plan.csv", "routes.geojson"}:
        files.update(PLAN_EXTRA_FILES)
    if not report:
        files.discard("report.html")
    return sorted(files)


def default_out(scenario: Scenario) -> Path:
    """``<scenario folder>/out/<scenario file stem>/``."""
    return scenario.folder / "out" / scenario.file.stem


def run_scenario(path: Path | str, out: Path | str | None = None, *, cache_dir: Path | None = None,
                 write_report: bool = True) -> ScenarioResult:
    """Run a scenario file through the pipeline's chain and write its outputs.

    Parameters
    ----------
    path : Path or str
        The scenario's TOML file.
    out : Path or str, optional
        Output folder (replaced as a whole); default :func:`default_out`.
    cache_dir : Path, optional
        Cache of the demo region (``demo-region-<seed>/``) and of the
        terrain, commune-grid and road derivatives (``terrain/``,
        ``communegrid/``, ``roads/``: the layout of a workspace's ``cache``
        folder, so a workspace's cache can be shared); default
        :func:`default_cache_dir`.
    write_report : bool
        Write ``report.html`` (when the scenario's outputs list it).

    Returns
    -------
    ScenarioResult

    Raises
    ------
    ScenarioError
        The file is not a valid scenario, or its rain or changes do not fit
        the region (every problem names the key).
    ScenarioRunError
        A stage failed on the scenario's data (names the stage).
    ewarn.errors.WorkspaceError
        The output or cache folder cannot be written.
    """
    scenario = load_scenario(path)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = Path(out).expanduser() if out is not None else default_out(scenario)
    prep = prepare(scenario, root)
    result = execute(scenario, prep, target.resolve(), report=write_report)
    write_outputs(result, target, write_report=write_report)
    return result


# --------------------------------------------------------------------------- tables and summary


def _iso(values: pd.Series) -> pd.Series:
    return values.dt.strftime("%Y-%m-%dT%H:%M:%SZ").astype("string")


def _local(values: pd.Series) -> pd.Series:
    return values.dt.tz_convert(LOCAL_TZ).dt.strftime("%Y-%m-%d %H:%M %z").astype("string")


def levels_table(assessment: xr.Dataset, region: Region | None = None) -> pd.DataFrame:
    """One row per commune, most severe first: levels, onset and peak (UTC and local), rain maxima.

    Built on :func:`ewarn.hazard_models.assess.summarize`; times as ISO 8601
    UTC text with a ``*_local`` column in Asia/Ho_Chi_Minh; rain [mm] and
    indices rounded to 2 decimals (3 for ratios and shares).

    Parameters
    ----------
    assessment : xarray.Dataset
    region : Region, optional
        Adds ``households`` and ``people`` per commune (the region's households).

    Returns
    -------
    pandas.DataFrame
    """
    from ewarn.hazard_models.assess import summarize

    df = summarize(assessment)
    out = df.drop(columns=["onset_time", "peak_time"])
    pos = out.columns.get_loc("level_heavy_rain_max") + 1
    for i, name in enumerate(("onset_time", "peak_time")):
        out.insert(pos + 2 * i, name, _iso(df[name]))
        out.insert(pos + 2 * i + 1, f"{name}_local", _local(df[name]))
    for col in out.columns:
        if out[col].dtype.kind == "f":
            digits = 3 if col.endswith(("ratio_max", "share_max")) or col.startswith("probability") else 2
            out[col] = out[col].round(digits)
    if region is not None:
        hh = region.households.groupby(region.households["commune_code"].astype(str))
        codes = out["code"].astype(str)
        out["households"] = hh.size().reindex(codes).fillna(0).astype(np.int64).to_numpy()
        out["people"] = hh["people"].sum().reindex(codes).fillna(0).astype(np.int64).to_numpy()
    return out


def _clean(value: Any) -> Any:
    """JSON-ready, deterministic: numpy scalars to Python, floats rounded, NaN to None, keys as text."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return None if not math.isfinite(value) else round(value, SUMMARY_DECIMALS)
    if isinstance(value, pd.Timestamp | dt.datetime):
        ts = pd.Timestamp(value)
        return None if pd.isna(ts) else (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
                                          ).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def _level_counts(assessment: xr.Dataset, region: Region) -> dict[str, Any]:
    level = pd.Series(np.asarray(assessment["level_max"].values, dtype=np.int64),
                      index=np.asarray(assessment["commune"].values).astype(str))
    hh = region.households
    hh_level = level.reindex(hh["commune_code"].astype(str).to_numpy()).fillna(0).astype(np.int64).to_numpy()
    people = hh["people"].to_numpy(np.int64)
    comm = region.communes.set_index(region.communes["code"].astype(str))
    pop = comm["population"].reindex(level.index).fillna(0).astype(np.int64).to_numpy()
    from ewarn.hazard_models.levels import MAX_LEVEL

    levels = range(0, int(MAX_LEVEL) + 1)
    return {
        "communes_by_level": {str(lv): int((level.to_numpy() == lv).sum()) for lv in levels},
        "people_by_level": {str(lv): int(people[hh_level == lv].sum()) for lv in levels},
        "households_by_level": {str(lv): int((hh_level == lv).sum()) for lv in levels},
        "population_by_level": {str(lv): int(pop[level.to_numpy() == lv].sum()) for lv in levels},
        "communes": {code: int(v) for code, v in sorted(level.items())},
    }


def _plan_summary(plan: Any) -> dict[str, Any]:
    s = plan.summary()
    hh = plan.households
    mv = hh[hh["must_move"]]
    reasons = mv[mv["unassigned_reason"] != ""]
    by_people = reasons.groupby(reasons["unassigned_reason"].astype(str))["people"].sum()
    for code, item in s["unassigned_by_reason"].items():
        item["people"] = int(by_people.get(code, 0))
    unassigned = mv[mv["shelter_id"].isna()]
    s["unassigned_people"] = int(unassigned["people"].sum())
    unreach = unassigned["unassigned_reason"].astype(str).isin(UNREACHABLE_REASONS)
    s["unreachable"] = int(unreach.sum())
    s["unreachable_people"] = int(unassigned.loc[unreach, "people"].sum())
    clear = [v for v in s["clearance_time"].values() if v]
    s["latest_clearance"] = max(clear) if clear else None
    s["clearance_time"] = dict(sorted(s["clearance_time"].items()))
    sh = plan.shelters.sort_values("shelter_id", kind="stable")
    s["shelters"] = [{"shelter_id": str(r.shelter_id), "name": str(r.name), "kind": str(r.kind),
                      "capacity": int(r.capacity), "load": int(r.load), "households": int(r.households),
                      "usable": bool(r.usable), "excluded_reason": "" if pd.isna(r.excluded_reason)
                      else str(r.excluded_reason)}
                     for r in sh.itertuples(index=False)]
    s["reasons_to_move"] = dict(sorted(s["reasons_to_move"].items()))
    s["unassigned_by_reason"] = dict(sorted(s["unassigned_by_reason"].items()))
    return s


def scenario_summary(result: ScenarioResult) -> dict[str, Any]:
    """What summary.json holds: JSON-ready and deterministic (no run times, sorted keys, rounded floats).

    Keys: ``scenario`` (name, description, file name, seed), ``rain``,
    ``changes``, ``options``, ``levels`` (communes, households and people by
    level), ``plan`` (:meth:`EvacuationPlan.summary` plus people per
    unassigned reason, ``unreachable`` households, ``latest_clearance`` and
    the ``shelters`` with load and capacity), ``relocation`` (counts, or
    null), ``messages`` (previews by kind and language), ``notes``,
    ``outputs``, ``ewarn``.
    """
    sc = result.scenario
    plan = result.plan
    rel = result.relocation
    prev = result.previews
    region = result.region
    changes = sc.changes
    summary: dict[str, Any] = {
        "ewarn": _version(),
        "scenario": {"name": sc.name, "description": sc.scenario.description, "file": sc.file.name,
                     "seed": sc.scenario.seed},
        "region": {"name": region.name, "demo": sc.region.is_demo, "communes": len(region.communes),
                   "households": len(region.households), "people": int(region.households["people"].sum()),
                   "shelters": len(region.shelters),
                   "shelter_capacity": int(region.shelters["capacity"].sum())},
        "rain": {"kind": sc.rain.kind, "scale": sc.rain.scale, "shift_hours": sc.rain.shift_hours,
                 "shift_km": list(sc.rain.shift_km), "members": sc.rain.members,
                 "forecast_reference_time": str(result.forecast.attrs.get("forecast_reference_time", "")),
                 "steps": int(result.forecast.sizes["time"]),
                 "antecedent_mm": (float(result.antecedent.sum("time").mean())
                                   if result.antecedent is not None else 0.0)},
        "changes": {"mode": changes.mode, "close_ways": list(changes.close_ways),
                    "close_polygons": [p.name for p in changes.close_polygons],
                    "shelters": [{"action": s.action, "shelter_id": s.shelter_id} for s in changes.shelters],
                    "settlements": [{"name": s.name, "households": s.households}
                                    for s in changes.settlements]},
        "options": sc.options.model_dump(),
        "levels": _level_counts(result.assessment, region),
        "plan": _plan_summary(plan) if plan is not None else None,
        "relocation": rel.summary() if rel is not None else None,
        "messages": {
            "count": len(prev),
            "segments": int(prev["segments"].sum()) if len(prev) else 0,
            "by_kind": {str(k): int(v) for k, v in sorted(prev["kind"].value_counts().items())}
            if len(prev) else {},
            "communes": sorted({str(c) for c in prev["commune"] if str(c)}) if len(prev) else [],
        },
        "notes": list(result.notes),
        "outputs": sorted(result.files),
    }
    return _clean(summary)


def summary_text(summary: dict[str, Any]) -> str:
    """summary.json's text: sorted keys, 2-space indent, UTF-8 characters kept, final newline."""
    return json.dumps(summary, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


# --------------------------------------------------------------------------- writing


def write_outputs(result: ScenarioResult, out: Path | str | None = None, *,
                  write_report: bool = True) -> Path:
    """Write a run's outputs into ``out`` (default ``result.out``), replaced as a whole.

    Every file is written into a temporary folder beside ``out``; the folder
    is then swapped in, so a reader never sees a half-written output folder
    and a failure keeps the previous one.

    Returns
    -------
    Path
        The output folder (absolute).

    Raises
    ------
    ewarn.errors.WorkspaceError
        The folder cannot be written (the previous outputs are kept).
    """
    from ewarn.hazard_models.assess import write_assessment
    from ewarn.routing.plan import write_plan, write_relocation

    folder = Path(out if out is not None else result.out).expanduser().resolve()
    files = set(result.files or _output_names(result.scenario, report=write_report))
    parent = folder.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=parent))
    except OSError as exc:
        raise WorkspaceError(f"cannot write the scenario outputs to {folder}: {exc.strerror}; choose a "
                             "writable folder (--out)") from None
    try:
        if "risk.nc" in files:
            write_assessment(result.assessment, tmp / "risk.nc")
        if "levels.csv" in files:
            levels_table(result.assessment, result.region).to_csv(tmp / "levels.csv", index=False,
                                                                  lineterminator="\n")
        if result.plan is not None and files & {"plan.csv", "routes.geojson"}:
            sub = write_plan(result.plan, tmp / "_plan")
            for f in sorted(sub.iterdir()):
                if f.name in files and f.name != "summary.json":
                    os.replace(f, tmp / f.name)
            shutil.rmtree(sub)
        if result.relocation is not None and "relocation.csv" in files:
            sub = write_relocation(result.relocation, tmp / "_relocation")
            os.replace(sub / "relocation.csv", tmp / "relocation.csv")
            os.replace(sub / "sites.csv", tmp / "relocation_sites.csv")  # communes.csv is the plan's
            shutil.rmtree(sub)
        (tmp / "summary.json").write_text(summary_text(result.summary), encoding="utf-8", newline="\n")
        if write_report and "report.html" in files:
            from ewarn.scenarios import report

            report.write_report(result, tmp / "report.html")
        old = None
        if folder.exists():
            old = parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise WorkspaceError(f"cannot write the scenario outputs to {folder}: {exc.strerror or exc}; "
                             "free some space or choose a writable folder (the previous outputs are kept)"
                             ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result.out = folder
    return folder
