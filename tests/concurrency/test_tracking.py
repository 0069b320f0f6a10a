"""Tracking from several pollers and carrier webhooks at once, on PostgreSQL: every event is
recorded once, every status change announced once, every order completed once, no deadlock."""

import json
import time
from collections import Counter

import pytest

from inventory.models import Location
from inventory.selectors import ledger_mismatches
from oms.webhooks import sign
from orders.carriers.sandbox import HOUR, SandboxServer
from orders.carriers.services import tracking_poll, tracking_webhook_receive
from orders.models import Carrier, Fulfillment, Order, OrderEvent, Shipment, TrackingEvent
from tests.concurrency.conftest import run_threads
from tests.factories import stock

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SECRET = "carrier-webhook-secret-0123456789"


@pytest.fixture
def sandbox():
    server = SandboxServer(port=0, api_keys=("oms-key",), speed=1).start()
    yield server
    server.stop()


def test_pollers_and_webhooks_racing_record_each_event_once(api, order_body, stocked, sandbox):
    Location.objects.filter(code="DC1").update(city="Edison", postal_code="08837")
    stock(stocked["dc1"], stocked["item"], 50)
    stock(stocked["dc1"], stocked["other"], 50)
    Carrier.objects.create(
        code="SANDBOX", name="S", adapter="sandbox", base_url=sandbox.url, api_key="oms-key", webhook_secret=SECRET
    )
    numbers = []
    for i in range(6):
        number = api.post("/api/v1/orders/", order_body(external_id=f"W-{i}"), format="json").json()["number"]
        f = Fulfillment.objects.get(order__number=number)
        api.post(f"/api/v1/fulfillments/{f.pk}/accept/")
        assert api.post(f"/api/v1/fulfillments/{f.pk}/ship/", {"carrier": "SANDBOX"}, format="json").status_code == 200
        numbers.append(number)
    sandbox.carrier.advance(30 * HOUR)
    events = [e for tn in sandbox.carrier.labels for e in sandbox.carrier.events(tn)]

    def race(i):
        if i < 2:
            return tracking_poll()
        body = json.dumps({"events": events}).encode()
        return tracking_webhook_receive(
            carrier_code="SANDBOX", body=body, signature=sign(SECRET, int(time.time()) - i, body)
        )

    results = run_threads(4, race)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert TrackingEvent.objects.count() == 36
    assert Counter(TrackingEvent.objects.values_list("shipment_id", flat=True)) == {
        s: 6 for s in Shipment.objects.values_list("pk", flat=True)
    }
    recorded = sum(r.recorded for r in results[:2]) + sum(r["recorded"] for r in results[2:])
    assert recorded == 36
    assert set(Order.objects.filter(number__in=numbers).values_list("status", flat=True)) == {"completed"}
    kinds = Counter(OrderEvent.objects.values_list("type", flat=True))
    assert kinds["shipment.delivered"] == kinds["fulfillment.delivered"] == kinds["order.completed"] == 6
    assert ledger_mismatches() == []
