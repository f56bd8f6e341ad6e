"""``reconcile run`` (executor and outbox dispatcher) and ``reconcile outbox``."""

from __future__ import annotations

import threading

import click

from reconciler.cli.app import Context, cli, pass_context
from reconciler.executor import BATCH_SIZE
from reconciler.render.outbox import outbox_json, outbox_text
from reconciler.runtime import RuntimeSettings, open_runtime, run_rounds, stop_on_signals
from reconciler.state.outbox_store import outbox_counts, outbox_rows

connections_option = click.option(
    "--connections",
    type=click.IntRange(min=1, max=64),
    default=RuntimeSettings().connections,
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
    settings = RuntimeSettings(
        batch_size=batch_size,
        dispatch=not no_dispatch,
        rate_per_minute=rate,
        connections=connections,
        script_timeout=script_timeout,
    )
    stop = threading.Event()
    with open_runtime(ctx.store(), ctx.clock, settings) as runtime:
        if not once:
            stop_on_signals(stop.set)
        totals = run_rounds(runtime, once=once, interval=interval, stop=stop)
    done = totals.steps
    click.echo(
        f"processed {done.events} event(s); {done.steps} step(s) for {done.participants} participant(s); sent {totals.sent}"
    )


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
