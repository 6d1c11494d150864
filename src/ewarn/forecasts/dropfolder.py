"""The drop-folder source and the "is this file complete?" check.

Forecast files are often copied into a folder by another program (an FTP
mirror, ``rsync``, a WRF run). A file is ready when a marker ``NAME.done`` /
``NAME.complete`` (or ``STEM.done``) sits beside it, or else when it opens
cleanly — every GRIB message is whole, a classic NetCDF file is as long as
its header says, an HDF5/NetCDF-4 file opens — and, when the caller keeps
the sizes of the previous poll, its size has not changed since.
Partial files are skipped and looked at again at the next poll.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

from ewarn.forecasts.errors import ForecastError

MARKER_SUFFIXES = (".done", ".complete")
#: Names of files still being written by common tools, never forecasts.
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".filepart", ".download", ".idx")


def marker_exists(path: Path) -> bool:
    """Whether a ``.done``/``.complete`` marker for ``path`` exists."""
    for suffix in MARKER_SUFFIXES:
        if path.with_name(path.name + suffix).exists() or path.with_suffix(suffix).exists():
            return True
    return False


def _grib_problem(path: Path) -> str | None:
    import eccodes

    count = 0
    try:
        with path.open("rb") as fh:
            while True:
                handle = eccodes.codes_grib_new_from_file(fh, headers_only=True)
                if handle is None:
                    break
                count += 1
                eccodes.codes_release(handle)
    except eccodes.GribInternalError as exc:
        return (f"is truncated or damaged: GRIB message {count + 1} is incomplete ({exc}); the "
                "download or copy did not finish: fetch the file again")
    if count == 0:
        return "holds no GRIB message; check that it is a GRIB file (not an HTML error page)"
    return None


def _classic_netcdf_problem(path: Path) -> str | None:
    from scipy.io import netcdf_file

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nc = netcdf_file(path, "r", mmap=True)
            nc.close()
    except (ValueError, TypeError, OSError, IndexError) as exc:
        return (f"is truncated or damaged: the data are shorter than the NetCDF header says ({exc}); "
                "the download or copy did not finish: fetch the file again")
    return None


def _hdf5_problem(path: Path) -> str | None:
    import netCDF4

    try:
        netCDF4.Dataset(path).close()
    except OSError as exc:
        return (f"is truncated or damaged: the NetCDF-4/HDF5 file does not open ({exc}); the "
                "download or copy did not finish: fetch the file again")
    return None


def incomplete_reason(path: Path, kind: str | None = None) -> str | None:
    """Why ``path`` is not a complete forecast file, or None if it is.

    Parameters
    ----------
    path : Path
    kind : str, optional
        ``grib`` forces the GRIB check (GRIB files may start with a bulletin
        header); otherwise the format is recognised by its first bytes.
        Unknown formats are left to the reader (None).
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if size == 0:
        return "is empty; the download or copy did not finish: fetch the file again"
    if head.startswith(b"GRIB") or kind == "grib":
        return _grib_problem(path)
    if head[:3] == b"CDF" and head[3:4] in (b"\x01", b"\x02"):
        return _classic_netcdf_problem(path)
    if head.startswith(b"\x89HDF\r\n\x1a\n") or head[:3] == b"CDF":
        return _hdf5_problem(path)
    return None


def is_candidate(path: Path) -> bool:
    """Whether a folder entry may be a forecast file (not a marker, partial or hidden file)."""
    name = path.name
    return (path.is_file() and not name.startswith((".", "~"))
            and not name.endswith(MARKER_SUFFIXES + PARTIAL_SUFFIXES))


def watch_folder(
    folder: Path,
    pattern: str = "*.nc",
    seen: set[str] | None = None,
    *,
    sizes: dict[str, int] | None = None,
    settle_seconds: float = 0.0,
    kind: str | None = None,
) -> list[Path]:
    """New, complete files in a drop folder, oldest first.

    Parameters
    ----------
    folder : Path
        The drop folder.
    pattern : str
        Glob of forecast files (``*.nc``, ``*.grib2``, ``gfs.t*z.pgrb2*``).
    seen : set of str, optional
        Paths returned before; skipped, and the returned ones are added
        (keep the set between polls).
    sizes : dict, optional
        Sizes [bytes] at the previous poll, updated in place: a file without
        a marker must have the same size at two polls.
    settle_seconds : float
        When > 0, poll twice within this call, this many seconds apart [s].
    kind : str, optional
        Format (``grib`` forces the GRIB check).

    Returns
    -------
    list of Path
        Complete files not in ``seen``, by modification time.

    Raises
    ------
    ForecastError
        The folder does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ForecastError("drop folder does not exist; create it or fix the source's path",
                            file=str(folder))
    seen = seen if seen is not None else set()
    files = [p for p in sorted(folder.glob(pattern)) if is_candidate(p) and str(p) not in seen]
    first = {str(p): p.stat().st_size for p in files}
    if settle_seconds > 0 and files:
        time.sleep(settle_seconds)
    ready: list[Path] = []
    for p in files:
        key = str(p)
        if not p.exists():
            continue
        size = p.stat().st_size
        if marker_exists(p):
            ready.append(p)
            continue
        stable = True
        if settle_seconds > 0:
            stable = size == first[key]
        if sizes is not None:
            stable = stable and sizes.get(key) == size
            sizes[key] = size
        if stable and incomplete_reason(p, kind) is None:
            ready.append(p)
    ready.sort(key=lambda p: (p.stat().st_mtime, p.name))
    seen.update(str(p) for p in ready)
    return ready
