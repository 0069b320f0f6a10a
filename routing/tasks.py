from celery import shared_task

from . import services


@shared_task(name="routing.route_order", ignore_result=True, acks_late=True)
def route_order_task(order_number: str) -> None:
    services.route_order(order_number=order_number)


@shared_task(name="routing.route_backorders", ignore_result=True, acks_late=True)
def route_backorders_task(item_ids: list[int] | None = None) -> int:
    return services.route_backorders(item_ids=item_ids)
