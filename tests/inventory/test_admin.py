"""The merchants' admin: CSV imports, read-only ledger, API keys, actions, query counts."""

import re
from datetime import time
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from inventory import csv_import
from inventory.models import IncomingSupply, Item, Location, Stock, StockMovement
from inventory.selectors import ledger_mismatches
from inventory.services import StockLine, cart_reservation_put, stock_reserve
from oms.actor import Actor
from oms.models import ApiKey, OutboxMessage, OutboxStatus, hash_key
from oms.services import api_key_create
from tests.factories import ChannelFactory, ItemFactory, LocationFactory, SupplyFactory, stock

pytestmark = pytest.mark.django_db


def upload(client, model: str, text: str, name: str = "upload.csv", follow: bool = True):
    url = reverse(f"admin:inventory_{model}_import_csv")
    file = SimpleUploadedFile(name, text.encode(), content_type="text/csv")
    return client.post(url, {"file": file}, follow=follow)


def content(response) -> str:
    return response.content.decode()


def everything():
    """All rows an import may write, to prove a rejected file wrote nothing."""
    return (
        sorted(Location.objects.values_list()),
        sorted(Item.objects.values_list()),
        sorted(Stock.objects.values_list("location_id", "item_id", "on_hand", "reserved", "safety_stock")),
        StockMovement.objects.count(),
    )


# --- Location and item imports -------------------------------------------------------------------


LOCATIONS_CSV = (
    "code,name,type,city,country,latitude,longitude,capabilities,active,priority,"
    "daily_capacity,fulfillment_cost,timezone,cutoff_time,accepts_returns\n"
    "DC1,Renamed DC,warehouse,Newark,us,40.7357001,-74.1724,ship,true,5,1000,3.50,"
    "America/New_York,16:30,yes\n"
    "ST1,Store one,store,Paris,FR,48.8566,2.3522,pickup;ship;curbside,true,50,,6,"
    "Europe/Paris,14:00,no\n"
    "DS1,Vendor,dropship,,DE,,,ship,false,200,,0,UTC,,false\n"
)


def test_location_import_creates_and_updates_by_code(admin_client):
    LocationFactory(code="DC1", name="Old name", priority=100, capabilities=["pickup"])

    response = upload(admin_client, "location", LOCATIONS_CSV, name="network.csv")

    assert response.redirect_chain[-1][0] == reverse("admin:inventory_location_changelist")
    assert "Imported network.csv: 2 created, 1 updated, 0 unchanged." in content(response)
    assert Location.objects.count() == 3
    dc1 = Location.objects.get(code="DC1")
    assert (dc1.name, dc1.priority, dc1.daily_capacity, dc1.country) == (
        "Renamed DC",
        5,
        1000,
        "US",
    )
    assert dc1.latitude == Decimal("40.735700")  # rounded to the column's 6 places
    assert dc1.capabilities == ["ship"]
    assert (dc1.cutoff_time, dc1.accepts_returns, dc1.timezone) == (
        time(16, 30),
        True,
        "America/New_York",
    )
    st1 = Location.objects.get(code="ST1")
    assert st1.capabilities == ["ship", "pickup", "curbside"]  # canonical order
    assert (st1.type, st1.daily_capacity, st1.fulfillment_cost) == ("store", None, Decimal("6.00"))
    ds1 = Location.objects.get(code="DS1")
    assert (ds1.active, ds1.latitude, ds1.cutoff_time) == (
        False,
        None,
        time(15, 0),
    )  # empty = default


def test_reimporting_the_same_file_changes_nothing():
    actor = Actor.system("test")
    first = csv_import.import_locations_csv(SimpleUploadedFile("a.csv", LOCATIONS_CSV.encode()), actor)
    before = everything()

    again = csv_import.import_locations_csv(SimpleUploadedFile("a.csv", LOCATIONS_CSV.encode()), actor)

    assert (first.created, first.updated, first.errors) == (3, 0, [])
    assert (again.created, again.updated, again.unchanged, again.errors) == (0, 0, 3, [])
    assert everything() == before


def test_columns_left_out_are_kept_on_update():
    LocationFactory(code="DC1", city="Newark", priority=7, capabilities=["ship", "pickup"])

    result = csv_import.import_locations_csv(
        SimpleUploadedFile("a.csv", b"code,name,type,country\nDC1,New name,warehouse,US\n"),
        Actor.system("t"),
    )

    assert (result.created, result.updated) == (0, 1)
    dc1 = Location.objects.get(code="DC1")
    assert (dc1.name, dc1.city, dc1.priority, dc1.capabilities) == (
        "New name",
        "Newark",
        7,
        ["ship", "pickup"],
    )


def test_item_import_upserts_thousands_of_rows_in_bulk(django_assert_max_num_queries):
    ItemFactory(sku="SKU-00000", name="Old", weight_grams=1)
    rows = "".join(f"SKU-{n:05d},Item {n},true,{n}\n" for n in range(3000))

    # Batched statements (SQLite caps parameters per statement), never one per row.
    with django_assert_max_num_queries(60):
        result = csv_import.import_items_csv(
            SimpleUploadedFile("items.csv", ("sku,name,active,weight_grams\n" + rows).encode()),
            Actor.system("t"),
        )

    assert (result.created, result.updated, result.unchanged, result.errors) == (2999, 1, 0, [])
    assert Item.objects.count() == 3000
    assert Item.objects.get(sku="SKU-00000").name == "Item 0"
    assert Item.objects.get(sku="SKU-02999").weight_grams == 2999


def test_item_import_through_the_admin(admin_client):
    ItemFactory(sku="A", name="Old A")

    # Header case, a byte-order mark and empty trailing columns (as Excel writes) are fine.
    response = upload(admin_client, "item", "\ufeffSKU,Name,,\nA,New A,,\nB,Bee,,\n")

    assert "1 created, 1 updated, 0 unchanged" in content(response)
    assert dict(Item.objects.values_list("sku", "name")) == {"A": "New A", "B": "Bee"}


# --- Stock import --------------------------------------------------------------------------------


def test_stock_import_sets_counts_through_the_ledger(admin_client, network):
    dc1, dc2, a, b = network["dc1"], network["dc2"], network["item"], network["other"]
    stock(dc1, a, 10)
    stock(dc2, a, 4, safety_stock=2)
    csv = "location,sku,on_hand,safety_stock\nDC1,A,7,1\nDC1,B,20,\nDC2,A,4,\n"

    response = upload(admin_client, "stock", csv, name="count-0601.csv")

    assert "Imported count-0601.csv: 1 created, 1 updated, 1 unchanged." in content(response)
    counters = {
        (s.location.code, s.item.sku): (s.on_hand, s.reserved, s.safety_stock)
        for s in Stock.objects.select_related("location", "item")
    }
    assert counters == {("DC1", "A"): (7, 0, 1), ("DC1", "B"): (20, 0, 0), ("DC2", "A"): (4, 0, 2)}
    moves = StockMovement.objects.filter(reference="csv:count-0601.csv").order_by("id")
    assert sorted((m.location_id, m.item_id, m.delta_on_hand, m.reason) for m in moves) == sorted(
        [(dc1.pk, a.pk, -3, "snapshot"), (dc1.pk, b.pk, 20, "snapshot")]
    )
    assert {m.actor_label for m in moves} == {"admin"}
    assert ledger_mismatches() == []
    # Rows in the changelist after the import.
    listing = content(admin_client.get(reverse("admin:inventory_stock_changelist")))
    assert listing.count('class="field-on_hand"') == 3


def test_stock_import_refuses_a_count_below_reserved(admin_client, network):
    dc1, a = network["dc1"], network["item"]
    stock(dc1, a, 10)
    stock_reserve(lines=[StockLine(dc1.pk, a.pk, 6)], actor=Actor.system("t"), reference="order-1")
    before = everything()

    response = upload(admin_client, "stock", "location,sku,on_hand\nDC1,A,5\n")

    assert "row 2: on_hand 5 is below the 6 units reserved for orders" in content(response)
    assert everything() == before


# --- Invalid files write nothing and say why -----------------------------------------------------


@pytest.mark.parametrize(
    ("model", "csv", "error"),
    [
        (
            "stock",
            "location,sku,on_hand\nDC1,A,5\nDC1,NOPE,3\n",
            "row 3: unknown sku &#x27;NOPE&#x27;",
        ),
        (
            "stock",
            "location,sku,on_hand\nDC1,A,5\nX,A,1\n",
            "row 3: unknown location &#x27;X&#x27;",
        ),
        (
            "stock",
            "location,sku,on_hand\nDC1,A,5\nDC2,A,-2\n",
            "row 3: on_hand -2 must be between 0",
        ),
        (
            "stock",
            "location,sku,on_hand\nDC1,A,5\nDC2,A,lots\n",
            "row 3: on_hand &#x27;lots&#x27; is not a whole number",
        ),
        ("stock", "location,sku,on_hand\nDC1,A,5\nDC1,A,6\n", "row 3: duplicate of row 2"),
        ("stock", "location,sku\nDC1,A\n", "missing column &#x27;on_hand&#x27;"),
        ("stock", "location,sku,on_hnad\nDC1,A,5\n", "unknown column &#x27;on_hnad&#x27;"),
        ("stock", "location,sku,on_hand\n", "the file has a header but no rows"),
        (
            "location",
            "code,name,type,country\nNEW1,New,store,US\nNEW2,Depot,depot,US\n",
            "row 3: type &#x27;depot&#x27; is not one of warehouse, store, dropship",
        ),
        (
            "location",
            "code,name,type,country,capabilities\nNEW1,New,store,US,ship;teleport\n",
            "row 2: capabilities unknown teleport",
        ),
        ("location", "code,name,type\nNEW1,New,store\n", "missing column &#x27;country&#x27;"),
        (
            "location",
            "code,name,type,country\nNEW1,New,store,USA\n",
            "row 2: country: Ensure this value has at most 2",
        ),
        (
            "location",
            "code,name,type,country\nnot a slug,New,store,US\n",
            "row 2: code: Enter a valid",
        ),
        ("location", "code,name,type,country\nN1,,store,US\n", "row 2: name is required"),
        (
            "item",
            "sku,name,weight_grams\nNEW,New,12\nNEW2,Heavy,-5\n",
            "row 3: weight_grams -5 must be between 0",
        ),
        (
            "item",
            "sku,name\nNEW,New\nNEW,Again\n",
            "row 3: duplicate sku &#x27;NEW&#x27; (also on row 2)",
        ),
        (
            "item",
            "sku,name,active\nNEW,New,maybe\n",
            "row 2: active &#x27;maybe&#x27; is not true/false",
        ),
        ("item", "sku\nNEW\n", "missing column &#x27;name&#x27;"),
        ("item", "sku,name,\nNEW,New,oops\n", "row 2: a value sits in a column with no name"),
    ],
)
def test_invalid_csv_writes_nothing_and_shows_the_error(admin_client, network, model, csv, error):
    stock(network["dc1"], network["item"], 10)
    before = everything()

    response = upload(admin_client, model, csv)

    assert response.status_code == 200
    assert "Nothing was imported" in content(response)
    assert error in content(response)
    assert everything() == before


def test_file_that_is_not_utf8_is_refused(admin_client):
    url = reverse("admin:inventory_item_import_csv")
    file = SimpleUploadedFile("x.csv", "sku,name\nA,Caf\xe9\n".encode("latin-1"))
    response = admin_client.post(url, {"file": file})
    assert "file is not UTF-8 text" in content(response)
    assert Item.objects.count() == 0


def test_samples_download_and_import_cleanly(admin_client):
    for model in ("location", "item", "stock"):
        page = admin_client.get(reverse(f"admin:inventory_{model}_import_csv"))
        sample_url = reverse(f"admin:inventory_{model}_import_csv_sample")
        assert sample_url in content(page)
        sample = admin_client.get(sample_url)
        assert sample["Content-Type"] == "text/csv"
        response = upload(admin_client, model, sample.content.decode())
        assert "Imported upload.csv: 2 created" in content(response)
    assert Stock.objects.get(location__code="DC-EAST", item__sku="TSHIRT-BLK-M").on_hand == 120
    assert ledger_mismatches() == []


def test_import_needs_add_and_change_permission(client):
    user = User.objects.create_user("clerk", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_location"))
    client.force_login(user)

    listing = client.get(reverse("admin:inventory_location_changelist"))
    upload_page = client.get(reverse("admin:inventory_location_import_csv"))

    assert listing.status_code == 200
    assert "Import CSV" not in content(listing)
    assert upload_page.status_code == 403


def test_changelist_shows_the_import_button(admin_client):
    for model in ("location", "item", "stock"):
        page = content(admin_client.get(reverse(f"admin:inventory_{model}_changelist")))
        assert reverse(f"admin:inventory_{model}_import_csv") in page


# --- Stock, ledger, supply, reservations ---------------------------------------------------------


def test_stock_admin_edits_safety_stock_only(admin_client, network):
    row = stock(network["dc1"], network["item"], 10)
    moves = StockMovement.objects.count()
    url = reverse("admin:inventory_stock_change", args=[row.pk])

    response = admin_client.post(url, {"safety_stock": 3, "on_hand": 999, "reserved": 5})

    assert response.status_code == 302
    row.refresh_from_db()
    assert (row.on_hand, row.reserved, row.safety_stock) == (10, 0, 3)
    assert StockMovement.objects.count() == moves
    assert admin_client.get(reverse("admin:inventory_stock_add")).status_code == 403
    assert admin_client.post(reverse("admin:inventory_stock_delete", args=[row.pk])).status_code == 403


def test_stock_admin_refuses_negative_safety_stock(admin_client, network):
    row = stock(network["dc1"], network["item"], 10)
    response = admin_client.post(reverse("admin:inventory_stock_change", args=[row.pk]), {"safety_stock": -1})
    assert response.status_code == 200
    row.refresh_from_db()
    assert row.safety_stock == 0


def test_ledger_admin_is_read_only(admin_client, network):
    stock(network["dc1"], network["item"], 10)
    move = StockMovement.objects.get()

    listing = admin_client.get(reverse("admin:inventory_stockmovement_changelist"))
    view = admin_client.get(reverse("admin:inventory_stockmovement_change", args=[move.pk]))
    post = admin_client.post(reverse("admin:inventory_stockmovement_change", args=[move.pk]), {"delta_on_hand": 99})

    assert listing.status_code == 200
    assert reverse("admin:inventory_stockmovement_add") not in content(listing)
    assert view.status_code == 200 and 'name="_save"' not in content(view)
    assert post.status_code == 403
    assert admin_client.get(reverse("admin:inventory_stockmovement_add")).status_code == 403
    delete = admin_client.post(reverse("admin:inventory_stockmovement_delete", args=[move.pk]), {"post": "yes"})
    assert delete.status_code == 403
    assert StockMovement.objects.get().delta_on_hand == 10


def test_receive_remaining_supply_action(admin_client, network):
    stock(network["dc1"], network["item"], 5)
    supply = SupplyFactory(location=network["dc1"], item=network["item"], quantity=20, reference="PO-9")
    done = SupplyFactory(location=network["dc1"], item=network["other"], status="cancelled")

    response = admin_client.post(
        reverse("admin:inventory_incomingsupply_changelist"),
        {"action": "receive_remaining", "_selected_action": [supply.pk, done.pk]},
        follow=True,
    )

    assert "Received 1 supply line(s) into stock." in content(response)
    supply.refresh_from_db()
    assert (supply.status, supply.quantity_received) == (IncomingSupply.Status.RECEIVED, 20)
    assert Stock.objects.get(location=network["dc1"], item=network["item"]).on_hand == 25
    move = StockMovement.objects.get(reason="receipt")
    assert (move.reference, move.delta_on_hand, move.actor_label) == ("PO-9", 20, "admin")
    assert ledger_mismatches() == []


def test_supply_edit_goes_through_the_service_and_keeps_received(admin_client, network):
    supply = SupplyFactory(location=network["dc1"], item=network["item"], quantity=20, quantity_received=8)
    url = reverse("admin:inventory_incomingsupply_change", args=[supply.pk])

    too_low = admin_client.post(url, {"quantity": 5, "expected_date": "2031-01-02"})
    ok = admin_client.post(url, {"quantity": 30, "expected_date": "2031-01-02"})

    assert too_low.status_code == 200 and "8 have already been received" in content(too_low)
    assert ok.status_code == 302
    supply.refresh_from_db()
    assert (supply.quantity, supply.quantity_received, str(supply.expected_date)) == (
        30,
        8,
        "2031-01-02",
    )


def test_reservation_admin_is_read_only_with_lines(admin_client, network):
    stock(network["dc1"], network["item"], 10)
    reservation, _ = cart_reservation_put(
        channel=network["web"],
        key="cart-1",
        lines={network["item"].pk: 2},
        ttl_seconds=600,
        actor=Actor.system("t"),
    )

    page = admin_client.get(reverse("admin:inventory_reservation_change", args=[reservation.pk]))

    assert page.status_code == 200
    assert "DC1 · Location DC1" in content(page) and 'name="_save"' not in content(page)
    assert admin_client.get(reverse("admin:inventory_reservation_add")).status_code == 403


# --- API keys and the outbox ---------------------------------------------------------------------


def test_api_key_add_shows_the_raw_key_once_and_stores_only_its_hash(admin_client, network):
    response = admin_client.post(
        reverse("admin:oms_apikey_add"),
        {
            "name": "Shopify",
            "scopes": ["orders:write", "inventory:read"],
            "channel": network["web"].pk,
        },
        follow=True,
    )

    page = content(response)
    match = re.search(r"oms_[0-9a-f]{8}_[A-Za-z0-9_-]+", page)
    assert match and "Copy it now, it will not be shown again" in page
    raw = match.group(0)
    key = ApiKey.objects.get()
    assert key.hashed_key == hash_key(raw)
    assert raw not in str(ApiKey.objects.values_list().get())
    assert (key.name, key.scopes, key.channel_id) == (
        "Shopify",
        ["orders:write", "inventory:read"],
        network["web"].pk,
    )
    assert raw.split("_")[1] == key.prefix
    # Shown once: neither the list nor the key's own page repeats it.
    assert raw not in content(admin_client.get(reverse("admin:oms_apikey_changelist")))
    detail = admin_client.get(reverse("admin:oms_apikey_change", args=[key.pk]))
    assert raw not in content(detail) and 'name="_save"' not in content(detail)


def test_api_key_add_requires_a_scope(admin_client):
    response = admin_client.post(reverse("admin:oms_apikey_add"), {"name": "No scopes"})
    assert response.status_code == 200
    assert ApiKey.objects.count() == 0


def test_api_key_cannot_be_edited(admin_client):
    key, _ = api_key_create(name="k", scopes="all")
    response = admin_client.post(reverse("admin:oms_apikey_change", args=[key.pk]), {"name": "renamed"})
    assert response.status_code == 403
    key.refresh_from_db()
    assert key.name == "k"


def test_revoke_action(admin_client):
    keep, _ = api_key_create(name="keep", scopes="all")
    gone, _ = api_key_create(name="gone", scopes="all")

    response = admin_client.post(
        reverse("admin:oms_apikey_changelist"),
        {"action": "revoke_selected", "_selected_action": [gone.pk]},
        follow=True,
    )

    assert "Revoked 1 key(s)." in content(response)
    gone.refresh_from_db()
    keep.refresh_from_db()
    assert gone.revoked_at is not None and keep.revoked_at is None
    assert list(ApiKey.objects.usable()) == [keep]


def test_outbox_retry_now(admin_client):
    past = timezone.now() + timezone.timedelta(hours=1)
    dead = OutboxMessage.objects.create(kind="event", topic="x", status=OutboxStatus.DEAD, next_attempt_at=past)
    done = OutboxMessage.objects.create(kind="event", topic="y", status=OutboxStatus.DONE, next_attempt_at=past)

    response = admin_client.post(
        reverse("admin:oms_outboxmessage_changelist"),
        {"action": "retry_now", "_selected_action": [dead.pk, done.pk]},
        follow=True,
    )

    assert "1 message(s) queued for delivery now." in content(response)
    dead.refresh_from_db()
    done.refresh_from_db()
    assert dead.status == OutboxStatus.PENDING and dead.next_attempt_at <= timezone.now()
    assert done.status == OutboxStatus.DONE and done.next_attempt_at == past
    assert admin_client.get(reverse("admin:oms_outboxmessage_add")).status_code == 403


# --- Every changelist answers, with a bounded number of queries ----------------------------------


@pytest.fixture
def busy(network):
    """Several rows in every admin table, so an N+1 would show up as extra queries."""
    actor = Actor.system("t")
    for n in range(8):
        item = ItemFactory(sku=f"Q{n}")
        for loc in (network["dc1"], network["dc2"], network["store"]):
            stock(loc, item, 10 + n)
        SupplyFactory(location=network["dc1"], item=item)
        cart_reservation_put(
            channel=network["web"],
            key=f"cart-{n}",
            lines={item.pk: 1},
            ttl_seconds=600,
            actor=actor,
        )
        api_key_create(name=f"key {n}", scopes="all", channel=network["web"], location=network["dc1"])
    ChannelFactory(code="b2b", locations=[network["dc1"], network["dc2"]])


@pytest.mark.parametrize("model", sorted(f"{m._meta.app_label}.{m._meta.model_name}" for m in admin.site._registry))
def test_changelists_answer_with_bounded_queries(admin_client, busy, model, django_assert_max_num_queries):
    app_label, model_name = model.split(".")
    url = reverse(f"admin:{app_label}_{model_name}_changelist")
    admin_client.get(url)  # warm the session and content types

    with django_assert_max_num_queries(10):
        response = admin_client.get(url)

    assert response.status_code == 200


def test_items_deactivated_by_csv_import_are_refused_at_once(api, capture, order_body):
    """bulk_update sends no save signals: the import itself clears the per-process copies
    (capture's items, the ATP cache) so the very next capture and availability read see it."""
    capture(external_id="E-1")  # SKU A is now cached for capture
    assert api.get("/api/v1/availability/?skus=A&channel=web").json()["items"][0]["available"] > 0
    result = csv_import.import_items_csv(
        SimpleUploadedFile("items.csv", b"sku,name,active\nA,Widget,false\n"), Actor.system("t")
    )
    assert result.updated == 1, result
    r = api.post("/api/v1/orders/", order_body(external_id="E-2"), format="json")
    assert r.status_code == 400 and "not sold" in r.content.decode(), r.content
    assert api.get("/api/v1/availability/?skus=A&channel=web").json()["items"][0]["inactive"] is True
