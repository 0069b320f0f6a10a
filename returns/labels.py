"""Return labels for mail returns, from the carrier adapter.

A mail return asks for a label in its own transaction (an outbox task); the task calls the
carrier outside any transaction and records the label (or the failure) on the return.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from django.db import transaction

from oms.actor import Actor
from oms.outbox import outbox_enqueue_task

from . import events
from .locks import return_for_update
from .models import Return

log = logging.getLogger(__name__)
TASK = "returns.create_return_label"


def label_request(rma: Return) -> None:
    """Ask for a label once the return is committed (call inside the return's transaction)."""
    rma.label_status = Return.LabelStatus.PENDING
    rma.save(update_fields=["label_status", "updated_at"])
    outbox_enqueue_task(TASK, return_id=rma.pk)


@dataclass(frozen=True)
class IssuedLabel:
    carrier: str
    tracking_number: str
    url: str = ""


class ReturnLabelProvider(Protocol):
    """What a carrier adapter must offer for return labels: a label from the customer's
    address (the order's shipping address) to the return's location."""

    def create_return_label(self, *, rma: Return) -> IssuedLabel: ...


def carrier_adapter() -> ReturnLabelProvider | None:
    """The carrier adapter that prints return labels, or None when none is installed.

    SEAM: the carrier adapters (`orders/carriers/`: a Carrier model and an adapter interface
    with `create_label`) are being built on another branch. Wire them here: pick the carrier
    for the return's location and wrap its `create_label` (ship-from the customer, ship-to
    the return location) as a `ReturnLabelProvider`. Until then mail returns record
    `label_status = unavailable` and the timeline says the label must be sent by hand."""
    return None


def label_create(*, return_id: int) -> Return:
    """The task body: ask the carrier for a label (outside any transaction), record the answer."""
    actor = Actor.for_task(TASK)
    rma = Return.objects.select_related("order", "location").get(pk=return_id)
    if rma.label_status != Return.LabelStatus.PENDING:
        return rma
    adapter = carrier_adapter()
    if adapter is None:
        return _record(
            return_id,
            actor,
            status=Return.LabelStatus.UNAVAILABLE,
            error="No carrier adapter installed: send the customer a label by hand.",
        )
    try:
        label = adapter.create_return_label(rma=rma)
    except Exception as exc:  # the carrier refused: recorded, visible, retryable by hand
        log.warning("return label for %s failed: %s", rma.number, exc)
        return _record(return_id, actor, status=Return.LabelStatus.FAILED, error=f"{exc.__class__.__name__}: {exc}")
    return _record(
        return_id,
        actor,
        status=Return.LabelStatus.ISSUED,
        carrier=label.carrier[:50],
        tracking_number=label.tracking_number[:100],
        url=label.url[:500],
    )


@transaction.atomic
def _record(return_id: int, actor: Actor, *, status: str, error: str = "", **label) -> Return:
    rma = return_for_update(return_id)
    if rma.label_status != Return.LabelStatus.PENDING:
        return rma
    rma.label_status = status
    rma.label_error = error[:300]
    for name, value in label.items():
        setattr(rma, f"label_{name}", value)
    rma.save(update_fields=["label_status", "label_error", *(f"label_{n}" for n in label), "updated_at"])
    message = (
        f"Return label for {rma.number}: {rma.label_carrier} {rma.label_tracking_number}"
        if status == Return.LabelStatus.ISSUED
        else f"No return label for {rma.number}: {error}"
    )
    events.return_changed(rma, actor, what="label", message=message, data={"label_status": status})
    return rma
