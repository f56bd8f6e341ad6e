"""Read spec files into ``Flow`` models, with every error located at FILE:LINE:COL.

Fast path: libyaml (ruamel's C parser) builds plain data and pydantic validates it.
Positions are looked up only for documents that have something to report (see
``locate``). Hostile input is stopped before it can hurt: a size cap, strict UTF-8,
a nesting bound checked before the C parser sees the text (its composer recurses
in C and would crash the process), and an expansion budget that defuses alias bombs
before pydantic walks the data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError

from reconciler.errors import Diagnostic, Location, Severity, UserError
from reconciler.spec.locate import Locator, PathPart, nesting_position
from reconciler.spec.models import Flow

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 40
MAX_NODES = 100_000
# Above this many possible nesting levels the text goes to the pure-Python parser,
# which fails cleanly (RecursionError) where the C composer would overflow its stack.
_C_PARSER_SAFE_NESTING = 2_000
SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Source:
    """Where a flow came from: the file, which document in it, and the repo root
    that its content and attachment paths must stay inside."""

    file: str
    path: Path
    doc_index: int
    root: Path

    @property
    def base_dir(self) -> Path:
        return self.path.parent


@dataclass(frozen=True)
class LoadedFlow:
    flow: Flow
    source: Source


@dataclass
class SpecSet:
    """The flows read from a set of paths, and everything found wrong on the way."""

    flows: list[LoadedFlow] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    _locators: dict[str, Locator] = field(default_factory=dict, repr=False)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    def location(self, source: Source, path: Sequence[PathPart], *, key: bool = False) -> Location:
        locator = self._locators.get(source.file)
        if locator is None:
            return Location(source.file)
        line, col = locator.locate(source.doc_index, path, key=key)
        return Location(source.file, line, col)

    def report(
        self,
        source: Source,
        path: Sequence[PathPart],
        message: str,
        severity: Severity = Severity.ERROR,
        *,
        key: bool = False,
    ) -> None:
        self.diagnostics.append(Diagnostic(self.location(source, path, key=key), message, severity))

    def sorted_diagnostics(self) -> list[Diagnostic]:
        """Every finding once (a content file shared by steps is reported once), by place."""
        return sorted(dict.fromkeys(self.diagnostics), key=Diagnostic.sort_key)


def display_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def find_spec_files(paths: Iterable[Path]) -> list[tuple[Path, Path]]:
    """(file, root) for every spec file under ``paths``, in a stable order.

    The root is the nearest enclosing git work tree or directory holding a
    ``reconciler.toml``; failing both, the path the user named.
    """
    found: dict[Path, Path] = {}
    for given in paths:
        if not given.exists():
            raise UserError(f"{given}: no such file or directory")
        if given.is_dir():
            files = sorted(
                p
                for p in given.rglob("*")
                if p.suffix in SPEC_SUFFIXES
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(given).parts)
            )
            fallback_root = given
        else:
            files = [given]
            fallback_root = given.parent
        for file in files:
            found.setdefault(file, find_root(file.parent) or fallback_root)
    return [(f, r.resolve()) for f, r in found.items()]


def find_root(start: Path) -> Path | None:
    for directory in [start.resolve(), *start.resolve().parents]:
        if (directory / ".git").exists() or (directory / "reconciler.toml").exists():
            return directory
    return None


def load_specs(paths: Iterable[Path]) -> SpecSet:
    """Load every flow under ``paths``; problems go to ``SpecSet.diagnostics``."""
    specs = SpecSet()
    for file, root in find_spec_files(paths):
        _load_file(specs, file, root)
    return specs


def load_text(specs: SpecSet, text: str, file: str, root: Path) -> None:
    """Load flows from text already read (used by tests and the watch daemon)."""
    _load_documents(specs, text, Path(file).resolve(), file, root)


def _load_file(specs: SpecSet, file: Path, root: Path) -> None:
    name = display_path(file)
    try:
        size = file.stat().st_size
        if size > MAX_FILE_BYTES:
            specs.diagnostics.append(
                Diagnostic(Location(name), f"file is {size:,} bytes; spec files are limited to {MAX_FILE_BYTES:,}")
            )
            return
        raw = file.read_bytes()
    except OSError as exc:
        specs.diagnostics.append(Diagnostic(Location(name), f"cannot read file: {exc.strerror}"))
        return
    text = _decode(specs, raw, name)
    if text is not None:
        _load_documents(specs, text, file.resolve(), name, root)


def _decode(specs: SpecSet, raw: bytes, name: str) -> str | None:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", errors="replace")) + 1
        specs.diagnostics.append(
            Diagnostic(
                Location(name, line, col), f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save it as UTF-8"
            )
        )
        return None


def _yaml(pure: bool) -> YAML:
    yaml = YAML(typ="safe", pure=pure)
    yaml.allow_duplicate_keys = False
    return yaml


_FAST = _yaml(pure=False)


def _nesting_bound(text: str) -> int:
    """An upper bound on how deeply the text can nest collections: every flow
    level needs a bracket, every block level a column of indentation or an
    indicator on the line (so two levels per column at most)."""
    longest = max((len(line) for line in text.splitlines()), default=0)
    return text.count("[") + text.count("{") + 2 * longest


def _parse(specs: SpecSet, text: str, name: str) -> list[Any] | None:
    risky = _nesting_bound(text) > _C_PARSER_SAFE_NESTING
    try:
        return list((_yaml(pure=True) if risky else _FAST).load_all(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        location = Location(name, mark.line + 1, mark.column + 1) if mark else Location(name)
        problem = exc.problem or exc.context or "invalid YAML"
        if "duplicate key" in problem:
            problem = problem.split(" with value")[0]
        if "'\\t'" in problem or ("cannot start any token" in problem and "\t" in _line(text, mark)):
            problem += " (tabs are not allowed for indentation; use spaces)"
        specs.diagnostics.append(Diagnostic(location, f"invalid YAML: {problem}"))
    except ReaderError as exc:
        line, col = _offset_position(text, exc.position)
        specs.diagnostics.append(
            Diagnostic(
                Location(name, line, col),
                f"invalid YAML: control characters are not allowed (found {exc.character!r}); "
                "write them escaped in a double-quoted string",
            )
        )
    except RecursionError:
        specs.diagnostics.append(_too_deep(text, name))
    except ValueError as exc:
        match = _HUGE_NUMBER.search(text) if "digits" in str(exc) else None
        if match is not None:
            line, col = _offset_position(text, match.start())
            specs.diagnostics.append(Diagnostic(Location(name, line, col), "number has more than 4,300 digits"))
        else:
            specs.diagnostics.append(Diagnostic(Location(name), f"invalid YAML: {exc}"))
    except (YAMLError, TypeError) as exc:
        specs.diagnostics.append(Diagnostic(Location(name), f"invalid YAML: {str(exc).splitlines()[0]}"))
    return None


_HUGE_NUMBER = re.compile(r"[-+]?\d{4300,}")


def _too_deep(text: str, name: str) -> Diagnostic:
    where = nesting_position(text, MAX_DEPTH + 1)
    location = Location(name, *where) if where else Location(name)
    return Diagnostic(location, f"nested more than {MAX_DEPTH} levels deep")


def _offset_position(text: str, offset: int) -> tuple[int, int]:
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def _line(text: str, mark: Any) -> str:
    if mark is None:
        return ""
    lines = text.splitlines()
    return lines[mark.line] if 0 <= mark.line < len(lines) else ""


def _load_documents(specs: SpecSet, text: str, path: Path, name: str, root: Path) -> None:
    docs = _parse(specs, text, name)
    if docs is None:
        return
    specs._locators[name] = Locator(text)
    if all(doc is None for doc in docs):
        specs.diagnostics.append(Diagnostic(Location(name), "file has no documents (it is empty)"))
        return
    for index, data in enumerate(docs):
        if data is None:
            continue
        source = Source(name, path, index, root)
        problem = _check_shape(data)
        if problem is not None:
            message, where = problem
            deep = nesting_position(text, MAX_DEPTH + 1) if message.startswith("nested") else None
            if deep is not None:
                specs.diagnostics.append(Diagnostic(Location(name, *deep), message))
            else:  # an alias bomb or a recursive alias: deep only once expanded
                specs.report(source, where, message)
            continue
        if not isinstance(data, dict):
            specs.report(
                source,
                (),
                f"a document must be a mapping with apiVersion, kind, metadata and spec; found {type(data).__name__}",
            )
            continue
        try:
            flow = Flow.model_validate(data)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                path_, message, on_key = explain(error)
                specs.report(source, path_, message, key=on_key)
            continue
        specs.flows.append(LoadedFlow(flow, source))


def _check_shape(data: Any) -> tuple[str, tuple[PathPart, ...]] | None:
    """Bound the size and depth of the data as pydantic will see it (aliases
    expanded), without recursion."""
    stack: list[tuple[Any, tuple[PathPart, ...]]] = [(data, ())]
    seen = 0
    while stack:
        node, path = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            return (f"document expands to more than {MAX_NODES:,} values (an alias bomb?)", path)
        if len(path) > MAX_DEPTH:
            return (f"nested more than {MAX_DEPTH} levels deep", path)
        if isinstance(node, dict):
            stack.extend((v, (*path, k)) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, (*path, i)) for i, v in enumerate(node))
    return None


def explain(error: Any) -> tuple[tuple[PathPart, ...], str, bool]:
    """A pydantic error as (path in the document, message, whether it is about the key)."""
    loc: tuple[PathPart, ...] = tuple(error["loc"])
    kind = error["type"]
    message = str(error["msg"])
    if message.startswith(("Value error, ", "Assertion failed, ")):
        message = message.split(", ", 1)[1]
    if kind == "extra_forbidden":
        return loc, f"unknown key {loc[-1]!r}", True
    if kind == "missing":
        return loc[:-1], f"missing required key {loc[-1]!r}", False
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        return (
            (*loc, ctx.get("discriminator", "type").strip("'")),
            (f"unknown type {ctx.get('tag')!r}; expected one of {ctx.get('expected_tags')}"),
            False,
        )
    if kind in ("literal_error", "enum") and loc and isinstance(loc[-1], str):
        return loc, f"{loc[-1]}: {message}", False
    if kind == "union_tag_not_found":
        return loc, f"missing required key {error.get('ctx', {}).get('discriminator', 'type')}", False
    return loc, message, False


__all__ = ["LoadedFlow", "Source", "SpecSet", "find_spec_files", "load_specs", "load_text"]
