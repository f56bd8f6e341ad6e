"""The state commands end to end through the CLI: the external contract of DESIGN.md section 3."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import Run, invoke_cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def example_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example specs (with their content files) as a repo of its own."""
    shutil.copytree(ROOT / "specs", tmp_path / "specs")
    shutil.copy(ROOT / "reconciler.toml", tmp_path / "reconciler.toml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def run(example_repo: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.setenv("RECONCILER_DATABASE_URL", database_url)
    monkeypatch.setenv("RECONCILER_ACTOR", "ci-bot")

    return invoke_cli


def test_plan_json_contract_and_detailed_exit_codes(run: Run) -> None:
    code, out, _ = run("plan", "--json", "--detailed-exitcode")
    plan = json.loads(out)
    assert code == 2 and plan["format_version"] == "1"
    assert {c["flow"] for c in plan["changes"]} == {
        "customer-onboarding",
        "lead-scoring",
        "re-engagement",
        "webinar-follow-up",
    }
    for change in plan["changes"]:
        assert {"flow", "action", "blocked", "reason", "diff", "stages"} <= change.keys()
        assert change["action"] == "create" and change["blocked"] is False and change["reason"] is None
        assert all({"path", "before", "after"} <= d.keys() for d in change["diff"])
    assert plan["change_summary"]["create"] == 4 and plan["change_summary"]["blocked"] == 0

    assert run("apply")[0] == 0
    code, out, _ = run("plan", "--json", "--detailed-exitcode")
    assert code == 0 and {c["action"] for c in json.loads(out)["changes"]} == {"no-op"}
    assert run("plan", "--detailed-exitcode")[0] == 0


def test_apply_status_history_participants(run: Run, example_repo: Path) -> None:
    code, out, _ = run("apply")
    assert code == 0 and "Applied 4 change(s); 0 blocked." in out
    status = json.loads(run("status", "--json")[1])
    by_name = {f["name"]: f for f in status["flows"]}
    assert by_name["webinar-follow-up"]["status"] == "running" and by_name["lead-scoring"]["status"] == "paused"
    assert by_name["webinar-follow-up"]["revision"] == 1
    assert by_name["webinar-follow-up"]["participants"] == dict.fromkeys(
        ("queued", "active", "finished", "finished_with_success", "dropped_out", "cancelled", "failed"), 0
    )
    (rev,) = json.loads(run("history", "webinar-follow-up", "--json")[1])
    assert rev["revision"] == 1 and len(rev["content_hash"]) == 64 and rev["applied_at"]
    assert "git_commit" in rev
    assert json.loads(run("participants", "webinar-follow-up", "--json")[1]) == []

    # an edit to a content file alone is a change to the flow
    html = example_repo / "specs" / "content" / "lead-nurture.html"
    html.write_text(html.read_text().replace("</body>", "<p>P.S. New!</p></body>"))
    code, out, _ = run("plan")
    assert code == 0 and "files[content/lead-nurture.html]" in out
    assert run("apply")[0] == 0
    code, out, _ = run("history", "lead-scoring", "--diff", "1", "2")
    assert code == 0 and "files[content/lead-nurture.html]" in out
    assert run("history", "lead-scoring", "--diff", "1", "9")[0] == 1


def test_break_glass_shows_as_drift_and_apply_self_heal_heals(run: Run) -> None:
    run("apply")
    code, out, _ = run("flow", "pause", "webinar-follow-up")
    assert code == 0 and "running → paused" in out
    code, out, _ = run("drift", "--json", "--detailed-exitcode")
    drift = json.loads(out)
    assert code == 2 and drift["format_version"] == "1"
    assert drift["drifts"] == [
        {"flow": "webinar-follow-up", "kind": "status", "detail": drift["drifts"][0]["detail"], "kept": True}
    ]
    assert "ci-bot (break-glass)" in drift["drifts"][0]["detail"]
    code, out, _ = run("apply")  # the spec did not change: the pause is kept
    assert code == 0 and "kept paused" in out and "Applied 0 change(s)" in out
    code, out, _ = run("apply", "--self-heal")
    assert code == 0 and "resume" in out
    assert run("drift", "--detailed-exitcode")[0] == 0
    assert run("flow", "resume", "webinar-follow-up")[0] == 1  # already running


def test_drift_kinds_and_ignore_rules(run: Run, example_repo: Path) -> None:
    run("apply")
    (example_repo / "specs" / "re-engagement.yaml").unlink()
    code, out, _ = run("drift", "--json")
    kinds = {(d["flow"], d["kind"]) for d in json.loads(out)["drifts"]}
    assert kinds == {("re-engagement", "unmanaged")}
    config = example_repo / "reconciler.toml"
    config.write_text(config.read_text() + '\n[drift]\nignore = ["re-*:unmanaged"]\n')
    assert json.loads(run("drift", "--json")[1])["drifts"] == []
    config.write_text(config.read_text() + "\n[extra]\n")
    config.write_text(config.read_text().replace('["re-*:unmanaged"]', '["re-*:bogus"]'))
    code, _, err = run("drift")
    assert code == 1 and "drift ignore rule" in err


def test_export_round_trips_to_a_no_op(run: Run, example_repo: Path) -> None:
    run("apply")
    code, out, _ = run("export")
    assert code == 0 and out.count("apiVersion: reconciler/v1") == 4
    for spec in (example_repo / "specs").glob("*.yaml"):
        spec.unlink()
    (example_repo / "specs" / "exported.yaml").write_text(out)
    assert run("validate")[0] == 0
    assert run("plan", "--detailed-exitcode")[0] == 0


def test_prune_deletes_only_what_may_go(run: Run, example_repo: Path) -> None:
    run("apply")
    (example_repo / "specs" / "webinar-follow-up.yaml").unlink()  # running: must be refused
    (example_repo / "specs" / "re-engagement.yaml").unlink()  # not running: goes
    code, out, _ = run("apply", "--prune")
    assert code == 1 and "pause it first" in out and "Applied 1 change(s); 1 blocked." in out
    flows = {f["name"] for f in json.loads(run("status", "--json")[1])["flows"]}
    assert flows == {"customer-onboarding", "lead-scoring", "webinar-follow-up"}


def test_errors_are_one_clear_message(run: Run, example_repo: Path) -> None:
    code, _, err = run("plan", "--json", "--markdown")
    assert code == 1
    assert "cannot be combined" in err
    code, _, err = run("status", "nope")
    assert code == 1 and err == "Error: no flow named 'nope'\n"
    (example_repo / "specs" / "broken.yaml").write_text("apiVersion: reconciler/v1\nkind: Flow\n")
    code, out, err = run("apply")
    assert code == 1 and out == ""
    assert "specs/broken.yaml:1:1: error: missing required key 'metadata'" in err
    assert run("status", "--json")[1].count('"name"') == 0  # nothing was applied


def test_force_unlock(run: Run) -> None:
    code, out, _ = run("force-unlock")
    assert code == 0 and out == "the apply lock was not held\n"
