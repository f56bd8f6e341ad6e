"""``reconcile run`` (the executor) and ``reconcile participants add`` (manual enrollment)."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click

from reconciler.cli.app import Context, cli, pass_context
from reconciler.executor import Executor


@cli.command()
@click.option("--once", is_flag=True, help="Drain what is due now, then exit.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Seconds between rounds when running continuously.",
)
@click.option("--batch-size", type=click.IntRange(min=1, max=10_000), default=500, show_default=True)
@pass_context
def run(ctx: Context, once: bool, interval: float, batch_size: int) -> None:
    """Run the step executor: enroll from events, move participants along."""
    executor = Executor(ctx.store(), ctx.clock, batch_size=batch_size)
    if once:
        stats = executor.run_once()
    else:
        stop = threading.Event()

        def _stop(signum: int, frame: FrameType | None) -> None:
            del signum, frame
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        stats = executor.run_forever(stop, interval=interval)
    click.echo(
        f"processed {stats.events} event(s); {stats.steps} step(s) for {stats.participants} participant(s) "
        f"in {stats.batches} batch(es)"
    )
