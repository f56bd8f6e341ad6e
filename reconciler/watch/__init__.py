"""The ``reconcile watch`` daemon: apply on change, run the executor, watch for drift."""

from reconciler.watch.daemon import Daemon, WatchOptions

__all__ = ["Daemon", "WatchOptions"]
