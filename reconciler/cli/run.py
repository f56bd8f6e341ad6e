"""``reconcile run`` (executor and outbox dispatcher) and ``reconcile outbox``.

``run`` exits 0 when the run went through (sends that wait for a retry or failed are
counted with their reasons in the summary line), 1 on an error, and — with ``--once`` —
3 when a transport (SMTP, the SMS provider) could not be reached for the whole run:
what it should have sent stays pending, and a cron or CI job must notice.
"""

from __future__ import annotations

import threading

import click

from reconciler.cli.app import Context, cli, exit_with, pass_context
from reconciler.cli.params import FiniteFloat
from reconciler.executor import BATCH_SIZE
from reconciler.render.outbox import outbox_json, outbox_text
from reconciler.runtime import RuntimeSettings, RunTotals, open_runtime, run_rounds, stop_on_signals
from reconciler.state.outbox_store import outbox_counts, outbox_rows

EXIT_UNREACHABLE = 3  # run --once: a transport could not be reached for the whole run
# what the summary calls each outcome: "retried" and "deferred" rows both wait, pending
SUMMARY_OUTCOMES = (("deferred", ("retried", "deferred")), ("failed", ("failed",)), ("unknown", ("unknown",)))

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
    type=FiniteFloat(min=0.05),
    default=1.0,
    show_default=True,
    help="Seconds between rounds when running continuously.",
)
@click.option("--batch-size", type=click.IntRange(min=1, max=10_000), default=BATCH_SIZE, show_default=True)
@click.option("--no-dispatch", is_flag=True, help="Run steps only; leave the outbox to another process.")
@click.option(
    "--rate", type=click.IntRange(min=1), default=600, show_default=True, help="Sends per flow per minute at most."
)
@click.option("--script-timeout", type=FiniteFloat(min=0.1), default=30.0, show_default=True)
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
    """Run the step executor and deliver the outbox (SMTP / SMS provider, or the local sink).

    Exit 0 ok, 1 error, 3 (with --once) a transport unreachable for the whole run."""
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
    click.echo(run_summary(totals))
    unreachable = totals.unreachable_all_run
    if once and unreachable:
        for transport, why in sorted(unreachable.items()):
            click.echo(f"error: the {transport} transport was unreachable for the whole run: {why}", err=True)
        exit_with(EXIT_UNREACHABLE)


def run_summary(totals: RunTotals) -> str:
    """One line: steps, then sends — "sent 3, 4 deferred: <why>" — every reason with its count."""
    done = totals.steps
    parts = [f"sent {totals.sent}"]
    for label, outcomes in SUMMARY_OUTCOMES:
        count = sum(totals.sends[o] for o in outcomes)
        if not count:
            continue
        reasons = sorted(
            ((n, why) for (o, why), n in totals.reasons.items() if o in outcomes), key=lambda r: (-r[0], r[1])
        )
        if len(reasons) == 1:
            parts.append(f"{count} {label}: {reasons[0][1]}")
        elif reasons:
            shown = "; ".join(f"{why} ({n})" for n, why in reasons[:3])
            more = f"; {len(reasons) - 3} other reason(s)" if len(reasons) > 3 else ""
            parts.append(f"{count} {label}: {shown}{more}")
        else:
            parts.append(f"{count} {label}")
    return (
        f"processed {done.events} event(s); {done.steps} step(s) for {done.participants} participant(s); "
        + ", ".join(parts)
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
