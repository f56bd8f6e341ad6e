"""Commands on the actual state: plan, apply, drift, status, history, export, participants."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import click

from reconciler.apply import APPLY_LEASE, ApplyOptions, apply, make_plan
from reconciler.cli.app import (
    Context,
    actor,
    cli,
    desired,
    exit_with,
    operator_config,
    pass_context,
    paths_or_default,
    spec_paths,
)
from reconciler.cli.params import FiniteFloat
from reconciler.desired import source_state
from reconciler.diff import diff_documents
from reconciler.drift import IgnoreRule, detect_drift
from reconciler.errors import ConfigError, UserError
from reconciler.executor import Executor
from reconciler.gitinfo import refuse_unclean
from reconciler.render.export import export_yaml
from reconciler.render.plan import plan_json, plan_markdown, plan_text
from reconciler.render.state import (
    drift_json,
    drift_text,
    history_json,
    history_text,
    participants_json,
    participants_text,
    revision_diff_text,
    status_json,
    status_text,
)
from reconciler.state.database import current_revision, migrate
from reconciler.state.lease import force_release

POLICY = click.Choice(["block", "pause_and_resume"])
detailed_exitcode = click.option(
    "--detailed-exitcode", is_flag=True, help="Exit 0 when there is nothing to do, 2 when there is, 1 on error."
)
self_heal_option = click.option(
    "--self-heal",
    is_flag=True,
    help="Also undo out-of-band status changes (reconcile flow pause …) of flows whose spec did not change "
    "(default: keep them).",
)


def _color() -> bool:
    return sys.stdout.isatty()


@cli.command()
@spec_paths
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON (format_version 1).")
@click.option("--markdown", is_flag=True, help="Print the plan as Markdown for a pull-request comment.")
@detailed_exitcode
@click.option("--prune", is_flag=True, help="Also plan to delete flows that no spec declares.")
@click.option("--update-policy", type=POLICY, help="Override spec.update_policy for edits of running flows.")
@self_heal_option
@pass_context
def plan(
    ctx: Context,
    paths: tuple[Path, ...],
    as_json: bool,
    markdown: bool,
    detailed_exitcode: bool,
    prune: bool,
    update_policy: str | None,
    self_heal: bool,
) -> None:
    """Show what apply would do, per flow. Exit 1 when a change is blocked."""
    if as_json and markdown:
        raise click.UsageError("--json and --markdown cannot be combined")
    bundles = desired(paths)
    _refuse_empty_prune(bundles, prune)
    the_plan = make_plan(
        ctx.store(),
        bundles,
        prune=prune,
        update_policy=update_policy,  # type: ignore[arg-type]
        heal=self_heal,
    )
    if as_json:
        click.echo(plan_json(the_plan))
    elif markdown:
        click.echo(plan_markdown(the_plan))
    else:
        click.echo(plan_text(the_plan, color=_color()))
    if the_plan.blocked:
        exit_with(1)
    if detailed_exitcode and the_plan.has_changes:
        exit_with(2)


def _refuse_empty_prune(bundles: Sequence[object], prune: bool) -> None:
    if prune and not bundles:
        raise UserError("no flows in the specs: refusing to --prune, which would delete every flow")


@cli.command(name="apply")
@spec_paths
@click.option("--prune", is_flag=True, help="Delete flows that no spec declares (never a running one).")
@click.option("--dry-run", is_flag=True, help="Plan under the lock, change nothing.")
@click.option("--update-policy", type=POLICY, help="Override spec.update_policy for edits of running flows.")
@click.option(
    "--lock-timeout",
    type=FiniteFloat(min=0),
    default=60.0,
    show_default=True,
    help="Seconds to wait for another apply to finish.",
)
@click.option(
    "--recompute-waits",
    is_flag=True,
    help="Participants waiting on a changed wait step get the new due time (default: they keep theirs).",
)
@self_heal_option
@click.option(
    "--require-clean",
    is_flag=True,
    help="Refuse (exit 1) when the spec files or the files they name differ from the git commit.",
)
@pass_context
def apply_command(
    ctx: Context,
    paths: tuple[Path, ...],
    prune: bool,
    dry_run: bool,
    update_policy: str | None,
    lock_timeout: float,
    recompute_waits: bool,
    self_heal: bool,
    require_clean: bool,
) -> None:
    """Make the actual state match the specs. Exit 1 on error or a blocked change."""
    bundles = desired(paths)
    _refuse_empty_prune(bundles, prune)
    source = source_state(paths_or_default(paths), bundles)
    if require_clean:
        refuse_unclean(source)
    options = ApplyOptions(
        actor=actor(),
        prune=prune,
        dry_run=dry_run,
        update_policy=update_policy,  # type: ignore[arg-type]
        git_commit=source.commit,
        git_dirty=source.dirty,
        recompute_waits=recompute_waits,
        lock_wait=timedelta(seconds=lock_timeout),
        heal=self_heal,
    )
    result = apply(ctx.store(), bundles, clock=ctx.clock, options=options)
    click.echo(plan_text(result.plan, color=_color()))
    if dry_run:
        click.echo("Dry run: nothing was changed.")
    else:
        click.echo(f"Applied {len(result.applied)} change(s); {len(result.blocked)} blocked.")
    if result.blocked:
        exit_with(1)


@cli.command()
@spec_paths
@click.option("--json", "as_json", is_flag=True, help="Print drift as JSON (format_version 1).")
@detailed_exitcode
@pass_context
def drift(ctx: Context, paths: tuple[Path, ...], as_json: bool, detailed_exitcode: bool) -> None:
    """Report where actual state differs from what was applied and from the specs."""
    given = paths_or_default(paths)
    bundles = desired(paths) if paths or given[0].exists() else None
    try:
        rules = [IgnoreRule.parse(text) for text in operator_config(tuple(given)).drift_ignore()]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    store = ctx.store()
    drifts = detect_drift(store.flows(), store.last_revisions(), store.last_status_changes(), bundles, rules)
    click.echo(drift_json(drifts) if as_json else drift_text(drifts))
    if detailed_exitcode and drifts:
        exit_with(2)


@cli.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print status as JSON.")
@pass_context
def status(ctx: Context, name: str | None, as_json: bool) -> None:
    """Flows, their status, revision and participants per status and step."""
    store = ctx.store()
    flows = store.flows()
    if name is not None and name not in flows:
        raise UserError(f"no flow named {name!r}")
    shown = [flows[name]] if name else list(flows.values())
    occupancy, dropouts = store.occupancy(), store.dropout_reasons()
    if as_json:
        click.echo(status_json(shown, occupancy, dropouts))
    else:
        click.echo(status_text(shown, occupancy, dropouts, now=ctx.clock.now()))


@cli.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the revisions as JSON.")
@click.option("--diff", "between", nargs=2, type=int, metavar="A B", help="Show what changed from revision A to B.")
@pass_context
def history(ctx: Context, name: str, as_json: bool, between: tuple[int, int] | None) -> None:
    """Applied revisions of a flow (time, content hash, git commit)."""
    revisions = ctx.store().revisions(name)
    if not revisions and not ctx.store().flow(name):
        raise UserError(f"no flow named {name!r} was ever applied")
    if between:
        by_number = {r.revision: r for r in revisions}
        missing = [n for n in between if n not in by_number]
        if missing:
            raise UserError(f"flow {name!r} has no revision {missing[0]} (it has 1…{len(revisions)})")
        a, b = (by_number[n] for n in between)
        entries = diff_documents(a.spec, b.spec, a.files, b.files)
        click.echo(revision_diff_text(name, a.revision, b.revision, entries))
        return
    click.echo(history_json(revisions) if as_json else history_text(name, revisions))


@cli.command()
@click.argument("name", required=False)
@pass_context
def export(ctx: Context, name: str | None) -> None:
    """Print the actual state as spec YAML (how an existing flow is adopted)."""
    flows = ctx.store().flows()
    if name is not None and name not in flows:
        raise UserError(f"no flow named {name!r}")
    records = [flows[name]] if name else list(flows.values())
    if records:
        click.echo(export_yaml(records, header=True), nl=False)


class _ParticipantsGroup(click.Group):
    """``participants NAME`` lists; ``participants add FLOW EMAIL…`` enrolls."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands:
            return "list", self.commands["list"], args
        return super().resolve_command(ctx, args)


@cli.group(cls=_ParticipantsGroup, invoke_without_command=False)
def participants() -> None:
    """A flow's participants: `participants NAME [--json]`, `participants add FLOW EMAIL…`."""


@participants.command(name="list")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print participants as JSON.")
@pass_context
def list_participants(ctx: Context, name: str, as_json: bool) -> None:
    """List a flow's participants: contact, status, current step."""
    store = ctx.store()
    if store.flow(name) is None:
        raise UserError(f"no flow named {name!r}")
    found = store.participants(name)
    click.echo(participants_json(found) if as_json else participants_text(name, found))


@participants.command(name="add")
@click.argument("flow")
@click.argument("emails", nargs=-1, required=True)
@pass_context
def add_participants(ctx: Context, flow: str, emails: tuple[str, ...]) -> None:
    """Enroll contacts by hand (the flow's rules still apply: status, once-only, filter, exclusion)."""
    result = Executor(ctx.store(), ctx.clock).enroll(flow, list(emails))
    for email, reason in sorted(result.skipped.items()):
        click.echo(f"skipped {email}: {reason}", err=True)
    click.echo(f"enrolled {len(result.enrolled)} contact(s) in {flow}; skipped {len(result.skipped)}")


@cli.command(name="force-unlock")
@click.argument("lock", default=APPLY_LEASE)
@pass_context
def force_unlock(ctx: Context, lock: str) -> None:
    """Drop a lock whose holder is gone (it also expires by itself)."""
    held = force_release(ctx.store(), lock)
    if held is None:
        click.echo(f"the {lock} lock was not held")
    else:
        click.echo(f"released the {lock} lock held by {held.holder}")


@cli.group()
def db() -> None:
    """The state database schema."""


@db.command()
@pass_context
def upgrade(ctx: Context) -> None:
    """Migrate the state database to the newest schema."""
    store = ctx.store()
    migrate(store.engine)
    click.echo(f"state database at schema {current_revision(store.engine)}")
