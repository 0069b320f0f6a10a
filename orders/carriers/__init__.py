"""Carriers: labels and tracking for what fulfilments ship.

- `adapters.py`  the carrier adapter interface (rate, create label, void label, track), the
                 plain data it speaks, its errors, and the registry of adapter kinds.
- `sandbox.py`   the built-in sandbox carrier: a small HTTP service with deterministic progress
                 (`manage.py run_sandbox_carrier`), and `SandboxAdapter` that talks to it.
- `services.py`  buy / void / replace a label, record tracking (one path for polling and for
                 the inbound carrier webhook), poll in batches.
- `models.py`    Carrier (configured in the admin), TrackingEvent, CarrierWebhookReceipt;
                 `Shipment` itself lives in `orders.models`.
"""
