import io
import logging

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from oms.models import SCOPES, ApiKey, hash_key
from oms.services import api_key_create, api_key_revoke


def test_command_prints_key_alone_on_last_line_and_stores_only_hash(network):
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "create_api_key",
        "--name",
        "shop",
        "--scopes",
        "inventory:read,orders:write",
        "--channel",
        "web",
        stdout=out,
        stderr=err,
    )
    raw = out.getvalue().strip().splitlines()[-1]
    key = ApiKey.objects.get(name="shop")
    assert raw.startswith(f"oms_{key.prefix}_")
    assert key.hashed_key == hash_key(raw) != raw
    assert raw not in str(ApiKey.objects.values_list())
    assert key.scopes == ["orders:write", "inventory:read"]
    assert key.channel.code == "web"


def test_command_all_scopes_and_location_binding(network):
    out = io.StringIO()
    call_command(
        "create_api_key", "--name", "dc", "--scopes", "all", "--location", "DC1", stdout=out, stderr=io.StringIO()
    )
    key = ApiKey.objects.get(name="dc")
    assert key.scopes == list(SCOPES)
    assert key.location.code == "DC1"


@pytest.mark.parametrize(
    "args",
    [
        ["--scopes", "inventory:read,fly"],
        ["--scopes", ""],
        ["--scopes", "all", "--channel", "nope"],
        ["--scopes", "all", "--location", "nope"],
    ],
)
def test_command_rejects_bad_input(db, args):
    with pytest.raises(CommandError):
        call_command("create_api_key", "--name", "x", *args, stdout=io.StringIO(), stderr=io.StringIO())
    assert not ApiKey.objects.exists()


def test_last_used_is_recorded_at_most_once_a_minute(network, django_assert_num_queries, settings):
    settings.API_KEY_CACHE_SECONDS = 0  # the key is read afresh, as a request a minute later would
    key, raw = api_key_create(name="k", scopes="inventory:read")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    assert client.get("/api/v1/items/").status_code == 200
    key.refresh_from_db()
    first = key.last_used_at
    assert first is not None
    client.get("/api/v1/items/")
    key.refresh_from_db()
    assert key.last_used_at == first
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=first - timezone.timedelta(minutes=5))
    client.get("/api/v1/items/")
    key.refresh_from_db()
    assert key.last_used_at > first - timezone.timedelta(minutes=5)


def test_revoked_key_is_refused(db):
    key, raw = api_key_create(name="k", scopes="all")
    api_key_revoke(key=key)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    r = client.get("/api/v1/items/")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "authentication_failed"


def test_a_guessed_key_with_a_real_prefix_is_refused(db):
    key, raw = api_key_create(name="k", scopes="all")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key oms_{key.prefix}_guess")
    assert client.get("/api/v1/items/").status_code == 401


def test_request_log_has_id_and_key_prefix_but_no_secret(db, caplog):
    key, raw = api_key_create(name="k", scopes="all")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    with caplog.at_level(logging.INFO, logger="oms.request"):
        r = client.get("/api/v1/items/?q=secret-search", HTTP_X_REQUEST_ID="req-123")
    assert r["X-Request-ID"] == "req-123"
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "oms.request"]
    assert len(lines) == 1
    assert "id=req-123" in lines[0] and f"key={key.prefix}" in lines[0] and "status=200" in lines[0]
    assert raw not in lines[0] and "secret-search" not in lines[0]
