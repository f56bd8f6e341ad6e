"""``RECONCILER_SMTP_URL``, parsed and checked: where and how to reach the SMTP server.

``smtp://[user:password@]host[:port][?starttls=true]`` (port 25; ``starttls=optional``
uses TLS when offered, ``true`` insists on it) or ``smtps://…`` (implicit TLS, port
465); ``helo=name`` sets the EHLO name. User and password are percent-decoded.
Split from ``smtp`` so a bad URL is a ``ConfigError`` before any connection is
tried, and so the one rule that matters most here has a module of its own: the
password never shows (``repr``, ``redacted`` and every message leave it out).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from reconciler.errors import ConfigError

SMTP_URL_VARIABLE = "RECONCILER_SMTP_URL"
_PORTS = {"smtp": 25, "smtps": 465}
_STARTTLS: dict[str, Literal["off", "optional", "required"]] = {
    **dict.fromkeys(("", "false", "no", "off", "0"), "off"),
    "optional": "optional",
    **dict.fromkeys(("true", "yes", "on", "1", "required"), "required"),
}


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
