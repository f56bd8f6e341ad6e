"""The migrations create exactly the schema of ``tables.py``, on SQLite and PostgreSQL.

``Store.open`` migrates; opening again changes nothing; ``reconcile db upgrade``
says where the schema is; a database from a newer reconciler is refused with a
clear message instead of being "upgraded" into something neither version knows.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command as alembic
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import Engine, event, insert, inspect, select, text

from reconciler.cli import cli
from reconciler.state import DatabaseError, Store, crm
from reconciler.state.database import _config, current_revision, head_revision
from reconciler.state.tables import metadata

BOGUS = "ffff0000bogus"


def schema_differences(store: Store) -> list[Any]:
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def table_names(store: Store) -> set[str]:
    return set(inspect(store.engine).get_table_names())


def schema_snapshot(store: Store) -> dict[str, Any]:
    """Tables with their columns, indexes and constraints, as the database reports them."""
    inspector = inspect(store.engine)
    return {
        name: (
            [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(name)],
            sorted(i["name"] or "" for i in inspector.get_indexes(name)),
            sorted(u["name"] or "" for u in inspector.get_unique_constraints(name)),
            sorted(f["name"] or "" for f in inspector.get_foreign_keys(name)),
        )
        for name in sorted(inspector.get_table_names())
    }


def stamp(store: Store, revision: str) -> None:
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})


def test_the_migrations_create_exactly_the_tables_module(database_url: str) -> None:
    store = Store.open(database_url)
    try:
        assert schema_differences(store) == []
        assert table_names(store) == {*metadata.tables, "alembic_version"}
        assert current_revision(store.engine) == head_revision() is not None
    finally:
        store.close()


def test_attempts_made_before_0009_are_named_after_their_flow(database_url: str) -> None:
    store = Store.open(database_url)
    try:
        now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        row = {"participant_id": None, "revision": 1, "step_id": "s", "kind": "send_email", "payload": {}}
        with store.engine.begin() as connection:
            for number, flow in enumerate(["news", "onboarding"], start=1):
                connection.execute(
                    insert(crm.outbox).values(
                        id=number,
                        idempotency_key=f"k{number}",
                        flow_name=flow,
                        contact_email=f"p{number}@x.example",
                        state="sent",
                        attempts=1,
                        next_attempt_at=now,
                        created_at=now,
                        updated_at=now,
                        **row,
                    )
                )
                connection.execute(
                    insert(crm.outbox_attempts).values(
                        outbox_id=number, flow_name=flow, attempt=1, started_at=now, outcome="sent"
                    )
                )
        config = _config(store.engine)
        with store.engine.begin() as connection:
            config.attributes["connection"] = connection
            alembic.downgrade(config, "0008")  # forgets the names
            alembic.upgrade(config, "head")  # 0009 finds them again
        with store.engine.connect() as connection:
            a = crm.outbox_attempts
            named = connection.execute(select(a.c.outbox_id, a.c.flow_name).order_by(a.c.outbox_id)).all()
        assert [tuple(r) for r in named] == [(1, "news"), (2, "onboarding")]
        assert schema_differences(store) == []
    finally:
        store.close()


def test_revisions_before_0010_lose_the_dirty_suffix_and_get_the_flag(database_url: str) -> None:
    store = Store.open(database_url)
    try:
        config = _config(store.engine)
        with store.engine.begin() as connection:
            config.attributes["connection"] = connection
            alembic.downgrade(config, "0009")
            for number, commit in enumerate(["abc123-dirty", "def456", None], start=1):
                connection.execute(
                    text(
                        "INSERT INTO revisions (flow_name, revision, kind, applied_at, applied_by, git_commit) "
                        "VALUES ('f', :n, 'apply', :at, 't', :commit)"
                    ),
                    {"n": number, "at": datetime(2026, 1, 5, 9, 0, tzinfo=UTC), "commit": commit},
                )
            alembic.upgrade(config, "head")
        revisions = store.revisions("f")
        assert [(r.git_commit, r.git_dirty) for r in revisions] == [("abc123", True), ("def456", None), (None, None)]
        assert schema_differences(store) == []
    finally:
        store.close()


def test_only_unprocessed_events_are_in_the_backlog_index(database_url: str) -> None:
    store = Store.open(database_url)
    try:
        (index,) = [i for i in inspect(store.engine).get_indexes("events") if i["name"] == "ix_events_unprocessed"]
        options = index["dialect_options"]
        predicate = options.get("sqlite_where", options.get("postgresql_where"))
        assert index["column_names"] == ["id"]
        assert " ".join(str(predicate).lower().strip("()").split()) == "processed_at is null"
    finally:
        store.close()


def test_opening_twice_is_a_no_op(database_url: str) -> None:
    first = Store.open(database_url)
    try:
        before = schema_snapshot(first)
    finally:
        first.close()

    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", record)  # every engine, including the one open makes
    try:
        second = Store.open(database_url)
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    try:
        verbs = {s.lstrip().split(None, 1)[0].upper() for s in statements}
        assert verbs & {"CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE"} == set(), statements
        assert schema_snapshot(second) == before
        assert schema_differences(second) == []
        with second.engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        assert versions == [head_revision()]
    finally:
        second.close()


def test_db_upgrade_prints_the_head_revision(database_url: str) -> None:
    runner = CliRunner()
    head = head_revision()
    fresh = runner.invoke(cli, ["--database-url", database_url, "db", "upgrade"])
    assert (fresh.exit_code, fresh.output) == (0, f"state database at schema {head}\n"), fresh.output
    again = runner.invoke(cli, ["--database-url", database_url, "db", "upgrade"])
    assert (again.exit_code, again.output) == (0, f"state database at schema {head}\n"), again.output
    store = Store.open(database_url)
    try:
        assert schema_differences(store) == []
    finally:
        store.close()


def test_a_database_of_a_newer_reconciler_is_refused(database_url: str) -> None:
    store = Store.open(database_url)
    stamp(store, BOGUS)
    store.close()
    with pytest.raises(DatabaseError, match=f"schema {BOGUS}, which this reconciler does not know; upgrade reconciler"):
        Store.open(database_url)
    # Nothing was touched: the unknown schema is still there, as it was.
    readonly = Store.open(database_url, migrate=False)
    try:
        assert current_revision(readonly.engine) == BOGUS
        assert schema_differences(readonly) == []
    finally:
        readonly.close()


def test_the_cli_refuses_a_newer_database_with_one_clear_line(database_url: str, tmp_path: Path) -> None:
    store = Store.open(database_url)
    stamp(store, BOGUS)
    store.close()
    for command in (["status"], ["db", "upgrade"]):
        done = subprocess.run(
            [sys.executable, "-m", "reconciler.cli", "--database-url", database_url, *command],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1, done
        assert done.stdout == ""
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert lines[0].startswith("Error: the state database is at schema ffff0000bogus")
        assert lines[0].endswith("upgrade reconciler")


def test_an_extra_unknown_version_row_is_refused_clearly(database_url: str) -> None:
    store = Store.open(database_url)
    with store.engine.begin() as connection:
        connection.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": BOGUS})
    store.close()
    with pytest.raises(DatabaseError, match="upgrade reconciler"):
        Store.open(database_url)


def test_a_database_that_is_not_ours_is_refused_clearly(database_url: str) -> None:
    """Somebody's own ``flows`` table where the state should go: a clear DatabaseError, not a traceback."""
    foreign = Store.open(database_url, migrate=False)
    with foreign.engine.begin() as connection:
        connection.execute(text("CREATE TABLE flows (id INTEGER, title VARCHAR(20))"))
    foreign.close()
    with pytest.raises(DatabaseError, match=r"cannot migrate the state database: .*flows.* already exists"):
        Store.open(database_url)


# --- two processes opening a fresh database at the same moment --------------------------------


def _waiting_on_a_lock(observer: Engine, application: str) -> bool:
    with observer.connect() as connection:
        return bool(
            connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name = :application AND wait_event_type = 'Lock'"
                ),
                {"application": application},
            ).scalar()
        )


@pytest.mark.postgres
def test_two_first_opens_at_once_both_succeed_on_postgres(pg_url: str, pg_engine: Engine, tmp_path: Path) -> None:
    """The first migration (here, in a thread) is paused just before it records its
    version: its tables exist, uncommitted. A second process opens the database then.
    When the first commits, the second must find the schema current, not crash
    (it used to fail with IntegrityError on CREATE TABLE alembic_version)."""
    from reconciler.state import database

    first_engine = database.connect(pg_url)
    paused, resume = threading.Event(), threading.Event()

    def pause_before_stamping(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO ALEMBIC_VERSION"):
            paused.set()
            resume.wait(60)

    event.listen(first_engine, "before_cursor_execute", pause_before_stamping)
    errors: list[BaseException] = []

    def migrate_first() -> None:
        try:
            database.ensure_current(first_engine)
        except BaseException as exc:
            errors.append(exc)

    first = threading.Thread(target=migrate_first)
    first.start()
    second: subprocess.Popen[str] | None = None
    try:
        assert paused.wait(30), "the first migration never reached its version stamp"
        application = f"second-open-{uuid.uuid4().hex[:8]}"
        url = f"{pg_url}&application_name={application}"
        opener = f"from reconciler.state import Store; Store.open({url!r}).close(); print('opened')"
        second = subprocess.Popen(
            [sys.executable, "-c", opener], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 30
        while second.poll() is None and not _waiting_on_a_lock(pg_engine, application):
            assert time.monotonic() < deadline, "the second open neither finished nor waited for the first"
            time.sleep(0.02)
    finally:
        resume.set()
        first.join(60)
        first_engine.dispose()
    assert second is not None
    out, err = second.communicate(timeout=60)
    assert errors == []
    assert (second.returncode, out) == (0, "opened\n"), err[-800:]
    assert err == ""
    check = Store.open(pg_url)
    try:
        assert schema_differences(check) == []
    finally:
        check.close()
