"""Seed a large network on PostgreSQL: 200 locations × 5,000 SKUs = 1,000,000 stock rows.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/oms_bench .venv/bin/python bench/seed_large.py

Creates the database if it is missing, migrates it, then loads (idempotently):
  * 200 locations bench-loc-000 … bench-loc-199 and 5,000 items BENCH-00001 … BENCH-05000;
  * one stock row per (location, item), loaded with PostgreSQL COPY, not ORM saves;
  * one ledger row (reason "snapshot") per stock row with on_hand > 0, also with COPY, so the
    ledger agrees with the counters (`manage.py inventory_check` stays clean);
  * channel "web" with all 200 locations, and an API key with every scope, whose raw secret
    is printed and stored in bench/out/key.txt (bench/out is git-ignored).
"""

from __future__ import annotations

import io
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CHANNEL,
    KEY_FILE,
    LOC_CODE,
    N_LOCATIONS,
    N_SKUS,
    OUT_DIR,
    SKU,
    require_postgres_url,
    setup_django,
)

SEED = 20260101
COPY_CHUNK = 50_000  # rows per write() to the COPY stream
SEED_REFERENCE = "bench-seed"


def ensure_database(url: str) -> None:
    import dj_database_url
    import psycopg
    from psycopg import sql

    cfg = dj_database_url.parse(url)
    name = cfg["NAME"]
    params = {
        "dbname": "postgres",
        "host": cfg.get("HOST") or None,
        "port": cfg.get("PORT") or None,
        "user": cfg.get("USER") or None,
        "password": cfg.get("PASSWORD") or None,
    }
    with psycopg.connect(**{k: v for k, v in params.items() if v}, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists:
            print(f"database {name}: exists")
        else:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"database {name}: created")


def quantities(n_rows: int) -> tuple[list[int], list[int]]:
    """Deterministic on_hand (about a quarter zero) and safety stock (mostly zero) per row."""
    rng = random.Random(SEED)
    on_hand = [0 if rng.random() < 0.25 else rng.randint(1, 60) for _ in range(n_rows)]
    safety = [2 if rng.random() < 0.1 else 0 for _ in range(n_rows)]
    return on_hand, safety


def copy_rows(cursor, statement: str, lines) -> int:
    """Stream tab-separated text lines into COPY … FROM STDIN in large chunks."""
    n = 0
    buf = io.StringIO()
    with cursor.copy(statement) as copy:
        for line in lines:
            buf.write(line)
            n += 1
            if n % COPY_CHUNK == 0:
                copy.write(buf.getvalue())
                buf = io.StringIO()
        if buf.tell():
            copy.write(buf.getvalue())
    return n


def main() -> None:
    url = require_postgres_url()
    ensure_database(url)
    setup_django(quiet_logs=False)

    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    from inventory.models import Channel, Item, Location, Stock
    from oms.models import ApiKey
    from oms.services import api_key_create

    t0 = time.perf_counter()
    call_command("migrate", verbosity=0, interactive=False)
    print(f"migrate: {time.perf_counter() - t0:.1f} s")
    with connection.cursor() as cursor:
        cursor.execute("SHOW autovacuum")
        print(f"postgresql autovacuum: {cursor.fetchone()[0]}")

    # --- Network and catalogue (small: the ORM is fine) -------------------------------------
    rng = random.Random(SEED)
    codes = [LOC_CODE.format(i) for i in range(N_LOCATIONS)]
    have = set(Location.objects.filter(code__in=codes).values_list("code", flat=True))
    Location.objects.bulk_create(
        [
            Location(
                code=code,
                name=f"Bench location {i:03d}",
                type="warehouse" if i < 20 else "store",
                country="US",
                latitude=round(rng.uniform(25.0, 48.0), 6),
                longitude=round(rng.uniform(-123.0, -70.0), 6),
                capabilities=["ship"] if i < 20 else ["ship", "pickup"],
                priority=10 + i,
            )
            for i, code in enumerate(codes)
            if code not in have
        ]
    )
    skus = [SKU.format(i) for i in range(1, N_SKUS + 1)]
    have = set(Item.objects.filter(sku__in=skus).values_list("sku", flat=True))
    Item.objects.bulk_create(
        [Item(sku=sku, name=f"Bench item {sku}") for sku in skus if sku not in have],
        batch_size=2000,
    )
    loc_ids = list(Location.objects.filter(code__in=codes).order_by("code").values_list("id", flat=True))
    item_ids = list(Item.objects.filter(sku__in=skus).order_by("sku").values_list("id", flat=True))
    print(f"locations: {len(loc_ids)}  items: {len(item_ids)}")

    channel, _ = Channel.objects.get_or_create(code=CHANNEL, defaults={"name": "Web shop"})
    channel.locations.add(*loc_ids)
    print(f"channel {CHANNEL}: {channel.locations.count()} locations")

    # --- 1,000,000 stock rows + ledger with COPY ------------------------------------------
    expected = len(loc_ids) * len(item_ids)
    existing = Stock.objects.filter(location_id__in=loc_ids).count()
    if existing == expected:
        print(f"stock: {existing:,} rows already loaded, skipping")
    elif existing:
        sys.exit(
            f"stock: {existing:,} of {expected:,} rows present (not a state this script makes); "
            "drop the database and run again."
        )
    else:
        on_hand, safety = quantities(expected)
        now = timezone.now().isoformat()
        t_load = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cursor:
            pg = cursor.connection  # the psycopg connection behind Django's
            with pg.cursor() as cur:
                # The foreign keys are deferred triggers: checking 1.75M rows at COMMIT costs
                # more than the COPY itself. Every id above was just read from its table, so a
                # superuser skips those checks for this transaction only (replica role).
                cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
                if cur.fetchone()[0]:
                    cur.execute("SET LOCAL session_replication_role = replica")
                    print("foreign-key triggers skipped for the load (ids come from the tables)")
                cur.execute("SET LOCAL synchronous_commit = off")
                t0 = time.perf_counter()
                n = copy_rows(
                    cur,
                    "COPY inventory_stock (location_id, item_id, on_hand, reserved, safety_stock, "
                    "updated_at) FROM STDIN",
                    (
                        f"{loc}\t{item}\t{on_hand[k]}\t0\t{safety[k]}\t{now}\n"
                        for k, (loc, item) in enumerate((loc, item) for loc in loc_ids for item in item_ids)
                    ),
                )
                dt = time.perf_counter() - t0
                print(f"stock: COPY {n:,} rows in {dt:.1f} s ({n / dt:,.0f} rows/s)")

                t0 = time.perf_counter()
                n = copy_rows(
                    cur,
                    "COPY inventory_stockmovement (location_id, item_id, delta_on_hand, "
                    "delta_reserved, on_hand_after, reserved_after, reason, note, reference, "
                    "created_at, actor_type, actor_label) FROM STDIN",
                    (
                        f"{loc}\t{item}\t{qty}\t0\t{qty}\t0\tsnapshot\t\t{SEED_REFERENCE}\t{now}"
                        "\tsystem\tbench seed_large\n"
                        for (loc, item), qty in zip(
                            ((loc, item) for loc in loc_ids for item in item_ids),
                            on_hand,
                            strict=True,
                        )
                        if qty > 0
                    ),
                )
                dt = time.perf_counter() - t0
                print(f"ledger: COPY {n:,} snapshot rows in {dt:.1f} s ({n / dt:,.0f} rows/s)")
        print(f"stock + ledger committed: {time.perf_counter() - t_load:.1f} s")
        # Outside the transaction: what autovacuum would do soon after such a load (planner
        # statistics, visibility map), done now so every run measures the same state.
        with connection.cursor() as cursor:
            t0 = time.perf_counter()
            cursor.execute("VACUUM (ANALYZE) inventory_stock")
            cursor.execute("VACUUM (ANALYZE) inventory_stockmovement")
            # Every other table too: with autovacuum off, the channel's 200 locations would keep the
            # empty-table estimate and the ATP query would loop over the locations (15× slower);
            # and their visibility maps (a fresh seed measured exact p99 13 ms before, 5.9 after).
            cursor.execute("VACUUM (ANALYZE)")
            print(f"vacuum analyze: {time.perf_counter() - t0:.1f} s")

    # --- API key ----------------------------------------------------------------------------
    OUT_DIR.mkdir(exist_ok=True)
    raw = KEY_FILE.read_text().strip() if KEY_FILE.exists() else ""
    prefix = ApiKey.parse_prefix(raw) if raw else None
    if prefix and ApiKey.objects.usable().filter(prefix=prefix).exists():
        print(f"api key: reusing {prefix} from {KEY_FILE}")
    else:
        _, raw = api_key_create(name="bench", scopes="all")
        KEY_FILE.write_text(raw + "\n")
        print(f"api key: created, stored in {KEY_FILE}")
    print(f"API key (all scopes): {raw}")


if __name__ == "__main__":
    main()
