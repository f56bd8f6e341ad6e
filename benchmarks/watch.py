"""How fast does ``reconcile watch`` apply a saved spec, and what does it cost when idle?

What is measured, on a generated spec repository of 50 small flows (``--flows``) plus
one paused flow ``bench`` that is edited, with the state in SQLite:

* save → applied: the daemon runs as a real process (``python -m reconciler.cli watch``)
  with its defaults (debounce 300 ms, executor round every second, drift check every
  minute). Fifty times (``--edits``) the benchmark rewrites ``specs/bench.yaml`` with a
  new wait duration, as an editor saves it, and polls the ``flows`` table (every 5 ms,
  with its own read-only connection) until the new revision is there; only then, after
  a random pause of 0-1 s (``--think``, seeded), comes the next edit. The pause puts the
  saves at random moments of the daemon's one-second round, as a person's saves would
  be; back to back, every save would land just after a round and measure the worst
  case. The latency runs from just before the write to the moment the revision is seen.
  The daemon's JSON log says when its file watcher saw each save, which splits the
  latency into "noticed" (watchfiles and its debounce) and the rest (waiting for the
  next round, then load, plan and apply).
* idle CPU: after the edits and a short settling pause, the daemon's user + system CPU
  time (``/proc/<pid>/stat``, every thread) over 10 s (``--idle``) without edits, as a
  percentage of one core.

The baseline, in the same run on the same repository and database, after the daemon
was stopped: the same edit applied by a plain ``reconcile apply`` process (``--baseline``
times), from the save to the process's exit — what a cron job or a CI step would pay.
The ratio daemon/CLI shows what a warm process that watches the files buys.

Targets are printed as PASS/FAIL lines and never fatal (timings on shared machines are
noisy): median save → applied ≤ 1 s with the default debounce; idle CPU < 2 % of one
core. The exit status is non-zero only when an edit is never applied or the daemon does
not start (then the numbers would mean nothing).

    .venv/bin/python benchmarks/watch.py
    .venv/bin/python benchmarks/watch.py --edits 20 --idle 5
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from common import verdict
from sqlalchemy import Engine, create_engine, select

from reconciler.state import Store
from reconciler.state import tables as t

FLOWS = 50
EDITS = 50
IDLE_S = 10.0
SETTLE_S = 1.5
BASELINE = 5
TARGET_MEDIAN_S = 1.0
TARGET_IDLE_CPU = 2.0  # percent of one core
DEADLINE_S = 30.0  # an edit not applied by then: the daemon is broken, not slow
POLL_S = 0.005
THINK_S = 1.0  # random pause before each edit: up to one daemon round
SEED = 42
EDITED = "bench"


def flow_text(name: str, *, days: int, status: str = "paused") -> str:
    """A small valid flow; ``days`` is the wait the edits change."""
    return (
        "apiVersion: reconciler/v1\n"
        "kind: Flow\n"
        "metadata:\n"
        f"  name: {name}\n"
        f"  description: Benchmark flow {name}\n"
        "spec:\n"
        f"  status: {status}\n"
        "  triggers:\n"
        "    - type: form_submitted\n"
        f"      form: {name}-signup\n"
        "  steps:\n"
        "    - id: tag\n"
        "      type: update_contact\n"
        "      updates:\n"
        "        - {field: category, action: set, value: lead}\n"
        "    - id: pause\n"
        "      type: wait\n"
        f"      duration: {days}d\n"
        "    - id: route\n"
        "      type: split\n"
        "      branches:\n"
        "        - {name: se, when: {field: country, op: equals, value: SE}, next: done}\n"
        "        - {name: everyone_else, next: done}\n"
        "    - id: done\n"
        "      type: finish\n"
    )


def make_repo(root: Path, flows: int) -> Path:
    (root / "reconciler.toml").write_text("")
    specs = root / "specs"
    specs.mkdir()
    for number in range(flows):
        status = ("running", "paused", "not_running")[number % 3]
        (specs / f"flow-{number:03d}.yaml").write_text(flow_text(f"flow-{number:03d}", days=1, status=status))
    (specs / f"{EDITED}.yaml").write_text(flow_text(EDITED, days=1))
    return specs


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env["RECONCILER_ACTOR"] = "benchmark"
    return env


def command(url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "reconciler.cli", "--database-url", url, *args]


def revision(engine: Engine) -> int | None:
    with engine.connect() as connection:
        value = connection.execute(select(t.flows.c.revision).where(t.flows.c.name == EDITED)).scalar()
    return int(value) if value is not None else None


def wait_for_revision(engine: Engine, expected: int, process: subprocess.Popen[bytes] | None) -> float:
    """Poll until the edited flow has ``expected`` as its revision; returns when it was seen."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        if revision(engine) == expected:
            return time.monotonic()
        if process is not None and process.poll() is not None:
            raise SystemExit(f"the daemon exited with {process.returncode} while an edit was pending")
        if time.monotonic() > deadline:
            raise SystemExit(f"revision {expected} of {EDITED!r} was not applied within {DEADLINE_S:.0f} s")
        time.sleep(POLL_S)


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, every thread, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of the whole line
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(fraction * (len(ordered) - 1))))
    return ordered[index]


@dataclass(frozen=True)
class Edit:
    saved_wall: float  # time.time() at the save, to match the daemon's log
    latency: float  # save → revision seen, seconds


@dataclass(frozen=True)
class DaemonRun:
    edits: list[Edit]
    noticed: list[float]  # save → the watcher logged "specs changed", seconds
    startup: float
    idle_cpu_percent: float
    idle_window: float
    stop_seconds: float
    exit_code: int


def log_entries(path: Path) -> list[dict[str, Any]]:
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


def noticed_after(edits: list[Edit], entries: list[dict[str, Any]]) -> list[float]:
    """For each save, how long until the daemon logged that the specs changed."""
    seen = sorted(datetime.fromisoformat(e["ts"]).timestamp() for e in entries if e.get("msg") == "specs changed")
    delays = []
    for edit in edits:
        later = [s for s in seen if s >= edit.saved_wall - 0.002]
        if later:
            delays.append(max(later[0] - edit.saved_wall, 0.0))
    return delays


def run_daemon(url: str, repo: Path, specs: Path, edits: int, idle: float, think: float, engine: Engine) -> DaemonRun:
    port = free_port()
    log_path = repo / "watch.log"
    started = time.monotonic()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command(url, "watch", "specs", "--log-format", "json", "--metrics-port", str(port)),
            cwd=repo,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env(),
        )
        try:
            deadline = time.monotonic() + DEADLINE_S
            while not ready(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the daemon did not become ready:\n" + log_path.read_text()[-3000:])
                time.sleep(0.02)
            startup = time.monotonic() - started
            current = revision(engine)
            assert current is not None
            time.sleep(SETTLE_S)  # the first round's executor and drift work
            done: list[Edit] = []
            pauses = random.Random(SEED)
            for number in range(edits):
                time.sleep(pauses.uniform(0.0, think))
                text = flow_text(EDITED, days=number + 2)
                saved_wall, saved = time.time(), time.monotonic()
                (specs / f"{EDITED}.yaml").write_text(text)
                seen = wait_for_revision(engine, current + 1, process)
                current += 1
                done.append(Edit(saved_wall, seen - saved))
            time.sleep(SETTLE_S)
            before, window_start = cpu_seconds(process.pid), time.monotonic()
            time.sleep(idle)
            after, window = cpu_seconds(process.pid), time.monotonic() - window_start
            stopping = time.monotonic()
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=DEADLINE_S)
            stop_seconds = time.monotonic() - stopping
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    return DaemonRun(
        done,
        noticed_after(done, log_entries(log_path)),
        startup,
        100.0 * (after - before) / window,
        window,
        stop_seconds,
        code,
    )


def run_cli(url: str, repo: Path, specs: Path, times: int, engine: Engine, first_days: int) -> list[float]:
    """The same edit applied by a plain ``reconcile apply`` process, save to exit."""
    latencies = []
    current = revision(engine)
    assert current is not None
    for number in range(times):
        text = flow_text(EDITED, days=first_days + number)
        saved = time.monotonic()
        (specs / f"{EDITED}.yaml").write_text(text)
        done = subprocess.run(
            command(url, "apply", "specs", "--lock-timeout", "0"),
            cwd=repo,
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=DEADLINE_S,
            check=False,
        )
        finished = time.monotonic()
        if done.returncode != 0:
            raise SystemExit(f"reconcile apply failed:\n{done.stdout}{done.stderr}")
        current += 1
        if revision(engine) != current:
            raise SystemExit("reconcile apply did not apply the edit")
        latencies.append(finished - saved)
    return latencies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", type=int, default=FLOWS, help="flows in the repository besides the edited one")
    parser.add_argument("--edits", type=int, default=EDITS)
    parser.add_argument("--idle", type=float, default=IDLE_S, help="seconds of idle CPU measurement")
    parser.add_argument("--baseline", type=int, default=BASELINE, help="plain `reconcile apply` runs")
    parser.add_argument("--think", type=float, default=THINK_S, help="random pause before each edit, 0 to this (s)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="reconcile-watch-bench-") as directory:
        repo = Path(directory)
        specs = make_repo(repo, args.flows)
        url = f"sqlite:///{repo / 'state.db'}"
        Store.open(url).close()  # the schema, before the daemon starts
        engine = create_engine(url)
        try:
            daemon = run_daemon(url, repo, specs, args.edits, args.idle, args.think, engine)
            cli = run_cli(url, repo, specs, args.baseline, engine, first_days=args.edits + 2)
        finally:
            engine.dispose()

    latencies = [e.latency for e in daemon.edits]
    median, p95 = statistics.median(latencies), percentile(latencies, 0.95)
    cli_median = statistics.median(cli)
    print(
        f"repository: {args.flows + 1} flows, SQLite; daemon defaults (debounce 300 ms, round every 1 s); "
        f"edits at random moments (0-{args.think:g} s apart)"
    )
    print(
        f"daemon start to ready: {daemon.startup:.2f} s; stop on SIGTERM: {daemon.stop_seconds:.2f} s, exit {daemon.exit_code}"
    )
    print()
    print(f"{'save → applied':<36} {'n':>4} {'median':>8} {'p95':>8} {'min':>8} {'max':>8}")
    rows = [("reconcile watch", latencies), ("plain `reconcile apply` (baseline)", cli)]
    if len(daemon.noticed) == len(latencies):
        rest = [total - noticed for total, noticed in zip(latencies, daemon.noticed, strict=True)]
        rows[1:1] = [("  noticed by the watcher", daemon.noticed), ("  then: next round, load, plan, apply", rest)]
    for name, values in rows:
        print(
            f"{name:<36} {len(values):>4} {statistics.median(values):>7.3f}s {percentile(values, 0.95):>7.3f}s "
            f"{min(values):>7.3f}s {max(values):>7.3f}s"
        )
    print(f"ratio watch/CLI (medians): {median / cli_median:.2f}")
    print(f"idle CPU over {daemon.idle_window:.1f} s: {daemon.idle_cpu_percent:.2f} % of one core")
    print()
    verdict(
        median <= TARGET_MEDIAN_S,
        f"median save → applied {median:.3f} s (target ≤ {TARGET_MEDIAN_S:.0f} s); p95 {p95:.3f} s",
    )
    verdict(
        daemon.idle_cpu_percent < TARGET_IDLE_CPU,
        f"idle CPU {daemon.idle_cpu_percent:.2f} % of one core (target < {TARGET_IDLE_CPU:.0f} %)",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
