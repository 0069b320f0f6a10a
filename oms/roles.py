"""Back-office roles as Django permission groups: who may see and change what in the admin.

The groups are data (`GROUP_PERMISSIONS`); `ensure_groups()` creates them and grants the
listed permissions. It is idempotent and only ever adds: permissions a merchant granted to a
group by hand in the admin are kept.
"""

from __future__ import annotations

from django.apps import apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission
from django.db import transaction

CSR = "CSR"
SUPERVISOR = "Supervisor"
MERCHANT = "Merchant"
STORE_ASSOCIATE = "Store associate"
GROUP_NAMES = (CSR, SUPERVISOR, MERCHANT, STORE_ASSOCIATE)

INVENTORY_MODELS = (
    "location",
    "item",
    "channel",
    "stock",
    "incomingsupply",
    "stockmovement",
    "reservation",
)
# What merchants configure; the rest (ledger, cart reservations) they only read.
MERCHANT_MANAGED = (
    "inventory.location",
    "inventory.item",
    "inventory.channel",
    "inventory.stock",
    "inventory.incomingsupply",
    "oms.apikey",
)


def _perms(actions: tuple[str, ...], models: tuple[str, ...]) -> frozenset[str]:
    """{"app_label.action_model", …} for every action × "app_label.model"."""
    out = set()
    for label in models:
        app_label, model = label.split(".")
        out.update(f"{app_label}.{action}_{model}" for action in actions)
    return frozenset(out)


ORDER_MODELS = (
    "order",
    "orderline",
    "allocation",
    "payment",
    "orderhold",
    "orderevent",
    "customer",
    "holdrule",
    "fulfillment",
    "shipment",
    "trackingevent",
)

RETURN_MODELS = (
    "return",
    "returnline",
    "returnreceipt",
    "returnreceiptline",
    "refund",
    "appeasement",
    "returnreason",
    "appeasementreason",
    "returnpolicy",
    "appeasementlimit",
)
# Return configuration merchants manage: reason codes, channel policies, appeasement limits.
RETURN_CONFIG = (
    "returns.returnreason",
    "returns.appeasementreason",
    "returns.returnpolicy",
    "returns.appeasementlimit",
)

_CSR_PERMS = (
    _perms(("view",), tuple(f"inventory.{m}" for m in INVENTORY_MODELS))
    | _perms(("view",), tuple(f"orders.{m}" for m in ORDER_MODELS))
    | _perms(("view",), tuple(f"returns.{m}" for m in RETURN_MODELS))
    # CSRs cancel, hold and release orders (the admin's order actions need change_order);
    # they create, authorise, receive and cancel returns and appease within their limit.
    | {"orders.change_order", "returns.add_return", "returns.change_return", "returns.add_appeasement"}
)
# Supervisors also override return windows and refunds, approve appeasements, retry refunds.
_SUPERVISOR_RETURNS = {
    "returns.override_return_window",
    "returns.override_refund",
    "returns.approve_appeasement",
    "returns.retry_refund",
}

# Group name -> permissions ("app_label.codename").
GROUP_PERMISSIONS: dict[str, frozenset[str]] = {
    CSR: _CSR_PERMS,
    SUPERVISOR: _CSR_PERMS | {"inventory.change_stock"} | _SUPERVISOR_RETURNS,
    MERCHANT: _CSR_PERMS
    | _perms(("add", "change", "view"), (*MERCHANT_MANAGED, "orders.holdrule", "orders.carrier", *RETURN_CONFIG))
    # who works which store's queue
    | _perms(("add", "change", "delete", "view"), ("orders.storeassociate",)),
    # The store app (/store/) for the stores a user is a member of (orders.StoreAssociate);
    # no admin access.
    STORE_ASSOCIATE: frozenset({"orders.work_store_queue"}),
}


def _ensure_permission_rows() -> None:
    """Permissions are normally created after `migrate`; make sure they exist regardless."""
    for app_label in {p.split(".")[0] for perms in GROUP_PERMISSIONS.values() for p in perms}:
        create_permissions(apps.get_app_config(app_label), verbosity=0)


def _lookup(names: set[str]) -> dict[str, Permission]:
    rows = Permission.objects.filter(
        content_type__app_label__in={n.split(".")[0] for n in names},
        codename__in={n.split(".")[1] for n in names},
    ).select_related("content_type")
    found = {f"{p.content_type.app_label}.{p.codename}": p for p in rows}
    return {name: perm for name, perm in found.items() if name in names}


@transaction.atomic
def ensure_groups() -> dict[str, Group]:
    """Create the role groups (if missing) and grant them their permissions. Idempotent."""
    wanted = {p for perms in GROUP_PERMISSIONS.values() for p in perms}
    found = _lookup(wanted)
    if len(found) != len(wanted):
        _ensure_permission_rows()
        found = _lookup(wanted)
    missing = sorted(wanted - found.keys())
    if missing:
        raise LookupError(f"Unknown permission(s): {', '.join(missing)}")
    groups = {}
    for name, perms in GROUP_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*(found[p] for p in perms))
        groups[name] = group
    return groups
