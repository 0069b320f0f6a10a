"""Returns under real concurrency on PostgreSQL: concurrent return requests for the same line
never return more than shipped; concurrent receipts never restock or refund twice."""

import json
import urllib.error
import urllib.request
from collections import Counter
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from inventory.models import Stock
from inventory.selectors import ledger_mismatches
from oms.services import api_key_create
from orders.models import Fulfillment, OrderLine, Payment
from returns.defaults import ensure_defaults
from returns.models import Refund, Return, ReturnLine
from tests.concurrency.conftest import run_threads
from tests.factories import ChannelFactory, ItemFactory, LocationFactory, stock

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def post(url: str, raw_key: str, path: str, body: dict):
    request = urllib.request.Request(
        f"{url}{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Api-Key {raw_key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=90) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture
def shipped_line():
    """An order for 3 × RET, shipped from DC1 (which takes returns) and paid 30.00."""
    ensure_defaults()
    dc = LocationFactory(code="DC1", accepts_returns=True)
    ChannelFactory(code="web", locations=[dc])
    item = ItemFactory(sku="RET")
    stock(dc, item, 10)
    key, raw = api_key_create(name="ops", scopes="all")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    r = client.post(
        "/api/v1/orders/",
        {
            "channel": "web",
            "external_id": "R-1",
            "customer": {"email": "r@example.com"},
            "currency": "USD",
            "shipping_address": {"line1": "1 Main St", "city": "Newark", "postal_code": "07102", "country": "US"},
            "lines": [{"sku": "RET", "quantity": 3, "unit_price": "10.00"}],
            "payment": {"method": "card", "reference": "pi_r1", "amount_authorized": "30.00"},
        },
        format="json",
    )
    assert r.status_code == 201, r.content
    number = r.json()["number"]
    f = Fulfillment.objects.get(order__number=number)
    client.post(f"/api/v1/fulfillments/{f.pk}/accept/")
    assert client.post(f"/api/v1/fulfillments/{f.pk}/ship/", {"carrier": "U", "tracking_number": "1"}, format="json")
    line = OrderLine.objects.get(order__number=number)
    assert line.quantity_shipped == 3
    return number, line, raw


def return_body(number, line_id, quantity):
    return {
        "order": number,
        "method": "store",
        "lines": [{"line_id": line_id, "quantity": quantity, "reason": "changed_mind"}],
    }


def test_32_concurrent_return_requests_never_return_more_than_shipped(http_server, shipped_line):
    number, line, raw = shipped_line
    results = run_threads(32, lambda i: post(http_server, raw, "/api/v1/returns/", return_body(number, line.pk, 1)))
    statuses = Counter(status for status, _ in results)
    assert statuses == {201: 3, 400: 29}, results[:3]
    for status, body in results:
        if status == 400:
            assert body["error"]["fields"] == {"lines[0].quantity": "At most 0."}
    assert Return.objects.count() == 3
    assert sum(ReturnLine.objects.values_list("quantity", flat=True)) == 3


def test_concurrent_requests_of_different_sizes_fit_what_shipped(http_server, shipped_line):
    number, line, raw = shipped_line
    sizes = [2, 2, 1, 1, 2, 1, 3, 2] * 3
    results = run_threads(
        len(sizes), lambda i: post(http_server, raw, "/api/v1/returns/", return_body(number, line.pk, sizes[i]))
    )
    accepted = [sizes[i] for i, (status, _) in enumerate(results) if status == 201]
    assert all(status in (201, 400) for status, _ in results)
    assert accepted and sum(accepted) <= 3
    assert sum(ReturnLine.objects.values_list("quantity", flat=True)) == sum(accepted)


def test_concurrent_receipts_of_one_return_restock_and_refund_once(http_server, shipped_line):
    number, line, raw = shipped_line
    status, rma = post(http_server, raw, "/api/v1/returns/", return_body(number, line.pk, 2))
    assert status == 201
    receive = {"location": "DC1", "lines": [{"line_id": line.pk, "quantity": 2, "condition": "sellable"}]}
    results = run_threads(12, lambda i: post(http_server, raw, f"/api/v1/returns/{rma['id']}/receive/", receive))
    statuses = Counter(status for status, _ in results)
    assert statuses[200] == 1 and set(statuses) <= {200, 400, 409}, statuses
    s = Stock.objects.get(location__code="DC1", item__sku="RET")
    assert (s.on_hand, s.reserved) == (9, 0)  # 10 − 3 shipped + 2 back, once
    line.refresh_from_db()
    assert line.quantity_returned == 2
    assert Refund.objects.get().amount == Decimal("20.00")
    assert Payment.objects.get().amount_refunded == Decimal("20.00")
    assert Return.objects.get().status == "refunded"
    assert ledger_mismatches() == []
