"""``reconcile watch``: run the GitOps daemon until SIGTERM or SIGINT."""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.cli.app import Context, actor, cli, pass_context, paths_or_default, spec_paths
from reconciler.cli.params import FiniteFloat
from reconciler.cli.run import connections_option
from reconciler.config import drift_ignore_rules, registered_scripts
from reconciler.desired import load_desired, source_state
from reconciler.drift import IgnoreRule
from reconciler.errors import ConfigError, SpecError
from reconciler.gitinfo import refuse_unclean
from reconciler.runtime import RuntimeSettings
from reconciler.watch import WatchOptions, run_daemon
from reconciler.watch.logs import configure


@cli.command()
@spec_paths
@click.option(
    "--debounce-ms",
    type=click.IntRange(min=10),
    default=300,
    show_default=True,
    help="Changes closer together than this are one reconcile.",
)
@click.option(
    "--interval",
    type=FiniteFloat(min=1),
    default=60.0,
    show_default=True,
    help="Seconds between full reconciles even without file changes.",
)
@click.option("--drift-interval", type=FiniteFloat(min=1), default=60.0, show_default=True)
@click.option(
    "--run-interval",
    type=FiniteFloat(min=0.05),
    default=1.0,
    show_default=True,
    help="Seconds between executor and outbox rounds.",
)
@click.option(
    "--self-heal",
    is_flag=True,
    help="Also undo out-of-band status changes of flows whose spec did not change (default: keep them, as apply does).",
)
@click.option("--prune", is_flag=True, help="Delete flows whose spec was removed (never a running one).")
@click.option("--metrics-port", type=click.IntRange(min=0, max=65535), help="Serve /metrics, /healthz, /readyz.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), default="INFO", show_default=True
)
@click.option("--no-dispatch", is_flag=True, help="Leave the outbox to another process.")
@click.option(
    "--require-clean",
    is_flag=True,
    help="Refuse to start (exit 1), and later to apply, while the specs differ from the git commit.",
)
@connections_option
@pass_context
def watch(
    ctx: Context,
    paths: tuple[Path, ...],
    debounce_ms: int,
    interval: float,
    drift_interval: float,
    run_interval: float,
    self_heal: bool,
    prune: bool,
    metrics_port: int | None,
    metrics_host: str,
    log_format: str,
    log_level: str,
    no_dispatch: bool,
    require_clean: bool,
    connections: int,
) -> None:
    """Apply on spec change, run the executor and outbox, report drift; until SIGTERM/SIGINT."""
    configure(log_format, log_level)
    spec_dirs = paths_or_default(paths)
    for path in spec_dirs:
        if not path.exists():
            raise click.UsageError(f"{path}: no such file or directory")
    try:
        ignore = [IgnoreRule.parse(text) for text in drift_ignore_rules()]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    known_scripts = frozenset(registered_scripts())
    if require_clean:
        try:
            bundles = load_desired(spec_dirs, known_scripts)
        except SpecError:
            bundles = []  # the daemon logs the errors and waits for a fix
        refuse_unclean(source_state(spec_dirs, bundles))
    store = ctx.store()
    options = WatchOptions(
        paths=spec_dirs,
        known_scripts=known_scripts,
        actor=actor(),
        debounce_ms=debounce_ms,
        reconcile_interval=interval,
        drift_interval=drift_interval,
        run_interval=run_interval,
        self_heal=self_heal,
        prune=prune,
        ignore=ignore,
        require_clean=require_clean,
    )
    settings = RuntimeSettings(dispatch=not no_dispatch, connections=connections)
    run_daemon(store, ctx.clock, options, settings, metrics_port=metrics_port, metrics_host=metrics_host)
