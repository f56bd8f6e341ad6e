"""Any valid flow → YAML → load gives the same flow back (hypothesis)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from reconciler.spec.loader import SpecSet, load_text
from reconciler.spec.models import Flow

names = st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True)
labels = (
    st.text(st.characters(codec="utf-8", categories=("L", "N", "Zs", "Pd")), min_size=1, max_size=20)
    .map(str.strip)
    .filter(bool)
)
texts = st.text(
    st.characters(codec="utf-8", exclude_characters="{}%#\x00", exclude_categories=("Cs", "Cc")),
    min_size=1,
    max_size=60,
).filter(lambda s: s.strip() != "")
durations = st.builds(lambda d, h, m: f"{d}d{h}h{m}m", st.integers(0, 30), st.integers(0, 23), st.integers(1, 59))
field_values = st.one_of(st.integers(-1000, 1000), labels, st.booleans())


def _steps(ids: list[str]) -> st.SearchStrategy[list[dict[str, Any]]]:
    later = st.sampled_from(ids)
    step = st.one_of(
        st.builds(lambda s, c: {"type": "send_email", "subject": s, "content": c}, texts, st.just("c.html")),
        st.builds(
            lambda t, m: {"type": "send_sms", "text": t, "on_missing_mobile": m},
            texts,
            st.sampled_from(["skip", "exit"]),
        ),
        st.builds(
            lambda v: {"type": "update_contact", "updates": [{"field": "score", "action": "increase", "value": v}]},
            st.integers(1, 100),
        ),
        st.builds(lambda s: {"type": "add_to_selection", "selection": s}, labels),
        st.builds(lambda p: {"type": "remove_from_selection", "project": p}, labels),
        st.builds(
            lambda a: {"type": "distribute_to_owner", "associates": sorted(set(a))},
            st.lists(labels, min_size=1, max_size=3),
        ),
        st.builds(
            lambda t, d: {"type": "create_follow_up", "title": t, "follow_up_type": "phone", "due": {"in": d}},
            texts,
            durations,
        ),
        st.builds(
            lambda t: {"type": "create_request", "title": t, "request_type": "sales", "owner": "unassigned"}, texts
        ),
        st.builds(
            lambda t, a: {"type": "create_sale", "title": t, "sale_type": "new", "amount": a},
            texts,
            st.integers(0, 10**6),
        ),
        st.just({"type": "run_script", "script": "score-lead"}),
        st.builds(
            lambda s, m: {"type": "notify_email", "to": "sales@acme.example", "subject": s, "message": m}, texts, texts
        ),
        st.builds(lambda t: {"type": "notify_sms", "to": "our_contact", "text": t}, texts),
        st.builds(
            lambda d, n: {"type": "wait", "duration": d, **({"next": n} if n else {})}, durations, st.none() | later
        ),
        st.builds(
            lambda link, t: {"type": "wait_for_action", "actions": [{"link_clicked": link}], "timeout": t},
            labels,
            durations | st.just("never"),
        ),
        st.builds(
            lambda v, n: {
                "type": "split",
                "branches": [
                    {
                        "name": "one",
                        "when": {"field": "city", "op": "equals", "value": v},
                        **({"next": n} if n else {}),
                    },
                    {"name": "everyone_else"},
                ],
            },
            field_values.filter(lambda v: not isinstance(v, bool)),
            st.none() | later,
        ),
        st.just({"type": "finish"}),
    )
    return st.lists(step, min_size=len(ids), max_size=len(ids)).map(
        lambda steps: [{"id": i, **s} for i, s in zip(ids, steps, strict=True)]
    )


@st.composite
def flows(draw: st.DrawFn) -> dict[str, Any]:
    ids = draw(st.lists(names, min_size=1, max_size=8, unique=True))
    spec: dict[str, Any] = {
        "status": draw(st.sampled_from(["running", "paused", "not_running"])),
        "steps": draw(_steps(ids)),
        "triggers": draw(
            st.lists(
                st.one_of(
                    st.builds(lambda f: {"type": "form_submitted", "form": f}, labels),
                    st.builds(lambda s: {"type": "added_to_selection", "selection": s}, labels),
                    st.sampled_from(
                        [{"type": t} for t in ("contact_created", "sale_sold", "manual", "request_created")]
                    ),
                ),
                max_size=3,
            )
        ),
        "enrollment": {"once_only": draw(st.booleans())},
    }
    if draw(st.booleans()):
        spec["timezone"] = draw(st.sampled_from(["Europe/Stockholm", "UTC", "America/New_York"]))
        spec["settings"] = {
            "sending_window": {"from": "08:00", "to": "17:30"},
            "email": {"sender": {"address": "news@acme.example", "name": draw(labels)}, "reply_to": "sender"},
        }
    return {"apiVersion": "reconciler/v1", "kind": "Flow", "metadata": {"name": draw(names)}, "spec": spec}


def _dump(document: dict[str, Any]) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue()


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(flows())
def test_valid_model_round_trips_through_yaml(document: dict[str, Any]) -> None:
    flow = Flow.model_validate(document)
    specs = SpecSet()
    load_text(specs, _dump(flow.to_document()), "flow.yaml", Path.cwd())
    assert specs.diagnostics == []
    (loaded,) = specs.flows
    assert loaded.flow == flow
    assert loaded.flow.to_document() == flow.to_document()
