"""Shared core models: integrator API keys and the transactional outbox."""

from __future__ import annotations

import hashlib
import secrets

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
    payload = models.JSONField(default=dict)
    status = models.CharField(
        max_length=8, choices=OutboxStatus.choices, default=OutboxStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.kind}:{self.topic} #{self.pk} ({self.status})"
