"""`manage.py run_sandbox_gateway [--host H] [--port P] [--api-key K]`: the sandbox payment
gateway as its own small HTTP service. Point the OMS at it with
`PAYMENT_GATEWAY_URL=http://H:P` (and `PAYMENT_GATEWAY_API_KEY=K` if you set one).

Prints its URL alone on the first line (with `--port 0` the system picks a free port)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from orders.payments.sandbox import make_server


class Command(BaseCommand):
    help = "Run the deterministic sandbox payment gateway (refunds) on loopback."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8099)
        parser.add_argument("--api-key", default="", help="Require 'Authorization: Bearer <key>'.")
        parser.add_argument("--verbose", action="store_true", help="Log every request.")

    def handle(self, *args, **options):
        server = make_server(options["host"], options["port"], api_key=options["api_key"], verbose=options["verbose"])
        self.stdout.write(server.url)
        self.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
