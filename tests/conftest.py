import copy
import fcntl
import os
import shutil
import tempfile

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from inventory.models import Stock, StockMovement
from oms.celery import app as celery_app
from oms.services import api_key_create
from tests.factories import ChannelFactory, ItemFactory, LocationFactory, stock

CI = os.environ.get("CI", "").lower() == "true"

# Each test process publishes to a queue of its own, so a Celery worker started by one
# process's integration tests never runs tasks meant for another process's test database.
TEST_QUEUE = f"oms-test-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{os.getpid()}"
celery_app.conf.task_default_queue = TEST_QUEUE


def pytest_collection_modifyitems(config, items):
    """Tests that need PostgreSQL, Redis + a Celery worker or Chromium skip on a bare machine,
    and fail loudly under CI=true, where everything must be there."""
    missing = {}
    if not settings.IS_POSTGRES:
        missing["postgres"] = "needs PostgreSQL (set DATABASE_URL)"
    if not settings.REDIS_URL:
        missing["integration"] = "needs Redis (set REDIS_URL) and a Celery worker"
    if not shutil.which("chromium") and not os.path.exists("/usr/bin/chromium"):
        missing["browser"] = "needs Chromium at /usr/bin/chromium"
    if not missing:
        return
    if CI:
        wanted = {m for item in items for m in missing if item.get_closest_marker(m)}
        if wanted:
            raise pytest.UsageError(
                "CI=true but the environment is incomplete: " + "; ".join(missing[m] for m in sorted(wanted))
            )
        return
    for item in items:
        for marker, why in missing.items():
            if item.get_closest_marker(marker):
                item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture
def make_key(db):
    def make(scopes="all", **binding):
        key, raw = api_key_create(name="test key", scopes=scopes, **binding)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
        client.key = key
        return client

    return make


@pytest.fixture
def api(make_key):
    return make_key("all")


@pytest.fixture
def network(db):
    """A small network: two warehouses and a store in channel web, a store outside it."""
    dc1 = LocationFactory(code="DC1", priority=10)
    dc2 = LocationFactory(code="DC2", priority=20, latitude=34.05, longitude=-118.24)
    store = LocationFactory(
        code="STORE1", type="store", capabilities=["ship", "pickup"], latitude=40.73, longitude=-73.99
    )
    outside = LocationFactory(code="OUT1")
    web = ChannelFactory(code="web", locations=[dc1, dc2, store])
    market = ChannelFactory(code="market", locations=[dc1])
    item = ItemFactory(sku="A")
    other = ItemFactory(sku="B")
    return {
        "dc1": dc1,
        "dc2": dc2,
        "store": store,
        "outside": outside,
        "web": web,
        "market": market,
        "item": item,
        "other": other,
    }


def snapshot_state():
    """Everything an inventory write can change, to assert that a rejected request changed nothing."""
    return (
        sorted(Stock.objects.values_list("location_id", "item_id", "on_hand", "reserved", "safety_stock")),
        StockMovement.objects.count(),
    )


@pytest.fixture
def unchanged(db):
    class Guard:
        def __enter__(self):
            self.before = snapshot_state()
            return self

        def __exit__(self, *exc):
            if exc[0] is None:
                assert snapshot_state() == self.before, "a rejected request changed inventory"

    return Guard


@pytest.fixture(autouse=True)
def _fresh_caches():
    """Per-process caches (ATP entries, API keys, channels, hold rules) start empty: ids are
    reused between tests."""
    from inventory import atp_cache
    from oms import auth, local_cache

    atp_cache.reset()
    auth.forget_keys()
    local_cache.clear_all()


@pytest.fixture(autouse=True)
def _order_documents_match_drf(monkeypatch):
    """Every order document the suite produces (capture answers, GET, list pages, actions) must
    be exactly what DRF's generic rendering of the declared serializers gives: the fast
    functions in orders/api/documents.py are checked in every flow the tests exercise."""
    from orders.api import serializers as s
    from tests.orders.drf_reference import assert_same_document, reference_document

    for cls in (s.OrderSerializer, s.OrderListSerializer):
        fast = cls.__dict__["to_representation"]

        def checked(self, order, fast=fast, cls=cls):
            document = fast(self, order)
            assert_same_document(document, reference_document(order, cls))
            return document

        monkeypatch.setattr(cls, "to_representation", checked)


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _celery_mode(request, settings):
    """Unit tests run tasks in-process; integration tests talk to the real broker and worker."""
    from oms.celery import app

    eager = request.node.get_closest_marker("integration") is None
    settings.CELERY_TASK_ALWAYS_EAGER = eager
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = eager
    yield
    app.conf.task_always_eager = previous


# --- Orders -----------------------------------------------------------------------------------

BASE_ORDER = {
    "channel": "web",
    "external_id": "W-1001",
    "customer": {"email": "Ada.Lovelace@Example.com", "name": "Ada Lovelace", "phone": "+1 (212) 555-0147"},
    "currency": "USD",
    "fulfillment_method": "ship",
    "shipping_address": {
        "name": "Ada Lovelace",
        "line1": "12 Analytical Way",
        "city": "New York",
        "region": "NY",
        "postal_code": "10001",
        "country": "US",
        "latitude": "40.7506",
        "longitude": "-73.9972",
    },
    "shipping_method": "standard",
    "lines": [
        {"sku": "A", "quantity": 3, "unit_price": "20.00", "external_line_id": "1"},
        {"sku": "B", "quantity": 1, "unit_price": "10.00", "external_line_id": "2"},
    ],
    "shipping_total": "5.00",
    "tax_total": "7.00",
    "payment": {"method": "card", "reference": "pi_123", "amount_authorized": "82.00"},
}


@pytest.fixture
def order_body():
    def make(**changes):
        body = copy.deepcopy(BASE_ORDER)
        body.update(changes)
        return body

    return make


@pytest.fixture
def stocked(network):
    stock(network["dc1"], network["item"], 5)
    stock(network["dc1"], network["other"], 5)
    stock(network["store"], network["item"], 2)
    return network


@pytest.fixture
def capture(api, order_body, stocked):
    def do(**changes):
        r = api.post("/api/v1/orders/", order_body(**changes), format="json")
        assert r.status_code == 201, r.content
        return r.json()

    return do


@pytest.fixture
def no_routing(monkeypatch):
    """Capture without the routing step, to look at what capture alone does."""
    monkeypatch.setattr("orders.services.request_routing", lambda order: None)


@pytest.fixture
def one_at_a_time():
    """Tests that open dozens of connections or start worker processes take turns across
    pytest-xdist processes, so together they stay under PostgreSQL's connection limit."""
    path = os.path.join(tempfile.gettempdir(), "oms-tests-heavy.lock")
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
