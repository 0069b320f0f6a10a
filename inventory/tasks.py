from celery import shared_task

from .services import release_expired_reservations


@shared_task(name="inventory.release_expired_reservations", ignore_result=False)
def release_expired_reservations_task() -> int:
    return release_expired_reservations()
