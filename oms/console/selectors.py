"""Console reads: the search box, the order page, the work queues, stock lookups, a customer.

Each function loads what one page shows in a fixed number of queries, however many orders,
lines, fulfilments or events there are (the tests assert the counts).

Search is built for a million orders on PostgreSQL. The one box is never a single OR across
tables (that defeats every index); each kind of match is its own indexed lookup, and the page
is then filtered by the order ids and customer ids they found:

* order number, channel order id, tracking number: exact (btree);
* email: exact when the term has an "@" (unique btree), otherwise "contains" (trigram GIN);
* phone: the last ten digits, whatever the punctuation: `phone_digits` ends with them (trigram GIN);
* name: "contains", case-insensitive (trigram GIN on UPPER(name)).

The trigram indexes exist on PostgreSQL only (`orders/migrations/0008_console_search_indexes`);
SQLite answers the same queries by scanning. Result counts stop at COUNT_CAP ("250+") so a
broad filter never counts a million rows.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import BooleanField, Count, Exists, F, FloatField, Min, OuterRef, Prefetch, Q, QuerySet, Sum
from django.db.models.expressions import RawSQL
from django.utils import timezone

from inventory.models import Capability, Channel, IncomingSupply, Item, Location, Stock
from inventory.selectors import Near, availability_breakdown, channel_availability
from oms.models import OutboxMessage, OutboxStatus
from orders.models import (
    PRE_SHIPMENT_STATES,
    REJECTABLE,
    Allocation,
    Customer,
    Fulfillment,
    FulfillmentLine,
    FulfillmentStatus,
    HoldType,
    Order,
    OrderEvent,
    OrderHold,
    OrderLine,
    OrderStatus,
    Shipment,
    ShipmentLine,
    TrackingEvent,
)
from returns.models import (
    Appeasement,
    AppeasementStatus,
    Refund,
    Return,
    ReturnLine,
    ReturnReceipt,
    ReturnReceiptLine,
)
from routing.models import RoutingDecision

PAGE_SIZE = 25
# Counts stop here ("250+"): counting further costs more than it tells a CSR, who narrows the
# search instead. Pages go on to MAX_RESULTS.
COUNT_CAP = 250
MAX_RESULTS = 1000
CUSTOMER_CAP = 500  # customers a "contains" term may match before the CSR is asked to narrow it
BACKORDER_STATES = (OrderStatus.BACKORDERED, OrderStatus.PARTIALLY_ALLOCATED)
NUMBER_RE = re.compile(r"^([A-Z0-9]{2})-?([A-Z0-9]{7})$")
PHONE_RE = re.compile(r"^[\d\s+().\-/]+$")

# Sorts an index serves together with every filter ((status|channel, created_at), created_at).
# Sorting by total was tried and dropped: with a selective filter PostgreSQL walks a total index
# row by row (0.4 s at a million orders), and an index per filter is too much write cost for it.
SORTS = {
    "newest": ("-created_at", "-id"),
    "oldest": ("created_at", "id"),
}
SORT_LABELS = {
    "newest": "Newest first",
    "oldest": "Oldest first",
}


# --- Search ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchParams:
    q: str = ""
    channel: Channel | None = None
    status: str = ""
    created_from: date | None = None
    created_to: date | None = None
    location: Location | None = None
    on_hold: bool = False
    backordered: bool = False
    late: bool = False
    sort: str = "newest"
    page: int = 1

    @property
    def has_criteria(self) -> bool:
        return bool(
            self.q
            or self.channel
            or self.status
            or self.created_from
            or self.created_to
            or self.location
            or self.on_hold
            or self.backordered
            or self.late
        )


@dataclass
class SearchResult:
    orders: list[Order]
    page: int
    has_next: bool
    total: int  # capped at COUNT_CAP
    matched: list[str] = field(default_factory=list)  # which kinds of match the term hit
    customer: Customer | None = None  # the term named exactly one customer
    too_broad: bool = False  # the term matched more than CUSTOMER_CAP customers

    @property
    def total_label(self) -> str:
        return f"{COUNT_CAP:,}+" if self.total > COUNT_CAP else f"{self.total:,}"

    @property
    def has_previous(self) -> bool:
        return self.page > 1


def normalise_number(term: str) -> str | None:
    """ "we7k3qxr2", "WE 7K3QXR2" and "WE-7K3QXR2" are the same order number."""
    match = NUMBER_RE.match(term.upper().replace(" ", ""))
    return f"{match[1]}-{match[2]}" if match else None


def phone_suffix(term: str) -> str | None:
    """The digits a phone search matches at the end of `phone_digits`: the last ten, so a
    number typed with or without its country code finds the same customer."""
    if not PHONE_RE.match(term):
        return None
    digits = Customer.digits(term)
    return digits[-10:] if len(digits) >= 7 else None


def _term_lookups(term: str) -> tuple[set[int], list[int], list[str], bool]:
    """Order ids and customer ids the box matches, one indexed lookup per kind of match."""
    matched: list[str] = []
    order_ids = set()
    if "@" not in term:  # an email is nothing else
        order_q = Q(external_id=term)
        number = normalise_number(term)
        if number:
            order_q |= Q(number=number)
        for pk, num in Order.objects.filter(order_q).values_list("id", "number")[:CUSTOMER_CAP]:
            order_ids.add(pk)
            matched.append("order number" if num == number else "channel order id")
        if "order number" in matched:
            return order_ids, [], ["order number"], False  # an order number is nothing else either
        compact = term.replace(" ", "")
        tracked = set(
            Shipment.objects.filter(tracking_number__in={term, compact, compact.upper()}).values_list(
                "fulfillment__order_id", flat=True
            )[:CUSTOMER_CAP]
        )
        if tracked:
            matched.append("tracking number")
            order_ids |= tracked

    customer_q = Q()
    kinds = []
    if "@" in term:
        email = Customer.normalise_email(term)
        customer_q |= Q(email=email) | Q(email__contains=email)  # exact (btree) or part (trigram)
        kinds.append("email")
    elif len(term) >= 3 and " " not in term:
        customer_q |= Q(email__contains=term.lower())
        kinds.append("email")
    suffix = phone_suffix(term)
    if suffix:
        customer_q |= Q(phone_digits__endswith=suffix)
        kinds.append("phone")
    if len(term) >= 3 and any(ch.isalpha() for ch in term) and "@" not in term:
        customer_q |= Q(name__icontains=term)
        kinds.append("name")
    customer_ids: list[int] = []
    too_broad = False
    if kinds:
        rows = list(
            Customer.objects.filter(customer_q).values_list("id", "email", "name", "phone_digits")[: CUSTOMER_CAP + 1]
        )
        too_broad = len(rows) > CUSTOMER_CAP
        rows = rows[:CUSTOMER_CAP]
        customer_ids = [row[0] for row in rows]
        lowered = term.lower()
        for _, email, name, digits in rows:  # say which field matched, for the CSR
            if "email" in kinds and lowered in email:
                matched.append("email")
            if "name" in kinds and lowered in name.lower():
                matched.append("name")
            if suffix and digits.endswith(suffix):
                matched.append("phone")
    if not order_ids and not customer_ids and "name" in kinds and connection.vendor == "postgresql":
        customer_ids = similar_names(term)  # "Lovelase" still finds Ada Lovelace
        if customer_ids:
            matched.append("similar name")
    return order_ids, customer_ids, sorted(set(matched)), too_broad


SIMILAR_NAMES = 50


def similar_names(term: str) -> list[int]:
    """Customers whose name is trigram-similar to `term` (pg_trgm's % operator, served by the
    UPPER(name) trigram index), most similar first: the fallback when nothing contains it."""
    similar = RawSQL("UPPER(orders_customer.name) %% UPPER(%s)", [term], output_field=BooleanField())
    score = RawSQL("similarity(UPPER(orders_customer.name), UPPER(%s))", [term], output_field=FloatField())
    return list(
        Customer.objects.filter(similar)
        .annotate(score=score)
        .order_by("-score", "id")
        .values_list("id", flat=True)[:SIMILAR_NAMES]
    )


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def search_queryset(params: SearchParams) -> tuple[QuerySet[Order], dict]:
    """The filtered, sorted orders for `params` and what the term matched."""
    qs = Order.objects.all()
    info = {"matched": [], "customer_ids": [], "too_broad": False}
    term = params.q.strip()
    if term:
        order_ids, customer_ids, matched, too_broad = _term_lookups(term)
        info.update(matched=matched, customer_ids=customer_ids, too_broad=too_broad)
        if not order_ids and not customer_ids:
            return Order.objects.none(), info
        match = Q(pk__in=order_ids) if order_ids else Q()
        if customer_ids:
            match = (match | Q(customer_id__in=customer_ids)) if order_ids else Q(customer_id__in=customer_ids)
        qs = qs.filter(match)
    if params.channel is not None:
        qs = qs.filter(channel=params.channel)
    if params.status:
        qs = qs.filter(status=params.status)
    if params.on_hold:
        qs = qs.filter(status=OrderStatus.ON_HOLD)
    if params.backordered:
        qs = qs.filter(status__in=BACKORDER_STATES)
    if params.created_from:
        qs = qs.filter(created_at__gte=_day_start(params.created_from))
    if params.created_to:
        qs = qs.filter(created_at__lt=_day_start(params.created_to + timedelta(days=1)))
    if params.location is not None:
        qs = qs.filter(Exists(Fulfillment.objects.filter(order_id=OuterRef("pk"), location=params.location)))
    if params.late:
        # Overdue now: not yet picked and past the due time (the (status, due_at) index).
        qs = qs.filter(pk__in=Fulfillment.objects.overdue(timezone.now()).values("order_id"))
    return qs.order_by(*SORTS.get(params.sort, SORTS["newest"])), info


def order_search(params: SearchParams, *, page_size: int | None = None) -> SearchResult:
    """One page of results: the same selector serves the console page and the benchmark."""
    page_size = page_size or PAGE_SIZE
    qs, info = search_queryset(params)
    page = max(1, min(params.page, MAX_RESULTS // page_size))
    start = (page - 1) * page_size
    # Ids first, from the orders table alone, then the rows with their joins: joined before the
    # sort, PostgreSQL may join every match (a million, unfiltered) to find the top 25.
    ids = list(qs.values_list("pk", flat=True)[start : start + page_size + 1])
    fulfillments = Fulfillment.objects.select_related("location").only(
        "id", "order_id", "status", "due_at", "late_at", "location__code", "location__name"
    )
    by_id = (
        {
            o.pk: o
            for o in Order.objects.filter(pk__in=ids)
            .select_related("channel", "customer")
            .prefetch_related(Prefetch("fulfillments", fulfillments))
        }
        if ids
        else {}
    )
    rows = [by_id[pk] for pk in ids]
    now = timezone.now()
    for order in rows:
        order.late = any(f.is_late(now) for f in order.fulfillments.all())
    has_next = len(rows) > page_size and start + page_size < MAX_RESULTS
    rows = rows[:page_size]
    if not rows and page == 1:
        total = 0
    elif not has_next and len(rows) <= page_size:
        total = start + len(rows)  # the last page: no need to count
    elif start + page_size > COUNT_CAP:
        total = COUNT_CAP + 1  # beyond the cap already
    else:
        total = qs.order_by()[: COUNT_CAP + 1].count()
    customer = None
    if len(info["customer_ids"]) == 1:
        customer = next((o.customer for o in rows if o.customer_id == info["customer_ids"][0]), None)
    return SearchResult(
        orders=rows,
        page=page,
        has_next=has_next,
        total=total,
        matched=info["matched"],
        customer=customer,
        too_broad=info["too_broad"],
    )


# --- The order page --------------------------------------------------------------------------


@dataclass
class LineView:
    line: OrderLine
    held_at: list[Allocation]

    @property
    def backordered(self) -> int:
        return self.line.quantity_backordered


@dataclass
class OrderPage:
    order: Order
    lines: list[OrderLine]
    fulfillments: list[Fulfillment]
    decisions: list[RoutingDecision]
    active_holds: list[OrderHold]
    released_holds: list[OrderHold]
    events: list[OrderEvent]
    notes: list[OrderEvent]
    refunds: list[OrderEvent]
    partner_messages: dict[int, OutboxMessage]
    line_skus: dict[str, str]
    location_names: dict[str, str]

    @property
    def decision(self) -> RoutingDecision | None:
        return self.decisions[0] if self.decisions else None

    @property
    def actions(self) -> dict[str, bool]:
        """Which actions make sense in the order's state (the services still have the last word)."""
        status = self.order.status
        closed = status in (OrderStatus.SHIPPED, OrderStatus.COMPLETED, OrderStatus.CANCELLED)
        shipped = any(line.quantity_shipped for line in self.lines)
        before_shipment = status in (*PRE_SHIPMENT_STATES, OrderStatus.ON_HOLD)
        return {
            "cancel": not closed and any(line.quantity_open for line in self.lines),
            "hold": before_shipment,
            "release": status == OrderStatus.ON_HOLD,
            "address": before_shipment and not shipped and not self.order.is_pickup,
            "route_again": status in BACKORDER_STATES,
            "create_return": any(line.quantity_shipped > line.quantity_returned for line in self.lines),
            "appease": status != OrderStatus.CANCELLED or any(p.amount_captured for p in self.order.payments.all()),
        }

    @property
    def pending_appeasements(self) -> list[Appeasement]:
        return [a for a in self.order.appeasements.all() if a.status == AppeasementStatus.PENDING_APPROVAL]

    @property
    def totals(self) -> dict[str, Decimal]:
        payments = list(self.order.payments.all())
        return {
            name: sum((getattr(p, f"amount_{name}") for p in payments), Decimal(0))
            for name in ("authorized", "captured", "voided", "refunded")
        }

    @property
    def why(self) -> list[dict]:
        """The latest decision's explanation, shaped for the page."""
        return explanation_view(self.decision.explanation, self.line_skus) if self.decision else []


MONEY_EVENTS = ("order.cancelled",)
# A return with its lines (reason, order line), where it comes back to, its exchange order and
# its receipts (where, by whom, each row's condition and disposition).
RETURNS = Return.objects.select_related("location", "exchange_order").prefetch_related(
    Prefetch("lines", ReturnLine.objects.select_related("order_line", "reason")),
    Prefetch(
        "receipts",
        ReturnReceipt.objects.select_related("location").prefetch_related(
            Prefetch("lines", ReturnReceiptLine.objects.select_related("return_line__order_line"))
        ),
    ),
)


def order_page(number: str) -> OrderPage | None:
    """Everything the order page shows, in a fixed number of queries."""
    shipments = Shipment.objects.select_related("carrier_account").prefetch_related(
        Prefetch("lines", ShipmentLine.objects.select_related("fulfillment_line__line")),
        Prefetch("tracking_events", TrackingEvent.objects.order_by("-occurred_at", "-id")),
    )
    order = (
        Order.objects.select_related("channel", "customer", "pickup_location", "exchange_for__order")
        .prefetch_related(
            Prefetch(
                "lines",
                OrderLine.objects.select_related("item").prefetch_related(
                    Prefetch("allocations", Allocation.objects.select_related("location").order_by("location__code"))
                ),
            ),
            "payments",
            Prefetch("holds", OrderHold.objects.order_by("-id")),
            Prefetch("events", OrderEvent.objects.order_by("-id")),
            Prefetch(
                "fulfillments",
                Fulfillment.objects.select_related("location", "transfer_to").prefetch_related(
                    Prefetch("lines", FulfillmentLine.objects.select_related("line")),
                    Prefetch("shipments", shipments),
                ),
            ),
            Prefetch("routing_decisions", RoutingDecision.objects.select_related("version__profile")),
            Prefetch("returns", RETURNS.order_by("-id")),
            Prefetch("refunds", Refund.objects.select_related("payment", "rma", "appeasement").order_by("id")),
            Prefetch("appeasements", Appeasement.objects.select_related("reason").order_by("-id")),
        )
        .filter(number=number)
        .first()
    )
    if order is None:
        return None
    lines = list(order.lines.all())
    fulfillments = list(order.fulfillments.all())
    holds = list(order.holds.all())
    events = list(order.events.all())
    waiting = [
        f.pk
        for f in fulfillments
        if f.status == FulfillmentStatus.CREATED and f.location.connector == Location.Connector.WEBHOOK
    ]
    partner_messages = {}
    if waiting:
        for msg in OutboxMessage.objects.filter(
            topic="orders.send_fulfillment", payload__fulfillment_id__in=waiting
        ).order_by("id"):
            partner_messages[msg.payload["fulfillment_id"]] = msg  # the latest one per fulfilment
    now = timezone.now()
    for f in fulfillments:
        flines = list(f.lines.all())
        f.open_units = sum(fl.quantity_open for fl in flines)
        f.reroutable = f.status in REJECTABLE and f.open_units > 0
        f.resendable = f.pk in waiting
        f.partner_message = partner_messages.get(f.pk)
        f.late = f.is_late(now)
    decisions = list(order.routing_decisions.all())
    codes = set()
    for decision in decisions:
        for strategy in decision.explanation.get("strategies", []):
            codes.update(c["location"] for c in strategy.get("candidates", []))
    location_names = dict(Location.objects.filter(code__in=codes).values_list("code", "name")) if codes else {}
    return OrderPage(
        order=order,
        lines=lines,
        fulfillments=fulfillments,
        decisions=decisions,
        active_holds=[h for h in holds if h.released_at is None],
        released_holds=[h for h in holds if h.released_at is not None],
        events=events,
        notes=[e for e in events if e.type == "note"],
        refunds=[e for e in events if e.type in MONEY_EVENTS and e.data.get("amount") not in (None, "0", "0.00")],
        partner_messages=partner_messages,
        line_skus={str(line.pk): line.sku for line in lines},
        location_names=location_names,
    )


def partner_message(fulfillment_id: int) -> OutboxMessage | None:
    """The latest request sent (or being retried) to a partner for this fulfilment."""
    return (
        OutboxMessage.objects.filter(topic="orders.send_fulfillment", payload__fulfillment_id=fulfillment_id)
        .order_by("-id")
        .first()
    )


def order_for_action(number: str) -> Order | None:
    return (
        Order.objects.select_related("channel", "customer", "pickup_location")
        .prefetch_related(Prefetch("lines", OrderLine.objects.select_related("item")))
        .filter(number=number)
        .first()
    )


def return_for_receiving(number: str, return_number: str) -> Return | None:
    """One return of the order, with its lines and their order lines."""
    return (
        Return.objects.select_related("order__channel", "location")
        .prefetch_related(Prefetch("lines", ReturnLine.objects.select_related("order_line").order_by("id")))
        .filter(number=return_number, order__number=number)
        .first()
    )


def fulfillment_for_action(number: str, fulfillment_id: int) -> Fulfillment | None:
    return (
        Fulfillment.objects.select_related("order__channel", "order__pickup_location", "location")
        .prefetch_related(Prefetch("lines", FulfillmentLine.objects.select_related("line")))
        .filter(pk=fulfillment_id, order__number=number)
        .first()
    )


# --- Queues ----------------------------------------------------------------------------------


@dataclass
class Page:
    rows: list
    page: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.page > 1


def _paged(qs, page: int, page_size: int | None = None) -> Page:
    page, page_size = max(1, page), page_size or PAGE_SIZE
    start = (page - 1) * page_size
    rows = list(qs[start : start + page_size + 1])
    return Page(rows[:page_size], page, len(rows) > page_size)


def queue_counts() -> dict[str, int]:
    """The badge on each queue (capped like search counts)."""

    def capped(qs) -> int:
        return qs.order_by()[: COUNT_CAP + 1].count()

    return {
        "on_hold": capped(Order.objects.filter(status=OrderStatus.ON_HOLD)),
        "sourcing": capped(
            OrderHold.objects.filter(type=HoldType.SOURCING, released_at__isnull=True).values("order_id").distinct()
        ),
        "dead_letters": capped(OutboxMessage.objects.filter(status=OutboxStatus.DEAD)),
        "rejected": capped(rejected_fulfillments_qs()),
        "backorders": capped(Order.objects.filter(status__in=BACKORDER_STATES)),
        "late": capped(Fulfillment.objects.overdue(timezone.now())),
        "pickups": capped(Fulfillment.objects.filter(status=FulfillmentStatus.READY_FOR_PICKUP)),
        "appeasements": capped(Appeasement.objects.filter(status=AppeasementStatus.PENDING_APPROVAL)),
    }


def held_orders(page: int, hold_type: str = "") -> Page:
    """Orders on hold, oldest hold first, with their active holds."""
    active = OrderHold.objects.filter(released_at__isnull=True)
    if hold_type:
        active = active.filter(type=hold_type)
    qs = (
        Order.objects.filter(status=OrderStatus.ON_HOLD, holds__in=active)
        .distinct()
        .annotate(held_since=Min("holds__created_at", filter=Q(holds__released_at__isnull=True)))
        .select_related("channel", "customer")
        .prefetch_related(Prefetch("holds", OrderHold.objects.filter(released_at__isnull=True), to_attr="active"))
        .order_by("held_since", "id")
    )
    return _paged(qs, page)


def dead_letters(page: int) -> Page:
    """Dead-lettered outbox messages, each tied to its order where the payload names one."""
    result = _paged(OutboxMessage.objects.filter(status=OutboxStatus.DEAD).order_by("-id"), page)
    fulfillment_ids = {m.payload.get("fulfillment_id") for m in result.rows if m.payload.get("fulfillment_id")}
    numbers = dict(
        Fulfillment.objects.filter(pk__in=fulfillment_ids).values_list("pk", "order__number") if fulfillment_ids else []
    )
    for msg in result.rows:
        msg.order_number = (
            msg.payload.get("order_number")
            or msg.payload.get("order")
            or numbers.get(msg.payload.get("fulfillment_id"))
        )
        msg.fulfillment_id = msg.payload.get("fulfillment_id")
    return result


def rejected_fulfillments_qs() -> QuerySet[Fulfillment]:
    """Fulfilments a location refused (all or some) on orders that are still open."""
    # Every rejection, whole or partial, records its reason on the fulfilment (a partial index).
    return Fulfillment.objects.exclude(rejection_reason="").filter(
        order__status__in=[
            *BACKORDER_STATES,
            OrderStatus.RECEIVED,
            OrderStatus.ALLOCATED,
            OrderStatus.ON_HOLD,
            OrderStatus.IN_FULFILLMENT,
            OrderStatus.PARTIALLY_SHIPPED,
        ]
    )


def rejected_fulfillments(page: int) -> Page:
    qs = (
        rejected_fulfillments_qs()
        .select_related("order__customer", "order__channel", "location")
        .order_by("-updated_at")
    )
    return _paged(qs, page)


def backorders(page: int) -> Page:
    """Orders waiting for stock, oldest first, with the units each SKU is short and when
    incoming supply is expected."""
    result = _paged(
        Order.objects.filter(status__in=BACKORDER_STATES)
        .select_related("channel", "customer")
        .order_by("created_at", "id"),
        page,
    )
    order_ids = [o.pk for o in result.rows]
    short: dict[int, list[tuple[str, int]]] = defaultdict(list)
    item_ids = set()
    for order_id, sku, item_id, open_units, allocated in (
        OrderLine.objects.filter(order_id__in=order_ids)
        .annotate(open_units=F("quantity") - F("quantity_cancelled") - F("quantity_shipped"))
        .values_list("order_id", "sku", "item_id", "open_units", "quantity_allocated")
    ):
        if open_units > allocated:
            short[order_id].append((sku, open_units - allocated))
            item_ids.add(item_id)
    next_supply = dict(
        IncomingSupply.objects.filter(item_id__in=item_ids, status=IncomingSupply.Status.OPEN)
        .values_list("item__sku")
        .annotate(first=Min("expected_date"))
        .values_list("item__sku", "first")
    )
    for order in result.rows:
        order.short = [(sku, units, next_supply.get(sku)) for sku, units in short[order.pk]]
    return result


def uncollected_pickups(page: int) -> Page:
    """Pickups waiting at the store, the soonest to expire first."""
    qs = (
        Fulfillment.objects.filter(status=FulfillmentStatus.READY_FOR_PICKUP)
        .select_related("order__customer", "order__channel", "location")
        .annotate(units=Sum("lines__quantity"))
        .order_by("pickup_expires_at", "id")
    )
    return _paged(qs, page)


def late_fulfillments(page: int) -> Page:
    """Fulfilments past their due time and not yet picked, most overdue first."""
    qs = (
        Fulfillment.objects.overdue(timezone.now())
        .select_related("order__customer", "order__channel", "location")
        .annotate(units=Sum("lines__quantity"))
        .order_by("due_at", "id")
    )
    result = _paged(qs, page)
    for f in result.rows:
        f.reroutable = f.status in REJECTABLE
    return result


# --- Inventory lookup ------------------------------------------------------------------------


@dataclass
class StockRow:
    location: Location
    on_hand: int
    reserved: int
    safety_stock: int
    incoming: int
    next_incoming: date | None
    channels: list[str]

    @property
    def available(self) -> int:
        return max(0, self.on_hand - self.reserved - self.safety_stock)


@dataclass
class SkuLookup:
    item: Item
    rows: list[StockRow]
    channels: list[dict]  # availability_breakdown per active channel

    @property
    def totals(self) -> dict[str, int]:
        return {
            name: sum(getattr(r, name) for r in self.rows)
            for name in ("on_hand", "reserved", "safety_stock", "available", "incoming")
        }


def sku_lookup(sku: str) -> SkuLookup | None:
    """One SKU at every location that stocks it or expects it, and its ATP in each channel."""
    item = Item.objects.filter(sku=sku.strip()).first() or Item.objects.filter(sku__iexact=sku.strip()).first()
    if item is None:
        return None
    stock = {s.location_id: s for s in Stock.objects.filter(item=item)}
    incoming: dict[int, tuple[int, date]] = {}
    for loc_id, qty, first in (
        IncomingSupply.objects.filter(item=item, status=IncomingSupply.Status.OPEN)
        .values_list("location_id")
        .annotate(qty=Sum(F("quantity") - F("quantity_received")), first=Min("expected_date"))
        .values_list("location_id", "qty", "first")
    ):
        incoming[loc_id] = (qty, first)
    loc_ids = set(stock) | set(incoming)
    locations = Location.objects.filter(pk__in=loc_ids).prefetch_related(
        Prefetch("channels", Channel.objects.only("code"))
    )
    rows = []
    for loc in sorted(locations, key=lambda x: x.code):
        s = stock.get(loc.pk)
        qty, first = incoming.get(loc.pk, (0, None))
        rows.append(
            StockRow(
                location=loc,
                on_hand=s.on_hand if s else 0,
                reserved=s.reserved if s else 0,
                safety_stock=s.safety_stock if s else 0,
                incoming=qty,
                next_incoming=first,
                channels=sorted(c.code for c in loc.channels.all()),
            )
        )
    channels = [availability_breakdown(channel=c, sku=item.sku) for c in Channel.objects.filter(active=True)]
    return SkuLookup(item=item, rows=rows, channels=channels)


COORDS_RE = re.compile(r"^\s*(-?\d{1,2}(?:\.\d+)?)\s*[, ]\s*(-?\d{1,3}(?:\.\d+)?)\s*$")


@dataclass(frozen=True)
class Place:
    latitude: float
    longitude: float
    label: str


def resolve_place(text: str) -> Place | None:
    """ "40.75, -73.99", or a postal code or city we already know (a location's, or a recent
    order's shipping address): no outside geocoder is called."""
    text = text.strip()
    match = COORDS_RE.match(text)
    if match:
        lat, lng = float(match[1]), float(match[2])
        if -90 <= lat <= 90 and -180 <= lng <= 180:
            return Place(lat, lng, f"{lat:.4f}, {lng:.4f}")
        return None
    if not text:
        return None
    loc = (
        Location.objects.filter(Q(postal_code__iexact=text) | Q(city__iexact=text), latitude__isnull=False)
        .order_by("code")
        .first()
    )
    if loc is not None:
        return Place(float(loc.latitude), float(loc.longitude), f"{loc.city} {loc.postal_code} (as {loc.code})")
    order = (
        Order.objects.filter(Q(ship_postal_code__iexact=text) | Q(ship_city__iexact=text), ship_latitude__isnull=False)
        .order_by("-id")
        .first()
    )
    if order is not None:
        return Place(
            float(order.ship_latitude),
            float(order.ship_longitude),
            f"{order.ship_city} {order.ship_postal_code} (from order {order.number})",
        )
    return None


def stores_near(*, channel: Channel, sku: str, place: Place, radius_km: float) -> list[dict]:
    """Locations of the channel near `place` that offer pickup and have the SKU available to
    promise there, nearest first (the channel's ATP rules: safety stock and buffer)."""
    answer = channel_availability(
        channel=channel, skus=[sku], detail=True, near=Near(place.latitude, place.longitude, radius_km)
    )
    rows = [r for r in answer["items"][0]["by_location"] if r["available"] > 0]
    locations = {
        loc.code: loc
        for loc in Location.objects.filter(code__in=[r["location"] for r in rows]).only(
            "code", "name", "city", "capabilities", "cutoff_time", "type"
        )
    }
    out = []
    for r in rows:
        loc = locations[r["location"]]
        if not loc.can(Capability.PICKUP):
            continue
        out.append({**r, "name": loc.name, "city": loc.city, "capabilities": loc.capabilities, "loc": loc})
    return out


# --- Customer --------------------------------------------------------------------------------


def customer_orders(customer: Customer, page: int) -> Page:
    qs = (
        Order.objects.filter(customer=customer)
        .select_related("channel")
        .annotate(units=Sum("lines__quantity"))
        .order_by("-created_at", "-id")
    )
    return _paged(qs, page)


def customer_returns(customer: Customer) -> list[Return]:
    """Every return (and the exchange it made) on the customer's orders, newest first."""
    return list(RETURNS.select_related("order__channel").filter(order__customer=customer).order_by("-id")[:200])


def pending_appeasements(page: int) -> Page:
    """Appeasements above their requester's limit, waiting for a supervisor, oldest first."""
    qs = (
        Appeasement.objects.filter(status=AppeasementStatus.PENDING_APPROVAL)
        .select_related("order__customer", "reason")
        .order_by("created_at", "id")
    )
    return _paged(qs, page)


def customer_summary(customer: Customer) -> dict:
    totals = Order.objects.filter(customer=customer).aggregate(
        orders=Count("id"), spent=Sum("grand_total", filter=~Q(status=OrderStatus.CANCELLED))
    )
    channels = list(
        Order.objects.filter(customer=customer).values_list("channel__code", flat=True).distinct().order_by()
    )
    return {"orders": totals["orders"], "spent": totals["spent"] or Decimal(0), "channels": sorted(channels)}


# --- "Why this store?" ------------------------------------------------------------------------

EXPLAIN_ROWS = 12  # candidates shown per strategy (the chosen ones always)


def explanation_view(explanation: dict, skus: dict[str, str]) -> list[dict]:
    """The routing explanation shaped for reading: per strategy, the ranked candidates (chosen
    ones marked, scores per ranker), the excluded ones with their reasons, and the plan."""
    out = []
    for strategy in explanation.get("strategies", []):
        plan = strategy.get("plan") or {}
        chosen = [f["location"] for f in plan.get("fulfillments", [])]
        ranked, excluded = [], []
        for c in strategy.get("candidates", []):
            if c.get("excluded_by"):
                excluded.append(c)
            else:
                ranked.append({**c, "chosen": c["location"] in chosen})
        shown = [c for i, c in enumerate(ranked) if i < EXPLAIN_ROWS or c["chosen"]]
        rankers = list(ranked[0]["scores"]) if ranked else []
        weights = (strategy.get("settings") or {}).get("weights", {})
        out.append(
            {
                "name": strategy.get("name"),
                "outcome": strategy.get("outcome"),
                "reason": strategy.get("reason"),
                "weights": {k: v for k, v in weights.items() if v},
                "rankers": [r for r in rankers if weights.get(r, 1)],
                "ranked": shown,
                "ranked_more": len(ranked) - len(shown),
                "excluded": excluded,
                "excluded_counts": strategy.get("excluded_counts", {}),
                "tie_breaks": strategy.get("tie_breaks", []),
                "notes": strategy.get("notes", []),
                "fulfillments": [
                    {
                        "location": f["location"],
                        "distance_km": f.get("distance_km"),
                        "lines": [(skus.get(k, f"line {k}"), q) for k, q in f.get("lines", {}).items()],
                    }
                    for f in plan.get("fulfillments", [])
                ],
                "unsourced": [(skus.get(k, f"line {k}"), q) for k, q in (plan.get("unsourced") or {}).items()],
            }
        )
    return out
