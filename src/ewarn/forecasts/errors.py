"""The error of the forecasts room.

A :class:`ForecastError` names the file (as the user gave it), the variable,
the problem and the fix. Validation may find several problems at once; they
are all carried in :attr:`ForecastError.problems` and listed in the message.
"""

from __future__ import annotations

from ewarn.errors import EwarnError, Problem


class ForecastError(EwarnError):
    """A forecast file, URL or archive entry cannot be used.

    Parameters
    ----------
    message : str
        The problem and what to do about it.
    file : str
        The file or URL as the user named it.
    variable : str, optional
        The variable the problem is in.
    problems : list of Problem, optional
        Every problem found (validation); listed after the message.
    """

    def __init__(self, message: str, *, file: str = "", variable: str | None = None,
                 problems: list[Problem] | None = None) -> None:
        self.file = file
        self.variable = variable
        self.problem = message
        self.problems = list(problems or [])
        where = ", ".join(x for x in (file, variable and f"variable '{variable}'") if x)
        text = f"{where}: {message}" if where else message
        if self.problems:
            text += "".join(f"\n  - {p.severity}: {p}" for p in self.problems)
        super().__init__(text)
