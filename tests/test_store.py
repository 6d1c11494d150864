"""The workspace database: WAL, idempotent tables, schema version."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, Table, func, select, text

from ewarn import store
from ewarn.errors import WorkspaceError


def test_sqlite_wal_and_schema_version(tmp_path):
    s = store.Store.open(f"sqlite:///{tmp_path / 'a.db'}")
    with s.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(select(store.schema_version.c.version)).scalar() == store.SCHEMA_VERSION


def test_ensure_is_idempotent_and_creates_late_tables(tmp_path):
    url = f"sqlite:///{tmp_path / 'b.db'}"
    s = store.Store.open(url)
    s.ensure()
    s.ensure()
    with s.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(store.schema_version)).scalar() == 1
    late = Table("late_table_for_test", store.metadata, Column("id", Integer, primary_key=True))
    try:
        s.ensure()
        with s.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(late)).scalar() == 0
    finally:
        store.metadata.remove(late)


def test_newer_schema_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    s = store.Store.open(url)
    with s.engine.begin() as conn:
        conn.execute(store.schema_version.update().values(version=store.SCHEMA_VERSION + 1))
    with pytest.raises(WorkspaceError, match="newer than this ewarn"):
        s.ensure()


def test_unusable_url(tmp_path):
    with pytest.raises(WorkspaceError, match="database"):
        store.Store.open(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'x.db'}")
