"""Real concurrency on PostgreSQL: real threads, real connections, real row locks."""

import json
import time
import urllib.error
import urllib.request
from collections import Counter

import pytest
from django.db import OperationalError, transaction

from inventory.models import Stock
from inventory.selectors import ledger_mismatches
from inventory.services import StockLine, stock_reserve
from oms.actor import Actor
from oms.services import api_key_create
from tests.concurrency.conftest import run_threads
from tests.factories import ChannelFactory, ItemFactory, LocationFactory, stock

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_64_buyers_for_the_last_10_units_over_http(http_server):
    dc = LocationFactory(code="DC1")
    ChannelFactory(code="web", locations=[dc])
    item = ItemFactory(sku="LAST")
    stock(dc, item, 10)
    _, raw = api_key_create(name="shop", scopes="inventory:write")

    def buy(i):
        body = json.dumps({"channel": "web", "key": f"cart-{i}", "lines": [{"sku": "LAST", "quantity": 1}]}).encode()
        req = urllib.request.Request(
            f"{http_server}/api/v1/reservations/",
            data=body,
            method="POST",
            headers={"Authorization": f"Api-Key {raw}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    results = run_threads(64, buy)
    statuses = Counter(r[0] for r in results)
    assert statuses == {201: 10, 409: 54}, results
    for status, body in results:
        if status == 409:
            assert body["error"]["code"] == "insufficient_stock"
            assert body["error"]["skus"] == ["LAST"]
    row = Stock.objects.get(item=item, location=dc)
    assert (row.on_hand, row.reserved) == (10, 10)
    assert ledger_mismatches() == []


def test_64_concurrent_service_reservations_never_oversell():
    dcs = [LocationFactory(code=f"DC{i}") for i in range(2)]
    item = ItemFactory(sku="HOT")
    for dc in dcs:
        stock(dc, item, 5)

    def buy(i):
        dc = dcs[i % 2]
        with transaction.atomic():
            stock_reserve(lines=[StockLine(dc.pk, item.pk, 1)], actor=Actor.system("t"), reference=f"o{i}")
            time.sleep(0.005)  # hold the row lock a moment to force contention
        return "ok"

    results = run_threads(64, buy)
    assert sum(r == "ok" for r in results) == 10
    assert all(r == "ok" or r.__class__.__name__ == "InsufficientStock" for r in results), results
    assert list(Stock.objects.values_list("on_hand", "reserved")) == [(5, 5), (5, 5)]
    assert ledger_mismatches() == []


def test_multi_sku_reservations_in_opposite_orders_never_deadlock():
    dc = LocationFactory(code="DC1")
    skus = [ItemFactory(sku=f"M{i}") for i in range(4)]
    for item in skus:
        stock(dc, item, 1000)
    rounds = 5

    def buy(i):
        order = skus if i % 2 == 0 else list(reversed(skus))
        for r in range(rounds):
            with transaction.atomic():
                stock_reserve(
                    lines=[StockLine(dc.pk, item.pk, 1) for item in order],
                    actor=Actor.system("t"),
                    reference=f"o{i}-{r}",
                )
                time.sleep(0.002)
        return "ok"

    results = run_threads(32, buy)
    deadlocks = [r for r in results if isinstance(r, OperationalError)]
    assert deadlocks == []
    assert results == ["ok"] * 32
    assert sorted(Stock.objects.values_list("reserved", flat=True)) == [32 * rounds] * 4
    assert ledger_mismatches() == []
