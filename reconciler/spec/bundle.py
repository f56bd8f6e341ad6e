"""A flow as it gets applied: its document plus the files its steps name.

The applied state must not depend on what is on disk later: an edit to
``content/welcome.html`` is a change to the flow even when the YAML is untouched,
and the executor must send what was applied. So a bundle carries the SHA-256 of
every content and attachment file, and the content hash of a flow covers both.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from reconciler.spec.loader import LoadedFlow
from reconciler.spec.models import Flow
from reconciler.spec.steps import SendEmail


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_hash(document: dict[str, Any], files: dict[str, str]) -> str:
    """The identity of an applied flow: its document and its files' hashes."""
    payload = canonical_json({"spec": document, "files": files})
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class FileRef:
    """A file a step names, as written in the spec, with its digest."""

    name: str
    sha256: str
    size: int
    path: Path


@dataclass(frozen=True)
class FlowBundle:
    flow: Flow
    document: dict[str, Any]
    files: dict[str, FileRef] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.flow.name

    @cached_property
    def file_digests(self) -> dict[str, str]:
        return {name: ref.sha256 for name, ref in sorted(self.files.items())}

    @cached_property
    def content_hash(self) -> str:
        return content_hash(self.document, self.file_digests)


def step_files(flow: Flow) -> Iterator[str]:
    """Every file name the flow's steps refer to, in step order."""
    for step in flow.spec.steps:
        yield from step_files_of(step)


def step_files_of(step: object) -> list[str]:
    if not isinstance(step, SendEmail):
        return []
    return [step.content, *([step.text_content] if step.text_content else []), *step.attachments]


def bundle(loaded: LoadedFlow) -> FlowBundle:
    """Bundle a flow that passed validation (its files exist and are inside the repo)."""
    files: dict[str, FileRef] = {}
    for name in step_files(loaded.flow):
        if name not in files:
            path = (loaded.source.base_dir / name).resolve()
            stat = path.stat()
            digest = _digest(path, stat.st_mtime_ns, stat.st_size)
            files[name] = FileRef(name, digest, stat.st_size, path)
    return FlowBundle(loaded.flow, loaded.flow.to_document(), files)


def bundle_document(document: dict[str, Any], files: dict[str, str]) -> FlowBundle:
    """A bundle rebuilt from stored state (its files live in the database)."""
    flow = Flow.model_validate(document)
    refs = {name: FileRef(name, digest, 0, Path(name)) for name, digest in files.items()}
    return FlowBundle(flow, document, refs)


@lru_cache(maxsize=4096)
def _digest(path: Path, mtime_ns: int, size: int) -> str:
    del mtime_ns, size  # part of the cache key: a changed file is read again
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
