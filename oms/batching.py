"""Rows a service writes several of in one transaction (timeline entries, outbox messages,
ledger rows, order lines), inserted together when its block ends: on PostgreSQL one statement
for every table (`fastsql.insert_groups`), elsewhere one INSERT per table.

Inside `batched_inserts()` the writers below hand their unsaved rows to `insert`; outside it,
`insert` saves at once, as before. Rows get their ids when the block ends, so code inside the
block must not need them (the timeline and outbox writers return them only for later use).

Held rows do not follow savepoints: use the block only where a savepoint that rolls back never
has rows handed over inside it and the work then goes on (in order capture the retried steps,
the order number and the stock reservation, raise before they write an event). An exception
that leaves the block drops every held row, with the transaction."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import models

from .fastsql import insert_groups, insert_objects

_local = threading.local()


@contextmanager
def batched_inserts() -> Iterator[None]:
    if getattr(_local, "pending", None) is not None:  # nested: the outermost block inserts
        yield
        return
    _local.pending = []
    try:
        yield
        pending = _local.pending
        by_model: dict[type[models.Model], list[models.Model]] = {}
        for obj in pending:
            by_model.setdefault(type(obj), []).append(obj)
        # Tables in the order their first row was written (a line before its allocations); ids
        # follow the order rows were written in.
        insert_groups(list(by_model.values()))
    finally:
        _local.pending = None


def insert(obj: models.Model) -> models.Model:
    pending = getattr(_local, "pending", None)
    if pending is None:
        obj.save(force_insert=True)
    else:
        pending.append(obj)
    return obj


def insert_many(objs: list[models.Model]) -> None:
    """Rows of one model: held inside the block, else inserted at once with one statement."""
    pending = getattr(_local, "pending", None)
    if pending is None:
        insert_objects(objs)
    else:
        pending.extend(objs)
