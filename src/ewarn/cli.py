"""The ``ewarn`` command.

Thin: every subcommand parses its options, calls one function of the package
and prints the result. Errors meant for people (:class:`ewarn.errors.EwarnError`)
are printed without a traceback and exit with status 2 (1 for validation
findings); set ``EWARN_DEBUG=1`` to see tracebacks of unexpected errors.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ewarn import __version__
from ewarn.config import LOCAL_TZ, Workspace, init_workspace
from ewarn.errors import EwarnError, Problem, ValidationError
from ewarn.log import setup_logging

console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
    name="ewarn",
    help="Flash-flood and landslide early warning and evacuation planning for Vietnam.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
region_app = typer.Typer(help="Region data: communes, terrain, households, shelters, contacts, roads.",
                         no_args_is_help=True)
forecasts_app = typer.Typer(help="The forecast archive.", no_args_is_help=True)
risk_app = typer.Typer(help="Risk assessments per commune.", no_args_is_help=True)
app.add_typer(region_app, name="region")
app.add_typer(forecasts_app, name="forecasts")
alerts_app = typer.Typer(help="SMS warnings: preview, send, delivery status.", no_args_is_help=True)
contacts_app = typer.Typer(help="The officials and operators who receive warnings.", no_args_is_help=True)
app.add_typer(risk_app, name="risk")
app.add_typer(alerts_app, name="alerts")
app.add_typer(contacts_app, name="contacts")
scenario_app = typer.Typer(help="Planners' what-if scenarios: run, compare, sweep the rain.",
                           no_args_is_help=True)
app.add_typer(scenario_app, name="scenario")

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", help="workspace folder [default: $EWARN_WORKSPACE or ./ewarn-data]",
                 show_default=False),
]


def _ws(path: Path | None) -> Workspace:
    ws = Workspace.open(path)
    setup_logging(ws.settings.workspace.log_level)
    return ws


def _local(t: dt.datetime, fmt: str = "%Y-%m-%d %H:%M", *, offset: bool = True) -> str:
    """A stored (UTC) time as people read it: Asia/Ho_Chi_Minh (with the offset unless told not)."""
    from zoneinfo import ZoneInfo

    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(ZoneInfo(LOCAL_TZ)).strftime(fmt) + (" (UTC+7)" if offset else "")


def _parse_cycle(value: str | None) -> dt.datetime | None:
    """``2024-09-07T12``, ``2024090712``, ``2024-09-07T12:00Z`` → aware UTC datetime."""
    if value is None:
        return None
    text = value.strip().upper().removesuffix("Z")
    for fmt in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H", "%Y%m%dT%H", "%Y%m%d%H",
                "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            continue
    raise typer.BadParameter(f"cycle {value!r} is not a time; use e.g. 2024-09-07T12 (UTC)")


def _print_problems(problems: list[Problem]) -> None:
    for p in problems:
        style = "red" if p.severity == "error" else "yellow"
        err_console.print(f"[{style}]{p.severity}[/]: {escape(str(p))}", highlight=False)


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="print the version and exit")] = False,
) -> None:
    if version:
        console.print(f"ewarn {__version__}")
        raise typer.Exit()


@app.command()
def init(
    directory: Annotated[Path | None, typer.Argument(help="workspace folder to create")] = None,
) -> None:
    """Create a workspace: ewarn.toml, folders and the database (idempotent)."""
    from ewarn.config import resolve_workspace

    ws = init_workspace(resolve_workspace(directory))
    console.print(f"workspace ready: [bold]{ws.root}[/]")
    console.print(f"  settings  {ws.root / 'ewarn.toml'}")
    console.print(f"  database  {ws.database_url}")
    console.print(f"  region    {ws.region_dir} (import one with 'ewarn region import')")


@region_app.command("import")
def region_import(
    communes: Annotated[Path, typer.Option(help="communes: GeoJSON, GeoPackage or shapefile")],
    code_field: Annotated[str, typer.Option(help="field holding the official commune code")] = "code",
    name_field: Annotated[str, typer.Option(help="field holding the commune name")] = "name",
    population_field: Annotated[str, typer.Option(help="field holding the population")] = "population",
    province_field: Annotated[str | None, typer.Option(help="field holding the province name")] = None,
    province: Annotated[str | None, typer.Option(help="province of every commune (if no field)")] = None,
    layer: Annotated[str | None, typer.Option(help="layer of a GeoPackage")] = None,
    terrain: Annotated[Path | None, typer.Option(help="elevation: NetCDF or GeoTIFF")] = None,
    households: Annotated[Path | None, typer.Option(help="households.csv")] = None,
    shelters: Annotated[Path | None, typer.Option(help="shelters.csv")] = None,
    contacts: Annotated[Path | None, typer.Option(help="contacts.csv")] = None,
    roads: Annotated[Path | None, typer.Option(help="roads: .osm, .osm.bz2 or .graphml")] = None,
    fetch_roads: Annotated[bool, typer.Option(help="fetch roads from OpenStreetMap once (network)")] = False,
    name: Annotated[str | None, typer.Option(help="region name")] = None,
    dest: Annotated[Path | None, typer.Option(help="region folder [default: the workspace's]")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing region folder")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Build a region folder from real files (all-or-nothing)."""
    from ewarn.region import import_region

    if dest is None:
        dest = Workspace.open(workspace, create=True).region_dir
    with console.status("importing region…"):
        region = import_region(
            dest, communes=communes, code_field=code_field, name_field=name_field,
            population_field=population_field, province_field=province_field, province=province,
            terrain=terrain, households=households, shelters=shelters, contacts=contacts,
            roads=roads, fetch_roads=fetch_roads, name=name, overwrite=overwrite, layer=layer,
        )
    _print_problems(region.warnings)
    console.print(f"region [bold]{region.name}[/] imported into {region.folder}: "
                  f"{len(region.communes)} communes, {len(region.households)} households, "
                  f"{len(region.shelters)} shelters, {len(region.contacts)} contacts")


@region_app.command("validate")
def region_validate(
    folder: Annotated[Path | None, typer.Argument(help="region folder [default: the workspace's]")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Check a region folder and list every problem (exit 1 if any error)."""
    from ewarn.region import validate_region

    folder = folder or Workspace.open(workspace).region_dir
    problems = validate_region(folder)
    _print_problems(problems)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        err_console.print(f"[red]{len(errors)} error(s)[/] in {folder}")
        raise typer.Exit(1)
    console.print(f"[green]region {folder} is valid[/] ({len(problems)} warning(s))")


@region_app.command("show")
def region_show(
    folder: Annotated[Path | None, typer.Argument(help="region folder [default: the workspace's]")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Summarise a region: communes with their people, shelters and contacts."""
    import pandas as pd

    from ewarn.region import Region

    region = Region.load(folder or Workspace.open(workspace).region_dir)
    c = region.communes
    hh = region.households.groupby("commune_code").agg(
        households=("household_id", "size"), people=("people", "sum"),
        vulnerable=("vulnerable", "sum"))
    sh_codes = region.commune_of(region.shelters["lon"].to_numpy(), region.shelters["lat"].to_numpy())
    cap = pd.Series(region.shelters["capacity"].to_numpy(), index=sh_codes).groupby(level=0).sum()
    ct = region.contacts.groupby("commune_code").size()
    table = Table(title=f"{region.name} — {len(c)} communes", show_lines=False)
    for col in ("code", "commune", "population", "legacy province", "households", "people",
                "vulnerable", "shelter places", "contacts"):
        table.add_column(col, justify="right" if col not in ("commune", "legacy province") else "left")
    for row in c.sort_values("code").itertuples():
        h = hh.loc[row.code] if row.code in hh.index else None
        table.add_row(
            row.code, row.name, f"{int(row.population):,}", str(row.legacy_province),
            f"{int(h.households):,}" if h is not None else "0",
            f"{int(h.people):,}" if h is not None else "0",
            f"{int(h.vulnerable):,}" if h is not None else "0",
            f"{int(cap.get(row.code, 0)):,}", str(int(ct.get(row.code, 0))),
        )
    console.print(table)
    b = region.bounds
    console.print(f"bounds {b[0]:.3f}–{b[2]:.3f} E, {b[1]:.3f}–{b[3]:.3f} N; "
                  f"terrain: {'yes' if region.files.get('terrain') else 'no'}; "
                  f"roads: {region.files['roads'].name if region.files.get('roads') else 'none'}")
    _print_problems(region.warnings)


@app.command()
def demo(
    workspace: WorkspaceOpt = None,
    seed: Annotated[int, typer.Option(help="random seed of the demo region and storm")] = 2024,
) -> None:
    """Build the embedded demo region and Yagi-like storm, and run one cycle on it.

    No network, no credentials; the demo never sends a real SMS.
    """
    from ewarn import demo as demo_mod
    from ewarn.config import resolve_workspace
    from ewarn.pipeline import run_cycle
    from ewarn.region import Region

    root = resolve_workspace(workspace or Path("ewarn-demo"))
    ws = init_workspace(root)
    setup_logging("WARNING")  # the demo is read by a person: the summary, not the log
    with console.status("building the demo region (Bảo Yên – Phúc Khánh, Lào Cai)…"):
        demo_mod.build_demo_region(ws.region_dir, seed, overwrite=True)
        region = Region.load(ws.region_dir)
    console.print(f"region: {region.name}: {len(region.communes)} communes, "
                  f"{len(region.households):,} households "
                  f"({int(region.households['people'].sum()):,} people), "
                  f"{len(region.shelters)} shelters, {len(region.contacts)} contacts")
    storm_path = ws.path("incoming", f"demo-storm-{demo_mod.DEMO_CYCLE:%Y%m%dT%H}.nc")
    with console.status("generating the demo storm forecast…"):
        demo_mod.build_demo_storm(region, storm_path, seed)
    with console.status("running the forecast cycle…") as status:
        result = run_cycle(
            ws, demo_mod.DEMO_SOURCE, storm_path, region=region,
            now=demo_mod.DEMO_CYCLE + dt.timedelta(hours=3),
            progress=lambda step: status.update(f"cycle: {step}…"),
        )
    _print_cycle(result)
    if result.status == "unchanged":
        import xarray as xr

        console.print("  this cycle was already run to the end: nothing re-assessed, nothing re-sent "
                      "(see 'ewarn risk show', 'ewarn alerts status', 'ewarn plan')")
        with xr.open_dataset(ws.path("assessments", result.source, f"{result.cycle:%Y%m%dT%H}.nc")) as ds:
            _print_risk(ds.load())
    if "assess" in result.results:
        _print_risk(result.results["assess"])
    if "alerts" in result.results:
        _print_alerts(result, ws)
    if "plan" in result.results:
        _print_plan(result.results["plan"], result.outputs["plan"])
    _demo_scenario(ws)
    console.print(f"\nworkspace: [bold]{ws.root}[/]")


def _demo_scenario(ws: Workspace) -> None:
    """End the demo with the planners' view: the yagi-2024 scenario and its HTML report."""
    from ewarn.scenarios.runner import run_scenario

    candidates = [Path.cwd() / "scenarios" / "yagi-2024.toml",
                  Path(__file__).resolve().parents[2] / "scenarios" / "yagi-2024.toml"]
    scenario = next((c for c in candidates if c.exists()), None)
    if scenario is None:
        console.print("\n(scenario yagi-2024.toml not found beside the sources: the planners' report is "
                      "skipped; run 'ewarn scenario run FILE')")
        return
    with console.status(f"running the planners' scenario {scenario.name}…"):
        result = run_scenario(scenario, ws.path("reports", scenario.stem), cache_dir=ws.path("cache"))
    console.print(f"\nScenario {escape(result.scenario.name)}: [bold]{result.out / 'report.html'}[/] "
                  "(HTML report with the map, rain, clearance and shelters; opens offline)")


def _print_plan(plan, folder: Path) -> None:
    """The evacuation plan in a few lines: who moves, who is placed, how long it takes."""
    s = plan.summary()
    tt = s["travel_time_minutes"]
    opt = s["options"]
    console.print(f"\nSơ tán / evacuation ({opt['mode']}, communes at level ≥ {opt['level']}, hazard zones "
                  f"only): {s['households_to_move']:,} households ({s['people_to_move']:,} people) must move;"
                  " "
                  f"{s['assigned']:,} placed in {s['shelters_used']} shelters "
                  f"(over capacity: {s['shelters_over_capacity']}), {s['late']} late")
    if tt.get("mean") is not None:
        console.print(f"  travel time: mean {tt['mean']:.0f} min, 95 % {tt['p95']:.0f} min, "
                      f"max {tt['max']:.0f} min; {s['assisted_people']} people need assisted evacuation")
    for reason, v in s["unassigned_by_reason"].items():
        console.print(f"  [yellow]not placed[/]: {v['households']} household(s): {escape(v['vi'] or reason)}")
    console.print(f"  plan: {folder / 'plan.csv'}, routes: {folder / 'routes.geojson'}")


def _print_alerts(result, ws: Workspace) -> None:
    """What the alerts stage decided and sent (the demo's file gateway writes outbox/sent.jsonl)."""
    batch = result.results["alerts"]
    c = result.counts
    kinds: dict[str, int] = {}
    for n in batch.notices:
        kinds[n.kind] = kinds.get(n.kind, 0) + 1
    what = ", ".join(f"{v} {k}" for k, v in sorted(kinds.items())) or "none"
    console.print(f"\nSMS: {len(batch.notices)} notice(s) ({what}), {len(batch.summaries)} province "
                  f"summary(ies) → {c.get('messages_queued', 0)} message(s) queued, "
                  f"{c.get('messages_sent', 0)} sent through gateway '{ws.settings.alerts.gateway}'")
    rows = batch.rows
    if not rows.empty:
        first = rows.iloc[0]
        console.print(f"  e.g. to {first['contact_name']} ({first['role']}), "
                      f"{first['segments']} SMS {first['encoding']}:\n  [italic]{escape(first['body'])}[/]")
        flat = rows[rows["unaccented"].astype(bool)]
        if not flat.empty:
            console.print(f"  không dấu, {flat.iloc[0]['segments']} SMS GSM-7:\n"
                          f"  [italic]{escape(flat.iloc[0]['body'])}[/]")
    if result.outputs.get("cap"):
        feed = result.outputs["cap"] / "feed.atom"
        console.print(f"  CAP 1.2: {c.get('cap_alerts', 0)} alert(s), feed {feed}")


def _print_cycle(result) -> None:
    import numpy as np
    import xarray as xr

    console.print(f"cycle {result.source} {_local(result.cycle)}: "
                  f"[green]{result.status}[/] ({' → '.join(result.steps)})")
    archived = result.results.get("ingest")
    if archived is not None:
        with xr.open_dataset(archived.path) as ds:
            total = ds["precipitation"].sum("time")
            if "member" in total.dims:
                total = total.mean("member")
            hourly_max = float(ds["precipitation"].max())
            console.print(f"  forecast: {archived.status}, {ds.sizes['time']} steps × "
                          f"{ds.sizes['latitude']}×{ds.sizes['longitude']} cells, "
                          f"max total {float(np.nanmax(total.values)):.0f} mm, "
                          f"max interval rain {hourly_max:.0f} mm")
    for name, path in result.outputs.items():
        console.print(f"  {name:<12} {path}")


@app.command()
def ingest(
    source: Annotated[str, typer.Argument(help="source profile: demo, gfs, ecmwf-ifs, ecmwf-ens, "
                                               "cf-netcdf, wrf, or one of ewarn.toml")],
    path_or_url: Annotated[str, typer.Argument(help="file, glob, folder or URL")],
    cycle: Annotated[str | None, typer.Option(help="reference time, UTC (e.g. 2024-09-07T12)")] = None,
    force: Annotated[bool, typer.Option(help="re-ingest a cycle already archived")] = False,
    as_of: Annotated[str | None, typer.Option(
        help="judge staleness as if it were this time, UTC (to replay a past event)")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Read, normalize, validate and archive one forecast."""
    from ewarn import forecasts
    from ewarn.region import Region

    ws = _ws(workspace)
    bounds = Region.load(ws.region_dir).bounds if ws.region_dir.exists() else None
    with console.status(f"ingesting {path_or_url}…"):
        a = forecasts.ingest(ws, source, path_or_url, cycle=_parse_cycle(cycle), force=force,
                             bounds=bounds, now=_parse_cycle(as_of))
    _print_problems(a.warnings)
    console.print(f"{a.status}: {a.source} cycle {a.cycle:%Y-%m-%dT%H}Z → {a.path}\n"
                  f"  valid {_local(a.valid_from)} – {_local(a.valid_to)}, {a.members or 1} member(s)")


@forecasts_app.command("list")
def forecasts_list(
    source: Annotated[str | None, typer.Option(help="only this source")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """List the archived forecast cycles."""
    from ewarn import forecasts

    ws = _ws(workspace)
    items = forecasts.list_archived(ws, source)
    table = Table(title=f"{len(items)} archived forecast(s), files in {ws.path('forecasts')}"
                        "/SOURCE/CYCLE.nc; cycles in UTC, validity in local time (UTC+7)")
    for col in ("source", "cycle", "valid from", "valid to", "members", "status"):
        table.add_column(col, no_wrap=col in ("source", "cycle"))
    for a in sorted(items, key=lambda a: (a.source, a.cycle)):
        table.add_row(a.source, f"{a.cycle:%Y-%m-%dT%H}Z", _local(a.valid_from, "%Y-%m-%d %H:%M"),
                      _local(a.valid_to, "%Y-%m-%d %H:%M"), str(a.members or 1), a.status)
    console.print(table)


@forecasts_app.command("show")
def forecasts_show(
    source: Annotated[str, typer.Argument(help="source profile name")],
    cycle: Annotated[str | None, typer.Option(help="cycle, UTC [default: latest]")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Show one archived forecast: grid, steps and rain totals."""
    from ewarn import forecasts

    ds = forecasts.load_archived(_ws(workspace), source, _parse_cycle(cycle))
    console.print(ds)
    total = ds["precipitation"].sum("time")
    console.print(f"total rain over the forecast: max {float(total.max()):.1f} mm, "
                  f"mean {float(total.mean()):.1f} mm")


@app.command()
def assess(
    source: Annotated[str, typer.Argument(help="source profile of an archived forecast")],
    cycle: Annotated[str | None, typer.Argument(help="cycle, UTC, e.g. 2024-09-07T12")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Assess an archived forecast cycle: hazard indices and levels per commune."""
    from ewarn.pipeline import run_cycle

    ws = _ws(workspace)
    with console.status("assessing…") as status:
        result = run_cycle(ws, source, None, cycle=_parse_cycle(cycle), stages=("ingest", "assess"),
                           progress=lambda step: status.update(f"{step}…"))
    _print_cycle(result)
    _print_risk(result.results["assess"])


def _print_risk(ds, *, min_level: int = 1, limit: int = 30) -> None:
    """The communes at level ≥ min_level, highest level and earliest onset first."""
    import pandas as pd

    from ewarn.hazard_models.assess import summarize
    from ewarn.hazard_models.levels import LEVEL_DISCLAIMER, LEVELS

    df = summarize(ds)
    at_risk = df[df["level_max"] >= min_level]
    ensemble = bool(df["probability_level_ge2"].notna().any())
    table = Table(title=f"{len(at_risk)} of {len(df)} communes at level ≥ {min_level} "
                        "(times: ngày/tháng giờ, UTC+7)")
    cols = ["level", "commune", "code", "onset", "peak", "1 h max [mm]", "24 h max [mm]", "FFG ratio"]
    for col in cols + (["P(level ≥ 2)"] if ensemble else []):
        table.add_column(col, justify="left" if col in ("level", "commune", "onset", "peak") else "right")

    def when(t) -> str:
        if t is None or pd.isna(t):
            return "–"
        return _local(pd.Timestamp(t).to_pydatetime(), "%d/%m %H:%M", offset=False)

    def num(v, fmt: str) -> str:
        return "–" if v is None or pd.isna(v) else format(v, fmt)

    for r in at_risk.head(limit).itertuples():
        lv = LEVELS[int(r.level_max)]
        cells = [f"[on {lv.colour_hex}] [/] {lv.name_vi}", escape(str(r.name)), str(r.code),
                 when(r.onset_time), when(r.peak_time), num(r.rain_1h_max, ".0f"),
                 num(r.rain_24h_max, ".0f"), num(r.ffg_ratio_max, ".2f")]
        table.add_row(*cells, *([num(r.probability_level_ge2, ".0%")] if ensemble else []))
    console.print(table)
    if len(at_risk) > limit:
        console.print(f"… and {len(at_risk) - limit} more")
    console.print(escape(LEVEL_DISCLAIMER["vi"]), style="dim")


def _assessment_path(ws: Workspace, source: str | None, cycle: str | None) -> tuple[Path, str]:
    """The assessment file of (source, cycle), or the latest one; and a label for people."""
    import pandas as pd

    from ewarn.hazard_models.assess import latest_assessment
    from ewarn.store import Store

    want = _parse_cycle(cycle)
    if want is not None:
        if source is None:
            raise EwarnError("--cycle needs --source (e.g. --source gfs --cycle 2024-09-07T12)")
        path = ws.path("assessments", source, f"{want:%Y%m%dT%H}.nc")
        if not path.exists():
            raise EwarnError(f"no assessment of {source} cycle {want:%Y-%m-%dT%H}Z ({path} is absent); "
                             f"run 'ewarn assess {source} {want:%Y-%m-%dT%H}'")
        return path, f"{source} cycle {_local(want)}"
    rows = latest_assessment(Store.open(ws.database_url), source)
    if rows.empty:
        raise EwarnError("no assessment yet; run a cycle first (ewarn assess SOURCE, or ewarn demo)")
    when = pd.Timestamp(rows["cycle"].iloc[0]).to_pydatetime()
    return Path(rows["path"].iloc[0]), f"{rows['source'].iloc[0]} cycle {_local(when)}"


@risk_app.command("show")
def risk_show(
    source: Annotated[str | None, typer.Option(help="only this source [default: latest of any]")] = None,
    cycle: Annotated[str | None, typer.Option(help="cycle, UTC [default: latest]")] = None,
    min_level: Annotated[int, typer.Option(help="lowest level listed")] = 1,
    workspace: WorkspaceOpt = None,
) -> None:
    """Communes at risk in the latest assessment, by level and onset (local time)."""
    import xarray as xr


    ws = _ws(workspace)
    path, label = _assessment_path(ws, source, cycle)
    with xr.open_dataset(path) as ds:
        console.print(f"assessment {label}: {path}")
        _print_risk(ds.load(), min_level=min_level)


@app.command()
def plan(
    source: Annotated[str | None, typer.Option(help="only this source [default: latest of any]")] = None,
    cycle: Annotated[str | None, typer.Option(help="cycle, UTC [default: latest]")] = None,
    mode: Annotated[str | None, typer.Option(help="walk | motorbike | car [default: [routing] mode]")] = None,
    level: Annotated[int | None, typer.Option(
        help="communes at this level or above evacuate their hazard zones [default: [routing] "
             "evacuation_level]")] = None,
    now: Annotated[str | None, typer.Option(
        help="plan from this time, UTC (to replay a past event) [default: the clock]")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Evacuation plan of an assessed cycle: who moves, to which shelter, by which road, when."""
    import pandas as pd
    import xarray as xr

    from ewarn import forecasts
    from ewarn.pipeline import plan_cycle
    from ewarn.region import Region

    ws = _ws(workspace)
    path, label = _assessment_path(ws, source, cycle)
    overrides = {k: v for k, v in (("mode", mode), ("level", level)) if v is not None}
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    src = str(ds.attrs.get("source", source or ""))
    ref = pd.Timestamp(ds.attrs["forecast_reference_time"])
    cyc = (ref.tz_convert("UTC") if ref.tzinfo else ref.tz_localize("UTC")).to_pydatetime()
    before = forecasts.antecedent(ws, src, until=cyc, days=7)
    ante = before.rain if before.rain.size > 0 and bool(before.rain.notnull().any()) else None
    with console.status(f"planning the evacuation for {label}…"):
        result, folder = plan_cycle(ws, Region.load(ws.region_dir), src, cyc, ds, now=_now_option(now),
                                    antecedent=ante, **overrides)
    _print_plan(result, folder)


@app.command()
def relocation(
    sites: Annotated[Path | None, typer.Option(
        help="resettlement sites CSV (site_id, name, lon, lat, capacity) [default: the region's shelters "
             "of kind 'resettlement']")] = None,
    mode: Annotated[str | None, typer.Option(help="walk | motorbike | car [default: [routing] mode]")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Households on very-high landslide susceptibility ground, and the resettlement site for each."""
    import pandas as pd

    from ewarn.region import Region
    from ewarn.routing.plan import PlanOptions, permanent_relocation, write_relocation

    ws = _ws(workspace)
    table = None
    if sites is not None:
        if not sites.exists():
            raise EwarnError(f"{sites}: file not found; give a CSV with site_id, name, lon, lat, capacity")
        table = pd.read_csv(sites, dtype={"site_id": str, "name": str})
    opts = PlanOptions.from_settings(ws.settings.routing, **({"mode": mode} if mode else {}))
    with console.status("finding the households on very-high susceptibility ground…"):
        result = permanent_relocation(Region.load(ws.region_dir), sites=table, options=opts,
                                      cache_dir=ws.path("cache", "roads"),
                                      terrain_cache_dir=ws.path("cache", "terrain"))
    folder = write_relocation(result, ws.path("plans", "relocation"))
    s = result.summary()
    console.print_json(data={k: v for k, v in s.items() if not isinstance(v, list)})
    console.print(f"relocation plan: {folder}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on [default: [service] host]")] = None,
    port: Annotated[int | None, typer.Option(help="port [default: [service] port]")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Run the service: scheduled forecast cycles, SMS dispatch, watchdog, status page and CAP feed.

    One per workspace (a file lock); SIGTERM or Ctrl-C finishes the job in progress and stops.
    """
    import signal

    import uvicorn

    from ewarn.scheduler import ServiceLock, build_scheduler, job_specs, limit_malloc_arenas, schedule_jobs
    from ewarn.store import Store
    from ewarn.web import create_app

    ws = _ws(workspace)
    svc = ws.settings.service
    lock = ServiceLock(ws.root).acquire()
    limit_malloc_arenas()  # before the worker threads start: keeps the service's memory flat
    try:
        Store.open(ws.database_url).ensure()
        specs = job_specs(ws)
        scheduler = build_scheduler(ws)
        scheduler.start(paused=True)
        try:
            outcome = schedule_jobs(scheduler, specs)
            host, port = host or svc.host, svc.port if port is None else port
            console.print(f"ewarn serve: workspace {ws.root}, http://{host}:{port}/ (pid {os.getpid()})")
            for spec in specs:
                job = scheduler.get_job(spec.id)
                nxt = _local(job.next_run_time) if job and job.next_run_time else "–"
                console.print(f"  job {spec.id:<32} {outcome.get(spec.id, ''):<6} next {nxt}  ({spec.name})")
            if not svc.sources:
                console.print("  [yellow]no forecast source is scheduled[/]: list them in [service] sources")
            scheduler.resume()
            config = uvicorn.Config(create_app(ws), host=host, port=port, log_level="warning",
                                    proxy_headers=True, access_log=False)
            # uvicorn stops on SIGINT/SIGTERM, then raises the signal again to whatever handler was
            # there before: make that a no-op so the scheduler below finishes its job and stops cleanly
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: None)
            uvicorn.Server(config).run()  # returns on SIGINT / SIGTERM
        finally:
            console.print("ewarn serve: stopping (finishing the job in progress)…")
            scheduler.shutdown(wait=True)
    finally:
        lock.release()
    console.print("ewarn serve: stopped")


@app.command("run-cycle")
def run_cycle_cmd(
    source: Annotated[str, typer.Argument(help="forecast source profile")],
    path_or_url: Annotated[str | None, typer.Argument(
        help="file, glob, folder or URL [default: the source's path, else the archived cycle]")] = None,
    cycle: Annotated[str | None, typer.Option(help="cycle, UTC [default: the newest]")] = None,
    force: Annotated[bool, typer.Option(help="run again a cycle that was already run to the end")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Run one forecast cycle end to end: ingest → assess → alerts → plan (what the service does)."""
    from ewarn.pipeline import run_cycle

    ws = _ws(workspace)
    profile = ws.settings.forecasts.sources.get(source)
    target = path_or_url or (profile.path if profile is not None and profile.path else None)
    if target and "://" not in target and not Path(target).is_absolute() and not Path(target).exists():
        target = str(ws.root / target)
    with console.status(f"running the cycle of {source}…") as status:
        result = run_cycle(ws, source, target, cycle=_parse_cycle(cycle), force=force,
                           progress=lambda step: status.update(f"cycle: {step}…"))
    _print_cycle(result)
    console.print("  " + ", ".join(f"{k} {v}" for k, v in result.counts.items()))


@app.command()
def status(workspace: WorkspaceOpt = None) -> None:
    """The service's state: latest cycles, last runs, outbox, open incidents."""
    import pandas as pd
    from sqlalchemy import select

    from ewarn.store import Store, runs
    from ewarn.watchdog import open_incidents

    ws = _ws(workspace)
    store = Store.open(ws.database_url)
    store.ensure()
    incidents = open_incidents(store)
    if incidents.empty:
        console.print("[green]no open incident[/]")
    for r in incidents.itertuples():
        console.print(f"[red]INCIDENT {r.id}[/] since {_local(pd.Timestamp(r.opened_at).to_pydatetime())}: "
                      f"{escape(r.message)}" + (f" (acknowledged by {escape(r.acknowledged_by)})"
                                                 if r.acknowledged_by else ""))
    with store.engine.connect() as conn:
        rows = conn.execute(select(runs).order_by(runs.c.id.desc()).limit(10)).mappings().all()
    table = Table(title="last runs (UTC+7)")
    for col in ("id", "job", "source", "cycle", "started", "status", "step", "message"):
        table.add_column(col, overflow="fold")

    def when(t) -> str:
        return "–" if t is None else _local(pd.Timestamp(t).to_pydatetime(), "%d/%m %H:%M", offset=False)

    for r in rows:
        table.add_row(str(r["id"]), r["job"], r["source"] or "", when(r["cycle"]), when(r["started_at"]),
                      r["status"], r["step"] or "", escape((r["message"] or "")[:120]))
    console.print(table)
    _print_outbox_counts(store)


@scenario_app.command("run")
def scenario_run(
    file: Annotated[Path, typer.Argument(help="scenario file (TOML), e.g. scenarios/yagi-2024.toml")],
    out: Annotated[Path | None, typer.Option(
        help="output folder [default: out/NAME beside the file]")] = None,
) -> None:
    """Run a scenario: levels, evacuation plan, message previews (never sent) and an HTML report."""
    from ewarn.scenarios.runner import run_scenario

    setup_logging("WARNING")
    with console.status(f"running scenario {file}…"):
        result = run_scenario(file, out)
    console.print(f"[bold]{escape(result.scenario.name)}[/]")
    _print_risk(result.assessment)
    if result.plan is not None:
        _print_plan(result.plan, result.out)
    rel = result.summary.get("relocation")
    if rel:
        console.print(f"relocation: {rel.get('households', 0)} household(s) on very-high susceptibility "
                      f"ground, {rel.get('assigned', 0)} assigned to a resettlement site")
    msgs = result.summary.get("messages", {})
    console.print(f"SMS previews (not sent): {msgs.get('count', 0)} message(s), {msgs.get('segments', 0)} "
                  "segment(s)")
    for note in result.notes:
        console.print(f"  note: {escape(note)}", style="dim")
    console.print(f"outputs: {result.out}")
    report = result.out / "report.html"
    if report.exists():
        console.print(f"report:  [bold]{report}[/] (opens offline in any browser)")


@scenario_app.command("compare")
def scenario_compare(
    files: Annotated[list[Path], typer.Argument(help="scenario files (TOML) or output folders; the first "
                                                     "is the reference")],
    html: Annotated[Path | None, typer.Option(help="also write the table as an HTML page")] = None,
    language: Annotated[str, typer.Option(help="vi | en")] = "vi",
) -> None:
    """Side-by-side summary metrics of several scenarios, with the differences from the first."""
    from ewarn.scenarios.compare import compare, compare_text, labelled
    from ewarn.scenarios.report import render_comparison

    setup_logging("WARNING")
    with console.status("running the scenarios…"):
        df = compare(files)
    console.print(escape(compare_text(df, language)), highlight=False)
    if html is not None:
        tmp = html.with_name(f".{html.name}.tmp")
        tmp.write_text(render_comparison(labelled(df, language), language=language), encoding="utf-8")
        os.replace(tmp, html)
        console.print(f"comparison: {html}")


@scenario_app.command("sweep")
def scenario_sweep(
    file: Annotated[Path, typer.Argument(help="scenario file (TOML)")],
    rain_scale: Annotated[str, typer.Option(
        help="START:STOP[:STEP] (stop included) or a,b,c")] = "0.5:2.0:0.25",
) -> None:
    """Run a scenario at several rain scales: levels and people to move, and where the plan breaks."""
    from ewarn.scenarios.compare import parse_scales, sweep, sweep_text

    setup_logging("WARNING")
    scales = parse_scales(rain_scale)
    with console.status("sweeping…") as status:
        df = sweep(file, scales, progress=lambda k: status.update(f"rain × {k:g}…"))
    console.print(escape(sweep_text(df)), highlight=False)


def _now_option(value: str | None) -> dt.datetime:
    from ewarn.store import utcnow

    return _parse_cycle(value) or utcnow()


NowOpt = Annotated[str | None, typer.Option(
    "--now", help="decide as if it were this time, UTC (to replay a past event) [default: the clock]")]


@alerts_app.command("preview")
def alerts_preview(
    source: Annotated[str | None, typer.Option(help="only this source [default: latest of any]")] = None,
    cycle: Annotated[str | None, typer.Option(help="cycle, UTC [default: latest]")] = None,
    now: NowOpt = None,
    full: Annotated[bool, typer.Option(help="print every message's text in full")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """What would be sent for the latest assessment, with segment counts; nothing is written or sent."""
    import xarray as xr

    from ewarn.alerts import service
    from ewarn.region import Region
    from ewarn.store import Store

    ws = _ws(workspace)
    path, label = _assessment_path(ws, source, cycle)
    with xr.open_dataset(path) as ds:
        df = service.preview(Store.open(ws.database_url), Region.load(ws.region_dir), ds.load(),
                             ws.settings.alerts, now=_now_option(now))
    table = Table(title=f"{len(df)} message(s) for {label} (gateway {ws.settings.alerts.gateway}); "
                        "segments: GSM-7 160/153, UCS-2 70/67 characters")
    for col in ("commune", "kind", "level", "to", "form", "segments", "queued", "text"):
        table.add_column(col, overflow="fold")
    for r in df.itertuples():
        text = r.text if full else (r.text if len(r.text) <= 90 else r.text[:87] + "…")
        form = f"{r.language}{' không dấu' if r.unaccented else ''} {r.encoding}"
        table.add_row(escape(f"{r.commune_name} {r.commune}"), r.kind, str(r.level), r.recipient, form,
                      str(r.segments), "yes" if r.queued else "", escape(text))
    console.print(table)


@alerts_app.command("send")
def alerts_send(
    source: Annotated[str | None, typer.Option(help="only this source [default: latest of any]")] = None,
    cycle: Annotated[str | None, typer.Option(help="cycle, UTC [default: latest]")] = None,
    now: NowOpt = None,
    wait: Annotated[bool, typer.Option(help="also wait for retries (up to --max-seconds)")] = False,
    max_seconds: Annotated[float, typer.Option(help="longest wait for retries [s]")] = 300.0,
    workspace: WorkspaceOpt = None,
) -> None:
    """Queue the warnings of the latest assessment in the outbox and send what is due."""
    import xarray as xr

    from ewarn.alerts import service
    from ewarn.pipeline import open_gateway
    from ewarn.region import Region
    from ewarn.store import Store

    ws = _ws(workspace)
    store = Store.open(ws.database_url)
    path, label = _assessment_path(ws, source, cycle)
    when = _now_option(now)
    with xr.open_dataset(path) as ds:
        batch = service.prepare_alerts(store, Region.load(ws.region_dir), ds.load(), ws.settings.alerts,
                                       now=when)
    queued, dup = service.enqueue_alerts(store, batch)
    console.print(f"{label}: {len(batch.notices)} notice(s), {len(batch.summaries)} province summary(ies); "
                  f"{queued} message(s) queued, {dup} already queued")
    gateway = open_gateway(ws)
    try:
        counts = service.dispatch(store, gateway, ws.settings.alerts, now=when if now else None, wait=wait,
                                  max_seconds=max_seconds)
    finally:
        gateway.close()
    console.print(f"gateway {ws.settings.alerts.gateway}: " + ", ".join(
        f"{k} {v}" for k, v in counts.as_dict().items() if v))
    _print_outbox_counts(store)


def _print_outbox_counts(store) -> None:
    from ewarn.alerts.outbox import outbox_counts

    counts = outbox_counts(store)
    console.print("outbox: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@alerts_app.command("status")
def alerts_status(
    status: Annotated[str | None, typer.Option(help="only messages in this status (queued, sending, sent, "
                                                    "delivered, failed, undelivered, expired)")] = None,
    limit: Annotated[int, typer.Option(help="how many of the latest messages to list")] = 30,
    workspace: WorkspaceOpt = None,
) -> None:
    """The outbox: counts by status and the latest messages (numbers masked)."""
    import pandas as pd

    from ewarn.alerts.outbox import list_messages
    from ewarn.store import Store

    ws = _ws(workspace)
    store = Store.open(ws.database_url)
    store.ensure()
    _print_outbox_counts(store)
    df = list_messages(store, status, limit)
    table = Table(title=f"latest {len(df)} message(s) (times UTC+7)")
    for col in ("id", "created", "kind", "commune", "to", "status", "attempts", "sent", "error"):
        table.add_column(col)
    for r in df.itertuples():
        def when(t) -> str:
            return "–" if t is None or pd.isna(t) else _local(pd.Timestamp(t).to_pydatetime(), "%d/%m %H:%M",
                                                              offset=False)
        table.add_row(str(r.id), when(r.created_at), r.kind, r.commune_code or "–", r.recipient, r.status,
                      str(r.attempts), when(r.sent_at), escape(str(r.last_error or "")))
    console.print(table)


@contacts_app.command("import")
def contacts_import(
    csv_file: Annotated[Path, typer.Argument(help="contacts CSV: commune_code, name, role, phone (E.164), "
                                                   "language (vi/en), unaccented (true/false)")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Replace the region's contacts with a validated CSV file (nothing changes if a row is bad)."""
    from ewarn.region import import_contacts

    ws = _ws(workspace)
    table, warnings = import_contacts(ws.region_dir, csv_file)
    _print_problems(warnings)
    console.print(f"{len(table)} contact(s) imported into {ws.region_dir}")


@contacts_app.command("list")
def contacts_list(
    commune: Annotated[str | None, typer.Option(help="only this commune code")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """The contacts of the region (phone numbers masked)."""
    from ewarn.log import mask_phone
    from ewarn.region import Region

    ws = _ws(workspace)
    region = Region.load(ws.region_dir)
    c = region.contacts
    if commune:
        c = c[c["commune_code"] == commune]
    names = dict(zip(region.communes["code"], region.communes["name"], strict=True))
    operators = {r.casefold() for r in ws.settings.alerts.operator_roles}
    table = Table(title=f"{len(c)} contact(s); province summaries go to roles: "
                        f"{', '.join(ws.settings.alerts.operator_roles)}")
    for col in ("commune", "name", "role", "phone", "language", "form"):
        table.add_column(col)
    for r in c.itertuples():
        role = escape(r.role) + (" [bold](operator)[/]" if r.role.casefold() in operators else "")
        table.add_row(escape(f"{names.get(r.commune_code, '?')} {r.commune_code}"), escape(r.name), role,
                      mask_phone(r.phone) + (" (demo)" if getattr(r, "demo", False) else ""), r.language,
                      "không dấu" if r.unaccented else "có dấu")
    console.print(table)


def main() -> None:
    """Console-script entry point: run the app, print people's errors plainly."""
    try:
        app()
    except ValidationError as exc:
        err_console.print(f"[red]error:[/] {escape(exc.summary)}", highlight=False)
        _print_problems(exc.problems)
        sys.exit(1)
    except EwarnError as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("EWARN_DEBUG"):
            raise
        err_console.print(f"[red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}\n"
                          "This is a bug in ewarn; run again with EWARN_DEBUG=1 for the traceback "
                          "and report it.", highlight=False)
        sys.exit(70)


if __name__ == "__main__":  # pragma: no cover
    main()
