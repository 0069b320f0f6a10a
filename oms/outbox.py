"""Transactional outbox: write side effects beside the change, deliver them after commit.

Callers write messages inside their own transaction. After commit, a relay is kicked in the
background (never blocking the request on the broker); a beat task relays anything left over,
so messages survive a broker or worker outage and are delivered at least once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from importlib import import_module
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .batching import insert
from .fastsql import new
from .models import OutboxMessage, OutboxStatus

log = logging.getLogger(__name__)
_kicker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-kick")


def outbox_enqueue_task(name: str, **kwargs: Any) -> OutboxMessage:
    """Start background work `name(**kwargs)` once the current transaction commits."""
    msg = insert(new(OutboxMessage, kind=OutboxMessage.Kind.TASK, topic=name, payload=kwargs))
    transaction.on_commit(_kick_relay)
    return msg


def outbox_publish_event(event_type: str, data: dict[str, Any], *, ordering_key: str = "") -> OutboxMessage:
    """Record a domain event (webhooks, channel feeds) in the current transaction.

    Events sharing an `ordering_key` reach each subscriber in the order they were written."""
    msg = insert(
        new(OutboxMessage, kind=OutboxMessage.Kind.EVENT, topic=event_type, payload=data, ordering_key=ordering_key)
    )
    transaction.on_commit(_kick_relay)
    return msg


def outbox_revive(*, topic: str, payload: dict[str, Any]) -> int:
    """Make undelivered messages of `topic` whose payload contains `payload` due now, with a
    fresh set of attempts (a dead-lettered one comes back to life). Returns how many."""
    count = (
        OutboxMessage.objects.filter(topic=topic, status__in=[OutboxStatus.DEAD, OutboxStatus.PENDING])
        .filter(**{f"payload__{key}": value for key, value in payload.items()})
        .update(status=OutboxStatus.PENDING, attempts=0, next_attempt_at=timezone.now())
    )
    if count:
        transaction.on_commit(_kick_relay)
    return count


_kick_pending = threading.Event()


def _kick_relay() -> None:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        relay_outbox()
        return
    # One pending kick covers every commit before it runs: under load (or with the broker
    # down) kicks coalesce instead of queueing one publish per request.
    if not _kick_pending.is_set():
        _kick_pending.set()
        _kicker.submit(_publish_relay)


# Seconds between kicks per process: each is a Celery publish (about 1 ms of CPU), and one
# relay run delivers everything committed before it: a message waits at most this long for one.
KICK_INTERVAL = 0.2
_last_kick = 0.0


def _publish_relay() -> None:
    global _last_kick
    from .tasks import relay_outbox_task

    wait = _last_kick + KICK_INTERVAL - time.monotonic()
    if wait > 0:  # this thread waits, not the request: commits meanwhile ride on this kick
        time.sleep(wait)
    _kick_pending.clear()
    _last_kick = time.monotonic()
    try:
        relay_outbox_task.apply_async()
    except Exception as exc:  # broker down: the beat relay picks the messages up later
        log.warning("outbox kick failed, beat will relay: %s", exc.__class__.__name__)


def backoff(attempts: int) -> timedelta:
    """Exponential backoff with full jitter, capped at an hour."""
    return timedelta(seconds=random.uniform(0.5, 1.0) * min(2**attempts, 3600))


def _deliver(msg: OutboxMessage) -> None:
    from .celery import app

    if msg.kind == OutboxMessage.Kind.TASK:
        if settings.CELERY_TASK_ALWAYS_EAGER:
            if msg.topic not in app.tasks:
                app.loader.import_default_modules()  # autodiscovery is lazy outside a worker
            app.tasks[msg.topic].apply(kwargs=msg.payload, throw=True)
        else:
            app.send_task(msg.topic, kwargs=msg.payload)
        return
    for path in settings.OUTBOX_EVENT_HANDLERS:
        module, _, attr = path.rpartition(".")
        getattr(import_module(module), attr)(msg)


LEASE = timedelta(minutes=5)


def relay_outbox(*, batch: int = 200) -> int:
    """Deliver due messages; safe in several processes at once.

    Messages are claimed with a lease in a short transaction (SKIP LOCKED on PostgreSQL) and
    delivered outside it, so a task run in-process starts from a clean transaction state and a
    crashed relay's claim simply expires.
    """
    delivered = 0
    while True:
        now = timezone.now()
        with transaction.atomic():
            due = list(
                OutboxMessage.objects.select_for_update(skip_locked=True)
                .filter(status=OutboxStatus.PENDING, next_attempt_at__lte=now)
                .order_by("id")[:batch]
            )
            OutboxMessage.objects.filter(id__in=[m.id for m in due]).update(
                next_attempt_at=now + LEASE, attempts=F("attempts") + 1
            )
        for msg in due:
            msg.attempts += 1
            try:
                _deliver(msg)
            except Exception as exc:
                msg.last_error = f"{exc.__class__.__name__}: {exc}"[:2000]
                if msg.attempts >= settings.OUTBOX_MAX_ATTEMPTS:
                    msg.status = OutboxStatus.DEAD
                    log.error("outbox message %s dead-lettered: %s", msg.pk, msg.last_error)
                else:
                    msg.next_attempt_at = timezone.now() + backoff(msg.attempts)
            else:
                msg.status = OutboxStatus.DONE
                msg.delivered_at = timezone.now()
                delivered += 1
            msg.save(update_fields=["status", "last_error", "next_attempt_at", "delivered_at"])
        if len(due) < batch:
            return delivered


def retry_or_dead_letter(task, *, topic: str, payload: dict[str, Any], exc: Exception, what: str) -> None:
    """A task started from the outbox failed in a way worth retrying (the far end is down).

    In-process the exception goes back to the outbox message, which retries. On a worker the
    outbox has already handed the task over, so the task retries itself with backoff, and after
    OUTBOX_MAX_ATTEMPTS it is recorded as a dead outbox message: visible, retryable by hand."""
    if task.request.is_eager:
        raise exc
    attempt = task.request.retries + 1
    error = f"{exc.__class__.__name__}: {exc}"[:2000]
    if attempt >= settings.OUTBOX_MAX_ATTEMPTS:
        OutboxMessage.objects.create(
            kind=OutboxMessage.Kind.TASK,
            topic=topic,
            payload=payload,
            status=OutboxStatus.DEAD,
            attempts=attempt,
            last_error=error,
        )
        log.error("%s dead-lettered after %s attempts: %s", what, attempt, error)
        return
    delay = backoff(attempt).total_seconds()
    log.warning("%s attempt %s failed, retrying in %.1fs: %s", what, attempt, delay, error)
    raise task.retry(countdown=delay) from None
