"""Settings and the workspace.

A workspace is a folder holding ``ewarn.toml`` (the settings), the region, the
forecast archive, assessments, plans, reports and the database. Settings are
read from ``ewarn.toml`` and overridden by ``EWARN_*`` environment variables,
with ``__`` between nested keys (``EWARN_ALERTS__GATEWAY=twilio``). Secrets
(gateway credentials) are never settings: :func:`secret` reads them from the
environment only.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticValidationError

from ewarn.errors import ConfigError, WorkspaceError

#: Environment variable naming the default workspace folder.
WORKSPACE_ENV = "EWARN_WORKSPACE"
#: Workspace used when neither ``--workspace`` nor ``EWARN_WORKSPACE`` is given.
DEFAULT_WORKSPACE = Path("ewarn-data")
SETTINGS_FILE = "ewarn.toml"
#: Local time shown to people; stored times are UTC.
LOCAL_TZ = "Asia/Ho_Chi_Minh"
#: Sub-folders every workspace has.
WORKSPACE_DIRS = ("forecasts", "assessments", "plans", "reports", "outbox", "cache")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class WorkspaceSettings(_Section):
    """``[workspace]``: where things are."""

    region: str = Field("region", description="region folder, relative to the workspace")
    database_url: str = Field(
        "", description="SQLAlchemy URL; empty means sqlite file ewarn.db in the workspace"
    )
    log_level: str = "INFO"
    language: Literal["vi", "en"] = Field("vi", description="language of reports")


class SourceProfile(_Section):
    """A forecast source profile (``[forecasts.sources.NAME]``).

    A profile says how to read one source and what its numbers mean; a new
    source is a profile in ``ewarn.toml``, not code, wherever its conventions
    are covered by these keys. Built-in profiles: ``ecmwf-ifs``, ``ecmwf-ens``,
    ``gfs``, ``cf-netcdf``, ``wrf``, ``demo`` (see
    :attr:`ForecastSettings.BUILTIN_SOURCES`); a workspace entry of the same
    name overrides only the keys it sets.
    """

    name: str = Field("", description="profile name (set from the [forecasts.sources.NAME] key)")
    kind: Literal["cf-netcdf", "grib", "wrf"] = Field(
        "cf-netcdf", description="file format: cf-netcdf (also OPeNDAP), grib (1 or 2), wrf (wrfout)"
    )
    path: str = Field("", description="file, glob, URL or drop folder the source reads by default")
    variable: str = Field(
        "", description="variable in the file; empty = found by CF standard_name; "
        "'A+B' sums variables (WRF: RAINC+RAINNC)"
    )
    accumulation: Literal["auto", "interval", "since-start", "bucket", "rate"] = Field(
        "auto", description="interval: amount per step; since-start: accumulated from the run start; "
        "bucket: accumulated since the last bucket reset (GFS); rate: mean rate over the step; "
        "auto: rate when the units are a rate, else the GRIB window, else interval"
    )
    bucket_hours: float = Field(
        0.0, ge=0, description="bucket length when the file does not carry the window start (GFS: 6)"
    )
    units: str = Field("", description="override the file's units (only if the file is wrong)")
    grib_filter: dict[str, str | int | float] = Field(
        default_factory=dict,
        description="cfgrib filter_by_keys, e.g. {numberOfPoints = 4140} to pick one grid of several",
    )
    resample_hours: float = Field(
        0.0, ge=0, description="sum native steps into fixed intervals of this length; 0 keeps them"
    )
    negative_tolerance_mm: float = Field(
        0.1, ge=0, description="negatives this small (GRIB packing noise after de-accumulation) "
        "become 0; larger ones refuse the forecast"
    )
    observed: bool = Field(False, description="observations (e.g. a satellite or gauge product), "
                           "not a forecast: antecedent rain uses all of it")
    pattern: str = Field("", description="file pattern in a drop folder (default by kind)")
    schedule_hours: list[int] = Field(default_factory=list, description="cycle hours (UTC)")
    availability_delay_hours: float = 0.0
    options: dict[str, Any] = Field(default_factory=dict)


class ForecastSettings(_Section):
    """``[forecasts]``: ingestion and validation."""

    #: Built-in source profiles (raw keys; a workspace entry of the same name
    #: overrides only the keys it sets).
    BUILTIN_SOURCES: ClassVar[dict[str, dict[str, Any]]] = {
        # ECMWF IFS HRES: tp in metres accumulated from the run start (ECMWF
        # parameter database, paramId 228 "Total precipitation").
        "ecmwf-ifs": {"kind": "grib", "variable": "tp", "accumulation": "since-start",
                      "schedule_hours": [0, 6, 12, 18], "availability_delay_hours": 7.0},
        # ECMWF ENS: same parameter, control (number 0) and perturbed members.
        "ecmwf-ens": {"kind": "grib", "variable": "tp", "accumulation": "since-start",
                      "schedule_hours": [0, 6, 12, 18], "availability_delay_hours": 8.0},
        # NCEP GFS: APCP (cfgrib 'tp') in kg m-2 over 0-3/0-6 h buckets reset
        # every 6 h (NCEP GFS product inventory, pgrb2 files).
        "gfs": {"kind": "grib", "variable": "tp", "accumulation": "bucket", "bucket_hours": 6.0,
                "schedule_hours": [0, 6, 12, 18], "availability_delay_hours": 4.0},
        "cf-netcdf": {"kind": "cf-netcdf", "accumulation": "auto"},
        # WRF wrfout: RAINC + RAINNC in mm accumulated from the simulation start.
        "wrf": {"kind": "wrf", "variable": "RAINC+RAINNC", "accumulation": "since-start"},
        # The synthetic demo storm: already in the forecast contract.
        "demo": {"kind": "cf-netcdf", "variable": "precipitation", "accumulation": "interval"},
    }

    max_age_hours: float = Field(36.0, gt=0, description="older forecasts are stale")
    margin_deg: float = Field(0.5, ge=0, description="margin around the region when subsetting")
    max_nan_fraction: float = Field(0.05, ge=0, le=1)
    warn_rate_mm_h: float = Field(
        300.0, gt=0, description="rain rates above this are reported (near the world record "
        "1-h rainfall, 305 mm at Holt, Missouri, 1947; WMO archive of weather extremes)"
    )
    max_rate_mm_h: float = Field(
        1000.0, gt=0, description="rain rates above this are refused as impossible "
        "(about three times the world record 1-h rainfall)"
    )
    download_timeout_s: float = Field(60.0, gt=0, description="per-request timeout of downloads")
    download_retries: int = Field(3, ge=1, description="attempts per download")
    sources: dict[str, SourceProfile] = Field(default_factory=dict, validate_default=True)

    @field_validator("sources", mode="before")
    @classmethod
    def _with_builtin_sources(cls, user: Any) -> Any:
        """Merge the built-in profiles under the workspace's (key by key); name each profile."""
        if not isinstance(user, dict):
            return user  # let field validation report the wrong type
        merged: dict[str, Any] = {k: dict(v) for k, v in cls.BUILTIN_SOURCES.items()}
        for name, prof in user.items():
            if isinstance(prof, SourceProfile):
                prof = prof.model_dump(exclude_unset=True)
            merged[name] = {**merged.get(name, {}), **prof} if isinstance(prof, dict) else prof
        for name, prof in merged.items():
            if isinstance(prof, dict):
                prof["name"] = name
        return merged


class AlertSettings(_Section):
    """``[alerts]``: who is warned, through which gateway, how often, how hard we retry.

    Gateway options live under ``[alerts.gateways.NAME]`` (e.g.
    ``[alerts.gateways.twilio] from_number = "+1..."``); each gateway validates
    its own table. Credentials never go here: they are read from the
    environment (``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN``, ...).
    """

    gateway: str = Field("file", description="gateway name (entry point ewarn.sms_gateways)")
    gateways: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="options of each gateway, by gateway name")
    min_level: int = Field(1, ge=1, le=5, description="lowest level that warns officials")
    sender: str = Field("ewarn", description="CAP sender and SMS signature")
    cap_sender: str = Field("ewarn@localhost", description="CAP <sender>: a unique id of the sending system")
    language: Literal["vi", "en"] = Field("vi", description="default message language of a contact")
    reminder_hours: float = Field(6.0, gt=0, description="repeat an unchanged warning after this long")
    all_clear: bool = Field(True, description="send an all-clear when a commune falls below min_level")
    operator_roles: list[str] = Field(
        default_factory=lambda: ["province", "operator", "Ban Chỉ huy PCTT tỉnh"],
        description="contact roles that get the per-cycle province summary (and watchdog alerts)")
    max_attempts: int = Field(40, ge=1, description="attempts per message before it fails (with the "
                              "default backoff about 5 h of outage; a warning expires at the end of its "
                              "window anyway)")
    backoff_seconds: float = Field(10.0, gt=0, description="first retry delay, doubled per attempt")
    backoff_max_seconds: float = Field(900.0, gt=0, description="longest retry delay")
    lease_seconds: float = Field(120.0, gt=0, description="a message claimed longer ago than this "
                                 "(crashed dispatcher) is claimed again")
    batch_size: int = Field(100, ge=1, description="messages claimed per dispatch batch")
    rate_per_second: float = Field(0.0, ge=0, description="messages per second per gateway "
                                   "(0: the gateway's own default, e.g. 1/s for a Twilio long code)")
    public_url: str = Field("", description="public base URL of `ewarn serve` (callbacks, CAP links)")


class RoutingSettings(_Section):
    """``[routing]``: evacuation planning defaults."""

    mode: Literal["walk", "motorbike", "car"] = "motorbike"
    evacuation_level: int = Field(2, ge=1, le=5)
    max_travel_minutes: float = Field(120.0, gt=0)
    safety_margin_minutes: float = Field(60.0, ge=0)
    planning_window_hours: float = Field(
        24.0, gt=0, description="hours after the forecast start that close or slow roads")
    landslide_roads: Literal["close", "slow"] = Field(
        "close", description="what a triggered landslide cell does to the roads through it")
    slow_factor: float = Field(3.0, ge=1, description="travel time factor of a slowed road")
    stream_buffer_m: float = Field(
        150.0, ge=0, description="households this close to a threatened stream must move [m]")
    candidate_shelters: int = Field(
        8, ge=1, description="nearest reachable shelters first offered to each household")


class ServiceSettings(_Section):
    """``[service]``: what ``ewarn serve`` schedules, and when the watchdog speaks up."""

    sources: list[str] = Field(default_factory=list, description="forecast sources to run every cycle of "
                               "(names of [forecasts.sources.NAME] with a path, or built-in profiles)")
    poll_seconds: float = Field(300.0, gt=0, description="how often each source is polled for a new cycle")
    dispatch_seconds: float = Field(5.0, gt=0, description="how often the outbox is dispatched")
    watchdog_seconds: float = Field(60.0, gt=0, description="how often the watchdog checks the service")
    misfire_grace_seconds: float = Field(
        6 * 3600.0, gt=0, description="a job missed while the service was down still runs (once) if it "
        "is no older than this; a publication-time job must survive a restart")
    stale_hours: float = Field(18.0, gt=0, description="no new forecast cycle for this long is an incident")
    backlog_limit: int = Field(200, ge=1, description="this many messages waiting is an incident")
    gateway_failures: int = Field(5, ge=1, description="this many failed attempts in a row is an incident")
    retention_days: float = Field(30.0, gt=0, description="forecasts and assessments older than this are "
                                  "deleted")
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)


class Settings(_Section):
    """All settings of a workspace (the content of ``ewarn.toml``)."""

    workspace: WorkspaceSettings = Field(default_factory=WorkspaceSettings)
    forecasts: ForecastSettings = Field(default_factory=ForecastSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """Nested dict from ``EWARN_SECTION__KEY=value`` variables."""
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith("EWARN_") or name == WORKSPACE_ENV:
            continue
        path = [p.lower() for p in name[len("EWARN_"):].split("__") if p]
        if len(path) < 2:
            continue  # EWARN_FOO alone is not a setting (e.g. EWARN_OPERATOR_TOKEN)
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(err: PydanticValidationError, origin: str, env: dict[str, Any]) -> str:
    lines = [f"{origin}: invalid settings"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        node: Any = env
        for part in e["loc"]:
            node = node.get(str(part)) if isinstance(node, dict) else None
        if node is not None and not isinstance(node, dict):
            var = "EWARN_" + "__".join(str(p).upper() for p in e["loc"])
            lines.append(f"  - environment variable {var} (key '{key}'): {e['msg']} (got {e.get('input')!r})")
        elif e["type"] == "extra_forbidden":
            lines.append(f"  - key '{key}' is not a known setting (check its spelling)")
        else:
            lines.append(f"  - key '{key}': {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def load_settings(path: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read settings from a TOML file, then apply ``EWARN_*`` overrides.

    Parameters
    ----------
    path : Path, optional
        ``ewarn.toml``; defaults only when None or absent.
    environ : dict, optional
        Environment to read overrides from (default ``os.environ``).

    Raises
    ------
    ConfigError
        The file is not TOML, or a key is unknown or of the wrong type; the
        message names the key and the expected type.
    """
    environ = dict(os.environ if environ is None else environ)
    data: dict[str, Any] = {}
    origin = "defaults"
    if path is not None and path.exists():
        origin = str(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc}); fix the file or restore it "
                              "with 'ewarn init'") from None
    env = _env_overrides(environ)
    if env:
        origin += " + EWARN_* environment"
    try:
        return Settings.model_validate(_merge(data, env))
    except PydanticValidationError as exc:
        raise ConfigError(_describe(exc, origin, env)) from None


def secret(name: str, *, required: bool = True, environ: dict[str, str] | None = None) -> str | None:
    """A secret from the environment (never from a file, never logged).

    Raises
    ------
    ConfigError
        When ``required`` and the variable is unset or empty.
    """
    value = (os.environ if environ is None else environ).get(name)
    if not value and required:
        raise ConfigError(f"environment variable {name} is not set; export it before running "
                          "(secrets are read from the environment only)")
    return value or None


@dataclass
class Workspace:
    """An initialised workspace folder and its settings."""

    root: Path
    settings: Settings

    @property
    def database_url(self) -> str:
        url = self.settings.workspace.database_url
        return url or f"sqlite:///{(self.root / 'ewarn.db').as_posix()}"

    @property
    def region_dir(self) -> Path:
        return (self.root / self.settings.workspace.region).resolve()

    def path(self, *parts: str) -> Path:
        """A path inside the workspace, e.g. ``ws.path('forecasts', 'gfs')``."""
        return self.root.joinpath(*parts)

    @classmethod
    def open(cls, root: Path | str | None = None, *, create: bool = False) -> Workspace:
        """Open (or with ``create`` initialise) a workspace.

        ``root`` defaults to ``$EWARN_WORKSPACE``, else ``./ewarn-data``.
        """
        root = resolve_workspace(root)
        if not (root / SETTINGS_FILE).exists():
            if not create:
                raise WorkspaceError(
                    f"{root} is not an ewarn workspace (no {SETTINGS_FILE}); "
                    f"create it with 'ewarn init {root}' or pass --workspace"
                )
            return init_workspace(root)
        return cls(root=root, settings=load_settings(root / SETTINGS_FILE))


def resolve_workspace(root: Path | str | None) -> Path:
    if root is None:
        root = os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE
    return Path(root).expanduser().resolve()


DEFAULT_TOML = """\
# ewarn workspace settings. Environment variables EWARN_SECTION__KEY override
# any key (e.g. EWARN_ALERTS__GATEWAY=twilio). Secrets never go here: gateway
# credentials are read from the environment (TWILIO_ACCOUNT_SID, ...).

[workspace]
region = "region"          # region folder, relative to this file
database_url = ""          # empty: SQLite file ewarn.db here
log_level = "INFO"
language = "vi"            # vi | en

[forecasts]
max_age_hours = 36         # older forecasts are refused as stale
margin_deg = 0.5           # kept around the region when subsetting
max_nan_fraction = 0.05

[alerts]
gateway = "file"           # file | console | twilio | http | failover
min_level = 1

[routing]
mode = "motorbike"         # walk | motorbike | car
evacuation_level = 2
max_travel_minutes = 120
safety_margin_minutes = 60
"""


def init_workspace(root: Path | str) -> Workspace:
    """Create a workspace: settings file, folders and database (idempotent).

    An existing ``ewarn.toml`` is kept as it is.
    """
    root = Path(root).expanduser().resolve()
    try:
        root.mkdir(parents=True, exist_ok=True)
        for name in WORKSPACE_DIRS:
            (root / name).mkdir(exist_ok=True)
        settings_path = root / SETTINGS_FILE
        if not settings_path.exists():
            tmp = settings_path.with_suffix(".toml.tmp")
            tmp.write_text(DEFAULT_TOML, encoding="utf-8")
            tmp.replace(settings_path)
    except OSError as exc:
        raise WorkspaceError(f"cannot create workspace {root}: {exc.strerror}; "
                             "choose a writable folder with --workspace") from None
    ws = Workspace(root=root, settings=load_settings(root / SETTINGS_FILE))
    from ewarn import store  # the database lives in the workspace

    store.Store.open(ws.database_url)
    return ws
