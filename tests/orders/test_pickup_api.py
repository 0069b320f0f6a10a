"""Pickup codes, and the fulfilment API's picking, packing and hand-over actions with bad input."""

import re

import pytest

from inventory.selectors import ledger_mismatches
from oms.models import OutboxMessage
from orders import services
from orders.models import Fulfillment, OrderEvent
from tests.factories import stock
from tests.orders.store_helpers import counters, events, payment, pickup_order, state

pytestmark = pytest.mark.django_db(transaction=True)  # routing runs after commit


@pytest.fixture
def store_stock(stocked):
    stock(stocked["store"], stocked["item"], 5)
    return stocked


def url(f, action):
    return f"/api/v1/fulfillments/{f.pk}/{action}/"


def test_pickup_codes_are_short_random_and_unambiguous():
    codes = {services.new_pickup_code() for _ in range(2000)}
    assert len(codes) == 2000  # 32^6 possibilities: no repeats in a few thousand
    assert all(re.fullmatch(r"[2-9A-HJ-NP-Z]{6}", c) for c in codes)


def test_pickup_code_comparison_ignores_case_spaces_and_dashes():
    f = Fulfillment(pickup_code="K7Q2XM")
    assert services.pickup_code_matches(f, "k7q-2xm")
    assert services.pickup_code_matches(f, " K7Q 2XM ")
    assert not services.pickup_code_matches(f, "K7Q2XN")
    assert not services.pickup_code_matches(f, "")
    assert not services.pickup_code_matches(Fulfillment(pickup_code=""), "")  # no code: nothing matches


def test_api_flow_with_picking_packing_and_the_pickup_code(api, order_body, store_stock):
    f = pickup_order(api, order_body)
    assert api.post(url(f, "accept")).json()["status"] == "accepted"
    assert api.post(url(f, "start-picking")).json()["status"] == "picking"
    assert api.post(url(f, "start-picking")).json()["status"] == "picking"  # a retry
    assert api.post(url(f, "pack")).json()["status"] == "packed"
    body = api.post(url(f, "ready-for-pickup")).json()
    assert body["status"] == "ready_for_pickup" and body["pickup_expires_at"]
    assert "pickup_code" not in body  # integrators get it in the webhook, not from the list
    f.refresh_from_db()
    assert len(f.pickup_code) == 6

    # The code goes to subscribers (the channel shows it to the customer), not onto the timeline.
    (ready_event,) = OutboxMessage.objects.filter(topic="fulfillment.ready_for_pickup")
    assert ready_event.payload["pickup_code"] == f.pickup_code
    (ready,) = events(f.order.number, "fulfillment.ready_for_pickup")
    assert "pickup_code" not in ready.data and f.pickup_code not in ready.message

    before = state(f)
    r = api.post(url(f, "picked-up"), {"pickup_code": "WRONG1"}, format="json")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "validation_error"
    assert r.json()["error"]["fields"] == {"pickup_code": "Does not match."}
    assert state(f) == before

    r = api.post(url(f, "picked-up"), {"pickup_code": f.pickup_code.lower()}, format="json")
    assert r.status_code == 200 and r.json()["status"] == "picked_up"
    (collected,) = events(f.order.number, "fulfillment.picked_up")
    assert collected.data["pickup_code_checked"] is True
    assert counters("STORE1", "A") == (3, 0)
    assert payment(f.order.number)[0] == "captured"
    assert ledger_mismatches() == []


def test_api_hand_over_without_a_code_is_vouched_for_by_the_caller(api, order_body, store_stock):
    f = pickup_order(api, order_body)
    for action in ("accept", "ready-for-pickup"):
        api.post(url(f, action))
    r = api.post(url(f, "picked-up"))
    assert r.status_code == 200 and r.json()["status"] == "picked_up"
    (collected,) = events(f.order.number, "fulfillment.picked_up")
    assert collected.data["pickup_code_checked"] is False
    assert "not checked by the OMS" in collected.message


def test_api_picking_and_packing_bad_input(api, make_key, order_body, store_stock):
    f = pickup_order(api, order_body)
    before = state(f)
    for action in ("start-picking", "pack", "picked-up"):  # not accepted yet
        r = api.post(url(f, action))
        assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_transition", action
    r = api.post(url(f, "picked-up"), {"pickup_code": ""}, format="json")
    assert r.status_code == 400 and "pickup_code" in r.json()["error"]["fields"]  # blank is not "no code"
    assert make_key("orders:read").post(url(f, "pack")).status_code == 403
    assert (
        make_key("fulfillments:write,orders:read", location=store_stock["dc1"]).post(url(f, "pack")).status_code == 404
    )
    assert api.post("/api/v1/fulfillments/999999/pack/").status_code == 404
    assert state(f) == before

    api.post(url(f, "accept"))
    api.post(url(f, "pack"))
    before = state(f)
    r = api.post(url(f, "start-picking"))  # packed: too late to start picking
    assert r.status_code == 409 and "packed" in r.json()["error"]["message"]
    r = api.post(url(f, "picked-up"), {"pickup_code": "X" * 21}, format="json")
    assert r.status_code == 400 and "pickup_code" in r.json()["error"]["fields"]
    assert state(f) == before


def test_ready_twice_keeps_the_code_and_the_expiry(api, order_body, store_stock):
    f = pickup_order(api, order_body)
    api.post(url(f, "accept"))
    api.post(url(f, "ready-for-pickup"))
    first = Fulfillment.objects.get(pk=f.pk)
    assert api.post(url(f, "ready-for-pickup")).status_code == 200
    again = Fulfillment.objects.get(pk=f.pk)
    assert (again.pickup_code, again.pickup_expires_at) == (first.pickup_code, first.pickup_expires_at)
    assert OrderEvent.objects.filter(order=f.order, type="fulfillment.ready_for_pickup").count() == 1
