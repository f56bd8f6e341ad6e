"""Merge fields at validate time: the names a spec's templates may use, and the check.

The language itself (what a template may say) is ``reconciler.templating``; this
module gives it the names we will have when rendering — ``contact.*`` and
``company.*`` from ``spec.fields`` (with ``custom.<anything>`` below each),
``flow.*``, and ``unsubscribe_url`` in e-mail — so ``validate`` and the renderer
(which checks again before it compiles) agree on every template.
"""

from __future__ import annotations

from functools import lru_cache

from reconciler.spec.fields import COMPANY_FIELDS, CONTACT_FIELDS, FLOW_VARIABLES
from reconciler.templating import Names, check, has_template

__all__ = ["EMAIL_NAMES", "TEXT_NAMES", "has_template", "names_for", "template_problems"]

TEXT_NAMES = Names(
    fields={
        "contact": frozenset(CONTACT_FIELDS) | {"custom"},
        "company": frozenset(COMPANY_FIELDS) | {"custom"},
        "flow": FLOW_VARIABLES,
    },
    groups=frozenset({"contact.custom", "company.custom"}),
)
EMAIL_NAMES = TEXT_NAMES.with_variables("unsubscribe_url")  # subject and content of an e-mail to the contact


def names_for(*, email: bool) -> Names:
    return EMAIL_NAMES if email else TEXT_NAMES


@lru_cache(maxsize=8192)
def template_problems(text: str, email: bool = False) -> tuple[tuple[int, str], ...]:
    """(line within the text, message) for every violation of the merge-field
    language; empty when fine."""
    if not has_template(text):
        return ()
    return tuple((v.line, v.message) for v in check(text, names_for(email=email)))
