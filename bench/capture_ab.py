"""Two checkouts' order capture side by side, under the same load at the same time.

    .venv/bin/python bench/capture_ab.py --a /path/to/base --b . --runs 3 --duration 30
    .venv/bin/python bench/capture_ab.py --a . --a-app bench.capture:baseline_app   # vs the baseline

This VM's speed drifts by a quarter from one minute to the next, so runs of one checkout after
the other cannot tell a 5 % change from the noise. Here both checkouts serve at once (gunicorn
gthread 2×4 each, on their own ports) and each gets its own wrk with half the connections: whatever
the machine does to one it does to the other. Reported per checkout: CPU per order of its gunicorn
workers and of its PostgreSQL backends (told apart by application_name), and orders/s, which is
no comparison of throughput: it depends on how each server's connections land on its workers.
The ports swap between runs. `--a-app bench.capture:baseline_app` serves the plain DRF baseline of
bench/capture.py as A: capture against the baseline, both measured at the same moment.

Uses bench/capture.py's database, seed, API key and request mix; run that once first.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import capture as cap  # noqa: E402

PORTS = (8141, 8142)


def serve(source: Path, app: str, port: int, name: str, args) -> subprocess.Popen:
    return cap.start_gunicorn(
        app,
        args.config,
        args.database_url,
        args.redis_url,
        source,
        args.worker_connections,
        port=port,
        log_name=f"gunicorn-ab-{name}.log",
        env_extra={"PGAPPNAME": f"ab-{name}"},  # libpq: tells this server's PostgreSQL backends apart
    )


def wrk(port: int, prefix: str, key: str, seconds: float, connections: int) -> subprocess.Popen:
    lua = cap.OUT_DIR / f"capture-ab-{port}.lua"
    lua.write_text(
        cap.WRK_LUA
        % {"key": key, "prefix": prefix, "n_skus": cap.N_SKUS, "n_customers": cap.N_CUSTOMERS, "path": cap.ORDERS_PATH}
    )
    cmd = [shutil.which("wrk"), "-t1", f"-c{connections}", f"-d{round(seconds)}s", "--timeout", "10s"]
    cmd += ["-s", str(lua), f"http://{cap.HOST}:{port}"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def created(proc: subprocess.Popen) -> int:
    out = proc.communicate()[0]
    line = next(x for x in out.splitlines() if x.startswith("BENCH "))
    return int(dict(kv.split("=") for kv in line.split()[1:])["created"])


def cpu(server: subprocess.Popen, name: str) -> tuple[float, float]:
    from django.db import connection

    gunicorn = sum(cap._proc_cpu(pid) for pid in [server.pid, *cap._children(server.pid)])
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", [f"ab-{name}"])
        postgres = sum(cap._proc_cpu(pid) for (pid,) in cursor.fetchall())
    return gunicorn, postgres


def version(source: Path) -> str:
    def git(*argv: str) -> str:
        return subprocess.run(["git", "-C", str(source), *argv], capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--", "oms", "orders", "inventory", "routing", "returns")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", type=Path, required=True, help="checkout A (e.g. the base)")
    parser.add_argument("--b", type=Path, default=cap.ROOT, help="checkout B (default: this one)")
    parser.add_argument("--a-app", default="oms.wsgi", help="A's WSGI app (bench.capture:baseline_app: the baseline)")
    parser.add_argument("--b-app", default="oms.wsgi")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=4)
    parser.add_argument("--connections", type=int, default=8, help="per checkout")
    parser.add_argument("--config", default="gthread:2x4", help="gunicorn setup per checkout")
    parser.add_argument(
        "--worker-connections", type=int, default=8, help="per gunicorn worker (> threads, or keep-alive is off)"
    )
    parser.add_argument("--database-url", default=cap.DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=cap.DEFAULT_REDIS_URL)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed (apt-get install -y wrk)")
    cap.setup_django(args.database_url, args.redis_url)
    key = cap.KEY_FILE.read_text().strip()
    sources = {"A": args.a.resolve(), "B": args.b.resolve()}
    apps = {"A": args.a_app, "B": args.b_app}
    for name, source in sources.items():
        print(f"{name} = {apps[name]} from {source} ({version(source)})")
    print(f"each: gunicorn {args.config}, {args.connections} connections, {args.duration:.0f} s per run")
    tag = time.strftime("ab%m%d%H%M%S")
    results: dict[str, list[tuple[float, float, float]]] = {"A": [], "B": []}
    for run in range(args.runs):
        ports = dict(zip(("A", "B"), PORTS if run % 2 == 0 else PORTS[::-1], strict=True))
        servers = {name: serve(sources[name], apps[name], ports[name], name, args) for name in sources}
        try:
            warm = [wrk(ports[n], f"{tag}-{run}-{n}-w-", key, args.warmup, args.connections) for n in sources]
            for proc in warm:
                created(proc)
            before = {name: cpu(servers[name], name) for name in sources}
            loads = {n: wrk(ports[n], f"{tag}-{run}-{n}-m-", key, args.duration, args.connections) for n in sources}
            orders = {name: created(proc) for name, proc in loads.items()}
            after = {name: cpu(servers[name], name) for name in sources}
        finally:
            for proc in servers.values():
                cap.stop_gunicorn(proc)
        line = []
        for name in sources:
            n = max(orders[name], 1)
            g = (after[name][0] - before[name][0]) * 1000 / n
            p = (after[name][1] - before[name][1]) * 1000 / n
            results[name].append((orders[name] / args.duration, g, p))
            line.append(f"{name}: {orders[name] / args.duration:6.1f} orders/s, {g:.2f} + {p:.2f} = {g + p:.2f} ms")
        print(f"run {run + 1}: " + " | ".join(line), flush=True)
    med = {n: [statistics.median(x[i] for x in results[n]) for i in range(3)] for n in results}
    for name in sources:
        rps, g, p = med[name]
        print(f"median {name}: {rps:6.1f} orders/s, CPU per order {g:.2f} + {p:.2f} = {g + p:.2f} ms")
    ratio = (med["A"][1] + med["A"][2]) / (med["B"][1] + med["B"][2])
    print(f"B costs {1 / ratio:.3f}× A's CPU per order (gunicorn {med['B'][1] / med['A'][1]:.3f}×,")
    print(f"PostgreSQL {med['B'][2] / med['A'][2]:.3f}×)")
    # Not a throughput comparison: how each server's keep-alive connections land on its two
    # workers (one may hold most, and the GIL then holds that server to one core) decides the
    # split of the machine between them; the CPU each order costs does not depend on it.
    print(f"orders/s: A {med['A'][0]:.1f}, B {med['B'][0]:.1f} (compare CPU per order, not these)")
    print(f"relay kicks removed from Redis: {cap.clear_relay_queue(args.redis_url)}")


if __name__ == "__main__":
    main()
