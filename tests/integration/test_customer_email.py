"""The customer's ready-for-pickup email is sent by a real Celery worker (the web process only
records it and its outbox task), exactly once."""

import pytest

from orders.models import CustomerNotification, Fulfillment
from tests.factories import stock
from tests.integration.conftest import celery_worker, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_worker_sends_the_pickup_email_once(api, order_body, stocked, tmp_path, monkeypatch):
    mail_dir = tmp_path / "mail"
    mail_dir.mkdir()
    monkeypatch.setenv("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
    monkeypatch.setenv("EMAIL_FILE_PATH", str(mail_dir))
    stock(stocked["store"], stocked["item"], 5)
    body = order_body(
        fulfillment_method="pickup",
        pickup_location="STORE1",
        shipping_address=None,
        lines=[{"sku": "A", "quantity": 1, "unit_price": "10.00"}],
        payment={"method": "card", "amount_authorized": "10.00"},
        tax_total="0",
        shipping_total="0",
    )
    with celery_worker(tmp_path / "worker.log") as log:
        number = api.post("/api/v1/orders/", body, format="json").json()["number"]
        assert wait_for(lambda: Fulfillment.objects.filter(order__number=number).exists()), log.read_text()
        f = Fulfillment.objects.get(order__number=number)
        api.post(f"/api/v1/fulfillments/{f.pk}/accept/")
        r = api.post(f"/api/v1/fulfillments/{f.pk}/ready-for-pickup/")
        assert r.status_code == 200
        assert wait_for(lambda: CustomerNotification.objects.filter(sent_at__isnull=False).exists()), log.read_text()
        assert "orders.send_customer_notification" in log.read_text()

    (sent,) = mail_dir.iterdir()
    text = sent.read_text()
    f.refresh_from_db()
    assert f"Your pickup code: {f.pickup_code}" in text
    assert "To: ada.lovelace@example.com" in text
    notification = CustomerNotification.objects.get()
    assert notification.attempts == 1 and notification.kind == "ready_for_pickup"
