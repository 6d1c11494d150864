"""Errors that reach people.

Every error ewarn raises on bad input is an :class:`EwarnError`: its message
names the file, the row or field, the problem and what to do. The CLI prints
the message (never a traceback) and exits with :attr:`EwarnError.exit_code`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class EwarnError(Exception):
    """Base of every user-facing error; the message is for a person."""

    exit_code: int = 2


class ConfigError(EwarnError):
    """A settings file or environment variable is wrong."""


class WorkspaceError(EwarnError):
    """The workspace folder is missing, not initialised or not writable."""


@dataclass(frozen=True)
class Problem:
    """One finding of a validation: where it is and what is wrong.

    Parameters
    ----------
    file : str
        The file (as the user named it) the problem is in.
    message : str
        What is wrong and what to do.
    where : str, optional
        Row (``row 12``), feature (``feature 3``) or record id.
    field : str, optional
        Column, attribute or key.
    severity : {"error", "warning"}
        Errors refuse the input; warnings are reported and the input is used.
    """

    file: str
    message: str
    where: str | None = None
    field: str | None = None
    severity: str = "error"

    def __str__(self) -> str:
        loc = ", ".join(x for x in (self.file, self.where, self.field and f"field '{self.field}'") if x)
        return f"{loc}: {self.message}"


@dataclass
class ValidationError(EwarnError):
    """Many problems found at once (all of them, not only the first)."""

    summary: str
    problems: list[Problem] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(str(self))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    def __str__(self) -> str:
        lines = [self.summary]
        shown = self.errors[:50]
        lines += [f"  - {p}" for p in shown]
        if len(self.errors) > len(shown):
            lines.append(f"  ... and {len(self.errors) - len(shown)} more errors")
        return "\n".join(lines)
