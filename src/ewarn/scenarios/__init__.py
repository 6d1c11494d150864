"""Scenarios room: planners' scenario files, what-if runs, comparisons and reports.

* :mod:`~ewarn.scenarios.schema` — the TOML schema (:func:`load_scenario`, :class:`Scenario`,
  :class:`ScenarioError`);
* :mod:`~ewarn.scenarios.rain` — the scenario's rain (:func:`scenario_rain`);
* :mod:`~ewarn.scenarios.changes` — shelters, settlements and road closures (:func:`apply_changes`);
* :mod:`~ewarn.scenarios.runner` — :func:`run_scenario` (the pipeline's chain, outputs, summary.json);
* :mod:`~ewarn.scenarios.compare` — :func:`compare`, :func:`sweep`, :func:`first_break`;
* :mod:`~ewarn.scenarios.report` — the self-contained HTML report.

The names below are re-exported lazily (PEP 562): ``import ewarn.scenarios``
loads nothing heavy.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Scenario": "schema", "ScenarioError": "schema", "load_scenario": "schema", "parse_scenario": "schema",
    "scenario_rain": "rain", "ScenarioRain": "rain",
    "apply_changes": "changes", "road_closures": "changes", "RoadClosures": "changes",
    "ScenarioResult": "runner", "ScenarioRunError": "runner", "run_scenario": "runner",
    "demo_region": "runner", "levels_table": "runner", "scenario_summary": "runner",
    "write_outputs": "runner",
    "compare": "compare", "sweep": "compare", "first_break": "compare", "compare_text": "compare",
    "sweep_text": "compare", "metrics": "compare",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
