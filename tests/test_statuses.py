"""The one status vocabulary: contract values, plain strings in the database and in JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.exc import StatementError

from reconciler.spec.models import FlowStatus as SpecFlowStatus
from reconciler.state import Store
from reconciler.state import tables as t
from reconciler.state.records import ACTIVE, IN_FLOW, PARTICIPANT_STATUSES, QUEUED
from reconciler.statuses import FlowStatus, ParticipantStatus

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def test_the_values_are_those_of_the_contract() -> None:
    assert [s.value for s in FlowStatus] == ["not_running", "running", "paused"]
    assert [s.value for s in ParticipantStatus] == [
        "queued",
        "active",
        "finished",
        "finished_with_success",
        "dropped_out",
        "cancelled",
        "failed",
    ]
    assert SpecFlowStatus is FlowStatus
    assert tuple(ParticipantStatus) == PARTICIPANT_STATUSES
    assert (QUEUED, ACTIVE) == IN_FLOW == ("queued", "active")


def test_members_are_plain_strings_in_json() -> None:
    assert json.dumps({ParticipantStatus.ACTIVE: FlowStatus.RUNNING}) == '{"active": "running"}'


def test_the_database_stores_plain_strings_and_hands_back_members(store: Store) -> None:
    with store.transaction() as tx:
        tx.create_flow("f", FlowStatus.PAUSED, spec={}, files={}, content_hash="h", now=NOW)
        tx.add_participant("f", "a@x.example", status=ParticipantStatus.QUEUED, step_id=None, now=NOW)
        raw = tx.c.exec_driver_sql("SELECT status FROM flows").scalar_one()
    assert type(raw) is str and raw == "paused"
    record = store.flow("f")
    assert record is not None and record.status is FlowStatus.PAUSED
    [participant] = store.participants("f")
    assert participant.status is ParticipantStatus.QUEUED
    assert store.occupancy()["f"].by_status == {ParticipantStatus.QUEUED: 1}


def test_an_unknown_status_never_reaches_the_database(store: Store) -> None:
    with pytest.raises(StatementError, match="'stopped' is not a valid FlowStatus"), store.transaction() as tx:
        tx.c.execute(select(t.flows.c.id).where(t.flows.c.status == "stopped"))
