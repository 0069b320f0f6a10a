from decimal import Decimal

import pytest

from inventory.models import Stock
from inventory.selectors import ledger_mismatches
from oms.actor import Actor
from orders import services
from orders.models import HoldRule, Order, OrderEvent, Payment

# These tests look at capture and the order lifecycle alone; routing has its own tests.
pytestmark = pytest.mark.usefixtures("no_routing")

ACTOR = Actor.system("test")


def reserved(loc, sku):
    return Stock.objects.get(location__code=loc, item__sku=sku).reserved


def line_state(order):
    return [
        (
            line["sku"],
            line["quantity"],
            line["quantity_allocated"],
            line["quantity_cancelled"],
            line["quantity_backordered"],
        )
        for line in order["lines"]
    ]


def test_partial_then_full_cancel_reconciles_quantities_stock_ledger_and_payment(api, capture):
    order = capture()
    number, line_a = order["number"], order["lines"][0]["id"]
    r = api.post(
        f"/api/v1/orders/{number}/cancel/",
        {"reason": "customer asked", "lines": [{"line_id": line_a, "quantity": 2}]},
        format="json",
    )
    assert r.status_code == 200, r.content
    order = r.json()
    assert order["status"] == "received"
    assert line_state(order) == [("A", 3, 1, 2, 0), ("B", 1, 1, 0, 0)]
    assert reserved("DC1", "A") == 1
    # 2 of 3 units of A: (60.00 + 6.00 tax) × 2/3 = 44.00 voided from the authorisation
    payment = order["payments"][0]
    assert (payment["status"], payment["amount_voided"], payment["amount_refunded"]) == ("authorized", "44.00", "0.00")
    cancel_event = order["events"][-1]
    assert cancel_event["type"] == "order.cancelled" and cancel_event["data"]["partial"] is True

    r = api.post(f"/api/v1/orders/{number}/cancel/", {"reason": "fraud"}, format="json")
    order = r.json()
    assert order["status"] == "cancelled"
    assert line_state(order) == [("A", 3, 0, 3, 0), ("B", 1, 0, 1, 0)]
    assert reserved("DC1", "A") == reserved("DC1", "B") == 0
    payment = order["payments"][0]
    assert (payment["status"], payment["amount_voided"]) == ("voided", "82.00")
    assert ledger_mismatches() == []
    # cancelled is final
    r = api.post(f"/api/v1/orders/{number}/cancel/", {"reason": "again"}, format="json")
    assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_transition"


def test_cancel_backordered_units_first(capture):
    order = capture(
        allow_backorder=True,
        lines=[{"sku": "A", "quantity": 9, "unit_price": "10.00"}],
        tax_total="0",
        shipping_total="0",
        payment={"method": "card", "amount_authorized": "90.00"},
    )
    line = order["lines"][0]["id"]
    o = services.order_cancel(
        order_number=order["number"], reason="short", lines=[services.CancelLine(line, 2)], actor=ACTOR
    )
    o.refresh_from_db()
    assert o.status == "received"
    assert (reserved("DC1", "A"), reserved("STORE1", "A")) == (5, 2)  # nothing released: backorder went first
    services.order_cancel(
        order_number=order["number"], reason="less", lines=[services.CancelLine(line, 3)], actor=ACTOR
    )
    # provisional holds released, in allocation order
    assert reserved("DC1", "A") + reserved("STORE1", "A") == 4
    assert ledger_mismatches() == []


def test_prepaid_order_is_refunded_not_voided(capture):
    order = capture(payment={"method": "marketplace", "amount_authorized": "82.00", "amount_captured": "82.00"})
    assert order["payments"][0]["status"] == "captured"
    services.order_cancel(order_number=order["number"], reason="oos", actor=ACTOR)
    payment = Payment.objects.get()
    assert (payment.status, payment.amount_refunded, payment.amount_voided) == (
        "refunded",
        Decimal("82.00"),
        Decimal("0"),
    )


def test_hold_and_release_resume_the_derived_status(api, capture):
    number = capture()["number"]
    r = api.post(f"/api/v1/orders/{number}/hold/", {"type": "fraud_review", "reason": "velocity check"}, format="json")
    assert r.status_code == 200 and r.json()["status"] == "on_hold"
    assert r.json()["holds"][0]["type"] == "fraud_review"
    api.post(f"/api/v1/orders/{number}/hold/", {"type": "address_check", "reason": "PO box"}, format="json")
    r = api.post(f"/api/v1/orders/{number}/release/", {"types": ["fraud_review"], "note": "ok"}, format="json")
    assert r.json()["status"] == "on_hold"  # the address check is still open
    r = api.post(f"/api/v1/orders/{number}/release/", {"note": "verified"}, format="json")
    assert r.json()["status"] == "received"
    assert r.json()["holds"] == []
    types = [e["type"] for e in r.json()["events"]]
    assert types.count("order.held") == 2 and types.count("order.released") == 2
    r = api.post(f"/api/v1/orders/{number}/release/", {}, format="json")
    assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_transition"


@pytest.mark.parametrize(
    "rule, changes, held",
    [
        ({"condition": "order_total_above", "amount": "50"}, {}, True),
        ({"condition": "order_total_above", "amount": "500"}, {}, False),
        ({"condition": "country_not_served", "countries": "US,CA"}, {}, False),
        ({"condition": "country_not_served", "countries": "CA"}, {}, True),
        ({"condition": "new_customer_above", "amount": "50"}, {}, True),
    ],
)
def test_hold_rules_at_capture(capture, network, rule, changes, held):
    HoldRule.objects.create(name="r", channel=network["web"], hold_type="fraud_review", **rule)
    order = capture(**changes)
    assert (order["status"] == "on_hold") is held
    if held:
        assert order["holds"][0]["placed_by"].startswith("test key")


def test_new_customer_rule_skips_returning_customers(capture, network):
    capture()
    HoldRule.objects.create(name="new", hold_type="fraud_review", condition="new_customer_above", amount=Decimal("10"))
    assert capture(external_id="W-2")["status"] == "received"


def test_rules_of_other_channels_do_not_apply(capture, network):
    HoldRule.objects.create(
        name="m", channel=network["market"], hold_type="manual", condition="order_total_above", amount=1
    )
    assert capture()["status"] == "received"


def test_address_change_before_shipment(api, capture):
    number = capture()["number"]
    new = {"name": "Ada", "line1": "1 New St", "city": "Boston", "postal_code": "02108", "country": "us"}
    r = api.patch(f"/api/v1/orders/{number}/", {"shipping_address": new}, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["shipping_address"]["city"] == "Boston"
    assert r.json()["shipping_address"]["country"] == "US"
    event = r.json()["events"][-1]
    assert event["type"] == "order.address_changed" and event["data"]["before"]["city"] == "New York"


def test_notes_are_on_the_timeline_with_their_author(api, capture):
    number = capture()["number"]
    r = api.post(f"/api/v1/orders/{number}/notes/", {"text": "Customer called about gift wrap"}, format="json")
    assert r.json()["events"][-1]["message"] == "Customer called about gift wrap"
    assert OrderEvent.objects.filter(order__number=number, type="note").count() == 1


def test_cancelling_a_held_order_closes_its_holds(api, capture):
    number = capture()["number"]
    api.post(f"/api/v1/orders/{number}/hold/", {"reason": "check"}, format="json")
    r = api.post(f"/api/v1/orders/{number}/cancel/", {"reason": "fraud confirmed"}, format="json")
    assert r.json()["status"] == "cancelled"
    assert r.json()["holds"] == []
    assert Order.objects.get(number=number).status == "cancelled"


def test_state_is_read_only_outside_services(capture):
    order = Order.objects.get(number=capture()["number"])
    with pytest.raises(AttributeError):
        order.status = "shipped"
