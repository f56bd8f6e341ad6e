"""Error types shared by every layer.

Everything a user can cause (a bad spec, a bad CSV row, a refused transition) is a
``UserError``: the CLI prints its message on one line and exits with its exit code.
Anything else is a bug and may show a traceback. This module imports nothing from
the rest of the package, so every layer can raise these.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, order=True)
class Location:
    """A place in a file, 1-based like editors and compilers print it."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.col or 1}"


@dataclass(frozen=True)
class Diagnostic:
    """One finding about the input: an error stops the command, a warning does not."""

    location: Location
    message: str
    severity: Severity = Severity.ERROR

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.location.file, self.location.line, self.location.col, self.message)

    def __str__(self) -> str:
        return f"{self.location}: {self.severity.value}: {self.message}"


class UserError(Exception):
    """An error the user can fix; printed as one line, never as a traceback."""

    exit_code = 1

    def __init__(self, message: str, location: Location | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.location = location

    def __str__(self) -> str:
        if self.location is None:
            return self.message
        return f"{self.location}: {self.message}"


class SpecError(UserError):
    """The specs are invalid; carries every diagnostic found, sorted by place."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics, key=Diagnostic.sort_key)
        errors = [d for d in self.diagnostics if d.is_error]
        first = errors[0] if errors else None
        super().__init__(
            f"{len(errors)} error(s) in the specs" + (f"; first: {first}" if first else ""),
        )


class ConfigError(UserError):
    """Operator configuration (reconciler.toml, environment) is invalid."""
