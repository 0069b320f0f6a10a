"""The pure routing engine: plain data in, exact plans out. No database."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from routing import engine, optimal
from routing.engine import (
    Candidate,
    Filters,
    LineIn,
    OrderIn,
    ProfileIn,
    StrategyIn,
    Weights,
    haversine_km,
    route,
)

# The order ships to (40.0, -74.0); 0.1° of latitude north of it is 11.1 km.
LAT, LON = 40.0, -74.0
KM_PER_TENTH = 11.1195


def cand(location_id: int, code: str, available: dict[int, int], *, north: float = 1.0, **kw) -> Candidate:
    """A location `north` tenths of a degree (≈ 11.1 km each) north of the order."""
    values = dict(
        location_id=location_id,
        code=code,
        type="warehouse",
        capabilities=frozenset({"ship"}),
        active=True,
        priority=100,
        fulfillment_cost=1.0,
        latitude=LAT + north / 10,
        longitude=LON,
        country="US",
        region="NJ",
        daily_capacity=None,
        orders_today=0,
        rejection_rate=0.0,
        available=available,
    )
    values.update(kw)
    return Candidate(**values)


def order(*lines: tuple[int, int, int], **kw) -> OrderIn:
    """Lines as (line_id, item_id, quantity); the SKU is f"SKU-{item_id}"."""
    values = dict(
        lines=tuple(LineIn(line_id=lid, item_id=item, sku=f"SKU-{item}", quantity=q) for lid, item, q in lines),
        method="ship",
        latitude=LAT,
        longitude=LON,
        country="US",
        region="NJ",
    )
    values.update(kw)
    return OrderIn(**values)


def profile(*strategies: StrategyIn) -> ProfileIn:
    return ProfileIn(version_id=7, strategies=strategies or (StrategyIn("default"),))


def entry(plan, code: str, strategy: int = 0) -> dict:
    return next(c for c in plan.explanation["strategies"][strategy]["candidates"] if c["location"] == code)


def excluded(strategy: StrategyIn, o: OrderIn, c: Candidate) -> tuple[str | None, str | None]:
    """Route with one bad candidate and one good; the bad one's (filter, reason)."""
    good = cand(99, "GOOD", {item: 100 for item in {line.item_id for line in o.lines}}, north=0.5)
    plan = route(o, [c, good], profile(strategy))
    assert plan.fulfillments == {99: {line.line_id: line.quantity for line in o.lines}}
    e = entry(plan, c.code)
    return e["excluded_by"], e["reason"]


# --- filters ----------------------------------------------------------------------------------


def test_filter_inactive():
    assert excluded(StrategyIn("s"), order((1, 10, 1)), cand(1, "A", {10: 5}, active=False)) == ("active", "inactive")


def test_filter_excluded_for_order_after_rejection():
    o = order((1, 10, 2), excluded_location_ids=frozenset({1}))
    assert excluded(StrategyIn("s"), o, cand(1, "A", {10: 5})) == (
        "excluded_for_order",
        "excluded for this order after a rejection",
    )


def test_filter_capability_for_the_orders_method():
    c = cand(1, "A", {10: 5}, capabilities=frozenset({"pickup"}))
    assert excluded(StrategyIn("s"), order((1, 10, 1)), c) == ("capability", "does not offer ship")
    # same-day is just another method/capability
    sd = order((1, 10, 1), method="same_day")
    ok = cand(2, "B", {10: 5}, capabilities=frozenset({"ship", "same_day"}))
    plan = route(sd, [cand(1, "A", {10: 5}), ok], profile())
    assert plan.fulfillments == {2: {1: 1}}
    assert entry(plan, "A")["reason"] == "does not offer same_day"
    # the filter can be switched off
    plan = route(order((1, 10, 1)), [c], profile(StrategyIn("s", filters=Filters(require_capability=False))))
    assert plan.fulfillments == {1: {1: 1}}


def test_filter_location_types():
    s = StrategyIn("s", filters=Filters(location_types=frozenset({"warehouse", "dropship"})))
    assert excluded(s, order((1, 10, 1)), cand(1, "ST", {10: 5}, type="store")) == (
        "location_type",
        "type store not in dropship, warehouse",
    )


def test_filter_countries_and_regions():
    o = order((1, 10, 1))
    s = StrategyIn("s", filters=Filters(countries=frozenset({"US"})))
    assert excluded(s, o, cand(1, "CA-1", {10: 5}, country="CA")) == ("country", "in CA, not in US")
    s = StrategyIn("s", filters=Filters(regions=frozenset({"NJ", "PA"})))
    assert excluded(s, o, cand(1, "NY-1", {10: 5}, region="NY")) == ("region", "in NY, not in NJ, PA")


def test_filter_same_country_and_region_as_the_order():
    o = order((1, 10, 1), country="US", region="NJ")
    s = StrategyIn("s", filters=Filters(same_country_as_order=True))
    assert excluded(s, o, cand(1, "CA-1", {10: 5}, country="CA")) == ("country", "in CA, order ships to US")
    s = StrategyIn("s", filters=Filters(same_region_as_order=True))
    assert excluded(s, o, cand(1, "NY-1", {10: 5}, region="NY")) == ("region", "in NY, order ships to NJ")


def test_filter_distance_limit():
    s = StrategyIn("s", filters=Filters(max_distance_km=100))
    assert haversine_km(LAT, LON, 42.0, LON) == pytest.approx(222.39, abs=0.01)
    assert excluded(s, order((1, 10, 1)), cand(1, "FAR", {10: 5}, north=20)) == (
        "distance",
        "222.4 km away, over the 100 km limit",
    )
    assert excluded(s, order((1, 10, 1)), cand(1, "NOWHERE", {10: 5}, latitude=None, longitude=None)) == (
        "distance",
        "no coordinates, cannot check the 100 km limit",
    )
    near = route(order((1, 10, 1)), [cand(1, "NEAR", {10: 5}, north=8)], profile(s))  # 89 km
    assert near.fulfillments == {1: {1: 1}}


def test_filter_daily_capacity_reached():
    c = cand(1, "FULL", {10: 5}, daily_capacity=50, orders_today=50)
    assert excluded(StrategyIn("s"), order((1, 10, 1)), c) == (
        "capacity",
        "daily capacity reached (50/50 orders today)",
    )
    s = StrategyIn("s", filters=Filters(respect_capacity=False))
    assert route(order((1, 10, 1)), [c], profile(s)).fulfillments == {1: {1: 1}}


def test_filter_min_remaining_available():
    s = StrategyIn("s", filters=Filters(min_remaining_available=2))
    # 2 available, 2 ordered: nothing may be taken
    assert excluded(s, order((1, 10, 2)), cand(1, "THIN", {10: 2})) == (
        "min_remaining_available",
        "SKU-10: 2 available - 2 ordered leaves 0, below the minimum 2; treated as not stocked",
    )


def test_min_remaining_available_caps_what_a_location_gives():
    s = StrategyIn("s", filters=Filters(min_remaining_available=2))
    # A has 5 of the 4 ordered (would leave 1 < 2): it may give 3, B gives the last one
    a = cand(1, "A", {10: 5}, north=1)
    b = cand(2, "B", {10: 10}, north=9)
    plan = route(order((1, 10, 4)), [a, b], profile(s))
    # B alone keeps 6 ≥ 2, so the single-location plan at B wins over splitting
    assert plan.fulfillments == {2: {1: 4}}
    assert entry(plan, "A")["notes"] == ["SKU-10: 5 available - 4 ordered leaves 1, below the minimum 2; only 3 usable"]
    assert entry(plan, "A")["units"] == 3
    # without B, A gives what it can spare and the rest is backordered
    plan = route(order((1, 10, 4)), [a], profile(s))
    assert plan.fulfillments == {1: {1: 3}}
    assert plan.unsourced == {1: 1}


def test_filter_no_stock_of_the_orders_items():
    assert excluded(StrategyIn("s"), order((1, 10, 1)), cand(1, "EMPTY", {11: 5})) == (
        "stock",
        "none of the order's items available",
    )


def test_dropship_items_go_to_their_vendor_only():
    o = OrderIn(
        lines=(
            LineIn(1, 10, "SKU-10", 2),
            LineIn(2, 20, "DS-20", 1, dropship_vendor_id=9),
        ),
        method="ship",
        latitude=LAT,
        longitude=LON,
    )
    dc = cand(1, "DC", {10: 5, 20: 5}, north=1)  # nearest, holds both, but may not ship DS-20
    vendor = cand(9, "VENDOR", {10: 5, 20: 50}, type="dropship", north=30)
    plan = route(o, [dc, vendor], profile())
    assert plan.fulfillments == {1: {1: 2}, 9: {2: 1}}
    assert plan.unsourced == {}
    assert entry(plan, "DC")["notes"] == ["DS-20: dropship item, only its vendor location ships it"]
    assert entry(plan, "VENDOR")["notes"] == ["SKU-10: not one of this dropship vendor's items"]
    # a dropship vendor holding none of its own items in this order is excluded by the rule
    plan = route(order((1, 10, 1)), [vendor, dc], profile())
    assert plan.fulfillments == {1: {1: 1}}
    assert (entry(plan, "VENDOR")["excluded_by"], entry(plan, "VENDOR")["reason"]) == (
        "dropship",
        "SKU-10: not one of this dropship vendor's items",
    )
    # with the rule off, the DC ships everything
    off = StrategyIn("s", filters=Filters(dropship_items_to_vendor=False))
    assert route(o, [dc, vendor], profile(off)).fulfillments == {1: {1: 2, 2: 1}}


# --- rankers ----------------------------------------------------------------------------------

# Each of these is best on exactly one ranker; the baseline is mediocre on all of them.
BASE = dict(priority=50, fulfillment_cost=10.0, daily_capacity=100, orders_today=50, rejection_rate=0.2)


def ranker_candidates() -> list[Candidate]:
    def c(i, code, north, stock=5, **kw):
        return cand(i, code, {10: stock, 20: stock}, north=north, **{**BASE, **kw})

    return [
        c(1, "NEAR", north=1),
        c(2, "CHEAP", north=10, fulfillment_cost=1.0),
        c(3, "FIRST", north=11, priority=1),
        c(4, "DEEP", north=12, stock=50),
        c(5, "ROOMY", north=13, orders_today=0),
        c(6, "RELIABLE", north=14, rejection_rate=0.0),
    ]


@pytest.mark.parametrize(
    ("weights", "winner"),
    [
        (Weights(distance=1), 1),
        (Weights(distance=0, cost=1), 2),
        (Weights(distance=0, priority=1), 3),
        (Weights(distance=0, stock_depth=1), 4),
        (Weights(distance=0, capacity_headroom=1), 5),
        (Weights(distance=0, rejection_rate=1), 6),
        # a weight decides between two rankers that disagree
        (Weights(distance=1, cost=0.5), 1),
        (Weights(distance=1, cost=2), 2),
    ],
)
def test_each_ranker_decides_the_winner_by_its_weight(weights, winner):
    plan = route(order((1, 10, 1), (2, 20, 1)), ranker_candidates(), profile(StrategyIn("s", weights=weights)))
    assert plan.fulfillments == {winner: {1: 1, 2: 1}}


def test_ranker_values_and_scores_are_explained():
    w = Weights(distance=1, cost=1, priority=1, stock_depth=1, capacity_headroom=1, rejection_rate=1)
    plan = route(order((1, 10, 1), (2, 20, 1)), ranker_candidates(), profile(StrategyIn("s", weights=w)))
    deep = entry(plan, "DEEP")
    assert deep["scores"] == {
        "distance": {"value": 133.4, "score": round(1 - (12 - 1) / (14 - 1), 4)},
        "cost": {"value": 10.0, "score": 0.0},
        "priority": {"value": 50, "score": 0.0},
        "stock_depth": {"value": 100, "score": 1.0},
        "capacity_headroom": {"value": 50, "score": 0.5},
        "rejection_rate": {"value": 0.2, "score": 0.8},
    }
    assert deep["total"] == round(1 - 11 / 13 + 0 + 0 + 1 + 0.5 + 0.8, 4)
    roomy = entry(plan, "ROOMY")
    assert roomy["scores"]["capacity_headroom"] == {"value": 100, "score": 1.0}
    # no capacity configured = full headroom, value None
    plan = route(order((1, 10, 1)), [cand(1, "A", {10: 1})], profile(StrategyIn("s", weights=w)))
    assert entry(plan, "A")["scores"]["capacity_headroom"] == {"value": None, "score": 1.0}


# --- split policy -----------------------------------------------------------------------------


def test_single_location_preferred_over_a_better_scoring_split():
    a = cand(1, "A", {10: 5}, north=1)
    b = cand(2, "B", {20: 5}, north=2)
    far = cand(3, "FAR", {10: 5, 20: 5}, north=40)
    plan = route(order((1, 10, 2), (2, 20, 3)), [a, b, far], profile())
    assert plan.fulfillments == {3: {1: 2, 2: 3}}
    assert plan.explanation["strategies"][0]["plan"]["method"] == "single"


def test_minimal_set_of_locations_is_chosen():
    # A, B, C are the best-scoring but need three shipments; A + D covers the order in two
    a = cand(1, "A", {10: 1}, north=1)
    b = cand(2, "B", {20: 1}, north=2)
    c = cand(3, "C", {30: 1}, north=3)
    d = cand(4, "D", {20: 1, 30: 1}, north=30)
    plan = route(order((1, 10, 1), (2, 20, 1), (3, 30, 1)), [a, b, c, d], profile())
    assert plan.fulfillments == {1: {1: 1}, 4: {2: 1, 3: 1}}
    s = plan.explanation["strategies"][0]
    assert (
        s["reason"] == "no single location has all 3 lines; 2 locations cover the order (exact search over the top 4)"
    )
    assert plan.explanation["summary"] == (
        "Split across 2 locations: A (1 line), D (2 lines); no single location had all 3 lines"
    )


def test_among_minimal_sets_the_best_total_score_wins():
    a = cand(1, "A", {10: 1}, north=1)
    a2 = cand(2, "A2", {10: 1}, north=5)
    b = cand(3, "B", {20: 1}, north=2)
    b2 = cand(4, "B2", {20: 1}, north=6)
    plan = route(order((1, 10, 1), (2, 20, 1)), [a2, b2, a, b], profile())
    assert plan.fulfillments == {1: {1: 1}, 3: {2: 1}}


def test_max_locations_is_respected():
    cs = [cand(i, f"L{i}", {10 * i: 5}, north=i) for i in (1, 2, 3)]
    o = order((1, 10, 1), (2, 20, 2), (3, 30, 3))
    plan = route(o, cs, profile(StrategyIn("s", max_locations=2)))
    # greedy takes the locations giving the most units: L3 (3 units), then L2 (2)
    assert plan.fulfillments == {2: {2: 2}, 3: {3: 3}}
    assert plan.unsourced == {1: 1}
    assert plan.explanation["strategies"][0]["outcome"] == "partial"
    assert plan.explanation["strategies"][0]["reason"] == (
        "no set of up to 2 locations covers the order; 5 of 6 units sourceable"
    )
    plan = route(o, cs, profile(StrategyIn("s", max_locations=3)))
    assert plan.fulfillments == {1: {1: 1}, 2: {2: 2}, 3: {3: 3}}
    assert plan.unsourced == {}


def test_a_line_is_split_only_when_needed():
    a = cand(1, "A", {10: 6}, north=1)
    b = cand(2, "B", {10: 6}, north=2)
    plan = route(order((1, 10, 10)), [a, b], profile())
    assert plan.fulfillments == {1: {1: 6}, 2: {1: 4}}
    # within a chosen set, a line goes whole to the best location that can take all of it
    a = cand(1, "A", {10: 3, 20: 1}, north=1)
    b = cand(2, "B", {10: 5}, north=2)
    plan = route(order((1, 10, 5), (2, 20, 1)), [a, b], profile())
    assert plan.fulfillments == {2: {1: 5}, 1: {2: 1}}


def test_bounded_greedy_search_beyond_the_exact_pool():
    # 14 near locations hold only SKU-10; the only SKU-20 is at the 15th, outside the top 12
    cs = [cand(i, f"N{i:02d}", {10: 1}, north=i) for i in range(1, 15)]
    cs.append(cand(15, "FAR", {20: 1}, north=90))
    plan = route(order((1, 10, 1), (2, 20, 1)), cs, profile())
    assert plan.fulfillments == {1: {1: 1}, 15: {2: 1}}
    assert plan.explanation["strategies"][0]["reason"] == (
        "no single location has all 2 lines; 2 locations cover the order (bounded greedy search)"
    )


def test_lines_of_the_same_item_share_its_stock():
    a = cand(1, "A", {10: 3}, north=1)
    b = cand(2, "B", {10: 3}, north=2)
    plan = route(order((1, 10, 2), (2, 10, 2)), [a, b], profile())
    assert plan.fulfillments == {1: {1: 2}, 2: {2: 2}}


# --- fallback chain ---------------------------------------------------------------------------


def test_ship_complete_fails_then_the_next_strategy_splits():
    a = cand(1, "A", {10: 5}, north=1)
    b = cand(2, "B", {20: 5}, north=2)
    p = profile(StrategyIn("complete", ship_complete=True), StrategyIn("split"))
    plan = route(order((1, 10, 1), (2, 20, 1)), [a, b], p)
    assert plan.strategy == "split"
    assert plan.fulfillments == {1: {1: 1}, 2: {2: 1}}
    s = plan.explanation["strategies"]
    assert [x["outcome"] for x in s] == ["failed", "won"]
    assert s[0]["reason"] == "ship complete: no single location has all 2 lines (best: A with 1 of 2 units)"
    assert s[0]["plan"] is None
    assert (entry(plan, "B", 0)["excluded_by"], entry(plan, "B", 0)["reason"]) == (
        "ship_complete",
        "1 of 2 units here; ship complete needs them all at one location",
    )
    assert plan.explanation["winner"] == "split"
    assert plan.explanation["summary"] == (
        "Split across 2 locations: A (1 line), B (1 line); no single location had all 2 lines; "
        "by fallback strategy 'split'"
    )


def test_order_ship_complete_applies_to_every_strategy():
    a = cand(1, "A", {10: 5}, north=1)
    b = cand(2, "B", {20: 5}, north=2)
    o = order((1, 10, 1), (2, 20, 1), ship_complete=True)
    plan = route(o, [a, b], profile(StrategyIn("one"), StrategyIn("two")))
    assert plan.fulfillments == {}
    assert plan.unsourced == {1: 1, 2: 1}
    assert plan.strategy is None
    assert [x["outcome"] for x in plan.explanation["strategies"]] == ["failed", "failed"]


def test_full_fallback_chain():
    store = cand(1, "STORE", {10: 5}, type="store", north=1)
    dc = cand(2, "DC", {10: 5, 20: 5}, north=60)
    p = profile(
        StrategyIn("local", filters=Filters(max_distance_km=50)),
        StrategyIn("stores", filters=Filters(location_types=frozenset({"store"})), ship_complete=True),
        StrategyIn("network"),
        StrategyIn("never"),
    )
    plan = route(order((1, 10, 1), (2, 20, 1)), [store, dc], p)
    assert plan.strategy == "network"
    assert plan.fulfillments == {2: {1: 1, 2: 1}}
    s = plan.explanation["strategies"]
    assert [(x["name"], x["outcome"]) for x in s] == [
        ("local", "partial"),
        ("stores", "failed"),
        ("network", "won"),
        ("never", "not tried"),
    ]
    assert s[0]["plan"]["unsourced"] == {"2": 1}
    assert s[0]["excluded_counts"] == {"distance": 1}
    assert s[1]["reason"] == "ship complete: no single location has all 2 lines (best: STORE with 1 of 2 units)"
    assert s[3]["reason"] == "an earlier strategy (network) sourced the whole order"


def test_no_strategy_sources_everything_the_best_partial_plan_is_returned():
    a = cand(1, "A", {10: 2}, north=1)
    b = cand(2, "B", {10: 1, 20: 1}, north=2, region="PA")
    p = profile(
        StrategyIn("pa-only", filters=Filters(regions=frozenset({"PA"}))),  # B alone: 2 of 5 units
        StrategyIn("both"),  # A + B: 4 of 5 units
    )
    plan = route(order((1, 10, 4), (2, 20, 1)), [a, b], p)
    assert plan.strategy == "both"
    assert plan.fulfillments == {1: {1: 2}, 2: {1: 1, 2: 1}}
    assert plan.unsourced == {1: 1}
    assert [x["outcome"] for x in plan.explanation["strategies"]] == ["partial", "partial"]
    assert plan.explanation["winner"] is None
    assert plan.explanation["chosen"] == "both"


def test_best_partial_plan_tie_on_units_prefers_fewer_locations():
    a = cand(1, "A", {10: 6}, north=1, region="NY")
    b = cand(2, "B", {10: 3}, north=2)
    c = cand(3, "C", {10: 3}, north=3)
    p = profile(
        StrategyIn("nj-split", filters=Filters(regions=frozenset({"NJ"})), max_locations=2),  # B + C: 6 units
        StrategyIn("one", max_locations=1),  # A: 6 units from one location
    )
    plan = route(order((1, 10, 10)), [a, b, c], p)
    assert plan.strategy == "one"
    assert plan.fulfillments == {1: {1: 6}}
    assert plan.unsourced == {1: 4}
    assert plan.explanation["strategies"][0]["plan"]["units"] == 6


def test_no_strategies_plans_nothing():
    plan = route(order((1, 10, 2)), [cand(1, "A", {10: 5})], ProfileIn(version_id=3, strategies=()))
    assert plan.fulfillments == {}
    assert plan.unsourced == {1: 2}
    assert plan.strategy is None
    assert plan.explanation["summary"] == "Not routed: the routing profile has no strategies; all units unsourced"


# --- BOPIS ------------------------------------------------------------------------------------


def test_bopis_only_the_pickup_store():
    store = cand(5, "STORE", {10: 3}, type="store", capabilities=frozenset({"pickup", "ship"}), north=30)
    dc = cand(1, "DC", {10: 100}, capabilities=frozenset({"ship", "pickup"}), north=1)
    o = order((1, 10, 2), method="pickup", pickup_location_id=5)
    plan = route(o, [dc, store], profile())
    assert plan.fulfillments == {5: {1: 2}}
    s = plan.explanation["strategies"][0]
    assert s["notes"] == ["pickup order: only the chosen pickup location STORE can fulfil it (BOPIS)"]
    assert (entry(plan, "DC")["excluded_by"], entry(plan, "DC")["reason"]) == (
        "pickup_location",
        "not the pickup location chosen for this order",
    )
    assert plan.explanation["summary"] == "Pickup at STORE (the customer's chosen store, the 1 line in stock)"


def test_bopis_insufficient_stock_is_unsourced():
    store = cand(5, "STORE", {10: 1}, type="store", capabilities=frozenset({"curbside"}), north=30)
    dc = cand(1, "DC", {10: 100, 20: 100}, capabilities=frozenset({"curbside"}), north=1)
    o = order((1, 10, 3), (2, 20, 1), method="curbside", pickup_location_id=5)
    plan = route(o, [dc, store], profile())
    assert plan.fulfillments == {5: {1: 1}}
    assert plan.unsourced == {1: 2, 2: 1}
    assert plan.explanation["summary"] == "Pickup at STORE: 1 of 4 units in stock; 3 unsourced (backorder)"


def test_bopis_store_without_the_capability():
    store = cand(5, "STORE", {10: 5}, type="store", capabilities=frozenset({"ship"}))
    o = order((1, 10, 1), method="pickup", pickup_location_id=5)
    plan = route(o, [store], profile())
    assert plan.fulfillments == {}
    assert plan.unsourced == {1: 1}
    assert entry(plan, "STORE")["reason"] == "does not offer pickup"


# --- backorders and re-routing ----------------------------------------------------------------


def test_backorder_unsourced_quantities_are_exact():
    a = cand(1, "A", {10: 2, 20: 1}, north=1)
    b = cand(2, "B", {10: 1}, north=2)
    plan = route(order((1, 10, 5), (2, 20, 4), (3, 30, 2)), [a, b], profile())
    assert plan.fulfillments == {1: {1: 2, 2: 1}, 2: {1: 1}}
    assert plan.unsourced == {1: 2, 2: 3, 3: 2}
    assert not plan.complete
    assert plan.explanation["winner"] is None
    assert plan.explanation["summary"] == "Partially sourced from A, B: 4 of 11 units; 7 unsourced (backorder)"


def test_nothing_in_stock_anywhere():
    plan = route(order((1, 10, 2)), [cand(1, "A", {})], profile())
    assert plan.fulfillments == {}
    assert plan.unsourced == {1: 2}
    assert plan.explanation["summary"] == (
        "Not sourced: no candidate passed the filters; all 2 units unsourced (backorder)"
    )


def test_rejection_reroute_excludes_the_rejecting_location():
    a = cand(1, "A", {10: 5}, north=1)
    b = cand(2, "B", {10: 1}, north=2)
    c = cand(3, "C", {10: 5}, north=30)
    first = route(order((1, 10, 2)), [a, b, c], profile())
    assert first.fulfillments == {1: {1: 2}}
    again = route(order((1, 10, 2), excluded_location_ids=frozenset({1})), [a, b, c], profile())
    assert again.fulfillments == {3: {1: 2}}
    assert entry(again, "A")["excluded_by"] == "excluded_for_order"


# --- no coordinates ---------------------------------------------------------------------------


def test_no_coordinates_skips_distance_filter_and_ranker():
    near = cand(1, "NEAR", {10: 5}, north=1, priority=50)
    far = cand(2, "FAR", {10: 5}, north=80, priority=10)
    s = StrategyIn("s", filters=Filters(max_distance_km=100), weights=Weights(distance=1, cost=0.5))
    with_coords = route(order((1, 10, 1)), [near, far], profile(s))
    assert with_coords.fulfillments == {1: {1: 1}}
    blind = route(order((1, 10, 1), latitude=None, longitude=None), [near, far], profile(s))
    # no distance: cost is equal, so priority (10 < 50) decides
    assert blind.fulfillments == {2: {1: 1}}
    st = blind.explanation["strategies"][0]
    assert st["notes"] == [
        "the order has no coordinates: the distance limit is not applied",
        "the order has no coordinates: the distance ranker is skipped (ranked by cost; ties fall to priority, "
        "then fulfilment cost, then code)",
    ]
    assert entry(blind, "FAR")["scores"] == {"cost": {"value": 1.0, "score": 1.0}}
    assert blind.explanation["order"]["coordinates"] is False
    assert st["tie_breaks"] == [
        {"first": "FAR", "then": "NEAR", "by": "priority", "detail": "equal total 0.5; priority 10 < 50"}
    ]


# --- determinism ------------------------------------------------------------------------------


def test_tie_breaks_are_deterministic():
    # all at the same spot: equal distance score; priority, then cost, then code decide
    cs = [
        cand(1, "C-ZED", {10: 5}, priority=5, fulfillment_cost=1.0),
        cand(2, "C-ALPHA", {10: 5}, priority=5, fulfillment_cost=1.0),
        cand(3, "C-CHEAP", {10: 5}, priority=5, fulfillment_cost=0.5),
        cand(4, "C-TOP", {10: 5}, priority=1, fulfillment_cost=9.0),
    ]
    o = order((1, 10, 1))
    for perm in itertools.permutations(cs):
        plan = route(o, list(perm), profile())
        assert plan.fulfillments == {4: {1: 1}}
        ranked = [c["location"] for c in plan.explanation["strategies"][0]["candidates"]]
        assert ranked == ["C-TOP", "C-CHEAP", "C-ALPHA", "C-ZED"]
    assert plan.explanation["strategies"][0]["tie_breaks"] == [
        {"first": "C-TOP", "then": "C-CHEAP", "by": "priority", "detail": "equal total 1.0; priority 1 < 5"},
        {
            "first": "C-CHEAP",
            "then": "C-ALPHA",
            "by": "fulfillment_cost",
            "detail": "equal total 1.0; fulfilment cost 0.5 < 1",
        },
        {"first": "C-ALPHA", "then": "C-ZED", "by": "code", "detail": "equal total 1.0; code C-ALPHA < C-ZED"},
    ]


# --- optimal mode -----------------------------------------------------------------------------


def cost_of(plan, cs: list[Candidate], s: StrategyIn) -> float:
    """Total cost of a plan, computed independently of the engine."""
    by_id = {c.location_id: c for c in cs}
    total = 0.0
    for loc_id in plan.fulfillments:
        c = by_id[loc_id]
        km = haversine_km(LAT, LON, c.latitude, c.longitude)
        total += s.cost_per_shipment + c.fulfillment_cost + s.shipping_cost_per_km * km
    return total + s.split_penalty * (len(plan.fulfillments) - 1)


def test_optimal_mode_picks_a_cheaper_location_than_the_nearest():
    near = cand(1, "NEAR-DEAR", {10: 5, 20: 5}, north=1, fulfillment_cost=30.0)
    cheap = cand(2, "FAR-CHEAP", {10: 5, 20: 5}, north=20, fulfillment_cost=1.0)
    o = order((1, 10, 1), (2, 20, 1))
    greedy = route(o, [near, cheap], profile(StrategyIn("g")))
    assert greedy.fulfillments == {1: {1: 1, 2: 1}}
    s = StrategyIn("opt", optimal=True)
    plan = route(o, [near, cheap], profile(s))
    assert plan.fulfillments == {2: {1: 1, 2: 1}}
    cost = plan.explanation["strategies"][0]["plan"]["cost"]
    assert cost["chosen"] == "optimal"
    assert cost["greedy"] == round(cost_of(greedy, [near, cheap], s), 4)
    assert cost["optimal"] == round(cost_of(plan, [near, cheap], s), 4)
    assert cost["optimal"] < cost["greedy"]
    assert plan.explanation["summary"] == (
        f"Shipped from FAR-CHEAP (lowest total cost {cost['optimal']:.2f} vs {cost['greedy']:.2f} "
        "for the best-scoring plan)"
    )


def test_optimal_mode_splits_when_two_cheap_shipments_beat_one_dear_one():
    dear = cand(1, "DEAR", {10: 5, 20: 5}, north=1, fulfillment_cost=50.0)
    a = cand(2, "A", {10: 5}, north=2, fulfillment_cost=0.0)
    b = cand(3, "B", {20: 5}, north=3, fulfillment_cost=0.0)
    s = StrategyIn("opt", optimal=True, split_penalty=2.0)
    plan = route(order((1, 10, 1), (2, 20, 1)), [dear, a, b], profile(s))
    assert plan.fulfillments == {2: {1: 1}, 3: {2: 1}}
    cost = plan.explanation["strategies"][0]["plan"]["cost"]
    assert cost["greedy"] == pytest.approx(5 + 50 + 0.01 * 1 * KM_PER_TENTH, abs=1e-3)
    assert cost["optimal"] == pytest.approx(10 + 0.01 * 5 * KM_PER_TENTH + 2, abs=1e-3)


def test_optimal_mode_respects_ship_complete_and_max_locations():
    dear = cand(1, "DEAR", {10: 5, 20: 5, 30: 5}, north=1, fulfillment_cost=50.0)
    cheap = [cand(i + 1, f"C{i}", {10 * i: 5}, north=i + 1, fulfillment_cost=0.0) for i in (1, 2, 3)]
    o = order((1, 10, 1), (2, 20, 1), (3, 30, 1))
    plan = route(o, [dear, *cheap], profile(StrategyIn("opt", optimal=True, max_locations=2)))
    assert plan.fulfillments == {1: {1: 1, 2: 1, 3: 1}}  # three cheap shipments would break the limit
    plan = route(o, [dear, *cheap], profile(StrategyIn("opt", optimal=True, max_locations=3)))
    assert plan.fulfillments == {2: {1: 1}, 3: {2: 1}, 4: {3: 1}}
    plan = route(o, [dear, *cheap], profile(StrategyIn("opt", optimal=True, ship_complete=True)))
    assert plan.fulfillments == {1: {1: 1, 2: 1, 3: 1}}


def brute_force_min_cost(o: OrderIn, cs: list[Candidate], s: StrategyIn, max_locations: int) -> float | None:
    demand: dict[int, int] = {}
    for line in o.lines:
        demand[line.item_id] = demand.get(line.item_id, 0) + line.quantity
    best = None
    for size in range(1, max_locations + 1):
        for subset in itertools.combinations(cs, size):
            if all(sum(c.available.get(i, 0) for c in subset) >= q for i, q in demand.items()):
                cost = sum(
                    s.cost_per_shipment
                    + c.fulfillment_cost
                    + s.shipping_cost_per_km * haversine_km(LAT, LON, c.latitude, c.longitude)
                    for c in subset
                ) + s.split_penalty * (size - 1)
                best = cost if best is None else min(best, cost)
    return best


def test_optimal_mode_is_never_worse_than_greedy_and_is_optimal():
    rng = random.Random(4)
    strictly_better = 0
    for _ in range(60):
        cs = [
            cand(
                i,
                f"L{i:02d}",
                {item: rng.randint(0, 3) for item in range(1, 6) if rng.random() < 0.5},
                north=rng.uniform(0, 100),
                fulfillment_cost=round(rng.uniform(0, 8), 2),
                priority=rng.randint(1, 5),
            )
            for i in range(1, 16)
        ]
        o = order(*((n, item, rng.randint(1, 2)) for n, item in enumerate(rng.sample(range(1, 6), 3), 1)))
        w = Weights(distance=1, priority=0.3)
        g = StrategyIn("s", weights=w)
        s = StrategyIn("s", weights=w, optimal=True)
        greedy, opt = route(o, cs, profile(g)), route(o, cs, profile(s))
        assert sum(sum(q.values()) for q in opt.fulfillments.values()) >= sum(
            sum(q.values()) for q in greedy.fulfillments.values()
        )
        best = brute_force_min_cost(o, cs, s, 3)
        assert opt.complete == (best is not None)
        if not opt.complete:
            continue
        assert cost_of(opt, cs, s) == pytest.approx(best, abs=1e-9)  # the true optimum
        # the plan is a valid cover: stock respected, every line fully sourced
        by_id = {c.location_id: c for c in cs}
        for loc_id, lines in opt.fulfillments.items():
            used: dict[int, int] = {}
            for line in o.lines:
                used[line.item_id] = used.get(line.item_id, 0) + lines.get(line.line_id, 0)
            assert all(by_id[loc_id].available.get(item, 0) >= q for item, q in used.items())
        if greedy.complete:
            cost = opt.explanation["strategies"][0]["plan"]["cost"]
            assert cost["greedy"] == round(cost_of(greedy, cs, s), 4)
            assert cost["optimal"] <= cost["greedy"]
            assert cost_of(opt, cs, s) <= cost_of(greedy, cs, s) + 1e-9
            strictly_better += cost_of(opt, cs, s) < cost_of(greedy, cs, s) - 1e-9
    assert strictly_better > 0


def test_optimal_mode_covers_what_the_bounded_search_cannot():
    # 12 near locations hold only SKU-1, so the exact search's pool cannot cover; greedy takes X
    # (4 units) and then can add only one of A/B; the solver finds A + B
    near = [cand(i, f"N{i:02d}", {1: 1}, north=i / 10) for i in range(1, 13)]
    x = cand(20, "X", {1: 1, 2: 1, 3: 1, 4: 1}, north=30)
    a = cand(21, "A", {1: 1, 2: 1, 5: 1}, north=31)
    b = cand(22, "B", {3: 1, 4: 1, 6: 1}, north=32)
    o = order(*((i, i, 1) for i in range(1, 7)))
    greedy = route(o, [*near, x, a, b], profile(StrategyIn("s", max_locations=2)))
    assert greedy.fulfillments == {20: {1: 1, 2: 1, 3: 1, 4: 1}, 21: {5: 1}}
    assert greedy.unsourced == {6: 1}
    assert greedy.explanation["strategies"][0]["reason"] == (
        "no set of up to 2 locations covers the order (search bounded); 5 of 6 units sourceable"
    )
    plan = route(o, [*near, x, a, b], profile(StrategyIn("s", max_locations=2, optimal=True)))
    assert plan.fulfillments == {21: {1: 1, 2: 1, 5: 1}, 22: {3: 1, 4: 1, 6: 1}}
    assert plan.unsourced == {}
    assert plan.explanation["strategies"][0]["plan"]["cost"]["greedy"] is None


def test_optimal_mode_without_highspy_keeps_greedy(monkeypatch):
    monkeypatch.setattr(optimal, "AVAILABLE", False)
    near = cand(1, "NEAR-DEAR", {10: 5}, north=1, fulfillment_cost=30.0)
    cheap = cand(2, "FAR-CHEAP", {10: 5}, north=20, fulfillment_cost=1.0)
    plan = route(order((1, 10, 1)), [near, cheap], profile(StrategyIn("opt", optimal=True)))
    assert plan.fulfillments == {1: {1: 1}}
    cost = plan.explanation["strategies"][0]["plan"]["cost"]
    assert cost["chosen"] == "greedy"
    assert cost["status"] == "highspy is not installed: greedy plan kept"


# --- explanation ------------------------------------------------------------------------------


def test_explanation_is_json_and_capped():
    cs = [cand(i, f"L{i:03d}", {10: 1} if i % 2 else {}, north=i / 10) for i in range(1, 121)]
    plan = route(order((1, 10, 1)), cs, profile())
    json.dumps(plan.explanation)
    s = plan.explanation["strategies"][0]
    assert len(s["candidates"]) == engine.EXPLAIN_MAX_CANDIDATES
    assert s["candidates_omitted"] == 120 - engine.EXPLAIN_MAX_CANDIDATES
    assert s["ranked"] == 60
    assert s["excluded_counts"] == {"stock": 60}
    assert plan.explanation["profile_version"] == 7
    assert plan.explanation["summary"] == "Shipped from L001 (nearest with the 1 line, 1 km)"
