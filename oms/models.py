"""Shared core models: integrator API keys and the transactional outbox."""

from __future__ import annotations

import hashlib
import secrets
import uuid

from django.db import models
from django.utils import timezone

SCOPES = (
    "orders:read",
    "orders:write",
    "inventory:read",
    "inventory:write",
    "fulfillments:write",
    "returns:write",
    "webhooks:manage",
)


def hash_key(raw: str) -> str:
    # The key carries 190+ bits of randomness, so a fast hash is safe and keeps auth cheap.
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiKeyQuerySet(models.QuerySet):
    def usable(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)


class ApiKey(models.Model):
    """An integrator credential. Only a hash is stored; the prefix identifies it in lists/logs."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, unique=True, editable=False)
    hashed_key = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list, help_text="Scopes this key grants.")
    channel = models.ForeignKey(
        "inventory.Channel",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="api_keys",
        help_text="Bind the key to one channel: it sees and changes only that channel's data.",
    )
    location = models.ForeignKey(
        "inventory.Location",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="api_keys",
        help_text="Bind the key to one location (a store, warehouse or partner).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    @staticmethod
    def generate() -> tuple[str, str]:
        """Return (prefix, raw key). The raw key is shown once and never stored."""
        prefix = secrets.token_hex(4)
        return prefix, f"oms_{prefix}_{secrets.token_urlsafe(32)}"

    @staticmethod
    def parse_prefix(raw: str) -> str | None:
        parts = raw.split("_", 2)
        if len(parts) != 3 or parts[0] != "oms" or len(parts[1]) != 8:
            return None
        return parts[1]


class OutboxStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DONE = "done", "Delivered"
    DEAD = "dead", "Dead-lettered"


class OutboxMessage(models.Model):
    """A side effect recorded in the same transaction as the change that causes it.

    kind "task": enqueue a Celery task by name (background work started from the outbox).
    kind "event": a domain event for webhooks and channel feeds.
    The relay delivers at least once, with exponential backoff, then dead-letters.
    """

    class Kind(models.TextChoices):
        TASK = "task", "Task"
        EVENT = "event", "Event"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    topic = models.CharField(max_length=100, help_text="Task name or event type.")
    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Events with the same key (e.g. "order:WE-7K3QXR2") reach each subscriber in order.
    ordering_key = models.CharField(max_length=100, blank=True)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=8, choices=OutboxStatus.choices, default=OutboxStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.kind}:{self.topic} #{self.pk} ({self.status})"


class IdempotencyRecord(models.Model):
    """The first answer to a POST carrying an Idempotency-Key, replayed byte for byte."""

    class State(models.TextChoices):
        IN_FLIGHT = "in_flight", "In flight"
        DONE = "done", "Done"

    principal = models.CharField(max_length=64, help_text="Whose key: API key or user.")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=300)
    fingerprint = models.CharField(max_length=64)
    state = models.CharField(max_length=10, choices=State.choices, default=State.IN_FLIGHT)
    response_status = models.PositiveSmallIntegerField(null=True)
    response_body = models.BinaryField(null=True)
    response_content_type = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["principal", "key"], name="idempotency_principal_key_uniq")]

    def __str__(self) -> str:
        return f"{self.method} {self.path} [{self.key}] ({self.state})"


class WebhookSubscription(models.Model):
    EVENTS = (
        "order.created",
        "order.routed",
        "order.cancelled",
        "order.held",
        "order.released",
        "order.updated",
        "order.completed",
        "fulfillment.shipped",
        "fulfillment.ready_for_pickup",
        "fulfillment.picked_up",
        "fulfillment.delivered",
        "fulfillment.expired",
        "fulfillment.late",
        "shipment.in_transit",
        "shipment.out_for_delivery",
        "shipment.delivered",
        "shipment.exception",
        "return.created",
        "return.received",
        "refund.issued",
        "appeasement.issued",
        "inventory.changed",
    )

    url = models.URLField(max_length=500)
    events = models.JSONField(default=list, help_text="Event types; ['*'] for all.")
    secret = models.CharField(max_length=200, help_text="Shared secret for X-OMS-Signature.")
    channel = models.ForeignKey(
        "inventory.Channel",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="Only this channel's events (set from a channel-bound key).",
    )
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.url} ({', '.join(self.events)})"

    def wants(self, event_type: str) -> bool:
        return "*" in self.events or event_type in self.events


class WebhookDelivery(models.Model):
    """One event for one subscriber; retried with backoff and jitter, then dead-lettered."""

    subscription = models.ForeignKey(WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.UUIDField()
    event_type = models.CharField(max_length=100)
    ordering_key = models.CharField(max_length=100, blank=True)
    payload = models.JSONField()
    status = models.CharField(max_length=8, choices=OutboxStatus.choices, default=OutboxStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["subscription", "event_id"], name="delivery_subscription_event_uniq")
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} → {self.subscription_id} ({self.status})"


class WebhookAttempt(models.Model):
    """The delivery log: one row per HTTP attempt."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    attempted_at = models.DateTimeField(auto_now_add=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.attempted_at:%Y-%m-%d %H:%M:%S} {self.status_code or self.error}"
