"""Rendering merge fields so that no template can hurt the sender.

Three walls, each enough on its own for what it guards:

1. ``compile_template`` refuses anything ``language.check`` refuses, before Jinja
   generates any code (a stored revision may hold a template that never went
   through ``validate``).
2. The sandbox has no globals (no ``range``, ``lipsum``, ``dict``, …), only our
   filters and tests, refuses arithmetic and calls at run time, and looks up fields
   in ``Fields`` only — never an attribute of a Python object.
3. ``render`` streams the output (``Template.generate``) under a ``Budget``: it
   stops as soon as the text is too long or the CPU time is spent.

A field without a value (see ``context``) is undefined: false in tests, and an
error naming the field when printed.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from functools import lru_cache
from typing import Any, NoReturn, cast

from jinja2 import Template, TemplateError, Undefined, UndefinedError, pass_context
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from reconciler.templating.budget import Budget, RenderError
from reconciler.templating.context import Fields, MergeContext
from reconciler.templating.filters import FILTERS, TESTS
from reconciler.templating.language import Names, Violation, check, parse

__all__ = ["MergeTemplate", "compile_template", "render", "render_text"]

_ON_VALUE = "_on_value"  # a render variable (templates cannot name it): sees every printed value
_CHECK_EVERY = 8  # chunks between two reads of the CPU clock


class _NoValue(Undefined):
    """A field without a value: false, empty, equal to nothing defined; printing it
    (or joining it with ``~``, or comparing it with < or >) is an error naming it."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        return f"{self._undefined_name} has no value"

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise UndefinedError(self._undefined_message)

    __str__ = __html__ = _fail_with_undefined_error
    __add__ = __radd__ = __lt__ = __le__ = __gt__ = __ge__ = _fail_with_undefined_error


def _shown(value: Any) -> Any:
    return ", ".join(str(v) for v in value) if isinstance(value, list | tuple) else value


@pass_context
def _finalize(context: Context, value: Any) -> Any:
    value = _shown(value)
    on_value: Callable[[Any], Any] | None = context.get(_ON_VALUE)
    return value if on_value is None else on_value(value)


class _Sandbox(SandboxedEnvironment):
    """Jinja's sandbox, narrowed to the merge-field language."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})  # a negative number (-1) is no binop

    def __init__(self, *, html: bool) -> None:
        super().__init__(undefined=_NoValue, autoescape=html, finalize=_finalize, cache_size=0)
        self.globals.clear()  # range, lipsum, cycler, joiner, namespace, dict: none of them
        self.filters = {name: spec.function for name, spec in FILTERS.items()}
        self.tests = {name: spec.function for name, spec in TESTS.items()}

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        raise SecurityError(f"arithmetic ({operator!r}) is not allowed in merge fields")

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        raise SecurityError("function calls are not allowed in merge fields")

    def getattr(self, obj: Any, attribute: str) -> Any:
        return self.getitem(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(argument, str) and not argument.startswith("_"):
            if isinstance(obj, Fields):
                found = obj.get(argument, self)
                return self.undefined(name=f"{obj.label}.{argument}") if found is self else found
            if isinstance(obj, _NoValue):  # contact.custom.x where contact.custom has no value
                return self.undefined(name=f"{obj._undefined_name}.{argument}")
        raise SecurityError(f"{argument!r} is not a merge field")


_TEXT = _Sandbox(html=False)
_HTML = _Sandbox(html=True)


class MergeTemplate:
    """A template that passed the language check, compiled for the sandbox."""

    __slots__ = ("source", "template")

    def __init__(self, source: str, template: Template) -> None:
        self.source, self.template = source, template


def compile_template(source: str, names: Names, *, html: bool = False) -> MergeTemplate:
    """``source`` compiled (``html``: its printed values are HTML-escaped). Raises
    ``RenderError`` listing every violation of the language (each with its line)."""
    tree = parse(source)
    violations = (tree,) if isinstance(tree, Violation) else check(tree, names)
    if violations or isinstance(tree, Violation):
        raise RenderError("; ".join(f"line {v.line}: {v.message}" for v in violations))
    try:
        template = (_HTML if html else _TEXT).from_string(tree)
    except TemplateError as exc:  # the check should have refused it: say so, not crash
        raise RenderError(f"the merge field cannot be compiled: {exc}") from None
    except RecursionError:
        raise RenderError("merge field is nested too deeply") from None
    return MergeTemplate(source, template)


def render(
    template: MergeTemplate,
    context: MergeContext,
    budget: Budget,
    *,
    on_value: Callable[[Any], Any] | None = None,
) -> str:
    """``template`` filled in with ``context``, within ``budget``. ``on_value`` sees
    every printed value (after list formatting, before escaping) and returns what to
    print. Raises ``RenderError`` (``BudgetExceeded`` for the budget) saying why."""
    clock, limit = budget.clock, budget.max_chars
    started = clock()
    deadline = started + budget.cpu_seconds
    chunks: list[str] = []
    size = count = 0
    stream = cast(Generator[str, None, None], template.template.generate(context, **{_ON_VALUE: on_value}))
    try:
        for chunk in stream:
            size += len(chunk)
            if size > limit:
                raise budget.too_long()
            chunks.append(chunk)
            count += 1
            if count % _CHECK_EVERY == 0 and clock() > deadline:
                raise budget.too_slow()
    except RenderError:
        raise
    except UndefinedError as exc:
        raise RenderError(exc.message or "a merge field has no value") from None
    except SecurityError as exc:
        raise RenderError(str(exc)) from None
    except TemplateError as exc:
        raise RenderError(exc.message or type(exc).__name__) from None
    except RecursionError:
        raise RenderError("merge field is nested too deeply") from None
    except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
        raise RenderError(f"{type(exc).__name__}: {exc}") from None
    finally:
        stream.close()
    if clock() > deadline:
        raise budget.too_slow()
    return "".join(chunks)


@lru_cache(maxsize=1024)
def _compiled(source: str, names: Names, html: bool) -> MergeTemplate | RenderError:
    try:
        return compile_template(source, names, html=html)
    except RenderError as exc:
        return exc


def render_text(source: str, context: MergeContext, budget: Budget, names: Names) -> str:
    """``source`` compiled (once: cached by text) and rendered; for the short texts of
    SMS and CRM steps, where one text is rendered for many participants."""
    compiled = _compiled(source, names, False)
    if isinstance(compiled, RenderError):
        raise RenderError(compiled.message)
    return render(compiled, context, budget)
