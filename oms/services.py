"""Core write services shared by the admin, management commands and tests."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from oms.errors import ValidationFailed

from .models import SCOPES, ApiKey, hash_key


def parse_scopes(scopes: Iterable[str] | str) -> list[str]:
    if isinstance(scopes, str):
        scopes = [s.strip() for s in scopes.split(",") if s.strip()]
    scopes = list(scopes)
    if scopes == ["all"]:
        return list(SCOPES)
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValidationFailed(
            f"Unknown scope(s): {', '.join(unknown) or '(none given)'}; choose from {', '.join(SCOPES)} or 'all'.",
            fields={"scopes": "Invalid."},
        )
    return sorted(set(scopes), key=SCOPES.index)


@transaction.atomic
def api_key_create(*, name: str, scopes: Iterable[str] | str, channel=None, location=None) -> tuple[ApiKey, str]:
    """Create a key; returns (key, raw secret). The raw secret is never stored or shown again."""
    if not name.strip():
        raise ValidationFailed("A name is required.", fields={"name": "Required."})
    prefix, raw = ApiKey.generate()
    key = ApiKey.objects.create(
        name=name.strip(),
        prefix=prefix,
        hashed_key=hash_key(raw),
        scopes=parse_scopes(scopes),
        channel=channel,
        location=location,
    )
    return key, raw


def api_key_revoke(*, key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
