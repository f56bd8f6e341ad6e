"""Bulk writes (``state.bulk``) store exactly what ``Connection.execute`` would, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select

from reconciler.state import Store
from reconciler.state import crm as c
from reconciler.state.bulk import insert_many, update_many

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
STOCKHOLM_WINTER = timezone(timedelta(hours=1))


def event_row(i: int, **overrides: Any) -> dict[str, Any]:
    return {
        "type": "form_submitted",
        "contact_email": f"p{i}@x.example",
        "subject": f"form {i}",
        "data": {"i": i, "text": "åäö ✓", "list": [1, None, {"deep": True}]},
        "source": "test",
        "idempotency_key": None,
        "occurred_at": NOW + timedelta(seconds=i),
        "processed_at": None,
    } | overrides


def stored_events(store: Store) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(select(c.events).order_by(c.events.c.id)))


def test_insert_many_matches_a_plain_insert(store: Store) -> None:
    rows = [event_row(i) for i in range(3)]
    rows[1]["occurred_at"] = datetime(2026, 1, 5, 10, 0, tzinfo=STOCKHOLM_WINTER)  # stored as 09:00 UTC
    rows[2] |= {"subject": None, "data": {}, "idempotency_key": "k2"}
    with store.transaction() as tx:
        insert_many(tx.c, c.events, rows)
        rows[2]["idempotency_key"] = "k2 again"  # it is unique
        tx.c.execute(insert(c.events), rows)  # the reference: SQLAlchemy's own executemany
    bulk, plain = stored_events(store)[:3], stored_events(store)[3:]
    columns = [col.name for col in c.events.c if col.name not in ("id", "idempotency_key")]
    assert [[getattr(r, n) for n in columns] for r in bulk] == [[getattr(r, n) for n in columns] for r in plain]
    assert bulk[1].occurred_at == datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    assert [r.idempotency_key for r in bulk] == [None, None, "k2"]
    assert bulk[0].data == {"i": 0, "text": "åäö ✓", "list": [1, None, {"deep": True}]}


def test_update_many_sets_each_row_and_the_fixed_values(store: Store) -> None:
    with store.transaction() as tx:
        insert_many(tx.c, c.events, [event_row(i) for i in range(4)])
    ids = [r.id for r in stored_events(store)]
    later = NOW + timedelta(hours=1)
    with store.transaction() as tx:
        update_many(
            tx.c,
            c.events,
            [{"id": ids[2], "subject": "two", "data": {"n": 2}}, {"id": ids[0], "subject": None, "data": {"n": 0}}],
            processed_at=later,
        )
    after = {r.id: r for r in stored_events(store)}
    assert (after[ids[0]].subject, after[ids[0]].data, after[ids[0]].processed_at) == (None, {"n": 0}, later)
    assert (after[ids[2]].subject, after[ids[2]].data, after[ids[2]].processed_at) == ("two", {"n": 2}, later)
    for untouched in (ids[1], ids[3]):
        assert after[untouched].processed_at is None and after[untouched].data["text"] == "åäö ✓"


def test_update_many_refuses_the_same_key_twice_and_writes_nothing(store: Store) -> None:
    with store.transaction() as tx:
        insert_many(tx.c, c.events, [event_row(0)])
    (row,) = stored_events(store)
    with pytest.raises(ValueError, match="the same id twice"), store.transaction() as tx:
        update_many(tx.c, c.events, [{"id": row.id, "subject": "a"}, {"id": row.id, "subject": "b"}])
    assert stored_events(store)[0].subject == "form 0"


def test_nothing_to_write_is_no_statement(store: Store) -> None:
    with store.transaction() as tx:
        insert_many(tx.c, c.events, [])
        update_many(tx.c, c.events, [], processed_at=NOW)
    assert stored_events(store) == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    subjects=st.lists(st.none() | st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"]), max_size=30)),
    data=json_values,
)
def test_any_values_round_trip(store: Store, subjects: list[str | None], data: Any) -> None:
    with store.transaction() as tx:
        tx.c.execute(c.events.delete())
        insert_many(tx.c, c.events, [event_row(i, subject=s, data={"v": data}) for i, s in enumerate(subjects)])
    stored = stored_events(store)
    assert [r.subject for r in stored] == subjects
    assert all(r.data == {"v": data} for r in stored)
