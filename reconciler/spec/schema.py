"""The JSON Schema of a Flow document, generated from the models.

``schemas/flow.schema.json`` is this output checked in, for editors
(``# yaml-language-server: $schema=...``) and for review; a test keeps it fresh.
"""

from __future__ import annotations

import json
from typing import Any

from reconciler.spec.models import Flow

SCHEMA_ID = "https://reconciler.dev/schemas/flow.schema.json"


def flow_schema() -> dict[str, Any]:
    schema = Flow.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "reconciler Flow (apiVersion reconciler/v1)",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def flow_schema_json() -> str:
    return json.dumps(flow_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
