"""The forecast archive: ingest (open → normalize → validate → archive).

Each cycle is stored once as compressed CF NetCDF in the workspace,
``forecasts/{source}/{YYYYMMDDTHH}.nc``, with one row in the database table
``forecasts`` (unique per source and cycle). The file is written to a
temporary file in the same folder and renamed into place inside the database
transaction, so every failure — bad input, refused validation, a full disk,
a database error — leaves the archive (files and rows) as it was.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import xarray as xr
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ewarn.config import Workspace
from ewarn.errors import Problem
from ewarn.forecasts.errors import ForecastError
from ewarn.forecasts.grid import Bounds
from ewarn.forecasts.netcdf import chunks
from ewarn.forecasts.normalize import VARIABLE, to_utc
from ewarn.forecasts.profiles import check_source_name
from ewarn.forecasts.reader import open_forecast
from ewarn.forecasts.remote import sha256_of
from ewarn.forecasts.validate import validate
from ewarn.store import Store, metadata, utcnow
from ewarn.store import as_utc as _aware

log = logging.getLogger("ewarn.forecasts")

#: zlib level of archived files (4: most of the gain of 9 at a fraction of the time).
COMPRESSION_LEVEL = 4

forecasts_table = Table(
    "forecasts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(64), nullable=False),
    Column("cycle", DateTime(timezone=True), nullable=False),
    Column("path", Text, nullable=False),  # relative to the workspace root
    Column("checksum", String(64), nullable=False),  # sha256 of the archived file
    Column("valid_from", DateTime(timezone=True), nullable=False),
    Column("valid_to", DateTime(timezone=True), nullable=False),
    Column("members", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("ingested_at", DateTime(timezone=True), nullable=False),
    Column("input", Text),  # the file or URL it was read from
    Column("warnings", JSON),
    UniqueConstraint("source", "cycle", name="uq_forecasts_source_cycle"),
)


@dataclass
class ArchivedForecast:
    """One archived forecast cycle.

    Attributes
    ----------
    source : str
        Source profile name.
    cycle : datetime
        Reference time, UTC (aware).
    path : Path
        The archived NetCDF file.
    checksum : str
        SHA-256 of the file (hex).
    valid_from, valid_to : datetime
        Start of the first and end of the last interval, UTC (aware).
    members : int
        Ensemble members (0 for a deterministic forecast).
    status : str
        ``archived``, or ``unchanged`` when ingest found the cycle archived.
    warnings : list of Problem
        Validation warnings.
    """

    source: str
    cycle: dt.datetime
    path: Path
    checksum: str
    valid_from: dt.datetime
    valid_to: dt.datetime
    members: int
    status: str
    warnings: list[Problem] = field(default_factory=list)


def archive_path(workspace: Workspace, source: str, cycle: dt.datetime) -> Path:
    """``forecasts/{source}/{YYYYMMDDTHH}.nc`` (``...THHMM`` for cycles off the hour)."""
    c = _aware(cycle)
    stamp = f"{c:%Y%m%dT%H}" + (f"{c:%M}" if c.minute else "")
    return workspace.path("forecasts", check_source_name(source), f"{stamp}.nc")


def _record(row, workspace: Workspace) -> ArchivedForecast:
    warnings = [Problem(**w) for w in (row.warnings or [])]
    return ArchivedForecast(
        source=row.source, cycle=_aware(row.cycle), path=workspace.root / row.path,
        checksum=row.checksum, valid_from=_aware(row.valid_from), valid_to=_aware(row.valid_to),
        members=int(row.members), status=row.status, warnings=warnings)


def _find(store: Store, workspace: Workspace, source: str, cycle: dt.datetime) -> ArchivedForecast | None:
    t = forecasts_table
    with store.engine.connect() as conn:
        rows = conn.execute(select(t).where(t.c.source == source)).all()
    for row in rows:  # compare in Python: SQLite returns naive datetimes
        if _aware(row.cycle) == _aware(cycle):
            return _record(row, workspace)
    return None


def _encoding(ds: xr.Dataset) -> dict[str, dict]:
    shape = [1 if d in ("member", "time") else ds.sizes[d] for d in ds[VARIABLE].dims]
    units = f"hours since {ds.attrs['forecast_reference_time'].replace('T', ' ').rstrip('Z')}"
    return {
        VARIABLE: {"zlib": True, "complevel": COMPRESSION_LEVEL, "shuffle": True, "dtype": "float32",
                   "_FillValue": np.float32(np.nan), "chunksizes": tuple(shape)},
        "time": {"units": units, "dtype": "float64", "calendar": "standard"},
        "time_bnds": {"units": units, "dtype": "float64", "calendar": "standard"},
    }


def write_archive_file(ds: xr.Dataset, final: Path) -> Path:
    """Write ``ds`` as compressed CF NetCDF to a temporary file beside ``final``.

    Returns the temporary file (the caller renames it into place).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.stem}.", suffix=".nc.tmp")
    os.close(fd)
    tmp = Path(name)
    out = ds.copy()
    for var in out.variables.values():
        var.encoding = {}
    try:
        out.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=_encoding(out))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _commit(store: Store, workspace: Workspace, record: ArchivedForecast, tmp: Path, *, replace_row: bool,
            ingested_from: str) -> None:
    """Insert/update the row and move the file into place, all or nothing."""
    t = forecasts_table
    final = record.path
    values = dict(
        source=record.source, cycle=record.cycle, path=final.relative_to(workspace.root).as_posix(),
        checksum=record.checksum, valid_from=record.valid_from, valid_to=record.valid_to,
        members=record.members, status=record.status, ingested_at=utcnow(), input=ingested_from,
        warnings=[{"file": p.file, "message": p.message, "where": p.where, "field": p.field,
                   "severity": p.severity} for p in record.warnings],
    )
    backup: Path | None = None
    moved = False
    try:
        with store.engine.begin() as conn:
            if replace_row:
                rows = conn.execute(select(t.c.id, t.c.cycle).where(t.c.source == record.source)).all()
                ids = [r.id for r in rows if _aware(r.cycle) == record.cycle]
                conn.execute(update(t).where(t.c.id.in_(ids)).values(**values))
            else:
                conn.execute(insert(t).values(**values))
            if final.exists():
                backup = final.with_name(f".{final.name}.bak")
                os.replace(final, backup)
            os.replace(tmp, final)
            moved = True
    except BaseException:
        if moved:
            final.unlink(missing_ok=True)
        if backup is not None and backup.exists():
            os.replace(backup, final)
        raise
    if backup is not None:
        backup.unlink(missing_ok=True)


def ingest(
    workspace: Workspace,
    source: str,
    path_or_url: str | Path,
    *,
    cycle: dt.datetime | None = None,
    force: bool = False,
    bounds: Bounds | None = None,
    now: dt.datetime | None = None,
) -> ArchivedForecast:
    """Open, normalize, validate and archive one forecast cycle.

    Parameters
    ----------
    workspace : Workspace
        Settings (``[forecasts]``), archive folder and database.
    source : str
        Source profile name; also the archive folder.
    path_or_url : str or Path
        File, glob, drop folder or URL (see :func:`open_forecast`).
    cycle : datetime, optional
        Reference time (UTC) when the file has none, or to pick/check it.
    force : bool
        Re-ingest a cycle already archived (replacing it).
    bounds : (west, south, east, north), optional
        Region bounds [degrees]: the forecast is cut to them (plus the margin)
        and must cover them.
    now : datetime, optional
        The time of use (UTC) for the staleness check; a replay of a past
        storm sets it. Default the clock.

    Returns
    -------
    ArchivedForecast
        ``status`` is ``archived``, or ``unchanged`` (nothing written) when
        the cycle was archived before and ``force`` is false.

    Raises
    ------
    ForecastError
        Unreadable or invalid input; nothing in the archive changed.
    """
    check_source_name(source)
    settings = workspace.settings.forecasts
    store = Store.open(workspace.database_url)
    label = str(path_or_url)
    ds = open_forecast(source, path_or_url, cycle=cycle, settings=settings, bounds=bounds,
                       workspace=workspace)
    with ds:
        ref = _aware(to_utc(ds.attrs["forecast_reference_time"]))
        existing = _find(store, workspace, source, ref)
        if existing is not None and existing.path.exists() and not force:
            log.info("forecast %s %s already archived: unchanged", source, ref)
            return replace(existing, status="unchanged", warnings=[])
        warnings = validate(ds, bounds=bounds, settings=settings, now=now, path=label)
        final = archive_path(workspace, source, ref)
        try:
            tmp = write_archive_file(ds, final)
        except OSError as exc:
            raise ForecastError(f"cannot write the archive file {final} ({exc.strerror or exc}); free "
                                "disk space or check permissions, then ingest again", file=label) from None
        try:
            bnds = ds["time_bnds"].values
            record = ArchivedForecast(
                source=source, cycle=ref, path=final, checksum=sha256_of(tmp),
                valid_from=_aware(bnds[0, 0]), valid_to=_aware(bnds[-1, 1]),
                members=int(ds.sizes.get("member", 0)), status="archived", warnings=warnings)
            try:
                _commit(store, workspace, record, tmp, replace_row=existing is not None,
                        ingested_from=label)
            except IntegrityError:  # another process archived this cycle meanwhile
                found = _find(store, workspace, source, ref)
                if found is None:
                    raise
                return replace(found, status="unchanged", warnings=[])
            except SQLAlchemyError as exc:
                raise ForecastError(f"cannot record the forecast in the workspace database ({exc}); "
                                    "nothing was archived", file=label) from None
            except OSError as exc:
                raise ForecastError(f"cannot move the archive file into place {final} "
                                    f"({exc.strerror or exc}); nothing was archived: check the disk and "
                                    "permissions, then ingest again", file=label) from None
        finally:
            tmp.unlink(missing_ok=True)
    log.info("forecast %s %s archived: %s", source, ref, final)
    return record


def list_archived(workspace: Workspace, source: str | None = None) -> list[ArchivedForecast]:
    """Archived cycles (of one source, or all), by source then cycle."""
    store = Store.open(workspace.database_url)
    t = forecasts_table
    query = select(t).order_by(t.c.source, t.c.cycle)
    if source is not None:
        query = query.where(t.c.source == source)
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    return sorted((_record(r, workspace) for r in rows), key=lambda a: (a.source, a.cycle))


def load_archived(workspace: Workspace, source: str, cycle: dt.datetime | None = None) -> xr.Dataset:
    """The archived forecast of ``source`` at ``cycle`` (the latest when None), opened lazily.

    Raises
    ------
    ForecastError
        No such cycle (the message lists the archived ones), or its file is
        missing.
    """
    items = list_archived(workspace, source)
    if not items:
        raise ForecastError(f"no forecast of source '{source}' is archived; ingest one first: "
                            f"ewarn ingest {source} FILE")
    if cycle is None:
        chosen = items[-1]
    else:
        want = _aware(to_utc(cycle))
        found = [a for a in items if a.cycle == want]
        if not found:
            listed = ", ".join(f"{a.cycle:%Y-%m-%dT%H}Z" for a in items[-10:])
            raise ForecastError(f"cycle {want:%Y-%m-%dT%H}Z of source '{source}' is not archived "
                                f"(archived: {listed}); ingest it first")
        chosen = found[0]
    if not chosen.path.exists():
        raise ForecastError(f"the archive file of {source} {chosen.cycle:%Y-%m-%dT%H}Z is missing; "
                            f"re-ingest it with --force", file=str(chosen.path))
    return xr.open_dataset(chosen.path, engine="netcdf4", chunks=chunks())
