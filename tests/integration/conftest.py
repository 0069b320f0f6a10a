"""Real processes for integration tests: a Celery worker on Redis against the test database."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from oms.celery import app
from tests.conftest import TEST_QUEUE

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def worker(tmp_path):
    """Start a real `celery worker` process against this test database."""
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(TEST_QUEUE)  # nothing stale from an earlier test
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_TASK_DEFAULT_QUEUE": TEST_QUEUE,
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "oms",
            "worker",
            "-Q",
            TEST_QUEUE,
            "-c",
            "1",
            "-P",
            "solo",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    ping = app.send_task("inventory.release_expired_reservations")
    try:
        ping.get(timeout=60)  # the worker is up and reaches the database
    except Exception:
        proc.kill()
        pytest.fail("Celery worker did not start:\n" + log.read_text())
    yield log
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(autouse=True)
def _heavy(one_at_a_time):
    """See tests/conftest.py: heavy tests take turns across xdist processes."""
