"""Fulfilment end to end on real processes: PostgreSQL, a Celery worker with beat on Redis,
webhook partners' HTTP servers, and the sandbox carrier started by its management command.

The realistic split, as partners work: a 3PL ships on its own carrier account (it buys the
label from the carrier and reports carrier + tracking number), a dropship vendor asks the OMS
to buy the label (carrier code, no tracking number). The OMS tracks both parcels with its own
account on the same carrier.
"""

import json
import socket
import subprocess
import sys
import threading
import urllib.request
from contextlib import contextmanager
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO

import pytest
from django.core.management import call_command

from inventory.models import Location, Stock
from inventory.selectors import ledger_mismatches
from oms.models import OutboxMessage, WebhookSubscription
from oms.webhooks import verify
from orders.models import Carrier, Fulfillment, Order, OrderEvent, Payment, Shipment, TrackingEvent
from tests.factories import ChannelFactory, ItemFactory, LocationFactory, stock
from tests.integration.conftest import ROOT, celery_worker, wait_for
from tests.oms.test_webhooks import SECRET as SUBSCRIBER_SECRET
from tests.oms.test_webhooks import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

PARTNER_SECRET = "partner-shared-secret-0123456789"
OMS_CARRIER_KEY, PARTNER_CARRIER_KEY = "oms-account-key", "3pl-account-key"
CARRIER_WEBHOOK_SECRET = "sandbox-webhook-secret-0123456789"


class Partner:
    """A partner's endpoint: verifies our signature, de-duplicates on Idempotency-Key, and can
    be down for its first `down_for` requests (503)."""

    def __init__(self, down_for: int = 0):
        self.requests: list[dict] = []  # accepted ones
        self.refused = 0
        self.down_for = down_for
        self.lock = threading.Lock()
        partner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = verify(PARTNER_SECRET, self.headers.get("X-OMS-Signature", ""), body)
                with partner.lock:
                    if partner.down_for > 0:
                        partner.down_for -= 1
                        partner.refused += 1
                        status = 503
                    elif not ok:
                        status = 401
                    else:
                        key = self.headers.get("Idempotency-Key")
                        if all(r["key"] != key for r in partner.requests):  # de-duplicate
                            partner.requests.append({"key": key, "body": json.loads(body)})
                        status = 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/fulfilments"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def sandbox_carrier(log, *, speed: float, webhook_url: str = ""):
    """`manage.py run_sandbox_carrier` as a real subprocess on a free loopback port."""
    port = free_port()
    args = [sys.executable, "manage.py", "run_sandbox_carrier", "--port", str(port), "--speed", str(speed)]
    args += ["--api-key", OMS_CARRIER_KEY, "--api-key", PARTNER_CARRIER_KEY]
    if webhook_url:
        args += ["--webhook-url", webhook_url, "--webhook-secret", CARRIER_WEBHOOK_SECRET, "--push-interval", "0.3"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            with urllib.request.urlopen(f"{url}/v1/health", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        assert wait_for(up, 30), log.read_text()
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def carrier_call(url: str, path: str, body: dict, key: str) -> dict:
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def partners():
    east, vendor = Partner(down_for=2), Partner()  # the 3PL is down for its first two requests
    yield east, vendor
    east.close()
    vendor.close()


def network(east: Partner, vendor: Partner):
    def partner_location(code, kind, partner, city, postal):
        return LocationFactory(
            code=code,
            type=kind,
            connector=Location.Connector.WEBHOOK,
            partner_url=partner.url,
            partner_secret=PARTNER_SECRET,
            address_line1="1 Dock Rd",
            city=city,
            region="NJ",
            postal_code=postal,
            latitude=40.5,
            longitude=-74.4,
        )

    east_loc = partner_location("3PL-EAST", "warehouse", east, "Edison", "08837")
    vendor_loc = partner_location("VND-HOME", "dropship", vendor, "High Point", "27260")
    ChannelFactory(code="web", locations=[east_loc, vendor_loc])
    stock(east_loc, ItemFactory(sku="TEE", weight_grams=200), 10)
    stock(vendor_loc, ItemFactory(sku="LAMP", weight_grams=2400, dropship_vendor=vendor_loc), 4)
    return east_loc, vendor_loc


ORDER = {
    "channel": "web",
    "external_id": "W-9001",
    "currency": "USD",
    "customer": {"email": "grace@example.com", "name": "Grace Hopper"},
    "shipping_address": {
        "name": "Grace Hopper",
        "line1": "1 Navy Way",
        "city": "Arlington",
        "region": "VA",
        "postal_code": "22202",
        "country": "US",
        "latitude": "38.87",
        "longitude": "-77.05",
    },
    "lines": [
        {"sku": "TEE", "quantity": 2, "unit_price": "20.00"},
        {"sku": "LAMP", "quantity": 1, "unit_price": "80.00"},
    ],
    "shipping_total": "6.00",
    "tax_total": "0",
    "payment": {"method": "card", "reference": "pi_e2e", "amount_authorized": "126.00"},
}


def test_order_to_delivery_through_partners_the_sandbox_carrier_and_beat(tmp_path, api, make_key, unchanged, partners):
    east, vendor = partners
    east_loc, vendor_loc = network(east, vendor)
    subscriber = Receiver()
    WebhookSubscription.objects.create(
        url=subscriber.url,
        events=["fulfillment.shipped", "shipment.delivered", "fulfillment.delivered", "order.completed"],
        secret=SUBSCRIBER_SECRET,
    )
    fast = {
        "CARRIER_TRACKING_POLL_SECONDS": "1",
        "CARRIER_TRACKING_INTERVAL_SECONDS": "1",
    }
    with (
        sandbox_carrier(tmp_path / "carrier.log", speed=7200) as carrier_url,  # 2 carrier hours a second
        celery_worker(tmp_path / "worker.log", beat=True, env=fast) as log,
    ):
        Carrier.objects.create(
            code="SANDBOX",
            name="Sandbox Parcel",
            adapter="sandbox",
            base_url=carrier_url,
            api_key=OMS_CARRIER_KEY,
            services=["ground", "express"],
        )
        east_api = make_key("fulfillments:write,orders:read", location=east_loc)
        vendor_api = make_key("fulfillments:write,orders:read", location=vendor_loc)

        # captured → routed by the worker → one signed request per fulfilment, the 3PL after retries
        r = api.post("/api/v1/orders/", ORDER, format="json")
        assert r.status_code == 201, r.content
        number = r.json()["number"]
        assert wait_for(lambda: len(east.requests) == 1 and len(vendor.requests) == 1, 90), log.read_text()[-4000:]
        east_f = Fulfillment.objects.get(order__number=number, location=east_loc)
        vendor_f = Fulfillment.objects.get(order__number=number, location=vendor_loc)
        assert east.refused == 2  # down twice, then delivered once
        assert [r["key"] for r in east.requests] == [f"fulfillment-{east_f.pk}"]
        assert [r["key"] for r in vendor.requests] == [f"fulfillment-{vendor_f.pk}"]
        assert [(line["sku"], line["quantity"]) for line in east.requests[0]["body"]["lines"]] == [("TEE", 2)]
        assert [(line["sku"], line["quantity"]) for line in vendor.requests[0]["body"]["lines"]] == [("LAMP", 1)]
        assert wait_for(lambda: Fulfillment.objects.filter(order__number=number, status="sent").count() == 2, 30)
        assert "retrying in" in log.read_text()

        # the partners answer through the API, each with a key bound to its location
        with unchanged():
            r = vendor_api.post(f"/api/v1/fulfillments/{east_f.pk}/accept/")
            assert r.status_code == 404  # another location's fulfilment
        assert east_api.post(f"/api/v1/fulfillments/{east_f.pk}/accept/").json()["status"] == "accepted"
        assert vendor_api.post(f"/api/v1/fulfillments/{vendor_f.pk}/accept/").json()["status"] == "accepted"

        # the 3PL buys the label on its own carrier account and reports the tracking number
        request = east.requests[0]["body"]
        own = carrier_call(
            carrier_url,
            "/v1/labels",
            {
                "service": "ground",
                "ship_from": {
                    "name": "3PL East",
                    "line1": "1 Dock Rd",
                    "city": "Edison",
                    "postal_code": "08837",
                    "country": "US",
                },
                "ship_to": request["ship_to"],
                "parcel": {"weight_grams": 400},
                "reference": request["order"],
            },
            PARTNER_CARRIER_KEY,
        )
        line_id = request["lines"][0]["line_id"]
        with unchanged():
            over = east_api.post(
                f"/api/v1/fulfillments/{east_f.pk}/ship/",
                {
                    "carrier": "SANDBOX",
                    "tracking_number": own["tracking_number"],
                    "lines": [{"line_id": line_id, "quantity": 3}],
                },
                format="json",
            )
            assert over.status_code == 400 and over.json()["error"]["fields"]["lines.quantity"] == "Between 1 and 2."
            other = vendor_api.post(f"/api/v1/fulfillments/{east_f.pk}/ship/", {"carrier": "SANDBOX"}, format="json")
            assert other.status_code == 404
        ship = {"carrier": "SANDBOX", "tracking_number": own["tracking_number"], "reference": "EAST-PKG-1"}
        first = east_api.post(f"/api/v1/fulfillments/{east_f.pk}/ship/", ship, format="json")
        again = east_api.post(f"/api/v1/fulfillments/{east_f.pk}/ship/", ship, format="json")  # a retried call
        assert first.status_code == again.status_code == 200, first.content
        assert first.json()["shipments"] == again.json()["shipments"]
        assert Shipment.objects.filter(fulfillment=east_f).count() == 1

        # the vendor asks the OMS to buy the label
        r = vendor_api.post(
            f"/api/v1/fulfillments/{vendor_f.pk}/ship/",
            {"carrier": "SANDBOX", "service": "express", "reference": "VND-1"},
            format="json",
        )
        assert r.status_code == 200, r.content
        [parcel] = r.json()["shipments"]
        assert parcel["tracking_number"].startswith("SBX0") and parcel["service"] == "express"
        label = vendor_api.get(parcel["label_url"])
        assert label.status_code == 200 and label.content.startswith(b"%PDF")
        assert Order.objects.get(number=number).status == "shipped"

        # beat polls the carrier until both parcels are delivered; the order completes
        assert wait_for(lambda: Order.objects.get(number=number).status == "completed", 120), (
            log.read_text()[-4000:] + (tmp_path / "carrier.log").read_text()[-2000:]
        )
        assert "Sending due task poll-carrier-tracking (orders.poll_tracking)" in log.read_text()
        assert wait_for(lambda: any(r["type"] == "order.completed" for r in subscriber.received), 30)

    for shipment in Shipment.objects.filter(fulfillment__order__number=number):
        events = list(TrackingEvent.objects.filter(shipment=shipment))
        assert shipment.tracking_status == "delivered" and shipment.delivered_at == events[-1].occurred_at
        assert [e.status for e in events][0] == "label_created" and events[-1].status == "delivered"
        assert len(events) == 6 and len({e.carrier_event_id for e in events}) == 6
        assert {e.source for e in events} == {"poll"}
    assert set(Fulfillment.objects.filter(order__number=number).values_list("status", flat=True)) == {"delivered"}
    types = list(OrderEvent.objects.filter(order__number=number).values_list("type", flat=True))
    assert types.count("fulfillment.shipped") == 2 and types.count("shipment.delivered") == 2
    assert types.count("fulfillment.delivered") == 2 and types[-1] == "order.completed"
    payment = Payment.objects.get(order__number=number)
    assert (payment.status, payment.amount_captured) == ("captured", Decimal("126.00"))
    assert Stock.objects.get(location=east_loc, item__sku="TEE").on_hand == 8
    assert Stock.objects.get(location=vendor_loc, item__sku="LAMP").on_hand == 3
    assert set(Stock.objects.values_list("reserved", flat=True)) == {0}
    assert ledger_mismatches() == []
    out = StringIO()
    call_command("inventory_check", stdout=out)
    assert "agree" in out.getvalue()
    # each partner got its request exactly once; subscribers heard about completion once
    assert len(east.requests) == len(vendor.requests) == 1
    assert [r["type"] for r in subscriber.received].count("order.completed") == 1
    assert all(r["ok"] for r in subscriber.received)
    assert not OutboxMessage.objects.filter(status="dead").exists()
    subscriber.close()


def test_tracking_pushed_by_the_carrier_webhook_completes_the_order(tmp_path, live_server, api, make_key, partners):
    """The inbound path alone: no beat, so nothing polls; the sandbox pushes signed events."""
    east, vendor = partners
    east.down_for = 0
    east_loc, _ = network(east, vendor)
    hook = f"{live_server.url}/api/v1/carriers/SANDBOX/tracking/"
    with (
        sandbox_carrier(tmp_path / "carrier.log", speed=36000, webhook_url=hook) as carrier_url,
        celery_worker(tmp_path / "worker.log") as log,
    ):
        Carrier.objects.create(
            code="SANDBOX",
            name="Sandbox Parcel",
            adapter="sandbox",
            base_url=carrier_url,
            api_key=OMS_CARRIER_KEY,
            webhook_secret=CARRIER_WEBHOOK_SECRET,
            services=["ground"],
        )
        body = {**ORDER, "lines": [ORDER["lines"][0]], "payment": {"method": "card", "amount_authorized": "46.00"}}
        number = api.post("/api/v1/orders/", body, format="json").json()["number"]
        assert wait_for(lambda: len(east.requests) == 1, 60), log.read_text()[-3000:]
        f = Fulfillment.objects.get(order__number=number)
        east_api = make_key("fulfillments:write,orders:read", location=east_loc)
        east_api.post(f"/api/v1/fulfillments/{f.pk}/accept/")
        assert (
            east_api.post(f"/api/v1/fulfillments/{f.pk}/ship/", {"carrier": "SANDBOX"}, format="json").status_code
            == 200
        )
        assert wait_for(lambda: Order.objects.get(number=number).status == "completed", 60), (
            tmp_path / "carrier.log"
        ).read_text()[-3000:]
    events = TrackingEvent.objects.filter(shipment__fulfillment=f).order_by("occurred_at", "id")
    assert set(events.values_list("source", flat=True)) == {"webhook"}
    # label_created is often pushed before the ship transaction commits (the label is bought
    # outside it): it waits as an early event and is recorded when the shipment is written.
    assert list(events.values_list("status", flat=True)) == [
        "label_created",
        "in_transit",
        "in_transit",
        "in_transit",
        "out_for_delivery",
        "delivered",
    ]
    assert (
        OrderEvent.objects.get(order__number=number, type="shipment.delivered").actor_label == "carrier SANDBOX webhook"
    )
    assert ledger_mismatches() == []


def test_a_partner_down_for_good_is_dead_lettered_then_retried_by_hand(tmp_path, api, partners):
    from oms.outbox import relay_outbox

    east, vendor = partners
    east.down_for = 10**6
    network(east, vendor)
    with celery_worker(tmp_path / "worker.log", env={"OUTBOX_MAX_ATTEMPTS": "3"}) as log:
        body = {**ORDER, "lines": [ORDER["lines"][0]], "payment": {"method": "card", "amount_authorized": "46.00"}}
        number = api.post("/api/v1/orders/", body, format="json").json()["number"]
        dead = lambda: OutboxMessage.objects.filter(topic="orders.send_fulfillment", status="dead").first()  # noqa: E731
        assert wait_for(lambda: dead() is not None, 60), log.read_text()[-3000:]
        assert east.refused == 3 and dead().attempts == 3 and "HTTP 503" in dead().last_error
        assert Fulfillment.objects.get(order__number=number).status == "created"
        east.down_for = 0
        OutboxMessage.objects.filter(pk=dead().pk).update(status="pending")  # the admin's "Retry now"
        relay_outbox()
        assert wait_for(lambda: len(east.requests) == 1, 30), log.read_text()[-3000:]
        assert wait_for(lambda: Fulfillment.objects.get(order__number=number).status == "sent", 30)
