"""Desired state for plan, apply and drift: validated specs, bundled with their files."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from reconciler.errors import SpecError
from reconciler.gitinfo import GitState, git_state
from reconciler.spec import no_cyclic_gc, validate
from reconciler.spec.bundle import FlowBundle, bundle


def load_desired(paths: Iterable[Path], known_scripts: frozenset[str] | None) -> list[FlowBundle]:
    """Every flow under ``paths``, or SpecError with all the diagnostics when any is invalid."""
    with no_cyclic_gc():
        specs = validate(paths, known_scripts)
        if specs.errors:
            raise SpecError(specs.sorted_diagnostics())
        return [bundle(loaded) for loaded in specs.flows]


def source_state(paths: Sequence[Path], bundles: Iterable[FlowBundle]) -> GitState:
    """The commit the specs under ``paths`` come from, and which of them (or of the content
    and attachment files the bundles name) differ from it."""
    return git_state(paths, [ref.path for flow in bundles for ref in flow.files.values()])
