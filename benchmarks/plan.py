"""How much does ``reconcile plan`` cost on top of ``reconcile validate``?

What is measured, on the repository of ``benchmarks/validate.py`` (1,000 valid flows
of about ten steps, one per file, sharing a ``content/`` folder), after all of them
were applied to a fresh state database (SQLite in a temp dir, or a fresh schema of
the PostgreSQL database given with ``--database-url``):

- validate: ``reconciler.spec.validate([repo])``, as in the validate benchmark;
- no-change plan: what ``reconcile plan`` does besides printing — load the desired
  state (validate, then bundle every flow with the SHA-256 of its content files),
  open the store (engine, schema check) and ``make_plan`` (read every flow and the
  participant counts, diff each stored spec against its spec file);
- plan after an edit: the same on a copy of the repository in which 10 flow files
  were changed, so the plan has 10 updates (edits of running flows are blocked
  changes, which a plan reports all the same).

The plan is expected to cost validate plus a little: the targets are a no-change
plan of at most 2 s for 1,000 flows, and at most 1.5× validate.

Why this way: all three run in one process on the same files, alternating, five
timed repetitions each after a warm-up, medians compared. Every repetition is cold
for the spec layer: every ``functools`` cache in ``reconciler.spec`` (merge-field
parses, e-mail addresses, time zones, file digests) is cleared before it, as for a
fresh ``reconcile`` process. The database's own caches stay warm, as they would.

The exit status is non-zero only when the setup goes wrong (the flows do not
validate or apply, or a plan after apply is not empty): then the numbers would
mean nothing. A target missed is printed, never fatal: timings are noisy.

    .venv/bin/python benchmarks/plan.py             # the table
    .venv/bin/python benchmarks/plan.py --profile   # plus where the no-change plan spends its time
    .venv/bin/python benchmarks/plan.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

try:
    from benchmarks.validate import SEED, spec_caches, write_repo
except ModuleNotFoundError:  # run as a script: benchmarks/ is on sys.path, the project root is not
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.validate import SEED, spec_caches, write_repo

from reconciler.apply import ApplyOptions, apply, make_plan
from reconciler.clock import SystemClock
from reconciler.desired import load_desired
from reconciler.plan import Plan
from reconciler.spec import validate
from reconciler.state import Store

FLOWS = 1000
REPEAT = 5
EDITED = 10
TARGET_SECONDS = 2.0
TARGET_RATIO = 1.5
PROFILE_TOP = 25
NO_SCRIPTS: frozenset[str] = frozenset()

Caches = Sequence[Any]


# --- The state database --------------------------------------------------------------------


@contextmanager
def state_database(url: str | None, tmp: Path) -> Iterator[str]:
    """A fresh SQLite file under ``tmp``, or a fresh schema in the PostgreSQL at ``url`` (dropped after)."""
    if url is None:
        yield f"sqlite:///{tmp / 'state.db'}"
        return
    parsed = make_url(url)
    if not parsed.drivername.startswith("postgres"):
        yield url
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(parsed.set(drivername="postgresql+psycopg"))
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        options = f"-csearch_path={schema}"
        yield parsed.update_query_dict({"options": options}).render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def describe(url: str) -> str:
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        return f"SQLite {parsed.database}"
    return f"{parsed.render_as_string(hide_password=True)}"


# --- What is timed ---------------------------------------------------------------------------


def cold(caches: Caches) -> None:
    for cache in caches:
        cache.cache_clear()
    gc.collect()


def do_validate(root: Path) -> int:
    specs = validate([root], known_scripts=NO_SCRIPTS)
    if specs.errors:
        raise AssertionError(f"validate found {len(specs.errors)} errors")
    return len(specs.flows)


def do_plan(root: Path, url: str) -> Plan:
    """``reconcile plan`` minus the interpreter start and the rendering."""
    bundles = load_desired([root], NO_SCRIPTS)
    store = Store.open(url)
    try:
        return make_plan(store, bundles)
    finally:
        store.close()


def timed(caches: Caches, action: Callable[[], object]) -> tuple[float, object]:
    cold(caches)
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def edit_copy(root: Path, target: Path, count: int) -> list[str]:
    """A copy of the repository with ``count`` flow files edited; returns the edited flows' files."""
    shutil.copytree(root, target)
    files = sorted(target.glob("flow-*.yaml"))
    step = max(1, len(files) // count)
    edited = files[::step][:count]
    for file in edited:
        source = file.read_text(encoding="utf-8")
        changed = source.replace("generated by benchmarks/validate.py", "edited by benchmarks/plan.py", 1)
        if changed == source:
            raise AssertionError(f"{file.name}: nothing to edit")
        file.write_text(changed, encoding="utf-8")
    return [f.name for f in edited]


@dataclass(frozen=True)
class Result:
    flows: int
    apply: float
    validate: float
    no_change: float
    changed: float
    changed_actions: dict[str, int]

    @property
    def no_change_ratio(self) -> float:
        return self.no_change / self.validate

    @property
    def changed_ratio(self) -> float:
        return self.changed / self.validate


def run(root: Path, edited: Path, url: str, repeat: int, caches: Caches, flows: int, apply_seconds: float) -> Result:
    do_validate(root)  # warm-up: imports, page cache, pydantic and jinja first use, the database
    do_plan(root, url)
    do_plan(edited, url)
    validated: list[float] = []
    unchanged: list[float] = []
    changed: list[float] = []
    last: Plan | None = None
    for _ in range(repeat):
        seconds, count = timed(caches, lambda: do_validate(root))
        validated.append(seconds)
        seconds, plan = timed(caches, lambda: do_plan(root, url))
        unchanged.append(seconds)
        if count != flows or not isinstance(plan, Plan) or plan.has_changes:  # checked outside the timing
            raise AssertionError("the no-change plan changed its mind")
        seconds, plan = timed(caches, lambda: do_plan(edited, url))
        changed.append(seconds)
        assert isinstance(plan, Plan)
        last = plan
    assert last is not None
    summary = {k: v for k, v in last.summary().items() if v}
    if sum(1 for c in last.changes if c.is_change) != EDITED:
        raise AssertionError(f"the plan after editing {EDITED} flows is {summary}")
    return Result(
        flows=flows,
        apply=apply_seconds,
        validate=statistics.median(validated),
        no_change=statistics.median(unchanged),
        changed=statistics.median(changed),
        changed_actions=summary,
    )


def print_table(result: Result, repeat: int) -> None:
    actions = ", ".join(f"{n} {a}" for a, n in result.changed_actions.items())
    rows = (
        ("flows", f"{result.flows:,}", ""),
        ("apply all to an empty database (s, once)", f"{result.apply:.3f}", ""),
        (f"validate median (s, n={repeat})", f"{result.validate:.3f}", "1.00×"),
        (f"no-change plan median (s, n={repeat})", f"{result.no_change:.3f}", f"{result.no_change_ratio:.2f}×"),
        (f"plan after editing {EDITED} flows (s, n={repeat})", f"{result.changed:.3f}", f"{result.changed_ratio:.2f}×"),
    )
    width = max(len(label) for label, _, _ in rows)
    print(f"\n  {'':<{width}}  {'seconds':>9}  {'÷ validate':>10}")
    for label, value, ratio in rows:
        print(f"  {label:<{width}}  {value:>9}  {ratio:>10}")
    print(f"  (the edited plan: {actions})")
    seconds_verdict = "PASS" if result.no_change <= TARGET_SECONDS else "FAIL"
    ratio_verdict = "PASS" if result.no_change_ratio <= TARGET_RATIO else "FAIL"
    print(f"\ntarget: no-change plan ≤ {TARGET_SECONDS:g} s — {seconds_verdict}")
    print(f"target: no-change plan ≤ {TARGET_RATIO:g}× validate — {ratio_verdict}")


# --- Profile ---------------------------------------------------------------------------------

# Stages of a no-change plan, as (label, file the function is in, function name); nested
# stages are part of the one above them.
_STAGES: tuple[tuple[str, str, str], ...] = (
    ("load the specs: validate", "reconciler/spec/__init__.py", "validate"),
    ("load the specs: bundle (content file digests)", "reconciler/spec/bundle.py", "bundle"),
    ("open the store (engine, schema check)", "reconciler/state/store.py", "open"),
    ("read every flow (SQL, JSON decode)", "reconciler/state/store.py", "flows"),
    ("read participant counts", "reconciler/state/store.py", "occupancy"),
    ("build_plan", "reconciler/plan.py", "build_plan"),
    ("  of which re-validating each stored spec (bundle_document)", "reconciler/spec/bundle.py", "bundle_document"),
    ("  of which diff_documents", "reconciler/diff.py", "diff_documents"),
    ("  of which content hashes (canonical JSON + SHA-256)", "reconciler/spec/bundle.py", "content_hash"),
)

_Stats = dict[tuple[str, int, str], tuple[int, int, float, float, Any]]


def _cumulative(stats: _Stats, file: str, function: str) -> float:
    return sum(cum for (f, _, name), (_, _, _, cum, _) in stats.items() if f.endswith(file) and name == function)


def profile_plan(root: Path, url: str, caches: Caches) -> None:
    cold(caches)
    profiler = cProfile.Profile()
    profiler.runcall(do_plan, root, url)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(PROFILE_TOP)
    print(f"\nprofile of one cold no-change plan, top {PROFILE_TOP} by cumulative time:")
    print(out.getvalue().split("\n", 2)[-1].rstrip())

    raw: _Stats = stats.stats  # type: ignore[attr-defined]
    total = _cumulative(raw, "benchmarks/plan.py", "do_plan")
    print(f"\nstages of the no-change plan, cumulative under the profiler (total {total:.3f} s):")
    top_level = 0.0
    for label, file, function in _STAGES:
        seconds = _cumulative(raw, file, function)
        if not label.startswith(" "):
            top_level += seconds
        print(f"  {seconds:8.3f} s  {100 * seconds / total:5.1f} %  {label}")
    rest = total - top_level
    print(f"  {rest:8.3f} s  {100 * rest / total:5.1f} %  rest (closing the store, bookkeeping)")


# --- Main ------------------------------------------------------------------------------------


def apply_all(root: Path, url: str) -> float:
    """Apply every flow to the empty database; seconds, loading the specs included."""
    start = time.perf_counter()
    bundles = load_desired([root], NO_SCRIPTS)
    store = Store.open(url)
    try:
        result = apply(store, bundles, clock=SystemClock(), options=ApplyOptions(actor="bench", lock_wait=timedelta(0)))
        seconds = time.perf_counter() - start
        if result.blocked or len(result.applied) != len(bundles):
            reasons = sorted({c.reason or "" for c in result.blocked})[:5]
            raise SystemExit(f"apply did not apply everything: {len(result.applied)} applied; {reasons}")
        if make_plan(store, bundles).has_changes:
            raise SystemExit("the plan right after apply is not empty: the numbers would mean nothing")
    finally:
        store.close()
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--profile", action="store_true", help="also run one no-change plan under cProfile")
    parser.add_argument("--flows", type=int, default=FLOWS, help=f"flows to generate (default {FLOWS})")
    parser.add_argument("--repeat", type=int, default=REPEAT, help=f"timed repetitions (default {REPEAT})")
    parser.add_argument(
        "--database-url",
        help="PostgreSQL to measure against (a fresh schema is made and dropped); default: SQLite in a temp dir",
    )
    args = parser.parse_args(argv)
    if args.flows < EDITED or args.repeat < 1:
        parser.error(f"--flows must be at least {EDITED} and --repeat at least 1")

    with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        files = write_repo(root, args.flows)
        edited = edit_copy(root, Path(tmp) / "edited", EDITED)
        print(f"generated {len(files):,} flows in {root} (seed {SEED}); {len(edited)} edited in a copy")
        specs = validate([root], known_scripts=NO_SCRIPTS)
        if specs.errors or len(specs.flows) != len(files):
            print(f"the generated flows do not validate ({len(specs.flows)} flows read)", file=sys.stderr)
            return 1

        with state_database(args.database_url, Path(tmp)) as url:
            print(f"state database: {describe(url)}")
            apply_seconds = apply_all(root, url)
            caches = spec_caches()  # after a validate and a plan: every module they use is imported
            cleared = ", ".join(f"{c.__module__}.{c.__qualname__}" for c in caches) or "none found"
            print(f"caches cleared before every repetition: {cleared}")
            result = run(root, Path(tmp) / "edited", url, args.repeat, caches, len(files), apply_seconds)
            print_table(result, args.repeat)
            if args.profile:
                profile_plan(root, url, caches)
    return 0


if __name__ == "__main__":
    sys.exit(main())
