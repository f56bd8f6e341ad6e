"""Merge fields: a small template language, and rendering that cannot hurt the sender.

``language`` says what a template may say (``check``: every violation with its line);
``context`` builds what templates see (``merge_context``: one rule for empty values);
``render`` compiles and renders in a narrowed sandbox, within a ``Budget``. See
``docs/merge-fields.md`` for the language as authors see it.

This package imports nothing of ``reconciler`` but ``reconciler.errors``: the names
of the fields come from the caller (``spec.templates`` passes those of ``spec.fields``).
"""

from reconciler.templating.budget import (
    CRM_TEXT,
    DEFAULT_CPU_SECONDS,
    EMAIL_BODY,
    SMS_TEXT,
    SUBJECT,
    Budget,
    BudgetExceeded,
    RenderError,
)
from reconciler.templating.context import Fields, MergeContext, has_no_value, merge_context
from reconciler.templating.language import Names, Violation, check, has_template
from reconciler.templating.renderer import MergeTemplate, compile_template, render, render_text

__all__ = [
    "CRM_TEXT",
    "DEFAULT_CPU_SECONDS",
    "EMAIL_BODY",
    "SMS_TEXT",
    "SUBJECT",
    "Budget",
    "BudgetExceeded",
    "Fields",
    "MergeContext",
    "MergeTemplate",
    "Names",
    "RenderError",
    "Violation",
    "check",
    "compile_template",
    "has_no_value",
    "has_template",
    "merge_context",
    "render",
    "render_text",
]
