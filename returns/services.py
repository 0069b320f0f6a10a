"""Return writes: create (authorise), reject, cancel, in transit, receive (inspect, restock,
refund), close. Each is one transaction that locks the order first (then its lines, then the
return), changes what it must, writes the order's timeline and the outbox, and nothing else.

Called by the API, the admin, tasks and the CSR console; permission-sensitive steps (window
and refund overrides) are checked here, against the actor, not only in a UI.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from inventory.models import Item, Location, LocationType, MovementReason
from inventory.services import Adjustment, stock_adjust
from oms.actor import Actor
from oms.errors import Conflict, InvalidTransition, ValidationFailed
from orders.models import Order, OrderLine
from orders.services import PaymentInput

from . import events, exchanges, labels
from .exchanges import ExchangeLineInput
from .locks import order_for_update, order_lines_for_update, return_for_update
from .models import (
    RECEIVABLE,
    Condition,
    Disposition,
    RefundStatus,
    Return,
    ReturnLine,
    ReturnReason,
    ReturnReceipt,
    ReturnReceiptLine,
    ReturnStatus,
    ShippingRefund,
    new_number,
)
from .permissions import OVERRIDE_REFUND, OVERRIDE_WINDOW, require_permission
from .refunds import deduction, issue_refunds, refundable_total, settle_return, unit_credit
from .selectors import being_returned, handed_over_at, policy_for, shipping_refunded, units_credited

# What may be done with goods in each condition; the first is the default.
DISPOSITIONS = {
    Condition.SELLABLE: [Disposition.RESTOCK, Disposition.WRITE_OFF, Disposition.RETURN_TO_VENDOR],
    Condition.DAMAGED: [Disposition.WRITE_OFF, Disposition.RETURN_TO_VENDOR],
    Condition.WRONG_ITEM: [Disposition.NONE],
    Condition.MISSING: [Disposition.NONE],
}
CAME_BACK = (Condition.SELLABLE, Condition.DAMAGED)  # the item itself is back: it counts as returned


# --- Inputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReturnLineInput:
    line_id: int  # the order line
    quantity: int
    reason: str  # a ReturnReason code
    note: str = ""


@dataclass(frozen=True)
class ReturnInput:
    order_number: str
    lines: Sequence[ReturnLineInput]
    method: str = Return.Method.MAIL
    location: str = ""  # where the goods will come back (optional; mail picks a warehouse)
    note: str = ""
    exchange_lines: Sequence[ExchangeLineInput] = ()
    exchange_payment: PaymentInput | None = None
    advance_exchange: bool = False
    window_override_reason: str = ""  # a supervisor lets a late return through


@dataclass(frozen=True)
class ReceiveLineInput:
    line_id: int  # the order line, as in the API
    quantity: int
    condition: str
    disposition: str = ""  # empty: the condition's default


@dataclass
class _Credit:
    """One receipt row's money."""

    value: Decimal = Decimal("0.00")
    deduction: Decimal = Decimal("0.00")
    why: str = ""
    merchant_fault: bool = False
    rows: list[dict] = field(default_factory=list)


# --- Create ---------------------------------------------------------------------------------------


def _reasons(lines: Sequence[ReturnLineInput]) -> dict[str, ReturnReason]:
    found = {r.code: r for r in ReturnReason.objects.filter(code__in={line.reason for line in lines}, active=True)}
    for index, line in enumerate(lines):
        if line.reason not in found:
            raise ValidationFailed(
                f"Unknown return reason '{line.reason}'.",
                fields={f"lines[{index}].reason": "Unknown or inactive reason code."},
            )
    return found


def _check_request(data: ReturnInput) -> None:
    if data.method not in Return.Method.values:
        raise ValidationFailed(
            f"Unknown return method '{data.method}'.", fields={"method": f"One of {', '.join(Return.Method.values)}."}
        )
    if not data.lines:
        raise ValidationFailed("A return needs at least one line.", fields={"lines": "At least one line."})
    seen: set[int] = set()
    for index, line in enumerate(data.lines):
        if line.quantity < 1:
            raise ValidationFailed("Quantities must be at least 1.", fields={f"lines[{index}].quantity": "≥ 1."})
        if line.line_id in seen:
            raise ValidationFailed(
                f"Line {line.line_id} is listed twice.", fields={f"lines[{index}].line_id": "Listed twice."}
            )
        seen.add(line.line_id)
    for index, line in enumerate(data.exchange_lines):
        if line.quantity < 1:
            raise ValidationFailed(
                "Quantities must be at least 1.", fields={f"exchange_lines[{index}].quantity": "≥ 1."}
            )
        if line.unit_price is not None and line.unit_price < 0:
            raise ValidationFailed("Prices cannot be negative.", fields={f"exchange_lines[{index}].unit_price": "≥ 0."})
    if data.advance_exchange and not data.exchange_lines:
        raise ValidationFailed(
            "advance_exchange needs exchange_lines.", fields={"advance_exchange": "Only with exchange lines."}
        )


def _return_location(order: Order, code: str, method: str) -> Location | None:
    """The location named (it must take returns), or for mail the warehouse the label goes to."""
    if code:
        location = Location.objects.filter(code=code).first()
        if location is None:
            raise ValidationFailed(f"Unknown location {code}.", fields={"location": "Unknown location."})
        if not (location.active and location.accepts_returns):
            raise ValidationFailed(
                f"{location.code} does not accept returns.", fields={"location": "Does not accept returns."}
            )
        return location
    if method != Return.Method.MAIL:
        return None  # any store that takes returns
    takers = Location.objects.filter(active=True, accepts_returns=True)
    return (
        takers.filter(channels=order.channel, type=LocationType.WAREHOUSE).order_by("priority", "code").first()
        or takers.filter(channels=order.channel).order_by("priority", "code").first()
        or takers.order_by("priority", "code").first()
    )


def _check_window(order: Order, data: ReturnInput, actor: Actor, window_days: int) -> str:
    """'' when the window is open; else who overrode it (a supervisor), or a refusal."""
    started = handed_over_at(order)
    if started is None or timezone.now() <= started + timedelta(days=window_days):
        return ""
    if not data.window_override_reason.strip():
        raise Conflict(
            f"The {window_days}-day return window for order {order.number} closed on "
            f"{(started + timedelta(days=window_days)).date().isoformat()}; a supervisor can override it with a reason.",
            fields={"window_override_reason": "Required after the return window."},
            code="return_window_closed",
        )
    user = require_permission(
        actor, OVERRIDE_WINDOW, action="Accepting a return after its window", field="window_override_reason"
    )
    return user.get_username()


def _unit_values(lines: dict[int, OrderLine], wanted: Sequence[ReturnLineInput]) -> list[Decimal]:
    """The value of each unit being returned, one entry per unit, in the request's order."""
    credited = units_credited(lines.values())
    values = []
    for line_input in wanted:
        line = lines[line_input.line_id]
        for k in range(line_input.quantity):
            values.append(unit_credit(line, 1, credited[line.pk] + k))
    return values


def _save_new(rma: Return) -> None:
    for _ in range(5):
        rma.number = new_number("RMA")
        try:
            with transaction.atomic():
                rma.save()
            return
        except IntegrityError:
            continue  # a number collision: draw another
    raise Conflict("Could not allocate a return number; retry.")


@transaction.atomic
def return_create(*, data: ReturnInput, actor: Actor) -> Return:
    """Authorise the return of shipped units of an order. The order and its lines are locked
    (in pk order) before counting, so concurrent requests can never together return more
    than shipped; a late return needs a supervisor's override; exchange lines capture a
    linked exchange order in the same transaction."""
    _check_request(data)
    reasons = _reasons(data.lines)
    order = order_for_update(number=data.order_number)
    lines = {line.pk: line for line in order_lines_for_update(order)}
    pending = being_returned(lines.values())
    for index, wanted in enumerate(data.lines):
        line = lines.get(wanted.line_id)
        if line is None:
            raise ValidationFailed(
                f"Line {wanted.line_id} is not on order {order.number}.",
                fields={f"lines[{index}].line_id": "Not on this order."},
            )
        can = line.quantity_shipped - line.quantity_returned - pending.get(line.pk, 0)
        if wanted.quantity > can:
            raise ValidationFailed(
                f"Line {line.pk} ({line.sku}): {max(can, 0)} unit(s) can be returned "
                f"(shipped {line.quantity_shipped}, returned {line.quantity_returned}, "
                f"on open returns {pending.get(line.pk, 0)}).",
                fields={f"lines[{index}].quantity": f"At most {max(can, 0)}."},
            )
    policy = policy_for(order.channel)
    overridden_by = _check_window(order, data, actor, policy.window_days)
    rma = Return(
        order=order,
        method=data.method,
        location=_return_location(order, data.location, data.method),
        note=data.note[:500],
        window_days=policy.window_days,
        window_overridden_by=overridden_by,
        window_override_reason=data.window_override_reason.strip()[:300] if overridden_by else "",
        advance_exchange=data.advance_exchange,
        **actor.as_fields(),
    )
    if policy.auto_authorise or overridden_by:
        rma.authorise()
    _save_new(rma)
    ReturnLine.objects.bulk_create(
        [
            ReturnLine(
                rma=rma,
                order_line=lines[w.line_id],
                quantity=w.quantity,
                reason=reasons[w.reason],
                note=w.note[:300],
            )
            for w in data.lines
        ]
    )
    exchange = None
    if data.exchange_lines:
        exchange_order, credit = exchanges.exchange_create(
            rma=rma,
            original=order,
            lines=data.exchange_lines,
            unit_values=_unit_values(lines, data.lines),
            payment=data.exchange_payment,
            advance=data.advance_exchange,
            actor=actor,
        )
        rma.exchange_order, rma.exchange_credit = exchange_order, credit
        rma.save(update_fields=["exchange_order", "exchange_credit", "updated_at"])
        exchange = {
            "order": exchange_order.number,
            "credit": str(credit),
            "charge": str(exchange_order.grand_total),
            "advance": rma.advance_exchange,
        }
    if rma.method == Return.Method.MAIL:
        labels.label_request(rma)
    events.return_created(
        rma,
        actor,
        lines=[
            {"line_id": w.line_id, "sku": lines[w.line_id].sku, "quantity": w.quantity, "reason": w.reason}
            for w in data.lines
        ],
        exchange=exchange,
    )
    return rma


# --- Authorise, reject, cancel, in transit, close -------------------------------------------------


def _require(rma: Return, allowed: Sequence[str], verb: str) -> None:
    if rma.status not in allowed:
        raise InvalidTransition(f"Return {rma.number} is {rma.status}; it cannot be {verb}.")


def _reason(reason: str) -> str:
    if not reason.strip():
        raise ValidationFailed("A reason is required.", fields={"reason": "This field is required."})
    return reason.strip()[:300]


@transaction.atomic
def return_authorise(*, return_id: int, actor: Actor) -> Return:
    rma = return_for_update(return_id)
    if rma.status == ReturnStatus.AUTHORISED:
        return rma  # a retry
    _require(rma, [ReturnStatus.REQUESTED], "authorised")
    rma.authorise()
    rma.save(update_fields=["status", "updated_at"])
    events.return_changed(rma, actor, what="authorised", message=f"Return {rma.number} authorised")
    return rma


@transaction.atomic
def return_reject(*, return_id: int, reason: str, actor: Actor) -> Return:
    reason = _reason(reason)
    rma = return_for_update(return_id)
    _require(rma, [ReturnStatus.REQUESTED], "rejected")
    exchanges.exchange_cancel(rma, reason=f"Return {rma.number} rejected: {reason}", actor=actor)
    rma.reject()
    rma.rejection_reason = reason
    rma.save(update_fields=["status", "rejection_reason", "updated_at"])
    labels.label_void_request(rma)
    events.return_changed(rma, actor, what="rejected", message=f"Return {rma.number} rejected: {reason}")
    return rma


@transaction.atomic
def return_cancel(*, return_id: int, reason: str, actor: Actor) -> Return:
    """Nothing came back and nothing will: its units may be returned again; an exchange order
    that has not shipped is cancelled (its stock released)."""
    reason = _reason(reason)
    rma = return_for_update(return_id)
    _require(rma, [ReturnStatus.REQUESTED, ReturnStatus.AUTHORISED, ReturnStatus.IN_TRANSIT], "cancelled")
    exchanges.exchange_cancel(rma, reason=f"Return {rma.number} cancelled: {reason}", actor=actor)
    rma.cancel()
    rma.save(update_fields=["status", "updated_at"])
    labels.label_void_request(rma)
    events.return_changed(
        rma, actor, what="cancelled", message=f"Return {rma.number} cancelled: {reason}", data={"reason": reason}
    )
    return rma


@transaction.atomic
def return_mark_in_transit(*, return_id: int, actor: Actor, carrier: str = "", tracking_number: str = "") -> Return:
    """The parcel is on its way back (a carrier scan, or the customer's drop-off)."""
    rma = return_for_update(return_id)
    if rma.status == ReturnStatus.IN_TRANSIT:
        return rma
    _require(rma, [ReturnStatus.AUTHORISED], "marked in transit")
    rma.ship()
    fields = ["status", "updated_at"]
    if tracking_number:
        rma.label_carrier, rma.label_tracking_number = carrier[:50], tracking_number[:100]
        fields += ["label_carrier", "label_tracking_number"]
    rma.save(update_fields=fields)
    tracking = f" ({carrier} {tracking_number})".rstrip() if tracking_number else ""
    events.return_changed(rma, actor, what="in_transit", message=f"Return {rma.number} in transit{tracking}")
    return rma


@transaction.atomic
def return_close(*, return_id: int, reason: str, actor: Actor) -> Return:
    """Finish a return without waiting any longer: units still expected are released (they may
    be returned again), or a failed refund is given up on."""
    reason = _reason(reason)
    rma = return_for_update(return_id)
    _require(rma, [ReturnStatus.RECEIVED, ReturnStatus.INSPECTED], "closed")
    if rma.refunds.filter(status=RefundStatus.PENDING).exists():
        raise InvalidTransition(f"Return {rma.number} has a refund on its way; wait for the gateway's answer.")
    rma.close()
    rma.save(update_fields=["status", "updated_at"])
    events.return_changed(
        rma, actor, what="closed", message=f"Return {rma.number} closed: {reason}", data={"reason": reason}
    )
    return rma


# --- Receive and inspect --------------------------------------------------------------------------


def _receiving_location(code: str) -> Location:
    location = Location.objects.filter(code=code).first() if code else None
    if location is None:
        raise ValidationFailed(
            f"Unknown location '{code}'." if code else "'location' is required.",
            fields={"location": "Unknown location." if code else "This field is required."},
        )
    if not (location.active and location.accepts_returns):
        raise ValidationFailed(
            f"{location.code} does not accept returns.", fields={"location": "Does not accept returns."}
        )
    return location


def _check_receipt_rows(rows: Sequence[ReceiveLineInput]) -> list[str]:
    """Validate conditions and dispositions; returns each row's disposition."""
    if not rows:
        raise ValidationFailed("Nothing to receive.", fields={"lines": "At least one line."})
    dispositions = []
    for index, row in enumerate(rows):
        if row.quantity < 1:
            raise ValidationFailed("Quantities must be at least 1.", fields={f"lines[{index}].quantity": "≥ 1."})
        allowed = DISPOSITIONS.get(row.condition)
        if allowed is None:
            raise ValidationFailed(
                f"Unknown condition '{row.condition}'.",
                fields={f"lines[{index}].condition": f"One of {', '.join(Condition.values)}."},
            )
        disposition = row.disposition or allowed[0]
        if disposition not in allowed:
            raise ValidationFailed(
                f"Goods received {row.condition} cannot be disposed of by {disposition}.",
                fields={f"lines[{index}].disposition": f"One of {', '.join(allowed)}."},
            )
        dispositions.append(disposition)
    return dispositions


@transaction.atomic
def return_receive(
    *,
    return_id: int,
    location: str,
    lines: Sequence[ReceiveLineInput],
    actor: Actor,
    refund_amount: Decimal | None = None,
    override_reason: str = "",
) -> Return:
    """Goods arrived at a location that takes returns and were inspected unit by unit.

    Sellable goods to be restocked go back into that location's on hand through the inventory
    services (ledger row, `inventory.changed`, backorders re-routed); written-off and
    returned-to-vendor goods are recorded. The order lines' returned counts follow. The refund
    for what came back is computed under the channel's policy (or set by a supervisor with a
    reason), capped by what the payments can still refund, recorded and sent to the gateway.
    A return with every unit accounted for is inspected; a held exchange order is released."""
    dispositions = _check_receipt_rows(lines)
    at = _receiving_location(location)
    rma = return_for_update(return_id)
    _require(rma, RECEIVABLE, "received")
    order = rma.order
    order_lines = {line.pk: line for line in order_lines_for_update(order)}
    return_lines = {
        rl.order_line_id: rl for rl in ReturnLine.objects.select_for_update().filter(rma=rma).order_by("pk")
    }
    for rl in return_lines.values():
        rl.order_line = order_lines[rl.order_line_id]
    reasons = {r.pk: r for r in ReturnReason.objects.filter(pk__in={rl.reason_id for rl in return_lines.values()})}
    wanted: dict[int, int] = defaultdict(int)
    for index, row in enumerate(lines):
        rl = return_lines.get(row.line_id)
        if rl is None:
            raise ValidationFailed(
                f"Order line {row.line_id} is not on return {rma.number}.",
                fields={f"lines[{index}].line_id": "Not on this return."},
            )
        wanted[row.line_id] += row.quantity
        if wanted[row.line_id] > rl.quantity_outstanding:
            raise ValidationFailed(
                f"Line {row.line_id} ({rl.order_line.sku}): {rl.quantity_outstanding} unit(s) still expected.",
                fields={f"lines[{index}].quantity": f"At most {rl.quantity_outstanding}."},
            )
    override = None
    if refund_amount is not None:
        require_permission(actor, OVERRIDE_REFUND, action="Overriding a refund", field="refund_amount")
        if not override_reason.strip():
            raise ValidationFailed(
                "Say why the refund is overridden.", fields={"override_reason": "Required with refund_amount."}
            )
        if refund_amount < 0:
            raise ValidationFailed("A refund cannot be negative.", fields={"refund_amount": "≥ 0."})
        override = refund_amount

    policy = policy_for(order.channel)
    has_exchange = rma.exchange_order_id is not None
    credited = units_credited(order_lines.values())
    receipt = ReturnReceipt.objects.create(rma=rma, location=at, **actor.as_fields())
    credit = _Credit()
    restock: dict[int, int] = defaultdict(int)
    receipt_lines = []
    for row, disposition in zip(lines, dispositions, strict=True):
        rl = return_lines[row.line_id]
        line, reason = rl.order_line, reasons[rl.reason_id]
        value = cut = Decimal(0)
        why = ""
        if row.condition in CAME_BACK:
            value = unit_credit(line, row.quantity, credited[line.pk])
            credited[line.pk] += row.quantity
            cut, why = deduction(
                policy=policy, reason=reason, condition=row.condition, value=value, has_exchange=has_exchange
            )
            rl.quantity_received += row.quantity
            line.quantity_returned += row.quantity
            credit.merchant_fault |= reason.merchant_fault
        else:
            rl.quantity_not_returned += row.quantity
        if disposition == Disposition.RESTOCK:
            restock[line.item_id] += row.quantity
        credit.value += value
        credit.deduction += cut
        receipt_lines.append(
            ReturnReceiptLine(
                receipt=receipt,
                return_line=rl,
                quantity=row.quantity,
                condition=row.condition,
                disposition=disposition,
                value=value,
                deduction=cut,
            )
        )
        credit.rows.append(
            {
                "line_id": line.pk,
                "sku": line.sku,
                "quantity": row.quantity,
                "condition": row.condition,
                "disposition": disposition,
                "reason": reason.code,
                "value": str(value),
                "deduction": str(cut),
                "deduction_reason": why,
            }
        )
    ReturnReceiptLine.objects.bulk_create(receipt_lines)
    ReturnLine.objects.bulk_update(list(return_lines.values()), ["quantity_received", "quantity_not_returned"])
    OrderLine.objects.bulk_update(list(order_lines.values()), ["quantity_returned"])
    if restock:
        items = Item.objects.in_bulk(list(restock))
        stock_adjust(
            adjustments=[
                Adjustment(
                    location=at,
                    item=items[item_id],
                    reason=MovementReason.RETURN,
                    reference=f"{rma.number}/{receipt.pk}",
                    delta=quantity,
                )
                for item_id, quantity in sorted(restock.items())
            ],
            actor=actor,
            source="returns",
        )

    complete = all(rl.quantity_outstanding == 0 for rl in return_lines.values())
    amount, applied, breakdown = _receipt_refund(
        rma,
        receipt,
        credit,
        policy=policy,
        complete=complete,
        override=override,
        override_reason=override_reason,
        actor=actor,
    )
    issue_refunds(order=order, amount=amount, actor=actor, breakdown=breakdown, rma=rma, receipt=receipt)

    rma.refund_amount += amount
    rma.exchange_credit_applied += applied
    rma.receive()
    if complete:
        rma.inspect()
    rma.save(update_fields=["status", "refund_amount", "exchange_credit_applied", "updated_at"])
    if any(row.condition in CAME_BACK for row in lines):
        exchanges.exchange_release(rma, actor)
    events.return_received(
        rma,
        actor,
        location=at.code,
        lines=credit.rows,
        refund={
            "amount": str(amount),
            "currency": order.currency,
            "computed": breakdown["computed"],
            "shipping": breakdown["shipping"],
            "deductions": breakdown["deductions"],
        },
    )
    settle_return(rma, actor)
    return rma


def _receipt_refund(
    rma: Return,
    receipt: ReturnReceipt,
    credit: _Credit,
    *,
    policy,
    complete: bool,
    override: Decimal | None,
    override_reason: str,
    actor: Actor,
) -> tuple[Decimal, Decimal, dict]:
    """The refund for one receipt: the goods' value less what policy keeps, plus shipping when
    the policy says so, less the exchange credit still open; capped by what the payments can
    refund, unless a supervisor set it (then above the cap is refused). Returns (amount,
    exchange credit applied, breakdown) and records the breakdown on the receipt."""
    order = rma.order
    net = credit.value - credit.deduction
    shipping = Decimal("0.00")
    if (
        credit.value > 0
        and order.shipping_total > 0
        and not shipping_refunded(order)
        and (
            policy.refund_shipping == ShippingRefund.ALWAYS
            or (policy.refund_shipping == ShippingRefund.MERCHANT_FAULT and credit.merchant_fault)
        )
    ):
        shipping = order.shipping_total
    open_credit = rma.exchange_credit - rma.exchange_credit_applied
    applied = min(open_credit, net)
    computed = net + shipping - applied
    available = refundable_total(order)
    if override is not None and override > available:
        raise ValidationFailed(
            f"At most {available} {order.currency} can be refunded on order {order.number} "
            "(captured, less refunded and pending refunds).",
            fields={"refund_amount": f"At most {available}."},
        )
    amount = override if override is not None else min(computed, available)
    breakdown = {
        "return": rma.number,
        "receipt": receipt.pk,
        "lines": credit.rows,
        "goods": str(credit.value),
        "deductions": str(credit.deduction),
        "shipping": str(shipping),
        "exchange_credit_applied": str(applied),
        "computed": str(computed),
        "amount": str(amount),
        "policy": {
            "channel": order.channel.code,
            "restocking_fee_percent": str(policy.restocking_fee_percent),
            "damaged_deduction_percent": str(policy.damaged_deduction_percent),
            "refund_shipping": policy.refund_shipping,
        },
    }
    if complete and open_credit - applied > 0:
        # The exchange was worth more than what came back in a refundable state.
        breakdown["exchange_credit_not_covered"] = str(open_credit - applied)
    if override is not None:
        breakdown["override"] = {"by": actor.label, "reason": override_reason.strip()[:300]}
    elif amount < computed:
        breakdown["not_refundable"] = str(computed - amount)  # more than the payments can give back
    receipt.refund_breakdown, receipt.shipping_refund = breakdown, shipping
    receipt.save(update_fields=["refund_breakdown", "shipping_refund"])
    return amount, applied, breakdown
