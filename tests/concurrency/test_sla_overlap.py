"""SLA beat tasks overlapping on PostgreSQL: each fulfilment is acted on exactly once."""

from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from inventory.models import Stock
from inventory.selectors import ledger_mismatches
from oms.actor import Actor
from orders import services
from orders.models import Fulfillment, OrderEvent, Payment
from tests.concurrency.conftest import run_threads
from tests.factories import stock
from tests.orders.store_helpers import pickup_order, ship_order

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
ORDERS = 6
RUNS = 4


@pytest.fixture
def pickups(api, order_body, stocked):
    stock(stocked["store"], stocked["item"], ORDERS)
    actor = Actor.system("test")
    ready = []
    for n in range(ORDERS):
        f = pickup_order(api, order_body, quantity=1, external_id=f"P-{n}")
        services.fulfillment_accept(fulfillment_id=f.pk, actor=actor)
        ready.append(services.fulfillment_ready_for_pickup(fulfillment_id=f.pk, actor=actor))
    return ready


def test_overlapping_expiry_runs_expire_each_pickup_once(pickups):
    later = timezone.now() + timedelta(days=30)
    results = run_threads(RUNS, lambda i: services.pickups_expire_due(now=later))
    assert sum(results) == ORDERS, results
    assert set(Fulfillment.objects.values_list("status", flat=True)) == {"expired"}
    per_order = Counter(OrderEvent.objects.filter(type="fulfillment.expired").values_list("order_id", flat=True))
    assert sorted(per_order.values()) == [1] * ORDERS
    assert Stock.objects.get(location__code="STORE1", item__sku="A").reserved == 0
    assert {(p.amount_voided, p.status) for p in Payment.objects.all()} == {(Decimal("10.00"), "voided")}
    assert ledger_mismatches() == []


def test_overlapping_late_flags_write_one_alert_each(pickups, api, order_body, stocked):
    open_ones = [
        ship_order(api, order_body, external_id=f"S-{n}", lines=[{"sku": "B", "quantity": 1, "unit_price": "10.00"}],
                   tax_total="0", payment={"method": "card", "amount_authorized": "15.00"})
        for n in range(3)
    ]  # fmt: skip
    fulfillments = Fulfillment.objects.filter(order__in=open_ones)
    later = max(f.due_at for f in fulfillments) + timedelta(minutes=1)
    results = run_threads(RUNS, lambda i: services.sla_flag_late(now=later))
    assert sum(results) == 3, results  # the ready pickups met their SLA
    per_order = Counter(OrderEvent.objects.filter(type="fulfillment.late").values_list("order_id", flat=True))
    assert sorted(per_order.values()) == [1, 1, 1]


def test_overlapping_escalations_reject_and_reroute_once(api, order_body, stocked):
    stock(stocked["dc2"], stocked["item"], 50)
    stock(stocked["dc2"], stocked["other"], 50)
    orders = [ship_order(api, order_body, external_id=f"S-{n}", lines=[
        {"sku": "A", "quantity": 1, "unit_price": "20.00"}], tax_total="0",
        payment={"method": "card", "amount_authorized": "25.00"}) for n in range(4)]  # fmt: skip
    # Released two hours ago; the replacements routing creates now are fresh.
    Fulfillment.objects.update(created_at=timezone.now() - timedelta(hours=2))
    first = {o.pk: Fulfillment.objects.get(order=o) for o in orders}
    now = timezone.now()
    results = run_threads(RUNS, lambda i: services.sla_escalate_unaccepted(now=now, mode="reroute"))
    assert sum(results) == 4, results
    rejected = Counter(OrderEvent.objects.filter(type="fulfillment.rejected").values_list("order_id", flat=True))
    assert sorted(rejected.values()) == [1, 1, 1, 1]
    for order in orders:
        assert Fulfillment.objects.get(pk=first[order.pk].pk).status == "rejected"
        (replacement,) = Fulfillment.objects.filter(order=order).exclude(pk=first[order.pk].pk)
        assert replacement.status == "created" and replacement.routing_attempt == 2
        assert replacement.location_id != first[order.pk].location_id
    held = Stock.objects.filter(item__sku="A").values_list("location__code", "reserved")
    assert sum(reserved for _, reserved in held) == 4
    assert ledger_mismatches() == []
