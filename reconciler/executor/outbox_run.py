"""One run of the outbox dispatcher: its policy, the rows it reserved, and what its threads write.

``Run`` hands the reserved rows to the sending threads one at a time and says which
thread claims the next batch (when few are left: the claim is prefetched while the
last rows are sent). A thread's ``Write`` is what it commits at once: the outcome of
its last message, the ``sending`` of its next, maybe a claim; ``GroupCommit`` puts
the writes of threads that arrive together into one transaction.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from reconciler.actions.delivery import EmailMessage, PermanentDeliveryError, SmsMessage
from reconciler.compose import EmailTemplate
from reconciler.spec.models import Flow
from reconciler.state.crm_store import AssociateRecord
from reconciler.state.records import OutboxRow


@dataclass(frozen=True)
class DispatchPolicy:
    batch_size: int = 100
    max_attempts: int = 8
    base_delay: timedelta = timedelta(seconds=30)
    max_delay: timedelta = timedelta(hours=4)
    rate_per_minute: int = 600  # per flow
    # Messages handed over at once, each by a thread with a connection of its own. 16: the
    # threads' commits group better (0.2 transactions per message instead of 0.6 with 4), and
    # it stays below what MTAs expect of one client (Postfix itself opens up to 20 per
    # destination). Lower it (--connections) for a relay that allows fewer.
    connections: int = 16
    stale_after: timedelta = timedelta(minutes=10)
    reserve_for: timedelta = timedelta(minutes=5)  # a claimed batch is ours this long; then due again
    script_timeout: float = 30.0
    unsubscribe_url: str | None = None  # with {email}; default: a mailto: to the reply-to address

    def __post_init__(self) -> None:
        if self.connections < 1 or self.batch_size < 1:
            raise ValueError("connections and batch_size must be at least 1")

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
    transactions: int = 0  # committed by the run (claims, sending and outcomes, grouped)
    # why: (outcome, detail) → messages; "deferred" rows were held back by a sending window or the rate
    reasons: Counter[tuple[str, str]] = field(default_factory=Counter)
    unreachable: dict[str, str] = field(default_factory=dict)  # transport → the last "cannot connect"
    reached: set[str] = field(default_factory=set)  # transports that answered at least once

    def count(self, outcome: Outcome) -> None:
        """Add one message's outcome: its count, its reason, and whether its transport answered."""
        setattr(self, outcome.counted, getattr(self, outcome.counted) + 1)
        if outcome.counted != "sent":
            self.reasons[(outcome.counted, outcome.detail or "no reason given")] += 1
        transport = TRANSPORTS.get(outcome.row.kind, outcome.row.kind)
        if outcome.unreachable:
            self.unreachable[transport] = outcome.detail or "unreachable"
        elif outcome.counted != "failed" or outcome.handed_over:
            self.reached.add(transport)


@dataclass
class Job:
    """A claimed row and everything needed to send it, read in the claiming transaction."""

    row: OutboxRow
    reserved_until: datetime
    flow: Flow | None
    contact: dict[str, Any] | None
    template: EmailTemplate | PermanentDeliveryError | None = None  # e-mail rows: compiled, or why not
    associates: dict[str, AssociateRecord] = field(default_factory=dict)
    company: dict[str, Any] | None = None  # the contact's company as merge fields see it


Counted = Literal["sent", "retried", "failed", "unknown"]
# the transport an outbox kind goes through, as the run's summary names it
TRANSPORTS = {
    "send_email": "e-mail",
    "notify_email": "e-mail",
    "send_sms": "SMS",
    "notify_sms": "SMS",
    "run_script": "scripts",
}
WINDOW_OR_RATE = "held back by the flow's sending window or rate limit"


@dataclass(frozen=True)
class Outcome:
    """What became of one attempt; written with the thread's next commit."""

    row: OutboxRow
    counted: Counted
    detail: str | None
    provider_id: str | None = None
    retry_after: float | None = None  # retried: the provider's hint, in seconds
    unreachable: bool = False  # no connection to the transport at all
    handed_over: bool = True  # False: failed before any transport saw it (could not be rendered)


@dataclass(frozen=True)
class Write:
    """One thread's commit: earlier outcomes, then (optionally) ``sending`` for its next
    row — failed at once when it could not be rendered — then (optionally) a claim."""

    outcomes: tuple[Outcome, ...] = ()
    start: Job | None = None
    unrenderable: PermanentDeliveryError | None = None
    claim: bool = False


@dataclass(frozen=True)
class Written:
    started: bool = False
    jobs: tuple[Job, ...] = ()
    recovered: int = 0
    deferred: int = 0


Prepared = EmailMessage | SmsMessage | str  # a script's name


class Run:
    """One ``run_once``: the reserved rows waiting for a thread, shared by the threads."""

    def __init__(self, low_water: int, stop: threading.Event | None) -> None:
        self.low_water, self.stop = low_water, stop
        self.stats = DispatchStats()
        self.jobs: deque[Job] = deque()
        self.exhausted = False
        self.claiming = False
        self.error: BaseException | None = None
        self.changed = threading.Condition()

    def next(self) -> tuple[Job | None, bool]:
        """The next row for a thread, and whether that thread is to claim more: when
        few are left (prefetch) or none are (then the job is None). (None, False): done."""
        with self.changed:
            while True:
                if self.error is not None:
                    return None, False
                if self.stop is not None and self.stop.is_set():
                    self.exhausted = True  # stop claiming; what is reserved already is still sent
                if self.jobs:
                    job = self.jobs.popleft()
                    claim = not self.exhausted and not self.claiming and len(self.jobs) < self.low_water
                    self.claiming = self.claiming or claim
                    return job, claim
                if self.exhausted:
                    return None, False
                if not self.claiming:
                    self.claiming = True
                    return None, True
                self.changed.wait()

    def written(self, outcomes: Sequence[Outcome], written: Written, claimed: bool) -> None:
        with self.changed:
            for outcome in outcomes:
                self.stats.count(outcome)
            self.stats.recovered += written.recovered
            self.stats.deferred += written.deferred
            if written.deferred:
                self.stats.reasons[("deferred", WINDOW_OR_RATE)] += written.deferred
            if claimed:
                self.jobs.extend(written.jobs)
                self.exhausted = self.exhausted or not written.jobs
                self.claiming = False
                self.changed.notify_all()

    def fail(self, error: BaseException) -> None:
        with self.changed:
            self.error = self.error or error
            self.changed.notify_all()
