"""The ``reconcile`` group, the shared options, and the one place errors become exit codes.

No business logic lives in the CLI: commands parse, call the core, render, exit.
Every ``UserError`` (and every usage error) becomes one line on stderr and exit
code 1; spec errors print every located diagnostic first. Anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import getpass
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from click.core import ParameterSource

from reconciler import __version__
from reconciler.clock import Clock, SystemClock
from reconciler.config import CONFIG_ENV, OperatorConfig, find_config, select_config_file
from reconciler.desired import load_desired
from reconciler.errors import SpecError, UserError
from reconciler.spec.bundle import FlowBundle
from reconciler.state import Store
from reconciler.state.database import parse_url

DEFAULT_DATABASE_URL = "sqlite:///.reconciler/state.db"
DATABASE_URL_ENV = "RECONCILER_DATABASE_URL"
# The commands that only read the state: they never create, migrate or write a database
# (a plan job can run with read-only credentials). Every other command that opens the
# store may create the database and bring its schema up to date.
READ_ONLY_COMMANDS = frozenset(
    {"plan", "drift", "status", "history", "export", "participants list", "participants show", "outbox", "validate"}
)
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Context:
    """What every command shares: where the state is (and which setting said so), and the clock."""

    database_url: str
    database_setting: str = "--database-url"
    clock: Clock = field(default_factory=SystemClock)
    _store: Store | None = None

    def store(self) -> Store:
        """The state store; read-only (never created or migrated) for ``READ_ONLY_COMMANDS``."""
        if self._store is None:
            parse_url(self.database_url, self.database_setting)
            if command_name() in READ_ONLY_COMMANDS:
                self._store = Store.open_read_only(self.database_url)
            else:
                self._store = Store.open(self.database_url)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def spec_paths(function: F) -> F:
    return click.argument("paths", nargs=-1, type=click.Path(path_type=Path))(function)


def operator_config(paths: tuple[Path, ...] = ()) -> OperatorConfig:
    """The reconciler.toml for a command on ``paths`` (see ``reconciler.config``)."""
    return find_config(paths)


def paths_or_default(paths: tuple[Path, ...]) -> list[Path]:
    """The spec paths given, else ``paths`` of the config file, else ``specs/``."""
    return list(paths) or operator_config().spec_paths() or [Path("specs")]


def desired(paths: tuple[Path, ...]) -> list[FlowBundle]:
    given = paths_or_default(paths)
    return load_desired(given, frozenset(operator_config(tuple(given)).scripts()))


def actor() -> str:
    configured = os.environ.get("RECONCILER_ACTOR")
    if configured:
        return configured
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def command_name() -> str:
    """The running (sub)command's name below ``reconcile``, e.g. ``participants add``."""
    names: list[str] = []
    current = click.get_current_context(silent=True)
    while current is not None and current.parent is not None:
        names.append(current.info_name or "")
        current = current.parent
    return " ".join(reversed(names))


pass_context = click.make_pass_decorator(Context)


class ReconcileGroup(click.Group):
    """Turns the errors a user can cause into clear messages and exit code 1, for
    the console entry point and for in-process callers (tests) alike."""

    def main(  # type: ignore[override]
        self, args: Any = None, prog_name: str | None = None, standalone_mode: bool = True, **extra: Any
    ) -> Any:
        """Usage errors exit 1 like every other user error (click's default is 2)."""
        try:
            code = super().main(args, prog_name, standalone_mode=False, **extra)
        except click.exceptions.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(1)
        except click.ClickException as exc:
            exc.show()
            sys.exit(1)
        except UserError as exc:  # raised while parsing, before a command runs
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            sys.exit(130)
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SpecError as exc:
            for diagnostic in exc.diagnostics:
                click.echo(str(diagnostic), err=True)
            errors = sum(1 for d in exc.diagnostics if d.is_error)
            click.echo(f"Error: the specs are invalid ({errors} error(s)); nothing was changed", err=True)
            ctx.exit(1)
        except UserError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=ReconcileGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--database-url",
    envvar=DATABASE_URL_ENV,
    default=DEFAULT_DATABASE_URL,
    show_default=True,
    help=f"SQLAlchemy URL of the state database (SQLite file or postgresql+psycopg://); env {DATABASE_URL_ENV}. "
    "Empty or unparsable is an error.",
)
@click.option(
    "--config",
    "config_file",
    envvar=CONFIG_ENV,
    type=click.Path(path_type=Path, dir_okay=False),
    help=f"The reconciler.toml to use (env {CONFIG_ENV}); by default the nearest one above the spec paths, "
    "up to the repository root, then above the working directory.",
)
@click.version_option(__version__, prog_name="reconcile")
@click.pass_context
def cli(ctx: click.Context, database_url: str, config_file: Path | None) -> None:
    """Config-as-code for marketing-automation flows: validate, plan, apply, drift."""
    source = ctx.get_parameter_source("database_url")
    setting = "--database-url"
    if source is ParameterSource.ENVIRONMENT:
        setting = DATABASE_URL_ENV
    elif source is ParameterSource.DEFAULT and DATABASE_URL_ENV in os.environ:
        # click treats an empty variable as unset; here set-but-empty is an error, not the default.
        database_url, setting = os.environ[DATABASE_URL_ENV], DATABASE_URL_ENV
    context = Context(database_url, setting)
    config_source = ctx.get_parameter_source("config_file")
    select_config_file(config_file, CONFIG_ENV if config_source is ParameterSource.ENVIRONMENT else "--config")
    if config_file is not None:
        find_config()  # a given file that is missing or does not parse fails every command, first
    ctx.obj = context
    ctx.call_on_close(context.close)


def exit_with(code: int) -> NoReturn:
    sys.exit(code)


def main() -> None:
    """Console entry point."""
    cli.main(prog_name="reconcile")
