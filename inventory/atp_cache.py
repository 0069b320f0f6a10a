"""The availability shown to shoppers, cached per (channel, SKU) and invalidated by stock changes.

Storefronts ask for ATP far more often than stock moves, so `GET /api/v1/availability/` answers
from this cache (`selectors.cached_channel_availability`). Reservations and order capture never
read it: they check the stock rows themselves, so a cached figure can never cause an oversell.

Invalidation: every SKU has a generation in the shared cache (Redis when REDIS_URL is set). The
inventory services call `stock_changed(item_ids)` inside their transaction; once it commits, the
SKUs get new generations (in a background thread, coalesced: the request path never waits on
Redis). An entry is served only while the generations it was computed under are current, so a
committed change shows everywhere within milliseconds. A reader takes the generations *before* it
reads the stock, so an entry computed from data older than a commit always carries a generation
older than that commit's bump. Inside this process a change is seen at once, even before commit
(`_dirty`), which is also what tests running in one uncommitted transaction need.

Configuration changes (channels, locations, items) bump one global generation (`config_changed`).
A cart hold frees its units when it expires, before the sweep releases it: an entry is kept only
until the earliest expiry of the holds it counted. What is left — a bulk update made outside the
services, a bump lost while Redis was down (the process that lost it bumps the global generation
once Redis answers again) — shows within ATP_CACHE_SECONDS, the entries' time to live.
ATP_CACHE_SECONDS = 0 turns the cache off. Without Redis the cache is process-local: changes made
by another process show within the time to live.

With Redis, each process also keeps the entries it has read (`_State.entries`), and a listener
thread per process subscribes to the bumps (`_Listener`): every bump is published beside its SETs,
so while the subscription is up the process knows the current generations and a read that hits
costs no round trip at all. Whenever the subscription is not up (starting, reconnecting), reads
ask Redis for the generations as before; a generation learned that way is kept only if no bump of
it arrived meanwhile. A push reaches the other processes within milliseconds of the bump; a
connection that dies without closing is noticed when the listener's own heartbeat (published
every HEALTH_CHECK_SECONDS) does not come back, within two periods.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import random
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db import connection, transaction

log = logging.getLogger(__name__)

ALIAS = "atp"
FORMAT = "2"  # part of every key: entries are (generation, global generation, started, value, until)
GENERATION_SECONDS = 24 * 3600  # far longer than any entry lives
ALL = "all"
MANY_SKUS = 1000  # above this, one change bumps the global generation instead of each SKU
OUTAGE_SECONDS = 5.0  # after a cache error, leave the cache alone this long (answer exactly)


class _State:
    def __init__(self) -> None:
        self.epoch = "0"  # part of every key; reset() (tests) moves to fresh keys
        self.dirty: dict[int, float] = {}  # item id → when this process last changed it
        self.dirty_all = 0.0
        self.down_until = 0.0
        self.seen_all: Any = None  # the global generation the local lookups below belong to
        self.items: dict[str, tuple[int, bool, float]] = {}  # sku → (item id, active, loaded at)
        self.channels: dict[str, tuple[Any, float]] = {}  # code → (Channel, loaded at)
        self.pending: set[tuple[str, int | str]] = set()  # (key prefix, item id or ALL) to bump
        self.lost_bump = False  # an invalidation failed: bump everything once Redis answers again
        self.entries: dict[tuple[str, int, int], tuple] = {}  # (prefix, channel, item) → shared entry
        self.lock = threading.Lock()


_state = _State()
_bumper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atp-bump")


def ttl() -> float:
    return settings.ATP_CACHE_SECONDS


def enabled() -> bool:
    return settings.ATP_CACHE_SECONDS > 0


class _RedisStore:
    """MGET and pipelined SETs straight on the Redis client of the "atp" cache: the hot read
    skips Django's per-key key-making and validation, most of a cached read's CPU here."""

    def __init__(self, backend):
        self.client = backend._cache.get_client(None, write=True)

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        return {k: pickle.loads(v) for k, v in zip(keys, self.client.mget(keys), strict=True) if v is not None}

    def set_many(self, data: dict[str, Any], timeout: float, announce: Any = None) -> None:
        """SET every key; with `announce`, also PUBLISH (announce, data) to the listeners, after
        the SETs in the same round trip (a listener never learns a value Redis does not hold)."""
        pipe = self.client.pipeline(transaction=False)
        seconds = max(1, math.ceil(timeout))  # Redis expiries are whole seconds
        for k, v in data.items():
            pipe.set(k, pickle.dumps(v, pickle.HIGHEST_PROTOCOL), ex=seconds)
        if announce is not None:
            pipe.publish(_bumps_channel(), pickle.dumps((announce, data), pickle.HIGHEST_PROTOCOL))
        pipe.execute()


_stores: dict[str, Any] = {}


def _cache():
    backend = caches[ALIAS]
    if not _shared():
        return backend
    store = _stores.get(ALIAS)
    if store is None:
        store = _stores[ALIAS] = _RedisStore(backend)
    return store


def _shared() -> bool:
    return settings.CACHES[ALIAS]["BACKEND"].endswith("RedisCache")


def _prefix() -> str:
    # The database name keeps deployments (and parallel test databases) sharing a Redis apart.
    return f"atp{FORMAT}:{connection.settings_dict['NAME']}:{_state.epoch}:"


def _available() -> bool:
    return time.monotonic() >= _state.down_until


def _failed(what: str, exc: Exception) -> None:
    _state.down_until = time.monotonic() + OUTAGE_SECONDS
    log.warning("atp cache %s failed (%s); answering uncached for %.0f s", what, exc.__class__.__name__, OUTAGE_SECONDS)


# --- Invalidation (called by the inventory services) -------------------------------------------


def stock_changed(item_ids: Iterable[int]) -> None:
    """What these SKUs can promise changed (call inside the transaction that changes it)."""
    if not enabled():
        return
    ids = set(item_ids)
    if not ids:
        return
    now = time.time()
    if len(ids) > MANY_SKUS:
        _state.dirty_all = now
        ids = {ALL}
    else:
        for item_id in ids:
            _state.dirty[item_id] = now
        if len(_state.dirty) > 50_000:  # forget marks older than any live entry
            cutoff = now - ttl() - 1
            _state.dirty = {k: v for k, v in _state.dirty.items() if v > cutoff}
    transaction.on_commit(partial(_publish, _prefix(), ids))


def config_changed() -> None:
    """Channels, locations or items changed: every entry and local lookup is out of date."""
    if not enabled():
        return
    _state.dirty_all = time.time()
    _state.items.clear()
    _state.channels.clear()
    transaction.on_commit(partial(_publish, _prefix(), {ALL}))


def _publish(prefix: str, ids: set) -> None:
    if not _shared():  # process-local: the dirty marks already say it all; expire entries anyway
        _bump(prefix, ids)
        return
    with _state.lock:
        start = not _state.pending
        _state.pending |= {(prefix, i) for i in ids}
    if start:  # one flush covers every commit queued before it runs
        _bumper.submit(_flush)


def _flush() -> None:
    with _state.lock:
        todo, _state.pending = _state.pending, set()
    by_prefix: dict[str, set] = {}
    for prefix, item in todo:
        by_prefix.setdefault(prefix, set()).add(item)
    for prefix, ids in by_prefix.items():
        _bump(prefix, ids)


def _bump(prefix: str, ids: set) -> None:
    if _state.lost_bump:  # which SKUs an earlier, failed bump was for is gone: invalidate them all
        ids = {ALL}
    generations = {f"{prefix}g:{i}": random.getrandbits(62) for i in ids}
    try:
        if _shared():
            number = _listener.published + 1
            _cache().set_many(generations, timeout=GENERATION_SECONDS, announce=(os.getpid(), number))
            _listener.published = number
        else:
            _cache().set_many(generations, timeout=GENERATION_SECONDS)
    except Exception as exc:  # Redis down: entries it holds expire within the TTL anyway
        _state.lost_bump = True
        _failed("invalidation", exc)
    else:
        _state.lost_bump = False


def reset() -> None:
    """Start from an empty cache in this process (tests: ids are reused between tests)."""
    _state.epoch = f"{random.getrandbits(40):x}"
    _state.dirty.clear()
    _state.dirty_all = 0.0
    _state.down_until = 0.0
    _state.lost_bump = False
    _state.items.clear()
    _state.channels.clear()
    _state.entries.clear()
    _state.seen_all = None


# --- Pushed generations ------------------------------------------------------------------------

HEALTH_CHECK_SECONDS = 5.0
_MISSING = object()


def _bumps_channel() -> str:
    return f"atp{FORMAT}:{connection.settings_dict['NAME']}:bumps"


class _Listener:
    """This process's copy of the generations, kept current by a thread subscribed to the bumps.

    `gens` is trusted only while `up`; every (re)connection starts from an empty copy, because
    bumps published while it was down were missed."""

    def __init__(self) -> None:
        self.gens: dict[str, Any] = {}  # generation key → value, for the keys this process reads
        self.applied = 0  # messages applied since the subscription started
        self.connection = 0  # which subscription `gens` belongs to
        self.up = False
        self.pid = 0
        self.published = 0  # bumps this process published
        self.applied_own = 0  # … and that its own listener has applied (tests wait on this)
        self.lock = threading.Lock()
        self.stop = threading.Event()  # tests end their own listeners

    def ensure(self) -> None:
        pid = os.getpid()
        if self.pid == pid:
            return
        with self.lock:  # first read in this process (a forked worker starts without the thread)
            if self.pid == pid:
                return
            self.up, self.gens, self.published, self.applied_own = False, {}, 0, 0
            threading.Thread(target=self._run, args=(_bumps_channel(),), daemon=True, name="atp-listen").start()
            self.pid = pid

    def learn(self, connection: int, asked_after: int, found: dict[str, Any], keys: list[str]) -> None:
        """Keep generations a read fetched, unless any bump arrived since it asked (the read's
        answer may be older than that bump; the next read asks again)."""
        with self.lock:  # against a message being applied between the check and the write
            if not self.up or self.connection != connection or self.applied != asked_after:
                return
            if len(self.gens) > 200_000:
                self.gens = {}
            for key in keys:
                self.gens[key] = found.get(key)

    def _subscribed(self) -> None:
        with self.lock:
            self.gens, self.applied = {}, 0
            self.connection += 1
            self.up = True

    def _apply(self, origin: int, number: int, data: dict[str, Any]) -> None:
        with self.lock:
            self.applied += 1
            gens = self.gens
            for key, value in data.items():
                if key in gens:  # keys no read asked for stay out (a read will ask Redis)
                    gens[key] = value
            if origin == self.pid and number > self.applied_own:
                self.applied_own = number

    def _down(self) -> None:
        with self.lock:
            self.up = False
            self.gens = {}

    def _run(self, channel: str) -> None:
        import redis

        url = settings.CACHES[ALIAS]["LOCATION"]
        heartbeat = pickle.dumps(((os.getpid(), 0), {}), pickle.HIGHEST_PROTOCOL)
        delay = 0.5
        while not self.stop.is_set():
            pubsub = None
            try:
                client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
                pubsub = client.pubsub()
                pubsub.subscribe(channel)
                heard = beaten = time.monotonic()
                while not self.stop.is_set():
                    message = pubsub.get_message(timeout=HEALTH_CHECK_SECONDS / 5)
                    now = time.monotonic()
                    if now - beaten >= HEALTH_CHECK_SECONDS:
                        # Its own heartbeat must come back: a connection that died without
                        # closing (no RST) would otherwise look like a quiet channel.
                        client.publish(channel, heartbeat)
                        beaten = now
                    if message is None:
                        if now - heard > 2 * HEALTH_CHECK_SECONDS:
                            raise ConnectionError("no message or heartbeat for two health-check periods")
                        continue
                    heard = now
                    if message["type"] == "subscribe":
                        self._subscribed()
                        delay = 0.5
                    elif message["type"] == "message":
                        (origin, number), data = pickle.loads(message["data"])
                        self._apply(origin, number, data)
            except Exception as exc:
                log.warning("atp listener lost its subscription (%s); reads ask Redis", exc.__class__.__name__)
            finally:
                self._down()
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()
            self.stop.wait(delay)
            delay = min(delay * 2, 10.0)


_listener = _Listener()


def settle(timeout: float = 5.0) -> None:
    """Wait until this process's bumps so far are published and, if its listener is up, applied
    (tests, which then read as another process would)."""
    _bumper.submit(lambda: None).result(timeout=timeout)
    deadline = time.monotonic() + timeout
    while _listener.up and _listener.applied_own < _listener.published and time.monotonic() < deadline:
        time.sleep(0.002)


# --- Reads -------------------------------------------------------------------------------------


class Lookup:
    """The current generations of the SKUs and the global one (pushed to the listener, or asked
    of Redis) and the entries this process does not already hold: no round trip on a warm hit,
    at most one otherwise (and a second, rarer one for entries it holds under old generations)."""

    def __init__(self, channel_id: int, item_ids: list[int]):
        self.channel_id = channel_id
        self.started = time.time()
        self.prefix = _prefix()
        self.hits: dict[int, Any] = {}
        self.generations: dict[Any, Any] = {}
        self.ok = enabled() and _available()
        self.config_moved = False  # the caller's channel and items may be stale: look them up again
        if not self.ok:
            return
        p = self.prefix
        shared = _shared()
        local = _state.entries if shared else {}
        held = {i: local.get((p, channel_id, i)) for i in item_ids}
        generation_keys = [f"{p}g:{ALL}", *(f"{p}g:{i}" for i in item_ids)]
        known: dict[str, Any] = {}
        listening = False
        if shared:
            _listener.ensure()
            if _listener.up:
                listening = True
                connection_no, asked_after, pushed = _listener.connection, _listener.applied, _listener.gens
                for key in generation_keys:
                    value = pushed.get(key, _MISSING)
                    if value is not _MISSING:
                        known[key] = value
        ask = [key for key in generation_keys if key not in known]
        keys = [*ask, *(f"{p}a:{channel_id}:{i}" for i, entry in held.items() if entry is None)]
        try:
            found = _cache().get_many(keys) if keys else {}
        except Exception as exc:
            _failed("read", exc)
            self.ok = False
            return
        if listening and ask:
            _listener.learn(connection_no, asked_after, found, ask)
        found.update(known)
        everything = found.get(generation_keys[0])
        if everything != _state.seen_all:  # a configuration change somewhere: drop local lookups
            _state.items.clear()
            _state.channels.clear()
            _state.seen_all = everything
            self.config_moved = True
        self.generations[ALL] = everything
        outdated = []
        for item_id in item_ids:
            self.generations[item_id] = found.get(f"{p}g:{item_id}")
            entry = held[item_id]
            if entry is not None:
                if self._current(item_id, entry):
                    self.hits[item_id] = entry[3]
                else:  # another process may have stored the new figure already
                    outdated.append(item_id)
                continue
            entry = found.get(f"{p}a:{channel_id}:{item_id}")
            if self._current(item_id, entry):
                self.hits[item_id] = entry[3]
                self._hold(item_id, entry)
        if outdated:
            keys = [f"{p}a:{channel_id}:{i}" for i in outdated]
            try:
                found = _cache().get_many(keys)
            except Exception as exc:
                _failed("read", exc)
                return
            for item_id, key in zip(outdated, keys, strict=True):
                entry = found.get(key)
                local.pop((p, channel_id, item_id), None)
                if self._current(item_id, entry):
                    self.hits[item_id] = entry[3]
                    self._hold(item_id, entry)

    def _current(self, item_id: int, entry: tuple | None) -> bool:
        return (
            entry is not None
            and entry[0] == self.generations[item_id]
            and entry[1] == self.generations[ALL]
            and entry[2] > _state.dirty_all
            and entry[2] > _state.dirty.get(item_id, 0.0)
            and self.started < entry[4]
        )

    def _hold(self, item_id: int, entry: tuple) -> None:
        if not _shared():
            return
        if len(_state.entries) > 200_000:
            _state.entries.clear()
        _state.entries[(self.prefix, self.channel_id, item_id)] = entry

    def store(self, values: dict[int, Any], until: dict[int, float] | None = None) -> None:
        """Keep freshly computed values under the generations read before computing them, each
        until the TTL or the time in `until` (a cart hold's expiry), whichever comes first."""
        if not self.ok or not values:
            return
        p, everything, ends = self.prefix, self.generations[ALL], self.started + max(1.0, ttl())
        until = until or {}
        entries = {
            item_id: (self.generations[item_id], everything, self.started, value, min(ends, until.get(item_id, ends)))
            for item_id, value in values.items()
            if item_id in self.generations
        }
        now = time.time()
        live = {item_id: entry for item_id, entry in entries.items() if entry[4] > now}
        by_lifetime: dict[int, dict[str, tuple]] = {}  # whole seconds (Redis) → entries
        for item_id, entry in live.items():
            seconds = max(1, math.ceil(entry[4] - now))
            by_lifetime.setdefault(seconds, {})[f"{p}a:{self.channel_id}:{item_id}"] = entry
        try:
            for seconds, batch in by_lifetime.items():
                _cache().set_many(batch, timeout=seconds)
        except Exception as exc:
            _failed("write", exc)
            return
        for item_id, entry in live.items():
            self._hold(item_id, entry)


def _local_lifetime() -> float:
    # A configuration change anywhere clears these at the next read (the global generation);
    # the lifetime only bounds what a lost bump (Redis down) could leave behind.
    return max(60.0, ttl())


def local_items(skus: list[str]) -> tuple[dict[str, tuple[int, bool]], list[str]]:
    """({sku: (item id, active)} for SKUs looked up recently in this process, the other SKUs)."""
    oldest = time.monotonic() - _local_lifetime()
    known, unknown = {}, []
    items = _state.items
    for sku in skus:
        hit = items.get(sku)
        if hit is None or hit[2] < oldest:
            unknown.append(sku)
        else:
            known[sku] = (hit[0], hit[1])
    return known, unknown


def remember_items(items: dict[str, tuple[int, bool]]) -> None:
    if not enabled():
        return
    now = time.monotonic()
    if len(_state.items) > 200_000:
        _state.items.clear()
    for sku, (item_id, active) in items.items():
        _state.items[sku] = (item_id, active, now)


def local_channel(code: str):
    hit = _state.channels.get(code)
    if hit is None or time.monotonic() - hit[1] > _local_lifetime():
        return None
    return hit[0]


def remember_channel(channel) -> None:
    if enabled():
        _state.channels[channel.code] = (channel, time.monotonic())


# --- Configuration changes ---------------------------------------------------------------------


def _on_config_saved(sender, instance, created=False, **kwargs) -> None:
    if not created:  # a new channel, location or SKU changes no figure until it is linked or stocked
        config_changed()


def _on_config_deleted(sender, instance, **kwargs) -> None:
    config_changed()


def _on_channel_locations(sender, instance, action, **kwargs) -> None:
    if action in ("post_add", "post_remove", "post_clear"):
        config_changed()


def connect_signals() -> None:
    """Channels, locations and items are edited in the admin and the CSV import as plain model
    saves, not through services, so their saves are what tells the cache (not business logic)."""
    from django.db.models.signals import m2m_changed, post_delete, post_save

    from .models import Channel, Item, Location

    for model in (Channel, Location, Item):
        post_save.connect(_on_config_saved, sender=model, dispatch_uid=f"atp-{model.__name__}-saved")
        post_delete.connect(_on_config_deleted, sender=model, dispatch_uid=f"atp-{model.__name__}-deleted")
    m2m_changed.connect(_on_channel_locations, sender=Channel.locations.through, dispatch_uid="atp-channel-locations")
