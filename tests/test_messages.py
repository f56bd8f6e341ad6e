"""Typed outbox messages: what is stored is what is read back; a bad row is one clear error."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.messages import (
    EmailNotification,
    EmailSend,
    MessageInvalid,
    ScriptRun,
    SmsNotification,
    SmsSend,
    parse_message,
    to_payload,
)

text = st.text(max_size=40)
messages = st.one_of(
    st.builds(
        EmailSend,
        to=text,
        subject=text,
        content=text,
        text_content=st.none() | text,
        attachments=st.lists(text, max_size=3).map(tuple),
    ),
    st.builds(SmsSend, to=text, text=text, sender=st.none() | text),
    st.builds(EmailNotification, to=text, subject=text, message=text),
    st.builds(SmsNotification, to=text, text=text, sender=st.none() | text),
    st.builds(ScriptRun, script=text),
)


@given(messages)
def test_a_stored_message_reads_back_as_itself(message: object) -> None:
    payload = to_payload(message)  # type: ignore[arg-type]
    assert parse_message(message.kind, payload) == message  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kind", "payload", "message"),
    [
        ("send_fax", {}, "unknown outbox message kind 'send_fax'"),
        ("send_sms", ["x"], "payload is not an object"),
        ("send_sms", {"text": "hi"}, "has no 'to'"),
        ("send_sms", {"to": "+46", "text": 5}, "'text' is not a string"),
        ("run_script", {"script": "a", "extra": 1}, "unknown keys: extra"),
        ("send_email", {"to": "a@b", "subject": "s", "content": "c", "attachments": "x"}, "not a list"),
    ],
)
def test_a_payload_that_does_not_fit_names_what_is_wrong(kind: str, payload: object, message: str) -> None:
    with pytest.raises(MessageInvalid, match=message):
        parse_message(kind, payload)  # type: ignore[arg-type]
