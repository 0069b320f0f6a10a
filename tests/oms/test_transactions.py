"""Service transactions: a savepoint where a caller may go on after an error, none inside
all_or_nothing() where nobody does."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from oms.models import IdempotencyRecord
from oms.transactions import all_or_nothing, atomic


@atomic
def write(key: str, *, fail: bool = False) -> None:
    IdempotencyRecord.objects.create(principal="key:1", key=key, method="POST", path="/", fingerprint="x")
    if fail:
        raise ValueError("refused")


def savepoints(queries) -> int:
    return sum(q["sql"].upper().startswith("SAVEPOINT") for q in queries.captured_queries)


def keys() -> list[str]:
    return sorted(IdempotencyRecord.objects.values_list("key", flat=True))


def test_nested_service_takes_a_savepoint_so_its_caller_can_go_on(db):
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        write("a")
        with pytest.raises(ValueError):
            write("b", fail=True)
        write("c")
    assert savepoints(queries) == 3  # one per call
    assert keys() == ["a", "c"]


def test_inside_all_or_nothing_services_take_no_savepoint_and_an_error_rolls_back_everything(db):
    with CaptureQueriesContext(connection) as queries:
        with all_or_nothing():
            write("a")
            write("b")
        with pytest.raises(ValueError), all_or_nothing():
            write("c")
            write("d", fail=True)
    # The test's own transaction makes each all_or_nothing() block a savepoint: one each, no more.
    assert savepoints(queries) == 2
    assert keys() == ["a", "b"]


def test_all_or_nothing_ends_with_its_block(db):
    with all_or_nothing():
        with all_or_nothing():
            pass
        with transaction.atomic(), CaptureQueriesContext(connection) as queries:
            write("a")  # still inside the outer block: no savepoint
        assert savepoints(queries) == 0
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        write("b")
    assert savepoints(queries) == 1
