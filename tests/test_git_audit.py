"""The audit trail's git facts through the CLI and the daemon: the bare commit, whether the
applied files differed from it (tracked edits, untracked new spec files, content files),
``--require-clean``, and null outside git."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from reconciler.clock import ManualClock
from reconciler.executor import Executor
from reconciler.state import Store
from reconciler.watch import WatchOptions
from reconciler.watch.daemon import Daemon
from reconciler.watch.metrics import Metrics
from tests.conftest import invoke_cli

ROOT = Path(__file__).resolve().parent.parent
FLOW = "webinar-follow-up"
PAUSED = "lead-scoring"  # edits apply without a pause and resume


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example specs committed in a git repository of their own; state outside it."""
    repo = tmp_path / "flows"
    shutil.copytree(ROOT / "specs", repo / "specs")
    shutil.copy(ROOT / "reconciler.toml", repo / "reconciler.toml")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "specs")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("RECONCILER_DATABASE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    return repo


def history(flow: str = FLOW) -> list[dict[str, object]]:
    code, out, _ = invoke_cli("history", flow, "--json")
    assert code == 0
    revisions: list[dict[str, object]] = json.loads(out)
    return revisions


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_clean_checkout_records_the_bare_commit(checkout: Path) -> None:
    code, _, err = invoke_cli("apply", "--require-clean")
    assert code == 0, err
    (rev,) = history()
    assert rev["git_commit"] == git(checkout, "rev-parse", "HEAD") and rev["git_dirty"] is False
    code, out, _ = invoke_cli("history", FLOW)
    assert code == 0 and "uncommitted changes" not in out


def test_tracked_change_is_dirty_and_refused_with_require_clean(checkout: Path) -> None:
    assert invoke_cli("apply")[0] == 0
    edit(checkout / "specs" / "content" / "lead-nurture.html", "</body>", "<p>P.S.</p></body>")
    code, out, err = invoke_cli("apply", "--require-clean")
    assert code == 1 and "Traceback" not in err
    assert "uncommitted or untracked changes" in err and "specs/content/lead-nurture.html" in err
    assert len(history(PAUSED)) == 1  # nothing applied

    assert invoke_cli("apply")[0] == 0
    first, second = history(PAUSED)
    head = git(checkout, "rev-parse", "HEAD")
    assert second["git_commit"] == head and second["git_dirty"] is True  # a flag, not a "-dirty" suffix
    assert first["git_dirty"] is False
    code, out, _ = invoke_cli("history", PAUSED)
    lines = out.splitlines()
    assert "uncommitted changes" in lines[2] and "uncommitted changes" not in lines[1]


def test_untracked_new_spec_file_is_dirty(checkout: Path) -> None:
    spec = (checkout / "specs" / "webinar-follow-up.yaml").read_text()
    (checkout / "specs" / "extra.yaml").write_text(spec.replace(f"name: {FLOW}", "name: extra-flow", 1))
    code, _, err = invoke_cli("apply", "--require-clean")
    assert code == 1 and "specs/extra.yaml" in err
    assert invoke_cli("apply")[0] == 0
    assert history("extra-flow")[0]["git_dirty"] is True
    assert history()[0]["git_dirty"] is True  # one set of applied files, one commit


def test_files_that_are_not_applied_do_not_count(checkout: Path) -> None:
    (checkout / "specs" / "notes.txt").write_text("ideas, not applied\n")
    (checkout / "README.md").write_text("outside the spec paths\n")
    code, _, err = invoke_cli("apply", "--require-clean")
    assert code == 0, err
    assert history()[0]["git_dirty"] is False


def test_untracked_content_file_outside_the_spec_directory_counts(checkout: Path) -> None:
    """A step may name a file elsewhere in the repo: it is part of what was applied."""
    (checkout / "mail").mkdir()
    (checkout / "mail" / "new.html").write_text("<p>Hej</p>")
    edit(checkout / "specs" / "webinar-follow-up.yaml", "content/webinar-recording.html", "../mail/new.html")
    git(checkout, "commit", "-q", "-am", "points at mail/new.html")  # the spec is committed, the file not
    code, _, err = invoke_cli("apply", "specs", "--require-clean")
    assert code == 1 and "mail/new.html" in err and "specs/" not in err


def test_outside_git_commit_and_dirty_are_null(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(ROOT / "specs", tmp_path / "specs")
    shutil.copy(ROOT / "reconciler.toml", tmp_path / "reconciler.toml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECONCILER_DATABASE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    code, _, err = invoke_cli("apply", "--require-clean")
    assert code == 1 and "not in a git checkout" in err
    assert invoke_cli("apply")[0] == 0
    (rev,) = history()
    assert rev["git_commit"] is None and rev["git_dirty"] is None


def test_watch_require_clean_refuses_to_start(checkout: Path) -> None:
    (checkout / "specs" / "notes.yaml").write_text("# draft\n")
    code, _, err = invoke_cli("watch", "--require-clean")
    assert code == 1 and "specs/notes.yaml" in err


def test_daemon_records_each_revision_dirty_or_clean(checkout: Path, tmp_path: Path) -> None:
    """The daemon's revisions: the commit with a flag per revision, and --require-clean skips."""
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    clock = ManualClock()

    def daemon(require_clean: bool) -> Daemon:
        options = WatchOptions(
            paths=[checkout / "specs"], known_scripts=None, actor="watch", require_clean=require_clean
        )
        return Daemon(store, clock, options, executor=Executor(store, clock), dispatcher=None, metrics=Metrics())

    try:
        daemon(False).reconcile()
        spec = checkout / "specs" / "lead-scoring.yaml"
        edit(spec, "team: sales-ops", "team: growth-a")
        daemon(False).reconcile()
        git(checkout, "commit", "-q", "-am", "edit")
        daemon(False).reconcile()  # the same content, now committed: no new revision
        edit(spec, "team: growth-a", "team: growth-b")
        strict = daemon(True)
        strict.reconcile()  # refused: logged, nothing recorded
        assert strict.metrics.registry.get_sample_value("reconciler_reconciles_total", {"result": "unclean"}) == 1
        revisions = history(PAUSED)
        assert [r["git_dirty"] for r in revisions] == [False, True]
        assert all(r["git_commit"] == git(checkout, "rev-parse", "HEAD~1") for r in revisions)
        git(checkout, "commit", "-q", "-am", "again")
        daemon(True).reconcile()
        third = history(PAUSED)[2]
        assert third["git_dirty"] is False and third["git_commit"] == git(checkout, "rev-parse", "HEAD")
    finally:
        store.close()


def test_history_diff_shows_letters_as_they_are(checkout: Path) -> None:
    assert invoke_cli("apply")[0] == 0
    edit(
        checkout / "specs" / "lead-scoring.yaml",
        "description: Score leads",
        "description: Välkommen, åäö — score leads",
    )
    assert invoke_cli("apply")[0] == 0
    code, out, _ = invoke_cli("history", PAUSED, "--diff", "1", "2")
    assert code == 0 and '"Välkommen, åäö — score leads' in out and "\\u00e4" not in out
