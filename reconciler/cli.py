"""The ``reconcile`` command: parse arguments, call the core, render, exit.

No business logic lives here. Every ``UserError`` (and every usage error) becomes
one line on stderr and exit code 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from reconciler import __version__
from reconciler.config import registered_scripts
from reconciler.errors import UserError
from reconciler.render.diagnostics import diagnostics_json, diagnostics_text
from reconciler.spec import validate as validate_specs
from reconciler.spec.schema import flow_schema_json

DEFAULT_DATABASE_URL = "sqlite:///.reconciler/state.db"
spec_paths = click.argument(
    "paths",
    nargs=-1,
    type=click.Path(path_type=Path, exists=False),
)


def _paths(paths: tuple[Path, ...]) -> list[Path]:
    return list(paths) or [Path("specs")]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--database-url",
    envvar="RECONCILER_DATABASE_URL",
    default=DEFAULT_DATABASE_URL,
    show_default=True,
    help="SQLAlchemy URL of the state database.",
)
@click.version_option(__version__, prog_name="reconcile")
@click.pass_context
def cli(ctx: click.Context, database_url: str) -> None:
    """Config-as-code for marketing-automation flows."""
    ctx.obj = {"database_url": database_url}


@cli.command()
@spec_paths
@click.option("--json", "as_json", is_flag=True, help="Print findings as JSON.")
def validate(paths: tuple[Path, ...], as_json: bool) -> None:
    """Check specs offline: YAML, schema and semantics. Exit 1 when invalid."""
    scripts = frozenset(registered_scripts())
    specs = validate_specs(_paths(paths), scripts)
    found = specs.sorted_diagnostics()
    render = diagnostics_json if as_json else diagnostics_text
    click.echo(render(found, len(specs.flows)))
    if specs.errors:
        sys.exit(1)


@cli.command()
def schema() -> None:
    """Print the JSON Schema of a Flow spec."""
    click.echo(flow_schema_json(), nl=False)


@cli.command()
def scripts() -> None:
    """List the scripts the operator registered for run_script steps."""
    registered = registered_scripts()
    if not registered:
        click.echo("no scripts registered (entry point group reconciler.scripts, or [scripts] in reconciler.toml)")
    for reg in sorted(registered.values()):
        click.echo(f"{reg.name}\t{reg.target}\t{reg.origin}")


def main() -> None:
    """Console entry point: map user errors to one line and exit code 1."""
    try:
        cli.main(standalone_mode=False, prog_name="reconcile")
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(1)
    except UserError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
