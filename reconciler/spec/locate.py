"""Map a path inside a document (``spec.steps[3].subject``) to a line and column.

The fast loader (libyaml through ruamel's C parser) keeps no positions. Only when a
document has something to report do we compose its file again with the pure-Python
composer, whose nodes carry marks, and walk the path there. Valid files never pay
for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.events import CollectionEndEvent, CollectionStartEvent
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

PathPart = str | int
Path = tuple[PathPart, ...]


class Locator:
    """Positions of the nodes of one file's documents, composed on first use."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._docs: list[Node] | None = None

    def _documents(self) -> list[Node]:
        if self._docs is None:
            try:
                self._docs = list(YAML(typ="safe", pure=True).compose_all(self._text))
            except (YAMLError, RecursionError, ValueError):
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
        for i, part in enumerate(path):
            if isinstance(node, MappingNode):
                found = _entry(node, part)
                if found is None:
                    continue
                if key and i == len(path) - 1:
                    return _position(found[0])
                node = found[1]
            elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
                node = node.value[part]
        return _position(node)


def _entry(node: MappingNode, part: PathPart) -> tuple[Node, Node] | None:
    wanted = str(part)
    for key_node, value_node in node.value:
        if isinstance(key_node, ScalarNode) and key_node.value == wanted:
            return key_node, value_node
    return None


def _position(node: Any) -> tuple[int, int]:
    mark = node.start_mark
    return (mark.line + 1, mark.column + 1)


def nesting_position(text: str, limit: int) -> tuple[int, int] | None:
    """Where collections first nest deeper than ``limit``, scanning parser events
    (iterative, unlike composing) and stopping right there."""
    depth = 0
    try:
        for event in YAML(typ="safe", pure=True).parse(text):
            if isinstance(event, CollectionStartEvent):
                depth += 1
                if depth > limit:
                    return (event.start_mark.line + 1, event.start_mark.column + 1)
            elif isinstance(event, CollectionEndEvent):
                depth -= 1
    except (YAMLError, ValueError):
        return None
    return None
