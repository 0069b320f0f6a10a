"""Exchanges end to end: a linked order in the `exchange` channel, stock held at once, held
until the return arrives (or shipped in advance), priced even or with the difference charged or
refunded."""

from decimal import Decimal

import pytest

from inventory.models import Channel, Stock
from inventory.selectors import ledger_mismatches
from orders.models import Fulfillment, Order, Payment
from returns.models import Return
from tests.returns.conftest import line_of

pytestmark = pytest.mark.django_db(transaction=True)


def counters(code, sku):
    s = Stock.objects.get(location__code=code, item__sku=sku)
    return s.on_hand, s.reserved


def ship_all(api, number):
    for f in Fulfillment.objects.filter(order__number=number, status__in=["created", "sent"]):
        api.post(f"/api/v1/fulfillments/{f.pk}/accept/")
        r = api.post(f"/api/v1/fulfillments/{f.pk}/ship/", {"carrier": "UPS", "tracking_number": "X"}, format="json")
        assert r.status_code == 200, r.content


def create(api, order, **body):
    r = api.post("/api/v1/returns/", {"order": order["number"], "method": "mail", **body}, format="json")
    assert r.status_code == 201, r.content
    return r.json()


def test_even_exchange_is_held_until_the_return_arrives_then_routed_and_shipped(api, shipped, web_policy):
    a = line_of(shipped, "A")
    assert counters("DC1", "B") == (4, 0)
    rma = create(
        api,
        shipped,
        lines=[{"line_id": a["id"], "quantity": 1, "reason": "wrong_size"}],
        exchange_lines=[{"sku": "B", "quantity": 1}],
    )
    exchange = rma["exchange"]
    assert (exchange["credit"], exchange["charge"], exchange["advance"]) == ("22.00", "0.00", False)
    x = Order.objects.get(number=exchange["order"])
    assert (x.channel.code, x.external_id, x.status, x.grand_total) == ("exchange", rma["number"], "on_hold", 0)
    assert x.customer_id == Order.objects.get(number=shipped["number"]).customer_id
    assert x.ship_city == "New York" and x.lines.get().unit_price == 0
    assert counters("DC1", "B") == (4, 1)  # its stock is held while it waits
    # The exchange channel serves every location of the original channel: it is routable.
    web = set(Channel.objects.get(code="web").locations.values_list("code", flat=True))
    assert web <= set(Channel.objects.get(code="exchange").locations.values_list("code", flat=True))
    assert not Fulfillment.objects.filter(order=x).exists()

    r = api.post(
        f"/api/v1/returns/{rma['id']}/receive/",
        {"location": "DC1", "lines": [{"line_id": a["id"], "quantity": 1, "condition": "sellable"}]},
        format="json",
    )
    got = r.json()
    # The returned unit paid for the exchange: no refund, and no restocking fee on an exchange.
    assert got["refund_amount"] == "0.00" and got["refunds"] == [] and got["status"] == "closed"
    assert got["exchange"]["credit_applied"] == "22.00"
    x.refresh_from_db()
    assert x.status == "allocated"  # released and routed
    ship_all(api, x.number)
    x.refresh_from_db()
    assert x.status == "shipped"
    assert counters("DC1", "B") == (3, 0) and counters("DC1", "A") == (3, 0)
    original = api.get(f"/api/v1/orders/{shipped['number']}/").json()
    assert any("exchange order" in e["message"] for e in original["events"] if e["type"] == "return.created")
    assert ledger_mismatches() == []


def test_cheaper_exchange_refunds_the_difference_on_receipt(api, shipped, web_policy):
    a = line_of(shipped, "A")
    rma = create(
        api,
        shipped,
        lines=[{"line_id": a["id"], "quantity": 1, "reason": "changed_mind"}],
        exchange_lines=[{"sku": "B", "quantity": 1, "unit_price": "10.00"}],
    )
    x = Order.objects.get(number=rma["exchange"]["order"])
    line = x.lines.get()
    assert (line.unit_price, line.discount_amount, x.grand_total) == (Decimal("10.00"), Decimal("10.00"), 0)
    got = api.post(
        f"/api/v1/returns/{rma['id']}/receive/",
        {"location": "DC1", "lines": [{"line_id": a["id"], "quantity": 1, "condition": "sellable"}]},
        format="json",
    ).json()
    assert got["refund_amount"] == "12.00" and got["status"] == "refunded"  # 22.00 − 10.00
    assert Payment.objects.get(order__number=shipped["number"]).amount_refunded == Decimal("12.00")


def test_dearer_advance_exchange_charges_the_difference_and_ships_first(api, shipped, web_policy):
    a = line_of(shipped, "A")
    body = {
        "lines": [{"line_id": a["id"], "quantity": 1, "reason": "wrong_size"}],
        "exchange_lines": [{"sku": "B", "quantity": 1, "unit_price": "30.00"}],
        "advance_exchange": True,
    }
    r = api.post("/api/v1/returns/", {"order": shipped["number"], "method": "mail", **body}, format="json")
    assert r.status_code == 400
    assert r.json()["error"]["fields"] == {"exchange_payment": "Authorise 8.00 for the price difference."}
    rma = create(
        api, shipped, **body, exchange_payment={"method": "card", "reference": "pi_x", "amount_authorized": "8.00"}
    )
    x = Order.objects.get(number=rma["exchange"]["order"])
    assert x.grand_total == Decimal("8.00") and x.status == "allocated"  # not held: it ships now
    ship_all(api, x.number)
    assert Payment.objects.get(order=x).amount_captured == Decimal("8.00")
    # The return cannot be cancelled once its exchange has shipped.
    r = api.post(f"/api/v1/returns/{rma['id']}/cancel/", {"reason": "changed mind"}, format="json")
    assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_transition"
    got = api.post(
        f"/api/v1/returns/{rma['id']}/receive/",
        {"location": "DC1", "lines": [{"line_id": a["id"], "quantity": 1, "condition": "sellable"}]},
        format="json",
    ).json()
    assert got["refund_amount"] == "0.00" and got["status"] == "closed"


def test_cancelling_a_return_cancels_its_unshipped_exchange_and_releases_stock(api, shipped, web_policy):
    a = line_of(shipped, "A")
    rma = create(
        api,
        shipped,
        lines=[{"line_id": a["id"], "quantity": 2, "reason": "wrong_size"}],
        exchange_lines=[{"sku": "B", "quantity": 2}],
    )
    assert counters("DC1", "B") == (4, 2)
    r = api.post(f"/api/v1/returns/{rma['id']}/cancel/", {"reason": "customer kept them"}, format="json")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert Order.objects.get(number=rma["exchange"]["order"]).status == "cancelled"
    assert counters("DC1", "B") == (4, 0)
    assert Return.objects.get(pk=rma["id"]).status == "cancelled"
    # The units are free to be returned again.
    create(api, shipped, lines=[{"line_id": a["id"], "quantity": 3, "reason": "wrong_size"}])


def test_exchange_bad_input_changes_nothing(api, shipped, web_policy, nothing_changes):
    a = line_of(shipped, "A")
    base = {"order": shipped["number"], "method": "mail", "lines": [{"line_id": a["id"], "quantity": 1, "reason": "x"}]}
    base["lines"][0]["reason"] = "wrong_size"
    cases = [
        ({"exchange_lines": [{"sku": "NOPE", "quantity": 1}]}, 400, "exchange_lines[0].sku"),
        ({"exchange_lines": [{"sku": "B", "quantity": 2}]}, 400, "exchange_lines"),  # even: 1 for 1
        ({"exchange_lines": [{"sku": "B", "quantity": 1, "unit_price": "5"}, {"sku": "A", "quantity": 1}]}, 400, ""),
        ({"exchange_lines": [{"sku": "B", "quantity": 99, "unit_price": "0"}]}, 409, ""),  # no stock
        (
            {
                "exchange_lines": [{"sku": "B", "quantity": 1}],
                "exchange_payment": {"method": "card", "amount_authorized": "1.00"},
            },
            400,
            "exchange_payment",
        ),
        ({"advance_exchange": True}, 400, "advance_exchange"),
    ]
    with nothing_changes():
        for extra, code, field in cases:
            r = api.post("/api/v1/returns/", {**base, **extra}, format="json")
            assert r.status_code == code, (extra, r.content)
            assert field in " ".join(r.json()["error"]["fields"]) or not field
