"""Sends: e-mail and SMS to the contact, notifications to colleagues, scripts.

None of them sends anything: each checks whether it may (consent, subscription, a
usable address, the sending window) and queues a typed message for the outbox
(``reconciler.messages``), which the dispatcher delivers exactly once or visibly not.
"""

from __future__ import annotations

from reconciler.executor.handlers.base import Decision, Exit, Hold, Next, Outcome, ParticipantView, Send, StepContext
from reconciler.messages import EmailNotification, EmailSend, ScriptRun, SmsNotification, SmsSend
from reconciler.phones import InvalidNumber, normalize_number
from reconciler.spec import steps as s
from reconciler.timing import window_opens


def _window(ctx: StepContext) -> Hold | None:
    """Sends to the contact wait for the flow's sending window (the dispatcher checks again)."""
    opens = window_opens(ctx.flow.spec.settings.sending_window, ctx.now, ctx.zone)
    return Hold(opens, None) if opens is not None else None


def send_email(_p: ParticipantView, step: s.SendEmail, ctx: StepContext) -> Decision:
    held = _window(ctx)
    if held is not None:
        return held
    values = ctx.contact.values
    problem = None
    settings = ctx.flow.spec.settings.email
    if values.get("blocked"):
        problem = "the address is blocked"
    elif not values.get("consent_marketing"):
        problem = "no marketing consent"
    elif settings and settings.subscription and settings.subscription not in (values.get("subscriptions") or []):
        problem = f"not subscribed to {settings.subscription!r}"
    if problem:
        return Next(Outcome.SKIPPED, problem)
    message = EmailSend(
        to=ctx.contact.email,
        subject=step.subject,
        content=step.content,
        text_content=step.text_content,
        attachments=tuple(step.attachments),
    )
    return Next(Outcome.QUEUED, effects=(Send(message),))


def send_sms(_p: ParticipantView, step: s.SendSms, ctx: StepContext) -> Decision:
    held = _window(ctx)
    if held is not None:
        return held
    values = ctx.contact.values
    settings = ctx.flow.spec.settings.sms
    mobile = str(values.get("mobile") or "")
    try:
        number = normalize_number(mobile, settings.default_region if settings else None)
    except InvalidNumber as exc:
        problem = f"no usable mobile number: {exc}" if mobile else "no mobile number"
        if step.on_missing_mobile == "exit":
            return Exit(problem, step.after_exit)
        return Next(Outcome.SKIPPED, problem)
    if values.get("blocked"):
        return Next(Outcome.SKIPPED, "contact is blocked")
    sender = step.sender or (settings.sender if settings else None)
    return Next(Outcome.QUEUED, effects=(Send(SmsSend(to=number, text=step.text, sender=sender)),))


def notify(_p: ParticipantView, step: s.NotifyEmail | s.NotifySms, ctx: StepContext) -> Decision:
    to = step.to
    if to in s.ROLES:
        name = ctx.contact.values.get(to)
        associate = next((a for a in ctx.associates() if a.name == name), None)
        address = (associate.email if isinstance(step, s.NotifyEmail) else associate.mobile) if associate else None
        if not address:
            return Next(Outcome.SKIPPED, f"the contact's {to.replace('_', ' ')} has no address")
        to = address
    message: EmailNotification | SmsNotification = (
        EmailNotification(to=to, subject=step.subject, message=step.message)
        if isinstance(step, s.NotifyEmail)
        else SmsNotification(to=to, text=step.text, sender=step.sender)
    )
    return Next(Outcome.QUEUED, effects=(Send(message),))


def run_script(_p: ParticipantView, step: s.RunScript, _ctx: StepContext) -> Decision:
    return Next(Outcome.QUEUED, "script", effects=(Send(ScriptRun(script=step.script)),))
