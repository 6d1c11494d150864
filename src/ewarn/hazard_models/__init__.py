"""Hazard models room: rainfall accumulations, flash-flood and landslide indices,
zonal statistics per commune, Decision 18/2021 risk levels and the per-commune
risk assessment.

The public API of every module is re-exported here, imported lazily on first
use (PEP 562), so that ``import ewarn.hazard_models.levels`` does not load the
terrain stack (pyflwdir, numba) or the database layer:

* :mod:`~ewarn.hazard_models.rainfall` — accumulations, antecedent indices, rain days;
* :mod:`~ewarn.hazard_models.levels` — Decision 18/2021 Articles 44, 46 and 4;
* :mod:`~ewarn.hazard_models.zonal` — :class:`CommuneGrid` (commune × cell weights);
* :mod:`~ewarn.hazard_models.cell_runs` — :class:`CellRuns`, the weights as runs of
  consecutive cells (numba products streaming a time-major field);
* :mod:`~ewarn.hazard_models.terrain` — slope, flow network, susceptibility;
* :mod:`~ewarn.hazard_models.flash_flood` — SCS flash-flood guidance, ERIC-style index;
* :mod:`~ewarn.hazard_models.landslide` — LHASA / ID thresholds / infinite slope;
* :mod:`~ewarn.hazard_models.assess` — :func:`ewarn.hazard_models.assess.assess` and
  its outputs (NetCDF, summary, database table);
* :mod:`~ewarn.hazard_models.cells` — :func:`hazard_cells`, the per-cell hazard grid of a
  forecast window (threatened streams, triggered slopes) for routing.

The function ``assess`` itself is NOT re-exported under that name: it would
shadow the submodule ``ewarn.hazard_models.assess`` (``from ewarn.hazard_models
import assess`` gives the module); it is re-exported as :func:`assess_forecast`.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = ("rainfall", "levels", "zonal", "cell_runs", "terrain", "flash_flood", "landslide", "assess",
            "cells")

_EXPORTS: dict[str, tuple[str, str]] = {}
_NAMES = {
    "rainfall": """
        ARI_WEIGHTS DEFAULT_WINDOWS_H RainfallInputError RainfallParameters accumulations
        antecedent_precipitation_index antecedent_rainfall_index daily_totals first_exceedance
        hydromet_daily_totals max_accumulation peak_time rain_days rainfall_parameters window_steps
    """,
    "levels": """
        LEVELS LEVEL_COLOURS LEVEL_DISCLAIMER MAX_LEVEL REGION_GROUP_NAMES ZONE_CLASSES ZONE_NAMES_VI
        Decision18Tables LevelInputError RegionGroupWarning RiskLevel combined_level
        flash_flood_landslide_level heavy_rain_level load_tables normalize_province_name region_group
        region_groups zone_class_from_susceptibility
    """,
    "zonal": """
        EARTH_RADIUS_KM CommuneGrid CommuneGridError GridMismatchError cell_areas_km2 grid_edges
    """,
    "cell_runs": """
        CellRuns
    """,
    "terrain": """
        D8_NODATA EARTH_RADIUS_M TerrainInputError TerrainParameters derive_terrain flow_network
        slope_degrees susceptibility_class terrain_cache_key terrain_for_region terrain_parameters
    """,
    "flash_flood": """
        FlashFloodInputError FlashFloodParameters curve_number curve_number_dry curve_number_wet
        eric_index eric_reference ffg ffg_threat flash_flood_guidance flash_flood_parameters
        flow_grid_coords runoff_coefficient scs_retention scs_runoff threat_class threat_ratio to_flow_grid
        upstream_runoff
    """,
    "landslide": """
        INDEX_CLASSES DailyThreshold IntensityDurationThreshold LandslideInputError LandslideParameters
        SlopeParameters ari_threshold commune_share daily_exceedance daily_threshold_mm factor_of_safety
        fs_class id_exceedance id_threshold_intensity landslide_hazard landslide_index
        landslide_parameters lhasa_class saturated_fraction susceptible triggered
    """,
    "assess": """
        ASSESS_TABLE AssessInputError AssessOptions AssessParameters assess_parameters assessments_table
        latest_assessment record_assessment summarize write_assessment
    """,
    "cells": """
        CELL_VARIABLES CellOptions HazardCellsError hazard_cells open_cells write_cells
    """,
}
for _mod, _names in _NAMES.items():
    for _name in _names.split():
        _EXPORTS[_name] = (_mod, _name)
_EXPORTS["assess_forecast"] = ("assess", "assess")

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _EXPORTS:
        mod, attr = _EXPORTS[name]
        value = getattr(importlib.import_module(f"{__name__}.{mod}"), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_MODULES))
