import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import transaction

from oms.models import OutboxStatus, WebhookAttempt, WebhookDelivery, WebhookSubscription
from oms.outbox import outbox_publish_event
from oms.webhooks import deliver_webhooks, retry_delivery, sign, verify

SECRET = "s3cret-s3cret-s3cret"


class Receiver:
    """A real local HTTP endpoint that verifies signatures like an integrator would."""

    def __init__(self, fail_first: int = 0):
        self.received: list[dict] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = verify(SECRET, self.headers["X-OMS-Signature"], body)
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    self.send_response(503)
                else:
                    receiver.received.append(
                        {
                            "id": self.headers["X-OMS-Event-Id"],
                            "type": self.headers["X-OMS-Event-Type"],
                            "ok": ok,
                            "body": json.loads(body),
                        }
                    )
                    self.send_response(200 if ok else 401)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_signature_roundtrip_and_tamper():
    body = b'{"a":1}'
    header = sign(SECRET, int(time.time()), body)
    assert verify(SECRET, header, body)
    assert not verify(SECRET, header, b'{"a":2}')
    assert not verify("other-secret-value", header, body)
    assert not verify(SECRET, sign(SECRET, int(time.time()) - 3600, body), body)
    assert not verify(SECRET, "garbage", body)


@pytest.mark.django_db(transaction=True)
def test_order_events_reach_a_subscriber_signed_and_in_order(api, capture, receiver):
    WebhookSubscription.objects.create(url=receiver.url, events=["order.created", "order.cancelled"], secret=SECRET)
    order = capture()
    api.post(f"/api/v1/orders/{order['number']}/cancel/", {"reason": "x"}, format="json")
    assert [r["type"] for r in receiver.received] == ["order.created", "order.cancelled"]
    assert all(r["ok"] for r in receiver.received)
    assert receiver.received[0]["body"]["data"]["order"] == order["number"]
    assert receiver.received[0]["body"]["id"] == receiver.received[0]["id"]
    assert len({r["id"] for r in receiver.received}) == 2
    assert WebhookDelivery.objects.filter(status="done").count() == 2


@pytest.mark.django_db(transaction=True)
def test_failures_back_off_then_dead_letter_and_manual_retry(settings, receiver):
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    receiver.fail_first = 5
    sub = WebhookSubscription.objects.create(url=receiver.url, events=["*"], secret=SECRET)
    with transaction.atomic():
        outbox_publish_event("order.created", {"order": "X"}, ordering_key="order:X")
    delivery = WebhookDelivery.objects.get(subscription=sub)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 503)
    assert delivery.next_attempt_at > delivery.created_at
    WebhookDelivery.objects.update(next_attempt_at=delivery.created_at)
    deliver_webhooks()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (OutboxStatus.DEAD, 2)
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 2
    receiver.fail_first = 0
    with transaction.atomic():
        retry_delivery(delivery)
    delivery.refresh_from_db()
    assert delivery.status == "done"
    assert len(receiver.received) == 1


@pytest.mark.django_db(transaction=True)
def test_a_later_event_waits_for_an_earlier_one_of_the_same_order(receiver):
    receiver.fail_first = 1
    WebhookSubscription.objects.create(url=receiver.url, events=["*"], secret=SECRET)
    with transaction.atomic():
        outbox_publish_event("order.created", {"order": "X"}, ordering_key="order:X")
        outbox_publish_event("order.cancelled", {"order": "X"}, ordering_key="order:X")
        outbox_publish_event("order.created", {"order": "Y"}, ordering_key="order:Y")
    # X's first event failed once, so X's second waited; Y went through
    assert [r["body"]["data"]["order"] for r in receiver.received] == ["Y"]
    WebhookDelivery.objects.update(next_attempt_at=WebhookDelivery.objects.first().created_at)
    deliver_webhooks()
    assert [(r["type"], r["body"]["data"]["order"]) for r in receiver.received] == [
        ("order.created", "Y"),
        ("order.created", "X"),
        ("order.cancelled", "X"),
    ]


def test_subscription_api(make_key, network):
    client = make_key("webhooks:manage")
    r = client.post(
        "/api/v1/webhook-subscriptions/",
        {"url": "https://example.com/h", "events": ["order.created"], "secret": SECRET},
        format="json",
    )
    assert r.status_code == 201, r.content
    assert "secret" not in r.json()
    sub_id = r.json()["id"]
    assert client.get("/api/v1/webhook-subscriptions/").json()["count"] == 1
    assert client.get(f"/api/v1/webhook-subscriptions/{sub_id}/deliveries/").json()["count"] == 0
    for bad, field in [
        ({"url": "ftp://x", "events": ["order.created"], "secret": SECRET}, "url"),
        ({"url": "https://x.com", "events": ["order.exploded"], "secret": SECRET}, "events"),
        ({"url": "https://x.com", "events": [], "secret": SECRET}, "events"),
        ({"url": "https://x.com", "events": ["order.created"], "secret": "short"}, "secret"),
    ]:
        r = client.post("/api/v1/webhook-subscriptions/", bad, format="json")
        assert r.status_code == 400 and any(field in k for k in r.json()["error"]["fields"]), r.content
    assert WebhookSubscription.objects.count() == 1
    r = make_key("orders:write").post(
        "/api/v1/webhook-subscriptions/", {"url": "https://x.com", "events": ["*"], "secret": SECRET}, format="json"
    )
    assert r.status_code == 403
    other = make_key("webhooks:manage", channel=network["market"])
    assert other.get(f"/api/v1/webhook-subscriptions/{sub_id}/").status_code == 404
    assert other.delete(f"/api/v1/webhook-subscriptions/{sub_id}/").status_code == 404
    assert client.delete(f"/api/v1/webhook-subscriptions/{sub_id}/").status_code == 204
    assert WebhookSubscription.objects.get().active is False


@pytest.mark.django_db(transaction=True)
def test_channel_bound_subscription_gets_only_its_channel(make_key, capture, receiver, network):
    WebhookSubscription.objects.create(url=receiver.url, events=["*"], secret=SECRET, channel=network["market"])
    capture()  # a web order
    assert receiver.received == []
