"""NetCDF reader: CF NetCDF (local file, several files, OPeNDAP) and WRF output.

Files are opened lazily with the netCDF4 engine (dask chunks following the
file's own chunking when dask is installed). Local files are first checked
for completeness (:func:`ewarn.forecasts.dropfolder.incomplete_reason`): a
truncated classic NetCDF file would otherwise open and read as zeros.
Several files of one cycle are combined by their coordinates (CF) or along
``Time`` (WRF, one file per output time).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import xarray as xr

from ewarn.forecasts.dropfolder import incomplete_reason
from ewarn.forecasts.errors import ForecastError


def chunks() -> dict | None:
    """``{}`` (the file's chunks, lazily through dask) when dask is installed, else None."""
    try:
        import dask  # noqa: F401
    except ImportError:  # pragma: no cover - dask is an optional extra
        return None
    return {}


def _is_hdf5(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False


def _open(target: str | Path, label: str) -> xr.Dataset:
    if isinstance(target, Path) and not _is_hdf5(target):  # HDF5 checks itself when opened
        reason = incomplete_reason(target)
        if reason:
            raise ForecastError(reason, file=label)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=FutureWarning)
            # lazy, without dask: normalize reads cache-sized blocks (or chunks big inputs itself)
            return xr.open_dataset(target, engine="netcdf4", decode_timedelta=True)
    except FileNotFoundError:
        raise ForecastError("does not exist; check the path", file=label) from None
    except OSError as exc:
        if isinstance(target, Path) and _is_hdf5(target):
            raise ForecastError(f"is truncated or damaged: the NetCDF-4/HDF5 file does not open ({exc}); "
                                "the download or copy did not finish: fetch the file again",
                                file=label) from None
        raise ForecastError(
            f"cannot be read as NetCDF ({type(exc).__name__}: {exc}); check that it is a NetCDF or "
            "OPeNDAP source (not an HTML error page or a GRIB file: use a grib profile for GRIB)",
            file=label) from None
    except (ValueError, RuntimeError, TypeError, KeyError) as exc:
        raise ForecastError(
            f"cannot be read as NetCDF ({type(exc).__name__}: {exc}); check that it is a NetCDF or "
            "OPeNDAP source (not an HTML error page or a GRIB file: use a grib profile for GRIB)",
            file=label) from None


def open_netcdf(targets: Sequence[str | Path], *, kind: str = "cf-netcdf", label: str = "") -> xr.Dataset:
    """Open NetCDF file(s) or an OPeNDAP URL of one forecast cycle.

    Parameters
    ----------
    targets : sequence of Path or str
        Local files (Path) or one OPeNDAP URL (str).
    kind : {"cf-netcdf", "wrf"}
        WRF files are combined along ``Time``.
    label : str
        The file, glob or URL as the user gave it (messages).

    Raises
    ------
    ForecastError
        Missing, truncated or unreadable file; files that do not combine.
    """
    single = len(targets) == 1
    opened = [_open(t, label if single else str(t)) for t in targets]
    if single:
        ds = opened[0]
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=FutureWarning)
                if kind == "wrf":
                    ds = xr.concat(opened, dim="Time", data_vars="minimal", coords="minimal",
                                   compat="override", combine_attrs="override")
                else:
                    ds = xr.combine_by_coords(opened, combine_attrs="drop_conflicts",
                                              data_vars="minimal", coords="minimal", compat="override")
        except (ValueError, KeyError) as exc:
            for d in opened:
                d.close()
            raise ForecastError(f"the {len(opened)} files do not combine into one forecast ({exc}); "
                                "ingest one cycle at a time", file=label) from None

        def _close_all() -> None:
            for d in opened:
                d.close()

        ds.set_close(_close_all)
    ds.attrs["ewarn_reader"] = kind
    return ds
