"""Capture answers from what it has just written (no read-back): the 201 body must be exactly
what GET /orders/{number}/ answers, in every shape of capture, and the statement count stays low."""

import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orders.models import HoldRule, HoldType, Order

pytestmark = pytest.mark.usefixtures("no_routing")


def same_as_detail(api, body):
    r = api.post("/api/v1/orders/", body, format="json")
    assert r.status_code == 201, r.content
    answer = r.json()
    detail = api.get(f"/api/v1/orders/{answer['number']}/")
    assert answer == detail.json()
    return answer


def test_plain_capture(api, order_body, stocked):
    answer = same_as_detail(api, order_body())
    assert [e["type"] for e in answer["events"]] == ["stock.reserved", "order.created"]
    assert answer["lines"][0]["allocations"] == [{"location": "DC1", "quantity": 3, "provisional": True}]


def test_ship_to_is_the_answers_address_without_coordinates(api, order_body, stocked):
    answer = same_as_detail(api, order_body(external_id="W-addr"))
    order = Order.objects.get(number=answer["number"])
    coordinates = ("latitude", "longitude")
    assert order.ship_to() == {k: v for k, v in answer["shipping_address"].items() if k not in coordinates}
    assert order.ship_to()["line1"] and order.ship_to()["country"]
    order.fulfillment_method = Order.Method.PICKUP
    assert order.ship_to() is None


def test_capture_with_hold_rules(api, order_body, stocked):
    HoldRule.objects.create(
        name="big",
        condition=HoldRule.Condition.ORDER_TOTAL_ABOVE,
        amount=Decimal("50"),
        hold_type=HoldType.FRAUD_REVIEW,
    )
    HoldRule.objects.create(
        name="new", condition=HoldRule.Condition.NEW_CUSTOMER_ABOVE, amount=Decimal("1"), hold_type=HoldType.MANUAL
    )
    answer = same_as_detail(api, order_body())
    assert answer["status"] == "on_hold"
    assert [h["type"] for h in answer["holds"]] == ["fraud_review", "manual"]
    answer = same_as_detail(api, order_body(external_id="W-1002"))  # a returning customer now
    assert [h["type"] for h in answer["holds"]] == ["fraud_review"]


def test_backordered_pickup_cart_and_no_payment(api, order_body, stocked):
    same_as_detail(
        api,
        order_body(
            external_id="W-3",
            fulfillment_method="pickup",
            pickup_location="STORE1",
            shipping_address=None,
            lines=[{"sku": "A", "quantity": 1, "unit_price": "20.00", "discount_amount": "2.00"}],
            tax_total="1.00",
            shipping_total="0.00",
            payment={"method": "card", "amount_authorized": "19.00", "amount_captured": "19.00"},
        ),
    )
    r = api.post(
        "/api/v1/reservations/",
        {"channel": "web", "key": "cart-1", "lines": [{"sku": "B", "quantity": 2}]},
        format="json",
    )
    assert r.status_code == 201
    same_as_detail(api, order_body(external_id="W-4", reservation_key="cart-1"))

    same_as_detail(
        api,
        order_body(
            external_id="W-2",
            allow_backorder=True,
            lines=[
                {"sku": "A", "quantity": 9, "unit_price": "1.00"},
                {"sku": "B", "quantity": 1, "unit_price": "2.50"},
            ],
            payment=None,
            tax_total="0.00",
            shipping_total="0.00",
        ),
    )


# Statements per capture (new customer, with Idempotency-Key), every one counted: on PostgreSQL
# the statements fastsql runs on its own psycopg cursors (the channel plan among them) are logged
# as well.
BUDGET = {"postgresql": 11, "sqlite": 18}


def test_statements_per_capture(api, order_body, stocked):
    """What a capture costs in SQL (new customer, with Idempotency-Key): a guard against the
    read-backs and repeated look-ups coming back."""
    api.post("/api/v1/orders/", order_body(external_id="warm"), format="json")  # key, channel cached
    with CaptureQueriesContext(connection) as queries:
        r = api.post(
            "/api/v1/orders/",
            order_body(external_id="W-9", customer={"email": "new@example.com"}),
            format="json",
            headers={"Idempotency-Key": "k-9"},
        )
    assert r.status_code == 201, r.content
    statements = [q["sql"] for q in queries.captured_queries]
    assert len(statements) <= BUDGET[connection.vendor], "\n".join(statements)
    writes = [re.findall(r'INSERT INTO "?(\w+)"?', sql) for sql in statements]
    # Each table's rows go in with one statement: the two timeline entries, the three outbox
    # messages, the lines, their allocations and the ledger rows.
    held = [
        "orders_orderevent",
        "oms_outboxmessage",
        "orders_orderline",
        "orders_allocation",
        "inventory_stockmovement",
    ]
    for table in held:
        assert sum(tables.count(table) for tables in writes) == 1, (table, writes)
    if connection.vendor == "postgresql":  # ... and all of those in one statement
        assert any(set(held) <= set(tables) for tables in writes), writes
