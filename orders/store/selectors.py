"""Reads for the store app: which stores a user works, a store's queue, a pick list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import F, Prefetch, QuerySet

from inventory.models import Location, LocationType
from orders.models import (
    FULFILLMENT_ACTIVE,
    Fulfillment,
    FulfillmentLine,
    FulfillmentStatus,
    OrderEvent,
)

WORK_PERMISSION = "orders.work_store_queue"
TO_DO = [s for s in FULFILLMENT_ACTIVE if s != FulfillmentStatus.READY_FOR_PICKUP]
FINISHED_RECENTLY = timedelta(hours=24)


def stores_for(user) -> QuerySet[Location]:
    """The stores a user may work: their memberships (superusers: every active store)."""
    if not user.is_active or not user.has_perm(WORK_PERMISSION):
        return Location.objects.none()
    if user.is_superuser:
        return Location.objects.filter(type=LocationType.STORE, active=True)
    return Location.objects.filter(type=LocationType.STORE, associates__user=user).distinct()


def works_at(user, location: Location) -> bool:
    return stores_for(user).filter(pk=location.pk).exists()


@dataclass
class QueueRow:
    fulfillment: Fulfillment
    units: int
    late: bool
    minutes_to_due: int | None  # negative: late by that much

    @property
    def due_label(self) -> str:
        if self.minutes_to_due is None:
            return "no due time"
        if self.minutes_to_due < 0:
            return f"late by {_duration(-self.minutes_to_due)}"
        return f"due in {_duration(self.minutes_to_due)}"


def _duration(minutes: int) -> str:
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {mins} min" if hours else f"{mins} min"


def _lines_prefetch() -> Prefetch:
    return Prefetch("lines", queryset=FulfillmentLine.objects.select_related("line__item").order_by("line__sku", "pk"))


def queue_rows(fulfillments, now: datetime) -> list[QueueRow]:
    rows = []
    for f in fulfillments:
        minutes = None if f.due_at is None else int((f.due_at - now).total_seconds() / 60)  # toward zero
        rows.append(
            QueueRow(
                fulfillment=f,
                units=sum(fl.quantity - fl.quantity_rejected for fl in f.lines.all()),
                late=f.is_late(now),
                minutes_to_due=minutes,
            )
        )
    return rows


def store_queue(location: Location, now: datetime) -> dict[str, list[QueueRow]]:
    """The store's work: to do (by due time, earliest first), waiting for the customer (by
    expiry), and what finished in the last day."""
    base = (
        Fulfillment.objects.filter(location=location)
        .select_related("order__customer", "location", "transfer_to")
        .prefetch_related(_lines_prefetch())
    )
    to_do = base.filter(status__in=TO_DO).order_by(F("due_at").asc(nulls_last=True), "pk")
    waiting = base.filter(status=FulfillmentStatus.READY_FOR_PICKUP).order_by("pickup_expires_at", "pk")
    done = (
        base.exclude(status__in=FULFILLMENT_ACTIVE)
        .filter(updated_at__gte=now - FINISHED_RECENTLY)
        .order_by("-updated_at", "-pk")[:20]
    )
    return {"to_do": queue_rows(to_do, now), "waiting": queue_rows(waiting, now), "done": queue_rows(done, now)}


def store_fulfillment(location: Location, pk: int) -> Fulfillment | None:
    return (
        Fulfillment.objects.filter(location=location, pk=pk)
        .select_related("order__customer", "location", "transfer_to")
        .prefetch_related(_lines_prefetch(), "shipments")
        .first()
    )


def fulfillment_timeline(fulfillment: Fulfillment) -> list[OrderEvent]:
    """The order's timeline entries about this fulfilment, newest first."""
    return list(
        OrderEvent.objects.filter(order_id=fulfillment.order_id, data__fulfillment=fulfillment.pk).order_by("-id")
    )


@dataclass
class PickLine:
    sku: str
    name: str
    quantity: int
    bin: str


def pick_list(fulfillment: Fulfillment) -> list[PickLine]:
    """What to pick, by SKU. `bin` is the item's `bin` attribute when the catalogue has one
    (the OMS keeps no bin locations of its own)."""
    lines = []
    for fl in fulfillment.lines.all():
        units = fl.quantity_open
        if units:
            item = fl.line.item
            lines.append(PickLine(fl.line.sku, item.name, units, str(item.attributes.get("bin", ""))))
    return sorted(lines, key=lambda p: (p.bin or "~", p.sku))
