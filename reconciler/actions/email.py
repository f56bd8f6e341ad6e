"""Rendering a ``send_email`` outbox row into a message (``mime`` turns it into bytes).

Everything that can be wrong with one participant's e-mail — a merge field without a
value, a content file that is not UTF-8 HTML, an attachment missing at run time or
too large — is a ``PermanentDeliveryError`` with a message that says what and where:
the dispatcher records it on that participant and goes on with the others. Nothing
here does I/O; the caller looks the content files up (by digest) and passes bytes.
A payload's templates are compiled once (``EmailTemplate``) and rendered per contact.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import PurePosixPath
from typing import Any, Protocol

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from reconciler.actions.delivery import Address, Attachment, EmailMessage, PermanentDeliveryError
from reconciler.actions.html_text import TextSkeleton, html_text, html_to_text, placeholder
from reconciler.spec.checks import MAX_ATTACHMENTS_BYTES
from reconciler.spec.models import Flow, ReplyTo, Sender

__all__ = ["AssociateLike", "EmailTemplate", "html_to_text", "render_email"]  # html_to_text: from html_text


class AssociateLike(Protocol):
    """What sender resolution needs of an associate (``AssociateRecord`` fits)."""

    @property
    def name(self) -> str: ...

    @property
    def email(self) -> str | None: ...


# --- merge fields -------------------------------------------------------------------


class _Fields(dict[str, Any]):
    """Template data that knows its own name, so an undefined field is reported as
    ``contact.first_name`` rather than ``'dict object' has no attribute``. The label
    starts with ``_``: the sandbox refuses to show it to a template."""

    __slots__ = ("_label",)

    def __init__(self, label: str, values: Mapping[str, Any]) -> None:
        super().__init__()
        self._label = label
        for key, value in values.items():
            if _missing(value):
                continue  # no value is undefined: an error, never an empty greeting
            self[key] = _Fields(f"{label}.{key}", value) if isinstance(value, Mapping) else value


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


class _Undefined(StrictUndefined):
    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        owner = self._undefined_obj
        if not self._undefined_hint and isinstance(owner, _Fields) and isinstance(self._undefined_name, str):
            return f"{owner._label}.{self._undefined_name} has no value"
        return super()._undefined_message


_CAPTURE = "_reconciler_capture"  # a render variable: a callable that sees (and may replace) every output value


@pass_context
def _finalize(context: Context, value: Any) -> Any:
    capture = context.get(_CAPTURE)
    return value if capture is None else capture(value)


_TEXT_ENV = SandboxedEnvironment(undefined=_Undefined, autoescape=False)
_HTML_ENV = SandboxedEnvironment(undefined=_Undefined, autoescape=True, finalize=_finalize)


def _compile(source: str, *, html: bool, where: str) -> Template:
    try:
        return (_HTML_ENV if html else _TEXT_ENV).from_string(source)
    except TemplateSyntaxError as exc:
        raise PermanentDeliveryError(
            f"merge field syntax error in {where} (line {exc.lineno}): {exc.message}"
        ) from None
    except RecursionError:
        raise PermanentDeliveryError(f"merge field in {where} is nested too deeply") from None


def _render(template: Template, variables: Mapping[str, Any], *, where: str) -> str:
    try:
        return template.render(variables)
    except TemplateError as exc:  # UndefinedError, SecurityError
        raise PermanentDeliveryError(f"merge field in {where}: {exc.message or exc}") from None
    except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
        raise PermanentDeliveryError(f"merge field in {where}: {type(exc).__name__}: {exc}") from None
    except RecursionError:
        raise PermanentDeliveryError(f"merge field in {where} is nested too deeply") from None


_WHITESPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


# --- rendering ----------------------------------------------------------------------


def _decode(data: bytes, where: str) -> str:
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


def _file(files: Mapping[str, bytes], path: str, what: str) -> bytes:
    data = files.get(path)
    if data is None:
        raise PermanentDeliveryError(f"{what} {path!r} is missing (not among the flow's stored files)")
    return data


def _checked_html(html: str, where: str) -> str:
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


@dataclass(frozen=True)
class _Part:
    template: Template
    where: str


_UNTRIED = object()


class _HtmlPart:
    """An HTML template and, once it was rendered, its ``TextSkeleton`` (or None)."""

    def __init__(self, template: Template, where: str, source: str) -> None:
        self.template, self.where, self.source = template, where, source
        self.skeleton: object = _UNTRIED  # TextSkeleton | None; set by the first render (threads may race: same result)

    def render(self, variables: Mapping[str, Any]) -> tuple[str, str]:
        """(HTML, its text): the text filled into the skeleton when the template has one,
        else parsed from the HTML."""
        values: list[Any] = []

        def record(value: Any) -> Any:
            values.append(value)
            return value

        html = _render(self.template, {**variables, _CAPTURE: record}, where=self.where)
        skeleton = self.skeleton
        if skeleton is _UNTRIED:
            skeleton = self.skeleton = self._skeleton(variables)
        text = skeleton.fill(values) if isinstance(skeleton, TextSkeleton) else None
        if text is None:
            return html, _checked_html(html, self.where)
        if not text:
            raise PermanentDeliveryError(f"{self.where} has no visible text")
        return html, text

    def _skeleton(self, variables: Mapping[str, Any]) -> TextSkeleton | None:
        count: list[Any] = []

        def numbered(value: Any) -> str:
            count.append(value)
            return placeholder(len(count) - 1)

        try:
            return TextSkeleton.from_html(
                self.source,
                lambda: self.template.render({**variables, _CAPTURE: numbered}),
                lambda: len(count),
            )
        except Exception:  # the real rendering worked; without a skeleton each message is parsed
            return None


@dataclass(frozen=True)
class EmailTemplate:
    """What one e-mail payload gives every recipient alike: its merge-field templates,
    compiled, and its attachments, read and checked. Compiling is the expensive part
    (Jinja parses and generates code), so a dispatcher compiles a payload once and
    renders it per contact. Build it with ``compile``."""

    subject: _Part
    html: _HtmlPart | None  # None: HTML made from the text
    text: _Part | None  # None: text derived from the HTML
    attachments: tuple[Attachment, ...]
    notification: bool

    @classmethod
    def compile(cls, payload: Mapping[str, Any], files: Mapping[str, bytes]) -> EmailTemplate:
        """``payload`` is a ``send_email`` row's (``subject``, ``content``,
        ``text_content``, ``attachments``: files by spec path) or an inline one (``html``
        and/or ``text`` templates instead of files, as for ``notify_email``; with
        ``notification: true`` it gets no ``List-Unsubscribe``); ``files`` maps the
        spec's paths to their content. Raises ``PermanentDeliveryError`` for a template
        that does not compile or a content file or attachment that is missing or wrong."""
        subject = _Part(_compile(str(payload.get("subject") or ""), html=False, where="subject"), "subject")
        text: _Part | None = None
        text_path = payload.get("text_content")
        if text_path:
            where = f"text content file {text_path!r}"
            raw = _decode(_file(files, str(text_path), "text content file"), where)
            text = _Part(_compile(raw, html=False, where=where), where)
        elif payload.get("text"):
            text = _Part(_compile(str(payload["text"]), html=False, where="message"), "message")
        content_path = payload.get("content")
        html: _HtmlPart | None = None
        if content_path:
            where = f"content file {content_path!r}"
            source = _decode(_file(files, str(content_path), "content file"), where)
            html = _HtmlPart(_compile(source, html=True, where=where), where, source)
        elif payload.get("html"):
            source = str(payload["html"])
            html = _HtmlPart(_compile(source, html=True, where="HTML body"), "HTML body", source)
        elif text is None:
            raise PermanentDeliveryError("the e-mail has no content (neither a content file nor a message)")
        return cls(
            subject=subject,
            html=html,
            text=text,
            attachments=_attachments(payload.get("attachments") or (), files),
            notification=bool(payload.get("notification")),
        )

    def render(
        self,
        *,
        to: str | None,
        contact: Mapping[str, Any],
        flow: Flow,
        associates: Mapping[str, AssociateLike],
        message_id: str,
        unsubscribe_url: str,
        company: Mapping[str, Any] | None = None,
    ) -> EmailMessage:
        """The message for one contact; ``to`` defaults to the contact's address. See
        ``render_email``. Raises ``PermanentDeliveryError`` for anything wrong with this
        participant's e-mail (a merge field without a value, an empty subject, …)."""
        to = str(to or contact.get("email") or "").strip()
        if not to:
            raise PermanentDeliveryError("the contact has no e-mail address")
        variables = {
            "contact": _Fields("contact", contact),
            "company": _Fields("company", company if company is not None else {"name": contact.get("company")}),
            "flow": _Fields(
                "flow", {"name": flow.name, "description": flow.metadata.description, "owner": flow.spec.owner}
            ),
            "unsubscribe_url": unsubscribe_url,
        }
        subject = _render(self.subject.template, variables, where="subject")
        subject = _WHITESPACE.sub(" ", subject).strip()
        if not subject:
            raise PermanentDeliveryError("the subject is empty")

        html, text = self._bodies(variables)
        sender, reply_to = _addresses(flow, contact, associates)
        full_name = contact.get("full_name") if to.lower() == str(contact.get("email") or "").lower() else None
        headers: tuple[tuple[str, str], ...] = ()
        if unsubscribe_url and not self.notification:
            headers = (("List-Unsubscribe", f"<{unsubscribe_url}>"),)
            if unsubscribe_url.lower().startswith("https:"):
                headers += (("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),)
        return EmailMessage(
            to=Address(to, str(full_name) if full_name else None),
            sender=sender,
            subject=subject,
            html=html,
            text=text,
            message_id=message_id,
            reply_to=reply_to,
            attachments=self.attachments,
            headers=headers,
        )

    def _bodies(self, variables: Mapping[str, Any]) -> tuple[str, str]:
        """(HTML, text): HTML from its template, else made from the text; text from its
        template, else derived from the HTML."""
        text = _render(self.text.template, variables, where=self.text.where) if self.text else None
        if self.html is None:
            assert text is not None  # compile() refuses a payload with neither
            if not text.strip():
                raise PermanentDeliveryError("the message is empty")
            paragraphs = (escape(p).replace("\n", "<br>\n") for p in re.split(r"\n\s*\n", text.strip()))
            return "\n".join(f"<p>{p}</p>" for p in paragraphs), text
        html, derived = self.html.render(variables)
        return html, derived if text is None else text


def render_email(
    *,
    payload: Mapping[str, Any],
    contact: Mapping[str, Any],
    flow: Flow,
    files: Mapping[str, bytes],
    associates: Mapping[str, AssociateLike],
    message_id: str,
    unsubscribe_url: str,
    company: Mapping[str, Any] | None = None,
) -> EmailMessage:
    """The message for one e-mail outbox payload and one contact: ``EmailTemplate.compile``
    then ``render`` (compiled afresh; a dispatcher keeps compiled templates instead).

    ``payload`` is as for ``EmailTemplate.compile``, plus ``to`` (default: the contact's
    address). ``contact`` is ``ContactRecord.as_template_data()``; its name is used for
    ``To`` only when the mail goes to the contact. ``associates`` are looked up by name
    for a sender or reply-to that ``use``s the contact's ``our_contact`` or
    ``our_support_manager``. ``company`` defaults to ``{"name": contact["company"]}``.
    An empty ``unsubscribe_url`` leaves out the ``List-Unsubscribe`` headers;
    ``List-Unsubscribe-Post`` (one-click, RFC 8058) is added for an ``https:`` URL only.
    Raises ``PermanentDeliveryError`` for anything wrong with this participant's e-mail.
    """
    return EmailTemplate.compile(payload, files).render(
        to=payload.get("to"),
        contact=contact,
        flow=flow,
        associates=associates,
        message_id=message_id,
        unsubscribe_url=unsubscribe_url,
        company=company,
    )


def _attachments(paths: Sequence[str], files: Mapping[str, bytes]) -> tuple[Attachment, ...]:
    found = []
    total = 0
    for path in paths:
        content = _file(files, str(path), "attachment")
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


def _addresses(
    flow: Flow, contact: Mapping[str, Any], associates: Mapping[str, AssociateLike]
) -> tuple[Address, Address | None]:
    settings = flow.spec.settings.email
    if settings is None or settings.sender is None:
        raise PermanentDeliveryError(f"flow {flow.name!r} has no e-mail sender (settings.email.sender)")
    sender = _resolve(settings.sender, contact, associates, "sender")
    if settings.reply_to is None:
        return sender, None
    if settings.reply_to.use == "sender":
        return sender, sender
    return sender, _resolve(settings.reply_to, contact, associates, "reply-to")


def _resolve(
    setting: Sender | ReplyTo, contact: Mapping[str, Any], associates: Mapping[str, AssociateLike], what: str
) -> Address:
    """A fixed address with the setting's name; the contact's associate with the
    associate's own name (the setting's name wins when given); else the fallback."""
    if setting.use == "address":
        if not setting.address:
            raise PermanentDeliveryError(f"the {what} has no address")
        return Address(setting.address, setting.name)
    role = setting.use.replace("_", " ")
    name = contact.get(setting.use)
    associate = associates.get(str(name)) if name else None
    if associate is not None and associate.email:
        return Address(associate.email, setting.name or associate.name)
    if setting.fallback_address:
        return Address(setting.fallback_address, setting.name)
    why = "has none" if not name else f"{name!r} has no e-mail address" if associate else f"{name!r} is unknown"
    raise PermanentDeliveryError(f"the {what} is the contact's {role}, who {why}; set fallback_address")
