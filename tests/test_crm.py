"""The built-in CRM's ways in: contacts/associates import, selections add, events emit/ingest.

Every test runs on SQLite and PostgreSQL (the ``store`` / ``database_url`` fixtures).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from reconciler.crm import (
    ImportRejected,
    InputError,
    add_to_selection,
    emit_event,
    import_associates,
    import_contacts,
    ingest_events,
)
from reconciler.crm.cells import parse_email
from reconciler.crm.event_validation import EventInvalid
from reconciler.crm.ingest import EventRejected
from reconciler.errors import UserError
from reconciler.spec.types import check_email
from reconciler.state import Store
from reconciler.state import crm as tables
from reconciler.state.crm_store import ContactRecord, CrmTx, EventRecord
from tests.conftest import Run, invoke_cli

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files are written and named relative to the test's directory, as a user would."""
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    """Write ``tmp_path/name``; returns the relative path (problems name files as given)."""
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return Path(name)


def contacts(store: Store, *emails: str) -> dict[str, ContactRecord]:
    with store.transaction() as tx:
        return CrmTx(tx).contacts_by_email(emails)


def count(store: Store, table: Any) -> int:
    with store.engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(table)).scalar_one())


def all_events(store: Store) -> list[EventRecord]:
    with store.engine.connect() as c:
        emails = list(c.execute(select(tables.events.c.contact_email).distinct()).scalars())
    with store.transaction() as tx:
        found = CrmTx(tx).events_of(emails, list(EVENT_KINDS))
    return sorted(found, key=lambda e: e.id)


def company(store: Store, name: str) -> dict[str, Any]:
    with store.transaction() as tx:
        return CrmTx(tx).companies_by_name([name])[name]


def members(store: Store, kind: str, name: str) -> set[str]:
    emails = _all_emails(store)
    with store.transaction() as tx:
        crm = CrmTx(tx)
        everyone = {c.id: c.email for c in crm.contacts_by_email(emails).values()}
        return {everyone[i] for n, i in crm.memberships(kind, [name], list(everyone)) if n == name}


def _all_emails(store: Store) -> list[str]:
    with store.engine.connect() as c:
        return list(c.execute(select(tables.contacts.c.email)).scalars())


EVENT_KINDS = (
    "form_submitted",
    "link_clicked",
    "sale_created",
    "sale_sold",
    "sale_lost",
    "request_created",
    "follow_up_created",
    "contact_created",
    "contact_updated",
    "added_to_project",
    "added_to_selection",
)


def rejected(call: Callable[[], object]) -> list[str]:
    with pytest.raises(ImportRejected) as info:
        call()
    return [str(p) for p in info.value.problems]


# --- contacts import: happy paths ---------------------------------------------------------------

BASIC = """\
email,first_name,last_name,mobile,country,category,consent_marketing,interests,score,birth_date,our_contact
Anna.Berg@Nordvind.example,Anna,Berg,+46701234567,SE,lead,ja,crm;webinars,12.5,1980-02-03,anna
bo@fjord.example,Bo,Nilsen,,NO,prospect,no,pricing|crm,,,
"""


def test_import_creates_contacts_with_typed_fields(store: Store, tmp_path: Path) -> None:
    result = import_contacts(store, write(tmp_path, "c.csv", BASIC), NOW)
    assert (result.created, result.updated, result.unchanged, result.errors) == (2, 0, 0, 0)
    assert result.summary() == "imported 2 contact(s): 2 created, 0 updated, 0 unchanged; 0 error(s)"
    found = contacts(store, "anna.berg@nordvind.example", "bo@fjord.example")
    anna = found["anna.berg@nordvind.example"].values
    assert anna["first_name"] == "Anna" and anna["mobile"] == "+46701234567" and anna["country"] == "SE"
    assert anna["consent_marketing"] is True and anna["interests"] == ["crm", "webinars"]
    assert anna["score"] == 12.5 and anna["birth_date"] == date(1980, 2, 3) and anna["our_contact"] == "anna"
    bo = found["bo@fjord.example"].values
    assert bo["consent_marketing"] is False and bo["interests"] == ["pricing", "crm"]
    assert bo["mobile"] is None and bo["score"] is None and bo["blocked"] is False
    assert count(store, tables.events) == 0  # imports fire no triggers


def test_second_import_updates_counts_unchanged_and_keeps_empty_cells(store: Store, tmp_path: Path) -> None:
    import_contacts(store, write(tmp_path, "c.csv", BASIC), NOW)
    again = import_contacts(store, write(tmp_path, "c.csv", BASIC), NOW)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
    change = (
        "email,first_name,mobile,title\nanna.berg@nordvind.example,,,CEO\nbo@fjord.example,Bo,,\nnew@x.example,,,\n"
    )
    result = import_contacts(store, write(tmp_path, "d.csv", change), NOW)
    assert (result.created, result.updated, result.unchanged) == (1, 1, 1)
    anna = contacts(store, "anna.berg@nordvind.example")["anna.berg@nordvind.example"].values
    assert anna["title"] == "CEO" and anna["first_name"] == "Anna" and anna["mobile"] == "+46701234567"
    assert count(store, tables.events) == 0


def test_custom_fields_and_their_types(store: Store, tmp_path: Path) -> None:
    text = "email,tier,custom.seats,zip,Active Customer,ratio,custom.Note\na@x.example,gold,12,01234,TRUE,0.5,hej\n"
    import_contacts(store, write(tmp_path, "c.csv", text), NOW)
    custom = contacts(store, "a@x.example")["a@x.example"].custom
    assert custom == {"tier": "gold", "seats": 12, "zip": "01234", "Active Customer": True, "ratio": 0.5, "Note": "hej"}
    # a later import merges custom fields, an empty cell keeps the old value
    import_contacts(store, write(tmp_path, "d.csv", "email,tier,extra\na@x.example,,1\n"), NOW)
    assert contacts(store, "a@x.example")["a@x.example"].custom["tier"] == "gold"
    assert contacts(store, "a@x.example")["a@x.example"].custom["extra"] == 1


def test_company_fields_set_the_company(store: Store, tmp_path: Path) -> None:
    text = (
        "email,company,company.employees,company.country,company.custom.segment\n"
        "a@nordvind.example,Nordvind AB,120,SE,enterprise\n"
        "b@nordvind.example,Nordvind AB,,,\n"
        "c@solo.example,Solo AB,,,\n"
    )
    import_contacts(store, write(tmp_path, "c.csv", text), NOW)
    nordvind = company(store, "Nordvind AB")
    assert nordvind["employees"] == 120 and nordvind["country"] == "SE"
    assert nordvind["custom"] == {"segment": "enterprise"}
    assert company(store, "Solo AB")["employees"] is None
    import_contacts(
        store, write(tmp_path, "d.csv", "email,company,company.employees\na@nordvind.example,Nordvind AB,130\n"), NOW
    )
    assert company(store, "Nordvind AB")["employees"] == 130
    assert company(store, "Nordvind AB")["custom"] == {"segment": "enterprise"}


def test_semicolon_delimiter_bom_and_multiline_quoted_field(store: Store, tmp_path: Path) -> None:
    text = '\ufeffemail;first_name;title;interests\r\na@x.example;Åsa;"Head of\r\nMarketing";crm|email-marketing\r\n'
    import_contacts(store, write(tmp_path, "c.csv", text), NOW)
    a = contacts(store, "a@x.example")["a@x.example"].values
    assert a["first_name"] == "Åsa" and a["title"] == "Head of\r\nMarketing"
    assert a["interests"] == ["crm", "email-marketing"]


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("true", True),
        ("Yes", True),
        ("1", True),
        ("ja", True),
        ("FALSE", False),
        ("no", False),
        ("0", False),
        ("Nej", False),
    ],
)
def test_booleans(store: Store, tmp_path: Path, cell: str, expected: bool) -> None:
    import_contacts(store, write(tmp_path, "c.csv", f"email,blocked\na@x.example,{cell}\n"), NOW)
    assert contacts(store, "a@x.example")["a@x.example"].values["blocked"] is expected


def test_duplicate_emails_later_row_wins_across_batches(store: Store, tmp_path: Path) -> None:
    text = (
        "email,first_name,title\n"
        "a@x.example,Anna,CEO\n"
        "b@x.example,Bo,\n"
        "c@x.example,Cid,\n"
        "A@X.example,Annika,\n"  # another batch (batch_size 2): updates the same contact
        "b@x.example,Bosse,\n"
    )
    result = import_contacts(store, write(tmp_path, "c.csv", text), NOW, batch_size=2)
    assert (result.created, result.updated, result.unchanged) == (3, 0, 0)
    warnings = [str(p) for p in result.problems]
    assert "c.csv:5: warning: e-mail a@x.example is also on line 2: the later row wins" in warnings
    assert "c.csv:6: warning: e-mail b@x.example is also on line 3: the later row wins" in warnings
    found = contacts(store, "a@x.example", "b@x.example")
    assert found["a@x.example"].values["first_name"] == "Annika" and found["a@x.example"].values["title"] == "CEO"
    assert found["b@x.example"].values["first_name"] == "Bosse"


@pytest.mark.parametrize(
    "address",
    [
        "A.B@X.example",
        "a+tag@x.example",
        "o'neil@x.example",
        "a..b@x.example",
        ".a@x.example",
        "a@x",
        "a@localhost",
        "a@x.test",
        "a@-x.example",
        "a@x..example",
        "a@123.456",
        "x" * 65 + "@x.example",
        "åsa@x.example",
        "a@bücher.example",
        '"q"@x.example',
        "a@x.example.",
        "a b@x.example",
        "a@x_y.example",
        "user@[1.2.3.4]",
        "a@" + "b" * 64 + ".example",
    ],
)
def test_the_fast_email_check_agrees_with_check_email(address: str) -> None:
    def verdict(check: Callable[[str], str]) -> str:
        try:
            return check(address).lower()
        except ValueError as exc:
            return f"error: {exc}"

    assert verdict(parse_email) == verdict(check_email)


def test_unknown_associate_and_misspelt_column_are_warnings(store: Store, tmp_path: Path) -> None:
    import_associates(store, write(tmp_path, "a.csv", "name\nanna\n"))
    text = "email,frist_name,our_contact\na@x.example,A,anna\nb@x.example,B,zed\nc@x.example,C,zed\n"
    result = import_contacts(store, write(tmp_path, "c.csv", text), NOW)
    shown = [str(p) for p in result.problems]
    assert shown == [
        "c.csv:1: warning: column frist_name: not a contact field, imported as a custom field (did you mean first_name?)",
        "c.csv:3: warning: column our_contact: 'zed' is not a known associate (see reconcile associates import); "
        "imported anyway (warned once per name)",
    ]
    assert result.created == 3 and result.errors == 0


# --- contacts import: errors ------------------------------------------------------------------------


def test_every_row_error_is_reported_with_its_line_and_nothing_is_imported(store: Store, tmp_path: Path) -> None:
    text = (
        "email,score,birth_date,blocked,interests,first_name\n"
        "ok@x.example,1,,,,\n"
        "a@x.example,abc,2020-13-01,maybe,,\n"
        "not-an-email,,,,,\n"
        ",2,,,,\n"
        '"q@x.example",,,,,"two\nlines"\n'
        "long@x.example,,,,," + "x" * 201 + "\n"
        "c@x.example,1,2,3\n"
        "d@x.example,1,,,,,extra\n"
        "e@x.example,nan,,,,\n"
    )
    problems = rejected(lambda: import_contacts(store, write(tmp_path, "c.csv", text), NOW, batch_size=1))
    assert problems == [
        "c.csv:3: column score: invalid number 'abc': use digits with a dot as the decimal separator",
        "c.csv:3: column birth_date: invalid date '2020-13-01': use YYYY-MM-DD",
        "c.csv:3: column blocked: invalid boolean 'maybe': use true/false, yes/no, ja/nej or 1/0",
        "c.csv:4: column email: invalid e-mail address 'not-an-email': An email address must have an @-sign.",
        "c.csv:5: column email: missing; every row needs an e-mail address",
        "c.csv:8: column first_name: too long (201 characters; at most 200)",
        "c.csv:9: the row has 4 field(s) but the header has 6; check the quoting and the delimiter ','",
        "c.csv:10: the row has 7 field(s) but the header has 6; check the quoting and the delimiter ','",
        "c.csv:11: column score: invalid number 'nan': use digits with a dot as the decimal separator",
    ]
    # transactional: the valid rows before the first error (a batch of one) were rolled back
    assert count(store, tables.contacts) == 0


def test_skip_invalid_imports_the_valid_rows(store: Store, tmp_path: Path) -> None:
    text = "email,score\na@x.example,1\nb@x.example,abc\nc@x.example,3\n"
    result = import_contacts(store, write(tmp_path, "c.csv", text), NOW, skip_invalid=True)
    assert (result.created, result.errors) == (2, 1)
    assert [str(p) for p in result.problems] == [
        "c.csv:3: warning: column score: invalid number 'abc': use digits with a dot as the decimal separator"
    ]
    assert result.summary() == "imported 2 contact(s): 2 created, 0 updated, 0 unchanged; 1 error(s)"
    assert set(contacts(store, "a@x.example", "b@x.example", "c@x.example")) == {"a@x.example", "c@x.example"}


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("first_name,last_name", "c.csv:1: the header has no email column; it is required"),
        ("email,full_name", "c.csv:1: column full_name: full_name is derived from other fields and cannot be set"),
        ("email,created_at", "c.csv:1: column created_at: created_at is derived"),
        ("email,company.size", "c.csv:1: column company.size: unknown company field 'size'"),
        ("email,company.name", "c.csv:1: column company.name: the company's name is the contact field 'company'"),
        ("email,title,Title", "c.csv:1: column Title: appears twice (columns 2 and 3)"),
        ("email,,title", "c.csv:1: column 2 of the header has no name"),
    ],
)
def test_header_errors(store: Store, tmp_path: Path, header: str, message: str) -> None:
    problems = rejected(lambda: import_contacts(store, write(tmp_path, "c.csv", f"{header}\na@x.example,b,c\n"), NOW))
    assert any(p.startswith(message) for p in problems), problems
    assert count(store, tables.contacts) == 0


def test_company_fields_need_a_company_name(store: Store, tmp_path: Path) -> None:
    text = "email,company,company.employees\na@x.example,,12\nb@x.example,B AB,many\nc@x.example,C AB,9999999999\n"
    assert rejected(lambda: import_contacts(store, write(tmp_path, "c.csv", text), NOW)) == [
        "c.csv:2: column company.employees: needs the company's name in the company column",
        "c.csv:3: column company.employees: invalid whole number 'many'",
        "c.csv:4: column company.employees: whole number 9999999999 is out of range (0 to 2147483647)",
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "c.csv: the file is empty; expected a header line such as email,first_name"),
        (b"\n\n  \n", "c.csv: the file is empty"),
        (b"\xef\xbb\xbf", "c.csv: the file is empty"),
        (b"email,first_name\n", "c.csv: the file has a header (line 1) but no rows"),
        (b"email,first_name\n\n,\n", "c.csv: the file has a header (line 1) but no rows"),
        (
            b"email,first_name\na@x.example,G\xf6ran\n",
            "c.csv:2: not UTF-8 text (byte 0xf6 at column 14); save the file as UTF-8",
        ),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00\n\x00\x00", "c.csv:1: contains a NUL byte; this is a binary file, not text"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "c.csv:1: not UTF-8 text (byte 0x89 at column 1)"),
        (b'email,first_name\na@x.example,"never closed\nmore\n', "c.csv:3: a quoted field is never closed"),
        (b'email,first_name\na@x.example,"x"y\n', "c.csv:2: invalid CSV: ',' expected after '\"'"),
        (b"email,first_name\na@x.example,A\rb@x.example,B\n", "c.csv:2: a line break inside an unquoted field"),
    ],
)
def test_unreadable_files_are_one_clear_error(store: Store, tmp_path: Path, content: bytes, message: str) -> None:
    with pytest.raises(InputError) as info:
        import_contacts(store, write(tmp_path, "c.csv", content), NOW)
    assert str(info.value).startswith(message), str(info.value)


def test_fatal_error_late_in_the_file_rolls_back_every_batch(store: Store, tmp_path: Path) -> None:
    lines = [b"email,first_name"] + [f"c{i}@x.example,C{i}".encode() for i in range(2500)] + [b"z@x.example,\xff"]
    path = write(tmp_path, "c.csv", b"\n".join(lines) + b"\n")
    with pytest.raises(InputError, match=r"c\.csv:2502: not UTF-8"):
        import_contacts(store, path, NOW, batch_size=1000)
    assert count(store, tables.contacts) == 0


def test_twenty_thousand_rows_stream_in_batches(store: Store, tmp_path: Path) -> None:
    path = Path("big.csv")
    with path.open("w", encoding="utf-8") as handle:
        handle.write("email,first_name,country,consent_marketing,interests,score,tier\n")
        for i in range(20_000):
            handle.write(
                f"p{i}@bulk.example,P{i},{('SE', 'NO', 'DK', 'FI')[i % 4]},{i % 2},crm|webinars,{i % 100},t{i % 3}\n"
            )
    result = import_contacts(store, path, NOW)
    assert (result.created, result.errors) == (20_000, 0)
    assert count(store, tables.contacts) == 20_000
    sample = contacts(store, "p19999@bulk.example")["p19999@bulk.example"]
    assert sample.values["country"] == "FI" and sample.values["consent_marketing"] is True
    assert sample.custom == {"tier": "t1"}


# --- associates ---------------------------------------------------------------------------------------


def test_associates_import_and_update(store: Store, tmp_path: Path) -> None:
    text = "name,email,mobile,group,active\nanna,Anna@Acme.example,+46701111111,sales,yes\nbo,bo@acme.example,,sales,\n"
    result = import_associates(store, write(tmp_path, "a.csv", text))
    assert result.summary() == "imported 2 associate(s): 2 created, 0 updated, 0 unchanged; 0 error(s)"
    update = "name,mobile,active\nanna,,nej\nbo,,\ncarla,+4791234567,\n"
    result = import_associates(store, write(tmp_path, "b.csv", update))
    assert (result.created, result.updated, result.unchanged) == (1, 1, 1)
    with store.transaction() as tx:
        found = {a.name: a for a in CrmTx(tx).associates()}
    assert found["anna"].email == "anna@acme.example" and found["anna"].mobile == "+46701111111"
    assert found["anna"].active is False and found["anna"].group_name == "sales"
    assert found["carla"].active is True and found["bo"].email == "bo@acme.example"


def test_associates_errors(store: Store, tmp_path: Path) -> None:
    assert rejected(lambda: import_associates(store, write(tmp_path, "a.csv", "email,team\nx@y.example,z\n"))) == [
        "a.csv:1: column team: unknown; known: name, email, mobile, group, group_name, active",
        "a.csv:1: the header has no name column; it is required (the name identifies an associate)",
    ]
    text = "name,email,active\nanna,not-mail,maybe\n,b@x.example,\nanna,a@x.example,\nbo,b@x.example,yes,1\n"
    assert rejected(lambda: import_associates(store, write(tmp_path, "b.csv", text))) == [
        "b.csv:2: column email: invalid e-mail address 'not-mail': An email address must have an @-sign.",
        "b.csv:2: column active: invalid boolean 'maybe': use true/false, yes/no, ja/nej or 1/0",
        "b.csv:3: column name: missing; every row needs the associate's name",
        "b.csv:5: the row has 4 field(s) but the header has 3; check the quoting and the delimiter ','",
    ]
    assert count(store, tables.associates) == 0
    result = import_associates(store, write(tmp_path, "b.csv", text), skip_invalid=True)
    assert result.created == 1 and result.errors == 4
    with pytest.raises(InputError, match="header"):
        import_associates(store, write(tmp_path, "c.csv", "name,email\n"))


def test_associates_duplicate_name_later_wins(store: Store, tmp_path: Path) -> None:
    text = "name,email,group\nanna,a@x.example,sales\nanna,,support\n"
    result = import_associates(store, write(tmp_path, "a.csv", text))
    assert [str(p) for p in result.problems] == ["a.csv:3: warning: 'anna' is also on line 2: the later row wins"]
    with store.transaction() as tx:
        (anna,) = CrmTx(tx).associates()
    assert (anna.email, anna.group_name) == ("a@x.example", "support")


# --- selections -------------------------------------------------------------------------------------------


@pytest.fixture
def people(store: Store, tmp_path: Path) -> Store:
    text = "email,first_name,company\na@x.example,A,Acme\nb@x.example,B,\nc@x.example,C,\n"
    import_contacts(store, write(tmp_path, "people.csv", text), NOW)
    return store


def test_selections_add_records_one_event_per_new_member(people: Store) -> None:
    result = add_to_selection(people, "webinar-2027-02-imported", ["A@x.example", "b@x.example", "a@x.example"], NOW)
    assert result.summary() == "added 2 contact(s) to webinar-2027-02-imported (0 already members)"
    again = add_to_selection(people, "webinar-2027-02-imported", ["b@x.example", "c@x.example"], NOW)
    assert again.summary() == "added 1 contact(s) to webinar-2027-02-imported (1 already members)"
    assert members(people, "selection", "webinar-2027-02-imported") == {"a@x.example", "b@x.example", "c@x.example"}
    events = all_events(people)
    assert [(e.type, e.contact_email, e.subject, e.source) for e in events] == [
        ("added_to_selection", "a@x.example", "webinar-2027-02-imported", "crm"),
        ("added_to_selection", "b@x.example", "webinar-2027-02-imported", "crm"),
        ("added_to_selection", "c@x.example", "webinar-2027-02-imported", "crm"),
    ]


def test_selections_add_unknown_emails_adds_nothing(people: Store) -> None:
    with pytest.raises(UserError, match=r"no contact with e-mail x@y\.example, z@y\.example; nothing was added"):
        add_to_selection(people, "vip", ["a@x.example", "x@y.example", "z@y.example"], NOW)
    with pytest.raises(UserError, match="invalid e-mail address"):
        add_to_selection(people, "vip", ["nope"], NOW)
    with pytest.raises(UserError, match="invalid selection name"):
        add_to_selection(people, " ", ["a@x.example"], NOW)
    assert count(people, tables.selections) == 0 and count(people, tables.events) == 0


# --- events -----------------------------------------------------------------------------------------------


def emit(store: Store, **raw: Any) -> str:
    return emit_event(store, raw, NOW).describe()


@pytest.mark.parametrize(
    ("raw", "subject", "data"),
    [
        (
            {"type": "form_submitted", "form": "webinar-signup", "fields": {"seats": "2"}},
            "webinar-signup",
            {"fields": {"seats": "2"}},
        ),
        (
            {"type": "link_clicked", "link": "pricing-page", "fields": {"email_step": "recording"}},
            "pricing-page",
            {"email_step": "recording"},
        ),
        (
            {"type": "sale_created", "fields": {"title": "Deal", "amount": "1000"}},
            None,
            {"title": "Deal", "amount": 1000.0},
        ),
        ({"type": "sale_sold"}, None, {}),
        ({"type": "sale_lost", "fields": {"amount": 5}}, None, {"amount": 5.0}),
        ({"type": "request_created", "fields": {"title": "Help"}}, None, {"title": "Help"}),
        ({"type": "follow_up_created"}, None, {}),
        ({"type": "contact_updated", "fields": {"title": "CTO", "score": "40"}}, None, {"changed": ["title", "score"]}),
        ({"type": "added_to_project", "project": "onboarding-2027"}, "onboarding-2027", {}),
        ({"type": "added_to_selection", "selection": "customers"}, "customers", {}),
    ],
)
def test_emit_every_type_for_an_existing_contact(
    people: Store, raw: dict[str, Any], subject: str | None, data: dict[str, Any]
) -> None:
    assert emit(people, email="a@x.example", **raw).startswith(f"recorded {raw['type']} for a@x.example")
    (event,) = all_events(people)
    assert (event.type, event.contact_email, event.subject, event.source) == (
        raw["type"],
        "a@x.example",
        subject,
        "emit",
    )
    assert event.data == data and event.occurred_at == NOW
    if raw["type"] == "added_to_project":
        assert members(people, "project", "onboarding-2027") == {"a@x.example"}
    if raw["type"] == "added_to_selection":
        assert members(people, "selection", "customers") == {"a@x.example"}
        assert emit(people, email="a@x.example", **raw) == (
            "no added_to_selection event for a@x.example: already a member of selection 'customers'"
        )
        assert len(all_events(people)) == 1


def test_form_submission_creates_the_contact_from_its_fields(store: Store) -> None:
    fields = {"first_name": "Nils", "country": "SE", "consent_marketing": "ja", "interests": ["crm"], "seats": 2}
    said = emit(store, type="form_submitted", email="Nils@Fjord.example", form="webinar-signup", fields=fields)
    assert said == "recorded form_submitted for nils@fjord.example (contact created)"
    nils = contacts(store, "nils@fjord.example")["nils@fjord.example"]
    assert nils.values["first_name"] == "Nils" and nils.values["consent_marketing"] is True
    assert nils.values["interests"] == ["crm"] and nils.custom == {}  # only contact fields a form may fill
    assert [(e.type, e.subject) for e in all_events(store)] == [
        ("contact_created", None),
        ("form_submitted", "webinar-signup"),
    ]
    assert all_events(store)[1].data == {"fields": fields}


def test_link_click_and_contact_created_create_contacts(store: Store) -> None:
    assert emit(store, type="link_clicked", email="l@x.example", link="keep-in-touch").endswith("(contact created)")
    said = emit(
        store,
        type="contact_created",
        email="c@x.example",
        fields={"title": "CEO", "company": "Acme", "company.employees": 50},
    )
    assert said == "recorded contact_created for c@x.example (contact created)"
    assert contacts(store, "c@x.example")["c@x.example"].values["title"] == "CEO"
    assert company(store, "Acme")["employees"] == 50
    assert [e.type for e in all_events(store)] == ["contact_created", "link_clicked", "contact_created"]
    with pytest.raises(EventRejected, match=r"contact c@x\.example already exists; use contact_updated"):
        emit(store, type="contact_created", email="c@x.example")


def test_contact_updated_records_what_changed(people: Store) -> None:
    said = emit(
        people,
        type="contact_updated",
        email="a@x.example",
        fields={"first_name": "A", "title": "CEO", "custom.tier": "gold", "company.employees": 300},
    )
    assert said == "recorded contact_updated for a@x.example: changed title, custom.tier, company.employees"
    (event,) = all_events(people)
    assert event.data == {"changed": ["title", "custom.tier", "company.employees"]}
    assert contacts(people, "a@x.example")["a@x.example"].custom == {"tier": "gold"}
    assert company(people, "Acme")["employees"] == 300
    assert emit(people, type="contact_updated", email="a@x.example", fields={"title": "CEO"}) == (
        "no contact_updated event for a@x.example: no field changed"
    )
    assert len(all_events(people)) == 1
    with pytest.raises(EventRejected, match="has no company"):
        emit(people, type="contact_updated", email="b@x.example", fields={"company.employees": 3})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"type": "nope"}, "type: unknown event type 'nope'; one of form_submitted, link_clicked"),
        ({"email": "a@x.example"}, "type: missing; one of form_submitted"),
        ({"type": "form_submitted"}, "form: required for form_submitted"),
        ({"type": "link_clicked", "link": "x", "form": "y"}, "form: not allowed for link_clicked"),
        ({"type": "sale_created", "fields": {"amount": "lots"}}, "fields.amount: Input should be a valid number"),
        ({"type": "sale_created", "fields": {"stage": "x"}}, "fields.stage: not allowed for sale_created"),
        ({"type": "sale_sold", "occurred_at": "2026-11-25T10:00:00"}, "occurred_at: needs a UTC offset"),
        ({"type": "contact_updated"}, "fields: contact_updated needs at least one contact field"),
        ({"type": "contact_updated", "fields": {"score": "high"}}, "fields.score: invalid number 'high'"),
        ({"type": "contact_updated", "fields": {"blocked": 3}}, "fields.blocked: expected a boolean, got a number"),
        (
            {"type": "contact_updated", "fields": {"first_name": "a\u0000b"}},
            "fields.first_name: contains a NUL character",
        ),
        (
            {"type": "contact_updated", "fields": {"company.employees": 2**31}},
            "fields.company.employees: whole number 2147483648 is out of range (0 to 2147483647)",
        ),
        ({"type": "contact_updated", "fields": {"full_name": "A B"}}, "fields.full_name: full_name is derived"),
        (
            {"type": "contact_updated", "fields": {"email": "b@x.example"}},
            "fields.email: the e-mail address is the event's email",
        ),
        ({"type": "added_to_selection", "selection": "  "}, "selection: String should have at least 1 character"),
        ({"type": "added_to_project", "project": "p", "key": ""}, "key: String should have at least 1 character"),
    ],
)
def test_invalid_events(people: Store, raw: dict[str, Any], message: str) -> None:
    raw.setdefault("email", "a@x.example")
    with pytest.raises(EventInvalid) as info:
        emit_event(people, raw, NOW)
    assert any(m.startswith(message) for m in info.value.messages), info.value.messages
    assert count(people, tables.events) == 0


def test_unknown_contact_for_a_non_creating_type(people: Store) -> None:
    with pytest.raises(EventRejected, match=r"no contact with e-mail z@x\.example; only form_submitted"):
        emit(people, type="sale_created", email="z@x.example")


INGEST = [
    {
        "type": "form_submitted",
        "email": "new@x.example",
        "form": "webinar-signup",
        "fields": {"first_name": "Ny"},
        "occurred_at": "2026-11-25T10:00:00Z",
        "key": "form-1",
    },
    {
        "type": "link_clicked",
        "email": "a@x.example",
        "link": "pricing-page",
        "fields": {"email_step": "recording"},
        "key": "click-1",
    },
    {"type": "sale_created", "email": "a@x.example", "fields": {"title": "Deal", "amount": 1200.5}, "key": "sale-1"},
    {"type": "sale_sold", "email": "a@x.example", "key": "sale-2"},
    {"type": "sale_lost", "email": "b@x.example"},
    {"type": "request_created", "email": "b@x.example", "fields": {"title": "Help"}},
    {"type": "follow_up_created", "email": "b@x.example"},
    {
        "type": "contact_created",
        "email": "made@x.example",
        "fields": {"first_name": "Made", "interests": "crm;pricing"},
        "key": "cc-1",
    },
    {"type": "contact_updated", "email": "b@x.example", "fields": {"title": "CFO"}, "key": "cu-1"},
    {
        "type": "added_to_project",
        "email": "c@x.example",
        "project": "onboarding-2027",
        "occurred_at": "2026-11-25T11:00:00+01:00",
    },
    {"type": "added_to_selection", "email": "new@x.example", "selection": "customers", "key": "sel-1"},
    {"type": "form_submitted", "email": "new@x.example", "form": "book-a-demo", "key": "form-1"},
]


def jsonl(tmp_path: Path, rows: list[Any], name: str = "e.jsonl") -> Path:
    return write(tmp_path, name, "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")


def test_ingest_every_type_and_replay_is_idempotent(people: Store, tmp_path: Path) -> None:
    path = jsonl(tmp_path, INGEST)
    result = ingest_events(people, path, NOW)
    assert result.summary() == (
        f"ingested 12 event(s) from {path}: 11 recorded, 1 duplicate key(s) skipped, 0 without effect; "
        "2 contact(s) created"
    )
    events = all_events(people)
    assert [e.type for e in events] == [
        "contact_created",
        "form_submitted",
        "link_clicked",
        "sale_created",
        "sale_sold",
        "sale_lost",
        "request_created",
        "follow_up_created",
        "contact_created",
        "contact_updated",
        "added_to_project",
        "added_to_selection",
    ]
    assert {e.source for e in events} == {"ingest"}
    assert events[1].occurred_at == datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    assert events[10].occurred_at == datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # stored in UTC
    assert events[4].occurred_at == NOW  # no occurred_at: the clock's now
    assert events[3].data == {"title": "Deal", "amount": 1200.5} and events[9].data == {"changed": ["title"]}
    assert contacts(people, "made@x.example")["made@x.example"].values["interests"] == ["crm", "pricing"]
    assert members(people, "project", "onboarding-2027") == {"c@x.example"}
    assert members(people, "selection", "customers") == {"new@x.example"}

    keyed = [row for row in INGEST if "key" in row]
    again = ingest_events(people, jsonl(tmp_path, keyed, "again.jsonl"), NOW)
    assert (again.recorded, again.duplicates, again.contacts_created) == (0, len(keyed), 0)
    assert len(all_events(people)) == len(events)


def test_ingest_any_invalid_line_ingests_nothing(people: Store, tmp_path: Path) -> None:
    rows: list[Any] = [
        {"type": "sale_created", "email": "a@x.example"},
        "{not json",
        "",
        "[1, 2]",
        {"type": "form_submitted", "email": "a@x.example"},
        {"type": "sale_sold", "email": "a@x.example", "occurred_at": "2026-11-25T10:00:00"},
        {"type": "sale_sold", "email": "ghost@x.example"},
        {"type": "bogus", "email": "a@x.example"},
        '{"type": "sale_sold", "email": "a@x.example", "fields": {"amount": NaN}}',
        {"type": "form_submitted", "email": "new@x.example", "form": "f"},
        {"type": "contact_created", "email": "new@x.example"},
    ]
    problems = rejected(lambda: ingest_events(people, jsonl(tmp_path, rows), NOW))
    assert problems == [
        "e.jsonl:2: invalid JSON: Expecting property name enclosed in double quotes (column 2)",
        "e.jsonl:4: expected a JSON object, got list",
        "e.jsonl:5: form: required for form_submitted",
        "e.jsonl:6: occurred_at: needs a UTC offset, e.g. 2026-11-25T10:00:00Z",
        "e.jsonl:7: no contact with e-mail ghost@x.example; only form_submitted, link_clicked and contact_created "
        "create contacts (or import it: reconcile contacts import)",
        "e.jsonl:8: type: unknown event type 'bogus'; one of " + ", ".join(EVENT_KINDS),
        "e.jsonl:9: invalid JSON: NaN is not a number JSON allows",
        "e.jsonl:11: contact new@x.example already exists; use contact_updated to change it",
    ]
    assert count(people, tables.events) == 0
    assert "new@x.example" not in contacts(people, "new@x.example")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "no events (the file is empty)"),
        (b"\n \n", "no events"),
        (b'{"type": "sale_sold"}\n\xff\n', ":2: not UTF-8"),
    ],
)
def test_ingest_unreadable_files(people: Store, tmp_path: Path, content: bytes, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        ingest_events(people, write(tmp_path, "e.jsonl", content), NOW)


# --- the command line ------------------------------------------------------------------------------------


@pytest.fixture
def run(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.setenv("RECONCILER_DATABASE_URL", database_url)
    monkeypatch.chdir(tmp_path)

    return invoke_cli


@pytest.fixture
def cli_store(database_url: str, run: Run) -> Iterator[Store]:
    opened = Store.open(database_url)
    yield opened
    opened.close()


def test_cli_contacts_import(run: Run, tmp_path: Path, cli_store: Store) -> None:
    write(tmp_path, "c.csv", BASIC)
    assert run("contacts", "import", "c.csv") == (
        0,
        "imported 2 contact(s): 2 created, 0 updated, 0 unchanged; 0 error(s)\n",
        "c.csv:2: warning: column our_contact: 'anna' is not a known associate (see reconcile associates import); "
        "imported anyway (warned once per name)\n",
    )
    write(tmp_path, "bad.csv", "email,score\na@x.example,1\nb@x.example,x\n")
    code, out, err = run("contacts", "import", "bad.csv")
    assert (code, out) == (1, "")
    assert err == (
        "bad.csv:3: column score: invalid number 'x': use digits with a dot as the decimal separator\n"
        "Error: 1 error(s) in bad.csv; nothing was imported\n"
    )
    code, out, err = run("contacts", "import", "--skip-invalid", "bad.csv")
    assert code == 0 and out == "imported 1 contact(s): 1 created, 0 updated, 0 unchanged; 1 error(s)\n"
    assert err.startswith("bad.csv:3: warning: column score")
    write(tmp_path, "latin.csv", b"email\nb\xe4@x.example\n")
    assert run("contacts", "import", "latin.csv") == (
        1,
        "",
        "Error: latin.csv:2: not UTF-8 text (byte 0xe4 at column 2); save the file as UTF-8\n",
    )
    code, _, err = run("contacts", "import", "missing.csv")
    assert code == 1 and "does not exist" in err and "Traceback" not in err
    assert count(cli_store, tables.contacts) == 3


def test_cli_associates_selections_and_events(run: Run, tmp_path: Path, cli_store: Store) -> None:
    write(tmp_path, "a.csv", "name,email\nanna,anna@acme.example\n")
    assert run("associates", "import", "a.csv")[:2] == (
        0,
        "imported 1 associate(s): 1 created, 0 updated, 0 unchanged; 0 error(s)\n",
    )
    write(tmp_path, "c.csv", "email,our_contact\na@x.example,anna\nb@x.example,anna\n")
    assert run("contacts", "import", "c.csv")[0] == 0
    assert run("selections", "add", "vip", "a@x.example", "b@x.example")[:2] == (
        0,
        "added 2 contact(s) to vip (0 already members)\n",
    )
    assert run("selections", "add", "vip", "a@x.example")[1] == "added 0 contact(s) to vip (1 already members)\n"
    assert run("selections", "add", "vip", "z@x.example") == (
        1,
        "",
        "Error: no contact with e-mail z@x.example; nothing was added to vip\n",
    )
    code, out, _ = run(
        "events", "emit", "form_submitted", "--email", "n@x.example", "--form", "webinar-signup",
        "--field", "first_name=Nils", "--field", "seats=2", "--key", "k-1", "--occurred-at", "2026-11-25T10:00:00+01:00",
    )  # fmt: skip
    assert (code, out) == (0, "recorded form_submitted for n@x.example (contact created)\n")
    code, out, _ = run(
        "events", "emit", "form_submitted", "--email", "n@x.example", "--form", "webinar-signup", "--key", "k-1"
    )
    assert (code, out) == (0, "skipped form_submitted for n@x.example: its idempotency key was already used\n")
    assert run(
        "events", "emit", "contact_updated", "--email", "a@x.example", "--field", "tier=2", "--field", "vip=true"
    )[1] == ("recorded contact_updated for a@x.example: changed custom.tier, custom.vip\n")
    assert contacts(cli_store, "a@x.example")["a@x.example"].custom == {"tier": 2, "vip": True}
    code, _, err = run("events", "emit", "sale_created", "--email", "a@x.example", "--form", "x")
    assert (code, err) == (1, "Error: invalid event: form: not allowed for sale_created\n")
    code, _, err = run("events", "emit", "nope", "--email", "a@x.example")
    assert code == 1 and "'nope' is not one of" in err
    code, _, err = run("events", "emit", "sale_created", "--email", "a@x.example", "--field", "title")
    assert code == 1 and "'title' is not KEY=VALUE" in err
    jsonl(tmp_path, [{"type": "link_clicked", "email": "a@x.example", "link": "pricing-page"}, "oops"], "e.jsonl")
    assert run("events", "ingest", "e.jsonl") == (
        1,
        "",
        "e.jsonl:2: invalid JSON: Expecting value (column 1)\nError: 1 error(s) in e.jsonl; nothing was ingested\n",
    )
    jsonl(tmp_path, [{"type": "link_clicked", "email": "a@x.example", "link": "pricing-page", "key": "c1"}], "f.jsonl")
    assert run("events", "ingest", "f.jsonl")[:2] == (
        0,
        "ingested 1 event(s) from f.jsonl: 1 recorded, 0 duplicate key(s) skipped, 0 without effect; 0 contact(s) created\n",
    )
    types = [e.type for e in all_events(cli_store)]
    assert types == ["added_to_selection"] * 2 + [
        "contact_created",
        "form_submitted",
        "contact_updated",
        "link_clicked",
    ]


def test_examples_load_and_fire(run: Run, cli_store: Store) -> None:
    """The sample data of ``make demo`` imports cleanly and every event applies."""
    assert run("associates", "import", str(ROOT / "examples" / "associates.csv"))[0] == 0
    code, out, err = run("contacts", "import", str(ROOT / "examples" / "contacts.csv"))
    assert (code, err) == (0, ""), err
    assert out.startswith("imported ") and "0 error(s)" in out
    code, out, err = run("events", "ingest", str(ROOT / "examples" / "events.jsonl"))
    assert code == 0, err
    assert " 0 duplicate key(s)" in out
