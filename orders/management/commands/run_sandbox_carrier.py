"""`manage.py run_sandbox_carrier`: the built-in sandbox carrier on a loopback port.

See `orders/carriers/sandbox.py` for its API and its deterministic progress rules.
"""

from __future__ import annotations

import contextlib
import logging
import os

from django.core.management.base import BaseCommand, CommandError

from orders.carriers.sandbox import SandboxServer

DEFAULT_KEY = "sandbox-demo-key"


class Command(BaseCommand):
    help = "Run the sandbox carrier (labels, rates, tracking with deterministic progress) on 127.0.0.1."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8070)
        parser.add_argument("--host", default="127.0.0.1", help="Loopback by default; it is a test double.")
        parser.add_argument(
            "--api-key",
            action="append",
            dest="api_keys",
            help=f"Accepted API key (repeat for several accounts). Default: $SANDBOX_CARRIER_API_KEYS "
            f"(comma-separated) or {DEFAULT_KEY!r}.",
        )
        parser.add_argument(
            "--speed",
            type=float,
            default=1.0,
            help="Carrier time per real second: 1 is real time (delivered after 27 h), 3600 delivers in 27 s.",
        )
        parser.add_argument("--webhook-url", default="", help="Push tracking events here, signed.")
        parser.add_argument("--webhook-secret", default=os.environ.get("SANDBOX_CARRIER_WEBHOOK_SECRET", ""))
        parser.add_argument("--push-interval", type=float, default=1.0, help="Seconds between webhook pushes.")

    def handle(self, *args, **options):
        keys = options["api_keys"] or [
            k.strip() for k in os.environ.get("SANDBOX_CARRIER_API_KEYS", DEFAULT_KEY).split(",") if k.strip()
        ]
        if options["speed"] <= 0:
            raise CommandError("--speed must be positive.")
        logging.getLogger("orders.carriers.sandbox").setLevel(logging.INFO)
        try:
            server = SandboxServer(
                host=options["host"],
                port=options["port"],
                api_keys=tuple(keys),
                speed=options["speed"],
                webhook_url=options["webhook_url"],
                webhook_secret=options["webhook_secret"],
                push_interval=options["push_interval"],
            )
        except (ValueError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        push = f", pushing tracking to {options['webhook_url']}" if options["webhook_url"] else ""
        self.stdout.write(f"Sandbox carrier on {server.url} (speed ×{options['speed']:g}, {len(keys)} key(s){push})")
        self.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
