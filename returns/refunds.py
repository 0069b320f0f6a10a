"""Refunds: what returned units are worth, what the channel's policy keeps back, and the money
going back to the order's payments through the payment gateway.

A refund is a row first (pending, with its own idempotency key) and an outbox task in the same
transaction; the task calls the gateway outside any transaction and records the answer. The
payment's refunded amount moves only when the gateway confirms, and while a refund is pending
its amount already counts against what the payment can still refund, so two refunds can never
together exceed what was captured.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from oms.actor import Actor
from oms.errors import Conflict, InvalidTransition, NotFound, ValidationFailed
from oms.outbox import outbox_enqueue_task
from orders.models import Order, OrderLine
from orders.payments.gateway import GatewayError, GatewayUnavailable, RefundRequest, get_gateway
from orders.payments.services import payment_record_refund

from . import events
from .locks import order_for_update, payments_for_update
from .models import (
    Appeasement,
    Condition,
    Refund,
    RefundStatus,
    Return,
    ReturnPolicy,
    ReturnReason,
    ReturnReceipt,
    ReturnStatus,
)
from .permissions import RETRY_REFUND, require_permission
from .selectors import refundable_by_payment

log = logging.getLogger(__name__)
CENT = Decimal("0.01")
SEND_TASK = "returns.send_refund"


def percent_of(amount: Decimal, percent: Decimal) -> Decimal:
    return (amount * percent / 100).quantize(CENT, rounding=ROUND_HALF_UP)


def spread(total: Decimal, weights: list[Decimal]) -> list[Decimal]:
    """Split `total` in proportion to `weights`, to the cent, remainder on the last share."""
    whole = sum(weights, Decimal(0))
    if whole == 0 or total == 0:
        return [Decimal(0)] * len(weights)
    shares = [(total * w / whole).quantize(CENT) for w in weights]
    shares[-1] += total - sum(shares, Decimal(0))
    return shares


def unit_credit(line: OrderLine, units: int, already: int) -> Decimal:
    """What the customer paid for `units` more units of `line` after `already` were credited:
    the unit price less its share of the line's discount, plus its share of the tax
    (`OrderLine.value_of`). Taken cumulatively, so crediting every unit of a line one at a
    time adds up to exactly the line's total, cent for cent."""
    return line.value_of(already + units) - line.value_of(already)


def deduction(
    *, policy: ReturnPolicy, reason: ReturnReason, condition: str, value: Decimal, has_exchange: bool
) -> tuple[Decimal, str]:
    """What the policy keeps back from `value`: (amount, why). Nothing for our own mistakes."""
    if reason.merchant_fault or value <= 0:
        return Decimal(0), ""
    if condition == Condition.SELLABLE and policy.restocking_fee_percent:
        if has_exchange and policy.fee_free_exchanges:
            return Decimal(0), ""
        return percent_of(value, policy.restocking_fee_percent), f"restocking fee {policy.restocking_fee_percent}%"
    if condition == Condition.DAMAGED and policy.damaged_deduction_percent:
        return percent_of(value, policy.damaged_deduction_percent), (
            f"returned damaged {policy.damaged_deduction_percent}%"
        )
    return Decimal(0), ""


def refundable_total(order: Order) -> Decimal:
    """Captured, less refunded, less pending refunds, over the order's payments (locks them)."""
    return sum(refundable_by_payment(payments_for_update(order)).values(), Decimal(0))


def issue_refunds(
    *,
    order: Order,
    amount: Decimal,
    actor: Actor,
    breakdown: dict,
    rma: Return | None = None,
    receipt: ReturnReceipt | None = None,
    appeasement: Appeasement | None = None,
) -> list[Refund]:
    """Record refunds for `amount` against the order's payments (oldest first, each up to what
    it can still refund) and start sending them after commit. The caller holds the order lock
    and has checked `amount` against `refundable_total`."""
    if amount <= 0:
        return []
    payments = payments_for_update(order)
    available = refundable_by_payment(payments)
    if amount > sum(available.values(), Decimal(0)):
        raise Conflict(f"Only {sum(available.values(), Decimal(0))} can still be refunded on order {order.number}.")
    refunds, left = [], amount
    for payment in payments:
        take = min(left, available[payment.pk])
        if take <= 0:
            continue
        refund = Refund.objects.create(
            order=order,
            payment=payment,
            rma=rma,
            receipt=receipt,
            appeasement=appeasement,
            amount=take,
            currency=order.currency,
            breakdown={**breakdown, "this_payment": str(take)},
            **actor.as_fields(),
        )
        _send_after_commit(refund, actor)
        refunds.append(refund)
        left -= take
        if left == 0:
            break
    return refunds


def _send_after_commit(refund: Refund, actor: Actor) -> None:
    outbox_enqueue_task(SEND_TASK, refund_id=refund.pk)
    events.refund_requested(refund, actor)


# --- Sending (the task) and the gateway's answer --------------------------------------------------


@dataclass(frozen=True)
class SendOutcome:
    status: str  # succeeded | failed | skipped | retry
    detail: str = ""


def refund_send(*, refund_id: int) -> SendOutcome:
    """Call the gateway for one pending refund (no transaction held open while it answers).
    Raises GatewayUnavailable for the caller to retry, until the refund's last attempt
    (`REFUND_MAX_ATTEMPTS`), which marks it failed instead."""
    refund = Refund.objects.select_related("payment", "order").filter(pk=refund_id).first()
    if refund is None or refund.status != RefundStatus.PENDING:
        return SendOutcome("skipped")
    Refund.objects.filter(pk=refund_id).update(attempts=F("attempts") + 1)
    final_attempt = refund.attempts + 1 >= settings.REFUND_MAX_ATTEMPTS
    request = RefundRequest(
        payment_reference=refund.payment.reference,
        payment_method=refund.payment.method,
        amount=refund.amount,
        currency=refund.currency,
        idempotency_key=str(refund.idempotency_key),
        order=refund.order.number,
    )
    actor = Actor.for_task(SEND_TASK)
    try:
        result = get_gateway().refund(request)
    except GatewayUnavailable as exc:
        if not final_attempt:
            raise
        refund_record_outcome(
            refund_id=refund_id, succeeded=False, failure_reason=f"gateway unavailable: {exc}", actor=actor
        )
        return SendOutcome("failed", str(exc))
    except GatewayError as exc:
        refund_record_outcome(refund_id=refund_id, succeeded=False, failure_reason=str(exc), actor=actor)
        return SendOutcome("failed", str(exc))
    refund_record_outcome(
        refund_id=refund_id,
        succeeded=result.succeeded,
        gateway_reference=result.reference,
        failure_reason="" if result.succeeded else f"{result.code}: {result.message}".strip(": "),
        actor=actor,
    )
    return SendOutcome("succeeded" if result.succeeded else "failed", result.reference or result.code)


@transaction.atomic
def refund_record_outcome(
    *, refund_id: int, succeeded: bool, actor: Actor, gateway_reference: str = "", failure_reason: str = ""
) -> Refund:
    """The gateway answered. Idempotent: a refund that is no longer pending is left as it is."""
    order_id = Refund.objects.filter(pk=refund_id).values_list("order_id", flat=True).first()
    if order_id is None:
        raise NotFound(f"No refund {refund_id}.")
    order = order_for_update(pk=order_id)
    payments_for_update(order)  # the lock order: order, payments, then refunds
    refund = Refund.objects.select_for_update(of=("self",)).select_related("rma", "appeasement").get(pk=refund_id)
    if refund.status != RefundStatus.PENDING:
        return refund
    refund.order = order
    refund.completed_at = timezone.now()
    if succeeded:
        refund.succeed()
        refund.gateway_reference = gateway_reference[:200]
        refund.save(update_fields=["status", "gateway_reference", "completed_at"])
        note = f"return {refund.rma.number}" if refund.rma_id else f"appeasement {refund.appeasement_id}"
        payment_record_refund(
            payment_id=refund.payment_id,
            amount=refund.amount,
            actor=actor,
            gateway_reference=refund.gateway_reference,
            note=note,
        )
        events.refund_issued(refund, actor)
    else:
        refund.fail()
        refund.failure_reason = failure_reason[:300] or "failed"
        refund.save(update_fields=["status", "failure_reason", "completed_at"])
        if refund.rma_id:
            Return.objects.filter(pk=refund.rma_id).update(refund_amount=F("refund_amount") - refund.amount)
        events.refund_failed(refund, actor)
    if refund.rma_id:
        rma = Return.objects.select_for_update(of=("self",)).select_related("order__channel").get(pk=refund.rma_id)
        settle_return(rma, actor)
    return refund


def settle_return(rma: Return, actor: Actor) -> None:
    """An inspected return is finished when its money is: refunded once every refund went
    through (failures retried), closed when there was nothing to refund. A refund that failed
    and was not retried keeps it inspected, waiting for a person."""
    if rma.status != ReturnStatus.INSPECTED:
        return
    refunds = list(rma.refunds.values_list("status", "retried_by"))
    if any(status == RefundStatus.PENDING for status, _ in refunds):
        return
    if any(status == RefundStatus.FAILED and retried is None for status, retried in refunds):
        return
    if any(status == RefundStatus.SUCCEEDED for status, _ in refunds):
        rma.refunded()
        rma.save(update_fields=["status", "updated_at"])
        events.return_changed(
            rma,
            actor,
            what="refunded",
            message=f"Return {rma.number} refunded: {rma.refund_amount} {rma.order.currency}",
        )
    else:
        rma.close()
        rma.save(update_fields=["status", "updated_at"])
        events.return_changed(rma, actor, what="closed", message=f"Return {rma.number} closed: nothing to refund")


@transaction.atomic
def refund_retry(*, refund_id: int, actor: Actor) -> Refund:
    """Send a failed refund again as a new refund (new idempotency key), if the payment can
    still take it. Needs the retry permission."""
    require_permission(actor, RETRY_REFUND, action="Retrying a refund")
    order_id = Refund.objects.filter(pk=refund_id).values_list("order_id", flat=True).first()
    if order_id is None:
        raise NotFound(f"No refund {refund_id}.")
    order = order_for_update(pk=order_id)
    available = refundable_by_payment(payments_for_update(order))
    old = Refund.objects.select_for_update(of=("self",)).select_related("rma").get(pk=refund_id)
    if old.status != RefundStatus.FAILED or Refund.objects.filter(retry_of=old).exists():
        raise InvalidTransition(
            f"Refund {old.pk} is {old.status}; only a failed refund not yet retried can be retried."
        )
    if old.amount > available.get(old.payment_id, Decimal(0)):
        raise ValidationFailed(
            f"Payment {old.payment_id} can refund only {available.get(old.payment_id, Decimal(0))} now.",
            fields={"amount": "More than the payment can still refund."},
        )
    new = Refund.objects.create(
        order=order,
        payment_id=old.payment_id,
        rma=old.rma,
        receipt_id=old.receipt_id,
        appeasement_id=old.appeasement_id,
        amount=old.amount,
        currency=old.currency,
        breakdown={**old.breakdown, "retry_of": old.pk},
        retry_of=old,
        **actor.as_fields(),
    )
    if new.rma_id:
        Return.objects.filter(pk=new.rma_id).update(refund_amount=F("refund_amount") + new.amount)
    _send_after_commit(new, actor)
    return new
