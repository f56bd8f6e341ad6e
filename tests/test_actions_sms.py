"""SMS: encoding and segment counting, merge fields, E.164 numbers, and the HTTP
transport against a real local HTTP server (pytest-httpserver)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from reconciler.actions.delivery import (
    DeliveryError,
    OutcomeUnknown,
    PermanentDeliveryError,
    SmsMessage,
    TemporaryDeliveryError,
    TransportUnreachable,
)
from reconciler.actions.sms_http import HttpSmsTransport, SmsTemporaryError, transport_from_env
from reconciler.actions.sms_text import (
    GSM_BASIC,
    GSM_EXTENSION,
    SmsCount,
    count_sms,
    describe,
    describe_text,
)
from reconciler.clock import ManualClock
from reconciler.compose import compose_sms, render_sms
from reconciler.errors import ConfigError
from reconciler.phones import InvalidNumber, normalize_number
from reconciler.templating import merge_context

TOKEN = "sk-live-7f3a9c1e5b2d4e6f"

# --- encoding and segments -------------------------------------------------------------------


def test_gsm_tables_are_the_full_default_alphabet() -> None:
    assert len(GSM_BASIC) == 128
    assert GSM_BASIC[0x1B] == "\x1b"
    assert len(set(GSM_BASIC)) == 128
    assert set(GSM_EXTENSION) == set("\f^{}\\[~]|€")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", SmsCount("GSM-7", 0, 0, 0)),
        ("a" * 160, SmsCount("GSM-7", 160, 160, 1)),
        ("a" * 161, SmsCount("GSM-7", 161, 161, 2)),
        ("a" * 306, SmsCount("GSM-7", 306, 306, 2)),
        ("a" * 307, SmsCount("GSM-7", 307, 307, 3)),
        # extension characters cost two septets each
        ("{[~]}", SmsCount("GSM-7", 5, 10, 1)),
        ("€" * 80, SmsCount("GSM-7", 80, 160, 1)),
        ("€" * 81, SmsCount("GSM-7", 81, 162, 2)),
        ("a" * 158 + "^", SmsCount("GSM-7", 159, 160, 1)),
        ("a" * 159 + "|", SmsCount("GSM-7", 160, 161, 2)),
        ("\f", SmsCount("GSM-7", 1, 2, 1)),
        ("line\r\nbreak", SmsCount("GSM-7", 11, 11, 1)),
        # an escape sequence is never split across parts: 152 + € does not fit in 153
        ("a" * 152 + "€" + "a" * 152, SmsCount("GSM-7", 305, 306, 3)),
        # one character outside GSM 03.38 switches the whole message
        ("a" * 159 + "ж", SmsCount("UCS-2", 160, 160, 3)),
        ("ж" * 70, SmsCount("UCS-2", 70, 70, 1)),
        ("ж" * 71, SmsCount("UCS-2", 71, 71, 2)),
        ("ж" * 134, SmsCount("UCS-2", 134, 134, 2)),
        ("ж" * 135, SmsCount("UCS-2", 135, 135, 3)),
        # emoji are surrogate pairs: two UTF-16 units, never split
        ("😀", SmsCount("UCS-2", 1, 2, 1)),
        ("😀" * 35, SmsCount("UCS-2", 35, 70, 1)),
        ("😀" * 36, SmsCount("UCS-2", 36, 72, 2)),
        ("ж" * 66 + "😀" + "ж" * 66, SmsCount("UCS-2", 133, 134, 3)),
        # Swedish: Å å Ä ä Ö ö é ü are in the GSM set; ï and the typographic apostrophe are not
        ("Hej Åsa! Välkommen", SmsCount("GSM-7", 18, 18, 1)),
        ("ÅåÄäÖöéüÉÜ", SmsCount("GSM-7", 10, 10, 1)),
        ("Hej Ïda", SmsCount("UCS-2", 7, 7, 1)),
        ("Vi ses på mån’", SmsCount("UCS-2", 14, 14, 1)),
    ],
    ids=lambda v: repr(v)[:40] if isinstance(v, str) else None,
)
def test_count_sms(text: str, expected: SmsCount) -> None:
    assert count_sms(text) == expected


def test_describe() -> None:
    assert describe(SmsCount("GSM-7", 312, 312, 3)) == "3 segments, GSM-7, 312 characters"
    assert describe(SmsCount("UCS-2", 1, 2, 1)) == "1 segment, UCS-2, 1 character"
    assert describe(SmsCount("GSM-7", 30, 30, 1), approximate=True) == "about 1 segment, GSM-7, 30 characters"


def test_describe_text_counts_templates_as_written_and_names_ucs2_culprits() -> None:
    assert describe_text("Hi {{ contact.first_name }}!") == "about 1 segment, GSM-7, 28 characters"
    assert describe_text("a" * 312) == "3 segments, GSM-7, 312 characters"
    assert describe_text("Vi ses på mån’") == "1 segment, UCS-2, 14 characters (UCS-2 because of '’')"
    assert describe_text("жклмн").endswith("(UCS-2 because of 'ж', 'к', 'л', …)")


# --- merge fields ----------------------------------------------------------------------------


def test_render_sms_merges_contact_fields() -> None:
    context = merge_context(contact={"first_name": "Åsa"}, flow={"name": "welcome"})
    assert render_sms("Hej {{ contact.first_name }}! Välkommen", context) == "Hej Åsa! Välkommen"
    assert render_sms("Plain text", merge_context(contact={})) == "Plain text"


@pytest.mark.parametrize(
    ("template", "contact", "message"),
    [
        ("Hej {{ contact.first_name }}!", {}, "merge field in SMS text: contact.first_name has no value"),
        ("Hej {{ contact.first_name }}!", {"first_name": None}, "contact.first_name has no value"),
        ("Hej {{ contact.first_name }}!", {"first_name": "  "}, "contact.first_name has no value"),
        ("{{ contact.__class__.__mro__ }}", {}, "line 1: 'contact.__class__.__mro__': names starting with '_'"),
        ("Hej {{ contact.first_name", {"first_name": "Åsa"}, "line 1: merge field syntax error"),
        ("{{ contact.score + 'x' }}", {"score": 3}, r"line 1: arithmetic \('\+'\) is not allowed"),
        ("{{ unsubscribe_url }}", {}, "line 1: unknown merge field 'unsubscribe_url'"),
        ("{{ contact.first_name }}" * 200, {"first_name": "Åsa Öberg"}, "^SMS text is longer than 1,600 characters$"),
    ],
)
def test_render_sms_errors_are_permanent(template: str, contact: dict[str, object], message: str) -> None:
    with pytest.raises(PermanentDeliveryError, match=message):
        render_sms(template, merge_context(contact=contact))


def test_render_sms_allows_a_default_for_an_empty_field() -> None:
    context = merge_context(contact={"first_name": None})
    assert render_sms("Hej {{ contact.first_name or 'du' }}!", context) == "Hej du!"
    assert render_sms("Hej {{ contact.first_name | default('du') }}!", context) == "Hej du!"


# --- numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("070-123 45 67", "SE"),
        ("0701234567", "se"),
        (" 070 123 45 67 ", "SE"),
        ("+46 70 123 45 67", None),
        ("+46701234567", "US"),
        ("0046701234567", "SE"),
    ],
)
def test_normalize_number_to_e164(raw: str, region: str | None) -> None:
    assert normalize_number(raw, region) == "+46701234567"


@pytest.mark.parametrize(
    ("raw", "region", "why"),
    [
        ("0701234567", None, "no country code; .*settings.sms.default_region"),
        ("+46 12 34", "SE", "too short"),
        ("12", "SE", "too short"),
        ("+4670123456789012", None, "too long"),
        ("hello", "SE", "not a phone number"),
        ("+46 10 000 00 00", None, "not a valid number in SE"),
        ("+999 1234567", None, "unknown country code"),
        ("   ", "SE", "empty"),
        ("0701234567", "XX", "settings.sms.default_region 'XX' is not a known region"),
    ],
)
def test_normalize_number_rejects_with_a_reason(raw: str, region: str | None, why: str) -> None:
    with pytest.raises(InvalidNumber, match=f"^invalid mobile number '.*': {why}"):
        normalize_number(raw, region)


def test_compose_sms_builds_the_message() -> None:
    message = compose_sms(
        to="070-123 45 67",
        template="Hej {{ contact.first_name }}! " + "€" * 80,
        context=merge_context(contact={"first_name": "Åsa"}),
        sender="ACME",
        reference="p1:r2:sms",
        default_region="SE",
    )
    assert message == SmsMessage(
        to="+46701234567",
        sender="ACME",
        text="Hej Åsa! " + "€" * 80,
        reference="p1:r2:sms",
        segments=2,
        encoding="GSM-7",
    )


def test_compose_sms_refuses_an_empty_text() -> None:
    with pytest.raises(PermanentDeliveryError, match="empty"):
        compose_sms(
            to="+46701234567",
            template="{{ contact.custom.note | default(' ') }}",
            context=merge_context(contact={"custom": {"note": " "}}),
            sender="ACME",
            reference="r",
            default_region=None,
        )


# --- the HTTP transport ----------------------------------------------------------------------

MESSAGE = SmsMessage(
    to="+46701234567", sender="ACME", text="Hej Åsa! Välkommen", reference="p1:r2:sms", segments=1, encoding="GSM-7"
)


@pytest.fixture
def transport(httpserver: HTTPServer) -> Iterator[HttpSmsTransport]:
    with HttpSmsTransport(httpserver.url_for("/v1/sms"), TOKEN, timeout=5) as sms:
        yield sms


def assert_no_token(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text


def all_text(exc: BaseException) -> list[str]:
    return [str(exc), repr(exc), "".join(traceback.format_exception(exc))]


def test_success_posts_the_documented_json(httpserver: HTTPServer, transport: HttpSmsTransport) -> None:
    httpserver.expect_oneshot_request("/v1/sms", method="POST").respond_with_json({"id": "msg-123"}, status=202)
    receipt = transport.send(MESSAGE)
    assert receipt.provider_id == "msg-123"
    assert receipt.extra == {"http_status": "202"}
    (request, _response), *_ = httpserver.log
    assert json.loads(request.get_data()) == {
        "to": "+46701234567",
        "from": "ACME",
        "text": "Hej Åsa! Välkommen",
        "reference": "p1:r2:sms",
        "segments": 1,
        "encoding": "GSM-7",
    }
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Idempotency-Key"] == "p1:r2:sms"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["User-Agent"] == "reconciler-sms/1"
    assert request.query_string == b""
    httpserver.check_assertions()


def test_success_without_an_id(httpserver: HTTPServer, transport: HttpSmsTransport) -> None:
    httpserver.expect_oneshot_request("/v1/sms").respond_with_data("OK", status=200)
    assert transport.send(MESSAGE).provider_id is None


def test_no_token_no_authorization_header(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request("/v1/sms").respond_with_json({"id": "x"})
    with HttpSmsTransport(httpserver.url_for("/v1/sms"), None) as sms:
        sms.send(MESSAGE)
    assert "Authorization" not in httpserver.log[0][0].headers


def test_400_is_permanent_with_the_providers_message(httpserver: HTTPServer, transport: HttpSmsTransport) -> None:
    httpserver.expect_oneshot_request("/v1/sms").respond_with_json(
        {"error": {"code": "invalid_recipient", "message": "number is not reachable"}}, status=400
    )
    with pytest.raises(PermanentDeliveryError) as caught:
        transport.send(MESSAGE)
    assert caught.value.detail == "SMS provider answered HTTP 400 BAD REQUEST: number is not reachable"


def test_a_long_error_body_is_truncated(httpserver: HTTPServer, transport: HttpSmsTransport) -> None:
    httpserver.expect_oneshot_request("/v1/sms").respond_with_data("x" * 5000 + "\n<html>", status=422)
    with pytest.raises(PermanentDeliveryError) as caught:
        transport.send(MESSAGE)
    assert caught.value.detail.startswith("SMS provider answered HTTP 422 UNPROCESSABLE ENTITY: xxx")
    assert len(caught.value.detail) < 400
    assert caught.value.detail.endswith("…")


def test_429_is_temporary_with_retry_after(httpserver: HTTPServer, transport: HttpSmsTransport) -> None:
    httpserver.expect_oneshot_request("/v1/sms").respond_with_json(
        {"message": "slow down"}, status=429, headers={"Retry-After": "30"}
    )
    with pytest.raises(TemporaryDeliveryError) as caught:
        transport.send(MESSAGE)
    assert isinstance(caught.value, SmsTemporaryError)
    assert caught.value.retry_after == 30.0
    assert caught.value.detail == "SMS provider answered HTTP 429 TOO MANY REQUESTS: slow down"


def test_retry_after_as_an_http_date(httpserver: HTTPServer) -> None:
    clock = ManualClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    httpserver.expect_oneshot_request("/v1/sms").respond_with_data(
        "", status=503, headers={"Retry-After": "Mon, 05 Jan 2026 09:01:30 GMT"}
    )
    with (
        HttpSmsTransport(httpserver.url_for("/v1/sms"), TOKEN, clock=clock) as sms,
        pytest.raises(SmsTemporaryError) as caught,
    ):
        sms.send(MESSAGE)
    assert caught.value.retry_after == 90.0


def test_503_is_temporary(httpserver: HTTPServer, transport: HttpSmsTransport) -> None:
    httpserver.expect_oneshot_request("/v1/sms").respond_with_data("upstream down", status=503)
    with pytest.raises(TemporaryDeliveryError, match="HTTP 503 SERVICE UNAVAILABLE: upstream down") as caught:
        transport.send(MESSAGE)
    assert isinstance(caught.value, SmsTemporaryError)
    assert caught.value.retry_after is None


def test_401_is_temporary_and_points_at_the_token(httpserver: HTTPServer, transport: HttpSmsTransport) -> None:
    httpserver.expect_oneshot_request("/v1/sms").respond_with_json({"error": "invalid token"}, status=401)
    with pytest.raises(TemporaryDeliveryError, match=r"invalid token \(check RECONCILER_SMS_TOKEN\)"):
        transport.send(MESSAGE)


def test_a_redirect_is_not_followed(httpserver: HTTPServer, transport: HttpSmsTransport) -> None:
    httpserver.expect_oneshot_request("/v1/sms").respond_with_data(
        "", status=308, headers={"Location": httpserver.url_for("/v2/sms")}
    )
    with pytest.raises(PermanentDeliveryError, match="redirect"):
        transport.send(MESSAGE)
    assert len(httpserver.log) == 1


def test_a_read_timeout_after_sending_is_outcome_unknown(httpserver: HTTPServer) -> None:
    release = threading.Event()
    received = threading.Event()

    def slow(request: Request) -> Response:
        received.set()
        release.wait(10)  # safety net only; the test releases it at once
        return Response('{"id": "late"}', status=202, content_type="application/json")

    httpserver.expect_oneshot_request("/v1/sms").respond_with_handler(slow)
    try:
        with (
            HttpSmsTransport(httpserver.url_for("/v1/sms"), TOKEN, timeout=0.2) as sms,
            pytest.raises(OutcomeUnknown) as caught,
        ):
            sms.send(MESSAGE)
        assert received.is_set()  # the provider did get it
        assert "may have been accepted" in caught.value.detail
        assert not isinstance(caught.value, TemporaryDeliveryError | PermanentDeliveryError)
    finally:
        release.set()


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A local port that is bound but not listening: connecting is refused, and no
    other test can take the port meanwhile."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1/sms?account=a1"


def test_connection_refused_is_temporary(refused_url: str) -> None:
    with HttpSmsTransport(refused_url, TOKEN) as sms, pytest.raises(TemporaryDeliveryError) as caught:
        sms.send(MESSAGE)
    assert caught.value.detail.startswith("could not connect to SMS provider http://127.0.0.1:")
    assert "account=a1" not in caught.value.detail  # the query string is not shown
    assert_no_token(*all_text(caught.value))


def raising(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectTimeout("timed out"), TransportUnreachable),  # a TemporaryDeliveryError, for run's exit 3
        (httpx.PoolTimeout("no free connection"), SmsTemporaryError),
        (httpx.WriteTimeout("timed out"), SmsTemporaryError),
        (httpx.ReadTimeout("timed out"), OutcomeUnknown),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), OutcomeUnknown),
        (httpx.ReadError("connection reset"), OutcomeUnknown),
        (httpx.ProxyError("proxy said no"), SmsTemporaryError),
    ],
    ids=lambda v: type(v).__name__,
)
def test_transport_errors_map_to_delivery_errors(exc: Exception, expected: type[DeliveryError]) -> None:
    # An in-process httpx transport for the failures a local server cannot stage reliably.
    client = httpx.Client(transport=httpx.MockTransport(raising(exc)))
    sms = HttpSmsTransport("https://sms.example/v1/sms", TOKEN, client=client)
    with pytest.raises(DeliveryError) as caught:
        sms.send(MESSAGE)
    assert type(caught.value) is expected
    assert "https://sms.example/v1/sms" in caught.value.detail
    sms.close()
    assert not client.is_closed  # a client passed in belongs to the caller
    client.close()


def test_a_number_that_is_not_e164_never_leaves(httpserver: HTTPServer, transport: HttpSmsTransport) -> None:
    with pytest.raises(PermanentDeliveryError, match=r"not an E\.164 number"):
        transport.send(
            SmsMessage(to="0701234567", sender="ACME", text="x", reference="r", segments=1, encoding="GSM-7")
        )
    assert httpserver.log == []


# --- the token never shows -------------------------------------------------------------------


def test_the_token_is_redacted_everywhere(
    httpserver: HTTPServer, caplog: pytest.LogCaptureFixture, refused_url: str
) -> None:
    caplog.set_level(logging.DEBUG)
    httpserver.expect_oneshot_request("/v1/sms").respond_with_json(
        {"message": f"token {TOKEN} is not valid for sender ACME"}, status=400
    )
    sms = HttpSmsTransport(httpserver.url_for("/v1/sms"), TOKEN)
    with pytest.raises(PermanentDeliveryError) as echoed:
        sms.send(MESSAGE)
    assert echoed.value.detail == "SMS provider answered HTTP 400 BAD REQUEST: token *** is not valid for sender ACME"
    with HttpSmsTransport(refused_url, TOKEN) as down, pytest.raises(TemporaryDeliveryError) as refused:
        down.send(MESSAGE)
    assert repr(sms) == f"HttpSmsTransport(endpoint={httpserver.url_for('/v1/sms')!r}, token=***)"
    assert_no_token(
        repr(sms), str(vars(sms) if hasattr(sms, "__dict__") else ""), *all_text(echoed.value), *all_text(refused.value)
    )
    assert caplog.records  # httpx and httpcore did log the exchange ...
    assert_no_token(caplog.text)  # ... without the token
    sms.close()


# --- configuration from the environment ------------------------------------------------------


def test_transport_from_env(httpserver: HTTPServer) -> None:
    assert transport_from_env({}) is None
    assert transport_from_env({"RECONCILER_SMS_URL": "  ", "RECONCILER_SMS_TOKEN": TOKEN}) is None
    httpserver.expect_oneshot_request("/hook").respond_with_json({"id": "1"})
    sms = transport_from_env(
        {
            "RECONCILER_SMS_URL": httpserver.url_for("/hook"),
            "RECONCILER_SMS_TOKEN": TOKEN,
            "RECONCILER_SMS_TIMEOUT": "3",
        }
    )
    assert isinstance(sms, HttpSmsTransport)
    assert sms.send(MESSAGE).provider_id == "1"
    sms.close()
    assert httpserver.log[0][0].headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RECONCILER_SMS_URL": "sms.example/hook"}, "absolute http:// or https:// URL"),
        ({"RECONCILER_SMS_URL": "ftp://sms.example/hook"}, "absolute http:// or https:// URL"),
        ({"RECONCILER_SMS_URL": f"https://u:{TOKEN}@sms.example/hook"}, "must not contain credentials"),
        ({"RECONCILER_SMS_URL": "https://sms.example/hook", "RECONCILER_SMS_TOKEN": "a\nb"}, "token"),
        ({"RECONCILER_SMS_URL": "https://sms.example/hook", "RECONCILER_SMS_TIMEOUT": "soon"}, "number of seconds"),
        ({"RECONCILER_SMS_URL": "https://sms.example/hook", "RECONCILER_SMS_TIMEOUT": "0"}, "positive"),
    ],
)
def test_transport_from_env_rejects_bad_configuration(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        transport_from_env(env)
    assert_no_token(str(caught.value))
