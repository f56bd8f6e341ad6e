"""The outbox dispatcher: deliver what the executor decided to send, exactly once or visibly not.

Per round: rows a dead dispatcher left ``sending`` become ``unknown``; due ``pending``
rows are claimed (``SKIP LOCKED`` on PostgreSQL, so dispatchers never share a row),
held back by the flow's sending window and a per-flow rate limit (resuming a
long-paused flow must not burst every overdue message at once), marked ``sending``
and committed; only then is each one rendered and handed to its transport. The
outcome is written with its attempt: ``sent``; a temporary error retries with
exponential backoff and jitter; a permanent one fails the row (and, for e-mail and
SMS to the contact, the participant, with the reason); an unknown one stays
``unknown`` for a person to look at.
"""

from __future__ import annotations

import importlib
import random
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from reconciler.actions.delivery import (
    EmailTransport,
    OutcomeUnknown,
    PermanentDeliveryError,
    Receipt,
    SmsTransport,
    TemporaryDeliveryError,
)
from reconciler.actions.email import render_email
from reconciler.actions.sms_text import compose_sms
from reconciler.clock import Clock
from reconciler.config import ScriptRegistration
from reconciler.executor.catalog import Catalog
from reconciler.spec.models import Flow
from reconciler.state import Store
from reconciler.state.crm_store import AssociateRecord, CrmTx
from reconciler.state.outbox_store import (
    OutboxRow,
    blob,
    claim_pending,
    defer,
    fail_participant,
    finish_attempt,
    recover_stale,
    reserve,
    revision_spec,
    sent_since,
    start_attempt,
)
from reconciler.timing import flow_zone, window_opens

CONTACT_SENDS = frozenset({"send_email", "send_sms"})


@dataclass(frozen=True)
class DispatchPolicy:
    batch_size: int = 100
    max_attempts: int = 8
    base_delay: timedelta = timedelta(seconds=30)
    max_delay: timedelta = timedelta(hours=4)
    rate_per_minute: int = 600  # per flow
    stale_after: timedelta = timedelta(minutes=10)
    reserve_for: timedelta = timedelta(minutes=5)  # a claimed batch is ours this long; then due again
    script_timeout: float = 30.0
    unsubscribe_url: str | None = None  # with {email}; default: a mailto: to the reply-to address

    def backoff(self, attempt: int, jitter: float) -> timedelta:
        """Exponential, capped, with full jitter in [0.5, 1.5) so retries spread out."""
        delay = min(self.max_delay, self.base_delay * (1 << max(attempt - 1, 0)))
        return delay * (0.5 + jitter)


@dataclass
class DispatchStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    unknown: int = 0
    deferred: int = 0
    recovered: int = 0


class ScriptRunner:
    """Runs operator-registered scripts with a timeout. Fire-and-forget for the flow:
    the participant moved on already; the outcome is recorded on the outbox row."""

    def __init__(self, registrations: Mapping[str, ScriptRegistration], timeout: float) -> None:
        self.registrations, self.timeout = registrations, timeout
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="script")

    def run(self, name: str, contact: dict[str, Any]) -> Receipt:
        registration = self.registrations.get(name)
        if registration is None:
            raise PermanentDeliveryError(f"script {name!r} is not registered here")
        module_name, _, attribute = registration.target.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
            for part in attribute.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as exc:
            raise PermanentDeliveryError(f"script {name!r}: cannot load {registration.target}: {exc}") from None
        future = self._pool.submit(target, contact)
        try:
            result = future.result(timeout=self.timeout)
        except FutureTimeout:
            raise PermanentDeliveryError(f"script {name!r} did not finish within {self.timeout:g} s") from None
        except Exception as exc:
            raise PermanentDeliveryError(f"script {name!r} raised {type(exc).__name__}: {exc}") from None
        return Receipt(detail=repr(result)[:500])

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class Transports:
    email: EmailTransport
    sms: SmsTransport
    scripts: ScriptRunner

    def close(self) -> None:
        self.email.close()
        self.sms.close()
        self.scripts.close()


@dataclass
class _Job:
    """A claimed row and everything needed to send it, read in the claiming transaction."""

    row: OutboxRow
    reserved_until: datetime
    flow: Flow | None
    contact: dict[str, Any] | None
    files: dict[str, bytes] = field(default_factory=dict)
    associates: dict[str, AssociateRecord] = field(default_factory=dict)


class Dispatcher:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        transports: Transports,
        policy: DispatchPolicy | None = None,
        *,
        jitter: Callable[[], float] | None = None,
    ) -> None:
        self.store, self.clock, self.transports = store, clock, transports
        self.policy = policy or DispatchPolicy()
        self.jitter = jitter or random.Random().random

    def run_once(self) -> DispatchStats:
        stats = DispatchStats()
        while True:
            jobs = self._claim(stats)
            if not jobs:
                return stats
            for job in jobs:
                self._deliver(job, stats)

    # --- claiming: one transaction, committed before anything is sent --------------------------

    def _claim(self, stats: DispatchStats) -> list[_Job]:
        with self.store.transaction() as tx:
            now = self.clock.now()
            stats.recovered += recover_stale(tx, now - self.policy.stale_after, now)
            rows = claim_pending(tx, now, self.policy.batch_size)
            if not rows:
                return []
            catalog = Catalog(tx.flows())
            budget = {
                name: self.policy.rate_per_minute - n for name, n in sent_since(tx, now - timedelta(minutes=1)).items()
            }
            chosen: list[OutboxRow] = []
            for row in rows:
                flow = catalog.flow(row.flow_name)
                opens = window_opens(flow.spec.settings.sending_window, now, flow_zone(flow)) if flow else None
                if opens is not None and row.kind in CONTACT_SENDS:
                    defer(tx, [row.id], opens, now)
                    stats.deferred += 1
                elif budget.setdefault(row.flow_name, self.policy.rate_per_minute) <= 0:
                    defer(tx, [row.id], now + timedelta(minutes=1), now)
                    stats.deferred += 1
                else:
                    budget[row.flow_name] -= 1
                    chosen.append(row)
            reserved_until = now + self.policy.reserve_for
            reserve(tx, chosen, reserved_until, now)
            return self._prepare(tx, chosen, reserved_until)

    def _prepare(self, tx: Any, rows: list[OutboxRow], reserved_until: datetime) -> list[_Job]:
        crm = CrmTx(tx)
        contacts = crm.contacts_by_email(r.contact_email for r in rows)
        associates = {a.name: a for a in crm.associates()}
        specs: dict[tuple[str, int], tuple[Flow, dict[str, str]] | None] = {}
        jobs = []
        for row in rows:
            key = (row.flow_name, row.revision)
            if key not in specs:
                found = revision_spec(tx, *key)
                specs[key] = (Flow.model_validate(found[0]), found[1]) if found else None
            spec = specs[key]
            contact = contacts.get(row.contact_email)
            job = _Job(
                row,
                reserved_until,
                spec[0] if spec else None,
                contact.as_template_data() if contact else None,
                associates=associates,
            )
            if row.kind == "send_email" and spec is not None:
                names = [
                    row.payload.get("content"),
                    row.payload.get("text_content"),
                    *row.payload.get("attachments", []),
                ]
                for name in (n for n in names if n):
                    digest = spec[1].get(name)
                    data = blob(tx, digest) if digest else None
                    if data is not None:
                        job.files[name] = data
            jobs.append(job)
        return jobs

    # --- delivering: outside any transaction ----------------------------------------------------

    def _deliver(self, job: _Job, stats: DispatchStats) -> None:
        row = job.row
        with self.store.transaction() as tx:  # "sending" is committed before the provider sees anything
            if not start_attempt(tx, row, job.reserved_until, self.clock.now()):
                return
        try:
            receipt = self._send(job)
        except OutcomeUnknown as exc:
            self._finish(row, state="unknown", outcome="unknown", detail=exc.detail)
            stats.unknown += 1
        except TemporaryDeliveryError as exc:
            attempt = row.attempts + 1
            if attempt >= self.policy.max_attempts:
                self._finish(
                    row,
                    state="failed",
                    outcome="failed",
                    detail=f"gave up after {attempt} attempts: {exc.detail}",
                    fail_participant_too=True,
                )
                stats.failed += 1
                return
            delay = self.policy.backoff(attempt, self.jitter())
            if exc.retry_after is not None and timedelta(seconds=exc.retry_after) > delay:
                delay = timedelta(seconds=exc.retry_after)
            self._finish(
                row, state="pending", outcome="retry", detail=exc.detail, next_attempt_at=self.clock.now() + delay
            )
            stats.retried += 1
        except PermanentDeliveryError as exc:
            self._finish(row, state="failed", outcome="failed", detail=exc.detail, fail_participant_too=True)
            stats.failed += 1
        else:
            self._finish(row, state="sent", outcome="sent", detail=receipt.detail, provider_id=receipt.provider_id)
            stats.sent += 1

    def _send(self, job: _Job) -> Receipt:
        row, flow, contact = job.row, job.flow, job.contact
        if flow is None:
            raise PermanentDeliveryError(f"revision {row.revision} of flow {row.flow_name!r} is gone")
        if contact is None:
            raise PermanentDeliveryError(f"contact {row.contact_email} no longer exists")
        payload = row.payload
        if row.kind == "run_script":
            return self.transports.scripts.run(str(payload["script"]), contact)
        if row.kind in ("send_email", "notify_email"):
            email = render_email(
                payload=self._email_payload(row),
                contact=contact,
                flow=flow,
                files=job.files,
                associates=job.associates,
                message_id=_message_id(row),
                unsubscribe_url=self._unsubscribe(flow, row),
            )
            return self.transports.email.send(email)
        data = {
            "contact": contact,
            "flow": {"name": flow.name, "description": flow.metadata.description, "owner": flow.spec.owner},
        }
        settings = flow.spec.settings.sms
        sender = payload.get("sender") or (settings.sender if settings else None)
        if not sender:
            raise PermanentDeliveryError("no SMS sender: set it on the step or in settings.sms.sender")
        sms = compose_sms(
            to=str(payload["to"]),
            template=str(payload["text"]),
            data=data,
            sender=str(sender),
            reference=row.idempotency_key,
            default_region=settings.default_region if settings else None,
        )
        return self.transports.sms.send(sms)

    def _email_payload(self, row: OutboxRow) -> dict[str, Any]:
        if row.kind == "send_email":
            return dict(row.payload)
        # A notification: a plain message to a colleague, rendered like an e-mail without content files.
        return {
            "to": row.payload["to"],
            "subject": row.payload["subject"],
            "html": None,
            "text": row.payload["message"],
            "notification": True,
        }

    def _unsubscribe(self, flow: Flow, row: OutboxRow) -> str:
        if self.policy.unsubscribe_url:
            return self.policy.unsubscribe_url.replace("{email}", quote(row.contact_email))
        settings = flow.spec.settings.email
        address = None
        if settings and settings.reply_to and settings.reply_to.address:
            address = settings.reply_to.address
        elif settings and settings.sender and settings.sender.address:
            address = settings.sender.address
        return f"mailto:{address or 'unsubscribe@invalid'}?subject=unsubscribe%20{quote(row.contact_email)}"

    def _finish(
        self,
        row: OutboxRow,
        *,
        state: str,
        outcome: str,
        detail: str | None,
        next_attempt_at: datetime | None = None,
        provider_id: str | None = None,
        fail_participant_too: bool = False,
    ) -> None:
        with self.store.transaction() as tx:
            now = self.clock.now()
            finish_attempt(
                tx,
                row,
                state=state,
                outcome=outcome,
                now=now,
                next_attempt_at=next_attempt_at,
                detail=(detail or "")[:2000] or None,
                provider_id=provider_id,
            )
            if fail_participant_too and row.kind in CONTACT_SENDS and row.participant_id is not None:
                fail_participant(tx, row.participant_id, f"{row.step_id}: {detail}", now)


def _message_id(row: OutboxRow) -> str:
    return f"<{re.sub(r'[^A-Za-z0-9.-]', '.', row.idempotency_key)}@reconciler.invalid>"
