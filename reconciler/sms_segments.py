"""How long an SMS is: GSM-7 or UCS-2, and how many segments it is billed as.

Pure counting (GSM 03.38 with its extension table; 160/153 septets, 70/67 UTF-16
units), used by ``validate`` to show what a text costs and by the dispatcher. It lives
below ``spec`` and ``actions`` both, so the transports need not import the specs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from reconciler.templating.language import has_template

Encoding = Literal["GSM-7", "UCS-2"]

# 3GPP TS 23.038 §6.2.1, the GSM 7-bit default alphabet, in code order 0x00-0x7F.
# 0x1B is the escape to the extension table, not a character of its own.

GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# §6.2.1.1, the default extension table: each costs two septets (escape + code).
GSM_EXTENSION = "\f^{}\\[~]|€"

_GSM_SEPTETS: dict[str, int] = {ch: 1 for ch in GSM_BASIC if ch != "\x1b"} | dict.fromkeys(GSM_EXTENSION, 2)

# (single message, per part of a concatenated message); the user data header of a
# concatenated SMS takes 7 septets (GSM-7) or 3 UTF-16 units (UCS-2).
_LIMITS: dict[Encoding, tuple[int, int]] = {"GSM-7": (160, 153), "UCS-2": (70, 67)}


@dataclass(frozen=True)
class SmsCount:
    """How a text travels. ``units`` are septets (GSM-7) or UTF-16 code units (UCS-2);
    ``characters`` are code points, as a person would count them."""

    encoding: Encoding
    characters: int
    units: int
    segments: int


def is_gsm(text: str) -> bool:
    return all(ch in _GSM_SEPTETS for ch in text)


def non_gsm_characters(text: str) -> list[str]:
    """The distinct characters that force UCS-2, in order of first appearance."""
    return list(dict.fromkeys(ch for ch in text if ch not in _GSM_SEPTETS))


def count_sms(text: str) -> SmsCount:
    """Encoding, size and number of segments of ``text`` as it will be sent.

    A segment never splits an escape sequence (GSM-7) or a surrogate pair (UCS-2),
    as handsets and SMSCs do, so a part can hold one unit less than the limit.
    """
    if is_gsm(text):
        encoding: Encoding = "GSM-7"
        widths = [_GSM_SEPTETS[ch] for ch in text]
    else:
        encoding = "UCS-2"
        widths = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    return SmsCount(encoding, len(text), sum(widths), _segments(widths, *_LIMITS[encoding]))


def _segments(widths: Iterable[int], single: int, part: int) -> int:
    widths = list(widths)
    total = sum(widths)
    if total == 0:
        return 0
    if total <= single:
        return 1
    parts, used = 1, 0
    for width in widths:
        if used + width > part:
            parts, used = parts + 1, width
        else:
            used += width
    return parts


def describe(count: SmsCount, *, approximate: bool = False) -> str:
    """One line for validate/plan, e.g. ``3 segments, GSM-7, 312 characters``;
    ``approximate`` (a template with merge fields) prefixes "about"."""
    segments = f"{count.segments} segment{'' if count.segments == 1 else 's'}"
    characters = f"{count.characters} character{'' if count.characters == 1 else 's'}"
    return f"{'about ' if approximate else ''}{segments}, {count.encoding}, {characters}"


def describe_text(text: str) -> str:
    """``describe`` for a step's text as written in the spec: merge fields are counted
    as written (so "about"), and a UCS-2 text names the characters that caused it."""
    line = describe(count_sms(text), approximate=has_template(text))
    culprits = non_gsm_characters(text)
    if culprits:
        shown = ", ".join(repr(ch) for ch in culprits[:3]) + (", …" if len(culprits) > 3 else "")
        line += f" (UCS-2 because of {shown})"
    return line
