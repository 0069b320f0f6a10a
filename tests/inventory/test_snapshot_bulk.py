"""stock_snapshot at a size that crosses its batching: set-based statements fed by arrays on
PostgreSQL, VALUES batches elsewhere; counters, safety stock and the ledger must come out the same."""

from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.db.models import ProtectedError
from django.test.utils import CaptureQueriesContext

from inventory import services
from inventory.models import Item, Stock, StockMovement
from inventory.selectors import ledger_mismatches
from inventory.services import SNAPSHOT_CHUNK, stock_snapshot
from oms.actor import Actor
from oms.errors import Conflict, ValidationFailed
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
def test_set_based_statements_on_postgres(many):
    """The PostgreSQL path itself (also run by the test above there): the locked rows, then per
    chunk of them one UPDATE and one ledger INSERT; then SKUs the location lacks, their stock
    INSERT and ledger INSERT; each statement fed by arrays, whatever the size."""
    stock_snapshot(location=many, counts={"S-00001": (3, 1), "S-00002": (4, 0)}, actor=ACTOR, full=False)
    with CaptureQueriesContext(connection) as queries:
        stock_snapshot(
            location=many,
            counts={"S-00001": (8, None), "S-00002": (0, 3), "S-00003": (5, None), "S-00004": (0, None)},
            actor=ACTOR,
            reference="mixed",
            full=False,
        )
    assert counts(many) == {"S-00001": (8, 1), "S-00002": (0, 3), "S-00003": (5, 0), "S-00004": (0, 0)}
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith(("UPDATE", "INSERT INTO inventory_"))]
    assert [w.split(" (")[0].split(" SET")[0] for w in writes] == [
        "UPDATE inventory_stock",
        "INSERT INTO inventory_stockmovement",
        "INSERT INTO inventory_stock",
        "INSERT INTO inventory_stockmovement",
    ]
    assert all("unnest" in w for w in writes)
    moves = StockMovement.objects.filter(reference="mixed").values_list("item__sku", "delta_on_hand", "on_hand_after")
    assert sorted(moves) == [("S-00001", 5, 8), ("S-00002", -4, 0), ("S-00003", 5, 5)]
    assert ledger_mismatches() == []


SPECIAL_SKUS = ['QUOTE"D', "BACK\\SLASH", "COMMA,{BRACE}", "SPACE D", "ÜNICODE-é", "NULL", "'APOS"]


def test_skus_with_special_characters(db):
    """The PostgreSQL path sends SKUs as one array literal: quoting must hold for any SKU."""
    Item.objects.bulk_create([Item(sku=sku, name=sku) for sku in SPECIAL_SKUS])
    location = LocationFactory(code="ODD")
    result = stock_snapshot(
        location=location, counts={sku: (i + 1, None) for i, sku in enumerate(SPECIAL_SKUS)}, actor=ACTOR
    )
    assert result.created == len(SPECIAL_SKUS)
    assert counts(location) == {sku: (i + 1, 0) for i, sku in enumerate(SPECIAL_SKUS)}
    assert ledger_mismatches() == []


def test_ledger_without_database_foreign_keys_is_still_checked(many):
    """The ledger's location and item are not database foreign keys: the ORM still refuses to
    delete what the ledger names, and ledger_mismatches() reports rows that outlive either."""
    stock_snapshot(location=many, counts={"S-00001": (3, None)}, actor=ACTOR, full=False)
    item = Item.objects.get(sku="S-00001")
    Stock.objects.filter(item=item).delete()
    StockMovement.objects.filter(item=item).update(delta_on_hand=0)  # sums to zero: only the orphan shows
    with pytest.raises(ProtectedError):
        item.delete()
    assert ledger_mismatches() == []
    StockMovement.objects.filter(item=item).update(item_id=item.pk + 10**6)
    (mismatch,) = ledger_mismatches()
    assert (mismatch.location_id, mismatch.item_id, mismatch.orphaned) == (many.pk, item.pk + 10**6, True)
    out = StringIO()
    with pytest.raises(CommandError, match="1 stock row"):
        call_command("inventory_check", stdout=out)
    assert "deleted location or item" in out.getvalue()


@pytest.mark.postgres
def test_postgres_inserts_run_without_per_row_foreign_key_triggers(many, make_key):
    """New stock and ledger rows go in with the replica role once their parents (location,
    items, the actor's API key) are KEY SHARE-locked as sets; the role is back before the
    service returns, and the foreign keys still hold for every other write."""
    actor = Actor.for_api_key(make_key("all").key)
    with transaction.atomic():
        with CaptureQueriesContext(connection) as queries:
            result = stock_snapshot(
                location=many, counts={"S-00001": (3, None), "S-00002": (0, 4)}, actor=actor, full=False
            )
        assert result.created == 2
        sql = [q["sql"] for q in queries.captured_queries]
        assert "SET LOCAL session_replication_role = replica" in sql
        assert any("FOR KEY SHARE" in q and "oms_apikey" in q for q in sql)
        with connection.cursor() as cursor:
            cursor.execute("SHOW session_replication_role")
            assert cursor.fetchone()[0] == "origin"
        with pytest.raises(IntegrityError), transaction.atomic():
            Stock.objects.create(location=many, item_id=10**12)
            connection.check_constraints()
    assert counts(many) == {"S-00001": (3, 0), "S-00002": (0, 4)}
    assert ledger_mismatches() == []


@pytest.mark.postgres
def test_postgres_new_items_are_locked_as_they_are_found(many):
    """The SKU look-up for new stock rows KEY SHARE-locks the items it finds (what the skipped
    foreign-key checks would have done), so the ids it returns cannot vanish before commit;
    an item already gone is an unknown SKU and nothing is written."""
    with CaptureQueriesContext(connection) as queries:
        stock_snapshot(location=many, counts={"S-00001": (3, None)}, actor=ACTOR, full=False)
    (lookup,) = [
        q["sql"] for q in queries.captured_queries if "JOIN unnest" in q["sql"] and "inventory_item" in q["sql"]
    ]
    assert lookup.endswith("FOR KEY SHARE OF i")
    Item.objects.filter(sku="S-00002").delete()
    with pytest.raises(ValidationFailed, match="S-00002"):
        stock_snapshot(location=many, counts={"S-00001": (4, None), "S-00002": (1, None)}, actor=ACTOR)
    assert counts(many) == {"S-00001": (3, 0)}
    assert StockMovement.objects.count() == 1


@pytest.mark.postgres
def test_postgres_without_the_privilege_keeps_the_triggers(many, monkeypatch):
    """A connection that may not set session_replication_role writes the same rows with the
    usual per-row foreign-key checks."""
    monkeypatch.setattr(
        services, "_SNAPSHOT_ROLE_SQL", "SELECT current_setting('session_replication_role'), false /* {granted} */"
    )
    with CaptureQueriesContext(connection) as queries:
        result = stock_snapshot(location=many, counts={"S-00001": (3, None), "S-00002": (5, 1)}, actor=ACTOR)
    assert result.created == 2
    assert not [q for q in queries.captured_queries if "session_replication_role = replica" in q["sql"]]
    assert counts(many) == {"S-00001": (3, 0), "S-00002": (5, 1)}
    assert ledger_mismatches() == []


@pytest.mark.postgres
def test_postgres_chunks_and_late_errors_roll_back(many, monkeypatch):
    """Chunked writes (small chunks here): a second count crossing many chunks comes out exact,
    and a short row or an unknown SKU found after earlier chunks were sent leaves nothing
    written."""
    monkeypatch.setattr(services, "SNAPSHOT_PG_CHUNK", 300)
    stock_snapshot(location=many, counts={f"S-{i:05d}": (i % 7 + 1, 2) for i in range(N - 100)}, actor=ACTOR)
    second = {f"S-{i:05d}": (i % 5 + 3, None) for i in range(100, N)}  # 100 left out, 100 new
    with CaptureQueriesContext(connection) as queries:
        result = stock_snapshot(location=many, counts=second, actor=ACTOR, reference="chunks")
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE inventory_stock")]
    assert len(updates) == -(-(N - 100) // 300)
    assert (result.created, result.zeroed) == (100, 100)
    expected = {f"S-{i:05d}": (i % 5 + 3, 2 if i < N - 100 else 0) for i in range(100, N)}
    expected.update({f"S-{i:05d}": (0, 2) for i in range(100)})
    assert counts(many) == expected
    assert ledger_mismatches() == []

    reserved_late = Stock.objects.get(location=many, item__sku=f"S-{N - 200:05d}")
    Stock.objects.filter(pk=reserved_late.pk).update(reserved=3)
    before = (counts(many), StockMovement.objects.count())
    with pytest.raises(Conflict):
        stock_snapshot(location=many, counts={**second, f"S-{N - 200:05d}": (1, None)}, actor=ACTOR)
    with pytest.raises(ValidationFailed):
        stock_snapshot(location=many, counts={**second, "NOPE": (1, None)}, actor=ACTOR)
    assert (counts(many), StockMovement.objects.count()) == before


def test_read_runs_inside_the_snapshot_and_its_errors_change_nothing(many):
    """`read` (the API's body parser) is called once the location's rows are being locked; what
    it raises rolls everything back, and what it returns is the count."""
    stock_snapshot(location=many, counts={"S-00001": (3, None), "S-00002": (4, None)}, actor=ACTOR)
    seen = []

    def bad():
        seen.append([q["sql"] for q in connection.queries if "FOR UPDATE" in q["sql"]])
        raise ValidationFailed("bad body", fields={"rows": "bad"})

    with CaptureQueriesContext(connection), pytest.raises(ValidationFailed):
        stock_snapshot(location=many, actor=ACTOR, read=bad)
    assert len(seen) == 1 and (seen[0] or not settings.IS_POSTGRES)  # PostgreSQL: lock already sent
    assert counts(many) == {"S-00001": (3, 0), "S-00002": (4, 0)}
    result = stock_snapshot(
        location=many,
        actor=ACTOR,
        read=lambda: services.SnapshotCount({"S-00001": (5, 1)}, full=True, reference="read"),
    )
    assert (result.rows, result.changed, result.zeroed) == (1, 1, 1)
    assert counts(many) == {"S-00001": (5, 1), "S-00002": (0, 0)}
    assert set(StockMovement.objects.filter(reference="read").values_list("item__sku", flat=True)) == {
        "S-00001",
        "S-00002",
    }
    assert ledger_mismatches() == []
