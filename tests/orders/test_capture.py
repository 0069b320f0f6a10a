from decimal import Decimal

import pytest

from inventory.models import Stock, StockMovement
from inventory.selectors import ledger_mismatches
from oms.models import OutboxMessage
from orders.models import Order, OrderEvent

# These tests look at capture and the order lifecycle alone; routing has its own tests.
pytestmark = pytest.mark.usefixtures("no_routing")


def counters(loc, sku):
    s = Stock.objects.get(location__code=loc, item__sku=sku)
    return s.on_hand, s.reserved


def test_capture_holds_stock_writes_timeline_and_outbox(capture):
    order = capture()
    assert order["status"] == "received"
    assert order["number"].startswith("WE-")
    assert order["customer"]["email"] == "ada.lovelace@example.com"
    assert [
        (line["sku"], line["quantity"], line["quantity_allocated"], line["quantity_backordered"])
        for line in order["lines"]
    ] == [
        ("A", 3, 3, 0),
        ("B", 1, 1, 0),
    ]
    assert order["lines"][0]["allocations"] == [{"location": "DC1", "quantity": 3, "provisional": True}]
    assert (order["subtotal"], order["tax_total"], order["grand_total"]) == ("70.00", "7.00", "82.00")
    assert [line["tax_amount"] for line in order["lines"]] == ["6.00", "1.00"]
    assert order["payments"][0]["status"] == "authorized"
    assert [e["type"] for e in order["events"]] == ["stock.reserved", "order.created"]
    assert order["events"][1]["actor"].startswith("API key: test key")
    assert counters("DC1", "A") == (5, 3)
    assert counters("DC1", "B") == (5, 1)
    assert StockMovement.objects.filter(reference=f"order:{order['number']}").count() == 2
    assert OutboxMessage.objects.filter(topic="order.created", ordering_key=f"order:{order['number']}").count() == 1
    assert ledger_mismatches() == []


def test_pickup_order_holds_at_the_store(capture):
    order = capture(
        fulfillment_method="pickup",
        pickup_location="STORE1",
        shipping_address=None,
        lines=[{"sku": "A", "quantity": 2, "unit_price": "20.00"}],
        shipping_total="0",
        tax_total="0",
        payment={"method": "card", "amount_authorized": "40.00"},
    )
    assert order["pickup_location"] == "STORE1"
    assert order["shipping_address"] is None
    assert order["lines"][0]["allocations"] == [{"location": "STORE1", "quantity": 2, "provisional": True}]
    assert counters("STORE1", "A") == (2, 2)


def test_backorder_when_allowed(capture):
    order = capture(
        allow_backorder=True,
        lines=[{"sku": "A", "quantity": 9, "unit_price": "10.00"}],
        tax_total="0",
        shipping_total="0",
        payment={"method": "card", "amount_authorized": "90.00"},
    )
    line = order["lines"][0]
    assert order["status"] == "backordered"
    assert (line["quantity_allocated"], line["quantity_backordered"]) == (7, 2)
    assert counters("DC1", "A") == (5, 5)
    assert counters("STORE1", "A") == (2, 2)
    assert order["events"][-1]["data"]["backordered"] == {"A": 2}


def test_insufficient_stock_writes_nothing(api, order_body, stocked, unchanged):
    body = order_body(
        lines=[{"sku": "A", "quantity": 8, "unit_price": "10.00"}, {"sku": "B", "quantity": 1, "unit_price": "1"}],
        payment=None,
    )
    with unchanged():
        r = api.post("/api/v1/orders/", body, format="json")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "insufficient_stock"
    assert r.json()["error"]["skus"] == ["A"]
    assert not Order.objects.exists()
    assert not OrderEvent.objects.exists()


def test_same_channel_and_external_id_never_creates_a_second_order(api, order_body, stocked, capture):
    first = capture()
    r = api.post("/api/v1/orders/", order_body(), format="json")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "conflict"
    assert first["number"] in r.json()["error"]["message"]
    assert Order.objects.count() == 1
    assert counters("DC1", "A") == (5, 3)


def test_idempotency_key_replays_byte_for_byte_and_rejects_another_body(api, order_body, stocked):
    r1 = api.post("/api/v1/orders/", order_body(), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    r2 = api.post("/api/v1/orders/", order_body(), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert r1.status_code == r2.status_code == 201
    assert r1.content == r2.content
    assert r2["Idempotent-Replayed"] == "true"
    r3 = api.post("/api/v1/orders/", order_body(external_id="other"), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert r3.status_code == 422
    assert r3.json()["error"]["code"] == "idempotency_mismatch"
    assert Order.objects.count() == 1


def test_failed_capture_is_replayed_too(api, order_body, stocked):
    body = order_body(lines=[{"sku": "A", "quantity": 80, "unit_price": "1.00"}], payment=None)
    r1 = api.post("/api/v1/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    r2 = api.post("/api/v1/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    assert r1.status_code == r2.status_code == 409
    assert r1.content == r2.content
    assert r2["Idempotent-Replayed"] == "true"
    assert not Order.objects.exists()
    assert counters("DC1", "A") == (5, 0)  # nothing held, though the answer was kept


def test_capture_and_its_stored_answer_commit_together(api, order_body, stocked, unchanged, monkeypatch):
    """A capture that dies before its answer is stored leaves nothing: no order, no claim, no
    stock held. The retry with the same key then captures the order once."""
    from oms import idempotency
    from oms.models import IdempotencyRecord

    def die(record, response):
        raise RuntimeError("worker killed before the answer was stored")

    monkeypatch.setattr(idempotency, "_finish", die)
    with unchanged(), pytest.raises(RuntimeError):
        api.post("/api/v1/orders/", order_body(), format="json", HTTP_IDEMPOTENCY_KEY="k-3")
    assert not IdempotencyRecord.objects.exists()
    monkeypatch.undo()
    r = api.post("/api/v1/orders/", order_body(), format="json", HTTP_IDEMPOTENCY_KEY="k-3")
    assert r.status_code == 201, r.content
    assert Order.objects.count() == 1
    assert counters("DC1", "A") == (5, 3)
    assert IdempotencyRecord.objects.get().state == "done"


def test_cart_reservation_converts_into_the_order(api, order_body, stocked):
    r = api.post(
        "/api/v1/reservations/",
        {"channel": "web", "key": "cart-9", "lines": [{"sku": "A", "quantity": 4}]},
        format="json",
    )
    assert r.status_code == 201
    body = order_body(reservation_key="cart-9")
    r = api.post("/api/v1/orders/", body, format="json")
    assert r.status_code == 201, r.content
    # 3 of the 4 cart units go to the order, the 4th is released; B is reserved afresh
    assert counters("DC1", "A") == (5, 3)
    assert counters("DC1", "B") == (5, 1)
    assert api.get("/api/v1/reservations/cart-9/?channel=web").json()["status"] == "converted"
    assert ledger_mismatches() == []


def test_tax_given_per_line_must_add_up(capture):
    order = capture(
        lines=[
            {"sku": "A", "quantity": 3, "unit_price": "20.00", "tax_amount": "5.00", "discount_amount": "6.00"},
            {"sku": "B", "quantity": 1, "unit_price": "10.00", "tax_amount": "2.00"},
        ],
        payment={"method": "card", "amount_authorized": "76.00"},
        grand_total="76.00",
    )
    assert order["discount_total"] == "6.00"
    assert Decimal(order["grand_total"]) == Decimal("76.00")
