"""Numbers in a spec are finite: YAML's .nan and .inf are one located validate error each.

SQLite would store them and PostgreSQL's JSON refuses them, so a spec that passed
validate could apply on one backend and fail on the other; anything valid applies on both.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from reconciler.apply import ApplyOptions, apply
from reconciler.clock import ManualClock
from reconciler.spec.bundle import bundle_document
from reconciler.state import Store
from tests.conftest import flow_doc, invoke_cli

SPEC = """\
apiVersion: reconciler/v1
kind: Flow
metadata: {name: f}
spec:
  triggers: [{type: manual}]
  enrollment: {filter: {field: score, op: gt, value: VALUE}}
  steps:
    - {id: u, type: update_contact, updates: [{field: score, action: set, value: VALUE}]}
    - {id: s, type: create_sale, title: x, sale_type: y, amount: VALUE}
    - {id: done, type: finish}
"""


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", ".NaN", "+.Inf"])
def test_non_finite_numbers_are_one_located_error_each(
    repo: Path, write_spec: Callable[..., Path], value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_spec("f.yaml", SPEC.replace("VALUE", value))
    monkeypatch.chdir(repo)
    code, out, err = invoke_cli("validate", "specs")
    lines = [line for line in (out + err).splitlines() if ": error: " in line]
    assert code == 1
    assert [line.split(": error: ")[0] for line in lines] == [
        "specs/f.yaml:6:32",
        "specs/f.yaml:8:47",
        "specs/f.yaml:9:7",
    ]
    assert all("is not a finite number" in line for line in lines), lines
    assert "Traceback" not in out + err


def test_large_finite_numbers_apply_on_every_backend(store: Store) -> None:
    steps = [
        {"id": "u", "type": "update_contact", "updates": [{"field": "score", "action": "set", "value": 1e308}]},
        {"id": "v", "type": "update_contact", "updates": [{"field": "score", "action": "increase", "value": -0.0}]},
        {"id": "done", "type": "finish"},
    ]
    document = flow_doc("f", steps=steps, enrollment={"filter": {"field": "score", "op": "lt", "value": -1e-300}})
    result = apply(
        store,
        [bundle_document(document, {})],
        clock=ManualClock(),
        options=ApplyOptions(actor="t", lock_wait=timedelta(0)),
    )
    assert result.applied and not result.blocked
    stored = store.flow("f")
    assert stored is not None and stored.spec["spec"]["steps"][0]["updates"][0]["value"] == 1e308


@pytest.mark.parametrize(
    "args",
    [
        ("apply", "--lock-timeout", "nan"),
        ("apply", "--lock-timeout", "inf"),
        ("run", "--interval", "nan"),
        ("run", "--once", "--script-timeout", "inf"),
        ("watch", "--interval", "nan"),
        ("watch", "--drift-interval", "inf"),
        ("watch", "--run-interval", "-inf"),
    ],
)
def test_float_options_refuse_non_finite_numbers(args: tuple[str, ...]) -> None:
    code, out, err = invoke_cli(*args)
    assert code == 1, out + err
    assert "is not a finite number" in err or "is not in the range" in err, err
    assert "Traceback" not in out + err
