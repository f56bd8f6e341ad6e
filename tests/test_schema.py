"""The generated JSON Schema: fresh, and usable by editors and other tools."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from reconciler.spec.schema import flow_schema, flow_schema_json
from tests.conftest import flow_doc

ROOT = Path(__file__).resolve().parent.parent
CHECKED_IN = ROOT / "schemas" / "flow.schema.json"


def test_checked_in_schema_is_fresh() -> None:
    assert CHECKED_IN.read_text() == flow_schema_json(), "schemas/flow.schema.json is stale: run `make schema`"


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(flow_schema())


def test_schema_accepts_valid_and_rejects_unknown_keys() -> None:
    validator = jsonschema.Draft202012Validator(flow_schema())
    validator.validate(
        flow_doc(
            steps=[
                {"id": "w", "type": "wait", "duration": "2d"},
                {"id": "s", "type": "split", "branches": [{"name": "a", "when": {"field": "city", "value": "x"}}]},
                {"id": "done", "type": "finish"},
            ]
        )
    )
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**flow_doc(), "surprise": 1})
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(flow_doc(steps=[{"id": "w", "type": "wait", "duration": "two days"}]))


def test_example_specs_name_the_schema() -> None:
    for spec in sorted((ROOT / "specs").glob("*.yaml")):
        first = spec.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=../schemas/flow.schema.json", spec
    assert json.loads(CHECKED_IN.read_text())["$id"]


def test_schema_accepts_the_shorthands_the_models_accept() -> None:
    validator = jsonschema.Draft202012Validator(flow_schema(), format_checker=jsonschema.FormatChecker())
    validator.validate(
        flow_doc(
            settings={"email": {"sender": "news@acme.example", "reply_to": "sender"}},
            steps=[{"id": "w", "type": "wait", "until": "2026-12-01T09:00"}, {"id": "done", "type": "finish"}],
        )
    )
    validator.validate(flow_doc(settings={"email": {"reply_to": "help@acme.example"}}))
