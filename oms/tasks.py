from celery import shared_task

from .outbox import relay_outbox


@shared_task(name="oms.relay_outbox", ignore_result=True)
def relay_outbox_task() -> int:
    return relay_outbox()
