"""A rendered e-mail as the bytes handed to an SMTP server or written to a maildir.

Why not ``email.message.EmailMessage``: with ``policy.SMTP`` it re-parses every header
it is given and every header it writes (the header registry), and that was two thirds
of the dispatcher's time per message. The structure of our messages is always the same
— ``multipart/alternative`` (text, then HTML), inside ``multipart/mixed`` when there
are attachments — so it is written directly, and every *encoding* is the standard
library's: ``email.header.Header`` for RFC 2047 encoded words (subjects) and
``email.utils.formataddr`` for display names, ``email.utils.encode_rfc2231`` for
non-ASCII file names, ``binascii.b2a_qp`` (quoted-printable) and ``base64`` for bodies.
Addresses are checked by the standard library's parser (``headerregistry.Address``).

What must never happen here: a header line longer than RFC 5322's 998 characters, a
CR or LF inside a header value (header injection), 8-bit bytes in a message for a
server without SMTPUTF8, or a boundary that occurs inside a part.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from datetime import UTC, datetime, timedelta
from email.errors import HeaderParseError
from email.header import Header
from email.headerregistry import Address as HeaderAddress
from email.utils import encode_rfc2231, format_datetime, formataddr
from email.utils import quote as quote_name
from functools import lru_cache

from reconciler.actions.delivery import Address, EmailMessage, PermanentDeliveryError

__all__ = ["MAX_LINE", "message_id_header", "to_mime"]

MAX_LINE = 998  # RFC 5322 2.1.1, without the CRLF
_WHITESPACE = re.compile(r"\s+")
_NOT_ATEXT = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_NEWLINES = re.compile(r"\r\n|\r")
# local@domain as dot-atoms: a strict subset of RFC 5322 addr-specs, checked without the full parser
_SIMPLE_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
)
_CRLF = b"\r\n"


def _one_line(value: str) -> str:
    """A header value without CR, LF or runs of whitespace: nothing can start a new header."""
    return _WHITESPACE.sub(" ", value).strip()


# --- headers -------------------------------------------------------------------------------


def _check_address(value: str, what: str, utf8: bool) -> None:
    if not value.isascii():
        # the stdlib refuses a non-ASCII local part as an Address; as text it is kept
        # (raw under SMTPUTF8, which is the only way such an address can be sent)
        if not utf8:
            raise PermanentDeliveryError(f"the {what} address {value!r} is not ASCII; it needs SMTPUTF8")
        local, at, domain = value.rpartition("@")
        if not at or not local or not domain or any(c.isspace() or c in '<>,;:"()[]\\' for c in value):
            raise PermanentDeliveryError(f"invalid {what} address {value!r}")
        return
    if _SIMPLE_ADDRESS.fullmatch(value):
        return
    message = _address_problem(value)
    if message is not None:
        raise PermanentDeliveryError(f"invalid {what} address {value!r}: {message}")


@lru_cache(maxsize=1024)  # senders and reply-to addresses repeat on every message
def _address_problem(value: str) -> str | None:
    try:
        HeaderAddress(addr_spec=value)
    except (ValueError, IndexError, HeaderParseError) as exc:
        return str(exc)
    return None


def _mailbox(address: Address, what: str, utf8: bool) -> str:
    """``Name <addr>``: the name quoted when it needs it, RFC 2047-encoded when it is not
    ASCII (kept as UTF-8 under SMTPUTF8)."""
    _check_address(address.address, what, utf8)
    name = _one_line(address.name or "")
    if not name:
        return address.address
    if utf8 and not name.isascii():
        return f'"{quote_name(name)}" <{address.address}>'
    return formataddr((name, address.address), "utf-8")


def _unstructured(name: str, value: str, utf8: bool) -> str:
    """Free text (a subject), folded by ``Header`` at whitespace; RFC 2047 encoded words
    only when needed (not ASCII, or ASCII that would read as an encoded word), and raw
    UTF-8 under SMTPUTF8 when it fits on one line."""
    value = _one_line(value)
    if not value:
        return ""
    if "=?" not in value:
        if value.isascii() and len(name) + 2 + len(value) <= 76:
            return value  # what Header would give: nothing to fold or encode
        if value.isascii():
            folded = Header(value, "us-ascii", header_name=name).encode(linesep="\r\n")
            if all(len(line) <= MAX_LINE - len(name) - 2 for line in folded.split("\r\n")):
                return folded
        elif utf8 and len(name) + 2 + len(value.encode()) <= MAX_LINE:
            return value
    return Header(value, "utf-8", header_name=name).encode(linesep="\r\n")


def _raw(name: str, value: str) -> str:
    """A structured header we pass on as given (``List-Unsubscribe: <url>``): never
    encoded or folded, which would break the URL for mail clients; so it must fit."""
    value = _one_line(value)
    if not value.isascii():
        raise PermanentDeliveryError(f"the {name} header is not ASCII: {value[:80]!r}")
    if len(name) + 2 + len(value) > MAX_LINE:
        raise PermanentDeliveryError(f"the {name} header is longer than {MAX_LINE} characters")
    return value


def _dot_atom(text: str) -> str:
    return re.sub(r"\.{2,}", ".", _NOT_ATEXT.sub(".", text)).strip(".")


def message_id_header(message: EmailMessage) -> str:
    """The ``Message-ID`` header for the message's id: ``<left@right>`` with both sides
    valid dot-atoms (RFC 5322), so a receiver keeps it whole. Other characters (the ``:``
    of an outbox key) become ``.``, deterministically: a resend carries the same id.
    Without ``@`` the sender's domain is added."""
    value = message.message_id.strip().removeprefix("<").removesuffix(">")
    left, at, right = value.rpartition("@")
    if not at:
        left, right = value, message.sender.address.rpartition("@")[2]
    left, right = _dot_atom(left), _dot_atom(right)
    if not left or not right:
        raise ValueError(f"invalid Message-ID {message.message_id!r}")
    return f"<{left}@{right}>"


# --- bodies -----------------------------------------------------------------------------------


def _text_part(subtype: str, text: str) -> tuple[bytes, bytes]:
    """(part headers, encoded body) of a UTF-8 text part: ``7bit`` when it is short-lined
    ASCII, else quoted-printable — or base64 when that is shorter (mostly non-Latin text)."""
    data = _NEWLINES.sub("\n", text).encode("utf-8")
    if not data.endswith(b"\n"):
        data += b"\n"
    if data.isascii() and max(map(len, data.split(b"\n"))) <= MAX_LINE:
        cte, body = b"7bit", data
    else:
        body = binascii.b2a_qp(data, istext=True)  # soft line breaks at 76
        packed = base64.encodebytes(data)
        if len(packed) < len(body):
            cte, body = b"base64", packed
        else:
            cte = b"quoted-printable"
    headers = b'Content-Type: text/%s; charset="utf-8"\r\nContent-Transfer-Encoding: %s\r\n' % (
        subtype.encode(),
        cte,
    )
    return headers, body.replace(b"\n", _CRLF)


def _attachment_part(filename: str, mime_type: str, content: bytes) -> tuple[bytes, bytes]:
    maintype, _, subtype = mime_type.partition("/")
    kind = f"{maintype or 'application'}/{subtype or 'octet-stream'}"
    if not re.fullmatch(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+", kind):
        kind = "application/octet-stream"
    name = _one_line(filename) or "attachment"
    # RFC 2231 for a name that is not ASCII: filename*=utf-8''%C3%85rs…
    parameter = f'filename="{quote_name(name)}"' if name.isascii() else f"filename*={encode_rfc2231(name, 'utf-8')}"
    if len(parameter) + 1 > MAX_LINE:
        raise PermanentDeliveryError(f"the attachment name {name[:80]!r}… is too long for a mail header")
    headers = (
        f"Content-Type: {kind}\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment;\r\n {parameter}\r\n"
    ).encode("ascii")
    return headers, base64.encodebytes(content).replace(b"\n", _CRLF)


def _multipart(subtype: str, parts: list[tuple[bytes, bytes]], boundary: bytes) -> tuple[bytes, bytes]:
    delimiter = b"--" + boundary
    body = b"".join(delimiter + _CRLF + headers + _CRLF + content + _CRLF for headers, content in parts)
    headers = b'Content-Type: multipart/%s; boundary="%s"\r\n' % (subtype.encode(), boundary)
    return headers, body + delimiter + b"--" + _CRLF


def _boundary(parts: list[tuple[bytes, bytes]]) -> bytes:
    """A random boundary that occurs in no part. ``=_`` cannot occur in quoted-printable
    or base64 text; a ``7bit`` part is searched."""
    while True:
        boundary = b"=_" + secrets.token_hex(12).encode()
        if not any(boundary in content for _, content in parts):
            return boundary


# --- the message ------------------------------------------------------------------------------


def _date_header(date: datetime) -> str:
    """RFC 5322 dates have whole seconds, and a dispatcher sends many messages in one. (The
    offset is part of the key: the same instant in two zones is two headers.)"""
    return _formatted_date(date.replace(microsecond=0), date.utcoffset())


@lru_cache(maxsize=8)
def _formatted_date(second: datetime, _offset: timedelta | None) -> str:
    return format_datetime(second)


def to_mime(message: EmailMessage, *, date: datetime | None = None, utf8: bool = False) -> bytes:
    """The message as RFC 5322 bytes with CRLF line ends: ``multipart/alternative`` (text,
    then HTML), inside ``multipart/mixed`` when there are attachments. Non-ASCII subjects
    and names are encoded (RFC 2047/2231) unless ``utf8`` (for a server that speaks
    SMTPUTF8); bodies are always 7-bit (quoted-printable or base64 where needed).
    Raises ``PermanentDeliveryError`` for an invalid address or a header that cannot be sent."""
    lines = [
        f"From: {_mailbox(message.sender, 'sender', utf8)}",
        f"To: {_mailbox(message.to, 'recipient', utf8)}",
    ]
    if message.reply_to is not None:
        lines.append(f"Reply-To: {_mailbox(message.reply_to, 'reply-to', utf8)}")
    lines += [
        f"Subject: {_unstructured('Subject', message.subject, utf8)}",
        f"Date: {_date_header(date or datetime.now(UTC))}",
        f"Message-ID: {message_id_header(message)}",
    ]
    reserved = {"from", "to", "reply-to", "subject", "date", "message-id", "mime-version", "content-type"}
    for name, value in message.headers:
        if not re.fullmatch(r"[!-9;-~]+", name) or name.lower() in reserved:
            raise PermanentDeliveryError(f"invalid extra header name {name!r}")
        lines.append(f"{name}: {_raw(name, value)}")
    lines.append("MIME-Version: 1.0")
    header = "\r\n".join(lines).encode("utf-8" if utf8 else "ascii")

    alternatives = [_text_part("plain", message.text), _text_part("html", message.html)]
    part = _multipart("alternative", alternatives, _boundary(alternatives))
    if message.attachments:
        parts = [part] + [_attachment_part(a.filename, a.mime_type, a.content) for a in message.attachments]
        part = _multipart("mixed", parts, _boundary(parts))
    headers, body = part
    return header + _CRLF + headers + _CRLF + body
