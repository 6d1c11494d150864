"""Source profiles: how a named source is read.

``source`` names a profile: the workspace's ``[forecasts.sources.NAME]``
first (merged key by key over a built-in profile of the same name), else a
built-in (:attr:`ewarn.config.ForecastSettings.BUILTIN_SOURCES`).
"""

from __future__ import annotations

import re

from ewarn.config import ForecastSettings, SourceProfile
from ewarn.forecasts.errors import ForecastError

#: Source names become folder names in the archive.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_source_name(name: str) -> str:
    """``name`` if it is usable as an archive folder name, else ForecastError."""
    if not _NAME.match(name) or name in {".", ".."}:
        raise ForecastError(
            f"source name {name!r} is not usable: use letters, digits, '-', '_' or '.' "
            "(at most 64 characters), e.g. 'gfs' or 'ecmwf-ens'")
    return name


def resolve_profile(source: str | SourceProfile, settings: ForecastSettings | None = None
                    ) -> SourceProfile:
    """The profile a source name stands for.

    Parameters
    ----------
    source : str or SourceProfile
        A profile name, or a profile (returned as it is; named ``custom`` if
        it has no name).
    settings : ForecastSettings, optional
        The workspace's ``[forecasts]`` settings (default: built-ins only).

    Raises
    ------
    ForecastError
        Unknown name; the message lists the known ones.
    """
    if isinstance(source, SourceProfile):
        return source if source.name else source.model_copy(update={"name": "custom"})
    settings = settings or ForecastSettings()
    profile = settings.sources.get(source)
    if profile is None:
        known = ", ".join(sorted(settings.sources))
        raise ForecastError(
            f"unknown forecast source {source!r} (known: {known}); add a table "
            f"forecasts.sources.{source} to ewarn.toml (kind, variable, accumulation, units) or use "
            "one of the known names")
    return profile
