"""What each console page and action needs. The roles (groups) in `oms.roles` grant these:
CSR and Supervisor have all of them, Merchant too; a user without them sees a 403 page.

Merchant screens (network, catalogue, routing profiles, API keys, hold rules) live in the admin
and need the merchant's add/change permissions there, which CSRs do not have.
"""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

VIEW_ORDERS = "orders.view_order"  # search, order page, queues
ACT_ON_ORDERS = "orders.change_order"  # cancel, hold, release, address, note, re-route, resend
VIEW_CUSTOMERS = "orders.view_customer"
VIEW_STOCK = "inventory.view_stock"  # inventory lookup
CREATE_RETURN = "returns.add_return"  # returns and exchanges
RECEIVE_RETURN = "returns.change_return"  # receive and inspect (as the returns admin's actions)
APPEASE = "returns.add_appeasement"  # within the role's limit (the service enforces it)
APPROVE_APPEASEMENT = "returns.approve_appeasement"  # supervisors
# Any one of these marks a merchant: the console links them to the admin's configuration.
MERCHANT_PERMISSIONS = ("inventory.change_location", "oms.change_apikey", "routing.change_routingprofile")

LOGIN_URL = "console:login"


def console_view(*perms: str):
    """Log in first (to the console's own page), then every permission in `perms` or a 403."""

    def decorate(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            missing = [p for p in perms if not request.user.has_perm(p)]
            if missing:
                return render(request, "console/forbidden.html", {"missing": missing}, status=403)
            return view(request, *args, **kwargs)

        return login_required(wrapped, login_url=LOGIN_URL)

    return decorate


def is_merchant(user) -> bool:
    return user.is_superuser or any(user.has_perm(p) for p in MERCHANT_PERMISSIONS)
