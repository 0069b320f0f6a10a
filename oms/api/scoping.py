"""Least privilege for API keys bound to a channel or a location."""

from __future__ import annotations

from oms.errors import NotFound, PermissionDenied, ValidationFailed
from oms.local_cache import LocalCache

channels = LocalCache("channels")  # code → Channel or None; cleared by Channel saves (inventory.apps)


def bound_channel_id(request) -> int | None:
    key = getattr(request, "auth", None)
    return getattr(key, "channel_id", None)


def bound_location_id(request) -> int | None:
    key = getattr(request, "auth", None)
    return getattr(key, "location_id", None)


def resolve_channel(request, code: str | None, *, field: str = "channel"):
    """The channel a request acts on: the one named, which a channel-bound key must match."""
    from inventory.models import Channel

    key = request.auth
    if not code:
        if key is not None and key.channel_id:
            return key.channel
        raise ValidationFailed(f"'{field}' is required.", fields={field: "This field is required."})
    channel = channels.get(code, lambda: Channel.objects.filter(code=code).first())
    if channel is None:
        raise NotFound(f"Unknown channel '{code}'.", fields={field: "Unknown channel."})
    if key is not None and key.channel_id and key.channel_id != channel.pk:
        raise PermissionDenied(
            f"This API key is bound to channel '{key.channel.code}'.",
            fields={field: "Outside this key's channel."},
        )
    return channel


def check_location(request, location, *, field: str = "location") -> None:
    key = request.auth
    if key is not None and key.location_id and key.location_id != location.pk:
        raise PermissionDenied(
            f"This API key is bound to location '{key.location.code}'.",
            fields={field: "Outside this key's location."},
        )
