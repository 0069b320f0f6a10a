"""Per-process copies of rows that every capture reads and merchants rarely edit (channels, hold
rules, items). An edit saved in this process clears its copies at once (model signals); other processes
pick it up within CONFIG_CACHE_SECONDS. 0 reads the database every time."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any

from django.conf import settings

_caches: list[LocalCache] = []


class LocalCache:
    def __init__(self, name: str):
        self.name = name
        self._data: dict[Hashable, tuple[float, Any]] = {}
        _caches.append(self)

    def _fresh(self, key: Hashable, now: float, ttl: float) -> tuple[float, Any] | None:
        hit = self._data.get(key)
        return hit if hit is not None and now - hit[0] < ttl else None

    def _keep(self, values: dict, now: float) -> None:
        if len(self._data) > 10_000:
            self._data.clear()
        for key, value in values.items():
            self._data[key] = (now, value)

    def get(self, key: Hashable, load: Callable[[], Any]) -> Any:
        ttl = settings.CONFIG_CACHE_SECONDS
        if ttl <= 0:
            return load()
        now = time.monotonic()
        hit = self._fresh(key, now, ttl)
        if hit is not None:
            return hit[1]
        value = load()
        self._keep({key: value}, now)
        return value

    def get_many(self, keys: set, load: Callable[[set], dict]) -> dict:
        """{key: value} for the keys that exist, loading the missing ones with one call
        (keys that `load` does not return are not remembered)."""
        ttl = settings.CONFIG_CACHE_SECONDS
        if ttl <= 0:
            return load(keys)
        now = time.monotonic()
        found, missing = {}, set()
        for key in keys:
            hit = self._fresh(key, now, ttl)
            if hit is not None:
                found[key] = hit[1]
            else:
                missing.add(key)
        if missing:
            loaded = load(missing)
            self._keep(loaded, now)
            found.update(loaded)
        return found

    def clear(self, *args, **kwargs) -> None:  # also a signal receiver
        self._data.clear()

    def clear_on_change(self, *models) -> None:
        from django.db.models.signals import m2m_changed, post_delete, post_save

        for model in models:
            post_save.connect(self.clear, sender=model, weak=False, dispatch_uid=f"{self.name}-{model.__name__}-saved")
            post_delete.connect(self.clear, sender=model, weak=False, dispatch_uid=f"{self.name}-{model.__name__}-del")
            for m2m in model._meta.many_to_many:
                m2m_changed.connect(
                    self.clear, sender=m2m.remote_field.through, weak=False, dispatch_uid=f"{self.name}-{m2m.name}"
                )


def clear_all() -> None:
    for cache in _caches:
        cache.clear()
