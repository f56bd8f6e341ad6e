"""Who an e-mail is from and who replies go to, as a flow's settings say.

A sender or reply-to is a fixed address, or the contact's ``our_contact`` /
``our_support_manager`` associate (with a fallback address for a contact who has
none). Anything that leaves an e-mail without a usable sender is a
``PermanentDeliveryError`` for that participant, saying which setting to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from reconciler.actions.delivery import Address, PermanentDeliveryError
from reconciler.spec.models import Flow, ReplyTo, Sender

__all__ = ["AssociateLike", "sender_and_reply_to"]


class AssociateLike(Protocol):
    """What sender resolution needs of an associate (``AssociateRecord`` fits)."""

    @property
    def name(self) -> str: ...

    @property
    def email(self) -> str | None: ...


def sender_and_reply_to(
    flow: Flow, contact: Mapping[str, Any], associates: Mapping[str, AssociateLike]
) -> tuple[Address, Address | None]:
    """(From, Reply-To) of the flow's e-mail to ``contact``; Reply-To None when unset."""
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
