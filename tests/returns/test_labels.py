"""Mail-return labels from the carrier adapter, against the real sandbox carrier (threads, HTTP):
bought after commit, served as a document, voided when the return is cancelled, retried when
the carrier is down, and polled so a moving parcel puts the return in transit."""

import pytest
from django.utils import timezone

from inventory.models import Location
from oms.models import OutboxMessage
from oms.outbox import relay_outbox
from orders.carriers.sandbox import HOUR, SandboxServer
from orders.models import Carrier, OrderEvent
from returns.labels import labels_poll
from returns.models import Return, ReturnPolicy
from tests.returns.conftest import line_of

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sandbox():
    server = SandboxServer(port=0, api_keys=("oms-key",), speed=1).start()
    yield server
    server.stop()


@pytest.fixture
def carrier(sandbox, returns_network):
    Location.objects.filter(code__in=["DC1", "STORE1"]).update(
        address_line1="300 Raritan Center Pkwy", city="Edison", region="NJ", postal_code="08837"
    )
    return Carrier.objects.create(
        code="SANDBOX",
        name="Sandbox Express",
        adapter="sandbox",
        base_url=sandbox.url,
        api_key="oms-key",
        services=["ground", "express"],
    )


def mail_return(api, shipped, method="mail", quantity=1):
    a = line_of(shipped, "A")["id"]
    r = api.post(
        "/api/v1/returns/",
        {
            "order": shipped["number"],
            "method": method,
            "lines": [{"line_id": a, "quantity": quantity, "reason": "wrong_size"}],
        },
        format="json",
    )
    assert r.status_code == 201, r.content
    return r.json()


def test_label_bought_served_and_voided_on_cancel(api, shipped, carrier, sandbox):
    rma = mail_return(api, shipped, quantity=2)
    label = rma["label"]
    assert (label["status"], label["carrier"], label["service"]) == ("issued", "SANDBOX", "ground")
    assert label["tracking_number"].startswith("SBX") and label["url"] == f"/api/v1/returns/{rma['id']}/label/"
    document = api.get(label["url"])
    assert document.status_code == 200 and document["Content-Type"] == "application/pdf"
    assert document.content.startswith(b"%PDF")
    record = sandbox.carrier.labels[label["tracking_number"]]
    assert not record.voided
    assert mail_return(api, shipped, method="store")["label"]["status"] == "none"  # store returns need none

    r = api.post(f"/api/v1/returns/{rma['id']}/cancel/", {"reason": "kept it"}, format="json")
    assert r.json()["status"] == "cancelled" and r.json()["label"]["status"] == "voided"
    assert sandbox.carrier.labels[label["tracking_number"]].voided
    messages = list(OrderEvent.objects.filter(type="return.label").values_list("message", flat=True))
    assert messages[0].startswith(f"Return label for {rma['number']}: SANDBOX SBX")
    assert messages[-1] == f"Return label {label['tracking_number']} voided"


def test_a_moving_parcel_puts_the_return_in_transit(api, shipped, carrier, sandbox):
    rma = mail_return(api, shipped)
    assert labels_poll() == 0  # the label exists, the parcel has not moved
    sandbox.carrier.advance(9 * HOUR)
    assert labels_poll() == 1
    got = api.get(f"/api/v1/returns/{rma['id']}/").json()
    assert got["status"] == "in_transit" and got["label"]["tracking_number"] == rma["label"]["tracking_number"]
    assert labels_poll() == 0  # only authorised returns are asked about


def test_carrier_down_is_retried_and_refusals_are_recorded(api, shipped, carrier, sandbox):
    sandbox.carrier.fail_next(1, 503)
    rma = mail_return(api, shipped)
    assert rma["label"]["status"] == "pending"
    message = OutboxMessage.objects.get(topic="returns.create_return_label")
    assert message.status == "pending" and "CarrierUnavailable" in message.last_error
    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    relay_outbox()
    assert Return.objects.get(pk=rma["id"]).label_status == "issued"

    Location.objects.filter(code="DC1").update(postal_code="")  # the carrier refuses the address
    refused = mail_return(api, shipped)
    assert refused["label"]["status"] == "failed" and refused["label"]["error"]
    assert api.get(f"/api/v1/returns/{refused['id']}/label/").status_code == 404


def test_the_policy_chooses_among_several_carriers(api, shipped, carrier, sandbox, returns_network):
    Carrier.objects.create(code="OTHER", name="Other", adapter="sandbox", base_url=sandbox.url, api_key="oms-key")
    assert mail_return(api, shipped)["label"]["status"] == "unavailable"  # two carriers, no choice made
    ReturnPolicy.objects.create(channel=returns_network["web"], return_carrier=carrier, return_service="express")
    label = mail_return(api, shipped)["label"]
    assert (label["status"], label["carrier"], label["service"]) == ("issued", "SANDBOX", "express")
