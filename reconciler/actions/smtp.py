"""E-mail delivery over SMTP with the standard library, configured by one URL.

``RECONCILER_SMTP_URL`` is ``smtp://[user:password@]host[:port][?starttls=true]``
(port 25; ``starttls=optional`` uses TLS when offered, ``true`` insists on it) or
``smtps://…`` (implicit TLS, port 465); ``helo=name`` sets the EHLO name. User and
password are percent-decoded. The password lives only in this object: ``repr`` and
every error text are redacted, and nothing here writes it anywhere.

Connections are kept open across sends (a dispatcher drains many rows in a row) in
a small pool: a send takes an idle connection or opens one, and gives it back, so
threads sending at once each use a connection of their own (as many as send at once,
never more). An idle connection is checked with NOOP before use, and one that turns
out to be dead before the message was handed over is replaced once, transparently.

Errors are translated at this edge: no connection, timeouts and 4xx replies before
the message is handed over are ``TemporaryDeliveryError``; 5xx replies are
``PermanentDeliveryError``; a failure after the message content went out (no final
reply) is ``OutcomeUnknown`` — the server may have queued it, so it is never resent
blindly. The transport is safe to share between threads.
"""

from __future__ import annotations

import base64
import re
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from reconciler.actions.delivery import (
    DeliveryError,
    EmailMessage,
    EmailTransport,
    OutcomeUnknown,
    PermanentDeliveryError,
    Receipt,
    TemporaryDeliveryError,
)
from reconciler.actions.mime import message_id_header, to_mime
from reconciler.errors import ConfigError

__all__ = ["SMTP_URL_VARIABLE", "SmtpSettings", "SmtpTransport", "transport_from_env"]

SMTP_URL_VARIABLE = "RECONCILER_SMTP_URL"
_PORTS = {"smtp": 25, "smtps": 465}
_STARTTLS: dict[str, Literal["off", "optional", "required"]] = {
    **dict.fromkeys(("", "false", "no", "off", "0"), "off"),
    "optional": "optional",
    **dict.fromkeys(("true", "yes", "on", "1", "required"), "required"),
}
_QUEUED_AS = re.compile(r"queued as ([A-Za-z0-9._-]+)", re.IGNORECASE)
_SEND_RATE = 250_000  # bytes per second we allow at least for handing over the content


@dataclass(frozen=True)
class SmtpSettings:
    """A parsed ``RECONCILER_SMTP_URL``; ``redacted`` is safe to show."""

    scheme: Literal["smtp", "smtps"]
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: Literal["off", "optional", "required"] = "off"
    helo: str | None = None

    @classmethod
    def parse(cls, url: str) -> SmtpSettings:
        parts = urlsplit(url.strip())
        shown = _redact_url(url)
        scheme = parts.scheme.lower()
        if scheme not in _PORTS:
            raise ConfigError(f"{SMTP_URL_VARIABLE} must start with smtp:// or smtps:// (got {shown})")
        if not parts.hostname:
            raise ConfigError(f"{SMTP_URL_VARIABLE} has no host: {shown}")
        try:
            port = parts.port or _PORTS[scheme]
        except ValueError:
            raise ConfigError(f"{SMTP_URL_VARIABLE} has an invalid port: {shown}") from None
        if parts.path not in ("", "/"):
            raise ConfigError(f"{SMTP_URL_VARIABLE} takes no path: {shown}")
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = sorted(set(options) - {"starttls", "helo"})
        if unknown:
            raise ConfigError(f"{SMTP_URL_VARIABLE}: unknown option(s) {', '.join(unknown)}; known: helo, starttls")
        starttls = _STARTTLS.get(options.get("starttls", "").lower())
        if starttls is None:
            raise ConfigError(f"{SMTP_URL_VARIABLE}: starttls must be true, optional or false")
        if scheme == "smtps" and starttls != "off":
            raise ConfigError(f"{SMTP_URL_VARIABLE}: smtps:// is TLS from the start; starttls is for smtp://")
        return cls(
            scheme="smtps" if scheme == "smtps" else "smtp",
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            starttls=starttls,
            helo=options.get("helo") or None,
        )

    @property
    def redacted(self) -> str:
        user = f"{quote(self.username, safe='')}{':***' if self.password is not None else ''}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = "?starttls=" + ("true" if self.starttls == "required" else "optional") if self.starttls != "off" else ""
        return f"{self.scheme}://{user}{host}:{self.port}{query}"


def _redact_url(url: str) -> str:
    """The URL with any password replaced, for messages about a URL we cannot parse."""
    return re.sub(r"(//[^/@:?#]*:)[^@/?#]*@", r"\1***@", url)


@dataclass
class _Connection:
    """One kept SMTP session; ``broken`` when it must not be used again."""

    smtp: smtplib.SMTP
    last_used: float
    broken: bool = False


class SmtpTransport:
    """``EmailTransport`` over SMTP; see the module docstring for URL and errors."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30,
        data_timeout: float = 120,
        ssl_context: ssl.SSLContext | None = None,
        idle_check: float = 30,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``timeout`` bounds connecting and every command; ``data_timeout`` the wait
        for the final reply once the content is sent (servers scan mail first).
        ``ssl_context`` defaults to the system's trust store (``SSL_CERT_FILE`` works)."""
        self.settings = SmtpSettings.parse(url)
        self.timeout = timeout
        self.data_timeout = data_timeout
        self.idle_check = idle_check
        self._ssl_context = ssl_context
        self._clock = clock
        self._idle: list[_Connection] = []  # kept connections no send is using
        self._lock = threading.Lock()  # guards _idle and connections, never held during I/O
        self.connections = 0  # opened so far; for tests and metrics

    def __repr__(self) -> str:
        return f"SmtpTransport({self.settings.redacted!r})"

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the interface ----------------------------------------------------------------

    def send(self, message: EmailMessage) -> Receipt:
        addresses = [message.sender.address, message.to.address]
        utf8 = not all(a.isascii() for a in addresses)
        try:
            data = to_mime(message, utf8=utf8)
            message_id = message_id_header(message)
            connection, reused = self._take()
            try:
                return self._transaction(connection, message, data, utf8, message_id)
            except _Broken as exc:
                connection.broken = True
                if not reused:
                    raise TemporaryDeliveryError(exc.detail) from None
            finally:
                self._give_back(connection)
            # the kept connection was dead: once more on a new one
            connection = self._open()
            try:
                return self._transaction(connection, message, data, utf8, message_id)
            except _Broken as exc:
                connection.broken = True
                raise TemporaryDeliveryError(exc.detail) from None
            finally:
                self._give_back(connection)
        except DeliveryError as exc:
            exc.detail = self._redact(exc.detail)
            exc.args = (exc.detail,)
            raise

    def close(self) -> None:
        """Quit the idle connections; one in use by a send is closed when it is given back
        after this only if it broke, else kept for the next send (or the next close)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            try:
                connection.smtp.quit()
            except (OSError, smtplib.SMTPException):
                connection.smtp.close()

    # --- connections ------------------------------------------------------------------

    def _take(self) -> tuple[_Connection, bool]:
        """An idle connection (checked with NOOP when idle long), else a new one; and
        whether it was kept from before."""
        while True:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                return self._open(), False
            now = self._clock()
            if now - connection.last_used <= self.idle_check:
                connection.last_used = now
                return connection, True
            try:
                healthy = connection.smtp.noop()[0] == 250
            except (OSError, smtplib.SMTPException):
                healthy = False
            if healthy:
                connection.last_used = now
                return connection, True
            connection.smtp.close()

    def _open(self) -> _Connection:
        smtp = self._connect()
        with self._lock:
            self.connections += 1
        return _Connection(smtp, self._clock())

    def _give_back(self, connection: _Connection) -> None:
        if connection.broken:
            connection.smtp.close()
            return
        with self._lock:
            self._idle.append(connection)

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        where = f"SMTP server {s.host}:{s.port}"
        smtp: smtplib.SMTP | None = None
        try:
            if s.scheme == "smtps":
                smtp = smtplib.SMTP_SSL(s.host, s.port, s.helo, timeout=self.timeout, context=self._context())
            else:
                smtp = smtplib.SMTP(s.host, s.port, s.helo, timeout=self.timeout)
            smtp.ehlo_or_helo_if_needed()
            if s.starttls != "off":
                if smtp.has_extn("starttls"):
                    smtp.starttls(context=self._context())
                    smtp.ehlo()
                elif s.starttls == "required":
                    raise TemporaryDeliveryError(f"{where} does not offer STARTTLS, which {SMTP_URL_VARIABLE} requires")
            if s.username:
                _login(smtp, s.username, s.password or "")
        except BaseException as exc:
            if smtp is not None:
                smtp.close()
            if isinstance(exc, smtplib.SMTPAuthenticationError):
                raise TemporaryDeliveryError(
                    f"{where} refused the login of {s.username!r}: {_reply(exc.smtp_code, exc.smtp_error)}"
                ) from None
            if isinstance(exc, smtplib.SMTPNotSupportedError):
                hint = " (try ?starttls=true)" if s.scheme == "smtp" and s.starttls == "off" else ""
                raise TemporaryDeliveryError(f"{where} does not offer AUTH for the login{hint}") from None
            if isinstance(exc, smtplib.SMTPResponseException):
                raise TemporaryDeliveryError(
                    f"{where} refused the session: {_reply(exc.smtp_code, exc.smtp_error)}"
                ) from None
            if isinstance(exc, ssl.SSLError):
                raise TemporaryDeliveryError(f"TLS with {where} failed: {exc}") from None
            if isinstance(exc, OSError):
                raise TemporaryDeliveryError(f"cannot connect to {where}: {_oserror(exc)}") from None
            raise
        return smtp

    # --- one message ------------------------------------------------------------------

    def _transaction(
        self, connection: _Connection, message: EmailMessage, data: bytes, utf8: bool, message_id: str
    ) -> Receipt:
        smtp = connection.smtp
        options: list[str] = []
        if utf8:
            if not smtp.has_extn("smtputf8"):
                raise PermanentDeliveryError("the address is not ASCII and the SMTP server does not support SMTPUTF8")
            options += ["SMTPUTF8", "BODY=8BITMIME"]
        if smtp.has_extn("size"):
            limit = int(smtp.esmtp_features.get("size") or 0)
            if limit and len(data) > limit:
                raise PermanentDeliveryError(f"the message is {len(data)} bytes; the SMTP server accepts {limit}")
            options.append(f"SIZE={len(data)}")
        try:
            self._envelope(connection, message, options, utf8)
        except DeliveryError:
            raise
        except (OSError, smtplib.SMTPException) as exc:  # before the content: nothing was handed over
            raise _Broken(
                f"connection to the SMTP server failed before the message was sent: {_oserror(exc)}"
            ) from None
        try:
            if smtp.sock is not None:
                smtp.sock.settimeout(max(self.timeout, len(data) / _SEND_RATE))
            smtp.send(_dot_stuffed(data))
            if smtp.sock is not None:
                smtp.sock.settimeout(self.data_timeout)
            code, reply = smtp.getreply()
            if smtp.sock is not None:
                smtp.sock.settimeout(self.timeout)
        except (OSError, smtplib.SMTPException) as exc:
            connection.broken = True
            raise OutcomeUnknown(
                "the SMTP server did not confirm the message after it was sent "
                f"({_oserror(exc)}); it may have been delivered"
            ) from None
        if 200 <= code < 300:
            text = _text(reply)
            found = _QUEUED_AS.search(text)
            return Receipt(
                provider_id=found.group(1) if found else None,
                detail=f"{code} {text}".strip(),
                extra={"message_id": message_id, "server": self.settings.redacted},
            )
        if code == 421:
            connection.broken = True
        raise _classify("the SMTP server refused the message", code, reply)

    def _envelope(self, connection: _Connection, message: EmailMessage, options: list[str], utf8: bool) -> None:
        """MAIL, RCPT and DATA, up to the server's 354. Pipelined (RFC 2920: one write, then
        the three replies) when the server offers it, so a message costs two round trips."""
        smtp = connection.smtp
        sender, recipient = message.sender.address, message.to.address
        what = (f"sender {sender}", f"recipient {recipient}", "DATA")
        expected = ((250,), (250, 251), (354,))
        mail = f"FROM:<{sender}>{''.join(' ' + o for o in options)}"  # addresses checked already (to_mime)
        replies: list[tuple[int, bytes]] = []
        if not utf8 and smtp.has_extn("pipelining"):
            smtp.send(f"MAIL {mail}\r\nRCPT TO:<{recipient}>\r\nDATA\r\n")
            replies = [smtp.getreply() for _ in range(3)]
        else:
            for step, ok in enumerate(expected):
                if step == 0:  # smtplib switches the command encoding to UTF-8 for SMTPUTF8
                    reply = smtp.mail(sender, options) if utf8 else _command(smtp, "mail", mail)
                elif step == 1:
                    reply = smtp.rcpt(recipient) if utf8 else _command(smtp, "rcpt", f"TO:<{recipient}>")
                else:
                    reply = _command(smtp, "data", "")
                replies.append(reply)
                if reply[0] not in ok:
                    break
        for (code, text), ok, name in zip(replies, expected, what, strict=False):
            if code not in ok:
                if replies[-1][0] == 354:  # pipelined, and the server took DATA after all: end it empty
                    smtp.send(".\r\n")
                    smtp.getreply()
                raise self._refused(connection, name, code, text)

    def _refused(self, connection: _Connection, what: str, code: int, reply: bytes) -> DeliveryError:
        if code == 421:  # closing the session
            connection.broken = True
        else:
            try:
                connection.smtp.rset()
            except (OSError, smtplib.SMTPException):
                connection.broken = True
        return _classify(f"the SMTP server refused the {what}", code, reply)

    def _redact(self, text: str) -> str:
        password = self.settings.password
        if not password:
            return text
        user = self.settings.username or ""
        secrets = {
            password,
            quote(password, safe=""),
            base64.b64encode(password.encode()).decode(),
            base64.b64encode(f"\0{user}\0{password}".encode()).decode(),
        }
        for secret in sorted(secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


def _command(smtp: smtplib.SMTP, name: str, argument: str) -> tuple[int, bytes]:
    smtp.putcmd(name, argument)
    return smtp.getreply()


def _login(smtp: smtplib.SMTP, user: str, password: str) -> None:
    """``smtp.login``, plus AUTH PLAIN in UTF-8 (RFC 4616) for credentials that are not
    ASCII, which smtplib cannot encode."""
    if (user + password).isascii():
        smtp.login(user, password)
        return
    if not smtp.has_extn("auth"):
        raise smtplib.SMTPNotSupportedError("SMTP AUTH extension not supported by server.")
    if "PLAIN" not in smtp.esmtp_features["auth"].upper().split():
        raise smtplib.SMTPAuthenticationError(504, b"non-ASCII credentials need AUTH PLAIN, which is not offered")
    token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode("ascii")
    code, reply = smtp.docmd("AUTH", f"PLAIN {token}")
    if code not in (235, 503):  # 503: already authenticated
        raise smtplib.SMTPAuthenticationError(code, reply)


class _Broken(Exception):
    """The connection failed before the content was handed over; safe to retry."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _classify(what: str, code: int, reply: bytes) -> DeliveryError:
    text = f"{what}: {_reply(code, reply)}"
    if 500 <= code < 600:
        return PermanentDeliveryError(text)
    return TemporaryDeliveryError(text)


def _text(reply: bytes | str) -> str:
    raw = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(raw.split())


def _reply(code: int, reply: bytes | str) -> str:
    return f"{code} {_text(reply)}".strip()


def _oserror(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return text or type(exc).__name__


def _dot_stuffed(data: bytes) -> bytes:
    """The DATA payload: CRLF line ends, leading dots doubled, ``CRLF.CRLF`` at the end.
    (``bytes.replace`` passes, three times faster than regular expressions: this runs on
    every message.)"""
    body = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n.", b"\n..").replace(b"\n", b"\r\n")
    if body.startswith(b"."):
        body = b"." + body
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


def transport_from_env(env: Mapping[str, str]) -> EmailTransport | None:
    """An SMTP transport from ``RECONCILER_SMTP_URL``; None when it is not set."""
    url = env.get(SMTP_URL_VARIABLE, "").strip()
    return SmtpTransport(url) if url else None
