"""Scalar types of the spec: names, durations, time zones, e-mail addresses.

Each is an ``Annotated`` type so that parsing, serialising back to the spec's own
spelling (``2d``, not ``P2D``) and the JSON Schema stay in one place.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import email_validator
from pydantic import (
    AfterValidator,
    BeforeValidator,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)

NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"

Name = Annotated[
    str,
    StringConstraints(pattern=NAME_PATTERN, max_length=63),
]
"""A flow or step identity: lower-case letters, digits and inner dashes."""

Label = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
"""A reference to a CRM object by name (selection, project, form, link, associate)."""

Text = Annotated[str, StringConstraints(min_length=1, max_length=10_000)]

_DURATION_RE = re.compile(r"^\s*(?:(\d+)\s*w)?\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*$")
_UNITS = (("w", timedelta(weeks=1)), ("d", timedelta(days=1)), ("h", timedelta(hours=1)), ("m", timedelta(minutes=1)))
MAX_DURATION = timedelta(days=3650)


def parse_duration(value: Any) -> Any:
    """``1w2d3h30m`` → timedelta. Anything else is left for pydantic to reject."""
    if isinstance(value, timedelta) or not isinstance(value, str):
        return value
    match = _DURATION_RE.match(value)
    if not match or not any(match.groups()):
        raise ValueError(f"invalid duration {value!r}: use a number with a unit w, d, h or m, e.g. 2d, 12h, 1w2d, 30m")
    parts = [int(g) if g else 0 for g in match.groups()]
    try:
        return sum((unit * n for (_, unit), n in zip(_UNITS, parts, strict=True)), timedelta())
    except OverflowError:
        raise ValueError(f"duration {value!r} is too long (at most 10 years)") from None


def _check_duration(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("duration must be positive")
    if value > MAX_DURATION:
        raise ValueError("duration must be at most 10 years")
    if value % timedelta(minutes=1):
        raise ValueError("duration must be a whole number of minutes")
    return value


def format_duration(value: timedelta) -> str:
    minutes = int(value.total_seconds()) // 60
    out = []
    for suffix, unit in _UNITS:
        n, minutes = divmod(minutes, int(unit.total_seconds()) // 60)
        if n:
            out.append(f"{n}{suffix}")
    return "".join(out) or "0m"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    AfterValidator(_check_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^(\d+w)?(\d+d)?(\d+h)?(\d+m)?$",
            "description": "a duration such as 2d, 12h, 1w2d or 30m",
        }
    ),
]


@lru_cache(maxsize=512)
def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as Europe/Stockholm)") from None
    return name


Timezone = Annotated[
    str,
    AfterValidator(_zone),
    WithJsonSchema({"type": "string", "description": "IANA time zone, e.g. Europe/Stockholm"}),
]


@lru_cache(maxsize=4096)
def check_email(value: str) -> str:
    """The normalised address, or ValueError saying what is wrong with it."""
    try:
        info = email_validator.validate_email(value, check_deliverability=False, test_environment=False)
    except email_validator.EmailNotValidError as exc:
        raise ValueError(f"invalid e-mail address {value!r}: {exc}") from None
    return info.normalized


def _email_any(value: Any) -> Any:
    return check_email(value) if isinstance(value, str) else value


EmailAddress = Annotated[
    str,
    AfterValidator(_email_any),
    WithJsonSchema({"type": "string", "format": "email"}),
]

_TIME_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _time_of_day(value: str) -> str:
    if not _TIME_RE.match(value):
        raise ValueError(f"invalid time {value!r}: use HH:MM, 24-hour")
    return value


TimeOfDay = Annotated[
    str, AfterValidator(_time_of_day), WithJsonSchema({"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"})
]
