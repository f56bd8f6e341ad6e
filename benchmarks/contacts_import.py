"""What does ``reconcile contacts import`` cost on top of merely reading the CSV?

What is measured: ``reconciler.crm.import_contacts`` end to end on a generated file
of 100,000 contacts (seeded, so every run imports the same file) — decoding,
``csv`` parsing, per-cell validation (e-mail addresses, booleans, numbers, dates,
lists, custom and company fields) and the upsert in batches of 1,000 inside one
transaction — into a fresh SQLite database, then once more over the same file
(every row found and unchanged: the re-import path). With ``--postgres`` the same
two runs go into a fresh schema of a PostgreSQL database.

The baseline, in the same run on the same file: ``csv.reader`` over the file,
parse only. No importer can be faster than that; the ratio import/baseline says
how much validation and the database add.

Memory: the import streams, so its peak RSS should not grow with the file. The
peak (``resource.getrusage``) is printed before the first import and after each
phase; it only ever grows, so the growth per phase is what the phase needed.

The numbers are printed, never judged: the exit status is non-zero only when the
import itself fails (then the numbers would mean nothing).

    .venv/bin/python benchmarks/contacts_import.py
    .venv/bin/python benchmarks/contacts_import.py --rows 20000 --postgres
"""

from __future__ import annotations

import argparse
import csv
import random
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy import create_engine, text

from reconciler.crm import import_contacts
from reconciler.state import Store

ROWS = 100_000
SEED = 42
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
T = TypeVar("T")

FIRST = [
    "Anna",
    "Erik",
    "Sara",
    "Johan",
    "Maria",
    "Per",
    "Karin",
    "Lars",
    "Ingrid",
    "Ola",
    "Mette",
    "Søren",
    "Aino",
    "Mikko",
    "Åsa",
]
LAST = [
    "Lindqvist",
    "Johansson",
    "Nilsson",
    "Berg",
    "Eklund",
    "Haugen",
    "Jensen",
    "Virtanen",
    "Korhonen",
    "Ström",
    "Dahl",
]
TITLES = ["CEO", "CTO", "Marknadschef", "Head of Marketing", "Sales Manager", "Utvecklare", "Inköpsansvarig", ""]
COUNTRIES = ["SE", "NO", "DK", "FI"]
CATEGORIES = ["lead", "prospect", "customer"]
INTERESTS = ["crm", "webinars", "pricing", "marketing-automation", "email-marketing"]
HEADER = [
    "email",
    "first_name",
    "last_name",
    "title",
    "mobile",
    "company",
    "category",
    "country",
    "consent_marketing",
    "interests",
    "score",
    "birth_date",
    "our_contact",
    "company.employees",
    "tier",
]


def generate(path: Path, rows: int, seed: int) -> None:
    """A realistic-looking file: ~2% of cells empty, 2,000 companies, one custom field."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        for i in range(rows):
            company = rng.randrange(2000)
            writer.writerow(
                [
                    f"contact{i}@company{company}.example",
                    rng.choice(FIRST),
                    rng.choice(LAST),
                    rng.choice(TITLES),
                    f"+4670{rng.randrange(10**7):07d}" if rng.random() < 0.6 else "",
                    f"Company {company} AB",
                    rng.choice(CATEGORIES),
                    rng.choice(COUNTRIES),
                    rng.choice(["true", "false", "ja", "nej"]),
                    ";".join(rng.sample(INTERESTS, rng.randrange(4))),
                    str(rng.randrange(100)) if rng.random() < 0.5 else "",
                    f"{rng.randrange(1950, 2000)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
                    rng.choice(["anna", "bo", ""]),
                    str(10 + company) if i % 50 == 0 else "",
                    rng.choice(["gold", "silver", "bronze"]),
                ]
            )


def peak_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def timed(function: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def baseline(path: Path) -> int:
    with path.open(encoding="utf-8", newline="") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


def bench_database(label: str, url: str, path: Path, rows: int, parse_seconds: float) -> None:
    store = Store.open(url)
    try:
        for run in ("import", "re-import"):
            seconds, result = timed(lambda: import_contacts(store, path, NOW))
            counts = result.summary()
            print(
                f"{label:<10} {run:<9} {seconds:8.2f} s {rows / seconds:10,.0f} rows/s "
                f"{seconds / parse_seconds:7.1f}x  peak RSS {peak_mb():7.1f} MB  ({counts})"
            )
    finally:
        store.close()


def postgres_schema(url: str) -> tuple[str, Callable[[], None]]:
    engine = create_engine(url)
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()

    return f"{url}?options=-csearch_path%3D{schema}", drop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--postgres", action="store_true", help="also import into a fresh PostgreSQL schema")
    parser.add_argument("--pg-url", default=PG_URL)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as tmp:
        path = Path(tmp) / "contacts.csv"
        generate(path, args.rows, args.seed)
        size = path.stat().st_size / (1024 * 1024)
        print(f"{args.rows:,} rows, {size:.1f} MB, seed {args.seed}; peak RSS before: {peak_mb():.1f} MB")
        print(f"{'target':<10} {'run':<9} {'time':>10} {'throughput':>17} {'ratio':>8}")
        parse_seconds, parsed = timed(lambda: baseline(path))
        print(
            f"{'baseline':<10} {'csv only':<9} {parse_seconds:8.2f} s {args.rows / parse_seconds:10,.0f} rows/s "
            f"{1.0:7.1f}x  peak RSS {peak_mb():7.1f} MB  ({parsed} rows parsed)"
        )
        try:
            bench_database("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", path, args.rows, parse_seconds)
            if args.postgres:
                url, drop = postgres_schema(args.pg_url)
                try:
                    bench_database("postgres", url, path, args.rows, parse_seconds)
                finally:
                    drop()
        except Exception as exc:  # the import failed: the numbers would mean nothing
            print(f"import failed: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
