"""Inventory writes. Every change of on_hand or reserved goes through `_apply_movements`,
which uses conditional updates in stock-pk order and writes one ledger row per change."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import chain

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from oms.actor import Actor
from oms.batching import insert_many
from oms.errors import Conflict, InsufficientStock, NotFound, ValidationFailed
from oms.fastsql import fetch, insert_objects, new
from oms.outbox import outbox_enqueue_task, outbox_publish_event

from . import atp_cache
from .locks import reservation_for_update, stock_for_update
from .models import (
    Channel,
    IncomingSupply,
    Item,
    Location,
    MovementReason,
    Reservation,
    ReservationLine,
    Stock,
    StockMovement,
)
from .selectors import prepared_rows

log = logging.getLogger(__name__)

EVENT_SKU_LIMIT = 1000


@dataclass(frozen=True)
class StockLine:
    location_id: int
    item_id: int
    quantity: int


@dataclass
class _Movement:
    stock_id: int
    location_id: int
    item_id: int
    delta_on_hand: int
    delta_reserved: int
    reason: str
    reference: str = ""
    note: str = ""
    dedupe_key: str | None = None
    # reserve: also keep safety stock untouched (ATP check), not just reserved <= on_hand
    check_available: bool = False
    label: str = ""


@dataclass
class _Known:
    """What the channel plan's read already returned, so reserving it reads nothing again:
    stock ids, location codes and SKUs."""

    ids: dict[tuple[int, int], int] = field(default_factory=dict)
    codes: dict[int, str] = field(default_factory=dict)
    skus: dict[int, str] = field(default_factory=dict)


class _Rejected(Exception):
    def __init__(self, movements: list[_Movement]):
        self.movements = movements


_UPDATE_SQL = """
UPDATE inventory_stock
   SET on_hand = on_hand + %s, reserved = reserved + %s, updated_at = %s
 WHERE id = %s
   AND on_hand + %s >= reserved + %s
   AND reserved + %s >= 0
   {extra}
RETURNING on_hand, reserved
"""
_UPDATE_PLAIN = _UPDATE_SQL.format(extra="")
_UPDATE_ATP = _UPDATE_SQL.format(extra="AND on_hand - reserved - safety_stock >= %s")


# Conditional updates of many rows in one statement, `v` giving (id, on_hand, reserved, need)
# per row; the rows are locked in id order first, so concurrent multi-row reserves never
# deadlock.
_UPDATE_FROM = """
WITH v(id, on_hand, reserved, need) AS ({rows}),
     locked AS MATERIALIZED (SELECT id FROM inventory_stock WHERE id IN (SELECT id FROM v) ORDER BY id FOR UPDATE)
UPDATE inventory_stock s
   SET on_hand = s.on_hand + v.on_hand, reserved = s.reserved + v.reserved, updated_at = %s
  FROM v
 WHERE s.id = v.id AND s.id IN (SELECT id FROM locked)
   AND s.on_hand + v.on_hand >= s.reserved + v.reserved
   AND s.reserved + v.reserved >= 0
   AND (v.need IS NULL OR s.on_hand - s.reserved - s.safety_stock >= v.need)
RETURNING s.id, s.on_hand, s.reserved
"""
_UPDATE_MANY = _UPDATE_FROM.format(rows="SELECT * FROM unnest(%s::bigint[], %s::int[], %s::int[], %s::int[])")
_UNDO = "UPDATE inventory_stock SET on_hand = on_hand - %s, reserved = reserved - %s WHERE id = %s"

# For the few rows of an order the rows are spelled out in VALUES instead: PostgreSQL's
# estimates then match every execution, so after five it keeps one generic plan instead of
# planning each reserve again (0.3-0.5 ms each). Arrays (one statement for any count) above.
_SPELLED_OUT_UP_TO = 16
_UPDATE_ROWS_SQL: dict[int, str] = {}


def _update_rows_sql(count: int) -> str:
    sql = _UPDATE_ROWS_SQL.get(count)
    if sql is None:
        rows = ", ".join(["(%s::bigint, %s::int, %s::int, %s::int)"] + ["(%s, %s, %s, %s)"] * (count - 1))
        sql = _UPDATE_ROWS_SQL[count] = _UPDATE_FROM.format(rows=f"VALUES {rows}")
    return sql


def _update_counters(cursor, movements: list[_Movement], now) -> list[tuple[int, int] | None]:
    """Conditional updates of the movements' rows, locked in stock-pk order: per movement,
    (on_hand, reserved) after it, or None where it was rejected. On PostgreSQL one statement
    (rows locked by id first, so concurrent multi-row reserves never deadlock), elsewhere one
    per row."""
    ids = [m.stock_id for m in movements]
    if connection.vendor == "postgresql" and len(movements) > 1 and len(set(ids)) == len(ids):
        on_hand = [m.delta_on_hand for m in movements]
        reserved = [m.delta_reserved for m in movements]
        needs = [m.delta_reserved if m.check_available else None for m in movements]
        if len(movements) <= _SPELLED_OUT_UP_TO:
            sql = _update_rows_sql(len(movements))
            params = [*chain.from_iterable(zip(ids, on_hand, reserved, needs, strict=True)), now]
        else:
            sql, params = _UPDATE_MANY, [ids, on_hand, reserved, needs, now]
        found = {pk: (after_on_hand, after_reserved) for pk, after_on_hand, after_reserved in fetch(sql, params)}
        return [found.get(pk) for pk in ids]
    after = []
    for m in movements:
        params = [
            m.delta_on_hand,
            m.delta_reserved,
            now,
            m.stock_id,
            m.delta_on_hand,
            m.delta_reserved,
            m.delta_reserved,
        ]
        if m.check_available:
            cursor.execute(_UPDATE_ATP, [*params, m.delta_reserved])
        else:
            cursor.execute(_UPDATE_PLAIN, params)
        after.append(cursor.fetchone())
    return after


def _apply_movements(movements: list[_Movement], *, actor: Actor) -> list[StockMovement]:
    """Apply stock deltas atomically (caller holds the transaction), in stock-pk order.

    Each update is conditional, so the counters can never go negative or let reserved pass
    on hand, whatever runs concurrently. All or nothing without a savepoint: if any is
    rejected, those applied are undone (their rows are still locked by this transaction) and
    the rejected ones are raised together.
    """
    now = timezone.now()
    movements = sorted(movements, key=lambda m: m.stock_id)
    with connection.cursor() as cursor:
        after = _update_counters(cursor, movements, now)
        rejected = [m for m, row in zip(movements, after, strict=True) if row is None]
        if rejected:
            applied = [m for m, row in zip(movements, after, strict=True) if row is not None]
            for m in applied:  # rare (a plan gone stale): one statement per row is fine
                cursor.execute(_UNDO, [m.delta_on_hand, m.delta_reserved, m.stock_id])
            raise _Rejected(rejected)
    actor_fields = actor.as_fields()
    ledger = [
        new(
            StockMovement,
            location_id=m.location_id,
            item_id=m.item_id,
            delta_on_hand=m.delta_on_hand,
            delta_reserved=m.delta_reserved,
            on_hand_after=row[0],
            reserved_after=row[1],
            reason=m.reason,
            reference=m.reference[:200],
            note=m.note[:200],
            dedupe_key=m.dedupe_key,
            **actor_fields,
        )
        for m, row in zip(movements, after, strict=True)
    ]

    if not any(m.dedupe_key for m in movements):
        insert_many(ledger)  # reserves: held with the rest of an order capture's rows
        return ledger
    try:
        # A savepoint where a dedupe key can collide (adjustments).
        with transaction.atomic():
            insert_objects(ledger)
    except IntegrityError as exc:
        raise Conflict("A concurrent request applied the same reference; retry to see its result.") from exc
    return ledger


def _stock_ids(pairs: Iterable[tuple[int, int]], *, create: bool = False) -> dict[tuple[int, int], int]:
    pairs = set(pairs)
    if not pairs:
        return {}
    loc_ids = {p[0] for p in pairs}
    item_ids = {p[1] for p in pairs}

    def load() -> dict[tuple[int, int], int]:
        rows = Stock.objects.filter(location_id__in=loc_ids, item_id__in=item_ids).values_list(
            "location_id", "item_id", "id"
        )
        return {(loc, item): pk for loc, item, pk in rows if (loc, item) in pairs}

    found = load()
    missing = pairs - found.keys()
    if create and missing:
        Stock.objects.bulk_create(
            [Stock(location_id=loc, item_id=item) for loc, item in missing], ignore_conflicts=True
        )
        found = load()
    return found


def _publish_stock_changed(ledger: Sequence[StockMovement], *, cause: str, known: _Known | None = None) -> None:
    by_location: dict[int, set[int]] = defaultdict(set)
    for m in ledger:
        by_location[m.location_id].add(m.item_id)
    _publish_changes(by_location, cause=cause, known=known)


def _publish_changes(by_location: dict[int, Collection[int]], *, cause: str, known: _Known | None = None) -> None:
    """Tell the ATP cache and subscribers that these counters changed: {location id: item ids}.
    The event names at most EVENT_SKU_LIMIT SKUs (and says when it left some out)."""
    item_ids = {item for items in by_location.values() for item in items}
    if not item_ids:
        return
    atp_cache.stock_changed(item_ids)
    named = item_ids if len(item_ids) <= EVENT_SKU_LIMIT else set(list(item_ids)[:EVENT_SKU_LIMIT])
    known = known or _Known()
    locations, skus = known.codes, known.skus
    if not by_location.keys() <= locations.keys():
        locations = dict(Location.objects.filter(id__in=by_location).values_list("id", "code"))
    if not named <= skus.keys():
        skus = dict(Item.objects.filter(id__in=named).values_list("id", "sku"))
    changes = {
        locations[loc]: sorted({skus[i] for i in items if i in named and i in skus})
        for loc, items in by_location.items()
    }
    outbox_publish_event(
        "inventory.changed",
        {
            "cause": cause,
            "changes": [{"location": loc, "skus": s} for loc, s in sorted(changes.items()) if s],
            "truncated": len(item_ids) > EVENT_SKU_LIMIT,
        },
    )


BACKORDER_ITEM_LIMIT = 1000


def _stock_arrived(item_ids: set[int]) -> None:
    """On hand went up: backordered orders may now be sourced. Enqueued by task name on commit
    (inventory never imports routing); above a thousand items, every backorder is retried."""
    if item_ids:
        ids = sorted(item_ids) if len(item_ids) <= BACKORDER_ITEM_LIMIT else None
        outbox_enqueue_task("routing.route_backorders", item_ids=ids)


def _sku_names(item_ids: Iterable[int]) -> list[str]:
    return sorted(Item.objects.filter(id__in=set(item_ids)).values_list("sku", flat=True))


# --- Reservations: reserve, release, commit on shipment ------------------------------------------


def stock_reserve(
    *,
    lines: Sequence[StockLine],
    actor: Actor,
    reference: str,
    reason: str = MovementReason.RESERVE,
    sweep_expired: bool = True,
    known: _Known | None = None,
    savepoint: bool = True,
) -> list[StockMovement]:
    """Reserve every line at its location, all or nothing.

    Raises InsufficientStock naming the SKUs that could not be reserved; the caller's
    transaction then rolls back and nothing is held. `known` carries the stock ids, codes and
    SKUs a plan has just read. `savepoint=False`: none is taken (a rejected reserve undoes
    its own updates), for callers that plan again in the same transaction.
    """
    _check_quantities(lines)
    # Without a savepoint, no atomic block either: an exception leaving one would mark the
    # caller's transaction as broken, and a rejected reserve undoes its own updates.
    with transaction.atomic() if savepoint or not connection.in_atomic_block else nullcontext():
        if sweep_expired:
            release_expired_reservations(item_ids={line.item_id for line in lines})
        pairs = {(line.location_id, line.item_id) for line in lines}
        ids = known.ids if known is not None and pairs <= known.ids.keys() else _stock_ids(pairs)
        missing = [line for line in lines if (line.location_id, line.item_id) not in ids]
        if missing:
            skus = _sku_names(line.item_id for line in missing)
            raise InsufficientStock(f"Not enough stock for {', '.join(skus)}.", skus=skus)
        movements = [
            _Movement(
                stock_id=ids[(line.location_id, line.item_id)],
                location_id=line.location_id,
                item_id=line.item_id,
                delta_on_hand=0,
                delta_reserved=line.quantity,
                reason=reason,
                reference=reference,
                check_available=True,
            )
            for line in lines
        ]
        try:
            ledger = _apply_movements(movements, actor=actor)
        except _Rejected as exc:
            skus = _sku_names(m.item_id for m in exc.movements)
            raise InsufficientStock(f"Not enough stock for {', '.join(skus)}.", skus=skus) from None
        _publish_stock_changed(ledger, cause=reason, known=known)
        return ledger


def stock_release(
    *,
    lines: Sequence[StockLine],
    actor: Actor,
    reference: str,
    reason: str = MovementReason.RELEASE,
) -> list[StockMovement]:
    """Give reserved units back to availability."""
    return _unreserve(lines=lines, actor=actor, reference=reference, reason=reason, consume=False)


def stock_commit_shipment(*, lines: Sequence[StockLine], actor: Actor, reference: str) -> list[StockMovement]:
    """Shipped units leave the building: on hand and reserved both decrease."""
    return _unreserve(lines=lines, actor=actor, reference=reference, reason=MovementReason.SHIP, consume=True)


def _unreserve(
    *, lines: Sequence[StockLine], actor: Actor, reference: str, reason: str, consume: bool
) -> list[StockMovement]:
    _check_quantities(lines)
    with transaction.atomic():
        ids = _stock_ids((line.location_id, line.item_id) for line in lines)
        movements = []
        for line in lines:
            stock_id = ids.get((line.location_id, line.item_id))
            if stock_id is None:
                raise Conflict(f"Nothing is reserved for item {line.item_id} at {line.location_id}.")
            movements.append(
                _Movement(
                    stock_id=stock_id,
                    location_id=line.location_id,
                    item_id=line.item_id,
                    delta_on_hand=-line.quantity if consume else 0,
                    delta_reserved=-line.quantity,
                    reason=reason,
                    reference=reference,
                )
            )
        try:
            ledger = _apply_movements(movements, actor=actor)
        except _Rejected as exc:
            skus = _sku_names(m.item_id for m in exc.movements)
            raise Conflict(
                f"Cannot {'ship' if consume else 'release'} more than is reserved for {', '.join(skus)}."
            ) from None
        _publish_stock_changed(ledger, cause=reason)
        return ledger


def _check_quantities(lines: Sequence[StockLine]) -> None:
    for line in lines:
        if not isinstance(line.quantity, int) or line.quantity <= 0:
            raise ValidationFailed("Quantities must be positive whole numbers.", fields={"quantity": "Must be ≥ 1."})


# --- Adjustments, counts and snapshots -----------------------------------------------------------


@dataclass(frozen=True)
class Adjustment:
    location: Location
    item: Item
    reason: str
    reference: str = ""
    delta: int | None = None
    on_hand: int | None = None


@dataclass
class AdjustmentResult:
    applied: list[StockMovement] = field(default_factory=list)
    duplicates: list[Adjustment] = field(default_factory=list)
    unchanged: list[Adjustment] = field(default_factory=list)


def _dedupe_key(source: str, reference: str, location_id: int, item_id: int) -> str | None:
    if not reference:
        return None
    return f"{source}|{reference}|{location_id}|{item_id}"[:255]


@transaction.atomic
def stock_adjust(*, adjustments: Sequence[Adjustment], actor: Actor, source: str) -> AdjustmentResult:
    """Apply a batch of deltas or absolute counts, all or nothing.

    A (source, reference, location, sku) seen before is skipped, so a retried batch is safe.
    Counts are locked before reading so the delta written to the ledger is exact.
    """
    result = AdjustmentResult()
    keys = [_dedupe_key(source, a.reference, a.location.pk, a.item.pk) for a in adjustments]
    seen = set(StockMovement.objects.filter(dedupe_key__in=[k for k in keys if k]).values_list("dedupe_key", flat=True))
    todo: list[tuple[Adjustment, str | None]] = []
    for adj, key in zip(adjustments, keys, strict=True):
        if key and key in seen:
            result.duplicates.append(adj)
            continue
        if key:
            seen.add(key)
        todo.append((adj, key))
    ids = _stock_ids(((a.location.pk, a.item.pk) for a, _ in todo), create=True)
    counts = [a for a, _ in todo if a.on_hand is not None]
    current: dict[int, tuple[int, int]] = {}
    if counts:
        locked = stock_for_update(pk__in=[ids[(a.location.pk, a.item.pk)] for a in counts])
        current = {s.pk: (s.on_hand, s.reserved) for s in locked}
    movements: list[_Movement] = []
    errors: dict[str, str] = {}
    for index, (adj, key) in enumerate(todo):
        stock_id = ids[(adj.location.pk, adj.item.pk)]
        if adj.on_hand is not None:
            on_hand, reserved = current[stock_id]
            if adj.on_hand < reserved:
                errors[f"adjustments[{index}].on_hand"] = (
                    f"{adj.item.sku} at {adj.location.code}: count {adj.on_hand} is below the "
                    f"{reserved} units reserved for orders; release or re-route them first."
                )
                continue
            delta = adj.on_hand - on_hand
            current[stock_id] = (adj.on_hand, reserved)
            if delta == 0:
                result.unchanged.append(adj)
                continue
        else:
            delta = adj.delta
        movements.append(
            _Movement(
                stock_id=stock_id,
                location_id=adj.location.pk,
                item_id=adj.item.pk,
                delta_on_hand=delta,
                delta_reserved=0,
                reason=adj.reason,
                reference=adj.reference,
                dedupe_key=key,
                label=f"adjustments[{index}]",
            )
        )
    if errors:
        raise Conflict(next(iter(errors.values())), fields=errors)
    try:
        result.applied = _apply_movements(movements, actor=actor)
    except _Rejected as exc:
        fields = {f"{m.label}.delta": "Would take on hand below zero or below what is reserved." for m in exc.movements}
        raise Conflict(
            f"{len(exc.movements)} adjustment(s) would leave less on hand than is reserved or "
            "below zero; nothing was applied.",
            fields=fields,
        ) from None
    _publish_stock_changed(result.applied, cause="adjustment")
    _stock_arrived({m.item_id for m in result.applied if m.delta_on_hand > 0})
    return result


@dataclass
class SnapshotResult:
    rows: int = 0
    changed: int = 0
    created: int = 0
    zeroed: int = 0


@dataclass
class SnapshotCount:
    """One location's count: {sku: (on_hand, safety_stock | None)}, whether SKUs left out count
    as zero, and the reference its ledger rows carry."""

    counts: dict[str, tuple[int, int | None]]
    full: bool = True
    reference: str = ""


SNAPSHOT_CHUNK = 2000


def _pg_array(values: Iterable[int]) -> str:
    """A PostgreSQL array literal for whole numbers: one short string parameter instead of
    50,000 adapted ints (the client-side binding quotes each element of a list)."""
    return "{" + ",".join(map(str, values)) + "}"


def _pg_text_array(values: Iterable[str]) -> str:
    """The same for strings: each element double-quoted, its backslashes and quotes escaped."""
    values = list(values)
    if '"' not in (joined := "".join(values)) and "\\" not in joined:  # the usual case: no escaping
        return '{"' + '","'.join(values) + '"}' if values else "{}"
    return "{" + ",".join(['"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values]) + "}"


def _item_ids(skus: list[str]) -> dict[str, int]:
    """{sku: item id} for the SKUs that exist. PostgreSQL: one join against an array constant,
    whose size the planner sees (a hash join, not 50,000 index probes), and the items found
    are KEY SHARE-locked as the stock foreign key's checks would (so none can be deleted
    before the new stock rows commit); elsewhere IN lists."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT i.sku, i.id FROM inventory_item i JOIN unnest(%s::text[]) AS v(sku) ON i.sku = v.sku "
                "FOR KEY SHARE OF i",
                [_pg_text_array(skus)],
            )
            return dict(cursor.fetchall())
    found: dict[str, int] = {}
    for start in range(0, len(skus), 10_000):
        found.update(Item.objects.filter(sku__in=skus[start : start + 10_000]).values_list("sku", "id"))
    return found


def _new_item_ids(skus: list[str]) -> dict[str, int]:
    """Item ids of SKUs the location does not stock yet; unknown SKUs are a 400."""
    found = _item_ids(skus)
    if len(found) < len(skus):
        unknown = [s for s in skus if s not in found]
        raise ValidationFailed(
            f"{len(unknown)} unknown SKU(s): {', '.join(unknown[:20])}",
            fields={"rows.sku": f"Unknown SKU(s): {', '.join(unknown[:20])}"},
        )
    return found


@dataclass
class _SnapshotPlan:
    """What a snapshot writes, column by column (the PostgreSQL statements take each column
    as one array): stock rows to update and to create, and the ledger rows."""

    update_ids: list[int] = field(default_factory=list)
    update_on_hand: list[int] = field(default_factory=list)
    update_safety: list[int] = field(default_factory=list)
    create_items: list[int] = field(default_factory=list)
    create_on_hand: list[int] = field(default_factory=list)
    create_safety: list[int] = field(default_factory=list)
    ledger_items: list[int] = field(default_factory=list)
    ledger_delta: list[int] = field(default_factory=list)
    ledger_on_hand: list[int] = field(default_factory=list)
    ledger_reserved: list[int] = field(default_factory=list)
    zeroed: int = 0


@dataclass
class _SnapshotTally:
    """What the plans of one snapshot add up to: the result, the SKUs found short, and what to
    publish once it commits."""

    result: SnapshotResult = field(default_factory=SnapshotResult)
    full: bool = True
    short: list[str] = field(default_factory=list)
    matched: int = 0  # counted SKUs the location already stocks
    ledger_items: list[int] = field(default_factory=list)
    arrived: set[int] = field(default_factory=set)
    known: _Known = field(default_factory=_Known)

    def read(self, read: Callable[[], SnapshotCount]) -> SnapshotCount:
        count = read()
        self.full, self.result.rows = count.full, len(count.counts)
        return count

    def add(self, plan: _SnapshotPlan) -> None:
        self.result.zeroed += plan.zeroed
        self.result.changed += len(plan.update_ids) - plan.zeroed
        self.result.created += len(plan.create_items)
        self.ledger_items += plan.ledger_items
        self.arrived |= {item for item, delta in zip(plan.ledger_items, plan.ledger_delta, strict=True) if delta > 0}

    def name(self, location: Location, rows: Iterable[tuple], new_items: dict[str, int]) -> None:
        """The event's location code and SKUs, from the rows already read (no query)."""
        self.known.codes[location.pk] = location.code
        self.known.skus.update({row[1]: row[0] for row in rows})
        self.known.skus.update({item_id: sku for sku, item_id in new_items.items()})

    def raise_if_short(self) -> None:
        if short := self.short:
            raise Conflict(
                f"Snapshot counts below reserved quantity for {len(short)} SKU(s): "
                f"{', '.join(short[:20])}; release or re-route those reservations first.",
                fields={"rows.on_hand": "Below reserved for: " + ", ".join(short[:20])},
            )


def _plan_stocked(rows: Sequence[tuple], counts: dict, tally: _SnapshotTally) -> _SnapshotPlan:
    """Compare the counts with the location's locked rows (sku, item id, pk, on_hand, reserved,
    safety), in their pk order. A full snapshot counts a stocked SKU it leaves out as zero.
    This runs once per row (50,000 times for a large location): every append is a local
    bound method, no helper call per row."""
    plan = _SnapshotPlan()
    u_id, u_on_hand, u_safety = plan.update_ids.append, plan.update_on_hand.append, plan.update_safety.append
    m_item, m_delta = plan.ledger_items.append, plan.ledger_delta.append
    m_on_hand, m_reserved = plan.ledger_on_hand.append, plan.ledger_reserved.append
    short, get, full, matched = tally.short, counts.get, tally.full, 0
    for sku, item_id, pk, old, reserved, old_safety in rows:
        count = get(sku)
        if count is None:
            if not full or old == 0:
                continue
            if reserved > 0:
                short.append(f"{sku} (omitted)")
                continue
            on_hand, safety = 0, old_safety
            plan.zeroed += 1
        else:
            matched += 1
            on_hand, safety = count
            if on_hand < reserved:
                short.append(sku)
                continue
            if safety is None:
                safety = old_safety
            if on_hand == old:
                if safety != old_safety:
                    u_id(pk)
                    u_on_hand(on_hand)
                    u_safety(safety)
                continue
        u_id(pk)
        u_on_hand(on_hand)
        u_safety(safety)
        m_item(item_id)
        m_delta(on_hand - old)
        m_on_hand(on_hand)
        m_reserved(reserved)
    tally.matched += matched
    return plan


def _plan_new(skus: Iterable[str], counts: dict, new_items: dict[str, int]) -> _SnapshotPlan:
    """Stock rows (and their first ledger rows) for counted SKUs the location does not stock."""
    plan = _SnapshotPlan()
    for sku in skus:
        item_id = new_items[sku]
        on_hand, safety = counts[sku]
        plan.create_items.append(item_id)
        plan.create_on_hand.append(on_hand)
        plan.create_safety.append(safety or 0)
        if on_hand:
            plan.ledger_items.append(item_id)
            plan.ledger_delta.append(on_hand)
            plan.ledger_on_hand.append(on_hand)
            plan.ledger_reserved.append(0)
    return plan


def _unstocked(counts: dict, rows: Sequence[tuple], tally: _SnapshotTally) -> list[str]:
    """The counted SKUs the location has no row for yet (none, usually, after its first count)."""
    if tally.matched == len(counts):
        return []
    stocked = {row[0] for row in rows}
    return [sku for sku in counts if sku not in stocked]


_LEDGER_COLUMNS = (
    "location_id, item_id, delta_on_hand, delta_reserved, on_hand_after, reserved_after, reason, note, "
    "reference, created_at, actor_type, actor_label, actor_user_id, actor_api_key_id"
)

# The location's stock rows with their SKUs, locked in pk order (as every multi-row stock write).
_SNAPSHOT_LOCK_SQL = (
    "SELECT i.sku, s.item_id, s.id, s.on_hand, s.reserved, s.safety_stock "
    "FROM inventory_stock s JOIN inventory_item i ON i.id = s.item_id "
    "WHERE s.location_id = %s ORDER BY s.id FOR UPDATE OF s"
)
# Only this connection's replication role may skip foreign-key triggers (see _SnapshotWriter).
_SNAPSHOT_ROLE_SQL = (
    "SELECT current_setting('session_replication_role'), current_setting('is_superuser') = 'on'{granted}"
)
# The one-row parents of new stock and ledger rows, KEY SHARE-locked as the foreign-key checks would.
_SNAPSHOT_PARENTS_SQL = (
    "SELECT (SELECT count(*) FROM (SELECT 1 FROM {location} WHERE id = %s FOR KEY SHARE) AS l)"
    " + (SELECT count(*) FROM (SELECT 1 FROM {user} WHERE id = %s FOR KEY SHARE) AS u)"
    " + (SELECT count(*) FROM (SELECT 1 FROM {api_key} WHERE id = %s FOR KEY SHARE) AS k)"
)
# PostgreSQL: rows planned and sent per round of statements. The statements are queued in
# pipeline mode, so the server applies one chunk while Python plans the next.
SNAPSHOT_PG_CHUNK = 10_000


class _SnapshotWriter:
    """Sends a snapshot's statements on PostgreSQL: set-based, each fed by whole-number arrays
    (no per-row SQL, no rows built in Python), queued in pipeline mode.

    Foreign keys: Django's are deferred triggers that look up and KEY SHARE-lock the parent row
    once per inserted row at COMMIT: 100,000 look-ups (1.1 s) for a location's first 50,000
    stock rows, 50,000 (0.2 s) for ledger rows written by an API key. Here the parents are
    locked as sets instead (the location and actor rows up front, checked before anything is
    inserted; the new stock rows' items as `_item_ids` finds them), which gives the same
    guarantee, and the snapshot's writes (its UPDATEs and INSERTs, nothing else) run with
    `session_replication_role = replica`, which fires no triggers. That takes a superuser or,
    on PostgreSQL 15+, `GRANT SET ON PARAMETER session_replication_role TO <app role>`;
    without it the triggers run as usual."""

    def __init__(self, location_id: int, reference: str, actor: Actor, *, skip_fk_triggers: bool, restore_role: str):
        self.location_id = location_id
        self.skip = skip_fk_triggers
        self.restore_role = restore_role
        self.cursor = connection.cursor()
        self.now = timezone.now()
        a = actor.as_fields()
        self.ledger_fixed = [
            MovementReason.SNAPSHOT.value,
            reference[:200],
            self.now,
            a["actor_type"],
            a["actor_label"],
            a["actor_user_id"],
            a["actor_api_key_id"],
        ]
        if self.skip:
            self.cursor.execute("SET LOCAL session_replication_role = replica")

    def send(self, plan: _SnapshotPlan) -> None:
        execute = self.cursor.execute
        if plan.update_ids:
            # The ids come in pk order: their bounds let PostgreSQL read just this chunk's
            # range of the primary key (the location names the rows it may touch).
            execute(
                "UPDATE inventory_stock SET on_hand = v.on_hand, safety_stock = v.safety_stock, updated_at = %s "
                "FROM unnest(%s::bigint[], %s::integer[], %s::integer[]) AS v(id, on_hand, safety_stock) "
                "WHERE inventory_stock.id = v.id AND inventory_stock.location_id = %s "
                "AND inventory_stock.id BETWEEN %s AND %s",
                [
                    self.now,
                    _pg_array(plan.update_ids),
                    _pg_array(plan.update_on_hand),
                    _pg_array(plan.update_safety),
                    self.location_id,
                    plan.update_ids[0],
                    plan.update_ids[-1],
                ],
            )
        if plan.create_items:
            execute(
                "INSERT INTO inventory_stock (location_id, item_id, on_hand, reserved, safety_stock, updated_at) "
                "SELECT %s, v.item_id, v.on_hand, 0, v.safety_stock, %s "
                "FROM unnest(%s::bigint[], %s::integer[], %s::integer[]) AS v(item_id, on_hand, safety_stock)",
                [
                    self.location_id,
                    self.now,
                    _pg_array(plan.create_items),
                    _pg_array(plan.create_on_hand),
                    _pg_array(plan.create_safety),
                ],
            )
        if plan.ledger_items:
            execute(
                f"INSERT INTO inventory_stockmovement ({_LEDGER_COLUMNS}) "
                "SELECT %s, v.item_id, v.delta, 0, v.on_hand, v.reserved, %s, '', %s, %s, %s, %s, %s, %s "
                "FROM unnest(%s::bigint[], %s::integer[], %s::integer[], %s::integer[]) "
                "AS v(item_id, delta, on_hand, reserved)",
                [
                    self.location_id,
                    *self.ledger_fixed,
                    _pg_array(plan.ledger_items),
                    _pg_array(plan.ledger_delta),
                    _pg_array(plan.ledger_on_hand),
                    _pg_array(plan.ledger_reserved),
                ],
            )

    def finish(self) -> None:
        if self.skip:
            # Back to the session's role before anything else runs in this transaction (on an
            # error the rollback restores it).
            self.cursor.execute("SELECT set_config('session_replication_role', %s, true)", [self.restore_role])


def _snapshot_postgres(
    location: Location, read: Callable[[], SnapshotCount], actor: Actor, tally: _SnapshotTally
) -> None:
    """Lock, read, plan and write in one pipeline, chunk by chunk: Python reads the count while
    the server locks the rows, waits only for the locked rows and new SKUs' ids, and plans the
    next chunk while the server writes the last. A short or unknown SKU found after some
    chunks went out rolls them back with the rest."""
    connection.ensure_connection()
    granted = (
        " OR has_parameter_privilege('session_replication_role', 'SET')" if connection.pg_version >= 150000 else ""
    )
    actor_field = StockMovement._meta.get_field
    parents_sql = _SNAPSHOT_PARENTS_SQL.format(
        location=Location._meta.db_table,
        user=actor_field("actor_user").related_model._meta.db_table,
        api_key=actor_field("actor_api_key").related_model._meta.db_table,
    )
    with connection.wrap_database_errors, connection.connection.pipeline():
        role, parents, locked = connection.cursor(), connection.cursor(), connection.cursor()
        role.execute(_SNAPSHOT_ROLE_SQL.format(granted=granted))
        parents.execute(parents_sql, [location.pk, actor.user_id, actor.api_key_id])
        locked.execute("SET LOCAL work_mem = '64MB'")  # the pk sort of 50,000 rows in memory
        locked.execute(_SNAPSHOT_LOCK_SQL, [location.pk])
        count = tally.read(read)
        counts = count.counts
        restore_role, may_skip = role.fetchone()
        parents_locked = parents.fetchone()[0] == 1 + (actor.user_id is not None) + (actor.api_key_id is not None)
        rows = locked.fetchall()
        writer = _SnapshotWriter(
            location.pk, count.reference, actor, skip_fk_triggers=may_skip and parents_locked, restore_role=restore_role
        )
        for start in range(0, len(rows), SNAPSHOT_PG_CHUNK):
            plan = _plan_stocked(rows[start : start + SNAPSHOT_PG_CHUNK], counts, tally)
            if not tally.short:  # once a row is short nothing will be written: stop sending
                writer.send(plan)
            tally.add(plan)
        new_items = _new_item_ids(unstocked) if (unstocked := _unstocked(counts, rows, tally)) else {}
        tally.raise_if_short()
        for start in range(0, len(unstocked), SNAPSHOT_PG_CHUNK):
            plan = _plan_new(unstocked[start : start + SNAPSHOT_PG_CHUNK], counts, new_items)
            writer.send(plan)
            tally.add(plan)
        tally.name(location, rows, new_items)
        writer.finish()


def _snapshot_generic(
    location: Location, read: Callable[[], SnapshotCount], actor: Actor, tally: _SnapshotTally
) -> None:
    """SQLite (and any other database): the same plan, written in VALUES batches."""
    count = tally.read(read)
    counts = count.counts
    rows = list(
        stock_for_update(location=location).values_list(
            "item__sku", "item_id", "id", "on_hand", "reserved", "safety_stock"
        )
    )
    stocked = _plan_stocked(rows, counts, tally)
    new_items = _new_item_ids(unstocked) if (unstocked := _unstocked(counts, rows, tally)) else {}
    tally.raise_if_short()
    now = timezone.now()
    for plan in (stocked, _plan_new(unstocked, counts, new_items)):
        tally.add(plan)
        _snapshot_write_generic(location.pk, plan, now, count.reference, actor)
    tally.name(location, rows, new_items)


def _snapshot_write_generic(location_id: int, plan: _SnapshotPlan, now, reference: str, actor: Actor) -> None:
    with connection.cursor() as cursor:
        updates = list(zip(plan.update_ids, plan.update_on_hand, plan.update_safety, strict=True))
        for start in range(0, len(updates), SNAPSHOT_CHUNK):
            chunk = updates[start : start + SNAPSHOT_CHUNK]
            values = ", ".join(["(%s, %s, %s)"] * len(chunk))
            params = [v for row in chunk for v in row]
            # Portable bulk update: UPDATE … FROM (VALUES …) works on SQLite ≥ 3.33 too.
            cursor.execute(
                f"UPDATE inventory_stock SET on_hand = v.column2, safety_stock = v.column3, "
                f"updated_at = %s FROM (VALUES {values}) AS v "
                f"WHERE inventory_stock.id = v.column1",
                [now, *params],
            )
    Stock.objects.bulk_create(
        [
            Stock(location_id=location_id, item_id=item_id, on_hand=on_hand, safety_stock=safety, updated_at=now)
            for item_id, on_hand, safety in zip(plan.create_items, plan.create_on_hand, plan.create_safety, strict=True)
        ],
        batch_size=SNAPSHOT_CHUNK,
    )
    actor_fields = actor.as_fields()
    ledger = zip(plan.ledger_items, plan.ledger_delta, plan.ledger_on_hand, plan.ledger_reserved, strict=True)
    StockMovement.objects.bulk_create(
        [
            StockMovement(
                location_id=location_id,
                item_id=item_id,
                delta_on_hand=delta,
                on_hand_after=on_hand,
                reserved_after=reserved,
                reason=MovementReason.SNAPSHOT,
                reference=reference[:200],
                created_at=now,
                **actor_fields,
            )
            for item_id, delta, on_hand, reserved in ledger
        ],
        batch_size=SNAPSHOT_CHUNK,
    )


def stock_snapshot(
    *,
    location: Location,
    actor: Actor,
    counts: dict[str, tuple[int, int | None]] | None = None,
    reference: str = "",
    full: bool = True,
    read: Callable[[], SnapshotCount] | None = None,
) -> SnapshotResult:
    """Replace one location's stock with a full count: {sku: (on_hand, safety_stock|None)}.

    With `full`, SKUs the location holds but the snapshot omits are counted as zero.
    Bulk statements (no per-row saves) so tens of thousands of rows fit in one request.
    The location's stock rows are locked (in pk order) before they are compared, so the
    deltas written to the ledger are exact whatever reserves run concurrently. Unknown SKUs
    (400) and counts below reserved (409) change nothing.

    Instead of counts, full and reference, a caller may pass `read`, which returns them: on
    PostgreSQL it is called while the server locks the location's rows, so the API parses a
    large body meanwhile; whatever it raises rolls the transaction back.
    """
    if read is None:
        count = SnapshotCount(counts or {}, full, reference)

        def read() -> SnapshotCount:
            return count

    tally = _SnapshotTally()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            _snapshot_postgres(location, read, actor, tally)
        else:
            _snapshot_generic(location, read, actor, tally)
        _publish_changes({location.pk: tally.ledger_items}, cause="snapshot", known=tally.known)
        _stock_arrived(tally.arrived)
    return tally.result


@transaction.atomic
def stock_set_safety_stock(*, stock_id: int, safety_stock: int, actor: Actor) -> Stock:
    """Change the units held back at one location. Only that column is written (a full save
    would write back stale counters); what can be sold changes, so channels are told."""
    if safety_stock < 0:
        raise ValidationFailed("Safety stock cannot be negative.", fields={"safety_stock": "Must be ≥ 0."})
    row = stock_for_update(pk=stock_id).first()
    if row is None:
        raise NotFound("No such stock row.")
    if row.safety_stock != safety_stock:
        Stock.objects.filter(pk=stock_id).update(safety_stock=safety_stock, updated_at=timezone.now())
        row.safety_stock = safety_stock
        _publish_changes({row.location_id: [row.item_id]}, cause="safety_stock")
    return row


# --- Incoming supply ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SupplyLine:
    location: Location
    item: Item
    quantity: int
    expected_date: date
    reference: str


@transaction.atomic
def supply_upsert(*, lines: Sequence[SupplyLine]) -> list[IncomingSupply]:
    """Record or update expected supply; the (reference, location, sku) triple is the key."""
    atp_cache.stock_changed({line.item.pk for line in lines})  # the incoming dates storefronts see
    out = []
    for line in lines:
        supply, created = IncomingSupply.objects.select_for_update().get_or_create(
            reference=line.reference,
            location=line.location,
            item=line.item,
            defaults={"quantity": line.quantity, "expected_date": line.expected_date},
        )
        if not created:
            if line.quantity < supply.quantity_received:
                raise Conflict(
                    f"{line.reference}/{line.item.sku}: quantity {line.quantity} is below the "
                    f"{supply.quantity_received} already received.",
                    fields={"quantity": "Below quantity already received."},
                )
            supply.quantity = line.quantity
            supply.expected_date = line.expected_date
            if supply.status == IncomingSupply.Status.RECEIVED and supply.quantity_open > 0:
                supply.status = IncomingSupply.Status.OPEN
            supply.save(update_fields=["quantity", "expected_date", "status", "updated_at"])
        out.append(supply)
    return out


@transaction.atomic
def supply_receive(*, supply_id: int, quantity: int, actor: Actor) -> IncomingSupply:
    """Receive expected supply into on hand at its location."""
    supply = (
        IncomingSupply.objects.select_for_update(of=("self",))
        .select_related("item", "location")
        .filter(pk=supply_id)
        .first()
    )
    if supply is None:
        raise NotFound("No such incoming supply.")
    if supply.status != IncomingSupply.Status.OPEN:
        raise Conflict(f"Supply {supply.reference} is {supply.status}.")
    if quantity <= 0 or quantity > supply.quantity_open:
        raise ValidationFailed(
            f"Quantity must be between 1 and {supply.quantity_open}.",
            fields={"quantity": f"Between 1 and {supply.quantity_open}."},
        )
    ids = _stock_ids([(supply.location_id, supply.item_id)], create=True)
    ledger = _apply_movements(
        [
            _Movement(
                stock_id=ids[(supply.location_id, supply.item_id)],
                location_id=supply.location_id,
                item_id=supply.item_id,
                delta_on_hand=quantity,
                delta_reserved=0,
                reason=MovementReason.RECEIPT,
                reference=supply.reference,
            )
        ],
        actor=actor,
    )
    supply.quantity_received += quantity
    if supply.quantity_open == 0:
        supply.status = IncomingSupply.Status.RECEIVED
    supply.save(update_fields=["quantity_received", "status", "updated_at"])
    _publish_stock_changed(ledger, cause="receipt")
    _stock_arrived({supply.item_id})
    return supply


# --- Cart reservations -------------------------------------------------------------------------

MAX_PLAN_ATTEMPTS = 3


def _plan_in_channel(
    channel: Channel,
    wanted: dict[int, int],
    *,
    location_ids: Sequence[int] | None,
    capability: str | None,
    known: _Known | None = None,
) -> tuple[list[StockLine], dict[int, int]]:
    """Spread each item over the channel's active locations: preferred (lower priority
    number) first, then the deepest stock. Returns the plan and what it could not cover."""

    def in_channel():  # built only when the statement is compiled, not on every plan
        locations = channel.locations.filter(active=True)
        return locations if location_ids is None else locations.filter(pk__in=location_ids)

    rows = prepared_rows(  # compiled once per channel (and pickup location) and prepared
        ("plan", channel.pk, tuple(location_ids) if location_ids is not None else None),
        lambda ids: Stock.objects.filter(item_id__in=ids, location__in=in_channel()).values_list(
            "item_id",
            "location_id",
            "location__priority",
            "location__capabilities",
            "on_hand",
            "reserved",
            "safety_stock",
            "id",
            "location__code",
        ),
        list(wanted),
    )
    candidates: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for item_id, loc_id, priority, capabilities, on_hand, reserved, safety, stock_id, code in rows:
        if known is not None:
            known.ids[(loc_id, item_id)] = stock_id
            known.codes[loc_id] = code
        available = on_hand - reserved - safety
        if available > 0 and (capability is None or capability in (capabilities or [])):
            candidates[item_id].append((priority, -available, loc_id))
    plan: list[StockLine] = []
    short: dict[int, int] = {}
    for item_id, quantity in sorted(wanted.items()):
        remaining = quantity
        for _, neg_available, loc_id in sorted(candidates[item_id]):
            take = min(remaining, -neg_available)
            plan.append(StockLine(loc_id, item_id, take))
            remaining -= take
            if remaining == 0:
                break
        if remaining:
            short[item_id] = remaining
    return plan, short


def stock_reserve_in_channel(
    *,
    channel: Channel,
    wanted: dict[int, int],
    actor: Actor,
    reference: str,
    location_ids: Sequence[int] | None = None,
    capability: str | None = None,
    allow_partial: bool = False,
    skus: Mapping[int, str] | None = None,
) -> tuple[list[StockLine], dict[int, int]]:
    """Hold {item_id: quantity} somewhere in the channel's network (or at `location_ids`).

    Returns (what was reserved where, what could not be: {item_id: units}). Without
    `allow_partial` a shortfall raises InsufficientStock and nothing is held. Plans from a
    plain read, then reserves with conditional updates; if someone took the stock in between,
    it plans again. Expired carts are swept only when the plan comes up short (they are all
    that could make it short for no reason): until then, and until the 30 s beat sweep, an
    expired cart's units may make a sale come from a less preferred location.

    `skus` ({item id: SKU}, when the caller has them) names the items in the stock event
    without reading them again."""
    swept = False
    for attempt in range(MAX_PLAN_ATTEMPTS):
        known = _Known(skus=dict(skus or {}))
        plan, short = _plan_in_channel(channel, wanted, location_ids=location_ids, capability=capability, known=known)
        if short and not swept:
            swept = True
            if release_expired_reservations(item_ids=set(short)):
                known = _Known(skus=known.skus)
                plan, short = _plan_in_channel(
                    channel, wanted, location_ids=location_ids, capability=capability, known=known
                )
        if short and not allow_partial:
            skus = _sku_names(short)
            raise InsufficientStock(f"Not enough available in channel {channel.code} for {', '.join(skus)}.", skus=skus)
        if not plan:
            return [], short
        try:
            # No savepoint: a rejected reserve undoes its own updates and writes nothing else.
            stock_reserve(
                lines=plan, actor=actor, reference=reference, sweep_expired=False, known=known, savepoint=False
            )
            return plan, short
        except InsufficientStock:
            if attempt == MAX_PLAN_ATTEMPTS - 1:
                if allow_partial:  # still contended: backorder rather than fail the sale
                    return [], dict(wanted)
                raise
    raise AssertionError("unreachable")


@transaction.atomic
def cart_reservation_put(
    *, channel: Channel, key: str, lines: dict[int, int], ttl_seconds: int, actor: Actor
) -> tuple[Reservation, bool]:
    """Create or replace the cart reservation `key` for `channel`: {item_id: quantity}.

    The same lines again (a retry) only extend the expiry; other lines re-plan the whole
    cart, releasing and reserving in one transaction.
    """
    expires_at = timezone.now() + timedelta(seconds=ttl_seconds)
    reservation = reservation_for_update(channel=channel, key=key).first()
    created = reservation is None
    if reservation is None:
        try:
            with transaction.atomic():
                reservation = Reservation.objects.create(channel=channel, key=key, expires_at=expires_at)
        except IntegrityError:
            raise Conflict(f"Reservation '{key}' is being created by a concurrent request.") from None
    elif reservation.status != Reservation.Status.ACTIVE:
        raise Conflict(f"Reservation '{key}' is already {reservation.status}.", fields={"key": "Not active."})
    else:
        held: dict[int, int] = defaultdict(int)
        for item_id, quantity in reservation.lines.values_list("item_id", "quantity"):
            held[item_id] += quantity
        # Extend first: the expiry sweep inside stock_reserve must not take this cart for expired.
        reservation.expires_at = expires_at
        reservation.save(update_fields=["expires_at", "updated_at"])
        if held == lines:
            return reservation, False
        _release_reservation_lines(reservation, actor=actor, reason=MovementReason.RELEASE)
    plan, _ = stock_reserve_in_channel(
        channel=channel, wanted=lines, actor=actor, reference=f"cart:{channel.code}:{key}"
    )
    ReservationLine.objects.bulk_create(
        [
            ReservationLine(
                reservation=reservation,
                location_id=p.location_id,
                item_id=p.item_id,
                quantity=p.quantity,
            )
            for p in plan
        ]
    )
    return reservation, created


def _release_reservation_lines(reservation: Reservation, *, actor: Actor, reason: str) -> None:
    lines = list(reservation.lines.all())
    if lines:
        stock_release(
            lines=[StockLine(line.location_id, line.item_id, line.quantity) for line in lines],
            actor=actor,
            reference=f"cart:{reservation.channel.code}:{reservation.key}",
            reason=reason,
        )
        reservation.lines.all().delete()


@transaction.atomic
def cart_reservation_release(*, channel: Channel, key: str, actor: Actor) -> Reservation:
    reservation = reservation_for_update(channel=channel, key=key).first()
    if reservation is None:
        raise NotFound(f"No reservation '{key}' in channel {channel.code}.")
    if reservation.status != Reservation.Status.ACTIVE:
        raise Conflict(f"Reservation '{key}' is already {reservation.status}.")
    _release_reservation_lines(reservation, actor=actor, reason=MovementReason.RELEASE)
    reservation.status = Reservation.Status.RELEASED
    reservation.save(update_fields=["status", "updated_at"])
    return reservation


def cart_reservation_convert(*, channel: Channel, key: str) -> list[ReservationLine]:
    """Hand a cart's held stock over to an order (call inside the order's transaction).

    The stock stays reserved; the order records the same lines as its own allocation."""
    reservation = reservation_for_update(channel=channel, key=key).first()
    if reservation is None:
        raise ValidationFailed(f"No reservation '{key}'.", fields={"reservation_key": "Not found."})
    if reservation.status != Reservation.Status.ACTIVE or reservation.expires_at <= timezone.now():
        raise Conflict(
            f"Reservation '{key}' is no longer active.",
            fields={"reservation_key": "Expired or used."},
        )
    reservation.status = Reservation.Status.CONVERTED
    reservation.save(update_fields=["status", "updated_at"])
    return list(reservation.lines.select_related("item", "location"))


def release_expired_reservations(*, item_ids: set[int] | None = None, actor: Actor | None = None) -> int:
    """Release cart reservations past their expiry. Run by beat, and before reserving so an
    expired cart never blocks a sale."""
    now = timezone.now()
    expired = Reservation.objects.filter(status=Reservation.Status.ACTIVE, expires_at__lte=now)
    if item_ids is not None:
        expired = expired.filter(lines__item_id__in=item_ids)
    ids = list(expired.values_list("id", flat=True).distinct()[:500])
    actor = actor or Actor.for_task("inventory.release_expired_reservations")
    count = 0
    for reservation_id in ids:
        with transaction.atomic():
            reservation = (
                reservation_for_update(pk=reservation_id, status=Reservation.Status.ACTIVE, expires_at__lte=now)
                .select_related("channel")
                .first()
            )
            if reservation is None:
                continue
            _release_reservation_lines(reservation, actor=actor, reason=MovementReason.EXPIRE)
            reservation.status = Reservation.Status.EXPIRED
            reservation.save(update_fields=["status", "updated_at"])
            count += 1
    return count
