"""Step handlers, registered by step type.

The batch looks a step's handler up here and calls it; it knows nothing of what a step
means. Adding a step type is one model (``reconciler.spec.steps``), one handler in the
family module it belongs to, and one line below.
"""

from __future__ import annotations

from reconciler.executor.handlers import crm, flow_control, sends
from reconciler.executor.handlers.base import Handler
from reconciler.spec import steps as s

HANDLERS: dict[type, Handler] = {
    # flow control
    s.Wait: flow_control.wait,
    s.WaitForAction: flow_control.wait_for_action,
    s.Split: flow_control.split,
    s.Finish: flow_control.finish,
    # CRM
    s.UpdateContact: crm.update_contact,
    s.AddToSelection: crm.membership,
    s.RemoveFromSelection: crm.membership,
    s.DistributeToOwner: crm.distribute_to_owner,
    s.CreateFollowUp: crm.create_follow_up,
    s.CreateRequest: crm.create_request,
    s.CreateSale: crm.create_sale,
    # sends
    s.SendEmail: sends.send_email,
    s.SendSms: sends.send_sms,
    s.NotifyEmail: sends.notify,
    s.NotifySms: sends.notify,
    s.RunScript: sends.run_script,
}
