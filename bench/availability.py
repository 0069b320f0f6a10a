"""Availability (ATP) read path on the large network: in-process and over HTTP.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/oms_bench .venv/bin/python bench/availability.py

(a) in-process: inventory.selectors.channel_availability for 20 random SKUs on channel "web"
    (200 locations, so 4,000 stock rows per call), then the whole Django request path
    (middleware, API-key auth, DRF view, JSON rendering) through django.test.Client.
(b) over HTTP: gunicorn (DEBUG off) under wrk with 16 connections for each server
    configuration given with --configs; the best one is reported last. wrk runs on the same
    machine and takes CPU from the server. Without wrk, a small threaded Python load generator
    (http.client keep-alive connections) is used instead.

Run bench/seed_large.py first. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CHANNEL,
    N_SKUS,
    OUT_DIR,
    ROOT,
    SKU,
    fmt_summary,
    gunicorn_command,
    machine,
    read_key,
    require_postgres_url,
    setup_django,
    summary_ms,
)

SKUS_PER_CALL = 20
HOST, PORT = "127.0.0.1", 8141
DEFAULT_CONFIGS = "sync:4,sync:3,gthread:2x4,gthread:4x2"
REDIS: str = ""
TTL: float | None = None
WORKER_CONNECTIONS: int | None = None


def sku_sets(n: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    population = [SKU.format(i) for i in range(1, N_SKUS + 1)]
    return [rng.sample(population, SKUS_PER_CALL) for _ in range(n)]


def path_for(skus: list[str]) -> str:
    return f"/api/v1/availability/?skus={','.join(skus)}&channel={CHANNEL}"


# --- (a) in-process ------------------------------------------------------------------------------


def bench_in_process(n_selector: int, n_client: int, warmup: int) -> dict[str, dict]:
    setup_django()
    from django.test import Client

    from inventory.models import Channel
    from inventory.selectors import channel_availability

    channel = Channel.objects.get(code=CHANNEL)
    n_locations = channel.locations.filter(active=True).count()
    print(
        f"channel {CHANNEL}: {n_locations} active locations → "
        f"{n_locations * SKUS_PER_CALL:,} stock rows per call of {SKUS_PER_CALL} SKUs"
    )
    results = {}

    sets = sku_sets(warmup + n_selector, seed=1)
    for skus in sets[:warmup]:
        channel_availability(channel=channel, skus=skus)
    samples = []
    cpu0 = time.process_time()
    for skus in sets[warmup:]:
        t0 = time.perf_counter()
        out = channel_availability(channel=channel, skus=skus)
        samples.append(time.perf_counter() - t0)
    cpu = (time.process_time() - cpu0) * 1000 / len(samples)
    assert len(out["items"]) == SKUS_PER_CALL
    results["selector"] = summary_ms(samples)
    print(fmt_summary("exact selector channel_availability", results["selector"]))
    print(f"{'':44} Python CPU {cpu:.1f} ms per call (the rest is PostgreSQL and waiting)")

    # The ATP cache (GET /availability/ answers from it): default TTL from a cold cache, so the
    # figure includes the misses a single caller causes; then every SKU cached (the hit path).
    from django.conf import settings

    from inventory import atp_cache
    from inventory import selectors as sel

    misses = [0]
    exact = sel._channel_summaries

    def counting(channel, item_ids):
        misses[0] += len(item_ids)
        return exact(channel, item_ids)

    sel._channel_summaries = counting
    atp_cache.reset()
    sets = sku_sets(n_selector, seed=5)
    samples = []
    cpu0 = time.process_time()
    for skus in sets:
        t0 = time.perf_counter()
        sel.cached_channel_availability(channel=channel, skus=skus)
        samples.append(time.perf_counter() - t0)
    cpu = (time.process_time() - cpu0) * 1000 / len(samples)
    results["cached_cold"] = summary_ms(samples)
    label = f"cached selector, TTL {settings.ATP_CACHE_SECONDS:g} s, cold"
    print(fmt_summary(label, results["cached_cold"]))
    print(f"{'':44} Python CPU {cpu:.2f} ms per call; {misses[0] / (len(sets) * SKUS_PER_CALL):.1%} of SKUs missed")
    settings.ATP_CACHE_SECONDS = 3600  # every SKU cached for the hit-path figures below
    atp_cache.reset()
    population = [SKU.format(i) for i in range(1, N_SKUS + 1)]
    for start in range(0, N_SKUS, 100):
        sel.cached_channel_availability(channel=channel, skus=population[start : start + 100])
    misses[0] = 0
    samples = []
    cpu0 = time.process_time()
    for skus in sets:
        t0 = time.perf_counter()
        sel.cached_channel_availability(channel=channel, skus=skus)
        samples.append(time.perf_counter() - t0)
    cpu = (time.process_time() - cpu0) * 1000 / len(samples)
    assert misses[0] == 0, misses
    results["cached_hit"] = summary_ms(samples)
    print(fmt_summary("cached selector, every SKU cached", results["cached_hit"]))
    print(f"{'':44} Python CPU {cpu:.2f} ms per call")

    client = Client(HTTP_AUTHORIZATION=f"Api-Key {read_key()}")
    sets = sku_sets(warmup + n_client, seed=2)
    for skus in sets[:warmup]:
        response = client.get(path_for(skus))
        assert response.status_code == 200, response.content[:500]
    samples = []
    cpu0 = time.process_time()
    for skus in sets[warmup:]:
        t0 = time.perf_counter()
        response = client.get(path_for(skus))
        samples.append(time.perf_counter() - t0)
        if response.status_code != 200:
            sys.exit(f"GET availability: {response.status_code} {response.content[:500]!r}")
    cpu = (time.process_time() - cpu0) * 1000 / len(samples)
    results["client"] = summary_ms(samples)
    print(fmt_summary("GET /api/v1/availability/ (Client), cached", results["client"]))
    print(f"{'':44} Python CPU {cpu:.2f} ms per request ({misses[0]} SKU misses)")
    sel._channel_summaries = exact
    return results


# --- (b) over HTTP -------------------------------------------------------------------------------


WRK_LUA = """
local paths = {%(paths)s}
local counter = 0
wrk.headers["Authorization"] = "Api-Key %(key)s"

function setup(thread)
  thread:set("offset", math.random(1, #paths))
end

function request()
  counter = counter + 1
  return wrk.format("GET", paths[((counter + offset) %% #paths) + 1])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%%d duration_us=%%d p50=%%.3f p95=%%.3f p99=%%.3f max=%%.3f "
    .. "connect=%%d read=%%d write=%%d status=%%d timeout=%%d\\n",
    summary.requests, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads) from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent not idle (all cores), from /proc/stat."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLK_TCK


def gunicorn_pids(master: int) -> list[int]:
    pids = [master]
    for task in Path(f"/proc/{master}/task").glob("*"):
        with contextlib.suppress(OSError):
            pids += [int(x) for x in (task / "children").read_text().split()]
    return pids


def postgres_backend_pids(url: str) -> list[int]:
    """Server processes of the benchmark database's client connections (the workers' ones)."""
    import dj_database_url
    import psycopg

    cfg = dj_database_url.parse(url)
    with psycopg.connect(url.replace("postgres://", "postgresql://", 1)) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'",
            [cfg["NAME"]],
        ).fetchall()
    return [pid for (pid,) in rows]


class CpuMeter:
    """CPU used during a run by gunicorn (master + workers), its PostgreSQL backends, the load
    generator (a reaped child) and the rest of the machine: figures that do not depend on what
    else runs on a shared machine as much as requests/s do."""

    def __init__(self, gunicorn_master: int, url: str):
        self.gunicorn = gunicorn_pids(gunicorn_master)
        self.postgres = postgres_backend_pids(url)

    def snapshot(self) -> tuple[float, float, float, float]:
        children = os.times()
        return (
            sum(proc_cpu_s(p) for p in self.gunicorn),
            sum(proc_cpu_s(p) for p in self.postgres),
            children.children_user + children.children_system,
            machine_busy_s(),
        )

    def per_request_ms(self, before, after, requests: int) -> dict[str, float]:
        gunicorn, postgres, loadgen, busy = (b - a for a, b in zip(before, after, strict=True))
        other = max(0.0, busy - gunicorn - postgres - loadgen)
        ms = 1000 / max(requests, 1)
        return {
            "cpu_gunicorn": gunicorn * ms,
            "cpu_postgres": postgres * ms,
            "cpu_loadgen": loadgen * ms,
            "cpu_other_s": other,
        }


def port_is_free() -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex((HOST, PORT)) != 0


def start_gunicorn(spec: str, url: str) -> subprocess.Popen:
    if not port_is_free():  # someone else's server would answer (and be measured) instead of ours
        sys.exit(f"{HOST}:{PORT} is in use: stop that server or pick another port with --port")
    cmd = gunicorn_command(spec, bind=f"{HOST}:{PORT}", worker_connections=WORKER_CONNECTIONS)
    env = {**os.environ, "DATABASE_URL": url, "OMS_DEBUG": "0", "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "WARNING"}
    if REDIS:
        env["REDIS_URL"] = REDIS
    if TTL is not None:
        env["ATP_CACHE_SECONDS"] = str(TTL)
    log = open(OUT_DIR / f"gunicorn-{spec.replace(':', '-')}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"gunicorn exited with {proc.returncode}; see {log.name}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{PORT}/healthz", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    stop_gunicorn(proc)
    sys.exit("gunicorn did not come up within 30 s")


def stop_gunicorn(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()  # SIGTERM: graceful shutdown of the master and its workers
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def clear_atp_cache(url: str) -> int:
    """Delete this database's ATP cache keys from the shared Redis (entries of an earlier run
    with a longer TTL would still be valid: nothing changed the stock since)."""
    if not REDIS:
        return 0
    import dj_database_url
    import redis

    client = redis.Redis.from_url(REDIS, socket_connect_timeout=2)
    keys = list(client.scan_iter(match=f"atp:{dj_database_url.parse(url)['NAME']}:*", count=5000))
    for start in range(0, len(keys), 5000):
        client.delete(*keys[start : start + 5000])
    return len(keys)


def check_one(key: str, skus: list[str]) -> None:
    req = urllib.request.Request(f"http://{HOST}:{PORT}{path_for(skus)}", headers={"Authorization": f"Api-Key {key}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = json.loads(r.read())
    assert r.status == 200 and len(body["items"]) == SKUS_PER_CALL, body


def run_wrk(key: str, paths: list[str], connections: int, duration: int, threads: int) -> dict:
    lua = OUT_DIR / "availability.lua"
    lua.write_text(WRK_LUA % {"paths": ",".join(json.dumps(p) for p in paths), "key": key})
    cmd = [
        shutil.which("wrk"),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "-s",
        str(lua),
        f"http://{HOST}:{PORT}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("BENCH "))
    fields = dict(kv.split("=") for kv in line.split()[1:])
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    requests = int(fields["requests"])
    seconds = int(fields["duration_us"]) / 1e6
    errors = sum(int(fields[k]) for k in ("connect", "read", "write", "timeout"))
    return {
        "rps": requests / seconds,
        "requests": requests,
        "p50": float(fields["p50"]),
        "p95": float(fields["p95"]),
        "p99": float(fields["p99"]),
        "max": float(fields["max"]),
        "errors": errors,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def run_python_load(key: str, paths: list[str], connections: int, duration: float) -> dict:
    """Fallback load generator: one thread per keep-alive connection (reconnects when the
    server closes, as gunicorn's sync workers do after every response)."""
    stop_at = time.perf_counter() + duration
    latencies: list[list[float]] = [[] for _ in range(connections)]
    failures = [0] * connections
    headers = {"Authorization": f"Api-Key {key}"}

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection(HOST, PORT, timeout=10)
        k = i * 7919
        while time.perf_counter() < stop_at:
            k += 1
            t0 = time.perf_counter()
            try:
                conn.request("GET", paths[k % len(paths)], headers=headers)
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
                if resp.will_close:
                    conn.close()
                    conn = http.client.HTTPConnection(HOST, PORT, timeout=10)
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(HOST, PORT, timeout=10)
            latencies[i].append(time.perf_counter() - t0)
            if not ok:
                failures[i] += 1
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    s = summary_ms([x for lat in latencies for x in lat])
    return {
        "rps": s["n"] / elapsed,
        "requests": s["n"],
        "p50": s["p50"],
        "p95": s["p95"],
        "p99": s["p99"],
        "max": s["max"],
        "errors": 0,
        "non2xx": sum(failures),
    }


def bench_http(configs: list[str], connections: int, duration: int, wrk_threads: int) -> dict:
    url = require_postgres_url()
    key = read_key()
    OUT_DIR.mkdir(exist_ok=True)
    paths = [path_for(skus) for skus in sku_sets(500, seed=3)]
    use_wrk = shutil.which("wrk") is not None
    tool = f"wrk -t{wrk_threads}" if use_wrk else "python threads (http.client)"
    print(
        f"load: {tool}, {connections} connections, {duration} s per configuration, "
        f"{len(paths)} distinct 20-SKU URLs; the load generator shares the machine's "
        f"{os.cpu_count()} cores with gunicorn and PostgreSQL"
    )
    results = {}
    for spec in configs:
        cleared = clear_atp_cache(url)
        if cleared:
            print(f"(cleared {cleared:,} ATP cache keys left by earlier runs: every run starts cold)")
        proc = start_gunicorn(spec, url)
        try:
            check_one(key, sku_sets(1, seed=4)[0])
            if use_wrk:  # warm every worker and connection, then measure
                run_wrk(key, paths, connections, 3, wrk_threads)
                meter = CpuMeter(proc.pid, url)
                before = meter.snapshot()
                r = run_wrk(key, paths, connections, duration, wrk_threads)
            else:
                run_python_load(key, paths, connections, 3)
                meter = CpuMeter(proc.pid, url)
                before = meter.snapshot()
                r = run_python_load(key, paths, connections, duration)
            r.update(meter.per_request_ms(before, meter.snapshot(), r["requests"]))
            if not use_wrk:  # the load generator ran in this process, not in a child
                r["cpu_loadgen"] = float("nan")
        finally:
            stop_gunicorn(proc)
        results[spec] = r
        print(
            f"gunicorn {spec:<12} {r['rps']:8.0f} req/s  p50={r['p50']:6.2f}  "
            f"p95={r['p95']:6.2f}  p99={r['p99']:6.2f}  max={r['max']:7.2f} ms  "
            f"(n={r['requests']}, socket errors={r['errors']}, non-2xx={r['non2xx']})"
        )
        server_ms = r["cpu_gunicorn"] + r["cpu_postgres"]
        print(
            f"{'':21} CPU per request: gunicorn {r['cpu_gunicorn']:.1f} ms + postgres "
            f"{r['cpu_postgres']:.1f} ms (+ load generator {r['cpu_loadgen']:.1f} ms) → at most "
            f"~{os.cpu_count() * 1000 / server_ms:.0f} req/s on {os.cpu_count()} cores with nothing "
            f"else running; other processes used {r['cpu_other_s']:.1f} CPU-s of "
            f"{os.cpu_count() * duration} during the run"
        )
    best = max(results, key=lambda k: results[k]["rps"])
    print(f"best: gunicorn {best} at {results[best]['rps']:.0f} req/s")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-selector", type=int, default=2000)
    parser.add_argument("--n-client", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument(
        "--configs",
        default=DEFAULT_CONFIGS,
        help="gunicorn setups, comma-separated: sync:<workers> or gthread:<workers>x<threads>",
    )
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--worker-connections",
        type=int,
        help="gunicorn --worker-connections for gthread setups: at most this many connections per worker "
        "(e.g. 8 for 16 connections on 2 workers, so one worker cannot take most of them)",
    )
    parser.add_argument("--duration", type=int, default=20, help="seconds per configuration")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14"),
        help="the shared ATP cache of the gunicorn workers ('' for a process-local cache)",
    )
    parser.add_argument(
        "--ttl", type=float, default=None, help="ATP_CACHE_SECONDS for the server (default: the setting, 60)"
    )
    parser.add_argument("--port", type=int, default=8141)
    parser.add_argument("--skip-in-process", action="store_true")
    parser.add_argument("--skip-http", action="store_true")
    global REDIS, TTL, PORT, WORKER_CONNECTIONS
    args = parser.parse_args()
    REDIS, TTL, PORT, WORKER_CONNECTIONS = args.redis_url, args.ttl, args.port, args.worker_connections
    if REDIS:
        os.environ["REDIS_URL"] = REDIS  # the in-process runs use the same shared cache
    if TTL is not None:
        os.environ["ATP_CACHE_SECONDS"] = str(TTL)
    require_postgres_url()
    print(f"== availability benchmark, {time.strftime('%Y-%m-%d %H:%M')} ==")
    print(f"machine: {machine()}")
    if not args.skip_in_process:
        print("-- (a) in-process --")
        bench_in_process(args.n_selector, args.n_client, args.warmup)
    if not args.skip_http:
        print("-- (b) over HTTP --")
        bench_http(
            [c.strip() for c in args.configs.split(",") if c.strip()],
            args.connections,
            args.duration,
            args.wrk_threads,
        )
    print(f"machine at the end: {machine()}")


if __name__ == "__main__":
    main()
