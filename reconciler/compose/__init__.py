"""Composing messages: an outbox message, a contact and a flow revision → what a transport sends.

This is where merge fields are filled in (``reconciler.templating``), content files
checked and senders resolved. It sits between the executor (which decides what to
send) and ``actions`` (which only sends): transports never see specs or templates.
"""

from reconciler.compose.email import EmailTemplate, render_email
from reconciler.compose.merge import flow_fields, participant_context
from reconciler.compose.senders import AssociateLike, sender_and_reply_to
from reconciler.compose.sms import compose_sms, render_sms

__all__ = [
    "AssociateLike",
    "EmailTemplate",
    "compose_sms",
    "flow_fields",
    "participant_context",
    "render_email",
    "render_sms",
    "sender_and_reply_to",
]
