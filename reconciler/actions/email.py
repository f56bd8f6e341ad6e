"""Rendering a ``send_email`` outbox row into a message, and that message into MIME.

Everything that can be wrong with one participant's e-mail — a merge field without a
value, a content file that is not UTF-8 HTML, an attachment missing at run time or
too large — is a ``PermanentDeliveryError`` with a message that says what and where:
the dispatcher records it on that participant and goes on with the others. Nothing
here does I/O; the caller looks the content files up (by digest) and passes bytes.
"""

from __future__ import annotations

import email.policy
import mimetypes
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage as MimeMessage
from email.utils import format_datetime
from email.utils import quote as quote_name
from functools import lru_cache
from html import escape
from html.parser import HTMLParser
from pathlib import PurePosixPath
from typing import Any, Protocol

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from reconciler.actions.delivery import Address, Attachment, EmailMessage, PermanentDeliveryError
from reconciler.spec.checks import MAX_ATTACHMENTS_BYTES
from reconciler.spec.models import Flow, ReplyTo, Sender

__all__ = ["AssociateLike", "html_to_text", "message_id_header", "render_email", "to_mime"]


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


_TEXT_ENV = SandboxedEnvironment(undefined=_Undefined, autoescape=False)
_HTML_ENV = SandboxedEnvironment(undefined=_Undefined, autoescape=True)


@lru_cache(maxsize=512)
def _template(source: str, html: bool) -> Template:
    return (_HTML_ENV if html else _TEXT_ENV).from_string(source)


def _render(source: str, variables: Mapping[str, Any], *, html: bool, where: str) -> str:
    try:
        return _template(source, html).render(variables)
    except TemplateSyntaxError as exc:
        raise PermanentDeliveryError(
            f"merge field syntax error in {where} (line {exc.lineno}): {exc.message}"
        ) from None
    except TemplateError as exc:  # UndefinedError, SecurityError
        raise PermanentDeliveryError(f"merge field in {where}: {exc.message or exc}") from None
    except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
        raise PermanentDeliveryError(f"merge field in {where}: {type(exc).__name__}: {exc}") from None
    except RecursionError:
        raise PermanentDeliveryError(f"merge field in {where} is nested too deeply") from None


# --- HTML → text --------------------------------------------------------------------

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
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.elements = 0
        self._skipping: list[str] = []
        self._link: tuple[str, list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements += 1
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
            text = _WHITESPACE.sub(" ", "".join(words)).strip()
            target = href.strip()
            if target.lower().startswith("mailto:"):
                target = target[len("mailto:") :]
            if not target or target.startswith("#") or target.lower().startswith("javascript:") or target == text:
                self._emit(text)
            else:
                self._emit(f"{text} ({target})" if text else target)
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
        lines = [_WHITESPACE.sub(" ", line).strip() for line in "".join(self.parts).split("\n")]
        out: list[str] = []
        for line in lines:
            if line or (out and out[-1]):
                out.append(line)
        return "\n".join(out).strip()


def html_to_text(html: str) -> str:
    """A plain-text alternative of an HTML body: no tags, scripts or styles; links as
    ``text (url)``; whitespace collapsed, paragraphs kept as blank lines."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return parser.text()


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
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError) as exc:  # html.parser gives up on some broken markup
        raise PermanentDeliveryError(f"{where} is not parseable HTML: {exc}") from None
    if parser.elements == 0:
        raise PermanentDeliveryError(f"{where} is not HTML (no tags found)")
    text = parser.text()
    if not text:
        raise PermanentDeliveryError(f"{where} has no visible text")
    return text


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
    """The message for one e-mail outbox payload and one contact.

    ``payload`` is a ``send_email`` row's (``to``, ``subject``, ``content``,
    ``text_content``, ``attachments``: files by spec path) or an inline one (``html``
    and/or ``text`` templates instead of files, as for ``notify_email``; with
    ``notification: true`` it gets no ``List-Unsubscribe``). ``contact`` is
    ``ContactRecord.as_template_data()``; its name is used for ``To`` only when the
    mail goes to the contact. ``files`` maps the spec's paths to their content;
    ``associates`` are looked up by name for a sender or reply-to that ``use``s the
    contact's ``our_contact`` or ``our_support_manager``. ``company`` defaults to
    ``{"name": contact["company"]}``. An empty ``unsubscribe_url`` leaves out the
    ``List-Unsubscribe`` headers; ``List-Unsubscribe-Post`` (one-click, RFC 8058) is
    added for an ``https:`` URL only.
    Raises ``PermanentDeliveryError`` for anything wrong with this participant's e-mail.
    """
    to = str(payload.get("to") or contact.get("email") or "").strip()
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
    subject = _render(str(payload.get("subject") or ""), variables, html=False, where="subject")
    subject = _WHITESPACE.sub(" ", subject).strip()
    if not subject:
        raise PermanentDeliveryError("the subject is empty")

    html, text = _bodies(payload, files, variables)
    sender, reply_to = _addresses(flow, contact, associates)
    notification = bool(payload.get("notification"))
    full_name = contact.get("full_name") if to.lower() == str(contact.get("email") or "").lower() else None
    headers: tuple[tuple[str, str], ...] = ()
    if unsubscribe_url and not notification:
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
        attachments=_attachments(payload.get("attachments") or (), files),
        headers=headers,
    )


def _bodies(payload: Mapping[str, Any], files: Mapping[str, bytes], variables: Mapping[str, Any]) -> tuple[str, str]:
    """(HTML, text): HTML from the ``content`` file or an inline ``html`` template, else
    made from the text; text from the ``text_content`` file or an inline ``text``
    template, else derived from the HTML."""
    text: str | None = None
    text_path = payload.get("text_content")
    if text_path:
        where = f"text content file {text_path!r}"
        raw = _decode(_file(files, str(text_path), "text content file"), where)
        text = _render(raw, variables, html=False, where=where)
    elif payload.get("text"):
        text = _render(str(payload["text"]), variables, html=False, where="message")

    content_path = payload.get("content")
    if content_path:
        where = f"content file {content_path!r}"
        source = _decode(_file(files, str(content_path), "content file"), where)
    elif payload.get("html"):
        where, source = "HTML body", str(payload["html"])
    elif text is not None:
        if not text.strip():
            raise PermanentDeliveryError("the message is empty")
        paragraphs = (escape(p).replace("\n", "<br>\n") for p in re.split(r"\n\s*\n", text.strip()))
        return "\n".join(f"<p>{p}</p>" for p in paragraphs), text
    else:
        raise PermanentDeliveryError("the e-mail has no content (neither a content file nor a message)")
    html = _render(source, variables, html=True, where=where)
    derived = _checked_html(html, where)
    return html, derived if text is None else text


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


# --- MIME ---------------------------------------------------------------------------


def _header_address(address: Address, what: str, utf8: bool) -> HeaderAddress | str:
    value = address.address
    name = _WHITESPACE.sub(" ", address.name or "").strip()
    if not value.isascii():
        # the stdlib refuses a non-ASCII local part as an Address; as text it is kept
        # (raw under SMTPUTF8, which is the only way such an address can be sent)
        if not utf8:
            raise PermanentDeliveryError(f"the {what} address {value!r} is not ASCII; it needs SMTPUTF8")
        local, at, domain = value.rpartition("@")
        if not at or not local or not domain or any(c.isspace() or c in '<>,;:"()[]\\' for c in value):
            raise PermanentDeliveryError(f"invalid {what} address {value!r}")
        return f'"{quote_name(name)}" <{value}>' if name else value
    try:
        return HeaderAddress(display_name=name, addr_spec=value)
    except (ValueError, IndexError) as exc:  # HeaderParseError is a ValueError
        raise PermanentDeliveryError(f"invalid {what} address {value!r}: {exc}") from None


_NOT_ATEXT = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")


def _dot_atom(text: str) -> str:
    return re.sub(r"\.{2,}", ".", _NOT_ATEXT.sub(".", text)).strip(".")


def message_id_header(message_id: str, domain: str = "reconciler.invalid") -> str:
    """The ``Message-ID`` header for an id: ``<left@right>`` with both sides valid
    dot-atoms (RFC 5322), so a receiver keeps it whole. Other characters (the ``:`` of
    an outbox key) become ``.``, deterministically: a resend carries the same id.
    Without ``@`` the ``domain`` (the sender's) is added."""
    value = message_id.strip().removeprefix("<").removesuffix(">")
    left, at, right = value.rpartition("@")
    if not at:
        left, right = value, domain
    left, right = _dot_atom(left), _dot_atom(right)
    if not left or not right:
        raise ValueError(f"invalid Message-ID {message_id!r}")
    return f"<{left}@{right}>"


def to_mime(message: EmailMessage, *, date: datetime | None = None, utf8: bool = False) -> MimeMessage:
    """A standard-library MIME message: ``multipart/alternative`` (text, then HTML),
    inside ``multipart/mixed`` when there are attachments. Non-ASCII subjects and names
    are encoded (RFC 2047/2231) unless ``utf8`` (for a server that speaks SMTPUTF8)."""
    # 7-bit bodies (quoted-printable or base64) unless the server takes UTF-8 anyway
    # Lines up to RFC 5322's hard limit: folding at 78 would RFC 2047-encode a long
    # List-Unsubscribe URL, which mail clients then cannot use.
    policy = (email.policy.SMTPUTF8 if utf8 else email.policy.SMTP.clone(cte_type="7bit")).clone(max_line_length=998)
    mime = MimeMessage(policy=policy)
    mime["From"] = _header_address(message.sender, "sender", utf8)
    mime["To"] = _header_address(message.to, "recipient", utf8)
    if message.reply_to is not None:
        mime["Reply-To"] = _header_address(message.reply_to, "reply-to", utf8)
    mime["Subject"] = _WHITESPACE.sub(" ", message.subject).strip()
    mime["Date"] = format_datetime(date or datetime.now(UTC))
    mime["Message-ID"] = message_id_header(message.message_id, message.sender.address.rpartition("@")[2])
    for name, value in message.headers:
        mime[name] = value
    mime.set_content(message.text, subtype="plain")
    mime.add_alternative(message.html, subtype="html")
    for attachment in message.attachments:
        maintype, _, subtype = attachment.mime_type.partition("/")
        mime.add_attachment(
            attachment.content,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=attachment.filename,
        )
    return mime
