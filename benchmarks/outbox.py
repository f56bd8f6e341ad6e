"""How fast does the outbox dispatcher deliver e-mail over SMTP, against a naive dispatcher?

What is measured: ``Dispatcher.run_once`` draining 20,000 pending ``send_email`` rows
(``--messages``) through ``SmtpTransport("smtp://127.0.0.1:PORT")`` with ``--connections``
(default 16: the ``reconcile run`` default) kept connections, into an aiosmtpd server in a
separate process (a real MTA is another process or host, so it does not share the
dispatcher's GIL). Everything the dispatcher does per row is in the time: claiming and
reserving batches, reading the contacts, committing ``sending`` before each message is
handed over and its outcome after, rendering subject and HTML through Jinja2 (a merge field
and the unsubscribe link), deriving the text alternative, building the MIME message, the
SMTP transaction (MAIL, RCPT, DATA).

The baseline, in the same run against the same server: a naive dispatcher doing the same
work one message at a time, the way issue 5's executor baseline does one transaction per
participant-step — per message one transaction to claim the next due row and mark it
``sending`` (with its attempt; contact, revision and content file read in it), the payload
rendered with freshly compiled templates (``render_email``), a new ``SmtpTransport`` per
message (connect, EHLO, MAIL, RCPT, DATA, QUIT), and one transaction to record ``sent``.
It is run on a sample (``--baseline``, 2,000) in two halves, one before and one after the
dispatcher runs (the machine's speed drifts, and the first half runs cold: bracketing
averages both), and scaled to messages/s. It parses the flow's spec once, as the
dispatcher does, and uses the same MIME builder: what differs is
exactly what the dispatcher is built to save (batched claims, group commit, compiled-template
cache, kept connections, parallel connections). An informational row runs the dispatcher
with one connection on a sample of its own.

The server's handler counts connections, messages and distinct Message-IDs and answers 250
at once. It offers PIPELINING (RFC 2920), as real MTAs do, so MAIL, RCPT and DATA go out in
one write (both the dispatcher and the baseline use it: it is the transport's). ``--latency-ms`` delays every reply of the server (greeting, EHLO, MAIL, RCPT, DATA)
to look like a remote MTA — then parallel connections matter most. Targets are judged at
latency 0. The flow is applied and the contacts enrolled with the library (``Executor``)
before each run; that setup is not timed, and each run gets rows of its own. A
``ManualClock`` stands still at a fixed instant and the per-flow rate limit is raised above
the message count: the default (600 per flow per minute, ``reconcile run --rate``) would
otherwise hold all but 600 rows back for a minute, by design. The database is SQLite in a
temporary directory (the embedded default).

After every run the script asks the server how many messages and distinct Message-IDs it
got, and checks that every outbox row is ``sent``; it exits non-zero when that fails (then
the numbers would mean nothing). Targets are PASS/FAIL lines, never fatal (timings on shared
machines are noisy): ≥ 500 messages/s, and ≥ 5× the naive baseline.

    .venv/bin/python benchmarks/outbox.py                              # the table
    .venv/bin/python benchmarks/outbox.py --messages 5000 --profile    # plus where the dispatcher spends its time
    .venv/bin/python benchmarks/outbox.py --latency-ms 20              # a slow remote MTA
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import multiprocessing
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from common import PROFILE_TOP, profiled, verdict
from sqlalchemy import func, select

from reconciler.actions.scripts import ScriptRunner
from reconciler.actions.sink import MaildirSink
from reconciler.actions.smtp import SmtpTransport
from reconciler.apply import ApplyOptions, apply
from reconciler.clock import ManualClock
from reconciler.compose import render_email
from reconciler.executor import Executor
from reconciler.executor.dispatch import Dispatcher, DispatchPolicy, Transports
from reconciler.messages import EmailSend, parse_message
from reconciler.spec.bundle import FileRef, FlowBundle
from reconciler.spec.models import Flow
from reconciler.state import Store
from reconciler.state import crm as c
from reconciler.state.crm_store import CrmTx, chunks
from reconciler.state.outbox_store import blob, claim_pending, finish_attempt, revision_spec, start_attempt

FLOW = "bench-mail"
MESSAGES = 20_000
BASELINE = 2_000
ONE_CONNECTION = 2_000
ENROLL_CHUNK = 2_000
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
TARGET_RATE = 500.0
TARGET_RATIO = 5.0
CONTENT = "content/news.html"
HTML = """<!doctype html>
<html><body>
  <h1>Hej {{ contact.first_name }}!</h1>
  <p>This month at Acme: three new features, one webinar and a customer story from the north.
  Read on, or <a href="https://acme.example/news?utm_source=flow">open it in the browser</a>.</p>
  <ul><li>Faster imports</li><li>Sending windows per flow</li><li>Better reports</li></ul>
  <p>Regards,<br>The Acme team</p>
  <p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
</body></html>
"""
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


def flow_document() -> dict[str, Any]:
    return {
        "apiVersion": "reconciler/v1",
        "kind": "Flow",
        "metadata": {"name": FLOW},
        "spec": {
            "status": "running",
            "triggers": [{"type": "manual"}],
            "settings": {
                "email": {"sender": {"name": "Acme", "address": "news@acme.example"}, "reply_to": "help@acme.example"}
            },
            "steps": [
                {
                    "id": "news",
                    "type": "send_email",
                    "subject": "News for you, {{ contact.first_name }}",
                    "content": CONTENT,
                },
                {"id": "done", "type": "finish"},
            ],
        },
    }


# --- the SMTP server, in a process of its own -------------------------------------------------------


def serve(pipe: Connection, latency: float) -> None:
    """The server process: aiosmtpd on a free port, counting; answers ``stats`` and
    ``reset`` on the pipe until ``stop``."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, Envelope, Session

    counts: dict[str, Any] = {"connections": 0, "messages": 0, "ids": Counter()}

    class Counting:
        async def handle_EHLO(
            self, server: Any, session: Session, envelope: Envelope, hostname: str, responses: list[str]
        ) -> list[str]:
            session.host_name = hostname
            return [*responses[:-1], "250-PIPELINING", *responses[-1:]]  # as Postfix, Exim and the big ESPs do

        async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
            found = _MESSAGE_ID.search(envelope.original_content or b"")
            counts["messages"] += 1
            counts["ids"][found.group(1) if found else b"(none)"] += 1
            return "250 2.0.0 Ok: queued"

    class CountingSMTP(SMTP):
        def connection_made(self, transport: Any) -> None:
            counts["connections"] += 1
            super().connection_made(transport)

        async def push(self, status: Any) -> None:
            if latency:
                await asyncio.sleep(latency)
            await super().push(status)

    class CountingController(Controller):
        def factory(self) -> SMTP:
            return CountingSMTP(self.handler, **self.SMTP_kwargs)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = CountingController(Counting(), hostname="127.0.0.1", port=port, server_hostname="mx.bench")
    controller.start()
    counts["connections"] = 0  # the controller's own check that the server is up
    pipe.send(port)
    try:
        while True:
            command = pipe.recv()
            if command == "stop":
                break
            # The loop thread changes the counts; read them in the loop, between two messages.
            future = asyncio.run_coroutine_threadsafe(_snapshot(counts, reset=command == "reset"), controller.loop)
            pipe.send(future.result(timeout=30))
    finally:
        controller.stop()


async def _snapshot(counts: dict[str, Any], reset: bool) -> dict[str, int]:
    ids: Counter[bytes] = counts["ids"]
    shown = {
        "cpu_ms": int(time.process_time() * 1000),
        "connections": counts["connections"],
        "messages": counts["messages"],
        "distinct": len(ids),
        "repeated": sum(1 for n in ids.values() if n > 1),
    }
    if reset:
        counts.update(connections=0, messages=0, ids=Counter())
    return shown


class Server:
    def __init__(self, latency: float) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self.process = context.Process(target=serve, args=(child, latency), daemon=True)
        self.process.start()
        if not self._pipe.poll(60):
            raise SystemExit("the SMTP server process did not start")
        self.url = f"smtp://127.0.0.1:{self._pipe.recv()}"

    def ask(self, command: str) -> dict[str, int]:
        self._pipe.send(command)
        answer: dict[str, int] = self._pipe.recv()
        return answer

    def stop(self) -> None:
        self._pipe.send("stop")
        self.process.join(30)


# --- setup -----------------------------------------------------------------------------------------


def deploy(store: Store, directory: Path) -> None:
    html = directory / "news.html"
    html.write_text(HTML)
    document = flow_document()
    digest = hashlib.sha256(html.read_bytes()).hexdigest()
    bundle = FlowBundle(
        Flow.model_validate(document), document, {CONTENT: FileRef(CONTENT, digest, html.stat().st_size, html)}
    )
    result = apply(
        store, [bundle], clock=ManualClock(START), options=ApplyOptions(actor="bench", lock_wait=timedelta(0))
    )
    assert not result.blocked, result


def enroll(store: Store, first: int, count: int) -> None:
    """Contacts ``first`` … ``first + count - 1``, enrolled and run: ``count`` pending rows."""
    emails = [f"reader{i:06d}@example.com" for i in range(first, first + count)]
    rows = [
        {"email": e, "first_name": f"Reader{first + i}", "last_name": "Bench", "consent_marketing": True}
        for i, e in enumerate(emails)
    ]
    with store.transaction() as tx:
        CrmTx(tx).upsert_contacts(rows, START)
    executor = Executor(store, ManualClock(START))
    for part in chunks(emails, ENROLL_CHUNK):
        executor.enroll(FLOW, part)
    executor.run_once()
    assert outbox_states(store).get("pending") == count, outbox_states(store)


def outbox_states(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        o = c.outbox
        return {str(s): int(n) for s, n in conn.execute(select(o.c.state, func.count()).group_by(o.c.state))}


# --- the runs ---------------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    messages: int
    seconds: float
    connections: int
    transactions: int | None = None
    cpu: float = 0.0  # seconds of this process's CPU time
    server_cpu: float = 0.0  # seconds of the server process's CPU time

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def run_dispatcher(
    store: Store, directory: Path, server: Server, count: int, connections: int, batch_size: int, profile: bool
) -> Row:
    before = server.ask("reset")
    transport = SmtpTransport(server.url, timeout=30)
    unused_sms = MaildirSink(directory / "sms")  # the flow sends no SMS
    policy = DispatchPolicy(batch_size=batch_size, rate_per_minute=10 * count + 1, connections=connections)
    dispatcher = Dispatcher(
        store, ManualClock(START), Transports(transport, unused_sms, ScriptRunner({}, 1)), policy, jitter=lambda: 0.5
    )
    started, cpu = time.perf_counter(), time.process_time()
    try:
        stats = profiled(dispatcher.run_once, "profile of the dispatcher run") if profile else dispatcher.run_once()
    finally:
        transport.close()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if stats.sent != count:
        fail(f"the dispatcher reports {stats.sent} sent, {stats.failed} failed, {stats.retried} retried")
    received = verify(store, server, count)
    name = f"dispatcher, {connections} connection{'s' if connections > 1 else ''}" + (" (profiled)" * profile)
    server_cpu = (received["cpu_ms"] - before["cpu_ms"]) / 1000
    return Row(name, count, elapsed, received["connections"], stats.transactions, cpu, server_cpu)


def naive(store: Store, server: Server, count: int, when: str) -> Row:
    """One message at a time: claim and mark it in one transaction, render with freshly
    compiled templates, a new SMTP connection, record the outcome in another transaction."""
    before = server.ask("reset")
    clock = ManualClock(START)
    record = store.flow(FLOW)
    assert record is not None
    flow = Flow.model_validate(record.spec)
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        with store.transaction() as tx:
            (row,) = claim_pending(tx, clock.now(), 1)
            assert start_attempt(tx, row, row.next_attempt_at, clock.now())
            contact = CrmTx(tx).contacts_by_email([row.contact_email])[row.contact_email]
            found = revision_spec(tx, row.flow_name, row.revision)
            assert found is not None
            content = blob(tx, found[1][CONTENT])
            assert content is not None
        stored = parse_message(row.kind, row.payload)
        assert isinstance(stored, EmailSend)
        message = render_email(
            message=stored,
            contact=contact.as_template_data(),
            flow=flow,
            files={CONTENT: content},
            associates={},
            message_id=f"<{row.idempotency_key.replace(':', '.')}@reconciler.invalid>",
            unsubscribe_url=f"mailto:help@acme.example?subject=unsubscribe%20{contact.email}",
        )
        with SmtpTransport(server.url, timeout=30) as transport:
            receipt = transport.send(message)
        with store.transaction() as tx:
            finish_attempt(tx, row, state="sent", outcome="sent", now=clock.now(), detail=receipt.detail)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    received = verify(store, server, count)
    server_cpu = (received["cpu_ms"] - before["cpu_ms"]) / 1000
    return Row(
        f"naive baseline ({when}): one at a time", count, elapsed, received["connections"], 2 * count, cpu, server_cpu
    )


def verify(store: Store, server: Server, count: int) -> dict[str, int]:
    """What the server got is exactly ``count`` distinct messages; every row is sent."""
    received = server.ask("stats")
    problems = []
    if received["messages"] != count:
        problems.append(f"the server received {received['messages']} messages, not {count}")
    if received["distinct"] != count:
        problems.append(f"the server saw {received['distinct']} distinct Message-IDs, not {count}")
    if received["repeated"]:
        problems.append(f"{received['repeated']} Message-IDs arrived more than once")
    states = outbox_states(store)
    if set(states) != {"sent"}:
        problems.append(f"outbox states are {states}, not all sent")
    if problems:
        fail("\n  ".join(problems))
    return received


def fail(text: str) -> None:
    raise SystemExit(f"a run is wrong, so its numbers mean nothing:\n  {text}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=MESSAGES, help="outbox rows for the dispatcher run")
    parser.add_argument("--baseline", type=int, default=BASELINE, help="messages for the naive baseline")
    parser.add_argument("--one-connection", type=int, default=ONE_CONNECTION, help="messages for the 1-connection row")
    parser.add_argument("--connections", type=int, default=DispatchPolicy().connections, help="dispatcher connections")
    parser.add_argument("--batch-size", type=int, default=DispatchPolicy().batch_size, help="dispatcher claim size")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay of every server reply (a remote MTA)")
    parser.add_argument("--profile", action="store_true", help=f"cProfile the dispatcher run: top {PROFILE_TOP}")
    args = parser.parse_args(argv)
    if min(args.messages, args.baseline, args.connections) < 1 or args.one_connection < 0:
        parser.error("--messages, --baseline and --connections must be at least 1")

    directory = Path(tempfile.mkdtemp(prefix="bench-outbox-"))
    server = Server(args.latency_ms / 1000)
    store = Store.open(f"sqlite:///{directory / 'state.db'}")
    rows: list[Row] = []
    halves: list[Row] = []  # the naive baseline, before and after
    dispatched: Row | None = None
    try:
        deploy(store, directory)
        first = 0
        # The baseline in two halves, before and after the dispatcher runs: the VM's speed drifts
        # (the same baseline has varied by half between runs), and bracketing averages it out.
        before = (args.baseline + 1) // 2
        for count, run, is_baseline in (
            (before, lambda n: naive(store, server, n, "before"), True),
            (
                args.one_connection,
                lambda n: run_dispatcher(store, directory, server, n, 1, args.batch_size, False),
                False,
            ),
            (
                args.messages,
                lambda n: run_dispatcher(store, directory, server, n, args.connections, args.batch_size, args.profile),
                False,
            ),
            (args.baseline - before, lambda n: naive(store, server, n, "after"), True),
        ):
            if not count:
                continue
            started = time.perf_counter()
            enroll(store, first, count)
            first += count
            print(f"setup: {count:,} contacts enrolled, pending rows written in {time.perf_counter() - started:.1f} s")
            row = run(count)
            rows.append(row)
            if is_baseline:
                halves.append(row)
            else:
                dispatched = row  # the last one: the run with --connections
    finally:
        store.close()
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)

    assert dispatched is not None  # --messages is at least 1
    baseline = Row(
        "naive baseline, both halves",
        sum(r.messages for r in halves),
        sum(r.seconds for r in halves),
        sum(r.connections for r in halves),
        sum(r.transactions or 0 for r in halves),
        sum(r.cpu for r in halves),
        sum(r.server_cpu for r in halves),
    )
    rows.append(baseline)
    print(f"\nSMTP server: aiosmtpd in a separate process, reply latency {args.latency_ms:g} ms; database: SQLite")
    print(
        f"{'run':<40} {'messages':>9} {'seconds':>8} {'msgs/s':>8} {'SMTP conns':>10} {'txns/msg':>9}"
        f" {'CPU ms/msg':>10} {'server':>7}"
    )
    for row in rows:
        per = f"{row.transactions / row.messages:.2f}" if row.transactions is not None else "-"
        print(
            f"{row.name:<40} {row.messages:>9,} {row.seconds:>8.2f} {row.rate:>8,.0f} {row.connections:>10,} {per:>9}"
            f" {1000 * row.cpu / row.messages:>10.2f} {1000 * row.server_cpu / row.messages:>7.2f}"
        )
    print(
        "CPU ms/msg: CPU time of this process (the dispatcher) and of the server process per message; "
        f"this machine has {os.cpu_count()} CPUs"
    )
    ratio = dispatched.rate / baseline.rate if baseline.rate else float("inf")
    print(f"dispatcher ({args.connections} connections) / naive baseline: {ratio:.1f}×")
    print("verified after every run: the server got as many messages as distinct Message-IDs, none twice; rows sent")
    print()
    verdict(
        dispatched.rate >= TARGET_RATE, f"dispatcher {dispatched.rate:,.0f} messages/s (target ≥ {TARGET_RATE:,.0f})"
    )
    verdict(ratio >= TARGET_RATIO, f"dispatcher {ratio:.1f}× the naive baseline (target ≥ {TARGET_RATIO:.0f}×)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
