"""E-mail rendering, SMTP delivery against a real local server, and the local sink.

The SMTP server is aiosmtpd on 127.0.0.1: what the transport sends is parsed back
from what arrived, and the server's replies drive the error mapping. No sleeps: a
"dead" connection is closed by the server on request, idle time is a fake clock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email
import email.policy
import itertools
import json
import mailbox
import re
import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from email.message import EmailMessage as MimeMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from hypothesis import given
from hypothesis import strategies as st

from reconciler.actions.delivery import (
    Address,
    Attachment,
    EmailMessage,
    EmailTransport,
    OutcomeUnknown,
    PermanentDeliveryError,
    SmsMessage,
    SmsTransport,
    TemporaryDeliveryError,
)
from reconciler.actions.mime import to_mime
from reconciler.actions.sink import MaildirSink
from reconciler.actions.smtp import SmtpSettings, SmtpTransport, _dot_stuffed, transport_from_env
from reconciler.compose import EmailTemplate, render_email
from reconciler.compose.html_text import html_to_text
from reconciler.errors import ConfigError
from reconciler.messages import EmailNotification, EmailSend
from reconciler.spec.models import Flow
from tests.conftest import flow_doc

HTML = """<!doctype html>
<html><head><title>Ignored</title><style>p { color: red }</style></head>
<body>
  <h1>Hej {{ contact.first_name }}!</h1>
  <p>Welcome   to   {{ flow.name }}.<br>See the <a href="https://acme.example/agenda?a=1&amp;b=2">agenda</a>.</p>
  <script>alert("no")</script>
  <ul><li>One</li><li>Two</li></ul>
  <p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
</body></html>
"""
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40
MESSAGE_ID = "<42.1.welcome.1@reconciler.test>"
UNSUBSCRIBE = "https://acme.example/unsubscribe/t0k3n"


@dataclass
class Associate:
    name: str
    email: str | None


def _flow(email_settings: dict[str, Any] | None = None) -> Flow:
    settings = email_settings or {
        "sender": {"name": "Acme Nyheter", "address": "news@acme.example"},
        "reply_to": "help@acme.example",
    }
    steps = [
        {
            "id": "welcome",
            "type": "send_email",
            "subject": "Välkommen, {{ contact.first_name }}",
            "content": "content/welcome.html",
            "attachments": ["content/agenda.pdf"],
        },
        {"id": "done", "type": "finish"},
    ]
    return Flow.model_validate(flow_doc("webinar", steps=steps, owner="anna", settings={"email": settings}))


def _contact(**values: Any) -> dict[str, Any]:
    base = {
        "email": "asa@example.org",
        "first_name": "Åsa",
        "last_name": "Öberg",
        "full_name": "Åsa Öberg",
        "company": "Kund AB",
        "mobile": None,
        "our_contact": "bo",
        "our_support_manager": None,
        "custom": {"tier": "gold"},
    }
    return base | values


def _payload(**values: Any) -> EmailSend:
    base: dict[str, Any] = {
        "to": "asa@example.org",
        "subject": "Välkommen, {{ contact.first_name }}",
        "content": "content/welcome.html",
        "text_content": None,
        "attachments": ("content/agenda.pdf",),
    }
    return EmailSend(**(base | values))


def _files(**extra: bytes) -> dict[str, bytes]:
    return {"content/welcome.html": HTML.encode(), "content/agenda.pdf": PDF} | {
        k.replace("__", "/").replace("_dot_", "."): v for k, v in extra.items()
    }


def _render(
    *,
    payload: EmailSend | EmailNotification | None = None,
    contact: dict[str, Any] | None = None,
    flow: Flow | None = None,
    files: dict[str, bytes] | None = None,
    associates: dict[str, Associate] | None = None,
) -> EmailMessage:
    return render_email(
        message=payload or _payload(),
        contact=contact or _contact(),
        flow=flow or _flow(),
        files=_files() if files is None else files,
        associates=associates if associates is not None else {"bo": Associate("Bo Berg", "bo@acme.example")},
        message_id=MESSAGE_ID,
        unsubscribe_url=UNSUBSCRIBE,
    )


# --- the SMTP server ------------------------------------------------------------------


@dataclass
class Arrived:
    peer: Any
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    authenticated: bool
    tls: bool

    def parsed(self) -> MimeMessage:
        message = email.message_from_bytes(self.content, policy=email.policy.default)
        assert isinstance(message, MimeMessage)
        return message


@dataclass
class Recorder:
    """An aiosmtpd handler that keeps what arrived and replies as told."""

    arrived: list[Arrived] = field(default_factory=list)
    rcpt_reply: str | None = None
    data_reply: str | None = None
    drop_after_data: bool = False
    hold: concurrent.futures.Future[None] | None = None
    noops: int = 0
    transports: list[asyncio.BaseTransport] = field(default_factory=list)
    loop: asyncio.AbstractEventLoop | None = None
    pipelining: bool = False  # offer PIPELINING (RFC 2920), as real MTAs do
    mail_from_reply: str | None = None

    async def handle_EHLO(
        self, server: Any, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", *responses[-1:]] if self.pipelining else responses

    async def handle_MAIL(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.mail_from_reply:
            return self.mail_from_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_NOOP(self, server: Any, session: Session, envelope: Envelope, arg: str) -> str:
        self.noops += 1
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        self.transports.append(server.transport)
        if self.hold is not None:
            await asyncio.wrap_future(self.hold)
        if self.drop_after_data:
            server.transport.close()
            return "250 OK"
        if self.data_reply:
            return self.data_reply
        assert envelope.mail_from is not None
        content = envelope.original_content or b""
        self.arrived.append(
            Arrived(
                session.peer,
                envelope.mail_from,
                list(envelope.rcpt_tos),
                content,
                session.authenticated,
                bool(session.ssl),
            )
        )
        return "250 2.0.0 Ok: queued as Q1234"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


Serve = Callable[..., tuple[Recorder, int]]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start an SMTP server on 127.0.0.1 with a free port; returns (handler, port)."""
    controllers: list[Controller] = []

    def start(pipelining: bool = False, **kwargs: Any) -> tuple[Recorder, int]:
        handler = Recorder(pipelining=pipelining)
        port = _free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port, server_hostname="mx.test", **kwargs)
        handler.loop = controller.loop
        controller.start()
        controllers.append(controller)
        return handler, port

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def smtp(serve: Serve) -> tuple[Recorder, int]:
    return serve()


def _transport(port: int, url: str | None = None, **kwargs: Any) -> SmtpTransport:
    return SmtpTransport(url or f"smtp://127.0.0.1:{port}", timeout=5, **kwargs)


# --- rendering --------------------------------------------------------------------------


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "pipelined"])
def test_render_and_send_arrives_as_rendered(serve: Serve, pipelining: bool) -> None:
    handler, port = serve(pipelining=pipelining)
    message = _render()
    with _transport(port) as transport:
        receipt = transport.send(message)

    assert receipt.provider_id == "Q1234"
    assert receipt.detail == "250 2.0.0 Ok: queued as Q1234"
    [arrived] = handler.arrived
    assert arrived.mail_from == "news@acme.example"
    assert arrived.rcpt_tos == ["asa@example.org"]
    got = arrived.parsed()
    assert got["Subject"] == "Välkommen, Åsa"
    assert got["From"].addresses[0].display_name == "Acme Nyheter"
    assert got["From"].addresses[0].addr_spec == "news@acme.example"
    assert got["Reply-To"].addresses[0].addr_spec == "help@acme.example"
    assert got["To"].addresses[0].display_name == "Åsa Öberg"
    assert got["To"].addresses[0].addr_spec == "asa@example.org"
    assert got["Message-ID"] == MESSAGE_ID
    assert got["Date"] is not None
    assert got["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert got["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert arrived.content.isascii()  # non-ASCII is encoded for any server

    assert got.get_content_type() == "multipart/mixed"
    body = got.get_body(("html",))
    assert body is not None
    html = body.get_content()
    assert "<h1>Hej Åsa!</h1>" in html
    assert f'href="{UNSUBSCRIBE}"' in html
    text_part = got.get_body(("plain",))
    assert text_part is not None
    text = text_part.get_content()
    assert "Hej Åsa!" in text
    assert "Welcome to webinar." in text
    assert "agenda (https://acme.example/agenda?a=1&b=2)" in text
    assert "alert" not in text and "color" not in text and "Ignored" not in text
    [attachment] = list(got.iter_attachments())
    assert attachment.get_filename() == "agenda.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == PDF


def test_html_is_autoescaped_but_subject_and_text_are_not() -> None:
    contact = _contact(first_name="<Bo & Co>")
    files = _files() | {"content/welcome.txt": b"Hi {{ contact.first_name }}, {{ contact.custom.tier }}"}
    message = _render(contact=contact, files=files, payload=_payload(text_content="content/welcome.txt"))
    assert "<h1>Hej &lt;Bo &amp; Co&gt;!</h1>" in message.html
    assert message.subject == "Välkommen, <Bo & Co>"
    assert message.text == "Hi <Bo & Co>, gold"


def test_html_to_text() -> None:
    html = (
        "<p>Hello\n   <b>there</b></p><p><a href='https://x.example/'>https://x.example/</a> "
        "<a href='mailto:help@acme.example'>mail us</a> <a href='#top'>top</a> <img alt='Logo'></p>"
        "<table><tr><td>a</td><td>b</td></tr></table>"
    )
    assert html_to_text(html) == "Hello there\n\nhttps://x.example/ mail us (help@acme.example) top Logo\n\na b"


def test_merge_field_without_a_value_is_a_permanent_error() -> None:
    with pytest.raises(PermanentDeliveryError, match=r"merge field in subject: contact.first_name has no value"):
        _render(contact=_contact(first_name=None))
    with pytest.raises(PermanentDeliveryError, match=r"content file 'content/welcome.html': contact.first_name has no"):
        _render(contact=_contact(first_name=" "), payload=_payload(subject="Hello"))
    with pytest.raises(PermanentDeliveryError, match=r"merge field in subject: contact.custom.size has no value"):
        _render(payload=_payload(subject="{{ contact.custom.size }}"))
    with pytest.raises(PermanentDeliveryError, match=r"merge field in subject: line 1: merge field syntax error"):
        _render(payload=_payload(subject="{{ contact.first_name "))
    with pytest.raises(PermanentDeliveryError, match=r"merge field in subject: line 1: .*names starting with '_'"):
        _render(payload=_payload(subject="{{ contact.__class__.__mro__ }}"))
    # a default is the way to say "empty is fine"
    message = _render(
        contact=_contact(first_name=None),
        payload=_payload(subject="Hi {{ contact.first_name | default('there') }}"),
        files=_files() | {"content/welcome.html": b"<p>Hi</p>"},
    )
    assert message.subject == "Hi there"


def test_bad_content_files_are_permanent_errors() -> None:
    cases = {
        b"<p>Hej \xe5sa</p>": r"content file 'content/welcome.html' is not UTF-8 text \(byte 0xe5 at offset 7\)",
        b"   \n": r"content file 'content/welcome.html' is empty",
        b"Just text, no markup": r"is not HTML \(no tags found\)",
        b"<html><script>x()</script></html>": r"has no visible text",
        b"%PDF\x00\x01binary": r"contains control character U\+0000",
    }
    for content, expected in cases.items():
        with pytest.raises(PermanentDeliveryError, match=expected):
            _render(files=_files() | {"content/welcome.html": content})
    with pytest.raises(PermanentDeliveryError, match=r"content file 'content/welcome.html' is missing"):
        _render(files={"content/agenda.pdf": PDF})


def test_attachments_missing_or_too_large_are_permanent_errors() -> None:
    with pytest.raises(PermanentDeliveryError, match=r"attachment 'content/agenda.pdf' is missing"):
        _render(files={"content/welcome.html": HTML.encode()})
    big = b"\0" * (13 * 1024 * 1024)
    files = _files() | {"a.bin": big, "b.bin": big}
    with pytest.raises(PermanentDeliveryError, match=r"attachments total 26.0 MB; the limit is 25 MB"):
        _render(files=files, payload=_payload(attachments=("a.bin", "b.bin")))


def test_attachment_types_and_utf8_names() -> None:
    files = _files() | {"docs/Årsrapport 2026.xlsx": b"x", "docs/data.tar.gz": b"y", "docs/notes": b"z"}
    message = _render(files=files, payload=_payload(attachments=tuple(files)[1:]))
    assert [(a.filename, a.mime_type) for a in message.attachments] == [
        ("agenda.pdf", "application/pdf"),
        ("Årsrapport 2026.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ("data.tar.gz", "application/gzip"),
        ("notes", "application/octet-stream"),
    ]
    parsed = email.message_from_bytes(to_mime(message), policy=email.policy.default)
    assert isinstance(parsed, MimeMessage)
    assert [a.get_filename() for a in parsed.iter_attachments()][1] == "Årsrapport 2026.xlsx"


def test_notification_is_a_plain_message() -> None:
    payload = EmailNotification(
        to="bo@acme.example",
        subject="New lead: {{ contact.full_name }}",
        message="{{ contact.email }} joined {{ flow.name }}.\n\nCall <soon> & often.",
    )
    message = _render(payload=payload)
    assert message.to == Address("bo@acme.example")  # a colleague: not the contact's name
    assert message.subject == "New lead: Åsa Öberg"
    assert message.text == "asa@example.org joined webinar.\n\nCall <soon> & often."
    assert message.html == "<p>asa@example.org joined webinar.</p>\n<p>Call &lt;soon&gt; &amp; often.</p>"
    assert message.headers == ()
    with pytest.raises(PermanentDeliveryError, match=r"merge field in message: contact\.mobile has no value"):
        _render(payload=replace(payload, message="{{ contact.mobile }}"))
    with pytest.raises(PermanentDeliveryError, match="the message is empty"):
        _render(payload=replace(payload, message=" "))
    with pytest.raises(PermanentDeliveryError, match=r"merge field in message: line 1: unknown merge field 'unsub"):
        _render(payload=replace(payload, message="{{ unsubscribe_url }}"))  # not in a notification


def test_mailto_unsubscribe_has_no_one_click_header() -> None:
    message = render_email(
        message=_payload(),
        contact=_contact(),
        flow=_flow(),
        files=_files(),
        associates={},
        message_id=MESSAGE_ID,
        unsubscribe_url="mailto:help@acme.example?subject=unsubscribe",
    )
    assert message.headers == (("List-Unsubscribe", "<mailto:help@acme.example?subject=unsubscribe>"),)


def test_sender_and_reply_to_from_the_contacts_associates() -> None:
    flow = _flow(
        {
            "sender": {"use": "our_contact", "fallback_address": "news@acme.example", "name": "Acme"},
            "reply_to": "sender",
        }
    )
    message = _render(flow=flow, associates={"bo": Associate("Bo Berg", "bo@acme.example")})
    assert message.sender == Address("bo@acme.example", "Acme")
    assert message.reply_to == message.sender
    fallback = _render(flow=flow, associates={})
    assert fallback.sender == Address("news@acme.example", "Acme")

    strict = _flow({"sender": "news@acme.example", "reply_to": {"use": "our_support_manager"}})
    with pytest.raises(PermanentDeliveryError, match=r"reply-to is the contact's our support manager, who has none"):
        _render(flow=strict)
    personal = _flow({"sender": {"use": "our_contact", "fallback_address": "news@acme.example"}})
    assert _render(flow=personal).sender == Address("bo@acme.example", "Bo Berg")
    no_sender = _flow({"reply_to": "help@acme.example"})
    with pytest.raises(PermanentDeliveryError, match=r"flow 'webinar' has no e-mail sender"):
        _render(flow=no_sender)


# --- SMTP -----------------------------------------------------------------------------


def test_one_connection_is_reused_and_checked_with_noop_when_idle(smtp: tuple[Recorder, int]) -> None:
    handler, port = smtp
    now = [1000.0]
    transport = _transport(port, clock=lambda: now[0])
    try:
        transport.send(_render())
        transport.send(_render())
        assert handler.noops == 0
        now[0] += 31  # idle long enough to be worth a NOOP
        transport.send(_render())
    finally:
        transport.close()
    assert len(handler.arrived) == 3
    assert len({a.peer for a in handler.arrived}) == 1
    assert transport.connections == 1
    assert handler.noops == 1


def test_a_connection_closed_by_the_server_is_replaced(smtp: tuple[Recorder, int]) -> None:
    handler, port = smtp
    with _transport(port) as transport:
        transport.send(_render())
        _close_server_side(handler)
        transport.send(_render())
    assert len(handler.arrived) == 2
    assert len({a.peer for a in handler.arrived}) == 2
    assert transport.connections == 2


def _close_server_side(handler: Recorder) -> None:
    """Close the server's end of the kept connection, in the server's own loop."""
    [server_transport] = handler.transports
    assert handler.loop is not None

    async def close() -> None:
        server_transport.close()
        await asyncio.sleep(0)  # a turn of the loop: the socket is closed in a callback

    asyncio.run_coroutine_threadsafe(close(), handler.loop).result(timeout=5)


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "pipelined"])
def test_4xx_is_temporary_and_5xx_permanent(serve: Serve, pipelining: bool) -> None:
    handler, port = serve(pipelining=pipelining)
    with _transport(port) as transport:
        handler.mail_from_reply = "452 4.3.1 Insufficient system storage"
        with pytest.raises(TemporaryDeliveryError, match=r"refused the sender news@acme.example: 452 4.3.1"):
            transport.send(_render())
        handler.mail_from_reply = None
        handler.rcpt_reply = "451 4.3.0 Mailbox busy, try later"
        with pytest.raises(TemporaryDeliveryError, match=r"refused the recipient asa@example.org: 451 4.3.0 Mailbox"):
            transport.send(_render())
        handler.rcpt_reply = "550 5.1.1 No such user"
        with pytest.raises(PermanentDeliveryError, match=r"refused the recipient asa@example.org: 550 5.1.1 No such"):
            transport.send(_render())
        handler.rcpt_reply = None
        handler.data_reply = "451 4.7.1 Greylisted"
        with pytest.raises(TemporaryDeliveryError, match=r"refused the message: 451 4.7.1 Greylisted"):
            transport.send(_render())
        handler.data_reply = "554 5.7.1 Spam"
        with pytest.raises(PermanentDeliveryError, match=r"refused the message: 554 5.7.1 Spam"):
            transport.send(_render())
        handler.data_reply = None
        transport.send(_render())  # the session was reset, not broken
        transport.send(_render())
    assert len(handler.arrived) == 2
    assert transport.connections == 1
    assert [a.rcpt_tos for a in handler.arrived] == [["asa@example.org"]] * 2


def test_a_non_ascii_address_goes_out_with_smtputf8(smtp: tuple[Recorder, int]) -> None:
    handler, port = smtp
    message = _render(payload=_payload(to="åsa@exempel.se"), contact=_contact(email="åsa@exempel.se"))
    with _transport(port) as transport:
        transport.send(message)
    [arrived] = handler.arrived
    assert arrived.rcpt_tos == ["åsa@exempel.se"]
    raw = arrived.content.decode("utf-8")  # headers in UTF-8, as SMTPUTF8 allows
    parsed = email.message_from_string(raw, policy=email.policy.default)
    assert parsed["To"].addresses[0].addr_spec == "åsa@exempel.se"
    assert parsed["To"].addresses[0].display_name == "Åsa Öberg"
    assert parsed["Subject"] == "Välkommen, Åsa"


_PIECES = st.sampled_from([b".", b"..", b"\r", b"\n", b"\r\n", b"a", b" "])


@given(st.lists(_PIECES).map(b"".join) | st.binary())
def test_data_is_sent_with_crlf_line_ends_and_leading_dots_doubled(data: bytes) -> None:
    wire = _dot_stuffed(data)
    assert wire.endswith(b"\r\n.\r\n")
    lines = wire[: -len(b"\r\n.\r\n")].split(b"\r\n")
    assert not any(b"\r" in line or b"\n" in line for line in lines)
    assert b"." not in lines  # the end of DATA cannot come early
    # what the server reads back (RFC 5321 4.5.2): the lines of the message, any line ending
    ended = data if data.endswith((b"\r", b"\n")) else data + b"\n"
    assert [line[1:] if line.startswith(b".") else line for line in lines] == re.split(rb"\r\n|\r|\n", ended)[:-1]


def test_server_down_is_temporary() -> None:
    transport = _transport(_free_port())
    with pytest.raises(
        TemporaryDeliveryError, match=r"cannot connect to SMTP server 127.0.0.1:\d+: Connection refused"
    ):
        transport.send(_render())


def test_failure_after_the_content_was_sent_is_outcome_unknown(smtp: tuple[Recorder, int]) -> None:
    handler, port = smtp
    handler.drop_after_data = True
    with _transport(port) as transport, pytest.raises(OutcomeUnknown, match=r"may have been delivered"):
        transport.send(_render())


def test_no_final_reply_in_time_is_outcome_unknown(smtp: tuple[Recorder, int]) -> None:
    handler, port = smtp
    handler.hold = concurrent.futures.Future()
    transport = _transport(port, data_timeout=0.2)
    try:
        with pytest.raises(OutcomeUnknown, match=r"timed out"):
            transport.send(_render())
    finally:
        if not handler.hold.done():  # the server cancels the handler when the client leaves
            handler.hold.set_result(None)
        transport.close()


PASSWORD = "s3cr#t:p@ss/wörd"


def _authenticator(server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login == b"mailer" and data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd replies 535 itself


def test_auth_from_the_url_and_the_password_never_shows(serve: Serve) -> None:
    handler, port = serve(authenticator=_authenticator, auth_require_tls=False)
    url = f"smtp://mailer:{quote(PASSWORD, safe='')}@127.0.0.1:{port}"
    transport = _transport(port, url)
    assert PASSWORD not in repr(transport) and quote(PASSWORD, safe="") not in repr(transport)
    assert repr(transport) == f"SmtpTransport('smtp://mailer:***@127.0.0.1:{port}')"
    with transport:
        transport.send(_render())
    assert handler.arrived[0].authenticated

    wrong = "Wr0ng-pa55word"
    bad = _transport(port, f"smtp://mailer:{wrong}@127.0.0.1:{port}")
    with pytest.raises(TemporaryDeliveryError) as caught:
        bad.send(_render())
    assert "refused the login of 'mailer': 535" in str(caught.value)
    assert wrong not in str(caught.value) and wrong not in repr(caught.value) and wrong not in repr(bad)
    assert wrong not in repr(bad.settings)


def test_a_reply_that_echoes_the_password_is_redacted(serve: Serve) -> None:
    handler, port = serve(authenticator=_authenticator, auth_require_tls=False)
    handler.rcpt_reply = f"550 5.1.1 odd server says {PASSWORD}"
    url = f"smtp://mailer:{quote(PASSWORD, safe='')}@127.0.0.1:{port}"
    with _transport(port, url) as transport, pytest.raises(PermanentDeliveryError) as caught:
        transport.send(_render())
    assert PASSWORD not in str(caught.value)
    assert "odd server says ***" in caught.value.detail


def test_url_forms_and_config_errors() -> None:
    assert SmtpSettings.parse("smtp://mail.example") == SmtpSettings("smtp", "mail.example", 25)
    tls = SmtpSettings.parse("smtps://u%40x:p%2Fw@mail.example")
    assert (tls.port, tls.username, tls.password) == (465, "u@x", "p/w")
    assert SmtpSettings.parse("smtp://mail.example:587?starttls=true").starttls == "required"
    assert SmtpSettings.parse("smtp://mail.example?starttls=optional&helo=me.example").helo == "me.example"
    for url, expected in [
        ("http://mail.example", "must start with smtp:// or smtps://"),
        ("smtp://u:hunter22@mail.example:x", "invalid port: smtp://u:\\*\\*\\*@mail.example:x"),
        ("smtp://mail.example?tls=1", "unknown option"),
        ("smtp://mail.example?starttls=maybe", "starttls must be"),
        ("smtps://mail.example?starttls=true", "smtps:// is TLS from the start"),
    ]:
        with pytest.raises(ConfigError, match=expected) as caught:
            SmtpSettings.parse(url)
        assert "hunter22" not in str(caught.value)
    assert transport_from_env({}) is None
    assert transport_from_env({"RECONCILER_SMTP_URL": "  "}) is None
    made = transport_from_env({"RECONCILER_SMTP_URL": "smtp://127.0.0.1:2525"})
    assert isinstance(made, SmtpTransport)
    _: EmailTransport = made


# --- TLS (needs a certificate; made with the openssl command) -------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate (trustme is not installed)")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
            *("-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def test_starttls(serve: Serve, certificate: tuple[Path, Path]) -> None:
    handler, port = serve(tls_context=_server_context(certificate), require_starttls=True)
    trusted = ssl.create_default_context(cafile=str(certificate[0]))
    with _transport(port, f"smtp://127.0.0.1:{port}?starttls=true", ssl_context=trusted) as transport:
        transport.send(_render())
    assert handler.arrived[0].tls

    untrusted = _transport(port, f"smtp://127.0.0.1:{port}?starttls=true", ssl_context=ssl.create_default_context())
    with pytest.raises(TemporaryDeliveryError, match=r"TLS with SMTP server 127.0.0.1:\d+ failed: .*certificate"):
        untrusted.send(_render())


def test_starttls_required_but_not_offered(smtp: tuple[Recorder, int]) -> None:
    _, port = smtp
    with pytest.raises(TemporaryDeliveryError, match="does not offer STARTTLS"):
        _transport(port, f"smtp://127.0.0.1:{port}?starttls=true").send(_render())
    with _transport(port, f"smtp://127.0.0.1:{port}?starttls=optional") as transport:
        transport.send(_render())  # optional: plain when not offered


def test_smtps(serve: Serve, certificate: tuple[Path, Path]) -> None:
    handler, port = serve(ssl_context=_server_context(certificate))
    trusted = ssl.create_default_context(cafile=str(certificate[0]))
    with _transport(port, f"smtps://127.0.0.1:{port}", ssl_context=trusted) as transport:
        transport.send(_render())
    assert len(handler.arrived) == 1


# --- the local sink -------------------------------------------------------------------


def test_sink_writes_a_maildir_message_and_sms_lines(tmp_path: Path) -> None:
    sink = MaildirSink(tmp_path / "outbox")
    as_email: EmailTransport = sink
    as_sms: SmsTransport = sink
    receipt = as_email.send(_render())
    assert receipt.provider_id is not None
    [stored] = mailbox.Maildir(tmp_path / "outbox" / "mail", create=False).values()
    raw = (tmp_path / "outbox" / "mail" / "new" / receipt.provider_id).read_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, MimeMessage)
    assert parsed["Subject"] == "Välkommen, Åsa"
    assert parsed["Message-ID"] == MESSAGE_ID == stored["Message-ID"]
    assert b"\r\n" not in raw
    [attachment] = list(parsed.iter_attachments())
    assert attachment.get_content() == PDF
    assert not list((tmp_path / "outbox" / "mail" / "tmp").iterdir())

    as_sms.send(
        SmsMessage(
            to="+46701234567", sender="ACME", text="Hej Åsa!", reference="7:1:sms:1", segments=1, encoding="UCS-2"
        )
    )
    as_sms.send(
        SmsMessage(to="+46707654321", sender="ACME", text="Two", reference="8:1:sms:1", segments=1, encoding="GSM-7")
    )
    sink.close()
    lines = [json.loads(line) for line in (tmp_path / "outbox" / "sms.jsonl").read_text("utf-8").splitlines()]
    assert [(line["to"], line["text"], line["reference"]) for line in lines] == [
        ("+46701234567", "Hej Åsa!", "7:1:sms:1"),
        ("+46707654321", "Two", "8:1:sms:1"),
    ]


def test_sink_that_cannot_write_is_temporary(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(TemporaryDeliveryError, match="cannot write to the local outbox"):
        MaildirSink(blocker / "outbox").send(
            SmsMessage(to="+46701234567", sender="ACME", text="x", reference="r", segments=1, encoding="GSM-7")
        )


def test_to_mime_message_id_and_header_safety() -> None:
    message = EmailMessage(
        to=Address("a@example.org"),
        sender=Address("b@example.org", "Bö"),
        subject="Line\r\nBcc: evil@example.org",
        html="<p>x</p>",
        text="x",
        message_id="42:1:welcome:1",
        attachments=(Attachment("x.bin", b"\0"),),
    )
    mime = email.message_from_bytes(to_mime(message), policy=email.policy.default)
    assert mime["Message-ID"] == "<42.1.welcome.1@example.org>"  # valid, and the same every time
    assert mime["Subject"] == "Line Bcc: evil@example.org"
    assert mime["Bcc"] is None
    with pytest.raises(PermanentDeliveryError, match="invalid recipient address"):
        to_mime(EmailMessage(**{**message.__dict__, "to": Address("not an address")}))


def test_a_long_unsubscribe_url_is_not_encoded() -> None:
    url = "<mailto:webinars@acme.example?subject=unsubscribe%20anna.lindqvist%40nordvind.example>"
    message = EmailMessage(
        to=Address("a@x.example"),
        sender=Address("n@acme.example"),
        subject="Hi",
        html="<p>x</p>",
        text="x",
        message_id="<1@acme.example>",
        headers=(("List-Unsubscribe", url),),
    )
    assert f"List-Unsubscribe: {url}\r\n".encode() in to_mime(message)


def test_a_render_over_its_budget_is_a_permanent_error() -> None:
    ticks = itertools.count(0.0, 3.0)  # every reading of the CPU clock: 3 s later
    template = EmailTemplate.compile(_payload(), _files(), cpu_seconds=2.0, cpu_clock=lambda: next(ticks))
    with pytest.raises(PermanentDeliveryError, match=r"^rendering the subject took more than 2 s of CPU$"):
        template.render(
            to=None, contact=_contact(), flow=_flow(), associates={}, message_id=MESSAGE_ID, unsubscribe_url=UNSUBSCRIBE
        )
    long = _contact(first_name="x" * 1000)
    with pytest.raises(PermanentDeliveryError, match=r"^subject is longer than 998 characters$"):
        _render(contact=long)
    body = b"<p>" + b"{{ contact.first_name }}" * 3000 + b"</p>"
    with pytest.raises(PermanentDeliveryError, match=r"^e-mail body is longer than 2,097,152 characters$"):
        _render(contact=long, payload=_payload(subject="Hi"), files=_files() | {"content/welcome.html": body})
