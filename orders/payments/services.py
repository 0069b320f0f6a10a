"""Payment writes that other apps call (returns issues refunds; orders owns the payment)."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction

from oms.actor import Actor
from oms.errors import Conflict, NotFound

from .. import events
from ..models import Order, Payment


def payment_refundable(payment: Payment) -> Decimal:
    """Captured and not yet refunded: the most a refund against this payment may be."""
    return payment.amount_captured - payment.amount_refunded


@transaction.atomic
def payment_record_refund(
    *, payment_id: int, amount: Decimal, actor: Actor, gateway_reference: str = "", note: str = ""
) -> Payment:
    """The gateway refunded `amount` on this payment: move its refunded amount and status
    (through the payment state machine) and write the order's timeline entry."""
    order_id = Payment.objects.filter(pk=payment_id).values_list("order_id", flat=True).first()
    if order_id is None:
        raise NotFound(f"No payment {payment_id}.")
    order = Order.objects.select_for_update(of=("self",)).select_related("channel").get(pk=order_id)  # order first
    payment = Payment.objects.select_for_update().get(pk=payment_id)
    if amount <= 0:
        raise Conflict("A refund must be positive.", fields={"amount": "Must be > 0."})
    if amount > payment_refundable(payment):
        raise Conflict(
            f"Payment {payment.pk} has {payment_refundable(payment)} captured and not refunded; cannot refund {amount}.",
            fields={"amount": f"At most {payment_refundable(payment)}."},
        )
    payment.amount_refunded += amount
    payment.settle()
    payment.save(update_fields=["amount_refunded", "status"])
    events.payment_changed(
        order,
        actor,
        message=f"Refunded {amount} {order.currency} to {payment.method} {payment.reference}".rstrip()
        + (f" ({note})" if note else ""),
        data={
            "action": "refunded",
            "payment": payment.pk,
            "amount": str(amount),
            "gateway_reference": gateway_reference,
            "status": payment.status,
        },
    )
    return payment
