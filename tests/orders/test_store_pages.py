"""The store app with Django's test client: access, CSRF, every action, refusals change nothing."""

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from inventory.selectors import ledger_mismatches
from orders.models import Fulfillment, OrderEvent, Shipment
from tests.factories import LocationFactory, stock
from tests.orders.store_helpers import associate, counters, events, pickup_order, ship_order, state

pytestmark = pytest.mark.django_db(transaction=True)  # routing runs after commit


@pytest.fixture
def store(stocked):
    store = stocked["store"]
    store.name, store.timezone = "Herald Square", "America/New_York"
    store.save()
    stock(store, stocked["item"], 5)
    return store


@pytest.fixture
def alice(store):
    client = Client()
    client.force_login(associate("alice", store))
    return client


def page(f, suffix=""):
    return f"/store/{f.location.code}/f/{f.pk}/{suffix}"


def act(client, f, action, **data):
    return client.post(page(f, f"{action}/"), data)


def test_login_required_then_single_store_goes_straight_to_its_queue(store):
    associate("alice", store)
    client = Client()
    r = client.get("/store/STORE1/")
    assert r.status_code == 302 and r["Location"].startswith("/store/login/?next=/store/STORE1/")
    r = client.post("/store/login/", {"username": "alice", "password": "wrong"})
    assert r.status_code == 200 and b"didn't match" in r.content
    r = client.post("/store/login/", {"username": "alice", "password": "pw-store-1"})
    assert r.status_code == 302 and r["Location"] == "/store/"
    assert client.get("/store/")["Location"] == "/store/STORE1/"


def test_the_queue_is_sorted_by_due_time_and_highlights_late_work(api, order_body, store, alice):
    first = pickup_order(api, order_body, quantity=1, external_id="P-1")
    second = pickup_order(api, order_body, quantity=1, external_id="P-2")
    now = timezone.now()
    Fulfillment.objects.filter(pk=first.pk).update(due_at=now + timedelta(hours=3))
    Fulfillment.objects.filter(pk=second.pk).update(due_at=now - timedelta(minutes=40))
    r = alice.get("/store/STORE1/")
    assert r.status_code == 200
    html = r.content.decode()
    assert html.index(second.order.number) < html.index(first.order.number)  # most urgent first
    assert f'class="card row late" href="/store/STORE1/f/{second.pk}/"' in html
    assert f'class="card row" href="/store/STORE1/f/{first.pk}/"' in html
    assert "late by 40 min" in html or "late by 41 min" in html
    assert "1 late" in html


def test_full_pickup_flow_with_the_pick_list_and_the_code(api, order_body, store, alice):
    f = pickup_order(api, order_body, quantity=2)
    number = f.order.number

    r = act(alice, f, "accept")
    assert r.status_code == 302 and r["Location"] == page(f)
    detail = alice.get(page(f)).content.decode()
    assert "Accepted. Print the pick list and start picking." in detail

    pick = alice.get(page(f, "pick-list/"))
    html = pick.content.decode()
    assert pick.status_code == 200
    for needle in (f"Order {number}", "Ada Lovelace", "Herald Square (STORE1)", "Item A", '<td class="num">2</td>'):
        assert needle in html, needle
    due = Fulfillment.objects.get(pk=f.pk).due_at.astimezone(ZoneInfo("America/New_York"))  # store time
    assert f"<th>Due</th><td>{due:%a} {due.day} {due:%b %Y, %H:%M}</td>" in html

    assert act(alice, f, "start-picking").status_code == 302
    assert act(alice, f, "pack").status_code == 302
    r = act(alice, f, "ready")
    assert r.status_code == 302
    f.refresh_from_db()
    assert f.status == "ready_for_pickup" and f.pickup_code
    detail = alice.get(page(f)).content.decode()
    assert f.pickup_code not in detail  # the associate asks the customer for it

    before = state(f)
    r = act(alice, f, "hand-over", pickup_code="AAAAAA")
    assert r.status_code == 400
    assert "The pickup code does not match this order." in r.content.decode()
    assert state(f) == before

    r = act(alice, f, "hand-over", pickup_code=f.pickup_code.lower())
    assert r.status_code == 302 and r["Location"] == "/store/STORE1/"
    assert "Handed over to the customer." in alice.get("/store/STORE1/").content.decode()
    f.refresh_from_db()
    assert f.status == "picked_up" and f.order.status == "completed"
    assert counters("STORE1", "A") == (3, 0)
    mine = [e for e in events(number) if e.type.startswith("fulfillment.") and e.type != "fulfillment.rejected"]
    assert [e.type for e in mine] == [
        "fulfillment.accepted",
        "fulfillment.picking",
        "fulfillment.packed",
        "fulfillment.ready_for_pickup",
        "fulfillment.picked_up",
    ]
    user = User.objects.get(username="alice")
    assert all((e.actor_type, e.actor_label, e.actor_user_id) == ("user", "alice", user.pk) for e in mine)
    assert ledger_mismatches() == []


def test_blank_code_and_wrong_state_are_refused_with_nothing_changed(api, order_body, store, alice):
    f = pickup_order(api, order_body)
    before = state(f)
    for action, status, text in [
        ("pack", 409, "cannot be packed"),
        ("ready", 409, "cannot be made ready"),
        ("ship", 400, "Carrier: This field is required."),  # no carrier or tracking number
        ("hand-over", 400, "Enter the pickup code the customer shows you."),
        ("explode", 404, "Unknown action explode."),
    ]:
        r = act(alice, f, action)
        assert r.status_code == status, action
        assert text in r.content.decode(), action
    assert alice.get(page(f, "accept/")).status_code == 405  # actions are POSTs only
    assert state(f) == before


def test_associates_of_another_store_are_refused(api, order_body, store, stocked):
    f = pickup_order(api, order_body)
    other_store = LocationFactory(code="STORE2", type="store", capabilities=["pickup"])
    bob = Client()
    bob.force_login(associate("bob", other_store))
    before = state(f)
    assert bob.get("/store/STORE1/").status_code == 403
    assert bob.get(page(f)).status_code == 403
    r = act(bob, f, "accept")
    assert r.status_code == 403 and "You are not an associate of Herald Square" in r.content.decode()
    # Through his own store's URL the fulfilment does not exist.
    assert bob.post(f"/store/STORE2/f/{f.pk}/accept/").status_code == 404
    assert bob.get("/store/DC1/").status_code == 404  # not a store
    assert state(f) == before
    # Logged in without the store role: no store app at all.
    clerk = Client()
    clerk.force_login(User.objects.create_user("clerk", password="x"))
    assert clerk.get("/store/").status_code == 403
    assert clerk.post(page(f, "accept/")).status_code == 403
    assert state(f) == before


def test_csrf_is_enforced(api, order_body, store):
    f = pickup_order(api, order_body)
    client = Client(enforce_csrf_checks=True)
    client.force_login(associate("alice", store))
    before = state(f)
    assert act(client, f, "accept").status_code == 403
    assert state(f) == before
    token = client.get(page(f)).cookies["csrftoken"].value
    assert client.post(page(f, "accept/"), {"csrfmiddlewaretoken": token}).status_code == 302
    assert Fulfillment.objects.get(pk=f.pk).status == "accepted"


def test_partial_rejection_from_the_store_reroutes_the_rest(api, order_body, store, alice, stocked):
    """Ship-from-store: the store can only find one of three; the other two go to DC1."""
    order = ship_order(api, order_body, lines=[{"sku": "A", "quantity": 3, "unit_price": "20.00"}], tax_total="6.00",
                       payment={"method": "card", "amount_authorized": "71.00"})  # fmt: skip
    f = Fulfillment.objects.get(order=order)
    assert f.location.code == "STORE1"
    line = f.lines.get().line_id
    act(alice, f, "accept")

    r = act(alice, f, "reject", reason="Damaged", note="", **{f"line_{line}": "4"})
    assert r.status_code == 400 and "Ensure this value is less than or equal to 3." in r.content.decode()
    r = act(alice, f, "reject", reason="Damaged", note="", **{f"line_{line}": "0"})
    assert r.status_code == 400 and "Choose at least one unit to reject." in r.content.decode()

    r = act(alice, f, "reject", reason="Damaged", note="box crushed", **{f"line_{line}": "2"})
    assert r.status_code == 302
    f.refresh_from_db()
    assert f.status == "accepted" and f.lines.get().quantity_rejected == 2
    (rejected,) = events(order.number, "fulfillment.rejected")
    assert rejected.message == "STORE1 rejected A × 2: Damaged: box crushed" and rejected.actor_label == "alice"
    elsewhere = Fulfillment.objects.exclude(pk=f.pk).get(order=order)
    assert elsewhere.location.code == "DC1" and elsewhere.lines.get().quantity == 2
    assert counters("STORE1", "A") == (5, 1) and counters("DC1", "A") == (5, 2)


def test_ship_from_store_with_carrier_and_tracking_once(api, order_body, store, alice, stocked):
    order = ship_order(api, order_body, lines=[{"sku": "A", "quantity": 1, "unit_price": "20.00"}], tax_total="0",
                       payment={"method": "card", "amount_authorized": "25.00"})  # fmt: skip
    f = Fulfillment.objects.get(order=order)
    for action in ("accept", "start-picking", "pack"):
        assert act(alice, f, action).status_code == 302
    detail = alice.get(page(f)).content.decode()
    assert 'id="ship-form"' in detail and 'id="ready"' not in detail
    r = act(alice, f, "ship", carrier="UPS", tracking_number="")
    assert r.status_code == 400 and Shipment.objects.count() == 0
    assert f.location.code == "STORE1"
    assert act(alice, f, "ship", carrier="UPS", tracking_number="1Z 999 AA1").status_code == 302
    assert act(alice, f, "ship", carrier="UPS", tracking_number="1Z999AA1").status_code == 302  # a double submit
    r = act(alice, f, "ship", carrier="UPS", tracking_number="1Z000")
    assert r.status_code == 409 and "it cannot ship" in r.content.decode()
    (shipment,) = Shipment.objects.filter(fulfillment=f)
    assert (shipment.carrier, shipment.tracking_number) == ("UPS", "1Z999AA1")
    f.refresh_from_db()
    assert f.status == "shipped" and f.order.status == "shipped"
    assert OrderEvent.objects.get(order=order, type="fulfillment.shipped").actor_label == "alice"


def test_queue_and_detail_query_counts_do_not_grow_with_the_queue(api, order_body, store, alice):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries(url):
        with CaptureQueriesContext(connection) as ctx:
            assert alice.get(url).status_code == 200
        return len(ctx.captured_queries)

    f = pickup_order(api, order_body, quantity=1, external_id="P-0")
    one = queries("/store/STORE1/")
    for n in range(1, 5):
        pickup_order(api, order_body, quantity=1, external_id=f"P-{n}")
    assert queries("/store/STORE1/") == one
    assert one <= 11 and queries(page(f)) <= 11  # session, user, permissions, store, then the page
