"""Commands that need only the specs: validate, schema, scripts. They work offline."""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.cli.app import cli, exit_with, operator_config, paths_or_default, spec_paths
from reconciler.render.diagnostics import diagnostics_json, diagnostics_text
from reconciler.spec import validate as validate_specs
from reconciler.spec.schema import flow_schema_json


@cli.command()
@spec_paths
@click.option("--json", "as_json", is_flag=True, help="Print findings as JSON.")
def validate(paths: tuple[Path, ...], as_json: bool) -> None:
    """Check specs offline: YAML, schema and semantics. Exit 1 when invalid."""
    given = paths_or_default(paths)
    specs = validate_specs(given, frozenset(operator_config(tuple(given)).scripts()))
    found = specs.sorted_diagnostics()
    render = diagnostics_json if as_json else diagnostics_text
    click.echo(render(found, len(specs.flows)))
    if specs.errors:
        exit_with(1)


@cli.command()
def schema() -> None:
    """Print the JSON Schema of a Flow spec."""
    click.echo(flow_schema_json(), nl=False)


@cli.command()
def scripts() -> None:
    """List the scripts the operator registered for run_script steps."""
    registered = operator_config().scripts()
    if not registered:
        click.echo("no scripts registered (entry point group reconciler.scripts, or [scripts] in reconciler.toml)")
    for reg in sorted(registered.values()):
        click.echo(f"{reg.name}\t{reg.target}\t{reg.origin}")
