import io
import re

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from rest_framework.test import APIClient

from inventory.models import Channel, IncomingSupply, Item, Location, Stock, StockMovement
from inventory.selectors import ledger_mismatches
from oms.auth import forget_keys
from oms.models import ApiKey
from oms.roles import CSR, GROUP_NAMES, MERCHANT, STORE_ASSOCIATE, SUPERVISOR, ensure_groups
from orders.models import Carrier

KEY_RE = re.compile(r"Api-Key (oms_[0-9a-f]{8}_[\w-]+)")
SKU_RE = re.compile(r"availability/\?skus=([\w-]+)&channel=web")


@pytest.fixture(autouse=True)
def fast_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def seed() -> tuple[str, str, str]:
    """Run the command; return (output, raw demo key, example SKU) as printed."""
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    text = out.getvalue()
    return text, KEY_RE.search(text).group(1), SKU_RE.search(text).group(1)


def state():
    return {
        "locations": sorted(Location.objects.values_list("code", "type")),
        "items": Item.objects.count(),
        "channels": sorted(
            (c.code, tuple(sorted(c.locations.values_list("code", flat=True)))) for c in Channel.objects.all()
        ),
        "stock": sorted(Stock.objects.values_list("location_id", "item_id", "on_hand", "reserved", "safety_stock")),
        "movements": StockMovement.objects.count(),
        "supply": sorted(
            IncomingSupply.objects.values_list("reference", "location_id", "item_id", "quantity", "expected_date")
        ),
        "users": sorted(User.objects.values_list("username", flat=True)),
        "groups": Group.objects.count(),
        "carriers": sorted(Carrier.objects.values_list("code", "base_url", "api_key", "webhook_secret")),
    }


def perms(name: str) -> set[str]:
    return {
        f"{app}.{codename}"
        for app, codename in Group.objects.get(name=name).permissions.values_list("content_type__app_label", "codename")
    }


def availability(raw_key: str, sku: str):
    client = APIClient(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    return client.get("/api/v1/availability/", {"skus": sku, "channel": "web", "detail": "locations"})


def test_ensure_groups_is_idempotent_with_expected_permissions(db):
    ensure_groups()
    ensure_groups()
    assert sorted(Group.objects.values_list("name", flat=True)) == sorted(GROUP_NAMES)
    models = [
        "location",
        "item",
        "channel",
        "stock",
        "incomingsupply",
        "stockmovement",
        "reservation",
    ]
    order_models = [
        "order",
        "orderline",
        "allocation",
        "payment",
        "orderhold",
        "orderevent",
        "customer",
        "holdrule",
        "fulfillment",
        "shipment",
        "trackingevent",
    ]
    view_all = {f"inventory.view_{m}" for m in models} | {f"orders.view_{m}" for m in order_models}
    view_all |= {"orders.change_order"}
    return_models = [
        "return",
        "returnline",
        "returnreceipt",
        "returnreceiptline",
        "refund",
        "appeasement",
        "returnreason",
        "appeasementreason",
        "returnpolicy",
        "appeasementlimit",
    ]
    view_all |= {f"returns.view_{m}" for m in return_models}
    view_all |= {"returns.add_return", "returns.change_return", "returns.add_appeasement"}
    assert perms(CSR) == view_all
    assert perms(SUPERVISOR) == view_all | {
        "inventory.change_stock",
        "returns.override_return_window",
        "returns.override_refund",
        "returns.approve_appeasement",
        "returns.retry_refund",
    }
    managed = [
        "inventory.location",
        "inventory.item",
        "inventory.channel",
        "inventory.stock",
        "inventory.incomingsupply",
        "oms.apikey",
        "orders.holdrule",
        "orders.carrier",
        "returns.returnreason",
        "returns.appeasementreason",
        "returns.returnpolicy",
        "returns.appeasementlimit",
    ]
    expected = view_all | {
        f"{app}.{action}_{model}"
        for app, model in (m.split(".") for m in managed)
        for action in ("add", "change", "view")
    }
    expected |= {f"orders.{action}_storeassociate" for action in ("add", "change", "delete", "view")}
    assert perms(MERCHANT) == expected
    assert "inventory.delete_location" not in perms(MERCHANT)
    assert perms(STORE_ASSOCIATE) == {"orders.work_store_queue"}


def test_seed_demo_builds_the_network_and_a_second_run_changes_nothing_but_the_key(db):
    # One test for both runs: seeding is the slow part, so do it twice, not three times.
    text, raw_key, sku = seed()

    locs = Location.objects
    assert locs.filter(type="warehouse").count() == 3
    assert 23 <= locs.filter(type="store").count() <= 27
    assert locs.filter(type="dropship").count() == 2
    assert all(loc.latitude is not None and loc.timezone.startswith("America/") for loc in locs.all())
    store_caps = [set(s.capabilities) for s in locs.filter(type="store")]
    assert all({"ship", "pickup", "curbside"} <= caps for caps in store_caps)
    assert any("same_day" in caps for caps in store_caps)
    assert all(s.accepts_returns for s in locs.filter(type="store"))
    assert Item.objects.count() == 500
    assert not Item.objects.filter(weight_grams__isnull=True).exists()

    dcs = set(locs.filter(type="warehouse"))
    stores = set(locs.filter(type="store"))
    vendors = set(locs.filter(type="dropship"))
    channels = {c.code: c for c in Channel.objects.all()}
    assert set(channels) == {"web", "marketplace", "pos"}
    assert set(channels["web"].locations.all()) == dcs | stores | vendors
    assert channels["web"].safety_buffer == 1
    assert set(channels["marketplace"].locations.all()) == dcs
    assert channels["marketplace"].safety_buffer_percent == 10
    assert set(channels["pos"].locations.all()) == stores

    # DCs hold most SKUs deeply, stores a shallow subset, vendors their own lines.
    dc_rows = Stock.objects.filter(location__type="warehouse")
    store_rows = Stock.objects.filter(location__type="store")
    assert dc_rows.count() > 1000 and store_rows.count() > 2000
    assert max(store_rows.values_list("on_hand", flat=True)) <= 12
    assert max(dc_rows.values_list("on_hand", flat=True)) > 100
    assert Stock.objects.filter(safety_stock__gt=0).exists()
    assert Stock.objects.filter(location__type="dropship", on_hand__gt=0).exists()
    assert IncomingSupply.objects.filter(location__type="warehouse").count() > 50
    assert not IncomingSupply.objects.exclude(location__type="warehouse").exists()
    movements = StockMovement.objects
    assert movements.filter(actor_label="seed_demo").count() == movements.count() > 0
    assert ledger_mismatches() == []

    assert sorted(Group.objects.values_list("name", flat=True)) == sorted(GROUP_NAMES)
    assert User.objects.get(username="admin").is_superuser
    for username, group in (("csr", CSR), ("supervisor", SUPERVISOR), ("merchant", MERCHANT)):
        user = User.objects.get(username=username)
        assert user.is_staff and not user.is_superuser and user.check_password(username)
        assert list(user.groups.values_list("name", flat=True)) == [group]

    associate = User.objects.get(username="store")
    assert not associate.is_staff and associate.check_password("store")
    assert list(associate.groups.values_list("name", flat=True)) == [STORE_ASSOCIATE]
    assert sorted(associate.store_memberships.values_list("location__code", flat=True)) == [
        "STORE-CHI-01",
        "STORE-CHI-02",
    ]
    assert Location.objects.get(code="STORE-CHI-02").processing_hours == 2

    sandbox = Carrier.objects.get(code="SANDBOX")
    assert (sandbox.adapter, sandbox.base_url, sandbox.services) == (
        "sandbox",
        "http://127.0.0.1:8070",
        ["ground", "express"],
    )
    for needle in (
        "/admin/",
        "/api/docs/",
        "/api/v1/",
        "/healthz",
        "supervisor / supervisor",
        "run_sandbox_carrier",
        "/store/",
        "store / store",
    ):
        assert needle in text
    resp = availability(raw_key, sku)
    assert resp.status_code == 200, resp.content
    (entry,) = resp.json()["items"]
    assert entry["sku"] == sku and entry["available"] > 0
    assert len(entry["by_location"]) > 2

    # Second run: same data, no new ledger rows; only the demo key is rotated.
    first_key, before = raw_key, state()
    _, second_key, _ = seed()
    assert state() == before
    assert ledger_mismatches() == []
    assert second_key != first_key
    assert ApiKey.objects.filter(name="demo").count() == 2
    assert ApiKey.objects.usable().filter(name="demo").count() == 1
    forget_keys()  # revocation shows within API_KEY_CACHE_SECONDS; here, at once
    assert availability(first_key, sku).status_code in (401, 403)
    assert availability(second_key, sku).status_code == 200
