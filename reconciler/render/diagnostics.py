"""Validation findings as compiler-style lines or as JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence

from reconciler.errors import Diagnostic


def diagnostics_text(diagnostics: Sequence[Diagnostic], flow_count: int) -> str:
    lines = [str(d) for d in diagnostics]
    errors = sum(1 for d in diagnostics if d.is_error)
    warnings = len(diagnostics) - errors
    if errors:
        lines.append(f"{errors} error(s), {warnings} warning(s) in {flow_count} valid flow(s) read")
    else:
        lines.append(f"{flow_count} flow(s) valid" + (f", {warnings} warning(s)" if warnings else ""))
    return "\n".join(lines)


def diagnostics_json(diagnostics: Sequence[Diagnostic], flow_count: int) -> str:
    return json.dumps(
        {
            "valid": not any(d.is_error for d in diagnostics),
            "flows": flow_count,
            "diagnostics": [
                {
                    "file": d.location.file,
                    "line": d.location.line,
                    "col": d.location.col,
                    "severity": d.severity.value,
                    "message": d.message,
                }
                for d in diagnostics
            ],
        },
        indent=2,
    )
