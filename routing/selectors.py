"""Load everything the engine needs for one order, in a few queries."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from django.db.models import Count, Q
from django.utils import timezone

from inventory.models import Channel, Location, Stock
from orders.models import Allocation, Fulfillment, FulfillmentStatus, Order, OrderLine

from . import engine
from .models import ProfileVersion, RoutingProfile, Strategy

REJECTION_WINDOW = timedelta(days=30)

DEFAULT_PROFILE = engine.ProfileIn(
    version_id=None,
    strategies=(
        engine.StrategyIn(
            name="Nearest location with stock (built-in default)",
            weights=engine.Weights(distance=1.0, priority=0.2, cost=0.1),
            max_locations=3,
        ),
    ),
)


def _csv_set(value: str, upper: bool = False) -> frozenset[str]:
    return frozenset((v.strip().upper() if upper else v.strip()) for v in value.split(",") if v.strip())


def strategy_in(s: Strategy) -> engine.StrategyIn:
    return engine.StrategyIn(
        name=s.name,
        filters=engine.Filters(
            require_capability=s.require_capability,
            location_types=frozenset(s.location_types or []),
            countries=_csv_set(s.countries, upper=True),
            regions=_csv_set(s.regions),
            max_distance_km=s.max_distance_km,
            respect_capacity=s.respect_capacity,
            min_remaining_available=s.min_remaining_available,
            dropship_items_to_vendor=s.dropship_items_to_vendor,
        ),
        weights=engine.Weights(
            distance=s.weight_distance,
            cost=s.weight_cost,
            priority=s.weight_priority,
            stock_depth=s.weight_stock_depth,
            capacity_headroom=s.weight_capacity_headroom,
            rejection_rate=s.weight_rejection_rate,
        ),
        ship_complete=s.ship_complete,
        max_locations=s.max_locations,
        optimal=s.optimal,
        transfer_to_pickup=s.transfer_to_pickup,
        shipping_cost_per_km=s.shipping_cost_per_km,
        cost_per_shipment=s.cost_per_shipment,
        split_penalty=s.split_penalty,
    )


def version_in(version: ProfileVersion) -> engine.ProfileIn:
    return engine.ProfileIn(version_id=version.pk, strategies=tuple(strategy_in(s) for s in version.strategies.all()))


def active_profile(channel: Channel) -> engine.ProfileIn:
    """The channel's active version, else the default profile's, else the built-in default."""
    for profile in (
        RoutingProfile.objects.filter(channel=channel).first(),
        RoutingProfile.objects.filter(channel__isnull=True).first(),
    ):
        if profile is None:
            continue
        version = profile.versions.filter(status=ProfileVersion.Status.ACTIVE).prefetch_related("strategies").first()
        if version is not None:
            return version_in(version)
    return DEFAULT_PROFILE


def order_in(order: Order, todo: dict[int, int], lines: list[OrderLine], excluded: set[int]) -> engine.OrderIn:
    method = order.fulfillment_method
    latitude, longitude = order.ship_latitude, order.ship_longitude
    if order.pickup_location_id:  # a pickup order's destination is its store
        latitude, longitude = order.pickup_location.latitude, order.pickup_location.longitude
    return engine.OrderIn(
        lines=tuple(
            engine.LineIn(
                line_id=line.pk,
                item_id=line.item_id,
                sku=line.sku,
                quantity=todo[line.pk],
                dropship_vendor_id=line.item.dropship_vendor_id,
            )
            for line in lines
            if line.pk in todo
        ),
        method=method,
        latitude=float(latitude) if latitude is not None else None,
        longitude=float(longitude) if longitude is not None else None,
        country=order.ship_country,
        region=order.ship_region,
        postal_code=order.ship_postal_code,
        pickup_location_id=order.pickup_location_id,
        ship_complete=order.ship_complete,
        excluded_location_ids=frozenset(excluded),
    )


def candidates(
    channel: Channel, item_ids: set[int], *, own_holds: dict[tuple[int, int], int] | None = None
) -> list[engine.Candidate]:
    """Every location of the channel with what it can offer this order. Units this order
    already holds provisionally count as available to it (routing moves its own holds)."""
    own_holds = own_holds or {}
    locations = list(channel.locations.all())
    loc_ids = [loc.pk for loc in locations]
    available: dict[int, dict[int, int]] = defaultdict(dict)
    for loc_id, item_id, on_hand, reserved, safety in Stock.objects.filter(
        location_id__in=loc_ids, item_id__in=item_ids
    ).values_list("location_id", "item_id", "on_hand", "reserved", "safety_stock"):
        units = max(0, on_hand - reserved - safety) + own_holds.get((loc_id, item_id), 0)
        if units > 0:
            available[loc_id][item_id] = units
    for (loc_id, item_id), units in own_holds.items():
        if loc_id in loc_ids and item_id not in available[loc_id]:
            available[loc_id][item_id] = units
    today = timezone.localdate()
    orders_today = dict(
        Fulfillment.objects.filter(location_id__in=loc_ids, created_at__date=today)
        .values_list("location_id")
        .annotate(n=Count("order", distinct=True))
    )
    window = Fulfillment.objects.filter(location_id__in=loc_ids, created_at__gte=timezone.now() - REJECTION_WINDOW)
    rejection = {
        loc_id: (rejected / total if total else 0.0)
        for loc_id, total, rejected in window.values_list("location_id")
        .annotate(
            total=Count("id"),
            rejected=Count(
                "id", filter=Q(status=FulfillmentStatus.REJECTED) | Q(lines__quantity_rejected__gt=0), distinct=True
            ),
        )
        .values_list("location_id", "total", "rejected")
    }
    return [
        _candidate(loc, available[loc.pk], orders_today.get(loc.pk, 0), rejection.get(loc.pk, 0.0)) for loc in locations
    ]


def _candidate(loc: Location, available: dict[int, int], orders_today: int, rejection_rate: float) -> engine.Candidate:
    return engine.Candidate(
        location_id=loc.pk,
        code=loc.code,
        type=loc.type,
        capabilities=frozenset(loc.capabilities or []),
        active=loc.active,
        priority=loc.priority,
        fulfillment_cost=float(loc.fulfillment_cost),
        latitude=float(loc.latitude) if loc.latitude is not None else None,
        longitude=float(loc.longitude) if loc.longitude is not None else None,
        country=loc.country,
        region=loc.region,
        daily_capacity=loc.daily_capacity,
        orders_today=orders_today,
        rejection_rate=round(rejection_rate, 4),
        available=available,
    )


def provisional_holds(order: Order) -> dict[tuple[int, int], int]:
    holds: dict[tuple[int, int], int] = defaultdict(int)
    for loc_id, item_id, quantity in Allocation.objects.filter(line__order=order, provisional=True).values_list(
        "location_id", "line__item_id", "quantity"
    ):
        holds[(loc_id, item_id)] += quantity
    return dict(holds)
