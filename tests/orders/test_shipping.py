"""Shipping and pickup: stock committed, payment captured, order status follows, idempotent."""

from decimal import Decimal

import pytest

from inventory.models import Stock
from inventory.selectors import ledger_mismatches
from orders.models import Fulfillment, Order, Payment, Shipment
from tests.factories import stock

pytestmark = pytest.mark.django_db(transaction=True)  # routing runs after commit


def counters(loc, sku):
    s = Stock.objects.get(location__code=loc, item__sku=sku)
    return s.on_hand, s.reserved


@pytest.fixture
def routed(api, order_body, stocked):
    number = api.post("/api/v1/orders/", order_body(), format="json").json()["number"]
    fulfillment = Fulfillment.objects.get(order__number=number)
    return number, fulfillment


def test_partial_then_full_shipment_commits_stock_captures_payment_and_completes(api, routed):
    number, f = routed
    a, b = (fl.line_id for fl in f.lines.order_by("id"))
    assert api.post(f"/api/v1/fulfillments/{f.pk}/accept/").status_code == 200
    r = api.post(
        f"/api/v1/fulfillments/{f.pk}/ship/",
        {"carrier": "UPS", "tracking_number": "1Z1", "reference": "S-1", "lines": [{"line_id": a, "quantity": 2}]},
        format="json",
    )
    assert r.status_code == 200, r.content
    assert r.json()["status"] == "accepted"
    assert counters("DC1", "A") == (3, 1)
    order = api.get(f"/api/v1/orders/{number}/").json()
    assert order["status"] == "partially_shipped"
    assert [line["quantity_shipped"] for line in order["lines"]] == [2, 0]
    # 2 of 3 A: (60 + 6 tax) × 2/3 = 44.00, plus shipping 5.00 with the first shipment
    assert order["payments"][0]["amount_captured"] == "49.00"
    # the same shipment again is not shipped twice
    again = api.post(
        f"/api/v1/fulfillments/{f.pk}/ship/",
        {"carrier": "UPS", "tracking_number": "1Z1", "reference": "S-1", "lines": [{"line_id": a, "quantity": 2}]},
        format="json",
    )
    assert again.status_code == 200
    assert counters("DC1", "A") == (3, 1)
    r = api.post(f"/api/v1/fulfillments/{f.pk}/ship/", {"carrier": "UPS", "tracking_number": "1Z2"}, format="json")
    assert r.json()["status"] == "shipped"
    assert counters("DC1", "A") == (2, 0) and counters("DC1", "B") == (4, 0)
    order = api.get(f"/api/v1/orders/{number}/").json()
    assert order["status"] == "shipped"
    payment = Payment.objects.get(order__number=number)
    assert (payment.status, payment.amount_captured) == ("captured", Decimal("82.00"))
    assert Shipment.objects.filter(fulfillment=f).count() == 2
    r = api.post(f"/api/v1/fulfillments/{f.pk}/deliver/")
    assert r.json()["status"] == "delivered"
    assert Order.objects.get(number=number).status == "completed"
    types = [e["type"] for e in api.get(f"/api/v1/orders/{number}/").json()["events"]]
    assert types.count("fulfillment.shipped") == 2 and types[-1] == "order.completed"
    assert ledger_mismatches() == []


def test_pickup_ready_then_picked_up(api, order_body, stocked):
    stock(stocked["store"], stocked["item"], 3)
    body = order_body(
        fulfillment_method="pickup",
        pickup_location="STORE1",
        shipping_address=None,
        lines=[{"sku": "A", "quantity": 2, "unit_price": "10.00"}],
        payment={"method": "card", "amount_authorized": "20.00"},
        tax_total="0",
        shipping_total="0",
    )
    number = api.post("/api/v1/orders/", body, format="json").json()["number"]
    f = Fulfillment.objects.get(order__number=number)
    assert (
        api.post(
            f"/api/v1/fulfillments/{f.pk}/ship/", {"carrier": "x", "tracking_number": "y"}, format="json"
        ).status_code
        == 409
    )
    assert api.post(f"/api/v1/fulfillments/{f.pk}/picked-up/").status_code == 409
    assert api.post(f"/api/v1/fulfillments/{f.pk}/ready-for-pickup/").status_code == 409  # not accepted yet
    api.post(f"/api/v1/fulfillments/{f.pk}/accept/")
    assert api.post(f"/api/v1/fulfillments/{f.pk}/ready-for-pickup/").json()["status"] == "ready_for_pickup"
    assert api.post(f"/api/v1/fulfillments/{f.pk}/picked-up/").json()["status"] == "picked_up"
    assert counters("STORE1", "A") == (1, 0)  # 3 on hand, 2 collected
    assert Order.objects.get(number=number).status == "completed"
    assert Payment.objects.get(order__number=number).status == "captured"
    assert ledger_mismatches() == []


def test_shipping_bad_input_and_wrong_state(api, make_key, routed, stocked, unchanged):
    number, f = routed
    line = f.lines.first().line_id
    url = f"/api/v1/fulfillments/{f.pk}/ship/"
    assert api.post(url, {"carrier": "UPS", "tracking_number": "1"}, format="json").status_code == 409  # not accepted
    api.post(f"/api/v1/fulfillments/{f.pk}/accept/")
    with unchanged():
        assert api.post(url, {"carrier": "UPS"}, format="json").status_code == 400
        r = api.post(
            url, {"carrier": "UPS", "tracking_number": "1", "lines": [{"line_id": line, "quantity": 99}]}, format="json"
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "validation_error"
        r = api.post(
            url,
            {"carrier": "UPS", "tracking_number": "1", "lines": [{"line_id": 999999, "quantity": 1}]},
            format="json",
        )
        assert r.status_code == 400
        assert api.post(f"/api/v1/fulfillments/{f.pk}/deliver/").status_code == 409
        assert (
            make_key("orders:read").post(url, {"carrier": "U", "tracking_number": "1"}, format="json").status_code
            == 403
        )
        other = make_key("fulfillments:write,orders:read", location=stocked["dc2"])
        assert other.post(url, {"carrier": "U", "tracking_number": "1"}, format="json").status_code == 404
    api.post(f"/api/v1/orders/{number}/cancel/", {"reason": "x"}, format="json")
    with unchanged():
        assert api.post(url, {"carrier": "UPS", "tracking_number": "1"}, format="json").status_code == 409
    assert Payment.objects.get(order__number=number).amount_captured == 0


def test_cancelling_the_backordered_rest_completes_an_order_whose_shipped_part_was_delivered(network, api, order_body):
    from oms.actor import Actor
    from orders import services

    stock(network["dc1"], network["item"], 5)  # A in stock, B nowhere: B is backordered
    r = api.post("/api/v1/orders/", order_body(allow_backorder=True), format="json")
    assert r.status_code == 201, r.content
    number = r.json()["number"]
    actor = Actor.system("test")
    (f,) = Fulfillment.objects.filter(order__number=number)
    services.fulfillment_accept(fulfillment_id=f.pk, actor=actor)
    services.fulfillment_ship(fulfillment_id=f.pk, actor=actor, carrier="UPS", tracking_number="1Z1")
    services.fulfillment_deliver(fulfillment_id=f.pk, actor=actor)
    assert Order.objects.get(number=number).status == "partially_shipped"

    b = Order.objects.get(number=number).lines.get(sku="B")
    services.order_cancel(
        order_number=number, reason="customer gave up on B", actor=actor, lines=[services.CancelLine(b.pk, 1)]
    )

    order = Order.objects.get(number=number)
    assert order.status == "completed"
    assert list(order.events.order_by("id").values_list("type", flat=True))[-2:] == [
        "order.cancelled",
        "order.completed",
    ]
    assert ledger_mismatches() == []


def test_order_is_in_fulfilment_once_a_location_accepts_and_a_hold_stays_on_top(network, api, order_body):
    stock(network["dc1"], network["item"], 5)
    stock(network["dc1"], network["other"], 5)
    number = api.post("/api/v1/orders/", order_body(), format="json").json()["number"]
    status = lambda: Order.objects.get(number=number).status  # noqa: E731
    (f,) = Fulfillment.objects.filter(order__number=number)
    assert status() == "allocated"

    api.post(f"/api/v1/orders/{number}/hold/", {"type": "manual", "reason": "check"}, format="json")
    assert api.post(f"/api/v1/fulfillments/{f.pk}/accept/", format="json").status_code == 200
    assert status() == "on_hold"  # accepting does not lift a hold
    api.post(f"/api/v1/orders/{number}/release/", {"note": "ok"}, format="json")
    assert status() == "in_fulfillment"

    api.post(f"/api/v1/fulfillments/{f.pk}/ship/", {"carrier": "UPS", "tracking_number": "1Z2"}, format="json")
    assert status() == "shipped"
