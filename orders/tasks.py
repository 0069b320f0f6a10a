"""Partner connector: send a fulfilment request to a webhook partner (3PL, WMS, dropship vendor).

Started from the outbox, so a failure raises and the outbox retries with backoff, then
dead-letters (visible and retryable in the admin). The partner de-duplicates on
`Idempotency-Key`; the request is signed like our webhooks.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from celery import shared_task
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder

from oms.actor import Actor
from oms.webhooks import sign

from . import services
from .models import Fulfillment
from .notifications import notification_send


class PartnerRefused(Exception):
    pass


@shared_task(name="orders.send_fulfillment", ignore_result=True)
def send_fulfillment(fulfillment_id: int) -> None:
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


@shared_task(
    name="orders.send_customer_notification",
    ignore_result=True,
    autoretry_for=(Exception,),
    retry_backoff=30,
    retry_backoff_max=3600,
    retry_jitter=True,
    max_retries=8,
)
def send_customer_notification(notification_id: int) -> None:
    """Started from the outbox after the change commits; retried with backoff if the mail
    server fails. Sends at most once (see `notification_send`)."""
    notification_send(notification_id=notification_id)


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
