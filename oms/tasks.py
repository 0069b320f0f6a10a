from celery import shared_task

from .outbox import relay_outbox


@shared_task(name="oms.relay_outbox", ignore_result=True)
def relay_outbox_task() -> int:
    return relay_outbox()


@shared_task(name="oms.deliver_webhooks", ignore_result=True)
def deliver_webhooks_task() -> int:
    from .webhooks import deliver_webhooks

    return deliver_webhooks()


@shared_task(name="oms.purge_idempotency_records", ignore_result=True)
def purge_idempotency_records_task() -> int:
    from .idempotency import purge_expired

    return purge_expired()
