"""Inventory reads: available-to-promise per channel, its term-by-term explanation, ledger checks."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import F, Min, QuerySet, Sum, Value
from django.db.models.functions import Greatest, Now
from django.utils import timezone

from oms.errors import ValidationFailed
from oms.fastsql import dollars, run_raw

from . import atp_cache
from .models import Channel, IncomingSupply, Item, Location, Reservation, ReservationLine, Stock, StockMovement

EARTH_RADIUS_KM = 6371.0088


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))


@dataclass(frozen=True)
class Near:
    latitude: float
    longitude: float
    radius_km: float


@dataclass(frozen=True)
class _Loc:
    id: int
    code: str
    latitude: float | None
    longitude: float | None
    distance_km: float | None = None


def _channel_locations(channel: Channel, *, near: Near | None, location: Location | None) -> list[_Loc]:
    qs = channel.locations.filter(active=True)
    if location is not None:
        qs = qs.filter(pk=location.pk)
    locs = [
        _Loc(pk, code, float(lat) if lat is not None else None, float(lng) if lng is not None else None)
        for pk, code, lat, lng in qs.values_list("id", "code", "latitude", "longitude")
    ]
    if near is None:
        return locs
    out = []
    for loc in locs:
        if loc.latitude is None or loc.longitude is None:
            continue
        d = haversine_km(near.latitude, near.longitude, loc.latitude, loc.longitude)
        if d <= near.radius_km:
            out.append(_Loc(loc.id, loc.code, loc.latitude, loc.longitude, round(d, 1)))
    return sorted(out, key=lambda x: x.distance_km)


def resolve_items(skus: list[str]) -> dict[str, tuple[int, bool]]:
    items = {
        sku: (pk, active) for pk, sku, active in Item.objects.filter(sku__in=skus).values_list("id", "sku", "active")
    }
    unknown = [s for s in skus if s not in items]
    if unknown:
        raise ValidationFailed(
            f"Unknown SKU(s): {', '.join(unknown[:20])}", fields={"skus": f"Unknown: {', '.join(unknown[:20])}"}
        )
    return items


def _expired_holds(item_ids, loc_ids) -> dict[tuple[int, int], int]:
    """Units still counted as reserved by carts that have expired but not yet been swept:
    they are free to promise, so ATP adds them back."""
    rows = (
        ReservationLine.objects.filter(
            reservation__status=Reservation.Status.ACTIVE,
            reservation__expires_at__lte=timezone.now(),
            item_id__in=item_ids,
            location_id__in=loc_ids,
        )
        .values_list("location_id", "item_id")
        .annotate(q=Sum("quantity"))
    )
    return {(loc, item): q for loc, item, q in rows}


def location_terms(channel: Channel, on_hand: int, reserved: int, safety: int, expired: int) -> dict:
    effective_reserved = reserved - expired
    net = on_hand - effective_reserved - safety
    buffer = channel.buffer_for(net)
    return {
        "on_hand": on_hand,
        "reserved": effective_reserved,
        "safety_stock": safety,
        "channel_buffer": buffer,
        "available": max(0, net - buffer),
    }


def _available_expression(channel: Channel):
    """location_terms()'s `available`, as SQL: max(0, net − max(units, ceil(pct × net)))."""
    net = F("on_hand") - F("reserved") - F("safety_stock")
    buffer = Value(channel.safety_buffer)
    if channel.safety_buffer_percent:
        # ceil(net × pct / 100) in integer arithmetic (basis points), the same on PostgreSQL and SQLite
        basis_points = Value(int(channel.safety_buffer_percent * 100))
        buffer = Greatest(buffer, (net * basis_points + Value(9999)) / Value(10000))
    return Greatest(net - buffer, Value(0))


_COMPILED: dict[tuple, tuple[str, list, list[int]]] = {}
PREPARE_ONLY_WHEN_ASKED = 2**31 - 1  # psycopg's automatic preparing never kicks in
_MARK = -(2**62)


def prepared_rows(shape: tuple, build: Callable[[list[int]], QuerySet], item_ids: list[int]) -> list[tuple]:
    """The rows of `build(item_ids)` (a values_list queryset). On PostgreSQL the ORM compiles
    each shape once (`shape` says what else the query depends on; the ids are padded to a power
    of two) and later calls only swap the ids into the parameters: here compiling a query costs
    several times what PostgreSQL takes to run it. The ORM still writes every query."""
    if connection.vendor != "postgresql":
        return list(build(item_ids))
    size = 1 << max(0, len(item_ids) - 1).bit_length()
    compiled = _COMPILED.get((shape, size))
    if compiled is None:
        marks = [_MARK + i for i in range(size)]
        sql, params = build(marks).query.sql_with_params()
        sql, params = dollars(sql), list(params)
        if len(_COMPILED) > 1000:
            _COMPILED.clear()
        compiled = _COMPILED[(shape, size)] = (sql, params, [params.index(m) for m in marks])
    sql, template, slots = compiled
    params = template.copy()
    for slot, value in zip(slots, [*item_ids, *[item_ids[0]] * (size - len(item_ids))], strict=True):
        params[slot] = value
    # A server-side prepared statement from the first call: PostgreSQL plans each shape once per
    # connection (planning these joins costs twice what running them does for a few SKUs: 1.9 →
    # 0.6 ms per batch). Run on fastsql's kept psycopg cursor, on the same connection and
    # transaction. With PG_PREPARE_THRESHOLD=0 (preparing off for Django's statements) only these
    # are prepared.
    conn = connections[DEFAULT_DB_ALIAS]
    conn.ensure_connection()
    raw = conn.connection
    if raw.prepare_threshold is None:
        raw.prepare_threshold = PREPARE_ONLY_WHEN_ASKED
    return run_raw(sql, params, conn, prepare=True)


def _aggregate_totals(channel: Channel, item_ids: list[int]) -> dict[int, int]:
    """The common case, done in the database: one grouped query returns one row per SKU."""
    in_channel = {"location__channels": channel, "location__active": True}
    buffer = (channel.safety_buffer, channel.safety_buffer_percent)
    totals = dict(
        prepared_rows(
            ("stock", channel.pk, *buffer),
            lambda ids: (
                Stock.objects.filter(item_id__in=ids, **in_channel)
                .values_list("item_id")
                .annotate(total=Sum(_available_expression(channel)))
                .values_list("item_id", "total")
            ),
            item_ids,
        )
    )
    # Expired-but-unswept cart holds (rare): correct just those rows.
    expired = {
        (loc, item): q
        for loc, item, q in prepared_rows(
            ("expired", channel.pk),
            lambda ids: (
                ReservationLine.objects.filter(
                    reservation__status=Reservation.Status.ACTIVE,
                    reservation__expires_at__lte=Now(),
                    item_id__in=ids,
                    **in_channel,
                )
                .values_list("location_id", "item_id")
                .annotate(q=Sum("quantity"))
            ),
            item_ids,
        )
    }
    if expired:
        rows = Stock.objects.filter(item_id__in={i for _, i in expired}, location_id__in={loc for loc, _ in expired})
        for row in rows.values_list("location_id", "item_id", "on_hand", "reserved", "safety_stock"):
            loc, item, on_hand, reserved, safety = row
            if (loc, item) in expired:
                with_holds = location_terms(channel, on_hand, reserved, safety, 0)["available"]
                freed = location_terms(channel, on_hand, reserved, safety, expired[(loc, item)])["available"]
                totals[item] = totals.get(item, 0) + freed - with_holds
    return {item: int(total or 0) for item, total in totals.items()}


def _hold_expiries(channel: Channel, item_ids: list[int]) -> dict[int, float]:
    """{item id: when its earliest cart hold in the channel runs out (epoch seconds)}. The hold's
    units become free to promise at that moment, before the sweep releases them, so a cached
    figure that counted them is good only until then."""
    rows = prepared_rows(
        ("hold-expiry", channel.pk),
        lambda ids: (
            ReservationLine.objects.filter(
                reservation__status=Reservation.Status.ACTIVE,
                reservation__expires_at__gt=Now(),
                item_id__in=ids,
                location__channels=channel,
                location__active=True,
            )
            .values_list("item_id")
            .annotate(first=Min("reservation__expires_at"))
            .values_list("item_id", "first")
        ),
        item_ids,
    )
    return {item_id: first.timestamp() for item_id, first in rows}


def _incoming(item_ids: list[int], shape: tuple | None = None, **location_filter) -> dict[int, list[dict]]:
    incoming: dict[int, list[dict]] = defaultdict(list)

    def supply(ids):
        return (
            IncomingSupply.objects.filter(item_id__in=ids, status=IncomingSupply.Status.OPEN, **location_filter)
            .annotate(open_qty=F("quantity") - F("quantity_received"))
            .order_by("expected_date", "id")
            .values_list("item_id", "location__code", "open_qty", "expected_date")
        )

    rows = prepared_rows(("incoming", *shape), supply, item_ids) if shape else supply(item_ids)
    for item_id, code, qty, expected in rows:
        if qty > 0:
            incoming[item_id].append({"location": code, "quantity": qty, "expected_date": expected.isoformat()})
    return incoming


def _channel_summaries(channel: Channel, item_ids: list[int]) -> dict[int, tuple[int, list[dict]]]:
    """{item id: (available across the channel, incoming supply)}: what the cache keeps per SKU."""
    totals = _aggregate_totals(channel, item_ids)
    incoming = _incoming(item_ids, (channel.pk,), location__channels=channel, location__active=True)
    return {item_id: (totals.get(item_id, 0), incoming[item_id]) for item_id in item_ids}


def _answer(channel: Channel, skus: list[str], items: dict, summaries: dict[int, tuple[int, list[dict]]]) -> dict:
    out_items = []
    for sku in skus:
        item_id, active = items[sku]
        available, incoming = summaries[item_id]
        entry = {"sku": sku, "available": available if active else 0}
        if not active:
            entry["inactive"] = True
        entry["incoming"] = incoming
        out_items.append(entry)
    return {"channel": channel.code, "items": out_items}


def _resolve_items_cached(skus: list[str]) -> dict[str, tuple[int, bool]]:
    items, unknown = atp_cache.local_items(skus)
    if unknown:
        found = resolve_items(unknown)
        atp_cache.remember_items(found)
        items.update(found)
    return items


def cached_channel_availability(*, channel: Channel, skus: list[str]) -> dict:
    """channel_availability(channel, skus) for storefronts: the same answer, from the ATP cache
    (inventory/atp_cache.py) for SKUs whose stock has not changed since it was computed, so it
    may lag a change by milliseconds (another process) up to ATP_CACHE_SECONDS (see there)."""
    items = _resolve_items_cached(skus)
    lookup = atp_cache.Lookup(channel.pk, list({pk for pk, _ in items.values()}))
    if lookup.config_moved:  # channels, locations or items changed: read them afresh
        channel = Channel.objects.get(pk=channel.pk)
        atp_cache.remember_channel(channel)
        items = _resolve_items_cached(skus)
        lookup = atp_cache.Lookup(channel.pk, list({pk for pk, _ in items.values()}))
    summaries = dict(lookup.hits)
    missing = [pk for pk in {pk for pk, _ in items.values()} if pk not in summaries]
    if missing:
        fresh = _channel_summaries(channel, missing)
        if lookup.ok:
            lookup.store(fresh, until=_hold_expiries(channel, missing))
        summaries.update(fresh)
    return _answer(channel, skus, items, summaries)


def channel_availability(
    *,
    channel: Channel,
    skus: list[str],
    detail: bool = False,
    near: Near | None = None,
    location: Location | None = None,
) -> dict:
    """ATP per SKU across the channel's active locations (or those near a point / one location)."""
    items = resolve_items(skus)
    item_ids = [pk for pk, _ in items.values()]
    by_location: dict[int, list[dict]] = defaultdict(list)
    if not detail and near is None and location is None:
        return _answer(channel, skus, items, _channel_summaries(channel, item_ids))
    locs = _channel_locations(channel, near=near, location=location)
    loc_by_id = {loc.id: loc for loc in locs}
    rows = Stock.objects.filter(item_id__in=item_ids, location_id__in=loc_by_id).values_list(
        "item_id", "location_id", "on_hand", "reserved", "safety_stock"
    )
    expired = _expired_holds(item_ids, list(loc_by_id)) if loc_by_id else {}
    totals = defaultdict(int)
    for item_id, loc_id, on_hand, reserved, safety in rows:
        terms = location_terms(channel, on_hand, reserved, safety, expired.get((loc_id, item_id), 0))
        totals[item_id] += terms["available"]
        loc = loc_by_id[loc_id]
        entry = {"location": loc.code, **terms}
        del entry["channel_buffer"]
        if channel.safety_buffer or channel.safety_buffer_percent:
            entry["channel_buffer"] = terms["channel_buffer"]
        if loc.distance_km is not None:
            entry["distance_km"] = loc.distance_km
        by_location[item_id].append(entry)
    incoming = _incoming(item_ids, location_id__in=loc_by_id)
    out_items = []
    for sku in skus:
        item_id, active = items[sku]
        entry = {"sku": sku, "available": totals.get(item_id, 0) if active else 0}
        if not active:
            entry["inactive"] = True
        if detail:
            key = (lambda e: e.get("distance_km", 0)) if near else (lambda e: e["location"])
            entry["by_location"] = sorted(by_location[item_id], key=key)
        entry["incoming"] = incoming[item_id]
        out_items.append(entry)
    return {"channel": channel.code, "items": out_items}


def availability_breakdown(*, channel: Channel, sku: str) -> dict:
    """Explain one SKU's channel ATP location by location, including what was left out and why."""
    items = resolve_items([sku])
    item_id, active = items[sku]
    in_channel = set(channel.locations.values_list("id", flat=True))
    stock = {s.location_id: s for s in Stock.objects.filter(item_id=item_id).select_related("location")}
    loc_ids = in_channel | set(stock)
    locations = {loc.pk: loc for loc in Location.objects.filter(pk__in=loc_ids)}
    expired = _expired_holds([item_id], list(loc_ids))
    rows = []
    total = 0
    for loc_id in sorted(loc_ids, key=lambda pk: locations[pk].code):
        loc = locations[loc_id]
        s = stock.get(loc_id)
        terms = location_terms(
            channel,
            s.on_hand if s else 0,
            s.reserved if s else 0,
            s.safety_stock if s else 0,
            expired.get((loc_id, item_id), 0),
        )
        reason = None
        if loc_id not in in_channel:
            reason = "location does not serve this channel"
        elif not loc.active:
            reason = "location inactive"
        elif not active:
            reason = "item inactive"
        counted = terms["available"] if reason is None else 0
        total += counted
        rows.append(
            {
                "location": loc.code,
                **terms,
                "expired_cart_holds": expired.get((loc_id, item_id), 0),
                "counted": counted,
                "excluded_reason": reason,
            }
        )
    return {
        "channel": channel.code,
        "sku": sku,
        "available": total,
        "formula": "available = Σ max(0, on_hand − reserved − safety_stock − channel_buffer) "
        "over the channel's active locations",
        "channel_buffer_rule": (
            f"max({channel.safety_buffer} units, {channel.safety_buffer_percent}% of "
            "on_hand − reserved − safety_stock) per location"
        ),
        "locations": rows,
    }


@dataclass(frozen=True)
class LedgerMismatch:
    location_id: int
    item_id: int
    on_hand: int
    reserved: int
    ledger_on_hand: int
    ledger_reserved: int
    # The ledger has no database-level foreign keys (see StockMovement): rows whose location or
    # item was deleted are reported here, whatever their sums.
    orphaned: bool = False


def ledger_mismatches() -> list[LedgerMismatch]:
    """Stock rows whose counters differ from the sum of their ledger movements, and ledger
    rows that name a location or item that no longer exists."""
    sums = {
        (loc, item): (oh or 0, r or 0)
        for loc, item, oh, r in StockMovement.objects.values_list("location_id", "item_id")
        .annotate(oh=Sum("delta_on_hand"), r=Sum("delta_reserved"))
        .values_list("location_id", "item_id", "oh", "r")
    }
    out = []
    for loc, item, on_hand, reserved in Stock.objects.values_list(
        "location_id", "item_id", "on_hand", "reserved"
    ).iterator(chunk_size=5000):
        lo, lr = sums.pop((loc, item), (0, 0))
        if (lo, lr) != (on_hand, reserved):
            out.append(LedgerMismatch(loc, item, on_hand, reserved, lo, lr))
    if sums:  # ledger pairs without a stock row: sums must be zero and both ends must exist
        locations = set(Location.objects.filter(id__in={loc for loc, _ in sums}).values_list("id", flat=True))
        items = set(Item.objects.filter(id__in={item for _, item in sums}).values_list("id", flat=True))
        for (loc, item), (lo, lr) in sums.items():
            orphaned = loc not in locations or item not in items
            if orphaned or (lo, lr) != (0, 0):
                out.append(LedgerMismatch(loc, item, 0, 0, lo, lr, orphaned=orphaned))
    return out
