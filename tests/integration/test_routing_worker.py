"""Routing on real Celery workers (Redis) against PostgreSQL."""

import time

import pytest

from inventory.models import Stock
from inventory.selectors import ledger_mismatches
from oms.celery import app
from orders.models import Allocation, Fulfillment, Order
from tests.factories import ChannelFactory, ItemFactory, LocationFactory, stock
from tests.integration.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def body(external_id: str, quantity: int = 1, **extra) -> dict:
    return {
        "channel": "web",
        "external_id": external_id,
        "currency": "USD",
        "customer": {"email": f"{external_id}@example.com"},
        "shipping_address": {
            "line1": "1 Main St",
            "city": "New York",
            "postal_code": "10001",
            "country": "US",
            "latitude": "40.75",
            "longitude": "-73.99",
        },
        "lines": [{"sku": "A", "quantity": quantity, "unit_price": "10.00"}],
        **extra,
    }


def test_capture_is_routed_by_the_worker(worker, api):
    ny = LocationFactory(code="NY", latitude=40.7, longitude=-74.0)
    la = LocationFactory(code="LA", latitude=34.0, longitude=-118.2)
    ChannelFactory(code="web", locations=[ny, la])
    item = ItemFactory(sku="A")
    stock(ny, item, 2)
    stock(la, item, 20)
    # 3 units: capture holds 2 in NY + 1 in LA provisionally; routing ships all 3 from LA.
    number = api.post("/api/v1/orders/", body("W-1", 3), format="json").json()["number"]
    assert wait_for(lambda: Fulfillment.objects.filter(order__number=number).exists()), worker.read_text()[-3000:]
    f = Fulfillment.objects.get(order__number=number)
    assert f.location.code == "LA"
    assert list(
        Allocation.objects.filter(line__order__number=number).values_list("location__code", "quantity", "provisional")
    ) == [("LA", 3, False)]
    assert list(Stock.objects.order_by("location__code").values_list("location__code", "reserved")) == [
        ("LA", 3),
        ("NY", 0),
    ]
    assert Order.objects.get(number=number).status == "allocated"
    assert ledger_mismatches() == []


def test_many_orders_routed_at_once_by_several_processes_never_oversell(worker_pool, no_routing, api):
    locations = [LocationFactory(code=f"L{i}", latitude=40 + i, longitude=-74 - i) for i in range(4)]
    ChannelFactory(code="web", locations=locations)
    item = ItemFactory(sku="A")
    for loc in locations:
        stock(loc, item, 5)  # 20 units in all, spread thin
    numbers = []
    for i in range(30):  # 30 orders of 1 unit, captured without routing (holds stay provisional)
        r = api.post("/api/v1/orders/", body(f"C-{i}", 1, allow_backorder=True), format="json")
        assert r.status_code == 201, r.content
        numbers.append(r.json()["number"])
    results = [app.send_task("routing.route_order", kwargs={"order_number": n}) for n in numbers]
    # … and again, concurrently: routing twice must never allocate twice
    results += [app.send_task("routing.route_order", kwargs={"order_number": n}) for n in numbers]
    done = lambda: not Order.objects.filter(number__in=numbers, status="received").exists()  # noqa: E731
    assert wait_for(done, 120), worker_pool.read_text()[-4000:]
    time.sleep(1)  # let duplicates finish
    statuses = sorted(Order.objects.filter(number__in=numbers).values_list("status", flat=True))
    assert set(statuses) <= {"allocated", "backordered"}
    assert statuses.count("allocated") == 20 and statuses.count("backordered") == 10
    for s in Stock.objects.all():
        assert s.reserved <= s.on_hand
    assert sum(Stock.objects.values_list("reserved", flat=True)) == 20
    assert Fulfillment.objects.filter(order__number__in=numbers).count() == 20
    assert "deadlock" not in worker_pool.read_text().lower()
    assert ledger_mismatches() == []
