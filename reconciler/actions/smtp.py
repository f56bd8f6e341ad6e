"""E-mail delivery over SMTP with the standard library, configured by one URL.

``RECONCILER_SMTP_URL`` (see ``smtp_settings``) says where; the password lives only
in the settings object: ``repr`` and every error text are redacted, and nothing
here writes it anywhere.

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
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

from reconciler.actions.delivery import (
    DeliveryError,
    EmailMessage,
    EmailTransport,
    OutcomeUnknown,
    PermanentDeliveryError,
    Receipt,
    TemporaryDeliveryError,
    TransportUnreachable,
)
from reconciler.actions.mime import message_id_header, to_mime
from reconciler.actions.smtp_protocol import (
    QUEUED_AS,
    BrokenConnection,
    classify_reply,
    command,
    describe_oserror,
    describe_reply,
    login,
    reply_text,
)
from reconciler.actions.smtp_protocol import dot_stuffed as _dot_stuffed  # the name the tests import
from reconciler.actions.smtp_settings import SMTP_URL_VARIABLE, SmtpSettings

__all__ = ["SMTP_URL_VARIABLE", "SmtpSettings", "SmtpTransport", "transport_from_env"]

_SEND_RATE = 250_000  # bytes per second we allow at least for handing over the content


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
            except BrokenConnection as exc:
                connection.broken = True
                if not reused:
                    raise TemporaryDeliveryError(exc.detail) from None
            finally:
                self._give_back(connection)
            # the kept connection was dead: once more on a new one
            connection = self._open()
            try:
                return self._transaction(connection, message, data, utf8, message_id)
            except BrokenConnection as exc:
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
                login(smtp, s.username, s.password or "")
        except BaseException as exc:
            if smtp is not None:
                smtp.close()
            if isinstance(exc, smtplib.SMTPAuthenticationError):
                raise TemporaryDeliveryError(
                    f"{where} refused the login of {s.username!r}: {describe_reply(exc.smtp_code, exc.smtp_error)}"
                ) from None
            if isinstance(exc, smtplib.SMTPNotSupportedError):
                hint = " (try ?starttls=true)" if s.scheme == "smtp" and s.starttls == "off" else ""
                raise TemporaryDeliveryError(f"{where} does not offer AUTH for the login{hint}") from None
            if isinstance(exc, smtplib.SMTPResponseException):
                raise TemporaryDeliveryError(
                    f"{where} refused the session: {describe_reply(exc.smtp_code, exc.smtp_error)}"
                ) from None
            if isinstance(exc, ssl.SSLError):
                raise TemporaryDeliveryError(f"TLS with {where} failed: {exc}") from None
            if isinstance(exc, OSError):
                raise TransportUnreachable(f"cannot connect to {where}: {describe_oserror(exc)}") from None
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
            raise BrokenConnection(
                f"connection to the SMTP server failed before the message was sent: {describe_oserror(exc)}"
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
                f"({describe_oserror(exc)}); it may have been delivered"
            ) from None
        if 200 <= code < 300:
            text = reply_text(reply)
            found = QUEUED_AS.search(text)
            return Receipt(
                provider_id=found.group(1) if found else None,
                detail=f"{code} {text}".strip(),
                extra={"message_id": message_id, "server": self.settings.redacted},
            )
        if code == 421:
            connection.broken = True
        raise classify_reply("the SMTP server refused the message", code, reply)

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
                    reply = smtp.mail(sender, options) if utf8 else command(smtp, "mail", mail)
                elif step == 1:
                    reply = smtp.rcpt(recipient) if utf8 else command(smtp, "rcpt", f"TO:<{recipient}>")
                else:
                    reply = command(smtp, "data", "")
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
        return classify_reply(f"the SMTP server refused the {what}", code, reply)

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


def transport_from_env(env: Mapping[str, str]) -> EmailTransport | None:
    """An SMTP transport from ``RECONCILER_SMTP_URL``; None when it is not set."""
    url = env.get(SMTP_URL_VARIABLE, "").strip()
    return SmtpTransport(url) if url else None
