"""When things happen: waits, the sending window, working days, in the flow's time zone."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

from reconciler.spec.models import Flow, SendingWindow
from reconciler.spec.steps import Wait


@lru_cache(maxsize=128)
def zone(name: str | None) -> tzinfo:
    return ZoneInfo(name) if name else UTC


def flow_zone(flow: Flow) -> tzinfo:
    return zone(flow.spec.timezone)


def wait_until(step: Wait, now: datetime, tz: tzinfo) -> datetime:
    if step.duration is not None:
        return now + step.duration
    assert step.until is not None
    until = step.until if step.until.tzinfo is not None else step.until.replace(tzinfo=tz)
    return until.astimezone(UTC)


def add_working_days(start: datetime, days: int, tz: tzinfo) -> datetime:
    local = start.astimezone(tz)
    while days > 0:
        local += timedelta(days=1)
        if local.weekday() < 5:
            days -= 1
    return local.astimezone(UTC)


def after(start: datetime, delta: timedelta, working_days: bool, tz: tzinfo) -> datetime:
    if working_days and delta % timedelta(days=1) == timedelta(0):
        return add_working_days(start, delta // timedelta(days=1), tz)
    return start + delta


def window_opens(window: SendingWindow | None, now: datetime, tz: tzinfo) -> datetime | None:
    """None when sending is allowed now; else when the window next opens (UTC)."""
    if window is None:
        return None
    local = now.astimezone(tz)
    start_h, start_m = (int(x) for x in window.from_.split(":"))
    end_h, end_m = (int(x) for x in window.to.split(":"))
    weekdays = 5 if window.days == "mon-fri" else 7
    for day in range(8):
        candidate = (local + timedelta(days=day)).replace(hour=start_h, minute=start_m, second=0, microsecond=0)
        closes = candidate.replace(hour=end_h, minute=end_m)
        if candidate.weekday() >= weekdays:
            continue
        if day == 0 and candidate <= local < closes:
            return None
        if candidate > local:
            return candidate.astimezone(UTC)
    raise AssertionError("a sending window opens within a week")  # pragma: no cover


def first_free_slot(
    busy: Sequence[tuple[datetime, datetime]],
    after: datetime,
    length: timedelta,
    tz: tzinfo,
    *,
    day_start: int = 8,
    day_end: int = 17,
    working_days_only: bool = True,
) -> datetime:
    """The first slot of ``length`` at or after ``after`` within working hours in ``tz``
    that overlaps none of ``busy``; aware datetimes in, UTC out."""
    slot = after.astimezone(tz)
    if slot.minute or slot.second or slot.microsecond:  # meetings start on the hour
        slot = slot.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    for _ in range(10_000):
        opens = slot.replace(hour=day_start, minute=0, second=0, microsecond=0)
        closes = slot.replace(hour=day_end, minute=0, second=0, microsecond=0)
        if (working_days_only and slot.weekday() >= 5) or slot + length > closes:
            slot = opens + timedelta(days=1)
        elif slot < opens:
            slot = opens
        else:
            clash = max((e for s, e in busy if s < slot + length and e > slot), default=None)
            if clash is None:
                return slot.astimezone(UTC)
            slot = clash.astimezone(tz)
    raise ValueError("no free slot in the diary within a year")  # the caller says whose diary
