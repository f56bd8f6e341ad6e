"""A flow's step graph as a Mermaid ``flowchart``, for pull-request comments.

Reviewers read a flow's shape faster as a picture than as YAML: which branch of a
split leads where, where participants drop out, where they wait. GitHub renders
fenced ``mermaid`` blocks, so the Markdown plan embeds this text. The edges are those of
``reconciler.spec.graph`` (the graph the executor follows), with branch names. Pure: a Flow in, a string out.
"""

from __future__ import annotations

from reconciler.spec.graph import EdgeKind, flow_graph
from reconciler.spec.models import Flow
from reconciler.spec.steps import Finish, Split, Step

TRIGGER_NODE = "flow_trigger"
EXIT_NODE = "flow_exit"
# Characters that Mermaid would read as syntax, as its entity codes (``#` first).
_ENTITIES = {
    "#": "#35;",
    '"': "#quot;",
    "[": "#91;",
    "]": "#93;",
    "(": "#40;",
    ")": "#41;",
    "{": "#123;",
    "}": "#125;",
    "<": "#lt;",
    ">": "#gt;",
    "|": "#124;",
    "`": "#96;",
}


def escape_label(text: str) -> str:
    """Text that is safe inside a quoted Mermaid label or an edge label."""
    flat = " ".join(text.split())
    return "".join(_ENTITIES.get(ch, ch) for ch in flat)


def node_id(step_id: str) -> str:
    """A Mermaid node id for a step: prefixed (no keyword clashes), ``-`` → ``_``."""
    return "step_" + "".join(ch if ch.isalnum() else "_" for ch in step_id)


def _node(step: Step) -> str:
    label = f'"{escape_label(f"{step.id}: {step.type}")}"'
    if step.type in ("wait", "wait_for_action"):
        return f"{node_id(step.id)}([{label}])"
    if isinstance(step, Split):
        return f"{node_id(step.id)}{{{label}}}"
    if isinstance(step, Finish):
        return f"{node_id(step.id)}(({label}))"
    return f"{node_id(step.id)}[{label}]"


def _edge(source: str, target: str, label: str | None = None, *, dotted: bool = False) -> str:
    arrow = "-.->" if dotted else "-->"
    if label is None:
        return f"{source} {arrow} {target}"
    return f"{source} {arrow}|{escape_label(label)}| {target}"


def _edges(flow: Flow) -> tuple[list[str], bool]:
    """Edges between steps, and whether any of them leads to the drop-out node."""
    graph = flow_graph(flow)
    lines: list[str] = []
    exits = False
    for source_id, edges in graph.edges.items():
        source, drawn = node_id(source_id), set[tuple[str, str | None]]()
        for edge in edges:
            if edge.kind is EdgeKind.EXIT:
                # a split's exiting branch is a way of its own; a timeout or a missing mobile a side exit
                lines.append(_edge(source, EXIT_NODE, edge.label, dotted=edge.label in ("timeout", "no mobile")))
                exits = True
            elif edge.target in graph.steps:
                label = edge.label if edge.kind is EdgeKind.BRANCH else None
                if (edge.target, label) not in drawn:  # an action and a timeout going on: one arrow
                    drawn.add((edge.target, label))
                    lines.append(_edge(source, node_id(edge.target), label))
    return lines, exits


def flow_mermaid(flow: Flow) -> str:
    """The flow as ``flowchart TD``: triggers, one node per step, labelled edges."""
    steps = flow.spec.steps
    triggers = list(dict.fromkeys(t.type for t in flow.spec.triggers))
    trigger_label = "triggers: " + (", ".join(triggers) if triggers else "none")
    lines = ["flowchart TD", f'    {TRIGGER_NODE}{{{{"{escape_label(trigger_label)}"}}}}']
    lines.extend(f"    {_node(step)}" for step in steps)
    edges, exits = _edges(flow)
    if exits:
        lines.append(f'    {EXIT_NODE}(["drop out"])')
    if steps:
        lines.append(f"    {_edge(TRIGGER_NODE, node_id(steps[0].id))}")
    lines.extend(f"    {edge}" for edge in edges)
    return "\n".join(lines)
