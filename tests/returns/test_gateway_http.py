"""Refunds over the real HTTP adapter, against the sandbox gateway running as its own process
(`manage.py run_sandbox_gateway`): success, declines, transient outages retried with the same
idempotency key, and refusals that are not retried."""

import json
import subprocess
import sys
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from oms.actor import Actor
from oms.models import OutboxMessage
from oms.outbox import relay_outbox
from oms.roles import SUPERVISOR, ensure_groups
from orders.models import Payment
from orders.payments.gateway import GatewayError, RefundRequest, get_gateway
from orders.payments.http_gateway import HttpGateway
from returns.models import Refund, Return
from returns.refunds import refund_retry
from tests.returns.conftest import line_of

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]
API_KEY = "sk_sandbox_test"


@pytest.fixture
def sandbox(settings):
    """The sandbox gateway as a separate process on a free loopback port."""
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "run_sandbox_gateway", "--port", "0", "--api-key", API_KEY],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        settings.PAYMENT_GATEWAY_URL = url
        settings.PAYMENT_GATEWAY_API_KEY = API_KEY
        settings.PAYMENT_GATEWAY_TIMEOUT_SECONDS = 5
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def seen_by_gateway(url: str, refund: Refund) -> dict:
    request = urllib.request.Request(
        f"{url}/v1/refunds/{refund.idempotency_key}", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def return_and_receive(api, order, quantity=1):
    a = line_of(order, "A")["id"]
    rma = api.post(
        "/api/v1/returns/",
        {
            "order": order["number"],
            "method": "mail",
            "lines": [{"line_id": a, "quantity": quantity, "reason": "defective"}],
        },
        format="json",
    ).json()
    r = api.post(
        f"/api/v1/returns/{rma['id']}/receive/",
        {"location": "DC1", "lines": [{"line_id": a, "quantity": quantity, "condition": "sellable"}]},
        format="json",
    )
    assert r.status_code == 200, r.content
    return r.json()


def test_refund_goes_over_http_to_the_running_sandbox(api, ship_order, sandbox):
    assert isinstance(get_gateway(), HttpGateway)
    order = ship_order()
    got = return_and_receive(api, order, 2)
    assert got["status"] == "refunded" and got["refund_amount"] == "49.00"  # 2 × 22.00 + shipping (our fault)
    refund = Refund.objects.get()
    assert refund.status == "succeeded" and refund.attempts == 1
    answer = seen_by_gateway(sandbox, refund)
    assert answer["status"] == "succeeded" and answer["amount"] == "49.00" and answer["id"] == refund.gateway_reference
    assert Payment.objects.get().amount_refunded == Decimal("49.00")
    # The adapter replays: the same idempotency key never refunds twice.
    again = get_gateway().refund(
        RefundRequest(
            payment_reference="pi_123",
            payment_method="card",
            amount=Decimal("49.00"),
            currency="USD",
            idempotency_key=str(refund.idempotency_key),
            order=order["number"],
        )
    )
    assert again.succeeded and again.reference == refund.gateway_reference
    assert seen_by_gateway(sandbox, refund)["attempts"] == 1


def test_a_decline_fails_the_refund_and_leaves_the_return_for_a_person(api, ship_order, sandbox):
    order = ship_order(payment={"method": "card", "reference": "pi_decline_7", "amount_authorized": "82.00"})
    got = return_and_receive(api, order)
    assert got["status"] == "inspected" and got["refund_amount"] == "0.00"
    [refund] = got["refunds"]
    assert refund["status"] == "failed" and refund["failure_reason"].startswith("card_declined")
    assert Payment.objects.get().amount_refunded == 0
    boss = User.objects.create_user("boss", "b@example.com", "boss")
    boss.groups.add(ensure_groups()[SUPERVISOR])
    retried = refund_retry(refund_id=refund["id"], actor=Actor.for_user(boss))
    retried.refresh_from_db()
    assert retried.status == "failed" and retried.retry_of_id == refund["id"]  # declines are deterministic
    closed = api.post(f"/api/v1/returns/{got['id']}/close/", {"reason": "refunded by cheque"}, format="json")
    assert closed.json()["status"] == "closed"


def outbox_retries_due(times: int) -> None:
    """What beat does later: relay the outbox messages waiting for their backoff, now."""
    for _ in range(times):
        OutboxMessage.objects.filter(status="pending").update(next_attempt_at=timezone.now())
        relay_outbox()


def test_a_flaky_gateway_is_retried_with_the_same_key(api, ship_order, sandbox):
    order = ship_order(payment={"method": "card", "reference": "pi_flaky_1", "amount_authorized": "82.00"})
    got = return_and_receive(api, order)
    assert got["status"] == "inspected" and got["refunds"][0]["status"] == "pending"  # the gateway said 503
    message = OutboxMessage.objects.get(topic="returns.send_refund")
    assert message.status == "pending" and "GatewayUnavailable" in message.last_error
    outbox_retries_due(1)
    refund = Refund.objects.get()
    assert (refund.status, refund.attempts) == ("succeeded", 2)
    assert seen_by_gateway(sandbox, refund)["attempts"] == 2  # same idempotency key both times
    assert Return.objects.get().status == "refunded" and Payment.objects.get().amount_refunded == Decimal("27.00")


def test_an_unreachable_gateway_fails_after_the_last_attempt(api, ship_order, sandbox, settings):
    settings.REFUND_MAX_ATTEMPTS = 3
    order = ship_order(payment={"method": "card", "reference": "pi_unavailable", "amount_authorized": "82.00"})
    return_and_receive(api, order)
    outbox_retries_due(3)
    refund = Refund.objects.get()
    assert (refund.status, refund.attempts) == ("failed", 3)
    assert refund.failure_reason.startswith("gateway unavailable")
    rma = Return.objects.get()
    assert rma.status == "inspected" and rma.refund_amount == 0
    assert OutboxMessage.objects.get(topic="returns.send_refund").status == "done"


def test_a_refused_request_is_not_retried(api, ship_order, sandbox, settings):
    settings.PAYMENT_GATEWAY_API_KEY = "wrong"
    order = ship_order()
    return_and_receive(api, order)
    refund = Refund.objects.get()
    assert (refund.status, refund.attempts) == ("failed", 1)
    assert "401" in refund.failure_reason
    with pytest.raises(GatewayError):
        HttpGateway(base_url=sandbox, api_key="wrong").refund(
            RefundRequest("pi_1", "card", Decimal("1.00"), "USD", "k-1")
        )
