"""``reconcile run --once`` as a cron or CI job sees it: deferred and failed sends with their
reasons in the summary line, and exit 3 while the SMTP server is unreachable all run."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import update

from reconciler.private_dir import ensure_private_dir
from reconciler.state import Store
from reconciler.state import crm as c
from tests.conftest import flow_doc, invoke_cli
from tests.test_actions_email import Recorder, _free_port

EMAIL = {"sender": {"name": "Acme", "address": "news@acme.example"}, "reply_to": "help@acme.example"}
STEPS = [
    {"id": "mail", "type": "send_email", "subject": "Välkommen {{ contact.first_name }}", "content": "c.html"},
    {"id": "done", "type": "finish"},
]


@pytest.fixture
def mail_flow(repo: Path, write_spec: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """A running e-mail flow with four participants; returns the SMTP port (nothing listens yet)."""
    monkeypatch.chdir(repo)
    monkeypatch.setenv("RECONCILER_DATABASE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    (repo / "specs" / "c.html").write_text("<p>Hej {{ contact.first_name }}</p>")
    write_spec("f.yaml", flow_doc("f", steps=STEPS, status="running", settings={"email": EMAIL}))
    (repo / "contacts.csv").write_text(
        "email,first_name,consent_marketing\n" + "".join(f"p{i}@x.example,P{i},true\n" for i in range(4))
    )
    assert invoke_cli("apply")[0] == 0
    assert invoke_cli("contacts", "import", "contacts.csv")[0] == 0
    code, _, err = invoke_cli("participants", "add", "f", *(f"p{i}@x.example" for i in range(4)))
    assert code == 0, err
    port = _free_port()
    monkeypatch.setenv("RECONCILER_SMTP_URL", f"smtp://127.0.0.1:{port}")
    return port


def test_unreachable_smtp_all_run_exits_3_with_the_reason_then_a_server_gets_them(
    mail_flow: int, tmp_path: Path
) -> None:
    code, out, err = invoke_cli("run", "--once")
    assert code == 3
    assert f"sent 0, 4 deferred: cannot connect to SMTP server 127.0.0.1:{mail_flow}: Connection refused" in out
    assert "the e-mail transport was unreachable for the whole run" in err
    assert "pending" in invoke_cli("outbox")[1]  # nothing lost: they wait for the next run

    handler = Recorder()
    controller = Controller(handler, hostname="127.0.0.1", port=mail_flow, server_hostname="mx.test")
    controller.start()
    try:
        code, out, _ = invoke_cli("run", "--once")  # the retries are not due yet: nothing tried
        assert code == 0 and out.rstrip().endswith("sent 0")
        store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
        with store.transaction() as tx:  # the backoff has passed
            tx.c.execute(update(c.outbox).values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1)))
        store.close()
        code, out, _ = invoke_cli("run", "--once")
        assert code == 0 and out.rstrip().endswith("sent 4") and len(handler.arrived) == 4
    finally:
        controller.stop()


def run_once_against(handler: Recorder, port: int) -> tuple[int, str, str]:
    controller = Controller(handler, hostname="127.0.0.1", port=port, server_hostname="mx.test")
    controller.start()
    try:
        return invoke_cli("run", "--once")
    finally:
        controller.stop()


def test_a_reachable_server_exits_0_and_reports_refused_messages_as_failed(mail_flow: int) -> None:
    code, out, err = run_once_against(Recorder(rcpt_reply="550 5.1.1 no such user"), mail_flow)
    assert code == 0, err
    assert "sent 0, 4 failed: " in out and "550" in out


def test_everything_sent_says_so(mail_flow: int) -> None:
    handler = Recorder()
    code, out, err = run_once_against(handler, mail_flow)
    assert code == 0, err
    assert out.rstrip().endswith("sent 4") and len(handler.arrived) == 4
    assert out.count("\n") == 1


def test_the_local_sink_keeps_rendered_mail_out_of_git(
    mail_flow: int, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No SMTP configured: the sink writes under .reconciler/, which ignores itself."""
    monkeypatch.delenv("RECONCILER_SMTP_URL")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    code, out, err = invoke_cli("run", "--once")
    assert code == 0 and out.rstrip().endswith("sent 4"), err
    assert len(list((repo / ".reconciler" / "outbox" / "mail" / "new").iterdir())) == 4
    assert (repo / ".reconciler" / ".gitignore").read_text().splitlines()[-1] == "*"
    listed = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "specs/f.yaml" in listed and ".reconciler" not in listed


def test_a_gitignore_of_the_users_own_is_kept(tmp_path: Path) -> None:
    (tmp_path / ".reconciler").mkdir()
    (tmp_path / ".reconciler" / ".gitignore").write_text("outbox/\n")
    ensure_private_dir(tmp_path / ".reconciler")
    assert (tmp_path / ".reconciler" / ".gitignore").read_text() == "outbox/\n"
