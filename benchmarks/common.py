"""What every benchmark prints the same way: target verdicts and cProfile summaries.

The benchmarks run as scripts (``python benchmarks/x.py``), so this directory is on
``sys.path`` and ``import common`` finds this module (spawned workers inherit the path).
"""

from __future__ import annotations

import cProfile
import io
import pstats
from collections.abc import Callable
from typing import Any

PROFILE_TOP = 25


def verdict(ok: bool, text: str) -> None:
    """A target as a PASS/FAIL line: never fatal, timings on shared machines are noisy."""
    print(f"{'PASS' if ok else 'FAIL'}  {text}")


def profiled(fn: Callable[[], Any], what: str = "profile") -> Any:
    """``fn()`` under cProfile; prints its top functions by own and by cumulative time."""
    profile = cProfile.Profile()
    result = profile.runcall(fn)
    for key in ("tottime", "cumulative"):
        buffer = io.StringIO()
        pstats.Stats(profile, stream=buffer).strip_dirs().sort_stats(key).print_stats(PROFILE_TOP)
        print(f"\n--- {what}: top {PROFILE_TOP} by {key} ---")
        print("\n".join(line for line in buffer.getvalue().splitlines()[6:] if line.strip()))
    return result
