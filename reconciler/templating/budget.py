"""How much one render may cost, and the one error type rendering raises.

Rendering runs the author's template on the sender's machine, once per recipient.
Whatever a template says, one render must stay small and quick, so every render has
a ``Budget``: the most characters it may produce (counted while the output streams,
so an over-long text is stopped early, never built whole) and the CPU time it may
take (``time.thread_time``, read as the output streams). Breaking either, like any
other reason a template cannot be rendered for this data, is a ``RenderError``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from reconciler.errors import UserError

__all__ = [
    "CRM_TEXT",
    "DEFAULT_CPU_SECONDS",
    "EMAIL_BODY",
    "SMS_TEXT",
    "SUBJECT",
    "Budget",
    "BudgetExceeded",
    "RenderError",
]

DEFAULT_CPU_SECONDS = 2.0


class RenderError(UserError):
    """A template that cannot be rendered for this data: a field without a value, a
    construct the language refuses, a filter given the wrong kind of value, or a
    render over its budget (``BudgetExceeded``). The message says which."""


class BudgetExceeded(RenderError):
    """A render that produced too much text or took too much CPU time."""


@dataclass(frozen=True)
class Budget:
    """The limits of one render. ``what`` names the text in messages ("subject is longer
    than 998 characters"); ``clock`` is the CPU clock (a fake one in tests)."""

    what: str
    max_chars: int
    cpu_seconds: float = DEFAULT_CPU_SECONDS
    clock: Callable[[], float] = time.thread_time

    def with_cpu(self, seconds: float, clock: Callable[[], float] | None = None) -> Budget:
        return replace(self, cpu_seconds=seconds, clock=clock or self.clock)

    def too_long(self) -> BudgetExceeded:
        return BudgetExceeded(f"{self.what} is longer than {self.max_chars:,} characters")

    def too_slow(self) -> BudgetExceeded:
        return BudgetExceeded(f"rendering the {self.what} took more than {self.cpu_seconds:g} s of CPU")


SUBJECT = Budget("subject", 998)  # RFC 5322's line limit
SMS_TEXT = Budget("SMS text", 1_600)  # 10 concatenated GSM-7 segments and a bit; providers cut there
EMAIL_BODY = Budget("e-mail body", 2 * 1024 * 1024)  # as large as a content file may be
CRM_TEXT = Budget("text", 10_000)  # titles, messages and descriptions of CRM activities
