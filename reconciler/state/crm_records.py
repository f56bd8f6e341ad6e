"""Plain records of the built-in CRM: contacts, associates and events.

Split from ``crm_store`` so that code reading CRM data (conditions, merge fields, the
executor's facts) depends on these small frozen shapes, not on the SQL that fills
them. No SQLAlchemy types cross this line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class ContactRecord:
    id: int
    email: str
    values: Mapping[str, Any]  # every column of CONTACT_COLUMNS
    custom: Mapping[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        """A field by its spec name: ``first_name``, ``full_name``, ``custom.tier``."""
        if name.startswith("custom."):
            return self.custom.get(name[len("custom.") :])
        if name == "full_name":
            parts = [self.values.get("first_name"), self.values.get("last_name")]
            return " ".join(p for p in parts if p) or None
        return self.values.get(name)

    def as_template_data(self) -> dict[str, Any]:
        data = dict(self.values)
        data["full_name"] = self.get("full_name")
        data["custom"] = dict(self.custom)
        return data


@dataclass(frozen=True)
class NewEvent:
    type: str
    contact_email: str
    occurred_at: datetime
    subject: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    source: str = "emit"
    idempotency_key: str | None = None


@dataclass(frozen=True)
class EventRecord:
    id: int
    type: str
    contact_email: str
    subject: str | None
    data: Mapping[str, Any]
    source: str
    occurred_at: datetime


@dataclass(frozen=True)
class AssociateRecord:
    id: int
    name: str
    email: str | None
    mobile: str | None
    group_name: str | None
    active: bool
