"""The ``reconcile`` command line (click). See ``app`` for the group and error handling."""

from reconciler.cli import crm, flow, run, specs, state, watch
from reconciler.cli.app import cli, main

__all__ = ["cli", "crm", "flow", "main", "run", "specs", "state", "watch"]
