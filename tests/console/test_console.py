"""The customer-service console through Django's test client: roles and permissions, search,
the order page, every action (two steps, timeline with the user, clear refusals) and queues."""

from datetime import UTC, timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from inventory.models import Location, Stock
from oms.models import OutboxMessage, OutboxStatus
from orders import services
from orders.models import Fulfillment, FulfillmentStatus, Order, OrderEvent, OrderStatus
from tests.factories import ItemFactory, SupplyFactory, stock


@pytest.fixture
def two_dcs(network):
    """DC1 in New York (priority 10), DC2 in Los Angeles (priority 20); the customer is in NYC."""
    stock(network["dc1"], network["item"], 5)
    stock(network["dc1"], network["other"], 5)
    stock(network["dc2"], network["item"], 50)
    stock(network["dc2"], network["other"], 50)
    return network


@pytest.fixture
def place(api, order_body, two_dcs, django_capture_on_commit_callbacks):
    """Capture an order through the API and let routing run (the outbox fires on commit)."""

    def do(**changes) -> Order:
        with django_capture_on_commit_callbacks(execute=True):
            r = api.post("/api/v1/orders/", order_body(**changes), format="json")
        assert r.status_code == 201, r.content
        return Order.objects.get(number=r.json()["number"])

    return do


@pytest.fixture
def run_on_commit(django_capture_on_commit_callbacks):
    def run(fn, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return fn(*args, **kwargs)

    return run


def text(response) -> str:
    return response.content.decode()


# --- Login, roles, permissions -----------------------------------------------------------------

CONSOLE_PAGES = [
    "/console/",
    "/console/queues/",
    "/console/queues/holds/",
    "/console/inventory/",
]


@pytest.mark.django_db
def test_pages_need_a_login_and_send_to_the_console_login(client):
    for url in CONSOLE_PAGES:
        r = client.get(url)
        assert r.status_code == 302
        assert r["Location"].startswith("/console/login/?next=")


@pytest.mark.django_db
def test_login_and_logout(client, users):
    r = client.post("/console/login/", {"username": "csr", "password": "csr"})
    assert r.status_code == 302 and r["Location"] == "/console/"
    page = client.get("/console/")
    assert "csr" in text(page) and ">CSR<" in text(page)
    wrong = Client().post("/console/login/", {"username": "csr", "password": "wrong"})
    assert wrong.status_code == 200 and "didn't match" in text(wrong)
    r = client.post("/console/logout/")
    assert r.status_code == 302 and r["Location"] == "/console/login/"
    assert client.get("/console/").status_code == 302


def test_a_user_without_a_role_is_refused_every_page_and_action(login, place):
    order = place()
    fulfillment = order.fulfillments.get()
    nobody = login("nobody")
    urls = [
        *CONSOLE_PAGES,
        f"/console/orders/{order.number}/",
        f"/console/customers/{order.customer_id}/",
        f"/console/orders/{order.number}/cancel/",
        f"/console/orders/{order.number}/hold/",
        f"/console/orders/{order.number}/fulfilments/{fulfillment.pk}/reroute/",
    ]
    for url in urls:
        r = nobody.get(url)
        assert r.status_code == 403, url
        assert "Not allowed" in text(r)
    r = nobody.post(f"/console/orders/{order.number}/cancel/", {"reason": "x", "confirm": "1"})
    assert r.status_code == 403
    order.refresh_from_db()
    assert order.status == OrderStatus.ALLOCATED


def test_a_viewer_without_the_change_permission_cannot_act(login, users, place):
    from django.contrib.auth.models import Permission

    order = place()
    users["nobody"].user_permissions.add(Permission.objects.get(codename="view_order"))
    viewer = login("nobody")
    page = viewer.get(f"/console/orders/{order.number}/")
    assert page.status_code == 200
    assert "Cancel…" not in text(page)
    for action in ("cancel", "hold", "note", "address", "route-again"):
        assert viewer.post(f"/console/orders/{order.number}/{action}/", {"confirm": "1"}).status_code == 403
    assert not OrderEvent.objects.filter(order=order, actor_type="user").exists()


@pytest.mark.django_db
def test_a_csr_cannot_reach_merchant_screens(login):
    csr = login("csr")
    merchant_screens = [
        "/admin/inventory/location/add/",
        "/admin/inventory/channel/add/",
        "/admin/inventory/item/add/",
        "/admin/oms/apikey/",
        "/admin/oms/apikey/add/",
        "/admin/routing/routingprofile/",
        "/admin/orders/holdrule/add/",
    ]
    for url in merchant_screens:
        assert csr.get(url).status_code == 403, url
    assert "Admin</a>" not in text(csr.get("/console/"))
    merchant = login("merchant")
    assert 'class="admin-link"' in text(merchant.get("/console/"))
    assert merchant.get("/admin/inventory/location/add/").status_code == 200


# --- Search ------------------------------------------------------------------------------------


def numbers(response) -> list[str]:
    return [o.number for o in response.context["result"].orders]


def test_search_finds_an_order_by_every_kind_of_term(csr, place, run_on_commit):
    ada = place()
    grace = place(
        external_id="W-2002",
        customer={"email": "grace.hopper@navy.example", "name": "Grace Hopper", "phone": "(703) 555 0199"},
    )
    shipment = services.fulfillment_ship(
        fulfillment_id=services.fulfillment_accept(
            fulfillment_id=grace.fulfillments.get().pk, actor=services.Actor.system("t")
        ).pk,
        actor=services.Actor.system("t"),
        carrier="UPS",
        tracking_number="1Z999AA10123456784",
    )
    assert shipment.pk
    # An exact order number (in any case, with or without its dash) opens the order.
    for term in (ada.number, ada.number.lower(), ada.number.replace("-", "")):
        r = csr.get("/console/", {"q": term})
        assert r.status_code == 302 and r["Location"] == f"/console/orders/{ada.number}/", term
    cases = {
        "W-2002": [grace.number],  # channel order id
        "ADA.LOVELACE@example.com": [ada.number],  # email, exact, any case
        "lovelace@exa": [ada.number],  # part of an email
        "hopper": [grace.number],  # part of a name
        "Grace Hop": [grace.number],
        "+1 212 555 0147": [ada.number],  # phone with country code and spaces
        "212.555.0147": [ada.number],
        "2125550147": [ada.number],
        "703-555-0199": [grace.number],
        "1Z999AA10123456784": [grace.number],  # tracking number
        "1z999aa10123456784": [grace.number],
        "nobody-here@example.com": [],
    }
    for term, expected in cases.items():
        r = csr.get("/console/", {"q": term})
        assert r.status_code == 200, term
        assert numbers(r) == expected, term
    r = csr.get("/console/", {"q": "hopper"})
    assert "Customer: Grace Hopper" in text(r)  # one customer matched: a link to all their orders
    page = text(csr.get(f"/console/orders/{grace.number}/"))
    assert 'href="https://www.ups.com/track?tracknum=1Z999AA10123456784"' in page  # a tracking link


def test_search_filters_and_sorting(csr, place, network, run_on_commit):
    cheap = place(external_id="W-1", lines=[{"sku": "A", "quantity": 1, "unit_price": "5.00"}], payment=None)
    dear = place(external_id="W-2", lines=[{"sku": "B", "quantity": 2, "unit_price": "30.00"}], payment=None)
    held = place(external_id="W-3", lines=[{"sku": "A", "quantity": 1, "unit_price": "9.00"}], payment=None)
    services.order_hold(order_number=held.number, hold_type="manual", reason="r", actor=services.Actor.system("t"))
    backordered = place(
        external_id="W-4",
        lines=[{"sku": "A", "quantity": 500, "unit_price": "1.00"}],
        payment=None,
        allow_backorder=True,
    )
    Order.objects.filter(pk=cheap.pk).update(created_at=timezone.now() - timedelta(days=10))

    def search(**params):
        r = csr.get("/console/", params)
        assert r.status_code == 200, r.content
        return numbers(r)

    everything = {cheap.number, dear.number, held.number, backordered.number}
    assert set(search(channel="web")) == everything
    assert search(channel="market") == []
    assert search(on_hold="on") == [held.number]
    assert search(status="on_hold") == [held.number]
    assert search(backordered="on") == [backordered.number]
    today = timezone.localdate()
    assert cheap.number not in search(created_from=today.isoformat())
    assert search(created_to=(today - timedelta(days=5)).isoformat()) == [cheap.number]
    assert set(search(location="DC1")) >= {cheap.number, dear.number, held.number}
    assert set(search(location="DC2")) == {backordered.number}
    assert search(location="STORE1") == []
    assert search(channel="web", sort="oldest")[0] == cheap.number
    assert search(channel="web")[-1] == cheap.number  # newest first by default
    r = csr.get("/console/", {"created_from": "2026-02-02", "created_to": "2026-01-01"})
    assert "before the start date" in text(r)


def test_search_pages_through_results(csr, place, settings, monkeypatch):
    monkeypatch.setattr("oms.console.selectors.PAGE_SIZE", 2)
    orders = [
        place(external_id=f"W-{i}", payment=None, lines=[{"sku": "A", "quantity": 1, "unit_price": "1"}])
        for i in range(5)
    ]
    r = csr.get("/console/", {"channel": "web"})
    result = r.context["result"]
    assert (len(result.orders), result.has_next, result.total_label) == (2, True, "5")
    assert numbers(r) == [orders[4].number, orders[3].number]
    last = csr.get("/console/", {"channel": "web", "page": 3}).context["result"]
    assert ([o.number for o in last.orders], last.has_next, last.total) == ([orders[0].number], False, 5)


# --- The order page ------------------------------------------------------------------------------


def test_order_page_shows_everything_about_the_order(csr, place):
    order = place()
    services.order_add_note(
        order_number=order.number, text="Customer called about gift wrap", actor=services.Actor.system("t")
    )
    r = csr.get(f"/console/orders/{order.number}/")
    page = text(r)
    assert r.status_code == 200
    for expected in (
        order.number,
        "Ada Lovelace",
        "ada.lovelace@example.com",
        "+1 (212) 555-0147",
        "12 Analytical Way",
        "Allocated",
        "DC1",  # the fulfilment's location and the chosen candidate
        "Shipped from DC1",  # the routing summary: why DC1
        "chosen",
        "pi_123",  # the payment
        "82.00 USD",
        "order.created",
        "order.routed",
        "Customer called about gift wrap",
    ):
        assert expected in page, expected
    lines = r.context["page"].lines
    assert [(line.sku, line.quantity, line.quantity_allocated) for line in lines] == [("A", 3, 3), ("B", 1, 1)]


def test_unknown_order_is_a_404(csr, db):
    assert csr.get("/console/orders/WE-NOPE123/").status_code == 404


# --- Actions -----------------------------------------------------------------------------------


def user_events(order, username="csr"):
    return list(
        OrderEvent.objects.filter(order=order, actor_type="user", actor_label=username).values_list("type", flat=True)
    )


def test_cancel_one_line_asks_for_confirmation_then_cancels_with_the_user_on_the_timeline(csr, place):
    order = place()
    line_a, line_b = order.lines.order_by("id")
    url = f"/console/orders/{order.number}/cancel/"
    form = csr.get(url)
    assert f'name="qty_{line_a.pk}"' in text(form)
    step1 = csr.post(url, {"reason": "Customer changed their mind", f"qty_{line_b.pk}": "1"})
    assert step1.status_code == 200
    assert "Please confirm" in text(step1) and "Cancel 1 × B" in text(step1)
    order.refresh_from_db()
    assert order.lines.get(pk=line_b.pk).quantity_cancelled == 0  # nothing yet
    done = csr.post(url, {"reason": "Customer changed their mind", f"qty_{line_b.pk}": "1", "confirm": "1"})
    assert done.status_code == 302 and done["Location"] == f"/console/orders/{order.number}/"
    line_b.refresh_from_db()
    assert (line_b.quantity_cancelled, line_b.quantity_allocated) == (1, 0)
    event = OrderEvent.objects.get(order=order, type="order.cancelled")
    assert (event.actor_type, event.actor_label) == ("user", "csr")
    assert "Lines cancelled." in text(csr.get(f"/console/orders/{order.number}/"))


def test_cancel_whole_order_and_the_refusal_after_it(csr, place):
    order = place()
    url = f"/console/orders/{order.number}/cancel/"
    confirm = csr.post(url, {"reason": "Fraud suspected"})
    assert "Cancel the whole order: 4 open unit(s)" in text(confirm)
    assert "82.00 USD goes back" in text(confirm)
    csr.post(url, {"reason": "Fraud suspected", "confirm": "1"})
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert Stock.objects.get(location__code="DC1", item__sku="A").reserved == 0


def test_cancel_refusals_change_nothing(csr, place, unchanged):
    order = place()
    line_a = order.lines.order_by("id").first()
    url = f"/console/orders/{order.number}/cancel/"
    with unchanged():
        too_many = csr.post(url, {"reason": "x", f"qty_{line_a.pk}": "9", "confirm": "1"})
        assert too_many.status_code == 400
        assert "less than or equal to 3" in text(too_many)
        no_reason = csr.post(url, {"reason": "", "confirm": "1"})
        assert no_reason.status_code == 400
    services.order_cancel(order_number=order.number, reason="gone", actor=services.Actor.system("t"))
    again = csr.post(url, {"reason": "again", "confirm": "1"})
    assert again.status_code == 409
    assert "nothing is left to cancel" in text(again)
    assert user_events(order) == []


def test_hold_and_release(csr, place, run_on_commit):
    order = place()
    hold_url = f"/console/orders/{order.number}/hold/"
    assert "Please confirm" in text(
        csr.post(hold_url, {"hold_type": "customer_service", "reason": "Wants to add an item"})
    )
    r = csr.post(hold_url, {"hold_type": "customer_service", "reason": "Wants to add an item", "confirm": "1"})
    assert r.status_code == 302
    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD
    page = text(csr.get(f"/console/orders/{order.number}/"))
    assert "Wants to add an item" in page and "Release…" in page
    release_url = f"/console/orders/{order.number}/release/"
    confirm = csr.post(release_url, {"note": "Customer decided"})
    assert "No hold is left" in text(confirm)
    r = run_on_commit(csr.post, release_url, {"note": "Customer decided", "confirm": "1"})
    assert r.status_code == 302
    order.refresh_from_db()
    assert order.status == OrderStatus.ALLOCATED
    assert user_events(order) == ["order.held", "order.released"]


def test_hold_refused_once_shipped(csr, place):
    order = place()
    actor = services.Actor.system("t")
    fulfillment = order.fulfillments.get()
    services.fulfillment_accept(fulfillment_id=fulfillment.pk, actor=actor)
    services.fulfillment_ship(fulfillment_id=fulfillment.pk, actor=actor)
    r = csr.post(f"/console/orders/{order.number}/hold/", {"hold_type": "manual", "reason": "late", "confirm": "1"})
    assert r.status_code == 409
    assert "cannot be held" in text(r)


def test_change_address(csr, place):
    order = place()
    url = f"/console/orders/{order.number}/address/"
    assert 'value="12 Analytical Way"' in text(csr.get(url))  # prefilled
    data = {"name": "Ada L", "line1": "1 New Street", "city": "Boston", "postal_code": "02111", "country": "us"}
    confirm = csr.post(url, data)
    assert "To: 1 New Street, 02111, Boston, US" in text(confirm)
    csr.post(url, {**data, "confirm": "1"})
    order.refresh_from_db()
    assert (order.ship_line1, order.ship_country) == ("1 New Street", "US")
    assert user_events(order) == ["order.address_changed"]
    bad = csr.post(url, {**data, "country": "USA", "confirm": "1"})
    assert bad.status_code == 400


def test_add_note_needs_no_confirmation(csr, place):
    order = place()
    r = csr.post(f"/console/orders/{order.number}/note/", {"text": "Called back, left a voicemail"})
    assert r.status_code == 302
    note = OrderEvent.objects.get(order=order, type="note")
    assert (note.message, note.actor_label) == ("Called back, left a voicemail", "csr")
    assert csr.post(f"/console/orders/{order.number}/note/", {"text": "  "}).status_code == 400


def test_reroute_shows_the_simulation_then_moves_the_units_elsewhere(csr, place, run_on_commit):
    order = place()
    fulfillment = order.fulfillments.get()
    assert fulfillment.location.code == "DC1"
    url = f"/console/orders/{order.number}/fulfilments/{fulfillment.pk}/reroute/"
    simulation = text(csr.get(url))
    assert "Simulation: without DC1" in simulation
    assert "Shipped from DC2" in simulation  # where routing would send the units now
    assert "DC1" in simulation and "excluded" in simulation  # DC1 is left out, with the reason
    confirm = csr.post(url, {"reason": "DC1 flooded"})
    assert "Please confirm" in text(confirm)
    r = run_on_commit(csr.post, url, {"reason": "DC1 flooded", "confirm": "1"})
    assert r.status_code == 302
    fulfillment.refresh_from_db()
    assert fulfillment.status == FulfillmentStatus.CANCELLED
    assert fulfillment.rejection_reason == ""  # not a rejection by DC1
    live = order.fulfillments.exclude(pk=fulfillment.pk).get()
    assert (live.location.code, live.status) == ("DC2", FulfillmentStatus.CREATED)
    assert Stock.objects.get(location__code="DC1", item__sku="A").reserved == 0
    assert Stock.objects.get(location__code="DC2", item__sku="A").reserved == 3
    assert user_events(order) == ["fulfillment.rerouted"]
    event = OrderEvent.objects.get(order=order, type="fulfillment.rerouted")
    assert "DC1 flooded" in event.message


def test_reroute_refused_once_picking_started(csr, place):
    order = place()
    fulfillment = order.fulfillments.get()
    actor = services.Actor.system("t")
    services.fulfillment_accept(fulfillment_id=fulfillment.pk, actor=actor)
    Fulfillment.objects.filter(pk=fulfillment.pk).update(status=FulfillmentStatus.PICKING)
    r = csr.post(
        f"/console/orders/{order.number}/fulfilments/{fulfillment.pk}/reroute/", {"reason": "x", "confirm": "1"}
    )
    assert r.status_code == 409
    assert "before picking starts" in text(r)
    assert csr.get(f"/console/orders/{order.number}/fulfilments/999999/reroute/").status_code == 404


def test_resend_a_dead_lettered_partner_request(csr, place, settings, monkeypatch):
    Location.objects.filter(code="DC1").update(
        connector=Location.Connector.WEBHOOK, partner_url="http://127.0.0.1:9/partner", partner_secret="s"
    )
    order = place()  # the partner cannot be reached: the request is retried later
    fulfillment = order.fulfillments.get()
    message = OutboxMessage.objects.get(topic="orders.send_fulfillment")
    OutboxMessage.objects.filter(pk=message.pk).update(status=OutboxStatus.DEAD, attempts=12, last_error="timed out")
    page = text(csr.get(f"/console/orders/{order.number}/"))
    assert "Resend to partner…" in page and "Dead-lettered after 12 attempt(s)" in page
    queue = text(csr.get("/console/queues/dead-letters/"))
    assert order.number in queue and "Resend…" in queue
    url = f"/console/orders/{order.number}/fulfilments/{fulfillment.pk}/resend/"
    assert "timed out" in text(csr.get(url))
    r = csr.post(url, {"confirm": "1"})
    assert r.status_code == 302
    message.refresh_from_db()
    assert (message.status, message.attempts) == (OutboxStatus.PENDING, 0)
    assert user_events(order) == ["fulfillment.resent"]
    services.fulfillment_accept(fulfillment_id=fulfillment.pk, actor=services.Actor.system("t"))
    again = csr.post(url, {"confirm": "1"})
    assert again.status_code == 409 and "already has it" in text(again)


def test_route_again_for_a_backorder(csr, place, network, run_on_commit):
    order = place(lines=[{"sku": "A", "quantity": 60, "unit_price": "1.00"}], payment=None, allow_backorder=True)
    assert order.status in (OrderStatus.BACKORDERED, OrderStatus.PARTIALLY_ALLOCATED)
    queue = text(csr.get("/console/queues/backorders/"))
    assert order.number in queue and "A × 5" in queue
    stock(network["dc2"], network["item"], 100)  # more arrives (the supply event would route it too)
    r = run_on_commit(csr.post, f"/console/orders/{order.number}/route-again/", {"confirm": "1"})
    assert r.status_code == 302
    order.refresh_from_db()
    assert order.status == OrderStatus.ALLOCATED
    assert user_events(order) == ["routing.requested"]
    again = csr.post(f"/console/orders/{order.number}/route-again/", {"confirm": "1"})
    assert again.status_code == 409


def test_htmx_actions_answer_with_a_fragment_and_a_redirect_header(csr, place):
    order = place()
    url = f"/console/orders/{order.number}/hold/"
    fragment = csr.get(url, headers={"HX-Request": "true"})
    assert "<html" not in text(fragment) and 'id="action-hold"' in text(fragment)
    done = csr.post(url, {"hold_type": "manual", "reason": "r", "confirm": "1"}, headers={"HX-Request": "true"})
    assert done.status_code == 204 and done["HX-Redirect"] == f"/console/orders/{order.number}/"


def test_next_keeps_the_csr_in_the_queue_but_never_leaves_the_site(csr, place):
    order = place()
    services.order_hold(order_number=order.number, hold_type="manual", reason="r", actor=services.Actor.system("t"))
    url = f"/console/orders/{order.number}/release/"
    r = csr.post(url, {"note": "", "confirm": "1", "next": "/console/queues/holds/"})
    assert r["Location"] == "/console/queues/holds/"
    services.order_hold(order_number=order.number, hold_type="manual", reason="r", actor=services.Actor.system("t"))
    r = csr.post(url, {"note": "", "confirm": "1", "next": "https://evil.example/"})
    assert r["Location"] == f"/console/orders/{order.number}/"


# --- Queues, inventory, customer ------------------------------------------------------------------


def test_queues_list_what_needs_attention(csr, place, run_on_commit):
    held = place(external_id="H")
    services.order_hold(
        order_number=held.number, hold_type="fraud_review", reason="Velocity", actor=services.Actor.system("t")
    )
    rejected = place(external_id="R", lines=[{"sku": "B", "quantity": 1, "unit_price": "1"}], payment=None)
    fulfillment = rejected.fulfillments.get()
    run_on_commit(
        services.fulfillment_reject,
        fulfillment_id=fulfillment.pk,
        reason="Damaged in store",
        actor=services.Actor.system("t"),
    )
    counts = csr.get("/console/queues/").context["counts"]
    assert (counts["on_hold"], counts["rejected"]) == (1, 1)
    holds = text(csr.get("/console/queues/holds/"))
    assert held.number in holds and "Velocity" in holds
    assert rejected.number in text(csr.get("/console/queues/rejected/"))
    assert "Damaged in store" in text(csr.get("/console/queues/rejected/"))
    assert csr.get("/console/queues/nope/").status_code == 404


def test_uncollected_pickups_queue(csr, place, network):
    stock(network["store"], network["item"], 2)
    order = place(
        fulfillment_method="pickup",
        pickup_location="STORE1",
        lines=[{"sku": "A", "quantity": 1, "unit_price": "1"}],
        payment=None,
        shipping_address=None,
    )
    fulfillment = order.fulfillments.get()
    actor = services.Actor.system("t")
    services.fulfillment_accept(fulfillment_id=fulfillment.pk, actor=actor)
    services.fulfillment_ready_for_pickup(fulfillment_id=fulfillment.pk, actor=actor)
    page = text(csr.get("/console/queues/pickups/"))
    assert order.number in page and "STORE1" in page
    fulfillment.refresh_from_db()
    assert fulfillment.pickup_expires_at.strftime("%Y-%m-%d %H:%M") in page  # kept until
    detail = text(csr.get(f"/console/orders/{order.number}/"))
    assert f'pickup code <span class="tracking">{fulfillment.pickup_code}</span>' in detail


def test_inventory_lookup_across_locations_channels_and_nearby_stores(csr, two_dcs, network):
    stock(network["store"], network["item"], 4, safety_stock=1)
    SupplyFactory(location=network["dc2"], item=network["item"], quantity=20)
    r = csr.get("/console/inventory/", {"sku": "A"})
    lookup = r.context["lookup"]
    rows = {
        row.location.code: (row.on_hand, row.reserved, row.safety_stock, row.available, row.incoming)
        for row in lookup.rows
    }
    assert rows == {"DC1": (5, 0, 0, 5, 0), "DC2": (50, 0, 0, 50, 20), "STORE1": (4, 0, 1, 3, 0)}
    atp = {c["channel"]: c["available"] for c in lookup.channels}
    assert atp == {"web": 58, "market": 5}
    near = csr.get("/console/inventory/", {"sku": "A", "channel": "web", "near": "40.75, -73.99", "radius_km": "20"})
    assert [row["location"] for row in near.context["near"]] == ["STORE1"]  # the only pickup store, 2 km away
    assert "Pickup near" in text(near)
    unknown = csr.get("/console/inventory/", {"sku": "NOPE"})
    assert "No SKU NOPE." in text(unknown)
    nowhere = csr.get("/console/inventory/", {"sku": "A", "channel": "web", "near": "Atlantis"})
    assert "Could not place" in text(nowhere)


def test_customer_view_lists_every_order_across_channels(csr, place, network):
    first = place(external_id="W-1")
    second = place(
        channel="market", external_id="M-1", lines=[{"sku": "A", "quantity": 1, "unit_price": "10.00"}], payment=None
    )
    r = csr.get(f"/console/customers/{first.customer_id}/")
    assert [o.number for o in r.context["page"].rows] == [second.number, first.number]
    assert r.context["summary"]["channels"] == ["market", "web"]
    ItemFactory(sku="UNUSED")  # unrelated data does not show up
    assert csr.get("/console/customers/999999/").status_code == 404


@pytest.mark.postgres
def test_a_misspelt_name_finds_similar_names_on_postgresql(csr, place):
    ada = place()
    r = csr.get("/console/", {"q": "Ada Lovelase"})
    assert numbers(r) == [ada.number]
    assert "similar name" in text(r)
    assert numbers(csr.get("/console/", {"q": "Zzyzx Qwerty"})) == []


def test_order_page_shows_each_shipments_tracking(csr, place):
    from datetime import datetime

    from orders.carriers.adapters import TrackingEventData
    from orders.carriers.services import shipment_record_tracking
    from orders.models import Carrier

    Carrier.objects.create(code="SANDBOX", name="Sandbox Express", adapter="sandbox", base_url="http://127.0.0.1:9")
    order = place()
    actor = services.Actor.system("t")
    fulfillment = order.fulfillments.get()
    services.fulfillment_accept(fulfillment_id=fulfillment.pk, actor=actor)
    shipment = services.fulfillment_ship(
        fulfillment_id=fulfillment.pk, actor=actor, carrier="sandbox", tracking_number="SBX123"
    )
    shipment_record_tracking(
        shipment_id=shipment.pk,
        events_in=[
            TrackingEventData(
                "e1", "in_transit", datetime(2026, 11, 20, 9, tzinfo=UTC), "Departed facility", "Edison, NJ"
            ),
            TrackingEventData(
                "e2", "out_for_delivery", datetime(2026, 11, 21, 7, tzinfo=UTC), "Out for delivery", "New York, NY"
            ),
        ],
        actor=actor,
        source="poll",
    )
    page = text(csr.get(f"/console/orders/{order.number}/"))
    assert "Sandbox Express" in page and "SBX123" in page
    assert "Out for delivery, New York, NY" in page  # the latest scan, on top
    assert "Departed facility" in page and "(2 scans)" in page


# --- Returns, exchanges, appeasements ---------------------------------------------------------------


@pytest.fixture
def shipped(place):
    """An order whose one fulfilment has shipped (so its payment is captured)."""

    def make(**changes) -> Order:
        order = place(**changes)
        actor = services.Actor.system("t")
        fulfillment = order.fulfillments.get()
        services.fulfillment_accept(fulfillment_id=fulfillment.pk, actor=actor)
        services.fulfillment_ship(fulfillment_id=fulfillment.pk, actor=actor, carrier="UPS", tracking_number="1Z1")
        order.refresh_from_db()
        return order

    return make


def test_create_a_return_with_an_exchange(csr, shipped):
    from returns.models import Return

    order = shipped()
    line_a, line_b = order.lines.order_by("id")
    url = f"/console/orders/{order.number}/return/"
    form = text(csr.get(url))
    assert f'name="qty_{line_a.pk}"' in form and 'value="changed_mind"' in form
    data = {
        "method": "mail",
        f"qty_{line_a.pk}": "1",
        f"reason_{line_a.pk}": "wrong_size",
        "exchange_sku": "A",
        "exchange_quantity": "1",
    }
    confirm = csr.post(url, data)
    assert "Take back 1 × A" in text(confirm) and "Exchange: a new linked order for 1 × A" in text(confirm)
    assert not Return.objects.exists()
    done = csr.post(url, {**data, "confirm": "1"})
    assert done.status_code == 302
    rma = Return.objects.get()
    assert (rma.order_id, rma.actor_label, rma.exchange_order is not None) == (order.pk, "csr", True)
    page = text(csr.get(f"/console/orders/{order.number}/"))
    assert rma.number in page and rma.exchange_order.number in page and "Wrong size" in page
    assert "csr" in {e.actor_label for e in OrderEvent.objects.filter(order=order, type__startswith="return.")}
    exchange_page = text(csr.get(f"/console/orders/{rma.exchange_order.number}/"))
    assert f"Exchange for return {rma.number}" in exchange_page
    customer = text(csr.get(f"/console/customers/{order.customer_id}/"))
    assert rma.number in customer


def test_return_refusals(csr, place, shipped):
    from returns.models import Return

    not_shipped = place(external_id="NS")
    assert "Create return…" not in text(csr.get(f"/console/orders/{not_shipped.number}/"))
    order = shipped()
    line_a = order.lines.order_by("id").first()
    url = f"/console/orders/{order.number}/return/"
    too_many = csr.post(url, {"method": "mail", f"qty_{line_a.pk}": "4", f"reason_{line_a.pk}": "defective"})
    assert too_many.status_code == 400 and "less than or equal to 3" in text(too_many)
    nothing = csr.post(url, {"method": "mail", "confirm": "1"})
    assert nothing.status_code == 400 and "at least one line" in text(nothing)
    no_reason = csr.post(url, {"method": "mail", f"qty_{line_a.pk}": "1", "confirm": "1"})
    assert no_reason.status_code == 400 and "Choose a reason" in text(no_reason)
    unknown = csr.post(
        url,
        {
            "method": "mail",
            f"qty_{line_a.pk}": "1",
            f"reason_{line_a.pk}": "defective",
            "exchange_sku": "NOPE",
            "exchange_quantity": "1",
            "confirm": "1",
        },
    )
    assert unknown.status_code == 400 and "NOPE" in text(unknown)
    assert not Return.objects.exists()


def test_appeasement_over_the_csr_limit_is_refused_and_a_supervisor_may_give_it(login, shipped):
    from returns.models import Appeasement, Refund

    order = shipped()
    url = f"/console/orders/{order.number}/appease/"
    data = {"kind": "refund", "amount": "40.00", "reason": "late_delivery", "note": "Parcel a week late"}
    csr = login("csr")
    confirm = csr.post(url, data)
    assert "above your limit of 25.00 USD: it will be refused" in text(confirm)
    refused = csr.post(url, {**data, "confirm": "1"})
    assert refused.status_code == 403
    assert "above your appeasement limit of 25.00" in text(refused)
    assert not Appeasement.objects.exists() and not Refund.objects.exists()

    supervisor = login("supervisor")
    done = supervisor.post(url, {**data, "confirm": "1"})
    assert done.status_code == 302
    appeasement = Appeasement.objects.get()
    assert (appeasement.status, appeasement.amount, appeasement.actor_label) == (
        "issued",
        Decimal("40.00"),
        "supervisor",
    )
    assert Refund.objects.get().amount == Decimal("40.00")
    page = text(supervisor.get(f"/console/orders/{order.number}/"))
    assert "Late delivery" in page and "40.00 USD" in page
    assert "supervisor" in {
        e.actor_label for e in OrderEvent.objects.filter(order=order, type__startswith="appeasement")
    }


def test_appeasement_waiting_for_approval_is_approved_by_a_supervisor(login, shipped):
    from returns.models import Appeasement

    order = shipped()
    csr = login("csr")
    data = {"kind": "credit", "amount": "60.00", "reason": "service_recovery", "request_approval": "on"}
    r = csr.post(f"/console/orders/{order.number}/appease/", {**data, "confirm": "1"})
    assert r.status_code == 302
    appeasement = Appeasement.objects.get()
    assert appeasement.status == "pending_approval"
    assert "Approve…" not in text(csr.get(f"/console/orders/{order.number}/"))  # not a CSR's decision
    assert csr.get(f"/console/orders/{order.number}/appeasements/{appeasement.pk}/approve/").status_code == 403
    supervisor = login("supervisor")
    queue = text(supervisor.get("/console/queues/appeasements/"))
    assert order.number in queue and "60.00 USD" in queue
    url = f"/console/orders/{order.number}/appeasements/{appeasement.pk}/approve/"
    r = supervisor.post(url, {"note": "Loyal customer", "confirm": "1", "next": "/console/queues/appeasements/"})
    assert r.status_code == 302 and r["Location"] == "/console/queues/appeasements/"
    appeasement.refresh_from_db()
    assert (appeasement.status, appeasement.decided_by) == ("issued", "supervisor")
    assert appeasement.credit_reference


def test_late_fulfilments_filter_queue_and_order_page(csr, place):
    on_time = place(external_id="OK")
    late = place(external_id="LATE")
    fulfillment = late.fulfillments.get()
    assert fulfillment.due_at is not None  # the SLA due time is set when routing releases it
    Fulfillment.objects.filter(pk=fulfillment.pk).update(due_at=timezone.now() - timedelta(hours=3))
    Fulfillment.objects.filter(order=on_time).update(due_at=timezone.now() + timedelta(hours=3))
    r = csr.get("/console/", {"late": "on"})
    assert numbers(r) == [late.number]
    assert 'class="badge bad">Late' in text(csr.get("/console/", {"channel": "web"}))
    assert csr.get("/console/queues/").context["counts"]["late"] == 1
    queue = text(csr.get("/console/queues/late/"))
    assert late.number in queue and on_time.number not in queue and "Re-route…" in queue
    page = text(csr.get(f"/console/orders/{late.number}/"))
    assert "due " in page and 'class="badge bad">Late' in page
    services.fulfillment_accept(fulfillment_id=fulfillment.pk, actor=services.Actor.system("t"))
    Fulfillment.objects.filter(pk=fulfillment.pk).update(status=FulfillmentStatus.PACKED)
    assert numbers(csr.get("/console/", {"late": "on"})) == []  # packed: the SLA clock stopped


# --- Receiving a return -------------------------------------------------------------------------


@pytest.fixture
def awaiting(shipped, network, run_on_commit):
    """A shipped order with a return of two units of line A (3 shipped), expected at DC1."""
    from returns.services import ReturnInput, ReturnLineInput, return_create

    def make():
        Location.objects.filter(code="DC1").update(accepts_returns=True)
        order = shipped()
        line_a = order.lines.order_by("id").first()
        rma = run_on_commit(
            return_create,
            data=ReturnInput(
                order_number=order.number,
                lines=[ReturnLineInput(line_a.pk, 2, "changed_mind")],
                location="DC1",
            ),
            actor=services.Actor.system("t"),
        )
        return order, rma, rma.lines.get()

    return make


def receipt_state(order):
    """What a receipt changes besides stock: receipts, refunds, line and return counters, events."""
    from returns.models import Refund, Return, ReturnLine, ReturnReceipt

    return (
        ReturnReceipt.objects.count(),
        Refund.objects.count(),
        sorted(ReturnLine.objects.values_list("pk", "quantity_received", "quantity_not_returned")),
        sorted(Return.objects.values_list("pk", "status", "refund_amount")),
        sorted(order.lines.values_list("pk", "quantity_returned")),
        OrderEvent.objects.filter(order=order).count(),
    )


def test_receive_one_sellable_and_one_damaged_restocks_one_and_refunds_what_the_service_computed(
    csr, awaiting, run_on_commit
):
    from inventory.models import MovementReason, StockMovement
    from returns.models import Refund, ReturnReceipt, ReturnStatus

    order, rma, rl = awaiting()
    page = text(csr.get(f"/console/orders/{order.number}/"))
    url = f"/console/orders/{order.number}/returns/{rma.number}/receive/"
    assert f'href="{url}"' in page and "Receive…" in page
    form = text(csr.get(url))
    assert f'name="qty_{rl.pk}_sellable"' in form and f'name="disp_{rl.pk}_damaged"' in form
    assert 'value="DC1" selected' in form and 'value="DC2"' not in form  # only locations that take returns
    assert '<option value="restock" selected>' in form  # sellable goods go back on the shelf by default

    on_hand = Stock.objects.get(location__code="DC1", item__sku="A").on_hand
    data = {"location": "DC1", f"qty_{rl.pk}_sellable": "1", f"qty_{rl.pk}_damaged": "1"}
    before = receipt_state(order)
    confirm = csr.post(url, data)
    assert confirm.status_code == 200 and "Please confirm" in text(confirm)
    assert "1 × A (line" in text(confirm) and "restock at DC1 (on hand +1)" in text(confirm)
    assert "damaged → write off" in text(confirm) and "the return is inspected" in text(confirm)
    assert receipt_state(order) == before  # nothing yet

    done = run_on_commit(csr.post, url, {**data, "confirm": "1"})
    assert done.status_code == 302 and done["Location"] == f"/console/orders/{order.number}/"
    rma.refresh_from_db()
    rl.refresh_from_db()
    assert rma.status in (ReturnStatus.INSPECTED, ReturnStatus.REFUNDED)
    assert (rl.quantity_received, rl.quantity_not_returned) == (2, 0)
    assert order.lines.get(pk=rl.order_line_id).quantity_returned == 2
    assert Stock.objects.get(location__code="DC1", item__sku="A").on_hand == on_hand + 1
    movement = StockMovement.objects.get(reason=MovementReason.RETURN)
    assert (movement.delta_on_hand, movement.location.code, movement.on_hand_after) == (1, "DC1", on_hand + 1)
    assert movement.reference.startswith(rma.number)
    receipt = ReturnReceipt.objects.get()
    assert (receipt.actor_label, receipt.location.code) == ("csr", "DC1")
    assert sorted(receipt.lines.values_list("condition", "disposition")) == [
        ("damaged", "write_off"),
        ("sellable", "restock"),
    ]
    refunds = list(Refund.objects.filter(rma=rma))
    assert rma.refund_amount > 0
    assert sum(r.amount for r in refunds) == rma.refund_amount == Decimal(receipt.refund_breakdown["amount"])
    event = OrderEvent.objects.get(order=order, type="return.received")
    assert (event.actor_type, event.actor_label) == ("user", "csr")

    page = text(csr.get(f"/console/orders/{order.number}/"))
    refund = f"{rma.refund_amount:,.2f} USD"
    assert f"Return {rma.number} received at DC1; refund {refund}." in page
    assert f"Refund for this receipt: <strong>{refund}</strong>" in page
    assert "restocked at DC1" in page and "write off" in page
    assert f'href="{url}"' not in page  # nothing left to receive


def test_receive_refusals_change_nothing(login, users, awaiting, unchanged):
    from django.contrib.auth.models import Permission

    from returns.services import return_cancel

    order, rma, rl = awaiting()
    url = f"/console/orders/{order.number}/returns/{rma.number}/receive/"
    good = {"location": "DC1", f"qty_{rl.pk}_sellable": "1", "confirm": "1"}
    before = receipt_state(order)
    with unchanged():
        # Viewing orders and creating returns is not enough: receiving needs returns.change_return.
        users["nobody"].user_permissions.add(*Permission.objects.filter(codename__in=["view_order", "add_return"]))
        viewer = login("nobody")
        assert "Receive…" not in text(viewer.get(f"/console/orders/{order.number}/"))
        assert viewer.get(url).status_code == 403
        assert viewer.post(url, good).status_code == 403

        csr = login("csr")
        too_many = csr.post(url, {**good, f"qty_{rl.pk}_sellable": "2", f"qty_{rl.pk}_missing": "1"})
        assert too_many.status_code == 400 and "3 units counted but only 2 still expected" in text(too_many)
        over_max = csr.post(url, {**good, f"qty_{rl.pk}_sellable": "3"})
        assert over_max.status_code == 400 and "less than or equal to 2" in text(over_max)
        no_returns = csr.post(url, {**good, "location": "DC2"})  # DC2 does not take returns
        assert no_returns.status_code == 400 and "Select a valid choice" in text(no_returns)
        nothing = csr.post(url, {"location": "DC1", "confirm": "1"})
        assert nothing.status_code == 400 and "at least one line" in text(nothing)
        bad_disposition = csr.post(url, {**good, f"disp_{rl.pk}_sellable": "none"})
        assert bad_disposition.status_code == 400
        assert receipt_state(order) == before

        # The service has the last word: a cancelled return cannot be received (shown in place).
        return_cancel(return_id=rma.pk, reason="customer kept it", actor=services.Actor.system("t"))
        before = receipt_state(order)
        refused = csr.post(url, good, HTTP_HX_REQUEST="true")
        assert refused.status_code == 409 and 'id="action-error"' in text(refused)
        assert "cannot be received" in text(refused)
        assert receipt_state(order) == before
    assert csr.get(f"/console/orders/{order.number}/returns/NOPE/receive/").status_code == 404
