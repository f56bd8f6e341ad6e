"""Semantic checks, through ``validate`` on files, with their locations."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from reconciler.errors import Severity
from reconciler.spec import Flow, start_blockers, validate
from tests.conftest import flow_doc

EMAIL = {"sender": {"address": "news@acme.example"}, "reply_to": "help@acme.example"}


def _found(repo: Path, scripts: frozenset[str] | None = frozenset()) -> list[str]:
    return [str(d) for d in validate([repo / "specs"], scripts).sorted_diagnostics()]


def test_clean_flow_has_no_findings(repo: Path, write_spec: Callable[..., Path]) -> None:
    write_spec("a.yaml", flow_doc("a"))
    assert _found(repo) == []


def test_duplicate_flow_names_across_files_point_at_the_first(repo: Path, write_spec: Callable[..., Path]) -> None:
    write_spec("a.yaml", flow_doc("same"))
    write_spec("b.yaml", flow_doc("same"))
    (finding,) = _found(repo)
    assert finding.startswith("specs/b.yaml:") or "b.yaml:" in finding
    assert "flow 'same' is already defined at" in finding and "a.yaml:" in finding


def test_duplicate_step_ids(repo: Path, write_spec: Callable[..., Path]) -> None:
    write_spec(
        "a.yaml",
        """\
        apiVersion: reconciler/v1
        kind: Flow
        metadata: {name: a}
        spec:
          triggers: [{type: manual}]
          steps:
            - {id: x, type: wait, duration: 1d}
            - {id: x, type: finish}
        """,
    )
    (finding,) = _found(repo)
    assert ":8:" in finding and "step id 'x' is already used by step 1" in finding


def test_missing_targets(repo: Path, write_spec: Callable[..., Path]) -> None:
    steps = [
        {"id": "a", "type": "wait", "duration": "1d", "next": "ghost"},
        {
            "id": "b",
            "type": "split",
            "branches": [{"name": "x", "when": {"field": "city", "value": "y"}, "next": "phantom"}],
        },
        {"id": "c", "type": "finish"},
    ]
    write_spec("a.yaml", flow_doc("a", steps=steps))
    found = "\n".join(_found(repo))
    assert "no step with id 'ghost'" in found and "no step with id 'phantom'" in found


def test_unreachable_step_is_a_warning(repo: Path, write_spec: Callable[..., Path]) -> None:
    steps = [
        {"id": "a", "type": "wait", "duration": "1d", "next": "c"},
        {"id": "b", "type": "wait", "duration": "1d"},
        {"id": "c", "type": "finish"},
    ]
    write_spec("a.yaml", flow_doc("a", steps=steps))
    specs = validate([repo / "specs"], frozenset())
    (finding,) = specs.diagnostics
    assert finding.severity is Severity.WARNING and "'b' can never be reached" in finding.message
    assert not specs.errors


def test_loop_without_wait_is_an_error_and_with_wait_is_fine(repo: Path, write_spec: Callable[..., Path]) -> None:
    loop = [
        {"id": "tag", "type": "update_contact", "updates": [{"field": "score", "action": "increase", "value": 1}]},
        {
            "id": "route",
            "type": "split",
            "branches": [{"name": "again", "when": {"field": "score", "op": "lt", "value": 10}, "next": "tag"}],
        },
        {"id": "done", "type": "finish"},
    ]
    write_spec("a.yaml", flow_doc("a", steps=loop))
    waited = [loop[0], {"id": "rest", "type": "wait", "duration": "1d"}, *loop[1:]]
    write_spec("b.yaml", flow_doc("b", steps=waited))
    (finding,) = _found(repo)
    assert "a.yaml" in finding and "loop without a wait" in finding and "tag → route → tag" in finding


def test_merge_fields(repo: Path, write_spec: Callable[..., Path]) -> None:
    steps = [
        {
            "id": "n",
            "type": "notify_email",
            "to": "a@acme.example",
            "subject": "{{ contact.frist_name }}",
            "message": "{{ unsubscribe_url }}",
        },
        {"id": "s", "type": "send_sms", "text": "Hi {{ contact.first_name", "sender": "ACME"},
        {
            "id": "u",
            "type": "update_contact",
            "updates": [{"field": "title", "action": "set", "value": "{{ flow.name }} {{ company.nme }}"}],
        },
        {"id": "done", "type": "finish"},
    ]
    write_spec("a.yaml", flow_doc("a", steps=steps))
    found = "\n".join(_found(repo))
    assert "unknown merge field 'contact.frist_name'" in found
    assert "unknown merge field 'unsubscribe_url'" in found  # only e-mail content has it
    assert "merge field syntax error" in found
    assert "unknown merge field 'company.nme'" in found
    assert "flow.name" not in found


def _email_flow(content: str, **extra: object) -> dict[str, object]:
    step = {"id": "mail", "type": "send_email", "subject": "Hi", "content": content, **extra}
    return flow_doc("a", steps=[step, {"id": "done", "type": "finish"}], settings={"email": EMAIL})


def test_content_files_are_checked_for_merge_fields(repo: Path, write_spec: Callable[..., Path]) -> None:
    (repo / "specs" / "content").mkdir()
    (repo / "specs" / "content" / "m.html").write_text("<p>Hi</p>\n<p>{{ contact.nope }}</p>\n")
    write_spec("a.yaml", _email_flow("content/m.html"))
    (finding,) = _found(repo)
    assert finding.startswith(str(Path("specs/content/m.html"))) or "content/m.html:2:1" in finding
    assert "contact.nope" in finding


def test_files_must_exist_and_stay_inside_the_repo(repo: Path, write_spec: Callable[..., Path]) -> None:
    outside = repo.parent / "outside.html"
    outside.write_text("secret")
    (repo / "specs" / "link.html").symlink_to(outside)
    write_spec("a.yaml", _email_flow("../../outside.html", attachments=["missing.pdf", "link.html", "/etc/passwd"]))
    found = "\n".join(_found(repo))
    assert "'../../outside.html' points outside the spec repository" in found
    assert "'missing.pdf' does not exist" in found
    assert "'link.html' points outside the spec repository" in found
    assert "'/etc/passwd' must be a path relative to the spec file" in found


def test_attachments_over_25_mb(repo: Path, write_spec: Callable[..., Path]) -> None:
    (repo / "specs" / "c.html").write_text("hi")
    for name in ("a.bin", "b.bin"):
        with (repo / "specs" / name).open("wb") as handle:
            handle.truncate(13 * 1024 * 1024)
    write_spec("a.yaml", _email_flow("c.html", attachments=["a.bin", "b.bin"]))
    (finding,) = _found(repo)
    assert "attachments total 26.0 MB; the limit is 25 MB" in finding


def test_scripts_must_be_registered(repo: Path, write_spec: Callable[..., Path]) -> None:
    steps = [{"id": "s", "type": "run_script", "script": "score-lead"}, {"id": "done", "type": "finish"}]
    write_spec("a.yaml", flow_doc("a", steps=steps))
    (finding,) = _found(repo, frozenset({"other"}))
    assert "script 'score-lead' is not registered (registered: other)" in finding
    assert _found(repo, frozenset({"score-lead"})) == []
    assert _found(repo, None) == []  # no registry given: not checked


def test_start_readiness(repo: Path, write_spec: Callable[..., Path]) -> None:
    steps = [
        {"id": "mail", "type": "send_email", "subject": "Hi", "content": "c.html"},
        {"id": "sms", "type": "send_sms", "text": "Hi"},
        {"id": "done", "type": "finish"},
    ]
    (repo / "specs" / "c.html").write_text("hi")
    write_spec("run.yaml", flow_doc("run", steps=steps, status="running"))
    write_spec("pause.yaml", flow_doc("pause", steps=steps, status="paused"))
    specs = validate([repo / "specs"], frozenset())
    errors = [d for d in specs.diagnostics if d.is_error]
    warnings = [d for d in specs.diagnostics if not d.is_error]
    assert {d.location.file for d in errors} == {str(Path("specs/run.yaml"))} or all(
        "run.yaml" in d.location.file for d in errors
    )
    assert len(errors) == 3 and all(d.message.startswith("cannot run:") for d in errors)
    assert len(warnings) == 3 and all(d.message.startswith("cannot start yet:") for d in warnings)
    ready = Flow.model_validate(flow_doc("ok", steps=steps, settings={"email": EMAIL, "sms": {"sender": "ACME"}}))
    assert start_blockers(ready) == []


def test_flow_references(repo: Path, write_spec: Callable[..., Path]) -> None:
    steps = [
        {
            "id": "w",
            "type": "wait_for_action",
            "actions": [{"link_clicked": "x"}],
            "on_timeout": "exit",
            "after_exit": {"add_to_flow": "ghost"},
        },
        {"id": "done", "type": "finish", "on_success": {"add_to_flow": "b"}},
    ]
    write_spec("a.yaml", flow_doc("a", steps=steps, settings={"remove_from_flows": ["a", "b", "nowhere"]}))
    write_spec("b.yaml", flow_doc("b"))
    found = "\n".join(_found(repo))
    assert "cannot remove its participants from itself" in found
    assert "flow 'nowhere' is not among the specs read" in found
    assert "flow 'ghost' is not among the specs read" in found
    assert "'b' is not among" not in found


def test_link_condition_must_name_an_email_step(repo: Path, write_spec: Callable[..., Path]) -> None:
    steps = [
        {
            "id": "route",
            "type": "split",
            "based_on": "link_clicked",
            "branches": [{"name": "x", "when": {"link": "agenda", "email": "done"}}],
        },
        {"id": "done", "type": "finish"},
    ]
    write_spec("a.yaml", flow_doc("a", steps=steps))
    (finding,) = _found(repo)
    assert "'done' is not a send_email step of this flow" in finding


def test_flow_level_warnings_and_errors(repo: Path, write_spec: Callable[..., Path]) -> None:
    steps = [{"id": "w", "type": "wait", "until": "2026-12-01T09:00:00"}, {"id": "done", "type": "finish"}]
    write_spec(
        "a.yaml", flow_doc("a", steps=steps, triggers=[], settings={"sending_window": {"from": "08:00", "to": "17:00"}})
    )
    found = "\n".join(_found(repo))
    assert "error: a sending_window needs spec.timezone" in found
    assert "warning: no triggers" in found
    assert "warning: 'until' has no offset" in found


def test_replaces_names_removed_steps_once(repo: Path, write_spec: Callable[..., Path]) -> None:
    steps = [
        {"id": "a", "type": "wait", "duration": "1d", "replaces": ["old", "a"]},
        {"id": "b", "type": "finish", "replaces": ["old"]},
    ]
    write_spec("a.yaml", flow_doc("a", steps=steps))
    found = "\n".join(_found(repo))
    assert "step 'a' still exists" in found
    assert "step 'old' is already replaced by step 'a'" in found


def test_long_sms_texts_say_how_many_segments(repo: Path, write_spec: Callable[..., Path]) -> None:
    steps = [
        {"id": "s", "type": "send_sms", "sender": "ACME", "text": "Hej {{ contact.first_name }}! " + "x" * 170},
        {"id": "n", "type": "notify_sms", "to": "our_contact", "sender": "ACME", "text": "Ny lead ’ " + "y" * 70},
        {"id": "done", "type": "finish"},
    ]
    write_spec("a.yaml", flow_doc("a", steps=steps))
    found = _found(repo)
    assert len(found) == 2
    assert "warning: SMS text is about 2 segments, GSM-7" in found[0]
    assert "2 segments, UCS-2" in found[1] and "because of '’'" in found[1]
