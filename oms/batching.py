"""Rows a service writes several of in one transaction (timeline entries, outbox messages),
inserted together when its block ends: one INSERT per table instead of one per row.

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

from .fastsql import insert_objects

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
        for objs in by_model.values():  # ids follow the order the rows were written in
            insert_objects(objs)
    finally:
        _local.pending = None


def insert(obj: models.Model) -> models.Model:
    pending = getattr(_local, "pending", None)
    if pending is None:
        obj.save(force_insert=True)
    else:
        pending.append(obj)
    return obj
