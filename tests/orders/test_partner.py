"""Webhook partners receive signed fulfilment requests through the outbox, once each."""

import pytest

from oms.models import OutboxMessage
from oms.outbox import relay_outbox
from orders.models import Fulfillment
from tests.oms.test_webhooks import SECRET, Receiver

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def partner(stocked):
    receiver = Receiver()
    dc1 = stocked["dc1"]
    dc1.connector, dc1.partner_url, dc1.partner_secret = "webhook", receiver.url, SECRET
    dc1.save()
    yield receiver
    receiver.close()


def test_routed_fulfilment_is_sent_to_the_partner_signed_once(api, order_body, partner):
    number = api.post("/api/v1/orders/", order_body(), format="json").json()["number"]
    f = Fulfillment.objects.get(order__number=number)
    assert f.status == "sent"
    assert len(partner.received) == 1
    got = partner.received[0]
    assert got["ok"] is True  # signature verified by the partner
    assert got["body"]["fulfillment"] == f.pk and got["body"]["order"] == number
    assert sorted((line["sku"], line["quantity"]) for line in got["body"]["lines"]) == [("A", 3), ("B", 1)]
    assert api.post(f"/api/v1/fulfillments/{f.pk}/accept/").json()["status"] == "accepted"


def test_a_failing_partner_is_retried_then_succeeds(api, order_body, partner):
    partner.fail_first = 1
    number = api.post("/api/v1/orders/", order_body(), format="json").json()["number"]
    f = Fulfillment.objects.get(order__number=number)
    assert f.status == "created"
    msg = OutboxMessage.objects.get(topic="orders.send_fulfillment")
    assert msg.status == "pending" and "503" in msg.last_error
    OutboxMessage.objects.filter(pk=msg.pk).update(next_attempt_at=msg.created_at)
    relay_outbox()
    f.refresh_from_db()
    assert f.status == "sent"
    assert len(partner.received) == 1
