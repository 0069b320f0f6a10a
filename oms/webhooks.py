"""Webhooks: fan outbox events out to subscribers and deliver them, signed, at least once.

Each delivery is retried with exponential backoff and jitter, then dead-lettered; every HTTP
attempt is logged. Deliveries sharing an ordering key (one order's events) reach a subscriber
in order: a later one waits while an earlier one is still pending.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from datetime import timedelta

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from .models import (
    OutboxMessage,
    OutboxStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from .outbox import backoff

log = logging.getLogger(__name__)
LEASE = timedelta(minutes=2)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes, *, tolerance: int = 300) -> bool:
    """What a receiver does: check the signature and that it is recent."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


def event_body(msg_event_id, event_type: str, created_at, data: dict) -> dict:
    return {"id": str(msg_event_id), "type": event_type, "created_at": created_at, "data": data}


def fan_out(message: OutboxMessage) -> None:
    """Outbox event handler: one delivery per interested subscriber (idempotent)."""
    channel = message.payload.get("channel")
    subscriptions = [
        s
        for s in WebhookSubscription.objects.filter(active=True).select_related("channel")
        if s.wants(message.topic) and (s.channel is None or s.channel.code == channel)
    ]
    if not subscriptions:
        return
    body = event_body(message.event_id, message.topic, message.created_at.isoformat(), message.payload)
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                subscription=s,
                event_id=message.event_id,
                event_type=message.topic,
                ordering_key=message.ordering_key,
                payload=body,
            )
            for s in subscriptions
        ],
        ignore_conflicts=True,
    )
    transaction.on_commit(_kick_delivery)


def _kick_delivery() -> None:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        deliver_webhooks()
        return
    from .tasks import deliver_webhooks_task

    try:
        deliver_webhooks_task.apply_async()
    except Exception as exc:  # the beat sweeper delivers them
        log.warning("webhook kick failed, beat will deliver: %s", exc.__class__.__name__)


def _claim(batch: int) -> list[WebhookDelivery]:
    now = timezone.now()
    with transaction.atomic():
        due = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(status=OutboxStatus.PENDING, next_attempt_at__lte=now)
            .select_related("subscription")
            .order_by("id")[:batch]
        )
        if not due:
            return []
        # Per (subscription, ordering key) only the oldest pending delivery may go.
        keyed = {(d.subscription_id, d.ordering_key) for d in due if d.ordering_key}
        first = {}
        if keyed:
            rows = (
                WebhookDelivery.objects.filter(
                    status=OutboxStatus.PENDING,
                    subscription_id__in={k[0] for k in keyed},
                    ordering_key__in={k[1] for k in keyed},
                )
                .values_list("subscription_id", "ordering_key")
                .annotate(first=Min("id"))
            )
            first = {(sub, key): pk for sub, key, pk in rows}
        ready = [d for d in due if not d.ordering_key or first.get((d.subscription_id, d.ordering_key)) == d.id]
        WebhookDelivery.objects.filter(id__in=[d.id for d in ready]).update(next_attempt_at=now + LEASE)
        return ready


def _post(delivery: WebhookDelivery) -> tuple[int | None, str]:
    body = json.dumps(delivery.payload, cls=DjangoJSONEncoder, separators=(",", ":")).encode()
    request = urllib.request.Request(
        delivery.subscription.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "OMS-Webhooks/1",
            "X-OMS-Event-Id": str(delivery.event_id),
            "X-OMS-Event-Type": delivery.event_type,
            "X-OMS-Signature": sign(delivery.subscription.secret, int(time.time()), body),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.WEBHOOK_TIMEOUT_SECONDS) as response:
            return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code}"
    except Exception as exc:  # connection refused, timeout, DNS…
        return None, f"{exc.__class__.__name__}: {exc}"[:500]


def deliver_webhooks(*, batch: int = 100) -> int:
    """Send due deliveries; safe to run in several workers at once."""
    sent = 0
    while True:
        ready = _claim(batch)
        for delivery in ready:
            started = time.perf_counter()
            code, error = _post(delivery)
            delivery.attempts += 1
            WebhookAttempt.objects.create(
                delivery=delivery,
                status_code=code,
                error=error,
                duration_ms=int((time.perf_counter() - started) * 1000),
            )
            delivery.last_status_code = code
            delivery.last_error = error
            if code is not None and 200 <= code < 300:
                delivery.status = OutboxStatus.DONE
                delivery.delivered_at = timezone.now()
                sent += 1
            elif delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
                delivery.status = OutboxStatus.DEAD
                log.error("webhook delivery %s dead-lettered: %s", delivery.pk, error)
            else:
                delivery.next_attempt_at = timezone.now() + backoff(delivery.attempts)
            delivery.save(
                update_fields=[
                    "attempts",
                    "status",
                    "last_status_code",
                    "last_error",
                    "next_attempt_at",
                    "delivered_at",
                ]
            )
        if not ready:  # delivering one may have unblocked the next of the same order: go again
            return sent


def retry_delivery(delivery: WebhookDelivery) -> None:
    """Manual retry of a dead-lettered (or waiting) delivery, from the admin."""
    WebhookDelivery.objects.filter(pk=delivery.pk).exclude(status=OutboxStatus.DONE).update(
        status=OutboxStatus.PENDING, next_attempt_at=timezone.now()
    )
    transaction.on_commit(_kick_delivery)
