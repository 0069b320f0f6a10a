from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from inventory.models import Reservation, Stock, StockMovement
from inventory.selectors import ledger_mismatches
from inventory.services import (
    StockLine,
    cart_reservation_convert,
    cart_reservation_put,
    cart_reservation_release,
    release_expired_reservations,
    stock_commit_shipment,
    stock_release,
    stock_reserve,
)
from oms.actor import Actor
from oms.errors import Conflict, InsufficientStock
from tests.factories import ItemFactory, stock

ACTOR = Actor.system("test")


def counters(location, item):
    s = Stock.objects.get(location=location, item=item)
    return s.on_hand, s.reserved


def test_reserve_release_ship_move_counters_and_write_ledger(network):
    dc1, item = network["dc1"], network["item"]
    stock(dc1, item, 10)
    stock_reserve(lines=[StockLine(dc1.pk, item.pk, 4)], actor=ACTOR, reference="order:1")
    assert counters(dc1, item) == (10, 4)
    stock_release(lines=[StockLine(dc1.pk, item.pk, 1)], actor=ACTOR, reference="order:1")
    assert counters(dc1, item) == (10, 3)
    stock_commit_shipment(lines=[StockLine(dc1.pk, item.pk, 3)], actor=ACTOR, reference="order:1")
    assert counters(dc1, item) == (7, 0)
    rows = list(
        StockMovement.objects.filter(reference="order:1")
        .order_by("id")
        .values_list("reason", "delta_on_hand", "delta_reserved", "on_hand_after", "reserved_after")
    )
    assert rows == [("reserve", 0, 4, 10, 4), ("release", 0, -1, 10, 3), ("ship", -3, -3, 7, 0)]
    assert ledger_mismatches() == []


def test_reserve_is_all_or_nothing_and_names_the_short_skus(network):
    dc1, a, b = network["dc1"], network["item"], network["other"]
    stock(dc1, a, 5)
    stock(dc1, b, 1)
    movements = StockMovement.objects.count()
    with pytest.raises(InsufficientStock) as err:
        stock_reserve(lines=[StockLine(dc1.pk, a.pk, 2), StockLine(dc1.pk, b.pk, 2)], actor=ACTOR, reference="x")
    assert err.value.skus == ["B"]
    assert counters(dc1, a) == (5, 0)
    assert counters(dc1, b) == (1, 0)
    assert StockMovement.objects.count() == movements


@pytest.mark.parametrize("short_first", [False, True])
def test_rejected_reserve_undoes_what_it_applied_without_a_savepoint(network, short_first):
    """Channel reservations retry a stale plan in the same transaction with no savepoint: a
    rejected reserve must leave every counter as it found it, whichever row was refused."""
    dc1, a, b = network["dc1"], network["item"], network["other"]
    stock(dc1, a, 5)
    stock(dc1, b, 1)
    movements = StockMovement.objects.count()
    lines = [StockLine(dc1.pk, a.pk, 2), StockLine(dc1.pk, b.pk, 2)]
    with transaction.atomic():
        with pytest.raises(InsufficientStock):
            stock_reserve(lines=lines[::-1] if short_first else lines, actor=ACTOR, reference="x", savepoint=False)
        assert counters(dc1, a) == (5, 0)
        assert counters(dc1, b) == (1, 0)
        # the same row twice: applied one by one, and undone one by one
        with pytest.raises(InsufficientStock):
            stock_reserve(
                lines=[StockLine(dc1.pk, a.pk, 3), StockLine(dc1.pk, a.pk, 3)],
                actor=ACTOR,
                reference="y",
                savepoint=False,
            )
        assert counters(dc1, a) == (5, 0)
        stock_reserve(lines=lines[:1], actor=ACTOR, reference="z", savepoint=False)  # and the transaction goes on
    assert counters(dc1, a) == (5, 2)
    assert StockMovement.objects.count() == movements + 1
    assert ledger_mismatches() == []


@pytest.mark.parametrize("rows", [3, 16, 17, 40])  # PostgreSQL: rows spelled out up to 16, arrays above
def test_multi_row_reserve_applies_exact_counters_or_nothing(network, rows):
    """Many rows in one reserve: each row's counters after it land in its ledger row; one row
    refused in the middle (it fits on hand, not on hand less safety stock) leaves every row as
    it was."""
    dc1, mid = network["dc1"], rows // 2
    items = [ItemFactory(sku=f"M{i:02d}") for i in range(rows)]
    for i, item in enumerate(items):
        stock(dc1, item, 10 + i, safety_stock=5 if i == mid else 0)
    lines = [StockLine(dc1.pk, item.pk, 1 + i % 3) for i, item in enumerate(items)]
    refused = [*lines[:mid], StockLine(dc1.pk, items[mid].pk, 10 + mid - 2), *lines[mid + 1 :]]
    with transaction.atomic():
        with pytest.raises(InsufficientStock) as err:
            stock_reserve(lines=refused, actor=ACTOR, reference="too-many", savepoint=False)
        assert err.value.skus == [items[mid].sku]
        assert all(counters(dc1, item) == (10 + i, 0) for i, item in enumerate(items))
        ledger = stock_reserve(lines=lines, actor=ACTOR, reference="fits", savepoint=False)
    assert [counters(dc1, item) for item in items] == [(10 + i, 1 + i % 3) for i in range(rows)]
    assert sorted((m.item_id, m.on_hand_after, m.reserved_after) for m in ledger) == sorted(
        (item.pk, 10 + i, 1 + i % 3) for i, item in enumerate(items)
    )
    assert ledger_mismatches() == []


def test_reserve_respects_safety_stock(network):
    dc1, item = network["dc1"], network["item"]
    stock(dc1, item, 5, safety_stock=2)
    with pytest.raises(InsufficientStock):
        stock_reserve(lines=[StockLine(dc1.pk, item.pk, 4)], actor=ACTOR, reference="x")
    stock_reserve(lines=[StockLine(dc1.pk, item.pk, 3)], actor=ACTOR, reference="x")
    assert counters(dc1, item) == (5, 3)


def test_reserve_where_no_stock_row_exists(network):
    with pytest.raises(InsufficientStock) as err:
        stock_reserve(lines=[StockLine(network["dc2"].pk, network["item"].pk, 1)], actor=ACTOR, reference="x")
    assert err.value.skus == ["A"]


def test_release_more_than_reserved_is_refused(network):
    dc1, item = network["dc1"], network["item"]
    stock(dc1, item, 5)
    stock_reserve(lines=[StockLine(dc1.pk, item.pk, 1)], actor=ACTOR, reference="x")
    with pytest.raises(Conflict):
        stock_release(lines=[StockLine(dc1.pk, item.pk, 2)], actor=ACTOR, reference="x")
    with pytest.raises(Conflict):
        stock_commit_shipment(lines=[StockLine(dc1.pk, item.pk, 2)], actor=ACTOR, reference="x")
    assert counters(dc1, item) == (5, 1)


def test_cart_reservation_spreads_over_locations_by_priority(network):
    dc1, dc2, item = network["dc1"], network["dc2"], network["item"]
    stock(dc1, item, 3)
    stock(dc2, item, 10)
    reservation, created = cart_reservation_put(
        channel=network["web"], key="cart-1", lines={item.pk: 5}, ttl_seconds=600, actor=ACTOR
    )
    assert created
    held = sorted((line.location.code, line.quantity) for line in reservation.lines.all())
    assert held == [("DC1", 3), ("DC2", 2)]
    assert counters(dc1, item) == (3, 3)
    assert counters(dc2, item) == (10, 2)


def test_cart_reservation_replace_moves_stock_and_release_frees_it(network):
    dc1, item = network["dc1"], network["item"]
    stock(dc1, item, 10)
    cart_reservation_put(channel=network["web"], key="c", lines={item.pk: 4}, ttl_seconds=60, actor=ACTOR)
    _, created = cart_reservation_put(channel=network["web"], key="c", lines={item.pk: 2}, ttl_seconds=60, actor=ACTOR)
    assert not created
    assert counters(dc1, item) == (10, 2)
    cart_reservation_release(channel=network["web"], key="c", actor=ACTOR)
    assert counters(dc1, item) == (10, 0)
    assert Reservation.objects.get(key="c").status == "released"
    with pytest.raises(Conflict):
        cart_reservation_release(channel=network["web"], key="c", actor=ACTOR)
    assert ledger_mismatches() == []


def test_cart_reservation_only_uses_active_channel_locations(network):
    item = network["item"]
    stock(network["outside"], item, 50)
    network["dc2"].active = False
    network["dc2"].save()
    stock(network["dc2"], item, 50)
    with pytest.raises(InsufficientStock):
        cart_reservation_put(channel=network["web"], key="c", lines={item.pk: 1}, ttl_seconds=60, actor=ACTOR)
    assert not Reservation.objects.filter(key="c").exists()


def test_expired_cart_is_released_by_sweep_and_never_blocks_a_sale(network):
    dc1, item = network["dc1"], network["item"]
    stock(dc1, item, 2)
    cart_reservation_put(channel=network["web"], key="old", lines={item.pk: 2}, ttl_seconds=60, actor=ACTOR)
    Reservation.objects.filter(key="old").update(expires_at=timezone.now() - timedelta(seconds=1))
    # A sale for the same units succeeds: the expired hold is swept first.
    stock_reserve(lines=[StockLine(dc1.pk, item.pk, 2)], actor=ACTOR, reference="order:9")
    assert counters(dc1, item) == (2, 2)
    assert Reservation.objects.get(key="old").status == "expired"
    assert StockMovement.objects.filter(reason="expire").count() == 1
    assert release_expired_reservations() == 0
    assert ledger_mismatches() == []


def test_beat_sweep_releases_expired_carts(network):
    dc1, item = network["dc1"], network["item"]
    stock(dc1, item, 5)
    cart_reservation_put(channel=network["web"], key="a", lines={item.pk: 2}, ttl_seconds=60, actor=ACTOR)
    cart_reservation_put(channel=network["web"], key="b", lines={item.pk: 1}, ttl_seconds=3600, actor=ACTOR)
    Reservation.objects.filter(key="a").update(expires_at=timezone.now() - timedelta(seconds=1))
    from inventory.tasks import release_expired_reservations_task

    assert release_expired_reservations_task.apply().get() == 1
    assert counters(dc1, item) == (5, 1)


def test_convert_hands_lines_over_once(network):
    dc1, item = network["dc1"], network["item"]
    stock(dc1, item, 5)
    cart_reservation_put(channel=network["web"], key="k", lines={item.pk: 2}, ttl_seconds=60, actor=ACTOR)
    lines = cart_reservation_convert(channel=network["web"], key="k")
    assert [(line.location.code, line.item.sku, line.quantity) for line in lines] == [("DC1", "A", 2)]
    assert counters(dc1, item) == (5, 2)  # still held, now by the order
    with pytest.raises(Conflict):
        cart_reservation_convert(channel=network["web"], key="k")


def test_reposting_an_expired_but_unswept_cart_renews_it(network):
    dc1, item = network["dc1"], network["item"]
    stock(dc1, item, 5)
    cart_reservation_put(channel=network["web"], key="c", lines={item.pk: 2}, ttl_seconds=60, actor=ACTOR)
    Reservation.objects.filter(key="c").update(expires_at=timezone.now() - timedelta(seconds=1))
    cart_reservation_put(channel=network["web"], key="c", lines={item.pk: 3}, ttl_seconds=60, actor=ACTOR)
    reservation = Reservation.objects.get(key="c")
    assert reservation.status == "active" and reservation.expires_at > timezone.now()
    assert sum(line.quantity for line in reservation.lines.all()) == 3
    assert counters(dc1, item) == (5, 3)
    assert ledger_mismatches() == []


def test_retrying_the_same_cart_only_extends_it(network):
    dc1, item = network["dc1"], network["item"]
    stock(dc1, item, 5)
    cart_reservation_put(channel=network["web"], key="c", lines={item.pk: 2}, ttl_seconds=60, actor=ACTOR)
    movements = StockMovement.objects.count()
    reservation, created = cart_reservation_put(
        channel=network["web"], key="c", lines={item.pk: 2}, ttl_seconds=600, actor=ACTOR
    )
    assert not created
    assert StockMovement.objects.count() == movements
    assert reservation.expires_at > timezone.now() + timedelta(seconds=500)


def test_safety_stock_change_is_announced_and_keeps_counters(network):
    from inventory.services import stock_set_safety_stock
    from oms.models import OutboxMessage

    row = stock(network["dc1"], network["item"], 10)
    stock_reserve(lines=[StockLine(network["dc1"].pk, network["item"].pk, 3)], actor=ACTOR, reference="o")
    events = OutboxMessage.objects.filter(topic="inventory.changed").count()
    stock_set_safety_stock(stock_id=row.pk, safety_stock=4, actor=ACTOR)
    assert counters(network["dc1"], network["item"]) == (10, 3)
    assert Stock.objects.get(pk=row.pk).safety_stock == 4
    last = OutboxMessage.objects.filter(topic="inventory.changed").order_by("-id").first()
    assert OutboxMessage.objects.filter(topic="inventory.changed").count() == events + 1
    assert last.payload["cause"] == "safety_stock"
