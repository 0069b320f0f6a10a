"""Service transactions that take no savepoint inside a request's all-or-nothing transaction.

A service is atomic on its own (`@atomic`). Nested in another transaction it takes a savepoint,
so that a caller who catches its error can go on. Inside `all_or_nothing()` nobody goes on
after an error (the whole transaction rolls back), so that savepoint would be two round trips
for nothing: about 5 % of an order capture's CPU.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import transaction

_local = threading.local()


@contextmanager
def all_or_nothing() -> Iterator[None]:
    """A transaction (a savepoint, if nested) that any error inside rolls back as a whole."""
    with transaction.atomic():
        outer, _local.active = getattr(_local, "active", False), True
        try:
            yield
        finally:
            _local.active = outer


def atomic(func):
    """`transaction.atomic` for a service function; no savepoint inside `all_or_nothing()`."""

    @functools.wraps(func)
    def inner(*args, **kwargs):
        with transaction.atomic(savepoint=not getattr(_local, "active", False)):
            return func(*args, **kwargs)

    return inner
