"""Connecting to the state database, and keeping its schema current.

SQLite (the embedded default) runs in WAL mode with a busy timeout, and every
write transaction starts with ``BEGIN IMMEDIATE`` so two writers queue on the
database lock instead of failing halfway. PostgreSQL (``postgresql+psycopg://``)
is for teams and for several processes on several machines.

Two ways in: ``connect`` for commands that may write (it creates a SQLite file's
directory; the store then migrates), and ``connect_for_reading`` for the read-only
commands, which must never create, migrate or write a database: a missing SQLite
file or a database without our schema is reported as "no state yet", and a schema
older than this reconciler's is an error that names ``reconcile db upgrade``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError

from reconciler.errors import UserError
from reconciler.private_dir import STATE_DIRECTORY, ensure_private_dir

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 30
READ_ONLY = {"reconciler_read_only": True}  # execution options of connections that only read
MIGRATION_LOCK_KEY = 0x7265636F  # "reco": the advisory lock that serializes migrations
_OUR_TABLES = frozenset({"flows", "participants", "revisions", "contacts"})  # what says "reconciler state"
URL_EXAMPLES = "sqlite:///path/to/state.db or postgresql+psycopg://user@host/db"


class DatabaseError(UserError):
    """The state database cannot be reached or is not ours."""


def parse_url(url: str, setting: str = "the database URL") -> URL:
    """``url`` parsed, with a driver this installation has; ``setting`` names where the URL
    came from (an option or an environment variable) in the error. An empty URL is an
    error, never "the default": a CI variable that expanded to nothing must not quietly
    mean a fresh local database."""
    if not url.strip():
        raise DatabaseError(f"{setting} is set but empty; give a database URL ({URL_EXAMPLES}) or unset it")
    try:
        parsed = make_url(url.strip())
    except ArgumentError:
        raise DatabaseError(f"{setting}: cannot parse database URL {url!r}; expected {URL_EXAMPLES}") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        parsed.get_dialect()
    except (NoSuchModuleError, ImportError):
        shown = parsed.render_as_string(hide_password=True)
        raise DatabaseError(
            f"{setting}: unknown database driver {parsed.drivername!r} in {shown}; expected {URL_EXAMPLES}"
        ) from None
    return parsed


def connect(url: str) -> Engine:
    """An engine for ``url`` that may write; creates the directory of a SQLite file."""
    parsed = parse_url(url)
    if parsed.drivername.startswith("sqlite"):
        file = sqlite_file(parsed)
        if file is not None:
            make_state_directory(file.parent)
        return _sqlite(parsed, read_only=False)
    return _server(parsed, read_only=False)


def connect_for_reading(url: str) -> Engine | None:
    """An engine that never writes, on a database at this reconciler's schema, or None when
    there is no state yet (a missing SQLite file, which is not created, or a database
    without our schema). A database at an older schema is an error: migrating is a write."""
    parsed = parse_url(url)
    if parsed.drivername.startswith("sqlite"):
        file = sqlite_file(parsed)
        if file is not None and not file.exists():
            return None
        engine = _sqlite(parsed, read_only=True)
    else:
        engine = _server(parsed, read_only=True)
    try:
        if _schema_state(engine) is None:
            engine.dispose()
            return None
    except BaseException:
        engine.dispose()
        raise
    return engine


def _schema_state(engine: Engine) -> str | None:
    try:
        current = current_revision(engine)
    except DBAPIError as exc:
        raise DatabaseError(f"cannot read the state database: {_first_line(exc)}") from None
    if current is None:
        found = set(inspect(engine).get_table_names())
        if found & _OUR_TABLES:
            raise DatabaseError(
                f"the state database has tables ({', '.join(sorted(found & _OUR_TABLES))}) but no schema version: "
                "it is not a reconciler database, or was changed by hand"
            )
        return None
    head = head_revision()
    if current == head:
        return current
    if current not in _known_revisions():
        raise DatabaseError(
            f"the state database is at schema {current}, which this reconciler does not know; upgrade reconciler"
        )
    raise DatabaseError(
        f"the state database is at schema {current}, older than this reconciler's {head}; "
        "run `reconcile db upgrade` (read-only commands never migrate)"
    )


def sqlite_file(url: URL) -> Path | None:
    """The file a SQLite URL names; None for an in-memory or ``file:`` URI database."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def make_state_directory(directory: Path) -> None:
    """Create ``directory`` (and its parents) for local state. A ``.reconciler`` directory
    gets a ``.gitignore`` of ``*`` (as the local mail sink's does), so local state never
    lands in a commit; any other directory (``/var/lib/…``) is left as it is."""
    try:
        if directory.name == STATE_DIRECTORY.name:
            ensure_private_dir(directory)
        elif not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(f"cannot create {directory} for the state database: {exc.strerror}") from None


def _first_line(exc: DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__


def _server(parsed: URL, *, read_only: bool) -> Engine:
    try:
        engine = create_engine(parsed, pool_pre_ping=True)
    except Exception as exc:
        raise DatabaseError(f"cannot use database URL {parsed.render_as_string(hide_password=True)}: {exc}") from None
    if read_only and engine.dialect.name == "postgresql":

        @event.listens_for(engine, "begin")
        def _read_only_transaction(connection: Any) -> None:
            # Belt and braces: a read-only command's transactions refuse writes server-side.
            connection.exec_driver_sql("SET TRANSACTION READ ONLY")

    return engine


def _json_loads(text: str) -> Any:
    """``json.loads``, with a shortcut for the empty lists and objects most contacts hold
    (interests, subscriptions, custom): a batch decodes three per contact."""
    if text == "[]":
        return []
    if text == "{}":
        return {}
    return json.loads(text)


def _sqlite(url: URL, *, read_only: bool) -> Engine:
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, json_deserializer=_json_loads)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from pysqlite so BEGIN IMMEDIATE is ours to send.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if read_only:
            # No statement of this connection may change the file (not even its journal mode).
            cursor.execute("PRAGMA query_only=ON")
        else:
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
        reads = read_only or connection.get_execution_options().get("reconciler_read_only", False)
        connection.exec_driver_sql("BEGIN" if reads else "BEGIN IMMEDIATE")

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


def _known_revisions() -> set[str]:
    return {s.revision for s in ScriptDirectory.from_config(_config_without_engine()).walk_revisions()}


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
    if current is not None and current not in _known_revisions():
        raise DatabaseError(
            f"the state database is at schema {current}, which this reconciler does not know; upgrade reconciler"
        )
    migrate(engine)
