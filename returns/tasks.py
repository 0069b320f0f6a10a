"""Background work for returns, started from the outbox: send a refund to the payment gateway
(retried with backoff while the gateway is unreachable, then marked failed); buy or void a
return label with the carrier; and (beat) poll return labels to see parcels move."""

from __future__ import annotations

from celery import shared_task

from oms.outbox import retry_or_dead_letter
from orders.carriers.adapters import CarrierUnavailable
from orders.payments.gateway import GatewayUnavailable

from . import labels, refunds


@shared_task(name="returns.send_refund", bind=True, ignore_result=True, acks_late=True)
def send_refund(self, refund_id: int) -> str:
    try:
        return refunds.refund_send(refund_id=refund_id).status
    except GatewayUnavailable as exc:
        if self.request.is_eager:
            raise  # run in-process by the outbox relay, which retries it with backoff
        # The same idempotency key goes again, so a refund that did go through is not repeated;
        # the refund's own attempt count ends the retries (it is marked failed on the last one).
        countdown = min(2 ** (self.request.retries + 1), 600)
        raise self.retry(exc=exc, countdown=countdown, max_retries=None) from None


@shared_task(name="returns.create_return_label", bind=True, ignore_result=True, acks_late=True, max_retries=None)
def create_return_label(self, return_id: int) -> None:
    try:
        labels.label_create(return_id=return_id)
    except CarrierUnavailable as exc:
        retry_or_dead_letter(
            self,
            topic="returns.create_return_label",
            payload={"return_id": return_id},
            exc=exc,
            what=f"return {return_id} label",
        )


@shared_task(name="returns.void_return_label", ignore_result=True, acks_late=True)
def void_return_label(return_id: int) -> None:
    labels.label_void(return_id=return_id)


@shared_task(name="returns.poll_return_labels", ignore_result=True)
def poll_return_labels() -> int:
    return labels.labels_poll()
