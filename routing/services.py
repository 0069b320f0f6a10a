"""Routing writes: decide with the engine, apply through the orders services, keep the decision."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from inventory.models import Channel
from oms.actor import Actor
from oms.errors import InsufficientStock, InvalidTransition, ValidationFailed
from orders.models import OPEN_STATES, Fulfillment, Order, OrderLine
from orders.services import StalePlan, excluded_locations, order_apply_routing, units_to_route

from . import engine, selectors
from .models import ProfileVersion, RoutingDecision, RoutingProfile, Strategy

log = logging.getLogger(__name__)
MAX_PLAN_ATTEMPTS = 3


def plan_for(order: Order, *, profile: engine.ProfileIn | None = None) -> tuple[engine.Plan, dict[int, int]] | None:
    """Plan what is left to route on `order` (read-only). None when nothing is left."""
    lines = list(OrderLine.objects.filter(order=order).select_related("item"))
    todo = units_to_route(order, lines)
    if not todo:
        return None
    own = selectors.provisional_holds(order)
    candidates = selectors.candidates(order.channel, {line.item_id for line in lines if line.pk in todo}, own_holds=own)
    order_in = selectors.order_in(order, todo, lines, excluded_locations(order))
    return engine.route(order_in, candidates, profile or selectors.active_profile(order.channel)), todo


def route_order(*, order_number: str, actor: Actor | None = None) -> RoutingDecision | None:
    """Route an order: idempotent (nothing left to route is a no-op) and safe to run
    concurrently (the order row is locked when the plan is applied; a stale plan is redone)."""
    actor = actor or Actor.for_task("routing.route_order")
    for _ in range(MAX_PLAN_ATTEMPTS):
        order = Order.objects.select_related("channel", "pickup_location").filter(number=order_number).first()
        if order is None:
            return None
        planned = plan_for(order)
        if planned is None:
            return None
        plan, _ = planned
        try:
            with transaction.atomic():
                number = RoutingDecision.objects.filter(order=order).count() + 1
                applied = order_apply_routing(
                    order_number=order_number,
                    plan=plan.fulfillments,
                    unsourced=plan.unsourced,
                    attempt=number,
                    summary=plan.explanation.get("summary", ""),
                    actor=actor,
                )
                if applied is None:
                    return None
                return RoutingDecision.objects.create(
                    order=order,
                    version_id=plan.explanation.get("profile_version"),
                    attempt=number,
                    strategy=plan.strategy or "",
                    plan={str(loc): {str(k): v for k, v in lines.items()} for loc, lines in plan.fulfillments.items()},
                    unsourced={str(k): v for k, v in plan.unsourced.items()},
                    explanation=plan.explanation,
                    summary=plan.explanation.get("summary", "")[:300],
                )
        except (StalePlan, InsufficientStock) as exc:
            log.info("routing %s: plan no longer fits (%s), planning again", order_number, exc.__class__.__name__)
    log.warning("routing %s: gave up after %d attempts", order_number, MAX_PLAN_ATTEMPTS)
    return None


def route_backorders(*, item_ids: list[int] | None) -> int:
    """Stock arrived for these items (None: for many): route waiting orders, oldest first."""
    # Any open order with units nothing holds: a partly shipped order can still wait for some.
    short = OrderLine.objects.filter(
        quantity__gt=F("quantity_allocated") + F("quantity_shipped") + F("quantity_cancelled")
    )
    if item_ids is not None:
        short = short.filter(item_id__in=item_ids)
    # Open orders first ((status, created_at) index), then one line lookup per order.
    waiting = Order.objects.filter(status__in=OPEN_STATES).filter(Exists(short.filter(order_id=OuterRef("pk"))))
    numbers = waiting.order_by("created_at").values_list("number", flat=True)[:500]
    routed = 0
    for number in list(numbers):
        if route_order(order_number=number, actor=Actor.for_task("routing.route_backorders")):
            routed += 1
    return routed


def simulate_reroute(*, fulfillment: Fulfillment) -> engine.Plan:
    """Where the open units of `fulfillment` would go if they were taken from its location now
    (read-only: what `orders.services.fulfillment_reroute` followed by routing would do)."""
    order = fulfillment.order
    todo = {fl.line_id: fl.quantity_open for fl in fulfillment.lines.all() if fl.quantity_open}
    lines = list(OrderLine.objects.filter(order=order, pk__in=todo).select_related("item"))
    candidates = selectors.candidates(order.channel, {line.item_id for line in lines})
    excluded = excluded_locations(order) | {fulfillment.location_id}
    order_in = selectors.order_in(order, todo, lines, excluded)
    return engine.route(order_in, candidates, selectors.active_profile(order.channel))


def simulate(*, channel: Channel, order_in: engine.OrderIn, profile: engine.ProfileIn) -> engine.Plan:
    """The plan and explanation for an order without writing anything."""
    item_ids = {line.item_id for line in order_in.lines}
    return engine.route(order_in, selectors.candidates(channel, item_ids), profile)


# --- Profile versions: edit a draft, compare, activate ----------------------------------------

STRATEGY_FIELDS = [f.name for f in Strategy._meta.concrete_fields if f.name not in ("id", "version")]


@transaction.atomic
def version_create_draft(*, profile: RoutingProfile, note: str = "") -> ProfileVersion:
    """A new draft, copied from the active version (or empty when there is none)."""
    RoutingProfile.objects.select_for_update().get(pk=profile.pk)
    number = (profile.versions.order_by("-number").values_list("number", flat=True).first() or 0) + 1
    draft = ProfileVersion.objects.create(profile=profile, number=number, note=note)
    active = profile.versions.filter(status=ProfileVersion.Status.ACTIVE).first()
    if active is not None:
        Strategy.objects.bulk_create(
            [Strategy(version=draft, **{f: getattr(s, f) for f in STRATEGY_FIELDS}) for s in active.strategies.all()]
        )
    return draft


@transaction.atomic
def version_activate(*, version: ProfileVersion) -> ProfileVersion:
    """Activate a draft atomically: the old active version retires in the same transaction."""
    version = ProfileVersion.objects.select_for_update().get(pk=version.pk)
    if version.status != ProfileVersion.Status.DRAFT:
        raise InvalidTransition(f"Version {version.number} is {version.status}; only a draft can be activated.")
    if not version.strategies.exists():
        raise ValidationFailed("A version needs at least one strategy.", fields={"strategies": "Empty."})
    ProfileVersion.objects.filter(profile=version.profile, status=ProfileVersion.Status.ACTIVE).update(
        status=ProfileVersion.Status.RETIRED
    )
    version.status = ProfileVersion.Status.ACTIVE
    version.activated_at = timezone.now()
    version.save(update_fields=["status", "activated_at"])
    return version


def version_diff(*, old: ProfileVersion | None, new: ProfileVersion) -> list[dict]:
    """Strategy by strategy (matched by position), the fields that differ."""
    before = {s.position: s for s in old.strategies.all()} if old else {}
    after = {s.position: s for s in new.strategies.all()}
    rows = []
    for position in sorted(before.keys() | after.keys()):
        a, b = before.get(position), after.get(position)
        if a is None or b is None:
            rows.append({"position": position, "change": "added" if a is None else "removed", "name": (b or a).name})
            continue
        changed = {f: (getattr(a, f), getattr(b, f)) for f in STRATEGY_FIELDS if getattr(a, f) != getattr(b, f)}
        if changed:
            rows.append({"position": position, "change": "changed", "name": b.name, "fields": changed})
    return rows


# --- Replay: a draft profile over real recent orders, beside the active one ------------------


def _plan_metrics(
    plan: engine.Plan, order_in: engine.OrderIn, by_id: dict[int, engine.Candidate], strategy: engine.StrategyIn | None
) -> dict:
    shipments = len(plan.fulfillments)
    distance = 0.0
    cost = 0.0
    per_km = strategy.shipping_cost_per_km if strategy else 0.01
    per_shipment = strategy.cost_per_shipment if strategy else 5.0
    for location_id in plan.fulfillments:
        c = by_id[location_id]
        km = 0.0
        if None not in (order_in.latitude, order_in.longitude, c.latitude, c.longitude):
            km = engine.haversine_km(order_in.latitude, order_in.longitude, c.latitude, c.longitude)
        distance += km
        cost += per_shipment + c.fulfillment_cost + per_km * km
    return {
        "splits": max(0, shipments - 1),
        "distance_km": distance,
        "cost": cost,
        "unsourced_units": sum(plan.unsourced.values()),
    }


def replay(*, version: ProfileVersion, days: int = 7, limit: int = 500) -> dict:
    """Run `version` and the profile's active version over the channel's orders of the last
    `days` (whole orders, as captured, against today's stock and network) and compare."""
    profile = version.profile
    draft = selectors.version_in(version)
    active_version = profile.versions.filter(status=ProfileVersion.Status.ACTIVE).prefetch_related("strategies").first()
    active = selectors.version_in(active_version) if active_version else selectors.DEFAULT_PROFILE
    orders = Order.objects.filter(created_at__gte=timezone.now() - timedelta(days=days))
    if profile.channel_id:
        orders = orders.filter(channel_id=profile.channel_id)
    orders = list(orders.select_related("channel").prefetch_related("lines__item").order_by("-created_at")[:limit])
    totals = {"active": dict.fromkeys(("splits", "distance_km", "cost", "unsourced_units"), 0.0), "draft": None}
    totals["draft"] = dict(totals["active"])
    changed = 0
    for order in orders:
        lines = list(order.lines.all())
        order_in = selectors.order_in(order, {line.pk: line.quantity for line in lines}, lines, set())
        candidates = selectors.candidates(order.channel, {line.item_id for line in lines})
        by_id = {c.location_id: c for c in candidates}
        plans = {
            "active": engine.route(order_in, candidates, active),
            "draft": engine.route(order_in, candidates, draft),
        }
        for name, plan in plans.items():
            strategy = next(
                (s for s in (active if name == "active" else draft).strategies if s.name == plan.strategy), None
            )
            for key, value in _plan_metrics(plan, order_in, by_id, strategy).items():
                totals[name][key] += value
        if plans["active"].fulfillments != plans["draft"].fulfillments:
            changed += 1
    for name in totals:
        totals[name] = {k: round(v, 2) for k, v in totals[name].items()}
    return {
        "profile": profile.name,
        "draft_version": version.number,
        "active_version": active_version.number if active_version else None,
        "days": days,
        "orders": len(orders),
        "orders_routed_differently": changed,
        "active": totals["active"],
        "draft": totals["draft"],
        "note": "Whole orders as captured, against today's stock and network.",
    }
