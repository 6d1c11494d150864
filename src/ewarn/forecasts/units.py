"""Units of precipitation: one explicit conversion table.

Every reader's values pass through :func:`conversion`, which maps a units
string to its kind (``amount`` — a depth of water; ``rate`` — a depth per
time) and the factor to mm (amounts) or mm s-1 (rates). A string that is not
in the table, or no units at all, is an error naming the variable: ewarn
never guesses a unit, since a wrong guess is off by a factor of 1000.

Spellings are normalised before the lookup (case, spaces, ``**``/``^``
exponents, ``.``/``*`` products), so ``kg m**-2 s**-1``, ``kg m^-2 s^-1``,
``kg.m-2.s-1`` and ``kg m-2 s-1`` are one entry.

Sources
-------
1 kg m-2 of liquid water is 1 mm of depth (density of water 1000 kg m-3;
WMO Guide to Instruments and Methods of Observation, WMO-No. 8, vol. I,
ch. 6). ECMWF ``tp`` is in m of water equivalent (ECMWF parameter database,
paramId 228); NCEP ``APCP`` in kg m-2 and ``PRATE`` in kg m-2 s-1 (NCEP GRIB2
table 4.2-0-1).
"""

from __future__ import annotations

import re
from typing import Literal, NamedTuple

from ewarn.forecasts.errors import ForecastError

Kind = Literal["amount", "rate"]


class Conversion(NamedTuple):
    """How to turn values into mm (amount) or mm s-1 (rate)."""

    kind: Kind
    factor: float


_H = 3600.0
_D = 86400.0

#: Normalised units string → (kind, factor to mm or mm s-1).
UNITS: dict[str, Conversion] = {
    # depths of water [→ mm]
    "mm": Conversion("amount", 1.0),
    "millimeter": Conversion("amount", 1.0),
    "millimeters": Conversion("amount", 1.0),
    "millimetre": Conversion("amount", 1.0),
    "millimetres": Conversion("amount", 1.0),
    "cm": Conversion("amount", 10.0),
    "m": Conversion("amount", 1000.0),
    "meter": Conversion("amount", 1000.0),
    "meters": Conversion("amount", 1000.0),
    "metre": Conversion("amount", 1000.0),
    "metres": Conversion("amount", 1000.0),
    "m of water equivalent": Conversion("amount", 1000.0),
    "kg m-2": Conversion("amount", 1.0),
    "kg/m2": Conversion("amount", 1.0),
    # rates [→ mm s-1]
    "mm/s": Conversion("rate", 1.0),
    "mm s-1": Conversion("rate", 1.0),
    "mm/h": Conversion("rate", 1.0 / _H),
    "mm/hr": Conversion("rate", 1.0 / _H),
    "mm h-1": Conversion("rate", 1.0 / _H),
    "mm hr-1": Conversion("rate", 1.0 / _H),
    "mm/d": Conversion("rate", 1.0 / _D),
    "mm/day": Conversion("rate", 1.0 / _D),
    "mm d-1": Conversion("rate", 1.0 / _D),
    "mm day-1": Conversion("rate", 1.0 / _D),
    "m/s": Conversion("rate", 1000.0),
    "m s-1": Conversion("rate", 1000.0),
    "m/h": Conversion("rate", 1000.0 / _H),
    "m h-1": Conversion("rate", 1000.0 / _H),
    "kg m-2 s-1": Conversion("rate", 1.0),
    "kg/m2/s": Conversion("rate", 1.0),
    "kg m-2 h-1": Conversion("rate", 1.0 / _H),
    "kg/m2/h": Conversion("rate", 1.0 / _H),
    "kg m-2 d-1": Conversion("rate", 1.0 / _D),
}


def normalize_units(text: str) -> str:
    """A units string in the table's spelling.

    Lower case, single spaces, exponents without ``**``/``^`` (``m**-2`` →
    ``m-2``), products written with spaces (``kg.m-2`` → ``kg m-2``),
    ``kg/m^2`` → ``kg/m2``.
    """
    s = text.strip().lower()
    s = s.replace("**", "").replace("^", "")
    s = re.sub(r"(?<=[a-z0-9])[.*·](?=[a-z])", " ", s)
    s = re.sub(r"\s*/\s*", "/", s)
    return re.sub(r"\s+", " ", s)


def conversion(units: str | None, *, variable: str, file: str = "") -> Conversion:
    """The conversion of ``units`` to mm (amounts) or mm s-1 (rates).

    Parameters
    ----------
    units : str or None
        The variable's ``units`` attribute (or a profile's override).
    variable : str
        Variable name, for the message.
    file : str
        File or URL, for the message.

    Raises
    ------
    ForecastError
        No units, or units not in :data:`UNITS`.
    """
    if units is None or not str(units).strip():
        raise ForecastError(
            "has no units attribute; ewarn does not guess units. Fix the file, or set "
            "units = \"mm\" (or the true unit) in the source profile (forecasts.sources.NAME in ewarn.toml)",
            file=file, variable=variable)
    key = normalize_units(str(units))
    conv = UNITS.get(key)
    if conv is None:
        known = ", ".join(sorted({k for k in UNITS if " " in k or "/" in k or len(k) <= 2}))
        raise ForecastError(
            f"units {units!r} are not a precipitation unit ewarn knows (known: {known}); "
            "fix the file's units attribute, or set units in the source profile",
            file=file, variable=variable)
    return conv
