"""The plain-text alternative of an HTML e-mail, and how to make it without parsing each one.

``html_to_text`` parses rendered HTML (``html.parser``): no tags, scripts or styles;
links as ``text (url)``; whitespace collapsed, paragraphs kept as blank lines.

Parsing every rendered message costs more than rendering it. But a template whose
merge fields only put *text* into the markup — no ``{% %}`` statements, every
``{{ }}`` in element text or in a link's ``href`` — has the same markup for every
contact: only the values differ, and they are HTML-escaped, so no value can open a
tag, close a quote or complete an entity. ``TextSkeleton`` parses that markup once,
with a numbered placeholder for each value, and fills in the values per message —
exactly what parsing the rendered message would give (a test compares both on awkward
values). Anything it cannot prove it handles (a placeholder in another attribute,
right after ``<`` or inside an ``&…;`` reference, a value that is markup already,
``|safe``) is refused: ``from_html`` gives None, ``fill`` gives None, and the caller
parses the rendered message instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

__all__ = ["TextSkeleton", "html_text", "html_to_text", "placeholder"]

_SKIP = frozenset({"script", "style", "head", "title", "template", "noscript"})
_PARAGRAPH = frozenset(
    {
        *("p", "div", "section", "article", "header", "footer", "main", "nav", "aside", "table"),
        *("blockquote", "pre", "ul", "ol", "dl", "form", "fieldset", "figure", "hr"),
        *("h1", "h2", "h3", "h4", "h5", "h6"),
    }
)
_LINE = frozenset({"br", "tr", "dt", "dd", "li"})
_CELL = frozenset({"td", "th"})
_VOID = frozenset({"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "embed", "source", "wbr"})
_WHITESPACE = re.compile(r"\s+")
_OPEN, _CLOSE = "\ue000", "\ue001"  # private use: never in our own markup (checked)
_PLACEHOLDER = re.compile(f"{_OPEN}(\\d+){_CLOSE}")
# a placeholder where a value could change the markup: a tag or declaration name, an
# unquoted attribute value, a character reference
_UNSAFE = re.compile(f"(?:<[/!?]?|=[ \\t\\r\\n\\f]*|&[#A-Za-z0-9]*){_OPEN}")


def placeholder(index: int) -> str:
    return f"{_OPEN}{index}{_CLOSE}"


@dataclass(frozen=True)
class _Link:
    href: str
    words: str


def _link_text(href: str, words: str) -> str:
    text = _WHITESPACE.sub(" ", words).strip()
    target = href.strip()
    if target.lower().startswith("mailto:"):
        target = target[len("mailto:") :]
    if not target or target.startswith("#") or target.lower().startswith("javascript:") or target == text:
        return text
    return f"{text} ({target})" if text else target


def _lines(text: str) -> str:
    lines = [" ".join(line.split()) for line in text.split("\n")]  # whitespace runs collapsed, ends stripped
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


class _TextExtractor(HTMLParser):
    """With ``skeleton``, links are kept unresolved (their ``href`` and words may hold
    placeholders) and ``safe`` turns False when a placeholder is where a value could
    change what the parser does."""

    def __init__(self, skeleton: bool = False) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str | _Link] = []
        self.elements = 0
        self.skeleton = skeleton
        self.safe = True
        self._skipping: list[str] = []
        self._link: tuple[str, list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements += 1
        if self.skeleton and not self._skipping and _OPEN in tag + "".join(f"{k}={v}" for k, v in attrs):
            # only a link's href may hold a value (other attributes are not text, or are shown: img alt)
            self.safe = self.safe and tag == "a" and self._link is None and all(_OPEN not in k for k, _ in attrs)
            self.safe = self.safe and all(_OPEN not in (v or "") for k, v in attrs if k != "href")
        if tag == "body":  # a <head> or <title> left open ends here
            self._skipping.clear()
        if self._skipping:
            if tag == self._skipping[-1] and tag not in _VOID:
                self._skipping.append(tag)
            return
        if tag in _SKIP:
            self._skipping.append(tag)
        elif tag == "a" and self._link is None:
            self._link = (dict(attrs).get("href") or "", [])
        elif tag == "img":
            alt = (dict(attrs).get("alt") or "").strip()
            if alt:
                self._emit(f" {alt} ")
        elif tag == "li":
            self._emit("\n- ")
        elif tag in _LINE:
            self._emit("\n")
        elif tag in _CELL:
            self._emit(" ")
        elif tag in _PARAGRAPH:
            self._emit("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if self._skipping:
            if tag == self._skipping[-1]:
                self._skipping.pop()
            return
        if tag == "a" and self._link is not None:
            href, words = self._link
            self._link = None
            if self.skeleton:
                self.parts.append(_Link(href, "".join(words)))
            else:
                self._emit(_link_text(href, "".join(words)))
        elif tag in _PARAGRAPH:
            self._emit("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self._emit(_WHITESPACE.sub(" ", data))

    def _emit(self, text: str) -> None:
        if self._link is not None and "\n" not in text:
            self._link[1].append(text)
        else:
            self.parts.append(text)

    def text(self) -> str:
        return _lines("".join(p if isinstance(p, str) else _link_text(p.href, p.words) for p in self.parts))


def html_to_text(html: str) -> str:
    """A plain-text alternative of an HTML body: no tags, scripts or styles; links as
    ``text (url)``; whitespace collapsed, paragraphs kept as blank lines."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return parser.text()


def html_text(html: str) -> tuple[str, int]:
    """(text, elements) of rendered HTML; ``ValueError`` or ``AssertionError`` for
    markup ``html.parser`` gives up on."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return parser.text(), parser.elements


@dataclass(frozen=True)
class TextSkeleton:
    """The text of a template's markup with placeholders for its values; see the module
    docstring. ``outputs`` is how many values a rendering must produce."""

    parts: tuple[str | _Link, ...]
    outputs: int
    elements: int

    @classmethod
    def from_html(
        cls, source: str, render_placeholders: Callable[[], str], outputs: Callable[[], int]
    ) -> TextSkeleton | None:
        """``source`` is the template's text; ``render_placeholders()`` renders it once
        with ``placeholder(i)`` for the i-th value, and ``outputs()`` then tells how many
        there were. None when the template does not qualify."""
        if "{%" in source or _OPEN in source or _CLOSE in source:
            return None  # statements can change the markup per contact
        html = render_placeholders()
        if _UNSAFE.search(html):
            return None
        parser = _TextExtractor(skeleton=True)
        try:
            parser.feed(html)
            parser.close()
        except (AssertionError, ValueError):
            return None
        if not parser.safe or parser._link is not None or parser.elements == 0:
            return None
        return cls(tuple(parser.parts), outputs(), parser.elements)

    def fill(self, values: Sequence[Any]) -> str | None:
        """The text for these values (in output order), or None when they do not fit
        (another count, a value that is markup already or holds a placeholder)."""
        if len(values) != self.outputs:
            return None
        raw: list[str] = []
        for value in values:
            if hasattr(value, "__html__"):
                return None  # |safe or a filter that made markup: it may add tags
            text = str(value)
            if _OPEN in text or _CLOSE in text:
                return None
            raw.append(text)
        collapsed = [_WHITESPACE.sub(" ", v) for v in raw]  # element text; attributes keep theirs

        # (most parts hold no placeholder: a substring test is much cheaper than a substitution)
        def data(part: str) -> str:
            return _PLACEHOLDER.sub(lambda m: collapsed[int(m.group(1))], part) if _OPEN in part else part

        def attribute(part: str) -> str:
            return _PLACEHOLDER.sub(lambda m: raw[int(m.group(1))], part) if _OPEN in part else part

        return _lines(
            "".join(data(p) if isinstance(p, str) else _link_text(attribute(p.href), data(p.words)) for p in self.parts)
        )
