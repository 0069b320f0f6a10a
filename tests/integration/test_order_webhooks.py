"""Order capture → outbox → real Celery worker on Redis → signed webhook to a real receiver,
and the same through a Redis outage: orders keep coming at full speed, nothing is lost."""

import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter

import pytest

from inventory.selectors import ledger_mismatches
from oms.models import WebhookSubscription
from oms.services import api_key_create
from orders.models import Order, OrderEvent
from tests.factories import ChannelFactory, ItemFactory, LocationFactory, stock
from tests.integration.conftest import ROOT, database_url, wait_for
from tests.oms.test_webhooks import SECRET, Receiver

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def body(external_id: str) -> dict:
    return {
        "channel": "web",
        "external_id": external_id,
        "currency": "USD",
        "customer": {"email": "ada@example.com", "name": "Ada"},
        "shipping_address": {"line1": "1 Main St", "city": "Newark", "postal_code": "07102", "country": "US"},
        "lines": [{"sku": "A", "quantity": 1, "unit_price": "10.00"}],
    }


@pytest.fixture
def shop():
    dc = LocationFactory(code="DC1")
    ChannelFactory(code="web", locations=[dc])
    stock(dc, ItemFactory(sku="A"), 500)
    return dc


def test_capture_reserves_writes_timeline_and_webhook_reaches_receiver_signed(worker, api, shop, receiver):
    WebhookSubscription.objects.create(url=receiver.url, events=["order.created"], secret=SECRET)
    r = api.post("/api/v1/orders/", body("W-1"), format="json")
    assert r.status_code == 201, r.content
    number = r.json()["number"]
    assert r.json()["lines"][0]["quantity_allocated"] == 1
    assert OrderEvent.objects.filter(order__number=number, type="order.created").exists()
    assert wait_for(lambda: len(receiver.received) == 1), worker.read_text()
    got = receiver.received[0]
    assert got["ok"] is True  # the receiver verified X-OMS-Signature
    assert got["type"] == "order.created" and got["body"]["data"]["order"] == number
    assert ledger_mismatches() == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A Redis of the test's own, so stopping it cannot disturb anything else."""

    def __init__(self, tmp_path):
        self.port = _free_port()
        self.dir = tmp_path
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert wait_for(self._up, 10), "private redis did not start"

    def _up(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self):
        self.proc.kill()
        self.proc.wait(10)

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"


def test_redis_outage_during_capture_loses_nothing(tmp_path, shop, receiver):
    redis = PrivateRedis(tmp_path)
    redis.start()
    WebhookSubscription.objects.create(url=receiver.url, events=["order.created"], secret=SECRET)
    _, raw = api_key_create(name="shop", scopes="orders:write")
    web_port = _free_port()
    env = {**os.environ, "DATABASE_URL": database_url(), "REDIS_URL": redis.url, "CELERY_TASK_DEFAULT_QUEUE": "outage"}
    logs = {name: (tmp_path / f"{name}.log").open("w") for name in ("web", "worker")}
    web = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "oms.wsgi",
            "-w",
            "2",
            "-k",
            "gthread",
            "--threads",
            "4",
            "-b",
            f"127.0.0.1:{web_port}",
        ],
        cwd=ROOT,
        env=env,
        stdout=logs["web"],
        stderr=subprocess.STDOUT,
    )
    # Worker with embedded beat: the beat relay is what catches up after the outage.
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "oms",
            "worker",
            "-B",
            "-Q",
            "outage",
            "-c",
            "1",
            "-P",
            "solo",
            "-s",
            str(tmp_path / "beat-schedule"),
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=logs["worker"],
        stderr=subprocess.STDOUT,
    )

    def capture(external_id: str) -> float:
        req = urllib.request.Request(
            f"http://127.0.0.1:{web_port}/api/v1/orders/",
            data=json.dumps(body(external_id)).encode(),
            method="POST",
            headers={"Authorization": f"Api-Key {raw}", "Content-Type": "application/json"},
        )
        started = time.perf_counter()
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 201
        return time.perf_counter() - started

    try:
        assert wait_for(lambda: _port_open(web_port), 30), (tmp_path / "web.log").read_text()
        for i in range(3):  # warm up both gunicorn workers
            capture(f"WARM-{i}")
        before = [capture(f"UP-{i}") for i in range(10)]
        redis.stop()
        during = [capture(f"DOWN-{i}") for i in range(20)]
        assert Order.objects.count() == 33  # every order was accepted while Redis was down
        redis.start()
        expected = set(Order.objects.values_list("number", flat=True))
        delivered = lambda: {r["body"]["data"]["order"] for r in receiver.received}  # noqa: E731
        assert wait_for(lambda: delivered() == expected, 90), (
            f"missing {sorted(expected - delivered())}\n" + (tmp_path / "worker.log").read_text()[-3000:]
        )
    finally:
        web.terminate()
        worker.terminate()
        for proc in (web, worker):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        redis.stop()
    ids = Counter(r["id"] for r in receiver.received)
    assert all(n == 1 for n in ids.values()), "an event was delivered twice"
    assert all(r["ok"] for r in receiver.received)
    # No slowdown: capture while Redis is down is as fast as before (generous bound for CI noise).
    assert max(during) < 1.5, during  # a request that waited on the broker would take ≥ 2 s (its timeout)
    assert statistics.median(during) < statistics.median(before) * 3 + 0.05, (before, during)
    print(
        f"capture median before {statistics.median(before) * 1000:.1f} ms, during outage {statistics.median(during) * 1000:.1f} ms"
    )


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
