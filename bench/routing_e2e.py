"""End-to-end routing throughput of one process: orders routed per second, the work a Celery
worker does per `routing.route_order` task (load inputs, decide, move holds, create
fulfilments, store the decision), on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/oms_bench_routing .venv/bin/python bench/routing_e2e.py

It creates the database if needed, a channel of 50 locations × 500 SKUs, captures N orders of
3 lines with routing switched off (stock held provisionally, as capture does), then routes
them one by one in this process and prints orders/s and per-order latency.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import percentile, require_postgres_url, setup_django  # noqa: E402


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=400)
    parser.add_argument("--locations", type=int, default=50)
    parser.add_argument("--skus", type=int, default=500)
    args = parser.parse_args()
    url = require_postgres_url()
    ensure_database(url)
    setup_django()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from unittest import mock

    from inventory.models import Channel, Item, Location
    from inventory.selectors import ledger_mismatches
    from inventory.services import stock_snapshot
    from oms.actor import Actor
    from orders import services as order_services
    from orders.models import Order
    from routing.services import route_order

    rng = random.Random(7)
    actor = Actor.system("bench")
    channel, created = Channel.objects.get_or_create(code="bench-route", defaults={"name": "Routing bench"})
    if created:
        locations = Location.objects.bulk_create(
            [
                Location(
                    code=f"rt-{i:03d}",
                    name=f"Route {i}",
                    type="warehouse" if i < 5 else "store",
                    country="US",
                    latitude=rng.uniform(30, 47),
                    longitude=rng.uniform(-122, -72),
                    capabilities=["ship", "pickup"],
                    priority=rng.randint(1, 100),
                    fulfillment_cost=rng.randint(1, 10),
                )
                for i in range(args.locations)
            ]
        )
        channel.locations.add(*locations)
        Item.objects.bulk_create([Item(sku=f"RT-{i:05d}", name=f"Routing item {i}") for i in range(args.skus)])
        for loc in locations:
            counts = {f"RT-{i:05d}": (rng.randint(0, 40), None) for i in rng.sample(range(args.skus), args.skus // 2)}
            stock_snapshot(location=loc, counts=counts, actor=actor, full=False)
    skus = list(Item.objects.filter(sku__startswith="RT-").values_list("sku", flat=True))
    numbers = []
    with mock.patch("orders.services.request_routing", lambda order: None):
        run = int(time.time())
        for n in range(args.orders):
            data = order_services.CaptureInput(
                channel=channel,
                external_id=f"bench-{run}-{n}",
                customer_email=f"c{n}@example.com",
                currency="USD",
                shipping_address=order_services.AddressInput(
                    line1="1 Main St",
                    city="Somewhere",
                    postal_code="10001",
                    country="US",
                    latitude=rng.uniform(30, 47),
                    longitude=rng.uniform(-122, -72),
                ),
                lines=[order_services.LineInput(sku=s, quantity=1, unit_price=10) for s in rng.sample(skus, 3)],
                allow_backorder=True,
            )
            numbers.append(order_services.order_capture(data=data, actor=actor).number)
    times = []
    started = time.perf_counter()
    for number in numbers:
        t = time.perf_counter()
        route_order(order_number=number)
        times.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - started
    times.sort()
    statuses = dict(
        Order.objects.filter(number__in=numbers)
        .values_list("status")
        .annotate(n=__import__("django").db.models.Count("id"))
    )
    print(
        f"routed {len(numbers)} orders (3 lines, {args.locations} locations) in {elapsed:.2f} s: {len(numbers) / elapsed:.0f} orders/s"
    )
    print(f"per order: p50 {percentile(times, 50) * 1000:.1f} ms, p99 {percentile(times, 99) * 1000:.1f} ms")
    print(f"statuses: {statuses}; ledger mismatches: {len(ledger_mismatches())}")


if __name__ == "__main__":
    main()
