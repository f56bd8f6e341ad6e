"""The outbox dispatcher: deliver what the executor decided to send, exactly once or visibly not.

Per claim: rows a dead dispatcher left ``sending`` become ``unknown``; due ``pending``
rows are claimed (``SKIP LOCKED`` on PostgreSQL, so dispatchers never share a row),
held back by the flow's sending window and a per-flow rate limit (resuming a
long-paused flow must not burst every overdue message at once), and reserved for
this dispatcher (still ``pending``, due again only after ``reserve_for``, so a crash
strands nothing). Then ``connections`` threads (each with a kept connection of its
own, see ``SmtpTransport``) work the reserved rows one at a time:

1. render the message (a payload's templates are compiled once per dispatcher);
2. commit ``sending`` with a new attempt — in the same transaction as the outcome of
   that thread's previous message, and as whatever the other threads have to write
   at that moment (``GroupCommit``): about one transaction per message with one
   thread, fewer with several;
3. only then hand the message over, and keep its outcome for the next commit.

An outcome is ``sent``; a temporary error retries with exponential backoff and
jitter; a permanent one fails the row (and, for e-mail and SMS to the contact, the
participant, with the reason); an unknown one stays ``unknown`` for a person to look
at. A dispatcher killed after step 2 leaves its row ``sending`` — made ``unknown``
later, never resent; one killed before step 2 leaves it reserved, sent later by
someone. The next claim is prefetched while the last rows are being sent.
"""

from __future__ import annotations

import json
import random
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

from reconciler.actions.delivery import (
    DeliveryError,
    EmailMessage,
    EmailTransport,
    OutcomeUnknown,
    PermanentDeliveryError,
    SmsMessage,
    SmsTransport,
    TemporaryDeliveryError,
    TransportUnreachable,
)
from reconciler.actions.scripts import ScriptRunner
from reconciler.clock import Clock
from reconciler.compose import EmailTemplate, compose_sms, participant_context
from reconciler.executor.catalog import Catalog
from reconciler.executor.facts import company_view
from reconciler.executor.group_commit import GroupCommit
from reconciler.executor.outbox_run import DispatchPolicy, DispatchStats, Job, Outcome, Prepared, Run, Write, Written
from reconciler.messages import CONTACT_SENDS, EmailNotification, EmailSend, MessageInvalid, ScriptRun, parse_message
from reconciler.spec.models import Flow
from reconciler.state import Store
from reconciler.state.crm_store import CrmTx
from reconciler.state.outbox_store import (
    Finished,
    HeldConnection,
    blob,
    claim_pending,
    defer,
    fail_participant,
    finish_attempts,
    recover_stale,
    reserve,
    reserved_by_flow,
    revision_spec,
    sent_since,
    serialize_claims,
    start_attempts,
)
from reconciler.state.records import OutboxRow
from reconciler.state.store import Tx
from reconciler.timing import flow_zone, window_opens

__all__ = ["DispatchPolicy", "DispatchStats", "Dispatcher", "Transports"]


@dataclass
class Transports:
    email: EmailTransport
    sms: SmsTransport
    scripts: ScriptRunner

    def close(self) -> None:
        self.email.close()
        self.sms.close()
        self.scripts.close()


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
        self.jitter = jitter or random.Random().random  # called only inside a commit: one thread at a time
        # compiled payloads (or why they do not compile), by flow, revision and payload without "to"
        self._templates: dict[str, EmailTemplate | PermanentDeliveryError] = {}
        # (flow, revision) → its spec and files; a revision never changes, numbers are never reused
        self._flows: dict[tuple[str, int], tuple[Flow, dict[str, str]] | None] = {}

    def run_once(self, stop: threading.Event | None = None) -> DispatchStats:
        """Send everything due now; return what happened. Once ``stop`` is set nothing more
        is claimed (the rows reserved already are sent). A database error stops every
        thread (an outcome not written yet leaves its row ``sending``: ``unknown`` later)
        and is raised here."""
        run = Run(self.policy.connections, stop)
        connection = HeldConnection(self.store)
        ledger: GroupCommit[Write, Written] = GroupCommit(
            connection.transaction, lambda tx, ws: self._apply(tx, ws, run)
        )
        try:
            if self.policy.connections == 1:
                self._work(run, ledger)
            else:
                threads = [
                    threading.Thread(target=self._work, args=(run, ledger), name=f"dispatch-{i}", daemon=True)
                    for i in range(self.policy.connections)
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
        finally:
            connection.close()
        if run.error is not None:
            raise run.error
        run.stats.transactions = ledger.transactions
        return run.stats

    # --- one sending thread ----------------------------------------------------------------------

    def _work(self, run: Run, ledger: GroupCommit[Write, Written]) -> None:
        outcomes: tuple[Outcome, ...] = ()  # handed over, not written yet
        try:
            while True:
                job, claim = run.next()
                if job is None and not claim:
                    break
                prepared: Prepared | None = None
                unrenderable = None
                if job is not None:
                    try:
                        prepared = self._prepare(job)
                    except PermanentDeliveryError as exc:
                        unrenderable = exc
                write = Write(outcomes, job, unrenderable, claim)
                written = ledger.write(write)  # "sending" is committed before the provider sees anything
                done = outcomes + (
                    (self._failed(job, unrenderable),) if job and unrenderable and written.started else ()
                )
                run.written(done, written, claim)
                outcomes = ()
                if job is not None and prepared is not None and written.started:
                    outcomes = (self._hand_over(job, prepared),)
            if outcomes:
                run.written(outcomes, ledger.write(Write(outcomes)), False)
        except BaseException as exc:
            run.fail(exc)

    def _failed(self, job: Job, error: PermanentDeliveryError) -> Outcome:
        return Outcome(job.row, "failed", error.detail, handed_over=False)

    def _prepare(self, job: Job) -> Prepared:
        """The message, rendered (no I/O); ``PermanentDeliveryError`` when it cannot be."""
        row, flow, contact = job.row, job.flow, job.contact
        if flow is None:
            raise PermanentDeliveryError(f"revision {row.revision} of flow {row.flow_name!r} is gone")
        if contact is None:
            raise PermanentDeliveryError(f"contact {row.contact_email} no longer exists")
        try:
            message = parse_message(row.kind, row.payload)
        except MessageInvalid as exc:
            raise PermanentDeliveryError(str(exc)) from None
        if isinstance(message, ScriptRun):
            return message.script
        if isinstance(message, EmailSend | EmailNotification):
            if isinstance(job.template, PermanentDeliveryError):
                raise PermanentDeliveryError(job.template.detail)
            assert job.template is not None
            return job.template.render(
                to=message.to,
                contact=contact,
                flow=flow,
                associates=job.associates,
                message_id=_message_id(row),
                unsubscribe_url=self._unsubscribe(flow, row),
                company=job.company,
            )
        settings = flow.spec.settings.sms
        sender = message.sender or (settings.sender if settings else None)
        if not sender:
            raise PermanentDeliveryError("no SMS sender: set it on the step or in settings.sms.sender")
        return compose_sms(
            to=message.to,
            template=message.text,
            context=participant_context(flow=flow, contact=contact, company=job.company),
            sender=str(sender),
            reference=row.idempotency_key,
            default_region=settings.default_region if settings else None,
        )

    def _hand_over(self, job: Job, prepared: Prepared) -> Outcome:
        row = job.row
        try:
            if isinstance(prepared, EmailMessage):
                receipt = self.transports.email.send(prepared)
            elif isinstance(prepared, SmsMessage):
                receipt = self.transports.sms.send(prepared)
            else:
                receipt = self.transports.scripts.run(prepared, job.contact or {})
        except OutcomeUnknown as exc:
            return Outcome(row, "unknown", exc.detail)
        except TemporaryDeliveryError as exc:
            attempt = row.attempts + 1
            unreachable = isinstance(exc, TransportUnreachable)
            if attempt >= self.policy.max_attempts:
                return Outcome(
                    row, "failed", f"gave up after {attempt} attempts: {exc.detail}", unreachable=unreachable
                )
            return Outcome(row, "retried", exc.detail, retry_after=exc.retry_after, unreachable=unreachable)
        except DeliveryError as exc:
            return Outcome(row, "failed", exc.detail)
        return Outcome(row, "sent", receipt.detail, provider_id=receipt.provider_id)

    # --- the database: one thread at a time, inside GroupCommit ------------------------------------

    def _apply(self, tx: Tx, writes: Sequence[Write], run: Run) -> list[Written]:
        """All writes of a group, as few statements as they allow: outcomes, then the
        ``sending`` of the next rows (failed at once if unrenderable), then a claim."""
        now = self.clock.now()
        outcomes = [o for w in writes for o in w.outcomes]
        starting = [(w.start.row, w.start.reserved_until) for w in writes if w.start is not None]
        taken = start_attempts(tx, starting, now) if starting else set()
        outcomes += [
            self._failed(w.start, w.unrenderable)
            for w in writes
            if w.start is not None and w.unrenderable is not None and w.start.row.id in taken
        ]
        self._record(tx, outcomes, now)
        results = []
        for write in writes:
            started = write.start is not None and write.start.row.id in taken
            if write.claim:
                recovered, deferred, jobs = self._claim(tx, now)
                results.append(Written(started, tuple(jobs), recovered, deferred))
            else:
                results.append(Written(started))
        return results

    def _record(self, tx: Tx, outcomes: Sequence[Outcome], now: datetime) -> None:
        finished = []
        for outcome in outcomes:
            row, detail = outcome.row, (outcome.detail or "")[:2000] or None
            if outcome.counted == "retried":
                delay = self.policy.backoff(row.attempts + 1, self.jitter())
                if outcome.retry_after is not None and timedelta(seconds=outcome.retry_after) > delay:
                    delay = timedelta(seconds=outcome.retry_after)
                finished.append(Finished(row, "pending", "retry", detail, next_attempt_at=now + delay))
            else:
                finished.append(Finished(row, outcome.counted, outcome.counted, detail, None, outcome.provider_id))
            if outcome.counted == "failed" and row.kind in CONTACT_SENDS and row.participant_id is not None:
                fail_participant(tx, row.participant_id, f"{row.step_id}: {detail}", now)
        finish_attempts(tx, finished, now)

    def _claim(self, tx: Tx, now: datetime) -> tuple[int, int, list[Job]]:
        """(rows made unknown, rows deferred, jobs): due rows claimed and reserved for this
        run. A batch held back whole (window, rate) does not end the round: the next is read."""
        serialize_claims(tx)
        recovered = recover_stale(tx, now - self.policy.stale_after, now)
        deferred = 0
        catalog: Catalog | None = None
        while rows := claim_pending(tx, now, self.policy.batch_size):
            catalog = catalog or Catalog(tx.flows())
            # The rate limit counts the attempts started in the last minute and the rows any
            # dispatcher has reserved but not started yet (this one's too: same transaction).
            budget = Counter(dict.fromkeys({r.flow_name for r in rows}, self.policy.rate_per_minute))
            budget.subtract(sent_since(tx, now - timedelta(minutes=1), budget))
            budget.subtract(reserved_by_flow(tx, now))
            chosen: list[OutboxRow] = []
            held: dict[datetime, list[int]] = {}
            for row in rows:
                flow = catalog.flow(row.flow_name)
                opens = window_opens(flow.spec.settings.sending_window, now, flow_zone(flow)) if flow else None
                if opens is not None and row.kind in CONTACT_SENDS:
                    held.setdefault(opens, []).append(row.id)
                elif budget[row.flow_name] <= 0:
                    held.setdefault(now + timedelta(minutes=1), []).append(row.id)
                else:
                    budget[row.flow_name] -= 1
                    chosen.append(row)
            for until, ids in held.items():
                defer(tx, ids, until, now)
                deferred += len(ids)
            if chosen:
                reserved_until = now + self.policy.reserve_for
                reserve(tx, chosen, reserved_until, now)
                return recovered, deferred, self._jobs(tx, chosen, reserved_until)
        return recovered, deferred, []

    def _jobs(self, tx: Tx, rows: list[OutboxRow], reserved_until: datetime) -> list[Job]:
        crm = CrmTx(tx)
        contacts = crm.contacts_by_email(r.contact_email for r in rows)
        companies = crm.companies_by_name(c.get("company") for c in contacts.values())
        associates = {a.name: a for a in crm.associates()}
        jobs = []
        for row in rows:
            key = (row.flow_name, row.revision)
            if key not in self._flows:
                if len(self._flows) >= 1024:
                    self._flows.clear()
                found = revision_spec(tx, *key)
                self._flows[key] = (Flow.model_validate(found[0]), found[1]) if found else None
            spec = self._flows[key]
            contact = contacts.get(row.contact_email)
            job = Job(row, reserved_until, spec[0] if spec else None, contact.as_template_data() if contact else None)
            if contact is not None:
                name = contact.get("company")
                job.company = company_view(name, companies.get(name or ""))
            if row.kind in ("send_email", "notify_email") and spec is not None:
                job.associates = associates
                job.template = self._template(tx, row, spec[1])
            jobs.append(job)
        return jobs

    def _template(self, tx: Tx, row: OutboxRow, files: Mapping[str, str]) -> EmailTemplate | PermanentDeliveryError:
        """The row's message compiled, once per dispatcher; its content files read only then."""
        try:
            message = _email_message(row)
        except MessageInvalid as exc:
            return PermanentDeliveryError(str(exc))
        payload = {k: v for k, v in row.payload.items() if k != "to"}
        key = json.dumps([row.flow_name, row.revision, payload], sort_keys=True, default=str)
        found = self._templates.get(key)
        if found is not None:
            return found
        names = [message.content, message.text_content, *message.attachments] if isinstance(message, EmailSend) else []
        content = {}
        for name in (n for n in names if n):
            digest = files.get(name)
            data = blob(tx, digest) if digest else None
            if data is not None:
                content[name] = data
        template: EmailTemplate | PermanentDeliveryError
        try:
            template = EmailTemplate.compile(message, content)
        except PermanentDeliveryError as exc:
            template = exc  # the same for every row of this message
        if len(self._templates) >= 256:
            self._templates.clear()
        self._templates[key] = template
        return template

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


def _email_message(row: OutboxRow) -> EmailSend | EmailNotification:
    """The row's e-mail (a notification is a plain message to a colleague, rendered like
    an e-mail without content files); ``MessageInvalid`` when the payload does not fit."""
    message = parse_message(row.kind, row.payload)
    if not isinstance(message, EmailSend | EmailNotification):
        raise MessageInvalid(f"a {row.kind} row is not an e-mail")
    return message


def _message_id(row: OutboxRow) -> str:
    return f"<{re.sub(r'[^A-Za-z0-9.-]', '.', row.idempotency_key)}@reconciler.invalid>"
