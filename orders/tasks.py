"""Partner connector and carrier tracking.

`send_fulfillment` sends a fulfilment request to a webhook partner (3PL, WMS, dropship
vendor). Started from the outbox, so a failure raises and the outbox retries with backoff,
then dead-letters (visible and retryable in the admin). The partner de-duplicates on
`Idempotency-Key`; the request is signed like our webhooks.

`poll_tracking` (beat) asks carriers where the parcels in transit are.
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
from .carriers.services import tracking_poll
from .models import Fulfillment


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


@shared_task(name="orders.poll_tracking", ignore_result=True)
def poll_tracking() -> dict:
    summary = tracking_poll()
    return {
        "polled": summary.polled,
        "recorded": summary.recorded,
        "changed": summary.changed,
        "failed": summary.failed,
    }
