"""The cell rules: how a text cell (a CSV field, ``events emit --field``) or a JSON value
(``events ingest``) becomes a contact or company field value.

An empty cell means "not given" and never overwrites; booleans are true/false, yes/no,
ja/nej or 1/0; numbers use a dot; dates are ISO (YYYY-MM-DD); interests and
subscriptions are lists separated by ``;`` or ``|``. A column that names no contact
field becomes a custom field (``custom.<name>`` says so explicitly); its value is kept
as text, except ``true``/``false`` and plain numbers without leading zeros, which
become a boolean or a number so that flow conditions can compare them. Text longer
than its column is an error, not a silent cut.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Any

from reconciler.spec.fields import COMPANY_FIELDS, CONTACT_FIELDS, FieldType
from reconciler.spec.types import check_email
from reconciler.state import crm as tables
from reconciler.state.crm_store import CONTACT_COLUMNS, CrmTx

DERIVED_FIELDS = frozenset({"full_name", "created_at"})
IMPORTABLE_FIELDS: dict[str, FieldType] = {n: k for n, k in CONTACT_FIELDS.items() if n not in DERIVED_FIELDS}
COMPANY_IMPORTABLE: dict[str, FieldType] = {n: k for n, k in COMPANY_FIELDS.items() if n != "name"}
assert set(IMPORTABLE_FIELDS) <= set(CONTACT_COLUMNS), "a contact field without a column"


def _lengths(table: Any) -> dict[str, int]:
    found: dict[str, int] = {}
    for column in table.columns:
        length = getattr(column.type, "length", None)
        if isinstance(length, int):
            found[column.name] = length
    return found


CONTACT_LENGTHS = _lengths(tables.contacts)
COMPANY_LENGTHS = _lengths(tables.companies)
ASSOCIATE_LENGTHS = _lengths(tables.associates)


# --- values --------------------------------------------------------------------------------

_TRUE = frozenset({"true", "yes", "1", "ja"})
_FALSE = frozenset({"false", "no", "0", "nej"})
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_PLAIN_INT = re.compile(r"^-?(0|[1-9]\d{0,14})$")
_PLAIN_DECIMAL = re.compile(r"^-?(0|[1-9]\d{0,14})\.\d+$")
_LIST_SEPARATOR = re.compile(r"[;|]")


def parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"invalid boolean {text!r}: use true/false, yes/no, ja/nej or 1/0")


def parse_number(text: str) -> float:
    if not _NUMBER.match(text):
        raise ValueError(f"invalid number {text!r}: use digits with a dot as the decimal separator")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text!r} is too large")
    return value


MAX_INTEGER = 2**31 - 1  # an INTEGER column on every database


def parse_integer(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"invalid whole number {text!r}")
    return _in_range(int(text))


def _in_range(value: int) -> int:
    if not 0 <= value <= MAX_INTEGER:
        raise ValueError(f"whole number {value} is out of range (0 to {MAX_INTEGER})")
    return value


def parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"invalid date {text!r}: use YYYY-MM-DD") from None


def parse_list(text: str) -> list[str]:
    return list(dict.fromkeys(part.strip() for part in _LIST_SEPARATOR.split(text) if part.strip()))


# RFC 5322 dot-atom of ASCII atext: what almost every address's local part is.
_PLAIN_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")


def parse_email(text: str) -> str:
    """The lower-cased address, or ValueError. Same verdicts as ``check_email``; the
    common case (a plain ASCII local part) checks only the domain with it, once per
    domain, since validating every address of a 100k-row file fully dominates an import."""
    text = text.strip()
    local, at, domain = text.rpartition("@")
    if at and len(local) <= 64 and len(text) <= 254 and domain.isascii() and _PLAIN_LOCAL.match(local):
        try:
            return f"{local}@{_checked_domain(domain.lower())}".lower()
        except ValueError:
            pass  # the full check says what is wrong, about the whole address
    return check_email(text).lower()


@lru_cache(maxsize=65_536)
def _checked_domain(domain: str) -> str:
    return check_email(f"postmaster@{domain}").rpartition("@")[2]


def infer_custom(text: str) -> bool | int | float | str:
    """A custom field's cell: true/false and plain numbers become typed, the rest stays text."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if _PLAIN_INT.match(text):
        return int(text)
    if _PLAIN_DECIMAL.match(text):
        return float(text)
    return text


def _checked_text(length: int | None) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if length is not None and len(text) > length:
            raise ValueError(f"too long ({len(text)} characters; at most {length})")
        if "\x00" in text:
            raise ValueError("contains a NUL character")
        return text

    return parse


def text_parser(kind: FieldType, length: int | None) -> Callable[[str], Any]:
    """How a non-empty, stripped cell of a field of ``kind`` becomes its value."""
    if kind is FieldType.BOOLEAN:
        return parse_bool
    if kind is FieldType.NUMBER:
        return parse_number
    if kind is FieldType.DATE:
        return parse_date
    if kind is FieldType.MULTI:
        return parse_list
    if kind is FieldType.CUSTOM:
        return infer_custom
    return _checked_text(length)


_KIND_NAMES = {
    FieldType.BOOLEAN: "a boolean",
    FieldType.NUMBER: "a number",
    FieldType.DATE: "a date (YYYY-MM-DD)",
    FieldType.MULTI: "a list of text",
    FieldType.CUSTOM: "text, a number, a boolean or a list of text",
}


@dataclass(frozen=True)
class FieldRef:
    """Where a field name (a CSV column, an event's field key) writes."""

    target: str  # contact | custom | company | company_custom
    name: str
    kind: FieldType

    @property
    def length(self) -> int | None:
        if self.target == "contact":
            return CONTACT_LENGTHS.get(self.name)
        if self.target == "company":
            return COMPANY_LENGTHS.get(self.name)
        return None

    @property
    def spec_name(self) -> str:
        """The name flows use: ``title``, ``custom.tier``, ``company.employees``."""
        prefix = {"contact": "", "custom": "custom.", "company": "company.", "company_custom": "company.custom."}
        return prefix[self.target] + self.name


def resolve_field(name: str) -> FieldRef:
    """The field a column or key names; ValueError for derived fields and unknown company fields.
    Anything else unknown is a custom field."""
    low = name.lower()
    if low in IMPORTABLE_FIELDS:
        return FieldRef("contact", low, IMPORTABLE_FIELDS[low])
    if low in DERIVED_FIELDS:
        raise ValueError(f"{low} is derived from other fields and cannot be set")
    if low.startswith("custom."):
        if not name[len("custom.") :].strip():
            raise ValueError("a custom field needs a name after 'custom.'")
        return FieldRef("custom", name[len("custom.") :], FieldType.CUSTOM)
    if low.startswith("company."):
        rest = name[len("company.") :]
        if rest.lower().startswith("custom.") and rest[len("custom.") :].strip():
            return FieldRef("company_custom", rest[len("custom.") :], FieldType.CUSTOM)
        if rest.lower() == "name":
            raise ValueError("the company's name is the contact field 'company'; use that column")
        if rest.lower() in COMPANY_IMPORTABLE:
            kind = COMPANY_IMPORTABLE[rest.lower()]
            return FieldRef("company", rest.lower(), kind)
        known = ", ".join(f"company.{n}" for n in COMPANY_IMPORTABLE)
        raise ValueError(f"unknown company field {rest!r}; known: {known}, company.custom.<name>")
    return FieldRef("custom", name, FieldType.CUSTOM)


def field_parser(ref: FieldRef) -> Callable[[str], Any]:
    if ref.target == "company" and ref.kind is FieldType.NUMBER:
        return parse_integer  # employees is a whole number
    return text_parser(ref.kind, ref.length)


def field_value(ref: FieldRef, value: Any, *, text: bool) -> Any:
    """A field's value given in an event: text is parsed as in a CSV cell (a custom
    field's text is kept as it is unless ``text``, i.e. it came from the command
    line); JSON booleans, numbers and lists are taken as they are when they fit."""
    if isinstance(value, str):
        stripped = value.strip()
        if not stripped:
            raise ValueError("empty value")
        if ref.kind is FieldType.CUSTOM and not text:
            return value
        return field_parser(ref)(stripped)
    kind = ref.kind
    if kind is FieldType.CUSTOM and (isinstance(value, bool | int | float) or _text_list(value)):
        return value
    if kind is FieldType.BOOLEAN and isinstance(value, bool):
        return value
    if kind is FieldType.NUMBER and isinstance(value, int | float) and not isinstance(value, bool):
        if ref.target == "company":
            if isinstance(value, int):
                return _in_range(value)
            raise ValueError(f"invalid whole number {value!r}")
        if not math.isfinite(value):
            raise ValueError("number is too large")
        return float(value)
    if kind is FieldType.MULTI and _text_list(value):
        return list(dict.fromkeys(v.strip() for v in value if v.strip()))
    raise ValueError(f"expected {_KIND_NAMES.get(kind, 'text')}, got {_json_type(value)}")


def _text_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


@dataclass
class ContactValues:
    """What one row (or event) says about a contact and its company."""

    email: str
    values: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)
    company: dict[str, Any] = field(default_factory=dict)
    company_custom: dict[str, Any] = field(default_factory=dict)

    def set(self, ref: FieldRef, value: Any) -> None:
        {"contact": self.values, "custom": self.custom, "company": self.company, "company_custom": self.company_custom}[
            ref.target
        ][ref.name] = value

    @property
    def company_name(self) -> str | None:
        name = self.values.get("company")
        return name if isinstance(name, str) and name else None

    def row(self) -> dict[str, Any]:
        """The row ``CrmTx.upsert_contacts`` takes."""
        return {**self.values, "email": self.email, "custom": self.custom}

    def merge(self, later: ContactValues) -> None:
        """A later row for the same e-mail: its given fields win."""
        self.values.update(later.values)
        self.custom.update(later.custom)
        self.company.update(later.company)
        self.company_custom.update(later.company_custom)


def write_companies(crm: CrmTx, changes: Mapping[str, ContactValues]) -> None:
    """Create the companies named and set the company fields given, by company name."""
    crm.ensure_companies(list(changes))
    wanted = {name: v for name, v in changes.items() if v.company or v.company_custom}
    if not wanted:
        return
    current = crm.companies_by_name(wanted)
    for name, given in wanted.items():
        row = current.get(name)
        if row is None:  # pragma: no cover - ensure_companies just made it
            continue
        values = {k: v for k, v in given.company.items() if row.get(k) != v}
        custom = {**row["custom"], **given.company_custom}
        if custom != row["custom"]:
            values["custom"] = custom
        crm.update_company(name, values)
