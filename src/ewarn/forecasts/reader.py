"""One entry point for every reader: :func:`open_forecast`.

``path_or_url`` may be a file, a glob of files of one cycle, a drop folder
(the newest complete file is read), an HTTP(S) URL (downloaded completely
into the workspace first) or an OPeNDAP URL (opened directly). The profile's
``kind`` picks the format reader (:mod:`~ewarn.forecasts.netcdf` for CF
NetCDF and WRF, :mod:`~ewarn.forecasts.grib` for GRIB); the result is
normalized to the forecast contract.
"""

from __future__ import annotations

import datetime as dt
import glob
import tempfile
from pathlib import Path

import xarray as xr

from ewarn.config import ForecastSettings, SourceProfile, Workspace
from ewarn.forecasts.dropfolder import is_candidate, watch_folder
from ewarn.forecasts.errors import ForecastError
from ewarn.forecasts.grib import open_grib
from ewarn.forecasts.grid import Bounds
from ewarn.forecasts.netcdf import open_netcdf
from ewarn.forecasts.normalize import normalize, to_utc
from ewarn.forecasts.profiles import resolve_profile
from ewarn.forecasts.remote import download, is_opendap, is_url

#: Drop-folder file patterns when the profile sets none.
DEFAULT_PATTERNS = {"cf-netcdf": "*.nc", "wrf": "wrfout*", "grib": "*"}


def _download_dir(workspace: Workspace | None) -> Path:
    if workspace is not None:
        return workspace.path("cache", "downloads")
    return Path(tempfile.gettempdir()) / "ewarn-downloads"


def resolve_targets(profile: SourceProfile, path_or_url: str | Path, *, settings: ForecastSettings,
                    workspace: Workspace | None = None, sha256: str | None = None,
                    expected_size: int | None = None) -> list[Path | str]:
    """The local files (or the one OPeNDAP URL) a path, glob, folder or URL stands for.

    Raises
    ------
    ForecastError
        Nothing to read: missing file, empty glob, no complete file in the
        drop folder, failed download.
    """
    text = str(path_or_url or profile.path).strip()
    if not text:
        raise ForecastError(f"no file or URL given and source '{profile.name}' has no path; pass one "
                            "(ewarn ingest SOURCE PATH_OR_URL)")
    if is_url(text):
        if is_opendap(text) or profile.options.get("opendap"):
            if profile.kind == "grib":
                raise ForecastError("OPeNDAP serves NetCDF, not GRIB; use a cf-netcdf profile", file=text)
            return [text]
        return [download(text, _download_dir(workspace), timeout=settings.download_timeout_s,
                         retries=settings.download_retries, sha256=sha256, expected_size=expected_size)]
    path = Path(text).expanduser()
    if path.is_dir():
        pattern = profile.pattern or DEFAULT_PATTERNS.get(profile.kind, "*")
        ready = watch_folder(path, pattern, kind=profile.kind)
        if not ready:
            raise ForecastError(f"drop folder holds no complete file matching {pattern!r} (files still "
                                "being written are skipped); try again when the copy has finished",
                                file=text)
        return [ready[-1]]
    if glob.has_magic(text):
        files = [Path(p) for p in sorted(glob.glob(str(path))) if is_candidate(Path(p))]
        if not files:
            raise ForecastError("matches no file; check the pattern", file=text)
        return list(files)
    if not path.exists():
        raise ForecastError("does not exist; check the path", file=text)
    return [path]


def open_forecast(
    source: str | SourceProfile,
    path_or_url: str | Path,
    *,
    cycle: dt.datetime | None = None,
    settings: ForecastSettings | None = None,
    bounds: Bounds | None = None,
    workspace: Workspace | None = None,
    sha256: str | None = None,
    expected_size: int | None = None,
) -> xr.Dataset:
    """Read a forecast and normalize it to the contract (lazily where possible).

    Parameters
    ----------
    source : str or SourceProfile
        Profile name (workspace ``[forecasts.sources.NAME]``, else built-in:
        ``ecmwf-ifs``, ``ecmwf-ens``, ``gfs``, ``cf-netcdf``, ``wrf``,
        ``demo``) or a profile.
    path_or_url : str or Path
        File, glob, drop folder, HTTP(S) or OPeNDAP URL; empty uses the
        profile's ``path``.
    cycle : datetime, optional
        Reference time (UTC): picks a cycle in a multi-cycle file, is checked
        against the file's, or supplies it when the file has none.
    settings : ForecastSettings, optional
        Default: the workspace's, else built-in defaults.
    bounds : (west, south, east, north), optional
        Region bounds [degrees]; the grid is cut to them plus ``margin_deg``.
    workspace : Workspace, optional
        Where downloads go (``cache/downloads``) and settings come from.
    sha256, expected_size : optional
        Checks of a downloaded file.

    Returns
    -------
    Dataset
        The forecast contract; close it (or use ``with``) to release files.

    Raises
    ------
    ForecastError
        Anything that makes the input unusable; the message names the file,
        the variable and the fix.
    """
    if settings is None:
        settings = workspace.settings.forecasts if workspace is not None else ForecastSettings()
    profile = resolve_profile(source, settings)
    label = str(path_or_url or profile.path)
    targets = resolve_targets(profile, path_or_url, settings=settings, workspace=workspace,
                              sha256=sha256, expected_size=expected_size)
    ref = to_utc(cycle) if cycle is not None else None
    if profile.kind == "grib":
        raw = open_grib([Path(t) for t in targets], profile, cycle=ref, label=label)
    else:
        raw = open_netcdf(targets, kind=profile.kind, label=label)
    try:
        ds = normalize(raw, profile, bounds=bounds, margin_deg=settings.margin_deg, path=label, cycle=ref)
    except BaseException:
        raw.close()
        raise
    ds.set_close(raw.close)
    return ds
