"""The outbox dispatcher as real processes, against a real SMTP server (aiosmtpd on 127.0.0.1).

- A ``reconcile run`` SIGKILLed while a message is in flight at the server (the handler
  holds ``DATA`` open): the row stays ``sending``; the next dispatcher, once the row is
  stale, makes it ``unknown`` and does not send it again; ``reconcile outbox`` shows it.
- Two ``reconcile run --once`` processes draining one PostgreSQL outbox at once: every
  message arrives exactly once, with exactly one ``sent`` attempt per row.
- A server that answers 451 to the first delivery of each message: each is retried after
  its backoff (a ManualClock is moved to each row's ``next_attempt_at``) and arrives once.

Nothing here waits for time to pass: a ManualClock moves instead, and the only waits are
polling loops with an overall deadline, as hang guards.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session
from sqlalchemy import func, select

from reconciler.actions.scripts import ScriptRunner
from reconciler.actions.sink import MaildirSink
from reconciler.actions.smtp import SmtpTransport
from reconciler.apply import ApplyOptions, apply
from reconciler.clock import ManualClock
from reconciler.executor import Executor
from reconciler.executor.dispatch import Dispatcher, DispatchPolicy, DispatchStats, Transports
from reconciler.spec.bundle import FileRef, FlowBundle
from reconciler.spec.models import Flow
from reconciler.state import Store
from reconciler.state import crm as c
from reconciler.state.crm_store import CrmTx
from tests.conftest import flow_doc

DEADLINE_S = 30.0  # hang guard for every wait on a child process or the server
FLOW = "f"
EMAIL = {"sender": {"name": "Acme", "address": "news@acme.example"}, "reply_to": "help@acme.example"}
STEPS = [
    {"id": "mail", "type": "send_email", "subject": "Hej {{ contact.first_name }}", "content": "c.html"},
    {"id": "done", "type": "finish"},
]
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


# --- the SMTP server ------------------------------------------------------------------------------


@dataclass
class Arrival:
    rcpt: str
    message_id: str
    peer: Any = None


@dataclass
class Server:
    """An aiosmtpd handler with knobs: hold one message in ``DATA``, refuse first attempts,
    wait for two client sessions before accepting anything. ``arrived`` lists the messages
    the server took (accepted with 250, or held: the content is at the server). ``peers``
    are the client connections that got as far as DATA (aiosmtpd's Controller makes one
    connection of its own at start, to see the server is up: not counted)."""

    hold_at: int | None = None  # the n-th DATA (1-based) blocks until ``release`` is set
    refuse_first: bool = False  # 451 to the first DATA of every Message-ID
    wait_for_clients: int = 0  # accept nothing until this many sessions reached DATA
    arrived: list[Arrival] = field(default_factory=list)
    refused: list[Arrival] = field(default_factory=list)
    datas: int = 0
    peers: set[Any] = field(default_factory=set)
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    clients: asyncio.Event = field(default_factory=asyncio.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        found = _MESSAGE_ID.search(envelope.original_content or b"")
        arrival = Arrival(envelope.rcpt_tos[0], found.group(1).decode() if found else "", session.peer)
        with self.lock:
            self.datas += 1
            number = self.datas
            self.peers.add(session.peer)
            first = self.refuse_first and arrival.message_id not in {a.message_id for a in self.refused}
            if len(self.peers) >= self.wait_for_clients:
                self.clients.set()
        await asyncio.wait_for(self.clients.wait(), DEADLINE_S)
        if first:
            with self.lock:
                self.refused.append(arrival)
            return "451 4.3.0 try again"
        with self.lock:
            self.arrived.append(arrival)
        if number == self.hold_at:
            self.entered.set()
            # Blocks the server's loop on purpose: the message is in flight, its 250 not sent.
            self.release.wait(DEADLINE_S)
        return "250 2.0.0 Ok: queued"

    def by_rcpt(self) -> Counter[str]:
        with self.lock:
            return Counter(a.rcpt for a in self.arrived)

    def by_message_id(self) -> Counter[str]:
        with self.lock:
            return Counter(a.message_id for a in self.arrived)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def smtp() -> Iterator[Any]:
    """``smtp(**knobs)`` starts a server; returns (handler, url)."""
    started: list[tuple[Server, Controller]] = []

    def start(**knobs: Any) -> tuple[Server, str]:
        handler = Server(**knobs)
        controller = Controller(handler, hostname="127.0.0.1", port=_free_port(), server_hostname="mx.test")
        controller.start()
        started.append((handler, controller))
        return handler, f"smtp://127.0.0.1:{controller.port}"

    yield start
    for handler, controller in started:
        handler.release.set()  # never leave the loop blocked, or stop() hangs
        controller.stop()


# --- state ------------------------------------------------------------------------------------------


def populate(store: Store, tmp_path: Path, now: datetime, count: int) -> list[str]:
    """The running flow (send_email with a content file, finish), ``count`` contacts enrolled and
    run through it: ``count`` pending outbox rows due at ``now``. Returns the e-mails in row order."""
    html = tmp_path / "c.html"
    html.write_text("<p>Hej {{ contact.first_name }}</p><a href='{{ unsubscribe_url }}'>unsubscribe</a>")
    document = flow_doc(FLOW, steps=STEPS, status="running", settings={"email": EMAIL})
    digest = hashlib.sha256(html.read_bytes()).hexdigest()
    bundle = FlowBundle(
        Flow.model_validate(document), document, {"c.html": FileRef("c.html", digest, html.stat().st_size, html)}
    )
    clock = ManualClock(now)
    result = apply(store, [bundle], clock=clock, options=ApplyOptions(actor="t", lock_wait=timedelta(0)))
    assert not result.blocked
    emails = [f"p{i:05d}@x.example" for i in range(count)]
    with store.transaction() as tx:
        CrmTx(tx).upsert_contacts(
            [{"email": e, "first_name": f"P{i}", "consent_marketing": True} for i, e in enumerate(emails)], now
        )
    executor = Executor(store, clock)
    for start in range(0, count, 1000):
        executor.enroll(FLOW, emails[start : start + 1000])
    executor.run_once()
    rows = outbox(store)
    assert [(r.state, r.next_attempt_at <= now) for r in rows] == [("pending", True)] * count
    return [r.contact_email for r in rows]


def outbox(store: Store) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(select(c.outbox).order_by(c.outbox.c.id)))


def attempts(store: Store) -> list[Any]:
    with store.engine.connect() as conn:
        a = c.outbox_attempts
        return list(conn.execute(select(a).order_by(a.c.outbox_id, a.c.attempt)))


def cli(url: str, *args: str, smtp_url: str | None = None, cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    if smtp_url:
        env["RECONCILER_SMTP_URL"] = smtp_url
    return subprocess.Popen(
        [sys.executable, "-m", "reconciler.cli", "--database-url", url, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return process.returncode, out, err


# --- a. SIGKILL between sending and sent ----------------------------------------------------------


@dataclass
class Killed:
    store: Store
    server: Server
    url: str
    smtp_url: str
    emails: list[str]
    in_flight: str
    states_at_kill: dict[str, str]
    sms_dir: Path  # no SMS in these flows; the dispatcher needs a transport for it anyway
    connections: int


ROWS = 5
HOLD_AT = 3  # rows 1 and 2 are delivered, the 3rd is in flight when the dispatcher dies


@pytest.fixture(params=[1, 4], ids=["1-connection", "4-connections"])
def killed(request: pytest.FixtureRequest, database_url: str, tmp_path: Path, smtp: Any) -> Iterator[Killed]:
    """A continuous ``reconcile run`` SIGKILLed while the server holds the 3rd of 5 messages.
    With one connection the messages go one after the other; with four, four are handed
    over at once and the 3rd to arrive is held (the server's loop blocks: the others wait)."""
    connections: int = request.param
    store = Store.open(database_url)
    try:
        emails = populate(store, tmp_path, datetime.now(UTC) - timedelta(minutes=1), ROWS)
        server, smtp_url = smtp(hold_at=HOLD_AT)
        process = cli(
            database_url,
            "run",
            "--interval",
            "0.05",
            "--connections",
            str(connections),
            smtp_url=smtp_url,
            cwd=tmp_path,
        )
        try:
            deadline = time.monotonic() + DEADLINE_S
            while not server.entered.wait(0.01):
                assert process.poll() is None, process.communicate()[1][-3000:]
                assert time.monotonic() < deadline, "the message never reached the server"
            os.kill(process.pid, signal.SIGKILL)
            code, _out, err = finish(process)
            assert code == -signal.SIGKILL, err[-3000:]
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
            server.release.set()
        in_flight = server.arrived[HOLD_AT - 1].rcpt
        if connections == 1:
            assert in_flight == emails[HOLD_AT - 1]
            assert list(server.by_rcpt()) == emails[:HOLD_AT]  # the 4th was never handed over
        yield Killed(
            store,
            server,
            database_url,
            smtp_url,
            emails,
            in_flight,
            {r.contact_email: r.state for r in outbox(store)},
            tmp_path / "sms",
            connections,
        )
    finally:
        store.close()


def recover(killed: Killed) -> DispatchStats:
    """A later dispatcher in this process, once the dead one's rows are stale."""
    policy = DispatchPolicy()
    clock = ManualClock(datetime.now(UTC) + policy.stale_after + timedelta(minutes=1))
    transport = SmtpTransport(killed.smtp_url, timeout=5)
    dispatcher = Dispatcher(
        killed.store,
        clock,
        Transports(transport, MaildirSink(killed.sms_dir), ScriptRunner({}, 1)),
        policy,
        jitter=lambda: 0.5,
    )
    try:
        return dispatcher.run_once()
    finally:
        transport.close()


def test_sigkill_between_sending_and_sent_leaves_the_row_unknown_and_never_resends_it(
    killed: Killed, tmp_path: Path
) -> None:
    before = killed.emails[: HOLD_AT - 1] if killed.connections == 1 else []
    assert killed.states_at_kill[killed.in_flight] == "sending"
    assert [killed.states_at_kill[e] for e in before] == ["sent"] * len(before)
    # at most one message per connection was between sending and sent
    assert sum(1 for s in killed.states_at_kill.values() if s == "sending") <= killed.connections

    stats = recover(killed)
    assert stats.recovered >= 1
    rows = {r.contact_email: r for r in outbox(killed.store)}
    assert rows[killed.in_flight].state == "unknown"
    assert "may or may not have it" in rows[killed.in_flight].last_error
    arrived = killed.server.by_rcpt()
    assert arrived[killed.in_flight] == 1  # at the server once, from the dead dispatcher; not resent
    assert all(n == 1 for n in arrived.values()), arrived
    for email, state in killed.states_at_kill.items():
        if state == "sending":  # whatever became of it at the server: unknown, never retried
            tries = [(a.attempt, a.outcome) for a in attempts(killed.store) if a.outbox_id == rows[email].id]
            assert tries == [(1, "unknown")]
            assert rows[email].state == "unknown"
    # Nothing is lost: every row was delivered once and is sent, or is visibly unknown.
    for email, row in rows.items():
        assert row.state in ("sent", "unknown"), (email, row.state)
        assert arrived[email] == 1 if row.state == "sent" else arrived[email] <= 1, (email, row.state)
    assert [rows[e].state for e in before] == ["sent"] * len(before)

    again = recover(killed)  # and later rounds leave it alone too
    assert (again.sent, again.recovered) == (0, 0)
    assert killed.server.by_rcpt()[killed.in_flight] == 1

    code, out, err = finish(cli(killed.url, "outbox", "--json", cwd=tmp_path))
    assert code == 0, err
    shown = json.loads(out)
    items = {i["contact"]: i for i in shown["items"]}
    assert items[killed.in_flight]["state"] == "unknown"
    assert "may or may not have it" in items[killed.in_flight]["last_error"]
    assert shown["flows"][FLOW]["unknown"] >= 1
    assert sum(shown["flows"][FLOW].values()) == ROWS


def test_rows_claimed_with_the_killed_send_but_never_handed_over_are_still_delivered(killed: Killed) -> None:
    never_handed_over = [e for e in killed.emails if killed.states_at_kill[e] == "pending"]
    if killed.connections == 1:
        assert never_handed_over == killed.emails[HOLD_AT:]
    # (with four connections all five may have been started before the 3rd was held)
    assert not set(never_handed_over) & set(killed.server.by_rcpt())
    recover(killed)
    rows = {r.contact_email: r for r in outbox(killed.store)}
    assert rows[killed.in_flight].state == "unknown"
    assert [rows[e].state for e in never_handed_over] == ["sent"] * len(never_handed_over)
    assert all(n == 1 for n in killed.server.by_rcpt().values())


# --- b. two dispatcher processes never send the same row ---------------------------------------------


@pytest.mark.postgres
def test_two_dispatcher_processes_never_send_the_same_row(pg_url: str, tmp_path: Path, smtp: Any) -> None:
    count = 2000
    store = Store.open(pg_url)
    try:
        populate(store, tmp_path, datetime.now(UTC) - timedelta(minutes=1), count)
        # Nothing is accepted until both processes are connected: both hold claimed rows at once.
        server, smtp_url = smtp(wait_for_clients=2)
        processes = [
            cli(pg_url, "run", "--once", "--rate", "1000000", "--connections", "1", smtp_url=smtp_url, cwd=tmp_path)
            for _ in range(2)
        ]
        results = [finish(p) for p in processes]
        sent = []
        for code, out, err in results:
            assert code == 0, err[-3000:]
            assert "Traceback" not in err, err[-3000:]
            sent.append(int(re.search(r"sent (\d+)", out).group(1)))  # type: ignore[union-attr]
        assert sum(sent) == count and min(sent) > 0, sent

        ids = server.by_message_id()
        assert len(ids) == count and set(ids.values()) == {1}, ids.most_common(3)
        assert len(server.peers) == 2
        assert {r.state for r in outbox(store)} == {"sent"}
        with store.engine.connect() as conn:
            a = c.outbox_attempts
            per_row: dict[int, int] = dict(
                conn.execute(
                    select(a.c.outbox_id, func.count()).where(a.c.outcome == "sent").group_by(a.c.outbox_id)
                ).all()
            )
            total = conn.execute(select(func.count()).select_from(a)).scalar_one()
        assert len(per_row) == count and set(per_row.values()) == {1}
        assert total == count  # no other attempts either
    finally:
        store.close()


def test_the_rate_limit_holds_across_dispatcher_processes(database_url: str, tmp_path: Path, smtp: Any) -> None:
    """The first process reserves a minute's budget and hangs in its first hand-over; a
    second process started then finds that budget spent and sends nothing."""
    store = Store.open(database_url)
    try:
        # more rows than one claim reads (100): some are still due when the second claims
        populate(store, tmp_path, datetime.now(UTC) - timedelta(minutes=1), 150)
        server, smtp_url = smtp(hold_at=1)
        rate = ("--rate", "20", "--connections", "1")
        first = cli(database_url, "run", "--once", *rate, smtp_url=smtp_url, cwd=tmp_path)
        try:
            assert server.entered.wait(DEADLINE_S)  # 20 reserved, 1 of them at the server
            code, out, err = finish(cli(database_url, "run", "--once", *rate, smtp_url=smtp_url, cwd=tmp_path))
            assert code == 0 and "sent 0" in out, err[-3000:]
        finally:
            server.release.set()
        code, out, err = finish(first)
        assert code == 0 and "sent 20" in out, err[-3000:]
        assert len(server.arrived) == 20
        assert [r.state for r in outbox(store)].count("sent") == 20
        assert [a.outcome for a in attempts(store)] == ["sent"] * 20  # the second never even tried
    finally:
        store.close()


# --- c. a server that fails the first delivery of every message -------------------------------------


def test_a_temporarily_failing_server_gets_every_message_exactly_once(store: Store, tmp_path: Path, smtp: Any) -> None:
    count = 20
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    emails = populate(store, tmp_path, start, count)
    server, smtp_url = smtp(refuse_first=True)
    clock = ManualClock(start)
    transport = SmtpTransport(smtp_url, timeout=5)
    jitter = iter([0.0, 0.99, 0.5, 0.25] * count)  # spread the retries out
    dispatcher = Dispatcher(
        store,
        clock,
        Transports(transport, MaildirSink(tmp_path / "sms"), ScriptRunner({}, 1)),
        DispatchPolicy(batch_size=7, connections=1),
        jitter=lambda: next(jitter),
    )
    try:
        first = dispatcher.run_once()
        assert (first.sent, first.retried) == (0, count)
        assert server.by_rcpt() == Counter()
        assert dispatcher.run_once().retried == 0  # nothing is due before its backoff
        rounds = 0
        while pending := [r for r in outbox(store) if r.state == "pending"]:
            rounds += 1
            assert rounds <= count, "the retries never finished"
            due = min(r.next_attempt_at for r in pending)
            assert due > clock.now()
            clock.set(due)
            stats = dispatcher.run_once()
            assert stats.sent == sum(1 for r in pending if r.next_attempt_at <= due) and stats.retried == 0
    finally:
        transport.close()

    assert rounds > 1  # the jitter spread the retries over several due times
    assert server.by_rcpt() == Counter(dict.fromkeys(emails, 1))
    assert len(server.by_message_id()) == count
    assert sorted(a.message_id for a in server.refused) == sorted(server.by_message_id())
    rows = outbox(store)
    assert [(r.state, r.attempts, r.last_error) for r in rows] == [("sent", 2, None)] * count
    tries: dict[int, list[tuple[int, str]]] = {}
    for a in attempts(store):
        tries.setdefault(a.outbox_id, []).append((a.attempt, a.outcome))
    assert list(tries.values()) == [[(1, "retry"), (2, "sent")]] * count
    assert all("451 4.3.0 try again" in (a.detail or "") for a in attempts(store) if a.outcome == "retry")
    assert len(server.peers) == 1  # a 451 does not cost the kept connection


# --- d. parallel connections from one dispatcher ------------------------------------------------------


def test_parallel_connections_deliver_every_message_exactly_once(store: Store, tmp_path: Path, smtp: Any) -> None:
    count = 300
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    emails = populate(store, tmp_path, start, count)
    server, smtp_url = smtp(wait_for_clients=2)  # nothing is accepted until two connections are sending at once
    transport = SmtpTransport(smtp_url, timeout=5)
    dispatcher = Dispatcher(
        store,
        ManualClock(start),
        Transports(transport, MaildirSink(tmp_path / "sms"), ScriptRunner({}, 1)),
        DispatchPolicy(batch_size=25, rate_per_minute=10_000, connections=4),
        jitter=lambda: 0.5,
    )
    try:
        stats = dispatcher.run_once()
    finally:
        transport.close()
    assert (stats.sent, stats.failed, stats.retried, stats.unknown) == (count, 0, 0, 0)
    assert server.by_rcpt() == Counter(dict.fromkeys(emails, 1))
    assert len(server.by_message_id()) == count
    assert 2 <= len(server.peers) <= 4 and transport.connections == len(server.peers)
    assert [(r.state, r.attempts) for r in outbox(store)] == [("sent", 1)] * count
    tries = attempts(store)
    assert len(tries) == count and {a.outcome for a in tries} == {"sent"}
    assert all((a.detail or "").startswith("250") for a in tries)
    assert stats.transactions <= count + count // 25 + 2
