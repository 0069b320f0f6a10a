"""Exchanges: a return with exchange lines creates a linked new order in the `exchange`
channel, captured and routed like any order (its stock is held at once).

Pricing. Exchange lines without `unit_price` are an even exchange: the new order is
zero-priced and the returned units it replaces (one for one, in the return's line order) pay
for it, so their value is not refunded. Exchange lines with `unit_price` (what the customer
pays, tax included) are a priced exchange: the returned goods' value is credited against the
new order (as line discounts); a dearer exchange needs the difference authorised
(`exchange_payment`), a cheaper one leaves the difference to be refunded when the return
arrives.

Timing. By default the exchange order waits on a customer-service hold (stock held) until the
return arrives; an advance exchange ships at once, and the refund waits for the return.

The `exchange` channel is created on first use and serves at least every location of each
channel an exchange came from, so an exchange can be routed wherever its original could.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from inventory.models import Channel, ChannelType
from oms.actor import Actor
from oms.errors import InvalidTransition, ValidationFailed
from orders import services as order_services
from orders.models import HoldType, Order, OrderLine, OrderStatus

from .refunds import spread

EXCHANGE_CHANNEL = "exchange"
HOLD_REASON = "Exchange for {number}: ships when the return arrives"


@dataclass(frozen=True)
class ExchangeLineInput:
    sku: str
    quantity: int
    unit_price: Decimal | None = None


def exchange_channel(original: Channel) -> Channel:
    """The `exchange` channel, serving (at least) every location of `original`."""
    channel, _ = Channel.objects.get_or_create(
        code=EXCHANGE_CHANNEL, defaults={"name": "Exchanges", "type": ChannelType.CALL_CENTER}
    )
    missing = original.locations.exclude(pk__in=channel.locations.values("pk")).values_list("pk", flat=True)
    if missing:
        channel.locations.add(*missing)  # add-only: a merchant's extra locations are kept
    return channel


def _address(order: Order) -> order_services.AddressInput | None:
    if order.is_pickup:
        return None
    return order_services.AddressInput(
        name=order.ship_name,
        line1=order.ship_line1,
        line2=order.ship_line2,
        city=order.ship_city,
        region=order.ship_region,
        postal_code=order.ship_postal_code,
        country=order.ship_country,
        latitude=order.ship_latitude,
        longitude=order.ship_longitude,
    )


def _prefixed(exc: ValidationFailed) -> ValidationFailed:
    """Capture's field paths (lines[0].sku, payment.…) as the return request names them."""
    fields = {
        (f"exchange_{key}" if key.startswith(("lines", "payment")) else key): value for key, value in exc.fields.items()
    }
    return ValidationFailed(exc.message, fields=fields)


def price_exchange(
    lines: Sequence[ExchangeLineInput], unit_values: list[Decimal]
) -> tuple[list[tuple[Decimal, Decimal]], Decimal, Decimal]:
    """Price the exchange against the returned units' values (one entry per returned unit):
    returns ([(unit_price, discount) per line], credit from the return, difference to pay)."""
    priced = [line.unit_price is not None for line in lines]
    if any(priced) and not all(priced):
        raise ValidationFailed(
            "Give unit_price on every exchange line, or on none for an even exchange.",
            fields={"exchange_lines": "unit_price on all lines or none."},
        )
    if not any(priced):
        units = sum(line.quantity for line in lines)
        if units > len(unit_values):
            raise ValidationFailed(
                f"An even exchange replaces returned units one for one: at most {len(unit_values)} unit(s). "
                "Price the exchange lines (unit_price) to exchange more.",
                fields={"exchange_lines": f"At most {len(unit_values)} unit(s) in an even exchange."},
            )
        return [(Decimal(0), Decimal(0)) for _ in lines], sum(unit_values[:units], Decimal(0)), Decimal(0)
    nets = [line.unit_price * line.quantity for line in lines]
    credit = min(sum(unit_values, Decimal(0)), sum(nets, Decimal(0)))
    discounts = spread(credit, nets)
    difference = sum(nets, Decimal(0)) - credit
    return [(line.unit_price, d) for line, d in zip(lines, discounts, strict=True)], credit, difference


def exchange_create(
    *,
    rma,
    original: Order,
    lines: Sequence[ExchangeLineInput],
    unit_values: list[Decimal],
    payment: order_services.PaymentInput | None,
    advance: bool,
    actor: Actor,
) -> tuple[Order, Decimal]:
    """Capture the exchange order (stock held now); hold it unless it ships in advance.
    Returns (the order, the credit the returned goods give it). Runs in the return's transaction."""
    prices, credit, difference = price_exchange(lines, unit_values)
    if difference > 0 and (payment is None or payment.amount_authorized != difference):
        raise ValidationFailed(
            f"The exchange costs {difference} {original.currency} more than the goods returned; "
            f"send exchange_payment authorised for {difference}.",
            fields={"exchange_payment": f"Authorise {difference} for the price difference."},
        )
    if difference == 0 and payment is not None:
        raise ValidationFailed(
            "There is no price difference to pay for this exchange.",
            fields={"exchange_payment": "Not needed: nothing to pay."},
        )
    data = order_services.CaptureInput(
        channel=exchange_channel(original.channel),
        external_id=rma.number,
        customer_email=original.customer.email,
        customer_name=original.customer.name,
        customer_phone=original.customer.phone,
        currency=original.currency,
        lines=[
            order_services.LineInput(
                sku=line.sku,
                quantity=line.quantity,
                unit_price=price,
                discount_amount=discount,
                tax_amount=Decimal(0),
                external_line_id=str(index + 1),
            )
            for index, (line, (price, discount)) in enumerate(zip(lines, prices, strict=True))
        ],
        fulfillment_method=original.fulfillment_method,
        pickup_location=original.pickup_location.code if original.pickup_location_id else "",
        shipping_address=_address(original),
        shipping_method=original.shipping_method,
        payment=payment,
    )
    try:
        order = order_services.order_capture(data=data, actor=actor)
    except ValidationFailed as exc:
        raise _prefixed(exc) from None
    if not advance:
        order_services.order_hold(
            order_number=order.number,
            hold_type=HoldType.CUSTOMER_SERVICE,
            reason=HOLD_REASON.format(number=rma.number),
            actor=actor,
        )
    return order, credit


def exchange_release(rma, actor: Actor) -> bool:
    """The return arrived: let a held exchange order go (routing picks it up)."""
    order = rma.exchange_order
    if order is None or rma.advance_exchange:
        return False
    order.refresh_from_db(fields=["status"])
    reason = HOLD_REASON.format(number=rma.number)
    if order.status != OrderStatus.ON_HOLD or not order.holds.filter(released_at__isnull=True, reason=reason).exists():
        return False
    order_services.order_release(
        order_number=order.number,
        hold_types=[HoldType.CUSTOMER_SERVICE],
        note=f"Return {rma.number} arrived",
        actor=actor,
    )
    return True


def exchange_cancel(rma, *, reason: str, actor: Actor) -> bool:
    """The return will not happen: cancel its exchange order, unless something already shipped."""
    order = rma.exchange_order
    if order is None:
        return False
    order.refresh_from_db(fields=["status"])
    if order.status == OrderStatus.CANCELLED:
        return False
    if OrderLine.objects.filter(order=order, quantity_shipped__gt=0).exists():
        raise InvalidTransition(
            f"Exchange order {order.number} has already shipped; receive the return or close it instead."
        )
    order_services.order_cancel(order_number=order.number, reason=reason, actor=actor)
    return True
