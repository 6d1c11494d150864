"""Shared fixtures.

``shared_data`` is ``../shared/data`` beside the checkout (real public files);
tests that need it skip with the reason when it is absent (e.g. a user's
machine). No test touches the network.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EWARN_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real reference files; skip when it is not beside the checkout."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data folder {SHARED_DATA} is absent (it lives beside the "
                    "checkout as ../shared/data; set EWARN_SHARED_DATA to point elsewhere)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No test reads the developer's EWARN_* variables or writes to the cwd."""
    for name in list(os.environ):
        if name.startswith("EWARN_") and name != "EWARN_SHARED_DATA":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EWARN_WORKSPACE", str(tmp_path / "ws-default"))
    yield
    from ewarn.store import Store

    Store.dispose_all()
