"""Inventory API: happy paths and the contract's shapes."""

from datetime import date, timedelta

from inventory.models import IncomingSupply, Location, Stock, StockMovement
from inventory.selectors import ledger_mismatches
from tests.factories import stock


def test_adjustments_delta_and_count_and_idempotent_reference(api, network):
    body = {
        "adjustments": [
            {"location": "DC1", "sku": "A", "delta": 5, "reason": "receipt", "reference": "GRN-1"},
            {"location": "DC2", "sku": "B", "on_hand": 7, "reference": "COUNT-1"},
        ]
    }
    r = api.post("/api/v1/inventory/adjustments/", body, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["applied"] == 2
    r = api.post("/api/v1/inventory/adjustments/", body, format="json")
    assert r.json() == {"applied": 0, "duplicates": 2, "unchanged": 0, "movements": []}
    assert Stock.objects.get(location__code="DC1", item__sku="A").on_hand == 5
    assert Stock.objects.get(location__code="DC2", item__sku="B").on_hand == 7
    assert StockMovement.objects.count() == 2
    assert StockMovement.objects.get(reference="COUNT-1").reason == "count"
    assert ledger_mismatches() == []


def test_same_reference_from_another_key_is_applied(api, make_key, network):
    body = {"adjustments": [{"location": "DC1", "sku": "A", "delta": 1, "reference": "R"}]}
    api.post("/api/v1/inventory/adjustments/", body, format="json")
    make_key("inventory:write").post("/api/v1/inventory/adjustments/", body, format="json")
    assert Stock.objects.get(location__code="DC1", item__sku="A").on_hand == 2


def test_availability_contract_shape(api, network):
    stock(network["dc1"], network["item"], 9, safety_stock=1)
    r = api.get("/api/v1/availability/?skus=A,B&channel=web&detail=locations")
    assert r.status_code == 200
    assert r.json() == {
        "channel": "web",
        "items": [
            {
                "sku": "A",
                "available": 8,
                "by_location": [{"location": "DC1", "on_hand": 9, "reserved": 0, "safety_stock": 1, "available": 8}],
                "incoming": [],
            },
            {"sku": "B", "available": 0, "by_location": [], "incoming": []},
        ],
    }


def test_availability_near_and_at_location(api, network):
    stock(network["store"], network["item"], 2)
    stock(network["dc2"], network["item"], 5)
    r = api.get("/api/v1/availability/?skus=A&channel=web&latitude=40.73&longitude=-73.99&radius_km=10")
    assert r.json()["items"][0]["available"] == 2
    r = api.get("/api/v1/availability/?skus=A&channel=web&location=STORE1")
    assert r.json()["items"][0]["by_location"][0]["location"] == "STORE1"


def test_breakdown_endpoint(api, network):
    stock(network["dc1"], network["item"], 4)
    r = api.get("/api/v1/availability/breakdown/?sku=A&channel=web")
    assert r.status_code == 200
    assert r.json()["available"] == 4


def test_snapshot_full_replaces_counts_and_zeroes_missing(api, network):
    stock(network["dc1"], network["item"], 3)
    stock(network["dc1"], network["other"], 8)
    r = api.put(
        "/api/v1/inventory/locations/DC1/snapshot/",
        {"rows": [{"sku": "A", "on_hand": 10, "safety_stock": 2}], "reference": "snap-1"},
        format="json",
    )
    assert r.status_code == 200, r.content
    assert r.json() == {"location": "DC1", "rows": 1, "changed": 1, "created": 0, "zeroed": 1}
    a = Stock.objects.get(location__code="DC1", item__sku="A")
    assert (a.on_hand, a.safety_stock) == (10, 2)
    assert Stock.objects.get(location__code="DC1", item__sku="B").on_hand == 0
    assert ledger_mismatches() == []


def test_snapshot_partial_keeps_unlisted(api, network):
    stock(network["dc1"], network["other"], 8)
    r = api.put(
        "/api/v1/inventory/locations/DC1/snapshot/",
        {"rows": [{"sku": "A", "on_hand": 1}], "full": False},
        format="json",
    )
    assert r.json()["created"] == 1
    assert Stock.objects.get(location__code="DC1", item__sku="B").on_hand == 8


def test_supply_upsert_list_and_receive(api, network):
    when = (date.today() + timedelta(days=5)).isoformat()
    body = {"supply": [{"location": "DC1", "sku": "A", "quantity": 20, "expected_date": when, "reference": "PO-9"}]}
    r = api.post("/api/v1/inventory/supply/", body, format="json")
    assert r.status_code == 201, r.content
    body["supply"][0]["quantity"] = 25
    api.post("/api/v1/inventory/supply/", body, format="json")
    assert IncomingSupply.objects.get().quantity == 25
    supply_id = r.json()[0]["id"]
    r = api.post(f"/api/v1/inventory/supply/{supply_id}/receive/", {"quantity": 10}, format="json")
    assert r.status_code == 200
    assert r.json()["quantity_received"] == 10
    assert Stock.objects.get(location__code="DC1", item__sku="A").on_hand == 10
    r = api.post(f"/api/v1/inventory/supply/{supply_id}/receive/", {"quantity": 15}, format="json")
    assert r.json()["status"] == "received"
    assert api.get("/api/v1/availability/?skus=A&channel=web").json()["items"][0]["incoming"] == []
    assert ledger_mismatches() == []


def test_cart_reservation_create_replay_and_delete(api, network):
    stock(network["dc1"], network["item"], 5)
    body = {"channel": "web", "key": "cart-7", "lines": [{"sku": "A", "quantity": 2}], "ttl_seconds": 300}
    r = api.post("/api/v1/reservations/", body, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["lines"] == [{"sku": "A", "location": "DC1", "quantity": 2}]
    r = api.post("/api/v1/reservations/", body, format="json")
    assert r.status_code == 200
    assert Stock.objects.get(location__code="DC1", item__sku="A").reserved == 2
    assert api.get("/api/v1/reservations/cart-7/?channel=web").json()["status"] == "active"
    r = api.delete("/api/v1/reservations/cart-7/?channel=web")
    assert r.status_code == 200
    assert r.json()["status"] == "released"
    assert Stock.objects.get(location__code="DC1", item__sku="A").reserved == 0


def test_network_and_catalogue_create_and_list(api, network):
    r = api.post(
        "/api/v1/locations/",
        {
            "code": "STORE9",
            "name": "Store 9",
            "type": "store",
            "country": "us",
            "capabilities": ["pickup"],
            "latitude": "41.881832",
            "longitude": "-87.623177",
        },
        format="json",
    )
    assert r.status_code == 201, r.content
    assert Location.objects.get(code="STORE9").country == "US"
    assert api.post("/api/v1/items/", {"sku": "NEW-1", "name": "New"}, format="json").status_code == 201
    r = api.post("/api/v1/channels/", {"code": "b2b", "name": "B2B", "locations": ["DC1", "STORE9"]}, format="json")
    assert r.status_code == 201, r.content
    assert sorted(r.json()["locations"]) == ["DC1", "STORE9"]
    assert api.get("/api/v1/locations/?capability=pickup").json()["count"] == 2
    assert api.get("/api/v1/items/?q=new").json()["count"] == 1
    assert api.get("/api/v1/locations/STORE9/").json()["capabilities"] == ["pickup"]
    assert api.get("/api/v1/items/?page_size=1").json()["next"]


def test_stock_and_movement_lists(api, network):
    stock(network["dc1"], network["item"], 4)
    rows = api.get("/api/v1/inventory/stock/?sku=A").json()["results"]
    assert rows[0]["available"] == 4
    moves = api.get("/api/v1/inventory/movements/?location=DC1").json()["results"]
    assert moves[0]["delta_on_hand"] == 4
