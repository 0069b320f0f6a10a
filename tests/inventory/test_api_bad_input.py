"""Every inventory write and read rejects bad input with a clear 4xx in the error envelope,
and a rejected request changes nothing (counters, ledger, reservations, supply)."""

import pytest
from rest_framework.test import APIClient

from inventory.models import Channel, IncomingSupply, Item, Location, Reservation
from tests.factories import SupplyFactory, stock

ADJ = "/api/v1/inventory/adjustments/"
SNAP = "/api/v1/inventory/locations/DC1/snapshot/"
RES = "/api/v1/reservations/"
SUPPLY = "/api/v1/inventory/supply/"


def adj(**row):
    base = {"location": "DC1", "sku": "A", "delta": 1}
    base.update(row)
    return {"adjustments": [{k: v for k, v in base.items() if v is not ...}]}


def assert_error(response, status, code, field=None):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    if field:
        assert any(field in k for k in body["error"]["fields"]), body["error"]["fields"]


@pytest.fixture
def stocked(network):
    stock(network["dc1"], network["item"], 10)
    stock(network["dc2"], network["item"], 3)
    return network


def everything():
    return (
        sorted(Reservation.objects.values_list("key", "status")),
        sorted(IncomingSupply.objects.values_list("reference", "quantity", "quantity_received")),
        Location.objects.count(),
        Item.objects.count(),
        Channel.objects.count(),
    )


@pytest.mark.parametrize(
    "body, status, code, field",
    [
        (adj(sku="NOPE"), 400, "validation_error", "sku"),
        (adj(location="NOWHERE"), 400, "validation_error", "location"),
        (adj(delta=1.5), 400, "validation_error", "adjustments[0].delta"),
        (adj(delta="many"), 400, "validation_error", "delta"),
        (adj(delta=10**12), 400, "validation_error", "delta"),
        (adj(delta=0), 400, "validation_error", "delta"),
        (adj(delta=-11), 409, "conflict", "delta"),
        (adj(delta=..., on_hand=-1), 400, "validation_error", "on_hand"),
        (adj(delta=..., on_hand=2.5), 400, "validation_error", "on_hand"),
        (adj(delta=...), 400, "validation_error", "delta"),
        (adj(on_hand=5), 400, "validation_error", "delta"),
        (adj(sku=...), 400, "validation_error", "sku"),
        (adj(reason="because"), 400, "validation_error", "reason"),
        ({"adjustments": []}, 400, "validation_error", "adjustments"),
        ({}, 400, "validation_error", "adjustments"),
        ({"adjustments": "lots"}, 400, "validation_error", "adjustments"),
        ([1, 2], 400, "validation_error", None),
        # one good row and one bad row: all or nothing
        (
            {
                "adjustments": [
                    {"location": "DC1", "sku": "A", "delta": 5},
                    {"location": "DC2", "sku": "A", "delta": -4},
                ]
            },
            409,
            "conflict",
            "adjustments[1].delta",
        ),
        (
            {
                "adjustments": [
                    {"location": "DC1", "sku": "A", "delta": 5},
                    {"location": "DC1", "sku": "ZZ", "delta": 1},
                ]
            },
            400,
            "validation_error",
            "sku",
        ),
    ],
)
def test_bad_adjustments(api, stocked, unchanged, body, status, code, field):
    with unchanged():
        assert_error(api.post(ADJ, body, format="json"), status, code, field)


def test_count_below_reserved_is_refused(api, stocked, unchanged):
    api.post(RES, {"channel": "web", "key": "c", "lines": [{"sku": "A", "quantity": 6}]}, format="json")
    with unchanged():
        assert_error(api.post(ADJ, adj(delta=..., on_hand=5), format="json"), 409, "conflict", "on_hand")


def test_malformed_json(api, stocked, unchanged):
    with unchanged():
        for url, method in [(ADJ, api.post), (SNAP, api.put), (RES, api.post), (SUPPLY, api.post)]:
            r = method(url, data='{"adjustments": [', content_type="application/json")
            assert_error(r, 400, "validation_error")
            assert "Malformed" in r.json()["error"]["message"]


def test_unauthenticated_and_bad_keys(stocked, unchanged):
    anon = APIClient()
    with unchanged():
        assert_error(anon.post(ADJ, adj(), format="json"), 401, "authentication_failed")
        anon.credentials(HTTP_AUTHORIZATION="Api-Key oms_deadbeef_nothing")
        assert_error(anon.post(ADJ, adj(), format="json"), 401, "authentication_failed")
        anon.credentials(HTTP_AUTHORIZATION="Bearer abc")
        assert_error(anon.get("/api/v1/availability/?skus=A&channel=web"), 401, "authentication_failed")


def test_revoked_key(make_key, stocked, unchanged):
    from oms.services import api_key_revoke

    client = make_key("all")
    api_key_revoke(key=client.key)
    with unchanged():
        assert_error(client.post(ADJ, adj(), format="json"), 401, "authentication_failed")


@pytest.mark.parametrize(
    "scopes, method, url, body",
    [
        ("inventory:read", "post", ADJ, adj()),
        ("inventory:read", "put", SNAP, {"rows": [{"sku": "A", "on_hand": 1}]}),
        ("inventory:read", "post", RES, {"channel": "web", "key": "k", "lines": [{"sku": "A", "quantity": 1}]}),
        ("inventory:read", "post", "/api/v1/items/", {"sku": "X", "name": "X"}),
        ("orders:write", "get", "/api/v1/availability/?skus=A&channel=web", None),
        ("orders:read", "get", "/api/v1/inventory/stock/", None),
    ],
)
def test_missing_scope(make_key, stocked, unchanged, scopes, method, url, body):
    client = make_key(scopes)
    with unchanged():
        r = getattr(client, method)(url, body, format="json") if body else getattr(client, method)(url)
        assert_error(r, 403, "permission_denied")
        assert "scope" in r.json()["error"]["message"]
    assert Item.objects.filter(sku="X").count() == 0


def test_channel_bound_key_stays_in_its_channel(make_key, stocked, unchanged):
    client = make_key("all", channel=stocked["market"])
    before = everything()
    with unchanged():
        assert_error(client.get("/api/v1/availability/?skus=A&channel=web"), 403, "permission_denied", "channel")
        assert_error(client.get("/api/v1/availability/breakdown/?sku=A&channel=web"), 403, "permission_denied")
        r = client.post(RES, {"channel": "web", "key": "k", "lines": [{"sku": "A", "quantity": 1}]}, format="json")
        assert_error(r, 403, "permission_denied", "channel")
    assert everything() == before
    # without a channel it uses its own
    r = client.get("/api/v1/availability/?skus=A")
    assert r.json()["channel"] == "market"
    assert [c["code"] for c in client.get("/api/v1/channels/").json()["results"]] == ["market"]


def test_location_bound_key_changes_only_its_location(make_key, stocked, unchanged):
    client = make_key("all", location=stocked["dc2"])
    supply = SupplyFactory(location=stocked["dc1"], item=stocked["item"], reference="PO-X")
    before = everything()
    with unchanged():
        assert_error(client.post(ADJ, adj(), format="json"), 403, "permission_denied", "location")
        batch = {
            "adjustments": [{"location": "DC2", "sku": "A", "delta": 1}, {"location": "DC1", "sku": "A", "delta": 1}]
        }
        assert_error(client.post(ADJ, batch, format="json"), 403, "permission_denied", "adjustments[1].location")
        assert_error(client.put(SNAP, {"rows": [{"sku": "A", "on_hand": 1}]}, format="json"), 403, "permission_denied")
        r = client.post(f"/api/v1/inventory/supply/{supply.pk}/receive/", {"quantity": 1}, format="json")
        assert_error(r, 403, "permission_denied")
        body = {
            "supply": [{"location": "DC1", "sku": "A", "quantity": 1, "expected_date": "2030-01-01", "reference": "P"}]
        }
        assert_error(client.post(SUPPLY, body, format="json"), 403, "permission_denied")
    assert everything() == before
    assert [row["location"] for row in client.get("/api/v1/inventory/stock/").json()["results"]] == ["DC2"]
    assert (
        client.post(ADJ, {"adjustments": [{"location": "DC2", "sku": "A", "delta": 1}]}, format="json").status_code
        == 200
    )


@pytest.mark.parametrize(
    "body, code, field",
    [
        ({"rows": []}, "validation_error", "rows"),
        ({"rows": "x"}, "validation_error", "rows"),
        ({}, "validation_error", "rows"),
        ({"rows": [{"sku": "A", "on_hand": -1}]}, "validation_error", "rows[0].on_hand"),
        ({"rows": [{"sku": "A", "on_hand": 1.5}]}, "validation_error", "rows[0].on_hand"),
        ({"rows": [{"sku": "A", "on_hand": "7"}]}, "validation_error", "rows[0].on_hand"),
        ({"rows": [{"sku": "A", "on_hand": 10**9}]}, "validation_error", "rows[0].on_hand"),
        ({"rows": [{"sku": "A"}]}, "validation_error", "rows[0].on_hand"),
        ({"rows": [{"on_hand": 1}]}, "validation_error", "rows[0].sku"),
        ({"rows": [{"sku": "A\x00", "on_hand": 1}]}, "validation_error", "rows[0].sku"),
        ({"rows": [{"sku": "A", "on_hand": 1}, {"sku": "A", "on_hand": 2}]}, "validation_error", "rows[1].sku"),
        ({"rows": [{"sku": "A", "on_hand": 1}, {"sku": "NOPE", "on_hand": 2}]}, "validation_error", "sku"),
        ({"rows": [{"sku": "A", "on_hand": 1, "safety_stock": -2}]}, "validation_error", "safety_stock"),
        ({"rows": [{"sku": "A", "on_hand": 1}], "full": "yes"}, "validation_error", "full"),
        (["A"], "validation_error", "rows"),
    ],
)
def test_bad_snapshots(api, stocked, unchanged, body, code, field):
    with unchanged():
        assert_error(api.put(SNAP, body, format="json"), 400, code, field)


def test_snapshot_below_reserved_and_unknown_location(api, stocked, unchanged):
    api.post(RES, {"channel": "web", "key": "c", "lines": [{"sku": "A", "quantity": 4}]}, format="json")
    with unchanged():
        assert_error(api.put(SNAP, {"rows": [{"sku": "A", "on_hand": 3}]}, format="json"), 409, "conflict", "rows")
        assert_error(api.put(SNAP, {"rows": [{"sku": "B", "on_hand": 3}]}, format="json"), 409, "conflict")
        r = api.put(
            "/api/v1/inventory/locations/NOWHERE/snapshot/", {"rows": [{"sku": "A", "on_hand": 3}]}, format="json"
        )
        assert_error(r, 404, "not_found")


@pytest.mark.parametrize(
    "body, status, code, field",
    [
        ({"channel": "web", "key": "k", "lines": [{"sku": "A", "quantity": 14}]}, 409, "insufficient_stock", None),
        (
            {"channel": "web", "key": "k", "lines": [{"sku": "A", "quantity": 0}]},
            400,
            "validation_error",
            "lines[0].quantity",
        ),
        ({"channel": "web", "key": "k", "lines": [{"sku": "A", "quantity": -1}]}, 400, "validation_error", "quantity"),
        ({"channel": "web", "key": "k", "lines": [{"sku": "A", "quantity": 1.5}]}, 400, "validation_error", "quantity"),
        (
            {"channel": "web", "key": "k", "lines": [{"sku": "A", "quantity": 10**7}]},
            400,
            "validation_error",
            "quantity",
        ),
        ({"channel": "web", "key": "k", "lines": [{"sku": "NOPE", "quantity": 1}]}, 400, "validation_error", "sku"),
        ({"channel": "web", "key": "k", "lines": []}, 400, "validation_error", "lines"),
        ({"channel": "web", "lines": [{"sku": "A", "quantity": 1}]}, 400, "validation_error", "key"),
        ({"key": "k", "lines": [{"sku": "A", "quantity": 1}]}, 400, "validation_error", "channel"),
        ({"channel": "nope", "key": "k", "lines": [{"sku": "A", "quantity": 1}]}, 404, "not_found", "channel"),
        (
            {"channel": "web", "key": "k", "lines": [{"sku": "A", "quantity": 1}], "ttl_seconds": 0},
            400,
            "validation_error",
            "ttl_seconds",
        ),
        (
            {"channel": "web", "key": "k", "lines": [{"sku": "A", "quantity": 1}], "ttl_seconds": 10**8},
            400,
            "validation_error",
            "ttl_seconds",
        ),
    ],
)
def test_bad_reservations(api, stocked, unchanged, body, status, code, field):
    with unchanged():
        r = api.post(RES, body, format="json")
        assert_error(r, status, code, field)
        if code == "insufficient_stock":
            assert r.json()["error"]["skus"] == ["A"]
    assert not Reservation.objects.exists()


def test_delete_unknown_or_released_reservation(api, stocked, unchanged):
    with unchanged():
        assert_error(api.delete("/api/v1/reservations/nope/?channel=web"), 404, "not_found")


@pytest.mark.parametrize(
    "row, field",
    [
        ({"quantity": 0}, "quantity"),
        ({"quantity": "x"}, "quantity"),
        ({"expected_date": "next week"}, "expected_date"),
        ({"sku": "NOPE"}, "sku"),
        ({"location": "NOWHERE"}, "location"),
        ({"reference": None}, "reference"),
    ],
)
def test_bad_supply(api, stocked, unchanged, row, field):
    base = {"location": "DC1", "sku": "A", "quantity": 5, "expected_date": "2030-01-01", "reference": "PO-1"}
    base.update(row)
    before = everything()
    with unchanged():
        assert_error(api.post(SUPPLY, {"supply": [base]}, format="json"), 400, "validation_error", field)
    assert everything() == before


def test_bad_receive(api, stocked, unchanged):
    supply = SupplyFactory(location=stocked["dc1"], item=stocked["item"], quantity=5, reference="PO-R")
    url = f"/api/v1/inventory/supply/{supply.pk}/receive/"
    with unchanged():
        assert_error(api.post(url, {"quantity": 6}, format="json"), 400, "validation_error", "quantity")
        assert_error(api.post(url, {"quantity": 0}, format="json"), 400, "validation_error", "quantity")
        assert_error(api.post(url, {}, format="json"), 400, "validation_error", "quantity")
        assert_error(
            api.post("/api/v1/inventory/supply/999999/receive/", {"quantity": 1}, format="json"), 404, "not_found"
        )
    supply.refresh_from_db()
    assert supply.quantity_received == 0


@pytest.mark.parametrize(
    "url, body, field",
    [
        ("/api/v1/locations/", {"code": "X", "name": "X", "type": "castle", "country": "US"}, "type"),
        ("/api/v1/locations/", {"code": "X", "name": "X", "type": "store", "country": "USA"}, "country"),
        (
            "/api/v1/locations/",
            {"code": "X", "name": "X", "type": "store", "country": "US", "capabilities": ["fly"]},
            "capabilities",
        ),
        (
            "/api/v1/locations/",
            {"code": "X", "name": "X", "type": "store", "country": "US", "latitude": 95},
            "latitude",
        ),
        ("/api/v1/locations/", {"code": "DC1", "name": "X", "type": "store", "country": "US"}, "code"),
        ("/api/v1/locations/", {"name": "X", "type": "store", "country": "US"}, "code"),
        ("/api/v1/items/", {"sku": "A", "name": "dup"}, "sku"),
        ("/api/v1/items/", {"name": "no sku"}, "sku"),
        ("/api/v1/channels/", {"code": "c2", "name": "C", "locations": ["NOWHERE"]}, "locations"),
        ("/api/v1/channels/", {"code": "c2", "name": "C", "safety_buffer": -1}, "safety_buffer"),
        ("/api/v1/channels/", {"code": "c2", "name": "C", "safety_buffer_percent": 150}, "safety_buffer_percent"),
    ],
)
def test_bad_network_writes(api, stocked, url, body, field):
    before = everything()
    assert_error(api.post(url, body, format="json"), 400, "validation_error", field)
    assert everything() == before


@pytest.mark.parametrize(
    "query, status, field",
    [
        ("channel=web", 400, "skus"),
        ("skus=NOPE&channel=web", 400, "skus"),
        ("skus=A&channel=nope", 404, "channel"),
        ("skus=A", 400, "channel"),
        ("skus=A&channel=web&latitude=91&longitude=0", 400, "latitude"),
        ("skus=A&channel=web&latitude=abc&longitude=0", 400, "latitude"),
        ("skus=A&channel=web&latitude=40", 400, "longitude"),
        ("skus=A&channel=web&location=OUT1", 400, "location"),
        ("skus=A&channel=web&location=NOWHERE", 400, "location"),
        ("skus=" + ",".join(f"S{i}" for i in range(101)) + "&channel=web", 400, "skus"),
    ],
)
def test_bad_availability_queries(api, stocked, query, status, field):
    assert_error(
        api.get(f"/api/v1/availability/?{query}"), status, "validation_error" if status == 400 else "not_found", field
    )


def test_unknown_api_path_uses_envelope(api, db):
    assert_error(api.get("/api/v1/nothing-here/"), 404, "not_found")
    assert_error(api.get("/api/v1/locations/NOWHERE/"), 404, "not_found")
    assert_error(api.delete("/api/v1/locations/"), 405, "method_not_allowed")
