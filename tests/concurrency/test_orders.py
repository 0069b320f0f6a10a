"""Order capture under real concurrency on PostgreSQL."""

import json
import urllib.error
import urllib.request
from collections import Counter

import pytest

from inventory.models import Stock
from inventory.selectors import ledger_mismatches
from oms.models import IdempotencyRecord
from oms.services import api_key_create
from orders.models import Order
from tests.concurrency.conftest import run_threads
from tests.factories import ChannelFactory, ItemFactory, LocationFactory, stock

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def order_body(external_id: str, quantity: int = 1, **extra) -> dict:
    return {
        "channel": "web",
        "external_id": external_id,
        "customer": {"email": f"{external_id}@example.com", "name": "Buyer"},
        "currency": "USD",
        "shipping_address": {"line1": "1 Main St", "city": "Newark", "postal_code": "07102", "country": "US"},
        "lines": [{"sku": "LAST", "quantity": quantity, "unit_price": "10.00"}],
        **extra,
    }


def post(url: str, raw_key: str, body: dict, idempotency_key: str | None = None):
    headers = {"Authorization": f"Api-Key {raw_key}", "Content-Type": "application/json"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    req = urllib.request.Request(
        f"{url}/api/v1/orders/", data=json.dumps(body).encode(), method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=90) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.fixture
def world():
    dc = LocationFactory(code="DC1")
    ChannelFactory(code="web", locations=[dc])
    item = ItemFactory(sku="LAST")
    stock(dc, item, 10)
    _, raw = api_key_create(name="shop", scopes="orders:write,orders:read")
    return dc, item, raw


def test_50_concurrent_posts_with_one_idempotency_key_make_one_order(http_server, world):
    dc, item, raw = world
    results = run_threads(50, lambda i: post(http_server, raw, order_body("W-1", 2), idempotency_key="same-key"))
    assert Counter(status for status, _ in results) == {201: 50}, results[:3]
    assert len({body for _, body in results}) == 1  # 50 identical answers, byte for byte
    assert Order.objects.count() == 1
    assert IdempotencyRecord.objects.get().state == "done"
    s = Stock.objects.get(location=dc, item=item)
    assert (s.on_hand, s.reserved) == (10, 2)
    assert ledger_mismatches() == []


def test_50_concurrent_posts_of_a_refused_order_with_one_key_get_one_answer(http_server, world):
    """The refusal is rolled back and then stored on its own; every duplicate, waiting on the
    key or arriving after, replays that one answer and nothing is held."""
    dc, item, raw = world
    results = run_threads(50, lambda i: post(http_server, raw, order_body("W-2", 11), idempotency_key="refused-key"))
    assert Counter(status for status, _ in results) == {409: 50}, results[:3]
    assert len({body for _, body in results}) == 1
    assert json.loads(results[0][1])["error"]["code"] == "insufficient_stock"
    assert not Order.objects.exists()
    record = IdempotencyRecord.objects.get()
    assert (record.state, record.response_status) == ("done", 409)
    s = Stock.objects.get(location=dc, item=item)
    assert (s.on_hand, s.reserved) == (10, 0)
    assert ledger_mismatches() == []


def test_64_concurrent_orders_for_the_last_10_units(http_server, world):
    dc, item, raw = world
    results = run_threads(64, lambda i: post(http_server, raw, order_body(f"W-{i}")))
    statuses = Counter(status for status, _ in results)
    assert statuses == {201: 10, 409: 54}, statuses
    for status, body in results:
        if status == 409:
            assert json.loads(body)["error"]["code"] == "insufficient_stock"
    assert Order.objects.count() == 10
    s = Stock.objects.get(location=dc, item=item)
    assert (s.on_hand, s.reserved) == (10, 10)
    assert ledger_mismatches() == []


def test_64_concurrent_orders_with_backorders_allowed(http_server, world):
    dc, item, raw = world
    results = run_threads(64, lambda i: post(http_server, raw, order_body(f"B-{i}", allow_backorder=True)))
    assert Counter(status for status, _ in results) == {201: 64}
    statuses = Counter(Order.objects.values_list("status", flat=True))
    assert statuses == {"allocated": 10, "backordered": 54}  # routed in-process after capture
    s = Stock.objects.get(location=dc, item=item)
    assert (s.on_hand, s.reserved) == (10, 10)
    assert ledger_mismatches() == []


def test_concurrent_duplicates_of_one_channel_order_make_one_order(http_server, world):
    _, _, raw = world
    results = run_threads(16, lambda i: post(http_server, raw, order_body("DUP-1")))
    statuses = Counter(status for status, _ in results)
    assert statuses == {201: 1, 409: 15}, statuses
    assert Order.objects.filter(external_id="DUP-1").count() == 1


def test_stale_plans_retry_at_another_location_and_give_back_what_they_held(http_server):
    """Two-SKU orders race for 10 units of LAST spread over two warehouses. A capture whose plan
    went stale (the preferred warehouse sold out meanwhile) has already reserved PLENTY when LAST
    is refused: that must be given back before it plans again (no savepoint), so PLENTY's
    reserved equals what the orders hold, and the ledger agrees."""
    from orders.models import Allocation

    dc1, dc2 = LocationFactory(code="DC1", priority=10), LocationFactory(code="DC2", priority=20)
    ChannelFactory(code="web", locations=[dc1, dc2])
    plenty, last = ItemFactory(sku="PLENTY"), ItemFactory(sku="LAST")
    for dc in (dc1, dc2):
        stock(dc, plenty, 1000)
        stock(dc, last, 5)
    _, raw = api_key_create(name="shop", scopes="orders:write,orders:read")

    def body(i):
        lines = [
            {"sku": "PLENTY", "quantity": 2, "unit_price": "1.00"},
            {"sku": "LAST", "quantity": 1, "unit_price": "1.00"},
        ]
        return order_body(f"S-{i}", lines=lines[:: 1 if i % 2 else -1])

    results = run_threads(48, lambda i: post(http_server, raw, body(i)))
    statuses = Counter(status for status, _ in results)
    assert statuses == {201: 10, 409: 38}, statuses
    held = Counter()
    for a in Allocation.objects.select_related("line"):
        held[(a.location_id, a.line.item_id)] += a.quantity
    for s in Stock.objects.all():
        assert s.reserved == held[(s.location_id, s.item_id)], (s.location_id, s.item_id, s.reserved)
    assert sum(Stock.objects.filter(item=plenty).values_list("reserved", flat=True)) == 20
    assert sum(Stock.objects.filter(item=last).values_list("reserved", flat=True)) == 10
    assert ledger_mismatches() == []
