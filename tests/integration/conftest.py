"""Real processes for integration tests: a Celery worker on Redis against the test database."""

import os
import subprocess
import sys
import time
from contextlib import contextmanager
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


def wait_for(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@contextmanager
def celery_worker(
    log: Path, *, pool: str = "solo", concurrency: int = 1, beat: bool = False, env: dict[str, str] | None = None
):
    """A real `celery worker` process on this test process's queue, against the test database;
    with `beat`, the beat scheduler runs inside it; `env` adds settings (e.g. faster schedules)."""
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(TEST_QUEUE)  # nothing stale from an earlier test
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_TASK_DEFAULT_QUEUE": TEST_QUEUE,
        **(env or {}),
    }
    extra = ["-B", "-s", str(log.parent / "beat-schedule")] if beat else []
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
            str(concurrency),
            "-P",
            pool,
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            *extra,
            "-l",
            "INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        try:
            app.send_task("inventory.release_expired_reservations").get(timeout=60)  # up and reaching the DB
        except Exception:
            pytest.fail("Celery worker did not start:\n" + log.read_text())
        yield log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def worker(tmp_path):
    with celery_worker(tmp_path / "worker.log") as log:
        yield log


@pytest.fixture
def worker_pool(tmp_path):
    """Several worker processes (prefork, 3 children) working at once."""
    with celery_worker(tmp_path / "pool.log", pool="prefork", concurrency=3) as log:
        yield log


@pytest.fixture(autouse=True)
def _heavy(one_at_a_time):
    """See tests/conftest.py: heavy tests take turns across xdist processes."""
