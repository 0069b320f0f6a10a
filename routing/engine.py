"""The routing engine: pure functions over plain data. No ORM, no I/O while deciding.

Inputs are loaded by `routing.selectors` in a few queries; the plan is applied by
`routing.services`. Everything the engine decides is written into the explanation, so a
merchant or CSR can see why an order went where it went.

`route(order, candidates, profile)` tries the profile's strategies in order (a fallback chain);
the first whose plan sources the whole order wins, else the best partial plan is returned with
the rest in `Plan.unsourced` (backorders). Per strategy:

1. filters exclude candidates (pickup location for BOPIS, active, excluded for this order,
   capability, type, country/region, distance, daily capacity), then item rules reduce what a
   candidate may give (dropship items only at their vendor; keep `min_remaining_available`);
2. rankers score each remaining candidate in [0, 1] (1 = best); total = Σ weight × score,
   ties broken by priority, fulfilment cost, code;
3. the split policy: the best-ranked single location with everything; else (unless ship
   complete) the smallest set of at most `max_locations` covering the order: exact search over
   the best EXACT_POOL stocked candidates, greedy beyond; quantities go line by line to the
   best-ranked location of the set that has the whole line, split only when none has;
4. optimal mode (`StrategyIn.optimal`): the cheapest cover by `routing.optimal` (HiGHS MIP),
   kept only if it costs less than the plan from 1–3 ("never worse than greedy").

Quantities and coverage are per item: lines of the same item share its stock at a location.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LineIn:
    line_id: int
    item_id: int
    sku: str
    quantity: int
    dropship_vendor_id: int | None = None  # item rule: only this (dropship) location may source it


@dataclass(frozen=True)
class OrderIn:
    lines: tuple[LineIn, ...]
    method: str  # "ship" | "pickup" | "curbside"
    latitude: float | None = None
    longitude: float | None = None
    country: str = ""
    region: str = ""
    postal_code: str = ""
    pickup_location_id: int | None = None
    ship_complete: bool = False
    excluded_location_ids: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Candidate:
    location_id: int
    code: str
    type: str  # "warehouse" | "store" | "dropship"
    capabilities: frozenset[str]
    active: bool
    priority: int
    fulfillment_cost: float
    latitude: float | None
    longitude: float | None
    country: str
    region: str
    daily_capacity: int | None
    orders_today: int
    rejection_rate: float  # 0..1 over a recent window
    available: dict[int, int]  # item_id -> units available to this order here


@dataclass(frozen=True)
class Filters:
    require_capability: bool = True  # the order's method (ship/pickup/curbside) must be offered
    location_types: frozenset[str] = frozenset()  # empty: any type
    countries: frozenset[str] = frozenset()  # empty: any country
    regions: frozenset[str] = frozenset()  # empty: any region
    max_distance_km: float | None = None
    respect_capacity: bool = True
    min_remaining_available: int = 0  # keep at least this many units after the order
    dropship_items_to_vendor: bool = True
    # Added by the engine: compare the location with the order's destination.
    same_country_as_order: bool = False  # the location must be in the order's country
    same_region_as_order: bool = False  # the location must be in the order's region


@dataclass(frozen=True)
class Weights:
    distance: float = 1.0
    cost: float = 0.0
    priority: float = 0.0
    stock_depth: float = 0.0
    capacity_headroom: float = 0.0
    rejection_rate: float = 0.0


@dataclass(frozen=True)
class StrategyIn:
    name: str
    filters: Filters = field(default_factory=Filters)
    weights: Weights = field(default_factory=Weights)
    ship_complete: bool = False  # one location or nothing
    max_locations: int = 3  # split limit when splitting is allowed
    optimal: bool = False  # minimise total cost with a MIP solver (never worse than greedy)
    # BOPIS/curbside: when the pickup store lacks stock, other locations may ship the rest to
    # it by transfer (the order's coordinates are the store's, so distance means transfer distance).
    transfer_to_pickup: bool = False
    shipping_cost_per_km: float = 0.01
    cost_per_shipment: float = 5.0
    split_penalty: float = 2.0


@dataclass(frozen=True)
class ProfileIn:
    version_id: int | None
    strategies: tuple[StrategyIn, ...]


@dataclass
class Plan:
    """Fulfilments per location: {location_id: {line_id: quantity}}, and what was not sourced."""

    strategy: str | None
    fulfillments: dict[int, dict[int, int]]
    unsourced: dict[int, int]
    explanation: dict

    @property
    def complete(self) -> bool:
        return not self.unsourced


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------

RANKERS = ("distance", "cost", "priority", "stock_depth", "capacity_headroom", "rejection_rate")
TIE_BREAK_RULE = "total score desc, then priority asc, then fulfillment_cost asc, then code asc"
EXACT_POOL = 12  # exact split search: combinations of the best-scoring candidates holding stock
EXACT_MAX_COMBINATIONS = 2_500  # beyond this many subsets, bounded (greedy) search only
EXPLAIN_MAX_CANDIDATES = 50  # candidate entries kept per strategy; the rest are counted
EXPLAIN_MAX_TIE_BREAKS = 10
EARTH_RADIUS_KM = 6371.0088
PICKUP_METHODS = frozenset({"pickup", "curbside"})


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def route(order: OrderIn, candidates: Sequence[Candidate], profile: ProfileIn) -> Plan:
    """Decide which location(s) fulfil `order`: try the profile's strategies in order; the
    first that sources the whole order wins. If none does, the best partial plan (most units,
    then fewest locations, then best score) is returned with the rest in `unsourced`."""
    ctx = _Context(order, candidates)
    explanation: dict = {
        "profile_version": profile.version_id,
        "order": {
            "method": order.method,
            "lines": len(ctx.lines),
            "units": ctx.total_units,
            "coordinates": ctx.has_coords,
        },
        "tie_break_rule": TIE_BREAK_RULE,
        "strategies": [],
        "winner": None,
        "summary": "",
    }
    all_unsourced = {line.line_id: line.quantity for line in ctx.lines}
    if not ctx.lines:
        explanation["summary"] = "Nothing to route: the order has no units left to source"
        return Plan(None, {}, {}, explanation)
    if not profile.strategies:
        explanation["summary"] = "Not routed: the routing profile has no strategies; all units unsourced"
        return Plan(None, {}, all_unsourced, explanation)

    results: list[_Result] = []
    for strategy in profile.strategies:
        if results and results[-1].complete:
            explanation["strategies"].append(
                {
                    "name": strategy.name,
                    "outcome": "not tried",
                    "reason": f"an earlier strategy ({results[-1].name}) sourced the whole order",
                    "candidates": [],
                    "plan": None,
                }
            )
            continue
        result = _run_strategy(ctx, strategy)
        results.append(result)
        explanation["strategies"].append(result.explanation)

    won = results[-1] if results[-1].complete else None
    if won is not None:
        chosen = won
        explanation["winner"] = won.name
    else:
        best = min(
            range(len(results)),
            key=lambda k: (-results[k].units, len(results[k].fulfillments), -results[k].score, k),
        )
        chosen = results[best]
        explanation["chosen"] = chosen.name if chosen.units else None
    explanation["summary"] = _summary(ctx, chosen, won is not None, chosen is not results[0])
    if not chosen.units:
        return Plan(None, {}, all_unsourced, explanation)
    return Plan(chosen.name, chosen.fulfillments, chosen.unsourced, explanation)


# --- working data -----------------------------------------------------------------------------


class _Context:
    """What is the same for every strategy: the order's items, distances, raw availability."""

    def __init__(self, order: OrderIn, candidates: Sequence[Candidate]):
        self.order = order
        self.candidates = candidates
        self.lines = tuple(line for line in order.lines if line.quantity > 0)
        self.total_units = sum(line.quantity for line in self.lines)
        # Lines of the same item share its stock, so coverage is counted per item.
        items: list[int] = []
        demand: dict[int, int] = {}
        vendor: dict[int, int | None] = {}
        sku: dict[int, str] = {}
        for line in self.lines:
            if line.item_id not in demand:
                items.append(line.item_id)
                demand[line.item_id] = 0
                vendor[line.item_id] = line.dropship_vendor_id
                sku[line.item_id] = line.sku
            demand[line.item_id] += line.quantity
            if line.dropship_vendor_id is not None:
                vendor[line.item_id] = line.dropship_vendor_id
        self.items = tuple(items)
        self.demand = tuple(demand[i] for i in items)
        self.vendor = tuple(vendor[i] for i in items)
        self.skus = tuple(sku[i] for i in items)
        self.line_item = tuple(items.index(line.item_id) for line in self.lines)
        self.has_coords = order.latitude is not None and order.longitude is not None
        self.bopis = order.method in PICKUP_METHODS and order.pickup_location_id is not None
        self._dist: list[float | None] | None = None
        self._raw: list[tuple[int, ...] | None] | None = None

    @property
    def dist(self) -> list[float | None]:
        """Haversine km from the order to each candidate (None without coordinates), once."""
        if self._dist is None:
            if not self.has_coords:
                self._dist = [None] * len(self.candidates)
            else:
                rad, sin, cos, asin, sqrt = math.radians, math.sin, math.cos, math.asin, math.sqrt
                lat1, lon1 = rad(self.order.latitude), rad(self.order.longitude)
                cos1, diameter = cos(lat1), 2 * EARTH_RADIUS_KM
                out: list[float | None] = []
                append = out.append
                for c in self.candidates:
                    lat, lon = c.latitude, c.longitude
                    if lat is None or lon is None:
                        append(None)
                        continue
                    lat2 = rad(lat)
                    a = sin((lat2 - lat1) * 0.5) ** 2 + cos1 * cos(lat2) * sin((rad(lon) - lon1) * 0.5) ** 2
                    append(diameter * asin(sqrt(a) if a < 1.0 else 1.0))
                self._dist = out
        return self._dist

    @property
    def raw(self) -> list[tuple[int, ...] | None]:
        """Units of each of the order's items per candidate, filled in by `_filter` the first
        time a candidate reaches the item rules, then shared by every strategy."""
        if self._raw is None:
            self._raw = [None] * len(self.candidates)
        return self._raw


class _Row:
    """One candidate that passed the filters, for one strategy."""

    __slots__ = ("c", "i", "dist", "usable", "cover", "covered", "full", "notes", "total", "rank")

    def __init__(self, c: Candidate, dist: float | None, usable: tuple[int, ...], demand: tuple[int, ...], notes):
        self.c = c
        self.i = 0  # position in the ranking columns
        self.dist = dist
        self.usable = usable
        self.cover = cover = tuple([u if u < d else d for u, d in zip(usable, demand)])  # noqa: B905 (hot path)
        self.covered = sum(cover)
        self.full = cover == demand
        self.notes = notes
        self.total = 0.0
        self.rank = 0


class _Ranking:
    """Per ranker, each row's raw value and normalised score (columns, indexed by `_Row.i`)."""

    __slots__ = ("names", "values", "scores")

    def __init__(self, names: tuple[str, ...], values: list[list], scores: list[list[float]]):
        self.names, self.values, self.scores = names, values, scores


@dataclass
class _Result:
    name: str
    fulfillments: dict[int, dict[int, int]]
    unsourced: dict[int, int]
    units: int
    score: float
    complete: bool
    explanation: dict
    method: str = ""
    rows: list = field(default_factory=list)  # the plan's locations, best-ranked first
    costs: dict | None = None


# --- one strategy -----------------------------------------------------------------------------


def _run_strategy(ctx: _Context, strategy: StrategyIn) -> _Result:
    notes: list[str] = []
    ship_complete = strategy.ship_complete or ctx.order.ship_complete
    max_locations = 1 if ship_complete else max(1, strategy.max_locations)
    rows, excluded = _filter(ctx, strategy, notes, ship_complete)
    ranking = _rank(ctx, strategy, rows, notes)

    chosen, method, reason = _choose(ctx, rows, ship_complete, max_locations, excluded)
    costs = None
    if strategy.optimal and rows:
        chosen, method, reason, costs = _optimise(ctx, strategy, rows, chosen, method, reason, max_locations)

    fulfillments, unsourced, units, used = _assign(ctx, chosen)
    complete = units == ctx.total_units
    if complete:
        outcome = "won"
    elif units:
        outcome = "partial"
    else:
        outcome = "failed"
    plan_explained = _plan_explanation(ctx, used, fulfillments, unsourced, units, method, costs) if units else None
    explanation = {
        "name": strategy.name,
        "outcome": outcome,
        "reason": reason,
        "settings": _settings(strategy, ship_complete, max_locations),
        **({"notes": notes} if notes else {}),
        **_candidates_explanation(rows, excluded, ranking, used),
        "tie_breaks": _tie_breaks(rows),
        "plan": plan_explained,
    }
    return _Result(
        name=strategy.name,
        fulfillments=fulfillments,
        unsourced=unsourced,
        units=units,
        score=sum(r.total for r in used),
        complete=complete,
        explanation=explanation,
        method=method,
        rows=used,
        costs=costs,
    )


def _settings(strategy: StrategyIn, ship_complete: bool, max_locations: int) -> dict:
    w = strategy.weights
    out = {
        "weights": {name: getattr(w, name) for name in RANKERS if getattr(w, name)},
        "ship_complete": ship_complete,
        "max_locations": max_locations,
    }
    if strategy.transfer_to_pickup:
        out["transfer_to_pickup"] = True
    if strategy.optimal:
        out["optimal"] = {
            "cost_per_shipment": strategy.cost_per_shipment,
            "shipping_cost_per_km": strategy.shipping_cost_per_km,
            "split_penalty": strategy.split_penalty,
        }
    return out


# --- (1) filters ------------------------------------------------------------------------------


def _filter(
    ctx: _Context, strategy: StrategyIn, notes: list[str], ship_complete: bool
) -> tuple[list[_Row], list[tuple]]:
    """Candidates that pass, and (candidate, filter, reason template, args) for each excluded one;
    reasons are formatted only for the candidates the explanation shows. Under ship complete,
    a location without the whole order cannot be used, so it is set aside (and not ranked)."""
    order, f = ctx.order, strategy.filters
    method = order.method
    transfer = ctx.bopis and strategy.transfer_to_pickup
    bopis = ctx.bopis and not transfer
    pickup_id = order.pickup_location_id
    excluded_ids = order.excluded_location_ids
    need_cap = f.require_capability
    types, countries, regions = f.location_types, f.countries, f.regions
    same_country = order.country if f.same_country_as_order and order.country else None
    same_region = order.region if f.same_region_as_order and order.region else None
    limit = f.max_distance_km if ctx.has_coords else None
    capacity = f.respect_capacity
    min_left = f.min_remaining_available
    dropship_rule = f.dropship_items_to_vendor
    items, demand, vendors, skus = ctx.items, ctx.demand, ctx.vendor, ctx.skus
    n_items, total = len(demand), ctx.total_units
    item_loop = min_left > 0 or (dropship_rule and any(v is not None for v in vendors))

    if bopis or transfer:
        code = next((c.code for c in ctx.candidates if c.location_id == pickup_id), f"location {pickup_id}")
        if bopis:
            notes.append(f"{method} order: only the chosen pickup location {code} can fulfil it (BOPIS)")
        else:
            notes.append(f"{method} order at {code}: other locations may send what it lacks by transfer")
    if f.max_distance_km is not None and not ctx.has_coords:
        notes.append("the order has no coordinates: the distance limit is not applied")
    if f.same_country_as_order and not order.country:
        notes.append("the order has no country: the same-country filter is not applied")
    if f.same_region_as_order and not order.region:
        notes.append("the order has no region: the same-region filter is not applied")

    dists = ctx.dist
    raw = ctx.raw
    rows: list[_Row] = []
    excluded: list[tuple] = []
    skip = excluded.append
    for j, c in enumerate(ctx.candidates):
        if bopis and c.location_id != pickup_id:
            skip((c, "pickup_location", "not the pickup location chosen for this order", ()))
            continue
        if not c.active:
            skip((c, "active", "inactive", ()))
            continue
        if c.location_id in excluded_ids:
            skip((c, "excluded_for_order", "excluded for this order after a rejection", ()))
            continue
        # A transfer to the pickup store leaves by shipping; the store itself hands over.
        wanted_cap = "ship" if transfer and c.location_id != pickup_id else method
        if need_cap and wanted_cap not in c.capabilities:
            skip((c, "capability", "does not offer {}", (wanted_cap,)))
            continue
        if types and c.type not in types:
            skip((c, "location_type", "type {} not in {}", (c.type, ", ".join(sorted(types)))))
            continue
        if countries and c.country not in countries:
            skip((c, "country", "in {}, not in {}", (c.country or "no country", ", ".join(sorted(countries)))))
            continue
        if same_country is not None and c.country != same_country:
            skip((c, "country", "in {}, order ships to {}", (c.country or "no country", same_country)))
            continue
        if regions and c.region not in regions:
            skip((c, "region", "in {}, not in {}", (c.region or "no region", ", ".join(sorted(regions)))))
            continue
        if same_region is not None and c.region != same_region:
            skip((c, "region", "in {}, order ships to {}", (c.region or "no region", same_region)))
            continue
        d = dists[j]
        if limit is not None:
            if d is None:
                skip((c, "distance", "no coordinates, cannot check the {:g} km limit", (limit,)))
                continue
            if d > limit:
                skip((c, "distance", "{:.1f} km away, over the {:g} km limit", (d, limit)))
                continue
        if capacity and c.daily_capacity is not None and c.orders_today >= c.daily_capacity:
            skip((c, "capacity", "daily capacity reached ({}/{} orders today)", (c.orders_today, c.daily_capacity)))
            continue

        # Item rules reduce what a candidate can give rather than exclude it outright.
        usable = raw[j]
        if usable is None:
            get = c.available.get
            usable = raw[j] = (get(items[0], 0),) if n_items == 1 else tuple([get(i, 0) for i in items])
        row_notes: list[tuple[str, str]] | None = None
        if item_loop:
            out = list(usable)
            for k in range(n_items):
                a = out[k]
                if a <= 0:
                    out[k] = 0
                    continue
                if dropship_rule:
                    v = vendors[k]
                    if v is not None and c.location_id != v:
                        out[k] = 0
                        row_notes = row_notes or []
                        row_notes.append(("dropship", f"{skus[k]}: dropship item, only its vendor location ships it"))
                        continue
                    if v is None and c.type == "dropship":
                        out[k] = 0
                        row_notes = row_notes or []
                        row_notes.append(("dropship", f"{skus[k]}: not one of this dropship vendor's items"))
                        continue
                if min_left > 0 and a - demand[k] < min_left:
                    keep = a - min_left if a > min_left else 0
                    out[k] = keep
                    row_notes = row_notes or []
                    tail = f"only {keep} usable" if keep else "treated as not stocked"
                    row_notes.append(
                        (
                            "min_remaining_available",
                            f"{skus[k]}: {a} available - {demand[k]} ordered leaves {a - demand[k]}, "
                            f"below the minimum {min_left}; {tail}",
                        )
                    )
            usable = tuple(out)
        elif dropship_rule and c.type == "dropship":  # no dropship lines: a vendor has nothing to give
            row_notes = [
                ("dropship", f"{skus[k]}: not one of this dropship vendor's items")
                for k in range(n_items)
                if usable[k] > 0
            ]
            usable = (0,) * n_items
        if not any(usable):
            if row_notes:
                skip((c, row_notes[0][0], "{}", ("; ".join(n for _, n in row_notes),)))
            else:
                skip((c, "stock", "none of the order's items available", ()))
            continue
        if ship_complete:
            cover = tuple([u if u < d else d for u, d in zip(usable, demand)])  # noqa: B905 (hot path)
            if cover != demand:
                skip(
                    (
                        c,
                        "ship_complete",
                        "{} of {} units here; ship complete needs them all at one location",
                        (sum(cover), total),
                    )
                )
                continue
        rows.append(_Row(c, d, usable, demand, [n for _, n in row_notes] if row_notes else None))
    return rows, excluded


# --- (2) rankers ------------------------------------------------------------------------------


def _rank(ctx: _Context, strategy: StrategyIn, rows: list[_Row], notes: list[str]) -> _Ranking:
    """Score every row (Σ weight × normalised score, 1 = best) and sort them, best first."""
    w = strategy.weights
    active = []
    for name in RANKERS:
        weight = getattr(w, name)
        if not weight:
            continue
        if name == "distance" and not ctx.has_coords:
            others = [n for n in RANKERS if n != "distance" and getattr(w, n)]
            fallback = f"ranked by {', '.join(others)}" if others else "no other ranker has a weight"
            notes.append(
                f"the order has no coordinates: the distance ranker is skipped ({fallback}; ties fall to priority, "
                "then fulfilment cost, then code)"
            )
            continue
        active.append((name, weight))

    values, scores = [], []
    n = len(rows)
    totals = [0.0] * n
    for name, weight in active:
        v, sc = _RANKER_FUNCS[name](rows)
        values.append(v)
        scores.append(sc)
        totals = [t + weight * x for t, x in zip(totals, sc, strict=True)]
    for i, (r, t) in enumerate(zip(rows, totals, strict=True)):
        r.i = i
        r.total = round(t, 9)  # equal sums compare equal, so tie-breaks are deterministic
    rows.sort(key=lambda r: (-r.total, r.c.priority, r.c.fulfillment_cost, r.c.code))
    for rank, r in enumerate(rows, 1):
        r.rank = rank
    return _Ranking(tuple(name for name, _ in active), values, scores)


def _lower_is_better(values: list) -> list[float]:
    present = [v for v in values if v is not None]
    if not present:
        return [0.0] * len(values)
    lo, hi = min(present), max(present)
    if hi == lo:
        return [0.0 if v is None else 1.0 for v in values]
    span = hi - lo
    return [0.0 if v is None else 1.0 - (v - lo) / span for v in values]


def _r_distance(rows):
    v = [r.dist for r in rows]
    return v, _lower_is_better(v)


def _r_cost(rows):
    v = [r.c.fulfillment_cost for r in rows]
    return v, _lower_is_better(v)


def _r_priority(rows):
    v = [r.c.priority for r in rows]
    return v, _lower_is_better(v)


def _r_stock_depth(rows):
    v = [sum(r.usable) for r in rows]  # units of the order's items available here
    top = max(v, default=0) or 1
    return v, [x / top for x in v]


def _r_capacity_headroom(rows):
    values, scores = [], []
    for r in rows:
        cap = r.c.daily_capacity
        if cap is None:
            values.append(None)
            scores.append(1.0)
        else:
            left = max(0, cap - r.c.orders_today)
            values.append(left)
            scores.append(left / cap if cap > 0 else 0.0)
    return values, scores


def _r_rejection_rate(rows):
    v = [r.c.rejection_rate for r in rows]
    return v, [1.0 - min(1.0, max(0.0, x)) for x in v]


_RANKER_FUNCS = {
    "distance": _r_distance,
    "cost": _r_cost,
    "priority": _r_priority,
    "stock_depth": _r_stock_depth,
    "capacity_headroom": _r_capacity_headroom,
    "rejection_rate": _r_rejection_rate,
}


# --- (3) split policy -------------------------------------------------------------------------


def _choose(
    ctx: _Context, rows: list[_Row], ship_complete: bool, max_locations: int, excluded: list[tuple]
) -> tuple[list[_Row], str, str]:
    """The set of locations to source from (best-ranked first), how it was found, and why."""
    lines_txt = _all_lines(len(ctx.lines))
    for r in rows:
        if r.full:
            return [r], "single", f"{r.c.code} has {lines_txt} ({ctx.total_units} units)"
    if ship_complete:
        partial = [(-x[3][0], x[0].code) for x in excluded if x[1] == "ship_complete"]
        if partial:
            units, code = min(partial)
            return (
                [],
                "none",
                f"ship complete: no single location has {lines_txt} "
                f"(best: {code} with {-units} of {ctx.total_units} units)",
            )
    if not rows:
        if excluded:
            return [], "none", "no candidate passed the filters"
        return [], "none", "no candidate locations"
    best = max(rows, key=lambda r: r.covered)  # first of the best-ranked on ties
    if max_locations < 2:
        return [best], "partial", f"no single location has {lines_txt} and the split limit is 1 location"

    exact, bounded = _exact_cover(ctx, rows, max_locations)
    if exact is not None and len(exact) == 2:  # nothing smaller exists: no single location covers
        greedy, greedy_full = [], False
    else:
        greedy, greedy_full = _greedy_cover(ctx, rows, max_locations)
    if greedy_full and (exact is None or len(greedy) < len(exact)):
        how = "bounded greedy search" if exact is None else "greedy search (smaller than the exact search's set)"
        return greedy, "split", f"no single location has {lines_txt}; {len(greedy)} locations cover the order ({how})"
    if exact is not None:
        pool = min(EXACT_POOL, sum(1 for r in rows if r.covered))
        return (
            exact,
            "split",
            f"no single location has {lines_txt}; {len(exact)} locations cover the order "
            f"(exact search over the top {pool})",
        )
    units = sum(
        min(d, sum(r.cover[k] for r in greedy)) for k, d in enumerate(ctx.demand)
    )  # what the greedy set can give
    limit = f"{max_locations} location{'s' if max_locations != 1 else ''}"
    return (
        greedy,
        "partial",
        f"no set of up to {limit} covers the order{' (search bounded)' if bounded else ''}; "
        f"{units} of {ctx.total_units} units sourceable",
    )


def _exact_cover(ctx: _Context, rows: list[_Row], max_locations: int) -> tuple[list[_Row] | None, bool]:
    """The smallest set (then best total score) among the top EXACT_POOL stocked candidates."""
    demand = ctx.demand
    n_items = len(demand)
    stocked = [r for r in rows if r.covered]
    pool, truncated = stocked[:EXACT_POOL], len(stocked) > EXACT_POOL
    if any(sum(r.cover[k] for r in pool) < demand[k] for k in range(n_items)):
        return None, truncated  # even the whole pool cannot cover
    covers = [r.cover for r in pool]
    totals = [r.total for r in pool]
    budget = EXACT_MAX_COMBINATIONS
    for size in range(2, min(max_locations, len(pool)) + 1):
        budget -= math.comb(len(pool), size)
        if budget < 0:
            return None, True
        best, best_total = None, -math.inf
        for combo in itertools.combinations(range(len(pool)), size):
            for k in range(n_items):
                s = 0
                for i in combo:
                    s += covers[i][k]
                if s < demand[k]:
                    break
            else:
                t = sum(totals[i] for i in combo)
                if t > best_total + 1e-12:  # combinations come best-ranked first: keep the first on ties
                    best, best_total = combo, t
        if best is not None:
            return [pool[i] for i in best], False
    return None, truncated


def _greedy_cover(ctx: _Context, rows: list[_Row], max_locations: int) -> tuple[list[_Row], bool]:
    """Repeatedly take the candidate giving the most remaining units (ties: best-ranked)."""
    remaining = list(ctx.demand)
    n_items = len(remaining)
    chosen: list[_Row] = []
    stocked = [r for r in rows if r.covered]
    taken: set[int] = set()
    while len(chosen) < max_locations and any(remaining):
        gains = [
            -1 if idx in taken else sum([c if c < m else m for c, m in zip(r.cover, remaining)])  # noqa: B905
            for idx, r in enumerate(stocked)
        ]
        if not gains:
            break
        best = max(range(len(gains)), key=gains.__getitem__)  # the first (best-ranked) on ties
        if gains[best] <= 0:
            break
        taken.add(best)
        r = stocked[best]
        chosen.append(r)
        remaining = [rem - x if rem > x else 0 for rem, x in zip(remaining, r.cover, strict=True)]
    full = not any(remaining)
    if full and len(chosen) > 2:
        # drop locations the others make redundant (worst-ranked first)
        for r in sorted(chosen, key=lambda r: -r.rank):
            rest = [x for x in chosen if x is not r]
            if all(sum(x.cover[k] for x in rest) >= ctx.demand[k] for k in range(n_items)):
                chosen = rest
    chosen.sort(key=lambda r: r.rank)
    return chosen, full


def _assign(ctx: _Context, chosen: list[_Row]) -> tuple[dict[int, dict[int, int]], dict[int, int], int, list[_Row]]:
    """Quantities line by line: the best-ranked location in the set able to give the whole
    line; only if none can, the line is split across locations in rank order."""
    chosen = sorted(chosen, key=lambda r: r.rank)
    left = [list(r.usable) for r in chosen]
    plan: dict[int, dict[int, int]] = {}
    unsourced: dict[int, int] = {}
    units = 0
    for line, k in zip(ctx.lines, ctx.line_item, strict=True):
        qty = line.quantity
        whole = next((i for i in range(len(chosen)) if left[i][k] >= qty), None)
        if whole is not None:
            left[whole][k] -= qty
            plan.setdefault(chosen[whole].c.location_id, {})[line.line_id] = qty
            units += qty
            continue
        for i in range(len(chosen)):
            take = min(qty, left[i][k])
            if take <= 0:
                continue
            left[i][k] -= take
            plan.setdefault(chosen[i].c.location_id, {})[line.line_id] = take
            units += take
            qty -= take
            if not qty:
                break
        if qty:
            unsourced[line.line_id] = qty
    used = [r for r in chosen if r.c.location_id in plan]
    ordered = {r.c.location_id: plan[r.c.location_id] for r in used}
    return ordered, unsourced, units, used


# --- (4) optimal mode -------------------------------------------------------------------------


def _shipment_cost(strategy: StrategyIn, r: _Row) -> float:
    km = r.dist if r.dist is not None else 0.0
    return strategy.cost_per_shipment + r.c.fulfillment_cost + strategy.shipping_cost_per_km * km


def _plan_cost(strategy: StrategyIn, rows: Sequence[_Row]) -> float:
    """Σ per-shipment cost + shipping by distance + split penalty × (shipments − 1)."""
    if not rows:
        return 0.0
    return sum(_shipment_cost(strategy, r) for r in rows) + strategy.split_penalty * (len(rows) - 1)


def _optimise(ctx, strategy, rows, chosen, method, reason, max_locations):
    """Find the cheapest cover and keep whichever of it and the greedy plan costs less; on
    equal cost the greedy plan stays. Only one location allowed: the cheapest with everything.
    Otherwise the MIP (`routing.optimal`), over the locations that could beat the best plan
    known beforehand (the greedy plan, the cheapest single location, a cost-greedy cover)."""
    from routing import optimal

    _, _, greedy_units, greedy_used = _assign(ctx, chosen)
    greedy_full = greedy_units == ctx.total_units
    greedy_cost = round(_plan_cost(strategy, greedy_used), 4) if greedy_full else None
    costs: dict = {"greedy": greedy_cost, "optimal": None, "chosen": "greedy", "solver": None}
    stocked = [r for r in rows if r.covered]
    full = [r for r in stocked if r.full]

    if max_locations == 1:  # ship complete or a limit of one
        if not full:
            costs["status"] = "no single location has the whole order"
            return chosen, method, reason, costs
        opt_rows = [min(full, key=lambda r: (_shipment_cost(strategy, r), r.rank))]
        costs["status"] = "optimal (cheapest single location; no solver needed)"
    else:
        costs["solver"] = optimal.SOLVER
        if not optimal.AVAILABLE:
            costs["status"] = "highspy is not installed: greedy plan kept"
            return chosen, method, reason, costs
        shipment = [_shipment_cost(strategy, r) for r in stocked]
        known: list[tuple[float, list[_Row]]] = []  # feasible plans found without the solver
        if greedy_full:
            known.append((_plan_cost(strategy, greedy_used), greedy_used))
        if full:
            single = min(full, key=lambda r: (_shipment_cost(strategy, r), r.rank))
            known.append((_shipment_cost(strategy, single), [single]))
        cheap = _cost_greedy_cover(ctx, stocked, shipment, strategy.split_penalty, max_locations)
        if cheap is not None:
            used = _assign(ctx, cheap)[3]
            known.append((_plan_cost(strategy, used), used))
        best_cost, best_rows = min(known, key=lambda x: x[0]) if known else (math.inf, None)
        pool = _prune(ctx, stocked, shipment, strategy.split_penalty, best_cost)
        res = None
        if pool:
            ids = {r.c.location_id for r in best_rows or ()}
            start = tuple(i for i, j in enumerate(pool) if stocked[j].c.location_id in ids)
            res = optimal.min_cost_cover(
                [shipment[j] for j in pool],
                [stocked[j].cover for j in pool],
                ctx.demand,
                max_locations=max_locations,
                split_penalty=strategy.split_penalty,
                start=start if len(start) == len(ids) else (),
            )
            # Infeasible over the pruned pool = nothing beats the best plan already known.
            status = "optimal" if res.status == "infeasible" and best_rows else res.status
            costs["status"] = f"{status} ({len(pool)} of {len(stocked)} stocked locations in the model)"
        else:
            costs["status"] = "optimal (no location can beat the best plan found without the solver)"
        opt_rows = best_rows
        if res is not None and res.chosen:
            found = sorted((stocked[pool[i]] for i in res.chosen), key=lambda r: r.rank)
            if _plan_cost(strategy, _assign(ctx, found)[3]) < best_cost - 1e-9:
                opt_rows = found
        if opt_rows is None:
            return chosen, method, reason, costs

    opt_used = _assign(ctx, opt_rows)[3]
    opt_cost = round(_plan_cost(strategy, opt_used), 4)
    costs["optimal"] = opt_cost
    if greedy_full and opt_cost >= greedy_cost - 1e-9:
        costs["optimal"] = greedy_cost
        return chosen, method, reason, costs
    costs["chosen"] = "optimal"
    codes = ", ".join(r.c.code for r in opt_used)
    if greedy_full:
        why = f"optimal mode: {codes} cost {opt_cost:.2f} vs {greedy_cost:.2f} for the greedy plan"
    else:
        why = f"optimal mode: {codes} cover the order (cost {opt_cost:.2f}) where the greedy search could not"
    return opt_rows, "optimal", why, costs


def _cost_greedy_cover(ctx, stocked, shipment, penalty, max_locations) -> list[_Row] | None:
    """A cheap cover to bound the MIP: repeatedly the lowest cost per unit still needed."""
    remaining = list(ctx.demand)
    chosen, taken = [], set()
    while len(chosen) < max_locations and any(remaining):
        best, best_ratio = -1, math.inf
        for idx, r in enumerate(stocked):
            if idx in taken:
                continue
            gain = sum([c if c < m else m for c, m in zip(r.cover, remaining)])  # noqa: B905
            if gain and (shipment[idx] + penalty) / gain < best_ratio:
                best, best_ratio = idx, (shipment[idx] + penalty) / gain
        if best < 0:
            return None
        taken.add(best)
        chosen.append(stocked[best])
        remaining = [m - c if m > c else 0 for m, c in zip(remaining, stocked[best].cover)]  # noqa: B905
    return None if any(remaining) else sorted(chosen, key=lambda r: r.rank)


def _prune(ctx, stocked, shipment, penalty, ub) -> list[int]:
    """Indices of the locations that can be in a plan cheaper than `ub` (costs are non-negative):
    one with everything that costs less alone, or one whose cost, plus the cheapest other holder
    of each item it lacks, plus one split penalty, is still less."""
    if ub == math.inf:
        return list(range(len(stocked)))
    holders = []  # per item: the two cheapest (cost, index) that hold any of it
    for k in range(len(ctx.demand)):
        holders.append(sorted((shipment[j], j) for j, r in enumerate(stocked) if r.cover[k])[:2])
    pool = []
    for j, r in enumerate(stocked):
        cj = shipment[j]
        if r.full:
            if cj < ub:
                pool.append(j)
            continue
        bound = cj + penalty
        for k, d in enumerate(ctx.demand):
            if r.cover[k] < d:
                others = [x for x, idx in holders[k] if idx != j]
                bound = max(bound, cj + penalty + (others[0] if others else math.inf))
        if bound < ub:
            pool.append(j)
    return pool


# --- explanation ------------------------------------------------------------------------------


def _row_entry(r: _Row, ranking: _Ranking) -> dict:
    scores = {}
    for name, values, col in zip(ranking.names, ranking.values, ranking.scores, strict=True):
        v = values[r.i]
        if name == "distance" and v is not None:
            v = round(v, 1)
        scores[name] = {"value": v, "score": round(col[r.i], 4)}
    entry = {
        "location": r.c.code,
        "location_id": r.c.location_id,
        "excluded_by": None,
        "reason": None,
        "rank": r.rank,
        "units": r.covered,
        "scores": scores,
        "total": round(r.total, 4),
    }
    if r.notes:
        entry["notes"] = r.notes
    return entry


def _candidates_explanation(rows: list[_Row], excluded: list[tuple], ranking: _Ranking, used: list[_Row]) -> dict:
    """The best-ranked candidates, then excluded ones, up to EXPLAIN_MAX_CANDIDATES (the plan's
    locations always shown); the rest are counted, with every exclusion counted by filter."""
    entries = [_row_entry(r, ranking) for r in rows[:EXPLAIN_MAX_CANDIDATES]]
    shown = len(entries)
    for r in used:
        if r.rank > EXPLAIN_MAX_CANDIDATES:
            entries.append(_row_entry(r, ranking))
    for c, name, template, args in excluded[: max(0, EXPLAIN_MAX_CANDIDATES - shown)]:
        entries.append(
            {
                "location": c.code,
                "location_id": c.location_id,
                "excluded_by": name,
                "reason": template.format(*args) if args else template,
                "scores": {},
                "total": None,
            }
        )
    counts: dict[str, int] = {}
    for x in excluded:
        counts[x[1]] = counts.get(x[1], 0) + 1
    return {
        "candidates": entries,
        "candidates_omitted": len(rows) + len(excluded) - len(entries),
        "ranked": len(rows),
        "excluded_counts": counts,
    }


def _tie_breaks(rows: list[_Row]) -> list[dict]:
    out = []
    for a, b in itertools.pairwise(rows[: EXPLAIN_MAX_TIE_BREAKS + 1]):
        if a.total != b.total:
            continue
        if a.c.priority != b.c.priority:
            by, detail = "priority", f"priority {a.c.priority} < {b.c.priority}"
        elif a.c.fulfillment_cost != b.c.fulfillment_cost:
            by, detail = "fulfillment_cost", f"fulfilment cost {a.c.fulfillment_cost:g} < {b.c.fulfillment_cost:g}"
        else:
            by, detail = "code", f"code {a.c.code} < {b.c.code}"
        out.append(
            {"first": a.c.code, "then": b.c.code, "by": by, "detail": f"equal total {round(a.total, 4)}; {detail}"}
        )
    return out


def _plan_explanation(ctx, used, fulfillments, unsourced, units, method, costs) -> dict:
    out = {
        "method": method,
        "fulfillments": [
            {
                "location": r.c.code,
                "location_id": r.c.location_id,
                "distance_km": None if r.dist is None else round(r.dist, 1),
                "lines": {str(line_id): q for line_id, q in fulfillments[r.c.location_id].items()},
            }
            for r in used
        ],
        "unsourced": {str(line_id): q for line_id, q in unsourced.items()},
        "units": units,
        "of": ctx.total_units,
    }
    if costs is not None:
        out["cost"] = costs
    return out


def _all_lines(n: int) -> str:
    return "the 1 line" if n == 1 else f"all {n} lines"


def _summary(ctx: _Context, res: _Result, complete: bool, fallback: bool) -> str:
    lines_txt = _all_lines(len(ctx.lines))
    missing = ctx.total_units - res.units
    if not res.units:
        text = f"Not sourced: {res.explanation['reason']}; all {ctx.total_units} units unsourced (backorder)"
        return text
    rows = res.rows
    if ctx.bopis:
        r = rows[0]
        if complete:
            text = f"Pickup at {r.c.code} (the customer's chosen store, {lines_txt} in stock)"
        else:
            text = f"Pickup at {r.c.code}: {res.units} of {ctx.total_units} units in stock; {missing} unsourced (backorder)"
    elif not complete:
        codes = ", ".join(r.c.code for r in rows)
        text = (
            f"Partially sourced from {codes}: {res.units} of {ctx.total_units} units; {missing} unsourced (backorder)"
        )
    elif res.method == "optimal":
        codes = " and ".join(r.c.code for r in rows) if len(rows) < 3 else ", ".join(r.c.code for r in rows)
        text = (
            f"Shipped from {codes} (lowest total cost {res.costs['optimal']:.2f} "
            f"vs {res.costs['greedy']:.2f} for the best-scoring plan)"
            if res.costs.get("greedy") is not None
            else f"Shipped from {codes} (optimal mode, cost {res.costs['optimal']:.2f})"
        )
    elif len(rows) == 1:
        r = rows[0]
        weights = res.explanation["settings"]["weights"]
        active = [n for n in weights if n != "distance" or ctx.has_coords]
        qual = {
            ("distance",): "nearest",
            ("cost",): "cheapest",
            ("priority",): "highest priority",
        }.get(tuple(active), "best score")
        km = f", {r.dist:.0f} km" if r.dist is not None else ""
        text = f"Shipped from {r.c.code} ({qual} with {lines_txt}{km})"
    else:
        parts = []
        for r in rows:
            k = len(res.fulfillments[r.c.location_id])
            parts.append(f"{r.c.code} ({k} line{'s' if k != 1 else ''})")
        text = f"Split across {len(rows)} locations: {', '.join(parts)}; no single location had {lines_txt}"
    if fallback:
        text += f"; by fallback strategy '{res.name}'"
    return text
