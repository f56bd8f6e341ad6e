"""The step graph of one flow: where each step can lead.

Steps run in order unless a step names ``next``; a split leads to each branch's
``next`` (or the following step); ``finish`` and exiting branches lead nowhere.
Checks use this for unreachable steps and for loops that would spin without a wait.
"""

from __future__ import annotations

from collections.abc import Sequence
from graphlib import CycleError, TopologicalSorter

from reconciler.spec.steps import WAIT_TYPES, Finish, Split, Step


def successors(steps: Sequence[Step]) -> dict[str, list[str]]:
    ids = [s.id for s in steps]
    following = {sid: (ids[i + 1] if i + 1 < len(ids) else None) for i, sid in enumerate(ids)}
    out: dict[str, list[str]] = {}
    for step in steps:
        targets: list[str | None]
        if isinstance(step, Finish):
            targets = []
        elif isinstance(step, Split):
            targets = [None if b.exit else (b.next or following[step.id]) for b in step.branches]
        else:
            targets = [step.next or following[step.id]]
        out.setdefault(step.id, [])
        out[step.id].extend(t for t in dict.fromkeys(targets) if t is not None and t in following)
    return out


def unreachable(steps: Sequence[Step]) -> list[str]:
    if not steps:
        return []
    graph = successors(steps)
    seen = {steps[0].id}
    todo = [steps[0].id]
    while todo:
        for target in graph.get(todo.pop(), []):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return [s.id for s in steps if s.id not in seen]


def cycle_without_wait(steps: Sequence[Step]) -> list[str] | None:
    """A loop of steps none of which waits, as [a, b, …, a]; None when there is none."""
    waits = {s.id for s in steps if s.type in WAIT_TYPES}
    sorter: TopologicalSorter[str] = TopologicalSorter()
    for source, targets in successors(steps).items():
        if source in waits:
            continue
        sorter.add(source)
        for target in targets:
            if target not in waits:
                sorter.add(target, source)
    try:
        sorter.prepare()
    except CycleError as exc:
        cycle = list(exc.args[1])
        return list(reversed(cycle))
    return None
