"""Bad input and wrong-state operations on orders: a clear 4xx, nothing changed."""

import pytest
from rest_framework.test import APIClient

from oms.models import IdempotencyRecord, OutboxMessage
from orders.models import Customer, Order, OrderEvent, OrderHold, Payment

# These tests look at capture and the order lifecycle alone; routing has its own tests.
pytestmark = pytest.mark.usefixtures("no_routing")


def order_world():
    return (
        sorted(Order.objects.values_list("number", "status", "ship_city")),
        OrderEvent.objects.count(),
        OrderHold.objects.filter(released_at__isnull=True).count(),
        sorted(Payment.objects.values_list("amount_voided", "amount_refunded")),
        Customer.objects.count(),
        OutboxMessage.objects.count(),
    )


def assert_error(r, status, code, field=None):
    assert r.status_code == status, r.content
    err = r.json()["error"]
    assert err["code"] == code and err["message"]
    if field:
        assert any(field in k for k in err["fields"]), err["fields"]


def line(**kw):
    base = {"sku": "A", "quantity": 1, "unit_price": "20.00"}
    base.update(kw)
    return [base]


CAPTURE_CASES = [
    ({"channel": "nope"}, 404, "not_found", "channel"),
    ({"external_id": ""}, 400, "validation_error", "external_id"),
    ({"customer": {"email": "not-an-email"}}, 400, "validation_error", "customer.email"),
    ({"customer": None}, 400, "validation_error", "customer"),
    ({"currency": "dollars"}, 400, "validation_error", "currency"),
    ({"currency": "usd"}, 400, "validation_error", "currency"),
    ({"lines": []}, 400, "validation_error", "lines"),
    ({"lines": line(sku="NOPE")}, 400, "validation_error", "lines[0].sku"),
    ({"lines": line(quantity=0)}, 400, "validation_error", "lines[0].quantity"),
    ({"lines": line(quantity=-2)}, 400, "validation_error", "quantity"),
    ({"lines": line(quantity=1.5)}, 400, "validation_error", "quantity"),
    ({"lines": line(quantity=10**9)}, 400, "validation_error", "quantity"),
    ({"lines": line(unit_price="-1")}, 400, "validation_error", "unit_price"),
    ({"lines": line(unit_price="abc")}, 400, "validation_error", "unit_price"),
    ({"lines": line(unit_price="1.999")}, 400, "validation_error", "unit_price"),
    ({"lines": line(discount_amount="50")}, 400, "validation_error", "discount_amount"),
    ({"fulfillment_method": "drone"}, 400, "validation_error", "fulfillment_method"),
    ({"fulfillment_method": "pickup", "shipping_address": None}, 400, "validation_error", "pickup_location"),
    (
        {"fulfillment_method": "pickup", "pickup_location": "NOWHERE", "shipping_address": None},
        400,
        "validation_error",
        "pickup_location",
    ),
    (
        {"fulfillment_method": "pickup", "pickup_location": "DC1", "shipping_address": None},
        400,
        "validation_error",
        "pickup_location",
    ),
    (
        {"fulfillment_method": "pickup", "pickup_location": "OUT1", "shipping_address": None},
        400,
        "validation_error",
        "pickup_location",
    ),
    ({"shipping_address": None}, 400, "validation_error", "shipping_address"),
    (
        {"shipping_address": {"line1": "x", "city": "y", "postal_code": "1", "country": "USA"}},
        400,
        "validation_error",
        "shipping_address.country",
    ),
    (
        {"shipping_address": {"city": "y", "postal_code": "1", "country": "US"}},
        400,
        "validation_error",
        "shipping_address.line1",
    ),
    (
        {
            "shipping_address": {
                "line1": "x",
                "city": "y",
                "postal_code": "1",
                "country": "US",
                "latitude": "91",
                "longitude": "0",
            }
        },
        400,
        "validation_error",
        "latitude",
    ),
    (
        {"shipping_address": {"line1": "x", "city": "y", "postal_code": "1", "country": "US", "latitude": "40"}},
        400,
        "validation_error",
        "latitude",
    ),
    ({"grand_total": "1.00"}, 400, "validation_error", "grand_total"),
    (
        {"payment": {"method": "card", "amount_authorized": "10.00"}},
        400,
        "validation_error",
        "payment.amount_authorized",
    ),
    (
        {"payment": {"method": "card", "amount_authorized": "82.00", "amount_captured": "90.00"}},
        400,
        "validation_error",
        "payment.amount_captured",
    ),
    ({"tax_total": "-1"}, 400, "validation_error", "tax_total"),
    (
        {
            "lines": [
                {"sku": "A", "quantity": 1, "unit_price": "20", "tax_amount": "1"},
                {"sku": "B", "quantity": 1, "unit_price": "10"},
            ]
        },
        400,
        "validation_error",
        "lines",
    ),
    ({"reservation_key": "no-such-cart"}, 400, "validation_error", "reservation_key"),
    ({"lines": line(quantity=50), "payment": None}, 409, "insufficient_stock", None),
]


@pytest.mark.parametrize("changes, status, code, field", CAPTURE_CASES)
def test_bad_capture(api, order_body, stocked, unchanged, changes, status, code, field):
    before = order_world()
    with unchanged():
        assert_error(api.post("/api/v1/orders/", order_body(**changes), format="json"), status, code, field)
    assert order_world() == before


def test_malformed_json_and_wrong_types(api, stocked, unchanged):
    with unchanged():
        r = api.post("/api/v1/orders/", data='{"channel": "web",', content_type="application/json")
        assert_error(r, 400, "validation_error")
        assert_error(api.post("/api/v1/orders/", [1, 2], format="json"), 400, "validation_error")
        assert_error(api.post("/api/v1/orders/", {}, format="json"), 400, "validation_error", "external_id")
    assert not Order.objects.exists()


def test_unauthorised_and_cross_channel_capture(make_key, order_body, stocked, unchanged):
    with unchanged():
        assert_error(APIClient().post("/api/v1/orders/", order_body(), format="json"), 401, "authentication_failed")
        assert_error(
            make_key("orders:read").post("/api/v1/orders/", order_body(), format="json"), 403, "permission_denied"
        )
        market_key = make_key("orders:write", channel=stocked["market"])
        assert_error(
            market_key.post("/api/v1/orders/", order_body(), format="json"), 403, "permission_denied", "channel"
        )
    assert not Order.objects.exists()
    assert not IdempotencyRecord.objects.exists()


@pytest.fixture
def placed(capture):
    return capture()


def test_cancel_bad_input(api, placed, unchanged):
    number, line_id = placed["number"], placed["lines"][0]["id"]
    url = f"/api/v1/orders/{number}/cancel/"
    before = order_world()
    with unchanged():
        assert_error(api.post(url, {}, format="json"), 400, "validation_error", "reason")
        assert_error(
            api.post(url, {"reason": "x", "lines": [{"line_id": line_id, "quantity": 4}]}, format="json"),
            400,
            "validation_error",
            "lines[0].quantity",
        )
        assert_error(
            api.post(url, {"reason": "x", "lines": [{"line_id": line_id, "quantity": 0}]}, format="json"),
            400,
            "validation_error",
            "quantity",
        )
        assert_error(
            api.post(url, {"reason": "x", "lines": [{"line_id": 999999, "quantity": 1}]}, format="json"),
            400,
            "validation_error",
            "line_id",
        )
        assert_error(
            api.post(
                url,
                {"reason": "x", "lines": [{"line_id": line_id, "quantity": 2}, {"line_id": line_id, "quantity": 2}]},
                format="json",
            ),
            400,
            "validation_error",
            "lines[1].quantity",
        )
        assert_error(api.post(url, {"reason": "x", "lines": []}, format="json"), 400, "validation_error", "lines")
        assert_error(api.post("/api/v1/orders/NOPE/cancel/", {"reason": "x"}, format="json"), 404, "not_found")
    assert order_world() == before


def test_lines_of_another_order_are_refused(api, capture, unchanged):
    first = capture()
    second = capture(external_id="W-2002")
    before = order_world()
    with unchanged():
        r = api.post(
            f"/api/v1/orders/{first['number']}/cancel/",
            {"reason": "x", "lines": [{"line_id": second["lines"][0]["id"], "quantity": 1}]},
            format="json",
        )
        assert_error(r, 400, "validation_error", "line_id")
    assert order_world() == before


def test_wrong_state_operations(api, placed, unchanged):
    number = placed["number"]
    assert_error(api.post(f"/api/v1/orders/{number}/release/", {}, format="json"), 409, "invalid_transition")
    api.post(f"/api/v1/orders/{number}/cancel/", {"reason": "customer"}, format="json")
    before = order_world()
    with unchanged():
        new = {"line1": "1 New St", "city": "Boston", "postal_code": "02108", "country": "US"}
        assert_error(
            api.patch(f"/api/v1/orders/{number}/", {"shipping_address": new}, format="json"), 409, "invalid_transition"
        )
        assert_error(
            api.post(f"/api/v1/orders/{number}/hold/", {"reason": "x"}, format="json"), 409, "invalid_transition"
        )
        assert_error(
            api.post(f"/api/v1/orders/{number}/cancel/", {"reason": "x"}, format="json"), 409, "invalid_transition"
        )
    assert order_world() == before


def test_hold_and_address_bad_input(api, placed, unchanged):
    number = placed["number"]
    before = order_world()
    with unchanged():
        assert_error(
            api.post(f"/api/v1/orders/{number}/hold/", {"type": "whim", "reason": "x"}, format="json"),
            400,
            "validation_error",
            "type",
        )
        assert_error(
            api.post(f"/api/v1/orders/{number}/hold/", {"type": "manual"}, format="json"),
            400,
            "validation_error",
            "reason",
        )
        assert_error(
            api.patch(f"/api/v1/orders/{number}/", {"shipping_address": {"line1": "x"}}, format="json"),
            400,
            "validation_error",
            "shipping_address.city",
        )
        assert_error(
            api.patch(f"/api/v1/orders/{number}/", {}, format="json"), 400, "validation_error", "shipping_address"
        )
        assert_error(
            api.post(f"/api/v1/orders/{number}/notes/", {"text": ""}, format="json"), 400, "validation_error", "text"
        )
    assert order_world() == before


def test_pickup_orders_have_no_address_to_change(api, capture, unchanged):
    order = capture(
        fulfillment_method="pickup",
        pickup_location="STORE1",
        shipping_address=None,
        lines=[{"sku": "A", "quantity": 1, "unit_price": "20.00"}],
        shipping_total="0",
        tax_total="0",
        payment=None,
    )
    with unchanged():
        new = {"line1": "1 New St", "city": "Boston", "postal_code": "02108", "country": "US"}
        assert_error(
            api.patch(f"/api/v1/orders/{order['number']}/", {"shipping_address": new}, format="json"),
            409,
            "invalid_transition",
        )


def test_scopes_and_channel_binding_on_lifecycle(make_key, placed, stocked, unchanged):
    number = placed["number"]
    reader = make_key("orders:read")
    other_channel = make_key("all", channel=stocked["market"])
    before = order_world()
    with unchanged():
        assert_error(
            reader.post(f"/api/v1/orders/{number}/cancel/", {"reason": "x"}, format="json"), 403, "permission_denied"
        )
        assert_error(
            reader.post(f"/api/v1/orders/{number}/hold/", {"reason": "x"}, format="json"), 403, "permission_denied"
        )
        assert_error(
            other_channel.post(f"/api/v1/orders/{number}/cancel/", {"reason": "x"}, format="json"), 404, "not_found"
        )
        assert_error(
            other_channel.post(f"/api/v1/orders/{number}/hold/", {"reason": "x"}, format="json"), 404, "not_found"
        )
        assert_error(other_channel.get(f"/api/v1/orders/{number}/"), 404, "not_found")
        new = {"line1": "1 New St", "city": "Boston", "postal_code": "02108", "country": "US"}
        assert_error(
            other_channel.patch(f"/api/v1/orders/{number}/", {"shipping_address": new}, format="json"), 404, "not_found"
        )
        assert_error(APIClient().get(f"/api/v1/orders/{number}/"), 401, "authentication_failed")
    assert order_world() == before
    assert other_channel.get("/api/v1/orders/").json()["results"] == []
    assert reader.get(f"/api/v1/orders/{number}/").status_code == 200


def test_idempotency_key_too_long(api, order_body, stocked, unchanged):
    with unchanged():
        r = api.post("/api/v1/orders/", order_body(), format="json", HTTP_IDEMPOTENCY_KEY="k" * 300)
        assert_error(r, 400, "validation_error")
