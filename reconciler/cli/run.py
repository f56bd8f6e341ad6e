"""``reconcile run`` (executor and outbox dispatcher) and ``reconcile outbox``."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from types import FrameType

import click

from reconciler.actions import sink, sms_http, smtp
from reconciler.cli.app import Context, cli, pass_context
from reconciler.config import registered_scripts
from reconciler.executor import BATCH_SIZE, Executor
from reconciler.executor.dispatch import Dispatcher, DispatchPolicy, ScriptRunner, Transports
from reconciler.render.outbox import outbox_json, outbox_text
from reconciler.state.outbox_store import outbox_counts, outbox_rows

SINK_DIRECTORY = Path(".reconciler/outbox")


def transports(script_timeout: float) -> Transports:
    """SMTP and the SMS provider from the environment; the local maildir sink otherwise."""
    local = sink.MaildirSink(SINK_DIRECTORY)
    return Transports(
        email=smtp.transport_from_env(os.environ) or local,
        sms=sms_http.transport_from_env(os.environ) or local,
        scripts=ScriptRunner(registered_scripts(), script_timeout),
    )


connections_option = click.option(
    "--connections",
    type=click.IntRange(min=1, max=64),
    default=DispatchPolicy().connections,
    show_default=True,
    help="Messages handed over at once, each on an SMTP connection (or HTTP request) of its own.",
)


@cli.command()
@click.option("--once", is_flag=True, help="Drain what is due now (steps and sends), then exit.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Seconds between rounds when running continuously.",
)
@click.option("--batch-size", type=click.IntRange(min=1, max=10_000), default=BATCH_SIZE, show_default=True)
@click.option("--no-dispatch", is_flag=True, help="Run steps only; leave the outbox to another process.")
@click.option(
    "--rate", type=click.IntRange(min=1), default=600, show_default=True, help="Sends per flow per minute at most."
)
@click.option("--script-timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True)
@connections_option
@pass_context
def run(
    ctx: Context,
    once: bool,
    interval: float,
    batch_size: int,
    no_dispatch: bool,
    rate: int,
    script_timeout: float,
    connections: int,
) -> None:
    """Run the step executor and deliver the outbox (SMTP / SMS provider, or the local sink)."""
    store = ctx.store()
    executor = Executor(store, ctx.clock, batch_size=batch_size)
    dispatcher = None
    if not no_dispatch:
        policy = DispatchPolicy(
            rate_per_minute=rate,
            connections=connections,
            script_timeout=script_timeout,
            unsubscribe_url=os.environ.get("RECONCILER_UNSUBSCRIBE_URL"),
        )
        dispatcher = Dispatcher(store, ctx.clock, transports(script_timeout), policy)
    stop = threading.Event()
    if not once:

        def _stop(signum: int, frame: FrameType | None) -> None:
            del signum, frame
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    steps = events = participants = sent = 0
    try:
        while True:
            stats = executor.run_once()
            steps, events, participants = steps + stats.steps, events + stats.events, participants + stats.participants
            if dispatcher is not None:
                sent += dispatcher.run_once(stop=stop).sent
            if once or stop.wait(interval):
                break
    finally:
        if dispatcher is not None:
            dispatcher.transports.close()
    click.echo(f"processed {events} event(s); {steps} step(s) for {participants} participant(s); sent {sent}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--all", "show_all", is_flag=True, help="List sent rows too.")
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True)
@pass_context
def outbox(ctx: Context, as_json: bool, show_all: bool, limit: int) -> None:
    """What is pending, sending, sent, failed or unknown in the outbox."""
    states = ["pending", "sending", "failed", "unknown"] + (["sent"] if show_all else [])
    with ctx.store().reading() as tx:
        counts, rows = outbox_counts(tx), outbox_rows(tx, states, limit)
    click.echo(outbox_json(counts, rows) if as_json else outbox_text(counts, rows))
