"""Merge fields: Jinja2 templates in subjects, texts and content files.

At validate time a template must parse and may only name variables we will have
when rendering: ``contact.*``, ``company.*``, ``flow.*`` (and ``unsubscribe_url``
in e-mail). Rendering happens in the same sandbox with ``StrictUndefined``, so a
value missing at send time is a per-participant error, never an empty greeting.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment

from reconciler.spec.fields import COMPANY_FIELDS, CONTACT_FIELDS, FLOW_VARIABLES

ENVIRONMENT = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_ROOTS: dict[str, frozenset[str]] = {
    "contact": frozenset(CONTACT_FIELDS) | {"custom", "company"},
    "company": frozenset(COMPANY_FIELDS) | {"custom"},
    "flow": FLOW_VARIABLES,
}
EMAIL_ONLY = frozenset({"unsubscribe_url"})
_MARKERS = ("{{", "{%", "{#")


def has_template(text: str) -> bool:
    return any(marker in text for marker in _MARKERS)


@lru_cache(maxsize=8192)
def template_problems(text: str, email: bool = False) -> tuple[tuple[int, str], ...]:
    """(line within the text, message) for every problem; empty when fine."""
    if not has_template(text):
        return ()
    try:
        tree = ENVIRONMENT.parse(text)
    except TemplateSyntaxError as exc:
        return ((exc.lineno, f"merge field syntax error: {exc.message}"),)
    except RecursionError:
        return ((1, "merge field is nested too deeply"),)
    return tuple(_references(tree, email))


def _references(tree: nodes.Template, email: bool) -> Iterator[tuple[int, str]]:
    declared = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    allowed_roots = set(_ROOTS) | (EMAIL_ONLY if email else set())
    for name in tree.find_all(nodes.Name):
        if name.ctx != "load" or name.name in declared:
            continue
        if name.name not in allowed_roots:
            yield (
                name.lineno,
                f"unknown merge field {name.name!r}; use "
                + ", ".join(f"{root}.*" for root in _ROOTS)
                + (", unsubscribe_url" if email else ""),
            )
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, (nodes.Getattr, nodes.Getitem))
        base = node.node
        attr = _attribute(node)
        if not isinstance(base, nodes.Name) or base.name in declared or attr is None:
            continue
        known = _ROOTS.get(base.name)
        if known is not None and attr not in known:
            yield (node.lineno, f"unknown merge field '{base.name}.{attr}'; known: {', '.join(sorted(known))}")


def _attribute(node: nodes.Getattr | nodes.Getitem) -> str | None:
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return node.arg.value
    return None
