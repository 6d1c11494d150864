"""Data tables of the hazard models, and their reader.

The numbers the hazard models take from laws, papers or practice live here as
TOML files a hydrologist can read and recalibrate, not inline in code:

``decision18.toml``
    Decision 18/2021/QĐ-TTg: Article 44 (heavy rain) and Article 46 (flash
    flood, landslide) level tables, the region groups KV1–KV4, the mapping of
    susceptibility classes to zoning-map classes, the Article 4 raise rules.
``rainfall.toml``
    Rainfall-index parameters: the antecedent precipitation index recession
    constant, the rain-day threshold, Vietnam's hydro-met day.

Every row carries ``source`` (where the number comes from) and ``confidence``,
one of ``confirmed`` | ``secondary`` | ``unverified`` exactly as tagged in the
project's SCIENCE.md: *confirmed* seen in a primary or official source,
*secondary* seen only in a secondary source (press, law Q&A pages),
*unverified* a textbook value, a recollection or an ewarn choice.

This module only reads files and checks what every table shares (TOML syntax,
provenance); the meaning of each table is checked by the module that uses it
(:mod:`ewarn.hazard_models.levels`, :mod:`ewarn.hazard_models.rainfall`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ewarn.errors import Problem, ValidationError

#: Folder of the tables shipped with ewarn.
TABLES_DIR = Path(__file__).resolve().parent

#: Allowed values of the ``confidence`` field, as tagged in SCIENCE.md.
CONFIDENCE = ("confirmed", "secondary", "unverified")


class TableError(ValidationError):
    """A data table is missing, is not valid TOML, or has wrong rows (all problems listed)."""


def read_toml(path: Path | str) -> dict[str, Any]:
    """Read one TOML table file.

    Parameters
    ----------
    path : path-like
        The file.

    Returns
    -------
    dict
        The parsed document.

    Raises
    ------
    TableError
        When the file is missing, unreadable or not valid TOML; the message
        names the file, the line TOML reports and what to do.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise TableError(
            f"table file {path} not found",
            [Problem(str(path), "the file does not exist; point to a copy of the tables shipped in "
                     f"{TABLES_DIR} (copy the folder, then edit the copy)")],
        ) from None
    except OSError as exc:
        raise TableError(f"table file {path} cannot be read",
                         [Problem(str(path), f"{exc.strerror}; check the path and permissions")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise TableError(f"table file {path} is not valid TOML",
                         [Problem(str(path), f"{exc}; fix the syntax (https://toml.io)")]) from None


def provenance_problems(row: Mapping[str, Any], file: str, where: str) -> list[Problem]:
    """Problems with a row's ``source`` and ``confidence`` fields (empty when both are right).

    Parameters
    ----------
    row : mapping
        One table row (a TOML table).
    file : str
        The file, for the message.
    where : str
        The row, for the message (``article46.rows[3]``).
    """
    out: list[Problem] = []
    source = row.get("source")
    if not isinstance(source, str) or not source.strip():
        out.append(Problem(file, "missing or empty; name where this number comes from", where, "source"))
    conf = row.get("confidence")
    if conf not in CONFIDENCE:
        out.append(Problem(file, f"is {conf!r}; must be one of {', '.join(CONFIDENCE)}", where,
                           "confidence"))
    return out


def raise_if_problems(problems: list[Problem], file: str) -> None:
    """Raise :class:`TableError` listing every error in ``problems`` (no-op when none)."""
    if any(p.severity == "error" for p in problems):
        n = sum(p.severity == "error" for p in problems)
        raise TableError(f"table file {file} has {n} problem(s); fix them or restore the shipped copy "
                         f"from {TABLES_DIR}", problems)
