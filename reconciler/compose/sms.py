"""Composing an SMS outbox message into the ``SmsMessage`` a transport sends: the
text's merge fields filled in (within ``SMS_TEXT``'s budget), the number in E.164,
the segments counted. Bad input for one participant (an invalid number, a merge
field without a value) is a ``PermanentDeliveryError`` recorded as its outcome.
"""

from __future__ import annotations

from functools import lru_cache

from reconciler.actions.delivery import PermanentDeliveryError, SmsMessage
from reconciler.actions.sms_text import count_sms
from reconciler.compose.merge import compiled, rendered
from reconciler.phones import InvalidNumber, normalize_number
from reconciler.spec.templates import TEXT_NAMES
from reconciler.templating import SMS_TEXT, Budget, MergeContext, MergeTemplate

__all__ = ["compose_sms", "render_sms"]

_WHERE = "SMS text"


@lru_cache(maxsize=256)
def _compiled(template: str) -> MergeTemplate | PermanentDeliveryError:
    try:
        return compiled(template, TEXT_NAMES, html=False, where=_WHERE)
    except PermanentDeliveryError as exc:
        return exc  # the same for every participant: remembered, not compiled again


def render_sms(template: str, context: MergeContext, budget: Budget = SMS_TEXT) -> str:
    """``context`` (see ``merge_context``) merged into an SMS text. Raises
    ``PermanentDeliveryError`` when the template does not render for this participant
    (a merge field without a value, a construct the language refuses, too long)."""
    found = _compiled(template)
    if isinstance(found, PermanentDeliveryError):
        raise PermanentDeliveryError(found.detail)
    return rendered(found, context, budget, where=_WHERE)


def compose_sms(
    *,
    to: str,
    template: str,
    context: MergeContext,
    sender: str,
    reference: str,
    default_region: str | None,
    budget: Budget = SMS_TEXT,
) -> SmsMessage:
    """The message the dispatcher hands to an ``SmsTransport``, from an outbox message
    (``to`` as stored on the contact, ``text`` as written in the spec)."""
    try:
        number = normalize_number(to, default_region)
    except InvalidNumber as exc:
        raise PermanentDeliveryError(str(exc)) from None
    text = render_sms(template, context, budget)
    if not text.strip():
        raise PermanentDeliveryError("SMS text is empty after merging the merge fields")
    count = count_sms(text)
    return SmsMessage(
        to=number, sender=sender, text=text, reference=reference, segments=count.segments, encoding=count.encoding
    )
