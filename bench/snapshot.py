"""Stock snapshot import of 50,000 rows for one location: the service and the full HTTP path.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/oms_bench .venv/bin/python bench/snapshot.py

Uses its own location "bench-snap" and items SNAP-00001 … SNAP-50000 (created if missing).
Each round resets that location (its stock and ledger rows), then times
  * inventory.services.stock_snapshot: first import (50,000 rows created), then a second import
    in which every count changed (50,000 updates), each with one ledger row per change;
  * PUT /api/v1/inventory/locations/bench-snap/snapshot/ through django.test.Client with a
    50,000-row JSON body (encoded before the clock starts): create, then every count changed.
Prints rows/s per step and round, the CPU each step took in this process and in its PostgreSQL
backend (from /proc: the server must run on this machine), the medians, and the server settings
that matter here. Run bench/seed_large.py first (API key).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, read_key, require_postgres_url, setup_django  # noqa: E402

SNAP_LOCATION = "bench-snap"
SNAP_SKU = "SNAP-{:05d}"
PG_SETTINGS = (
    "autovacuum",
    "checkpoint_timeout",
    "jit",
    "max_wal_size",
    "shared_buffers",
    "synchronous_commit",
    "wal_buffers",
    "work_mem",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    require_postgres_url()
    setup_django()

    from django.db import connection, transaction
    from django.test import Client

    from inventory.models import Item, Location, Stock, StockMovement
    from inventory.services import stock_snapshot
    from oms.actor import Actor

    print(f"== snapshot benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {args.rows:,} rows ==")
    print(f"machine: {machine()}")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s) ORDER BY name",
            [list(PG_SETTINGS)],
        )
        shown = ", ".join(f"{name}={value}" for name, value in cursor)
        print(f"postgresql: {shown}")

    def backend() -> tuple[int, float]:
        """This connection's PostgreSQL backend and the CPU seconds it has used (NaN if the
        server is not on this machine)."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return pid, float("nan")
        return pid, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    skus = [SNAP_SKU.format(i) for i in range(1, args.rows + 1)]
    have = set(Item.objects.filter(sku__in=skus).values_list("sku", flat=True))
    if len(have) < len(skus):
        t0 = time.perf_counter()
        Item.objects.bulk_create(
            [Item(sku=sku, name=f"Snapshot item {sku}") for sku in skus if sku not in have],
            batch_size=5000,
        )
        print(f"items: created {len(skus) - len(have):,} in {time.perf_counter() - t0:.1f} s")
    location, _ = Location.objects.get_or_create(
        code=SNAP_LOCATION,
        defaults={"name": "Bench snapshot location", "type": "warehouse", "country": "US"},
    )
    actor = Actor.system("bench snapshot")
    client = Client(HTTP_AUTHORIZATION=f"Api-Key {read_key()}")
    url = f"/api/v1/inventory/locations/{SNAP_LOCATION}/snapshot/"
    rng = random.Random(7)

    def reset() -> None:
        """Bench-only: forget this location's stock so the next import creates every row, then
        VACUUM so each round starts from the same table state (this server may run without
        autovacuum, and every round leaves 100,000+ dead rows behind)."""
        with transaction.atomic():
            StockMovement.objects.filter(location=location).delete()
            Stock.objects.filter(location=location).delete()
        with connection.cursor() as cursor:
            cursor.execute("VACUUM (ANALYZE) inventory_stock, inventory_stockmovement")

    def counts_pair() -> tuple[dict, dict]:
        first = {sku: (rng.randint(1, 500), None) for sku in skus}
        second = {sku: (qty + rng.randint(1, 20), None) for sku, (qty, _) in first.items()}
        return first, second

    def body(counts: dict, reference: str) -> str:
        rows = [{"sku": sku, "on_hand": qty} for sku, (qty, _) in counts.items()]
        return json.dumps({"rows": rows, "reference": reference})

    results: dict[str, list[float]] = {}
    cpu: dict[str, list[tuple[float, float]]] = {}
    step: dict[str, float] = {}

    def start() -> None:
        pid, pg = backend()
        step.update(pid=pid, pg=pg, py=time.process_time(), t=time.perf_counter())

    def record(label: str, detail: str) -> None:
        seconds = time.perf_counter() - step["t"]
        py = time.process_time() - step["py"]
        pid, pg = backend()
        pg = pg - step["pg"] if pid == step["pid"] else float("nan")  # NaN: the connection changed
        rate = args.rows / seconds
        results.setdefault(label, []).append(rate)
        cpu.setdefault(label, []).append((py, pg))
        print(
            f"  {label:<38} {seconds * 1000:8.0f} ms  {rate:9,.0f} rows/s  "
            f"cpu: python {py * 1000:4.0f} ms, postgresql {pg * 1000:4.0f} ms  ({detail})"
        )

    for round_no in range(1, args.rounds + 1):
        print(f"round {round_no}")
        first, second = counts_pair()

        reset()
        start()
        r = stock_snapshot(location=location, counts=first, actor=actor, reference=f"s{round_no}a")
        record("service: first import (create)", f"created={r.created}")
        assert r.created == args.rows, r
        start()
        r = stock_snapshot(location=location, counts=second, actor=actor, reference=f"s{round_no}b")
        record("service: second import (all changed)", f"changed={r.changed}")
        assert r.changed == args.rows, r

        reset()
        payload_a, payload_b = body(first, f"http-{round_no}a"), body(second, f"http-{round_no}b")
        start()
        resp = client.put(url, data=payload_a, content_type="application/json")
        assert resp.status_code == 200, resp.content[:500]
        record(
            "HTTP PUT: first import (create)", f"created={resp.json()['created']}, body {len(payload_a) / 1e6:.1f} MB"
        )
        start()
        resp = client.put(url, data=payload_b, content_type="application/json")
        assert resp.status_code == 200, resp.content[:500]
        record("HTTP PUT: second import (all changed)", f"changed={resp.json()['changed']}")

    print(f"median of {args.rounds} rounds:")
    for label, rates in results.items():
        py = statistics.median(c[0] for c in cpu[label]) * 1000
        pg = statistics.median(c[1] for c in cpu[label]) * 1000
        print(
            f"  {label:<38} {statistics.median(rates):9,.0f} rows/s  cpu: python {py:4.0f} ms, postgresql {pg:4.0f} ms"
        )
    print(f"machine at the end: {machine()}")


if __name__ == "__main__":
    main()
