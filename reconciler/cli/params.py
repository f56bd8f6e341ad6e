"""Option types the CLI shares.

``click.FloatRange`` lets ``nan`` and ``inf`` through (``nan < 1`` is false, so no bound
refuses it), and a NaN timeout then fails deep inside with a traceback. Every float
option takes a ``FiniteFloat``: the same bounds, and a clear usage error for the rest.
"""

from __future__ import annotations

import math
from typing import Any

import click


class FiniteFloat(click.FloatRange):
    """A float within the given bounds that is a real number (not ``nan``, ``inf``)."""

    name = "finite number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number
