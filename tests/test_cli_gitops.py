"""GitOps trust through the CLI: apply keeps a break-glass status while the flow's spec is
unchanged (``--self-heal`` or a spec change undoes it, and the plan says who made it);
metadata-only edits of a running flow apply in place; the plan shows status transitions,
every blocking problem, and a created flow as YAML."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.state import Store
from reconciler.state.crm_store import CrmTx
from tests.conftest import Run, flow_doc, invoke_cli

ROOT = Path(__file__).resolve().parent.parent
PAUSED_BY = "paused out of band (reconcile flow pause) by ci-bot at "


@pytest.fixture
def run(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Run:
    """The example specs as a repo of their own, applied."""
    shutil.copytree(ROOT / "specs", tmp_path / "specs")
    shutil.copy(ROOT / "reconciler.toml", tmp_path / "reconciler.toml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECONCILER_DATABASE_URL", database_url)
    monkeypatch.setenv("RECONCILER_ACTOR", "ci-bot")
    return invoke_cli


def edit(name: str, old: str, new: str) -> None:
    path = Path("specs") / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def status_of(run: Run, name: str) -> dict[str, object]:
    flows = json.loads(run("status", "--json")[1])["flows"]
    return next(f for f in flows if f["name"] == name)  # type: ignore[no-any-return]


# --- 1. an emergency pause survives a CI apply -----------------------------------------------


def test_apply_keeps_an_emergency_pause_while_the_flows_spec_is_unchanged(run: Run) -> None:
    assert run("apply")[0] == 0
    assert run("flow", "pause", "webinar-follow-up")[0] == 0
    # A PR that only changes an amount in another flow.
    edit("customer-onboarding.yaml", "amount: 12000", "amount: 15000")

    code, out, _ = run("plan", "--update-policy", "pause_and_resume")
    assert code == 0 and "resume" not in out.split("customer-onboarding")[0]
    assert f"= webinar-follow-up: kept {PAUSED_BY}" in out
    assert "apply --self-heal would resume it" in out
    assert "1 out-of-band status change(s) kept" in out.splitlines()[-1]

    document = json.loads(run("plan", "--json", "--update-policy", "pause_and_resume")[1])
    change = next(c for c in document["changes"] if c["flow"] == "webinar-follow-up")
    assert change["action"] == "no-op" and change["kept"] is True and change["stages"] == []
    assert change["out_of_band"] | {"at": None} == {
        "status": "paused",
        "spec_status": "running",
        "actor": "ci-bot",
        "origin": "break-glass",
        "at": None,
        "kept": True,
    }
    assert [k["flow"] for k in document["kept_out_of_band"]] == ["webinar-follow-up"]
    markdown = run("plan", "--markdown", "--update-policy", "pause_and_resume")[1]
    assert "**Out-of-band status changes kept:**" in markdown and "webinar-follow-up: kept paused" in markdown

    code, out, _ = run("drift", "--json")
    (status_drift,) = [d for d in json.loads(out)["drifts"] if d["kind"] == "status"]
    assert status_drift["kept"] is True and "kept by apply: the spec is unchanged" in status_drift["detail"]
    text = run("drift")[1]
    assert "heals them" not in text and "keeps an out-of-band status while the flow's spec is unchanged" in text

    code, out, _ = run("apply", "--update-policy", "pause_and_resume")
    assert code == 0 and "Applied 1 change(s)" in out
    assert status_of(run, "webinar-follow-up")["status"] == "paused"
    assert status_of(run, "customer-onboarding")["status"] == "running"

    # --self-heal restores the spec's status and says what it undoes.
    code, out, _ = run("apply", "--self-heal")
    assert code == 0 and "> webinar-follow-up: resume" in out
    assert f"! undoes the out-of-band change: {PAUSED_BY}" in out
    assert status_of(run, "webinar-follow-up")["status"] == "running"
    assert run("drift", "--detailed-exitcode")[0] == 0


def test_a_change_to_the_paused_flows_spec_undoes_the_pause(run: Run) -> None:
    assert run("apply")[0] == 0
    assert run("flow", "pause", "webinar-follow-up")[0] == 0
    edit("webinar-follow-up.yaml", "duration: 1d\n", "duration: 2d\n")

    (status_drift,) = [d for d in json.loads(run("drift", "--json")[1])["drifts"] if d["kind"] == "status"]
    assert status_drift["kept"] is False and "the next apply undoes it" in status_drift["detail"]
    document = json.loads(run("plan", "--json")[1])
    change = next(c for c in document["changes"] if c["flow"] == "webinar-follow-up")
    assert change["stages"] == ["update", "resume"] and change["kept"] is False
    assert change["out_of_band"]["actor"] == "ci-bot" and change["out_of_band"]["kept"] is False
    assert document["kept_out_of_band"] == []

    code, out, _ = run("apply")
    assert code == 0 and f"! undoes the out-of-band change: {PAUSED_BY}" in out
    assert status_of(run, "webinar-follow-up")["status"] == "running"


def test_an_out_of_band_end_is_kept_and_shown_as_an_end(run: Run) -> None:
    assert run("apply")[0] == 0
    assert run("flow", "end", "customer-onboarding")[0] == 0
    code, out, _ = run("apply")
    assert code == 0 and "= customer-onboarding: kept not_running out of band (reconcile flow end) by ci-bot" in out
    assert "apply --self-heal would start it" in out
    assert status_of(run, "customer-onboarding")["status"] == "not_running"


# --- 2. metadata-only edits of a running flow --------------------------------------------------


def test_metadata_only_edits_of_a_running_flow_apply_in_place(run: Run) -> None:
    assert run("apply")[0] == 0
    edit("webinar-follow-up.yaml", "team: growth", "team: demand-gen")
    edit("webinar-follow-up.yaml", "Nurture sign-ups", "Follow up sign-ups")

    code, out, _ = run("plan")
    assert code == 0 and "~ webinar-follow-up: update" in out
    assert "metadata only: applied in place" in out and "blocked" not in out and "(pause →" not in out
    (change,) = [c for c in json.loads(run("plan", "--json")[1])["changes"] if c["action"] != "no-op"]
    assert change["in_place"] is True and change["stages"] == ["update"]
    assert {d["path"] for d in change["diff"]} == {"metadata.description", "metadata.labels.team"}

    assert run("apply")[0] == 0
    flow = status_of(run, "webinar-follow-up")
    assert (flow["status"], flow["revision"]) == ("running", 2)
    assert run("history", "webinar-follow-up", "--diff", "1", "2")[1].count("metadata.") == 2

    # Anything beyond the metadata still needs the flow paused.
    edit("webinar-follow-up.yaml", "team: demand-gen", "team: growth")
    edit("webinar-follow-up.yaml", "duration: 1d\n", "duration: 2d\n")
    code, out, _ = run("plan")
    assert code == 1 and "running flows cannot be edited" in out and "in place" not in out


# --- 3. status transitions, every blocker, created flows as YAML ------------------------------


def test_ending_a_flow_shows_the_status_transition(run: Run) -> None:
    assert run("apply")[0] == 0
    edit("customer-onboarding.yaml", "  status: running\n", "")  # not_running is the default
    code, out, _ = run("plan")
    assert code == 0 and '    ~ spec.status: "running" → "not_running"' in out
    assert "- spec.status" not in out
    (change,) = [c for c in json.loads(run("plan", "--json")[1])["changes"] if c["action"] != "no-op"]
    assert change["action"] == "end"
    assert change["diff"] == [{"path": "spec.status", "before": "running", "after": "not_running"}]


def test_a_created_flow_shows_as_yaml(run: Run) -> None:
    code, out, _ = run("plan")
    assert code == 0
    lines = out.splitlines()
    start = lines.index("+ webinar-follow-up: create")
    assert lines[start + 1 : start + 3] == ["    metadata:", "      name: webinar-follow-up"]
    assert "        - {type: form_submitted, form: webinar-signup}" in lines
    assert '{"id":' not in out and "…" not in out  # no JSON blobs, nothing cut
    markdown = run("plan", "--markdown")[1]
    assert "```yaml\nmetadata:\n  name: webinar-follow-up\n" in markdown


STEPS = [
    {"id": "pause", "type": "wait", "duration": "2d"},
    {"id": "hold", "type": "wait", "duration": "1d"},
    {"id": "done", "type": "finish"},
]


@pytest.fixture
def small(repo: Path, write_spec: Callable[..., Path], database_url: str, monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.chdir(repo)
    monkeypatch.setenv("RECONCILER_DATABASE_URL", database_url)
    write_spec("f.yaml", flow_doc("f", steps=STEPS, status="running"))
    store = Store.open(database_url)
    with store.transaction() as tx:
        CrmTx(tx).upsert_contacts([{"email": "se@x.example", "country": "SE"}], datetime.now(UTC))
    store.close()
    return invoke_cli


def test_a_plan_reports_every_blocking_problem_of_a_flow(small: Run, write_spec: Callable[..., Path]) -> None:
    assert small("apply")[0] == 0
    assert small("participants", "add", "f", "se@x.example")[0] == 0
    assert small("run", "--once")[0] == 0  # the participant now waits on 'pause'
    # Running (no edits) and the wait it is on removed: two problems, both reported.
    write_spec("f.yaml", flow_doc("f", steps=STEPS[1:], status="running"))
    code, out, _ = small("plan")
    assert code == 1
    blocked = [line.strip() for line in out.splitlines() if "✗ blocked:" in line]
    assert len(blocked) == 2
    assert "running flows cannot be edited" in blocked[0]
    assert "step 'pause' (wait) has 1 participant in it and cannot be removed" in blocked[1]
    (change,) = json.loads(small("plan", "--json")[1])["changes"]
    assert len(change["reasons"]) == 2 and change["reason"] == "; ".join(change["reasons"])
    markdown = small("plan", "--markdown")[1]
    assert "> **Blocked:**\n> - flow 'f' is running" in markdown
