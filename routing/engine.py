"""The routing engine: pure functions over plain data. No ORM, no I/O while deciding.

Inputs are loaded by `routing.selectors` in a few queries; the plan is applied by
`routing.services`. Everything the engine decides is written into the explanation, so a
merchant or CSR can see why an order went where it went.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LineIn:
    line_id: int
    item_id: int
    sku: str
    quantity: int
    dropship_vendor_id: int | None = None  # item rule: dropship items go to their vendor


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
