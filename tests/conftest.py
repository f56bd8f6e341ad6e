"""Shared fixtures: a spec repo in a temp dir, and flow documents to build on."""

from __future__ import annotations

import atexit
import copy
import functools
import os
import shutil
import tempfile
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from reconciler.state import Store

Run = Callable[..., tuple[int, str, str]]


def invoke_cli(*args: str) -> tuple[int, str, str]:
    """Run ``reconcile ARGS`` in-process: (exit code, stdout, stderr); a bug's exception propagates."""
    from click.testing import CliRunner

    from reconciler.cli import cli

    result = CliRunner().invoke(cli, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


MINIMAL: dict[str, Any] = {
    "apiVersion": "reconciler/v1",
    "kind": "Flow",
    "metadata": {"name": "demo"},
    "spec": {
        "triggers": [{"type": "manual"}],
        "steps": [{"id": "pause", "type": "wait", "duration": "1d"}, {"id": "done", "type": "finish"}],
    },
}


def flow_doc(name: str = "demo", *, steps: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    """A valid flow document; ``steps`` and spec keys override the minimal one."""
    doc = copy.deepcopy(MINIMAL)
    doc["metadata"]["name"] = name
    if steps is not None:
        doc["spec"]["steps"] = steps
    doc["spec"].update(spec)
    return doc


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """An empty spec repository: reconciler.toml marks the root."""
    (tmp_path / "reconciler.toml").write_text("")
    (tmp_path / "specs").mkdir()
    return tmp_path


@pytest.fixture
def write_spec(repo: Path) -> Callable[..., Path]:
    """Write a spec file under repo/specs from YAML text or from documents."""

    def write(name: str, content: str | dict[str, Any] | list[dict[str, Any]]) -> Path:
        path = repo / "specs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(textwrap.dedent(content))
        else:
            yaml = YAML(typ="safe", pure=True)
            yaml.default_flow_style = False
            docs = content if isinstance(content, list) else [content]
            with path.open("w") as handle:
                yaml.dump_all(docs, handle)
        return path

    return write


# --- state databases: every state test runs on SQLite and on PostgreSQL ------------------


@functools.cache
def migrated_sqlite_template() -> Path:
    """One migrated, empty SQLite database per test process, for property tests to copy per
    example (running the migrations per example would dominate their runtime)."""
    directory = Path(tempfile.mkdtemp(prefix="state-template-"))
    atexit.register(shutil.rmtree, directory, True)
    path = directory / "template.db"
    Store.open(f"sqlite:///{path}").close()
    return path


PG_URL = os.environ.get("RECONCILER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_engine() -> Engine | None:
    engine = create_engine(PG_URL)
    try:
        with engine.connect():
            return engine
    except OperationalError:
        engine.dispose()
        return None


@pytest.fixture(scope="session")
def pg_engine() -> Iterator[Engine]:
    engine = _pg_engine()
    if engine is None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI and not reachable at {PG_URL}")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}")
    yield engine
    engine.dispose()


@pytest.fixture
def pg_url(pg_engine: Engine) -> Iterator[str]:
    """A fresh schema of its own, so parallel runs never collide."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with pg_engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    with pg_engine.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = Store.open(database_url)
    yield opened
    opened.close()
