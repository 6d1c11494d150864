"""ewarn — flash-flood and landslide early warning and evacuation planning for Vietnam.

The package follows the flow of DESIGN.md: ``forecasts`` → ``hazard_models`` →
``alerts`` / ``routing`` → ``scenarios``; ``pipeline.run_cycle`` sequences one
forecast cycle, and ``cli`` is the ``ewarn`` command.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ewarn")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"
