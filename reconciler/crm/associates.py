"""Importing associates (colleagues) from CSV: owners, assignees and notification targets.

Same discipline as the contact import: every row is validated, any invalid row
means nothing is imported (unless ``skip_invalid``), and the whole file is one
transaction. An associate's identity is its ``name`` (what specs write, e.g.
``owner: anna``); an empty cell leaves that field as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reconciler.crm.cells import ASSOCIATE_LENGTHS, parse_bool, parse_email
from reconciler.crm.csv_input import CsvFile, ImportRejected, ImportResult, InputError, Problem, open_lines
from reconciler.state import Store
from reconciler.state.crm_store import CrmTx

# CSV column → associates column
ASSOCIATE_COLUMNS = {
    "name": "name",
    "email": "email",
    "mobile": "mobile",
    "group": "group_name",
    "group_name": "group_name",
    "active": "active",
}


def _result(file: str) -> ImportResult:
    return ImportResult(file, noun="associate")


AssociateImport = ImportResult


def import_associates(store: Store, path: Path, *, skip_invalid: bool = False) -> AssociateImport:
    """Upsert the associates of a CSV file (columns name, email, mobile, group, active)."""
    with open_lines(path) as lines:
        csv_file = CsvFile(lines)
        columns, problems = _columns(csv_file)
        if problems:
            raise ImportRejected(csv_file.name, problems)
        result = _result(csv_file.name)
        rows = _rows(csv_file, columns, result, skip_invalid)
    if result.errors and not skip_invalid:
        raise ImportRejected(csv_file.name, result.problems)
    with store.transaction() as tx:
        crm = CrmTx(tx)
        existing = {a.name: a for a in crm.associates()}
        changed: list[dict[str, Any]] = []
        for name, given in rows.items():
            current = existing.get(name)
            if current is None:
                changed.append({"name": name, "active": True, **given})
                result.created += 1
                continue
            before: dict[str, Any] = {
                "email": current.email,
                "mobile": current.mobile,
                "group_name": current.group_name,
                "active": current.active,
            }
            after = {**before, **given}
            if after == before:
                result.unchanged += 1
            else:
                changed.append({"name": name, **after})
                result.updated += 1
        crm.upsert_associates(changed)
    return result


def _columns(csv_file: CsvFile) -> tuple[dict[str, int], list[Problem]]:
    line = csv_file.header_line
    columns: dict[str, int] = {}
    problems: list[Problem] = []
    for index, header in enumerate(csv_file.header):
        target = ASSOCIATE_COLUMNS.get(header.lower())
        if target is None:
            known = ", ".join(ASSOCIATE_COLUMNS)
            problems.append(Problem(csv_file.name, line, f"column {header or index + 1}: unknown; known: {known}"))
        elif target in columns:
            problems.append(Problem(csv_file.name, line, f"column {header}: appears twice"))
        else:
            columns[target] = index
    if "name" not in columns:
        problems.append(
            Problem(
                csv_file.name, line, "the header has no name column; it is required (the name identifies an associate)"
            )
        )
    return columns, problems


def _rows(
    csv_file: CsvFile, columns: dict[str, int], result: AssociateImport, skip_invalid: bool
) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    lines: dict[str, int] = {}
    count = 0
    for line, cells in csv_file.records():
        count += 1
        errors: list[str] = []
        shape = csv_file.shape_error(cells)
        values: dict[str, Any] = {}
        if shape:
            errors.append(shape)
        else:
            for target, index in columns.items():
                cell = cells[index].strip()
                if not cell:
                    continue
                try:
                    values[target] = _parse(target, cell)
                except ValueError as exc:
                    errors.append(f"column {csv_file.header[index]}: {exc}")
            if "name" not in values and not any(e.startswith("column name") for e in errors):
                errors.append("column name: missing; every row needs the associate's name")
        for message in errors:
            result.errors += 1
            result.problems.append(Problem(csv_file.name, line, message, warning=skip_invalid))
        if errors:
            continue
        name = values.pop("name")
        if name in rows:
            result.problems.append(
                Problem(
                    csv_file.name, line, f"{name!r} is also on line {lines[name]}: the later row wins", warning=True
                )
            )
            rows[name].update(values)
        else:
            rows[name] = values
        lines[name] = line
    if count == 0:
        raise InputError(f"{csv_file.name}: the file has a header (line {csv_file.header_line}) but no rows")
    return rows


def _parse(target: str, cell: str) -> Any:
    if target == "active":
        return parse_bool(cell)
    if target == "email":
        return parse_email(cell)
    length = ASSOCIATE_LENGTHS.get(target)
    if length is not None and len(cell) > length:
        raise ValueError(f"too long ({len(cell)} characters; at most {length})")
    return cell


__all__ = ["AssociateImport", "import_associates"]
