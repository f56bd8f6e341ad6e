"""Built-in CRM data: contacts, companies, associates and their diaries, selections,
projects, follow-ups, requests, sales — plus the event log and the outbox.

Enough of a CRM for flows to run against without a vendor: triggers read the event
log, steps change these tables in the same transaction that moves a participant, and
sends wait in the outbox until a dispatcher delivers them.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from reconciler.state.tables import When, metadata

companies = Table(
    "companies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("category", String(100)),
    Column("business", String(100)),
    Column("country", String(100)),
    Column("city", String(100)),
    Column("domain", String(200)),
    Column("employees", Integer),
    Column("custom", JSON, nullable=False),
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False, unique=True),  # the identity, lower-cased
    Column("first_name", String(200)),
    Column("last_name", String(200)),
    Column("title", String(200)),
    Column("mobile", String(40)),
    Column("phone", String(40)),
    Column("company", String(200)),
    Column("category", String(100)),
    Column("business", String(100)),
    Column("country", String(100)),
    Column("city", String(100)),
    Column("language", String(20)),
    Column("interests", JSON, nullable=False),
    Column("subscriptions", JSON, nullable=False),
    Column("consent_marketing", Boolean, nullable=False),
    Column("blocked", Boolean, nullable=False),
    Column("retired", Boolean, nullable=False),
    Column("birth_date", Date),
    Column("score", Float),
    Column("our_contact", String(200)),
    Column("our_support_manager", String(200)),
    Column("custom", JSON, nullable=False),
    Column("created_at", When(), nullable=False),
    Column("updated_at", When(), nullable=False),
)

associates = Table(
    "associates",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("email", String(320)),
    Column("mobile", String(40)),
    Column("group_name", String(100)),
    Column("active", Boolean, nullable=False),
)

appointments = Table(
    "appointments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("associate_id", Integer, ForeignKey("associates.id", ondelete="CASCADE"), nullable=False),
    Column("starts_at", When(), nullable=False),
    Column("ends_at", When(), nullable=False),
    Column("title", String(300), nullable=False),
    Column("contact_id", Integer, ForeignKey("contacts.id", ondelete="SET NULL")),
    Index("ix_appointments_associate_starts", "associate_id", "starts_at"),
)

selections = Table(
    "selections",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", When(), nullable=False),
)

selection_members = Table(
    "selection_members",
    metadata,
    Column("selection_id", Integer, ForeignKey("selections.id", ondelete="CASCADE"), primary_key=True),
    Column("contact_id", Integer, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    Column("added_at", When(), nullable=False),
    Index("ix_selection_members_contact", "contact_id"),
)

projects = Table(
    "projects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", When(), nullable=False),
)

project_members = Table(
    "project_members",
    metadata,
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
    Column("contact_id", Integer, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    Column("added_at", When(), nullable=False),
    Index("ix_project_members_contact", "contact_id"),
)

follow_ups = Table(
    "follow_ups",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("contact_id", Integer, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("associate", String(200)),
    Column("title", String(500), nullable=False),
    Column("follow_up_type", String(100), nullable=False),
    Column("project", String(200)),
    Column("due_at", When()),
    Column("starts_at", When()),
    Column("ends_at", When()),
    Column("agenda", Text),
    Column("flow_name", String(63)),
    Column("created_at", When(), nullable=False),
)

requests = Table(
    "requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("contact_id", Integer, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("title", String(500), nullable=False),
    Column("request_type", String(100), nullable=False),
    Column("status", String(50), nullable=False),
    Column("category", String(100)),
    Column("priority", String(50)),
    Column("owner", String(200)),
    Column("message", Text),
    Column("flow_name", String(63)),
    Column("created_at", When(), nullable=False),
)

sales = Table(
    "sales",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("contact_id", Integer, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("title", String(500), nullable=False),
    Column("sale_type", String(100), nullable=False),
    Column("stage", String(100)),
    Column("amount", Numeric(17, 2)),
    Column("currency", String(3)),
    Column("description", Text),
    Column("project", String(200)),
    Column("expected_at", When()),
    Column("owner", String(200)),
    Column("status", String(20), nullable=False),  # open | sold | lost
    Column("flow_name", String(63)),
    Column("created_at", When(), nullable=False),
)

# Everything that can trigger a flow, satisfy a success criterion or end a wait.
# Processed once, in id order (so in order per contact).
events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("type", String(40), nullable=False),
    Column("contact_email", String(320), nullable=False),
    Column("subject", String(300)),  # the form, link, selection or project named by the event
    Column("data", JSON, nullable=False),
    Column("source", String(40), nullable=False),  # emit | ingest | flow:<name> | import | crm
    Column("idempotency_key", String(200), unique=True),
    Column("occurred_at", When(), nullable=False),
    Column("processed_at", When()),
    # Only the backlog is indexed: most events are stored processed (migration 0007).
    Index(
        "ix_events_unprocessed",
        "id",
        sqlite_where=text("processed_at IS NULL"),
        postgresql_where=text("processed_at IS NULL"),
    ),
    Index("ix_events_contact_type", "contact_email", "type"),
)

# Sends the executor decided on, waiting for the dispatcher (issue "Outbound actions").
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(200), nullable=False, unique=True),  # participant:revision:step:visit
    Column("participant_id", Integer, ForeignKey("participants.id", ondelete="SET NULL")),
    Column("flow_name", String(63), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("step_id", String(63), nullable=False),
    Column("kind", String(20), nullable=False),  # send_email | send_sms | notify_email | notify_sms | run_script
    Column("contact_email", String(320), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("state", String(12), nullable=False),  # pending | sending | sent | failed | unknown
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", When(), nullable=False),
    Column("last_error", Text),
    Column("created_at", When(), nullable=False),
    Column("updated_at", When(), nullable=False),
    # Set while a dispatcher holds the row (still pending) to send it: every dispatcher
    # counts such rows against a flow's rate limit, not only its own (migration 0008).
    Column("reserved_until", When()),
    Index("ix_outbox_state_next_id", "state", "next_attempt_at", "id"),
    Index(
        "ix_outbox_reserved",
        "reserved_until",
        "flow_name",
        sqlite_where=text("reserved_until IS NOT NULL"),
        postgresql_where=text("reserved_until IS NOT NULL"),
    ),
)

# Every delivery attempt of an outbox row, with what the provider said.
outbox_attempts = Table(
    "outbox_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("outbox_id", Integer, ForeignKey("outbox.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("started_at", When(), nullable=False),
    Column("finished_at", When()),
    Column("outcome", String(12), nullable=False),  # sending | sent | retry | failed | unknown
    Column("detail", Text),
    Column("provider_id", String(200)),
    # The row's flow, copied: the rate limit counts a flow's attempts of the last minute
    # from this index alone, without a join to the outbox (migration 0009).
    Column("flow_name", String(63), nullable=False),
    Index("ix_outbox_attempts_flow_started", "flow_name", "started_at"),
)

# One row per step a participant ran: the proof that each step ran once per visit.
step_runs = Table(
    "step_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # No foreign key: the batch that writes a run holds its participant locked, and the
    # per-row check cost a quarter of the executor's time on PostgreSQL (migration 0005).
    # Deleting a flow deletes its participants' runs (Store.delete_flow).
    Column("participant_id", Integer, nullable=False),
    Column("visit", Integer, nullable=False),
    Column("step_id", String(63), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("outcome", String(200), nullable=False),
    Column("at", When(), nullable=False),
    UniqueConstraint("participant_id", "visit", name="uq_step_runs_participant_visit"),
)

__all__ = [
    "appointments",
    "associates",
    "companies",
    "contacts",
    "events",
    "follow_ups",
    "outbox",
    "project_members",
    "projects",
    "requests",
    "sales",
    "selection_members",
    "selections",
    "step_runs",
]
