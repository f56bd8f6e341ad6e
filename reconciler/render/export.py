"""Actual state back to spec YAML: how an existing flow is adopted into git."""

from __future__ import annotations

import copy
import io
from collections.abc import Sequence
from typing import Any

from ruamel.yaml import YAML

from reconciler.state.records import FlowRecord
from reconciler.statuses import FlowStatus

HEADER = "# yaml-language-server: $schema=../schemas/flow.schema.json\n"


def exported_document(record: FlowRecord) -> dict[str, Any]:
    """The stored spec with the flow's actual status (break-glass changes included)."""
    document = copy.deepcopy(record.spec)
    document.setdefault("spec", {})["status"] = record.status.value  # YAML writes plain strings only
    if record.status == FlowStatus.NOT_RUNNING:
        del document["spec"]["status"]  # the default, as export of a fresh spec would write it
    return document


def export_yaml(records: Sequence[FlowRecord], *, header: bool = False) -> str:
    yaml = YAML(typ="rt")
    yaml.default_flow_style = False
    yaml.width = 100
    yaml.indent(mapping=2, sequence=4, offset=2)
    out = io.StringIO()
    if header:
        out.write(HEADER)
    yaml.dump_all([exported_document(r) for r in records], out)
    return out.getvalue()
