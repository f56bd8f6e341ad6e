"""Break-glass: ``reconcile flow start|pause|resume|end|delete NAME``.

Imperative changes for emergencies. They obey the lifecycle rules and show up as
drift until the specs say the same (or the next apply restores the specs' status).
"""

from __future__ import annotations

import click

from reconciler.apply import break_glass
from reconciler.cli.app import Context, actor, cli, pass_context


@cli.group()
def flow() -> None:
    """Imperative status changes (they show up as drift)."""


def _command(action: str, help_text: str) -> None:
    @flow.command(name=action, help=help_text)
    @click.argument("name")
    @pass_context
    def command(ctx: Context, name: str) -> None:
        result = break_glass(ctx.store(), name, action, clock=ctx.clock, actor=actor())
        after = result.status_after or "deleted"
        extra = f"; {result.participants} participant(s) affected" if result.participants else ""
        click.echo(f"{name}: {result.status_before} → {after}{extra} (out of band: shows as drift)")


_command("start", "Start a flow that is not running (refused unless its required settings are valid).")
_command("pause", "Pause a running flow: participants stay on their step, new ones queue.")
_command("resume", "Resume a paused flow: queued participants go to the first step.")
_command("end", "End a flow: triggers off, queued and active participants are cancelled.")
_command("delete", "Delete a flow that is not running (with its participants; history stays).")
