"""Appeasements: a goodwill refund (to the order's payments, through the gateway) or store
credit, without a return, with a reason code and a limit per role.

The limit is enforced here, whatever the caller: a person may give up to the highest
`AppeasementLimit` of their groups (a superuser has none); an API key up to
`APPEASEMENT_API_KEY_LIMIT`. Above the limit the appeasement is refused, or, when asked for,
recorded as waiting for approval by someone who holds `returns.approve_appeasement` and whose
own limit covers it (never the requester).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from oms.actor import Actor, ActorType
from oms.errors import InvalidTransition, PermissionDenied, ValidationFailed

from . import events
from .locks import appeasement_for_update, order_for_update
from .models import Appeasement, AppeasementLimit, AppeasementReason, AppeasementStatus, new_number
from .permissions import APPROVE_APPEASEMENT, require_permission, user_of
from .refunds import CENT, issue_refunds, refundable_total


def appeasement_limit(actor: Actor) -> Decimal | None:
    """The most this actor may give in one appeasement without approval (None: no limit)."""
    if actor.type == ActorType.API_KEY:
        try:
            return Decimal(settings.APPEASEMENT_API_KEY_LIMIT)
        except InvalidOperation:
            return Decimal(0)
    user = user_of(actor)
    if user is None:
        return Decimal(0)
    if user.is_superuser:
        return None
    limits = AppeasementLimit.objects.filter(role__in=user.groups.values("name")).values_list("max_amount", flat=True)
    return max(limits, default=Decimal(0))


def _within(amount: Decimal, limit: Decimal | None) -> bool:
    return limit is None or amount <= limit


def _issue(appeasement: Appeasement, actor: Actor) -> None:
    order = appeasement.order
    if appeasement.kind == Appeasement.Kind.REFUND:
        available = refundable_total(order)
        if appeasement.amount > available:
            raise ValidationFailed(
                f"At most {available} {order.currency} can be refunded on order {order.number} "
                "(captured, less refunded and pending refunds).",
                fields={"amount": f"At most {available}."},
            )
        issue_refunds(
            order=order,
            amount=appeasement.amount,
            actor=actor,
            breakdown={
                "appeasement": appeasement.pk,
                "reason": appeasement.reason.code,
                "amount": str(appeasement.amount),
            },
            appeasement=appeasement,
        )
    else:
        appeasement.credit_reference = new_number("SC")
    appeasement.issue()
    appeasement.save(update_fields=["status", "credit_reference", "decided_by", "decided_at", "decision_note"])
    events.appeasement_issued(appeasement, actor)


@transaction.atomic
def appeasement_create(
    *,
    order_number: str,
    kind: str,
    amount: Decimal,
    reason: str,
    actor: Actor,
    note: str = "",
    request_approval: bool = False,
) -> Appeasement:
    """Give `amount` back on an order as a refund or store credit. Within the actor's limit it is
    issued at once; above it, it is refused (403) unless `request_approval`, when it waits."""
    if kind not in Appeasement.Kind.values:
        raise ValidationFailed(
            f"Unknown appeasement kind '{kind}'.", fields={"kind": f"One of {', '.join(Appeasement.Kind.values)}."}
        )
    if amount <= 0 or amount != amount.quantize(CENT):
        raise ValidationFailed("The amount must be positive, in cents.", fields={"amount": "> 0, two decimals."})
    code = AppeasementReason.objects.filter(code=reason, active=True).first()
    if code is None:
        raise ValidationFailed(f"Unknown appeasement reason '{reason}'.", fields={"reason": "Unknown reason code."})
    order = order_for_update(number=order_number)
    limit = appeasement_limit(actor)
    if not _within(amount, limit) and not request_approval:
        raise PermissionDenied(
            f"{amount} {order.currency} is above your appeasement limit of {limit}; ask for approval.",
            fields={"amount": f"At most {limit} without approval."},
        )
    if kind == Appeasement.Kind.REFUND and amount > refundable_total(order):
        raise ValidationFailed(
            f"At most {refundable_total(order)} {order.currency} can be refunded on order {order.number} "
            "(captured, less refunded and pending refunds).",
            fields={"amount": f"At most {refundable_total(order)}."},
        )
    appeasement = Appeasement.objects.create(
        order=order,
        kind=kind,
        amount=amount,
        currency=order.currency,
        reason=code,
        note=note.strip()[:500],
        **actor.as_fields(),
    )
    if _within(amount, limit):
        _issue(appeasement, actor)
    else:
        events.appeasement_requested(appeasement, actor, limit=limit)
    return appeasement


@transaction.atomic
def appeasement_approve(*, appeasement_id: int, actor: Actor, note: str = "") -> Appeasement:
    """Approve a waiting appeasement: the approver holds the permission, is not the requester,
    and has a limit that covers the amount."""
    user = require_permission(actor, APPROVE_APPEASEMENT, action="Approving an appeasement")
    appeasement = appeasement_for_update(appeasement_id)
    if appeasement.status != AppeasementStatus.PENDING_APPROVAL:
        raise InvalidTransition(f"Appeasement {appeasement.pk} is {appeasement.status}; nothing to approve.")
    if appeasement.actor_user_id == user.pk:
        raise PermissionDenied("You cannot approve your own appeasement.")
    limit = appeasement_limit(actor)
    if not _within(appeasement.amount, limit):
        raise PermissionDenied(
            f"{appeasement.amount} {appeasement.currency} is above your appeasement limit of {limit}.",
            fields={"amount": f"Your limit is {limit}."},
        )
    appeasement.decided_by, appeasement.decided_at = actor.label, timezone.now()
    appeasement.decision_note = note.strip()[:300]
    _issue(appeasement, actor)
    return appeasement


@transaction.atomic
def appeasement_decline(*, appeasement_id: int, actor: Actor, note: str) -> Appeasement:
    require_permission(actor, APPROVE_APPEASEMENT, action="Declining an appeasement")
    if not note.strip():
        raise ValidationFailed("Say why it is declined.", fields={"note": "This field is required."})
    appeasement = appeasement_for_update(appeasement_id)
    if appeasement.status != AppeasementStatus.PENDING_APPROVAL:
        raise InvalidTransition(f"Appeasement {appeasement.pk} is {appeasement.status}; nothing to decline.")
    appeasement.decline()
    appeasement.decided_by, appeasement.decided_at = actor.label, timezone.now()
    appeasement.decision_note = note.strip()[:300]
    appeasement.save(update_fields=["status", "decided_by", "decided_at", "decision_note"])
    events.appeasement_declined(appeasement, actor)
    return appeasement
