"""Return labels for mail returns, bought from the carrier adapter (`orders/carriers/`).

A mail return asks for its label in its own transaction (an outbox task); the task calls the
carrier outside any transaction and records the label, or why there is none, on the return
and its order's timeline. The label goes from the customer (the order's shipping address) to
the return's location, with the carrier and service of the channel's return policy (or the
only active carrier). A cancelled or rejected return's unused label is voided. Polling the
carrier moves an authorised return to in transit once its parcel moves.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from django.db import transaction

from oms.actor import Actor
from oms.outbox import outbox_enqueue_task
from orders.carriers.adapters import (
    Address,
    CarrierError,
    CarrierRejected,
    CarrierUnavailable,
    LabelRequest,
    Parcel,
    adapter_for,
)
from orders.carriers.services import DEFAULT_UNIT_GRAMS
from orders.models import Carrier

from . import events
from .locks import return_for_update
from .models import Return, ReturnStatus
from .selectors import policy_for

log = logging.getLogger(__name__)
TASK = "returns.create_return_label"
VOID_TASK = "returns.void_return_label"
MOVING = {"in_transit", "out_for_delivery", "delivered"}


def label_request(rma: Return) -> None:
    """Ask for a label once the return is committed (call inside the return's transaction)."""
    rma.label_status = Return.LabelStatus.PENDING
    rma.save(update_fields=["label_status", "updated_at"])
    outbox_enqueue_task(TASK, return_id=rma.pk)


def label_void_request(rma: Return) -> None:
    """The return will not come: give its unused label back (inside the return's transaction)."""
    if rma.label_status == Return.LabelStatus.ISSUED:
        outbox_enqueue_task(VOID_TASK, return_id=rma.pk)


def return_carrier(rma: Return) -> tuple[Carrier | None, str]:
    """The carrier and service for this return's label: the channel policy's, else the only
    active carrier. (None, why) when there is none to ask."""
    policy = policy_for(rma.order.channel)
    carrier = policy.return_carrier if policy.pk and policy.return_carrier_id else None
    if carrier is None:
        active = list(Carrier.objects.filter(active=True)[:2])
        if len(active) != 1:
            return None, "No carrier for return labels: set one on the channel's return policy."
        carrier = active[0]
    if not carrier.active:
        return None, f"Carrier {carrier.code} is inactive: choose another on the channel's return policy."
    return carrier, policy.return_service or carrier.default_service


def _customer(order) -> Address | None:
    if order.is_pickup or not order.ship_line1:
        return None
    return Address(
        name=order.ship_name or order.customer.name,
        line1=order.ship_line1,
        line2=order.ship_line2,
        city=order.ship_city,
        region=order.ship_region,
        postal_code=order.ship_postal_code,
        country=order.ship_country,
    )


def _parcel(rma: Return) -> Parcel:
    grams = sum(
        (line.order_line.item.weight_grams or DEFAULT_UNIT_GRAMS) * line.quantity
        for line in rma.lines.select_related("order_line__item")
    )
    return Parcel(weight_grams=max(1, grams))


def label_create(*, return_id: int) -> Return:
    """The task body. Raises CarrierUnavailable for the caller to retry later."""
    actor = Actor.for_task(TASK)
    rma = Return.objects.select_related("order__channel", "order__customer", "location").get(pk=return_id)
    if rma.label_status != Return.LabelStatus.PENDING:
        return rma
    carrier, service = return_carrier(rma)
    ship_from = _customer(rma.order)
    why = (
        "" if carrier else service,
        "" if rma.location_id else "No location that accepts returns to send the parcel to.",
        "" if ship_from else "The order has no customer address to collect the parcel from.",
    )
    if any(why):
        return _record(return_id, actor, status=Return.LabelStatus.UNAVAILABLE, error=next(w for w in why if w))
    adapter = adapter_for(carrier)
    try:
        label = adapter.create_label(
            LabelRequest(
                ship_from=ship_from,
                ship_to=Address.of_location(rma.location),
                parcel=_parcel(rma),
                service=service,
                reference=rma.number,
            )
        )
    except CarrierRejected as exc:
        return _record(return_id, actor, status=Return.LabelStatus.FAILED, error=exc.message)
    recorded = _record(
        return_id,
        actor,
        status=Return.LabelStatus.ISSUED,
        carrier=carrier.code,
        service=label.service,
        tracking_number=label.tracking_number,
        format=label.label_format,
        data=label.label_data,
    )
    if recorded.label_status == Return.LabelStatus.VOIDED:  # cancelled meanwhile: not needed
        _void_quietly(carrier, label.tracking_number)
    return recorded


@transaction.atomic
def _record(return_id: int, actor: Actor, *, status: str, error: str = "", **label) -> Return:
    rma = return_for_update(return_id)
    if rma.label_status != Return.LabelStatus.PENDING:
        return rma
    if status == Return.LabelStatus.ISSUED and rma.status not in (ReturnStatus.REQUESTED, ReturnStatus.AUTHORISED):
        status = Return.LabelStatus.VOIDED  # the return ended while the label was bought: the caller voids it
    rma.label_status = status
    rma.label_error = error[:300]
    for name, value in label.items():
        setattr(rma, f"label_{name}", value)
    rma.save(update_fields=["label_status", "label_error", *(f"label_{n}" for n in label), "updated_at"])
    if status == Return.LabelStatus.ISSUED:
        message = f"Return label for {rma.number}: {rma.label_carrier} {rma.label_tracking_number}"
    elif status == Return.LabelStatus.VOIDED:
        message = f"Return label {rma.label_tracking_number} voided: return {rma.number} is {rma.status}"
    else:
        message = f"No return label for {rma.number}: {error}"
    events.return_changed(rma, actor, what="label", message=message, data={"label_status": status})
    return rma


def _void_quietly(carrier: Carrier, tracking_number: str) -> bool:
    try:
        adapter_for(carrier).void_label(tracking_number)
    except CarrierError as exc:
        log.warning("could not void return label %s: %s", tracking_number, exc.message)
        return False
    return True


def label_void(*, return_id: int) -> Return:
    """The task body: void the label of a return that will not come (if the parcel has not moved)."""
    rma = Return.objects.select_related("order").get(pk=return_id)
    carrier = Carrier.objects.filter(code=rma.label_carrier).first()
    if rma.label_status != Return.LabelStatus.ISSUED or carrier is None:
        return rma
    if not _void_quietly(carrier, rma.label_tracking_number):
        return rma
    with transaction.atomic():
        rma = return_for_update(return_id)
        if rma.label_status == Return.LabelStatus.ISSUED:
            rma.label_status = Return.LabelStatus.VOIDED
            rma.save(update_fields=["label_status", "updated_at"])
            events.return_changed(
                rma,
                Actor.for_task(VOID_TASK),
                what="label",
                message=f"Return label {rma.label_tracking_number} voided",
                data={"label_status": rma.label_status},
            )
    return rma


def labels_poll(*, batch: int = 200) -> int:
    """Ask the carriers about authorised returns' labels; a parcel that moved puts its return
    in transit. Returns how many moved. One carrier's outage does not stop the others."""
    from .services import return_mark_in_transit

    waiting = list(
        Return.objects.filter(status=ReturnStatus.AUTHORISED, label_status=Return.LabelStatus.ISSUED)
        .order_by("updated_at")
        .values_list("pk", "label_carrier", "label_tracking_number")[:batch]
    )
    by_carrier: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for pk, code, tracking_number in waiting:
        by_carrier[code].append((pk, tracking_number))
    moved = 0
    actor = Actor.for_task("returns.poll_return_labels")
    for carrier in Carrier.objects.filter(code__in=by_carrier, active=True):
        rows = by_carrier[carrier.code]
        try:
            results = adapter_for(carrier).track([tn for _, tn in rows])
        except CarrierUnavailable as exc:
            log.warning("return label polling: %s unavailable: %s", carrier.code, exc.message)
            continue
        for pk, tracking_number in rows:
            result = results.get(tracking_number)
            if result is not None and result.status in MOVING:
                return_mark_in_transit(return_id=pk, actor=actor, carrier=carrier.code, tracking_number=tracking_number)
                moved += 1
    return moved
