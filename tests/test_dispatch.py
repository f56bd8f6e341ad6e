"""The outbox dispatcher: exactly once, or visibly not — on SQLite and PostgreSQL.

Transports are in-memory fakes of our own delivery interfaces; the real SMTP and
HTTP adapters have their own tests against real local servers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from reconciler.actions.delivery import (
    EmailMessage,
    OutcomeUnknown,
    PermanentDeliveryError,
    Receipt,
    SmsMessage,
    TemporaryDeliveryError,
)
from reconciler.actions.scripts import ScriptRunner
from reconciler.actions.smtp import SmtpTransport
from reconciler.apply import ApplyOptions, apply
from reconciler.clock import ManualClock
from reconciler.config import ScriptRegistration
from reconciler.executor import Executor
from reconciler.executor.dispatch import Dispatcher, DispatchPolicy, Transports
from reconciler.spec.bundle import FileRef, FlowBundle
from reconciler.spec.models import Flow
from reconciler.state import Store
from reconciler.state import crm as c
from reconciler.state.crm_store import CrmTx
from tests.conftest import flow_doc
from tests.test_actions_email import Recorder, _free_port

EMAIL = {"sender": {"name": "Acme", "address": "news@acme.example"}, "reply_to": "help@acme.example"}
SCORES: list[str] = []


def score(contact: dict[str, Any]) -> dict[str, int]:
    SCORES.append(contact["email"])
    return {"score": 7}


def explode(contact: dict[str, Any]) -> None:
    raise RuntimeError("boom")


class FakeMail:
    """Records what it was given; ``fail`` decides per call what goes wrong."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage | SmsMessage] = []
        self.fail: Callable[[EmailMessage | SmsMessage], None] = lambda message: None
        self.closed = False
        self.lock = threading.Lock()

    def send(self, message: Any) -> Receipt:
        self.fail(message)
        with self.lock:
            self.sent.append(message)
        return Receipt(provider_id=f"id-{len(self.sent)}", detail="250 ok")

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))


@pytest.fixture
def mail() -> FakeMail:
    return FakeMail()


@pytest.fixture
def dispatcher(store: Store, clock: ManualClock, mail: FakeMail) -> Dispatcher:
    scripts = ScriptRunner(
        {
            "score": ScriptRegistration("score", "tests.test_dispatch:score", "test"),
            "explode": ScriptRegistration("explode", "tests.test_dispatch:explode", "test"),
        },
        5,
    )
    return Dispatcher(
        store,
        clock,
        Transports(mail, mail, scripts),
        DispatchPolicy(rate_per_minute=100, connections=1),  # one at a time: the order is asserted
        jitter=lambda: 0.5,
    )


def deploy(store: Store, clock: ManualClock, tmp_path: Any, steps: list[dict[str, Any]], **spec: Any) -> None:
    html = tmp_path / "c.html"
    html.write_text("<p>Hej {{ contact.first_name }}</p><a href='{{ unsubscribe_url }}'>unsubscribe</a>")
    spec.setdefault("settings", {"email": EMAIL, "sms": {"sender": "ACME", "default_region": "SE"}})
    document = flow_doc("f", steps=steps, status="running", **spec)
    digest = __import__("hashlib").sha256(html.read_bytes()).hexdigest()
    bundle = FlowBundle(
        Flow.model_validate(document), document, {"c.html": FileRef("c.html", digest, html.stat().st_size, html)}
    )
    result = apply(store, [bundle], clock=clock, options=ApplyOptions(actor="t", lock_wait=timedelta(0)))
    assert not result.blocked


def enroll(store: Store, clock: ManualClock, *rows: dict[str, Any]) -> None:
    with store.transaction() as tx:
        CrmTx(tx).upsert_contacts([{"consent_marketing": True, **r} for r in rows], clock.now())
    Executor(store, clock).enroll("f", [r["email"] for r in rows])
    Executor(store, clock).run_once()


def outbox(store: Store) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(select(c.outbox).order_by(c.outbox.c.id)))


def attempts(store: Store) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(select(c.outbox_attempts).order_by(c.outbox_attempts.c.id)))


MAIL = [
    {"id": "mail", "type": "send_email", "subject": "Hej {{ contact.first_name }}", "content": "c.html"},
    {"id": "done", "type": "finish"},
]
SMS = [{"id": "sms", "type": "send_sms", "text": "Hej {{ contact.first_name }}!"}, {"id": "done", "type": "finish"}]


def test_sends_once_with_rendered_content(
    store: Store, clock: ManualClock, mail: FakeMail, dispatcher: Dispatcher, tmp_path: Any
) -> None:
    deploy(store, clock, tmp_path, [MAIL[0], SMS[0], {"id": "done", "type": "finish"}])
    enroll(store, clock, {"email": "a@x.example", "first_name": "Åsa", "mobile": "070-123 45 67"})
    stats = dispatcher.run_once()
    assert (stats.sent, stats.failed) == (2, 0)
    email, sms = mail.sent
    assert isinstance(email, EmailMessage) and isinstance(sms, SmsMessage)
    assert (email.subject, email.to.address, email.sender.address) == ("Hej Åsa", "a@x.example", "news@acme.example")
    assert "Hej Åsa" in email.html and "mailto:help@acme.example" in email.html
    assert (sms.to, sms.text, sms.sender, sms.segments) == ("+46701234567", "Hej Åsa!", "ACME", 1)
    assert [r.state for r in outbox(store)] == ["sent", "sent"]
    assert [(a.attempt, a.outcome, a.provider_id) for a in attempts(store)] == [
        (1, "sent", "id-1"),
        (1, "sent", "id-2"),
    ]
    assert dispatcher.run_once().sent == 0  # nothing twice


def test_company_merge_fields_come_from_the_contacts_company(
    store: Store, clock: ManualClock, mail: FakeMail, dispatcher: Dispatcher, tmp_path: Any
) -> None:
    subject = "{{ company.name }} i {{ company.city }} ({{ company.custom.tier }})"
    deploy(store, clock, tmp_path, [{**MAIL[0], "subject": subject}, {"id": "done", "type": "finish"}])
    with store.transaction() as tx:
        crm = CrmTx(tx)
        crm.ensure_companies(["Acme", "Nowhere AB"])
        crm.update_company("Acme", {"city": "Lund", "custom": {"tier": "gold"}})
    enroll(
        store,
        clock,
        {"email": "a@x.example", "first_name": "Åsa", "company": "Acme"},
        {"email": "b@x.example", "first_name": "Bo", "company": "Nowhere AB"},
    )
    stats = dispatcher.run_once()
    assert (stats.sent, stats.failed) == (1, 1)
    (email,) = mail.sent
    assert isinstance(email, EmailMessage) and email.subject == "Acme i Lund (gold)"
    failed = [r for r in outbox(store) if r.state == "failed"]
    assert [r.contact_email for r in failed] == ["b@x.example"]
    assert "company.city has no value" in (failed[0].last_error or "")  # an error, never an empty merge field


def test_temporary_errors_retry_with_backoff_then_give_up(
    store: Store, clock: ManualClock, mail: FakeMail, dispatcher: Dispatcher, tmp_path: Any
) -> None:
    deploy(store, clock, tmp_path, [MAIL[0], {"id": "later", "type": "wait", "duration": "30d"}, MAIL[1]])
    enroll(store, clock, {"email": "a@x.example", "first_name": "A"})

    def busy(message: Any) -> None:
        raise TemporaryDeliveryError("451 try later")

    mail.fail = busy
    assert dispatcher.run_once().retried == 1
    (row,) = outbox(store)
    assert (row.state, row.attempts, row.last_error) == ("pending", 1, "451 try later")
    assert row.next_attempt_at == clock.now() + timedelta(seconds=30)  # base delay, jitter 0.5 → ×1.0
    assert dispatcher.run_once().retried == 0  # not due yet
    for attempt in range(2, 8):
        clock.set(outbox(store)[0].next_attempt_at)
        dispatcher.run_once()
        assert outbox(store)[0].attempts == attempt
    clock.set(outbox(store)[0].next_attempt_at)
    stats = dispatcher.run_once()
    assert stats.failed == 1
    (row,) = outbox(store)
    assert row.state == "failed" and row.last_error.startswith("gave up after 8 attempts")
    participant = store.participants("f")[0]  # still in the flow: it stops here, with the reason
    assert participant.status == "failed" and "451 try later" in (participant.reason or "")


def test_retry_succeeds_and_arrives_once(
    store: Store, clock: ManualClock, mail: FakeMail, dispatcher: Dispatcher, tmp_path: Any
) -> None:
    deploy(store, clock, tmp_path, MAIL)
    enroll(store, clock, {"email": "a@x.example", "first_name": "A"})
    calls: list[int] = []

    def flaky(message: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise TemporaryDeliveryError("connection refused")

    mail.fail = flaky
    dispatcher.run_once()
    clock.advance(timedelta(minutes=5))
    dispatcher.run_once()
    assert len(mail.sent) == 1 and outbox(store)[0].state == "sent"
    assert [a.outcome for a in attempts(store)] == ["retry", "sent"]


def test_permanent_and_unknown_outcomes(
    store: Store, clock: ManualClock, mail: FakeMail, dispatcher: Dispatcher, tmp_path: Any
) -> None:
    deploy(store, clock, tmp_path, [SMS[0], {"id": "later", "type": "wait", "duration": "30d"}, SMS[1]])
    enroll(
        store,
        clock,
        {"email": "bad@x.example", "first_name": "B", "mobile": "+46701234500"},
        {"email": "lost@x.example", "first_name": "L", "mobile": "+46701234567"},
    )

    def fail(message: Any) -> None:
        if message.to == "+46701234500":
            raise PermanentDeliveryError("400 number is not reachable")
        raise OutcomeUnknown("read timeout after the request was sent")

    mail.fail = fail
    stats = dispatcher.run_once()
    assert (stats.failed, stats.unknown) == (1, 1)
    states = {r.contact_email: (r.state, r.last_error) for r in outbox(store)}
    assert states["bad@x.example"] == ("failed", "400 number is not reachable")
    assert states["lost@x.example"] == ("unknown", "read timeout after the request was sent")
    people = {p.contact: p for p in store.participants("f")}
    assert (people["bad@x.example"].status, people["bad@x.example"].reason) == (
        "failed",
        "sms: 400 number is not reachable",
    )
    assert people["lost@x.example"].status == "active"  # the flow goes on; the send is visible as unknown
    clock.advance(timedelta(days=1))
    assert dispatcher.run_once().unknown == 0  # never resent blindly


def test_invalid_numbers_are_treated_like_missing_ones(
    store: Store, clock: ManualClock, dispatcher: Dispatcher, tmp_path: Any
) -> None:
    deploy(store, clock, tmp_path, [{**SMS[0], "on_missing_mobile": "exit"}, SMS[1]])
    enroll(store, clock, {"email": "bad@x.example", "first_name": "B", "mobile": "12"})
    (person,) = store.participants("f")
    assert (person.status, person.reason) == (
        "dropped_out",
        "no usable mobile number: invalid mobile number '12': too short",
    )
    assert outbox(store) == []


def test_a_dispatcher_that_died_mid_send_leaves_the_row_unknown(
    store: Store, clock: ManualClock, mail: FakeMail, dispatcher: Dispatcher, tmp_path: Any
) -> None:
    deploy(store, clock, tmp_path, MAIL)
    enroll(store, clock, {"email": "a@x.example", "first_name": "A"})
    with store.engine.begin() as conn:  # what a SIGKILL between "sending" and "sent" leaves behind
        conn.execute(update(c.outbox).values(state="sending", attempts=1, updated_at=clock.now()))
    clock.advance(timedelta(minutes=11))
    stats = dispatcher.run_once()
    assert (stats.recovered, stats.sent) == (1, 0)
    assert outbox(store)[0].state == "unknown" and mail.sent == []


def test_render_errors_fail_that_participant_only(
    store: Store, clock: ManualClock, mail: FakeMail, dispatcher: Dispatcher, tmp_path: Any
) -> None:
    deploy(store, clock, tmp_path, MAIL)
    enroll(store, clock, {"email": "named@x.example", "first_name": "N"}, {"email": "anon@x.example"})
    stats = dispatcher.run_once()
    assert (stats.sent, stats.failed) == (1, 1)
    failed = [r for r in outbox(store) if r.state == "failed"]
    assert failed[0].contact_email == "anon@x.example" and "first_name" in failed[0].last_error


def test_window_and_rate_limit_hold_sends_back(store: Store, clock: ManualClock, mail: FakeMail, tmp_path: Any) -> None:
    deploy(
        store,
        clock,
        tmp_path,
        SMS,
        timezone="UTC",
        settings={"sms": {"sender": "ACME"}, "sending_window": {"days": "mon-fri", "from": "08:00", "to": "17:00"}},
    )
    enroll(
        store, clock, *({"email": f"p{i}@x.example", "first_name": "P", "mobile": f"+4670123450{i}"} for i in range(5))
    )
    limited = Dispatcher(
        store,
        clock,
        Transports(mail, mail, ScriptRunner({}, 1)),
        DispatchPolicy(rate_per_minute=2, connections=1),
        jitter=lambda: 0.5,
    )
    stats = limited.run_once()
    assert (stats.sent, stats.deferred) == (2, 3)
    clock.set(datetime(2026, 1, 5, 18, 0, tzinfo=UTC))  # the window closed
    stats = limited.run_once()
    assert (stats.sent, stats.deferred) == (0, 3)
    assert {r.next_attempt_at for r in outbox(store) if r.state == "pending"} == {datetime(2026, 1, 6, 8, tzinfo=UTC)}


def test_scripts_run_fire_and_forget(
    store: Store, clock: ManualClock, mail: FakeMail, dispatcher: Dispatcher, tmp_path: Any
) -> None:
    steps = [
        {"id": "s", "type": "run_script", "script": "score"},
        {"id": "x", "type": "run_script", "script": "explode"},
        {"id": "u", "type": "run_script", "script": "unregistered"},
        {"id": "done", "type": "finish"},
    ]
    deploy(store, clock, tmp_path, steps)
    SCORES.clear()
    enroll(store, clock, {"email": "a@x.example"})
    stats = dispatcher.run_once()
    assert (stats.sent, stats.failed) == (1, 2)
    assert SCORES == ["a@x.example"]
    details = {r.step_id: (r.state, r.last_error) for r in outbox(store)}
    assert details["x"] == ("failed", "script 'explode' raised RuntimeError: boom")
    assert details["u"][1] == "script 'unregistered' is not registered here"
    assert store.participants("f")[0].status == "finished"  # scripts never hold the flow


def test_two_dispatchers_never_send_the_same_row(store: Store, clock: ManualClock, tmp_path: Any) -> None:
    deploy(store, clock, tmp_path, SMS)
    enroll(
        store,
        clock,
        *({"email": f"p{i}@x.example", "first_name": "P", "mobile": f"+467012345{i:02d}"} for i in range(40)),
    )
    shared = FakeMail()
    workers = [
        Dispatcher(
            store,
            clock,
            Transports(shared, shared, ScriptRunner({}, 1)),
            DispatchPolicy(batch_size=5, rate_per_minute=1000),
            jitter=lambda: 0.5,
        )
        for _ in range(2)
    ]
    threads = [threading.Thread(target=w.run_once) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(m.to for m in shared.sent) == sorted(f"+467012345{i:02d}" for i in range(40))
    assert {r.state for r in outbox(store)} == {"sent"}


# --- several connections: one thread per connection, writes grouped ------------------------------


def people(count: int) -> list[dict[str, Any]]:
    return [{"email": f"p{i}@x.example", "first_name": f"P{i}", "mobile": f"+467012345{i:02d}"} for i in range(count)]


def with_policy(store: Store, clock: ManualClock, mail: FakeMail, **policy: Any) -> Dispatcher:
    """A dispatcher sending e-mail and SMS through ``mail``, without scripts."""
    return Dispatcher(
        store, clock, Transports(mail, mail, ScriptRunner({}, 1)), DispatchPolicy(**policy), jitter=lambda: 0.5
    )


def test_parallel_connections_send_every_row_once_and_group_their_commits(
    store: Store, clock: ManualClock, tmp_path: Any
) -> None:
    deploy(store, clock, tmp_path, [MAIL[0], SMS[0], {"id": "done", "type": "finish"}])
    count = 40
    enroll(store, clock, *people(count))
    shared = FakeMail()
    # small batches: the next claim is prefetched while the last rows are being sent
    dispatcher = with_policy(store, clock, shared, batch_size=7, rate_per_minute=1000, connections=4)
    stats = dispatcher.run_once()
    assert (stats.sent, stats.failed, stats.retried, stats.unknown) == (2 * count, 0, 0, 0)
    emails = sorted(m.to.address for m in shared.sent if isinstance(m, EmailMessage))
    texts = sorted(m.to for m in shared.sent if isinstance(m, SmsMessage))
    assert emails == sorted(f"p{i}@x.example" for i in range(count))
    assert texts == sorted(f"+467012345{i:02d}" for i in range(count))
    assert {r.state for r in outbox(store)} == {"sent"}
    tries = attempts(store)
    assert sorted((a.outbox_id, a.attempt, a.outcome) for a in tries) == [(r.id, 1, "sent") for r in outbox(store)]
    # one transaction per message and claim at most (sending of the next shares one with the last outcome)
    assert stats.transactions <= 2 * count + 2 * count // 7 + 2
    assert dispatcher.run_once().sent == 0


def test_rate_limit_holds_with_parallel_connections_and_prefetched_claims(
    store: Store, clock: ManualClock, tmp_path: Any
) -> None:
    deploy(store, clock, tmp_path, SMS)
    enroll(store, clock, *people(30))
    shared = FakeMail()
    limited = with_policy(store, clock, shared, batch_size=4, rate_per_minute=10, connections=4)
    stats = limited.run_once()
    assert (stats.sent, stats.deferred) == (10, 20)  # reserved rows count against the budget before they start
    assert len(shared.sent) == 10
    clock.advance(timedelta(minutes=1, seconds=1))
    assert limited.run_once().sent == 10


def test_rate_limit_counts_the_rows_another_dispatcher_holds(store: Store, clock: ManualClock, tmp_path: Any) -> None:
    deploy(store, clock, tmp_path, SMS)
    enroll(store, clock, *people(30))
    handing_over, release = threading.Event(), threading.Event()
    slow = FakeMail()

    def hold_up(_message: Any) -> None:
        handing_over.set()
        assert release.wait(30)

    slow.fail = hold_up
    first = with_policy(store, clock, slow, batch_size=4, rate_per_minute=10, connections=1)
    worker = threading.Thread(target=first.run_once)
    worker.start()
    try:
        assert handing_over.wait(30)  # the first has reserved 4 rows and started one of them
        fast = FakeMail()
        stats = with_policy(store, clock, fast, batch_size=50, rate_per_minute=10, connections=4).run_once()
        assert stats.sent == 10 - 4  # what the first holds counts against the flow's budget too
    finally:
        release.set()
        worker.join(30)
    assert len(slow.sent) + len(fast.sent) == 10
    assert sum(r.state == "sent" for r in outbox(store)) == 10
    assert all(r.reserved_until is None for r in outbox(store))


def test_unrenderable_rows_fail_with_parallel_connections_and_are_never_handed_over(
    store: Store, clock: ManualClock, tmp_path: Any
) -> None:
    deploy(store, clock, tmp_path, MAIL)
    enroll(
        store, clock, *({"email": f"p{i}@x.example", "first_name": "P"} for i in range(6)), {"email": "anon@x.example"}
    )
    shared = FakeMail()
    dispatcher = with_policy(store, clock, shared, connections=3)
    stats = dispatcher.run_once()
    assert (stats.sent, stats.failed) == (6, 1)
    assert "anon@x.example" not in {m.to.address for m in shared.sent}
    (failed,) = [r for r in outbox(store) if r.state == "failed"]
    assert failed.contact_email == "anon@x.example" and "first_name has no value" in failed.last_error
    assert [(a.attempt, a.outcome) for a in attempts(store) if a.outbox_id == failed.id] == [(1, "failed")]


@pytest.mark.parametrize("connections", [1, 3])
def test_stop_ends_claiming_but_sends_what_is_reserved(
    store: Store, clock: ManualClock, tmp_path: Any, connections: int
) -> None:
    deploy(store, clock, tmp_path, SMS)
    enroll(store, clock, *people(12))
    shared, stop = FakeMail(), threading.Event()
    shared.fail = lambda message: stop.set()  # SIGTERM while the first batch is being sent
    stats = with_policy(store, clock, shared, batch_size=5, rate_per_minute=1000, connections=connections).run_once(
        stop=stop
    )
    # the reserved batch, and no more (with 3 threads the next batch may be prefetched already)
    assert stats.sent == len(shared.sent) in ({5} if connections == 1 else {5, 10})
    rows = outbox(store)
    assert sorted(r.state for r in rows) == ["pending"] * (12 - stats.sent) + ["sent"] * stats.sent
    assert all(r.next_attempt_at <= clock.now() for r in rows if r.state == "pending")  # due for the next one


# --- hostile templates that never went through validate -----------------------------------------


def smtp_dispatcher(store: Store, clock: ManualClock, port: int, sms: FakeMail) -> Dispatcher:
    """A dispatcher sending e-mail over SMTP to 127.0.0.1:``port`` and SMS to ``sms``."""
    email = SmtpTransport(f"smtp://127.0.0.1:{port}", timeout=5)
    return Dispatcher(
        store,
        clock,
        Transports(email, sms, ScriptRunner({}, 1)),
        DispatchPolicy(rate_per_minute=100, connections=1),
        jitter=lambda: 0.5,
    )


@pytest.fixture
def smtp_server() -> Any:
    """aiosmtpd on 127.0.0.1: (what arrived, port)."""
    handler, port = Recorder(), _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, server_hostname="mx.test")
    controller.start()
    yield handler, port
    controller.stop()


def test_the_issues_payloads_fail_their_rows_and_the_fine_rows_are_sent(
    store: Store, clock: ManualClock, tmp_path: Any, smtp_server: Any
) -> None:
    # Applied as a bundle, never validated: the templates reach the dispatcher as written.
    hostile = [
        {"id": "times", "type": "send_email", "subject": "{{ 'x' * 1000000000 }}", "content": "c.html"},
        {"id": "field", "type": "send_sms", "text": "{{ contact.first_name * 300000000 }}"},
        {
            "id": "lipsum",
            "type": "notify_email",
            "to": "sales@acme.example",
            "subject": "New lead",
            "message": "{% for lipsum in [] %}{% endfor %}{{ lipsum(n=200000) }}",
        },
        {"id": "range", "type": "notify_sms", "to": "+46701234599", "text": "{% set range = range %}{{ range(9) }}"},
        {**MAIL[0], "id": "fine"},
        {"id": "done", "type": "finish"},
    ]
    deploy(store, clock, tmp_path, hostile)
    enroll(store, clock, {"email": "a@x.example", "first_name": "Åsa", "mobile": "070-123 45 67"})
    server, port = smtp_server
    sms = FakeMail()
    started = time.process_time()
    stats = smtp_dispatcher(store, clock, port, sms).run_once()
    assert time.process_time() - started < 10  # nothing was computed, let alone sent
    assert (stats.sent, stats.failed) == (1, 4)
    rows = {r.step_id: r for r in outbox(store)}
    assert rows["fine"].state == "sent"
    [message] = server.arrived
    assert message.parsed()["Subject"] == "Hej Åsa"
    assert sms.sent == []
    reasons = {step: (row.state, row.last_error) for step, row in rows.items() if step != "fine"}
    assert reasons == {
        "times": ("failed", "merge field in subject: line 1: arithmetic ('*') is not allowed in merge fields"),
        "field": ("failed", "merge field in SMS text: line 1: arithmetic ('*') is not allowed in merge fields"),
        "lipsum": (
            "failed",
            "merge field in message: line 1: {% for %} is not allowed in merge fields: merge fields have no loops; "
            "line 1: function calls are not allowed in merge fields (lipsum(…))",
        ),
        "range": (
            "failed",
            "merge field in SMS text: line 1: {% set %} is not allowed in merge fields: merge fields cannot name "
            "values; line 1: function calls are not allowed in merge fields (range(…))",
        ),
    }


def test_a_render_over_its_budget_fails_that_row_and_the_next_is_sent(
    store: Store, clock: ManualClock, tmp_path: Any, smtp_server: Any
) -> None:
    subject = "{{ contact.first_name }} " * 100  # legal, and long for a long name
    deploy(store, clock, tmp_path, [{**MAIL[0], "subject": subject}, MAIL[1]])
    enroll(
        store,
        clock,
        {"email": "long@x.example", "first_name": "Maximiliana"},  # 12 × 100 characters
        {"email": "short@x.example", "first_name": "Bo"},  # 3 × 100
    )
    server, port = smtp_server
    stats = smtp_dispatcher(store, clock, port, FakeMail()).run_once()
    assert (stats.sent, stats.failed) == (1, 1)
    rows = {r.contact_email: r for r in outbox(store)}
    assert (rows["long@x.example"].state, rows["long@x.example"].last_error) == (
        "failed",
        "subject is longer than 998 characters",
    )
    assert rows["short@x.example"].state == "sent"
    [message] = server.arrived
    assert message.rcpt_tos == ["short@x.example"]


def test_a_row_that_is_not_a_message_of_its_kind_fails_alone(
    store: Store, clock: ManualClock, mail: FakeMail, dispatcher: Dispatcher, tmp_path: Any
) -> None:
    deploy(store, clock, tmp_path, MAIL)
    enroll(store, clock, {"email": "a@x.example", "first_name": "A"}, {"email": "b@x.example", "first_name": "B"})
    first = outbox(store)[0]
    with store.engine.begin() as conn:
        conn.execute(update(c.outbox).where(c.outbox.c.id == first.id).values(payload={**first.payload, "html": "x"}))
    stats = dispatcher.run_once()
    assert (stats.sent, stats.failed) == (1, 1)
    rows = outbox(store)
    assert (rows[0].state, rows[0].last_error) == ("failed", "the send_email payload has unknown keys: html")
    assert rows[1].state == "sent"
