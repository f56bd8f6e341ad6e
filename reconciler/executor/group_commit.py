"""Group commit: the writes of several sending threads, in as few transactions as they allow.

A dispatcher with N connections has N threads that each must commit a write (the
``sending`` of their next message, the outcome of their last one) and wait for it
before going on. One transaction per write would make the database the bottleneck
(and on SQLite, N writers of one process would queue on the file lock with sleeps).
Here the threads queue their writes; one of them — the leader, whoever arrives while
no commit is running — takes everything queued, runs it in one transaction, and
wakes the others, whose writes are then committed too; the next one waiting leads
the next commit. A thread alone (N = 1) commits at once, with no waiting at all.

Each write is committed before ``write`` returns, so the caller may act on it (hand
a message over). If the transaction fails, every write in it failed: each caller
gets the exception, and nothing of the group is committed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Generic, TypeVar

from reconciler.state.store import Tx

W = TypeVar("W")
R = TypeVar("R")


class _Waiting(Generic[W, R]):
    __slots__ = ("done", "error", "result", "write")

    def __init__(self, write: W) -> None:
        self.write = write
        self.done = False
        self.result: R | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[W, R]):
    """``write(w)`` commits ``w`` — with whatever else is queued — through
    ``apply(tx, writes) -> results`` (one result per write, in order), in a
    ``transaction()`` (``Store.transaction`` or ``HeldConnection.transaction``)."""

    def __init__(
        self, transaction: Callable[[], AbstractContextManager[Tx]], apply: Callable[[Tx, Sequence[W]], list[R]]
    ) -> None:
        self.transaction, self.apply = transaction, apply
        self._queue: list[_Waiting[W, R]] = []
        self._busy = False
        self._changed = threading.Condition(threading.Lock())
        self.transactions = 0  # committed so far; for tests and benchmarks

    def write(self, write: W) -> R:
        waiting: _Waiting[W, R] = _Waiting(write)
        group: list[_Waiting[W, R]] | None = None
        with self._changed:
            self._queue.append(waiting)
            while self._busy and not waiting.done:
                self._changed.wait()
            if not waiting.done:  # lead: commit everything queued, ours included
                self._busy = True
                group, self._queue = self._queue, []
        if group is not None:
            self._commit(group)
        if waiting.error is not None:
            raise waiting.error
        return waiting.result  # type: ignore[return-value]

    def _commit(self, group: list[_Waiting[W, R]]) -> None:
        try:
            with self.transaction() as tx:
                results = self.apply(tx, [w.write for w in group])
            self.transactions += 1
        except BaseException as exc:
            for waiting in group:
                waiting.error = exc
        else:
            for waiting, result in zip(group, results, strict=True):
                waiting.result = result
        with self._changed:
            for waiting in group:
                waiting.done = True
            self._busy = False
            self._changed.notify_all()
