"""Where reconciler.toml is found, through the CLI: above the spec paths up to the repository
root, then above the working directory; ``--config`` / ``RECONCILER_CONFIG`` override; its
``paths`` set the default spec paths."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.conftest import Run, flow_doc, invoke_cli

SCRIPTED = [{"id": "score", "type": "run_script", "script": "score-lead"}, {"id": "done", "type": "finish"}]


@pytest.fixture
def team(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A team repository (``.git``, reconciler.toml with ``paths = ["flows/"]``, a flow that
    runs a script registered there) and a working directory outside it."""
    root = tmp_path / "team"
    (root / ".git").mkdir(parents=True)
    (root / "flows").mkdir()
    (root / "reconciler.toml").write_text('paths = ["flows/"]\n\n[scripts]\nscore-lead = "acme.scoring:score"\n')
    yaml = YAML(typ="safe", pure=True)
    with (root / "flows" / "scored.yaml").open("w") as handle:
        yaml.dump(flow_doc("scored", steps=SCRIPTED), handle)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("RECONCILER_CONFIG", raising=False)
    monkeypatch.setenv("RECONCILER_DATABASE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    yield root
    invoke_cli("--help")  # resets the process-wide --config choice for the tests that follow


def test_validate_from_elsewhere_finds_the_config_above_the_specs(team: Path) -> None:
    code, out, err = invoke_cli("validate", str(team / "flows"))
    assert (code, out, err) == (0, "1 flow(s) valid\n", "")
    code, out, _ = invoke_cli("validate", str(team / "flows" / "scored.yaml"))
    assert code == 0


def test_without_a_config_the_script_is_unknown(team: Path) -> None:
    (team / "reconciler.toml").unlink()
    code, out, _ = invoke_cli("validate", str(team / "flows"))
    assert code == 1 and "score-lead" in out


def test_the_search_stops_at_the_repository_root(team: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "reconciler.toml").write_text('[scripts]\nscore-lead = "x:y"\n')  # above .git: not ours
    (team / "reconciler.toml").unlink()
    monkeypatch.chdir(team)
    assert invoke_cli("validate", "flows")[0] == 1
    monkeypatch.chdir(tmp_path / "elsewhere")  # outside any repository: up to the filesystem root
    assert invoke_cli("validate", str(team / "flows"))[0] == 0


def test_the_config_paths_are_the_default_spec_paths(team: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(team / "flows")  # found by walking up from the working directory
    code, out, _ = invoke_cli("validate")
    assert (code, out) == (0, "1 flow(s) valid\n")
    code, out, err = invoke_cli("plan")
    assert code == 0 and "scored: create" in out, err
    assert invoke_cli("apply")[0] == 0
    code, out, _ = invoke_cli("drift", "--detailed-exitcode")
    assert code == 0, out


@pytest.mark.parametrize("how", ["option", "env"])
def test_a_given_config_overrides_the_search(team: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    other = team.parent / "ops.toml"
    other.write_text('paths = ["team/flows"]\n\n[scripts]\nscore-lead = "ops:score"\n')
    (team / "reconciler.toml").write_text("")  # found by the search, but not used
    if how == "env":
        monkeypatch.setenv("RECONCILER_CONFIG", str(other))
        args = ["scripts"]
    else:
        args = ["--config", str(other), "scripts"]
    code, out, _ = invoke_cli(*args)
    assert code == 0 and f"score-lead\tops:score\t{other}" in out
    code, out, _ = invoke_cli(*args[:-1], "validate")  # paths relative to ops.toml
    assert (code, out) == (0, "1 flow(s) valid\n")


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--config", "missing.toml"], None, "Error: config file missing.toml (from --config) does not exist"),
        ([], "missing.toml", "Error: config file missing.toml (from RECONCILER_CONFIG) does not exist"),
        ([], "", "Error: RECONCILER_CONFIG is set but empty; name a reconciler.toml file or unset it"),
    ],
)
def test_a_given_config_that_does_not_exist_is_an_error_naming_it(
    team: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], env: str | None, message: str
) -> None:
    if env is not None:
        monkeypatch.setenv("RECONCILER_CONFIG", env)
    code, out, err = invoke_cli(*args, "validate", str(team / "flows"))
    assert code == 1 and out == ""
    assert err.splitlines() == [message]


def test_a_given_config_that_does_not_parse_is_an_error_naming_it(team: Path) -> None:
    bad = team / "bad.toml"
    bad.write_text("[scripts\n")
    code, _, err = invoke_cli("--config", str(bad), "status")
    assert code == 1 and err.startswith(f"Error: {bad}: invalid TOML")


def test_config_paths_must_be_a_list(team: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (team / "reconciler.toml").write_text('paths = "flows/"\n')
    monkeypatch.chdir(team)
    code, _, err = invoke_cli("validate")
    assert code == 1 and "paths must be a list of spec paths" in err


def run_in(directory: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.chdir(directory)
    return invoke_cli


def test_drift_ignore_rules_come_from_the_found_config(team: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = run_in(team, monkeypatch)
    assert run("apply")[0] == 0
    assert run("flow", "start", "scored")[0] == 0
    assert run("drift", "--detailed-exitcode")[0] == 2
    with (team / "reconciler.toml").open("a") as handle:
        handle.write('\n[drift]\nignore = ["scored:status"]\n')
    monkeypatch.chdir(team.parent / "elsewhere")
    code, out, _ = run("drift", "--detailed-exitcode", str(team / "flows"))
    assert code == 0, out
