"""The network (locations, channels), the catalogue (items) and stock by location.

Channels live here, beside the locations that serve them, so that orders and routing can
use them without importing each other.
"""

from __future__ import annotations

import math
from datetime import time

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from oms.actor import ActorFields


class LocationType(models.TextChoices):
    WAREHOUSE = "warehouse", "Warehouse / DC"
    STORE = "store", "Store"
    DROPSHIP = "dropship", "Dropship vendor"


class Capability(models.TextChoices):
    SHIP = "ship", "Ship"
    PICKUP = "pickup", "Pickup (BOPIS)"
    CURBSIDE = "curbside", "Curbside"
    SAME_DAY = "same_day", "Same-day delivery"


def validate_capabilities(value) -> None:
    from django.core.exceptions import ValidationError

    if not isinstance(value, list) or any(v not in Capability.values for v in value):
        raise ValidationError(f"Capabilities must be a list drawn from {Capability.values}.")


class Location(models.Model):
    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    type = models.CharField(max_length=16, choices=LocationType.choices)
    address_line1 = models.CharField(max_length=200, blank=True)
    city = models.CharField(max_length=100, blank=True)
    region = models.CharField(max_length=100, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2")
    latitude = models.DecimalField(
        max_digits=9,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(-90), MaxValueValidator(90)],
    )
    longitude = models.DecimalField(
        max_digits=9,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(-180), MaxValueValidator(180)],
    )
    capabilities = models.JSONField(default=list, blank=True, validators=[validate_capabilities])
    active = models.BooleanField(default=True)
    priority = models.PositiveIntegerField(default=100, help_text="Routing priority: lower numbers are preferred.")
    daily_capacity = models.PositiveIntegerField(
        null=True, blank=True, help_text="Orders per day this location can take; empty = no limit."
    )
    fulfillment_cost = models.DecimalField(
        max_digits=10, decimal_places=2, default=0, help_text="Cost to fulfil one order here."
    )
    timezone = models.CharField(max_length=64, default="UTC")
    cutoff_time = models.TimeField(
        default=time(15, 0), help_text="Orders released after this local time ship next day."
    )
    # SLA: a fulfilment released between opening and cut-off is due `processing_hours` later;
    # one released before opening or after the cut-off starts the clock at the next opening.
    opening_time = models.TimeField(default=time(9, 0), help_text="Local time work on fulfilments starts.")
    processing_hours = models.PositiveSmallIntegerField(
        default=24,
        validators=[MinValueValidator(1), MaxValueValidator(24 * 14)],
        help_text="Hours from release to picked and packed (or ready for pickup): the fulfilment's due time.",
    )
    accepts_returns = models.BooleanField(default=False)

    class Connector(models.TextChoices):
        QUEUE = "queue", "Work queue (store app / API polling)"
        WEBHOOK = "webhook", "Webhook partner (3PL, WMS, dropship vendor)"

    connector = models.CharField(
        max_length=10,
        choices=Connector.choices,
        default=Connector.QUEUE,
        help_text="How fulfilments reach this location.",
    )
    partner_url = models.URLField(max_length=500, blank=True, help_text="Webhook partners: where requests go.")
    partner_secret = models.CharField(max_length=200, blank=True, help_text="Signs requests (X-OMS-Signature).")

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} · {self.name}"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        if self.connector == self.Connector.WEBHOOK and not (self.partner_url and self.partner_secret):
            raise ValidationError({"partner_url": "A webhook partner needs a URL and a secret."})
        if self.opening_time and self.cutoff_time and self.opening_time >= self.cutoff_time:
            raise ValidationError({"cutoff_time": "The cut-off must be later than the opening time."})

    def can(self, capability: str) -> bool:
        return capability in self.capabilities


class Item(models.Model):
    sku = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    active = models.BooleanField(default=True)
    weight_grams = models.PositiveIntegerField(null=True, blank=True)
    length_mm = models.PositiveIntegerField(null=True, blank=True)
    width_mm = models.PositiveIntegerField(null=True, blank=True)
    height_mm = models.PositiveIntegerField(null=True, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    dropship_vendor = models.ForeignKey(
        Location,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="dropship_items",
        limit_choices_to={"type": LocationType.DROPSHIP},
        help_text="Sold only from this dropship vendor.",
    )

    class Meta:
        ordering = ["sku"]

    def __str__(self) -> str:
        return f"{self.sku} · {self.name}"


class ChannelType(models.TextChoices):
    WEB = "web", "Web shop"
    MARKETPLACE = "marketplace", "Marketplace"
    POS = "pos", "Store POS"
    CALL_CENTER = "call_center", "Call centre"
    B2B = "b2b", "B2B portal"


class Channel(models.Model):
    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=100)
    type = models.CharField(max_length=16, choices=ChannelType.choices, default=ChannelType.WEB)
    locations = models.ManyToManyField(Location, related_name="channels", blank=True)
    safety_buffer = models.PositiveIntegerField(
        default=0, help_text="Units held back per SKU at each location from this channel's ATP."
    )
    safety_buffer_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=0,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="Percent of each location's net stock held back; the larger buffer applies.",
    )
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} · {self.name}"

    def buffer_for(self, net: int) -> int:
        """Units this channel holds back from `net` (on hand − reserved − safety stock)."""
        pct = math.ceil(net * float(self.safety_buffer_percent) / 100) if net > 0 else 0
        return max(self.safety_buffer, pct)


class Stock(models.Model):
    """Counters for one item at one location. Changed only by inventory services, which
    write a ledger row for every change; the database keeps the counters consistent."""

    # No single-column indexes: location_id leads stock_location_item_uniq and item_id leads
    # stock_item_location_idx, which serve every look-up (and the PROTECT checks) by either.
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="stock", db_index=False)
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="stock", db_index=False)
    on_hand = models.IntegerField(default=0)
    reserved = models.IntegerField(default=0)
    safety_stock = models.IntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["location", "item"], name="stock_location_item_uniq"),
            models.CheckConstraint(condition=Q(on_hand__gte=0), name="stock_on_hand_gte_0"),
            models.CheckConstraint(condition=Q(reserved__gte=0), name="stock_reserved_gte_0"),
            models.CheckConstraint(condition=Q(reserved__lte=models.F("on_hand")), name="stock_reserved_lte_on_hand"),
            models.CheckConstraint(condition=Q(safety_stock__gte=0), name="stock_safety_stock_gte_0"),
        ]
        indexes = [
            # Covering: ATP reads only these columns, so PostgreSQL answers from the index alone.
            models.Index(
                fields=["item", "location"],
                include=["on_hand", "reserved", "safety_stock"],
                name="stock_item_location_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.item_id}@{self.location_id}"

    @property
    def available(self) -> int:
        return max(0, self.on_hand - self.reserved - self.safety_stock)


class MovementReason(models.TextChoices):
    ADJUSTMENT = "adjustment", "Adjustment"
    COUNT = "count", "Cycle count"
    SNAPSHOT = "snapshot", "Snapshot"
    RECEIPT = "receipt", "Supply received"
    RESERVE = "reserve", "Reserved"
    RELEASE = "release", "Released"
    EXPIRE = "expire", "Reservation expired"
    SHIP = "ship", "Shipped"
    RETURN = "return", "Returned to stock"


class StockMovement(ActorFields):
    """The ledger: one row per change of on_hand or reserved, with the resulting values.

    Summing the deltas rebuilds the counters (`manage.py inventory_check`)."""

    # The ledger is write-heavy: no index beyond what its reads need (location is covered by
    # movement_stock_idx; no LIKE look-ups, so no varchar_pattern_ops twins).
    # No database-level foreign keys to location and item: each ledger row describes a stock
    # row that holds the same pair under its own foreign keys, and the per-row checks were
    # most of a 50,000-row snapshot's time. PROTECT still stops the ORM deleting either, and
    # `ledger_mismatches()` reports ledger rows whose location or item no longer exists.
    location = models.ForeignKey(
        Location, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="+", db_constraint=False)
    delta_on_hand = models.IntegerField(default=0)
    delta_reserved = models.IntegerField(default=0)
    on_hand_after = models.IntegerField()
    reserved_after = models.IntegerField()
    reason = models.CharField(max_length=16, choices=MovementReason.choices)
    note = models.CharField(max_length=200, blank=True)
    reference = models.CharField(max_length=200, blank=True)
    # Set for integrator-sourced changes: a repeated (source, reference, location, sku) is ignored.
    dedupe_key = models.CharField(max_length=255, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["location", "item", "id"], name="movement_stock_idx"),
            models.Index(fields=["reference"], name="movement_reference_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["dedupe_key"], condition=Q(dedupe_key__isnull=False), name="movement_dedupe_key_uniq"
            )
        ]
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.reason} {self.item_id}@{self.location_id} Δ{self.delta_on_hand}/{self.delta_reserved}"


class IncomingSupply(models.Model):
    """Expected supply: purchase orders and advance shipping notices, by location and date."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        RECEIVED = "received", "Received"
        CANCELLED = "cancelled", "Cancelled"

    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="incoming")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="incoming")
    reference = models.CharField(max_length=100, help_text="PO or ASN number.")
    quantity = models.PositiveIntegerField()
    quantity_received = models.PositiveIntegerField(default=0)
    expected_date = models.DateField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "incoming supply"
        ordering = ["expected_date", "id"]
        constraints = [
            models.UniqueConstraint(fields=["reference", "location", "item"], name="supply_reference_uniq"),
            models.CheckConstraint(
                condition=Q(quantity_received__lte=models.F("quantity")),
                name="supply_received_lte_quantity",
            ),
        ]
        indexes = [models.Index(fields=["item", "status", "expected_date"])]

    def __str__(self) -> str:
        return f"{self.reference}: {self.quantity} × {self.item_id} → {self.location_id}"

    @property
    def quantity_open(self) -> int:
        return self.quantity - self.quantity_received


class Reservation(models.Model):
    """A cart reservation: holds stock for a shopper until it expires or an order converts it."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        CONVERTED = "converted", "Converted to order"
        RELEASED = "released", "Released"
        EXPIRED = "expired", "Expired"

    channel = models.ForeignKey(Channel, on_delete=models.PROTECT, related_name="reservations")
    key = models.CharField(max_length=100)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "key"], name="reservation_channel_key_uniq")]
        indexes = [models.Index(fields=["status", "expires_at"])]

    def __str__(self) -> str:
        return f"{self.channel_id}:{self.key} ({self.status})"


class ReservationLine(models.Model):
    reservation = models.ForeignKey(Reservation, on_delete=models.CASCADE, related_name="lines")
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="+")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField()

    class Meta:
        indexes = [models.Index(fields=["item", "location"])]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.item_id} @ {self.location_id}"
