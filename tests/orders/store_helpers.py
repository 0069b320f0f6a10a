"""Helpers for the store, SLA and pickup tests: orders placed through the API, associates."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.models import User

from inventory.models import Stock
from oms.roles import STORE_ASSOCIATE, ensure_groups
from orders.models import Fulfillment, Order, OrderEvent, Payment, StoreAssociate


def pickup_order(api, order_body, *, quantity: int = 2, external_id: str = "P-1", prepaid: bool = False):
    """A pickup order for `quantity` × A at STORE1, routed (its fulfilment is at STORE1)."""
    total = f"{10 * quantity}.00"
    body = order_body(
        external_id=external_id,
        fulfillment_method="pickup",
        pickup_location="STORE1",
        shipping_address=None,
        lines=[{"sku": "A", "quantity": quantity, "unit_price": "10.00"}],
        payment={
            "method": "card",
            "reference": "pi_pickup",
            "amount_authorized": total,
            **({"amount_captured": total} if prepaid else {}),
        },
        tax_total="0",
        shipping_total="0",
    )
    response = api.post("/api/v1/orders/", body, format="json")
    assert response.status_code == 201, response.content
    return Fulfillment.objects.select_related("order", "location").get(order__number=response.json()["number"])


def ship_order(api, order_body, *, external_id: str = "S-1", **changes) -> Order:
    response = api.post("/api/v1/orders/", order_body(external_id=external_id, **changes), format="json")
    assert response.status_code == 201, response.content
    return Order.objects.get(number=response.json()["number"])


def associate(username: str, *locations, password: str = "pw-store-1") -> User:
    groups = ensure_groups()
    user = User.objects.create_user(username, f"{username}@example.com", password)
    user.groups.add(groups[STORE_ASSOCIATE])
    for location in locations:
        StoreAssociate.objects.create(user=user, location=location)
    return user


def counters(location_code: str, sku: str) -> tuple[int, int]:
    row = Stock.objects.get(location__code=location_code, item__sku=sku)
    return row.on_hand, row.reserved


def payment(order_number: str) -> tuple[str, Decimal, Decimal, Decimal]:
    p = Payment.objects.get(order__number=order_number)
    return p.status, p.amount_captured, p.amount_voided, p.amount_refunded


def events(order_number: str, type: str | None = None) -> list[OrderEvent]:
    qs = OrderEvent.objects.filter(order__number=order_number).order_by("id")
    return list(qs.filter(type=type) if type else qs)


def state(fulfillment: Fulfillment) -> tuple:
    """Everything a refused store action must leave alone."""
    f = Fulfillment.objects.get(pk=fulfillment.pk)
    order = f.order
    return (
        f.status,
        f.updated_at,
        order.status,
        sorted(Stock.objects.values_list("location_id", "item_id", "on_hand", "reserved")),
        list(Payment.objects.filter(order=order).values_list("amount_captured", "amount_voided", "amount_refunded")),
        OrderEvent.objects.filter(order=order).count(),
        list(f.lines.values_list("quantity", "quantity_rejected", "quantity_shipped")),
    )
