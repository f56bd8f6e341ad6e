"""Commands on the built-in CRM: contacts and associates import, selections, events."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from reconciler.cli.app import Context, cli, pass_context
from reconciler.crm import (
    EVENT_TYPES,
    ImportRejected,
    ImportResult,
    Problem,
    add_to_selection,
    emit_event,
    import_associates,
    import_contacts,
    ingest_events,
)

input_file = click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
skip_invalid = click.option(
    "--skip-invalid", is_flag=True, help="Import the valid rows and report the invalid ones as warnings."
)


def _show(problems: Iterable[Problem]) -> None:
    for problem in problems:
        click.echo(str(problem), err=True)


def _report(run: Callable[[], ImportResult]) -> None:
    """Run an import; print its problems (also when it was rejected) and its summary."""
    try:
        result = run()
    except ImportRejected as exc:
        _show(exc.problems)
        raise
    _show(result.problems)
    click.echo(result.summary())


@cli.group()
def contacts() -> None:
    """Contacts of the built-in CRM."""


@contacts.command(name="import")
@input_file
@skip_invalid
@pass_context
def contacts_import(ctx: Context, file: Path, skip_invalid: bool) -> None:
    """Upsert contacts from a CSV file whose header names contact fields (email required).

    Unknown columns become custom fields; company.<field> columns set the company's
    fields. One transaction: an invalid row imports nothing unless --skip-invalid.
    Imports fire no triggers.
    """
    _report(lambda: import_contacts(ctx.store(), file, ctx.clock.now(), skip_invalid=skip_invalid))


@cli.group()
def associates() -> None:
    """Associates (colleagues): owners, assignees and notification targets."""


@associates.command(name="import")
@input_file
@skip_invalid
@pass_context
def associates_import(ctx: Context, file: Path, skip_invalid: bool) -> None:
    """Upsert associates from a CSV file with the columns name (required), email, mobile, group, active."""
    _report(lambda: import_associates(ctx.store(), file, skip_invalid=skip_invalid))


@cli.group()
def selections() -> None:
    """Static selections (lists of contacts)."""


@selections.command(name="add")
@click.argument("name")
@click.argument("emails", nargs=-1, required=True, metavar="EMAIL...")
@pass_context
def selections_add(ctx: Context, name: str, emails: tuple[str, ...]) -> None:
    """Add existing contacts to the static selection NAME (created if needed).

    Each new member fires the flows' added_to_selection triggers.
    """
    result = add_to_selection(ctx.store(), name, emails, ctx.clock.now())
    click.echo(result.summary())


@cli.group()
def events() -> None:
    """CRM events that fire triggers, meet success criteria and end waits."""


@events.command(name="emit")
@click.argument("event_type", metavar="TYPE", type=click.Choice(EVENT_TYPES))
@click.option("--email", required=True, help="The contact's e-mail address.")
@click.option("--form", help="The form (form_submitted).")
@click.option("--link", help="The link (link_clicked).")
@click.option("--project", help="The project (added_to_project).")
@click.option("--selection", help="The selection (added_to_selection).")
@click.option("--field", "fields", multiple=True, metavar="KEY=VALUE", help="Event data; repeat for several.")
@click.option("--key", help="Idempotency key: an event whose key was used before is skipped.")
@click.option("--occurred-at", help="When it happened (ISO 8601 with an offset); default now.")
@pass_context
def events_emit(
    ctx: Context,
    event_type: str,
    email: str,
    form: str | None,
    link: str | None,
    project: str | None,
    selection: str | None,
    fields: tuple[str, ...],
    key: str | None,
    occurred_at: str | None,
) -> None:
    """Record one event of TYPE for the contact --email.

    form_submitted needs --form (its --field values are the form data),
    link_clicked --link (optional --field email_step=STEP), added_to_project
    --project, added_to_selection --selection. contact_created and
    contact_updated take contact fields (--field title=CEO); sale_* take
    --field title=… and --field amount=….
    """
    raw: dict[str, Any] = {"type": event_type, "email": email}
    given = {"form": form, "link": link, "project": project, "selection": selection}
    given |= {"key": key, "occurred_at": occurred_at}
    raw |= {k: v for k, v in given.items() if v is not None}
    if fields:
        raw["fields"] = _fields(fields)
    click.echo(emit_event(ctx.store(), raw, ctx.clock.now()).describe())


def _fields(pairs: tuple[str, ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--field")
        if name.strip() in found:
            raise click.BadParameter(f"{name.strip()!r} is given twice", param_hint="--field")
        found[name.strip()] = value
    return found


@events.command(name="ingest")
@input_file
@pass_context
def events_ingest(ctx: Context, file: Path) -> None:
    """Record the events of a JSON Lines file, one object per line, in one transaction.

    A line looks like {"type": "form_submitted", "email": "…", "form": "…",
    "fields": {…}, "occurred_at": "2026-11-25T10:00:00Z", "key": "…"}. Any invalid
    line means nothing is ingested.
    """
    try:
        result = ingest_events(ctx.store(), file, ctx.clock.now())
    except ImportRejected as exc:
        _show(exc.problems)
        raise
    click.echo(result.summary())
