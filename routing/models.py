"""Routing configuration (versioned profiles of strategies) and the decisions taken."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from inventory.models import LocationType


class RoutingProfile(models.Model):
    """The sourcing rules of one channel; the profile without a channel is the default."""

    channel = models.OneToOneField(
        "inventory.Channel", null=True, blank=True, on_delete=models.CASCADE, related_name="routing_profile"
    )
    name = models.CharField(max_length=100)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel"], condition=Q(channel__isnull=True), name="one_default_profile")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.channel.code if self.channel else 'default'})"


class ProfileVersion(models.Model):
    """An immutable-once-active set of strategies. Edit a draft, compare, activate."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        RETIRED = "retired", "Retired"

    profile = models.ForeignKey(RoutingProfile, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT)
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["profile", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["profile", "number"], name="profile_version_number_uniq"),
            models.UniqueConstraint(
                fields=["profile"], condition=Q(status="active"), name="one_active_version_per_profile"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.profile.name} v{self.number} ({self.status})"


class Strategy(models.Model):
    """One step of the fallback chain: filters, weighted rankers and a split policy."""

    version = models.ForeignKey(ProfileVersion, on_delete=models.CASCADE, related_name="strategies")
    position = models.PositiveIntegerField(default=1, help_text="Tried in ascending order.")
    name = models.CharField(max_length=100)
    # Filters
    require_capability = models.BooleanField(default=True, help_text="Location must offer the order's method.")
    location_types = models.JSONField(default=list, blank=True, help_text=f"Any of {LocationType.values}; empty = all.")
    countries = models.CharField(max_length=300, blank=True, help_text="Comma-separated ISO codes; empty = all.")
    regions = models.CharField(max_length=300, blank=True, help_text="Comma-separated; empty = all.")
    max_distance_km = models.PositiveIntegerField(null=True, blank=True)
    respect_capacity = models.BooleanField(default=True)
    min_remaining_available = models.PositiveIntegerField(default=0)
    dropship_items_to_vendor = models.BooleanField(default=True)
    # Ranker weights
    weight_distance = models.FloatField(default=1.0, validators=[MinValueValidator(0)])
    weight_cost = models.FloatField(default=0.0, validators=[MinValueValidator(0)])
    weight_priority = models.FloatField(default=0.0, validators=[MinValueValidator(0)])
    weight_stock_depth = models.FloatField(default=0.0, validators=[MinValueValidator(0)])
    weight_capacity_headroom = models.FloatField(default=0.0, validators=[MinValueValidator(0)])
    weight_rejection_rate = models.FloatField(default=0.0, validators=[MinValueValidator(0)])
    # Split policy
    ship_complete = models.BooleanField(default=False, help_text="One location or this strategy fails.")
    max_locations = models.PositiveIntegerField(default=3, validators=[MinValueValidator(1), MaxValueValidator(10)])
    optimal = models.BooleanField(default=False, help_text="Minimise total cost with a MIP solver.")
    transfer_to_pickup = models.BooleanField(
        default=False, help_text="Pickup orders: other locations may send what the store lacks by transfer."
    )
    shipping_cost_per_km = models.FloatField(default=0.01, validators=[MinValueValidator(0)])
    cost_per_shipment = models.FloatField(default=5.0, validators=[MinValueValidator(0)])
    split_penalty = models.FloatField(default=2.0, validators=[MinValueValidator(0)])

    class Meta:
        ordering = ["version", "position", "id"]
        verbose_name_plural = "strategies"

    def __str__(self) -> str:
        return f"{self.position}. {self.name}"


class RoutingDecision(models.Model):
    """What routing decided for an order, with the full explanation and the version used."""

    order = models.ForeignKey("orders.Order", on_delete=models.CASCADE, related_name="routing_decisions")
    version = models.ForeignKey(ProfileVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    attempt = models.PositiveIntegerField()
    strategy = models.CharField(max_length=100, blank=True)
    plan = models.JSONField()
    unsourced = models.JSONField(default=dict)
    explanation = models.JSONField()
    summary = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["order", "-attempt"]
        constraints = [models.UniqueConstraint(fields=["order", "attempt"], name="decision_order_attempt_uniq")]

    def __str__(self) -> str:
        return f"{self.order_id} attempt {self.attempt}: {self.summary}"
