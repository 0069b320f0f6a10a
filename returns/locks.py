"""Row locks for returns, always taken in one order so concurrent writers queue instead of
deadlocking: the order first (as every orders service does), then its lines by pk, then the
return, its lines, payments and refunds."""

from __future__ import annotations

from oms.errors import NotFound
from orders.models import Order, OrderLine, Payment

from .models import Appeasement, Return


def order_for_update(*, pk: int | None = None, number: str | None = None) -> Order:
    qs = Order.objects.select_for_update(of=("self",)).select_related("channel", "customer", "pickup_location")
    order = qs.filter(pk=pk).first() if pk is not None else qs.filter(number=number).first()
    if order is None:
        raise NotFound(f"No order {number or pk}.", fields={"order": "Unknown order."})
    return order


def order_lines_for_update(order: Order) -> list[OrderLine]:
    return list(OrderLine.objects.select_for_update().filter(order=order).order_by("pk"))


def return_for_update(pk: int) -> Return:
    """Lock the return's order, then the return (the one lock order)."""
    order_id = Return.objects.filter(pk=pk).values_list("order_id", flat=True).first()
    if order_id is None:
        raise NotFound(f"No return {pk}.")
    order_for_update(pk=order_id)
    return (
        Return.objects.select_for_update(of=("self",))
        .select_related("order__channel", "order__customer", "location")
        .get(pk=pk)
    )


def payments_for_update(order: Order) -> list[Payment]:
    return list(Payment.objects.select_for_update().filter(order=order).order_by("pk"))


def appeasement_for_update(pk: int) -> Appeasement:
    order_id = Appeasement.objects.filter(pk=pk).values_list("order_id", flat=True).first()
    if order_id is None:
        raise NotFound(f"No appeasement {pk}.")
    order_for_update(pk=order_id)
    return Appeasement.objects.select_for_update(of=("self",)).select_related("order__channel", "reason").get(pk=pk)
