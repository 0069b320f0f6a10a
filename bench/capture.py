"""Order capture over HTTP: gunicorn on PostgreSQL, against a plain DRF ModelSerializer baseline.

    .venv/bin/python bench/capture.py                     # seed (if needed), measure, verify
    .venv/bin/python bench/capture.py --fresh             # drop and recreate the database first
    .venv/bin/python bench/capture.py --profile 300       # in-process cProfile + query counts only
    .venv/bin/python bench/capture.py --source DIR --skip-baseline --skip-noop   # a candidate fix

Database: its own, --database-url (default postgres://postgres@127.0.0.1:5432/oms_bench_capture),
created if missing and migrated. DATABASE_URL in the environment is ignored so that the large
network of bench/seed_large.py is never touched. Seeded once (idempotently): channel "web" with
20 locations (cap-loc-00 … cap-loc-19, all shipping), 2,000 SKUs CAP-00001 … CAP-02000 and
1,000,000 units of each SKU at each location (inventory.services.stock_snapshot per location,
so the ledger agrees with the counters), and an API key with every scope (bench/out/capture-key.txt).

Servers, each started as `.venv/bin/gunicorn … -k gthread` (setups from --configs; the best is
reported) with DATABASE_URL, REDIS_URL (default redis://127.0.0.1:6379/14), OMS_DEBUG=0 and
LOG_LEVEL=WARNING:
  * capture:  oms.wsgi, POST /api/v1/orders/ with an Idempotency-Key header: validation, customer,
    order + 3 lines, stock reservation in the channel (conditional updates + ledger), allocations,
    timeline, outbox rows, then the full order as the answer; the idempotency claim, the order
    and the stored answer commit in one transaction.
  * baseline: bench.capture:baseline_app, the same Django settings and middleware and the same
    API-key authentication and scope check, but its own URLconf with a plain DRF ModelSerializer
    create (Order + 3 OrderLines, customer get-or-create): no reservation, no idempotency, no
    outbox, no timeline.
  * floor (noop), once, on the best capture setup: the baseline app's authenticated view that
    parses the same body and answers 201 with no other SQL, i.e. the most this stack can do here.
With REDIS_URL set the web process only writes outbox rows and, after commit, kicks the relay in
a background thread (a publish to Redis); no Celery worker is needed for these figures and none
is started, so the outbox rows stay pending and the kicked relay tasks sit in the Redis queue
(the script empties that queue, the key "celery" of the benchmark's Redis database, at the end).

Load: wrk (or, without wrk, Python threads with http.client keep-alive connections), 16
connections, 3 s warm-up then 20 s per run, every request a new order: 3 distinct random SKUs,
quantity 1-3, a unique external_id (also the Idempotency-Key), a customer drawn from 20,000
emails. wrk, gunicorn and PostgreSQL share the machine's cores; the script reports the CPU time
each of them used per order, and what other processes on the machine took meanwhile.

After the runs it checks that nothing was oversold (reserved <= on hand and available >= 0 on
every stock row, reserved equals the allocations held), that the counters equal the ledger
(inventory.selectors.ledger_mismatches() == []), and compares orders created with requests sent.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import http.client
import io
import json
import os
import pstats
import random
import re
import resource
import secrets
import shutil
import subprocess
import sys
import threading
import time
import types
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import OUT_DIR, ROOT, gunicorn_command, machine, percentile, summary_ms  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/oms_bench_capture"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
DEFAULT_CONFIGS = "gthread:4x4,gthread:3x8,gthread:4x1"
HOST, PORT = "127.0.0.1", 8131
KEY_FILE = OUT_DIR / "capture-key.txt"

CHANNEL = "web"
N_LOCATIONS = 20
N_SKUS = 2_000
N_CUSTOMERS = 20_000
LOC_CODE = "cap-loc-{:02d}"
SKU = "CAP-{:05d}"
UNITS = 1_000_000  # per SKU per location: the run can never run out
ORDERS_PATH = "/api/v1/orders/"
NOOP_PATH = "/api/v1/noop/"
TARGET_RPS = 600
TARGET_RATIO = 2.0
BASELINE_URLCONF = "bench_capture_baseline_urls"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- Baseline: a plain DRF ModelSerializer create, served as its own WSGI app ------------------------


def _baseline_urlconf() -> types.ModuleType:
    """URLconf module for the baseline server (built after django.setup())."""
    from django.db import transaction
    from django.urls import path
    from rest_framework import generics, serializers, views
    from rest_framework.response import Response

    from inventory.models import Channel, Item
    from oms.views import healthz
    from orders.models import Customer, Order, OrderLine, new_order_number

    class CustomerSerializer(serializers.ModelSerializer):
        class Meta:
            model = Customer
            fields = ["email", "name", "phone"]
            extra_kwargs = {"email": {"validators": []}}  # get-or-create below, not "must be new"

    class AddressSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
        line1 = serializers.CharField(max_length=200)
        line2 = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
        city = serializers.CharField(max_length=100)
        region = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
        postal_code = serializers.CharField(max_length=20)
        country = serializers.CharField(max_length=2, min_length=2)

    class LineSerializer(serializers.ModelSerializer):
        class Meta:
            model = OrderLine
            fields = ["id", "sku", "quantity", "unit_price", "discount_amount", "tax_amount"]

    class OrderSerializer(serializers.ModelSerializer):
        channel = serializers.SlugRelatedField(slug_field="code", queryset=Channel.objects.all())
        customer = CustomerSerializer()
        shipping_address = AddressSerializer(write_only=True)
        lines = LineSerializer(many=True)

        class Meta:
            model = Order
            fields = [
                "number",
                "channel",
                "external_id",
                "customer",
                "currency",
                "status",
                "shipping_address",
                "lines",
                "subtotal",
                "grand_total",
                "created_at",
            ]
            read_only_fields = ["number", "status", "subtotal", "grand_total", "created_at"]

        def validate_lines(self, lines):
            if not lines:
                raise serializers.ValidationError("At least one line.")
            items = Item.objects.in_bulk([line["sku"] for line in lines], field_name="sku")
            unknown = [line["sku"] for line in lines if line["sku"] not in items]
            if unknown:
                raise serializers.ValidationError(f"Unknown SKU(s): {', '.join(unknown)}")
            for line in lines:
                line["item"] = items[line["sku"]]
            return lines

        @transaction.atomic
        def create(self, validated_data):
            customer_data = validated_data.pop("customer")
            lines = validated_data.pop("lines")
            address = validated_data.pop("shipping_address")
            customer, _ = Customer.objects.get_or_create(
                email=customer_data["email"].strip().lower(),
                defaults={"name": customer_data.get("name", ""), "phone": customer_data.get("phone", "")},
            )
            subtotal = sum(line["unit_price"] * line["quantity"] for line in lines)
            order = Order.objects.create(
                number=new_order_number(validated_data["channel"].code),
                customer=customer,
                subtotal=subtotal,
                grand_total=subtotal,
                **{f"ship_{k}": v.upper() if k == "country" else v for k, v in address.items()},
                **validated_data,
            )
            OrderLine.objects.bulk_create([OrderLine(order=order, **line) for line in lines])
            return order

    class OrderCreate(generics.CreateAPIView):
        serializer_class = OrderSerializer
        required_scopes = {"POST": "orders:write"}  # same ApiKeyAuthentication + HasScope as the API

    class Noop(views.APIView):
        """The floor: middleware, API-key auth, scope check, JSON parse and render; no other SQL."""

        required_scopes = {"POST": "orders:write"}

        def post(self, request):
            return Response({"external_id": request.data["external_id"]}, status=201)

    module = types.ModuleType(BASELINE_URLCONF)
    module.urlpatterns = [
        path("healthz", healthz),
        path(ORDERS_PATH.lstrip("/"), OrderCreate.as_view()),
        path(NOOP_PATH.lstrip("/"), Noop.as_view()),
    ]
    return module


def _baseline_wsgi():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oms.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application
    from django.urls import get_resolver

    from oms.process import settle_collector

    sys.modules[BASELINE_URLCONF] = _baseline_urlconf()
    settings.ROOT_URLCONF = BASELINE_URLCONF
    app = get_wsgi_application()
    get_resolver().url_patterns  # noqa: B018 - as oms.wsgi does: the same process settings
    settle_collector()
    return app


_baseline_app = None


def __getattr__(name: str):
    """`gunicorn bench.capture:baseline_app` builds the baseline app on first access only."""
    global _baseline_app
    if name == "baseline_app":
        if _baseline_app is None:
            _baseline_app = _baseline_wsgi()
        return _baseline_app
    raise AttributeError(name)


# --- Database and seed ------------------------------------------------------------------------------


def ensure_database(url: str, *, fresh: bool) -> None:
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
        if exists and fresh:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            print(f"database {name}: dropped (--fresh)")
            exists = None
        if exists:
            print(f"database {name}: exists")
        else:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"database {name}: created")


def setup_django(url: str, redis_url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ["REDIS_URL"] = redis_url
    os.environ["OMS_DEBUG"] = "0"
    os.environ["LOG_LEVEL"] = "WARNING"
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oms.settings")
    import django

    django.setup()


def seed() -> str:
    """Network, catalogue, stock and API key; returns the raw key."""
    from django.core.management import call_command
    from django.db import connection

    from inventory.models import Channel, Item, Location, Stock
    from inventory.services import stock_snapshot
    from oms.actor import Actor
    from oms.models import ApiKey
    from oms.services import api_key_create

    t0 = time.perf_counter()
    call_command("migrate", verbosity=0, interactive=False)
    print(f"migrate: {time.perf_counter() - t0:.1f} s")

    codes = [LOC_CODE.format(i) for i in range(N_LOCATIONS)]
    have = set(Location.objects.filter(code__in=codes).values_list("code", flat=True))
    rng = random.Random(7)
    Location.objects.bulk_create(
        [
            Location(
                code=code,
                name=f"Capture bench location {i:02d}",
                type="warehouse",
                country="US",
                latitude=round(rng.uniform(25.0, 48.0), 6),
                longitude=round(rng.uniform(-123.0, -70.0), 6),
                capabilities=["ship"],
                priority=10 + i,
            )
            for i, code in enumerate(codes)
            if code not in have
        ]
    )
    skus = [SKU.format(i) for i in range(1, N_SKUS + 1)]
    have = set(Item.objects.filter(sku__in=skus).values_list("sku", flat=True))
    Item.objects.bulk_create([Item(sku=sku, name=f"Capture bench item {sku}") for sku in skus if sku not in have])
    locations = list(Location.objects.filter(code__in=codes).order_by("code"))
    channel, _ = Channel.objects.get_or_create(code=CHANNEL, defaults={"name": "Web shop"})
    channel.locations.add(*locations)

    t0 = time.perf_counter()
    loaded = 0
    for location in locations:
        if Stock.objects.filter(location=location, item__sku__in=skus).count() == N_SKUS:
            continue
        stock_snapshot(
            location=location,
            counts={sku: (UNITS, 0) for sku in skus},
            actor=Actor.system("bench capture seed"),
            reference="bench-capture-seed",
            full=False,
        )
        loaded += 1
    if loaded:
        with connection.cursor() as cursor:
            cursor.execute("VACUUM (ANALYZE) inventory_stock")
            cursor.execute("VACUUM (ANALYZE) inventory_stockmovement")
            # Every table, as autovacuum would have by the time a real shop takes orders: left at
            # the default estimates, the plans join the whole catalogue (2.3 → 0.8 ms per plan).
            cursor.execute("ANALYZE")
    print(
        f"seed: channel {CHANNEL} with {channel.locations.count()} locations, {len(skus):,} SKUs, "
        f"{UNITS:,} units each per location ({loaded} location(s) loaded now, "
        f"{time.perf_counter() - t0:.1f} s)"
    )

    OUT_DIR.mkdir(exist_ok=True)
    raw = KEY_FILE.read_text().strip() if KEY_FILE.exists() else ""
    prefix = ApiKey.parse_prefix(raw) if raw else None
    if not (prefix and ApiKey.objects.usable().filter(prefix=prefix).exists()):
        _, raw = api_key_create(name="bench capture", scopes="all")
        KEY_FILE.write_text(raw + "\n")
    return raw


# --- Request bodies ---------------------------------------------------------------------------------


def order_body(external_id: str, rng: random.Random) -> dict:
    """The order every request posts: the same shape for capture and baseline."""
    skus = rng.sample(range(1, N_SKUS + 1), 3)
    return {
        "channel": CHANNEL,
        "external_id": external_id,
        "customer": {"email": f"buyer{rng.randrange(N_CUSTOMERS):05d}@example.com", "name": "Bench Buyer"},
        "currency": "USD",
        "shipping_address": {"line1": "1 Main St", "city": "Newark", "postal_code": "07102", "country": "US"},
        "lines": [
            {"sku": SKU.format(s), "quantity": rng.randint(1, 3), "unit_price": f"{rng.randint(5, 120)}.99"}
            for s in skus
        ],
    }


# Builds the same body as order_body() inside wrk; each thread numbers its own requests and
# counts the answers by status, so done() can report requests sent vs orders answered 201.
WRK_LUA = r"""
local key, prefix = "%(key)s", "%(prefix)s"
local n_skus, n_customers = %(n_skus)d, %(n_customers)d
local next_id, threads = 0, {}

function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + tid * 7919)
  sent, created, failed, first_error = 0, 0, 0, ""
end

local function line(n)
  return string.format('{"sku":"CAP-%%05d","quantity":%%d,"unit_price":"%%d.99"}',
    n, math.random(1, 3), math.random(5, 120))
end

function request()
  sent = sent + 1
  local ext = prefix .. tid .. "-" .. sent
  local a = math.random(1, n_skus)
  local b repeat b = math.random(1, n_skus) until b ~= a
  local c repeat c = math.random(1, n_skus) until c ~= a and c ~= b
  local body = string.format(
    '{"channel":"web","external_id":"%%s","customer":{"email":"buyer%%05d@example.com",'
    .. '"name":"Bench Buyer"},"currency":"USD","shipping_address":{"line1":"1 Main St",'
    .. '"city":"Newark","postal_code":"07102","country":"US"},"lines":[%%s,%%s,%%s]}',
    ext, math.random(0, n_customers - 1), line(a), line(b), line(c))
  return wrk.format("POST", "%(path)s", {
    ["Authorization"] = "Api-Key " .. key,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = ext,
  }, body)
end

function response(status, headers, body)
  if status == 201 then
    created = created + 1
  else
    failed = failed + 1
    if first_error == "" then first_error = status .. " " .. string.sub(body or "", 1, 300) end
  end
end

function done(summary, latency, requests)
  local s, c, f, err = 0, 0, 0, ""
  for _, t in ipairs(threads) do
    s = s + t:get("sent"); c = c + t:get("created"); f = f + t:get("failed")
    if err == "" then err = t:get("first_error") end
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%%d duration_us=%%d p50=%%.3f p95=%%.3f p99=%%.3f max=%%.3f mean=%%.3f "
    .. "sent=%%d created=%%d failed=%%d sockerr=%%d\n",
    summary.requests, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, latency.mean / 1000,
    s, c, f, e.connect + e.read + e.write + e.timeout))
  io.write("FIRSTERROR " .. err .. "\n")
end
"""


def run_wrk(key: str, prefix: str, connections: int, duration: float, threads: int, path: str) -> dict:
    lua = OUT_DIR / "capture.lua"
    lua.write_text(WRK_LUA % {"key": key, "prefix": prefix, "n_skus": N_SKUS, "n_customers": N_CUSTOMERS, "path": path})
    cmd = [
        shutil.which("wrk"),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(lua),
        f"http://{HOST}:{PORT}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("BENCH "))
    f = dict(kv.split("=") for kv in line.split()[1:])
    first_error = next((x[len("FIRSTERROR ") :] for x in out.splitlines() if x.startswith("FIRSTERROR ")), "")
    seconds = int(f["duration_us"]) / 1e6
    return {
        "seconds": seconds,
        "responses": int(f["requests"]),
        "sent": int(f["sent"]),
        "created_201": int(f["created"]),
        "failed": int(f["failed"]),
        "socket_errors": int(f["sockerr"]),
        "rps": int(f["created"]) / seconds,
        "p50": float(f["p50"]),
        "p95": float(f["p95"]),
        "p99": float(f["p99"]),
        "max": float(f["max"]),
        "mean": float(f["mean"]),
        "first_error": first_error.strip(),
    }


def run_python_load(key: str, prefix: str, connections: int, duration: float, _threads: int, path: str) -> dict:
    """Fallback load generator without wrk: one thread per keep-alive connection."""
    stop_at = time.perf_counter() + duration
    per_thread = [{"lat": [], "sent": 0, "created": 0, "failed": 0, "err": ""} for _ in range(connections)]

    def worker(i: int) -> None:
        rng = random.Random(secrets.randbits(32))
        mine = per_thread[i]
        conn = http.client.HTTPConnection(HOST, PORT, timeout=10)
        while time.perf_counter() < stop_at:
            mine["sent"] += 1
            ext = f"{prefix}{i + 1}-{mine['sent']}"
            headers = {
                "Authorization": f"Api-Key {key}",
                "Content-Type": "application/json",
                "Idempotency-Key": ext,
            }
            body = json.dumps(order_body(ext, rng))
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                status = resp.status
                if resp.will_close:
                    conn.close()
                    conn = http.client.HTTPConnection(HOST, PORT, timeout=10)
            except (OSError, http.client.HTTPException) as exc:
                status, data = 0, repr(exc).encode()
                conn.close()
                conn = http.client.HTTPConnection(HOST, PORT, timeout=10)
            mine["lat"].append(time.perf_counter() - t0)
            if status == 201:
                mine["created"] += 1
            else:
                mine["failed"] += 1
                mine["err"] = mine["err"] or f"{status} {data[:300].decode(errors='replace')}"
        conn.close()

    started = time.perf_counter()
    workers = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    seconds = time.perf_counter() - started
    lat = sorted(x * 1000 for t in per_thread for x in t["lat"])
    created = sum(t["created"] for t in per_thread)
    return {
        "seconds": seconds,
        "responses": len(lat),
        "sent": sum(t["sent"] for t in per_thread),
        "created_201": created,
        "failed": sum(t["failed"] for t in per_thread),
        "socket_errors": 0,
        "rps": created / seconds,
        "p50": percentile(lat, 50),
        "p95": percentile(lat, 95),
        "p99": percentile(lat, 99),
        "max": lat[-1] if lat else float("nan"),
        "mean": sum(lat) / len(lat) if lat else float("nan"),
        "first_error": next((t["err"] for t in per_thread if t["err"]), ""),
    }


# --- CPU accounting: who used the cores during a run -----------------------------------------------


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of one process, 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(x) for x in (task / "children").read_text().split()]
    return out


def _machine_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = parts[:8]
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


def _postgres_pids(dbname: str) -> list[int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [dbname],
        )
        return [r[0] for r in cursor.fetchall()]


class CpuMeter:
    """CPU seconds used by the gunicorn workers, this database's PostgreSQL backends and the
    load generator during a run, and by everything else on the machine."""

    def __init__(self, gunicorn_pid: int, dbname: str):
        self.gunicorn_pid, self.dbname = gunicorn_pid, dbname

    def _sample(self) -> dict:
        workers = [self.gunicorn_pid, *_children(self.gunicorn_pid)]
        pg = _postgres_pids(self.dbname)
        busy, steal = _machine_cpu()
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, once it has been waited for
        return {
            "gunicorn": {pid: _proc_cpu(pid) for pid in workers},
            "postgres": {pid: _proc_cpu(pid) for pid in pg},
            "loadgen": kids.ru_utime + kids.ru_stime + own.ru_utime + own.ru_stime,
            "busy": busy,
            "steal": steal,
            "wall": time.perf_counter(),
        }

    def start(self) -> None:
        self.before = self._sample()

    def stop(self) -> dict:
        after = self._sample()
        b = self.before

        def delta(kind: str) -> float:
            return sum(v - b[kind].get(pid, 0.0) for pid, v in after[kind].items())

        used = {
            "gunicorn": delta("gunicorn"),
            "postgres": delta("postgres"),
            "loadgen": after["loadgen"] - b["loadgen"],
            "busy": after["busy"] - b["busy"],
            "steal": after["steal"] - b["steal"],
            "wall": after["wall"] - b["wall"],
        }
        used["other"] = max(0.0, used["busy"] - used["gunicorn"] - used["postgres"] - used["loadgen"])
        return used


# --- Servers ----------------------------------------------------------------------------------------


def start_gunicorn(
    app: str,
    spec: str,
    url: str,
    redis_url: str,
    source: Path = ROOT,
    worker_connections: int | None = None,
    *,
    port: int = PORT,
    log_name: str | None = None,
    env_extra: dict[str, str] | None = None,
) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "OMS_DEBUG": "0",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        **(env_extra or {}),
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    name = "baseline" if "baseline" in app else "capture"
    log_name = log_name or f"gunicorn-capture-{name}-{spec.replace(':', '-')}.log"
    # Appended to, one header per run: a server error in an early round must still be readable.
    log = open(OUT_DIR / log_name, "a")  # noqa: SIM115
    log.write(f"\n== {time.strftime('%Y-%m-%d %H:%M:%S')} {app} from {source}\n")
    log.flush()
    proc = subprocess.Popen(
        gunicorn_command(spec, bind=f"{HOST}:{port}", app=app, chdir=source, worker_connections=worker_connections),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=source,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"gunicorn exited with {proc.returncode}; see {log.name}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    stop_gunicorn(proc)
    sys.exit(f"gunicorn did not come up within 30 s; see {log.name}")


def stop_gunicorn(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def post_one(key: str, external_id: str, path: str) -> tuple[int, dict]:
    body = json.dumps(order_body(external_id, random.Random(1))).encode()
    req = urllib.request.Request(
        f"http://{HOST}:{PORT}{path}",
        data=body,
        method="POST",
        headers={"Authorization": f"Api-Key {key}", "Content-Type": "application/json", "Idempotency-Key": external_id},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, {"body": err.read()[:500].decode(errors="replace")}


def port_free() -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex((HOST, PORT)) != 0


# --- One measured run --------------------------------------------------------------------------------


def counts_for(prefix: str) -> dict:
    from inventory.models import Channel
    from oms.models import IdempotencyRecord
    from orders.models import Order

    channel = Channel.objects.get(code=CHANNEL)
    orders = Order.objects.filter(channel=channel, external_id__startswith=prefix)
    return {
        "orders": orders.count(),
        "not_received": orders.exclude(status="received").count(),
        "idempotency_done": IdempotencyRecord.objects.filter(key__startswith=prefix, state="done").count(),
    }


def outbox_count() -> int:
    from oms.models import OutboxMessage

    return OutboxMessage.objects.count()


KINDS = {  # what each run serves: gunicorn app, path posted to
    "capture": ("oms.wsgi", ORDERS_PATH),
    "baseline": ("bench.capture:baseline_app", ORDERS_PATH),
    "noop": ("bench.capture:baseline_app", NOOP_PATH),
}


def run_one(kind: str, spec: str, args, key: str, tag: str) -> dict:
    app, path = KINDS[kind]
    load = run_wrk if args.loadgen == "wrk" else run_python_load
    source = args.source if kind == "capture" else ROOT
    proc = start_gunicorn(app, spec, args.database_url, args.redis_url, source, args.worker_connections)
    try:
        status, body = post_one(key, f"{tag}-{kind}-{spec}-check", path)
        if status != 201:
            sys.exit(f"{kind}: POST {path} answered {status}: {body}")
        if kind == "capture":
            assert {a["location"] for line in body["lines"] for a in line["allocations"]}, body
        load(key, f"{tag}-{kind}-{spec}-w-", args.connections, args.warmup, args.wrk_threads, path)
        prefix = f"{tag}-{kind}-{spec}-m-"
        outbox_before = outbox_count()
        meter = CpuMeter(proc.pid, args.dbname)
        meter.start()
        r = load(key, prefix, args.connections, args.duration, args.wrk_threads, path)
        r["cpu"] = meter.stop()
        time.sleep(0.5)  # the requests in flight when the load stopped finish
        r.update(counts_for(prefix))
        r["outbox_rows"] = outbox_count() - outbox_before
    finally:
        stop_gunicorn(proc)
    r["kind"], r["spec"] = kind, spec
    return r


def median_run(runs: list[dict], *, by_spec: bool = False) -> dict:
    """The run with the median throughput; `by_spec`: of the setup whose median is highest."""
    if by_spec:
        specs = {r["spec"] for r in runs}
        return max((median_run([r for r in runs if r["spec"] == spec]) for spec in specs), key=lambda r: r["rps"])
    ordered = sorted(runs, key=lambda r: r["rps"])
    return ordered[(len(ordered) - 1) // 2]


def print_run(r: dict) -> None:
    cpu = r["cpu"]
    n = max(1, r["created_201"])
    unit = "answers/s" if r["kind"] == "noop" else "orders/s"
    print(
        f"{r['kind']:<8} gunicorn {r['spec']:<12} {r['rps']:7.1f} {unit}  p50={r['p50']:7.2f}  "
        f"p95={r['p95']:7.2f}  p99={r['p99']:7.2f}  max={r['max']:8.2f} ms"
    )
    print(
        f"         requests sent={r['sent']}  answered={r['responses']}  201={r['created_201']}  "
        f"other={r['failed']}  socket errors={r['socket_errors']}  orders in the database={r['orders']}  "
        f"not 'received'={r['not_received']}  idempotency records done={r['idempotency_done']}  "
        f"outbox rows written={r['outbox_rows']}"
    )
    print(
        f"         CPU per request: gunicorn {cpu['gunicorn'] / n * 1000:.2f} ms, postgres "
        f"{cpu['postgres'] / n * 1000:.2f} ms, load generator {cpu['loadgen'] / n * 1000:.2f} ms; "
        f"cores busy {cpu['busy'] / cpu['wall']:.2f} of {os.cpu_count()} "
        f"(other processes {cpu['other'] / cpu['wall']:.2f}, steal {cpu['steal'] / cpu['wall']:.2f})"
    )
    if r["failed"] or r["socket_errors"]:
        print(f"         first non-201 answer: {r['first_error']}")


# --- Verification ------------------------------------------------------------------------------------


def verify(all_runs: list[dict]) -> bool:
    from django.db.models import F, Sum

    from inventory.models import Reservation, Stock
    from inventory.selectors import ledger_mismatches
    from orders.models import Allocation

    oversold = Stock.objects.filter(reserved__gt=F("on_hand")).count()
    below_atp = Stock.objects.filter(on_hand__lt=F("reserved") + F("safety_stock")).count()
    held = {
        (loc, item): q
        for loc, item, q in Allocation.objects.values_list("location_id", "line__item_id")
        .annotate(q=Sum("quantity"))
        .values_list("location_id", "line__item_id", "q")
    }
    reserved = {
        (loc, item): r
        for loc, item, r in Stock.objects.filter(reserved__gt=0).values_list("location_id", "item_id", "reserved")
    }
    carts = Reservation.objects.filter(status="active").count()
    t0 = time.perf_counter()
    mismatches = ledger_mismatches()
    dt = time.perf_counter() - t0
    ok = not oversold and not below_atp and held == reserved and not mismatches
    print(f"stock rows with reserved > on hand (oversold): {oversold}")
    print(f"stock rows with available < 0 (on hand - reserved - safety stock): {below_atp}")
    print(
        f"reserved units = units allocated to order lines on every stock row: {held == reserved} "
        f"({sum(reserved.values()):,} units reserved, {sum(held.values()):,} allocated, {carts} active carts)"
    )
    print(f"ledger_mismatches(): {len(mismatches)} ({dt:.1f} s)" + (f" e.g. {mismatches[:3]}" if mismatches else ""))
    for r in all_runs:
        if r["kind"] == "noop":
            ok = ok and r["failed"] == 0 and r["orders"] == 0
            continue
        extra = r["orders"] - r["created_201"]
        print(
            f"{r['kind']:<8} {r['spec']:<12} requests sent {r['sent']:>6}, answered 201 {r['created_201']:>6}, "
            f"orders created {r['orders']:>6} (+{extra} still in flight when the load generator stopped)"
        )
        ok = ok and r["failed"] == 0 and 0 <= extra <= r["sent"] - r["responses"]
        if r["kind"] == "capture":
            ok = ok and r["not_received"] == 0 and r["idempotency_done"] >= r["created_201"]
    return ok


# --- In-process profile ------------------------------------------------------------------------------


def profile(n: int, key: str, tag: str) -> None:
    """cProfile N captures and N baseline creates through django.test.Client, with query counts."""
    from django.db import connection
    from django.test import Client, override_settings
    from django.test.utils import CaptureQueriesContext

    sys.modules[BASELINE_URLCONF] = _baseline_urlconf()
    client = Client(HTTP_AUTHORIZATION=f"Api-Key {key}")
    rng = random.Random(11)

    def post(ext: str, idempotent: bool):
        headers = {"Idempotency-Key": ext} if idempotent else {}
        return client.post(ORDERS_PATH, order_body(ext, rng), content_type="application/json", headers=headers)

    for kind, idempotent, urlconf in (
        ("capture", True, None),
        ("capture without Idempotency-Key", False, None),
        ("baseline", False, BASELINE_URLCONF),
    ):
        ctx = override_settings(ROOT_URLCONF=urlconf) if urlconf else override_settings()
        with ctx:
            slug = kind.split()[0] + ("-noidem" if "without" in kind else "")
            for i in range(20):  # warm-up
                assert post(f"{tag}-prof-{slug}-w{i}", idempotent).status_code == 201
            with CaptureQueriesContext(connection) as queries:
                response = post(f"{tag}-prof-{slug}-q", idempotent)
            assert response.status_code == 201, response.content[:300]
            statements = [q["sql"] for q in queries.captured_queries]
            kinds: dict[str, int] = {}
            for sql in statements:
                word = sql.split(None, 1)[0].upper()
                kinds[word] = kinds.get(word, 0) + 1
            samples = []
            cpu0 = time.process_time()
            for i in range(n):  # timed without the profiler: wall and this process's CPU
                t0 = time.perf_counter()
                r = post(f"{tag}-prof-{slug}-t{i}", idempotent)
                samples.append(time.perf_counter() - t0)
                assert r.status_code == 201, r.content[:300]
            cpu_ms = (time.process_time() - cpu0) * 1000 / n
            plain = summary_ms(samples)
            samples = []
            prof = cProfile.Profile()
            for i in range(n):
                t0 = time.perf_counter()
                prof.enable()
                r = post(f"{tag}-prof-{slug}-{i}", idempotent)
                prof.disable()
                samples.append(time.perf_counter() - t0)
                assert r.status_code == 201, r.content[:300]
        s = summary_ms(samples)
        print(f"\n== in-process {kind}: {len(statements)} SQL statements per request {kinds}")
        print(
            f"   {n} requests, one at a time, no profiler: p50 {plain['p50']:.2f} ms  p99 {plain['p99']:.2f} ms; "
            f"Python CPU {cpu_ms:.1f} ms per request (plus PostgreSQL's)"
        )
        print(f"   {n} requests under cProfile: mean {s['mean']:.2f} ms  p50 {s['p50']:.2f} ms  p99 {s['p99']:.2f} ms")
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        stats.sort_stats("cumulative").print_stats(
            r"(oms|orders|inventory|idempotency|rest_framework/(views|serializers))", 45
        )
        text = re.sub(r"/\S*/site-packages/", "", out.getvalue())
        text = text.replace(str(ROOT) + "/", "")
        print("\n".join(text.splitlines()[-55:]))
        if kind == "capture":
            (OUT_DIR / "capture-queries.sql").write_text(";\n".join(statements) + ";\n")
            print(f"   statements of one capture written to {OUT_DIR / 'capture-queries.sql'}")


# --- Main --------------------------------------------------------------------------------------------


def code_version(source: Path) -> str:
    """The commit measured, and application files changed since it (others edit concurrently)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "oms", "orders", "inventory", "routing", "returns"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    changed = [line[3:] for line in dirty if line.strip()]
    where = "" if source == ROOT else f"; capture served from {source}"
    return f"{head}" + (f" + uncommitted changes in {', '.join(changed)}" if changed else "") + where


def clear_relay_queue(redis_url: str) -> int:
    """The relay kicks queued in the benchmark's Redis database (no worker consumes them)."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2)
    n = client.llen("celery")
    client.delete("celery")
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--fresh", action="store_true", help="drop and recreate the database first")
    parser.add_argument(
        "--configs",
        default=DEFAULT_CONFIGS,
        help="gunicorn setups, comma-separated: gthread:<workers>x<threads> or sync:<workers>",
    )
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--worker-connections",
        type=int,
        help="gunicorn --worker-connections for gthread setups (at most this many connections per worker)",
    )
    parser.add_argument("--duration", type=float, default=20, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of load before each measured run")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--loadgen", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure each (setup, capture/baseline) this many times, alternating, and compare medians "
        "(this VM's speed drifts by a quarter from minute to minute)",
    )
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--skip-noop",
        action="store_true",
        help="skip the floor run (API-key auth + JSON in/out, no other SQL) on the best capture setup",
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=ROOT,
        help="serve capture from another checkout of the project (to measure a candidate fix); same database",
    )
    parser.add_argument("--profile", type=int, metavar="N", help="only profile N in-process requests of each kind")
    args = parser.parse_args()
    if not args.database_url.startswith(("postgres://", "postgresql://")):
        sys.exit("--database-url must be a PostgreSQL URL")
    import dj_database_url

    args.dbname = dj_database_url.parse(args.database_url)["NAME"]
    tag = time.strftime("%m%d%H%M%S") + secrets.token_hex(2)

    print(f"== order capture benchmark, {time.strftime('%Y-%m-%d %H:%M')} (run tag {tag}) ==")
    print(f"machine: {machine()}")
    print(f"code: {code_version(args.source)}")
    ensure_database(args.database_url, fresh=args.fresh)
    setup_django(args.database_url, args.redis_url)
    key = seed()

    if args.profile:
        profile(args.profile, key, tag)
        print(f"relay kicks left in Redis and removed: {clear_relay_queue(args.redis_url)}")
        return

    if not port_free():
        sys.exit(f"port {PORT} is in use")
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    tool = f"wrk -t{args.wrk_threads}" if args.loadgen == "wrk" else "python threads (http.client)"
    print(
        f"load: {tool}, {args.connections} keep-alive connections, {args.warmup:g} s warm-up + "
        f"{args.duration:g} s per run, 3-line orders with unique external_id and Idempotency-Key; "
        f"the load generator, gunicorn and PostgreSQL share the {os.cpu_count()} cores"
    )
    print(f"server env: DATABASE_URL={args.database_url} REDIS_URL={args.redis_url} OMS_DEBUG=0 LOG_LEVEL=WARNING")
    print("no Celery worker runs: capture writes outbox rows and kicks the relay (a Redis publish) only")
    runs = []
    for round_ in range(1, args.rounds + 1):
        for spec in configs:
            for kind in ("capture",) if args.skip_baseline else ("capture", "baseline"):
                r = run_one(kind, spec, args, key, f"{tag}r{round_}")
                r["round"] = round_
                runs.append(r)
                print_run(r)

    if not args.skip_noop:
        spec = median_run([r for r in runs if r["kind"] == "capture"], by_spec=True)["spec"]
        r = run_one("noop", spec, args, key, tag)
        runs.append(r)
        print_run(r)

    print("\n-- verification --")
    ok = verify(runs)

    best = {}
    for kind in ("capture", "baseline", "noop"):
        mine = [r for r in runs if r["kind"] == kind]
        if mine:
            best[kind] = median_run(mine, by_spec=True)
    if args.rounds > 1 and "baseline" in best:
        print("\n-- rounds (capture and baseline alternate; medians compared below) --")
        for spec in configs:
            for round_ in range(1, args.rounds + 1):
                pair = {r["kind"]: r for r in runs if r["spec"] == spec and r.get("round") == round_}
                if {"capture", "baseline"} <= pair.keys():
                    c, b = pair["capture"], pair["baseline"]
                    print(
                        f"{spec:<12} round {round_}: capture {c['rps']:6.1f}/s, baseline {b['rps']:6.1f}/s, "
                        f"ratio {c['rps'] / b['rps']:.2f}×"
                    )
    cap = best["capture"]
    labels = {
        "capture": "capture (full path)",
        "baseline": "baseline (DRF create)",
        "noop": "floor (auth + JSON only)",
    }
    which = "best setup of each" + (f", its median run of {args.rounds}" if args.rounds > 1 else "")
    print(f"\n-- comparison ({which}; {args.connections} connections, {os.cpu_count()} shared cores) --")
    print(f"{'':<26}{'orders/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'vs capture':>12}  {'CPU ms/order':>13}  gunicorn")
    for kind, r in best.items():
        n = max(1, r["created_201"])
        cpu_ms = (r["cpu"]["gunicorn"] + r["cpu"]["postgres"]) / n * 1000
        print(
            f"{labels[kind]:<26}{r['rps']:>9.1f}{r['p50']:>9.1f}{r['p99']:>9.1f}"
            f"{r['rps'] / cap['rps']:>11.2f}×  {cpu_ms:>13.1f}  {r['spec']}"
        )
    print("(CPU ms/order: gunicorn workers + this database's PostgreSQL backends, per 201 answer)")
    print(
        f"target ≥ {TARGET_RPS} orders/s: {'met' if cap['rps'] >= TARGET_RPS else 'NOT met'} "
        f"({cap['rps']:.0f} orders/s, {cap['rps'] / TARGET_RPS:.0%} of the target)"
    )
    if "baseline" in best:
        base = best["baseline"]
        ratio = cap["rps"] / base["rps"]
        print(
            f"capture / baseline throughput: {ratio:.2f}× (target ≥ {TARGET_RATIO:g}× the baseline: "
            f"{'met' if ratio >= TARGET_RATIO else 'NOT met'}); capture p50 {cap['p50'] / base['p50']:.2f}×, "
            f"p99 {cap['p99'] / base['p99']:.2f}× the baseline's"
        )
    if "noop" in best:
        # What no Python work can beat: capture's own PostgreSQL time plus the floor's whole cost.
        floor = best["noop"]
        floor_ms = (floor["cpu"]["gunicorn"] + floor["cpu"]["postgres"]) / max(1, floor["created_201"]) * 1000
        pg_ms = cap["cpu"]["postgres"] / max(1, cap["created_201"]) * 1000
        print(
            f"ceiling if capture's own Python cost nothing: {os.cpu_count()} cores / ({pg_ms:.2f} ms PostgreSQL "
            f"+ {floor_ms:.2f} ms floor) = {os.cpu_count() * 1000 / (pg_ms + floor_ms):.0f} orders/s"
        )
    print(f"relay kicks left in Redis and removed: {clear_relay_queue(args.redis_url)}")
    print(f"machine at the end: {machine()}")
    print(f"verification: {'OK' if ok else 'FAILED'}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
