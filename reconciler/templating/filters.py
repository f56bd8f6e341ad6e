"""The filters and tests merge fields may use, and what each takes.

Each filter is a small, bounded function of our own (not Jinja's built-in one): its
arguments are few and short (``MAX_ARGUMENT_TEXT``, ``MAX_ARGUMENT_NUMBER``, checked
by ``language.check``), and none can make a text longer than ``MAX_FILTER_RESULT``
characters. A field without a value goes through every filter unchanged (still
without a value) until ``default`` gives it one — or it is printed, which is an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

from jinja2 import Undefined

from reconciler.templating.budget import RenderError

__all__ = [
    "DATE_DIRECTIVES",
    "FILTERS",
    "MAX_ARGUMENT_NUMBER",
    "MAX_ARGUMENT_TEXT",
    "MAX_FILTER_RESULT",
    "TESTS",
    "FilterSpec",
    "date_format_problem",
]

MAX_ARGUMENT_TEXT = 1_000  # characters of a text literal given to a filter
MAX_ARGUMENT_NUMBER = 100_000
MAX_FILTER_RESULT = 100_000  # characters a filter may return


@dataclass(frozen=True)
class FilterSpec:
    """A filter or test: the function, its arguments by name in order (given by
    position or keyword), how many are required, which must be literals, an example."""

    function: Callable[..., Any]
    arguments: tuple[str, ...] = ()
    required: int = 0
    literal: frozenset[str] = frozenset()
    example: str = ""


def _text(value: Any) -> str:
    return ", ".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value)


def _bounded(text: str, what: str) -> str:
    if len(text) > MAX_FILTER_RESULT:
        raise RenderError(f"the filter {what!r} would make a text of more than {MAX_FILTER_RESULT:,} characters")
    return text


def _text_filter(function: Callable[[str], str]) -> Callable[[Any], Any]:
    def apply(value: Any) -> Any:
        return value if isinstance(value, Undefined) else function(_text(value))

    return apply


def default(value: Any, fallback: Any = "", boolean: bool = False) -> Any:
    """``fallback`` for a field without a value (missing, None, blank: all the same
    here); with ``boolean``, for any false value too (0, false)."""
    if isinstance(value, Undefined) or (boolean and not value):
        return fallback
    return value


def truncate(value: Any, length: int = 255, killwords: bool = False, end: str = "...") -> Any:
    """At most ``length`` characters, ``end`` included; cut at a space unless ``killwords``."""
    if isinstance(value, Undefined):
        return value
    text = _text(value)
    length = int(length)
    if length < len(end) or len(text) <= length:
        return text if len(text) <= length else text[:length]
    cut = text[: length - len(end)]
    if not killwords and " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut + end


def replace(value: Any, old: str, new: str, count: int | None = None) -> Any:
    if isinstance(value, Undefined):
        return value
    text, old, new = _text(value), str(old), str(new)
    if not old:
        raise RenderError("the filter 'replace' needs a text to replace (not an empty one)")
    found = text.count(old) if count is None else min(text.count(old), max(int(count), 0))
    if len(text) + found * (len(new) - len(old)) > MAX_FILTER_RESULT:
        raise RenderError(f"the filter 'replace' would make a text of more than {MAX_FILTER_RESULT:,} characters")
    return text.replace(old, new, -1 if count is None else max(int(count), 0))


def join(value: Any, separator: str = ", ") -> Any:
    if isinstance(value, Undefined):
        return value
    items = value if isinstance(value, list | tuple) else [value]
    return _bounded(str(separator).join(str(v) for v in items), "join")


def length(value: Any) -> int:
    if isinstance(value, Undefined):
        return 0
    return len(value) if isinstance(value, list | tuple | str) else len(str(value))


def urlencode(value: Any) -> Any:
    return value if isinstance(value, Undefined) else quote(_text(value), safe="")


# --- dates ------------------------------------------------------------------------------------

_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
DATE_DIRECTIVES: dict[str, Callable[[datetime], str]] = {
    "Y": lambda d: f"{d.year:04d}",
    "y": lambda d: f"{d.year % 100:02d}",
    "m": lambda d: f"{d.month:02d}",
    "-m": lambda d: str(d.month),
    "d": lambda d: f"{d.day:02d}",
    "-d": lambda d: str(d.day),
    "B": lambda d: _MONTHS[d.month - 1],
    "b": lambda d: _MONTHS[d.month - 1][:3],
    "A": lambda d: _DAYS[d.weekday()],
    "a": lambda d: _DAYS[d.weekday()][:3],
    "H": lambda d: f"{d.hour:02d}",
    "M": lambda d: f"{d.minute:02d}",
    "%": lambda d: "%",
}
_DIRECTIVE = re.compile(r"%(-?.)")


def date_format_problem(fmt: str) -> str | None:
    """Why ``fmt`` is not a date format (None when it is one)."""
    for match in _DIRECTIVE.finditer(fmt):
        if match.group(1) not in DATE_DIRECTIVES:
            known = " ".join(f"%{d}" for d in DATE_DIRECTIVES)
            return f"unknown date format %{match.group(1)}; use {known}"
    if fmt.endswith("%") and not fmt.endswith("%%"):
        return "a date format may not end with a lone %"
    return None


def format_date(value: Any, format: str = "%Y-%m-%d") -> Any:
    """A date (or a date-time, or a text in ISO 8601) written with ``format``: ``%Y``
    year, ``%m`` month, ``%d`` day (``%-m``, ``%-d`` without a leading zero), ``%B``/``%b``
    month name, ``%A``/``%a`` weekday name (English), ``%H``:``%M`` time, ``%%`` a %."""
    if isinstance(value, Undefined):
        return value
    when = _as_datetime(value)
    problem = date_format_problem(str(format))
    if problem:
        raise ValueError(problem)
    return _DIRECTIVE.sub(lambda m: DATE_DIRECTIVES[m.group(1)](when), str(format))


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"the filter 'date' needs a date, not {_text(value)[:40]!r}")


# --- tests ------------------------------------------------------------------------------------


def _defined(value: Any) -> bool:
    return not isinstance(value, Undefined)


def _no_value(value: Any) -> bool:
    return value is None or isinstance(value, Undefined)


FILTERS: dict[str, FilterSpec] = {
    "default": FilterSpec(default, ("fallback", "boolean"), 1, example="default('there')"),
    "d": FilterSpec(default, ("fallback", "boolean"), 1, example="d('there')"),
    "upper": FilterSpec(_text_filter(str.upper)),
    "lower": FilterSpec(_text_filter(str.lower)),
    "title": FilterSpec(_text_filter(str.title)),
    "capitalize": FilterSpec(_text_filter(str.capitalize)),
    "trim": FilterSpec(_text_filter(str.strip)),
    "truncate": FilterSpec(truncate, ("length", "killwords", "end"), 1, frozenset({"length"}), "truncate(40)"),
    "replace": FilterSpec(replace, ("old", "new", "count"), 2, frozenset({"old", "count"}), "replace('-', ' ')"),
    "join": FilterSpec(join, ("separator",), literal=frozenset({"separator"})),
    "length": FilterSpec(length),
    "urlencode": FilterSpec(urlencode),
    "date": FilterSpec(format_date, ("format",), 1, frozenset({"format"}), "date('%-d %B %Y')"),
}
TESTS: dict[str, FilterSpec] = {
    "defined": FilterSpec(_defined),
    "undefined": FilterSpec(lambda value: not _defined(value)),
    "none": FilterSpec(_no_value),
}
