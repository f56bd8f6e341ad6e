"""The merge-field language (``check``), the one empty-value rule, the sandbox and the
render budget — on plain data, without specs or a database."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.templating import (
    CRM_TEXT,
    EMAIL_BODY,
    SMS_TEXT,
    SUBJECT,
    Budget,
    BudgetExceeded,
    MergeTemplate,
    Names,
    RenderError,
    check,
    compile_template,
    has_no_value,
    merge_context,
    render,
    render_text,
    renderer,
)
from reconciler.templating.filters import MAX_FILTER_RESULT

NAMES = Names(
    fields={
        "contact": frozenset({"first_name", "last_name", "email", "country", "score", "birth_date", "interests"})
        | {"custom", "company"},
        "company": frozenset({"name", "city", "custom"}),
        "flow": frozenset({"name", "description", "owner"}),
    },
    groups=frozenset({"contact.custom", "company.custom"}),
)
EMAIL = NAMES.with_variables("unsubscribe_url")
CONTACT: dict[str, Any] = {
    "first_name": "Åsa",
    "last_name": None,
    "email": "asa@example.org",
    "country": "SE",
    "score": 7,
    "birth_date": date(1990, 3, 9),
    "interests": ["golf", "jazz"],
    "company": "Kund AB",
    "custom": {"tier": "gold", "blank": "  ", "empty": []},
}


def fill(source: str, contact: dict[str, Any] | None = None, *, budget: Budget = CRM_TEXT, **context: Any) -> str:
    return render(compile_template(source, EMAIL), merge_context(contact=contact or CONTACT, **context), budget)


def messages(source: str, names: Names = NAMES) -> list[str]:
    return [v.message for v in check(source, names)]


# --- the language -----------------------------------------------------------------------------

ALLOWED = [
    "Plain text, no merge fields",
    "Hej {{ contact.first_name }}!",
    "{{ contact['first_name'] }} {{ contact.custom.tier }} {{ contact.custom['any name'] }} {{ company.custom.x }}",
    "{{ contact.first_name | default('there') | title }} {{ contact.first_name | d('x', true) }}",
    "{{ contact.first_name | upper | lower | capitalize | trim | truncate(10, end='…') }}",
    "{{ contact.email | replace('@', ' at ') | urlencode }} {{ contact.interests | join(' / ') | length }}",
    "{{ contact.birth_date | date('%-d %B %Y, %A %H:%M %%') }}",
    "{% if contact.first_name %}x{% elif contact.score > 3 and not contact.score >= 9 %}y{% else %}z{% endif %}",
    "{% if contact.country in ['SE', 'NO'] or contact.country != 'DK' %}{{ 'a' ~ contact.country ~ 1 }}{% endif %}",
    "{% if contact.last_name is defined or contact.last_name is undefined or contact.last_name is none %}{% endif %}",
    "{{ 'yes' if contact.score < 5 else 'no' }} {{ -1 }} {{ 2.5 }} {{ none }} {{ true }}",
    "{# a comment #}{% raw %}{{ not a field }}{% endraw %}{{- contact.email -}}",
]


@pytest.mark.parametrize("source", ALLOWED)
def test_the_language_allows(source: str) -> None:
    assert check(source, NAMES) == ()


FORBIDDEN = {
    "{{ 'x' * 1000000000 }}": "arithmetic ('*') is not allowed in merge fields",
    "{{ contact.first_name * 300000000 }}": "arithmetic ('*') is not allowed in merge fields",
    "{{ contact.score + 1 }}": "arithmetic ('+')",
    "{{ contact.score - 1 }}": "arithmetic ('-')",
    "{{ contact.score / 2 }}": "arithmetic ('/')",
    "{{ contact.score // 2 }}": "arithmetic ('//')",
    "{{ contact.score % 2 }}": "arithmetic ('%')",
    "{{ 2 ** 64 }}": "arithmetic ('**')",
    "{{ -contact.score }}": "arithmetic ('-')",
    "{% for x in [] %}{% endfor %}": "{% for %} is not allowed in merge fields: merge fields have no loops",
    "{% set range = range %}": "{% set %} is not allowed in merge fields: merge fields cannot name values",
    "{% set x %}a{% endset %}": "{% set %} is not allowed",
    "{% macro m() %}{% endmacro %}": "{% macro %} is not allowed",
    "{% call x() %}{% endcall %}": "{% call %} is not allowed",
    "{% filter upper %}x{% endfilter %}": "{% filter %} is not allowed",
    "{% with a = 1 %}{% endwith %}": "{% with %} is not allowed",
    "{% include 'x.html' %}": "{% include %} is not allowed",
    "{% import 'x.html' as x %}": "{% import %} is not allowed",
    "{% from 'x.html' import y %}": "{% from … import %} is not allowed",
    "{% extends 'x.html' %}": "{% extends %} is not allowed",
    "{% block b %}{% endblock %}": "{% block %} is not allowed",
    "{% autoescape false %}{% endautoescape %}": "{% autoescape %} is not allowed",
    "{{ lipsum(n=200000) }}": "function calls are not allowed in merge fields (lipsum(…))",
    "{{ contact.first_name.upper() }}": "function calls are not allowed in merge fields",
    "{{ range }}": "'range' is not a merge field (merge fields have no functions or globals)",
    "{{ cycler }}{{ joiner }}{{ namespace }}{{ dict }}": "is not a merge field",
    "{{ customer }}": "unknown merge field 'customer'; use contact.*, company.*, flow.*",
    "{{ unsubscribe_url }}": "unknown merge field 'unsubscribe_url'",
    "{{ contact.frist_name }}": "unknown merge field 'contact.frist_name'; known: birth_date, company, country",
    "{{ contact }}": "contact is a group of fields; name one, e.g. contact.birth_date",
    "{{ contact.custom }}": "contact.custom is a group of fields; name one: contact.custom.<name>",
    "{{ contact.custom.a.b }}": "contact.custom.a is a value, it has no field 'b'",
    "{{ contact.first_name.length }}": "contact.first_name is a value, it has no field 'length'",
    "{{ contact.__class__ }}": "'contact.__class__': names starting with '_' are not allowed",
    "{{ contact.custom._secret }}": "names starting with '_' are not allowed",
    "{{ _self }}": "names starting with '_' are not allowed",
    "{{ contact[contact.email] }}": "a field is named with .name or ['name'] (a quoted name) only",
    "{{ contact.interests[0] }}": "a field is named with .name or ['name'] (a quoted name) only",
    "{{ (contact.email | lower).x }}": "only merge fields have fields",
    "{{ {'a': 1} }}": "a dict literal is not allowed",
    "{{ contact.first_name | safe }}": "unknown filter 'safe'; allowed: capitalize, d, date, default",
    "{{ contact.first_name | format('%s') }}": "unknown filter 'format'",
    "{{ contact.first_name is sameas x }}": "unknown test 'sameas'; allowed: defined, none, undefined",
    "{{ contact.first_name | default }}": "the filter 'default' needs an argument, e.g. default('there')",
    "{{ contact.first_name | upper(1) }}": "the filter 'upper' takes at most 0 argument(s)",
    "{{ contact.first_name | truncate(lenght=3) }}": "the filter 'truncate' has no argument 'lenght'",
    "{{ contact.first_name | truncate(3, length=3) }}": "has no argument 'length' (or it is given twice)",
    "{{ contact.first_name | truncate(contact.score) }}": "the 'length' of the filter 'truncate' must be written as a",
    "{{ contact.first_name | truncate(1000000) }}": "a number given to a filter may be at most 100,000",
    "{{ contact.first_name | replace('a', contact.email, -1000000) }}": "a number given to a filter may be at most",
    "{{ contact.first_name | default('" + "x" * 1001 + "') }}": "a text given to a filter may have at most 1000",
    "{{ contact.first_name | join(*x) }}": "the filter 'join' takes no *args or **kwargs",
    "{{ contact.birth_date | date('%Q') }}": "unknown date format %Q; use %Y %y %m %-m %d %-d %B %b %A %a %H %M %%",
    "{{ contact.birth_date | date('%Y %') }}": "a date format may not end with a lone %",
    "{{ 'x' if contact.email }}": "an inline 'if' needs an 'else'",
    "{{ contact.email is defined is defined }}": "",
    "{{ [" + ", ".join(["1"] * 101) + "] }}": "a list in a merge field may have at most 100 items",
    "{{ " + " ~ ".join(["contact.email"] * 201) + " }}": "merge field expression is too long (more than 200 parts)",
    "{{ contact.first_name ": "merge field syntax error: unexpected end of template",
    "{% do x %}": "merge field syntax error: Encountered unknown tag 'do'.",
    "{{ " + "(" * 500 + "1" + ")" * 500 + " }}": "",
    "{{ x[1:2] }}": "a field is named with .name or ['name']",
}


@pytest.mark.parametrize("source", FORBIDDEN)
def test_the_language_refuses(source: str) -> None:
    found = messages(source)
    if not FORBIDDEN[source]:  # refused somehow (a test of a test, very deep nesting): never an exception
        assert isinstance(found, list)
        return
    assert found, source
    assert any(FORBIDDEN[source] in m for m in found), found


def test_every_violation_is_reported_with_its_line() -> None:
    source = "Hej {{ contact.first_name }}\n{{ lipsum() }}\n\n{% for x in y %}{{ z }}{% endfor %}\n{{ a * 2 }}"
    assert [(v.line, v.message.split(" ")[0]) for v in check(source, NAMES)] == [
        (2, "function"),
        (4, "{%"),
        (5, "arithmetic"),
    ]


def test_the_issue_payloads_are_refused_whatever_binds_the_name() -> None:
    """Nothing can bind a name, so shadowing a global cannot get past the check."""
    assert messages("{% for lipsum in [] %}{% endfor %}{{ lipsum(n=200000) }}") == [
        "{% for %} is not allowed in merge fields: merge fields have no loops",
        "function calls are not allowed in merge fields (lipsum(…))",
    ]
    assert messages("{% set range = range %}{{ range(10) }}")[0].startswith("{% set %} is not allowed")
    nested = "{% for a in contact.first_name * 3000 %}{% for b in contact.first_name * 3000 %}{% endfor %}{% endfor %}"
    assert messages(nested) == ["{% for %} is not allowed in merge fields: merge fields have no loops"]


def test_plain_variables_have_no_fields() -> None:
    assert check("{{ unsubscribe_url }}", EMAIL) == ()
    assert messages("{{ unsubscribe_url.x }}", EMAIL) == ["unsubscribe_url is a value, it has no field 'x'"]


@given(st.text(alphabet=st.sampled_from(list("{}%#()[]|.~'\"*+-_ abcxyz01\n")), max_size=60))
def test_check_and_compile_never_crash(source: str) -> None:
    violations = check(source, NAMES)
    if violations:
        with pytest.raises(RenderError):
            compile_template(source, NAMES)
    else:
        compile_template(source, NAMES)


# --- one rule for empty values ----------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "   ", [], ()])
def test_a_field_without_a_value_cannot_be_printed(value: Any) -> None:
    assert has_no_value(value)
    with pytest.raises(RenderError, match=r"^contact.first_name has no value$"):
        fill("Hej {{ contact.first_name }}!", {"first_name": value})
    assert fill("Hej {{ contact.first_name | default('there') }}!", {"first_name": value}) == "Hej there!"
    assert fill("Hej {{ contact.first_name or 'du' }}!", {"first_name": value}) == "Hej du!"
    assert fill("{% if contact.first_name %}named{% else %}anonymous{% endif %}", {"first_name": value}) == "anonymous"
    assert fill("{{ contact.first_name is defined }} {{ contact.first_name is none }}", {"first_name": value}) == (
        "False True"
    )


def test_no_value_names_the_field_wherever_it_is() -> None:
    cases = {
        "{{ contact.last_name }}": "contact.last_name has no value",
        "{{ contact.custom.blank }}": "contact.custom.blank has no value",
        "{{ contact.custom.empty }}": "contact.custom.empty has no value",
        "{{ contact.custom.missing | upper }}": "contact.custom.missing has no value",
        "{{ company.city }}": "company.city has no value",
        "{{ company.custom.tier }}": "company.custom.tier has no value",
        "{{ flow.description }}": "flow.description has no value",
        "{{ unsubscribe_url }}": "unsubscribe_url has no value",
        "{{ 'Hej ' ~ contact.last_name }}": "contact.last_name has no value",
        "{% if contact.score > 3 %}{% endif %}{{ contact.last_name > 'a' }}": "contact.last_name has no value",
    }
    for source, message in cases.items():
        with pytest.raises(RenderError, match=f"^{message}$"):
            fill(source, company={"name": "Kund AB", "city": None, "custom": {}}, flow={"name": "f"})


def test_fields_without_a_value_compare_as_nothing() -> None:
    assert fill("{{ contact.last_name == 'x' }} {{ contact.last_name != 'x' }} {{ 'x' in contact.last_name }}") == (
        "False True False"
    )
    assert fill("{{ contact.last_name | length }} {{ contact.last_name | upper | default('-') }}") == "0 -"


def test_values_are_printed_as_people_read_them() -> None:
    assert fill("{{ contact.interests }}|{{ contact.score }}|{{ contact.birth_date }}") == "golf, jazz|7|1990-03-09"
    assert fill("{{ company.name }}") == "Kund AB"  # no company view given: the contact's company name
    context = merge_context(contact={}, unsubscribe_url=None)
    assert "unsubscribe_url" not in context


def test_html_escapes_values_but_not_the_template() -> None:
    template = compile_template("<p>{{ contact.first_name }}</p>", NAMES, html=True)
    out = render(template, merge_context(contact={"first_name": "<b>Bo & Co</b>"}), EMAIL_BODY)
    assert out == "<p>&lt;b&gt;Bo &amp; Co&lt;/b&gt;</p>"


# --- filters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ 'anna-lena svensson' | title }}", "Anna-Lena Svensson"),
        ("{{ 'ANNA' | capitalize }} {{ '  x  ' | trim }}|", "Anna x|"),
        ("{{ 'one two three four' | truncate(12) }}", "one two..."),
        ("{{ 'one two three four' | truncate(12, killwords=true, end='…') }}", "one two thr…"),
        ("{{ 'short' | truncate(12) }}|{{ 'abcdef' | truncate(2) }}", "short|ab"),
        ("{{ 'a-b-c' | replace('-', ' ') }}|{{ 'a-b-c' | replace('-', '', 1) }}", "a b c|ab-c"),
        ("{{ contact.interests | join }}|{{ contact.email | join('+') }}", "golf, jazz|asa@example.org"),
        ("{{ contact.interests | length }} {{ contact.email | length }} {{ contact.score | length }}", "2 15 1"),
        ("{{ 'a b&c/d' | urlencode }}", "a%20b%26c%2Fd"),
        ("{{ contact.birth_date | date('%-d %B %Y (%a %b, %y-%m-%d)') }}", "9 March 1990 (Fri Mar, 90-03-09)"),
        ("{{ '2026-01-05T09:07:00' | date('%A %H:%M %%') }}", "Monday 09:07 %"),
        ("{{ contact.score | default(1, true) }} {{ 0 | default(1, true) }} {{ 0 | default(1) }}", "7 1 0"),
    ],
)
def test_filters(source: str, expected: str) -> None:
    assert fill(source) == expected


def test_date_takes_dates_datetimes_and_iso_text() -> None:
    when = datetime(2026, 1, 5, 9, 7, tzinfo=UTC)
    assert fill("{{ contact.custom.when | date('%d/%m %H:%M') }}", {"custom": {"when": when}}) == "05/01 09:07"
    with pytest.raises(RenderError, match=r"^ValueError: the filter 'date' needs a date, not 'soon'$"):
        fill("{{ contact.custom.when | date('%Y') }}", {"custom": {"when": "soon"}})


def test_no_filter_can_make_a_huge_text() -> None:
    long = "a" * 2_000
    with pytest.raises(
        RenderError, match=f"^the filter 'replace' would make a text of more than {MAX_FILTER_RESULT:,}"
    ):
        fill("{{ contact.custom.x | replace('a', '" + "b" * 100 + "') }}", {"custom": {"x": long}})
    with pytest.raises(RenderError, match="the filter 'replace' needs a text to replace"):
        fill("{{ contact.custom.x | replace('', 'b') }}", {"custom": {"x": long}})
    with pytest.raises(RenderError, match="the filter 'join' would make a text of more than"):
        fill("{{ contact.custom.x | join('" + "-" * 1000 + "') }}", {"custom": {"x": ["a"] * 200}})


# --- the sandbox at run time (a template that never went through check) ---------------------


def unchecked(source: str) -> MergeTemplate:
    """Compiled straight by the sandbox, as if ``check`` had missed something."""
    return MergeTemplate(source, renderer._TEXT.from_string(source))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ 'x' * 1000000000 }}", "arithmetic ('*') is not allowed in merge fields"),
        ("{{ contact.score + 1 }}", "arithmetic ('+') is not allowed in merge fields"),
        ("{{ lipsum(n=200000) }}", "function calls are not allowed in merge fields"),
        ("{{ range(10) }}", "function calls are not allowed in merge fields"),
        ("{{ contact.email.upper() }}", "'upper' is not a merge field"),
        ("{{ contact.email.upper }}", "'upper' is not a merge field"),
        ("{{ contact.__class__ }}", "'__class__' is not a merge field"),
        ("{{ contact.custom._x }}", "'_x' is not a merge field"),
        ("{{ contact[0] }}", "0 is not a merge field"),
        ("{% for x in contact.interests %}{{ loop.cycle }}{% endfor %}", "'cycle' is not a merge field"),
    ],
)
def test_the_sandbox_refuses_at_run_time_too(source: str, message: str) -> None:
    with pytest.raises(RenderError, match=f"^{re.escape(message)}"):
        render(unchecked(source), merge_context(contact=CONTACT), CRM_TEXT)


def test_the_sandbox_has_no_globals() -> None:
    for name in ("range", "lipsum", "cycler", "joiner", "namespace", "dict"):
        with pytest.raises(RenderError, match=f"^{name} has no value$"):
            render(unchecked(f"{{{{ {name} }}}}"), merge_context(contact={}), CRM_TEXT)


def test_compile_refuses_what_check_refuses_listing_each_line() -> None:
    with pytest.raises(RenderError) as caught:
        compile_template("{{ 'x' * 9 }}\n{% set range = range %}", NAMES)
    assert caught.value.message == (
        "line 1: arithmetic ('*') is not allowed in merge fields; "
        "line 2: {% set %} is not allowed in merge fields: merge fields cannot name values"
    )
    with pytest.raises(RenderError, match=r"^line 1: merge field syntax error"):
        compile_template("{{ x", NAMES)


# --- the budget -------------------------------------------------------------------------------


def test_output_is_capped_while_it_streams() -> None:
    produced: list[Any] = []
    template = compile_template("{{ contact.first_name }}" * 1_000, NAMES)
    context = merge_context(contact={"first_name": "x" * 10})
    with pytest.raises(BudgetExceeded, match=r"^subject is longer than 998 characters$"):
        render(template, context, SUBJECT, on_value=lambda v: produced.append(v) or v)
    assert len(produced) == 100  # stopped at the chunk that broke the limit, not after all 1,000
    fits = compile_template("{{ contact.first_name }}" * 998, NAMES)
    assert len(render(fits, merge_context(contact={"first_name": "x"}), SUBJECT)) == 998
    with pytest.raises(BudgetExceeded, match=r"^SMS text is longer than 1,600 characters$"):
        render(template, context, SMS_TEXT)


def test_cpu_time_is_limited_per_render() -> None:
    ticks = itertools.count(0.0, 0.25)  # a quarter of a second of CPU per reading of the clock
    budget = CRM_TEXT.with_cpu(2.0, lambda: next(ticks))
    template = compile_template("{{ contact.first_name }}." * 100, NAMES)
    with pytest.raises(BudgetExceeded, match=r"^rendering the text took more than 2 s of CPU$"):
        render(template, merge_context(contact={"first_name": "x"}), budget)
    quick = CRM_TEXT.with_cpu(2.0, lambda: 0.0)
    assert render(template, merge_context(contact={"first_name": "x"}), quick) == "x." * 100


def test_a_short_render_over_its_time_fails_too() -> None:
    ticks = iter([0.0, 5.0])  # the start, and the end: too few chunks for a reading in between
    budget = CRM_TEXT.with_cpu(2.0, lambda: next(ticks))
    with pytest.raises(BudgetExceeded, match="took more than 2 s of CPU"):
        render(compile_template("Hi", NAMES), merge_context(contact={}), budget)


def test_render_text_compiles_once_and_remembers_refusals() -> None:
    context = merge_context(contact={"first_name": "Bo"})
    assert render_text("Call {{ contact.first_name }}", context, CRM_TEXT, NAMES) == "Call Bo"
    assert render_text("Call {{ contact.first_name }}", context, CRM_TEXT, NAMES) == "Call Bo"
    for _ in range(2):
        with pytest.raises(RenderError, match=r"^line 1: arithmetic"):
            render_text("{{ contact.first_name * 9 }}", context, CRM_TEXT, NAMES)
