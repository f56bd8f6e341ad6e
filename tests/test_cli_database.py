"""Which database a command uses, and which commands may write it, through the CLI.

A set-but-empty or unparsable URL is an error naming its setting; the read-only commands
(plan, drift, status, history, export, participants, outbox, validate) never create,
migrate or write a database, so a plan job can run with read-only credentials.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from reconciler.state import Store
from reconciler.state.database import _config, current_revision, head_revision
from tests.conftest import Run, flow_doc, invoke_cli

READ_ONLY = [
    ["plan"],
    ["drift"],
    ["status"],
    ["history", "f"],
    ["export"],
    ["participants", "f"],
    ["outbox"],
    ["validate"],
]


@pytest.fixture
def run(repo: Path, write_spec: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.chdir(repo)
    monkeypatch.delenv("RECONCILER_DATABASE_URL", raising=False)
    write_spec("f.yaml", flow_doc("f", status="running"))
    return invoke_cli


@pytest.mark.parametrize("args", [["plan"], ["apply"], ["status"], ["run", "--once"]])
def test_a_set_but_empty_variable_is_an_error_not_a_fresh_database(
    run: Run, repo: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.setenv("RECONCILER_DATABASE_URL", "")
    code, out, err = run(*args)
    assert code == 1 and out == ""
    assert err.splitlines() == [
        "Error: RECONCILER_DATABASE_URL is set but empty; give a database URL "
        "(sqlite:///path/to/state.db or postgresql+psycopg://user@host/db) or unset it"
    ]
    assert not (repo / ".reconciler").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "--database-url is set but empty"),
        ("  ", "--database-url is set but empty"),
        ("state.db", "--database-url: cannot parse database URL 'state.db'"),
        ("postgress://me@db/state", "--database-url: unknown database driver 'postgress'"),
    ],
)
def test_a_bad_option_is_an_error_naming_the_option(run: Run, repo: Path, url: str, message: str) -> None:
    code, out, err = run("--database-url", url, "apply")
    assert code == 1 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith(f"Error: {message}"), err
    assert not (repo / ".reconciler").exists()


def test_an_unparsable_variable_names_the_variable(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_DATABASE_URL", "sqlite:/relative.db")
    code, _, err = run("plan")
    assert code == 1 and err.startswith("Error: RECONCILER_DATABASE_URL: ")


def test_validate_needs_no_database_even_with_a_bad_url(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_DATABASE_URL", "")
    assert run("validate")[0] == 0


@pytest.mark.parametrize("args", READ_ONLY, ids="-".join)
def test_read_only_commands_never_create_a_database(run: Run, repo: Path, tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / "nonexistent" / "dir" / "x.db"
    code, _, err = run("--database-url", f"sqlite:///{missing}", *args)
    assert "Traceback" not in err
    assert code in (0, 1)  # history and participants of an unknown flow are errors; nothing is created either way
    assert not missing.parent.exists()
    run(*args)  # the default database
    assert not (repo / ".reconciler").exists()


def test_a_missing_database_reads_as_empty_state(run: Run, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nowhere' / 'x.db'}"
    code, out, _ = run("--database-url", url, "plan", "--json")
    assert code == 0 and json.loads(out)["change_summary"]["create"] == 1
    code, out, _ = run("--database-url", url, "status", "--json")
    assert code == 0 and json.loads(out) == {"flows": []}
    assert run("--database-url", url, "drift", "--detailed-exitcode")[0] == 2  # f is declared, never applied
    assert run("--database-url", url, "export") == (0, "", "")
    assert not (tmp_path / "nowhere").exists()


def test_the_default_state_directory_is_git_ignored_when_created(run: Run, repo: Path) -> None:
    assert run("apply")[0] == 0
    assert (repo / ".reconciler" / "state.db").is_file()
    assert (repo / ".reconciler" / ".gitignore").read_text().splitlines()[-1] == "*"


def test_a_state_directory_that_cannot_be_created_is_one_clear_line(run: Run, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    code, _, err = run("--database-url", f"sqlite:///{tmp_path / 'file' / 'sub' / 'x.db'}", "apply")
    assert code == 1 and err.startswith(f"Error: cannot create {tmp_path / 'file' / 'sub'} for the state database")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_read_only_commands_leave_an_existing_database_unchanged(run: Run, repo: Path) -> None:
    assert run("apply")[0] == 0
    database = repo / ".reconciler" / "state.db"
    before = _digest(database)
    for args in READ_ONLY:
        code, _, err = run(*args)
        assert code == 0, (args, err)
    assert _digest(database) == before
    assert run("plan", "--detailed-exitcode")[0] == 0


def test_an_older_schema_is_an_error_for_readers_and_migrated_by_writers(run: Run, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = Store.open(url)
    config = _config(store.engine)
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "-1")
    older = current_revision(store.engine)
    store.close()
    for args in (["plan"], ["status"], ["drift"]):
        code, out, err = run("--database-url", url, *args)
        assert code == 1 and out == ""
        assert err.splitlines() == [
            f"Error: the state database is at schema {older}, older than this reconciler's {head_revision()}; "
            "run `reconcile db upgrade` (read-only commands never migrate)"
        ]
    assert current_revision(Store.open(url, migrate=False).engine) == older
    assert run("--database-url", url, "db", "upgrade")[0] == 0
    assert run("--database-url", url, "status")[0] == 0


def test_foreign_tables_without_a_schema_version_are_refused(run: Run, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'foreign.db'}"
    foreign = Store.open(url, migrate=False)
    with foreign.engine.begin() as connection:
        connection.execute(text("CREATE TABLE flows (id INTEGER)"))
    foreign.close()
    code, _, err = run("--database-url", url, "status")
    assert code == 1 and "has tables (flows) but no schema version" in err


# --- a plan job with read-only credentials on PostgreSQL ------------------------------------


@pytest.fixture
def select_only(pg_url: str, pg_engine: Engine) -> Iterator[Callable[[], str]]:
    """A role that may only SELECT in the test's own schema; call it after the tables exist."""
    role = f"ro_{uuid.uuid4().hex[:12]}"
    schema = make_url(pg_url).query["options"]
    schema = str(schema).split("=", 1)[1]
    with pg_engine.begin() as connection:
        connection.execute(text(f'CREATE ROLE "{role}" LOGIN'))

    def grant() -> str:
        with pg_engine.begin() as connection:
            connection.execute(text(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"'))
            connection.execute(text(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"'))
        return make_url(pg_url).set(username=role, password=None).render_as_string(hide_password=False)

    yield grant
    with pg_engine.begin() as connection:
        connection.execute(text(f'DROP OWNED BY "{role}"'))
        connection.execute(text(f'DROP ROLE "{role}"'))


@pytest.mark.postgres
def test_a_select_only_role_can_plan_drift_and_show_status(
    run: Run, write_spec: Callable[..., Path], pg_url: str, select_only: Callable[[], str]
) -> None:
    read_only_url = select_only()
    code, out, err = run("--database-url", read_only_url, "plan", "--json")  # no schema yet: empty state
    assert code == 0, err
    assert json.loads(out)["change_summary"]["create"] == 1
    assert run("--database-url", pg_url, "apply")[0] == 0
    read_only_url = select_only()  # the tables exist now
    write_spec("g.yaml", flow_doc("g"))
    code, out, err = run("--database-url", read_only_url, "plan", "--json")
    assert code == 0, err
    assert json.loads(out)["change_summary"]["create"] == 1
    code, out, err = run("--database-url", read_only_url, "status", "--json")
    assert code == 0, err
    assert [f["name"] for f in json.loads(out)["flows"]] == ["f"]
    code, _, err = run("--database-url", read_only_url, "drift", "--detailed-exitcode")
    assert code == 2, err  # g is not applied
    for args in (["history", "f"], ["export"], ["participants", "f"], ["outbox"]):
        code, _, err = run("--database-url", read_only_url, *args)
        assert code == 0, (args, err)
    code, _, err = run("--database-url", read_only_url, "apply")
    assert code == 1 and "permission denied" in err and "Traceback" not in err
