"""A stock snapshot racing reservations and adjustments at the same location (PostgreSQL,
real threads): the snapshot locks the location's rows before comparing, so its ledger deltas
are exact and the counters keep agreeing with the ledger."""

import pytest
from django.db import transaction

from inventory.models import Stock, StockMovement
from inventory.selectors import ledger_mismatches
from inventory.services import Adjustment, StockLine, stock_adjust, stock_reserve, stock_snapshot
from oms.actor import Actor
from tests.concurrency.conftest import run_threads
from tests.factories import ItemFactory, LocationFactory, stock

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ACTOR = Actor.system("t")


def test_snapshot_between_reservations_and_adjustments_keeps_the_ledger_exact():
    dc = LocationFactory(code="DC1")
    item, other = ItemFactory(sku="A"), ItemFactory(sku="B")
    stock(dc, item, 20)
    stock(dc, other, 5)

    def work(i):
        if i == 0:
            return stock_snapshot(location=dc, counts={"A": (50, None), "B": (7, None)}, actor=ACTOR, reference="count")
        if i % 2:
            with transaction.atomic():
                return stock_reserve(lines=[StockLine(dc.pk, item.pk, 1)], actor=ACTOR, reference=f"o{i}")
        adjustment = Adjustment(location=dc, item=item, reason="adjustment", reference=f"r{i}", delta=1)
        return stock_adjust(adjustments=[adjustment], actor=ACTOR, source="test")

    results = run_threads(17, work)
    assert not [r for r in results if isinstance(r, Exception)], results
    row = Stock.objects.get(location=dc, item=item)
    snap = StockMovement.objects.get(reference="count", item=item)
    later_adjustments = StockMovement.objects.filter(item=item, reason="adjustment", id__gt=snap.id).count()
    assert (row.on_hand, row.reserved) == (50 + later_adjustments, 8)
    assert Stock.objects.get(location=dc, item=other).on_hand == 7
    assert ledger_mismatches() == []
