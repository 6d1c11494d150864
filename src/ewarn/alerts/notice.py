"""What the warning policy decides to say about one commune: the :class:`Notice`.

A notice is the language-free content of a warning, an update, a reminder or an
all-clear for one commune and one hazard in one forecast cycle. The policy
(:mod:`ewarn.alerts.policy`) makes notices from an assessment; the message
templates (:mod:`ewarn.alerts.messages`) turn a notice into SMS text for one
contact; CAP (:mod:`ewarn.alerts.cap`) turns it into a CAP 1.2 alert. All
times are timezone-aware UTC; they are shown in Asia/Ho_Chi_Minh.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

__all__ = ["HAZARDS", "KINDS", "Hazard", "Kind", "Notice", "ProvinceSummary"]

#: ``warning`` a commune reaches the configured level; ``update`` its level rises;
#: ``reminder`` the level is unchanged after the reminder interval;
#: ``all_clear`` it falls back below the configured level.
Kind = Literal["warning", "update", "reminder", "all_clear"]
KINDS: tuple[str, ...] = ("warning", "update", "reminder", "all_clear")

#: ``flash_landslide``: Decision 18 Art. 46 (lũ quét, sạt lở đất);
#: ``heavy_rain``: Art. 44 (mưa lớn).
Hazard = Literal["flash_landslide", "heavy_rain"]
HAZARDS: tuple[str, ...] = ("flash_landslide", "heavy_rain")


@dataclass(frozen=True)
class Notice:
    """One commune, one hazard, one cycle: what to tell its officials.

    Attributes
    ----------
    kind : {"warning", "update", "reminder", "all_clear"}
    hazard : {"flash_landslide", "heavy_rain"}
    commune_code, commune_name, province : str
        Official 5-digit code, name (with diacritics) and province of the commune.
    level : int
        Decision 18/2021 level now in force (0 for an all-clear).
    previous_level : int
        Level of the previous notice for this commune and hazard (0 if none).
    source, cycle : str, datetime
        Forecast source and cycle (``forecast_reference_time``, UTC).
    onset, peak, until : datetime or None
        First time the level is reached, time of the heaviest rain, and the
        end of the window (last time the level holds) [UTC].
    rain_24h_max, rain_6h_max, rain_1h_max : float
        Driving rainfall: highest commune rain over 24, 6 and 1 h [mm].
    shelter : str
        Name of the nearest/assigned shelter for the commune ("" if none known).
    polygon : list of (lat, lon)
        Closed commune outline for CAP, simplified (< 100 points); may be empty.
    issued : datetime
        When the notice was made [UTC].
    references : tuple of str
        Identifiers of earlier notices it updates or cancels (CAP ``references``).
    """

    kind: Kind
    hazard: Hazard
    commune_code: str
    commune_name: str
    province: str
    level: int
    previous_level: int
    source: str
    cycle: datetime
    onset: datetime | None
    peak: datetime | None
    until: datetime | None
    rain_24h_max: float
    rain_6h_max: float
    rain_1h_max: float
    issued: datetime
    shelter: str = ""
    polygon: list[tuple[float, float]] = field(default_factory=list)
    references: tuple[str, ...] = ()

    @property
    def identifier(self) -> str:
        """Stable id: ``ewarn-{source}-{cycle:%Y%m%dT%H}-{commune}-{hazard}-{kind}-{level}``."""
        return (f"ewarn-{self.source}-{self.cycle:%Y%m%dT%H}-{self.commune_code}-{self.hazard}"
                f"-{self.kind}-{self.level}")


@dataclass(frozen=True)
class ProvinceSummary:
    """One message per cycle for province operators: how many communes at each level.

    Attributes
    ----------
    province : str
    source, cycle : str, datetime
    counts : dict of int to int
        Number of communes at each level >= 1.
    worst : list of (commune name, level, onset)
        The most threatened communes, highest level then earliest onset first.
    issued : datetime
    """

    province: str
    source: str
    cycle: datetime
    counts: dict[int, int]
    worst: list[tuple[str, int, datetime | None]]
    issued: datetime

    @property
    def identifier(self) -> str:
        return f"ewarn-{self.source}-{self.cycle:%Y%m%dT%H}-summary-{self.province}"
