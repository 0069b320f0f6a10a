"""Routing end to end in-process: capture → route → fulfilments, rejection → re-route,
backorders released by supply, holds, profile versions, simulation."""

from datetime import date, timedelta

import pytest

from inventory.models import Stock, StockMovement
from inventory.selectors import ledger_mismatches
from orders.models import Allocation, Fulfillment, Order
from routing import services
from routing.models import ProfileVersion, RoutingDecision, RoutingProfile, Strategy
from tests.factories import LocationFactory, stock

# Real commits: routing starts from the outbox after the capture's transaction commits.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two_dcs(network):
    """DC1 in New York (priority 10), DC2 in Los Angeles (priority 20); customer in NYC."""
    stock(network["dc1"], network["item"], 5)
    stock(network["dc1"], network["other"], 5)
    stock(network["dc2"], network["item"], 50)
    stock(network["dc2"], network["other"], 50)
    return network


def held(loc, sku):
    s = Stock.objects.get(location__code=loc, item__sku=sku)
    return s.reserved


def plan_of(order):
    return {
        f["location"]: sorted((line["line_id"], line["quantity"]) for line in f["lines"])
        for f in order["fulfillments"]
        if f["status"] != "rejected"
    }


def test_capture_is_routed_to_the_nearest_location_with_everything(api, order_body, two_dcs):
    r = api.post("/api/v1/orders/", order_body(), format="json")
    assert r.status_code == 201, r.content
    order = api.get(f"/api/v1/orders/{r.json()['number']}/").json()
    a, b = (line["id"] for line in order["lines"])
    assert order["status"] == "allocated"
    assert plan_of(order) == {"DC1": [(a, 3), (b, 1)]}
    assert [al["provisional"] for line in order["lines"] for al in line["allocations"]] == [False, False]
    assert order["routing"]["attempt"] == 1 and order["routing"]["summary"]
    assert order["routing"]["explanation"]["winner"]
    assert "order.routed" in [e["type"] for e in order["events"]]
    assert (held("DC1", "A"), held("DC2", "A")) == (3, 0)
    assert ledger_mismatches() == []


def test_routing_moves_provisional_holds_when_the_plan_differs(api, order_body, two_dcs):
    # Not enough at DC1 for 6 units: capture holds 5 at DC1 + 1 at DC2; routing prefers one
    # shipment from DC2 and moves every unit there (new hold first, then release).
    body = order_body(lines=[{"sku": "A", "quantity": 6, "unit_price": "10.00"}], payment=None, tax_total="0")
    number = api.post("/api/v1/orders/", body, format="json").json()["number"]
    order = api.get(f"/api/v1/orders/{number}/").json()
    line = order["lines"][0]["id"]
    assert plan_of(order) == {"DC2": [(line, 6)]}
    assert (held("DC1", "A"), held("DC2", "A")) == (0, 6)
    reasons = list(
        StockMovement.objects.filter(reference=f"order:{number}")
        .order_by("id")
        .values_list("reason", "location__code", "delta_reserved")
    )
    assert reasons[-2:] == [("reserve", "DC2", 5), ("release", "DC1", -5)]
    assert ledger_mismatches() == []


def test_route_order_twice_allocates_once(api, order_body, two_dcs):
    number = api.post("/api/v1/orders/", order_body(), format="json").json()["number"]
    assert services.route_order(order_number=number) is None  # nothing left to route
    assert Fulfillment.objects.filter(order__number=number).count() == 1
    assert RoutingDecision.objects.filter(order__number=number).count() == 1
    assert held("DC1", "A") == 3


def test_pickup_order_is_fulfilled_at_the_store(api, order_body, two_dcs):
    stock(two_dcs["store"], two_dcs["item"], 2)
    body = order_body(
        fulfillment_method="pickup",
        pickup_location="STORE1",
        shipping_address=None,
        lines=[{"sku": "A", "quantity": 2, "unit_price": "10.00"}],
        payment=None,
        tax_total="0",
        shipping_total="0",
    )
    number = api.post("/api/v1/orders/", body, format="json").json()["number"]
    order = api.get(f"/api/v1/orders/{number}/").json()
    assert list(plan_of(order)) == ["STORE1"]


def test_rejection_reroutes_elsewhere_and_counts(api, order_body, two_dcs, settings):
    number = api.post("/api/v1/orders/", order_body(), format="json").json()["number"]
    order = api.get(f"/api/v1/orders/{number}/").json()
    first = order["fulfillments"][0]["id"]
    r = api.post(f"/api/v1/fulfillments/{first}/reject/", {"reason": "damaged stock"}, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["status"] == "rejected"
    order = api.get(f"/api/v1/orders/{number}/").json()
    a, b = (line["id"] for line in order["lines"])
    assert plan_of(order) == {"DC2": [(a, 3), (b, 1)]}
    assert order["routing"]["attempt"] == 2
    assert (held("DC1", "A"), held("DC2", "A")) == (0, 3)
    dc1 = next(
        c for s in order["routing"]["explanation"]["strategies"] for c in s["candidates"] if c["location"] == "DC1"
    )
    assert dc1["excluded_by"]
    assert ledger_mismatches() == []


def test_partial_rejection_reroutes_only_the_rejected_units(api, order_body, two_dcs):
    number = api.post("/api/v1/orders/", order_body(), format="json").json()["number"]
    order = api.get(f"/api/v1/orders/{number}/").json()
    a, b = (line["id"] for line in order["lines"])
    f1 = order["fulfillments"][0]["id"]
    r = api.post(
        f"/api/v1/fulfillments/{f1}/reject/",
        {"reason": "one short", "lines": [{"line_id": a, "quantity": 1}]},
        format="json",
    )
    assert r.json()["status"] == "created"
    order = api.get(f"/api/v1/orders/{number}/").json()
    assert plan_of(order) == {"DC1": [(a, 3), (b, 1)], "DC2": [(a, 1)]}
    dc1 = next(f for f in order["fulfillments"] if f["location"] == "DC1")
    assert dc1["lines"][0]["quantity_rejected"] == 1
    assert (held("DC1", "A"), held("DC2", "A")) == (2, 1)


def test_too_many_rejections_go_to_the_exception_queue(api, order_body, two_dcs, settings):
    settings.ROUTING_MAX_ATTEMPTS = 2
    number = api.post("/api/v1/orders/", order_body(), format="json").json()["number"]
    for _ in range(2):
        fulfillment = Fulfillment.objects.filter(order__number=number, status="created").first()
        api.post(f"/api/v1/fulfillments/{fulfillment.pk}/reject/", {"reason": "no"}, format="json")
    order = api.get(f"/api/v1/orders/{number}/").json()
    assert order["status"] == "on_hold"
    assert order["holds"][0]["type"] == "sourcing"
    assert held("DC1", "A") == held("DC2", "A") == 0


def test_backorder_is_routed_when_supply_arrives(api, order_body, two_dcs):
    body = order_body(
        allow_backorder=True, lines=[{"sku": "A", "quantity": 60, "unit_price": "1.00"}], payment=None, tax_total="0"
    )
    number = api.post("/api/v1/orders/", body, format="json").json()["number"]
    order = api.get(f"/api/v1/orders/{number}/").json()
    assert order["lines"][0]["quantity_backordered"] == 5
    assert order["status"] == "partially_allocated"
    supply = api.post(
        "/api/v1/inventory/supply/",
        {
            "supply": [
                {
                    "location": "DC2",
                    "sku": "A",
                    "quantity": 10,
                    "expected_date": str(date.today() + timedelta(days=2)),
                    "reference": "PO-1",
                }
            ]
        },
        format="json",
    ).json()[0]
    api.post(f"/api/v1/inventory/supply/{supply['id']}/receive/", {"quantity": 10}, format="json")
    order = api.get(f"/api/v1/orders/{number}/").json()
    assert order["lines"][0]["quantity_backordered"] == 0
    assert order["status"] == "allocated"
    assert ledger_mismatches() == []


def test_held_orders_are_not_routed_until_released(api, order_body, two_dcs):
    from orders.models import HoldRule

    HoldRule.objects.create(name="big", condition="order_total_above", amount=10, hold_type="fraud_review")
    number = api.post("/api/v1/orders/", order_body(), format="json").json()["number"]
    assert not Fulfillment.objects.filter(order__number=number).exists()
    assert Allocation.objects.filter(line__order__number=number, provisional=True).exists()
    api.post(f"/api/v1/orders/{number}/release/", {"note": "ok"}, format="json")
    assert Fulfillment.objects.filter(order__number=number).count() == 1
    assert Order.objects.get(number=number).status == "allocated"


def test_cancel_after_routing_shrinks_and_cancels_fulfilments(api, order_body, two_dcs):
    number = api.post("/api/v1/orders/", order_body(), format="json").json()["number"]
    order = api.get(f"/api/v1/orders/{number}/").json()
    a = order["lines"][0]["id"]
    api.post(
        f"/api/v1/orders/{number}/cancel/", {"reason": "x", "lines": [{"line_id": a, "quantity": 3}]}, format="json"
    )
    f = Fulfillment.objects.get(order__number=number)
    assert {fl.line_id: fl.quantity for fl in f.lines.all()}[a] == 0
    api.post(f"/api/v1/orders/{number}/cancel/", {"reason": "x"}, format="json")
    f.refresh_from_db()
    assert f.status == "cancelled"
    assert held("DC1", "A") == held("DC1", "B") == 0


def test_decision_records_the_active_profile_version(api, order_body, two_dcs):
    profile = RoutingProfile.objects.create(name="Web", channel=two_dcs["web"])
    draft = services.version_create_draft(profile=profile)
    Strategy.objects.create(version=draft, position=1, name="Cheapest", weight_distance=0, weight_cost=1)
    two_dcs["dc2"].fulfillment_cost = 1
    two_dcs["dc2"].save()
    two_dcs["dc1"].fulfillment_cost = 9
    two_dcs["dc1"].save()
    services.version_activate(version=draft)
    number = api.post("/api/v1/orders/", order_body(), format="json").json()["number"]
    decision = RoutingDecision.objects.get(order__number=number)
    assert decision.version_id == draft.pk and decision.strategy == "Cheapest"
    assert Fulfillment.objects.get(order__number=number).location.code == "DC2"
    # a new draft copies the strategies; activating it retires the old one
    second = services.version_create_draft(profile=profile)
    assert second.number == 2 and second.strategies.count() == 1
    services.version_activate(version=second)
    draft.refresh_from_db()
    assert draft.status == ProfileVersion.Status.RETIRED
    assert services.version_diff(old=draft, new=second) == []


def test_simulation_writes_nothing(api, order_body, two_dcs, unchanged):
    number = api.post("/api/v1/orders/", order_body(), format="json").json()["number"]
    decisions = RoutingDecision.objects.count()
    with unchanged():
        r = api.post("/api/v1/routing/simulate/", {"order": number}, format="json")
        assert r.status_code == 200 and r.json()["explanation"]["summary"] == "Nothing left to route."
        body = {
            "channel": "web",
            "lines": [{"sku": "A", "quantity": 20}],
            "shipping_address": {
                "line1": "1 Main",
                "city": "NYC",
                "postal_code": "10001",
                "country": "US",
                "latitude": "40.75",
                "longitude": "-73.99",
            },
        }
        r = api.post("/api/v1/routing/simulate/", body, format="json")
        assert r.status_code == 200, r.content
        assert r.json()["fulfillments"] == [{"location": "DC2", "lines": [{"line_id": 1, "quantity": 20}]}]
        assert r.json()["explanation"]["strategies"]
        r = api.post(
            "/api/v1/routing/simulate/", {"channel": "web", "lines": [{"sku": "NOPE", "quantity": 1}]}, format="json"
        )
        assert r.status_code == 400
        assert api.post("/api/v1/routing/simulate/", {}, format="json").status_code == 400
    assert RoutingDecision.objects.count() == decisions


def test_fulfilment_api_scopes_and_bad_input(make_key, api, order_body, two_dcs, unchanged):
    number = api.post("/api/v1/orders/", order_body(), format="json").json()["number"]
    f = Fulfillment.objects.get(order__number=number)
    dc2_key = make_key("fulfillments:write,orders:read", location=two_dcs["dc2"])
    reader = make_key("orders:read")
    dc1_key = make_key("fulfillments:write,orders:read", location=two_dcs["dc1"])
    with unchanged():
        assert dc2_key.post(f"/api/v1/fulfillments/{f.pk}/reject/", {"reason": "x"}, format="json").status_code == 404
        assert reader.post(f"/api/v1/fulfillments/{f.pk}/reject/", {"reason": "x"}, format="json").status_code == 403
        r = dc1_key.post(f"/api/v1/fulfillments/{f.pk}/reject/", {}, format="json")
        assert r.status_code == 400 and "reason" in r.json()["error"]["fields"]
        r = dc1_key.post(
            f"/api/v1/fulfillments/{f.pk}/reject/",
            {"reason": "x", "lines": [{"line_id": 99999, "quantity": 1}]},
            format="json",
        )
        assert r.status_code == 400
        line = f.lines.first()
        r = dc1_key.post(
            f"/api/v1/fulfillments/{f.pk}/reject/",
            {"reason": "x", "lines": [{"line_id": line.line_id, "quantity": 99}]},
            format="json",
        )
        assert r.status_code == 400
    assert dc2_key.get("/api/v1/fulfillments/").json()["count"] == 0
    assert dc1_key.get("/api/v1/fulfillments/").json()["count"] == 1
    assert dc1_key.post(f"/api/v1/fulfillments/{f.pk}/accept/", format="json").json()["status"] == "accepted"
    assert dc1_key.post(f"/api/v1/fulfillments/{f.pk}/accept/", format="json").json()["status"] == "accepted"


def test_no_location_can_source_goes_to_exception_queue(api, order_body, network):
    # Stock only at a location outside the channel: capture cannot hold it → 409, nothing written.
    stock(network["outside"], network["item"], 10)
    r = api.post(
        "/api/v1/orders/",
        order_body(lines=[{"sku": "A", "quantity": 1, "unit_price": "1"}], payment=None),
        format="json",
    )
    assert r.status_code == 409


def test_dropship_item_goes_to_its_vendor(api, order_body, two_dcs):
    vendor = LocationFactory(code="VND1", type="dropship", capabilities=["ship"], latitude=35.0, longitude=-80.0)
    two_dcs["web"].locations.add(vendor)
    item = two_dcs["other"]
    item.dropship_vendor = vendor
    item.save()
    stock(vendor, item, 100)
    number = api.post("/api/v1/orders/", order_body(), format="json").json()["number"]
    order = api.get(f"/api/v1/orders/{number}/").json()
    a, b = (line["id"] for line in order["lines"])
    assert plan_of(order) == {"DC1": [(a, 3)], "VND1": [(b, 1)]}


def test_admin_order_page_shows_the_decision(admin_client, api, order_body, two_dcs):
    number = api.post("/api/v1/orders/", order_body(), format="json").json()["number"]
    order = Order.objects.get(number=number)
    page = admin_client.get(f"/admin/orders/order/{order.pk}/change/").content.decode()
    decision = RoutingDecision.objects.get(order=order)
    assert decision.summary in page
    assert "DC1" in page


def test_replay_compares_a_draft_with_the_active_version(api, admin_client, order_body, two_dcs):
    for i in range(3):
        api.post(
            "/api/v1/orders/",
            order_body(
                external_id=f"R-{i}",
                lines=[{"sku": "A", "quantity": 1, "unit_price": "1"}],
                payment=None,
                tax_total="0",
            ),
            format="json",
        )
    profile = RoutingProfile.objects.create(name="Web", channel=two_dcs["web"])
    draft = services.version_create_draft(profile=profile)
    # The draft ships from the far, cheap DC: more distance, more cost here.
    Strategy.objects.create(
        version=draft,
        position=1,
        name="LA only",
        location_types=["warehouse"],
        regions="",
        weight_distance=0,
        weight_priority=0,
        weight_cost=1,
    )
    two_dcs["dc1"].fulfillment_cost = 50
    two_dcs["dc1"].save()
    r = api.post("/api/v1/routing/replay/", {"profile_version": draft.pk, "days": 7}, format="json")
    assert r.status_code == 200, r.content
    report = r.json()
    assert report["orders"] == 3 and report["active_version"] is None
    assert report["draft"]["distance_km"] > report["active"]["distance_km"]
    assert report["orders_routed_differently"] == 3
    assert RoutingDecision.objects.count() == 3  # replay wrote nothing
    page = admin_client.post("/admin/routing/profileversion/", {"action": "replay", "_selected_action": [draft.pk]})
    assert page.status_code == 200 and b"routed differently" in page.content
    bad = api.post("/api/v1/routing/replay/", {"profile_version": 999999}, format="json")
    assert bad.status_code == 400


def test_pickup_store_short_of_stock_gets_a_transfer_when_the_strategy_allows(api, order_body, two_dcs):
    store = two_dcs["store"]
    stock(store, two_dcs["item"], 1)
    profile = RoutingProfile.objects.create(name="Web", channel=two_dcs["web"])
    draft = services.version_create_draft(profile=profile)
    Strategy.objects.create(version=draft, position=1, name="Store, topped up by transfer", transfer_to_pickup=True)
    services.version_activate(version=draft)
    body = order_body(
        fulfillment_method="pickup",
        pickup_location="STORE1",
        shipping_address=None,
        lines=[{"sku": "A", "quantity": 3, "unit_price": "10.00"}],
        payment=None,
        tax_total="0",
        shipping_total="0",
        allow_backorder=True,
    )
    number = api.post("/api/v1/orders/", body, format="json").json()["number"]
    order = api.get(f"/api/v1/orders/{number}/").json()
    line = order["lines"][0]["id"]
    by_location = {f["location"]: f for f in order["fulfillments"]}
    # One location with everything beats a split: DC1 sends all 3 to the store by transfer.
    assert plan_of(order) == {"DC1": [(line, 3)]}
    assert by_location["DC1"]["transfer_to"] == "STORE1"
    assert held("STORE1", "A") == 0 and held("DC1", "A") == 3
    assert "transfer" in " ".join(order["routing"]["explanation"]["strategies"][0].get("notes", []))
    assert ledger_mismatches() == []


def test_without_the_transfer_strategy_a_short_store_backorders(api, order_body, two_dcs):
    stock(two_dcs["store"], two_dcs["item"], 1)
    body = order_body(
        fulfillment_method="pickup",
        pickup_location="STORE1",
        shipping_address=None,
        lines=[{"sku": "A", "quantity": 3, "unit_price": "10.00"}],
        payment=None,
        tax_total="0",
        shipping_total="0",
        allow_backorder=True,
    )
    number = api.post("/api/v1/orders/", body, format="json").json()["number"]
    order = api.get(f"/api/v1/orders/{number}/").json()
    assert list(plan_of(order)) == ["STORE1"]
    assert order["lines"][0]["quantity_backordered"] == 2


def test_backordered_rest_of_a_partly_shipped_order_is_routed_when_stock_arrives(api, order_body, network):
    # A is in stock, B is nowhere: A ships while B waits; B's stock then arrives at DC2.
    stock(network["dc1"], network["item"], 5)
    number = api.post("/api/v1/orders/", order_body(allow_backorder=True), format="json").json()["number"]
    (first,) = Fulfillment.objects.filter(order__number=number)
    api.post(f"/api/v1/fulfillments/{first.pk}/accept/", format="json")
    r = api.post(f"/api/v1/fulfillments/{first.pk}/ship/", {"carrier": "UPS", "tracking_number": "1Z1"}, format="json")
    assert r.status_code == 200, r.content
    assert api.get(f"/api/v1/orders/{number}/").json()["status"] == "partially_shipped"

    r = api.post(
        "/api/v1/inventory/adjustments/",
        {"adjustments": [{"location": "DC2", "sku": "B", "delta": 3, "reason": "adjustment", "reference": "CC-1"}]},
        format="json",
    )
    assert r.status_code in (200, 201), r.content

    order = api.get(f"/api/v1/orders/{number}/").json()
    line_b = next(line for line in order["lines"] if line["sku"] == "B")
    assert (line_b["quantity_allocated"], line_b["quantity_backordered"]) == (1, 0)
    assert [(f["location"], f["status"]) for f in order["fulfillments"]] == [("DC1", "shipped"), ("DC2", "created")]
    assert order["status"] == "partially_shipped"
    assert held("DC2", "B") == 1
    assert ledger_mismatches() == []
