"""Importing contacts from CSV: stream the file, validate every row, upsert in batches.

Why this shape: a file of 100,000 contacts is read one record at a time and written
in batches of about a thousand inside ONE transaction, so memory stays flat and a
failure (an invalid row, a database error, a broken line) leaves the CRM exactly as
it was. Imports fire no triggers (the vendor's "contact created/updated" triggers
exclude imports), so no event is recorded. Nothing here prints: problems come back
as data, and the CLI decides how to show them.

How a cell becomes a field value is ``crm.cells``; reading the file is ``crm.csv_input``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler.crm.cells import (
    COMPANY_IMPORTABLE,
    IMPORTABLE_FIELDS,
    ContactValues,
    FieldRef,
    field_parser,
    parse_email,
    resolve_field,
    write_companies,
)
from reconciler.crm.csv_input import CsvFile, ImportRejected, ImportResult, InputError, Problem, open_lines
from reconciler.spec.fields import FieldType
from reconciler.state import Store
from reconciler.state.crm_store import CrmTx

BATCH_SIZE = 1000
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


__all__ = ["BATCH_SIZE", "ContactImport", "import_contacts"]
