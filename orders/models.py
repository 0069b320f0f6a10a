"""Orders: the system of record after "buy". Customer, Order, OrderLine, Allocation (where a
line's units are held), Payment, holds and hold rules, and the OrderEvent timeline."""

from __future__ import annotations

import secrets
from decimal import Decimal

from django.db import models
from django.db.models import F, Q
from django_fsm import RETURN_VALUE, FSMField, FSMModelMixin, transition

from oms.actor import ActorFields

# The carrier models live in orders.carriers; importing them here registers them with the app.
from .carriers.models import (  # noqa: F401
    CARRIER_STATUSES,
    TRACKED,
    Carrier,
    CarrierWebhookReceipt,
    EarlyTrackingEvent,
    TrackingEvent,
    TrackingStatus,
)


class Customer(models.Model):
    # On PostgreSQL, trigram indexes on UPPER(name), email and phone_digits serve the console's
    # "contains" searches (orders/migrations/0008_console_search_indexes.py).
    email = models.EmailField(unique=True, help_text="Stored lower-cased.")
    name = models.CharField(max_length=200, blank=True)
    phone = models.CharField(max_length=40, blank=True)
    phone_digits = models.CharField(max_length=40, blank=True, db_index=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email

    @staticmethod
    def normalise_email(email: str) -> str:
        return email.strip().lower()

    @staticmethod
    def digits(phone: str) -> str:
        return "".join(ch for ch in phone if ch.isdigit())


class OrderStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    ON_HOLD = "on_hold", "On hold"
    BACKORDERED = "backordered", "Backordered"
    PARTIALLY_ALLOCATED = "partially_allocated", "Partially allocated"
    ALLOCATED = "allocated", "Allocated"
    IN_FULFILLMENT = "in_fulfillment", "In fulfilment"
    PARTIALLY_SHIPPED = "partially_shipped", "Partially shipped"
    SHIPPED = "shipped", "Shipped"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"


OPEN_STATES = [
    OrderStatus.RECEIVED,
    OrderStatus.BACKORDERED,
    OrderStatus.PARTIALLY_ALLOCATED,
    OrderStatus.ALLOCATED,
    OrderStatus.IN_FULFILLMENT,
    OrderStatus.PARTIALLY_SHIPPED,
]
# Before anything ships the address may change and the order may be held.
PRE_SHIPMENT_STATES = [
    OrderStatus.RECEIVED,
    OrderStatus.BACKORDERED,
    OrderStatus.PARTIALLY_ALLOCATED,
    OrderStatus.ALLOCATED,
    OrderStatus.IN_FULFILLMENT,
]
DERIVED_STATES = [s for s in OrderStatus.values if s != OrderStatus.ON_HOLD]

NUMBER_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: read out over the phone


def new_order_number(channel_code: str) -> str:
    return f"{channel_code[:2].upper()}-" + "".join(secrets.choice(NUMBER_ALPHABET) for _ in range(7))


class Order(FSMModelMixin, models.Model):
    class Method(models.TextChoices):
        SHIP = "ship", "Ship"
        PICKUP = "pickup", "Pickup"

    # Unique through Meta.constraints, not unique=True: that would add a LIKE index (varchar
    # pattern ops) on PostgreSQL, which nothing queries and every capture writes.
    number = models.CharField(max_length=20, editable=False)
    # Indexed as the first column of (channel, external_id) and (channel, created_at).
    channel = models.ForeignKey("inventory.Channel", on_delete=models.PROTECT, related_name="orders", db_index=False)
    external_id = models.CharField(max_length=100)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="orders")
    currency = models.CharField(max_length=3)
    status = FSMField(default=OrderStatus.RECEIVED, choices=OrderStatus.choices, protected=True)
    fulfillment_method = models.CharField(max_length=8, choices=Method.choices, default=Method.SHIP)
    pickup_location = models.ForeignKey(
        "inventory.Location", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    ship_name = models.CharField(max_length=200, blank=True)
    ship_line1 = models.CharField(max_length=200, blank=True)
    ship_line2 = models.CharField(max_length=200, blank=True)
    ship_city = models.CharField(max_length=100, blank=True)
    ship_region = models.CharField(max_length=100, blank=True)
    ship_postal_code = models.CharField(max_length=20, blank=True)
    ship_country = models.CharField(max_length=2, blank=True)
    ship_latitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    ship_longitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    shipping_method = models.CharField(max_length=50, blank=True)
    subtotal = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    discount_total = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    shipping_total = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    tax_total = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    grand_total = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    ship_complete = models.BooleanField(default=False)
    allow_backorder = models.BooleanField(default=False)
    promised_ship_date = models.DateField(null=True, blank=True)
    promised_delivery_date = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["number"], name="order_number_uniq"),
            models.UniqueConstraint(fields=["channel", "external_id"], name="order_channel_external_id_uniq"),
        ]
        indexes = [
            models.Index(fields=["status", "created_at"]),
            models.Index(fields=["channel", "created_at"]),
            # console search: a channel order id without its channel
            models.Index(fields=["external_id"], name="order_external_id_idx"),
        ]

    def __str__(self) -> str:
        return self.number

    @property
    def is_pickup(self) -> bool:
        return self.fulfillment_method == self.Method.PICKUP

    def ship_to(self) -> dict | None:
        """Where the order goes, as the API and fulfilment partners are given it (None for
        pickup orders)."""
        if self.is_pickup:
            return None
        return {
            "name": self.ship_name,
            "line1": self.ship_line1,
            "line2": self.ship_line2,
            "city": self.ship_city,
            "region": self.ship_region,
            "postal_code": self.ship_postal_code,
            "country": self.ship_country,
        }

    # --- State machine: transitions change state in memory; services lock, save and audit. ---

    @transition(field=status, source=PRE_SHIPMENT_STATES, target=OrderStatus.ON_HOLD)
    def hold(self) -> None:
        """Stop the order from being routed or released to fulfilment."""

    @transition(field=status, source=OrderStatus.ON_HOLD, target=RETURN_VALUE(*DERIVED_STATES))
    def release(self, derived: str) -> str:
        return derived

    @transition(field=status, source=OPEN_STATES, target=RETURN_VALUE(*DERIVED_STATES))
    def recompute(self, derived: str) -> str:
        """Follow the lines and fulfilments (allocation, shipment, cancellation)."""
        return derived

    @transition(field=status, source=OrderStatus.SHIPPED, target=OrderStatus.COMPLETED)
    def complete(self) -> None:
        """Every fulfilment was delivered or picked up."""

    @transition(
        field=status,
        source=[*OPEN_STATES, OrderStatus.ON_HOLD],
        target=RETURN_VALUE(OrderStatus.CANCELLED, OrderStatus.SHIPPED, OrderStatus.COMPLETED),
    )
    def cancel(self, derived: str) -> str:
        """Cancel everything not shipped; an order with shipped units ends as shipped."""
        return derived


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    item = models.ForeignKey("inventory.Item", on_delete=models.PROTECT, related_name="+")
    sku = models.CharField(max_length=64)
    external_line_id = models.CharField(max_length=100, blank=True)
    quantity = models.PositiveIntegerField()
    quantity_allocated = models.PositiveIntegerField(default=0)
    quantity_shipped = models.PositiveIntegerField(default=0)
    quantity_cancelled = models.PositiveIntegerField(default=0)
    quantity_returned = models.PositiveIntegerField(default=0)
    unit_price = models.DecimalField(max_digits=12, decimal_places=2)
    discount_amount = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    tax_amount = models.DecimalField(max_digits=12, decimal_places=2, default=0)

    class Meta:
        ordering = ["id"]
        constraints = [
            # ordered = open + cancelled + shipped, and only open units can be allocated
            models.CheckConstraint(
                condition=Q(quantity__gte=F("quantity_cancelled") + F("quantity_shipped") + F("quantity_allocated")),
                name="line_quantities_reconcile",
            ),
            models.CheckConstraint(condition=Q(quantity__gte=1), name="line_quantity_gte_1"),
            models.CheckConstraint(
                condition=Q(quantity_returned__lte=F("quantity_shipped")),
                name="line_returned_lte_shipped",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.order_id}:{self.sku}×{self.quantity}"

    @property
    def quantity_open(self) -> int:
        """Not yet shipped and not cancelled."""
        return self.quantity - self.quantity_cancelled - self.quantity_shipped

    @property
    def quantity_backordered(self) -> int:
        """Open units with no stock held for them."""
        return self.quantity_open - self.quantity_allocated

    @property
    def line_total(self) -> Decimal:
        return self.unit_price * self.quantity - self.discount_amount + self.tax_amount

    def value_of(self, units: int) -> Decimal:
        """What the customer pays for `units` of this line: price less its share of the
        discount, plus its share of the tax."""
        if units == self.quantity:
            return self.line_total
        share = (self.line_total * units / self.quantity).quantize(Decimal("0.01"))
        return share


class Allocation(models.Model):
    """Units of a line held (reserved) at a location. Capture holds them provisionally;
    routing moves them; shipment commits them; cancellation releases them."""

    # Indexed as the first column of (line, location).
    line = models.ForeignKey(OrderLine, on_delete=models.CASCADE, related_name="allocations", db_index=False)
    location = models.ForeignKey("inventory.Location", on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField()
    provisional = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["line", "location"], name="allocation_line_location_uniq"),
            models.CheckConstraint(condition=Q(quantity__gte=1), name="allocation_quantity_gte_1"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} of line {self.line_id} @ {self.location_id}"


class PaymentStatus(models.TextChoices):
    AUTHORIZED = "authorized", "Authorised"
    PARTIALLY_CAPTURED = "partially_captured", "Partially captured"
    CAPTURED = "captured", "Captured"
    PARTIALLY_REFUNDED = "partially_refunded", "Partially refunded"
    REFUNDED = "refunded", "Refunded"
    VOIDED = "voided", "Voided"


def payment_status(*, authorized: Decimal, voided: Decimal, captured: Decimal, refunded: Decimal) -> str:
    open_amount = authorized - voided - captured
    if refunded > 0:
        return PaymentStatus.REFUNDED if refunded >= captured and open_amount == 0 else PaymentStatus.PARTIALLY_REFUNDED
    if captured > 0:
        return PaymentStatus.CAPTURED if open_amount == 0 else PaymentStatus.PARTIALLY_CAPTURED
    return PaymentStatus.VOIDED if open_amount == 0 else PaymentStatus.AUTHORIZED


class Payment(FSMModelMixin, models.Model):
    """One tender on the order. Amounts move only through order services."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="payments")
    method = models.CharField(max_length=40)
    reference = models.CharField(max_length=200, blank=True)
    amount_authorized = models.DecimalField(max_digits=12, decimal_places=2)
    amount_captured = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    amount_refunded = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    amount_voided = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    status = FSMField(default=PaymentStatus.AUTHORIZED, choices=PaymentStatus.choices, protected=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(amount_captured__lte=F("amount_authorized") - F("amount_voided")),
                name="payment_captured_lte_authorized",
            ),
            models.CheckConstraint(
                condition=Q(amount_refunded__lte=F("amount_captured")),
                name="payment_refunded_lte_captured",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.reference} ({self.status})"

    @property
    def amount_open(self) -> Decimal:
        """Authorised, not yet captured or voided."""
        return self.amount_authorized - self.amount_voided - self.amount_captured

    def _derived(self) -> str:
        return payment_status(
            authorized=self.amount_authorized,
            voided=self.amount_voided,
            captured=self.amount_captured,
            refunded=self.amount_refunded,
        )

    @transition(
        field=status,
        source=[
            PaymentStatus.AUTHORIZED,
            PaymentStatus.PARTIALLY_CAPTURED,
            PaymentStatus.CAPTURED,
            PaymentStatus.PARTIALLY_REFUNDED,
        ],
        target=RETURN_VALUE(*PaymentStatus.values),
    )
    def settle(self) -> str:
        """Follow the amounts after a capture, void or refund."""
        return self._derived()


class HoldType(models.TextChoices):
    FRAUD_REVIEW = "fraud_review", "Fraud review"
    PAYMENT_REVIEW = "payment_review", "Payment review"
    ADDRESS_CHECK = "address_check", "Address check"
    CUSTOMER_SERVICE = "customer_service", "Customer service"
    SOURCING = "sourcing", "Sourcing exception"
    MANUAL = "manual", "Manual"


class OrderHold(ActorFields):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="holds")
    type = models.CharField(max_length=20, choices=HoldType.choices)
    reason = models.CharField(max_length=300)
    rule = models.ForeignKey("HoldRule", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    released_at = models.DateTimeField(null=True, blank=True)
    released_by = models.CharField(max_length=200, blank=True)
    release_note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["order", "released_at"])]


class HoldRule(models.Model):
    """Merchant-configured checks that hold an order at capture."""

    class Condition(models.TextChoices):
        ORDER_TOTAL_ABOVE = "order_total_above", "Order total above amount"
        COUNTRY_NOT_SERVED = "country_not_served", "Shipping country not in list"
        NEW_CUSTOMER_ABOVE = "new_customer_above", "First order of a new customer above amount"

    channel = models.ForeignKey(
        "inventory.Channel",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="hold_rules",
        help_text="Empty: applies to every channel.",
    )
    name = models.CharField(max_length=100)
    condition = models.CharField(max_length=24, choices=Condition.choices)
    amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    countries = models.CharField(max_length=300, blank=True, help_text="Comma-separated ISO codes served.")
    hold_type = models.CharField(max_length=20, choices=HoldType.choices)
    active = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.name

    def country_list(self) -> set[str]:
        return {c.strip().upper() for c in self.countries.split(",") if c.strip()}


class OrderEvent(ActorFields):
    """The timeline: what happened to an order, when, and who or what caused it."""

    # Indexed as the first column of (order, id).
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events", db_index=False)
    type = models.CharField(max_length=50)
    message = models.CharField(max_length=500)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["order", "id"])]

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"


class FulfillmentStatus(models.TextChoices):
    CREATED = "created", "Created"
    SENT = "sent", "Sent to location"
    ACCEPTED = "accepted", "Accepted"
    PICKING = "picking", "Picking"
    PACKED = "packed", "Packed"
    READY_FOR_PICKUP = "ready_for_pickup", "Ready for pickup"
    SHIPPED = "shipped", "Shipped"
    PICKED_UP = "picked_up", "Picked up"
    DELIVERED = "delivered", "Delivered"
    EXPIRED = "expired", "Expired (not collected)"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"


# A location may still refuse a fulfilment until it has started picking.
REJECTABLE = [FulfillmentStatus.CREATED, FulfillmentStatus.SENT, FulfillmentStatus.ACCEPTED]
FULFILLMENT_ACTIVE = [
    FulfillmentStatus.CREATED,
    FulfillmentStatus.SENT,
    FulfillmentStatus.ACCEPTED,
    FulfillmentStatus.PICKING,
    FulfillmentStatus.PACKED,
    FulfillmentStatus.READY_FOR_PICKUP,
]
# The SLA clock runs until the units are picked and packed (or ready for pickup): past its
# due time, a fulfilment still in one of these states is late.
NOT_YET_PICKED = [
    FulfillmentStatus.CREATED,
    FulfillmentStatus.SENT,
    FulfillmentStatus.ACCEPTED,
    FulfillmentStatus.PICKING,
]
AWAITING_ACCEPTANCE = [FulfillmentStatus.CREATED, FulfillmentStatus.SENT]


class FulfillmentQuerySet(models.QuerySet):
    def overdue(self, now):
        """Not yet picked and past the due time (whether or not the SLA check flagged it yet)."""
        return self.filter(status__in=NOT_YET_PICKED, due_at__lt=now)

    def late(self, now):
        """Flagged late by the SLA check, or overdue now: what the store queue and admin highlight."""
        return self.filter(Q(late_at__isnull=False) | Q(status__in=NOT_YET_PICKED, due_at__lt=now))


class Fulfillment(FSMModelMixin, models.Model):
    """The units of an order one location fulfils. Routing creates them; the location (or
    its partner) moves them along; a rejection sends what was rejected back to routing."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="fulfillments")
    location = models.ForeignKey("inventory.Location", on_delete=models.PROTECT, related_name="fulfillments")
    status = FSMField(default=FulfillmentStatus.CREATED, choices=FulfillmentStatus.choices, protected=True)
    routing_attempt = models.PositiveIntegerField(default=1)
    # Set when this location sends the units to a pickup store instead of to the customer.
    transfer_to = models.ForeignKey(
        "inventory.Location", null=True, blank=True, on_delete=models.PROTECT, related_name="inbound_transfers"
    )
    rejection_reason = models.CharField(max_length=300, blank=True)
    # SLA: when the location must have it picked and packed (or ready for pickup); set at release.
    due_at = models.DateTimeField(null=True, blank=True)
    late_at = models.DateTimeField(null=True, blank=True, help_text="When the SLA check found it late.")
    accept_escalated_at = models.DateTimeField(
        null=True, blank=True, help_text="When the SLA check alerted that it was not accepted in time."
    )
    # Pickup: the code the customer shows at the counter, and how long the store keeps the parcel.
    pickup_code = models.CharField(max_length=12, blank=True, editable=False)
    ready_at = models.DateTimeField(null=True, blank=True)
    pickup_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = FulfillmentQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["location", "status"]),
            models.Index(fields=["location", "created_at"]),
            # the console's queue of rejected fulfilments (few rows have a rejection reason)
            models.Index(fields=["-updated_at"], condition=~Q(rejection_reason=""), name="fulfillment_rejected_idx"),
            # the SLA sweeps: overdue by status, uncollected pickups by expiry
            models.Index(fields=["status", "due_at"], name="fulfillment_status_due_idx"),
            models.Index(fields=["status", "pickup_expires_at"], name="fulfillment_status_expiry_idx"),
        ]

    def __str__(self) -> str:
        return f"F{self.pk} {self.order_id}@{self.location_id} ({self.status})"

    @transition(field=status, source=FulfillmentStatus.CREATED, target=FulfillmentStatus.SENT)
    def send(self) -> None:
        """The partner has the request (it answered 2xx)."""

    @transition(
        field=status, source=[FulfillmentStatus.CREATED, FulfillmentStatus.SENT], target=FulfillmentStatus.ACCEPTED
    )
    def accept(self) -> None:
        """The location takes the work."""

    @transition(field=status, source=REJECTABLE, target=FulfillmentStatus.REJECTED)
    def reject(self) -> None:
        """The location cannot do it (all of it, or what is left after a partial rejection)."""

    @transition(field=status, source=FulfillmentStatus.ACCEPTED, target=FulfillmentStatus.PICKING)
    def start_picking(self) -> None:
        """Pickers are on it."""

    @transition(
        field=status, source=[FulfillmentStatus.ACCEPTED, FulfillmentStatus.PICKING], target=FulfillmentStatus.PACKED
    )
    def pack(self) -> None:
        """Packed and waiting for the carrier."""

    @transition(
        field=status,
        source=[FulfillmentStatus.ACCEPTED, FulfillmentStatus.PICKING, FulfillmentStatus.PACKED],
        target=FulfillmentStatus.SHIPPED,
    )
    def ship(self) -> None:
        """Everything in it has left the building (partial shipments keep the status until then)."""

    @transition(
        field=status,
        source=[FulfillmentStatus.ACCEPTED, FulfillmentStatus.PICKING, FulfillmentStatus.PACKED],
        target=FulfillmentStatus.READY_FOR_PICKUP,
    )
    def ready_for_pickup(self) -> None:
        """Waiting at the store for the customer."""

    @transition(field=status, source=FulfillmentStatus.READY_FOR_PICKUP, target=FulfillmentStatus.PICKED_UP)
    def picked_up(self) -> None:
        """Handed over to the customer."""

    @transition(field=status, source=FulfillmentStatus.SHIPPED, target=FulfillmentStatus.DELIVERED)
    def deliver(self) -> None:
        """The carrier delivered it."""

    @transition(field=status, source=FulfillmentStatus.READY_FOR_PICKUP, target=FulfillmentStatus.EXPIRED)
    def expire(self) -> None:
        """The customer did not collect it in time: its units are cancelled and released."""

    @transition(field=status, source=FULFILLMENT_ACTIVE, target=FulfillmentStatus.CANCELLED)
    def cancel(self) -> None:
        """Nothing left to fulfil here (the order's lines were cancelled)."""

    def is_late(self, now) -> bool:
        return self.late_at is not None or (
            self.status in NOT_YET_PICKED and self.due_at is not None and self.due_at < now
        )


class FulfillmentLine(models.Model):
    fulfillment = models.ForeignKey(Fulfillment, on_delete=models.CASCADE, related_name="lines")
    line = models.ForeignKey(OrderLine, on_delete=models.CASCADE, related_name="fulfillment_lines")
    quantity = models.PositiveIntegerField()
    quantity_rejected = models.PositiveIntegerField(default=0)
    quantity_shipped = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gte=F("quantity_rejected") + F("quantity_shipped")),
                name="fulfillment_line_quantities",
            )
        ]

    def __str__(self) -> str:
        return f"{self.quantity} of line {self.line_id} in F{self.fulfillment_id}"

    @property
    def quantity_open(self) -> int:
        return self.quantity - self.quantity_rejected - self.quantity_shipped


class Shipment(FSMModelMixin, models.Model):
    """One parcel out of a fulfilment: its lines, carrier, service, label and tracking.

    `carrier` is what the sender called the carrier; `carrier_account` links a configured
    `Carrier` when that name is one (then the OMS tracks the parcel), or when the OMS bought
    the label itself (then `label_*` hold it). `tracking_status` follows the carrier's events."""

    fulfillment = models.ForeignKey(Fulfillment, on_delete=models.CASCADE, related_name="shipments")
    carrier = models.CharField(max_length=50, blank=True)
    carrier_account = models.ForeignKey(
        "orders.Carrier", null=True, blank=True, on_delete=models.PROTECT, related_name="shipments"
    )
    service = models.CharField(max_length=50, blank=True)
    tracking_number = models.CharField(max_length=100, blank=True, db_index=True)
    reference = models.CharField(max_length=100, blank=True, help_text="The sender's id for this shipment.")
    label_format = models.CharField(max_length=8, blank=True, help_text="pdf or zpl, when the OMS bought the label.")
    label_data = models.TextField(blank=True, help_text="The label document, base64.")
    label_cost = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    label_currency = models.CharField(max_length=3, blank=True)
    tracking_status = FSMField(default=TrackingStatus.UNTRACKED, choices=TrackingStatus.choices, protected=True)
    tracking_checked_at = models.DateTimeField(null=True, blank=True, help_text="Last successful tracking poll.")
    next_tracking_check_at = models.DateTimeField(null=True, blank=True)
    tracking_failures = models.PositiveIntegerField(default=0, help_text="Failed polls in a row (backoff).")
    tracking_error = models.CharField(max_length=300, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["fulfillment", "reference"], condition=~Q(reference=""), name="shipment_reference_uniq"
            )
        ]
        indexes = [models.Index(fields=["tracking_status", "next_tracking_check_at"])]

    def __str__(self) -> str:
        return f"{self.carrier} {self.tracking_number}".strip() or f"shipment {self.pk}"

    @property
    def has_label(self) -> bool:
        """The OMS bought this label (so it can void or replace it)."""
        return bool(self.label_data)

    # Carriers report; these only record what they said. Delivered and voided are final, and
    # nothing goes back to "label created".
    @transition(
        field=tracking_status,
        source=TRACKED,
        target=RETURN_VALUE(
            TrackingStatus.IN_TRANSIT,
            TrackingStatus.OUT_FOR_DELIVERY,
            TrackingStatus.DELIVERED,
            TrackingStatus.EXCEPTION,
        ),
    )
    def track(self, status: str) -> str:
        """The carrier's latest event says where the parcel is."""
        return status

    @transition(field=tracking_status, source=TrackingStatus.LABEL_CREATED, target=TrackingStatus.VOIDED)
    def void_label(self) -> None:
        """The carrier cancelled the label (the parcel never moved)."""

    @transition(field=tracking_status, source=TrackingStatus.VOIDED, target=TrackingStatus.LABEL_CREATED)
    def relabel(self) -> None:
        """A new label replaces the voided one."""


class ShipmentLine(models.Model):
    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="lines")
    fulfillment_line = models.ForeignKey(FulfillmentLine, on_delete=models.CASCADE, related_name="shipment_lines")
    quantity = models.PositiveIntegerField()

    def __str__(self) -> str:
        return f"{self.quantity} × line {self.fulfillment_line_id}"


class StoreAssociate(models.Model):
    """A user who works a store's fulfilment queue (one row per store they work in)."""

    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="store_memberships")
    location = models.ForeignKey(
        "inventory.Location",
        on_delete=models.CASCADE,
        related_name="associates",
        limit_choices_to={"type": "store"},
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["location__code", "user__username"]
        constraints = [models.UniqueConstraint(fields=["user", "location"], name="store_associate_uniq")]
        permissions = [("work_store_queue", "Can work store fulfilment queues (the store app)")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.location.code}"


class CustomerNotification(models.Model):
    """An email to the customer about their order, recorded with the change that causes it and
    sent by a worker (started from the outbox). `key` makes each notification happen once."""

    class Kind(models.TextChoices):
        READY_FOR_PICKUP = "ready_for_pickup", "Ready for pickup"
        SHIPPED = "shipped", "Shipped"
        DELIVERED = "delivered", "Delivered"

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="notifications")
    fulfillment = models.ForeignKey(Fulfillment, on_delete=models.CASCADE, related_name="notifications")
    shipment = models.ForeignKey(Shipment, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    key = models.CharField(max_length=100, unique=True, editable=False)
    to = models.EmailField()
    subject = models.CharField(max_length=200, blank=True)
    body = models.TextField(blank=True, help_text="The text part as sent.")
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} → {self.to}"
