"""The built-in CRM's ways in: CSV imports of contacts and associates, events from
outside (``emit``, ``ingest``) and static selections.

Everything here validates first and writes in one store transaction, so a bad
file changes nothing. Imports fire no triggers; events do. Nothing here prints.
"""

from reconciler.crm.associates import AssociateImport, import_associates
from reconciler.crm.contacts import ContactImport, import_contacts
from reconciler.crm.csv_input import ImportRejected, ImportResult, InputError, Problem
from reconciler.crm.event_validation import EVENT_TYPES
from reconciler.crm.ingest import EventOutcome, IngestResult, emit_event, ingest_events
from reconciler.crm.selections import SelectionAdd, add_to_selection

__all__ = [
    "EVENT_TYPES",
    "AssociateImport",
    "ContactImport",
    "EventOutcome",
    "ImportRejected",
    "ImportResult",
    "IngestResult",
    "InputError",
    "Problem",
    "SelectionAdd",
    "add_to_selection",
    "emit_event",
    "import_associates",
    "import_contacts",
    "ingest_events",
]
