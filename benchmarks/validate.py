"""How much does ``reconcile validate`` cost on top of merely parsing the YAML?

What is measured: ``reconciler.spec.validate([repo], known_scripts=frozenset())``
end to end — finding the spec files, reading and decoding them, the libyaml (C)
parse, the hostile-input guards, pydantic model validation and every semantic
check (step graph, merge fields through Jinja2, content files on disk, start
readiness) — on a generated repository of 1,000 valid flows of about ten steps
each, one flow per file, sharing a ``content/`` folder of HTML e-mails.

The baseline, measured in the same run on the same files: read each file, decode
it and ``YAML(typ="safe", pure=False).load_all`` it into a list with one reused
YAML instance (the C parser, as the loader's fast path). That is the floor: no
validator can be faster than reading its input. The ratio validate/baseline says
how much the models and checks add; the target is at most 3×.

Why this way: both sides run in one process on the same files, alternating, five
timed repetitions each after a warm-up, and the medians are compared, so machine
speed and noise mostly cancel out. Every validate repetition is cold: all
``functools`` caches in ``reconciler.spec`` (merge-field parses, e-mail addresses,
time zones, any cached file contents) are cleared before it, as for a fresh
``reconcile validate`` process. Flows are valid and warning-free on purpose: a
diagnostic makes the loader re-parse its file with the round-trip loader to find
the line, which is the slow path for broken files, not what CI runs on every push.

The exit status is non-zero only when the generated flows do not validate (then the
numbers would mean nothing); a ratio over target is printed, never fatal, because
timings on shared machines are noisy.

    .venv/bin/python benchmarks/validate.py             # the table
    .venv/bin/python benchmarks/validate.py --profile   # plus where validate spends its time
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import gc
import io
import pstats
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from ruamel.yaml import YAML

from reconciler.spec import SpecSet, validate

FLOWS = 1000
REPEAT = 5
TARGET_RATIO = 3.0
SEED = 42
PROFILE_TOP = 25

# --- Generating a repository of valid flows ------------------------------------------

Doc = dict[str, Any]

_ADJECTIVES = (
    "spring",
    "autumn",
    "nordic",
    "premium",
    "trial",
    "webinar",
    "partner",
    "renewal",
    "event",
    "onboarding",
    "winback",
    "loyalty",
)
_NOUNS = ("nurture", "welcome", "follow-up", "campaign", "journey", "reminder", "upsell", "survey", "invite", "digest")
_FORMS = ("webinar-signup", "demo-request", "newsletter-signup", "contact-us", "event-registration", "trial-signup")
_LINKS = ("pricing-page", "case-study", "product-tour", "book-a-demo", "whitepaper", "event-agenda")
_SELECTIONS = ("Webinar attendees", "Hot leads", "Newsletter", "Customers SE", "Trial users", "Event guests")
_PROJECTS = ("Spring launch", "Nordic roadshow", "Partner summit")
_COMPANIES = (("Acme", "acme.se"), ("Nordvik", "nordvik.no"), ("Solberg AB", "solberg.se"), ("Kettu Oy", "kettu.fi"))
_ZONES = ("Europe/Stockholm", "Europe/Oslo", "Europe/Helsinki", "Europe/Copenhagen", "Europe/Berlin")

_SUBJECTS = (
    "Welcome, {{ contact.first_name }}",
    "{{ contact.first_name }}, your seat at {{ flow.name }} is waiting",
    "News for {{ company.name }} this month",
    "Still interested, {{ contact.first_name }}?",
    "Your trial at {{ company.name }} ends soon",
    "{% if contact.first_name %}Hi {{ contact.first_name }}{% else %}Hello{% endif %}, one more thing",
    "Three ideas for {{ company.name }}",
    "Thanks for joining us",
)
_SMS_TEXTS = (
    "Hi {{ contact.first_name }}, see you tomorrow at 10:00!",
    "{{ contact.first_name }}, your trial ends in 3 days. Reply STOP to opt out.",
    "Thanks for visiting our stand, {{ contact.first_name }}!",
)
_FIELD_CONDITIONS: tuple[Doc, ...] = (
    {"field": "country", "op": "equals", "value": "SE"},
    {"field": "country", "op": "in", "value": ["NO", "DK", "FI"]},
    {"field": "score", "op": "gte", "value": 50},
    {"field": "category", "op": "in", "value": ["Customer", "Partner"]},
    {"field": "consent_marketing", "op": "equals", "value": True},
    {"field": "interests", "op": "contains", "value": "webinars"},
    {"field": "company.employees", "op": "gt", "value": 100},
    {"field": "city", "op": "is_set"},
    {"field": "custom.lead_source", "op": "equals", "value": "webinar"},
)
_UPDATES: tuple[Doc, ...] = (
    {"field": "score", "action": "increase", "value": 10},
    {"field": "category", "action": "set", "value": "Lead"},
    {"field": "interests", "action": "add", "value": ["product-news"]},
    {"field": "consent_marketing", "action": "set", "value": True},
    {"field": "custom.lead_source", "action": "set", "value": "flow {{ flow.name }}"},
    {"field": "title", "action": "clear"},
)

_CONTENT = {
    "welcome.html": "Welcome aboard, {{ contact.first_name }}!",
    "newsletter.html": "What is new at {{ company.name }} this month",
    "reminder.html": "A friendly reminder, {{ contact.first_name }}",
    "offer.html": "{% if contact.company %}An offer for {{ contact.company }}{% else %}An offer for you{% endif %}",
}
_CONTENT_BODY = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 600px; margin: auto">
  <h1>{headline}</h1>
  <p>Hi {{{{ contact.first_name }}}},</p>
  {paragraphs}
  <p>Best regards,<br>{{{{ flow.owner }}}}</p>
  <hr>
  <p style="font-size: 11px">You get this because {{{{ contact.email }}}} subscribes to
  our news. <a href="{{{{ unsubscribe_url }}}}">Unsubscribe</a>.</p>
</body>
</html>
"""
_PARAGRAPH = (
    "  <p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud "
    "exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat.</p>"
)

# Step types in the middle of a flow, with how often they occur relative to each other.
_BODY_WEIGHTS = {
    "send_email": 4,
    "wait": 4,
    "wait_for_action": 1,
    "split": 1,
    "update_contact": 2,
    "add_to_selection": 1,
    "create_follow_up": 1,
    "notify_email": 1,
    "send_sms": 1,
}


def _flow_name(rng: random.Random, number: int) -> str:
    return f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}-{number:04d}"


def _sample(rng: random.Random, population: Sequence[Doc], k: int) -> list[Doc]:
    """Fresh copies, so that the dumper writes no YAML anchors and aliases."""
    return copy.deepcopy(rng.sample(population, k))


def _trigger(rng: random.Random) -> Doc:
    kind = rng.choice(("form_submitted", "link_clicked", "added_to_selection", "contact_created", "contact_updated"))
    if kind == "form_submitted":
        return {"type": kind, "form": rng.choice(_FORMS)}
    if kind == "link_clicked":
        return {"type": kind, "link": rng.choice(_LINKS)}
    if kind == "added_to_selection":
        return {"type": kind, "selection": rng.choice(_SELECTIONS)}
    if kind == "contact_updated":
        return {"type": kind, "fields": rng.sample(["category", "score", "interests", "company.category"], 2)}
    return {"type": kind}


def _step(rng: random.Random, kind: str, step_id: str, later_ids: Sequence[str], emails: Sequence[str]) -> Doc:
    """One step of ``kind``; ``later_ids`` are the steps after it (split targets),
    ``emails`` the ids of the send_email steps before it."""
    step: Doc = {"id": step_id, "type": kind}
    if rng.random() < 0.3:
        step["name"] = step_id.replace("-", " ").capitalize()
    if kind == "send_email":
        step["subject"] = rng.choice(_SUBJECTS)
        step["content"] = f"content/{rng.choice(sorted(_CONTENT))}"
    elif kind == "wait":
        step["duration"] = rng.choice(("12h", "1d", "2d", "3d", "1w", "1w2d", "90m"))
    elif kind == "wait_for_action":
        action = {"form_submitted": rng.choice(_FORMS)} if rng.random() < 0.5 else {"link_clicked": rng.choice(_LINKS)}
        step["actions"] = [action]
        step["timeout"] = rng.choice(("3d", "1w", "2w"))
        if rng.random() < 0.3:
            step["on_timeout"] = "exit"
            step["after_exit"] = {"add_to_selection": rng.choice(_SELECTIONS)}
    elif kind == "split":
        branches: list[Doc] = []
        for number, condition in enumerate(_sample(rng, _FIELD_CONDITIONS, rng.randint(1, 2)), start=1):
            when: Doc = condition
            if rng.random() < 0.25:
                when = {"all": [condition, {"field": "consent_marketing", "op": "equals", "value": True}]}
            branch: Doc = {"name": f"branch {number}", "when": when}
            if rng.random() < 0.2:
                branch["exit"] = True
            else:
                branch["next"] = rng.choice(later_ids)
            branches.append(branch)
        if emails and rng.random() < 0.2:
            step["based_on"] = "link_clicked"
            branches = [{"name": "clicked", "when": {"link": rng.choice(_LINKS), "email": emails[-1]}}]
        step["branches"] = branches
    elif kind == "update_contact":
        step["updates"] = _sample(rng, _UPDATES, rng.randint(1, 3))
    elif kind == "add_to_selection":
        step["selection"] = rng.choice(_SELECTIONS)
        if rng.random() < 0.3:
            step["project"] = rng.choice(_PROJECTS)
    elif kind == "create_follow_up":
        step["title"] = "Call {{ contact.first_name }} at {{ company.name }}"
        step["follow_up_type"] = rng.choice(("Phone call", "Meeting", "To-do"))
        step["due"] = (
            {"in": rng.choice(("1d", "2d", "1w")), "working_days": True}
            if rng.random() < 0.7
            else {"first_available": {"after": "1d", "length": "30m"}}
        )
        step["agenda"] = "Follow up on {{ flow.name }}"
    elif kind == "notify_email":
        step["to"] = rng.choice(("our_contact", "our_support_manager", "sales@acme.se"))
        step["subject"] = "New lead: {{ contact.full_name }} ({{ company.name }})"
        step["message"] = "{{ contact.full_name }} reached step {{ flow.name }}; score {{ contact.score }}."
    elif kind == "send_sms":
        step["text"] = rng.choice(_SMS_TEXTS)
    elif kind != "finish":
        raise AssertionError(f"no generator for step type {kind!r}")
    return step


def _steps(rng: random.Random, others: Sequence[str]) -> list[Doc]:
    """8 to 12 steps, ending in finish. Targets only point forward, so every step is
    reachable (splits fall through to the next step) and there are no loops."""
    count = rng.randint(8, 12)
    kinds = ["send_email", "wait", "split"]
    kinds += rng.choices(list(_BODY_WEIGHTS), weights=list(_BODY_WEIGHTS.values()), k=count - 1 - len(kinds))
    rng.shuffle(kinds)
    kinds.append("finish")
    ids = [f"{kind.replace('_', '-')}-{i + 1}" for i, kind in enumerate(kinds)]
    steps: list[Doc] = []
    for i, (kind, step_id) in enumerate(zip(kinds, ids, strict=True)):
        emails = [s["id"] for s in steps if s["type"] == "send_email"]
        steps.append(_step(rng, kind, step_id, ids[i + 1 :], emails))
    if rng.random() < 0.3:
        steps[-1]["on_success"] = {"add_to_flow": rng.choice(others)}
    return steps


def _flow(rng: random.Random, name: str, others: Sequence[str]) -> Doc:
    company, domain = rng.choice(_COMPANIES)
    settings: Doc = {
        "email": {
            "sender": {"name": company, "address": f"news@{domain}"},
            "reply_to": rng.choice(("sender", f"help@{domain}")),
        },
        "sms": {"sender": company.split()[0][:11], "default_region": "SE"},
    }
    if rng.random() < 0.4:
        settings["email"]["subscription"] = "Newsletter"
        settings["email"]["analytics"] = {"source": "flow", "campaign": name}
    if rng.random() < 0.3:
        settings["sending_window"] = {"days": "mon-fri", "from": "08:00", "to": "18:00"}
    if rng.random() < 0.2:
        settings["remove_from_flows"] = [rng.choice(others)]
    spec: Doc = {
        "status": rng.choices(("running", "paused", "not_running"), weights=(7, 2, 1))[0],
        "owner": rng.choice(("Anna Berg", "Lars Nilsson", "Marketing")),
        "timezone": rng.choice(_ZONES),
        "settings": settings,
        "triggers": [_trigger(rng) for _ in range(rng.randint(1, 2))],
    }
    if rng.random() < 0.4:
        spec["enrollment"] = {
            "once_only": rng.random() < 0.8,
            "filter": {"all": _sample(rng, _FIELD_CONDITIONS, 2)},
        }
    if rng.random() < 0.3:
        spec["success_criteria"] = {"criteria": [{"type": "form_submitted", "form": rng.choice(_FORMS)}]}
    spec["steps"] = _steps(rng, others)
    if rng.random() < 0.3:
        waits = [s for s in spec["steps"] if s["type"] == "wait"]
        waits[0].pop("duration")
        waits[0]["until"] = datetime(2026, rng.randint(1, 12), rng.randint(1, 28), 9, 0)
    return {
        "apiVersion": "reconciler/v1",
        "kind": "Flow",
        "metadata": {
            "name": name,
            "description": f"{name.split('-', maxsplit=1)[0].capitalize()} flow for {company}, generated by benchmarks/validate.py",
            "labels": {"team": rng.choice(("marketing", "sales", "success"))},
        },
        "spec": spec,
    }


def write_repo(root: Path, flows: int, seed: int = SEED) -> list[Path]:
    """A spec repository at ``root``: ``reconciler.toml``, ``content/*.html`` and
    ``flow-0001.yaml`` … one flow each. Returns the flow files, sorted."""
    rng = random.Random(seed)
    (root / "reconciler.toml").write_text("")
    content = root / "content"
    content.mkdir()
    for filename, headline in _CONTENT.items():
        paragraphs = "\n".join(_PARAGRAPH for _ in range(rng.randint(3, 8)))
        body = _CONTENT_BODY.format(title=filename.removesuffix(".html"), headline=headline, paragraphs=paragraphs)
        (content / filename).write_text(body)
    names = [_flow_name(rng, n) for n in range(1, flows + 1)]
    dumper = YAML(typ="rt")  # block style, keys in insertion order
    dumper.width = 4096
    dumper.indent(mapping=2, sequence=4, offset=2)
    files: list[Path] = []
    for number, name in enumerate(names, start=1):
        others = [n for n in rng.sample(names, min(3, len(names))) if n != name] or [name]
        out = io.StringIO()
        out.write("# yaml-language-server: $schema=../schemas/flow.schema.json\n")
        dumper.dump(_flow(rng, name, others), out)
        file = root / f"flow-{number:04d}.yaml"
        file.write_text(out.getvalue(), encoding="utf-8")
        files.append(file)
    return files


# --- What is timed ---------------------------------------------------------------------


_BASELINE_YAML = YAML(typ="safe", pure=False)


def c_parser_in_use() -> bool:
    try:
        from ruamel.yaml.clib._ruamel_yaml import CParser
    except ImportError:
        return False
    return _BASELINE_YAML.Parser is CParser


def bare_parse(files: Sequence[Path]) -> int:
    """The floor: read, decode and C-parse every file, as the loader's fast path does."""
    documents = 0
    for file in files:
        text = file.read_bytes().decode("utf-8-sig")
        documents += len(list(_BASELINE_YAML.load_all(text)))
    return documents


class _Cache(Protocol):
    __qualname__: str
    __module__: str

    def cache_clear(self) -> None: ...


def spec_caches() -> list[_Cache]:
    """Every ``functools.lru_cache``/``cache`` wrapper defined in a loaded
    ``reconciler.spec`` module, at module level or on a class there.

    Call it after one validate of the same files: by then every module validate
    uses is imported, including any imported lazily."""
    prefix = "reconciler.spec"
    found: dict[int, _Cache] = {}

    def candidates(namespace: dict[str, Any]) -> Iterator[Any]:
        for value in namespace.values():
            yield value
            if isinstance(value, type):
                yield from vars(value).values()

    modules = [m for name, m in list(sys.modules.items()) if name == prefix or name.startswith(f"{prefix}.")]
    for module in modules:
        for obj in candidates(vars(module)):
            func = getattr(obj, "__func__", obj)  # staticmethod / classmethod
            if (
                callable(getattr(func, "cache_clear", None))
                and callable(getattr(func, "cache_info", None))
                and str(getattr(func, "__module__", "")).startswith(prefix)
            ):
                found[id(func)] = func
    return sorted(found.values(), key=lambda f: (f.__module__, f.__qualname__))


def cold_validate(root: Path, caches: Sequence[_Cache]) -> tuple[float, SpecSet]:
    """One validate with every spec cache cleared first; (seconds, result)."""
    for cache in caches:
        cache.cache_clear()
    gc.collect()
    start = time.perf_counter()
    specs = validate([root], known_scripts=frozenset())
    return time.perf_counter() - start, specs


def timed_baseline(files: Sequence[Path]) -> float:
    gc.collect()
    start = time.perf_counter()
    bare_parse(files)
    return time.perf_counter() - start


# --- Profile ---------------------------------------------------------------------------

# Stages of validate, as (label, file the function is in, function name); nested
# stages are part of the one above them.
_STAGES: tuple[tuple[str, str, str], ...] = (
    ("find spec files and repo roots", "reconciler/spec/loader.py", "find_spec_files"),
    ("YAML parse (C parser + ruamel constructor)", "reconciler/spec/loader.py", "_parse"),
    ("hostile-input guards: nesting bound", "reconciler/spec/loader.py", "_nesting_bound"),
    ("hostile-input guards: shape walk", "reconciler/spec/loader.py", "_check_shape"),
    ("pydantic model validation", "pydantic/main.py", "model_validate"),
    ("locating (round-trip re-parse)", "reconciler/spec/locate.py", "_documents"),
    ("semantic checks", "reconciler/spec/checks.py", "check_specs"),
    ("  of which content and attachment files", "reconciler/spec/checks.py", "_files"),
    ("  of which merge fields (Jinja2)", "reconciler/spec/templates.py", "template_problems"),
    ("  of which step graph", "reconciler/spec/checks.py", "_graph"),
)

_Stats = dict[tuple[str, int, str], tuple[int, int, float, float, Any]]


def _cumulative(stats: _Stats, file: str, function: str) -> float:
    return sum(cum for (f, _, name), (_, _, _, cum, _) in stats.items() if f.endswith(file) and name == function)


def gc_seconds(root: Path, caches: Sequence[_Cache]) -> tuple[float, float, int]:
    """(seconds in the cyclic garbage collector, seconds in all, collections) during
    one cold, unprofiled validate: time cProfile cannot attribute to any function."""
    started: list[float] = []
    spent: list[float] = []

    def on_gc(phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            spent.append(time.perf_counter() - started.pop())

    gc.callbacks.append(on_gc)
    try:
        total, _ = cold_validate(root, caches)
    finally:
        gc.callbacks.remove(on_gc)
    return sum(spent), total, len(spent)


def profile_validate(root: Path, caches: Sequence[_Cache]) -> None:
    """Run one cold validate under cProfile; print the top functions and the stages."""
    for cache in caches:
        cache.cache_clear()
    profiler = cProfile.Profile()
    profiler.runcall(validate, [root], known_scripts=frozenset())
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(PROFILE_TOP)
    print(f"\nprofile of one cold validate, top {PROFILE_TOP} by cumulative time:")
    print(out.getvalue().split("\n", 2)[-1].rstrip())

    raw: _Stats = stats.stats  # type: ignore[attr-defined]
    total = _cumulative(raw, "reconciler/spec/__init__.py", "validate")
    print(
        f"\nstages of validate, cumulative under the profiler (total {total:.3f} s; cProfile inflates pure-Python code most):"
    )
    top_level = 0.0
    for label, file, function in _STAGES:
        seconds = _cumulative(raw, file, function)
        if not label.startswith(" "):
            top_level += seconds
        print(f"  {seconds:8.3f} s  {100 * seconds / total:5.1f} %  {label}")
    rest = total - top_level
    print(
        f"  {rest:8.3f} s  {100 * rest / total:5.1f} %  rest of the loader (stat, read, decode, resolve, display_path, bookkeeping)"
    )

    collector, wall, collections = gc_seconds(root, caches)
    print(
        f"\ncyclic garbage collector during one unprofiled cold validate: {collector:.3f} s of {wall:.3f} s "
        f"({100 * collector / wall:.0f} %, {collections} collections; not visible to cProfile)"
    )


# --- Main ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    files: int
    total_bytes: int
    baseline: float
    validate: float

    @property
    def ratio(self) -> float:
        return self.validate / self.baseline


def run(root: Path, files: Sequence[Path], repeat: int, caches: Sequence[_Cache]) -> Result:
    timed_baseline(files)  # warm-up: imports, page cache, pydantic and jinja first use
    cold_validate(root, caches)
    baseline: list[float] = []
    validated: list[float] = []
    for _ in range(repeat):
        baseline.append(timed_baseline(files))
        seconds, specs = cold_validate(root, caches)
        validated.append(seconds)
        if specs.errors or len(specs.flows) != len(files):  # checked outside the timing
            raise AssertionError(f"validate changed its mind: {len(specs.errors)} errors, {len(specs.flows)} flows")
    return Result(
        files=len(files),
        total_bytes=sum(f.stat().st_size for f in files),
        baseline=statistics.median(baseline),
        validate=statistics.median(validated),
    )


def print_table(result: Result, repeat: int) -> None:
    rows = (
        ("files", f"{result.files:,}"),
        ("total bytes", f"{result.total_bytes:,}"),
        (f"baseline median (s, n={repeat})", f"{result.baseline:.3f}"),
        (f"validate median (s, n={repeat})", f"{result.validate:.3f}"),
        ("ratio validate/baseline", f"{result.ratio:.2f}×"),
    )
    width = max(len(label) for label, _ in rows)
    print()
    for label, value in rows:
        print(f"  {label:<{width}}  {value:>12}")
    verdict = "PASS" if result.ratio <= TARGET_RATIO else "FAIL"
    print(f"\ntarget: validate ≤ {TARGET_RATIO:.1f}× bare parse — {verdict}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--profile", action="store_true", help="also run validate once under cProfile")
    parser.add_argument("--flows", type=int, default=FLOWS, help=f"flows to generate (default {FLOWS})")
    parser.add_argument("--repeat", type=int, default=REPEAT, help=f"timed repetitions (default {REPEAT})")
    args = parser.parse_args(argv)
    if args.flows < 1 or args.repeat < 1:
        parser.error("--flows and --repeat must be at least 1")

    with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as tmp:
        root = Path(tmp)
        files = write_repo(root, args.flows)
        print(f"generated {len(files):,} flows in {root} (seed {SEED})")

        specs = validate([root], known_scripts=frozenset())
        if specs.errors or len(specs.flows) != len(files):
            print(f"the generated flows do not validate ({len(specs.flows)} flows read):", file=sys.stderr)
            for diagnostic in specs.sorted_diagnostics()[:20]:
                print(f"  {diagnostic}", file=sys.stderr)
            return 1
        warnings = len(specs.diagnostics) - len(specs.errors)
        print(f"validate: {len(specs.flows):,} flows, 0 errors, {warnings} warnings")
        if warnings:
            print("  (each file with a warning is re-parsed to locate it; that is timed too)")

        if not c_parser_in_use():
            print(f"baseline parser: {_BASELINE_YAML.Parser!r} — NOT the C parser, the ratio is not meaningful")
        else:
            parser_class = _BASELINE_YAML.Parser
            print(f"baseline parser: {parser_class.__module__}.{parser_class.__qualname__} (libyaml, C)")

        caches: list[_Cache] = spec_caches()
        cleared = ", ".join(f"{c.__module__}.{c.__qualname__}" for c in caches) or "none found"
        print(f"caches cleared before every validate repetition: {cleared}")

        result = run(root, files, args.repeat, caches)
        print_table(result, args.repeat)

        if args.profile:
            profile_validate(root, caches)
    return 0


if __name__ == "__main__":
    sys.exit(main())
