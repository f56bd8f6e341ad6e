"""Mobile numbers in E.164, as an SMS provider needs them, by ``phonenumbers``.

The executor decides with it whether a contact has a usable mobile number (an SMS step
skips or exits without one), and the dispatcher normalises the recipient of every SMS
with it; both must agree, so the rule lives here, below both. Pure: no I/O.
"""

from __future__ import annotations

import phonenumbers


class InvalidNumber(ValueError):
    """A number that cannot be sent to; the message says why."""


def known_region(region: str) -> bool:
    """Whether ``region`` (ISO 3166 alpha-2, e.g. ``SE``) has numbering metadata."""
    return region.upper() in phonenumbers.SUPPORTED_REGIONS


_PARSE_PROBLEMS = {
    phonenumbers.NumberParseException.NOT_A_NUMBER: "not a phone number",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
    phonenumbers.NumberParseException.TOO_LONG: "too long",
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
}
_POSSIBLE_PROBLEMS = {
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    phonenumbers.ValidationResult.TOO_SHORT: "too short",
    phonenumbers.ValidationResult.TOO_LONG: "too long",
    phonenumbers.ValidationResult.INVALID_LENGTH: "wrong number of digits",
    phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "a local number without an area code",
}


def normalize_number(raw: str, default_region: str | None) -> str:
    """``raw`` as E.164 (``+46701234567``). National numbers (``070-123 45 67``) need
    ``default_region``; a number with ``+`` or ``00``-style international prefix does not.

    Raises ``InvalidNumber`` saying why the number cannot be used.
    """
    text = raw.strip()
    shown = text if len(text) <= 40 else text[:39] + "…"
    region = default_region.upper() if default_region else None

    def invalid(why: str) -> InvalidNumber:
        return InvalidNumber(f"invalid mobile number {shown!r}: {why}")

    if not text:
        raise invalid("empty")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE and not text.startswith("+"):
            if region is None:
                raise invalid(
                    "no country code; store it as +<country code>… or set settings.sms.default_region (e.g. SE)"
                ) from None
            if not known_region(region):
                raise invalid(f"settings.sms.default_region {region!r} is not a known region") from None
        raise invalid(_PARSE_PROBLEMS.get(exc.error_type, "cannot be parsed")) from None
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible != phonenumbers.ValidationResult.IS_POSSIBLE:
        raise invalid(_POSSIBLE_PROBLEMS.get(possible, "not a possible number"))
    if not phonenumbers.is_valid_number(number):
        where = phonenumbers.region_code_for_country_code(number.country_code or 0)
        raise invalid(f"not a valid number in {where}" if where and where != "ZZ" else "not a valid number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
