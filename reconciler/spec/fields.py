"""The CRM fields a spec may name, with their types.

Filters, split conditions, ``update_contact`` rows and merge fields all name contact
or company fields. Knowing the fields at validate time turns a typo into an error
with a location instead of a silent no-op at run time. Custom fields (unknown CSV
columns on import) are open-ended, so they are written with an explicit
``custom.`` prefix and are not checked.
"""

from __future__ import annotations

from enum import StrEnum


class FieldType(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"
    LIST = "list"  # one value from a list (category, business, ...)
    MULTI = "multi"  # several values (interests, subscriptions)
    ASSOCIATE = "associate"  # a colleague's name
    CUSTOM = "custom"  # a custom field: type unknown until run time


CONTACT_FIELDS: dict[str, FieldType] = {
    "email": FieldType.TEXT,
    "first_name": FieldType.TEXT,
    "last_name": FieldType.TEXT,
    "full_name": FieldType.TEXT,
    "title": FieldType.TEXT,
    "mobile": FieldType.TEXT,
    "phone": FieldType.TEXT,
    "company": FieldType.TEXT,
    "category": FieldType.LIST,
    "business": FieldType.LIST,
    "country": FieldType.TEXT,
    "city": FieldType.TEXT,
    "language": FieldType.TEXT,
    "interests": FieldType.MULTI,
    "subscriptions": FieldType.MULTI,
    "consent_marketing": FieldType.BOOLEAN,
    "blocked": FieldType.BOOLEAN,
    "retired": FieldType.BOOLEAN,
    "birth_date": FieldType.DATE,
    "score": FieldType.NUMBER,
    "our_contact": FieldType.ASSOCIATE,
    "our_support_manager": FieldType.ASSOCIATE,
    "created_at": FieldType.DATE,
}

COMPANY_FIELDS: dict[str, FieldType] = {
    "name": FieldType.TEXT,
    "category": FieldType.LIST,
    "business": FieldType.LIST,
    "country": FieldType.TEXT,
    "city": FieldType.TEXT,
    "domain": FieldType.TEXT,
    "employees": FieldType.NUMBER,
}

# Fields a flow may not write: the identities (a contact's e-mail, a company's name) and the derived ones.
READ_ONLY_FIELDS = frozenset({"email", "full_name", "created_at", "company.name"})

FLOW_VARIABLES = frozenset({"name", "description", "owner"})

# Update actions valid per field type, as in the CRM's bulk update.
ACTIONS_BY_TYPE: dict[FieldType, frozenset[str]] = {
    FieldType.TEXT: frozenset({"set", "clear"}),
    FieldType.NUMBER: frozenset({"set", "clear", "increase", "decrease"}),
    FieldType.BOOLEAN: frozenset({"set"}),
    FieldType.DATE: frozenset({"set", "clear"}),
    FieldType.LIST: frozenset({"set", "clear"}),
    FieldType.MULTI: frozenset({"add", "remove", "set", "clear"}),
    FieldType.ASSOCIATE: frozenset({"set", "clear"}),
    FieldType.CUSTOM: frozenset({"set", "clear", "increase", "decrease"}),
}


def field_type(name: str) -> FieldType | None:
    """The type of a field reference such as ``category``, ``company.name`` or
    ``custom.score``; None when the name is not a known field."""
    if name.startswith("custom.") and len(name) > len("custom."):
        return FieldType.CUSTOM
    if name.startswith("company."):
        rest = name[len("company.") :]
        if rest.startswith("custom.") and len(rest) > len("custom."):
            return FieldType.CUSTOM
        return COMPANY_FIELDS.get(rest)
    return CONTACT_FIELDS.get(name)


def known_field_names() -> list[str]:
    return sorted(CONTACT_FIELDS) + [f"company.{n}" for n in sorted(COMPANY_FIELDS)]
