"""Shared fixtures: a spec repo in a temp dir, and flow documents to build on."""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

MINIMAL: dict[str, Any] = {
    "apiVersion": "reconciler/v1",
    "kind": "Flow",
    "metadata": {"name": "demo"},
    "spec": {
        "triggers": [{"type": "manual"}],
        "steps": [{"id": "pause", "type": "wait", "duration": "1d"}, {"id": "done", "type": "finish"}],
    },
}


def flow_doc(name: str = "demo", *, steps: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    """A valid flow document; ``steps`` and spec keys override the minimal one."""
    doc = copy.deepcopy(MINIMAL)
    doc["metadata"]["name"] = name
    if steps is not None:
        doc["spec"]["steps"] = steps
    doc["spec"].update(spec)
    return doc


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """An empty spec repository: reconciler.toml marks the root."""
    (tmp_path / "reconciler.toml").write_text("")
    (tmp_path / "specs").mkdir()
    return tmp_path


@pytest.fixture
def write_spec(repo: Path) -> Callable[..., Path]:
    """Write a spec file under repo/specs from YAML text or from documents."""

    def write(name: str, content: str | dict[str, Any] | list[dict[str, Any]]) -> Path:
        path = repo / "specs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(textwrap.dedent(content))
        else:
            yaml = YAML(typ="safe", pure=True)
            yaml.default_flow_style = False
            docs = content if isinstance(content, list) else [content]
            with path.open("w") as handle:
                yaml.dump_all(docs, handle)
        return path

    return write
