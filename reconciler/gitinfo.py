"""Which git commit the specs came from, and whether the applied files are that commit.

The history must not claim a commit the applied specs did not come from. So the commit
(``HEAD``, a bare sha) and the dirty flag are two facts: the flag says whether any
applied file (spec files and the content and attachment files they name) differs from
``HEAD`` — modified, staged, deleted, new and untracked, or ignored. Outside a git
checkout both are ``None``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.errors import UserError


@dataclass(frozen=True)
class GitState:
    """``commit`` is HEAD's bare sha (None outside git); ``changed`` lists the paths, relative
    to the work tree's top, that differ from it; ``dirty`` is None outside git."""

    commit: str | None
    changed: tuple[str, ...] = ()

    @property
    def dirty(self) -> bool | None:
        return None if self.commit is None else bool(self.changed)


class UncommittedChanges(UserError):
    """``--require-clean`` and the applied files differ from the commit."""


def _git(directory: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            ["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None


def git_state(
    paths: Sequence[Path], files: Iterable[Path] = (), suffixes: tuple[str, ...] = (".yaml", ".yml")
) -> GitState:
    """The commit of the work tree holding ``paths[0]``, and which spec files under ``paths``
    (directories or files; only names ending in ``suffixes`` count: a stray ``notes.txt`` is
    not applied) and which of ``files`` differ from it. Paths outside that work tree are not
    looked at."""
    if not paths:
        return GitState(None)
    first = paths[0].resolve()
    directory = first if first.is_dir() else first.parent
    top = _git(directory, "rev-parse", "--show-toplevel")
    head = _git(directory, "rev-parse", "--verify", "HEAD")
    if top is None or head is None or top.returncode != 0 or head.returncode != 0:
        return GitState(None)
    root = Path(top.stdout.strip()).resolve()
    files = list(files)
    inside: list[str] = []
    named: set[str] = set()
    for path in [*paths, *files]:
        try:
            relative = path.resolve().relative_to(root).as_posix()
        except ValueError:
            continue
        inside.append(relative or ".")
        if path.is_file() or path in files:
            named.add(relative)
    changed: tuple[str, ...] = ()
    if inside:
        status = _git(
            root, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignored=matching", "--", *inside
        )
        if status is None or status.returncode != 0:
            return GitState(head.stdout.strip(), ("(git status failed)",))
        changed = tuple(p for p in _paths(status.stdout) if p in named or p.endswith(suffixes))
    return GitState(head.stdout.strip(), changed)


def _paths(porcelain: str) -> tuple[str, ...]:
    """The paths of ``git status --porcelain=v1 -z`` (a rename's source entry dropped)."""
    entries = porcelain.split("\0")
    found: list[str] = []
    index = 0
    while index < len(entries):
        entry = entries[index]
        index += 1
        if len(entry) < 4:
            continue
        found.append(entry[3:])
        if entry[0] in "RC":
            index += 1  # -z puts the rename's source in the next entry
    return tuple(sorted(set(found)))


def refuse_unclean(state: GitState) -> None:
    """Refuse (exit 1) when the applied files differ from the commit, naming them, or when
    there is no commit to compare with (outside a git checkout)."""
    if state.commit is None:
        raise UncommittedChanges("--require-clean: the specs are not in a git checkout with a commit")
    if state.changed:
        listed = ", ".join(state.changed[:20]) + (
            f" and {len(state.changed) - 20} more" if len(state.changed) > 20 else ""
        )
        raise UncommittedChanges(
            f"--require-clean: the specs have uncommitted or untracked changes ({listed}); commit them first"
        )
