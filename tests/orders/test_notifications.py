"""Customer emails: one per notification, with the right content, sent from the outbox."""

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.utils import timezone

from oms.models import OutboxMessage
from oms.outbox import relay_outbox
from orders.models import CustomerNotification, Fulfillment
from orders.notifications import notification_send
from tests.factories import stock
from tests.orders.store_helpers import pickup_order, ship_order

pytestmark = pytest.mark.django_db(transaction=True)  # the outbox runs after commit


class BrokenMailServer(BaseEmailBackend):
    def send_messages(self, messages):
        raise ConnectionRefusedError("mail server down")


@pytest.fixture
def store_stock(stocked):
    store = stocked["store"]
    store.name, store.address_line1, store.city = "Union Square", "170 O'Farrell St", "SF"
    store.timezone = "America/Los_Angeles"
    store.save()
    stock(store, stocked["item"], 5)
    return stocked


def test_ready_for_pickup_email_carries_the_code_once(api, order_body, store_stock):
    f = pickup_order(api, order_body)
    api.post(f"/api/v1/fulfillments/{f.pk}/accept/")
    assert mail.outbox == []
    api.post(f"/api/v1/fulfillments/{f.pk}/ready-for-pickup/")
    api.post(f"/api/v1/fulfillments/{f.pk}/ready-for-pickup/")  # a retried call
    f = Fulfillment.objects.get(pk=f.pk)

    (email,) = mail.outbox
    assert email.to == ["ada.lovelace@example.com"]
    assert email.subject == f"Your order {f.order.number} is ready for pickup at Union Square"
    assert f"Your pickup code: {f.pickup_code}" in email.body
    assert "Union Square, 170 O'Farrell St, SF" in email.body
    assert "2 × Item A (A)" in email.body
    local = f.pickup_expires_at.astimezone(ZoneInfo("America/Los_Angeles"))  # the store's time
    hour = local.strftime("%I").lstrip("0")
    collect_by = f"{local:%A, %B} {local.day}, {hour}:{local:%M} {local:%p}"
    assert f"Please collect it by {collect_by} (America/Los_Angeles)." in email.body
    html, mime = email.alternatives[0]
    assert mime == "text/html" and f.pickup_code in html and "O&#x27;Farrell" in html

    notification = CustomerNotification.objects.get()
    assert (notification.kind, notification.attempts, notification.subject) == ("ready_for_pickup", 1, email.subject)
    assert notification.sent_at is not None and notification.body == email.body
    # The outbox message again (at-least-once delivery) or a duplicate task: no second email.
    assert notification_send(notification_id=notification.pk) is False
    OutboxMessage.objects.filter(topic="orders.send_customer_notification").update(
        status="pending", next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    relay_outbox()
    assert len(mail.outbox) == 1


def test_shipped_per_shipment_and_delivered_emails(api, order_body, stocked):
    order = ship_order(api, order_body)
    f = Fulfillment.objects.get(order=order)
    a = f.lines.order_by("id").first().line_id
    api.post(f"/api/v1/fulfillments/{f.pk}/accept/")
    api.post(
        f"/api/v1/fulfillments/{f.pk}/ship/",
        {"carrier": "UPS", "tracking_number": "1Z999", "reference": "S1", "lines": [{"line_id": a, "quantity": 2}]},
        format="json",
    )
    api.post(  # the same shipment again: no second email
        f"/api/v1/fulfillments/{f.pk}/ship/",
        {"carrier": "UPS", "tracking_number": "1Z999", "reference": "S1", "lines": [{"line_id": a, "quantity": 2}]},
        format="json",
    )
    api.post(f"/api/v1/fulfillments/{f.pk}/ship/", {"carrier": "FedEx", "tracking_number": "7788"}, format="json")
    api.post(f"/api/v1/fulfillments/{f.pk}/deliver/")
    api.post(f"/api/v1/fulfillments/{f.pk}/deliver/")

    subjects = [m.subject for m in mail.outbox]
    assert subjects == [
        f"Your order {order.number} has shipped",
        f"Your order {order.number} has shipped",
        f"Your order {order.number} was delivered",
    ]
    first, second, delivered = mail.outbox
    assert "Carrier: UPS\nTracking number: 1Z999" in first.body and "2 × Item A (A)" in first.body
    assert "Item B" not in first.body
    assert "Carrier: FedEx\nTracking number: 7788" in second.body
    assert "1 × Item A (A)" in second.body and "1 × Item B (B)" in second.body
    assert "was delivered to 12 Analytical Way, New York" in delivered.body
    assert all(m.to == ["ada.lovelace@example.com"] for m in mail.outbox)
    topics = list(OutboxMessage.objects.filter(kind="event").values_list("topic", flat=True))
    assert topics.count("fulfillment.shipped") == 2 and topics.count("fulfillment.delivered") == 1


def test_a_mail_outage_does_not_fail_the_change_and_is_retried(api, order_body, store_stock, settings):
    f = pickup_order(api, order_body)
    api.post(f"/api/v1/fulfillments/{f.pk}/accept/")
    settings.EMAIL_BACKEND = "tests.orders.test_notifications.BrokenMailServer"
    r = api.post(f"/api/v1/fulfillments/{f.pk}/ready-for-pickup/")
    assert r.status_code == 200 and r.json()["status"] == "ready_for_pickup"
    notification = CustomerNotification.objects.get()
    assert notification.sent_at is None and "mail server down" in notification.last_error
    message = OutboxMessage.objects.get(topic="orders.send_customer_notification")
    assert message.status == "pending" and message.attempts == 1

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    relay_outbox()
    (email,) = mail.outbox
    notification.refresh_from_db()
    assert notification.sent_at is not None and notification.last_error == ""
    assert Fulfillment.objects.get(pk=f.pk).pickup_code in email.body


def test_picking_up_sends_no_email(api, order_body, store_stock):
    f = pickup_order(api, order_body)
    for action in ("accept", "ready-for-pickup", "picked-up"):
        api.post(f"/api/v1/fulfillments/{f.pk}/{action}/")
    assert [m.subject.split(" is ")[-1] for m in mail.outbox] == ["ready for pickup at Union Square"]
