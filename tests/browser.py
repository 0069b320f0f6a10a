"""Chromium for the browser tests: Playwright's sync API driving Debian's Chromium."""

import os
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections
from playwright.sync_api import Browser, sync_playwright

# Playwright's sync API runs an event loop in this thread; the ORM calls in the tests are plain sync.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium. While Playwright's loop runs in this thread, Django keeps the
    thread's database connections in a store of their own (asgiref's context-local one), so
    what the test opens in here is closed in here: left open, it kept the test database from
    being dropped at the end of the run."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        try:
            yield browser
        finally:
            browser.close()
            connections.close_all()
