"""The carriers admin: merchants configure carriers (write-only credentials, connection check);
shipments and their tracking are read-only, changed through actions that call services."""

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from inventory.models import Location
from oms.roles import CSR, MERCHANT, ensure_groups
from orders.carriers.sandbox import SandboxServer
from orders.models import Carrier, Fulfillment, Shipment, TrackingEvent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sandbox():
    server = SandboxServer(port=0, api_keys=("oms-key",), speed=1).start()
    yield server
    server.stop()


def member(group: str) -> Client:
    groups = ensure_groups()
    user = User.objects.create_user(group.lower(), password="pw", is_staff=True)
    user.groups.add(groups[group])
    client = Client()
    client.force_login(user)
    return client


def messages_of(response) -> list[str]:
    return [m.message for m in response.context["messages"]]


def test_merchant_adds_a_carrier_credentials_are_write_only_and_kept(sandbox):
    merchant = member(MERCHANT)
    add = reverse("admin:orders_carrier_add")
    form = {
        "code": "SANDBOX",
        "name": "Sandbox",
        "adapter": "sandbox",
        "base_url": sandbox.url,
        "api_key": "oms-key",
        "account_number": "",
        "webhook_secret": "hook-secret",
        "services": "ground, express",
        "active": "on",
    }
    assert merchant.post(add, form).status_code == 302
    carrier = Carrier.objects.get(code="SANDBOX")
    assert (carrier.services, carrier.api_key, carrier.webhook_secret) == (
        ["ground", "express"],
        "oms-key",
        "hook-secret",
    )
    page = merchant.get(reverse("admin:orders_carrier_change", args=[carrier.pk])).content.decode()
    assert "oms-key" not in page and "hook-secret" not in page and "Currently set; leave empty to keep it." in page
    assert (
        merchant.post(
            reverse("admin:orders_carrier_change", args=[carrier.pk]),
            {**form, "name": "Sandbox Ground", "api_key": "", "webhook_secret": "", "services": "ground"},
        ).status_code
        == 302
    )
    carrier.refresh_from_db()
    assert (carrier.name, carrier.api_key, carrier.webhook_secret, carrier.services) == (
        "Sandbox Ground",
        "oms-key",
        "hook-secret",
        ["ground"],
    )
    assert member(CSR).get(reverse("admin:orders_carrier_changelist")).status_code == 403


def test_check_connection_asks_the_carrier_for_a_rate(sandbox):
    merchant = member(MERCHANT)
    good = Carrier.objects.create(code="SANDBOX", name="S", adapter="sandbox", base_url=sandbox.url, api_key="oms-key")
    bad = Carrier.objects.create(code="WRONGKEY", name="W", adapter="sandbox", base_url=sandbox.url, api_key="x")
    r = merchant.post(
        reverse("admin:orders_carrier_changelist"),
        {"action": "check_connection", "_selected_action": [good.pk, bad.pk], "index": 0},
        follow=True,
    )
    said = messages_of(r)
    assert said[0].startswith(
        "SANDBOX: connected. New York → Los Angeles, 1 kg: ground 11.45 USD (6 d); express 23.90 USD (2 d)."
    )
    assert said[1].startswith("WRONGKEY: Carrier WRONGKEY refused our credentials (HTTP 401)")


@pytest.fixture
def shipped(api, order_body, stocked, sandbox):
    Carrier.objects.create(
        code="SANDBOX", name="S", adapter="sandbox", base_url=sandbox.url, api_key="oms-key", services=["ground"]
    )
    Location.objects.filter(code="DC1").update(city="Edison", postal_code="08837")
    number = api.post("/api/v1/orders/", order_body(), format="json").json()["number"]
    f = Fulfillment.objects.get(order__number=number)
    api.post(f"/api/v1/fulfillments/{f.pk}/accept/")
    assert api.post(f"/api/v1/fulfillments/{f.pk}/ship/", {"carrier": "SANDBOX"}, format="json").status_code == 200
    return Shipment.objects.get(fulfillment=f)


def test_shipment_page_shows_tracking_and_label_and_actions_poll_and_void(shipped, sandbox):
    csr = member(CSR)
    changelist = reverse("admin:orders_shipment_changelist")
    assert shipped.tracking_number in csr.get(changelist, {"q": shipped.fulfillment.order.number}).content.decode()
    r = csr.post(changelist, {"action": "poll_now", "_selected_action": [shipped.pk], "index": 0}, follow=True)
    assert messages_of(r) == ["Polled 1: 1 new event(s), 0 status change(s), 0 failed."]
    page = csr.get(reverse("admin:orders_shipment_change", args=[shipped.pk])).content.decode()
    assert "Shipping label created, awaiting item" in page and "Open PDF label" in page
    label = csr.get(reverse("admin:orders_shipment_label", args=[shipped.pk]))
    assert label["Content-Type"] == "application/pdf" and label.content.startswith(b"%PDF")
    order_page = csr.get(reverse("admin:orders_order_change", args=[shipped.fulfillment.order.pk])).content.decode()
    assert shipped.tracking_number in order_page and "Label created" in order_page

    r = csr.post(changelist, {"action": "void_labels", "_selected_action": [shipped.pk], "index": 0}, follow=True)
    assert messages_of(r) == [f"Shipment {shipped.pk}: label {shipped.tracking_number} voided."]
    shipped.refresh_from_db()
    assert shipped.tracking_status == "voided"
    r = csr.post(changelist, {"action": "void_labels", "_selected_action": [shipped.pk], "index": 0}, follow=True)
    assert "only a label that has not moved can be voided" in messages_of(r)[0]
    assert TrackingEvent.objects.filter(shipment=shipped).count() == 1
    assert sandbox.carrier.labels[shipped.tracking_number].voided
