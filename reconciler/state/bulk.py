"""Bulk writes for the executor's hot path: many rows per statement, little Python per row.

``Connection.execute(statement, rows)`` costs about 20 µs of Python per row before the
driver sees it (building each parameter set, running every value through its type),
and psycopg's ``executemany`` adds some 80 µs more (one prepared execution per row in
pipeline mode). The executor writes several rows per participant-step — the step run,
the participant, events, contact changes, memberships — so at 100k participants that
per-row cost was most of the time on PostgreSQL and a third of it on SQLite.

So, per dialect:

* **PostgreSQL**: one statement per call, one array parameter per column —
  ``INSERT … SELECT * FROM unnest(%(c0)b::integer[], …)`` and
  ``UPDATE t SET … FROM unnest(…) AS v(…) WHERE t.id = v.id``. The arrays go in
  binary format (``%b``): psycopg quotes every element of a text-format array with a
  regular expression, which made them 4× slower to send.
* **Others (SQLite)**: the statement is compiled once per call and the rows go to the
  driver's ``executemany`` as tuples in the compiled order.

Either way each value passes through the bind processor SQLAlchemy itself would use
for its column on this dialect (UTC datetimes, JSON), with the results for datetimes
remembered, since a batch writes the same ``now`` into every row.

Rows must all have the same keys; there are no Python-side column defaults here (the
state tables have none; server defaults apply) and no RETURNING.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, insert, update
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.types import TypeEngine

_Processor = Callable[[Any], Any]
CHUNK = 500  # rows per IN (...) or executemany batch
# ``column.in_(EACH)`` with ``{"each": values}``: the list goes in as one expanding
# parameter, not as a literal SQLAlchemy coerces value by value (hot reads of a batch).
EACH: BindParameter[Any] = bindparam("each", expanding=True)


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    """``items`` in slices of ``size``: IN lists and statements of a bounded length."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def insert_many(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT every row (a mapping of column name → value)."""
    if not rows:
        return
    columns = list(rows[0])
    dialect = conn.dialect
    if dialect.name == "postgresql":
        arrays = _arrays(table, columns, dialect)
        names = ", ".join(dialect.identifier_preparer.quote(name) for name in columns)
        sql = f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({names}) SELECT * FROM unnest({arrays})"
        conn.exec_driver_sql(sql, _array_parameters(table, columns, rows, dialect))
        return
    _execute_many(conn, insert(table), {name: name for name in columns}, rows)


def update_many(
    conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]], *, key: str = "id", **fixed: Any
) -> None:
    """UPDATE the row whose ``key`` column equals each row's ``key``: its other keys are
    the new column values; ``fixed`` are set on every row alike (``updated_at=now``).
    Keys must be unique: one update per row."""
    if not rows:
        return
    columns = [name for name in rows[0] if name != key]
    if len({row[key] for row in rows}) != len(rows):
        raise ValueError(f"update_many on {table.name}: the same {key} twice")
    dialect = conn.dialect
    if dialect.name == "postgresql":
        quote = dialect.identifier_preparer.quote
        target = dialect.identifier_preparer.format_table(table)
        ordered = [key, *columns]
        sets = [f"{quote(name)} = v.{quote(name)}" for name in columns]
        parameters = _array_parameters(table, ordered, rows, dialect)
        for i, (name, value) in enumerate(fixed.items()):
            processor = _processor(table.c[name].type, dialect)
            sets.append(f"{quote(name)} = %(f{i})s::{_sql_type(table, name, dialect)}")
            parameters[f"f{i}"] = processor(value) if processor else value
        sql = (
            f"UPDATE {target} SET {', '.join(sets)} "
            f"FROM unnest({_arrays(table, ordered, dialect)}) AS v({', '.join(quote(n) for n in ordered)}) "
            f"WHERE {target}.{quote(key)} = v.{quote(key)}"
        )
        conn.exec_driver_sql(sql, parameters)
        return
    statement = (
        update(table)
        .where(table.c[key] == bindparam("k_" + key))
        .values({name: bindparam("v_" + name) for name in columns} | fixed)
    )
    sources = {"k_" + key: key} | {"v_" + name: name for name in columns}
    _execute_many(conn, statement, sources, rows)


# --- PostgreSQL: one array per column -----------------------------------------------------


def _sql_type(table: Table, column: str, dialect: Dialect) -> str:
    return str(table.c[column].type.compile(dialect=dialect))


def _arrays(table: Table, columns: Sequence[str], dialect: Dialect) -> str:
    return ", ".join(f"%(c{i})b::{_sql_type(table, name, dialect)}[]" for i, name in enumerate(columns))


def _array_parameters(
    table: Table, columns: Sequence[str], rows: Sequence[Mapping[str, Any]], dialect: Dialect
) -> dict[str, Any]:
    parameters: dict[str, Any] = {}
    for i, name in enumerate(columns):
        parameters[f"c{i}"] = _column(_processor(table.c[name].type, dialect), [row[name] for row in rows])
    return parameters


# --- others: executemany of one compiled statement -----------------------------------------


def _execute_many(
    conn: Connection, statement: Any, sources: Mapping[str, str], rows: Sequence[Mapping[str, Any]]
) -> None:
    """``statement``'s bind parameters named in ``sources`` take each row's value of the
    key they map to; the others keep the value bound in the statement (``fixed``)."""
    dialect = conn.dialect
    column_keys = list(sources) if statement.is_insert else None  # an UPDATE has its SET clause
    compiled = statement.compile(dialect=dialect, column_keys=column_keys)
    names: list[str] = list(compiled.positiontup or ()) if dialect.positional else list(compiled.binds)
    # Column by column (one comprehension per parameter, then zip), not row by row: this
    # is the executor's hottest Python loop, and per-row slot dispatch cost twice as much.
    count = len(rows)
    columns: list[Sequence[Any]] = []
    for name in names:
        bind = compiled.binds[name]
        processor = _processor(bind.type, dialect)
        if name in sources:
            key = sources[name]
            columns.append(_column(processor, [row[key] for row in rows]))
        else:  # the statement's own value, the same in every row
            value = bind.effective_value
            columns.append([processor(value) if processor else value] * count)
    parameters: list[Any] = (
        list(zip(*columns, strict=True))
        if dialect.positional
        else [dict(zip(names, v, strict=True)) for v in zip(*columns, strict=True)]
    )
    conn.exec_driver_sql(compiled.string, parameters)


def _processor(type_: TypeEngine[Any], dialect: Dialect) -> _Processor | None:
    """The bind processor SQLAlchemy uses for ``type_`` on ``dialect`` (None: values pass as they are)."""
    processor = type_.dialect_impl(dialect).bind_processor(dialect)
    return _remembering(processor) if processor else None


def _column(processor: _Processor | None, values: list[Any]) -> list[Any]:
    """One column's values, processed. A column that holds one instant (a batch's
    ``now``) or nothing in every row is processed once."""
    if processor is None:
        return values
    first = values[0]
    if (first is None or type(first) is datetime) and values.count(first) == len(values):
        return [processor(first)] * len(values)
    return [processor(value) for value in values]


def _remembering(processor: _Processor) -> _Processor:
    """``processor`` with its results for datetimes kept: a batch repeats a few instants."""
    seen: dict[datetime, Any] = {}

    def process(value: Any) -> Any:
        if type(value) is datetime:
            if value not in seen:
                seen[value] = processor(value)
            return seen[value]
        return processor(value)

    return process
