from unittest import mock

import pytest
from django.db import transaction

from oms.models import OutboxMessage
from oms.outbox import _kicker, outbox_enqueue_task, outbox_publish_event, relay_outbox


def test_healthz_ok(client, db):
    r = client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True


def test_healthz_503_when_broker_down(client, db, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    r = client.get("/healthz")
    assert r.status_code == 503
    assert r.json()["broker"]["ok"] is False


def test_healthz_503_when_database_down(client, db):
    with mock.patch("oms.views.connection.cursor", side_effect=RuntimeError("down")):
        r = client.get("/healthz")
    assert r.status_code == 503
    assert r.json()["database"] == {"ok": False, "vendor": mock.ANY, "error": "RuntimeError"}


def test_docs_schema_and_admin_answer(client, db):
    assert client.get("/api/docs/").status_code == 200
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/availability/" in schema.content
    assert client.get("/admin/login/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_outbox_task_runs_after_commit_only():
    calls = []
    with mock.patch("inventory.tasks.release_expired_reservations", side_effect=lambda: calls.append(1) or 0):
        with transaction.atomic():
            outbox_enqueue_task("inventory.release_expired_reservations")
            assert calls == []
        assert calls == [1]
    assert OutboxMessage.objects.get().status == "done"


@pytest.mark.django_db(transaction=True)
def test_outbox_survives_a_broker_outage(settings):
    """With the broker down the request path is not blocked; the beat relay delivers later."""
    settings.CELERY_TASK_ALWAYS_EAGER = False
    with mock.patch("oms.tasks.relay_outbox_task.apply_async", side_effect=ConnectionError("redis down")):
        with transaction.atomic():
            msg = outbox_publish_event("inventory.changed", {"changes": []})
        _kicker.submit(lambda: None).result(timeout=10)  # the background kick has run and failed
    msg.refresh_from_db()
    assert msg.status == "pending"
    settings.CELERY_TASK_ALWAYS_EAGER = True
    assert relay_outbox() == 1
    msg.refresh_from_db()
    assert msg.status == "done" and msg.attempts == 1


@pytest.mark.django_db(transaction=True)
def test_outbox_retries_with_backoff_then_dead_letters(settings):
    settings.OUTBOX_MAX_ATTEMPTS = 2
    settings.OUTBOX_EVENT_HANDLERS = ["tests.oms.test_core.failing_handler"]
    with mock.patch("oms.outbox._kick_relay"):
        msg = outbox_publish_event("inventory.changed", {})
    assert relay_outbox() == 0
    msg.refresh_from_db()
    assert (msg.status, msg.attempts) == ("pending", 1)
    assert "boom" in msg.last_error
    OutboxMessage.objects.update(next_attempt_at=msg.created_at)
    relay_outbox()
    msg.refresh_from_db()
    assert (msg.status, msg.attempts) == ("dead", 2)


def failing_handler(message):
    raise RuntimeError("boom")


def test_404_is_json_only_under_the_api(client, db):
    r = client.get("/api/v1/nowhere/")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.get("/not-an-api-page/")
    assert r.status_code == 404 and r["Content-Type"].startswith("text/html")


def test_idempotency_records_are_purged_after_their_ttl(db, settings):
    from datetime import timedelta

    from django.utils import timezone

    from oms.models import IdempotencyRecord
    from oms.tasks import purge_idempotency_records_task

    settings.IDEMPOTENCY_TTL_HOURS = 24
    old = IdempotencyRecord.objects.create(principal="key:1", key="a", method="POST", path="/", fingerprint="x")
    IdempotencyRecord.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=25))
    fresh = IdempotencyRecord.objects.create(principal="key:1", key="b", method="POST", path="/", fingerprint="x")
    purge_idempotency_records_task.apply()
    assert list(IdempotencyRecord.objects.values_list("pk", flat=True)) == [fresh.pk]


def test_fsm_refusal_is_a_409_invalid_transition(api, capture):
    from unittest import mock

    from django_fsm import TransitionNotAllowed

    number = capture()["number"]
    with mock.patch("orders.services.order_hold", side_effect=TransitionNotAllowed("Can't switch from shipped")):
        r = api.post(f"/api/v1/orders/{number}/hold/", {"reason": "x"}, format="json")
    assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_transition"
