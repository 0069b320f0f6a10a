"""Labels bought through the ship call, tracking by poll and by carrier webhook, void and
relabel, and bad input; against a real sandbox carrier server (threads) over HTTP."""

import json
import socket
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from inventory.models import Location, Stock
from inventory.selectors import ledger_mismatches
from oms.models import OutboxMessage
from oms.webhooks import sign
from orders.carriers import services as carrier_services
from orders.carriers.sandbox import HOUR, SandboxServer
from orders.carriers.services import tracking_poll
from orders.models import (
    Carrier,
    CarrierWebhookReceipt,
    EarlyTrackingEvent,
    Fulfillment,
    Order,
    OrderEvent,
    Payment,
    Shipment,
    TrackingEvent,
)

pytestmark = pytest.mark.django_db(transaction=True)

WEBHOOK_SECRET = "carrier-webhook-secret-0123456789"
TO = {
    "name": "Ada",
    "line1": "12 Analytical Way",
    "city": "New York",
    "region": "NY",
    "postal_code": "10001",
    "country": "US",
}


@pytest.fixture
def sandbox():
    server = SandboxServer(port=0, api_keys=("oms-key", "partner-key"), speed=1).start()
    yield server
    server.stop()


@pytest.fixture
def carrier(sandbox, stocked):
    Location.objects.filter(code__in=["DC1", "DC2"]).update(
        address_line1="300 Raritan Center Pkwy", city="Edison", region="NJ", postal_code="08837"
    )
    return Carrier.objects.create(
        code="SANDBOX",
        name="Sandbox Express",
        adapter="sandbox",
        base_url=sandbox.url,
        api_key="oms-key",
        webhook_secret=WEBHOOK_SECRET,
        services=["ground", "express"],
    )


@pytest.fixture
def accepted(api, order_body, carrier):
    def make(**changes):
        r = api.post("/api/v1/orders/", order_body(**changes), format="json")
        assert r.status_code == 201, r.content
        f = Fulfillment.objects.get(order__number=r.json()["number"])
        assert api.post(f"/api/v1/fulfillments/{f.pk}/accept/").status_code == 200
        lines = {fl.line.sku: fl.line_id for fl in f.lines.select_related("line")}
        return r.json()["number"], f, lines

    return make


def ship(api, f, **body):
    return api.post(f"/api/v1/fulfillments/{f.pk}/ship/", body, format="json")


def counters(loc, sku):
    s = Stock.objects.get(location__code=loc, item__sku=sku)
    return s.on_hand, s.reserved


def due_now():
    Shipment.objects.exclude(next_tracking_check_at=None).update(next_tracking_check_at=timezone.now())


def timeline(number):
    return list(OrderEvent.objects.filter(order__number=number).values_list("type", flat=True))


# --- Buying labels ---------------------------------------------------------------------------------


def test_ship_without_tracking_number_buys_the_label_and_ships(api, accepted, sandbox):
    number, f, _ = accepted()
    r = ship(api, f, carrier="sandbox", service="express", reference="PARCEL-1")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["status"] == "shipped"
    [parcel] = body["shipments"]
    assert parcel["carrier"] == "SANDBOX" and parcel["service"] == "express"
    assert parcel["tracking_number"].startswith("SBX0") and parcel["tracking_status"] == "label_created"
    assert (parcel["label_format"], parcel["label_url"]) == ("pdf", f"/api/v1/shipments/{parcel['id']}/label/")
    # 4 units × 500 g (no item weights) = 2 kg express, zone 1: 15.50 + 2 × 1.60 + 0.85
    assert (parcel["label_cost"], parcel["label_currency"]) == ("19.55", "USD")
    assert sorted((row["line_id"], row["quantity"]) for row in parcel["lines"]) == sorted(
        (fl.line_id, fl.quantity) for fl in f.lines.all()
    )
    assert list(sandbox.carrier.labels) == [parcel["tracking_number"]]
    # shipping committed stock and captured the payment, as any shipment does
    assert counters("DC1", "A") == (2, 0) and counters("DC1", "B") == (4, 0)
    assert Payment.objects.get(order__number=number).amount_captured == Decimal("82.00")
    assert ledger_mismatches() == []
    label = api.get(parcel["label_url"])
    assert label.status_code == 200 and label["Content-Type"] == "application/pdf"
    assert label.content.startswith(b"%PDF") and parcel["tracking_number"].encode() in label.content
    order = api.get(f"/api/v1/orders/{number}/").json()
    assert order["fulfillments"][0]["shipments"][0]["tracking_number"] == parcel["tracking_number"]
    shipped = OrderEvent.objects.get(order__number=number, type="fulfillment.shipped")
    assert parcel["tracking_number"] in shipped.message
    detail = api.get(f"/api/v1/shipments/{parcel['id']}/").json()
    assert detail["order"] == number and detail["tracking_events"] == []
    carriers = api.get("/api/v1/carriers/").json()["results"]
    assert carriers == [
        {
            "code": "SANDBOX",
            "name": "Sandbox Express",
            "services": ["ground", "express"],
            "active": True,
            "tracking_webhook_url": "/api/v1/carriers/SANDBOX/tracking/",
        }
    ]


def test_a_partner_label_on_a_configured_carrier_is_tracked_and_a_free_text_carrier_is_not(api, accepted, sandbox):
    number, f, lines = accepted()
    own = sandbox.carrier.create_label(
        {"ship_from": TO, "ship_to": TO, "parcel": {"weight_grams": 900}, "service": "ground"}
    )
    r = ship(
        api,
        f,
        carrier="Sandbox",
        tracking_number=own["tracking_number"],
        lines=[{"line_id": lines["A"], "quantity": 3}],
    )
    assert r.status_code == 200, r.content
    r = ship(
        api, f, carrier="UPS", tracking_number="1Z999AA10123456784", lines=[{"line_id": lines["B"], "quantity": 1}]
    )
    tracked, free = Shipment.objects.filter(fulfillment=f).order_by("pk")
    assert (tracked.carrier, tracked.carrier_account.code, tracked.tracking_status) == (
        "SANDBOX",
        "SANDBOX",
        "label_created",
    )
    assert tracked.next_tracking_check_at is not None and not tracked.has_label
    assert (free.carrier, free.carrier_account, free.tracking_status) == ("UPS", None, "untracked")
    assert free.next_tracking_check_at is None
    assert tracking_poll().polled == 1  # only the tracked one is asked about


# --- Tracking by polling ---------------------------------------------------------------------------


def test_polling_records_progress_once_and_delivery_completes_the_order(api, accepted, sandbox, settings):
    number, f, _ = accepted()
    shipment_id = ship(api, f, carrier="SANDBOX").json()["shipments"][0]["id"]
    summary = tracking_poll()
    assert (summary.polled, summary.recorded, summary.changed, summary.failed) == (1, 1, 0, 0)
    shipment = Shipment.objects.get(pk=shipment_id)
    assert shipment.tracking_status == "label_created" and shipment.tracking_checked_at is not None
    interval = shipment.next_tracking_check_at - shipment.tracking_checked_at
    assert interval == timedelta(seconds=settings.CARRIER_TRACKING_INTERVAL_SECONDS)
    assert tracking_poll().polled == 0  # not due again yet

    sandbox.carrier.advance(9 * HOUR)
    due_now()
    assert (tracking_poll().recorded, Shipment.objects.get(pk=shipment_id).tracking_status) == (2, "in_transit")
    before = timeline(number)
    assert before[-1] == "shipment.in_transit"
    due_now()
    again = tracking_poll()
    assert (again.polled, again.recorded, again.changed) == (1, 0, 0)  # the same events again: nothing new
    assert timeline(number) == before

    sandbox.carrier.advance(21 * HOUR)
    due_now()
    summary = tracking_poll()
    assert (summary.recorded, summary.changed) == (3, 1)
    shipment.refresh_from_db()
    events = list(TrackingEvent.objects.filter(shipment=shipment))
    assert [e.status for e in events] == [
        "label_created",
        "in_transit",
        "in_transit",
        "in_transit",
        "out_for_delivery",
        "delivered",
    ]
    assert {e.source for e in events} == {"poll"}
    assert (shipment.tracking_status, shipment.delivered_at) == ("delivered", events[-1].occurred_at)
    assert shipment.next_tracking_check_at is None
    assert Fulfillment.objects.get(pk=f.pk).status == "delivered"
    assert Order.objects.get(number=number).status == "completed"
    assert timeline(number)[-4:] == [
        "shipment.in_transit",
        "shipment.delivered",
        "fulfillment.delivered",
        "order.completed",
    ]
    delivered = OrderEvent.objects.get(order__number=number, type="shipment.delivered")
    assert delivered.actor_label == "orders.poll_tracking" and "front door" in delivered.message
    topics = list(OutboxMessage.objects.filter(kind="event").values_list("topic", flat=True))
    assert topics.count("shipment.in_transit") == 1 and topics.count("shipment.delivered") == 1
    assert topics.count("fulfillment.delivered") == 1 and topics.count("order.completed") == 1
    assert tracking_poll().polled == 0  # delivered parcels are not asked about again
    assert ledger_mismatches() == []


def test_partial_shipments_deliver_the_fulfilment_when_its_last_parcel_arrives(api, accepted, sandbox):
    number, f, lines = accepted()
    ship(api, f, carrier="SANDBOX", lines=[{"line_id": lines["A"], "quantity": 3}])
    sandbox.carrier.advance(30 * HOUR)
    tracking_poll()
    assert Fulfillment.objects.get(pk=f.pk).status == "accepted"  # B has not shipped yet
    assert Order.objects.get(number=number).status == "partially_shipped"
    ship(api, f, carrier="SANDBOX", lines=[{"line_id": lines["B"], "quantity": 1}])
    tracking_poll()
    assert Fulfillment.objects.get(pk=f.pk).status == "shipped"
    sandbox.carrier.advance(30 * HOUR)
    due_now()
    tracking_poll()
    assert Fulfillment.objects.get(pk=f.pk).status == "delivered"
    assert Order.objects.get(number=number).status == "completed"


def test_an_exception_is_recorded_and_announced_and_the_order_waits(api, accepted, sandbox):
    number, f, _ = accepted(shipping_address={**TO, "postal_code": "00000"})
    ship(api, f, carrier="SANDBOX")
    sandbox.carrier.advance(30 * HOUR)
    tracking_poll()
    shipment = Shipment.objects.get(fulfillment=f)
    assert shipment.tracking_status == "exception" and shipment.next_tracking_check_at is not None  # still polled
    event = OrderEvent.objects.get(order__number=number, type="shipment.exception")
    assert "address not found" in event.message and event.data["tracking_status"] == "exception"
    assert OutboxMessage.objects.filter(topic="shipment.exception").count() == 1
    assert Order.objects.get(number=number).status == "shipped"


def test_carrier_failures_back_off_without_stopping_other_carriers_or_shipments(api, accepted, sandbox, settings):
    settings.CARRIER_TRACKING_BACKOFF_SECONDS = 60
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{s.getsockname()[1]}"
    Carrier.objects.create(code="DEAD", name="Down", adapter="sandbox", base_url=dead_url, api_key="k")
    _, f, lines = accepted()
    a = lines["A"]
    good = ship(api, f, carrier="SANDBOX", lines=[{"line_id": a, "quantity": 1}]).json()["shipments"][0]["id"]
    own = sandbox.carrier.create_label({"ship_from": TO, "ship_to": TO, "parcel": {"weight_grams": 900}})
    ship(api, f, carrier="DEAD", tracking_number=own["tracking_number"], lines=[{"line_id": a, "quantity": 1}])
    ship(api, f, carrier="SANDBOX", tracking_number="SBX0NOT-OURS", lines=[{"line_id": a, "quantity": 1}])
    down, unknown = Shipment.objects.filter(fulfillment=f).exclude(pk=good).order_by("pk")

    started = timezone.now()
    summary = tracking_poll()
    assert (summary.polled, summary.recorded, summary.failed) == (2, 1, 2)
    assert len(summary.carrier_errors) == 1 and summary.carrier_errors[0].startswith(
        "DEAD: Carrier DEAD did not answer"
    )
    down.refresh_from_db()
    unknown.refresh_from_db()
    assert (down.tracking_failures, unknown.tracking_failures) == (1, 1)
    assert "did not answer" in down.tracking_error and unknown.tracking_error.startswith("not_found")
    for failed in (down, unknown):
        wait = failed.next_tracking_check_at - started
        assert timedelta(seconds=45) <= wait <= timedelta(seconds=61)
    assert TrackingEvent.objects.filter(shipment_id=good).count() == 1

    sandbox.carrier.fail_next(1, 503)  # the sandbox is down for one request: both of its shipments back off
    due_now()
    summary = tracking_poll()
    assert summary.failed == 3 and any("HTTP 503" in e for e in summary.carrier_errors)
    unknown.refresh_from_db()
    assert unknown.tracking_failures == 2 and "HTTP 503" in unknown.tracking_error
    wait = unknown.next_tracking_check_at - timezone.now()
    assert timedelta(seconds=85) <= wait <= timedelta(seconds=121)  # doubled
    good_row = Shipment.objects.get(pk=good)
    assert good_row.tracking_failures == 1

    due_now()
    tracking_poll()
    good_row.refresh_from_db()
    assert (good_row.tracking_failures, good_row.tracking_error) == (0, "")


# --- Void and relabel ------------------------------------------------------------------------------


def test_void_a_label_that_has_not_moved_then_relabel(api, make_key, accepted, sandbox, stocked, unchanged):
    number, f, _ = accepted()
    parcel = ship(api, f, carrier="SANDBOX").json()["shipments"][0]
    url = f"/api/v1/shipments/{parcel['id']}"
    with unchanged():  # voiding a label does not un-ship the units
        assert make_key("orders:read").post(f"{url}/void-label/").status_code == 403
        other = make_key("fulfillments:write,orders:read", location=stocked["dc2"])
        assert other.post(f"{url}/void-label/").status_code == 404
        r = api.post(f"{url}/void-label/")
        assert r.status_code == 200, r.content
        assert r.json()["tracking_status"] == "voided"
        assert sandbox.carrier.labels[parcel["tracking_number"]].voided
        again = api.post(f"{url}/void-label/")
        assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_transition"
    assert "shipment.label_voided" in timeline(number)
    assert tracking_poll().polled == 0

    r = api.post(f"{url}/relabel/", {"service": "express", "label_format": "zpl"}, format="json")
    assert r.status_code == 200, r.content
    fresh = r.json()
    assert fresh["tracking_number"] != parcel["tracking_number"] and fresh["tracking_status"] == "label_created"
    assert (fresh["service"], fresh["label_format"]) == ("express", "zpl")
    assert api.get(f"{url}/label/").content.startswith(b"^XA")
    replaced = OrderEvent.objects.get(order__number=number, type="shipment.label_replaced")
    assert replaced.data["old_tracking_number"] == parcel["tracking_number"]
    assert api.post(f"{url}/relabel/", {}, format="json").status_code == 409  # it has a live label again

    sandbox.carrier.advance(3 * HOUR)  # picked up, and we have not polled yet: the carrier refuses
    with unchanged():
        r = api.post(f"{url}/void-label/")
        assert r.status_code == 409 and "already scanned" in r.json()["error"]["message"]
    assert Shipment.objects.get(pk=parcel["id"]).tracking_status == "label_created"


def test_only_labels_the_oms_bought_can_be_voided(api, accepted):
    _, f, _ = accepted()
    ship(api, f, carrier="UPS", tracking_number="1Z1")
    shipment = Shipment.objects.get(fulfillment=f)
    r = api.post(f"/api/v1/shipments/{shipment.pk}/void-label/")
    assert r.status_code == 409 and "not bought through the OMS" in r.json()["error"]["message"]
    assert api.get(f"/api/v1/shipments/{shipment.pk}/label/").status_code == 404
    assert api.post("/api/v1/shipments/999999/void-label/").status_code == 404


# --- Bad input and duplicates ----------------------------------------------------------------------


def test_bad_ship_calls_change_nothing_and_buy_no_label(api, make_key, accepted, sandbox, stocked, unchanged):
    number, f, lines = accepted()
    Carrier.objects.create(
        code="OLD", name="Retired", adapter="sandbox", base_url=sandbox.url, api_key="k", active=False
    )
    cases = [
        ({"carrier": "NOPE"}, 400, "validation_error", "carrier"),
        ({"carrier": "OLD"}, 400, "validation_error", "carrier"),
        ({"carrier": "SANDBOX", "service": "overnight"}, 400, "validation_error", "service"),
        ({"carrier": "SANDBOX", "label_format": "png"}, 400, "validation_error", "label_format"),
        (
            {"carrier": "SANDBOX", "lines": [{"line_id": lines["A"], "quantity": 4}]},
            400,
            "validation_error",
            "lines.quantity",
        ),
        (
            {"carrier": "SANDBOX", "lines": [{"line_id": 999999, "quantity": 1}]},
            400,
            "validation_error",
            "lines.line_id",
        ),
        ({"tracking_number": "1Z1"}, 400, "validation_error", "carrier"),
    ]
    with unchanged():
        for body, status, code, field in cases:
            r = ship(api, f, **body)
            assert (r.status_code, r.json()["error"]["code"]) == (status, code), (body, r.content)
            assert field in r.json()["error"]["fields"], (body, r.json())
        other = make_key("fulfillments:write,orders:read", location=stocked["dc2"])
        assert ship(other, f, carrier="SANDBOX").status_code == 404
        assert ship(make_key("orders:read"), f, carrier="SANDBOX").status_code == 403
        assert APIClient().post(f"/api/v1/fulfillments/{f.pk}/ship/", {"carrier": "SANDBOX"}).status_code == 401

        sandbox.carrier.fail_next(1, 503)
        r = ship(api, f, carrier="SANDBOX")
        assert (r.status_code, r.json()["error"]["code"]) == (503, "carrier_unavailable")
        Carrier.objects.filter(code="SANDBOX").update(api_key="wrong")
        r = ship(api, f, carrier="SANDBOX")
        assert (r.status_code, r.json()["error"]["code"]) == (422, "carrier_rejected")
        assert "credentials" in r.json()["error"]["message"]
    assert sandbox.carrier.labels == {}
    assert not Shipment.objects.exists()
    assert Payment.objects.get(order__number=number).amount_captured == 0
    assert Fulfillment.objects.get(pk=f.pk).status == "accepted"


def test_not_yet_accepted_fulfilments_and_pickups_get_no_label(api, order_body, carrier, sandbox, unchanged):
    number = api.post("/api/v1/orders/", order_body(), format="json").json()["number"]
    f = Fulfillment.objects.get(order__number=number)
    with unchanged():
        r = ship(api, f, carrier="SANDBOX")
        assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_transition"
    assert sandbox.carrier.labels == {}


def test_a_duplicate_ship_call_makes_one_shipment_and_buys_one_label(api, accepted, sandbox):
    _, f, lines = accepted()
    body = {"carrier": "SANDBOX", "reference": "P-1", "lines": [{"line_id": lines["A"], "quantity": 1}]}
    first = ship(api, f, **body)
    second = ship(api, f, **body)
    assert first.status_code == second.status_code == 200
    assert first.json()["shipments"] == second.json()["shipments"]
    keyed = api.post(
        f"/api/v1/fulfillments/{f.pk}/ship/",
        {"carrier": "SANDBOX", "lines": [{"line_id": lines["A"], "quantity": 1}]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="ship-2",
    )
    replay = api.post(
        f"/api/v1/fulfillments/{f.pk}/ship/",
        {"carrier": "SANDBOX", "lines": [{"line_id": lines["A"], "quantity": 1}]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="ship-2",
    )
    assert replay["Idempotent-Replayed"] == "true" and replay.content == keyed.content
    assert Shipment.objects.filter(fulfillment=f).count() == 2
    assert len(sandbox.carrier.labels) == 2
    assert counters("DC1", "A") == (3, 1)


def test_a_label_bought_for_a_shipment_that_then_fails_is_voided(api, accepted, sandbox, monkeypatch, unchanged):
    from oms.errors import InvalidTransition

    _, f, _ = accepted()

    def cancelled_meanwhile(**kwargs):
        raise InvalidTransition("Fulfilment was cancelled meanwhile.")

    monkeypatch.setattr(carrier_services, "fulfillment_ship", cancelled_meanwhile)
    with unchanged():
        assert ship(api, f, carrier="SANDBOX").status_code == 409
    [record] = sandbox.carrier.labels.values()
    assert record.voided


# --- The inbound carrier webhook -------------------------------------------------------------------


def post_webhook(payload, *, code="SANDBOX", secret=WEBHOOK_SECRET, at=None, body=None, header=None):
    raw = body if body is not None else json.dumps(payload).encode()
    signature = header if header is not None else sign(secret, int(at if at is not None else time.time()), raw)
    return APIClient().post(
        f"/api/v1/carriers/{code}/tracking/", raw, content_type="application/json", HTTP_X_CARRIER_SIGNATURE=signature
    )


def state():
    return (TrackingEvent.objects.count(), OrderEvent.objects.count(), CarrierWebhookReceipt.objects.count())


def test_carrier_webhook_records_events_once_and_refuses_replays_and_bad_signatures(api, accepted, sandbox, carrier):
    number, f, _ = accepted()
    tracking_number = ship(api, f, carrier="SANDBOX").json()["shipments"][0]["tracking_number"]
    sandbox.carrier.advance(30 * HOUR)
    events = sandbox.carrier.events(tracking_number)
    assert len(events) == 6

    now = int(time.time())
    raw = json.dumps({"events": events[:3]}).encode()
    header = sign(WEBHOOK_SECRET, now, raw)
    r = post_webhook(None, body=raw, header=header)
    assert r.status_code == 200, r.content
    assert r.json() == {
        "received": 3,
        "recorded": 3,
        "duplicates": 0,
        "ignored": 0,
        "unknown_tracking_numbers": [],
        "waiting": 0,
    }
    assert Shipment.objects.get(fulfillment=f).tracking_status == "in_transit"
    assert (
        OrderEvent.objects.get(order__number=number, type="shipment.in_transit").actor_label
        == "carrier SANDBOX webhook"
    )

    before = state()
    replay = post_webhook(None, body=raw, header=header)
    assert replay.status_code == 409 and "replay" in replay.json()["error"]["message"]
    tampered = post_webhook(None, body=raw.replace(b"Picked up", b"Delivered"), header=header)
    assert tampered.status_code == 401 and tampered.json()["error"]["code"] == "authentication_failed"
    stale = post_webhook({"events": events}, at=now - 301)
    assert stale.status_code == 401 and "at most 300 s is accepted" in stale.json()["error"]["message"]
    assert post_webhook({"events": events}, at=now + 400).status_code == 401  # from the future
    assert post_webhook({"events": events}, secret="another-secret-entirely").status_code == 401
    assert post_webhook({"events": events}, header="").status_code == 401
    assert post_webhook({"events": events}, header="t=abc,v1=00").status_code == 401
    assert post_webhook({"events": events}, code="NOPE").status_code == 404
    assert post_webhook(None, body=b"{not json").status_code == 400
    assert post_webhook({"events": []}).status_code == 400
    bad_status = post_webhook({"events": [{**events[3], "status": "teleported"}]})
    assert bad_status.status_code == 400 and "events[0].status" in bad_status.json()["error"]["fields"]
    bad_time = post_webhook({"events": [{**events[3], "occurred_at": "yesterday"}]})
    assert bad_time.status_code == 400
    assert state() == before  # nothing changed

    strangers = post_webhook({"events": [{**events[0], "tracking_number": "SBX0SOMEONE-ELSE"}]}, at=now - 2)
    assert strangers.status_code == 200 and strangers.json()["unknown_tracking_numbers"] == ["SBX0SOMEONE-ELSE"]
    assert strangers.json()["waiting"] == 1  # kept in case its shipment is about to be written
    assert TrackingEvent.objects.count() == 3

    # the carrier sends everything again, freshly signed: only the three new events count
    r = post_webhook({"events": events}, at=now - 1)
    assert r.status_code == 200
    assert (r.json()["recorded"], r.json()["duplicates"]) == (3, 3)
    assert Order.objects.get(number=number).status == "completed"
    assert set(TrackingEvent.objects.values_list("source", flat=True)) == {"webhook"}

    Carrier.objects.filter(pk=carrier.pk).update(webhook_secret="")
    assert post_webhook({"events": events}, at=now - 3).status_code == 404  # webhooks not configured


def test_events_pushed_before_the_shipment_is_written_are_recorded_when_it_is(api, accepted, sandbox, carrier):
    """A label bought outside the ship transaction may be pushed its first events before that
    transaction commits: they wait, and the shipment gets them when it is written."""
    number, f, lines = accepted()
    label = sandbox.carrier.create_label(
        {"ship_from": TO, "ship_to": TO, "parcel": {"weight_grams": 900}, "service": "ground"}
    )
    sandbox.carrier.advance(30 * HOUR)
    events = sandbox.carrier.events(label["tracking_number"])
    early = post_webhook({"events": events[:2]})
    assert early.status_code == 200, early.content
    assert early.json()["unknown_tracking_numbers"] == [label["tracking_number"]]
    assert (early.json()["recorded"], early.json()["waiting"]) == (0, 2)
    again = post_webhook({"events": events[:2]}, at=time.time() - 10)  # signed anew: not a replay
    assert again.status_code == 200 and again.json()["waiting"] == 2, again.content  # kept once

    r = ship(api, f, carrier="SANDBOX", tracking_number=label["tracking_number"])  # commits, then applies
    assert r.status_code == 200, r.content
    shipment = Shipment.objects.get(fulfillment=f)
    pushed = list(shipment.tracking_events.values_list("carrier_event_id", "source"))
    assert pushed == [(events[0]["id"], "webhook"), (events[1]["id"], "webhook")]
    assert shipment.tracking_status == events[1]["status"]
    assert not EarlyTrackingEvent.objects.exists()

    # A number no shipment ever claims is forgotten after a week (by the tracking poll).
    assert (
        post_webhook({"events": [{**events[0], "tracking_number": "SBX0NOBODY"}]}, at=time.time() - 20).status_code
        == 200
    )
    EarlyTrackingEvent.objects.update(received_at=timezone.now() - timedelta(days=8))
    tracking_poll()
    assert not EarlyTrackingEvent.objects.exists()


@pytest.mark.postgres  # SQLite's shared in-memory test database locks whole tables across threads
def test_the_sandbox_pushes_signed_tracking_webhooks_to_the_oms(live_server, api, accepted, carrier):
    pusher = SandboxServer(
        port=0,
        api_keys=("oms-key",),
        speed=36000,  # ten carrier hours per real second
        webhook_url=f"{live_server.url}/api/v1/carriers/SANDBOX/tracking/",
        webhook_secret=WEBHOOK_SECRET,
        push_interval=0.2,
    ).start()
    try:
        Carrier.objects.filter(pk=carrier.pk).update(base_url=pusher.url)
        number, f, _ = accepted()
        assert ship(api, f, carrier="SANDBOX").status_code == 200
        deadline = time.monotonic() + 30
        while Order.objects.get(number=number).status != "completed" and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        pusher.stop()
    assert Order.objects.get(number=number).status == "completed"
    shipment = Shipment.objects.get(fulfillment=f)
    pushed = list(
        TrackingEvent.objects.filter(shipment=shipment, source="webhook")
        .order_by("occurred_at", "id")
        .values_list("status", flat=True)
    )
    # Every step came by webhook, label_created too: pushed before the OMS had written the
    # shipment, it waited as an early event and was recorded when the shipment was written.
    assert pushed == ["label_created", "in_transit", "in_transit", "in_transit", "out_for_delivery", "delivered"]
    assert CarrierWebhookReceipt.objects.exists()
