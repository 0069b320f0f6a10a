"""Payments: the payment gateway adapter (refunds leave through it), a deterministic sandbox
gateway (in-process, or as its own HTTP service: `manage.py run_sandbox_gateway`), and the
service that moves a payment's refunded amount once the gateway confirms."""
