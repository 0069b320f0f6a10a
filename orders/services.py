"""Order writes: capture, cancel, address change, holds, notes. Each is one transaction that
locks the order, changes it, writes its timeline entry and outbox rows, and nothing else."""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from inventory.models import Capability, Channel, Item, Location
from inventory.services import (
    StockLine,
    cart_reservation_convert,
    stock_commit_shipment,
    stock_release,
    stock_reserve,
    stock_reserve_in_channel,
)
from oms.actor import Actor
from oms.batching import batched_inserts, insert_many
from oms.errors import Conflict, InvalidTransition, NotFound, ValidationFailed
from oms.fastsql import fetch, insert_unless_conflict, new
from oms.local_cache import LocalCache
from oms.outbox import outbox_enqueue_task, outbox_revive
from oms.transactions import atomic

from . import events, sla
from .carriers.adapters import Label
from .carriers.models import Carrier, TrackingStatus
from .models import (
    AWAITING_ACCEPTANCE,
    FULFILLMENT_ACTIVE,
    NOT_YET_PICKED,
    NUMBER_ALPHABET,
    OPEN_STATES,
    PRE_SHIPMENT_STATES,
    REJECTABLE,
    Allocation,
    Customer,
    Fulfillment,
    FulfillmentLine,
    FulfillmentStatus,
    HoldRule,
    HoldType,
    Order,
    OrderEvent,
    OrderHold,
    OrderLine,
    OrderStatus,
    Payment,
    Shipment,
    ShipmentLine,
    new_order_number,
    payment_status,
)

log = logging.getLogger(__name__)
CENT = Decimal("0.01")
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


# --- Inputs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddressInput:
    line1: str
    city: str
    postal_code: str
    country: str
    name: str = ""
    line2: str = ""
    region: str = ""
    latitude: Decimal | None = None
    longitude: Decimal | None = None

    def as_order_fields(self) -> dict:
        return {
            "ship_name": self.name,
            "ship_line1": self.line1,
            "ship_line2": self.line2,
            "ship_city": self.city,
            "ship_region": self.region,
            "ship_postal_code": self.postal_code,
            "ship_country": self.country.upper(),
            "ship_latitude": self.latitude,
            "ship_longitude": self.longitude,
        }


@dataclass(frozen=True)
class LineInput:
    sku: str
    quantity: int
    unit_price: Decimal
    external_line_id: str = ""
    discount_amount: Decimal = Decimal("0")
    tax_amount: Decimal | None = None


@dataclass(frozen=True)
class PaymentInput:
    method: str
    amount_authorized: Decimal
    reference: str = ""
    amount_captured: Decimal = Decimal("0")


@dataclass(frozen=True)
class CaptureInput:
    channel: Channel
    external_id: str
    customer_email: str
    currency: str
    lines: Sequence[LineInput]
    customer_name: str = ""
    customer_phone: str = ""
    fulfillment_method: str = Order.Method.SHIP
    pickup_location: str = ""
    shipping_address: AddressInput | None = None
    shipping_method: str = ""
    shipping_total: Decimal = Decimal("0")
    tax_total: Decimal = Decimal("0")
    grand_total: Decimal | None = None
    payment: PaymentInput | None = None
    ship_complete: bool = False
    allow_backorder: bool = False
    reservation_key: str = ""
    promised_ship_date: object = None
    promised_delivery_date: object = None


@dataclass
class _Priced:
    item: Item
    line: LineInput
    tax: Decimal


# --- Capture ---------------------------------------------------------------------------------

# Per-process copies (oms/local_cache.py): edits apply here at once, elsewhere within seconds.
hold_rules = LocalCache("hold-rules")  # channel id → its active rules and the global ones
catalogue = LocalCache("items")  # SKU → Item, for capture's checks (unknown, not sold)
location_copies = LocalCache("locations")  # id → Location, for the codes capture answers with


_ITEM_COLUMNS = (
    "id",
    "sku",
    "name",
    "active",
    "weight_grams",
    "length_mm",
    "width_mm",
    "height_mm",
    "dropship_vendor_id",
)


def _load_items(skus: set[str]) -> dict[str, Item]:
    """SKU → Item (attributes deferred): a plain statement, as capture misses the per-process
    copy for most SKUs of a large catalogue."""
    skus = sorted(skus)
    sql = f"SELECT {', '.join(_ITEM_COLUMNS)} FROM inventory_item WHERE sku IN ({', '.join(['%s'] * len(skus))})"
    return {row[1]: Item.from_db(DEFAULT_DB_ALIAS, _ITEM_COLUMNS, row) for row in fetch(sql, skus)}


def _validate_and_price(data: CaptureInput) -> tuple[list[_Priced], dict, Location | None]:
    """Everything that can be checked before writing; raises ValidationFailed with field paths."""
    errors: dict[str, str] = {}
    if not data.channel.active:
        errors["channel"] = f"Channel {data.channel.code} is not active."
    if not CURRENCY_RE.match(data.currency):
        errors["currency"] = "Use a three-letter ISO 4217 code, e.g. USD."
    skus = {line.sku for line in data.lines}
    items = catalogue.get_many(skus, _load_items)
    seen: set[str] = set()
    for index, line in enumerate(data.lines):
        item = items.get(line.sku)
        if item is None:
            errors[f"lines[{index}].sku"] = f"Unknown SKU {line.sku}."
        elif not item.active:
            errors[f"lines[{index}].sku"] = f"SKU {line.sku} is not sold."
        if line.discount_amount > line.unit_price * line.quantity:
            errors[f"lines[{index}].discount_amount"] = "Discount exceeds the line's price."
        if line.external_line_id and line.external_line_id in seen:
            errors[f"lines[{index}].external_line_id"] = "Duplicate external line id."
        seen.add(line.external_line_id)
    pickup = None
    if data.fulfillment_method == Order.Method.PICKUP:
        if not data.pickup_location:
            errors["pickup_location"] = "Required for pickup orders."
        else:
            pickup = Location.objects.filter(code=data.pickup_location).first()
            if pickup is None:
                errors["pickup_location"] = f"Unknown location {data.pickup_location}."
            elif not pickup.active or not pickup.can(Capability.PICKUP):
                errors["pickup_location"] = f"{pickup.code} does not offer pickup."
            elif not data.channel.locations.filter(pk=pickup.pk).exists():
                errors["pickup_location"] = f"{pickup.code} does not serve channel {data.channel.code}."
    elif data.shipping_address is None:
        errors["shipping_address"] = "Required for orders that ship."
    if data.shipping_address is not None:
        errors.update(_address_errors(data.shipping_address, "shipping_address"))

    # Money: line taxes either all given (and summing to tax_total) or spread pro rata.
    nets = [line.unit_price * line.quantity - line.discount_amount for line in data.lines]
    given = [line.tax_amount for line in data.lines]
    if all(t is not None for t in given):
        taxes = list(given)
        if sum(taxes, Decimal(0)) != data.tax_total:
            errors["tax_total"] = f"Line taxes add up to {sum(taxes, Decimal(0))}, not {data.tax_total}."
    elif any(t is not None for t in given):
        errors["lines"] = "Give tax_amount on every line or on none."
        taxes = [Decimal(0)] * len(nets)
    else:
        taxes = _spread(data.tax_total, nets)
    subtotal = sum((line.unit_price * line.quantity for line in data.lines), Decimal(0))
    discount = sum((line.discount_amount for line in data.lines), Decimal(0))
    grand = subtotal - discount + data.shipping_total + data.tax_total
    if data.grand_total is not None and data.grand_total != grand:
        errors["grand_total"] = f"Lines, shipping and tax add up to {grand}, not {data.grand_total}."
    if data.payment is not None:
        if data.payment.amount_authorized != grand:
            errors["payment.amount_authorized"] = f"Must equal the order total {grand}."
        if data.payment.amount_captured > data.payment.amount_authorized:
            errors["payment.amount_captured"] = "Cannot exceed the amount authorised."
    if errors:
        first = next(iter(errors.items()))
        raise ValidationFailed(f"{first[0]}: {first[1]}", fields=errors)
    totals = {"subtotal": subtotal, "discount_total": discount, "grand_total": grand}
    priced = [_Priced(items[line.sku], line, tax) for line, tax in zip(data.lines, taxes, strict=True)]
    return priced, totals, pickup


def _spread(total: Decimal, weights: list[Decimal]) -> list[Decimal]:
    """Split `total` in proportion to `weights`, to the cent, remainder on the last share."""
    whole = sum(weights, Decimal(0))
    if whole == 0 or total == 0:
        return [Decimal(0)] * len(weights)
    shares = [(total * w / whole).quantize(CENT) for w in weights]
    shares[-1] += total - sum(shares, Decimal(0))
    return shares


def _address_errors(address: AddressInput, prefix: str) -> dict[str, str]:
    errors = {}
    for name in ("line1", "city", "postal_code", "country"):
        if not getattr(address, name).strip():
            errors[f"{prefix}.{name}"] = "This field is required."
    if address.country and not re.match(r"^[A-Za-z]{2}$", address.country):
        errors[f"{prefix}.country"] = "Use a two-letter ISO country code."
    if (address.latitude is None) != (address.longitude is None):
        errors[f"{prefix}.latitude"] = "Give both latitude and longitude, or neither."
    return errors


_CUSTOMER_COLUMNS = ("id", "email", "name", "phone", "phone_digits")  # created_at is deferred
_CUSTOMER_SELECT = f"SELECT {', '.join(_CUSTOMER_COLUMNS)} FROM orders_customer WHERE email = %s"


def _customer(data: CaptureInput) -> tuple[Customer, bool]:
    """The customer by normalised email, created on first order; a name or phone missing on
    file is filled in from the order. Plain statements: capture runs this on every order."""
    email = Customer.normalise_email(data.customer_email)
    row = next(iter(fetch(_CUSTOMER_SELECT, [email])), None)
    if row is None:
        customer = Customer(
            email=email,
            name=data.customer_name,
            phone=data.customer_phone,
            phone_digits=Customer.digits(data.customer_phone),
        )
        if insert_unless_conflict(customer):
            return customer, True
        row = fetch(_CUSTOMER_SELECT, [email])[0]  # created by a concurrent order a moment ago
    customer = Customer.from_db(DEFAULT_DB_ALIAS, _CUSTOMER_COLUMNS, row)
    changed = []
    if data.customer_name and not customer.name:
        customer.name, changed = data.customer_name, [*changed, "name"]
    if data.customer_phone and not customer.phone:
        customer.phone, customer.phone_digits = (
            data.customer_phone,
            Customer.digits(data.customer_phone),
        )
        changed += ["phone", "phone_digits"]
    if changed:
        customer.save(update_fields=changed)
    return customer, False


def _active_rules(channel_id: int) -> list[HoldRule]:
    return list(HoldRule.objects.filter(Q(channel__isnull=True) | Q(channel_id=channel_id), active=True).order_by("id"))


def _matching_rules(order: Order, new_customer: Callable[[], bool]) -> list[HoldRule]:
    hits = []
    for rule in hold_rules.get(order.channel_id, lambda: _active_rules(order.channel_id)):
        if rule.condition == HoldRule.Condition.ORDER_TOTAL_ABOVE and rule.amount is not None:
            if order.grand_total > rule.amount:
                hits.append(rule)
        elif rule.condition == HoldRule.Condition.COUNTRY_NOT_SERVED:
            if order.fulfillment_method == Order.Method.SHIP and order.ship_country not in rule.country_list():
                hits.append(rule)
        elif (
            rule.condition == HoldRule.Condition.NEW_CUSTOMER_ABOVE
            and rule.amount is not None
            and order.grand_total > rule.amount
            and new_customer()
        ):
            hits.append(rule)
    return hits


def _rule_reason(rule: HoldRule, order: Order) -> str:
    if rule.condition == HoldRule.Condition.COUNTRY_NOT_SERVED:
        return f"ships to {order.ship_country}, which is not served"
    if rule.condition == HoldRule.Condition.NEW_CUSTOMER_ABOVE:
        return f"first order of a new customer, total {order.grand_total} above {rule.amount}"
    return f"order total {order.grand_total} above {rule.amount}"


def _create_order(data: CaptureInput, customer: Customer, totals: dict, pickup: Location | None) -> Order:
    fields = dict(
        channel=data.channel,
        external_id=data.external_id,
        customer=customer,
        currency=data.currency,
        fulfillment_method=data.fulfillment_method,
        pickup_location=pickup,
        shipping_method=data.shipping_method,
        shipping_total=data.shipping_total,
        tax_total=data.tax_total,
        ship_complete=data.ship_complete,
        allow_backorder=data.allow_backorder,
        promised_ship_date=data.promised_ship_date,
        promised_delivery_date=data.promised_delivery_date,
        **totals,
        **(data.shipping_address.as_order_fields() if data.shipping_address else {}),
    )
    for _ in range(5):
        # ON CONFLICT DO NOTHING rather than a savepoint per order: the only unique keys are the
        # channel's order id and the number.
        order = new(Order, number=new_order_number(data.channel.code), **fields)
        if insert_unless_conflict(order):
            return order
        existing = Order.objects.filter(channel=data.channel, external_id=data.external_id).first()
        if existing is not None:
            raise Conflict(
                f"Order {existing.number} was already captured for {data.channel.code} order {data.external_id}.",
                fields={"external_id": f"Already captured as {existing.number}."},
            )
        # a number collision (one in billions): draw another
    raise Conflict("Could not allocate an order number; retry.")


def _allocate(
    order: Order, lines: list[OrderLine], data: CaptureInput, pickup: Location | None, actor: Actor
) -> tuple[list[Allocation], dict[str, int]]:
    """Hold stock for every line (not yet saved: `quantity_allocated` goes in with them); returns
    the allocations to save after the lines and {sku: units backordered}. Raises
    InsufficientStock (rolling back the capture) when a line cannot be held and backorders are
    not allowed."""
    wanted: dict[int, int] = defaultdict(int)
    for line in lines:
        wanted[line.item_id] += line.quantity
    held: dict[tuple[int, int], int] = defaultdict(int)  # (item, location) -> units
    if data.reservation_key:
        for cart_line in cart_reservation_convert(channel=order.channel, key=data.reservation_key):
            take = min(cart_line.quantity, wanted.get(cart_line.item_id, 0))
            if pickup is not None and cart_line.location_id != pickup.pk:
                take = 0
            if take:
                held[(cart_line.item_id, cart_line.location_id)] += take
                wanted[cart_line.item_id] -= take
            if cart_line.quantity > take:  # the cart held more than the order needs
                stock_release(
                    lines=[StockLine(cart_line.location_id, cart_line.item_id, cart_line.quantity - take)],
                    actor=actor,
                    reference=f"order:{order.number}",
                )
    wanted = {item: q for item, q in wanted.items() if q > 0}
    short: dict[int, int] = {}
    if wanted:
        plan, short = stock_reserve_in_channel(
            channel=order.channel,
            wanted=wanted,
            actor=actor,
            reference=f"order:{order.number}",
            location_ids=[pickup.pk] if pickup else None,
            capability=None if pickup else Capability.SHIP,
            allow_partial=data.allow_backorder,
            skus={line.item_id: line.sku for line in lines},
        )
        for p in plan:
            held[(p.item_id, p.location_id)] += p.quantity
    # Spread held units over the lines of each item, in line order.
    allocations = []
    per_item: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for (item_id, location_id), q in sorted(held.items()):
        per_item[item_id].append((location_id, q))
    for line in lines:
        need = line.quantity
        pool = per_item[line.item_id]
        while need and pool:
            location_id, q = pool[0]
            take = min(need, q)
            allocations.append(new(Allocation, line=line, location_id=location_id, quantity=take))
            line.quantity_allocated += take
            need -= take
            pool[0] = (location_id, q - take)
            if pool[0][1] == 0:
                pool.pop(0)
    if allocations:
        locations = location_copies.get_many({a.location_id for a in allocations}, Location.objects.in_bulk)
        for a in allocations:
            a.location = locations[a.location_id]  # what the answer shows, without another read
        events.stock_reserved(
            order,
            actor,
            allocations=[{"sku": a.line.sku, "location": a.location.code, "quantity": a.quantity} for a in allocations],
        )
    backordered: dict[str, int] = {}
    for line in lines:
        if line.quantity_backordered:
            backordered[line.sku] = backordered.get(line.sku, 0) + line.quantity_backordered
    return allocations, backordered


@atomic  # no savepoint inside the idempotent request's transaction
def order_capture(*, data: CaptureInput, actor: Actor) -> Order:
    """Capture an order: validated, de-duplicated on (channel, external id), stock held for
    every line (or backordered when allowed), holds applied, all in one transaction.

    The order comes back with what was just written (lines and their allocations, payments,
    holds, timeline) in its prefetch cache, so the API answers without reading it back."""
    # Timeline entries and outbox messages go in with one INSERT each when the block ends.
    with batched_inserts():
        priced, totals, pickup = _validate_and_price(data)
        customer, created = _customer(data)
        order = _create_order(data, customer, totals, pickup)
        order._new_events = []  # orders.events._record appends each event it writes
        lines = [
            new(
                OrderLine,
                order=order,
                item=p.item,
                sku=p.item.sku,
                external_line_id=p.line.external_line_id,
                quantity=p.line.quantity,
                unit_price=p.line.unit_price,
                discount_amount=p.line.discount_amount,
                tax_amount=p.tax,
            )
            for p in priced
        ]
        allocations, backordered = _allocate(order, lines, data, pickup, actor)
        insert_many(lines)
        insert_many(allocations)  # line ids come from the lines when the block ends
        payments = []
        if data.payment is not None:
            payments.append(
                Payment(  # held: goes in with the lines when the block ends
                    order=order,
                    method=data.payment.method,
                    reference=data.payment.reference,
                    amount_authorized=data.payment.amount_authorized,
                    amount_captured=data.payment.amount_captured,
                    status=payment_status(
                        authorized=data.payment.amount_authorized,
                        voided=Decimal(0),
                        captured=data.payment.amount_captured,
                        refunded=Decimal(0),
                    ),
                )
            )
        insert_many(payments)
        per_line: dict[int, list[Allocation]] = defaultdict(list)
        for a in allocations:
            per_line[id(a.line)].append(a)
        for line in lines:
            line._prefetched_objects_cache = {"allocations": per_line[id(line)]}
        order._prefetched_objects_cache = {
            "lines": lines,
            "payments": payments,
            "fulfillments": [],  # a new order has none of these yet (the reverse relations the answer reads)
            "routing_decisions": [],
            "returns": [],
        }
        derived = derive_status(lines, has_provisional=True)
        if derived != order.status:
            order.recompute(derived)
            order.save(update_fields=["status"])
        events.order_created(order, actor, backordered=backordered)
        holds = [
            _place_hold(order, hold_type=rule.hold_type, reason=_rule_reason(rule, order), actor=actor, rule=rule)
            # Whether the customer is new is asked only when a new-customer rule needs it.
            for rule in _matching_rules(
                order, lambda: created or not Order.objects.filter(customer=customer).exclude(pk=order.pk).exists()
            )
        ]
        if order.status != OrderStatus.ON_HOLD:  # held orders are not routed
            request_routing(order)
    order._prefetched_objects_cache.update(holds=holds, events=order._new_events)
    del order._new_events
    return order


# --- Status ----------------------------------------------------------------------------------


def derive_status(lines: Sequence[OrderLine], *, has_provisional: bool = False, has_fulfillments: bool = False) -> str:
    """The order's status as its lines tell it (holds are layered on top by the services)."""
    ordered = sum(line.quantity for line in lines)
    cancelled = sum(line.quantity_cancelled for line in lines)
    shipped = sum(line.quantity_shipped for line in lines)
    open_units = ordered - cancelled - shipped
    if cancelled == ordered:
        return OrderStatus.CANCELLED
    if open_units == 0:
        return OrderStatus.SHIPPED
    if shipped:
        return OrderStatus.PARTIALLY_SHIPPED
    if has_fulfillments:
        return OrderStatus.IN_FULFILLMENT
    backordered = sum(line.quantity_backordered for line in lines)
    allocated = sum(line.quantity_allocated for line in lines)
    if backordered == 0:
        return OrderStatus.RECEIVED if has_provisional else OrderStatus.ALLOCATED
    if allocated == 0 or has_provisional:
        return OrderStatus.BACKORDERED
    return OrderStatus.PARTIALLY_ALLOCATED


def _lock(order_number: str) -> Order:
    # OF self: locking the joined channel row too would serialise every order of the channel.
    order = Order.objects.select_for_update(of=("self",)).select_related("channel").filter(number=order_number).first()
    if order is None:
        raise NotFound(f"No order {order_number}.")
    return order


def _locked_lines(order: Order) -> list[OrderLine]:
    return list(OrderLine.objects.select_for_update().filter(order=order).order_by("pk"))


# A location has taken the work on: the order is in fulfilment until something ships.
WORKING = [
    FulfillmentStatus.ACCEPTED,
    FulfillmentStatus.PICKING,
    FulfillmentStatus.PACKED,
    FulfillmentStatus.READY_FOR_PICKUP,
]


def _status_after_change(order: Order, lines: list[OrderLine]) -> str:
    has_provisional = Allocation.objects.filter(line__order=order, provisional=True).exists()
    working = Fulfillment.objects.filter(order=order, status__in=WORKING).exists()
    return derive_status(lines, has_provisional=has_provisional, has_fulfillments=working)


# --- Cancel ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CancelLine:
    line_id: int
    quantity: int


@dataclass
class _Money:
    voided: Decimal = Decimal(0)
    refunded: Decimal = Decimal(0)
    per_payment: list[dict] = field(default_factory=list)


def _give_back(order: Order, amount: Decimal) -> _Money:
    """Return `amount` to the customer: void what is only authorised, refund what was captured."""
    money = _Money()
    for payment in Payment.objects.select_for_update().filter(order=order).order_by("pk"):
        if amount <= 0:
            break
        void = min(amount, payment.amount_open)
        refund = min(amount - void, payment.amount_captured - payment.amount_refunded)
        if not void and not refund:
            continue
        payment.amount_voided += void
        payment.amount_refunded += refund
        payment.settle()
        payment.save(update_fields=["amount_voided", "amount_refunded", "status"])
        amount -= void + refund
        money.voided += void
        money.refunded += refund
        money.per_payment.append(
            {
                "payment": payment.pk,
                "voided": str(void),
                "refunded": str(refund),
                "status": payment.status,
            }
        )
    return money


def _release_units(line: OrderLine, units: int, actor: Actor, reference: str) -> list[dict]:
    """Release up to `units` of a line's held stock, provisional holds first; fulfilments
    that held those units shrink (and are cancelled when nothing is left in them)."""
    released = []
    for allocation in line.allocations.select_related("location").order_by("-provisional", "pk"):
        if units == 0:
            break
        take = min(units, allocation.quantity)
        stock_release(
            lines=[StockLine(allocation.location_id, line.item_id, take)],
            actor=actor,
            reference=reference,
        )
        if take == allocation.quantity:
            allocation.delete()
        else:
            allocation.quantity -= take
            allocation.save(update_fields=["quantity"])
        line.quantity_allocated -= take
        units -= take
        released.append({"location": allocation.location.code, "quantity": take})
        if not allocation.provisional:
            _shrink_fulfillments(line, allocation.location_id, take)
    return released


def _shrink_fulfillments(line: OrderLine, location_id: int, units: int) -> None:
    for fl in FulfillmentLine.objects.select_related("fulfillment").filter(
        line=line, fulfillment__location_id=location_id, fulfillment__status__in=FULFILLMENT_ACTIVE
    ):
        take = min(units, fl.quantity_open)
        if not take:
            continue
        fl.quantity -= take
        fl.save(update_fields=["quantity"])
        units -= take
        fulfillment = fl.fulfillment
        if not any(other.quantity_open for other in fulfillment.lines.all()):
            fulfillment.cancel()
            fulfillment.save(update_fields=["status", "updated_at"])
        if not units:
            return


@transaction.atomic
def order_cancel(*, order_number: str, reason: str, actor: Actor, lines: Sequence[CancelLine] | None = None) -> Order:
    """Cancel the whole order or some quantities of some lines; only what has not shipped.

    Backordered units go first (no stock to give back), then held units, whose stock is
    released. The money for the cancelled units is voided or refunded."""
    order = _lock(order_number)
    if order.status in (OrderStatus.SHIPPED, OrderStatus.COMPLETED, OrderStatus.CANCELLED):
        raise InvalidTransition(f"Order {order.number} is {order.status}; nothing is left to cancel.")
    all_lines = _locked_lines(order)
    by_id = {line.pk: line for line in all_lines}
    if lines is None:
        wanted = {line.pk: line.quantity_open for line in all_lines if line.quantity_open}
    else:
        wanted = {}
        for index, cancel in enumerate(lines):
            line = by_id.get(cancel.line_id)
            if line is None:
                raise ValidationFailed(
                    f"Line {cancel.line_id} is not on order {order.number}.",
                    fields={f"lines[{index}].line_id": "Not on this order."},
                )
            wanted[line.pk] = wanted.get(line.pk, 0) + cancel.quantity
            if wanted[line.pk] > line.quantity_open:
                raise ValidationFailed(
                    f"Line {line.pk} ({line.sku}) has {line.quantity_open} unit(s) that can still be cancelled.",
                    fields={
                        f"lines[{index}].quantity": f"At most {line.quantity_open} (the rest shipped or was cancelled)."
                    },
                )
    if not wanted:
        raise InvalidTransition(f"Order {order.number} has nothing left to cancel.")
    reference = f"order:{order.number}"
    cancelled, value = [], Decimal(0)
    for line_id, units in wanted.items():
        line = by_id[line_id]
        from_backorder = min(units, line.quantity_backordered)
        released = _release_units(line, units - from_backorder, actor, reference)
        line.quantity_cancelled += units
        value += line.value_of(units)
        cancelled.append({"line_id": line.pk, "sku": line.sku, "quantity": units, "released": released})
    OrderLine.objects.bulk_update(list(by_id.values()), ["quantity_cancelled", "quantity_allocated"])
    derived = _status_after_change(order, all_lines)
    full = derived == OrderStatus.CANCELLED
    if full or derived == OrderStatus.SHIPPED:
        value += order.shipping_total if full else Decimal(0)
        order.cancel(derived)
        OrderHold.objects.filter(order=order, released_at__isnull=True).update(
            released_at=timezone.now(), released_by=actor.label, release_note="order cancelled"
        )
    elif order.status != OrderStatus.ON_HOLD:
        order.recompute(derived)
    order.save(update_fields=["status", "updated_at"])
    money = _give_back(order, value)
    events.order_cancelled(
        order,
        actor,
        reason=reason,
        lines=cancelled,
        full=full,
        refund={
            "amount": str(value),
            "voided": str(money.voided),
            "refunded": str(money.refunded),
            "payments": money.per_payment,
        },
    )
    _complete_if_done(order, actor)  # the rest may already have reached the customer
    return order


# --- Address ---------------------------------------------------------------------------------


@transaction.atomic
def order_change_address(*, order_number: str, address: AddressInput, actor: Actor) -> Order:
    order = _lock(order_number)
    if order.is_pickup:
        raise InvalidTransition(f"Order {order.number} is a pickup order; it has no shipping address.")
    shipped = OrderLine.objects.filter(order=order).aggregate(s=Sum("quantity_shipped"))["s"] or 0
    if order.status not in (*PRE_SHIPMENT_STATES, OrderStatus.ON_HOLD) or shipped:
        raise InvalidTransition(f"Order {order.number} is {order.status}; its address can no longer change.")
    errors = _address_errors(address, "shipping_address")
    if errors:
        raise ValidationFailed(next(iter(errors.values())), fields=errors)
    fields = address.as_order_fields()
    before = {k.removeprefix("ship_"): _plain(getattr(order, k)) for k in fields}
    for name, value in fields.items():
        setattr(order, name, value)
    order.save(update_fields=[*fields, "updated_at"])
    events.address_changed(
        order,
        actor,
        before=before,
        after={k.removeprefix("ship_"): _plain(v) for k, v in fields.items()},
    )
    return order


def _plain(value):
    return str(value) if isinstance(value, Decimal) else value


# --- Holds and notes -------------------------------------------------------------------------


def _place_hold(order: Order, *, hold_type: str, reason: str, actor: Actor, rule: HoldRule | None = None) -> OrderHold:
    if order.status != OrderStatus.ON_HOLD:
        order.hold()
        order.save(update_fields=["status", "updated_at"])
    hold = OrderHold.objects.create(order=order, type=hold_type, reason=reason, rule=rule, **actor.as_fields())
    events.order_held(order, actor, hold_type=hold_type, reason=reason, rule=rule.name if rule else None)
    return hold


@transaction.atomic
def order_hold(*, order_number: str, hold_type: str, reason: str, actor: Actor) -> Order:
    if hold_type not in HoldType.values:
        raise ValidationFailed(
            f"Unknown hold type {hold_type}.",
            fields={"type": f"One of {', '.join(HoldType.values)}."},
        )
    if not reason.strip():
        raise ValidationFailed("A reason is required.", fields={"reason": "This field is required."})
    order = _lock(order_number)
    if order.status not in (*PRE_SHIPMENT_STATES, OrderStatus.ON_HOLD):
        raise InvalidTransition(f"Order {order.number} is {order.status} and cannot be held.")
    _place_hold(order, hold_type=hold_type, reason=reason.strip(), actor=actor)
    return order


@transaction.atomic
def order_release(*, order_number: str, actor: Actor, note: str = "", hold_types: Sequence[str] | None = None) -> Order:
    """Release active holds (all, or those of the given types); the last one out resumes the order."""
    order = _lock(order_number)
    if order.status != OrderStatus.ON_HOLD:
        raise InvalidTransition(f"Order {order.number} is {order.status}, not on hold.")
    holds = OrderHold.objects.select_for_update().filter(order=order, released_at__isnull=True)
    if hold_types:
        holds = holds.filter(type__in=hold_types)
    holds = list(holds)
    if not holds:
        raise InvalidTransition(f"Order {order.number} has no active hold of type {', '.join(hold_types or [])}.")
    now = timezone.now()
    for hold in holds:
        hold.released_at, hold.released_by, hold.release_note = now, actor.label, note[:300]
    OrderHold.objects.bulk_update(holds, ["released_at", "released_by", "release_note"])
    if not OrderHold.objects.filter(order=order, released_at__isnull=True).exists():
        order.release(_status_after_change(order, _locked_lines(order)))
        order.save(update_fields=["status", "updated_at"])
        request_routing(order)  # resumes where it stopped; routing is a no-op if nothing is left
    events.order_released(order, actor, hold_types=sorted({h.type for h in holds}), note=note)
    return order


@transaction.atomic
def order_add_note(*, order_number: str, text: str, actor: Actor) -> Order:
    if not text.strip():
        raise ValidationFailed("A note needs text.", fields={"text": "This field is required."})
    order = _lock(order_number)
    events.note_added(order, actor, text=text.strip()[:500])
    return order


# --- Routing: apply a plan, reject a fulfilment ----------------------------------------------

ROUTABLE = (
    OrderStatus.RECEIVED,
    OrderStatus.BACKORDERED,
    OrderStatus.PARTIALLY_ALLOCATED,
    OrderStatus.ALLOCATED,
    OrderStatus.IN_FULFILLMENT,
    OrderStatus.PARTIALLY_SHIPPED,
)


class StalePlan(Conflict):
    """The order changed between planning and applying: plan again."""


def request_routing(order: Order) -> None:
    """Route the order once this transaction commits (by task name: orders never imports routing)."""
    outbox_enqueue_task("routing.route_order", order_number=order.number)


def units_to_route(order: Order, lines: Sequence[OrderLine]) -> dict[int, int]:
    """Open units of each line not yet in a live fulfilment: {line_id: units}."""
    in_fulfillment: dict[int, int] = defaultdict(int)
    for line_id, quantity, rejected, shipped in FulfillmentLine.objects.filter(
        fulfillment__order=order, fulfillment__status__in=FULFILLMENT_ACTIVE
    ).values_list("line_id", "quantity", "quantity_rejected", "quantity_shipped"):
        in_fulfillment[line_id] += quantity - rejected - shipped
    return {
        line.pk: line.quantity_open - in_fulfillment[line.pk]
        for line in lines
        if line.quantity_open - in_fulfillment[line.pk] > 0
    }


def excluded_locations(order: Order) -> set[int]:
    """Locations that rejected (some of) this order, or that a user took a fulfilment away from:
    routing does not go back to them."""
    rejected = FulfillmentLine.objects.filter(fulfillment__order=order, quantity_rejected__gt=0).values_list(
        "fulfillment__location_id", flat=True
    )
    rerouted = OrderEvent.objects.filter(order=order, type=events.REROUTED).values_list("data__location_id", flat=True)
    return set(rejected) | {int(pk) for pk in rerouted if pk is not None}


@transaction.atomic
def order_apply_routing(
    *,
    order_number: str,
    plan: dict[int, dict[int, int]],
    unsourced: dict[int, int],
    attempt: int,
    summary: str,
    actor: Actor,
) -> Order | None:
    """Make a routing plan real: hold stock at the chosen locations (new holds first, then
    release the provisional ones), create one fulfilment per location, and note what could not
    be sourced. Returns None when there is nothing (left) to route. Raises StalePlan or
    InsufficientStock when the plan no longer fits; the caller plans again."""
    order = _lock(order_number)
    if order.status not in ROUTABLE:
        return None
    lines = _locked_lines(order)
    by_id = {line.pk: line for line in lines}
    todo = units_to_route(order, lines)
    if not todo:
        return None
    planned: dict[int, int] = defaultdict(int)
    for per_line in plan.values():
        for line_id, quantity in per_line.items():
            planned[line_id] += quantity
    if any(q > todo.get(line_id, 0) for line_id, q in planned.items()):
        raise StalePlan(f"Order {order.number} changed while it was being routed.")
    allocations = {
        (a.line_id, a.location_id): a for a in Allocation.objects.select_for_update().filter(line__order=order)
    }
    reference = f"order:{order.number}"
    new_holds: list[StockLine] = []
    kept: dict[tuple[int, int], int] = {}
    for location_id, per_line in plan.items():
        for line_id, quantity in per_line.items():
            held = allocations.get((line_id, location_id))
            reuse = min(quantity, held.quantity if held and held.provisional else 0)
            kept[(line_id, location_id)] = reuse
            if quantity > reuse:
                new_holds.append(StockLine(location_id, by_id[line_id].item_id, quantity - reuse))
    if new_holds:
        stock_reserve(lines=new_holds, actor=actor, reference=reference)
    # Provisional holds that the plan did not reuse go back to availability.
    to_release: list[StockLine] = []
    for (line_id, location_id), allocation in allocations.items():
        if not allocation.provisional:
            continue
        spare = allocation.quantity - kept.get((line_id, location_id), 0)
        if spare > 0:
            to_release.append(StockLine(location_id, by_id[line_id].item_id, spare))
            by_id[line_id].quantity_allocated -= spare
            allocation.quantity -= spare
    if to_release:
        stock_release(lines=to_release, actor=actor, reference=reference)
    for location_id, per_line in plan.items():
        for line_id, quantity in per_line.items():
            allocation = allocations.get((line_id, location_id))
            added = quantity - kept[(line_id, location_id)]
            by_id[line_id].quantity_allocated += added
            if allocation is None:
                allocations[(line_id, location_id)] = Allocation.objects.create(
                    line_id=line_id, location_id=location_id, quantity=quantity, provisional=False
                )
            else:
                allocation.quantity += added
                allocation.provisional = False
    for allocation in allocations.values():
        if allocation.pk and allocation.quantity == 0:
            allocation.delete()
        elif allocation.pk:
            allocation.save(update_fields=["quantity", "provisional"])
    OrderLine.objects.bulk_update(lines, ["quantity_allocated"])
    locations = Location.objects.in_bulk(list(plan))
    codes = {pk: location.code for pk, location in locations.items()}
    released_at = timezone.now()
    created = []
    for location_id, per_line in sorted(plan.items()):
        transfer_to = order.pickup_location_id if order.pickup_location_id not in (None, location_id) else None
        fulfillment = Fulfillment.objects.create(
            order=order,
            location=locations[location_id],
            routing_attempt=attempt,
            transfer_to_id=transfer_to,
            due_at=sla.location_due_at(locations[location_id], released_at),
        )
        FulfillmentLine.objects.bulk_create(
            [FulfillmentLine(fulfillment=fulfillment, line_id=line_id, quantity=q) for line_id, q in per_line.items()]
        )
        if fulfillment.location.connector == Location.Connector.WEBHOOK:
            # Delivered by a worker through the outbox: retried, dead-lettered, never lost.
            outbox_enqueue_task("orders.send_fulfillment", fulfillment_id=fulfillment.pk)
        created.append(
            {
                "fulfillment": fulfillment.pk,
                "location": codes[location_id],
                "due_at": fulfillment.due_at.isoformat(),
                "transfer_to": order.pickup_location.code if transfer_to else None,
                "lines": {str(k): v for k, v in per_line.items()},
            }
        )
    order.recompute(_status_after_change(order, lines))
    order.save(update_fields=["status", "updated_at"])
    events.order_routed(
        order, actor, summary=summary, fulfillments=created, unsourced={by_id[k].sku: v for k, v in unsourced.items()}
    )
    if unsourced and not order.allow_backorder:
        skus = ", ".join(sorted({by_id[k].sku for k in unsourced}))
        _place_hold(order, hold_type=HoldType.SOURCING, reason=f"No location can source {skus}", actor=actor)
    return order


@transaction.atomic
def fulfillment_accept(*, fulfillment_id: int, actor: Actor) -> Fulfillment:
    order, fulfillment = _lock_order_and_fulfillment(fulfillment_id)
    if fulfillment.status == FulfillmentStatus.ACCEPTED:
        return fulfillment  # a retried accept
    if fulfillment.status not in (FulfillmentStatus.CREATED, FulfillmentStatus.SENT):
        raise InvalidTransition(f"Fulfilment {fulfillment.pk} is {fulfillment.status}; it cannot be accepted.")
    fulfillment.accept()
    fulfillment.save(update_fields=["status", "updated_at"])
    if order.status in OPEN_STATES:  # a held order stays on hold
        order.recompute(_status_after_change(order, _locked_lines(order)))
        order.save(update_fields=["status", "updated_at"])
    events.fulfillment_changed(order, actor, fulfillment=fulfillment, what="accepted")
    return fulfillment


def _check_requested(fulfillment: Fulfillment, flines: dict, wanted: dict[int, int], verb: str) -> None:
    """Each requested line must be in the fulfilment, for 1..its open units."""
    for line_id, quantity in wanted.items():
        fl = flines.get(line_id)
        if fl is None:
            raise ValidationFailed(
                f"Line {line_id} is not in fulfilment {fulfillment.pk}.",
                fields={"lines.line_id": "Not in this fulfilment."},
            )
        if quantity < 1 or quantity > fl.quantity_open:
            raise ValidationFailed(
                f"Line {line_id}: between 1 and {fl.quantity_open} unit(s) {verb}.",
                fields={"lines.quantity": f"Between 1 and {fl.quantity_open}."},
            )


def _reduce_allocation(
    line: OrderLine, location_id: int, units: int, *, actor: Actor | None = None, reference: str = ""
) -> None:
    """Take `units` off what a line holds at a location, deleting the allocation when it
    empties. With an actor the stock goes back too; a shipment commits it instead."""
    allocation = Allocation.objects.select_for_update().get(line=line, location_id=location_id)
    if actor is not None:
        stock_release(lines=[StockLine(location_id, line.item_id, units)], actor=actor, reference=reference)
    allocation.quantity -= units
    if allocation.quantity:
        allocation.save(update_fields=["quantity"])
    else:
        allocation.delete()
    line.quantity_allocated -= units


def _lock_order_and_fulfillment(fulfillment_id: int) -> tuple[Order, Fulfillment]:
    """Order first, then fulfilment: the lock order every order service uses (no deadlocks)."""
    number = Fulfillment.objects.filter(pk=fulfillment_id).values_list("order__number", flat=True).first()
    if number is None:
        raise NotFound(f"No fulfilment {fulfillment_id}.")
    order = _lock(number)
    fulfillment = Fulfillment.objects.select_for_update(of=("self",)).select_related("location").get(pk=fulfillment_id)
    return order, fulfillment


@transaction.atomic
def fulfillment_reject(
    *, fulfillment_id: int, reason: str, actor: Actor, lines: dict[int, int] | None = None
) -> Fulfillment:
    """A location refuses all or some of a fulfilment: release its stock, exclude it for this
    order, and route what it refused again (or raise a sourcing exception after too many)."""
    order, fulfillment = _lock_order_and_fulfillment(fulfillment_id)
    return _reject_locked(order, fulfillment, reason=reason, actor=actor, lines=lines)


def _reject_locked(
    order: Order, fulfillment: Fulfillment, *, reason: str, actor: Actor, lines: dict[int, int] | None
) -> Fulfillment:
    if fulfillment.status not in REJECTABLE:
        raise InvalidTransition(f"Fulfilment {fulfillment.pk} is {fulfillment.status}; it can no longer be rejected.")
    if not reason.strip():
        raise ValidationFailed("A reason is required.", fields={"reason": "This field is required."})
    flines = {fl.line_id: fl for fl in fulfillment.lines.select_related("line")}
    wanted = {line_id: fl.quantity_open for line_id, fl in flines.items()} if lines is None else lines
    _check_requested(fulfillment, flines, wanted, "can be rejected")
    order_lines = {line.pk: line for line in _locked_lines(order)}
    released = []
    for line_id, quantity in wanted.items():
        fl = flines[line_id]
        fl.quantity_rejected += quantity
        fl.save(update_fields=["quantity_rejected"])
        line = order_lines[line_id]
        _reduce_allocation(line, fulfillment.location_id, quantity, actor=actor, reference=f"order:{order.number}")
        released.append({"sku": line.sku, "quantity": quantity})
    OrderLine.objects.bulk_update(list(order_lines.values()), ["quantity_allocated"])
    if all(fl.quantity_open == 0 for fl in flines.values()):
        fulfillment.reject()
    fulfillment.rejection_reason = reason.strip()[:300]
    fulfillment.save(update_fields=["status", "rejection_reason", "updated_at"])
    if order.status != OrderStatus.ON_HOLD:
        order.recompute(_status_after_change(order, list(order_lines.values())))
        order.save(update_fields=["status", "updated_at"])
    events.fulfillment_rejected(order, actor, fulfillment=fulfillment, reason=reason, lines=released)
    rejections = Fulfillment.objects.filter(order=order, lines__quantity_rejected__gt=0).distinct().count()
    if rejections >= settings.ROUTING_MAX_ATTEMPTS:
        _place_hold(
            order,
            hold_type=HoldType.SOURCING,
            reason=f"Rejected by {rejections} location(s); route it by hand",
            actor=actor,
        )
    elif order.status != OrderStatus.ON_HOLD:
        request_routing(order)
    return fulfillment


# --- Shipping and pickup ----------------------------------------------------------------------

SHIPPABLE = (FulfillmentStatus.ACCEPTED, FulfillmentStatus.PICKING, FulfillmentStatus.PACKED)


def _capture_payment(order: Order, amount: Decimal) -> Decimal:
    """Capture what shipped from the open authorisations, oldest first."""
    captured = Decimal(0)
    for payment in Payment.objects.select_for_update().filter(order=order).order_by("pk"):
        take = min(amount - captured, payment.amount_open)
        if take <= 0:
            continue
        payment.amount_captured += take
        payment.settle()
        payment.save(update_fields=["amount_captured", "status"])
        captured += take
    return captured


def _hand_over(
    order: Order, fulfillment: Fulfillment, lines: dict[int, int] | None, actor: Actor
) -> tuple[list[tuple[FulfillmentLine, int]], Decimal]:
    """Units leave the location: stock is committed (on hand and reserved both fall), line
    quantities move from allocated to shipped, and their value is captured."""
    flines = {fl.line_id: fl for fl in fulfillment.lines.select_for_update(of=("self",)).select_related("line")}
    wanted = (
        {line_id: fl.quantity_open for line_id, fl in flines.items() if fl.quantity_open} if lines is None else lines
    )
    if not wanted:
        raise InvalidTransition(f"Fulfilment {fulfillment.pk} has nothing left to ship.")
    _check_requested(fulfillment, flines, wanted, "can ship")
    order_lines = {line.pk: line for line in _locked_lines(order)}
    moved, value = [], Decimal(0)
    stock_commit_shipment(
        lines=[StockLine(fulfillment.location_id, order_lines[k].item_id, q) for k, q in wanted.items()],
        actor=actor,
        reference=f"order:{order.number}",
    )
    for line_id, quantity in wanted.items():
        fl, line = flines[line_id], order_lines[line_id]
        fl.quantity_shipped += quantity
        fl.save(update_fields=["quantity_shipped"])
        _reduce_allocation(line, fulfillment.location_id, quantity)  # the shipment commits the stock
        line.quantity_shipped += quantity
        value += line.value_of(quantity)
        moved.append((fl, quantity))
    OrderLine.objects.bulk_update(list(order_lines.values()), ["quantity_allocated", "quantity_shipped"])
    if not Payment.objects.filter(order=order, amount_captured__gt=0).exists():
        value += order.shipping_total  # shipping is charged with the first shipment
    captured = _capture_payment(order, value)
    derived = _status_after_change(order, list(order_lines.values()))
    if derived in (OrderStatus.SHIPPED, OrderStatus.PARTIALLY_SHIPPED) and order.status != OrderStatus.ON_HOLD:
        order.recompute(derived)
        order.save(update_fields=["status", "updated_at"])
    return moved, captured


def _apply_early_tracking(carrier_id: int, tracking_number: str) -> None:
    from .carriers.services import apply_early_tracking  # carriers build on this module

    apply_early_tracking(carrier_id=carrier_id, tracking_numbers=[tracking_number])


def _check_shippable(order: Order, fulfillment: Fulfillment) -> None:
    if fulfillment.status not in SHIPPABLE:
        raise InvalidTransition(f"Fulfilment {fulfillment.pk} is {fulfillment.status}; it cannot ship.")
    if order.is_pickup and fulfillment.transfer_to_id is None:
        raise InvalidTransition(f"Fulfilment {fulfillment.pk} is a pickup: mark it ready for pickup instead.")


def fulfillment_ship_check(*, fulfillment_id: int, lines: dict[int, int] | None = None) -> dict[int, int]:
    """What `fulfillment_ship` would ship ({line id: units}), or the error it would raise; read
    only, so a carrier label is bought only for a shipment that can happen."""
    fulfillment = Fulfillment.objects.select_related("order").filter(pk=fulfillment_id).first()
    if fulfillment is None:
        raise NotFound(f"No fulfilment {fulfillment_id}.")
    _check_shippable(fulfillment.order, fulfillment)
    flines = {fl.line_id: fl for fl in fulfillment.lines.all()}
    wanted = (
        {line_id: fl.quantity_open for line_id, fl in flines.items() if fl.quantity_open} if lines is None else lines
    )
    if not wanted:
        raise InvalidTransition(f"Fulfilment {fulfillment.pk} has nothing left to ship.")
    _check_requested(fulfillment, flines, wanted, "can ship")
    return wanted


@transaction.atomic
def fulfillment_ship(
    *,
    fulfillment_id: int,
    actor: Actor,
    carrier: str = "",
    tracking_number: str = "",
    service: str = "",
    reference: str = "",
    lines: dict[int, int] | None = None,
    label: Label | None = None,
) -> Shipment:
    """Ship all of a fulfilment or some of its lines (partial shipment). A repeated `reference`
    returns the shipment it already created.

    A `carrier` that names a configured, active `Carrier` links it, and the parcel is tracked
    from then on; `label` is one the OMS bought for this shipment (`orders.carriers.services`)."""
    order, fulfillment = _lock_order_and_fulfillment(fulfillment_id)
    if reference:
        existing = Shipment.objects.filter(fulfillment=fulfillment, reference=reference).first()
        if existing is not None:
            return existing
    _check_shippable(order, fulfillment)
    moved, captured = _hand_over(order, fulfillment, lines, actor)
    account = Carrier.objects.filter(code__iexact=carrier, active=True).first() if carrier else None
    tracked = account is not None and bool(tracking_number)
    shipment = Shipment.objects.create(
        fulfillment=fulfillment,
        carrier=account.code if account else carrier,
        carrier_account=account,
        service=service,
        tracking_number=tracking_number,
        reference=reference,
        tracking_status=TrackingStatus.LABEL_CREATED if tracked else TrackingStatus.UNTRACKED,
        next_tracking_check_at=timezone.now() if tracked else None,
        **(
            {
                "label_format": label.label_format,
                "label_data": label.label_data,
                "label_cost": label.amount,
                "label_currency": label.currency,
            }
            if label
            else {}
        ),
    )
    ShipmentLine.objects.bulk_create(
        [ShipmentLine(shipment=shipment, fulfillment_line=fl, quantity=q) for fl, q in moved]
    )
    if tracked:  # the carrier may have pushed events for this number before this commit
        transaction.on_commit(partial(_apply_early_tracking, account.pk, tracking_number))
    if all(fl.quantity_open == 0 for fl in fulfillment.lines.all()):
        fulfillment.ship()
        fulfillment.save(update_fields=["status", "updated_at"])
    events.fulfillment_shipped(
        order, actor, fulfillment=fulfillment, shipment=shipment, units=sum(q for _, q in moved), captured=captured
    )
    return shipment


@transaction.atomic
def fulfillment_ready_for_pickup(*, fulfillment_id: int, actor: Actor, now: datetime | None = None) -> Fulfillment:
    """Waiting at the counter: the customer gets a pickup code (webhook and email) and has
    PICKUP_EXPIRY_DAYS to collect before it expires."""
    order, fulfillment = _lock_order_and_fulfillment(fulfillment_id)
    if fulfillment.status == FulfillmentStatus.READY_FOR_PICKUP:
        return fulfillment  # a retry
    if not order.is_pickup or fulfillment.location_id != order.pickup_location_id:
        raise InvalidTransition(f"Fulfilment {fulfillment.pk} is not collected at {fulfillment.location.code}.")
    if fulfillment.status not in SHIPPABLE:
        raise InvalidTransition(f"Fulfilment {fulfillment.pk} is {fulfillment.status}; it cannot be made ready.")
    now = now or timezone.now()
    fulfillment.ready_for_pickup()
    fulfillment.pickup_code = fulfillment.pickup_code or new_pickup_code()
    fulfillment.ready_at = now
    fulfillment.pickup_expires_at = now + timedelta(days=settings.PICKUP_EXPIRY_DAYS)
    fulfillment.save(update_fields=["status", "pickup_code", "ready_at", "pickup_expires_at", "updated_at"])
    events.fulfillment_ready(order, actor, fulfillment=fulfillment)
    return fulfillment


@transaction.atomic
def fulfillment_picked_up(*, fulfillment_id: int, actor: Actor, pickup_code: str | None = None) -> Fulfillment:
    """The customer collected it: the units leave the store like a shipment does.

    `pickup_code` is what the customer showed; a wrong one is refused and changes nothing.
    None means the caller checked the customer some other way (a partner or POS that verifies
    codes or ID itself); the timeline records which it was."""
    order, fulfillment = _lock_order_and_fulfillment(fulfillment_id)
    if fulfillment.status == FulfillmentStatus.PICKED_UP:
        return fulfillment
    if fulfillment.status != FulfillmentStatus.READY_FOR_PICKUP:
        raise InvalidTransition(f"Fulfilment {fulfillment.pk} is {fulfillment.status}, not ready for pickup.")
    if pickup_code is not None and not pickup_code_matches(fulfillment, pickup_code):
        log.warning("wrong pickup code for fulfilment %s by %s", fulfillment.pk, actor.label)
        raise ValidationFailed(
            "The pickup code does not match this order. Ask the customer for the code in their "
            "ready-for-pickup message.",
            fields={"pickup_code": "Does not match."},
        )
    _, captured = _hand_over(order, fulfillment, None, actor)
    fulfillment.picked_up()
    fulfillment.save(update_fields=["status", "updated_at"])
    events.fulfillment_picked_up(order, actor, fulfillment=fulfillment, code_checked=pickup_code is not None)
    _complete_if_done(order, actor)
    return fulfillment


@transaction.atomic
def fulfillment_deliver(*, fulfillment_id: int, actor: Actor) -> Fulfillment:
    order, fulfillment = _lock_order_and_fulfillment(fulfillment_id)
    if fulfillment.status == FulfillmentStatus.DELIVERED:
        return fulfillment
    if fulfillment.status != FulfillmentStatus.SHIPPED:
        raise InvalidTransition(
            f"Fulfilment {fulfillment.pk} is {fulfillment.status}; only shipped ones are delivered."
        )
    fulfillment.deliver()
    fulfillment.save(update_fields=["status", "updated_at"])
    events.fulfillment_delivered(order, actor, fulfillment=fulfillment)
    _complete_if_done(order, actor)
    return fulfillment


def _complete_if_done(order: Order, actor: Actor) -> None:
    """An order whose every unit shipped and every fulfilment reached the customer is complete."""
    if order.status != OrderStatus.SHIPPED:
        return
    finished = {
        FulfillmentStatus.DELIVERED,
        FulfillmentStatus.PICKED_UP,
        FulfillmentStatus.EXPIRED,
        FulfillmentStatus.REJECTED,
        FulfillmentStatus.CANCELLED,
    }
    statuses = set(Fulfillment.objects.filter(order=order).values_list("status", flat=True))
    if statuses <= finished:
        order.complete()
        order.save(update_fields=["status", "updated_at"])
        events.order_completed(order, actor)


# --- Partner connector ------------------------------------------------------------------------


def fulfillment_request(fulfillment: Fulfillment) -> dict:
    """What a partner receives for a fulfilment (also its own record of the request)."""
    order = fulfillment.order
    return {
        "fulfillment": fulfillment.pk,
        "order": order.number,
        "channel": order.channel.code,
        "location": fulfillment.location.code,
        "method": order.fulfillment_method,
        "transfer_to": fulfillment.transfer_to.code if fulfillment.transfer_to else None,
        "ship_to": order.ship_to(),
        "shipping_method": order.shipping_method,
        "lines": [
            {"line_id": fl.line_id, "sku": fl.line.sku, "quantity": fl.quantity} for fl in fulfillment.lines.all()
        ],
    }


@transaction.atomic
def fulfillment_mark_sent(*, fulfillment_id: int, actor: Actor) -> Fulfillment:
    """The partner acknowledged the request. Idempotent: a later status is left as it is."""
    order, fulfillment = _lock_order_and_fulfillment(fulfillment_id)
    if fulfillment.status == FulfillmentStatus.CREATED:
        fulfillment.send()
        fulfillment.save(update_fields=["status", "updated_at"])
        events.fulfillment_changed(order, actor, fulfillment=fulfillment, what="sent")
    return fulfillment


# --- Customer service: re-route, resend, route again ------------------------------------------

REROUTABLE = REJECTABLE  # once picking has started, the location has to be asked instead


@transaction.atomic
def fulfillment_reroute(*, fulfillment_id: int, reason: str, actor: Actor) -> Fulfillment:
    """Take the open units of a fulfilment away from its location (a user's decision, not a
    rejection: the location's rejection rate is untouched), release their stock there, keep the
    location out of this order's routing and route those units again."""
    order, fulfillment = _lock_order_and_fulfillment(fulfillment_id)
    if fulfillment.status not in REROUTABLE:
        raise InvalidTransition(
            f"Fulfilment {fulfillment.pk} is {fulfillment.get_status_display().lower()}; "
            "it can only be re-routed before picking starts."
        )
    if not reason.strip():
        raise ValidationFailed("A reason is required.", fields={"reason": "This field is required."})
    flines = list(fulfillment.lines.select_for_update().select_related("line"))
    order_lines = {line.pk: line for line in _locked_lines(order)}
    moved = []
    for fl in flines:
        units = fl.quantity_open
        if not units:
            continue
        line = order_lines[fl.line_id]
        _reduce_allocation(line, fulfillment.location_id, units, actor=actor, reference=f"order:{order.number}")
        fl.quantity -= units
        fl.save(update_fields=["quantity"])
        moved.append({"line_id": line.pk, "sku": line.sku, "quantity": units})
    if not moved:
        raise InvalidTransition(f"Fulfilment {fulfillment.pk} has nothing left to re-route.")
    OrderLine.objects.bulk_update(list(order_lines.values()), ["quantity_allocated"])
    # What already left this location stays a (shipped) fulfilment; otherwise nothing is left of it.
    if any(fl.quantity_shipped for fl in flines):
        fulfillment.ship()
    else:
        fulfillment.cancel()
    fulfillment.save(update_fields=["status", "updated_at"])
    if order.status != OrderStatus.ON_HOLD:
        order.recompute(_status_after_change(order, list(order_lines.values())))
        order.save(update_fields=["status", "updated_at"])
        request_routing(order)
    events.fulfillment_rerouted(order, actor, fulfillment=fulfillment, reason=reason.strip(), lines=moved)
    return fulfillment


@transaction.atomic
def fulfillment_resend(*, fulfillment_id: int, actor: Actor) -> Fulfillment:
    """Send a fulfilment request to its partner again: the dead-lettered (or still retrying)
    message is due now with a fresh set of attempts; a new one is written if none is left."""
    order, fulfillment = _lock_order_and_fulfillment(fulfillment_id)
    if fulfillment.location.connector != Location.Connector.WEBHOOK:
        raise InvalidTransition(f"{fulfillment.location.code} takes work from its queue; there is nothing to resend.")
    if fulfillment.status != FulfillmentStatus.CREATED:
        raise InvalidTransition(
            f"Fulfilment {fulfillment.pk} is {fulfillment.get_status_display().lower()}: "
            f"{fulfillment.location.code} already has it."
        )
    revived = outbox_revive(topic="orders.send_fulfillment", payload={"fulfillment_id": fulfillment.pk})
    if not revived:
        outbox_enqueue_task("orders.send_fulfillment", fulfillment_id=fulfillment.pk)
    events.fulfillment_changed(order, actor, fulfillment=fulfillment, what="resent")
    return fulfillment


@transaction.atomic
def order_route_again(*, order_number: str, actor: Actor) -> Order:
    """Ask routing to try again now (stock may have arrived, a message may have died)."""
    order = _lock(order_number)
    if order.status not in ROUTABLE:
        raise InvalidTransition(f"Order {order.number} is {order.get_status_display().lower()}; it is not routed.")
    if not units_to_route(order, _locked_lines(order)):
        raise InvalidTransition(f"Every open unit of order {order.number} is already in a fulfilment.")
    if not outbox_revive(topic="routing.route_order", payload={"order_number": order.number}):
        request_routing(order)
    events.routing_requested(order, actor)
    return order


# --- Store work: picking, packing, pickup codes ------------------------------------------------

PICKUP_CODE_LENGTH = 6  # 32^6 ≈ 10^9 codes, read out or typed at a counter


def new_pickup_code() -> str:
    return "".join(secrets.choice(NUMBER_ALPHABET) for _ in range(PICKUP_CODE_LENGTH))


def normalise_pickup_code(raw: str) -> str:
    """What the customer read out or typed: case, spaces and dashes do not matter."""
    return "".join(ch for ch in raw.upper() if ch.isalnum())


def pickup_code_matches(fulfillment: Fulfillment, given: str) -> bool:
    """Constant-time comparison, so response timing tells nothing about the code."""
    if not fulfillment.pickup_code:
        return False
    return hmac.compare_digest(fulfillment.pickup_code.encode(), normalise_pickup_code(given).encode())


def _progress(fulfillment_id: int, actor: Actor, *, target: str, sources: Sequence[str], verb: str) -> Fulfillment:
    order, fulfillment = _lock_order_and_fulfillment(fulfillment_id)
    if fulfillment.status == target:
        return fulfillment  # a retry
    if fulfillment.status not in sources:
        raise InvalidTransition(f"Fulfilment {fulfillment.pk} is {fulfillment.status}; it cannot be {verb}.")
    if target == FulfillmentStatus.PICKING:
        fulfillment.start_picking()
    else:
        fulfillment.pack()
    fulfillment.save(update_fields=["status", "updated_at"])
    events.fulfillment_changed(order, actor, fulfillment=fulfillment, what=target)
    return fulfillment


@transaction.atomic
def fulfillment_start_picking(*, fulfillment_id: int, actor: Actor) -> Fulfillment:
    """The location's pickers are on it (after accepting)."""
    return _progress(
        fulfillment_id, actor, target=FulfillmentStatus.PICKING, sources=[FulfillmentStatus.ACCEPTED], verb="picked"
    )


@transaction.atomic
def fulfillment_pack(*, fulfillment_id: int, actor: Actor) -> Fulfillment:
    """Picked and packed: the SLA is met; next it ships or waits at the counter."""
    return _progress(
        fulfillment_id,
        actor,
        target=FulfillmentStatus.PACKED,
        sources=[FulfillmentStatus.ACCEPTED, FulfillmentStatus.PICKING],
        verb="packed",
    )


# --- SLAs: escalation, late flags, uncollected pickups -----------------------------------------
# Each runs per fulfilment in its own transaction with the order and fulfilment locked, and
# checks its condition again under the lock: two overlapping beat runs act once.

NOT_ACCEPTED_IN_TIME = "not accepted in time"
SWEEP_BATCH = 500  # fulfilments per beat run; the next run takes the rest


@transaction.atomic
def fulfillment_escalate_unaccepted(*, fulfillment_id: int, actor: Actor, now: datetime, mode: str) -> bool:
    """Not accepted within FULFILLMENT_ACCEPT_MINUTES: "reroute" rejects what is left (the
    rejection sends it to routing again) or "alert" flags it once (timeline + webhook).
    Returns whether it acted."""
    order, fulfillment = _lock_order_and_fulfillment(fulfillment_id)
    limit = timedelta(minutes=settings.FULFILLMENT_ACCEPT_MINUTES)
    if fulfillment.status not in AWAITING_ACCEPTANCE or fulfillment.created_at > now - limit:
        return False
    minutes = int((now - fulfillment.created_at).total_seconds() // 60)
    if mode == "reroute":
        _reject_locked(order, fulfillment, reason=NOT_ACCEPTED_IN_TIME, actor=actor, lines=None)
        return True
    if fulfillment.accept_escalated_at is not None:
        return False
    fulfillment.accept_escalated_at = now
    fulfillment.save(update_fields=["accept_escalated_at", "updated_at"])
    events.fulfillment_late(
        order,
        actor,
        fulfillment=fulfillment,
        sla="accept",
        message=f"Fulfilment {fulfillment.pk} at {fulfillment.location.code} not accepted after {minutes} minutes",
    )
    return True


@transaction.atomic
def fulfillment_flag_late(*, fulfillment_id: int, actor: Actor, now: datetime) -> bool:
    """Not picked and packed by its due time: flag it (once), timeline + `fulfillment.late`."""
    order, fulfillment = _lock_order_and_fulfillment(fulfillment_id)
    if (
        fulfillment.late_at is not None
        or fulfillment.status not in NOT_YET_PICKED
        or fulfillment.due_at is None
        or fulfillment.due_at >= now
    ):
        return False
    fulfillment.late_at = now
    fulfillment.save(update_fields=["late_at", "updated_at"])
    late_by = int((now - fulfillment.due_at).total_seconds() // 60)
    events.fulfillment_late(
        order,
        actor,
        fulfillment=fulfillment,
        sla="due",
        message=(
            f"Fulfilment {fulfillment.pk} at {fulfillment.location.code} is late: due "
            f"{fulfillment.due_at:%Y-%m-%d %H:%M} UTC, still {fulfillment.status} ({late_by} min over)"
        ),
    )
    return True


@transaction.atomic
def fulfillment_expire(*, fulfillment_id: int, actor: Actor, now: datetime | None = None) -> bool:
    """An uncollected pickup past its expiry: the fulfilment expires, its units are cancelled
    and their stock released, and their money voided (or refunded, if it was captured).
    Returns whether it acted (False if collected, already expired or not yet due)."""
    now = now or timezone.now()
    order, fulfillment = _lock_order_and_fulfillment(fulfillment_id)
    if (
        fulfillment.status != FulfillmentStatus.READY_FOR_PICKUP
        or fulfillment.pickup_expires_at is None
        or fulfillment.pickup_expires_at > now
    ):
        return False
    lines = _locked_lines(order)
    by_id = {line.pk: line for line in lines}
    reference = f"order:{order.number}"
    cancelled, value = [], Decimal(0)
    for fl in fulfillment.lines.select_for_update().order_by("pk"):
        units = fl.quantity_open
        if not units:
            continue
        line = by_id[fl.line_id]
        _reduce_allocation(line, fulfillment.location_id, units, actor=actor, reference=reference)
        line.quantity_cancelled += units
        value += line.value_of(units)
        cancelled.append(
            {
                "line_id": line.pk,
                "sku": line.sku,
                "quantity": units,
                "released": [{"location": fulfillment.location.code, "quantity": units}],
            }
        )
    OrderLine.objects.bulk_update(lines, ["quantity_cancelled", "quantity_allocated"])
    fulfillment.expire()
    fulfillment.save(update_fields=["status", "updated_at"])
    derived = _status_after_change(order, lines)
    full = derived == OrderStatus.CANCELLED
    if full or derived == OrderStatus.SHIPPED:
        value += order.shipping_total if full else Decimal(0)
        order.cancel(derived)
        OrderHold.objects.filter(order=order, released_at__isnull=True).update(
            released_at=now, released_by=actor.label, release_note="order cancelled"
        )
    elif order.status != OrderStatus.ON_HOLD:
        order.recompute(derived)
    order.save(update_fields=["status", "updated_at"])
    money = _give_back(order, value)
    refund = {
        "amount": str(value),
        "voided": str(money.voided),
        "refunded": str(money.refunded),
        "payments": money.per_payment,
    }
    days = (fulfillment.pickup_expires_at - fulfillment.ready_at).days if fulfillment.ready_at else None
    reason = "not collected" + (f" within {days} day(s)" if days is not None else "") + " of being ready for pickup"
    events.fulfillment_expired(order, actor, fulfillment=fulfillment, reason=reason, lines=cancelled, refund=refund)
    events.order_cancelled(order, actor, reason=reason, lines=cancelled, full=full, refund=refund)
    _complete_if_done(order, actor)  # the other fulfilments may already have reached the customer
    return True


def _sweep(ids: Sequence[int], act: Callable[[int], bool], what: str) -> int:
    """Run `act` for each fulfilment; one failure (a lost race, a deadlock) does not stop the
    rest, and the next beat tries it again."""
    done = 0
    for fulfillment_id in ids:
        try:
            done += bool(act(fulfillment_id))
        except Exception:
            log.exception("%s failed for fulfilment %s", what, fulfillment_id)
    return done


def sla_escalate_unaccepted(*, now: datetime | None = None, mode: str | None = None) -> int:
    now = now or timezone.now()
    mode = mode or settings.FULFILLMENT_ACCEPT_ESCALATION
    candidates = Fulfillment.objects.filter(
        status__in=AWAITING_ACCEPTANCE,
        created_at__lte=now - timedelta(minutes=settings.FULFILLMENT_ACCEPT_MINUTES),
    )
    if mode != "reroute":
        candidates = candidates.filter(accept_escalated_at__isnull=True)
    actor = Actor.for_task("orders.escalate_unaccepted")
    ids = list(candidates.order_by("pk").values_list("pk", flat=True)[:SWEEP_BATCH])
    return _sweep(
        ids,
        lambda pk: fulfillment_escalate_unaccepted(fulfillment_id=pk, actor=actor, now=now, mode=mode),
        "escalation",
    )


def sla_flag_late(*, now: datetime | None = None) -> int:
    now = now or timezone.now()
    actor = Actor.for_task("orders.flag_late_fulfillments")
    ids = list(
        Fulfillment.objects.overdue(now)
        .filter(late_at__isnull=True)
        .order_by("pk")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    return _sweep(ids, lambda pk: fulfillment_flag_late(fulfillment_id=pk, actor=actor, now=now), "late flag")


def pickups_expire_due(*, now: datetime | None = None) -> int:
    now = now or timezone.now()
    actor = Actor.for_task("orders.expire_pickups")
    ids = list(
        Fulfillment.objects.filter(status=FulfillmentStatus.READY_FOR_PICKUP, pickup_expires_at__lte=now)
        .order_by("pk")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    return _sweep(ids, lambda pk: fulfillment_expire(fulfillment_id=pk, actor=actor, now=now), "pickup expiry")
