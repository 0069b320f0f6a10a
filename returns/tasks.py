"""Background work for returns, started from the outbox: send a refund to the payment gateway
(retried with backoff while the gateway is unreachable, then marked failed), and ask the
carrier for a return label."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from orders.payments.gateway import GatewayUnavailable

from . import labels, refunds


@shared_task(name="returns.send_refund", bind=True, ignore_result=True, acks_late=True)
def send_refund(self, refund_id: int) -> str:
    final = self.request.retries + 1 >= settings.REFUND_MAX_ATTEMPTS
    try:
        return refunds.refund_send(refund_id=refund_id, final_attempt=final).status
    except GatewayUnavailable as exc:
        # The same idempotency key goes again, so a refund that did go through is not repeated.
        countdown = min(2 ** (self.request.retries + 1), 600)
        raise self.retry(exc=exc, countdown=countdown, max_retries=settings.REFUND_MAX_ATTEMPTS) from None


@shared_task(name="returns.create_return_label", ignore_result=True, acks_late=True)
def create_return_label(return_id: int) -> None:
    labels.label_create(return_id=return_id)
