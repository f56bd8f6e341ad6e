"""Actions with effects outside the database: delivering e-mail and SMS, running scripts.

The dispatcher sees only the small interfaces in ``delivery``; adapters (SMTP, an
HTTP SMS provider, a local maildir sink) translate their libraries' errors into our
``TemporaryDeliveryError`` (retry later) and ``PermanentDeliveryError`` (give up and
record), and ``OutcomeUnknown`` when the provider may or may not have the message.

Transports only: composing a message (templates, content files, senders) is
``reconciler.compose``; an import-linter contract keeps ``actions`` from importing
``reconciler.spec`` or ``reconciler.executor``.
"""
