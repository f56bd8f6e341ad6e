"""Flow control: wait, wait for action, split and finish.

These steps move nobody's data; they decide when and where a participant goes next,
along the edges of the flow's compiled graph (``reconciler.spec.graph``).
"""

from __future__ import annotations

from reconciler.executor.conditions import matches
from reconciler.executor.handlers.base import Decision, Exit, Finish, Hold, Next, Outcome, ParticipantView, StepContext
from reconciler.spec import steps as s
from reconciler.timing import wait_until


def wait(p: ParticipantView, step: s.Wait, ctx: StepContext) -> Decision:
    if p.step_state == "waiting":
        return Next(Outcome.WAITED)
    due = wait_until(step, ctx.now, ctx.zone)
    # A wait until a time that has passed goes on in this batch, as the next batch
    # would at once: one claim and one save fewer per participant.
    return Next(Outcome.WAITED) if due <= ctx.now else Hold(due)


def wait_for_action(p: ParticipantView, step: s.WaitForAction, ctx: StepContext) -> Decision:
    if p.step_state == "action":
        return Next(Outcome.ACTION_TAKEN)
    if p.step_state == "waiting":  # the timeout passed
        if step.on_timeout == "exit":
            return Exit("no action before the timeout", step.after_exit)
        return Next(Outcome.TIMED_OUT)
    return Hold(None if step.timeout == "never" else ctx.now + step.timeout)


def split(_p: ParticipantView, step: s.Split, ctx: StepContext) -> Decision:
    facts = ctx.split_facts(step)
    for branch in step.branches:
        if branch.when is None and step.based_on == "form_submitted" and branch.name != s.EVERYONE_ELSE:
            hit = ctx.submitted(step.form)
        else:
            hit = branch.when is None or matches(branch.when, facts, form=step.form)
        if hit:
            if branch.exit:
                return Exit(f"split {step.id!r}: branch {branch.name!r} exits", branch.after_exit)
            return Next(Outcome.BRANCH, branch.name, ctx.graph.branch(step.id, branch.name).target)
    raise AssertionError("no branch matched")  # everyone_else always matches


def finish(p: ParticipantView, step: s.Finish, _ctx: StepContext) -> Decision:
    handoff = step.on_success if p.success_at is not None else step.on_no_success
    return Finish(handoff.add_to_flow if handoff else None)
