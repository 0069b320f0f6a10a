"""Reads for returns: the policy that applies, what may still be returned, what may be refunded."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from django.db.models import F, Max, Prefetch, Sum

from inventory.models import Channel
from orders.models import Fulfillment, FulfillmentStatus, Order, OrderLine, Payment, Shipment

from .models import (
    OPEN_RETURN_STATES,
    Condition,
    Refund,
    RefundStatus,
    Return,
    ReturnLine,
    ReturnPolicy,
    ReturnReceipt,
    ReturnReceiptLine,
)

BUILT_IN_POLICY = ReturnPolicy(window_days=30)  # used when the merchant configured none


def policy_for(channel: Channel) -> ReturnPolicy:
    """The channel's own policy, else the default one (no channel), else 30 days, no fees."""
    policies = {p.channel_id: p for p in ReturnPolicy.objects.filter(channel_id__in=[channel.pk, None])}
    return policies.get(channel.pk) or policies.get(None) or BUILT_IN_POLICY


def being_returned(lines: Iterable[OrderLine]) -> dict[int, int]:
    """Units of each line on open returns that have not arrived yet: {line_id: units}."""
    rows = (
        ReturnLine.objects.filter(order_line__in=[line.pk for line in lines], rma__status__in=OPEN_RETURN_STATES)
        .values("order_line_id")
        .annotate(units=Sum(F("quantity") - F("quantity_received") - F("quantity_not_returned")))
    )
    return {row["order_line_id"]: row["units"] for row in rows}


def returnable(lines: Iterable[OrderLine]) -> dict[int, int]:
    """Shipped, less already returned, less what open returns are bringing back."""
    lines = list(lines)
    pending = being_returned(lines)
    return {line.pk: line.quantity_shipped - line.quantity_returned - pending.get(line.pk, 0) for line in lines}


def handed_over_at(order: Order) -> datetime | None:
    """When the goods last reached or left for the customer: the return window starts there."""
    shipped = Shipment.objects.filter(fulfillment__order=order).aggregate(at=Max("created_at"))["at"]
    finished = Fulfillment.objects.filter(
        order=order,
        status__in=[FulfillmentStatus.SHIPPED, FulfillmentStatus.DELIVERED, FulfillmentStatus.PICKED_UP],
    ).aggregate(at=Max("updated_at"))["at"]
    times = [t for t in (shipped, finished) if t is not None]
    return max(times) if times else None


def units_credited(lines: Iterable[OrderLine]) -> dict[int, int]:
    """Units of each line whose value has already gone back to the customer (cancelled, or
    returned and credited), so the next credit continues the line's own rounding."""
    lines = list(lines)
    credited = {line.pk: line.quantity_cancelled for line in lines}
    rows = (
        ReturnReceiptLine.objects.filter(
            return_line__order_line__in=[line.pk for line in lines],
            condition__in=[Condition.SELLABLE, Condition.DAMAGED],
        )
        .values("return_line__order_line_id")
        .annotate(units=Sum("quantity"))
    )
    for row in rows:
        credited[row["return_line__order_line_id"]] += row["units"]
    return credited


def pending_refunds(payments: Iterable[Payment]) -> dict[int, Decimal]:
    rows = (
        Refund.objects.filter(payment__in=[p.pk for p in payments], status=RefundStatus.PENDING)
        .values("payment_id")
        .annotate(total=Sum("amount"))
    )
    return {row["payment_id"]: row["total"] for row in rows}


def refundable_by_payment(payments: list[Payment]) -> dict[int, Decimal]:
    """Captured, less refunded, less refunds still on their way: per payment, oldest first."""
    pending = pending_refunds(payments)
    return {
        p.pk: max(Decimal(0), p.amount_captured - p.amount_refunded - pending.get(p.pk, Decimal(0))) for p in payments
    }


def shipping_refunded(order: Order) -> bool:
    return ReturnReceipt.objects.filter(rma__order=order, shipping_refund__gt=0).exists()


def return_detail_queryset():
    return Return.objects.select_related(
        "order__channel", "order__customer", "location", "exchange_order"
    ).prefetch_related(
        Prefetch("lines", ReturnLine.objects.select_related("order_line", "reason")),
        Prefetch(
            "receipts",
            ReturnReceipt.objects.select_related("location").prefetch_related(
                Prefetch("lines", ReturnReceiptLine.objects.select_related("return_line"))
            ),
        ),
        Prefetch("refunds", Refund.objects.select_related("payment")),
    )
