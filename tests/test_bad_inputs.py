"""Bad and hostile spec files: each gives one clear, located error and exit code 1.

Small cases live in ``tests/corpus/bad/<case>.yaml``, each a minimal flow that would
be valid but for one defect; the table ``CORPUS_CASES`` says which message each must
give and where. Binary, huge and deeply nested inputs are generated at test time into
``tmp_path`` and run in a real subprocess, so a crash of the C YAML parser, a hang
or a memory blow-up fails the test instead of taking pytest down with it.

Every test runs in a copy of the corpus inside ``tmp_path`` that holds a
``reconciler.toml``, so that copy is the repository root for content paths and
the registered scripts come from that (empty) file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler.cli import cli

CORPUS = Path(__file__).parent / "corpus" / "bad"
SUBPROCESS_TIMEOUT = 120  # seconds; a guard against hangs, not a performance target
MEMORY_LIMIT = 1024 * 1024 * 1024  # address space of a subprocess run; validate needs ~50 MB

DIAGNOSTIC = re.compile(
    r"^(?P<file>[^:\n]+?)(?::(?P<line>\d+):(?P<col>\d+))?: (?P<severity>error|warning): (?P<message>.+)$"
)
SUMMARY = re.compile(
    r"^(?:\d+ error\(s\), \d+ warning\(s\) in \d+ valid flow\(s\) read|\d+ flow\(s\) valid(?:, \d+ warning\(s\))?)$"
)


@dataclass(frozen=True)
class Diag:
    file: str
    line: int | None
    col: int | None
    severity: str
    message: str


@dataclass(frozen=True)
class Expect:
    """What validating one case must print: one finding of ``severity`` containing
    ``message`` at ``line``:``col`` of ``file`` (no position when ``line`` is None)."""

    message: str
    line: int | None
    col: int | None = None
    file: str | None = None  # defaults to the case's own file
    severity: str = "error"
    exit_code: int = 1


# case (a file <case>.yaml or a directory <case>/ in the corpus) -> expected finding
CORPUS_CASES: dict[str, Expect] = {
    "duplicate_keys": Expect('invalid YAML: found duplicate key "selection"', 12, 7),
    "tab_indent": Expect("tabs are not allowed for indentation", 9, 1),
    "empty": Expect("file has no documents (it is empty)", None),
    "comments_only": Expect("file has no documents (it is empty)", None),
    "top_level_list": Expect("a document must be a mapping with apiVersion, kind, metadata and spec; found list", 1, 1),
    "top_level_scalar": Expect(
        "a document must be a mapping with apiVersion, kind, metadata and spec; found str", 2, 1
    ),
    "second_document_scalar": Expect(
        "a document must be a mapping with apiVersion, kind, metadata and spec; found str", 14, 1
    ),
    "wrong_api_version": Expect("Input should be 'reconciler/v1'", 1, 13),
    "wrong_kind": Expect("Input should be 'Flow'", 2, 7),
    "unknown_top_level_key": Expect("unknown key 'status'", 11, 1),
    "unknown_step_type": Expect("unknown type 'send_fax'; expected one of 'send_email'", 10, 13),
    "missing_step_setting": Expect("missing required key 'due'", 9, 7),
    "invalid_duration": Expect("invalid duration '2 days': use a number with a unit w, d, h or m", 11, 17),
    "merge_unknown_variable": Expect("unknown merge field 'customer'; use contact.*, company.*, flow.*", 13, 16),
    "merge_syntax_error": Expect("merge field syntax error: unexpected '}'", 13, 16),
    "next_missing_step": Expect("no step with id 'finsh' in flow 'next-missing-step'", 12, 13),
    "duplicate_step_ids": Expect("step id 'tag' is already used by step 1", 12, 11),
    "duplicate_flow_name": Expect(
        "flow 'welcome-series' is already defined at duplicate_flow_name/first.yaml:4:9",
        6,
        9,
        file="duplicate_flow_name/second.yaml",
    ),
    "loop_without_wait": Expect("steps tag → untag → tag loop without a wait or wait_for_action step", 9, 7),
    "content_path_escape": Expect("points outside the spec repository", 16, 16),
    "missing_attachment": Expect("'content/brochure.pdf' does not exist", 18, 11),
    "unregistered_script": Expect("script 'export-to-ledger' is not registered", 11, 15),
    "running_without_sender": Expect(
        "cannot run: step 'welcome' sends e-mail but settings.email.sender has no address", 13, 7
    ),
    "paused_without_sender": Expect(
        "cannot start yet: step 'welcome' sends e-mail but settings.email.sender has no address",
        13,
        7,
        severity="warning",
        exit_code=0,
    ),
    "python_object_tag": Expect(
        "could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'", 5, 16
    ),
    "sending_window_without_timezone": Expect("a sending_window needs spec.timezone", 8, 7),
}

HEAD = "apiVersion: reconciler/v1\nkind: Flow\nmetadata:\n"
TAIL = "spec:\n  triggers:\n    - type: manual\n  steps:\n    - id: done\n      type: finish\n"
EMAIL_SETTINGS = "  settings:\n    email:\n      sender: news@acme.example\n      reply_to: help@acme.example\n"


def flow(name: str, steps: str, settings: str = "") -> str:
    """A valid flow named ``name`` whose steps are ``steps`` followed by a finish."""
    return (
        f"{HEAD}  name: {name}\nspec:\n{settings}  triggers:\n    - type: manual\n  steps:\n"
        f"{steps}    - id: done\n      type: finish\n"
    )


def send_email(content: str, attachments: list[str] | None = None) -> str:
    """One send_email step (ends with a newline), at the indentation of ``flow``."""
    step = f"    - id: welcome\n      type: send_email\n      subject: Welcome\n      content: {content}\n"
    if attachments:
        step += "      attachments:\n" + "".join(f"        - {a}\n" for a in attachments)
    return step


# --- running the CLI ------------------------------------------------------------------


@pytest.fixture
def bad_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the corpus that is its own repository root, as the working directory."""
    root = tmp_path / "repo"
    shutil.copytree(CORPUS, root)
    (root / "reconciler.toml").write_text("")
    monkeypatch.chdir(root)
    return root


def validate(*args: str) -> Result:
    """``reconcile validate ARGS`` in-process; the result must not be an uncaught exception."""
    result = CliRunner().invoke(cli, ["validate", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


def validate_in_subprocess(cwd: Path, *args: str) -> tuple[int, str]:
    """``python -m reconciler.cli validate ARGS`` under a memory cap: (exit code, stdout)."""
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler.cli", "validate", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        preexec_fn=_limit_memory if sys.platform == "linux" else None,
        check=False,
    )
    # A negative code is a signal (SIGSEGV from the C parser, SIGKILL from the cap).
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}: {proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-2000:]
    return proc.returncode, proc.stdout + proc.stderr


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def diagnostics(output: str) -> list[Diag]:
    """The findings of ``validate``'s output, which must be nothing but one line per
    finding and the summary line."""
    lines = output.strip().splitlines()
    assert lines, "no output"
    assert SUMMARY.match(lines[-1]), f"last line is not the summary: {lines[-1]!r}"
    found = []
    for text in lines[:-1]:
        match = DIAGNOSTIC.match(text)
        assert match, f"not a one-line finding: {text!r}\n--- whole output:\n{output}"
        line, col = match["line"], match["col"]
        found.append(
            Diag(
                match["file"],
                int(line) if line else None,
                int(col) if col else None,
                match["severity"],
                match["message"],
            )
        )
    return found


def errors(output: str) -> list[Diag]:
    return [d for d in diagnostics(output) if d.severity == "error"]


def the_one_error(output: str) -> Diag:
    found = errors(output)
    assert len(found) == 1, f"expected exactly one error, got {len(found)}:\n{output}"
    assert output.strip().splitlines()[-1].startswith("1 error(s)")
    return found[0]


def check(output: str, exit_code: int, case_file: str, expect: Expect) -> None:
    assert exit_code == expect.exit_code, output
    found = [d for d in diagnostics(output) if d.severity == expect.severity]
    if expect.severity == "error":
        assert len(found) == 1, f"expected exactly one error, got {len(found)}:\n{output}"
    else:
        assert not errors(output), output
    matching = [d for d in found if expect.message in d.message]
    assert len(matching) == 1, f"no single {expect.severity} containing {expect.message!r}:\n{output}"
    diag = matching[0]
    assert (diag.file, diag.line, diag.col) == (expect.file or case_file, expect.line, expect.col), output


# --- the corpus -----------------------------------------------------------------------


def test_every_corpus_case_has_an_expectation() -> None:
    on_disk = {p.stem for p in CORPUS.glob("*.yaml")} | {
        p.name for p in CORPUS.iterdir() if p.is_dir() and p.name != "content"
    }
    assert on_disk == set(CORPUS_CASES)


@pytest.mark.parametrize("case", sorted(CORPUS_CASES))
def test_corpus_case(bad_repo: Path, case: str) -> None:
    target = f"{case}.yaml" if (bad_repo / f"{case}.yaml").exists() else case
    result = validate(target)
    check(result.output, result.exit_code, target, CORPUS_CASES[case])


def test_a_corpus_case_without_its_defect_is_valid(bad_repo: Path) -> None:
    """The corpus flows are otherwise valid: fixing the one defect makes a case pass."""
    fixed = (bad_repo / "sending_window_without_timezone.yaml").read_text()
    fixed = fixed.replace("  settings:\n", "  timezone: Europe/Stockholm\n  settings:\n")
    (bad_repo / "fixed.yaml").write_text(fixed)
    result = validate("fixed.yaml")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "1 flow(s) valid"


def test_paused_flow_without_sender_warns_that_it_cannot_start(bad_repo: Path) -> None:
    result = validate("paused_without_sender.yaml")
    assert result.exit_code == 0
    warnings = [d for d in diagnostics(result.output) if d.severity == "warning"]
    assert any("cannot start" in d.message for d in warnings), result.output


# --- generated at test time ---------------------------------------------------------------


def test_latin1_byte_is_reported_at_its_line_and_column(bad_repo: Path) -> None:
    text = f"{HEAD}  name: latin1-description\n  description: Blåbär campaign\n{TAIL}"
    (bad_repo / "latin1.yaml").write_bytes(text.encode("latin-1"))
    result = validate("latin1.yaml")
    assert result.exit_code == 1
    error = the_one_error(result.output)
    assert (error.file, error.line, error.col) == ("latin1.yaml", 5, 18)
    assert error.message == "file is not valid UTF-8 (byte 0xe5); save it as UTF-8"


def test_latin1_byte_column_counts_characters(bad_repo: Path) -> None:
    # "  description: Blåb" is 19 characters (20 bytes in UTF-8); the Latin-1 ä is character 20.
    raw = f"{HEAD}  name: mixed-encoding\n  description: Blå".encode() + b"b\xe4r\n" + TAIL.encode()
    (bad_repo / "mixed.yaml").write_bytes(raw)
    error = the_one_error(validate("mixed.yaml").output)
    assert (error.line, error.col) == (5, 20)


@pytest.mark.parametrize(
    ("tag", "argument"),
    [("!!python/object/apply:os.system", '["touch {marker}"]'), ("!!python/name:os.system", "''")],
)
def test_python_tags_are_rejected_and_nothing_runs(bad_repo: Path, tag: str, argument: str) -> None:
    marker = bad_repo / "executed"
    description = f"{tag} {argument.format(marker=marker)}"
    (bad_repo / "tag.yaml").write_text(f"{HEAD}  name: python-tag\n  description: {description}\n{TAIL}")
    result = validate("tag.yaml")
    assert result.exit_code == 1
    error = the_one_error(result.output)
    assert (error.line, error.col) == (5, 16)
    assert "could not determine a constructor for the tag" in error.message
    assert not marker.exists()


def test_content_symlink_pointing_outside_the_repo(bad_repo: Path) -> None:
    outside = bad_repo.parent / "outside"
    outside.mkdir()
    (outside / "secret.html").write_text("<p>{{ contact.email }}</p>")
    (bad_repo / "content" / "linked.html").symlink_to(outside / "secret.html")
    (bad_repo / "symlink.yaml").write_text(flow("symlink-escape", send_email("content/linked.html"), EMAIL_SETTINGS))
    result = validate("symlink.yaml")
    assert result.exit_code == 1
    error = the_one_error(result.output)
    assert (error.file, error.line, error.col) == ("symlink.yaml", 16, 16)
    assert error.message.startswith("'content/linked.html' points outside the spec repository")


def test_attachments_over_25_mb_in_total(bad_repo: Path) -> None:
    for name in ("a.pdf", "b.pdf"):  # 13 MB each, sparse: nothing is written
        with (bad_repo / "content" / name).open("wb") as handle:
            handle.truncate(13 * 1024 * 1024)
    steps = send_email("content/welcome.html", ["content/a.pdf", "content/b.pdf"])
    (bad_repo / "attachments.yaml").write_text(flow("big-attachments", steps, EMAIL_SETTINGS))
    result = validate("attachments.yaml")
    assert result.exit_code == 1
    error = the_one_error(result.output)
    assert (error.file, error.line, error.col) == ("attachments.yaml", 18, 9)
    assert error.message == "attachments total 26.0 MB; the limit is 25 MB per step"


def test_attachments_within_25_mb_are_fine(bad_repo: Path) -> None:
    with (bad_repo / "content" / "a.pdf").open("wb") as handle:
        handle.truncate(25 * 1024 * 1024)
    steps = send_email("content/welcome.html", ["content/a.pdf"])
    (bad_repo / "attachments.yaml").write_text(flow("big-attachments", steps, EMAIL_SETTINGS))
    result = validate("attachments.yaml")
    assert result.exit_code == 0, result.output


# --- hostile input, in a subprocess ---------------------------------------------------------


def _alias_bomb() -> str:
    """9 levels of 9 aliases: 9**9 strings if anything expanded it."""
    lines = ["    a0: &a0 [" + ", ".join(['"lol"'] * 9) + "]\n"]
    lines += [f"    a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 10)]
    return f"{HEAD}  name: alias-bomb\n  labels:\n{''.join(lines)}{TAIL}"


def test_alias_bomb(bad_repo: Path) -> None:
    (bad_repo / "bomb.yaml").write_text(_alias_bomb())
    code, output = validate_in_subprocess(bad_repo, "bomb.yaml")
    assert code == 1, output
    error = the_one_error(output)
    assert error.file == "bomb.yaml"
    assert error.line is not None
    assert 6 <= error.line <= 15  # somewhere in the anchors and aliases
    assert error.message == "document expands to more than 100,000 values (an alias bomb?)"


def test_recursive_alias(bad_repo: Path) -> None:
    (bad_repo / "loop.yaml").write_text(f"{HEAD}  name: recursive-alias\n  labels: &l {{a: *l}}\n{TAIL}")
    code, output = validate_in_subprocess(bad_repo, "loop.yaml")
    assert code == 1, output
    error = the_one_error(output)
    assert error.line == 5
    assert error.message == "nested more than 40 levels deep"


def test_file_over_1_mb(bad_repo: Path) -> None:
    text = f"{HEAD}  name: huge-file\n{TAIL}" + "# padding to push the file over the size limit\n" * 25_000
    (bad_repo / "huge.yaml").write_text(text)
    size = (bad_repo / "huge.yaml").stat().st_size
    assert size > 1024 * 1024
    code, output = validate_in_subprocess(bad_repo, "huge.yaml")
    assert code == 1, output
    error = the_one_error(output)
    assert (error.file, error.line) == ("huge.yaml", None)  # about the whole file: no position
    assert error.message == f"file is {size:,} bytes; spec files are limited to 1,048,576"


DEEP = {
    # the C composer recurses per level and overflows the C stack on these
    "flow_100k_brackets": "[" * 100_000,
    "flow_100k_balanced": "a: " + "[" * 100_000 + "]" * 100_000 + "\n",
    "block_10k_dashes": "- " * 10_000 + "x\n",
    # shallow enough for the C parser, too deep for the round-trip parser that finds positions
    "flow_600_lines": "[\n" * 600 + "]\n" * 600,
}


@pytest.mark.parametrize("case", sorted(DEEP))
def test_deep_nesting_does_not_crash(bad_repo: Path, case: str) -> None:
    (bad_repo / "deep.yaml").write_text(DEEP[case])
    code, output = validate_in_subprocess(bad_repo, "deep.yaml")
    assert code == 1, output
    error = the_one_error(output)
    assert error.file == "deep.yaml"
    assert "nested more than 40 levels deep" in error.message


@pytest.mark.parametrize(("case", "line"), [("block_10k_dashes", 1), ("flow_100k_brackets", 1), ("flow_600_lines", 42)])
def test_deep_nesting_error_is_located(bad_repo: Path, case: str, line: int) -> None:
    (bad_repo / "deep.yaml").write_text(DEEP[case])
    _, output = validate_in_subprocess(bad_repo, "deep.yaml")
    error = the_one_error(output)
    assert error.line == line
    assert error.col is not None


def test_moderate_nesting_is_located(bad_repo: Path) -> None:
    (bad_repo / "deep.yaml").write_text("- " * 45 + "x\n")
    code, output = validate_in_subprocess(bad_repo, "deep.yaml")
    assert code == 1, output
    error = the_one_error(output)
    assert (error.line, error.col) == (1, 83)  # the 42nd "- "
    assert error.message == "nested more than 40 levels deep"


# --- more hostile values ----------------------------------------------------------


def test_duration_too_large_for_timedelta(bad_repo: Path) -> None:
    steps = "    - id: pause\n      type: wait\n      duration: 999999999w\n"
    (bad_repo / "overflow.yaml").write_text(flow("huge-duration", steps))
    result = CliRunner().invoke(cli, ["validate", "overflow.yaml"])
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    error = the_one_error(result.output)
    assert (error.line, error.col) == (11, 17)


@pytest.mark.parametrize("content", ['"content/wel\\0come.html"', "content/" + "a" * 300 + ".html"])
def test_unusable_content_path(bad_repo: Path, content: str) -> None:
    (bad_repo / "path.yaml").write_text(flow("bad-content-path", send_email(content), EMAIL_SETTINGS))
    result = CliRunner().invoke(cli, ["validate", "path.yaml"])
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    error = the_one_error(result.output)
    assert (error.line, error.col) == (16, 16)


def test_deeply_nested_merge_field(bad_repo: Path) -> None:
    message = '"{{ ' + "(" * 200 + "contact.first_name" + ")" * 200 + ' }}"'
    steps = f"    - id: tell\n      type: notify_email\n      to: our_contact\n      subject: New lead\n      message: {message}\n"
    (bad_repo / "jinja.yaml").write_text(flow("deep-merge-field", steps))
    result = CliRunner().invoke(cli, ["validate", "jinja.yaml"])
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    error = the_one_error(result.output)
    assert (error.line, error.col) == (13, 16)


def test_control_character(bad_repo: Path) -> None:
    (bad_repo / "bell.yaml").write_text(f"{HEAD}  name: control-character\n  description: ding\x07dong\n{TAIL}")
    result = validate("bell.yaml")
    assert result.exit_code == 1
    error = the_one_error(result.output)
    assert (error.line, error.col) == (5, 20)
    assert "control characters are not allowed" in error.message


def test_integer_too_long_to_convert(bad_repo: Path) -> None:
    (bad_repo / "digits.yaml").write_text(f"{HEAD}  name: long-number\n  description: 1{'0' * 5000}\n{TAIL}")
    result = validate("digits.yaml")
    assert result.exit_code == 1
    error = the_one_error(result.output)
    assert (error.line, error.col) == (5, 16)


def test_missing_path_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler.cli", "validate", "nowhere.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == "Error: nowhere.yaml: no such file or directory"
    assert "Traceback" not in proc.stdout + proc.stderr


# --- hostile merge fields (the issue's payloads): located errors, nothing rendered -----------

# payload -> what validate must say about it (one error each, in order)
ISSUE_PAYLOADS: dict[str, tuple[str, list[str]]] = {
    "string_times_a_billion": ("{{ 'x' * 1000000000 }}", ["arithmetic ('*') is not allowed in merge fields"]),
    "field_times_300_million": ("{{ contact.first_name * 300000000 }}", ["arithmetic ('*') is not allowed"]),
    "lipsum_shadowed_by_a_loop": (
        "{% for lipsum in [] %}{% endfor %}{{ lipsum(n=200000) }}",
        [
            "{% for %} is not allowed in merge fields: merge fields have no loops",
            "function calls are not allowed in merge fields (lipsum(…))",
        ],
    ),
    "range_rebound": ("{% set range = range %}", ["{% set %} is not allowed in merge fields"]),
    "nested_loops": (
        "{% for a in contact.first_name * 3000 %}{% for b in contact.first_name * 3000 %}"
        "{{ a }}{{ b }}{% endfor %}{% endfor %}",
        ["{% for %} is not allowed in merge fields"],
    ),
    "dunder": ("{{ contact.__class__.__mro__ }}", ["names starting with '_' are not allowed"]),
    "unsafe_filter": ("{{ contact.first_name | safe }}", ["unknown filter 'safe'"]),
}


def _errors_of(result: Result) -> list[Diag]:
    assert result.exit_code == 1, result.output
    return errors(result.output)


def _says(found: list[Diag], expected: list[str]) -> None:
    """Each expected message is in exactly one finding (findings are sorted by message)."""
    for message in expected:
        assert sum(message in d.message for d in found) == 1, (message, found)


def _quoted(payload: str) -> str:
    return '"' + payload.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _hostile(repo: Path, place: str, payload: str) -> tuple[str, int, int]:
    """Write a flow with ``payload`` in a notify_email message, an e-mail subject or a
    content file; where validate must report it (file, line, column)."""
    if place == "message":
        steps = (
            "    - id: tell\n      type: notify_email\n      to: our_contact\n      subject: New lead\n"
            f"      message: {_quoted(payload)}\n"
        )
        (repo / "hostile.yaml").write_text(flow("hostile-message", steps))
        return ("hostile.yaml", 13, 16)
    if place == "subject":
        steps = send_email("content/welcome.html").replace("subject: Welcome", f"subject: {_quoted(payload)}")
        (repo / "hostile.yaml").write_text(flow("hostile-subject", steps, EMAIL_SETTINGS))
        return ("hostile.yaml", 15, 16)
    (repo / "content" / "hostile.html").write_text(f"<html><body>\n<p>Hello</p>\n<p>{payload}</p>\n</body></html>\n")
    (repo / "hostile.yaml").write_text(flow("hostile-content", send_email("content/hostile.html"), EMAIL_SETTINGS))
    return ("content/hostile.html", 3, 1)


@pytest.mark.parametrize("place", ["message", "subject", "content"])
@pytest.mark.parametrize("case", sorted(ISSUE_PAYLOADS))
def test_issue_payload_is_a_located_error(bad_repo: Path, case: str, place: str) -> None:
    payload, expected = ISSUE_PAYLOADS[case]
    where = _hostile(bad_repo, place, payload)
    found = _errors_of(validate("hostile.yaml"))
    assert [(d.file, d.line, d.col) for d in found] == [where] * len(expected)
    _says(found, expected)


def test_every_violation_of_a_content_file_is_reported_at_its_own_line(bad_repo: Path) -> None:
    content = "<p>{{ contact.first_name | upper }}</p>\n<p>{{ lipsum() }}</p>\n\n<p>{{ contact.score ** 9 }}</p>\n"
    (bad_repo / "content" / "many.html").write_text(content)
    (bad_repo / "many.yaml").write_text(flow("many-problems", send_email("content/many.html"), EMAIL_SETTINGS))
    found = _errors_of(validate("many.yaml"))
    assert [(d.file, d.line) for d in found] == [("content/many.html", 2), ("content/many.html", 4)]
    assert "function calls are not allowed" in found[0].message
    assert "arithmetic ('**')" in found[1].message


def test_the_merge_field_language_validates(bad_repo: Path) -> None:
    content = (
        "<h1>Hej {{ contact.first_name | default('där') | title }}!</h1>\n"
        "{% if contact.country == 'SE' and contact.custom.tier is defined %}<p>{{ contact.custom.tier | upper }}</p>\n"
        "{% elif contact.city %}<p>{{ contact.city ~ ', ' ~ company.name | default('') }}</p>{% else %}<p>-</p>{% endif %}\n"
        "<p>{{ contact.birth_date | date('%-d %B') }} {{ flow.name | truncate(20) }}</p>\n"
        '<a href="{{ unsubscribe_url }}">Unsubscribe</a>\n'
    )
    (bad_repo / "content" / "fine.html").write_text(content)
    (bad_repo / "fine.yaml").write_text(flow("fine-merge-fields", send_email("content/fine.html"), EMAIL_SETTINGS))
    result = validate("fine.yaml")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("key", ["content", "text_content"])
def test_content_file_over_2_mb_is_refused_unread(bad_repo: Path, key: str) -> None:
    huge = bad_repo / "content" / "huge.html"
    with huge.open("wb") as handle:  # sparse: 2 GiB that nothing writes, more than the subprocess may hold
        handle.truncate(2 * 1024**3)
    steps = send_email("content/welcome.html")
    if key == "content":
        steps = steps.replace("content/welcome.html", "content/huge.html")
    else:
        steps += "      text_content: content/huge.html\n"
    (bad_repo / "huge.yaml").write_text(flow("huge-content", steps, EMAIL_SETTINGS))
    code, output = validate_in_subprocess(bad_repo, "huge.yaml")
    assert code == 1, output
    error = the_one_error(output)
    assert (error.file, error.line, error.col) == ("huge.yaml", 16, 16) if key == "content" else ("huge.yaml", 17, 21)
    assert error.message == "'content/huge.html' is 2048.0 MB; a content file may be at most 2 MB"


def test_content_file_of_2_mb_is_fine(bad_repo: Path) -> None:
    line = "<p>" + "x" * 1016 + "</p>\n"  # 1 KiB
    (bad_repo / "content" / "big.html").write_text(line * 2048)
    assert (bad_repo / "content" / "big.html").stat().st_size == 2 * 1024 * 1024
    (bad_repo / "big.yaml").write_text(flow("big-content", send_email("content/big.html"), EMAIL_SETTINGS))
    result = validate("big.yaml")
    assert result.exit_code == 0, result.output
