"""Lead scoring: the ``score-lead`` script of ``specs/lead-scoring.yaml``.

Registered in ``reconciler.toml``::

    [scripts]
    score-lead = "examples.scripts.lead_scoring:score_lead"

The rules are deliberately plain (a fit part from who the contact is, an interest
part from what they told us) so that a sales team can read and argue about them.
Everything here is pure: no I/O, no clock, no randomness, and the input is never
modified, so the same contact always gets the same score.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MIN_SCORE = 0
MAX_SCORE = 100

TARGET_COUNTRIES = frozenset({"SE", "NO", "DK", "FI"})
FREE_MAIL_DOMAINS = frozenset(
    {"gmail.com", "googlemail.com", "hotmail.com", "outlook.com", "live.com", "yahoo.com", "icloud.com", "me.com"}
)
# Words or phrases in a job title, most senior first; the first match counts.
# Swedish titles are compounds ("marknadschef"), so a word may also end in a suffix.
SENIORITY: tuple[tuple[tuple[str, ...], tuple[str, ...], int], ...] = (
    (("ceo", "cto", "cfo", "cmo", "chief", "founder", "co-founder", "vd"), (), 25),
    (("vp", "vice president", "director", "head of"), ("direktör",), 20),
    (("manager", "lead"), ("chef", "ansvarig"), 12),
)
_WORD_RE = re.compile(r"[\w-]+")
INTERESTS = frozenset({"marketing-automation", "crm", "email-marketing", "webinars", "pricing"})
POINTS_PER_INTEREST = 5
MAX_INTEREST_POINTS = 20
# Company size (employees) → points; the first threshold reached counts.
COMPANY_SIZE: tuple[tuple[int, int], ...] = ((250, 20), (50, 15), (10, 10), (1, 3))


def score_lead(contact: dict[str, Any]) -> dict[str, Any]:
    """Score one contact from 0 (cold) to 100 (ready for sales).

    Args:
        contact: the contact's fields by name, as in a spec's field list
            (``first_name``, ``email``, ``title``, ``mobile``, ``country``,
            ``category``, ``interests``, ``consent_marketing``, ``blocked``,
            ``retired`` …). ``company`` may be the company's name or a mapping of
            company fields (``employees``, ``business``, ``country`` …). Missing
            keys and ``None`` values count as unknown, never as errors.

    Returns:
        The contact fields to write back: ``{"score": int}``, clamped to 0..100.
        A blocked or retired contact, or a competitor, always scores 0.

    The function is pure: it reads only its argument, changes nothing, and returns
    a new dict. The dispatcher that runs it applies the returned fields.
    """
    total = sum(points for _, points in score_breakdown(contact))
    return {"score": max(MIN_SCORE, min(MAX_SCORE, total))}


def score_breakdown(contact: Mapping[str, Any]) -> list[tuple[str, int]]:
    """Why a contact gets its score: (reason, points) for every rule that applied."""
    if _truthy(contact.get("blocked")) or _truthy(contact.get("retired")):
        return [("blocked or retired", 0)]
    if _text(contact.get("category")) == "competitor":
        return [("competitor", 0)]
    reasons: list[tuple[str, int]] = []

    words = _WORD_RE.findall(_text(contact.get("title")))
    spaced = f" {' '.join(words)} "
    for phrases, suffixes, points in SENIORITY:
        if any(f" {p} " in spaced for p in phrases) or any(w.endswith(suffixes) for w in words):
            reasons.append((f"title {contact.get('title')!s}", points))
            break

    domain = _text(contact.get("email")).rpartition("@")[2]
    if domain:
        if domain in FREE_MAIL_DOMAINS:
            reasons.append(("free e-mail address", -10))
        else:
            reasons.append(("business e-mail address", 10))

    if _text(contact.get("mobile")):
        reasons.append(("has a mobile number", 5))
    if _truthy(contact.get("consent_marketing")):
        reasons.append(("marketing consent", 5))

    company = contact.get("company")
    company_fields: Mapping[str, Any] = company if isinstance(company, Mapping) else {}
    country = _text(contact.get("country") or company_fields.get("country")).upper()
    if country in TARGET_COUNTRIES:
        reasons.append((f"target market {country}", 10))

    employees = _number(company_fields.get("employees"))
    if employees is not None:
        for threshold, points in COMPANY_SIZE:
            if employees >= threshold:
                reasons.append((f"company with {int(employees)} employees", points))
                break

    matched = sorted(INTERESTS & {_text(i) for i in _values(contact.get("interests"))})
    if matched:
        points = min(MAX_INTEREST_POINTS, POINTS_PER_INTEREST * len(matched))
        reasons.append((f"interested in {', '.join(matched)}", points))

    if _text(contact.get("category")) in ("lead", "hot-lead"):
        reasons.append(("category lead", 5))
    return reasons


def _text(value: Any) -> str:
    return str(value).strip().lower() if value is not None else ""


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "y")
    return bool(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _values(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    if isinstance(value, str):
        return [part for part in value.split(",") if part.strip()]
    return [value]


__all__ = ["score_breakdown", "score_lead"]
