"""Map a path inside a document (``spec.steps[3].subject``) to a line and column.

The fast loader (libyaml through ruamel's C parser) keeps no positions. Only when a
document has something to report do we parse its file again with the round-trip
loader, which records them, and walk the path there. Valid files never pay for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

PathPart = str | int
Path = tuple[PathPart, ...]


class Locator:
    """Positions of the nodes of one file's documents, parsed on first use."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._docs: list[Any] | None = None

    def _documents(self) -> list[Any]:
        if self._docs is None:
            try:
                self._docs = list(YAML(typ="rt").load_all(self._text))
            except (YAMLError, RecursionError, ValueError):  # pragma: no cover - the fast path already reported it
                self._docs = []
        return self._docs

    def locate(self, doc_index: int, path: Sequence[PathPart], *, key: bool = False) -> tuple[int, int]:
        """1-based (line, col) of the node at ``path``; of the key itself when ``key``.

        Path parts that are not in the data (the tag pydantic adds for a union member)
        are skipped; a missing key points at the mapping that lacks it.
        """
        docs = self._documents()
        if doc_index >= len(docs):
            return (1, 1)
        node = docs[doc_index]
        line, col = _position(node)
        for i, part in enumerate(path):
            last = i == len(path) - 1
            if isinstance(node, CommentedMap) and part in node:
                if last and key:
                    return (node.lc.key(part)[0] + 1, node.lc.key(part)[1] + 1)
                line, col = node.lc.value(part)
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
                line, col = node.lc.item(part)
                node = node[part]
            else:
                continue
            if isinstance(node, (CommentedMap, CommentedSeq)):
                line, col = _position(node, (line, col))
        return (line + 1, col + 1)


def _position(node: Any, default: tuple[int, int] = (0, 0)) -> tuple[int, int]:
    lc = getattr(node, "lc", None)
    if lc is None or lc.line is None:
        return default
    return (lc.line, lc.col)


def format_path(path: Sequence[PathPart]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
