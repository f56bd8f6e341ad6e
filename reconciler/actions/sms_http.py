"""Delivering SMS through an HTTP provider API: one JSON POST per message.

The request and response shapes are documented in ``docs/sms-webhook.md``; a provider
that speaks another dialect gets a small adapter in front of it. This module
translates HTTP outcomes and httpx's exceptions into our delivery errors, and nothing
else: no retries (the dispatcher schedules them), no rendering, no database.

What it must never do: let the token reach an error message, a log line or a repr.
The token lives in ``_Secret`` and goes only into the ``Authorization`` header (which
httpx masks in its own reprs); every text that leaves this module passes ``_redact``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any

import httpx

from reconciler.actions.delivery import (
    OutcomeUnknown,
    PermanentDeliveryError,
    Receipt,
    SmsMessage,
    SmsTransport,
    TemporaryDeliveryError,
    TransportUnreachable,
)
from reconciler.clock import Clock, SystemClock
from reconciler.errors import ConfigError

ENV_URL = "RECONCILER_SMS_URL"
ENV_TOKEN = "RECONCILER_SMS_TOKEN"
ENV_TIMEOUT = "RECONCILER_SMS_TIMEOUT"
USER_AGENT = "reconciler-sms/1"
MAX_DETAIL = 300

_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# 408: the server gave up before reading our request; 425: too early; 429: slow down.
_TEMPORARY_4XX = frozenset({408, 425, 429})
# The token is rejected or lacks rights: the message is fine, our configuration is not.
# Retrying lets the operator fix the token without every participant failing meanwhile.
_CREDENTIALS_4XX = frozenset({401, 403})

log = logging.getLogger(__name__)


SmsTemporaryError = TemporaryDeliveryError  # it carries the provider's Retry-After itself


class _Secret:
    """A string that does not show itself in reprs, tracebacks with locals or ``vars()``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


class HttpSmsTransport:
    """``SmsTransport`` over a generic JSON webhook (see ``docs/sms-webhook.md``).

    One ``httpx.Client`` is reused for every message (connection pooling); pass your
    own ``client`` to share one, in which case ``close()`` leaves it open.
    """

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = 10,
        client: httpx.Client | None = None,
        clock: Clock | None = None,
    ) -> None:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError):
            raise ValueError("the SMS provider URL is not a valid URL") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError("the SMS provider URL must be an absolute http:// or https:// URL")
        if parsed.userinfo:
            raise ValueError(f"the SMS provider URL must not contain credentials; put the token in {ENV_TOKEN}")
        if token is not None and (not token or _CONTROL.search(token) or not token.isascii()):
            raise ValueError("the SMS provider token must be non-empty printable ASCII")
        if timeout <= 0:
            raise ValueError("the SMS provider timeout must be positive")
        self._url = parsed
        # Where we send, for messages: no credentials, no query string.
        self.endpoint = f"{parsed.scheme}://{parsed.netloc.decode('ascii')}{parsed.path}"
        self._token = _Secret(token) if token else None
        self._owns_client = client is None
        self._client = client or httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False)
        self._clock = clock or SystemClock()

    def __repr__(self) -> str:
        return f"HttpSmsTransport(endpoint={self.endpoint!r}, token={'***' if self._token else None})"

    def __enter__(self) -> HttpSmsTransport:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def send(self, message: SmsMessage) -> Receipt:
        if not _E164.match(message.to):
            raise PermanentDeliveryError(f"recipient {message.to!r} is not an E.164 number (+<country><number>)")
        payload = {
            "to": message.to,
            "from": message.sender,
            "text": message.text,
            "reference": message.reference,
            "segments": message.segments,
            "encoding": message.encoding,
        }
        headers = {
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": message.reference,
        }
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token.reveal()}"
        try:
            response = self._client.post(self._url, json=payload, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # No connection, so the provider cannot have the message: safe to retry.
            raise TransportUnreachable(self._failure("could not connect to", exc)) from None
        except httpx.PoolTimeout as exc:  # our own pool was busy: the provider may well be up
            raise SmsTemporaryError(self._failure("could not connect to", exc)) from None
        except (httpx.WriteError, httpx.WriteTimeout) as exc:
            # The request was not completely written; the provider cannot act on half a body.
            raise SmsTemporaryError(self._failure("could not send the request to", exc)) from None
        except (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError) as exc:
            # The request went out and no answer came back: the provider may have it.
            raise OutcomeUnknown(self._failure("no response (the message may have been accepted) from", exc)) from None
        except httpx.HTTPError as exc:
            raise SmsTemporaryError(self._failure("request failed to", exc)) from None
        log.debug("SMS %s: HTTP %s from %s", message.reference, response.status_code, self.endpoint)
        return self._outcome(response)

    def _outcome(self, response: httpx.Response) -> Receipt:
        status = response.status_code
        if 200 <= status < 300:
            body = _json(response)
            provider_id = next(
                (
                    str(body[key])
                    for key in ("id", "message_id")
                    if isinstance(body, dict) and body.get(key) is not None
                ),
                None,
            )
            return Receipt(provider_id=provider_id, detail=f"HTTP {status}", extra={"http_status": str(status)})
        detail = f"SMS provider answered HTTP {status} {response.reason_phrase}".rstrip()
        text = self._provider_text(response)
        if text:
            detail += f": {text}"
        if status in _TEMPORARY_4XX or status >= 500:
            raise SmsTemporaryError(detail, _retry_after(response.headers.get("Retry-After"), self._clock.now()))
        if status in _CREDENTIALS_4XX:
            raise SmsTemporaryError(detail + f" (check {ENV_TOKEN})", None)
        if 300 <= status < 400:
            # We never follow a redirect with a message in it; the URL should be the final one.
            raise PermanentDeliveryError(detail + f" (redirect; set {ENV_URL} to the final URL)")
        raise PermanentDeliveryError(detail)

    def _provider_text(self, response: httpx.Response) -> str:
        body = _json(response)
        text: Any = None
        if isinstance(body, dict):
            for key in ("message", "error", "detail", "error_description", "title"):
                value = body.get(key)
                if isinstance(value, dict):
                    value = value.get("message") or value.get("detail")
                if isinstance(value, str) and value.strip():
                    text = value
                    break
        if text is None:
            text = response.text
        return self._redact(str(text))

    def _failure(self, what: str, exc: Exception) -> str:
        return self._redact(f"{what} SMS provider {self.endpoint}: {type(exc).__name__}: {exc}".rstrip(": "))

    def _redact(self, text: str) -> str:
        if self._token is not None:
            text = text.replace(self._token.reveal(), "***")
        text = _CONTROL.sub(" ", text).strip()
        return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        return None


def _retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from ``now``: ``Retry-After`` is either delta-seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if 0 <= seconds < float("inf") else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def transport_from_env(env: Mapping[str, str]) -> SmsTransport | None:
    """The HTTP SMS transport configured by ``RECONCILER_SMS_URL`` (required),
    ``RECONCILER_SMS_TOKEN`` (optional bearer token) and ``RECONCILER_SMS_TIMEOUT``
    (seconds, default 10); ``None`` when no URL is set."""
    url = env.get(ENV_URL, "").strip()
    if not url:
        return None
    token = env.get(ENV_TOKEN, "").strip() or None
    raw_timeout = env.get(ENV_TIMEOUT, "").strip()
    try:
        timeout = float(raw_timeout) if raw_timeout else 10.0
    except ValueError:
        raise ConfigError(f"{ENV_TIMEOUT} must be a number of seconds, not {json.dumps(raw_timeout)}") from None
    if not timeout > 0 or timeout == float("inf"):
        raise ConfigError(f"{ENV_TIMEOUT} must be a positive number of seconds")
    try:
        return HttpSmsTransport(url, token, timeout=timeout)
    except ValueError as exc:
        raise ConfigError(f"{exc} ({ENV_URL}, {ENV_TOKEN})") from None
