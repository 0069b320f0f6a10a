"""stock_snapshot at a size that crosses its batching: one UPDATE … FROM unnest(…) on PostgreSQL,
VALUES batches elsewhere; counters, safety stock and the ledger must come out the same."""

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from inventory.models import Item, Stock, StockMovement
from inventory.selectors import ledger_mismatches
from inventory.services import SNAPSHOT_CHUNK, stock_snapshot
from oms.actor import Actor
from tests.factories import LocationFactory

ACTOR = Actor.system("test")
N = SNAPSHOT_CHUNK + 500


@pytest.fixture
def many(db):
    Item.objects.bulk_create([Item(sku=f"S-{i:05d}", name=f"S {i}") for i in range(N)])
    return LocationFactory(code="BIG")


def counts(location):
    return {
        sku: (on_hand, safety)
        for sku, on_hand, safety in Stock.objects.filter(location=location).values_list(
            "item__sku", "on_hand", "safety_stock"
        )
    }


def test_second_snapshot_changes_every_row(many):
    first = stock_snapshot(
        location=many, counts={f"S-{i:05d}": (i % 7 + 1, 2) for i in range(N)}, actor=ACTOR, reference="s1"
    )
    assert (first.created, first.changed, first.zeroed) == (N, 0, 0)
    # Second count: every on_hand moves; safety stock given for even SKUs, kept (None) for odd ones;
    # the last 100 SKUs are left out and so counted as zero.
    second = {f"S-{i:05d}": (i % 7 + 10, 5 if i % 2 == 0 else None) for i in range(N - 100)}
    with CaptureQueriesContext(connection) as queries:
        result = stock_snapshot(location=many, counts=second, actor=ACTOR, reference="s2")
    assert (result.created, result.changed, result.zeroed) == (0, N - 100, 100)
    expected = {f"S-{i:05d}": (i % 7 + 10, 5 if i % 2 == 0 else 2) for i in range(N - 100)}
    expected.update({f"S-{i:05d}": (0, 2) for i in range(N - 100, N)})
    assert counts(many) == expected
    assert StockMovement.objects.filter(reference="s2").count() == N
    assert ledger_mismatches() == []
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE inventory_stock")]
    if settings.IS_POSTGRES:
        assert len(updates) == 1 and "unnest" in updates[0]
    else:
        assert len(updates) == -(-N // SNAPSHOT_CHUNK)


@pytest.mark.postgres
def test_unnest_update_on_postgres(many):
    """The PostgreSQL path itself (also run by the test above there)."""
    stock_snapshot(location=many, counts={"S-00001": (3, 1), "S-00002": (4, 0)}, actor=ACTOR, full=False)
    with CaptureQueriesContext(connection) as queries:
        stock_snapshot(location=many, counts={"S-00001": (8, None), "S-00002": (0, 3)}, actor=ACTOR, full=False)
    assert counts(many) == {"S-00001": (8, 1), "S-00002": (0, 3)}
    assert sum("unnest" in q["sql"] for q in queries.captured_queries) == 1
    assert ledger_mismatches() == []
