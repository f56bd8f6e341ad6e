"""Importing contacts from CSV: stream the file, validate every row, upsert in batches.

Why this shape: a file of 100,000 contacts is read one record at a time and written
in batches of about a thousand inside ONE transaction, so memory stays flat and a
failure (an invalid row, a database error, a broken line) leaves the CRM exactly as
it was. Imports fire no triggers (the vendor's "contact created/updated" triggers
exclude imports), so no event is recorded. Nothing here prints: problems come back
as data, and the CLI decides how to show them.

The cell rules (shared with ``reconcile events emit --field``): an empty cell means
"not given" and never overwrites; booleans are true/false, yes/no, ja/nej or 1/0;
numbers use a dot; dates are ISO (YYYY-MM-DD); interests and subscriptions are
lists separated by ``;`` or ``|``. A column that names no contact field becomes a
custom field (``custom.<name>`` says so explicitly); its value is kept as text,
except ``true``/``false`` and plain numbers without leading zeros, which become a
boolean or a number so that flow conditions can compare them.
"""

from __future__ import annotations

import csv
import difflib
import itertools
import math
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

from reconciler.errors import UserError
from reconciler.spec.fields import COMPANY_FIELDS, CONTACT_FIELDS, FieldType
from reconciler.spec.types import check_email
from reconciler.state import Store
from reconciler.state import crm as tables
from reconciler.state.crm_store import CONTACT_COLUMNS, CrmTx

BATCH_SIZE = 1000
DERIVED_FIELDS = frozenset({"full_name", "created_at"})
IMPORTABLE_FIELDS: dict[str, FieldType] = {n: k for n, k in CONTACT_FIELDS.items() if n not in DERIVED_FIELDS}
COMPANY_IMPORTABLE: dict[str, FieldType] = {n: k for n, k in COMPANY_FIELDS.items() if n != "name"}
assert set(IMPORTABLE_FIELDS) <= set(CONTACT_COLUMNS), "a contact field without a column"


def _lengths(table: Any) -> dict[str, int]:
    found: dict[str, int] = {}
    for column in table.columns:
        length = getattr(column.type, "length", None)
        if isinstance(length, int):
            found[column.name] = length
    return found


CONTACT_LENGTHS = _lengths(tables.contacts)
COMPANY_LENGTHS = _lengths(tables.companies)
ASSOCIATE_LENGTHS = _lengths(tables.associates)


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


# --- values --------------------------------------------------------------------------------

_TRUE = frozenset({"true", "yes", "1", "ja"})
_FALSE = frozenset({"false", "no", "0", "nej"})
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_PLAIN_INT = re.compile(r"^-?(0|[1-9]\d{0,14})$")
_PLAIN_DECIMAL = re.compile(r"^-?(0|[1-9]\d{0,14})\.\d+$")
_LIST_SEPARATOR = re.compile(r"[;|]")


def parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"invalid boolean {text!r}: use true/false, yes/no, ja/nej or 1/0")


def parse_number(text: str) -> float:
    if not _NUMBER.match(text):
        raise ValueError(f"invalid number {text!r}: use digits with a dot as the decimal separator")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text!r} is too large")
    return value


MAX_INTEGER = 2**31 - 1  # an INTEGER column on every database


def parse_integer(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"invalid whole number {text!r}")
    return _in_range(int(text))


def _in_range(value: int) -> int:
    if not 0 <= value <= MAX_INTEGER:
        raise ValueError(f"whole number {value} is out of range (0 to {MAX_INTEGER})")
    return value


def parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"invalid date {text!r}: use YYYY-MM-DD") from None


def parse_list(text: str) -> list[str]:
    return list(dict.fromkeys(part.strip() for part in _LIST_SEPARATOR.split(text) if part.strip()))


# RFC 5322 dot-atom of ASCII atext: what almost every address's local part is.
_PLAIN_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")


def parse_email(text: str) -> str:
    """The lower-cased address, or ValueError. Same verdicts as ``check_email``; the
    common case (a plain ASCII local part) checks only the domain with it, once per
    domain, since validating every address of a 100k-row file fully dominates an import."""
    text = text.strip()
    local, at, domain = text.rpartition("@")
    if at and len(local) <= 64 and len(text) <= 254 and domain.isascii() and _PLAIN_LOCAL.match(local):
        try:
            return f"{local}@{_checked_domain(domain.lower())}".lower()
        except ValueError:
            pass  # the full check says what is wrong, about the whole address
    return check_email(text).lower()


@lru_cache(maxsize=65_536)
def _checked_domain(domain: str) -> str:
    return check_email(f"postmaster@{domain}").rpartition("@")[2]


def infer_custom(text: str) -> bool | int | float | str:
    """A custom field's cell: true/false and plain numbers become typed, the rest stays text."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if _PLAIN_INT.match(text):
        return int(text)
    if _PLAIN_DECIMAL.match(text):
        return float(text)
    return text


def _checked_text(length: int | None) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if length is not None and len(text) > length:
            raise ValueError(f"too long ({len(text)} characters; at most {length})")
        if "\x00" in text:
            raise ValueError("contains a NUL character")
        return text

    return parse


def text_parser(kind: FieldType, length: int | None) -> Callable[[str], Any]:
    """How a non-empty, stripped cell of a field of ``kind`` becomes its value."""
    if kind is FieldType.BOOLEAN:
        return parse_bool
    if kind is FieldType.NUMBER:
        return parse_number
    if kind is FieldType.DATE:
        return parse_date
    if kind is FieldType.MULTI:
        return parse_list
    if kind is FieldType.CUSTOM:
        return infer_custom
    return _checked_text(length)


_KIND_NAMES = {
    FieldType.BOOLEAN: "a boolean",
    FieldType.NUMBER: "a number",
    FieldType.DATE: "a date (YYYY-MM-DD)",
    FieldType.MULTI: "a list of text",
    FieldType.CUSTOM: "text, a number, a boolean or a list of text",
}


@dataclass(frozen=True)
class FieldRef:
    """Where a field name (a CSV column, an event's field key) writes."""

    target: str  # contact | custom | company | company_custom
    name: str
    kind: FieldType

    @property
    def length(self) -> int | None:
        if self.target == "contact":
            return CONTACT_LENGTHS.get(self.name)
        if self.target == "company":
            return COMPANY_LENGTHS.get(self.name)
        return None

    @property
    def spec_name(self) -> str:
        """The name flows use: ``title``, ``custom.tier``, ``company.employees``."""
        prefix = {"contact": "", "custom": "custom.", "company": "company.", "company_custom": "company.custom."}
        return prefix[self.target] + self.name


def resolve_field(name: str) -> FieldRef:
    """The field a column or key names; ValueError for derived fields and unknown company fields.
    Anything else unknown is a custom field."""
    low = name.lower()
    if low in IMPORTABLE_FIELDS:
        return FieldRef("contact", low, IMPORTABLE_FIELDS[low])
    if low in DERIVED_FIELDS:
        raise ValueError(f"{low} is derived from other fields and cannot be set")
    if low.startswith("custom."):
        if not name[len("custom.") :].strip():
            raise ValueError("a custom field needs a name after 'custom.'")
        return FieldRef("custom", name[len("custom.") :], FieldType.CUSTOM)
    if low.startswith("company."):
        rest = name[len("company.") :]
        if rest.lower().startswith("custom.") and rest[len("custom.") :].strip():
            return FieldRef("company_custom", rest[len("custom.") :], FieldType.CUSTOM)
        if rest.lower() == "name":
            raise ValueError("the company's name is the contact field 'company'; use that column")
        if rest.lower() in COMPANY_IMPORTABLE:
            kind = COMPANY_IMPORTABLE[rest.lower()]
            return FieldRef("company", rest.lower(), kind)
        known = ", ".join(f"company.{n}" for n in COMPANY_IMPORTABLE)
        raise ValueError(f"unknown company field {rest!r}; known: {known}, company.custom.<name>")
    return FieldRef("custom", name, FieldType.CUSTOM)


def field_parser(ref: FieldRef) -> Callable[[str], Any]:
    if ref.target == "company" and ref.kind is FieldType.NUMBER:
        return parse_integer  # employees is a whole number
    return text_parser(ref.kind, ref.length)


def field_value(ref: FieldRef, value: Any, *, text: bool) -> Any:
    """A field's value given in an event: text is parsed as in a CSV cell (a custom
    field's text is kept as it is unless ``text``, i.e. it came from the command
    line); JSON booleans, numbers and lists are taken as they are when they fit."""
    if isinstance(value, str):
        stripped = value.strip()
        if not stripped:
            raise ValueError("empty value")
        if ref.kind is FieldType.CUSTOM and not text:
            return value
        return field_parser(ref)(stripped)
    kind = ref.kind
    if kind is FieldType.CUSTOM and (isinstance(value, bool | int | float) or _text_list(value)):
        return value
    if kind is FieldType.BOOLEAN and isinstance(value, bool):
        return value
    if kind is FieldType.NUMBER and isinstance(value, int | float) and not isinstance(value, bool):
        if ref.target == "company":
            if isinstance(value, int):
                return _in_range(value)
            raise ValueError(f"invalid whole number {value!r}")
        if not math.isfinite(value):
            raise ValueError("number is too large")
        return float(value)
    if kind is FieldType.MULTI and _text_list(value):
        return list(dict.fromkeys(v.strip() for v in value if v.strip()))
    raise ValueError(f"expected {_KIND_NAMES.get(kind, 'text')}, got {_json_type(value)}")


def _text_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


@dataclass
class ContactValues:
    """What one row (or event) says about a contact and its company."""

    email: str
    values: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)
    company: dict[str, Any] = field(default_factory=dict)
    company_custom: dict[str, Any] = field(default_factory=dict)

    def set(self, ref: FieldRef, value: Any) -> None:
        {"contact": self.values, "custom": self.custom, "company": self.company, "company_custom": self.company_custom}[
            ref.target
        ][ref.name] = value

    @property
    def company_name(self) -> str | None:
        name = self.values.get("company")
        return name if isinstance(name, str) and name else None

    def row(self) -> dict[str, Any]:
        """The row ``CrmTx.upsert_contacts`` takes."""
        return {**self.values, "email": self.email, "custom": self.custom}

    def merge(self, later: ContactValues) -> None:
        """A later row for the same e-mail: its given fields win."""
        self.values.update(later.values)
        self.custom.update(later.custom)
        self.company.update(later.company)
        self.company_custom.update(later.company_custom)


def write_companies(crm: CrmTx, changes: Mapping[str, ContactValues]) -> None:
    """Create the companies named and set the company fields given, by company name."""
    crm.ensure_companies(list(changes))
    wanted = {name: v for name, v in changes.items() if v.company or v.company_custom}
    if not wanted:
        return
    current = crm.companies_by_name(wanted)
    for name, given in wanted.items():
        row = current.get(name)
        if row is None:  # pragma: no cover - ensure_companies just made it
            continue
        values = {k: v for k, v in given.company.items() if row.get(k) != v}
        custom = {**row["custom"], **given.company_custom}
        if custom != row["custom"]:
            values["custom"] = custom
        crm.update_company(name, values)


# --- the import ------------------------------------------------------------------------------


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


ContactImport = ImportResult


def import_contacts(
    store: Store, path: Path, now: datetime, *, skip_invalid: bool = False, batch_size: int = BATCH_SIZE
) -> ContactImport:
    """Upsert the contacts of a CSV file in one transaction.

    Any invalid row means nothing is imported (``ImportRejected`` lists every
    problem) unless ``skip_invalid``, which imports the valid rows and returns the
    problems as warnings. A file that cannot be read raises ``InputError``.
    """
    with open_lines(path) as lines:
        csv_file = CsvFile(lines)
        columns, header_problems = _columns(csv_file)
        if any(not p.warning for p in header_problems):
            raise ImportRejected(csv_file.name, header_problems)
        with store.transaction() as tx:
            importer = _Importer(CrmTx(tx), csv_file, columns, now, skip_invalid, batch_size)
            importer.result.problems.extend(header_problems)
            result = importer.run()
            if result.errors and not skip_invalid:
                raise ImportRejected(csv_file.name, result.problems)
    return result


@dataclass(frozen=True)
class _Column:
    index: int
    header: str
    ref: FieldRef
    parse: Callable[[str], Any]


def _columns(csv_file: CsvFile) -> tuple[list[_Column], list[Problem]]:
    line = csv_file.header_line
    problems: list[Problem] = []
    columns: list[_Column] = []
    seen: dict[str, int] = {}
    known = [*IMPORTABLE_FIELDS, *(f"company.{n}" for n in COMPANY_IMPORTABLE)]
    for index, header in enumerate(csv_file.header):
        if not header:
            problems.append(Problem(csv_file.name, line, f"column {index + 1} of the header has no name"))
            continue
        try:
            ref = resolve_field(header)
        except ValueError as exc:
            problems.append(Problem(csv_file.name, line, f"column {header}: {exc}"))
            continue
        if ref.spec_name in seen:
            problems.append(
                Problem(
                    csv_file.name,
                    line,
                    f"column {header}: appears twice (columns {seen[ref.spec_name]} and {index + 1})",
                )
            )
            continue
        seen[ref.spec_name] = index + 1
        if ref.target == "custom" and not header.lower().startswith("custom."):
            close = difflib.get_close_matches(header.lower(), known, n=1, cutoff=0.8)
            if close:
                problems.append(
                    Problem(
                        csv_file.name,
                        line,
                        f"column {header}: not a contact field, imported as a custom field (did you mean {close[0]}?)",
                        warning=True,
                    )
                )
        columns.append(_Column(index, header, ref, field_parser(ref)))
    if "email" not in seen:
        problems.append(
            Problem(
                csv_file.name,
                line,
                "the header has no email column; it is required (the e-mail address identifies a contact)",
            )
        )
    return columns, problems


class _Importer:
    def __init__(
        self,
        crm: CrmTx,
        csv_file: CsvFile,
        columns: list[_Column],
        now: datetime,
        skip_invalid: bool,
        batch_size: int,
    ) -> None:
        self.crm, self.csv, self.now = crm, csv_file, now
        self.skip_invalid, self.batch_size = skip_invalid, batch_size
        self.email_column = next(c for c in columns if c.ref.target == "contact" and c.ref.name == "email")
        self.columns = [c for c in columns if c is not self.email_column]
        self.associates = {a.name for a in crm.associates()}
        self.unknown_associates: set[str] = set()
        # e-mail → line of its latest row; negative once counted as created or updated.
        self.seen: dict[str, int] = {}
        self.batch: dict[str, ContactValues] = {}
        self.writing = True
        self.result = ContactImport(csv_file.name)

    def run(self) -> ContactImport:
        rows = 0
        for line, cells in self.csv.records():
            rows += 1
            contact = self._row(line, cells)
            if contact is None:
                if not self.skip_invalid:
                    self.writing = False  # it all rolls back: stop writing, keep validating
                    self.batch.clear()
                continue
            previous = self.seen.get(contact.email)
            if previous is not None:
                self._problem(
                    line, f"e-mail {contact.email} is also on line {abs(previous)}: the later row wins", warning=True
                )
                self.seen[contact.email] = -line if previous < 0 else line
            else:
                self.seen[contact.email] = line
            if self.writing:
                earlier = self.batch.get(contact.email)
                if earlier is None:
                    self.batch[contact.email] = contact
                else:
                    earlier.merge(contact)
                if len(self.batch) >= self.batch_size:
                    self._flush()
        if rows == 0:
            raise InputError(f"{self.csv.name}: the file has a header (line {self.csv.header_line}) but no rows")
        if self.writing:
            self._flush()
        result = self.result
        result.unchanged = len(self.seen) - result.created - result.updated
        return result

    def _problem(self, line: int, message: str, *, warning: bool = False) -> None:
        self.result.problems.append(Problem(self.csv.name, line, message, warning=warning))

    def _row(self, line: int, cells: list[str]) -> ContactValues | None:
        shape = self.csv.shape_error(cells)
        if shape:
            self._error(line, shape)
            return None
        errors: list[str] = []
        email_cell = cells[self.email_column.index].strip()
        email = ""
        if not email_cell:
            errors.append("column email: missing; every row needs an e-mail address")
        else:
            try:
                email = parse_email(email_cell)
            except ValueError as exc:
                errors.append(f"column email: {exc}")
        contact = ContactValues(email)
        for column in self.columns:
            cell = cells[column.index].strip()
            if not cell:
                continue
            try:
                contact.set(column.ref, column.parse(cell))
            except ValueError as exc:
                errors.append(f"column {column.header}: {exc}")
                continue
            if column.ref.kind is FieldType.ASSOCIATE:
                self._check_associate(line, column.header, cell)
        if (contact.company or contact.company_custom) and not contact.company_name:
            first = next(
                c.header for c in self.columns if c.ref.target.startswith("company") and cells[c.index].strip()
            )
            errors.append(f"column {first}: needs the company's name in the company column")
        for message in errors:
            self._error(line, message)
        return None if errors else contact

    def _error(self, line: int, message: str) -> None:
        self.result.errors += 1
        self._problem(line, message, warning=self.skip_invalid)

    def _check_associate(self, line: int, header: str, name: str) -> None:
        if name not in self.associates and name not in self.unknown_associates:
            self.unknown_associates.add(name)
            self._problem(
                line,
                f"column {header}: {name!r} is not a known associate (see reconcile associates import); "
                "imported anyway (warned once per name)",
                warning=True,
            )

    def _flush(self) -> None:
        if not self.batch:
            return
        companies: dict[str, ContactValues] = {}
        for contact in self.batch.values():
            name = contact.company_name
            if name is not None:
                given = companies.setdefault(name, ContactValues(""))
                given.company.update(contact.company)
                given.company_custom.update(contact.company_custom)
        if companies:
            write_companies(self.crm, companies)
        created, updated = self.crm.upsert_contacts([c.row() for c in self.batch.values()], self.now)
        result = self.result
        for email in created:
            result.created += 1
            self.seen[email] = -abs(self.seen[email])
        for email in updated:
            if self.seen[email] > 0:
                result.updated += 1
                self.seen[email] = -self.seen[email]
        self.batch.clear()


__all__ = [
    "BATCH_SIZE",
    "ContactImport",
    "ContactValues",
    "CsvFile",
    "FieldRef",
    "ImportRejected",
    "ImportResult",
    "InputError",
    "Problem",
    "TextLines",
    "field_parser",
    "field_value",
    "import_contacts",
    "open_lines",
    "parse_bool",
    "parse_email",
    "resolve_field",
    "write_companies",
]
