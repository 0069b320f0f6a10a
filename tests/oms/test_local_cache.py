"""Per-process copies of channels and hold rules (oms/local_cache.py): an edit in this process
applies to the next capture at once; other processes' edits within CONFIG_CACHE_SECONDS."""

from __future__ import annotations

from unittest import mock

from inventory.models import Channel
from oms.local_cache import LocalCache
from orders.models import HoldRule, HoldType


def test_a_hold_rule_added_after_a_capture_applies_to_the_next_one(capture):
    assert capture(external_id="E-1")["status"] != "on_hold"
    HoldRule.objects.create(
        name="big", condition=HoldRule.Condition.ORDER_TOTAL_ABOVE, amount="1.00", hold_type=HoldType.FRAUD_REVIEW
    )
    assert capture(external_id="E-2")["status"] == "on_hold"


def test_a_deactivated_channel_refuses_the_next_capture(api, order_body, capture):
    capture(external_id="E-1")
    Channel.objects.filter(code="web").update(active=False)  # behind the cache's back: still cached
    assert api.post("/api/v1/orders/", order_body(external_id="E-2"), format="json").status_code == 201
    channel = Channel.objects.get(code="web")
    channel.active = False
    channel.save()  # an edit through the model (admin, services) clears this process's copy
    r = api.post("/api/v1/orders/", order_body(external_id="E-3"), format="json")
    assert r.status_code == 400 and "channel" in r.json()["error"]["fields"], r.content


def test_entries_expire_after_config_cache_seconds(settings):
    cache = LocalCache("test")
    load = mock.Mock(side_effect=[1, 2, 3])
    settings.CONFIG_CACHE_SECONDS = 5
    with mock.patch("oms.local_cache.time.monotonic", return_value=100.0):
        assert cache.get("k", load) == 1
    with mock.patch("oms.local_cache.time.monotonic", return_value=104.9):
        assert cache.get("k", load) == 1
    with mock.patch("oms.local_cache.time.monotonic", return_value=105.1):
        assert cache.get("k", load) == 2
    settings.CONFIG_CACHE_SECONDS = 0
    assert cache.get("k", load) == 3  # off: read every time
