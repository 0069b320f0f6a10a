from datetime import date, timedelta

from django.utils import timezone

from inventory.models import Reservation
from inventory.selectors import Near, availability_breakdown, channel_availability
from inventory.services import cart_reservation_put
from oms.actor import Actor
from tests.factories import SupplyFactory, stock

ACTOR = Actor.system("test")


def atp(channel, *skus, **kw):
    answer = channel_availability(channel=channel, skus=list(skus), **kw)
    return {i["sku"]: i for i in answer["items"]}


def test_spec_example_with_safety_stock_and_reservation(network):
    dc1, item = network["dc1"], network["item"]
    stock(dc1, item, 9, safety_stock=1)
    cart_reservation_put(channel=network["web"], key="c", lines={item.pk: 1}, ttl_seconds=60, actor=ACTOR)
    a = atp(network["market"], "A", detail=True)["A"]
    assert a["available"] == 7
    assert a["by_location"] == [{"location": "DC1", "on_hand": 9, "reserved": 1, "safety_stock": 1, "available": 7}]


def test_only_active_locations_of_the_channel_count(network):
    item = network["item"]
    stock(network["dc1"], item, 5)
    stock(network["dc2"], item, 4)
    stock(network["store"], item, 3)
    stock(network["outside"], item, 100)  # not in channel web
    assert atp(network["web"], "A")["A"]["available"] == 12
    network["dc2"].active = False
    network["dc2"].save()
    assert atp(network["web"], "A")["A"]["available"] == 8
    assert atp(network["market"], "A")["A"]["available"] == 5


def test_channel_buffer_units_and_percent_per_location(network):
    item, web = network["item"], network["web"]
    stock(network["dc1"], item, 10)
    stock(network["dc2"], item, 1)
    web.safety_buffer = 2
    web.save()
    # DC1: 10 - 2 = 8; DC2: max(0, 1 - 2) = 0
    assert atp(web, "A")["A"]["available"] == 8
    web.safety_buffer = 0
    web.safety_buffer_percent = 25
    web.save()
    # DC1: 10 - ceil(2.5)=3 → 7; DC2: 1 - ceil(0.25)=1 → 0
    assert atp(web, "A")["A"]["available"] == 7


def test_negative_net_never_goes_below_zero(network):
    item = network["item"]
    stock(network["dc1"], item, 3, safety_stock=5)
    stock(network["dc2"], item, 4)
    assert atp(network["web"], "A")["A"]["available"] == 4


def test_expired_cart_holds_count_as_available_before_the_sweep(network):
    dc1, item = network["dc1"], network["item"]
    stock(dc1, item, 5)
    cart_reservation_put(channel=network["web"], key="old", lines={item.pk: 3}, ttl_seconds=60, actor=ACTOR)
    cart_reservation_put(channel=network["web"], key="live", lines={item.pk: 1}, ttl_seconds=600, actor=ACTOR)
    assert atp(network["web"], "A")["A"]["available"] == 1
    Reservation.objects.filter(key="old").update(expires_at=timezone.now() - timedelta(seconds=5))
    assert atp(network["web"], "A")["A"]["available"] == 4
    breakdown = availability_breakdown(channel=network["web"], sku="A")
    dc1_row = next(r for r in breakdown["locations"] if r["location"] == "DC1")
    assert (dc1_row["on_hand"], dc1_row["reserved"], dc1_row["expired_cart_holds"], dc1_row["available"]) == (
        5,
        1,
        3,
        4,
    )


def test_inactive_item_is_not_available(network):
    item = network["item"]
    stock(network["dc1"], item, 5)
    item.active = False
    item.save()
    a = atp(network["web"], "A")["A"]
    assert a["available"] == 0
    assert a["inactive"] is True


def test_incoming_supply_by_date_only_open_quantity_in_channel(network):
    item = network["item"]
    soon, later = date.today() + timedelta(days=3), date.today() + timedelta(days=10)
    SupplyFactory(
        location=network["dc2"], item=item, quantity=20, quantity_received=5, expected_date=later, reference="PO-2"
    )
    SupplyFactory(location=network["dc1"], item=item, quantity=8, expected_date=soon, reference="PO-1")
    SupplyFactory(location=network["outside"], item=item, quantity=99, expected_date=soon, reference="PO-3")
    SupplyFactory(
        location=network["dc1"], item=item, quantity=7, expected_date=soon, reference="PO-4", status="cancelled"
    )
    assert atp(network["web"], "A")["A"]["incoming"] == [
        {"location": "DC1", "quantity": 8, "expected_date": soon.isoformat()},
        {"location": "DC2", "quantity": 15, "expected_date": later.isoformat()},
    ]


def test_near_me_filters_by_radius_and_sorts_by_distance(network):
    item = network["item"]
    stock(network["dc1"], item, 2)  # New York
    stock(network["store"], item, 1)  # Manhattan
    stock(network["dc2"], item, 7)  # Los Angeles
    a = atp(network["web"], "A", detail=True, near=Near(40.7306, -73.9866, 25))["A"]
    assert a["available"] == 3
    assert [loc["location"] for loc in a["by_location"]] == ["STORE1", "DC1"]
    assert a["by_location"][0]["distance_km"] < a["by_location"][1]["distance_km"]


def test_pickup_here(network):
    item = network["item"]
    stock(network["dc1"], item, 2)
    stock(network["store"], item, 1)
    a = atp(network["web"], "A", detail=True, location=network["store"])["A"]
    assert a["available"] == 1
    assert [loc["location"] for loc in a["by_location"]] == ["STORE1"]


def test_breakdown_adds_up_and_explains_exclusions(network):
    item, web = network["item"], network["web"]
    web.safety_buffer = 1
    web.save()
    stock(network["dc1"], item, 9, safety_stock=1)
    stock(network["dc2"], item, 4)
    stock(network["outside"], item, 50)
    network["store"].active = False
    network["store"].save()
    stock(network["store"], item, 6)
    cart_reservation_put(channel=web, key="c", lines={item.pk: 2}, ttl_seconds=60, actor=ACTOR)
    b = availability_breakdown(channel=web, sku="A")
    rows = {r["location"]: r for r in b["locations"]}
    for r in rows.values():
        if r["excluded_reason"] is None:
            assert r["available"] == max(0, r["on_hand"] - r["reserved"] - r["safety_stock"] - r["channel_buffer"])
    assert rows["OUT1"]["excluded_reason"] == "location does not serve this channel"
    assert rows["STORE1"]["excluded_reason"] == "location inactive"
    assert b["available"] == sum(r["counted"] for r in rows.values())
    assert b["available"] == atp(web, "A")["A"]["available"]
    assert b["available"] == (9 - 2 - 1 - 1) + (4 - 1)
