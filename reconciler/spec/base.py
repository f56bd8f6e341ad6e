"""The base of every spec model: frozen, unknown keys are errors, numbers are finite.

Finite: YAML can say ``.nan`` and ``.inf``, SQLite would store them and PostgreSQL's JSON
refuses them — a spec that applies on one backend must apply on every one.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


class SpecModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        str_strip_whitespace=False,
        validate_default=False,
        allow_inf_nan=False,
    )

    @model_validator(mode="before")
    @classmethod
    def _finite_numbers(cls, data: Any) -> Any:
        """One clear message for ``.nan``/``.inf`` (else every member of a union says its own)."""
        if isinstance(data, dict):
            for key, value in data.items():
                for item in value if isinstance(value, list) else (value,):
                    if isinstance(item, float) and not math.isfinite(item):
                        raise ValueError(f"{key}: {item!r} is not a finite number (.nan and .inf cannot be stored)")
        return data
