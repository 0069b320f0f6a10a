"""Shipped orders to return, and helpers to look at what a return changed."""

from decimal import Decimal

import pytest

from inventory.models import Location, Stock, StockMovement
from oms.models import OutboxMessage
from orders.models import Fulfillment, Order, OrderEvent, OrderLine, Payment
from returns.models import Appeasement, Refund, Return, ReturnLine, ReturnPolicy, ReturnReceipt


@pytest.fixture
def returns_network(stocked):
    """DC1 and STORE1 take returns; DC2 does not."""
    Location.objects.filter(code__in=["DC1", "STORE1"]).update(accepts_returns=True)
    return stocked


@pytest.fixture
def ship_order(api, order_body, returns_network):
    """Capture an order through the API, accept and ship all of it; returns the order JSON."""

    def do(**changes):
        r = api.post("/api/v1/orders/", order_body(**changes), format="json")
        assert r.status_code == 201, r.content
        number = r.json()["number"]
        for f in Fulfillment.objects.filter(order__number=number):
            assert api.post(f"/api/v1/fulfillments/{f.pk}/accept/").status_code == 200
            r = api.post(
                f"/api/v1/fulfillments/{f.pk}/ship/", {"carrier": "UPS", "tracking_number": f"1Z{f.pk}"}, format="json"
            )
            assert r.status_code == 200, r.content
        return api.get(f"/api/v1/orders/{number}/").json()

    return do


@pytest.fixture
def shipped(ship_order):
    """The base order (A × 3 at 20.00, B × 1 at 10.00, tax 7.00, shipping 5.00), all shipped
    from DC1 and captured in full (82.00)."""
    order = ship_order()
    assert order["status"] == "shipped"
    assert order["payments"][0]["amount_captured"] == "82.00"
    return order


@pytest.fixture
def web_policy(returns_network):
    return ReturnPolicy.objects.create(
        channel=returns_network["web"],
        window_days=30,
        restocking_fee_percent=Decimal("10"),
        damaged_deduction_percent=Decimal("50"),
        refund_shipping="merchant_fault",
    )


def line_of(order: dict, sku: str) -> dict:
    return next(line for line in order["lines"] if line["sku"] == sku)


def returns_world():
    """Everything a return request or receipt can change, to assert a rejected one changed nothing."""
    return (
        sorted(Return.objects.values_list("id", "status", "refund_amount")),
        sorted(ReturnLine.objects.values_list("id", "quantity_received", "quantity_not_returned")),
        ReturnReceipt.objects.count(),
        sorted(Refund.objects.values_list("id", "status")),
        Appeasement.objects.count(),
        sorted(OrderLine.objects.values_list("id", "quantity_returned")),
        sorted(Payment.objects.values_list("id", "amount_refunded", "status")),
        sorted(Order.objects.values_list("number", "status")),
        OrderEvent.objects.count(),
        OutboxMessage.objects.count(),
        sorted(Stock.objects.values_list("location_id", "item_id", "on_hand", "reserved")),
        StockMovement.objects.count(),
    )


@pytest.fixture
def nothing_changes(db):
    class Guard:
        def __enter__(self):
            self.before = returns_world()
            return self

        def __exit__(self, *exc):
            if exc[0] is None:
                assert returns_world() == self.before, "a rejected request changed something"

    return Guard


@pytest.fixture(autouse=True)
def _return_defaults(db):
    """Transactional tests flush the tables the data migration filled: put the defaults back."""
    from returns.defaults import ensure_defaults

    ensure_defaults()
