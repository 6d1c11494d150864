"""The workspace database.

One SQLAlchemy 2 engine per workspace (SQLite file by default, any SQLAlchemy
URL through ``[workspace] database_url``) and one shared :data:`metadata`.
Each room declares its tables on :data:`metadata` in its own module;
:meth:`Store.ensure` creates whatever is missing (idempotent), so a module
that imports its tables and calls it gets them.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    select,
)
from sqlalchemy.exc import SQLAlchemyError

from ewarn.errors import WorkspaceError

#: Bumped when a table changes incompatibly.
SCHEMA_VERSION = 1

metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

#: One row per attempt of a job (a forecast cycle, a scenario, a demo run).
runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", String(64), nullable=False),
    Column("source", String(64)),
    Column("cycle", DateTime(timezone=True)),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("status", String(16), nullable=False),  # running | ok | failed
    Column("step", String(64)),  # the step that failed, or the last one done
    Column("message", Text),
    Column("counts", JSON),
)


def utcnow() -> dt.datetime:
    """Now, timezone-aware UTC (every stored time is UTC)."""
    return dt.datetime.now(dt.UTC)


def as_utc(value: Any) -> dt.datetime | None:
    """A stored or given time as an aware UTC datetime; None for a missing value (None, NaT, NaN).

    Naive values (SQLite gives them back naive; numpy datetime64 has no zone)
    are taken as UTC; aware ones are converted.
    """
    import pandas as pd

    if value is None or (not isinstance(value, dt.datetime) and pd.isna(value)):
        return None
    ts = pd.Timestamp(value)
    if pd.isna(ts):
        return None
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # pragma: no cover - trivial
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


_engines: dict[str, Engine] = {}
_lock = threading.Lock()


@dataclass
class Store:
    """A handle on the workspace database."""

    engine: Engine

    @classmethod
    def open(cls, url: str) -> Store:
        """Engine for ``url`` (cached per URL in this process), tables ensured."""
        with _lock:
            engine = _engines.get(url)
            if engine is None:
                try:
                    engine = create_engine(url, future=True)
                except (SQLAlchemyError, ValueError) as exc:
                    raise WorkspaceError(f"database URL {url!r} is not usable: {exc}; fix "
                                         "[workspace] database_url in ewarn.toml") from None
                if engine.dialect.name == "sqlite":
                    event.listen(engine, "connect", _sqlite_pragmas)
                _engines[url] = engine
        store = cls(engine)
        store.ensure()
        return store

    def ensure(self) -> None:
        """Create missing tables and record the schema version (idempotent)."""
        try:
            metadata.create_all(self.engine, checkfirst=True)
            with self.engine.begin() as conn:
                row = conn.execute(select(schema_version.c.version)).first()
                if row is None:
                    conn.execute(insert(schema_version).values(
                        id=1, version=SCHEMA_VERSION, applied_at=utcnow()))
                elif row.version > SCHEMA_VERSION:
                    raise WorkspaceError(
                        f"the workspace database has schema version {row.version}, newer than "
                        f"this ewarn ({SCHEMA_VERSION}); upgrade ewarn")
        except SQLAlchemyError as exc:
            raise WorkspaceError(f"cannot open the workspace database "
                                 f"{self.engine.url.render_as_string(hide_password=True)}: "
                                 f"{exc.__class__.__name__}: {exc.orig if hasattr(exc, 'orig') else exc}"
                                 ) from None

    @staticmethod
    def dispose_all() -> None:
        """Close every cached engine (tests, forked workers)."""
        with _lock:
            for engine in _engines.values():
                engine.dispose()
            _engines.clear()
