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

import itertools
import math
import tomllib
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

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


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


class TableReader:
    """Read one table file, collecting every problem (not only the first).

    Each hazard module parses its own table with one reader::

        t = TableReader(path)
        sec = t.section("streams")
        threshold = t.number(sec, "streams", "threshold_km2", 1e-6, 1e6) if sec else nan
        t.done()  # raises TableError listing every problem

    ``where`` arguments name a section (``"streams"``, shown as ``[streams]``)
    or a row label already in brackets (``"[[curves]] 2"``, ``"curves[2]"``).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.file = str(path)
        self.doc = read_toml(path)
        self.problems: list[Problem] = []

    @staticmethod
    def _where(where: str) -> str:
        return where if where.startswith("[") or "[" in where else f"[{where}]"

    def problem(self, message: str, where: str, field: str | None = None) -> None:
        """Record one problem at ``where`` / ``field``."""
        self.problems.append(Problem(self.file, message, self._where(where), field))

    def section(self, name: str) -> dict[str, Any]:
        """The table ``[name]`` with its provenance checked; ``{}`` (and a problem) when missing."""
        sec = self.doc.get(name)
        if not isinstance(sec, dict):
            self.problem("section missing; copy it from the shipped table", name)
            return {}
        self.problems.extend(provenance_problems(sec, self.file, f"[{name}]"))
        return sec

    def rows(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        """The ``[[name]]`` rows as ``(label, row)``, each with its provenance and ``name`` checked."""
        value = self.doc.get(name)
        if not isinstance(value, list) or not value or not all(isinstance(r, dict) for r in value):
            self.problems.append(Problem(self.file, f"missing; give at least one [[{name}]] row",
                                         f"[[{name}]]"))
            return []
        out = []
        for i, r in enumerate(value):
            where = f"{name}[{i}]"
            self.problems.extend(provenance_problems(r, self.file, where))
            if not isinstance(r.get("name"), str) or not r["name"]:
                self.problems.append(Problem(self.file, "missing; name the row", where, "name"))
            out.append((where, r))
        return out

    def number(self, sec: Mapping[str, Any], where: str, key: str, lo: float, hi: float, *,
               closed: bool = True, integer: bool = False) -> float:
        """``sec[key]`` as a float in ``[lo, hi]`` (open when not ``closed``); NaN and a problem if not."""
        v = sec.get(key)
        ok = _is_number(v) and (lo <= v <= hi if closed else lo < v < hi)
        if integer:
            ok = ok and isinstance(v, int)
        if not ok:
            kind = "a whole number" if integer else "a number"
            rng = f"[{lo:g}, {hi:g}]" if closed else f"({lo:g}, {hi:g})"
            self.problem(f"is {v!r}; must be {kind} in {rng}", where, key)
            return float("nan")
        return float(v)

    def numbers(self, sec: Mapping[str, Any], where: str, key: str, lo: float, hi: float, *,
                increasing: bool = False, nondecreasing: bool = False, n: int | None = None
                ) -> tuple[float, ...]:
        """``sec[key]`` as a non-empty tuple of floats in ``[lo, hi]``, optionally ordered / of length n."""
        v = sec.get(key)
        ok = isinstance(v, list) and len(v) > 0 and all(_is_number(x) and lo <= x <= hi for x in v)
        if not ok:
            self.problem(f"is {v!r}; must be a non-empty list of numbers in [{lo:g}, {hi:g}]", where, key)
            return ()
        if n is not None and len(v) != n:
            self.problem(f"has {len(v)} values; must have {n} (one per entry of the matching list)",
                         where, key)
        elif increasing and any(b <= a for a, b in itertools.pairwise(v)):
            self.problem(f"is {v!r}; values must increase", where, key)
        elif nondecreasing and any(b < a for a, b in itertools.pairwise(v)):
            self.problem(f"is {v!r}; values must not decrease", where, key)
        return tuple(float(x) for x in v)

    def done(self) -> None:
        """Raise :class:`TableError` listing every error found (no-op when none)."""
        raise_if_problems(self.problems, self.file)


T = TypeVar("T")


def load_cached(parse: Callable[[Path], T], path: Path | str | None, default: Path) -> T:
    """``parse(path)``, cached per file and modification time.

    A recalibrated copy is re-read when it changes on disk; ``path=None``
    reads the shipped table ``default``.
    """
    p = Path(path).resolve() if path is not None else default
    try:
        st = p.stat()
        stamp = (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = (-1, -1)  # read_toml reports the missing file
    return _load_cached(parse, p, stamp)


@lru_cache(maxsize=32)
def _load_cached(parse: Callable[[Path], Any], path: Path, stamp: tuple[int, int]) -> Any:
    return parse(path)
