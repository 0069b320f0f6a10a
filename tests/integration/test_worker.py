"""A real Celery worker on Redis, against the test database: the production path."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.db import transaction
from django.utils import timezone

from inventory.models import Reservation, Stock
from inventory.services import cart_reservation_put
from oms.actor import Actor
from oms.celery import app
from oms.models import OutboxMessage
from oms.outbox import outbox_enqueue_task
from tests.factories import ChannelFactory, ItemFactory, LocationFactory, stock
from tests.integration.conftest import wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]
ROOT = Path(__file__).resolve().parents[2]


def _expired_cart():
    dc = LocationFactory(code="DC1")
    web = ChannelFactory(code="web", locations=[dc])
    item = ItemFactory(sku="A")
    stock(dc, item, 5)
    cart_reservation_put(channel=web, key="old", lines={item.pk: 3}, ttl_seconds=60, actor=Actor.system("t"))
    Reservation.objects.filter(key="old").update(expires_at=timezone.now() - timedelta(seconds=1))
    return dc, item


def test_beat_task_runs_on_the_worker(worker):
    dc, item = _expired_cart()
    result = app.send_task("inventory.release_expired_reservations")
    assert result.get(timeout=30) == 1
    assert Reservation.objects.get(key="old").status == "expired"
    assert Stock.objects.get(location=dc, item=item).reserved == 0


def test_outbox_starts_background_work_on_the_worker_after_commit(worker):
    dc, item = _expired_cart()
    with transaction.atomic():
        msg = outbox_enqueue_task("inventory.release_expired_reservations")
    # The commit kicked the relay on the worker, which enqueued the task, which ran there too.
    assert wait_for(lambda: Reservation.objects.get(key="old").status == "expired"), worker.read_text()
    assert wait_for(lambda: OutboxMessage.objects.get(pk=msg.pk).status == "done")
    assert Stock.objects.get(location=dc, item=item).reserved == 0
