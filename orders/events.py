"""The order timeline: one function per kind of entry. Each writes the OrderEvent and, for
events integrators subscribe to, the outbox row, in the caller's transaction."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from oms.actor import Actor
from oms.batching import insert
from oms.fastsql import new
from oms.outbox import outbox_publish_event

from .models import CustomerNotification, Order, OrderEvent
from .notifications import notify_customer

REROUTED = "fulfillment.rerouted"  # its data names the location routing must not go back to


def order_summary(order: Order) -> dict[str, Any]:
    return {
        "order": order.number,
        "channel": order.channel.code,
        "external_id": order.external_id,
        "status": order.status,
        "grand_total": str(order.grand_total),
        "currency": order.currency,
    }


def _record(
    order: Order,
    type: str,
    message: str,
    actor: Actor,
    data: dict | None = None,
    webhook: str | None = None,
    webhook_extra: dict | None = None,
) -> OrderEvent:
    """`webhook_extra` goes to subscribers only, not onto the timeline (e.g. the pickup code,
    which the customer needs but store staff reading the timeline should not see)."""
    event = insert(new(OrderEvent, order=order, type=type, message=message[:500], data=data or {}, **actor.as_fields()))
    written = getattr(order, "_new_events", None)
    if written is not None:  # capture answers with the events it wrote, without reading them back
        written.append(event)
    if webhook:
        outbox_publish_event(
            webhook,
            {**order_summary(order), **(data or {}), **(webhook_extra or {})},
            ordering_key=f"order:{order.number}",
        )
    return event


def order_created(order: Order, actor: Actor, *, backordered: dict[str, int]) -> OrderEvent:
    lines = sum(1 for _ in order.lines.all())
    message = f"Order captured from {order.channel.code} ({lines} line(s), {order.grand_total} {order.currency})"
    if backordered:
        message += "; backordered: " + ", ".join(f"{sku} × {q}" for sku, q in sorted(backordered.items()))
    return _record(
        order,
        "order.created",
        message,
        actor,
        {"backordered": backordered},
        webhook="order.created",
    )


def stock_reserved(order: Order, actor: Actor, *, allocations: list[dict]) -> OrderEvent:
    where = ", ".join(f"{a['sku']} × {a['quantity']} @ {a['location']}" for a in allocations)
    return _record(order, "stock.reserved", f"Stock held: {where}", actor, {"allocations": allocations})


def order_held(order: Order, actor: Actor, *, hold_type: str, reason: str, rule: str | None = None) -> OrderEvent:
    data = {"hold_type": hold_type, "reason": reason, "rule": rule}
    by = f" by rule '{rule}'" if rule else ""
    return _record(
        order,
        "order.held",
        f"Held for {hold_type.replace('_', ' ')}{by}: {reason}",
        actor,
        data,
        webhook="order.held",
    )


def order_released(order: Order, actor: Actor, *, hold_types: list[str], note: str) -> OrderEvent:
    message = f"Released {', '.join(hold_types)} hold(s)" + (f": {note}" if note else "")
    return _record(
        order,
        "order.released",
        message,
        actor,
        {"hold_types": hold_types, "note": note},
        webhook="order.released",
    )


def order_cancelled(
    order: Order, actor: Actor, *, reason: str, lines: list[dict], full: bool, refund: dict
) -> OrderEvent:
    what = (
        "Order cancelled" if full else "Cancelled " + ", ".join(f"{line['sku']} × {line['quantity']}" for line in lines)
    )
    data = {"reason": reason, "lines": lines, "partial": not full, **refund}
    return _record(order, "order.cancelled", f"{what}: {reason}", actor, data, webhook="order.cancelled")


def address_changed(order: Order, actor: Actor, *, before: dict, after: dict) -> OrderEvent:
    return _record(
        order,
        "order.address_changed",
        f"Shipping address changed to {after['line1']}, {after['city']}",
        actor,
        {"before": before, "after": after},
        webhook="order.updated",
    )


def note_added(order: Order, actor: Actor, *, text: str) -> OrderEvent:
    return _record(order, "note", text, actor, {"text": text})


def payment_changed(order: Order, actor: Actor, *, message: str, data: dict) -> OrderEvent:
    return _record(order, "payment." + data.get("action", "updated"), message, actor, data)


def order_routed(
    order: Order, actor: Actor, *, summary: str, fulfillments: list[dict], unsourced: dict[str, int]
) -> OrderEvent:
    message = summary or "Routed"
    if unsourced:
        message += "; not sourced: " + ", ".join(f"{sku} × {q}" for sku, q in sorted(unsourced.items()))
    return _record(
        order,
        "order.routed",
        message,
        actor,
        {"fulfillments": fulfillments, "unsourced": unsourced},
        webhook="order.routed",
    )


def fulfillment_changed(order: Order, actor: Actor, *, fulfillment, what: str) -> OrderEvent:
    return _record(
        order,
        f"fulfillment.{what}",
        f"Fulfilment {fulfillment.pk} at {fulfillment.location.code} {what}",
        actor,
        {"fulfillment": fulfillment.pk, "location": fulfillment.location.code},
    )


def fulfillment_rejected(order: Order, actor: Actor, *, fulfillment, reason: str, lines: list[dict]) -> OrderEvent:
    what = ", ".join(f"{line['sku']} × {line['quantity']}" for line in lines)
    return _record(
        order,
        "fulfillment.rejected",
        f"{fulfillment.location.code} rejected {what}: {reason}",
        actor,
        {"fulfillment": fulfillment.pk, "location": fulfillment.location.code, "reason": reason, "lines": lines},
    )


def fulfillment_shipped(order: Order, actor: Actor, *, fulfillment, shipment, units: int, captured) -> OrderEvent:
    tracking = f" ({shipment.carrier} {shipment.tracking_number})".rstrip() if shipment.tracking_number else ""
    event = _record(
        order,
        "fulfillment.shipped",
        f"{units} unit(s) shipped from {fulfillment.location.code}{tracking}; {captured} captured",
        actor,
        {
            "fulfillment": fulfillment.pk,
            "location": fulfillment.location.code,
            "shipment": shipment.pk,
            "carrier": shipment.carrier,
            "tracking_number": shipment.tracking_number,
            "units": units,
            "captured": str(captured),
        },
        webhook="fulfillment.shipped",
    )
    notify_customer(order, CustomerNotification.Kind.SHIPPED, fulfillment=fulfillment, shipment=shipment)
    return event


def fulfillment_ready(order: Order, actor: Actor, *, fulfillment) -> OrderEvent:
    expires = fulfillment.pickup_expires_at.isoformat() if fulfillment.pickup_expires_at else None
    event = _record(
        order,
        "fulfillment.ready_for_pickup",
        f"Ready for pickup at {fulfillment.location.code}"
        + (f"; collect by {fulfillment.pickup_expires_at:%Y-%m-%d %H:%M} UTC" if expires else ""),
        actor,
        {"fulfillment": fulfillment.pk, "location": fulfillment.location.code, "pickup_expires_at": expires},
        webhook="fulfillment.ready_for_pickup",
        webhook_extra={"pickup_code": fulfillment.pickup_code},
    )
    notify_customer(order, CustomerNotification.Kind.READY_FOR_PICKUP, fulfillment=fulfillment)
    return event


def fulfillment_picked_up(order: Order, actor: Actor, *, fulfillment, code_checked: bool) -> OrderEvent:
    how = "pickup code checked" if code_checked else "pickup code not checked by the OMS (verified by the caller)"
    return _record(
        order,
        "fulfillment.picked_up",
        f"Collected at {fulfillment.location.code} ({how})",
        actor,
        {"fulfillment": fulfillment.pk, "location": fulfillment.location.code, "pickup_code_checked": code_checked},
        webhook="fulfillment.picked_up",
    )


def fulfillment_delivered(order: Order, actor: Actor, *, fulfillment) -> OrderEvent:
    event = _record(
        order,
        "fulfillment.delivered",
        f"Fulfilment {fulfillment.pk} from {fulfillment.location.code} delivered",
        actor,
        {"fulfillment": fulfillment.pk, "location": fulfillment.location.code},
        webhook="fulfillment.delivered",
    )
    notify_customer(order, CustomerNotification.Kind.DELIVERED, fulfillment=fulfillment)
    return event


def fulfillment_late(order: Order, actor: Actor, *, fulfillment, sla: str, message: str) -> OrderEvent:
    """`sla` is "accept" (not accepted in time) or "due" (not picked by the due time)."""
    return _record(
        order,
        "fulfillment.late",
        message,
        actor,
        {
            "fulfillment": fulfillment.pk,
            "location": fulfillment.location.code,
            "sla": sla,
            "status": fulfillment.status,
            "due_at": fulfillment.due_at.isoformat() if fulfillment.due_at else None,
        },
        webhook="fulfillment.late",
    )


def fulfillment_expired(
    order: Order, actor: Actor, *, fulfillment, reason: str, lines: list[dict], refund: dict
) -> OrderEvent:
    what = ", ".join(f"{line['sku']} × {line['quantity']}" for line in lines) or "nothing"
    money = [f"{refund[k]} {k}" for k in ("voided", "refunded") if Decimal(refund[k])]
    return _record(
        order,
        "fulfillment.expired",
        f"Pickup at {fulfillment.location.code} expired, {reason}: cancelled {what}, stock released"
        + (f", {' and '.join(money)}" if money else ""),
        actor,
        {
            "fulfillment": fulfillment.pk,
            "location": fulfillment.location.code,
            "reason": reason,
            "lines": lines,
            **refund,
        },
        webhook="fulfillment.expired",
    )


def _shipment_data(fulfillment, shipment) -> dict:
    return {
        "fulfillment": fulfillment.pk,
        "location": fulfillment.location.code,
        "shipment": shipment.pk,
        "carrier": shipment.carrier,
        "service": shipment.service,
        "tracking_number": shipment.tracking_number,
    }


# Tracking statuses integrators are told about, as webhook event types.
TRACKING_WEBHOOKS = {
    "in_transit": "shipment.in_transit",
    "out_for_delivery": "shipment.out_for_delivery",
    "delivered": "shipment.delivered",
    "exception": "shipment.exception",
}


def shipment_tracking(
    order: Order, actor: Actor, *, fulfillment, shipment, status: str, description: str, location: str, occurred_at
) -> OrderEvent:
    """The parcel's tracking status changed (one entry per change, not per scan)."""
    where = f" ({location})" if location else ""
    return _record(
        order,
        f"shipment.{status}",
        f"Shipment {shipment.tracking_number or shipment.pk} {status.replace('_', ' ')}: {description}{where}",
        actor,
        {
            **_shipment_data(fulfillment, shipment),
            "tracking_status": status,
            "description": description,
            "where": location,
            "occurred_at": occurred_at.isoformat(),
        },
        webhook=TRACKING_WEBHOOKS.get(status),
    )


def shipment_label(
    order: Order, actor: Actor, *, fulfillment, shipment, what: str, old_tracking_number: str = ""
) -> OrderEvent:
    """A label was voided or replaced (buying the first one is part of `fulfillment.shipped`)."""
    data = {**_shipment_data(fulfillment, shipment), "old_tracking_number": old_tracking_number}
    if what == "voided":
        message = f"Label {shipment.carrier} {shipment.tracking_number} voided"
    else:
        message = f"Label {shipment.carrier} {old_tracking_number} replaced by {shipment.tracking_number}"
    return _record(order, f"shipment.label_{what}", message, actor, data)


def order_completed(order: Order, actor: Actor) -> OrderEvent:
    return _record(order, "order.completed", "Order completed", actor, {}, webhook="order.completed")


def fulfillment_rerouted(order: Order, actor: Actor, *, fulfillment, reason: str, lines: list[dict]) -> OrderEvent:
    what = ", ".join(f"{line['sku']} × {line['quantity']}" for line in lines)
    return _record(
        order,
        REROUTED,
        f"Re-routed {what} away from {fulfillment.location.code}: {reason}",
        actor,
        {
            "fulfillment": fulfillment.pk,
            "location": fulfillment.location.code,
            "location_id": fulfillment.location_id,
            "reason": reason,
            "lines": lines,
        },
    )


def routing_requested(order: Order, actor: Actor) -> OrderEvent:
    return _record(order, "routing.requested", "Routing asked to try again", actor, {})
