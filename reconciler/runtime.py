"""The work loop ``reconcile run`` and ``reconcile watch`` share: the step executor, the
outbox dispatcher, and the transports it delivers through.

Both commands do the same work — executor rounds (events, then due participants),
then outbox deliveries — through the same transports, decided here once: SMTP from
``RECONCILER_SMTP_URL`` and the SMS provider from ``RECONCILER_SMS_URL``, the local
maildir sink (``.reconciler/outbox``, ignored by git) for whichever is not configured, scripts from
the operator's registry (``reconciler.toml`` and entry points), and unsubscribe links
from ``RECONCILER_UNSUBSCRIBE_URL``. A command says only what differs (batch size,
rate, connections, no dispatch) in ``RuntimeSettings``.

This module never prints and never exits: it returns counts, and the CLI renders
them. It sits between the executor and the commands in the layers.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from reconciler.actions import sink, sms_http, smtp
from reconciler.actions.scripts import ScriptRunner
from reconciler.clock import Clock
from reconciler.config import registered_scripts
from reconciler.executor import BATCH_SIZE, Executor, RunStats
from reconciler.executor.dispatch import Dispatcher, DispatchPolicy, DispatchStats, Transports
from reconciler.state import Store

SINK_DIRECTORY = sink.DEFAULT_OUTBOX_DIR  # under .reconciler/, beside the default database
UNSUBSCRIBE_URL_VARIABLE = "RECONCILER_UNSUBSCRIBE_URL"
SEND_OUTCOMES = ("sent", "retried", "failed", "unknown", "deferred")
_POLICY = DispatchPolicy()


@dataclass(frozen=True)
class RuntimeSettings:
    """What a command may choose about the work; the defaults are those of ``watch``."""

    batch_size: int = BATCH_SIZE  # participants per executor transaction
    dispatch: bool = True  # False: steps only, another process delivers the outbox
    rate_per_minute: int = _POLICY.rate_per_minute  # sends per flow
    connections: int = _POLICY.connections  # messages handed over at once
    script_timeout: float = _POLICY.script_timeout


def transports(env: Mapping[str, str], script_timeout: float, sink_directory: Path = SINK_DIRECTORY) -> Transports:
    """SMTP and the SMS provider from ``env``; the local maildir sink for what is not configured."""
    local = sink.MaildirSink(sink_directory)
    return Transports(
        email=smtp.transport_from_env(env) or local,
        sms=sms_http.transport_from_env(env) or local,
        scripts=ScriptRunner(registered_scripts(), script_timeout),
    )


@dataclass(frozen=True)
class WorkDone:
    """One pass of the work: the executor's counts, and the sends by outcome (``SEND_OUTCOMES``)."""

    steps: RunStats
    sends: Mapping[str, int] = field(default_factory=dict)
    dispatch: DispatchStats | None = None  # the sends' reasons and which transports answered


@dataclass
class Runtime:
    """An executor and, unless dispatching is off, a dispatcher with its transports."""

    executor: Executor
    dispatcher: Dispatcher | None = None

    def work(self, stop: threading.Event | None = None, *, drain: bool = False) -> WorkDone:
        """Run what is due now, then deliver what is due. Once ``stop`` is set neither
        claims more after the batch at hand; with ``drain`` the executor first runs
        everything due regardless (``reconcile run``)."""
        steps = self.executor.run_once(stop=None if drain else stop)
        if self.dispatcher is None:
            return WorkDone(steps)
        sent = self.dispatcher.run_once(stop=stop)
        return WorkDone(steps, {outcome: getattr(sent, outcome) for outcome in SEND_OUTCOMES}, sent)

    def close(self) -> None:
        """Close the transports (kept SMTP connections, the script pool)."""
        if self.dispatcher is not None:
            self.dispatcher.transports.close()


@contextmanager
def open_runtime(
    store: Store, clock: Clock, settings: RuntimeSettings, env: Mapping[str, str] = os.environ
) -> Iterator[Runtime]:
    """The runtime ``settings`` describe, its transports from ``env``; closed on leaving.
    A transport setting that is wrong raises ``ConfigError`` here, before any work."""
    executor = Executor(store, clock, batch_size=settings.batch_size)
    dispatcher = None
    if settings.dispatch:
        policy = DispatchPolicy(
            rate_per_minute=settings.rate_per_minute,
            connections=settings.connections,
            script_timeout=settings.script_timeout,
            unsubscribe_url=env.get(UNSUBSCRIBE_URL_VARIABLE),
        )
        dispatcher = Dispatcher(store, clock, transports(env, settings.script_timeout), policy)
    runtime = Runtime(executor, dispatcher)
    try:
        yield runtime
    finally:
        runtime.close()


@dataclass
class RunTotals:
    """What ``reconcile run`` did, summed over its rounds: the steps, the sends by outcome
    (``SEND_OUTCOMES``) with their reasons, and which transports never answered."""

    steps: RunStats = field(default_factory=RunStats)
    sends: Counter[str] = field(default_factory=Counter)
    reasons: Counter[tuple[str, str]] = field(default_factory=Counter)  # (outcome, detail) → messages
    unreachable: dict[str, str] = field(default_factory=dict)  # transport → why
    reached: set[str] = field(default_factory=set)

    @property
    def sent(self) -> int:
        return self.sends["sent"]

    def add(self, done: WorkDone) -> None:
        self.steps += done.steps
        self.sends.update(done.sends)
        if done.dispatch is not None:
            self.reasons.update(done.dispatch.reasons)
            self.unreachable.update(done.dispatch.unreachable)
            self.reached |= done.dispatch.reached

    @property
    def unreachable_all_run(self) -> dict[str, str]:
        """The transports that were tried and never answered during the whole run."""
        return {name: why for name, why in self.unreachable.items() if name not in self.reached}


def run_rounds(runtime: Runtime, *, once: bool, interval: float, stop: threading.Event) -> RunTotals:
    """Work rounds every ``interval`` seconds until ``stop`` is set; one round with ``once``."""
    totals = RunTotals()
    while True:
        totals.add(runtime.work(stop, drain=True))
        if once or stop.wait(interval):
            return totals


def stop_on_signals(stop: Callable[[], None]) -> None:
    """Call ``stop`` on SIGTERM and SIGINT (the current batch finishes; nothing new is claimed)."""

    def _handler(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
