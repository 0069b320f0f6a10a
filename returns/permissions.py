"""Who may do the exceptional things (override a window or a refund, approve an appeasement).

Checked in the services, not only in the UI: the actor must be a person (a Django user) who
holds the permission. API keys and tasks never may."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from oms.actor import Actor
from oms.errors import PermissionDenied

OVERRIDE_WINDOW = "returns.override_return_window"
OVERRIDE_REFUND = "returns.override_refund"
APPROVE_APPEASEMENT = "returns.approve_appeasement"
RETRY_REFUND = "returns.retry_refund"


def user_of(actor: Actor):
    if actor.user_id is None:
        return None
    return get_user_model().objects.filter(pk=actor.user_id, is_active=True).first()


def require_permission(actor: Actor, perm: str, *, action: str, field: str | None = None):
    """The actor's user, if they hold `perm`; else PermissionDenied naming what was refused."""
    user = user_of(actor)
    if user is None or not user.has_perm(perm):
        raise PermissionDenied(
            f"{action} needs the '{perm}' permission (a supervisor).",
            fields={field: "Not permitted for this user or key."} if field else None,
        )
    return user
