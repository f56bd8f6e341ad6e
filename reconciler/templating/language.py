"""The merge-field language: what a template may say, checked on its parsed tree.

Merge fields are written in Jinja2 syntax, but only a small part of Jinja is ours:
printing a field (``{{ contact.first_name }}``), filters from an allow-list,
``{% if %}`` / ``{% elif %}`` / ``{% else %}`` with comparisons, ``and``/``or``/``not``
and the ``defined``/``none`` tests, literals, and ``~`` to join texts. Nothing can
loop, bind a name, call a function or compute: every construct that could make a
small template produce a huge text or burn CPU (``{{ 'x' * 10**9 }}``, ``lipsum()``,
nested ``for`` loops) is simply not in the language, and a name cannot be shadowed
because nothing can bind one.

``check`` walks the tree that ``jinja2`` parses (an allow-list of node types: any
node it does not know is refused) and returns every violation with its line, so
``validate`` can show them all at once. The renderer (``renderer.py``) runs ``check``
again before it compiles anything, and its sandbox refuses the same things at run
time. This module knows no field names: the caller passes them (``Names``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import cast

from jinja2 import Environment, TemplateSyntaxError, nodes

from reconciler.templating.filters import FILTERS, MAX_ARGUMENT_NUMBER, MAX_ARGUMENT_TEXT, TESTS, date_format_problem

__all__ = ["MAX_EXPRESSION_PARTS", "Names", "Violation", "check", "has_template", "parse"]

MARKERS = ("{{", "{%", "{#")
MAX_EXPRESSION_PARTS = 200  # nodes in one {{ … }} or {% if … %}: a join of a few fields, not of thousands
MAX_LIST_ITEMS = 100  # in a literal list, as in ``contact.country in ['SE', 'NO']``

_SYNTAX = Environment(autoescape=False)  # parsing only: the syntax is Jinja's, the meaning is checked here
_COMPARISONS = frozenset({"eq", "ne", "lt", "lteq", "gt", "gteq", "in", "notin"})
_ONLY_IF = "only {% if %}, {% elif %} and {% else %} are"
_STATEMENTS: dict[type[nodes.Node], tuple[str, str]] = {
    nodes.For: ("{% for %}", "merge fields have no loops"),
    nodes.Assign: ("{% set %}", "merge fields cannot name values"),
    nodes.AssignBlock: ("{% set %}", "merge fields cannot name values"),
    nodes.Macro: ("{% macro %}", _ONLY_IF),
    nodes.CallBlock: ("{% call %}", _ONLY_IF),
    nodes.FilterBlock: ("{% filter %}", "put the filter on the field: {{ contact.first_name | upper }}"),
    nodes.With: ("{% with %}", "merge fields cannot name values"),
    nodes.Include: ("{% include %}", "a template is one text or file"),
    nodes.Import: ("{% import %}", "a template is one text or file"),
    nodes.FromImport: ("{% from … import %}", "a template is one text or file"),
    nodes.Extends: ("{% extends %}", "a template is one text or file"),
    nodes.Block: ("{% block %}", "a template is one text or file"),
    nodes.Scope: ("{% autoescape %}", "HTML content is always escaped"),
    nodes.ScopedEvalContextModifier: ("{% autoescape %}", "HTML content is always escaped"),
    nodes.EvalContextModifier: ("{% autoescape %}", "HTML content is always escaped"),
}
_EXPRESSIONS: dict[type[nodes.Node], str] = {nodes.Dict: "a dict literal", nodes.Slice: "slicing"}
_GLOBALS = frozenset({"range", "lipsum", "cycler", "joiner", "namespace", "dict", "loop", "self", "caller", "varargs"})


@dataclass(frozen=True)
class Violation:
    """One thing a template may not say: its line (1-based, within the template) and why."""

    line: int
    message: str


@dataclass(frozen=True, eq=False)
class Names:
    """What a template may name. ``fields`` maps each variable that holds fields
    (``contact``) to the names of its fields; a dotted name in ``groups``
    (``contact.custom``) holds fields of any name; ``variables`` are plain values
    (``unsubscribe_url``). Compared by identity: build one per kind of text, once."""

    fields: Mapping[str, frozenset[str]]
    groups: frozenset[str] = frozenset()
    variables: frozenset[str] = frozenset()
    _hint: str = field(init=False, repr=False, default="")

    def __post_init__(self) -> None:
        hint = ", ".join([*(f"{root}.*" for root in self.fields), *sorted(self.variables)])
        object.__setattr__(self, "_hint", hint)

    def with_variables(self, *names: str) -> Names:
        return Names(self.fields, self.groups, self.variables | frozenset(names))

    def unknown(self, name: str) -> str:
        if name in _GLOBALS:
            return f"{name!r} is not a merge field (merge fields have no functions or globals); use {self._hint}"
        return f"unknown merge field {name!r}; use {self._hint}"


def has_template(text: str) -> bool:
    """Whether ``text`` has any merge-field syntax at all (most texts have none)."""
    return any(marker in text for marker in MARKERS)


def parse(source: str) -> nodes.Template | Violation:
    """The template's tree, or the one violation that its syntax is."""
    try:
        return _SYNTAX.parse(source)
    except TemplateSyntaxError as exc:
        return Violation(exc.lineno, f"merge field syntax error: {exc.message}")
    except RecursionError:
        return Violation(1, "merge field is nested too deeply")


def check(source: str | nodes.Template, names: Names) -> tuple[Violation, ...]:
    """Every violation of the merge-field language in ``source`` (text or a tree from
    ``parse``), in order; empty when the template is fine."""
    tree = parse(source) if isinstance(source, str) else source
    if isinstance(tree, Violation):
        return (tree,)
    try:
        return tuple(_Checker(names).template(tree))
    except RecursionError:
        return (Violation(1, "merge field is nested too deeply"),)


class _Checker:
    def __init__(self, names: Names) -> None:
        self.names = names
        self.parts = 0

    def template(self, tree: nodes.Template) -> Iterator[Violation]:
        yield from self.statements(tree.body)

    def statements(self, body: list[nodes.Node]) -> Iterator[Violation]:
        for node in body:
            if isinstance(node, nodes.Output):
                for child in node.nodes:
                    if not isinstance(child, nodes.TemplateData):
                        yield from self.top(child)
            elif isinstance(node, nodes.If):
                yield from self.top(node.test)
                yield from self.statements(node.body)
                for branch in node.elif_:
                    yield from self.top(branch.test)
                    yield from self.statements(branch.body)
                yield from self.statements(node.else_)
            else:
                tag, why = _STATEMENTS.get(type(node), (f"{{% {type(node).__name__.lower()} %}}", _ONLY_IF))
                yield Violation(_line(node), f"{tag} is not allowed in merge fields: {why}")

    def top(self, node: nodes.Node) -> Iterator[Violation]:
        """One expression (``{{ … }}`` or an ``if``'s test), with its size limit."""
        self.parts = 0
        found = list(self.expression(node))
        if self.parts > MAX_EXPRESSION_PARTS:
            found.append(
                Violation(node.lineno, f"merge field expression is too long (more than {MAX_EXPRESSION_PARTS} parts)")
            )
        yield from found

    def expression(self, node: nodes.Node) -> Iterator[Violation]:
        self.parts += 1
        line = node.lineno
        if isinstance(node, nodes.Const):
            if not (node.value is None or isinstance(node.value, str | int | float)):  # bool is an int
                yield Violation(line, f"the literal {node.value!r} is not allowed in merge fields")
        elif isinstance(node, nodes.Name | nodes.Getattr | nodes.Getitem):
            yield from self.reference(node)
        elif isinstance(node, nodes.Filter | nodes.Test):
            yield from self.filter_or_test(node)
        elif isinstance(node, nodes.And | nodes.Or):
            yield from self.expression(node.left)
            yield from self.expression(node.right)
        elif isinstance(node, nodes.Not):
            yield from self.expression(node.node)
        elif isinstance(node, nodes.Neg | nodes.Pos):
            if not (isinstance(node.node, nodes.Const) and _is_number(node.node.value)):
                yield Violation(line, f"arithmetic ({node.operator!r}) is not allowed in merge fields")
        elif isinstance(node, nodes.BinExpr):
            yield Violation(line, f"arithmetic ({node.operator!r}) is not allowed in merge fields")
        elif isinstance(node, nodes.Compare):
            yield from self.expression(node.expr)
            for operand in node.ops:
                if operand.op not in _COMPARISONS:
                    yield Violation(line, f"the comparison {operand.op!r} is not allowed in merge fields")
                yield from self.expression(operand.expr)
        elif isinstance(node, nodes.Concat):
            for child in node.nodes:
                yield from self.expression(child)
        elif isinstance(node, nodes.CondExpr):
            if node.expr2 is None:
                yield Violation(line, "an inline 'if' needs an 'else' (… if … else …)")
            for part in (node.test, node.expr1, node.expr2):
                if part is not None:
                    yield from self.expression(part)
        elif isinstance(node, nodes.List | nodes.Tuple):
            if len(node.items) > MAX_LIST_ITEMS:
                yield Violation(line, f"a list in a merge field may have at most {MAX_LIST_ITEMS} items")
            for item in node.items:
                yield from self.expression(item)
        elif isinstance(node, nodes.Call):
            called = f" ({node.node.name}(…))" if isinstance(node.node, nodes.Name) else ""
            yield Violation(line, f"function calls are not allowed in merge fields{called}")
        else:
            shown = _EXPRESSIONS.get(type(node), type(node).__name__)
            yield Violation(line, f"{shown} is not allowed in merge fields")

    def reference(self, node: nodes.Name | nodes.Getattr | nodes.Getitem) -> Iterator[Violation]:
        """A merge field: a known variable, then known field names, each by ``.name``
        or ``['name']`` (a constant text)."""
        parts: list[str] = []
        current: nodes.Node = node
        while isinstance(current, nodes.Getattr | nodes.Getitem):
            if isinstance(current, nodes.Getattr):
                parts.append(current.attr)
            elif isinstance(current.arg, nodes.Const) and isinstance(current.arg.value, str):
                parts.append(current.arg.value)
            else:
                yield Violation(current.lineno, "a field is named with .name or ['name'] (a quoted name) only")
                return
            current = current.node
        if not isinstance(current, nodes.Name):
            yield Violation(node.lineno, "only merge fields have fields (contact.first_name, not on a filter's result)")
            return
        parts.append(current.name)
        parts.reverse()
        dotted = ".".join(parts)
        if any(part.startswith("_") for part in parts):
            yield Violation(node.lineno, f"{dotted!r}: names starting with '_' are not allowed in merge fields")
            return
        yield from self.path(parts, node.lineno)

    def path(self, parts: list[str], line: int) -> Iterator[Violation]:
        names, root = self.names, parts[0]
        if root in names.variables:
            if len(parts) > 1:
                yield Violation(line, f"{root} is a value, it has no field {parts[1]!r}")
            return
        known = names.fields.get(root)
        if known is None:
            yield Violation(line, names.unknown(root))
            return
        if len(parts) == 1:
            yield Violation(line, f"{root} is a group of fields; name one, e.g. {root}.{min(known)}")
            return
        group = f"{root}.{parts[1]}"
        if parts[1] not in known:
            yield Violation(line, f"unknown merge field {group!r}; known: {', '.join(sorted(known))}")
        elif group in names.groups:
            if len(parts) == 2:
                yield Violation(line, f"{group} is a group of fields; name one: {group}.<name>")
            elif len(parts) > 3:
                yield Violation(line, f"{'.'.join(parts[:3])} is a value, it has no field {parts[3]!r}")
        elif len(parts) > 2:
            yield Violation(
                line, f"{group} is a value, it has no field {parts[2]!r} (to change it, use a filter: | upper)"
            )

    def filter_or_test(self, node: nodes.Filter | nodes.Test) -> Iterator[Violation]:
        line, kind = node.lineno, "filter" if isinstance(node, nodes.Filter) else "test"
        table = FILTERS if isinstance(node, nodes.Filter) else TESTS
        spec = table.get(node.name)
        if node.node is not None:
            yield from self.expression(node.node)
        if spec is None:
            yield Violation(line, f"unknown {kind} {node.name!r}; allowed: {', '.join(sorted(table))}")
            return
        if node.dyn_args is not None or node.dyn_kwargs is not None:
            yield Violation(line, f"the {kind} {node.name!r} takes no *args or **kwargs")
            return
        given: list[tuple[str, nodes.Expr]] = [*zip(spec.arguments, node.args, strict=False)]
        if len(node.args) > len(spec.arguments):
            yield Violation(line, f"the {kind} {node.name!r} takes at most {len(spec.arguments)} argument(s)")
        for keyword in cast(list[nodes.Keyword], node.kwargs):
            if keyword.key not in spec.arguments or keyword.key in (name for name, _ in given):
                yield Violation(
                    line, f"the {kind} {node.name!r} has no argument {keyword.key!r} (or it is given twice)"
                )
            else:
                given.append((keyword.key, keyword.value))
        if len(given) < spec.required:
            yield Violation(line, f"the {kind} {node.name!r} needs an argument, e.g. {spec.example}")
        for name, value in given:
            yield from self.argument(node.name, name, value, literal=name in spec.literal)

    def argument(self, filter_name: str, name: str, value: nodes.Node, *, literal: bool) -> Iterator[Violation]:
        line = value.lineno
        constant = value.node if isinstance(value, nodes.Neg) else value  # a negative number is -(number)
        if isinstance(constant, nodes.Const):
            text = constant.value
            if isinstance(text, str) and len(text) > MAX_ARGUMENT_TEXT:
                yield Violation(line, f"a text given to a filter may have at most {MAX_ARGUMENT_TEXT} characters")
            elif _is_number(text) and abs(text) > MAX_ARGUMENT_NUMBER:
                yield Violation(line, f"a number given to a filter may be at most {MAX_ARGUMENT_NUMBER:,}")
            elif filter_name == "date" and name == "format" and isinstance(text, str):
                problem = date_format_problem(text)
                if problem:
                    yield Violation(line, problem)
        elif literal:
            yield Violation(line, f"the {name!r} of the filter {filter_name!r} must be written as a literal")
            return
        yield from self.expression(value)


def _line(node: nodes.Node) -> int:
    """A node's line; a ``Scope`` has none of its own, its first statement has."""
    for found in (node, *node.find_all(nodes.Node)):
        if found.lineno:
            return int(found.lineno)
    return 1


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
