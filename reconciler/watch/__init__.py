"""The ``reconcile watch`` daemon: apply on change, run the executor, watch for drift."""

from reconciler.watch.daemon import Daemon, WatchOptions, run_daemon

__all__ = ["Daemon", "WatchOptions", "run_daemon"]
