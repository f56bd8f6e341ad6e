"""Semantic checks: everything about a set of flows that a schema cannot say.

Unique names and step ids, step targets, reachability and wait-less loops, merge
fields, content and attachment files (inside the repo, present, within size),
registered scripts, references between flows, and start readiness. Findings are
reported on the ``SpecSet`` with the path of the node they are about, so they get
FILE:LINE:COL like schema errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from reconciler.errors import Diagnostic, Location, Severity
from reconciler.sms_segments import count_sms, describe_text
from reconciler.spec.conditions import AllOf, AnyOf, Condition, LinkClickedCondition, Not
from reconciler.spec.graph import flow_graph
from reconciler.spec.loader import LoadedFlow, SpecSet, display_path
from reconciler.spec.locate import PathPart
from reconciler.spec.models import Flow
from reconciler.spec.steps import (
    CreateFollowUp,
    CreateRequest,
    CreateSale,
    DistributeToOwner,
    Finish,
    NotifyEmail,
    NotifySms,
    RunScript,
    SendEmail,
    SendSms,
    Split,
    UpdateContact,
    Wait,
    WaitForAction,
)
from reconciler.spec.templates import template_problems
from reconciler.statuses import FlowStatus

MAX_ATTACHMENTS_BYTES = 25 * 1024 * 1024
MAX_CONTENT_BYTES = 2 * 1024 * 1024  # a content or text-content file (a template): refused unread when larger
WARNING = Severity.WARNING
Path_ = tuple[PathPart, ...]


@dataclass(frozen=True)
class Blocker:
    """Why a flow cannot start: a required setting that is missing."""

    path: Path_
    message: str


def check_specs(specs: SpecSet, known_scripts: frozenset[str] | None = None) -> None:
    """Run every semantic check, adding diagnostics to ``specs``."""
    names = {lf.flow.name for lf in specs.flows}
    first: dict[str, LoadedFlow] = {}
    for loaded in specs.flows:
        earlier = first.setdefault(loaded.flow.name, loaded)
        if earlier is not loaded:
            where = specs.location(earlier.source, ("metadata", "name"))
            specs.report(
                loaded.source, ("metadata", "name"), f"flow {loaded.flow.name!r} is already defined at {where}"
            )
            continue
        _FlowChecker(specs, loaded, names, known_scripts).run()


def start_blockers(flow: Flow) -> list[Blocker]:
    """Required settings a flow lacks to run (it can still be saved without them)."""
    blockers: list[Blocker] = []
    settings = flow.spec.settings
    email = settings.email
    sms_sender = settings.sms.sender if settings.sms is not None else None
    for i, step in enumerate(flow.spec.steps):
        at: Path_ = ("spec", "steps", i)
        if isinstance(step, SendEmail):
            if email is None or email.sender is None or email.sender.required_address() is None:
                blockers.append(Blocker(at, f"step {step.id!r} sends e-mail but settings.email.sender has no address"))
            if email is None or email.reply_to is None or email.reply_to.required_address() is None:
                blockers.append(Blocker(at, f"step {step.id!r} sends e-mail but settings.email.reply_to is missing"))
        elif isinstance(step, NotifyEmail) or (isinstance(step, DistributeToOwner) and step.notify):
            # A notification is an e-mail from the flow's sender too (no reply-to needed).
            if email is None or email.sender is None or email.sender.required_address() is None:
                what = "sends a notification e-mail" if isinstance(step, NotifyEmail) else "notifies the new owner"
                blockers.append(Blocker(at, f"step {step.id!r} {what} but settings.email.sender has no address"))
        elif isinstance(step, (SendSms, NotifySms)) and step.sender is None and sms_sender is None:
            blockers.append(
                Blocker(at, f"step {step.id!r} sends SMS but neither the step nor settings.sms has a sender")
            )
    return list(dict.fromkeys(blockers))


class _FlowChecker:
    def __init__(
        self, specs: SpecSet, loaded: LoadedFlow, names: set[str], known_scripts: frozenset[str] | None
    ) -> None:
        self.specs = specs
        self.flow = loaded.flow
        self.source = loaded.source
        self.names = names
        self.known_scripts = known_scripts

    def report(self, path: Path_, message: str, severity: Severity = Severity.ERROR) -> None:
        self.specs.report(self.source, path, message, severity)

    def run(self) -> None:
        ids = self._step_ids()
        self._targets(ids)
        self._replaces(ids)
        if len(ids) == len(self.flow.spec.steps):
            self._graph()
        self._flow_references()
        for i, step in enumerate(self.flow.spec.steps):
            at: Path_ = ("spec", "steps", i)
            for field, text in _templates(step):
                self._template(text, (*at, *field), email=isinstance(step, SendEmail))
            if isinstance(step, SendSms | NotifySms) and count_sms(step.text).segments > 1:
                self.report((*at, "text"), f"SMS text is {describe_text(step.text)}: each segment is billed", WARNING)
            if isinstance(step, SendEmail):
                self._files(step, at)
            elif (
                isinstance(step, RunScript) and self.known_scripts is not None and step.script not in self.known_scripts
            ):
                known = ", ".join(sorted(self.known_scripts)) or "none"
                self.report(
                    (*at, "script"),
                    f"script {step.script!r} is not registered (registered: {known}); "
                    "register it in the reconciler.scripts entry point group or [scripts] in reconciler.toml",
                )
            elif (
                isinstance(step, Wait)
                and step.until is not None
                and step.until.tzinfo is None
                and self.flow.spec.timezone is None
            ):
                self.report(
                    (*at, "until"), "'until' has no offset and the flow has no timezone; it is read as UTC", WARNING
                )
            elif isinstance(step, Split):
                for j, branch in enumerate(step.branches):
                    if branch.when is not None:
                        self._links(branch.when, (*at, "branches", j, "when"), ids)
        self._settings()
        self._readiness()

    def _step_ids(self) -> dict[str, int]:
        ids: dict[str, int] = {}
        for i, step in enumerate(self.flow.spec.steps):
            if step.id in ids:
                self.report(
                    ("spec", "steps", i, "id"), f"step id {step.id!r} is already used by step {ids[step.id] + 1}"
                )
            else:
                ids[step.id] = i
        return ids

    def _replaces(self, ids: dict[str, int]) -> None:
        claimed: dict[str, str] = {}
        for i, step in enumerate(self.flow.spec.steps):
            for k, old in enumerate(step.replaces):
                at: Path_ = ("spec", "steps", i, "replaces", k)
                if old in ids:
                    self.report(at, f"step {old!r} still exists; 'replaces' names removed steps only")
                elif old in claimed:
                    self.report(at, f"step {old!r} is already replaced by step {claimed[old]!r}")
                else:
                    claimed[old] = step.id

    def _targets(self, ids: dict[str, int]) -> None:
        for i, step in enumerate(self.flow.spec.steps):
            targets: list[tuple[Path_, str | None]] = []
            if isinstance(step, Split):
                targets = [(("branches", j, "next"), b.next) for j, b in enumerate(step.branches)]
            elif not isinstance(step, Finish):
                targets = [(("next",), step.next)]
            for where, target in targets:
                if target is not None and target not in ids:
                    self.report(("spec", "steps", i, *where), f"no step with id {target!r} in flow {self.flow.name!r}")

    def _graph(self) -> None:
        steps = self.flow.spec.steps
        index = {s.id: i for i, s in enumerate(steps)}
        graph = flow_graph(self.flow)
        for step_id in graph.unreachable():
            self.report(("spec", "steps", index[step_id]), f"step {step_id!r} can never be reached", WARNING)
        cycle = graph.cycle_without_wait()
        if cycle:
            self.report(
                ("spec", "steps", index[cycle[0]]),
                f"steps {' → '.join(cycle)} loop without a wait or wait_for_action step",
            )

    def _flow_references(self) -> None:
        remove = self.flow.spec.settings.remove_from_flows
        for j, name in enumerate(remove):
            at: Path_ = ("spec", "settings", "remove_from_flows", j)
            if name == self.flow.name:
                self.report(at, "a flow cannot remove its participants from itself")
            elif name not in self.names:
                self.report(at, f"flow {name!r} is not among the specs read (it must exist when this runs)", WARNING)
        for path, name in _handoffs(self.flow):
            if name not in self.names:
                self.report(path, f"flow {name!r} is not among the specs read (it must exist when this runs)", WARNING)

    def _links(self, condition: Condition, at: Path_, ids: dict[str, int]) -> None:
        for path, leaf in _leaves(condition, at):
            if isinstance(leaf, LinkClickedCondition) and leaf.email is not None:
                step = self.flow.spec.steps[ids[leaf.email]] if leaf.email in ids else None
                if not isinstance(step, SendEmail):
                    self.report((*path, "email"), f"{leaf.email!r} is not a send_email step of this flow")

    def _template(self, text: str, at: Path_, *, email: bool) -> None:
        for _, message in template_problems(text, email):
            self.report(at, message)

    def _files(self, step: SendEmail, at: Path_) -> None:
        self._file(step.content, (*at, "content"), template=True)
        if step.text_content is not None:
            self._file(step.text_content, (*at, "text_content"), template=True)
        total = 0
        for k, name in enumerate(step.attachments):
            total += self._file(name, (*at, "attachments", k), template=False) or 0
        if total > MAX_ATTACHMENTS_BYTES:
            self.report(
                (*at, "attachments"), f"attachments total {total / 1_048_576:.1f} MB; the limit is 25 MB per step"
            )

    def _file(self, name: str, at: Path_, *, template: bool) -> int | None:
        """Check a file named by a step; its size when it is usable."""
        raw = Path(name)
        if raw.is_absolute():
            self.report(at, f"{name!r} must be a path relative to the spec file")
            return None
        root = self.source.root
        try:
            resolved = (self.source.base_dir / raw).resolve()
            if not resolved.is_relative_to(root):
                self.report(at, f"{name!r} points outside the spec repository ({root})")
                return None
            if not resolved.is_file():
                self.report(at, f"{name!r} does not exist (looked for {display_path(resolved)})")
                return None
            size = resolved.stat().st_size
        except (OSError, ValueError) as exc:
            self.report(at, f"{name!r} is not a usable file name: {getattr(exc, 'strerror', None) or exc}")
            return None
        if template and size > MAX_CONTENT_BYTES:
            self.report(at, f"{name!r} is {size / 1_048_576:.1f} MB; a content file may be at most 2 MB")
            return None
        if template:
            self._content_file(resolved, at)
        return size

    def _content_file(self, path: Path, at: Path_) -> None:
        try:
            text = _read_text(path)
        except UnicodeDecodeError:
            self.report(at, f"{display_path(path)} is not valid UTF-8")
            return
        for line, message in template_problems(text, True):
            self.specs.diagnostics.append(_at_file(path, line, message))

    def _settings(self) -> None:
        spec = self.flow.spec
        if spec.settings.sending_window is not None and spec.timezone is None:
            self.report(("spec", "settings", "sending_window"), "a sending_window needs spec.timezone")
        if not spec.triggers:
            self.report(
                ("spec", "triggers"),
                "no triggers: contacts can only be enrolled by hand (add '- type: manual' to say so)",
                WARNING,
            )

    def _readiness(self) -> None:
        running = self.flow.spec.status is FlowStatus.RUNNING
        for blocker in start_blockers(self.flow):
            if running:
                self.report(blocker.path, f"cannot run: {blocker.message}")
            else:
                self.report(blocker.path, f"cannot start yet: {blocker.message}", WARNING)


def _read_text(path: Path) -> str:
    return path.read_bytes().decode("utf-8-sig")


def _at_file(path: Path, line: int, message: str) -> Diagnostic:
    return Diagnostic(Location(display_path(path), line, 1), message)


def _templates(step: object) -> Iterator[tuple[Path_, str]]:
    fields: tuple[str, ...] = ()
    if isinstance(step, SendEmail):
        fields = ("subject",)
    elif isinstance(step, (SendSms, NotifySms)):
        fields = ("text",)
    elif isinstance(step, NotifyEmail):
        fields = ("subject", "message")
    elif isinstance(step, CreateFollowUp):
        fields = ("title", "agenda")
    elif isinstance(step, CreateRequest):
        fields = ("title", "message")
    elif isinstance(step, CreateSale):
        fields = ("title", "description")
    for name in fields:
        value = getattr(step, name)
        if isinstance(value, str):
            yield (name,), value
    if isinstance(step, UpdateContact):
        for k, row in enumerate(step.updates):
            if isinstance(row.value, str):
                yield ("updates", k, "value"), row.value


def _leaves(condition: Condition, at: Path_) -> Iterator[tuple[Path_, Condition]]:
    if isinstance(condition, AllOf):
        for k, c in enumerate(condition.all):
            yield from _leaves(c, (*at, "all", k))
    elif isinstance(condition, AnyOf):
        for k, c in enumerate(condition.any):
            yield from _leaves(c, (*at, "any", k))
    elif isinstance(condition, Not):
        yield from _leaves(condition.not_, (*at, "not"))
    else:
        yield at, condition


def _handoffs(flow: Flow) -> Iterator[tuple[Path_, str]]:
    for i, step in enumerate(flow.spec.steps):
        at: Path_ = ("spec", "steps", i)
        exits = []
        if isinstance(step, (SendSms, WaitForAction)) and step.after_exit is not None:
            exits.append(((*at, "after_exit", "add_to_flow"), step.after_exit.add_to_flow))
        elif isinstance(step, Split):
            exits.extend(
                ((*at, "branches", j, "after_exit", "add_to_flow"), b.after_exit.add_to_flow)
                for j, b in enumerate(step.branches)
                if b.after_exit is not None
            )
        elif isinstance(step, Finish):
            exits.extend(
                ((*at, key, "add_to_flow"), h.add_to_flow)
                for key, h in (("on_success", step.on_success), ("on_no_success", step.on_no_success))
                if h is not None
            )
        for path, name in exits:
            if name is not None:
                yield path, name
