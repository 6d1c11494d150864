"""ewarn — flash-flood and landslide early warning and evacuation planning for Vietnam.

The package follows the flow of DESIGN.md: ``forecasts`` → ``hazard_models`` →
``alerts`` / ``routing`` → ``scenarios``; ``pipeline.run_cycle`` sequences one
forecast cycle, and ``cli`` is the ``ewarn`` command.
"""

# Load Python's own SQLite and PROJ before anything can import cfgrib/eccodes (xarray's backend
# discovery does): the eccodes wheel loads its bundled libsqlite3 3.26 globally, and a sqlite3 or
# pyproj imported after it binds to that old library — no RETURNING (the outbox's claims fail) and
# no PROJ database (CRSError, sometimes a crash). Importing them first keeps the right libraries.
import sqlite3  # noqa: F401  (import order matters, see above)
from importlib.metadata import PackageNotFoundError, version

import pyproj  # noqa: F401  (import order matters, see above)

try:
    __version__ = version("ewarn")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"
