"""How fast does the outbox dispatcher deliver e-mail over SMTP, and what does keeping the connection buy?

What is measured: ``Dispatcher.run_once`` draining 20,000 pending ``send_email`` rows
(``--messages``) through ``SmtpTransport("smtp://127.0.0.1:PORT")`` — one SMTP connection
kept open across sends — into an aiosmtpd server on 127.0.0.1 whose handler only counts
(connections, messages, Message-IDs) and answers 250 at once. Everything the dispatcher
does per row is in the time: claiming a batch (``sending`` committed first), reading the
contact and the content file, rendering subject and HTML through Jinja2 (a merge field),
building the MIME message, the SMTP transaction, and committing ``sent`` with its attempt.

The baseline, in the same run against the same server: the same kind of messages sent one
connection per message — a new ``SmtpTransport`` per message, closed after it (connect,
EHLO, MAIL, RCPT, DATA, QUIT) — on a sample (``--baseline``, 2,000), scaled to messages/s.
Its messages are rendered beforehand with ``render_email`` from the same flow, content file
and contacts, so the baseline is flattered: no database and no rendering in its time, only
MIME and SMTP. An informational third row sends that same sample over one kept connection
(still no database): the difference to the dispatcher row is what the database and the
rendering cost per message.

The SMTP server runs in a thread of this process (aiosmtpd's Controller), so client and
server share one GIL; a real MTA is another process or host. Both sides pay that equally.

The flow is applied and the contacts enrolled with the library (``Executor.enroll`` in
chunks, then ``Executor.run_once`` writes the pending rows); that setup is not timed. A
``ManualClock`` stands still at a fixed instant and the per-flow rate limit is raised above
the message count: the default (600 per flow per minute, ``reconcile run --rate``) would
otherwise hold all but 600 rows back for a minute, by design.

After the dispatcher run the script checks that the server received exactly N messages
with N distinct Message-IDs and that every outbox row is ``sent``; it exits non-zero only
when that fails (then the numbers would mean nothing). Targets are PASS/FAIL lines, never
fatal (timings on shared machines are noisy): ≥ 500 messages/s, and ≥ 5× the
one-connection-per-message baseline.

    .venv/bin/python benchmarks/outbox.py                          # the table
    .venv/bin/python benchmarks/outbox.py --messages 5000 --profile  # plus where the dispatcher spends its time
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import pstats
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import func, select

from reconciler.actions.delivery import EmailMessage
from reconciler.actions.email import render_email
from reconciler.actions.sink import MaildirSink
from reconciler.actions.smtp import SmtpTransport
from reconciler.apply import ApplyOptions, apply
from reconciler.clock import ManualClock
from reconciler.executor import Executor
from reconciler.executor.dispatch import Dispatcher, DispatchPolicy, ScriptRunner, Transports
from reconciler.spec.bundle import FileRef, FlowBundle
from reconciler.spec.models import Flow
from reconciler.state import Store
from reconciler.state import crm as c
from reconciler.state.crm_store import CrmTx, chunks

FLOW = "bench-mail"
MESSAGES = 20_000
BASELINE = 2_000
ENROLL_CHUNK = 2_000
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
TARGET_RATE = 500.0
TARGET_RATIO = 5.0
PROFILE_TOP = 25
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


# --- the SMTP server ---------------------------------------------------------------------------


@dataclass
class Counting:
    """An aiosmtpd handler that counts connections and messages and accepts at once."""

    connections: int = 0
    messages: int = 0
    ids: Counter[bytes] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        found = _MESSAGE_ID.search(envelope.original_content or b"")
        with self.lock:
            self.messages += 1
            self.ids[found.group(1) if found else b"(none)"] += 1
        return "250 2.0.0 Ok: queued"

    def reset(self) -> None:
        with self.lock:
            self.connections = self.messages = 0
            self.ids = Counter()


class _CountingSMTP(SMTP):
    def connection_made(self, transport: Any) -> None:
        handler = self.event_handler
        with handler.lock:
            handler.connections += 1
        super().connection_made(transport)


class CountingController(Controller):
    def factory(self) -> SMTP:
        return _CountingSMTP(self.handler, **self.SMTP_kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- setup -----------------------------------------------------------------------------------------


def populate(store: Store, directory: Path, count: int) -> None:
    """The flow (with its content file), ``count`` contacts, enrolled: ``count`` pending rows."""
    html = directory / "news.html"
    html.write_text(HTML)
    document = flow_document()
    digest = hashlib.sha256(html.read_bytes()).hexdigest()
    bundle = FlowBundle(
        Flow.model_validate(document), document, {CONTENT: FileRef(CONTENT, digest, html.stat().st_size, html)}
    )
    clock = ManualClock(START)
    result = apply(store, [bundle], clock=clock, options=ApplyOptions(actor="bench", lock_wait=timedelta(0)))
    assert not result.blocked, result
    emails = [f"reader{i:06d}@example.com" for i in range(count)]
    rows = [
        {"email": e, "first_name": f"Reader{i}", "last_name": "Bench", "consent_marketing": True}
        for i, e in enumerate(emails)
    ]
    with store.transaction() as tx:
        CrmTx(tx).upsert_contacts(rows, START)
    executor = Executor(store, clock)
    for part in chunks(emails, ENROLL_CHUNK):
        executor.enroll(FLOW, part)
    executor.run_once()
    states = outbox_states(store)
    assert states == {"pending": count}, states


def outbox_states(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        o = c.outbox
        return {str(s): int(n) for s, n in conn.execute(select(o.c.state, func.count()).group_by(o.c.state))}


def sample_messages(store: Store, count: int) -> list[EmailMessage]:
    """``count`` messages rendered like the dispatcher renders them, with Message-IDs of their own."""
    with store.engine.connect() as conn:
        payload = dict(conn.execute(select(c.outbox.c.payload).limit(1)).scalar_one())
    record = store.flow(FLOW)
    assert record is not None
    flow = Flow.model_validate(record.spec)
    with store.reading() as tx:
        contacts = list(CrmTx(tx).contacts_by_email(f"reader{i:06d}@example.com" for i in range(count)).values())
    files = {CONTENT: HTML.encode()}
    return [
        render_email(
            payload={**payload, "to": contact.email},
            contact=contact.as_template_data(),
            flow=flow,
            files=files,
            associates={},
            message_id=f"<baseline.{i}@bench.invalid>",
            unsubscribe_url=f"mailto:help@acme.example?subject=unsubscribe%20{contact.email}",
        )
        for i, contact in enumerate(contacts)
    ]


# --- the runs ---------------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    messages: int
    seconds: float
    connections: int

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def profiled(fn: Callable[[], Any]) -> Any:
    profile = cProfile.Profile()
    result = profile.runcall(fn)
    for key in ("tottime", "cumulative"):
        buffer = io.StringIO()
        pstats.Stats(profile, stream=buffer).strip_dirs().sort_stats(key).print_stats(PROFILE_TOP)
        print(f"\n--- profile of the dispatcher run: top {PROFILE_TOP} by {key} ---")
        print("\n".join(line for line in buffer.getvalue().splitlines()[6:] if line.strip()))
    return result


def run_dispatcher(
    store: Store, directory: Path, url: str, handler: Counting, count: int, batch_size: int, profile: bool
) -> Row:
    handler.reset()
    transport = SmtpTransport(url, timeout=30)
    unused_sms = MaildirSink(directory / "sms")  # the flow sends no SMS
    policy = DispatchPolicy(batch_size=batch_size, rate_per_minute=count + 1)
    dispatcher = Dispatcher(
        store, ManualClock(START), Transports(transport, unused_sms, ScriptRunner({}, 1)), policy, jitter=lambda: 0.5
    )
    started = time.perf_counter()
    try:
        stats = profiled(dispatcher.run_once) if profile else dispatcher.run_once()
    finally:
        transport.close()
    elapsed = time.perf_counter() - started
    problems = verify(store, handler, count)
    if stats.sent != count:
        problems.append(f"the dispatcher reports {stats.sent} sent, {stats.failed} failed, {stats.retried} retried")
    if problems:
        raise SystemExit("the dispatcher run is wrong, so its numbers mean nothing:\n  " + "\n  ".join(problems))
    name = "dispatcher, one kept connection" + (" (profiled)" if profile else "")
    assert handler.connections == transport.connections, (handler.connections, transport.connections)
    return Row(name, count, elapsed, handler.connections)


def verify(store: Store, handler: Counting, count: int) -> list[str]:
    problems = []
    with handler.lock:
        messages, ids = handler.messages, Counter(handler.ids)
    if messages != count:
        problems.append(f"the server received {messages} messages, not {count}")
    if len(ids) != count:
        problems.append(f"the server saw {len(ids)} distinct Message-IDs, not {count}")
    twice = sum(1 for n in ids.values() if n > 1)
    if twice:
        problems.append(f"{twice} Message-IDs arrived more than once")
    states = outbox_states(store)
    if states != {"sent": count}:
        problems.append(f"outbox states are {states}, not all {count} sent")
    return problems


def one_connection_per_message(url: str, handler: Counting, messages: Sequence[EmailMessage]) -> Row:
    handler.reset()
    started = time.perf_counter()
    for message in messages:
        with SmtpTransport(url, timeout=30) as transport:
            transport.send(message)
    elapsed = time.perf_counter() - started
    assert handler.messages == len(messages) == len(handler.ids), (handler.messages, len(handler.ids))
    return Row("baseline: one connection per message", len(messages), elapsed, handler.connections)


def kept_connection_no_database(url: str, handler: Counting, messages: Sequence[EmailMessage]) -> Row:
    handler.reset()
    started = time.perf_counter()
    with SmtpTransport(url, timeout=30) as transport:
        for message in messages:
            transport.send(message)
    elapsed = time.perf_counter() - started
    assert handler.messages == len(messages) == len(handler.ids), (handler.messages, len(handler.ids))
    return Row("(info) same sample, one kept connection", len(messages), elapsed, handler.connections)


def verdict(ok: bool, text: str) -> None:
    print(f"{'PASS' if ok else 'FAIL'}  {text}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=MESSAGES, help="outbox rows for the dispatcher run")
    parser.add_argument("--baseline", type=int, default=BASELINE, help="messages for the one-connection baseline")
    parser.add_argument("--batch-size", type=int, default=DispatchPolicy().batch_size, help="dispatcher claim size")
    parser.add_argument("--profile", action="store_true", help=f"cProfile the dispatcher run: top {PROFILE_TOP}")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.baseline < 1:
        parser.error("--messages and --baseline must be at least 1")
    sample = min(args.baseline, args.messages)

    directory = Path(tempfile.mkdtemp(prefix="bench-outbox-"))
    handler = Counting()
    controller = CountingController(handler, hostname="127.0.0.1", port=free_port(), server_hostname="mx.bench")
    controller.start()
    url = f"smtp://127.0.0.1:{controller.port}"
    store = Store.open(f"sqlite:///{directory / 'state.db'}")
    try:
        started = time.perf_counter()
        populate(store, directory, args.messages)
        print(
            f"setup: {args.messages:,} contacts enrolled, pending rows written in {time.perf_counter() - started:.1f} s"
        )
        messages = sample_messages(store, sample)
        dispatched = run_dispatcher(store, directory, url, handler, args.messages, args.batch_size, args.profile)
        baseline = one_connection_per_message(url, handler, messages)
        kept = kept_connection_no_database(url, handler, messages)
    finally:
        store.close()
        controller.stop()
        shutil.rmtree(directory, ignore_errors=True)

    print()
    print(f"{'run':<42} {'messages':>9} {'seconds':>8} {'msgs/s':>8} {'SMTP conns':>10}")
    for row in (dispatched, baseline, kept):
        print(f"{row.name:<42} {row.messages:>9,} {row.seconds:>8.2f} {row.rate:>8,.0f} {row.connections:>10,}")
    ratio = dispatched.rate / baseline.rate if baseline.rate else float("inf")
    print(f"dispatcher / one-connection-per-message baseline: {ratio:.1f}×")
    print(
        f"verified: the server got {dispatched.messages:,} messages with as many distinct Message-IDs; "
        f"every outbox row is sent"
    )
    print()
    verdict(
        dispatched.rate >= TARGET_RATE, f"dispatcher {dispatched.rate:,.0f} messages/s (target ≥ {TARGET_RATE:,.0f})"
    )
    verdict(
        ratio >= TARGET_RATIO,
        f"dispatcher {ratio:.1f}× the one-connection-per-message baseline (target ≥ {TARGET_RATIO:.0f}×)",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
