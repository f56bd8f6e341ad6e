"""Reading the CRM's input files: UTF-8 text lines counted as they are read, CSV
records with the line they start on, and the problems an import reports against them.

Shared by the contact and associate imports and by ``events ingest``: every message
names the file and the line, and a file that cannot be read as a whole is an
``InputError`` before anything is written.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from reconciler.errors import UserError

# --- problems ------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One finding about one line of an input file."""

    file: str
    line: int
    message: str
    warning: bool = False

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line > 0 else self.file
        return f"{where}: {'warning: ' if self.warning else ''}{self.message}"


class InputError(UserError):
    """The file cannot be read as a whole (encoding, CSV syntax, no header): nothing is imported."""


class ImportRejected(UserError):
    """Some rows (or the header) are invalid, so nothing was imported."""

    def __init__(self, file: str, problems: list[Problem], what: str = "imported") -> None:
        errors = sum(1 for p in problems if not p.warning)
        super().__init__(f"{errors} error(s) in {file}; nothing was {what}")
        self.problems = problems


# --- reading -----------------------------------------------------------------------------


class TextLines:
    """The physical lines of a UTF-8 file (a BOM is dropped), counted as they are read,
    so a parser pulling from it always knows the line it is on."""

    def __init__(self, name: str, handle: BinaryIO) -> None:
        self.name = name
        self.line = 0
        self._handle = handle

    def __iter__(self) -> Iterator[str]:
        for raw in self._handle:
            self.line += 1
            try:
                text = raw.decode("utf-8-sig" if self.line == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                column = len(raw[: exc.start].decode("utf-8", "replace")) + 1
                raise InputError(
                    f"{self.name}:{self.line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {column}); "
                    "save the file as UTF-8"
                ) from None
            if "\x00" in text:
                raise InputError(f"{self.name}:{self.line}: contains a NUL byte; this is a binary file, not text")
            yield text


@contextmanager
def open_lines(path: Path) -> Iterator[TextLines]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    with handle:
        yield TextLines(str(path), handle)


class CsvFile:
    """A CSV file read one record at a time. The delimiter (``,``, ``;`` or tab) is
    sniffed from the header line; quoting is strict, so a broken quote is an error
    with its line instead of a silently merged row."""

    def __init__(self, lines: TextLines) -> None:
        self.name = lines.name
        self._lines = lines
        source = iter(lines)
        first = next((text for text in source if text.strip()), None)
        if first is None:
            raise InputError(f"{self.name}: the file is empty; expected a header line such as email,first_name")
        self.delimiter = _sniff(first)
        self._reader = csv.reader(itertools.chain([first], source), delimiter=self.delimiter, strict=True)
        self.header_line = lines.line
        header = self._next()
        assert header is not None  # the first line is not blank
        self.header = [name.strip() for name in header]

    def _next(self) -> list[str] | None:
        try:
            return next(self._reader)
        except StopIteration:
            return None
        except csv.Error as exc:
            raise InputError(f"{self.name}:{self._lines.line}: {_csv_message(exc)}") from None

    def records(self) -> Iterator[tuple[int, list[str]]]:
        """(first physical line, cells) of every record that is not blank."""
        while True:
            start = self._lines.line + 1
            cells = self._next()
            if cells is None:
                return
            if any(cell.strip() for cell in cells):
                yield start, cells

    def shape_error(self, cells: list[str]) -> str | None:
        if len(cells) == len(self.header):
            return None
        return (
            f"the row has {len(cells)} field(s) but the header has {len(self.header)}; "
            f"check the quoting and the delimiter {self.delimiter!r}"
        )


def _sniff(line: str) -> str:
    try:
        return csv.Sniffer().sniff(line, delimiters=",;\t").delimiter
    except csv.Error:
        return ","


def _csv_message(exc: csv.Error) -> str:
    text = str(exc)
    if "unexpected end of data" in text:
        return "a quoted field is never closed (unexpected end of the file)"
    if "new-line character seen in unquoted field" in text:
        return "a line break inside an unquoted field (old Mac line endings?); save with LF or CRLF line endings"
    if "field larger than field limit" in text:
        return f"a field is longer than {csv.field_size_limit()} characters"
    return f"invalid CSV: {text}"


@dataclass
class ImportResult:
    """What an import did; ``problems`` are in file order (errors and warnings)."""

    file: str
    noun: str = "contact"
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def imported(self) -> int:
        return self.created + self.updated + self.unchanged

    def summary(self) -> str:
        return (
            f"imported {self.imported} {self.noun}(s): {self.created} created, {self.updated} updated, "
            f"{self.unchanged} unchanged; {self.errors} error(s)"
        )
