"""Connecting to the state database, and keeping its schema current.

SQLite (the embedded default) runs in WAL mode with a busy timeout, and every
write transaction starts with ``BEGIN IMMEDIATE`` so two writers queue on the
database lock instead of failing halfway. PostgreSQL (``postgresql+psycopg://``)
is for teams and for several processes on several machines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from reconciler.errors import UserError

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 30
READ_ONLY = {"reconciler_read_only": True}  # execution options of connections that only read
MIGRATION_LOCK_KEY = 0x7265636F  # "reco": the advisory lock that serializes migrations


class DatabaseError(UserError):
    """The state database cannot be reached or is not ours."""


def connect(url: str) -> Engine:
    """An engine for ``url``; creates the directory of a SQLite file."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(f"invalid database URL {url!r}") from None
    if parsed.drivername.startswith("sqlite"):
        return _sqlite(url, parsed.database)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        return create_engine(parsed, pool_pre_ping=True)
    except Exception as exc:
        raise DatabaseError(f"cannot use database URL {parsed.render_as_string(hide_password=True)}: {exc}") from None


def _json_loads(text: str) -> Any:
    """``json.loads``, with a shortcut for the empty lists and objects most contacts hold
    (interests, subscriptions, custom): a batch decodes three per contact."""
    if text == "[]":
        return []
    if text == "{}":
        return {}
    return json.loads(text)


def _sqlite(url: str, database: str | None) -> Engine:
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, json_deserializer=_json_loads)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from pysqlite so BEGIN IMMEDIATE is ours to send.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # Safe with WAL (no corruption on power loss; the last commits may roll back) and a
        # commit costs microseconds instead of an fsync.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        # The default page cache is 2 MiB; a batch of the executor touches more index pages
        # than that at 100k participants. Up to 32 MiB, taken only as pages are read
        # (about 10 % more steps/s in paired runs at 50k).
        cursor.execute("PRAGMA cache_size=-32768")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Writers queue on the database lock up front; readers keep WAL's concurrent reads.
        read_only = connection.get_execution_options().get("reconciler_read_only", False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config_without_engine()).get_current_head()


def _config_without_engine() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def current_revision(engine: Engine) -> str | None:
    """The schema revision; DatabaseError when the version table holds several."""
    with engine.connect().execution_options(**READ_ONLY) as connection:
        heads = MigrationContext.configure(connection).get_current_heads()
    if len(heads) > 1:
        raise DatabaseError(
            f"the state database claims several schema versions ({', '.join(sorted(heads))}); "
            "it was changed by hand or by another program: upgrade reconciler or repair alembic_version"
        )
    return heads[0] if heads else None


def advisory_xact_lock(connection: Connection, key: int) -> None:
    """On PostgreSQL, hold advisory lock ``key`` until the transaction ends (others asking
    for it wait). Elsewhere nothing: SQLite's BEGIN IMMEDIATE serializes writers already."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (a no-op when it is current)."""
    config = _config(engine)
    try:
        with engine.begin() as connection:
            # Two processes opening a fresh database at once: the second waits here, then
            # finds the schema current.
            advisory_xact_lock(connection, MIGRATION_LOCK_KEY)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except DBAPIError as exc:
        raise DatabaseError(f"cannot migrate the state database: {str(exc.orig).strip().splitlines()[0]}") from None


def ensure_current(engine: Engine) -> None:
    """Upgrade automatically; refuse a database newer than this version of reconciler."""
    try:
        current = current_revision(engine)
    except OperationalError as exc:
        raise DatabaseError(f"cannot open the state database: {exc.orig}") from None
    head = head_revision()
    if current == head:
        return
    known = {s.revision for s in ScriptDirectory.from_config(_config_without_engine()).walk_revisions()}
    if current is not None and current not in known:
        raise DatabaseError(
            f"the state database is at schema {current}, which this reconciler does not know; upgrade reconciler"
        )
    migrate(engine)
