"""CRM steps: update contact, selections and projects, owner, follow-up, request, sale.

Each returns the CRM writes it wants as effects; the batch applies them, so a later
step of the same contact in the same batch reads the contact as updated.
"""

from __future__ import annotations

from typing import Any, Literal

from reconciler.executor.handlers.base import (
    Activity,
    Assigned,
    Booking,
    Decision,
    Effect,
    Emit,
    Membership,
    Next,
    ParticipantView,
    Send,
    SetCompanyField,
    SetFields,
    StepContext,
    StepError,
)
from reconciler.messages import EmailNotification
from reconciler.spec import steps as s
from reconciler.timing import after, first_free_slot

# The message a new owner gets (merge fields, rendered by the dispatcher like any e-mail).
OWNER_SUBJECT = "New contact assigned to you: {{ contact.email }}"
OWNER_MESSAGE = "{{ contact.full_name | default(contact.email) }} was assigned to you by flow {{ flow.name }}."


def apply_update(current: Any, action: str, value: Any) -> Any:
    """The new value of a field after a bulk-update style action."""
    if action == "set":
        return value
    if action == "clear":
        return [] if isinstance(current, list) else None
    if action in ("increase", "decrease"):
        try:
            base = float(current) if current not in (None, "") else 0.0
        except (TypeError, ValueError):
            raise StepError(f"cannot {action} a field whose value {current!r} is not a number") from None
        result = base + float(value) if action == "increase" else base - float(value)
        return int(result) if result.is_integer() and not isinstance(value, float) else result
    items = list(current or [])
    values = value if isinstance(value, list) else [value]
    if action == "add":
        return items + [v for v in values if v not in items]
    if action == "remove":
        return [v for v in items if v not in values]
    raise StepError(f"unknown action {action!r}")  # pragma: no cover - the models allow no other


def update_contact(_p: ParticipantView, step: s.UpdateContact, ctx: StepContext) -> Decision:
    contact = ctx.contact
    # Every row's merge fields see the contact as it was before this step.
    rendered = [ctx.render(row.value) if isinstance(row.value, str) else row.value for row in step.updates]
    values: dict[str, Any] = {}
    custom: dict[str, Any] | None = None
    companies: dict[str, dict[str, Any]] = {}
    effects: list[Effect] = []
    changed: list[str] = []
    for row, value in zip(step.updates, rendered, strict=True):
        if row.field.startswith("company."):
            name = values.get("company", contact.values.get("company"))
            if not name:
                raise StepError(f"the contact has no company, so {row.field} cannot be updated")
            if name not in companies:
                companies[name] = dict(ctx.company(name) or {"custom": {}})
            company, column = companies[name], row.field[len("company.") :]
            if column.startswith("custom."):  # custom fields change as one dict
                key = column[len("custom.") :]
                new_custom = dict(company.get("custom") or {})
                new_custom[key] = apply_update(new_custom.get(key), row.action, value)
                column, new, old = "custom", new_custom, company.get("custom") or {}
            else:
                new, old = apply_update(company.get(column), row.action, value), company.get(column)
            if new != old:
                company[column] = new
                effects.append(SetCompanyField(name, column, new))
                changed.append(row.field)
        elif row.field.startswith("custom."):
            key = row.field[len("custom.") :]
            custom = dict(contact.custom) if custom is None else custom
            new = apply_update(custom.get(key), row.action, value)
            if custom.get(key) != new:
                custom[key] = new
                changed.append(row.field)
        else:
            old = values.get(row.field, contact.values.get(row.field))
            new = apply_update(old, row.action, value)
            if old != new:
                values[row.field] = new
                changed.append(row.field)
    if values or (custom is not None and custom != contact.custom):
        effects.append(SetFields(values, custom if custom != contact.custom else None))
    if not changed:
        return Next(detail="nothing to change", effects=tuple(effects))
    effects.append(Emit("contact_updated", None, {"changed": changed}))
    return Next(detail=f"updated {', '.join(changed)}", effects=tuple(effects))


def membership(_p: ParticipantView, step: s.AddToSelection | s.RemoveFromSelection, ctx: StepContext) -> Decision:
    add = isinstance(step, s.AddToSelection)
    effects: tuple[Effect, ...] = ()
    groups: tuple[tuple[Literal["selection", "project"], str | None], ...] = (
        ("selection", step.selection),
        ("project", step.project),
    )
    for kind, name in groups:
        if name is not None and ctx.member(kind, name) != add:
            effects += (Membership(kind, name, add),)
            effects += (Emit(f"added_to_{kind}", name),) if add else ()
    return Next(effects=effects)


def distribute_to_owner(_p: ParticipantView, step: s.DistributeToOwner, ctx: StepContext) -> Decision:
    if step.only_if_unassigned and ctx.contact.values.get("our_contact"):
        return Next(detail="already has an owner")
    active = {a.name: a for a in ctx.associates() if a.active}
    candidates = list(step.associates)
    if step.group:
        candidates += [a.name for a in active.values() if a.group_name == step.group and a.name not in candidates]
    candidates = [c for c in candidates if c in active] or ([step.fallback] if step.fallback else [])
    if not candidates:
        raise StepError("no active associate to distribute to, and no fallback")
    counts = ctx.counts("owner", candidates)
    owner = min(candidates, key=lambda name: (counts.get(name, 0), candidates.index(name)))
    effects: list[Effect] = [
        SetFields({"our_contact": owner}),
        Assigned("owner", owner),
        Emit("contact_updated", None, {"changed": ["our_contact"]}),
    ]
    address = active[owner].email if owner in active else None
    if step.notify and address:
        effects.append(Send(EmailNotification(to=address, subject=OWNER_SUBJECT, message=OWNER_MESSAGE)))
    return Next(detail=f"owner {owner}", effects=tuple(effects))


def create_follow_up(_p: ParticipantView, step: s.CreateFollowUp, ctx: StepContext) -> Decision:
    associate = _assignee(step.assign_to, ctx)
    now, zone = ctx.now, ctx.zone
    row: dict[str, Any] = {
        "contact_id": ctx.contact.id,
        "associate": associate,
        "title": ctx.render(step.title),
        "follow_up_type": step.follow_up_type,
        "project": step.project,
        "agenda": ctx.render(step.agenda),
        "flow_name": ctx.flow.name,
        "created_at": now,
        "due_at": None,
        "starts_at": None,
        "ends_at": None,
    }
    effects: list[Effect] = []
    if step.due.in_ is not None:
        row["due_at"] = after(now, step.due.in_, step.due.working_days, zone)
    else:
        slot = step.due.first_available
        assert slot is not None
        begins = after(now, slot.after, slot.working_days, zone) if slot.after else now
        known = {a.name: a for a in ctx.associates()}
        if associate in known:
            try:
                begins = first_free_slot(ctx.busy(known[associate].id), begins, slot.length, zone)
            except ValueError:
                raise StepError(f"{associate}'s diary has no free slot of {slot.length} within a year") from None
            effects.append(Booking(known[associate].id, begins, begins + slot.length, str(row["title"])))
        row.update(starts_at=begins, ends_at=begins + slot.length, due_at=begins)
    effects += [Activity("follow_ups", row), Emit("follow_up_created", None, {"flow": ctx.flow.name})]
    return Next(detail=f"follow-up for {associate or 'nobody'}", effects=tuple(effects))


def create_request(_p: ParticipantView, step: s.CreateRequest, ctx: StepContext) -> Decision:
    owner, effects = _request_owner(step.owner, ctx)
    row = {
        "contact_id": ctx.contact.id,
        "title": ctx.render(step.title),
        "request_type": step.request_type,
        "status": step.status,
        "category": step.category,
        "priority": step.priority,
        "owner": owner,
        "message": ctx.render(step.message),
        "flow_name": ctx.flow.name,
        "created_at": ctx.now,
    }
    effects += [Activity("requests", row), Emit("request_created", None, {"flow": ctx.flow.name})]
    return Next(detail=f"request for {owner or 'nobody'}", effects=tuple(effects))


def create_sale(_p: ParticipantView, step: s.CreateSale, ctx: StepContext) -> Decision:
    now = ctx.now
    row = {
        "contact_id": ctx.contact.id,
        "title": ctx.render(step.title),
        "sale_type": step.sale_type,
        "stage": step.stage,
        "amount": step.amount,
        "currency": step.currency,
        "description": ctx.render(step.description),
        "project": step.project,
        "expected_at": after(now, step.date.in_, step.date.working_days, ctx.zone) if step.date else None,
        "owner": _assignee(step.owner, ctx),
        "status": "open",
        "flow_name": ctx.flow.name,
        "created_at": now,
    }
    return Next(effects=(Activity("sales", row), Emit("sale_created", None, {"flow": ctx.flow.name})))


def _assignee(who: str, ctx: StepContext) -> str | None:
    if who in s.ROLES:
        value = ctx.contact.values.get(who)
        return str(value) if value else None
    return who


def _request_owner(owner: str, ctx: StepContext) -> tuple[str | None, list[Effect]]:
    """The request's owner: none, a named one, the contact's, or (auto) the support
    manager, else the active associate with the fewest open requests."""
    if owner == "unassigned":
        return None, []
    if owner != "auto":
        return _assignee(owner, ctx), []
    manager = ctx.contact.values.get("our_support_manager")
    if manager:
        return str(manager), []
    active = [a.name for a in ctx.associates() if a.active]
    if not active:
        return None, []
    counts = ctx.counts("request", active)
    chosen = min(active, key=lambda name: (counts.get(name, 0), name))
    return chosen, [Assigned("request", chosen)]
