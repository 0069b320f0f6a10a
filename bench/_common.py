"""Shared helpers for the benchmark scripts (not tests): Django setup, percentiles, constants."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"
KEY_FILE = OUT_DIR / "key.txt"

# The large network made by seed_large.py.
N_LOCATIONS = 200
N_SKUS = 5_000
CHANNEL = "web"
LOC_CODE = "bench-loc-{:03d}"
SKU = "BENCH-{:05d}"


def require_postgres_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit(
            "Set DATABASE_URL to a PostgreSQL database, e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/oms_bench"
        )
    return url


def setup_django(*, quiet_logs: bool = True) -> None:
    """Configure Django for the benchmark database (DEBUG off unless OMS_DEBUG is set)."""
    require_postgres_url()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oms.settings")
    import django

    django.setup()
    if quiet_logs:
        # Keep the cost of formatting each request log line (as in production) but send the
        # lines to /dev/null so the figures stay readable.
        devnull = open(os.devnull, "w")  # noqa: SIM115 - lives for the whole process
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(devnull)


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def summary_ms(samples_s: list[float]) -> dict[str, float]:
    values = sorted(s * 1000 for s in samples_s)
    return {
        "n": len(values),
        "mean": sum(values) / len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": values[-1],
    }


def fmt_summary(label: str, s: dict[str, float]) -> str:
    return (
        f"{label:<44} n={s['n']:<6} mean={s['mean']:6.2f}  p50={s['p50']:6.2f}  "
        f"p95={s['p95']:6.2f}  p99={s['p99']:6.2f}  max={s['max']:7.2f} ms"
    )


def machine() -> str:
    """Cores and load average: other work on the machine shows up in every figure."""
    one, five, _ = os.getloadavg()
    return f"{os.cpu_count()} cores, load average {one:.2f} (1 min) {five:.2f} (5 min)"


def read_key() -> str:
    if not KEY_FILE.exists():
        sys.exit(f"No API key at {KEY_FILE}: run bench/seed_large.py first.")
    return KEY_FILE.read_text().strip()


def parse_config(spec: str) -> tuple[str, int, int]:
    """'sync:4' → (sync, 4 workers, 1 thread); 'gthread:2x4' → (gthread, 2 workers, 4 threads)."""
    kind, _, shape = spec.partition(":")
    workers, _, threads = shape.partition("x")
    return kind, int(workers), int(threads or 1)


def gunicorn_command(
    spec: str, *, bind: str, app: str = "oms.wsgi", chdir: Path = ROOT, worker_connections: int | None = None
) -> list[str]:
    """The gunicorn command line for a setup such as 'gthread:2x4', from this virtualenv.

    `worker_connections` caps the connections one gthread worker holds. Without it, the 16
    keep-alive connections of one load generator may land mostly on one worker, which the GIL
    then holds to one core: the same code measured 700 or 1,400 availability reads a second
    from one run to the next (bench/README.md)."""
    kind, workers, threads = parse_config(spec)
    cmd = [str(Path(sys.executable).parent / "gunicorn"), app, "-w", str(workers), "-k", kind]
    cmd += ["-b", bind, "--chdir", str(chdir), "--log-level", "warning"]
    if kind == "gthread":
        cmd += ["--threads", str(threads)]
        if worker_connections:
            cmd += ["--worker-connections", str(worker_connections)]
    return cmd
