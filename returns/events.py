"""Timeline entries for returns, refunds and appeasements, written on the order they concern
(one place to read everything that happened to an order), plus the outbox rows for the events
integrators subscribe to: `return.created`, `return.received`, `refund.issued`,
`appeasement.issued`. Each function runs in the caller's transaction."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from oms.actor import Actor
from oms.outbox import outbox_publish_event
from orders.events import order_summary
from orders.models import Order, OrderEvent

from .models import Appeasement, Refund, Return, ReturnStatus


def return_summary(rma: Return) -> dict[str, Any]:
    return {
        "id": rma.pk,
        "number": rma.number,
        "status": rma.status,
        "method": rma.method,
        "refund_amount": str(rma.refund_amount),
    }


def _record(
    order: Order, type: str, message: str, actor: Actor, data: dict, *, webhook: str | None = None
) -> OrderEvent:
    event = OrderEvent.objects.create(order=order, type=type, message=message[:500], data=data, **actor.as_fields())
    if webhook:
        outbox_publish_event(webhook, {**order_summary(order), **data}, ordering_key=f"order:{order.number}")
    return event


def _units(lines: list[dict]) -> str:
    return ", ".join(f"{line['sku']} × {line['quantity']}" for line in lines)


def return_created(rma: Return, actor: Actor, *, lines: list[dict], exchange: dict | None) -> OrderEvent:
    message = f"Return {rma.number} ({rma.method}) requested: {_units(lines)}"
    if rma.status == ReturnStatus.AUTHORISED:
        message += "; authorised"
    if rma.window_overridden_by:
        message += f"; window overridden by {rma.window_overridden_by}: {rma.window_override_reason}"
    if exchange:
        message += f"; exchange order {exchange['order']}"
    data = {"return": return_summary(rma), "lines": lines, "exchange": exchange}
    return _record(rma.order, "return.created", message, actor, data, webhook="return.created")


def return_changed(rma: Return, actor: Actor, *, what: str, message: str, data: dict | None = None) -> OrderEvent:
    """authorised, rejected, cancelled, in_transit, closed, refunded, label …: timeline only."""
    return _record(rma.order, f"return.{what}", message, actor, {"return": return_summary(rma), **(data or {})})


def return_received(rma: Return, actor: Actor, *, location: str, lines: list[dict], refund: dict) -> OrderEvent:
    what = ", ".join(
        f"{line['sku']} × {line['quantity']} {line['condition']} → {line['disposition']}" for line in lines
    )
    message = f"Return {rma.number} received at {location}: {what}; refund {refund['amount']}"
    data = {"return": return_summary(rma), "location": location, "lines": lines, "refund": refund}
    return _record(rma.order, "return.received", message, actor, data, webhook="return.received")


def _refund_data(refund: Refund) -> dict:
    return {
        "refund": {
            "id": refund.pk,
            "amount": str(refund.amount),
            "currency": refund.currency,
            "payment": refund.payment_id,
            "status": refund.status,
            "gateway_reference": refund.gateway_reference,
            "return": refund.rma.number if refund.rma_id else None,
            "appeasement": refund.appeasement_id,
        }
    }


def refund_requested(refund: Refund, actor: Actor) -> OrderEvent:
    return _record(
        refund.order,
        "refund.requested",
        f"Refund of {refund.amount} {refund.currency} sent to the payment gateway",
        actor,
        _refund_data(refund),
    )


def refund_issued(refund: Refund, actor: Actor) -> OrderEvent:
    return _record(
        refund.order,
        "refund.issued",
        f"Refund of {refund.amount} {refund.currency} issued ({refund.gateway_reference})",
        actor,
        _refund_data(refund),
        webhook="refund.issued",
    )


def refund_failed(refund: Refund, actor: Actor) -> OrderEvent:
    return _record(
        refund.order,
        "refund.failed",
        f"Refund of {refund.amount} {refund.currency} failed: {refund.failure_reason}",
        actor,
        _refund_data(refund),
    )


def _appeasement_data(a: Appeasement) -> dict:
    return {
        "appeasement": {
            "id": a.pk,
            "kind": a.kind,
            "amount": str(a.amount),
            "currency": a.currency,
            "reason": a.reason.code,
            "status": a.status,
            "credit_reference": a.credit_reference,
            "requested_by": a.actor_label,
            "decided_by": a.decided_by,
        }
    }


def appeasement_requested(a: Appeasement, actor: Actor, *, limit: Decimal | None) -> OrderEvent:
    return _record(
        a.order,
        "appeasement.requested",
        f"Appeasement of {a.amount} {a.currency} ({a.get_kind_display().lower()}, {a.reason.name}) "
        f"waits for approval: above the requester's limit of {limit}",
        actor,
        _appeasement_data(a),
    )


def appeasement_issued(a: Appeasement, actor: Actor) -> OrderEvent:
    what = f"store credit {a.credit_reference}" if a.kind == Appeasement.Kind.CREDIT else "refund"
    approved = f", approved by {a.decided_by}" if a.decided_by else ""
    return _record(
        a.order,
        "appeasement.issued",
        f"Appeasement of {a.amount} {a.currency} as {what} ({a.reason.name}){approved}",
        actor,
        _appeasement_data(a),
        webhook="appeasement.issued",
    )


def appeasement_declined(a: Appeasement, actor: Actor) -> OrderEvent:
    return _record(
        a.order,
        "appeasement.declined",
        f"Appeasement of {a.amount} {a.currency} declined by {a.decided_by}: {a.decision_note}",
        actor,
        _appeasement_data(a),
    )
