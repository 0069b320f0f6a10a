"""Refunds leave through the outbox to a real Celery worker (Redis, PostgreSQL), which calls
the sandbox gateway over HTTP: a flaky gateway is retried by Celery with the same key."""

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from inventory.selectors import ledger_mismatches
from orders.models import Fulfillment, Payment
from returns.defaults import ensure_defaults
from returns.models import Refund, Return
from tests.factories import ChannelFactory, ItemFactory, LocationFactory, stock
from tests.integration.conftest import celery_worker, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gateway_worker(tmp_path, monkeypatch, settings):
    """The sandbox gateway process, and a worker that knows its URL."""
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "run_sandbox_gateway", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://"), url
        monkeypatch.setenv("PAYMENT_GATEWAY_URL", url)
        settings.PAYMENT_GATEWAY_URL = url
        with celery_worker(tmp_path / "worker.log") as log:
            yield log
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_refund_sent_by_the_worker_through_the_http_gateway(gateway_worker, api):
    ensure_defaults()
    dc = LocationFactory(code="DC1", accepts_returns=True)
    ChannelFactory(code="web", locations=[dc])
    item = ItemFactory(sku="A")
    stock(dc, item, 5)
    r = api.post(
        "/api/v1/orders/",
        {
            "channel": "web",
            "external_id": "W-1",
            "currency": "USD",
            "customer": {"email": "w1@example.com"},
            "shipping_address": {"line1": "1 Main St", "city": "New York", "postal_code": "10001", "country": "US"},
            "lines": [{"sku": "A", "quantity": 2, "unit_price": "15.00"}],
            "payment": {"method": "card", "reference": "pi_flaky_w1", "amount_authorized": "30.00"},
        },
        format="json",
    )
    number = r.json()["number"]
    assert wait_for(lambda: Fulfillment.objects.filter(order__number=number).exists()), gateway_worker.read_text()
    f = Fulfillment.objects.get(order__number=number)
    api.post(f"/api/v1/fulfillments/{f.pk}/accept/")
    api.post(f"/api/v1/fulfillments/{f.pk}/ship/", {"carrier": "UPS", "tracking_number": "1Z"}, format="json")
    line_id = f.lines.get().line_id
    rma = api.post(
        "/api/v1/returns/",
        {"order": number, "method": "store", "lines": [{"line_id": line_id, "quantity": 2, "reason": "wrong_size"}]},
        format="json",
    ).json()
    got = api.post(
        f"/api/v1/returns/{rma['id']}/receive/",
        {"location": "DC1", "lines": [{"line_id": line_id, "quantity": 2, "condition": "sellable"}]},
        format="json",
    ).json()
    assert got["status"] == "inspected" and got["refunds"][0]["status"] == "pending"  # the worker sends it
    assert wait_for(lambda: Return.objects.get(pk=rma["id"]).status == "refunded", 90), gateway_worker.read_text()
    refund = Refund.objects.get()
    assert (refund.status, refund.attempts, refund.amount) == ("succeeded", 2, Decimal("30.00"))  # 503, then ok
    assert Payment.objects.get().amount_refunded == Decimal("30.00")
    assert "Retry in" in gateway_worker.read_text()  # Celery retried it, not the outbox
    assert ledger_mismatches() == []
