"""Partner connector and carrier tracking.

`send_fulfillment` sends a fulfilment request to a webhook partner (3PL, WMS, dropship
vendor), signed like our webhooks; the partner de-duplicates on `Idempotency-Key`. It is
started from the outbox. A refusal or an unreachable partner is retried with exponential
backoff and jitter: in-process (no broker) the exception goes back to the outbox message,
which retries; on a worker the outbox has already handed the task to the broker, so the task
retries itself, and after OUTBOX_MAX_ATTEMPTS it is dead-lettered as an outbox message
(visible, and retryable with "Retry now" in the admin).

`poll_tracking` (beat) asks carriers where the parcels in transit are.

`send_customer_notification` sends a customer email (ready for pickup, shipped, delivered);
the SLA beat tasks escalate unaccepted work, flag late work and expire uncollected pickups.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from smtplib import SMTPException

from celery import shared_task
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder

from oms.actor import Actor
from oms.outbox import retry_or_dead_letter
from oms.webhooks import sign

from . import services
from .carriers.services import tracking_poll
from .models import Fulfillment
from .notifications import notification_send

log = logging.getLogger(__name__)


class PartnerRefused(Exception):
    pass


@shared_task(bind=True, name="orders.send_fulfillment", ignore_result=True, max_retries=None)
def send_fulfillment(self, fulfillment_id: int) -> None:
    try:
        _send_fulfillment(fulfillment_id)
    except (PartnerRefused, OSError) as exc:  # OSError: refused connection, timeout, DNS
        retry_or_dead_letter(
            self,
            topic="orders.send_fulfillment",
            payload={"fulfillment_id": fulfillment_id},
            exc=exc,
            what=f"fulfilment {fulfillment_id} request",
        )


def _send_fulfillment(fulfillment_id: int) -> None:
    fulfillment = (
        Fulfillment.objects.select_related("order__channel", "location", "transfer_to")
        .prefetch_related("lines__line")
        .get(pk=fulfillment_id)
    )
    if fulfillment.status != "created":
        return  # already acknowledged, or cancelled/rejected meanwhile
    location = fulfillment.location
    body = json.dumps(services.fulfillment_request(fulfillment), cls=DjangoJSONEncoder, separators=(",", ":")).encode()
    request = urllib.request.Request(
        location.partner_url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Idempotency-Key": f"fulfillment-{fulfillment.pk}",
            "X-OMS-Signature": sign(location.partner_secret, int(time.time()), body),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.WEBHOOK_TIMEOUT_SECONDS) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        raise PartnerRefused(f"{location.code} answered HTTP {exc.code}") from None
    if not 200 <= status < 300:
        raise PartnerRefused(f"{location.code} answered HTTP {status}")
    services.fulfillment_mark_sent(fulfillment_id=fulfillment.pk, actor=Actor.for_task("orders.send_fulfillment"))


@shared_task(name="orders.poll_tracking", ignore_result=True)
def poll_tracking() -> dict:
    summary = tracking_poll()
    return {
        "polled": summary.polled,
        "recorded": summary.recorded,
        "changed": summary.changed,
        "failed": summary.failed,
    }


@shared_task(bind=True, name="orders.send_customer_notification", ignore_result=True, max_retries=None)
def send_customer_notification(self, notification_id: int) -> None:
    """A customer email, started from the outbox after the change commits. Sent at most once
    (see `notification_send`). A mail server failure retries like a partner request: the
    outbox message in-process, the task itself on a worker, dead-lettered after
    OUTBOX_MAX_ATTEMPTS."""
    try:
        notification_send(notification_id=notification_id)
    except (SMTPException, OSError) as exc:  # OSError: refused connection, timeout, DNS
        retry_or_dead_letter(
            self,
            topic="orders.send_customer_notification",
            payload={"notification_id": notification_id},
            exc=exc,
            what=f"customer notification {notification_id}",
        )


# --- SLA beat tasks (CELERY_BEAT_SCHEDULE) -----------------------------------------------------


@shared_task(name="orders.escalate_unaccepted", ignore_result=True)
def escalate_unaccepted() -> int:
    return services.sla_escalate_unaccepted()


@shared_task(name="orders.flag_late_fulfillments", ignore_result=True)
def flag_late_fulfillments() -> int:
    return services.sla_flag_late()


@shared_task(name="orders.expire_pickups", ignore_result=True)
def expire_pickups() -> int:
    return services.pickups_expire_due()
