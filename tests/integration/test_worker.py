"""A real Celery worker on Redis, against the test database: the production path."""

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from inventory.models import Reservation, Stock
from inventory.services import cart_reservation_put
from oms.actor import Actor
from oms.celery import app
from oms.models import OutboxMessage
from oms.outbox import outbox_enqueue_task
from tests.conftest import TEST_QUEUE
from tests.factories import ChannelFactory, ItemFactory, LocationFactory, stock

pytestmark = [
    pytest.mark.integration,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]
ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def worker(tmp_path):
    """Start a real `celery worker` process against this test database."""
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(TEST_QUEUE)  # nothing stale from an earlier test
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_TASK_DEFAULT_QUEUE": TEST_QUEUE,
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "oms",
            "worker",
            "-Q",
            TEST_QUEUE,
            "-c",
            "1",
            "-P",
            "solo",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    ping = app.send_task("inventory.release_expired_reservations")
    try:
        ping.get(timeout=60)  # the worker is up and reaches the database
    except Exception:
        proc.kill()
        pytest.fail("Celery worker did not start:\n" + log.read_text())
    yield log
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def _expired_cart():
    dc = LocationFactory(code="DC1")
    web = ChannelFactory(code="web", locations=[dc])
    item = ItemFactory(sku="A")
    stock(dc, item, 5)
    cart_reservation_put(channel=web, key="old", lines={item.pk: 3}, ttl_seconds=60, actor=Actor.system("t"))
    Reservation.objects.filter(key="old").update(expires_at=timezone.now() - timedelta(seconds=1))
    return dc, item


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


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
