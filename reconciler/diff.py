"""Field-level differences between two flow documents.

Steps are matched by ``id`` and split branches by ``name``, not by list index, so
reordering shows as a move and an insertion does not rewrite every later step.
Paths read like ``spec.steps[welcome].subject``. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_MISSING: Any = object()
# Lists whose items are matched by a key instead of by position.
_KEYED_LISTS = {"steps": "id", "branches": "name"}


@dataclass(frozen=True)
class DiffEntry:
    """One difference: ``before`` is None for an addition, ``after`` None for a removal."""

    path: str
    before: Any
    after: Any


def diff_documents(
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    before_files: dict[str, str] | None = None,
    after_files: dict[str, str] | None = None,
) -> list[DiffEntry]:
    entries: list[DiffEntry] = []
    _diff(before if before is not None else _MISSING, after if after is not None else _MISSING, "", entries)
    old, new = before_files or {}, after_files or {}
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            entries.append(DiffEntry(f"files[{name}]", _short(old.get(name)), _short(new.get(name))))
    return entries


def _short(digest: str | None) -> str | None:
    return f"sha256:{digest[:12]}" if digest else None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _diff(before: Any, after: Any, path: str, out: list[DiffEntry]) -> None:
    if before is _MISSING or after is _MISSING:
        if before is not after:
            out.append(DiffEntry(path, None if before is _MISSING else before, None if after is _MISSING else after))
        return
    if isinstance(before, dict) and isinstance(after, dict):
        for key in _ordered_keys(before, after):
            _diff(before.get(key, _MISSING), after.get(key, _MISSING), _join(path, key), out)
        return
    key_field = _KEYED_LISTS.get(path.rsplit(".", 1)[-1].split("[", maxsplit=1)[0])
    if key_field and _keyed(before, key_field) and _keyed(after, key_field):
        _diff_keyed(before, after, path, key_field, out)
        return
    if before != after:
        out.append(DiffEntry(path, before, after))


def _ordered_keys(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys([*before, *after]))


def _keyed(items: Any, key_field: str) -> bool:
    if not isinstance(items, list) or not all(isinstance(i, dict) and key_field in i for i in items):
        return False
    keys = [i[key_field] for i in items]
    return len(set(keys)) == len(keys)


def _diff_keyed(before: list[Any], after: list[Any], path: str, key_field: str, out: list[DiffEntry]) -> None:
    old = {item[key_field]: (i, item) for i, item in enumerate(before)}
    new = {item[key_field]: (i, item) for i, item in enumerate(after)}
    moved = moved_keys([i[key_field] for i in before], [i[key_field] for i in after])
    for key in dict.fromkeys([*old, *new]):
        item_path = f"{path}[{key}]"
        if key not in old or key not in new:
            out.append(DiffEntry(item_path, old[key][1] if key in old else None, new[key][1] if key in new else None))
            continue
        if key in moved:
            out.append(DiffEntry(f"{item_path}.position", old[key][0] + 1, new[key][0] + 1))
        _diff(old[key][1], new[key][1], item_path, out)


def moved_keys(before: list[str], after: list[str]) -> set[str]:
    """Keys present in both orders that are not on a longest common subsequence:
    the ones a person moved (an insertion elsewhere moves nothing)."""
    common = set(before) & set(after)
    a = [k for k in before if k in common]
    b = [k for k in after if k in common]
    lengths = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) - 1, -1, -1):
        for j in range(len(b) - 1, -1, -1):
            lengths[i][j] = lengths[i + 1][j + 1] + 1 if a[i] == b[j] else max(lengths[i + 1][j], lengths[i][j + 1])
    kept: set[str] = set()
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i] == b[j]:
            kept.add(a[i])
            i += 1
            j += 1
        elif lengths[i + 1][j] >= lengths[i][j + 1]:
            i += 1
        else:
            j += 1
    return common - kept
