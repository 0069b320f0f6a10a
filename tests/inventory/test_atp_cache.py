"""The ATP cache behind GET /api/v1/availability/: same answer as the exact selector, and every
stock, supply or configuration change is seen by the next read (inventory/atp_cache.py)."""

from __future__ import annotations

import threading
import time
from datetime import date
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from inventory import atp_cache
from inventory.api.views import AvailabilityView
from inventory.selectors import cached_channel_availability, channel_availability
from inventory.services import Adjustment, SupplyLine, stock_adjust, stock_release, stock_reserve, supply_upsert
from oms import auth
from oms.actor import Actor
from oms.services import api_key_create, api_key_revoke

ACTOR = Actor.system("test")
URL = "/api/v1/availability/?skus=A,B&channel=web"


def available(api, sku="A", url=URL):
    r = api.get(url)
    assert r.status_code == 200, r.content
    return {i["sku"]: i for i in r.json()["items"]}[sku]["available"]


def settle():
    """Wait for the background invalidation of committed changes and, with Redis, for this
    process's listener to have it (as another process's would)."""
    atp_cache.settle()


def test_answer_equals_the_exact_selector_and_a_repeat_costs_no_query(api, stocked):
    web = stocked["web"]
    exact = channel_availability(channel=web, skus=["A", "B"])
    r = api.get(URL)
    assert (
        r.json()
        == exact
        == {
            "channel": "web",
            "items": [{"sku": "A", "available": 7, "incoming": []}, {"sku": "B", "available": 5, "incoming": []}],
        }
    )
    with CaptureQueriesContext(connection) as queries:
        assert api.get(URL).json() == exact
    assert len(queries) == 0, [q["sql"] for q in queries]  # key, channel, SKUs and figures all cached


def test_fast_path_renders_the_same_bytes_and_headers_as_the_drf_view(api, stocked):
    fast = api.get(URL)
    with mock.patch("inventory.api.views._fast_availability", return_value=None):
        full = api.get(URL)
    assert fast.content == full.content
    headers = lambda r: {k: v for k, v in r.items() if k != "X-Request-ID"}  # noqa: E731
    assert headers(fast) == headers(full)
    assert AvailabilityView.as_view().cls is AvailabilityView  # still documented in the schema


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            lambda n: stock_adjust(
                adjustments=[Adjustment(n["dc1"], n["item"], "count", delta=4)], actor=ACTOR, source="t"
            ),
            11,
        ),
        (lambda n: stock_reserve(lines=[_line(n["dc1"], n["item"], 3)], actor=ACTOR, reference="r"), 4),
        (lambda n: _reserve_then_release(n), 7),
    ],
    ids=["adjustment", "reservation", "release"],
)
def test_a_stock_change_is_seen_by_the_next_read(api, stocked, change, expected):
    assert available(api) == 7
    change(stocked)
    assert available(api) == expected
    assert available(api) == expected  # and cached again


def _line(location, item, quantity):
    from inventory.services import StockLine

    return StockLine(location.pk, item.pk, quantity)


def _reserve_then_release(n):
    stock_reserve(lines=[_line(n["dc1"], n["item"], 2)], actor=ACTOR, reference="r")
    stock_release(lines=[_line(n["dc1"], n["item"], 2)], actor=ACTOR, reference="r")


def test_api_writes_are_seen_cart_and_order(api, stocked, order_body, no_routing):
    assert available(api) == 7
    r = api.post(
        "/api/v1/reservations/",
        {"channel": "web", "key": "cart-1", "lines": [{"sku": "A", "quantity": 2}], "ttl_seconds": 300},
        format="json",
    )
    assert r.status_code == 201, r.content
    assert available(api) == 5
    assert api.post("/api/v1/orders/", order_body(), format="json").status_code == 201  # 3 × A, 1 × B
    assert available(api) == 2
    assert available(api, "B") == 4
    assert api.delete("/api/v1/reservations/cart-1/?channel=web").status_code in (200, 204)
    assert available(api) == 4


def test_incoming_supply_and_safety_stock_are_seen(api, stocked):
    assert available(api) == 7
    supply_upsert(
        lines=[SupplyLine(stocked["dc1"], stocked["item"], 20, date(2030, 1, 2), "PO-1")],
    )
    r = api.get(URL).json()["items"][0]
    assert r["incoming"] == [{"location": "DC1", "quantity": 20, "expected_date": "2030-01-02"}]
    from inventory.models import Stock
    from inventory.services import stock_set_safety_stock

    row = Stock.objects.get(location=stocked["dc1"], item=stocked["item"])
    stock_set_safety_stock(stock_id=row.pk, safety_stock=2, actor=ACTOR)
    assert available(api) == 5


def test_configuration_changes_are_seen(api, stocked):
    assert available(api) == 7
    web = stocked["web"]
    web.safety_buffer = 1
    web.save()
    assert available(api) == 5  # one unit held back at each of DC1 and STORE1
    stocked["store"].active = False
    stocked["store"].save()
    assert available(api) == 4
    web.locations.remove(stocked["dc1"])
    assert available(api) == 0
    web.locations.add(stocked["dc1"])
    item = stocked["item"]
    item.active = False
    item.save()
    r = api.get(URL).json()["items"][0]
    assert r == {"sku": "A", "available": 0, "inactive": True, "incoming": []}


def test_a_change_committed_by_another_process_invalidates_the_entry(api, stocked):
    """Another process's change arrives only as new generations in the shared cache."""
    item = stocked["item"]
    assert available(api) == 7
    # Written behind this process's back (no local mark), then published as another process would.
    from inventory.models import Stock

    Stock.objects.filter(location=stocked["dc1"], item=item).update(on_hand=1)
    assert available(api) == 7  # nothing told this process yet: the entry stands
    atp_cache._publish(atp_cache._prefix(), {item.pk})
    settle()
    assert available(api) == 3


def test_an_entry_computed_before_a_commit_is_not_served_after_it(stocked):
    """The race: a reader takes the generations, a writer commits and bumps, the reader stores
    what it read before the commit. That entry must not be served."""
    web, item = stocked["web"], stocked["item"]
    lookup = atp_cache.Lookup(web.pk, [item.pk])
    assert lookup.hits == {}
    atp_cache._publish(atp_cache._prefix(), {item.pk})  # the writer's bump after its commit
    settle()
    lookup.store({item.pk: (999, [])})  # the reader's stale figure, under the old generation
    assert atp_cache.Lookup(web.pk, [item.pk]).hits == {}
    assert cached_channel_availability(channel=web, skus=["A"])["items"][0]["available"] == 7


def test_entries_expire_after_the_ttl(api, stocked, settings):
    settings.ATP_CACHE_SECONDS = 1
    assert available(api) == 7
    from inventory.models import Stock

    Stock.objects.filter(location=stocked["dc1"], item=stocked["item"]).update(on_hand=1)  # not via a service
    assert available(api) == 7
    time.sleep(1.2)
    assert available(api) == 3


def test_ttl_zero_turns_the_cache_off(api, stocked, settings):
    settings.ATP_CACHE_SECONDS = 0
    from inventory.models import Stock

    assert available(api) == 7
    Stock.objects.filter(location=stocked["dc1"], item=stocked["item"]).update(on_hand=1)
    assert available(api) == 3


def test_cache_outage_answers_exactly(api, stocked, caplog):
    broken = mock.Mock()
    broken.get_many.side_effect = ConnectionError("redis down")
    with mock.patch("inventory.atp_cache._cache", return_value=broken):
        assert available(api) == 7
        stock_adjust(
            adjustments=[Adjustment(stocked["dc1"], stocked["item"], "count", delta=1)], actor=ACTOR, source="t"
        )
        assert available(api) == 8
    assert "atp cache read failed" in caplog.text
    assert broken.get_many.call_count == 1  # then left alone for OUTAGE_SECONDS


def test_detail_near_and_pickup_here_stay_exact(api, stocked):
    assert available(api) == 7
    from inventory.models import Stock

    Stock.objects.filter(location=stocked["dc1"], item=stocked["item"]).update(on_hand=1)  # behind the cache
    assert available(api, url=URL + "&detail=locations") == 3
    assert available(api, url="/api/v1/availability/?skus=A&channel=web&location=DC1") == 1
    r = api.get("/api/v1/availability/breakdown/?sku=A&channel=web")
    assert r.json()["available"] == 3


# --- API keys -----------------------------------------------------------------------------------


def test_a_revoked_key_works_for_at_most_the_key_cache_ttl(stocked, settings):
    settings.API_KEY_CACHE_SECONDS = 5
    key, raw = api_key_create(name="k", scopes="inventory:read")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    assert client.get(URL).status_code == 200
    api_key_revoke(key=key)
    assert client.get(URL).status_code == 200  # this process still holds it: the documented delay
    assert client.get("/api/v1/items/").status_code == 200
    later = time.monotonic() + 5.1
    with mock.patch("oms.auth.time.monotonic", return_value=later):
        r = client.get(URL)
        assert r.status_code == 401 and r.json()["error"]["code"] == "authentication_failed"
        assert client.get("/api/v1/items/").status_code == 401


def test_key_cache_off_refuses_a_revoked_key_at_once(stocked, settings):
    settings.API_KEY_CACHE_SECONDS = 0
    key, raw = api_key_create(name="k", scopes="inventory:read")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    assert client.get(URL).status_code == 200
    api_key_revoke(key=key)
    assert client.get(URL).status_code == 401
    assert auth._keys == {}


def test_a_wrong_secret_with_a_cached_prefix_is_refused(stocked):
    key, raw = api_key_create(name="k", scopes="inventory:read")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    assert client.get(URL).status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw[:-2]}xx")
    r = client.get(URL)
    assert r.status_code == 401 and r.json()["error"]["code"] == "authentication_failed"


def test_an_entry_that_counted_a_cart_hold_ends_when_the_hold_expires(api, stocked):
    """Expired holds are free to promise before the sweep releases them: the cached figure that
    counted the hold must not outlive it, whatever ATP_CACHE_SECONDS says."""
    r = api.post(
        "/api/v1/reservations/",
        {"channel": "web", "key": "cart-1", "lines": [{"sku": "A", "quantity": 2}], "ttl_seconds": 2},
        format="json",
    )
    assert r.status_code == 201, r.content
    assert available(api) == 5
    assert available(api) == 5  # served from the cache
    time.sleep(2.1)  # no sweep runs in between
    assert available(api) == 7


def listening():
    """Wait for this process's listener to be subscribed to the bumps."""
    atp_cache._listener.ensure()
    deadline = time.monotonic() + 5
    while not atp_cache._listener.up:
        assert time.monotonic() < deadline, "the ATP listener did not subscribe"
        time.sleep(0.01)


def shared_only():
    if not atp_cache._shared():
        pytest.skip("the local copies and the listener exist only in front of the shared (Redis) cache")


def test_a_hit_costs_no_round_trip_while_the_listener_is_up(api, stocked):
    shared_only()
    listening()
    assert available(api) == 7  # computed, stored, generations learned
    store = atp_cache._cache()
    with mock.patch.object(store, "get_many", wraps=store.get_many) as get_many:
        assert available(api) == 7
    assert get_many.call_count == 0


def test_a_bump_by_another_process_arrives_by_push(api, stocked):
    shared_only()
    listening()
    item = stocked["item"]
    assert available(api) == 7
    from inventory.models import Stock

    Stock.objects.filter(location=stocked["dc1"], item=item).update(on_hand=1)  # no local mark
    atp_cache._bump(atp_cache._prefix(), {item.pk})  # what another process's commit does
    settle()
    store = atp_cache._cache()
    with mock.patch.object(store, "get_many", wraps=store.get_many) as get_many:
        assert available(api) == 3
    asked = [key for call in get_many.call_args_list for key in call.args[0]]
    assert not any(":g:" in key for key in asked), asked  # the new generation came by push


def test_without_the_listener_reads_ask_redis_for_generations(api, stocked):
    shared_only()
    listening()
    assert available(api) == 7
    atp_cache._listener._down()  # as when its connection drops: its copy is gone
    store = atp_cache._cache()
    with mock.patch.object(store, "get_many", wraps=store.get_many) as get_many:
        assert available(api) == 7
    (keys,) = get_many.call_args.args
    assert keys and all(":g:" in k for k in keys), keys


def test_a_generation_read_before_a_bump_arrived_is_not_kept():
    """A read asks Redis for a generation; before it stores the answer, the bump of that key
    arrives. The older answer must not overwrite the pushed value."""
    listener = atp_cache._Listener()
    listener._subscribed()
    connection_no, asked_after = listener.connection, listener.applied
    listener.learn(connection_no, asked_after, {"k": "v1"}, ["k"])
    assert listener.gens == {"k": "v1"}
    asked_after = listener.applied
    listener._apply(0, 1, {"k": "v2", "other": "x"})  # a bump arrives while a read is out
    listener.learn(connection_no, asked_after, {"k": "v1", "j": "j1"}, ["k", "j"])
    assert listener.gens == {"k": "v2"}  # the read's answer is not kept; unread keys stay out
    listener._down()
    listener._subscribed()  # a new subscription: what the old one's reads found is not kept
    listener.learn(connection_no, listener.applied, {"j": "stale"}, ["j"])
    assert listener.gens == {}


def test_a_figure_stored_by_another_process_replaces_an_outdated_local_copy(api, stocked):
    shared_only()
    web, item = stocked["web"], stocked["item"]
    assert available(api) == 7
    atp_cache._publish(atp_cache._prefix(), {item.pk})  # another process's change …
    settle()
    other = atp_cache.Lookup(web.pk, [item.pk])
    assert other.hits == {}  # … made this process's copy outdated
    other.store({item.pk: (42, [])})  # … and another process stored the new figure
    with CaptureQueriesContext(connection) as queries:
        assert atp_cache.Lookup(web.pk, [item.pk]).hits == {item.pk: (42, [])}
    assert len(queries) == 0


def test_a_lost_invalidation_is_made_up_by_a_global_one(stocked):
    prefix = atp_cache._prefix()
    broken = mock.Mock()
    broken.set_many.side_effect = ConnectionError("redis down")
    with mock.patch("inventory.atp_cache._cache", return_value=broken):
        atp_cache._bump(prefix, {stocked["item"].pk})
    assert atp_cache._state.lost_bump
    working = mock.Mock()
    atp_cache._state.down_until = 0.0
    with mock.patch("inventory.atp_cache._cache", return_value=working):
        atp_cache._bump(prefix, {stocked["other"].pk})
    (bumped,), _ = working.set_many.call_args
    assert list(bumped) == [f"{prefix}g:{atp_cache.ALL}"]
    assert not atp_cache._state.lost_bump


def test_a_listener_that_stops_hearing_its_heartbeat_lets_reads_ask_redis(monkeypatch):
    """A connection that dies without closing looks like a quiet channel: the listener's own
    heartbeat not coming back is what tells it to drop its copy and reconnect."""

    class QuietPubSub:  # subscribed, then nothing arrives, heartbeats included
        def __init__(self):
            self.confirmed = False

        def subscribe(self, channel):
            pass

        def get_message(self, timeout):
            if not self.confirmed:
                self.confirmed = True
                return {"type": "subscribe"}
            time.sleep(timeout)
            return None

        def close(self):
            pass

    class Client:
        connections = 0

        def pubsub(self):
            Client.connections += 1
            return QuietPubSub()

        def publish(self, channel, message):
            pass  # lost on the dead connection

    monkeypatch.setattr("redis.Redis.from_url", lambda *args, **kwargs: Client())
    monkeypatch.setattr(atp_cache, "HEALTH_CHECK_SECONDS", 0.05)
    listener = atp_cache._Listener()
    seen = []
    thread = threading.Thread(target=listener._run, args=("test-channel",), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while Client.connections < 2 and time.monotonic() < deadline:
            seen.append(listener.up)
            time.sleep(0.005)
        assert True in seen and False in seen[seen.index(True) :]  # up, then down
        assert Client.connections >= 2  # and it subscribed again
    finally:
        listener.stop.set()
        thread.join(timeout=5)
