"""Forecasts room: read, normalize, validate and archive rainfall forecasts.

Every reader ends in the forecast contract of DESIGN.md; nothing downstream
knows where a forecast came from.

Modules: :mod:`reader` (:func:`open_forecast`, the one entry point) over
:mod:`netcdf` (CF NetCDF, OPeNDAP, WRF), :mod:`grib` (GRIB 1/2 via cfgrib),
:mod:`remote` (HTTP downloads) and :mod:`dropfolder`; :mod:`normalize` with
:mod:`units`, :mod:`accumulation` and :mod:`grid`; :mod:`validate`;
:mod:`archive` (:func:`ingest`, the database table ``forecasts``);
:mod:`antecedent`; :mod:`profiles`. ``synthetic`` generates storms.
"""

from ewarn.forecasts.antecedent import AntecedentRain, antecedent
from ewarn.forecasts.archive import (
    ArchivedForecast,
    archive_path,
    forecasts_table,
    ingest,
    list_archived,
    load_archived,
)
from ewarn.forecasts.dropfolder import watch_folder
from ewarn.forecasts.errors import ForecastError
from ewarn.forecasts.normalize import normalize
from ewarn.forecasts.profiles import resolve_profile
from ewarn.forecasts.reader import open_forecast
from ewarn.forecasts.validate import validate

__all__ = [
    "AntecedentRain",
    "ArchivedForecast",
    "ForecastError",
    "antecedent",
    "archive_path",
    "forecasts_table",
    "ingest",
    "list_archived",
    "load_archived",
    "normalize",
    "open_forecast",
    "resolve_profile",
    "validate",
    "watch_folder",
]
