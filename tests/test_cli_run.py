"""`reconcile run`, `participants add` and the status view through the CLI, and schema migrations."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command

from reconciler.spec.models import SendingWindow
from reconciler.state import Store
from reconciler.state.crm_store import CrmTx
from reconciler.state.database import _config, current_revision, head_revision
from reconciler.timing import add_working_days, after, window_opens
from tests.conftest import Run, flow_doc, invoke_cli

STEPS = [
    {"id": "tag", "type": "update_contact", "updates": [{"field": "category", "action": "set", "value": "lead"}]},
    {
        "id": "route",
        "type": "split",
        "branches": [
            {"name": "se", "when": {"field": "country", "value": "SE"}, "next": "done"},
            {"name": "everyone_else", "exit": True},
        ],
    },
    {"id": "done", "type": "finish"},
]


@pytest.fixture
def run(repo: Path, write_spec: Callable[..., Path], database_url: str, monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.chdir(repo)
    monkeypatch.setenv("RECONCILER_DATABASE_URL", database_url)
    write_spec("f.yaml", flow_doc("f", steps=STEPS, status="running", triggers=[{"type": "manual"}]))
    store = Store.open(database_url)
    with store.transaction() as tx:
        CrmTx(tx).upsert_contacts(
            [{"email": "se@x.example", "country": "SE"}, {"email": "no@x.example", "country": "NO"}], datetime.now(UTC)
        )
    store.close()

    return invoke_cli


def test_enroll_run_and_status(run: Run) -> None:
    assert run("apply")[0] == 0
    code, out, err = run("participants", "add", "f", "se@x.example", "no@x.example", "se@x.example")
    assert code == 0 and "enrolled 2 contact(s) in f" in out
    code, out, err = run("participants", "add", "f", "se@x.example")
    assert "skipped se@x.example: already took part" in err
    code, out, _ = run("run", "--once")
    assert code == 0 and out.startswith("processed 0 event(s); 5 step(s) for 2 participant(s)")  # nothing awaits them
    listed = json.loads(run("participants", "f", "--json")[1])
    assert sorted((p["contact"], p["status"], p["step"]) for p in listed) == [
        ("no@x.example", "dropped_out", "route"),
        ("se@x.example", "finished", "done"),
    ]
    status = json.loads(run("status", "--json")[1])["flows"][0]
    assert status["summary"] == {"enrolled": 2, "in_progress": 0, "queued": 0, "completed": 1, "success_rate": 0.0}
    assert status["dropout_reasons"] == {"split 'route': branch 'everyone_else' exits": 1}
    code, out, _ = run("status")
    assert code == 0 and "dropped out (split 'route': branch 'everyone_else' exits): 1" in out
    assert "participants: finished 1, dropped_out 1" in out
    assert "no@x.example" in run("participants", "f")[1]
    assert run("participants", "nope")[0] == 1
    assert run("participants", "add", "f", "ghost@x.example")[2].startswith("Error: no contact with e-mail")


def test_status_lists_steps_in_flow_order_with_when_the_first_moves_on(
    run: Run, write_spec: Callable[..., Path]
) -> None:
    steps = [
        {
            "id": "route",
            "type": "split",
            "branches": [
                {"name": "se", "when": {"field": "country", "value": "SE"}, "next": "zz-long"},
                {"name": "everyone_else", "next": "aa-short"},
            ],
        },
        {"id": "zz-long", "type": "wait", "duration": "2d", "next": "done"},
        {"id": "aa-short", "type": "wait", "duration": "1d"},
        {"id": "done", "type": "finish"},
    ]
    write_spec("f.yaml", flow_doc("f", steps=steps, status="running", triggers=[{"type": "manual"}]))
    assert run("apply")[0] == 0
    assert run("participants", "add", "f", "se@x.example", "no@x.example")[0] == 0
    assert "on step route: 2, due now" in run("status")[1]  # no executor has run yet
    assert run("run", "--once")[0] == 0
    due = {p["step"]: datetime.fromisoformat(p["due_at"]) for p in json.loads(run("participants", "f", "--json")[1])}
    code, out, _ = run("status")
    lines = [line.strip() for line in out.splitlines() if "on step" in line]
    assert code == 0 and lines == [
        f"on step {step}: 1, next due {due[step].astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        for step in ("zz-long", "aa-short")
    ]
    status = json.loads(run("status", "--json")[1])["flows"][0]
    assert list(status["steps"]) == ["zz-long", "aa-short"]
    assert {step: datetime.fromisoformat(at) for step, at in status["next_due"].items()} == due

    write_spec("f.yaml", flow_doc("f", steps=steps, status="paused", triggers=[{"type": "manual"}]))
    assert run("apply")[0] == 0
    assert "next due" not in run("status")[1]  # a paused flow's participants do not move


def test_status_of_an_empty_database(run: Run) -> None:
    assert run("status")[1].startswith("No flows in the database")
    code, out, _ = run("db", "upgrade")
    assert code == 0 and out.strip() == f"state database at schema {head_revision()}"


def test_migrations_go_down_and_up_again(database_url: str) -> None:
    store = Store.open(database_url)
    config = _config(store.engine)
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert current_revision(store.engine) is None
    store.close()
    assert current_revision(Store.open(database_url).engine) == head_revision()


def test_working_days_and_windows() -> None:
    friday = datetime(2026, 1, 9, 15, tzinfo=UTC)
    assert add_working_days(friday, 1, UTC) == datetime(2026, 1, 12, 15, tzinfo=UTC)
    assert after(friday, timedelta(days=2), True, UTC) == datetime(2026, 1, 13, 15, tzinfo=UTC)
    assert after(friday, timedelta(hours=5), True, UTC) == friday + timedelta(hours=5)
    window = SendingWindow.model_validate({"days": "mon-sun", "from": "08:00", "to": "17:00"})
    assert window_opens(window, friday, UTC) is None
    assert window_opens(window, datetime(2026, 1, 10, 6, tzinfo=UTC), UTC) == datetime(2026, 1, 10, 8, tzinfo=UTC)
    assert window_opens(None, friday, UTC) is None
