"""The files of an e-mail: content templates decoded and checked, attachments typed.

Everything here is about one payload, the same for every recipient, except
``HtmlPart.render``, which fills one contact's values into the HTML and makes its
text alternative (see ``html_text.TextSkeleton``: the markup is parsed once, not per
message). Anything wrong is a ``PermanentDeliveryError`` that names the file.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

from reconciler.actions.delivery import Attachment, PermanentDeliveryError
from reconciler.compose.html_text import TextSkeleton, html_text, placeholder
from reconciler.compose.merge import rendered
from reconciler.spec.checks import MAX_ATTACHMENTS_BYTES
from reconciler.templating import Budget, MergeContext, MergeTemplate

__all__ = ["HtmlPart", "attachments", "checked_html", "decode", "stored_file"]

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_UNTRIED = object()


def decode(data: bytes, where: str) -> str:
    """A content file's text; an error when it is not UTF-8 text or empty."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PermanentDeliveryError(
            f"{where} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save it as UTF-8"
        ) from None
    bad = _CONTROL.search(text)
    if bad is not None:
        raise PermanentDeliveryError(
            f"{where} contains control character U+{ord(bad.group()):04X} at offset {bad.start()}; is it a text file?"
        )
    if not text.strip():
        raise PermanentDeliveryError(f"{where} is empty")
    return text


def stored_file(files: Mapping[str, bytes], path: str, what: str) -> bytes:
    data = files.get(path)
    if data is None:
        raise PermanentDeliveryError(f"{what} {path!r} is missing (not among the flow's stored files)")
    return data


def checked_html(html: str, where: str) -> str:
    """The text of a rendered HTML body; an error when it is not HTML at all."""
    try:
        text, elements = html_text(html)
    except (AssertionError, ValueError) as exc:  # html.parser gives up on some broken markup
        raise PermanentDeliveryError(f"{where} is not parseable HTML: {exc}") from None
    if elements == 0:
        raise PermanentDeliveryError(f"{where} is not HTML (no tags found)")
    if not text:
        raise PermanentDeliveryError(f"{where} has no visible text")
    return text


class HtmlPart:
    """An HTML template and, once it was rendered, its ``TextSkeleton`` (or None)."""

    def __init__(self, template: MergeTemplate, where: str, budget: Budget) -> None:
        self.template, self.where, self.budget = template, where, budget
        self.skeleton: object = _UNTRIED  # TextSkeleton | None; set by the first render (threads may race: same result)

    def render(self, context: MergeContext) -> tuple[str, str]:
        """(HTML, its text): the text filled into the skeleton when the template has one,
        else parsed from the HTML."""
        values: list[Any] = []

        def record(value: Any) -> Any:
            values.append(value)
            return value

        html = rendered(self.template, context, self.budget, where=self.where, on_value=record)
        skeleton = self.skeleton
        if skeleton is _UNTRIED:
            skeleton = self.skeleton = self._skeleton(context)
        text = skeleton.fill(values) if isinstance(skeleton, TextSkeleton) else None
        if text is None:
            return html, checked_html(html, self.where)
        if not text:
            raise PermanentDeliveryError(f"{self.where} has no visible text")
        return html, text

    def _skeleton(self, context: MergeContext) -> TextSkeleton | None:
        count: list[Any] = []

        def numbered(value: Any) -> str:
            count.append(value)
            return placeholder(len(count) - 1)

        try:
            return TextSkeleton.from_html(
                self.template.source,
                lambda: rendered(self.template, context, self.budget, where=self.where, on_value=numbered),
                lambda: len(count),
            )
        except Exception:  # the real rendering worked; without a skeleton each message is parsed
            return None


def attachments(paths: Sequence[str], files: Mapping[str, bytes]) -> tuple[Attachment, ...]:
    """The named files as attachments, typed by their names; at most 25 MB in total."""
    found = []
    total = 0
    for path in paths:
        content = stored_file(files, str(path), "attachment")
        total += len(content)
        name = PurePosixPath(str(path)).name
        mime_type, encoding = mimetypes.guess_type(name, strict=False)
        if mime_type is None or encoding is not None:  # .tar.gz is a gzip file, not a tar
            mime_type = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz"}.get(
                encoding or "", "application/octet-stream"
            )
        found.append(Attachment(filename=name, content=content, mime_type=mime_type))
    if total > MAX_ATTACHMENTS_BYTES:
        raise PermanentDeliveryError(f"attachments total {total / 1_048_576:.1f} MB; the limit is 25 MB per e-mail")
    return tuple(found)
