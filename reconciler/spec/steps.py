"""Step models: one class per step type of DESIGN.md section 2, gathered into ``Step``.

Settings follow the vendor's step settings (see ../shared/reference/vendor-flows.md).
Checks that need only the step itself live with each class as validators; checks
that need the whole flow (targets of ``next``, start readiness, files) live in
``checks``. The classes live by family — ``send_steps``, ``crm_steps``,
``control_steps``, on ``step_base`` — and every one of them is importable from here.
"""

from __future__ import annotations

from typing import Annotated, Union, get_args

from pydantic import Field

from reconciler.spec.control_steps import (
    EVERYONE_ELSE,
    AwaitedAction,
    Branch,
    Finish,
    FlowHandoff,
    LocalDateTime,
    Split,
    SplitBasis,
    Wait,
    WaitForAction,
)
from reconciler.spec.crm_steps import (
    AddToSelection,
    CreateFollowUp,
    CreateRequest,
    CreateSale,
    DistributeToOwner,
    FieldUpdate,
    FirstAvailable,
    FollowUpDue,
    RemoveFromSelection,
    SaleDate,
    UpdateContact,
)
from reconciler.spec.send_steps import NotifyEmail, NotifySms, RunScript, SendEmail, SendSms
from reconciler.spec.step_base import ROLES, ExitTo, LinearStep, StepBase, check_sms_sender

Step = Annotated[
    Union[
        SendEmail,
        SendSms,
        UpdateContact,
        AddToSelection,
        RemoveFromSelection,
        DistributeToOwner,
        CreateFollowUp,
        CreateRequest,
        CreateSale,
        RunScript,
        NotifyEmail,
        NotifySms,
        Wait,
        WaitForAction,
        Split,
        Finish,
    ],
    Field(discriminator="type"),
]

# Every step type's name, from the union above: a new model there is a new type everywhere.
STEP_TYPES: tuple[str, ...] = tuple(
    get_args(model.model_fields["type"].annotation)[0] for model in get_args(get_args(Step)[0])
)
WAIT_TYPES = frozenset({"wait", "wait_for_action"})


__all__ = [
    "EVERYONE_ELSE",
    "ROLES",
    "STEP_TYPES",
    "WAIT_TYPES",
    "AddToSelection",
    "AwaitedAction",
    "Branch",
    "CreateFollowUp",
    "CreateRequest",
    "CreateSale",
    "DistributeToOwner",
    "ExitTo",
    "FieldUpdate",
    "Finish",
    "FirstAvailable",
    "FlowHandoff",
    "FollowUpDue",
    "LinearStep",
    "LocalDateTime",
    "NotifyEmail",
    "NotifySms",
    "RemoveFromSelection",
    "RunScript",
    "SaleDate",
    "SendEmail",
    "SendSms",
    "Split",
    "SplitBasis",
    "Step",
    "StepBase",
    "UpdateContact",
    "Wait",
    "WaitForAction",
    "check_sms_sender",
]
