"""The executor against the seed's lifecycle rules and every step, on SQLite and PostgreSQL.

The clock is injected: time passes by ``clock.advance``, never by sleeping.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import pytest
from sqlalchemy import select

from reconciler.apply import ApplyOptions, apply, break_glass
from reconciler.clock import ManualClock
from reconciler.executor import Executor
from reconciler.executor.handlers import HANDLERS
from reconciler.spec.bundle import bundle_document
from reconciler.spec.models import Flow
from reconciler.spec.steps import Step
from reconciler.state import Store
from reconciler.state import crm as c
from reconciler.state.crm_store import CrmTx, NewEvent
from reconciler.state.records import Participant
from tests.conftest import flow_doc

SIGNUP = [{"type": "form_submitted", "form": "signup"}]
EMAIL = {"sender": {"address": "news@acme.example"}, "reply_to": "help@acme.example"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))  # a Monday


@pytest.fixture
def executor(store: Store, clock: ManualClock) -> Executor:
    return Executor(store, clock, batch_size=50)


def deploy(
    store: Store,
    clock: ManualClock,
    steps: list[dict[str, Any]],
    *,
    name: str = "f",
    status: str = "running",
    **spec: Any,
) -> None:
    spec.setdefault("triggers", SIGNUP)
    spec.setdefault("settings", {"email": EMAIL})  # distribute_to_owner notifies: a sender is needed to start
    clock.advance(timedelta(seconds=1))  # applying takes a moment: events before it are before it
    document = flow_doc(name, steps=steps, status=status, **spec)
    result = apply(
        store,
        [bundle_document(document, {})],
        clock=clock,
        options=ApplyOptions(actor="t", lock_wait=timedelta(0), update_policy="pause_and_resume"),
    )
    assert not result.blocked, result.blocked


def contacts(store: Store, clock: ManualClock, *rows: dict[str, Any]) -> None:
    with store.transaction() as tx:
        CrmTx(tx).upsert_contacts([{"consent_marketing": True, **r} for r in rows], clock.now())


def emit(store: Store, clock: ManualClock, kind: str, email: str, subject: str | None = None, **data: Any) -> None:
    with store.transaction() as tx:
        CrmTx(tx).append_events([NewEvent(kind, email, clock.now(), subject, data)])


def people(store: Store, flow: str = "f") -> dict[str, Participant]:
    return {p.contact: p for p in store.participants(flow)}


def where(store: Store, flow: str = "f") -> dict[str, tuple[str, str | None]]:
    return {p.contact: (p.status, p.step_id) for p in store.participants(flow)}


def contact_row(store: Store, email: str) -> Any:
    with store.engine.connect() as conn:
        return conn.execute(select(c.contacts).where(c.contacts.c.email == email)).one()


def rows(store: Store, table: Any) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(select(table)))


WAIT_THEN_TAG = [
    {"id": "pause", "type": "wait", "duration": "1d"},
    {"id": "tag", "type": "update_contact", "updates": [{"field": "category", "action": "set", "value": "lead"}]},
    {"id": "done", "type": "finish"},
]


# --- the seed's lifecycle, statement by statement -------------------------------------------


def test_not_running_flows_enroll_nobody(store: Store, clock: ManualClock, executor: Executor) -> None:
    deploy(store, clock, WAIT_THEN_TAG, status="not_running")
    contacts(store, clock, {"email": "a@x.example"})
    emit(store, clock, "form_submitted", "a@x.example", "signup")
    executor.run_once()
    assert people(store) == {}
    deploy(store, clock, WAIT_THEN_TAG, status="running")
    executor.run_once()
    assert people(store) == {}  # the event came while the flow was off: it does not slip in later


def test_running_enrolls_and_participants_progress(store: Store, clock: ManualClock, executor: Executor) -> None:
    deploy(store, clock, WAIT_THEN_TAG)
    contacts(store, clock, {"email": "a@x.example"})
    emit(store, clock, "form_submitted", "a@x.example", "signup")
    executor.run_once()
    assert where(store) == {"a@x.example": ("active", "pause")}
    clock.advance(timedelta(hours=23))
    executor.run_once()
    assert where(store) == {"a@x.example": ("active", "pause")}
    clock.advance(timedelta(hours=1))
    executor.run_once()
    assert where(store) == {"a@x.example": ("finished", "done")}
    assert contact_row(store, "a@x.example").category == "lead"


def test_paused_queues_new_and_freezes_existing(store: Store, clock: ManualClock, executor: Executor) -> None:
    deploy(store, clock, WAIT_THEN_TAG)
    contacts(store, clock, {"email": "old@x.example"}, {"email": "new@x.example"})
    emit(store, clock, "form_submitted", "old@x.example", "signup")
    executor.run_once()
    deploy(store, clock, WAIT_THEN_TAG, status="paused")
    emit(store, clock, "form_submitted", "new@x.example", "signup")  # triggers stay on while paused
    clock.advance(timedelta(days=3))
    executor.run_once()
    assert where(store) == {"old@x.example": ("active", "pause"), "new@x.example": ("queued", None)}
    # resume: everyone continues from their step, the queued go to the first step
    deploy(store, clock, WAIT_THEN_TAG, status="running")
    executor.run_once()
    assert where(store) == {"old@x.example": ("finished", "done"), "new@x.example": ("active", "pause")}


def test_edits_reach_those_not_yet_past_the_step(store: Store, clock: ManualClock, executor: Executor) -> None:
    deploy(store, clock, WAIT_THEN_TAG)
    contacts(store, clock, {"email": "early@x.example"}, {"email": "late@x.example"})
    emit(store, clock, "form_submitted", "early@x.example", "signup")
    executor.run_once()
    clock.advance(timedelta(days=1))
    executor.run_once()  # early passes the tag step with the old value
    emit(store, clock, "form_submitted", "late@x.example", "signup")
    executor.run_once()
    edited = [
        WAIT_THEN_TAG[0],
        {**WAIT_THEN_TAG[1], "updates": [{"field": "category", "action": "set", "value": "hot"}]},
        WAIT_THEN_TAG[2],
    ]
    deploy(store, clock, edited, status="paused")
    deploy(store, clock, edited, status="running")
    clock.advance(timedelta(days=1))
    executor.run_once()
    assert contact_row(store, "early@x.example").category == "lead"
    assert contact_row(store, "late@x.example").category == "hot"


def test_end_cancels_and_restart_takes_only_new_contacts(store: Store, clock: ManualClock, executor: Executor) -> None:
    deploy(store, clock, WAIT_THEN_TAG)
    contacts(store, clock, {"email": "a@x.example"}, {"email": "b@x.example"})
    emit(store, clock, "form_submitted", "a@x.example", "signup")
    executor.run_once()
    break_glass(store, "f", "end", clock=clock, actor="ops")
    assert where(store) == {"a@x.example": ("cancelled", "pause")}
    deploy(store, clock, WAIT_THEN_TAG, status="not_running")
    deploy(store, clock, WAIT_THEN_TAG, status="running")
    emit(store, clock, "form_submitted", "a@x.example", "signup")  # once only: a took part already
    emit(store, clock, "form_submitted", "b@x.example", "signup")
    clock.advance(timedelta(days=2))
    executor.run_once()
    assert where(store)["a@x.example"] == ("cancelled", "pause")
    assert where(store)["b@x.example"] == ("active", "pause")


# --- enrollment rules -----------------------------------------------------------------------


def test_once_only_filter_exclusion_and_remove_from_flows(store: Store, clock: ManualClock, executor: Executor) -> None:
    deploy(store, clock, WAIT_THEN_TAG, name="other")
    deploy(
        store,
        clock,
        WAIT_THEN_TAG,
        enrollment={"once_only": False, "filter": {"field": "country", "value": "SE"}, "exclusion_selection": "dnc"},
        settings={"remove_from_flows": ["other"]},
    )
    contacts(
        store,
        clock,
        {"email": "se@x.example", "country": "se"},
        {"email": "no@x.example", "country": "NO"},
        {"email": "dnc@x.example", "country": "SE"},
    )
    with store.transaction() as tx:
        crm = CrmTx(tx)
        crm.add_members("selection", "dnc", [crm.contacts_by_email(["dnc@x.example"])["dnc@x.example"].id], clock.now())
    result = executor.enroll("other", ["se@x.example"])
    assert result.enrolled == ["se@x.example"]
    result = executor.enroll("f", ["se@x.example", "no@x.example", "dnc@x.example"])
    assert result.enrolled == ["se@x.example"]
    assert result.skipped == {
        "no@x.example": "does not match the flow's filter",
        "dnc@x.example": "on the exclusion selection 'dnc'",
    }
    assert where(store, "other") == {"se@x.example": ("dropped_out", "pause")}
    assert people(store, "other")["se@x.example"].reason == "enrolled in flow 'f'"
    assert executor.enroll("f", ["se@x.example"]).skipped == {"se@x.example": "already in the flow"}


def test_manual_enrollment_refuses_unknown_contacts_and_flows(
    store: Store, clock: ManualClock, executor: Executor
) -> None:
    from reconciler.errors import UserError

    deploy(store, clock, WAIT_THEN_TAG, status="not_running")
    contacts(store, clock, {"email": "a@x.example"})
    with pytest.raises(UserError, match=r"no contact with e-mail z@x\.example"):
        executor.enroll("f", ["z@x.example"])
    with pytest.raises(UserError, match="no flow named 'nope'"):
        executor.enroll("nope", ["a@x.example"])
    assert executor.enroll("f", ["a@x.example"]).skipped == {"a@x.example": "flow 'f' is not running"}


def test_exclusion_selection_drops_participants_before_the_next_step(
    store: Store, clock: ManualClock, executor: Executor
) -> None:
    deploy(store, clock, WAIT_THEN_TAG, enrollment={"exclusion_selection": "dnc"})
    contacts(store, clock, {"email": "a@x.example"})
    executor.enroll("f", ["a@x.example"])
    executor.run_once()
    with store.transaction() as tx:
        crm = CrmTx(tx)
        crm.add_members("selection", "dnc", [crm.contacts_by_email(["a@x.example"])["a@x.example"].id], clock.now())
    clock.advance(timedelta(days=1))
    executor.run_once()
    assert where(store) == {"a@x.example": ("dropped_out", "pause")}
    assert people(store)["a@x.example"].reason == "on the exclusion selection 'dnc'"


# --- steps ---------------------------------------------------------------------------------


def test_internal_crm_steps(store: Store, clock: ManualClock, executor: Executor) -> None:
    with store.transaction() as tx:
        CrmTx(tx).upsert_associates([{"name": "anna", "email": "anna@acme.example"}, {"name": "bo"}])
    steps = [
        {
            "id": "tag",
            "type": "update_contact",
            "updates": [
                {"field": "score", "action": "increase", "value": 10},
                {"field": "interests", "action": "add", "value": ["webinars"]},
                {"field": "custom.tier", "action": "set", "value": "gold {{ contact.first_name }}"},
                {"field": "title", "action": "clear"},
            ],
        },
        {"id": "list", "type": "add_to_selection", "selection": "hot", "project": "q3"},
        {"id": "unlist", "type": "remove_from_selection", "selection": "cold"},
        {"id": "owner", "type": "distribute_to_owner", "associates": ["anna", "bo"]},
        {
            "id": "call",
            "type": "create_follow_up",
            "title": "Call {{ contact.first_name }}",
            "follow_up_type": "phone",
            "due": {"in": "2d"},
        },
        {"id": "ticket", "type": "create_request", "title": "Demo", "request_type": "sales", "owner": "auto"},
        {
            "id": "opp",
            "type": "create_sale",
            "title": "Lead",
            "sale_type": "new",
            "amount": 1000,
            "owner": "our_contact",
            "date": {"in": "1w"},
        },
        {"id": "done", "type": "finish"},
    ]
    deploy(store, clock, steps)
    contacts(
        store,
        clock,
        {"email": "a@x.example", "first_name": "Ann", "score": 5, "title": "CEO"},
        {"email": "b@x.example", "first_name": "Bob"},
    )
    with store.transaction() as tx:
        crm = CrmTx(tx)
        found = crm.contacts_by_email(["a@x.example", "b@x.example"])
        crm.add_members("selection", "cold", [found["a@x.example"].id], clock.now())
    executor.enroll("f", ["a@x.example", "b@x.example"])
    executor.run_once()
    assert set(where(store).values()) == {("finished", "done")}
    a = contact_row(store, "a@x.example")
    assert (a.score, a.interests, a.custom, a.title) == (15, ["webinars"], {"tier": "gold Ann"}, None)
    owners = {contact_row(store, e).our_contact for e in ("a@x.example", "b@x.example")}
    assert owners == {"anna", "bo"}  # evenly
    with store.transaction() as tx:
        crm = CrmTx(tx)
        ids = [x.id for x in crm.contacts_by_email(["a@x.example", "b@x.example"]).values()]
        assert crm.memberships("selection", ["hot", "cold"], ids) == {("hot", i) for i in ids}
        assert crm.memberships("project", ["q3"], ids) == {("q3", i) for i in ids}
    follow_ups = rows(store, c.follow_ups)
    assert sorted(f.title for f in follow_ups) == ["Call Ann", "Call Bob"]
    assert all(f.due_at == clock.now() + timedelta(days=2) for f in follow_ups)
    requests = rows(store, c.requests)
    assert sorted(r.owner for r in requests) == ["anna", "bo"]  # auto: least loaded
    sales = rows(store, c.sales)
    assert {s.owner for s in sales} == {"anna", "bo"} and all(s.expected_at for s in sales)
    outbox = rows(store, c.outbox)
    assert {o.kind for o in outbox} == {"notify_email"}  # anna was told she got a contact
    # the steps' CRM changes are events: other flows' triggers and success criteria see them
    kinds = {e.type for e in rows(store, c.events) if e.source == "flow"}
    assert kinds == {
        "contact_updated",
        "added_to_selection",
        "added_to_project",
        "follow_up_created",
        "request_created",
        "sale_created",
    }


def test_update_contact_writes_company_fields_that_later_steps_see(
    store: Store, clock: ManualClock, executor: Executor
) -> None:
    steps = [
        {
            "id": "grow",
            "type": "update_contact",
            "updates": [
                {"field": "company.employees", "action": "increase", "value": 5},
                {"field": "company.custom.tier", "action": "set", "value": "gold"},
                {"field": "company.city", "action": "set", "value": "{{ contact.city }}"},
            ],
        },
        {
            "id": "route",
            "type": "split",
            "branches": [
                {"name": "big", "when": {"field": "company.employees", "op": "gte", "value": 15}, "next": "ticket"},
                {"name": "everyone_else", "next": "done"},
            ],
        },
        {
            "id": "ticket",
            "type": "create_request",
            "title": "{{ company.name }} in {{ company.city }}",
            "request_type": "sales",
        },
        {"id": "done", "type": "finish"},
    ]
    deploy(store, clock, steps)
    contacts(
        store,
        clock,
        {"email": "a@x.example", "company": "Acme", "city": "Lund"},
        {"email": "b@x.example", "company": "Acme", "city": "Umeå"},
        {"email": "c@x.example", "city": "Kiruna"},
        {"email": "d@x.example", "company": "Acme"},
    )
    with store.transaction() as tx:
        crm = CrmTx(tx)
        crm.ensure_companies(["Acme"])
        crm.update_company("Acme", {"employees": 5, "custom": {"founded": 1990}})
    executor.enroll("f", ["a@x.example", "b@x.example", "c@x.example", "d@x.example"])
    executor.run_once()
    (acme,) = rows(store, c.companies)
    assert (acme.employees, acme.custom, acme.city) == (15, {"founded": 1990, "tier": "gold"}, "Umeå")
    people_now = people(store)
    assert (people_now["a@x.example"].status, people_now["b@x.example"].status) == ("finished", "finished")
    assert [r.title for r in rows(store, c.requests)] == ["Acme in Umeå"]  # only b saw 15 employees
    assert people_now["c@x.example"].status == "failed"
    assert people_now["c@x.example"].reason == "the contact has no company, so company.employees cannot be updated"
    # the one empty-value rule of every rendered text: a field without a value fails, never renders as ""
    assert (people_now["d@x.example"].status, people_now["d@x.example"].reason) == (
        "failed",
        "merge field: contact.city has no value",
    )


def test_a_flow_may_not_rename_a_company() -> None:
    document = flow_doc(
        "f",
        steps=[
            {"id": "x", "type": "update_contact", "updates": [{"field": "company.name", "action": "set", "value": "Y"}]}
        ],
    )
    with pytest.raises(ValueError, match=r"field 'company\.name' cannot be updated by a flow"):
        Flow.model_validate(document)


def test_distribute_only_if_unassigned_and_fallback(store: Store, clock: ManualClock, executor: Executor) -> None:
    with store.transaction() as tx:
        CrmTx(tx).upsert_associates([{"name": "anna"}, {"name": "ghost", "active": False}])
    steps = [
        {"id": "owner", "type": "distribute_to_owner", "associates": ["ghost"], "fallback": "anna"},
        {"id": "done", "type": "finish"},
    ]
    deploy(store, clock, steps)
    contacts(store, clock, {"email": "a@x.example", "our_contact": "bo"}, {"email": "b@x.example"})
    executor.enroll("f", ["a@x.example", "b@x.example"])
    executor.run_once()
    assert contact_row(store, "a@x.example").our_contact == "bo"  # already assigned: kept
    assert contact_row(store, "b@x.example").our_contact == "anna"  # ghost is inactive: the fallback


def test_first_available_meeting_slot_skips_busy_diary_times(
    store: Store, clock: ManualClock, executor: Executor
) -> None:
    with store.transaction() as tx:
        crm = CrmTx(tx)
        crm.upsert_associates([{"name": "anna"}])
        anna = crm.associates()[0]
        crm.add_appointment(
            anna.id, datetime(2026, 1, 5, 10, tzinfo=UTC), datetime(2026, 1, 5, 12, tzinfo=UTC), "busy", None
        )
    steps = [
        {
            "id": "meet",
            "type": "create_follow_up",
            "title": "Meet",
            "follow_up_type": "meeting",
            "assign_to": "anna",
            "due": {"first_available": {"length": "1h"}},
        },
        {"id": "done", "type": "finish"},
    ]
    deploy(store, clock, steps)
    contacts(store, clock, {"email": "a@x.example"}, {"email": "b@x.example"})
    executor.enroll("f", ["a@x.example", "b@x.example"])
    executor.run_once()
    starts = sorted(f.starts_at for f in rows(store, c.follow_ups))
    assert starts == [datetime(2026, 1, 5, 12, tzinfo=UTC), datetime(2026, 1, 5, 13, tzinfo=UTC)]  # 10-12 busy


def test_sends_go_to_the_outbox_after_their_checks(store: Store, clock: ManualClock, executor: Executor) -> None:
    steps = [
        {"id": "mail", "type": "send_email", "subject": "Hi {{ contact.first_name }}", "content": "c.html"},
        {
            "id": "sms",
            "type": "send_sms",
            "text": "Hi",
            "on_missing_mobile": "exit",
            "after_exit": {"add_to_selection": "no-mobile"},
        },
        {"id": "script", "type": "run_script", "script": "score-lead"},
        {"id": "done", "type": "finish"},
    ]
    deploy(store, clock, steps, settings={"email": {**EMAIL, "subscription": "news"}, "sms": {"sender": "ACME"}})
    contacts(
        store,
        clock,
        {"email": "ok@x.example", "mobile": "+46701234567", "subscriptions": ["news"]},
        {"email": "nosub@x.example", "mobile": "+46701234568"},
        {"email": "nomobile@x.example", "subscriptions": ["news"]},
    )
    executor.enroll("f", ["ok@x.example", "nosub@x.example", "nomobile@x.example"])
    executor.run_once()
    outbox = {(o.contact_email, o.kind): o for o in rows(store, c.outbox)}
    assert set(outbox) == {
        ("ok@x.example", "send_email"),
        ("ok@x.example", "send_sms"),
        ("ok@x.example", "run_script"),
        ("nosub@x.example", "send_sms"),
        ("nosub@x.example", "run_script"),
        ("nomobile@x.example", "send_email"),
    }
    assert all(o.state == "pending" for o in outbox.values())
    assert where(store)["nomobile@x.example"] == ("dropped_out", "sms")
    assert people(store)["nomobile@x.example"].reason == "no mobile number"
    runs = {(r.step_id, r.outcome) for r in rows(store, c.step_runs)}
    assert ("mail", "skipped: not subscribed to 'news'") in runs


def test_sending_window_holds_sends_until_it_opens(store: Store, clock: ManualClock, executor: Executor) -> None:
    clock.set(datetime(2026, 1, 9, 17, 30, tzinfo=UTC))  # Friday 18:30 in Stockholm
    steps = [{"id": "sms", "type": "send_sms", "text": "Hi", "sender": "ACME"}, {"id": "done", "type": "finish"}]
    deploy(
        store,
        clock,
        steps,
        timezone="Europe/Stockholm",
        settings={"sending_window": {"days": "mon-fri", "from": "08:00", "to": "17:00"}},
    )
    contacts(store, clock, {"email": "a@x.example", "mobile": "+46701234567"})
    executor.enroll("f", ["a@x.example"])
    executor.run_once()
    assert rows(store, c.outbox) == []
    assert people(store)["a@x.example"].due_at == datetime(2026, 1, 12, 7, 0, tzinfo=UTC)  # Monday 08:00 local
    clock.set(datetime(2026, 1, 12, 7, 0, tzinfo=UTC))
    executor.run_once()
    assert len(rows(store, c.outbox)) == 1


def test_wait_until_uses_the_flow_time_zone(store: Store, clock: ManualClock, executor: Executor) -> None:
    steps = [{"id": "w", "type": "wait", "until": "2026-02-01T09:00:00"}, {"id": "done", "type": "finish"}]
    deploy(store, clock, steps, timezone="Europe/Stockholm")
    contacts(store, clock, {"email": "a@x.example"})
    executor.enroll("f", ["a@x.example"])
    executor.run_once()
    assert people(store)["a@x.example"].due_at == datetime(2026, 2, 1, 8, 0, tzinfo=UTC)


def test_a_wait_that_is_already_over_goes_on_in_the_same_batch(
    store: Store, clock: ManualClock, executor: Executor
) -> None:
    steps = [
        {"id": "passed", "type": "wait", "until": "2026-01-01T00:00:00"},  # before the clock's Monday
        {"id": "later", "type": "wait", "until": "2026-02-01T00:00:00"},
        {"id": "done", "type": "finish"},
    ]
    deploy(store, clock, steps)
    contacts(store, clock, {"email": "a@x.example"})
    executor.enroll("f", ["a@x.example"])
    assert executor.run_batch().steps == 1
    assert where(store) == {"a@x.example": ("active", "later")}
    assert [(r.step_id, r.outcome) for r in rows(store, c.step_runs)] == [("passed", "waited")]


def test_wait_for_action_action_timeout_and_exit(store: Store, clock: ManualClock, executor: Executor) -> None:
    steps = [
        {
            "id": "w",
            "type": "wait_for_action",
            "actions": [{"link_clicked": "pricing"}],
            "timeout": "2d",
            "on_timeout": "exit",
            "after_exit": {"add_to_flow": "nurture"},
        },
        {"id": "done", "type": "finish"},
    ]
    deploy(store, clock, [{"id": "n", "type": "wait", "duration": "1w"}], name="nurture", triggers=[])
    deploy(store, clock, steps)
    contacts(store, clock, {"email": "clicker@x.example"}, {"email": "idle@x.example"})
    executor.enroll("f", ["clicker@x.example", "idle@x.example"])
    executor.run_once()
    emit(store, clock, "link_clicked", "clicker@x.example", "pricing")
    clock.advance(timedelta(hours=1))
    executor.run_once()
    assert where(store)["clicker@x.example"] == ("finished", "done")
    clock.advance(timedelta(days=2))
    executor.run_once()
    assert where(store)["idle@x.example"] == ("dropped_out", "w")
    assert where(store, "nurture") == {"idle@x.example": ("active", "n")}  # exit handed over


def test_split_branches_left_to_right(store: Store, clock: ManualClock, executor: Executor) -> None:
    steps = [
        {
            "id": "route",
            "type": "split",
            "branches": [
                {"name": "vip", "when": {"field": "score", "op": "gte", "value": 50}, "next": "vip-tag"},
                {"name": "se", "when": {"field": "country", "value": "SE"}, "next": "done"},
                {"name": "everyone_else", "exit": True, "after_exit": {"add_to_selection": "rest"}},
            ],
        },
        {
            "id": "vip-tag",
            "type": "update_contact",
            "updates": [{"field": "category", "action": "set", "value": "vip"}],
        },
        {"id": "done", "type": "finish"},
    ]
    deploy(store, clock, steps)
    contacts(
        store,
        clock,
        {"email": "vip@x.example", "score": 80, "country": "SE"},
        {"email": "se@x.example", "score": 1, "country": "SE"},
        {"email": "no@x.example", "country": "NO"},
    )
    executor.enroll("f", ["vip@x.example", "se@x.example", "no@x.example"])
    executor.run_once()
    assert contact_row(store, "vip@x.example").category == "vip"
    assert contact_row(store, "se@x.example").category is None
    assert where(store)["no@x.example"] == ("dropped_out", "route")


def test_success_criteria_finish_immediately_and_handoff(store: Store, clock: ManualClock, executor: Executor) -> None:
    deploy(store, clock, [{"id": "n", "type": "wait", "duration": "1w"}], name="onboarding", triggers=[])
    steps = [
        {"id": "w", "type": "wait", "duration": "30d"},
        {"id": "done", "type": "finish", "on_success": {"add_to_flow": "onboarding"}},
    ]
    deploy(store, clock, steps, success_criteria={"criteria": [{"type": "sale_created"}], "finish_immediately": True})
    contacts(store, clock, {"email": "a@x.example"}, {"email": "b@x.example"})
    executor.enroll("f", ["a@x.example", "b@x.example"])
    executor.run_once()
    emit(store, clock, "sale_created", "a@x.example")
    executor.run_once()
    # moved directly to the finish step (the vendor's rule), whose success hand-off happens
    assert where(store)["a@x.example"] == ("finished_with_success", "done")
    assert where(store)["b@x.example"] == ("active", "w")
    assert where(store, "onboarding") == {"a@x.example": ("active", "n")}
    runs = [(r.step_id, r.outcome) for r in rows(store, c.step_runs) if r.step_id in ("w", "done")]
    assert ("w", "left: success criterion met") in runs and ("done", "finish") in runs


def test_events_a_flow_emits_trigger_other_flows_and_the_rest_are_only_recorded(
    store: Store, clock: ManualClock, executor: Executor
) -> None:
    tag = [
        {"id": "tag", "type": "update_contact", "updates": [{"field": "category", "action": "set", "value": "lead"}]},
        {"id": "done", "type": "finish"},
    ]
    deploy(store, clock, tag, name="tagger", triggers=[{"type": "manual"}])
    deploy(store, clock, WAIT_THEN_TAG, name="leads", triggers=[{"type": "contact_updated", "fields": ["category"]}])
    contacts(store, clock, {"email": "a@x.example"})
    emit(store, clock, "link_clicked", "a@x.example", "https://x.example/nobody-listens")
    executor.enroll("tagger", ["a@x.example"])
    executor.run_once()
    assert where(store, "leads") == {"a@x.example": ("active", "pause")}  # triggered by tagger's own event
    events = rows(store, c.events)
    assert sorted(e.type for e in events) == ["contact_updated", "link_clicked"]
    assert all(e.processed_at is not None for e in events)  # nothing awaits link clicks: recorded, passed over
    clock.advance(timedelta(days=1))
    executor.run_once()
    assert where(store, "leads") == {"a@x.example": ("finished", "done")}
    assert where(store, "tagger") == {"a@x.example": ("finished", "done")}


def test_deleting_a_flow_deletes_its_participants_step_runs_only(
    store: Store, clock: ManualClock, executor: Executor
) -> None:
    tag = [{"id": "tag", "type": "update_contact", "updates": [{"field": "score", "action": "increase", "value": 1}]}]
    deploy(store, clock, tag, name="keep", triggers=[{"type": "manual"}])
    deploy(store, clock, tag, name="gone", triggers=[{"type": "manual"}])
    contacts(store, clock, {"email": "a@x.example"})
    executor.enroll("keep", ["a@x.example"])
    executor.enroll("gone", ["a@x.example"])
    executor.run_once()
    assert len(rows(store, c.step_runs)) == 2
    kept = people(store, "keep")["a@x.example"].id
    with store.transaction() as tx:
        tx.delete_flow("gone", clock.now(), origin="test", actor="t")
    assert [r.participant_id for r in rows(store, c.step_runs)] == [kept]


def test_step_runs_once_per_visit(store: Store, clock: ManualClock, executor: Executor) -> None:
    deploy(store, clock, WAIT_THEN_TAG)
    contacts(store, clock, *({"email": f"p{i}@x.example"} for i in range(120)))
    executor.enroll("f", [f"p{i}@x.example" for i in range(120)])
    executor.run_once()
    clock.advance(timedelta(days=1))
    stats = executor.run_once()
    assert stats.batches >= 3  # batch size 50
    runs = rows(store, c.step_runs)
    assert len(runs) == 120 * 3
    assert len({(r.participant_id, r.visit) for r in runs}) == len(runs)


@pytest.mark.parametrize("recompute", [False, True])
def test_changing_a_wait_moves_waiting_participants_only_when_asked(
    store: Store, clock: ManualClock, executor: Executor, recompute: bool
) -> None:
    deploy(store, clock, WAIT_THEN_TAG)
    contacts(store, clock, {"email": "a@x.example"})
    executor.enroll("f", ["a@x.example"])
    executor.run_once()
    clock.advance(timedelta(hours=6))
    longer = [{**WAIT_THEN_TAG[0], "duration": "3d"}, *WAIT_THEN_TAG[1:]]
    result = apply(
        store,
        [bundle_document(flow_doc("f", steps=longer, status="running", triggers=SIGNUP), {})],
        clock=clock,
        options=ApplyOptions(
            actor="t", lock_wait=timedelta(0), recompute_waits=recompute, update_policy="pause_and_resume"
        ),
    )
    (impact,) = result.applied[0].impact
    assert (impact.step, impact.participants, impact.waiting) == ("pause", 1, 1)
    entered = clock.now() - timedelta(hours=6)
    expected = entered + (timedelta(days=3) if recompute else timedelta(days=1))
    assert people(store)["a@x.example"].due_at == expected


def test_every_step_type_of_the_spec_has_a_handler() -> None:
    step_types = set(get_args(get_args(Step)[0]))
    assert set(HANDLERS) == step_types


def test_recompute_waits_counts_from_when_the_participant_entered_the_wait(
    store: Store, clock: ManualClock, executor: Executor
) -> None:
    """Entered 5d wait at 09:01; edited to 1d without --recompute-waits (due stays), then
    to 2h with it: due from entry + 2h, i.e. at once — not from the previous spec's 1d."""

    def edit(duration: str, recompute: bool) -> None:
        steps = [{**WAIT_THEN_TAG[0], "duration": duration}, *WAIT_THEN_TAG[1:]]
        options = ApplyOptions(
            actor="t", lock_wait=timedelta(0), recompute_waits=recompute, update_policy="pause_and_resume"
        )
        result = apply(
            store,
            [
                bundle_document(
                    flow_doc("f", steps=steps, triggers=SIGNUP, status="running", settings={"email": EMAIL}), {}
                )
            ],
            clock=clock,
            options=options,
        )
        assert result.applied and not result.blocked

    deploy(store, clock, [{**WAIT_THEN_TAG[0], "duration": "5d"}, *WAIT_THEN_TAG[1:]])
    contacts(store, clock, {"email": "a@x.example"})
    clock.set(datetime(2026, 1, 10, 9, 1, tzinfo=UTC))
    executor.enroll("f", ["a@x.example"])
    executor.run_once()
    entered = clock.now()
    assert people(store)["a@x.example"].due_at == entered + timedelta(days=5)
    clock.advance(timedelta(days=1))
    edit("1d", recompute=False)
    assert people(store)["a@x.example"].due_at == entered + timedelta(days=5)  # kept: not asked to
    clock.advance(timedelta(hours=2))
    edit("2h", recompute=True)
    assert people(store)["a@x.example"].due_at == entered + timedelta(hours=2)  # overdue: goes on at once
    executor.run_once()
    assert where(store)["a@x.example"] == ("finished", "done")
