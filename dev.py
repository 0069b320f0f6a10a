#!/usr/bin/env python3
"""Set up and run the OMS on a fresh machine with only Python 3.11.

python3 dev.py run     install, migrate, load demo data, serve on http://127.0.0.1:8000
                       (and the sandbox carrier on http://127.0.0.1:8070)
python3 dev.py test    install (with test tools) and run the whole test suite
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"


def sh(*args: str, env: dict | None = None) -> None:
    subprocess.run(args, cwd=ROOT, check=True, env={**os.environ, **(env or {})})


def ensure_venv(lock: str) -> None:
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"Python 3.11 is required (this is {sys.version.split()[0]}).")
    if not PY.exists():
        print("Creating .venv …", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / lock).read_bytes()).hexdigest()
    stamp = VENV / f".installed-{lock}"
    if stamp.exists() and stamp.read_text() == digest:
        return
    print(f"Installing pinned dependencies from {lock} …", flush=True)
    sh(str(PY), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--require-hashes", "-r", lock)
    stamp.write_text(digest)


def run() -> None:
    ensure_venv("requirements.lock")
    env = {"OMS_DEBUG": os.environ.get("OMS_DEBUG", "1")}
    manage = [str(PY), "manage.py"]
    sh(*manage, "migrate", "--noinput", "-v0", env=env)
    sh(*manage, "seed_demo", env=env)
    # The built-in sandbox carrier beside the server (seed_demo configured it as SANDBOX), at
    # 120× speed and pushing tracking back to the OMS (no beat runs without Redis).
    carrier = subprocess.Popen(
        [*manage, "run_sandbox_carrier", "--port", "8070", "--speed", "120", "--webhook-url",
         "http://127.0.0.1:8000/api/v1/carriers/SANDBOX/tracking/", "--webhook-secret", "sandbox-demo-webhook-secret"],
        cwd=ROOT,
        env={**os.environ, **env},
    )  # fmt: skip
    try:
        sh(*manage, "runserver", "127.0.0.1:8000", env=env)
    finally:
        carrier.terminate()


def test(extra: list[str]) -> None:
    ensure_venv("requirements-dev.lock")
    workers = os.environ.get("PYTEST_WORKERS", "auto")
    args = [str(PY), "-m", "pytest", "-n", workers, *extra]
    sys.exit(subprocess.run(args, cwd=ROOT).returncode)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "run":
        run()
    elif command == "test":
        test(sys.argv[2:])
    else:
        sys.exit(__doc__)
