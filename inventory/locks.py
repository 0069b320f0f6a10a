"""Row-locking querysets. Every multi-row stock write locks in stock `pk` order, so two
transactions touching the same rows always queue instead of deadlocking."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import Reservation, Stock


def stock_for_update(**filters) -> QuerySet[Stock]:
    return Stock.objects.select_for_update().filter(**filters).order_by("pk")


def reservation_for_update(**filters) -> QuerySet[Reservation]:
    return Reservation.objects.select_for_update().filter(**filters).order_by("pk")
