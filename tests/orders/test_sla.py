"""SLAs: due times across time zones and cut-offs, late flags, escalation of unaccepted work and
expiry of uncollected pickups. Time moves by passing `now` into the services (no clock mocking)."""

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest

from inventory.selectors import ledger_mismatches
from oms.actor import Actor
from oms.models import OutboxMessage
from orders import services, sla
from orders.models import Fulfillment, Order, OrderLine
from tests.factories import stock
from tests.orders.store_helpers import counters, events, payment, pickup_order, ship_order


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


CHI, NYC, TOKYO, KOLKATA = "America/Chicago", "America/New_York", "Asia/Tokyo", "Asia/Kolkata"
STORE = {"opening": time(10, 0), "cutoff": time(14, 0), "processing_hours": 2}


@pytest.mark.parametrize(
    "case, released, zone, hours, due",
    [
        ("between opening and cut-off: clock starts at once", utc(2024, 6, 5, 18, 30), CHI, STORE,
         utc(2024, 6, 5, 20, 30)),  # 13:30 CDT → 15:30 CDT
        ("at the cut-off exactly still counts as today", utc(2024, 6, 5, 19, 0), CHI, STORE,
         utc(2024, 6, 5, 21, 0)),
        ("after the cut-off: next day's opening", utc(2024, 6, 5, 19, 1), CHI, STORE,
         utc(2024, 6, 6, 17, 0)),  # 14:01 CDT → 6 June 10:00 CDT + 2 h
        ("before opening: that day's opening", utc(2024, 6, 5, 13, 0), CHI, STORE,
         utc(2024, 6, 5, 17, 0)),  # 08:00 CDT → 10:00 + 2 h
        ("UTC is already tomorrow, the store is still today after cut-off", utc(2024, 6, 6, 2, 0), NYC, STORE,
         utc(2024, 6, 6, 16, 0)),  # 5 June 22:00 EDT → 6 June 10:00 EDT + 2 h
        ("UTC is still yesterday, the store is early morning", utc(2024, 6, 5, 20, 0), TOKYO, STORE,
         utc(2024, 6, 6, 3, 0)),  # 6 June 05:00 JST → 10:00 JST + 2 h
        ("half-hour zone, warehouse hours", utc(2024, 6, 5, 6, 0), KOLKATA,
         {"opening": time(6, 0), "cutoff": time(17, 0), "processing_hours": 6},
         utc(2024, 6, 5, 12, 0)),  # 11:30 IST + 6 h
        ("next opening falls on spring-forward day", utc(2024, 3, 9, 21, 0), CHI, STORE,
         utc(2024, 3, 10, 17, 0)),  # 9 Mar 15:00 CST → 10 Mar 10:00 CDT (15:00Z) + 2 h
        ("24 elapsed hours across spring-forward", utc(2024, 3, 9, 18, 0), CHI,
         {"opening": time(6, 0), "cutoff": time(17, 0), "processing_hours": 24},
         utc(2024, 3, 10, 18, 0)),  # 12:00 CST → 13:00 CDT next day: 24 real hours
        ("24 elapsed hours across fall-back", utc(2024, 11, 2, 17, 0), CHI,
         {"opening": time(6, 0), "cutoff": time(17, 0), "processing_hours": 24},
         utc(2024, 11, 3, 17, 0)),  # 12:00 CDT → 11:00 CST next day
        ("opening inside the spring-forward gap lands after it", utc(2024, 3, 10, 6, 0), CHI,
         {"opening": time(2, 30), "cutoff": time(17, 0), "processing_hours": 1},
         utc(2024, 3, 10, 9, 30)),  # 00:00 CST; 02:30 does not exist → 03:30 CDT + 1 h
    ],
)  # fmt: skip
def test_due_time_table(case, released, zone, hours, due):
    assert sla.due_at(released_at=released, timezone=zone, **hours) == due, case


pytestmark_db = pytest.mark.django_db(transaction=True)  # routing runs after commit


@pytest.fixture
def clock_free_store(stocked):
    """STORE1 works around the clock with a 4-hour SLA, so a due time is release + 4 h."""
    store = stocked["store"]
    store.timezone, store.opening_time, store.cutoff_time, store.processing_hours = CHI, time(0), time(23, 59, 59), 4
    store.save()
    stock(store, stocked["item"], 5)
    return stocked


@pytestmark_db
def test_routing_gives_each_fulfilment_its_due_time(api, order_body, clock_free_store):
    f = pickup_order(api, order_body)
    assert abs(f.due_at - (f.created_at + timedelta(hours=4))) < timedelta(seconds=5)
    routed = events(f.order.number, "order.routed")[-1]
    assert routed.data["fulfillments"][0]["due_at"] == f.due_at.isoformat()
    body = api.get("/api/v1/fulfillments/?location=STORE1").json()["results"][0]
    assert body["late"] is False and body["due_at"]


@pytestmark_db
def test_late_fulfilments_are_flagged_once_and_stay_flagged(api, order_body, clock_free_store):
    f = pickup_order(api, order_body)
    number = f.order.number
    assert services.sla_flag_late(now=f.due_at - timedelta(minutes=1)) == 0
    after = f.due_at + timedelta(minutes=30)
    assert list(Fulfillment.objects.late(after)) == [f]  # overdue already, before the sweep
    assert services.sla_flag_late(now=after) == 1
    assert services.sla_flag_late(now=after + timedelta(minutes=1)) == 0  # idempotent
    f.refresh_from_db()
    assert f.late_at == after and f.status == "created"
    (late,) = events(number, "fulfillment.late")
    assert late.actor_label == "orders.flag_late_fulfillments" and late.actor_type == "task"
    assert late.data["sla"] == "due" and "30 min over" in late.message
    assert OutboxMessage.objects.filter(topic="fulfillment.late").count() == 1
    # Done late is still late: the flag stays for reporting and the queue.
    services.fulfillment_accept(fulfillment_id=f.pk, actor=Actor.system("t"))
    services.fulfillment_pack(fulfillment_id=f.pk, actor=Actor.system("t"))
    assert list(Fulfillment.objects.overdue(after)) == []
    assert list(Fulfillment.objects.late(after)) == [f]


@pytestmark_db
def test_packed_or_ready_in_time_is_never_flagged(api, order_body, clock_free_store):
    f = pickup_order(api, order_body)
    actor = Actor.system("t")
    services.fulfillment_accept(fulfillment_id=f.pk, actor=actor)
    services.fulfillment_start_picking(fulfillment_id=f.pk, actor=actor)
    services.fulfillment_pack(fulfillment_id=f.pk, actor=actor)
    assert services.sla_flag_late(now=f.due_at + timedelta(days=1)) == 0
    assert list(Fulfillment.objects.late(f.due_at + timedelta(days=1))) == []


@pytest.fixture
def two_dcs(network):
    stock(network["dc1"], network["item"], 5)
    stock(network["dc1"], network["other"], 5)
    stock(network["dc2"], network["item"], 50)
    stock(network["dc2"], network["other"], 50)
    return network


@pytestmark_db
def test_unaccepted_fulfilment_is_rejected_and_routed_elsewhere(api, order_body, two_dcs, settings):
    settings.FULFILLMENT_ACCEPT_MINUTES = 60
    order = ship_order(api, order_body)
    first = Fulfillment.objects.get(order=order)
    assert first.location.code == "DC1" and counters("DC1", "A") == (5, 3)
    assert services.sla_escalate_unaccepted(now=first.created_at + timedelta(minutes=59), mode="reroute") == 0
    later = first.created_at + timedelta(minutes=61)
    assert services.sla_escalate_unaccepted(now=later, mode="reroute") == 1
    actor = Actor.for_task("orders.escalate_unaccepted")
    assert not services.fulfillment_escalate_unaccepted(fulfillment_id=first.pk, actor=actor, now=later, mode="reroute")
    first.refresh_from_db()
    assert (first.status, first.rejection_reason) == ("rejected", "not accepted in time")
    second = Fulfillment.objects.exclude(pk=first.pk).get(order=order)
    # the new fulfilment has its own hour to be accepted
    assert services.sla_escalate_unaccepted(now=second.created_at + timedelta(minutes=59), mode="reroute") == 0
    assert (second.location.code, second.status, second.routing_attempt) == ("DC2", "created", 2)
    assert counters("DC1", "A") == (5, 0) and counters("DC2", "A") == (50, 3)
    (rejected,) = events(order.number, "fulfillment.rejected")
    assert rejected.actor_label == "orders.escalate_unaccepted"
    assert rejected.message == "DC1 rejected A × 3, B × 1: not accepted in time"
    assert events(order.number)[-1].type == "order.routed"
    assert Order.objects.get(pk=order.pk).status == "allocated"
    assert ledger_mismatches() == []


@pytestmark_db
def test_unaccepted_alert_only_changes_nothing_but_the_flag(api, order_body, two_dcs, settings):
    order = ship_order(api, order_body)
    f = Fulfillment.objects.get(order=order)
    later = f.created_at + timedelta(minutes=settings.FULFILLMENT_ACCEPT_MINUTES + 1)
    assert services.sla_escalate_unaccepted(now=later, mode="alert") == 1
    assert services.sla_escalate_unaccepted(now=later + timedelta(minutes=5), mode="alert") == 0
    f.refresh_from_db()
    assert (f.status, f.accept_escalated_at) == ("created", later)
    (late,) = events(order.number, "fulfillment.late")
    assert late.data["sla"] == "accept" and "not accepted after 61 minutes" in late.message
    assert counters("DC1", "A") == (5, 3)
    # once accepted it is no longer escalated at all
    services.fulfillment_accept(fulfillment_id=f.pk, actor=Actor.system("t"))
    assert services.sla_escalate_unaccepted(now=later + timedelta(hours=5), mode="reroute") == 0


def _ready(f, now):
    actor = Actor.system("test")
    services.fulfillment_accept(fulfillment_id=f.pk, actor=actor)
    services.fulfillment_pack(fulfillment_id=f.pk, actor=actor)
    return services.fulfillment_ready_for_pickup(fulfillment_id=f.pk, actor=actor, now=now)


@pytestmark_db
def test_uncollected_pickup_expires_releases_stock_and_voids_payment(api, order_body, clock_free_store, settings):
    settings.PICKUP_EXPIRY_DAYS = 3
    f = pickup_order(api, order_body, quantity=2)
    number = f.order.number
    ready_at = datetime.now(UTC).replace(microsecond=0)
    f = _ready(f, ready_at)
    assert f.pickup_expires_at == ready_at + timedelta(days=3)
    assert counters("STORE1", "A") == (5, 2)

    assert services.pickups_expire_due(now=ready_at + timedelta(days=3) - timedelta(seconds=1)) == 0
    assert services.pickups_expire_due(now=ready_at + timedelta(days=3)) == 1
    assert services.pickups_expire_due(now=ready_at + timedelta(days=4)) == 0  # a second run does nothing

    f.refresh_from_db()
    assert f.status == "expired"
    line = OrderLine.objects.get(order__number=number)
    assert (line.quantity_cancelled, line.quantity_allocated, line.quantity_shipped) == (2, 0, 0)
    assert counters("STORE1", "A") == (5, 0)  # released, nothing left the store
    assert payment(number) == ("voided", Decimal("0"), Decimal("20.00"), Decimal("0"))
    assert Order.objects.get(number=number).status == "cancelled"
    (expired,) = events(number, "fulfillment.expired")
    assert expired.message == (
        "Pickup at STORE1 expired, not collected within 3 day(s) of being ready for pickup: "
        "cancelled A × 2, stock released, 20.00 voided"
    )
    assert expired.actor_label == "orders.expire_pickups"
    (cancelled,) = events(number, "order.cancelled")
    assert cancelled.data["voided"] == "20.00" and cancelled.data["partial"] is False
    topics = set(OutboxMessage.objects.values_list("topic", flat=True))
    assert {"fulfillment.expired", "order.cancelled"} <= topics
    assert ledger_mismatches() == []
    # too late to hand it over now
    with pytest.raises(services.InvalidTransition):
        services.fulfillment_picked_up(fulfillment_id=f.pk, actor=Actor.system("t"), pickup_code=f.pickup_code)


@pytestmark_db
def test_prepaid_uncollected_pickup_is_refunded(api, order_body, clock_free_store):
    f = pickup_order(api, order_body, quantity=1, prepaid=True)
    ready_at = datetime.now(UTC)
    _ready(f, ready_at)
    assert services.pickups_expire_due(now=ready_at + timedelta(days=30)) == 1
    assert payment(f.order.number) == ("refunded", Decimal("10.00"), Decimal("0"), Decimal("10.00"))
    assert "10.00 refunded" in events(f.order.number, "fulfillment.expired")[0].message


@pytestmark_db
def test_collected_pickup_is_not_expired(api, order_body, clock_free_store):
    f = pickup_order(api, order_body)
    ready_at = datetime.now(UTC)
    f = _ready(f, ready_at)
    services.fulfillment_picked_up(fulfillment_id=f.pk, actor=Actor.system("t"), pickup_code=f.pickup_code)
    assert services.pickups_expire_due(now=ready_at + timedelta(days=30)) == 0
    assert Fulfillment.objects.get(pk=f.pk).status == "picked_up"
    assert counters("STORE1", "A") == (3, 0)


def test_beat_runs_the_sla_tasks():
    from django.conf import settings

    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"orders.escalate_unaccepted", "orders.flag_late_fulfillments", "orders.expire_pickups"} <= tasks
