"""MIME bytes and the text alternative, checked by parsing them back with the standard library.

``to_mime`` writes the structure itself and leaves every encoding to the standard
library; here the result is read back with ``email.policy.default`` (no defects, the
same headers and bodies) and its lines measured. The text alternative made from a
template's skeleton must equal ``html_to_text`` of the rendered HTML, for awkward values.
"""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage as MimeMessage
from typing import Any

import pytest

from reconciler.actions.delivery import Address, Attachment, EmailMessage, PermanentDeliveryError
from reconciler.actions.mime import MAX_LINE, to_mime
from reconciler.compose import EmailTemplate
from reconciler.compose.html_text import TextSkeleton, html_to_text
from reconciler.messages import EmailSend
from reconciler.spec.models import Flow
from tests.conftest import flow_doc


def _message(**values: Any) -> EmailMessage:
    base: dict[str, Any] = {
        "to": Address("asa@example.org", "Åsa Öberg"),
        "sender": Address("news@acme.example", "Acme, Nyheter"),
        "subject": "Hej",
        "html": "<p>Hej</p>",
        "text": "Hej",
        "message_id": "<7.1.welcome.1@reconciler.invalid>",
    }
    return EmailMessage(**(base | values))


def _parsed(raw: bytes) -> MimeMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, MimeMessage)
    for part in parsed.walk():
        assert not part.defects, (part.get_content_type(), part.defects)
    return parsed


def _content(part: MimeMessage | None) -> str:
    """A text part's content with the line ends a mail client shows (CRLF on the wire)."""
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def _longest_line(raw: bytes) -> int:
    return max(len(line) for line in raw.split(b"\r\n"))


@pytest.mark.parametrize(
    "subject",
    [
        "News for you, " * 40,  # long ASCII: folded at spaces
        "Välkommen, Åsa! " * 30,  # long non-ASCII: encoded words
        "=?utf-8?q?not_an_encoded_word?=",  # ASCII that would read as one: encoded, so it reads back as written
        "x" * 1200,  # one word longer than a line may be
    ],
)
def test_subjects_read_back_as_written_on_short_lines(subject: str) -> None:
    raw = to_mime(_message(subject=subject))
    assert raw.isascii() and _longest_line(raw) <= MAX_LINE
    assert _parsed(raw)["Subject"] == subject.strip()


def test_bodies_are_seven_bit_on_short_lines_and_read_back() -> None:
    text = "Hej Åsa!\n" + "ord " * 2000 + "\n.leading dot\r\nCRLF and \r a lone CR\n--=_boundary-like\n"
    html = "<p>" + "Привет мир " * 300 + "</p>"
    raw = to_mime(_message(text=text, html=html))
    assert raw.isascii() and _longest_line(raw) <= MAX_LINE
    parsed = _parsed(raw)
    plain, rich = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert plain is not None and rich is not None
    assert _content(plain) == text.replace("\r\n", "\n").replace("\r", "\n")
    assert _content(rich) == html + "\n"
    assert plain["Content-Transfer-Encoding"] == "quoted-printable"
    assert rich["Content-Transfer-Encoding"] == "base64"  # mostly non-Latin: base64 is shorter


def test_plain_ascii_stays_seven_bit_and_the_boundary_is_not_in_it() -> None:
    raw = to_mime(_message(text="--=_ looks like a boundary\nplain", html="<p>plain</p>"))
    parsed = _parsed(raw)
    plain = parsed.get_body(("plain",))
    assert plain is not None and plain["Content-Transfer-Encoding"] == "7bit"
    assert _content(plain) == "--=_ looks like a boundary\nplain\n"


def test_addresses_names_attachments_and_extra_headers() -> None:
    message = _message(
        reply_to=Address("help@acme.example", 'Help "desk"'),
        attachments=(Attachment("Årsrapport 2026.pdf", b"%PDF" + bytes(range(256)), "application/pdf"),),
        headers=(("List-Unsubscribe", "<https://acme.example/u/1>\r\nBcc: evil@example.org"),),
    )
    parsed = _parsed(to_mime(message))
    assert parsed["From"].addresses[0].display_name == "Acme, Nyheter"
    assert parsed["To"].addresses[0].display_name == "Åsa Öberg"
    assert parsed["Reply-To"].addresses[0].display_name == 'Help "desk"'
    assert parsed["List-Unsubscribe"] == "<https://acme.example/u/1> Bcc: evil@example.org"  # one line, no new header
    assert parsed["Bcc"] is None
    assert parsed["MIME-Version"] == "1.0"
    (attachment,) = parsed.iter_attachments()
    assert attachment.get_filename() == "Årsrapport 2026.pdf"
    assert attachment.get_content() == b"%PDF" + bytes(range(256))


def test_headers_that_cannot_be_sent_are_permanent_errors() -> None:
    with pytest.raises(PermanentDeliveryError, match="not ASCII"):
        to_mime(_message(headers=(("List-Unsubscribe", "<https://acme.example/ö>"),)))
    with pytest.raises(PermanentDeliveryError, match="longer than 998"):
        to_mime(_message(headers=(("List-Unsubscribe", "<https://acme.example/" + "u" * 1000 + ">"),)))
    with pytest.raises(PermanentDeliveryError, match="invalid extra header name"):
        to_mime(_message(headers=(("Subject", "again"),)))
    with pytest.raises(PermanentDeliveryError, match="invalid sender address 'news@@acme'"):
        to_mime(_message(sender=Address("news@@acme")))
    with pytest.raises(PermanentDeliveryError, match="needs SMTPUTF8"):
        to_mime(_message(to=Address("åsa@exempel.se")))


def test_smtputf8_keeps_utf8_headers() -> None:
    raw = to_mime(_message(to=Address("åsa@exempel.se", "Åsa"), subject="Välkommen"), utf8=True)
    assert "Subject: Välkommen\r\n".encode() in raw
    parsed = email.message_from_string(raw.decode("utf-8"), policy=email.policy.default)  # as SMTPUTF8 allows
    assert parsed["To"].addresses[0].addr_spec == "åsa@exempel.se"
    assert parsed["To"].addresses[0].display_name == "Åsa"


# --- the text alternative from a skeleton ------------------------------------------------------

FLOW = Flow.model_validate(
    flow_doc(
        "f",
        steps=[{"id": "done", "type": "finish"}],
        settings={"email": {"sender": "news@acme.example", "reply_to": "help@acme.example"}},
    )
)
TEMPLATES = {
    "plain fields": "<h1>Hej {{ contact.first_name }}!</h1><p>{{ contact.company }}  and {{ contact.city }}</p>",
    "links": (
        '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> <a href="{{ contact.custom.site }}">{{ contact.custom.site }}</a>'
        '<a href="mailto:{{ contact.email }}">{{ contact.email }}</a> <a href="#{{ contact.city }}">top</a></p>'
    ),
    "lists and tables": "<ul><li>{{ contact.first_name }}</li><li> {{ contact.city }} </li></ul>"
    "<table><tr><td>{{ contact.company }}</td><td>x</td></tr></table>",
    "skipped": "<head><title>{{ contact.first_name }}</title></head><body><p>Hi {{ contact.city }}</p>"
    "<script>var x = '{{ contact.company }}';</script></body>",
    "statements": "<p>{% if contact.city %}{{ contact.city }}{% endif %} done</p>",
    "alt text": '<p>x <img alt="{{ contact.first_name }}" src="a.png"> y</p>',
    "reference": "<p>&{{ contact.first_name }} &amp; more</p>",
}
CONTACTS = [
    {"first_name": "Åsa", "company": "Kund AB", "city": "Umeå", "site": "https://kund.example/a?b=1&c=2"},
    {"first_name": "<Bo & Co>", "company": "a\u00a0 b\n\nc", "city": "  x  y ", "site": "mailto:bo@x.example"},
    {"first_name": "amp;", "company": "<b>bold</b>", "city": "#anchor", "site": "javascript:alert(1)"},
    {"first_name": "Li", "company": "&lt;", "city": "\u00a0z", "site": "Li"},
]


@pytest.mark.parametrize("name", TEMPLATES)
def test_the_text_from_the_skeleton_is_the_text_of_the_rendered_html(name: str) -> None:
    message = EmailSend(to="bo@x.example", subject="s", content="c.html")
    template = EmailTemplate.compile(message, {"c.html": TEMPLATES[name].encode()})
    for values in CONTACTS:
        fields = {k: v for k, v in values.items() if k != "site"}
        contact = {"email": "bo@x.example", **fields, "custom": {"site": values["site"]}}
        message = template.render(
            to=None, contact=contact, flow=FLOW, associates={}, message_id="<1@x>", unsubscribe_url="mailto:u@x?s=1"
        )
        assert message.text == html_to_text(message.html), (name, values)
    assert template.html is not None
    used = isinstance(template.html.skeleton, TextSkeleton)
    assert used == (name in {"plain fields", "links", "lists and tables", "skipped"}), name


def test_the_date_header_has_whole_seconds_in_the_given_zone() -> None:
    stockholm = timezone(timedelta(hours=1))
    first = to_mime(_message(), date=datetime(2026, 1, 5, 10, 0, 7, 999_999, tzinfo=stockholm))
    again = to_mime(_message(), date=datetime(2026, 1, 5, 9, 0, 7, 1, tzinfo=UTC))
    assert _parsed(first)["Date"] == "Mon, 05 Jan 2026 10:00:07 +0100"
    assert _parsed(again)["Date"] == "Mon, 05 Jan 2026 09:00:07 +0000"
