"""Composing an e-mail outbox message into the ``EmailMessage`` a transport sends.

Everything that can be wrong with one participant's e-mail — a merge field without a
value, a template the merge-field language refuses, a render over its budget, a
content file that is not UTF-8 HTML, an attachment missing at run time or too large —
is a ``PermanentDeliveryError`` with a message that says what and where: the
dispatcher records it on that participant and goes on with the others. Nothing here
does I/O; the caller looks the content files up (by digest) and passes bytes. A
message's templates are compiled once (``EmailTemplate``) and rendered per contact.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from html import escape
from typing import Any

from reconciler.actions.delivery import Address, Attachment, EmailMessage, PermanentDeliveryError
from reconciler.compose.content import HtmlPart, attachments, decode, stored_file
from reconciler.compose.merge import compiled, participant_context, rendered
from reconciler.compose.senders import AssociateLike, sender_and_reply_to
from reconciler.messages import EmailNotification, EmailSend
from reconciler.spec.models import Flow
from reconciler.spec.templates import EMAIL_NAMES, TEXT_NAMES
from reconciler.templating import DEFAULT_CPU_SECONDS, EMAIL_BODY, SUBJECT, Budget, MergeContext, MergeTemplate

__all__ = ["EmailTemplate", "render_email"]

_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class _Part:
    template: MergeTemplate
    where: str


@dataclass(frozen=True)
class EmailTemplate:
    """What one e-mail message gives every recipient alike: its merge-field templates,
    compiled, and its attachments, read and checked. Compiling is the expensive part
    (the language check, then Jinja generates code), so a dispatcher compiles a
    message once and renders it per contact. Build it with ``compile``."""

    subject: _Part
    html: HtmlPart | None  # None: HTML made from the text
    text: _Part | None  # None: text derived from the HTML
    attachments: tuple[Attachment, ...]
    notification: bool
    subject_budget: Budget = SUBJECT
    body_budget: Budget = EMAIL_BODY

    @classmethod
    def compile(
        cls,
        message: EmailSend | EmailNotification,
        files: Mapping[str, bytes],
        *,
        cpu_seconds: float = DEFAULT_CPU_SECONDS,
        cpu_clock: Callable[[], float] = time.thread_time,
    ) -> EmailTemplate:
        """An ``EmailSend`` (subject template, content files by spec path) or an
        ``EmailNotification`` (subject and message templates; no ``List-Unsubscribe``,
        no ``unsubscribe_url``); ``files`` maps the spec's paths to their content. Each
        render may take ``cpu_seconds`` of ``cpu_clock`` per text. Raises
        ``PermanentDeliveryError`` for a template that does not compile or a content
        file or attachment that is missing or wrong."""
        subject_budget = SUBJECT.with_cpu(cpu_seconds, cpu_clock)
        body_budget = EMAIL_BODY.with_cpu(cpu_seconds, cpu_clock)
        if isinstance(message, EmailNotification):
            names = TEXT_NAMES
            return cls(
                subject=_Part(compiled(message.subject, names, html=False, where="subject"), "subject"),
                html=None,
                text=_Part(compiled(message.message, names, html=False, where="message"), "message"),
                attachments=(),
                notification=True,
                subject_budget=subject_budget,
                body_budget=body_budget,
            )
        names = EMAIL_NAMES
        text: _Part | None = None
        if message.text_content:
            where = f"text content file {message.text_content!r}"
            raw = decode(stored_file(files, message.text_content, "text content file"), where)
            text = _Part(compiled(raw, names, html=False, where=where), where)
        where = f"content file {message.content!r}"
        source = decode(stored_file(files, message.content, "content file"), where)
        html = HtmlPart(compiled(source, names, html=True, where=where), where, body_budget)
        return cls(
            subject=_Part(compiled(message.subject, names, html=False, where="subject"), "subject"),
            html=html,
            text=text,
            attachments=attachments(message.attachments, files),
            notification=False,
            subject_budget=subject_budget,
            body_budget=body_budget,
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
        context = participant_context(
            flow=flow,
            contact=contact,
            company=company,
            unsubscribe_url=None if self.notification else unsubscribe_url,
        )
        subject = rendered(self.subject.template, context, self.subject_budget, where="subject")
        subject = _WHITESPACE.sub(" ", subject).strip()
        if not subject:
            raise PermanentDeliveryError("the subject is empty")

        html, text = self._bodies(context)
        sender, reply_to = sender_and_reply_to(flow, contact, associates)
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

    def _bodies(self, context: MergeContext) -> tuple[str, str]:
        """(HTML, text): HTML from its template, else made from the text; text from its
        template, else derived from the HTML."""
        text = rendered(self.text.template, context, self.body_budget, where=self.text.where) if self.text else None
        if self.html is None:
            assert text is not None  # compile() makes a text part for a message without HTML
            if not text.strip():
                raise PermanentDeliveryError("the message is empty")
            paragraphs = (escape(p).replace("\n", "<br>\n") for p in re.split(r"\n\s*\n", text.strip()))
            return "\n".join(f"<p>{p}</p>" for p in paragraphs), text
        html, derived = self.html.render(context)
        return html, derived if text is None else text


def render_email(
    *,
    message: EmailSend | EmailNotification,
    contact: Mapping[str, Any],
    flow: Flow,
    files: Mapping[str, bytes],
    associates: Mapping[str, AssociateLike],
    message_id: str,
    unsubscribe_url: str,
    company: Mapping[str, Any] | None = None,
) -> EmailMessage:
    """The e-mail for one outbox message and one contact: ``EmailTemplate.compile``
    then ``render`` (compiled afresh; a dispatcher keeps compiled templates instead).

    ``message`` goes to ``message.to``. ``contact`` is ``ContactRecord.as_template_data()``;
    its name is used for ``To`` only when the mail goes to the contact. ``associates``
    are looked up by name for a sender or reply-to that ``use``s the contact's
    ``our_contact`` or ``our_support_manager``. ``company`` is as from
    ``reconciler.executor.facts.company_view`` (default: the contact's company name only).
    An empty ``unsubscribe_url`` leaves out the ``List-Unsubscribe`` headers;
    ``List-Unsubscribe-Post`` (one-click, RFC 8058) is added for an ``https:`` URL only.
    Raises ``PermanentDeliveryError`` for anything wrong with this participant's e-mail.
    """
    return EmailTemplate.compile(message, files).render(
        to=message.to,
        contact=contact,
        flow=flow,
        associates=associates,
        message_id=message_id,
        unsubscribe_url=unsubscribe_url,
        company=company,
    )
