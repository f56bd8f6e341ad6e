"""The reconcile command line: exit codes and output of validate, schema, scripts."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import cli
from tests.conftest import flow_doc

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def run(repo: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, str]]:
    monkeypatch.chdir(repo)

    def invoke(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, list(args))
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.output

    return invoke


def test_validate_ok_defaults_to_specs_dir(
    run: Callable[..., tuple[int, str]], write_spec: Callable[..., Path]
) -> None:
    write_spec("a.yaml", flow_doc("a"))
    assert run("validate") == (0, "1 flow(s) valid\n")


def test_validate_reports_every_error_sorted(
    run: Callable[..., tuple[int, str]], write_spec: Callable[..., Path]
) -> None:
    write_spec("b.yaml", "apiVersion: reconciler/v1\nkind: Flow\nmetadata: {name: b}\nspec: {steps: [], x: 1}\n")
    write_spec(
        "a.yaml", "apiVersion: reconciler/v1\nkind: Flw\nmetadata: {name: a}\nspec: {steps: [{id: a, type: finish}]}\n"
    )
    code, out = run("validate", "specs")
    lines = out.splitlines()
    assert code == 1
    assert lines[0].startswith("specs/a.yaml:2:7: error: kind: Input should be 'Flow'")
    assert lines[1].startswith("specs/b.yaml:4:")
    assert lines[-1] == "3 error(s), 0 warning(s) in 0 valid flow(s) read"


def test_validate_json(run: Callable[..., tuple[int, str]], write_spec: Callable[..., Path]) -> None:
    write_spec("a.yaml", flow_doc("a", triggers=[]))
    code, out = run("validate", "--json")
    report = json.loads(out)
    assert code == 0 and report["valid"] is True and report["flows"] == 1
    (finding,) = report["diagnostics"]
    assert finding["severity"] == "warning" and finding["file"] == "specs/a.yaml" and finding["line"] > 1
    assert finding["message"].startswith("no triggers")


def test_missing_path_is_one_clean_error(repo: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "reconciler.cli", "validate", "nowhere"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == "Error: nowhere: no such file or directory\n"
    assert "Traceback" not in result.stdout + result.stderr


def test_usage_errors_exit_1(repo: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "reconciler.cli", "frobnicate"], cwd=repo, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1 and "No such command 'frobnicate'" in result.stderr


def test_schema_command_prints_the_schema(run: Callable[..., tuple[int, str]]) -> None:
    code, out = run("schema")
    assert code == 0 and json.loads(out)["title"].startswith("reconciler Flow")


def test_scripts_lists_registrations(run: Callable[..., tuple[int, str]], repo: Path) -> None:
    assert run("scripts")[1].startswith("no scripts registered")
    (repo / "reconciler.toml").write_text('[scripts]\nscore-lead = "acme.scoring:score"\n')
    code, out = run("scripts")
    assert code == 0 and out.startswith("score-lead\tacme.scoring:score\t")


def test_bad_config_is_one_clean_error(repo: Path) -> None:
    (repo / "reconciler.toml").write_text("[scripts\n")
    result = subprocess.run(
        [sys.executable, "-m", "reconciler.cli", "validate"], cwd=repo, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ") and "reconciler.toml: invalid TOML" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("scripts = 1\n", "[scripts] must be a table"),
        ('[scripts]\nx = "not a target"\n', 'target must be "module:function"'),
        (b"[scripts]\nx = '\xe5'\n", "not valid UTF-8"),
    ],
)
def test_config_errors(repo: Path, toml: str | bytes, message: str) -> None:
    from reconciler.config import registered_scripts
    from reconciler.errors import ConfigError

    path = repo / "reconciler.toml"
    path.write_bytes(toml if isinstance(toml, bytes) else toml.encode())
    with pytest.raises(ConfigError) as caught:
        registered_scripts(repo)
    assert message in str(caught.value)


def test_example_specs_validate_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "reconciler.cli", "validate", "specs/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in result.stdout and "warning" not in result.stdout


def test_a_split_without_everyone_else_names_the_catch_all(
    run: Callable[..., tuple[int, str]], write_spec: Callable[..., Path]
) -> None:
    branches = [
        {"name": "leads", "when": {"field": "category", "op": "equals", "value": "lead"}, "next": "done"},
        {"name": "others", "next": "done"},
    ]
    steps = [{"id": "route", "type": "split", "branches": branches}, {"id": "done", "type": "finish"}]
    write_spec("a.yaml", flow_doc("a", steps=steps))
    code, out = run("validate")
    assert code == 1
    assert (
        "error: branch 'others' needs a 'when' condition "
        "(the catch-all branch, which needs none, is called everyone_else)" in out
    )
