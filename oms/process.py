"""Settings for a long-running web process, applied once its code is loaded."""

import gc


def settle_collector() -> None:
    """Freeze what is loaded so far (Django, the apps, every view: it lives as long as the
    process) out of the cyclic collector's sight, and collect the youngest generation every
    10,000 net allocations instead of 700 (one order capture makes thousands). Under order
    capture the collector's share of a web worker's CPU went from 4.3 % to 2.1 %
    (bench/CAPTURE.md)."""
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
