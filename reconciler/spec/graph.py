"""The compiled step graph of one flow: every way a participant can move.

One graph serves everyone who needs to know what a flow *does*: ``validate``
(unreachable steps, loops that would spin without a wait), plan's participant impact
(who will still reach an edited step), the Mermaid diagram a reviewer approves, and the
executor, which takes exactly these edges and no others. Keeping them on one structure
is what makes the picture in the pull request the flow that runs.

Edges: a step goes to its ``next`` (or the step below it); a split to each branch's
``next`` (or the step below it); ``wait_for_action`` goes on when the action comes or
the timeout passes; a step that can drop the participant out (an exiting branch, a
timeout with ``on_timeout: exit``, an SMS step with ``on_missing_mobile: exit``) has an
edge out of the flow; ``finish`` ends the flow, handing off to another flow when it says
so; the last step without ``next`` ends the flow too. With ``finish_immediately``
success criteria, a participant whose criterion is met is moved from wherever it is to
its finish step (``success_finish``), as the vendor's "moved directly to Finish" does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from graphlib import CycleError, TopologicalSorter

from reconciler.spec.models import Flow
from reconciler.spec.steps import WAIT_TYPES, Finish, SendSms, Split, Step, WaitForAction


class EdgeKind(StrEnum):
    NEXT = "next"  # the step is done; the following (or named) step
    BRANCH = "branch"  # a split's branch
    ACTION = "action"  # wait_for_action: the awaited action came
    TIMEOUT = "timeout"  # wait_for_action: the timeout passed
    EXIT = "exit"  # drops out of the flow
    END = "end"  # the flow ends after the last step (no finish step)
    FINISH = "finish"  # a finish step


@dataclass(frozen=True, slots=True)
class Edge:
    kind: EdgeKind
    target: str | None  # a step id; None: out of the flow
    label: str | None = None  # branch name, "timeout", "no mobile", "success", …
    handoff: str | None = None  # the flow the participant is added to on this way out


@dataclass(frozen=True)
class FlowGraph:
    order: tuple[str, ...]
    steps: dict[str, Step]
    edges: dict[str, tuple[Edge, ...]]
    next_step: dict[str, str | None]  # where a step that is done goes: ``next``, else the step below
    finish_on_success: bool = False  # success criteria with finish_immediately
    _success: dict[str, str | None] = field(default_factory=dict, compare=False, repr=False)
    _branches: dict[str, dict[str, Edge]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for sid, step in self.steps.items():
            if isinstance(step, Split):
                self._branches[sid] = {e.label or "": e for e in self.edges[sid]}

    @property
    def first(self) -> str | None:
        return self.order[0] if self.order else None

    def successors(self, step_id: str) -> list[str]:
        """The steps a participant on ``step_id`` can go to next (in edge order, once each)."""
        return list(dict.fromkeys(e.target for e in self.edges.get(step_id, ()) if e.target in self.steps))

    def branch(self, split_id: str, name: str) -> Edge:
        """The edge of a split's branch (looked up per participant: a dict, built once)."""
        return self._branches[split_id][name]

    def reachable_from(self, starts: Iterable[str | None], *, stop: str | None = None) -> set[str]:
        """Every step reachable from ``starts`` (themselves included), not walking past ``stop``."""
        seen = {s for s in starts if s is not None and s != stop}
        todo = list(seen)
        while todo:
            for target in self.successors(todo.pop()):
                if target not in seen and target != stop:
                    seen.add(target)
                    todo.append(target)
        return seen

    def unreachable(self) -> list[str]:
        seen = self.reachable_from([self.first])
        if self.finish_on_success:  # a met criterion moves a participant to its finish step
            seen |= {target for sid in seen if (target := self.success_finish(sid)) is not None}
        return [sid for sid in self.order if sid not in seen]

    def leads_to(self, target: str) -> set[str]:
        """The steps from which ``target`` can still be reached (``target`` itself excluded
        unless a loop comes back to it)."""
        reverse: dict[str, set[str]] = {}
        for source in self.order:
            for successor in self.successors(source):
                reverse.setdefault(successor, set()).add(source)
        seen: set[str] = set()
        todo = [target]
        while todo:
            for source in reverse.get(todo.pop(), ()):
                if source not in seen:
                    seen.add(source)
                    todo.append(source)
        return seen

    def success_finish(self, step_id: str) -> str | None:
        """The finish step a participant on ``step_id`` is moved to when its success
        criterion is met (``finish_immediately``): the nearest finish step ahead of it,
        else the flow's first finish step; None when the flow has none."""
        if step_id not in self._success:
            found = None
            todo, seen = [step_id], {step_id}
            while todo and found is None:  # breadth first: the nearest
                nxt = []
                for sid in todo:
                    if isinstance(self.steps.get(sid), Finish):
                        found = sid
                        break
                    nxt += [t for t in self.successors(sid) if t not in seen]
                    seen.update(nxt)
                todo = nxt
            if found is None:
                found = next((sid for sid in self.order if isinstance(self.steps[sid], Finish)), None)
            self._success[step_id] = found
        return self._success[step_id]

    def can_move(self, source: str, target: str) -> bool:
        """Is ``source`` → ``target`` a move the graph allows (an edge or a success jump)?"""
        if target in self.successors(source):
            return True
        return self.finish_on_success and self.success_finish(source) == target

    def cycle_without_wait(self) -> list[str] | None:
        """A loop of steps none of which waits, as [a, b, …, a]; None when there is none."""
        waits = {sid for sid, step in self.steps.items() if step.type in WAIT_TYPES}
        sorter: TopologicalSorter[str] = TopologicalSorter()
        for source in self.order:
            if source in waits:
                continue
            sorter.add(source)
            for target in self.successors(source):
                if target not in waits:
                    sorter.add(target, source)
        try:
            sorter.prepare()
        except CycleError as exc:
            return list(reversed(exc.args[1]))
        return None


def compile_graph(steps: Sequence[Step], *, finish_on_success: bool = False) -> FlowGraph:
    """The graph of a flow's steps. A target that names no step stays on its edge but is
    no successor (``validate`` reports it; the executor fails a participant taking it)."""
    ids = tuple(s.id for s in steps)
    following = dict(zip(ids, [*ids[1:], None], strict=True))
    edges: dict[str, tuple[Edge, ...]] = {}
    for step in steps:
        out: list[Edge] = []
        if isinstance(step, Finish):
            out.append(Edge(EdgeKind.FINISH, None, "success", step.on_success.add_to_flow if step.on_success else None))
            no = step.on_no_success
            out.append(Edge(EdgeKind.FINISH, None, "no success", no.add_to_flow if no else None))
        elif isinstance(step, Split):
            for b in step.branches:
                if b.exit:
                    then = b.after_exit
                    out.append(Edge(EdgeKind.EXIT, None, b.name, then.add_to_flow if then else None))
                else:
                    target = b.next or following[step.id]
                    out.append(Edge(EdgeKind.BRANCH, target, b.name) if target else Edge(EdgeKind.END, None, b.name))
        else:
            target = step.next or following[step.id]
            if isinstance(step, WaitForAction):
                out.append(Edge(EdgeKind.ACTION, target, "action") if target else Edge(EdgeKind.END, None, "action"))
                if step.on_timeout == "exit":
                    then = step.after_exit
                    out.append(Edge(EdgeKind.EXIT, None, "timeout", then.add_to_flow if then else None))
                elif target:
                    out.append(Edge(EdgeKind.TIMEOUT, target, "timeout"))
            else:
                out.append(Edge(EdgeKind.NEXT, target) if target else Edge(EdgeKind.END, None))
            if isinstance(step, SendSms) and step.on_missing_mobile == "exit":
                then = step.after_exit
                out.append(Edge(EdgeKind.EXIT, None, "no mobile", then.add_to_flow if then else None))
        edges[step.id] = tuple(out)
    steps_by_id = {s.id: s for s in steps}
    next_step = {s.id: getattr(s, "next", None) or following[s.id] for s in steps}  # None: the flow ends
    return FlowGraph(ids, steps_by_id, edges, next_step, finish_on_success)


def flow_graph(flow: Flow) -> FlowGraph:
    """The graph of a parsed flow (success criteria decide whether success jumps to finish)."""
    criteria = flow.spec.success_criteria
    return compile_graph(flow.spec.steps, finish_on_success=bool(criteria and criteria.finish_immediately))
