"""`manage.py seed_demo`: a realistic US demo network, catalogue, stock, users and an API key.

Idempotent: every section only creates what is missing (locations, items and channels by
code/SKU, stock per location that has none yet, purchase orders by reference, users by name),
so a second run changes nothing except issuing a fresh demo API key (older "demo" keys are
revoked). Data is deterministic: the same SKUs and quantities on every machine.
"""

from __future__ import annotations

import random
import time as clock
from dataclasses import dataclass
from datetime import time, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from inventory.models import (
    Channel,
    ChannelType,
    IncomingSupply,
    Item,
    Location,
    LocationType,
    Stock,
)
from inventory.services import SupplyLine, stock_snapshot, supply_upsert
from oms.actor import Actor
from oms.models import ApiKey
from oms.roles import CSR, MERCHANT, STORE_ASSOCIATE, SUPERVISOR, ensure_groups
from oms.services import api_key_create, api_key_revoke
from orders.models import Carrier, StoreAssociate

DEMO_KEY_NAME = "demo"
# The built-in sandbox carrier, as `python3 dev.py run` starts it (demo credentials only).
SANDBOX = {
    "code": "SANDBOX",
    "name": "Sandbox Parcel (built-in test carrier)",
    "adapter": "sandbox",
    "base_url": "http://127.0.0.1:8070",
    "api_key": "sandbox-demo-key",
    "webhook_secret": "sandbox-demo-webhook-secret",
    "services": ["ground", "express"],
}
PO_PREFIX = "PO-DEMO-"
BASE_URL = "http://127.0.0.1:8000"
SHIP, PICKUP, CURBSIDE, SAME_DAY = "ship", "pickup", "curbside", "same_day"

ET, CT, MT, PT = "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"

# --- Network -------------------------------------------------------------------------------------

# fmt: off
# code, name, street, city, region, postal code, latitude, longitude, time zone,
# then: priority, daily capacity, fulfilment cost, cutoff time
DCS = [
    ("DC-NJ", "Edison Distribution Center", "300 Raritan Center Pkwy", "Edison", "NJ", "08837",
     40.518700, -74.412100, ET, 10, 6000, "4.25", time(17, 0)),
    ("DC-TX", "Dallas Distribution Center", "4800 Mountain Creek Pkwy", "Dallas", "TX", "75236",
     32.696700, -96.944400, CT, 20, 4500, "4.50", time(16, 30)),
    ("DC-CA", "Ontario Distribution Center", "1900 S Milliken Ave", "Ontario", "CA", "91761",
     34.043600, -117.555300, PT, 20, 5000, "4.75", time(17, 0)),
]

# code, name, street, city, region, postal code, latitude, longitude, time zone, same-day?
STORES = [
    ("STORE-NYC-01", "New York Herald Square", "1275 Broadway", "New York", "NY", "10001",
     40.749700, -73.987600, ET, True),
    ("STORE-NYC-02", "Brooklyn Downtown", "445 Albee Square W", "Brooklyn", "NY", "11201",
     40.691000, -73.983300, ET, False),
    ("STORE-BOS-01", "Boston Downtown Crossing", "450 Washington St", "Boston", "MA", "02111",
     42.355400, -71.060500, ET, True),
    ("STORE-PHL-01", "Philadelphia Center City", "1625 Chestnut St", "Philadelphia", "PA", "19103",
     39.951600, -75.167700, ET, False),
    ("STORE-DCA-01", "Washington Chinatown", "701 7th St NW", "Washington", "DC", "20001",
     38.899000, -77.021900, ET, True),
    ("STORE-ATL-01", "Atlanta Buckhead", "3393 Peachtree Rd NE", "Atlanta", "GA", "30326",
     33.846500, -84.362100, ET, True),
    ("STORE-MIA-01", "Miami Brickell", "701 S Miami Ave", "Miami", "FL", "33130",
     25.766800, -80.193600, ET, False),
    ("STORE-ORL-01", "Orlando Millenia", "4200 Conroy Rd", "Orlando", "FL", "32839",
     28.485800, -81.431000, ET, False),
    ("STORE-CLT-01", "Charlotte SouthPark", "4400 Sharon Rd", "Charlotte", "NC", "28211",
     35.152600, -80.832300, ET, False),
    ("STORE-DET-01", "Detroit Campus Martius", "1001 Woodward Ave", "Detroit", "MI", "48226",
     42.331400, -83.045800, "America/Detroit", False),
    ("STORE-CHI-01", "Chicago Magnificent Mile", "835 N Michigan Ave", "Chicago", "IL", "60611",
     41.897500, -87.624100, CT, True),
    ("STORE-CHI-02", "Schaumburg Woodfield", "5 Woodfield Mall", "Schaumburg", "IL", "60173",
     42.047300, -88.037400, CT, False),
    ("STORE-MSP-01", "Minneapolis Nicollet", "901 Nicollet Mall", "Minneapolis", "MN", "55402",
     44.975000, -93.273300, CT, False),
    ("STORE-DAL-01", "Dallas NorthPark", "8687 N Central Expy", "Dallas", "TX", "75225",
     32.868300, -96.773500, CT, True),
    ("STORE-HOU-01", "Houston Galleria", "5085 Westheimer Rd", "Houston", "TX", "77056",
     29.739600, -95.463800, CT, True),
    ("STORE-AUS-01", "Austin Domain", "11410 Century Oaks Ter", "Austin", "TX", "78758",
     30.402000, -97.725000, CT, False),
    ("STORE-DEN-01", "Denver Cherry Creek", "3000 E 1st Ave", "Denver", "CO", "80206",
     39.718000, -104.953400, MT, False),
    ("STORE-SLC-01", "Salt Lake City Center", "50 S Main St", "Salt Lake City", "UT", "84101",
     40.768200, -111.891000, MT, False),
    ("STORE-PHX-01", "Phoenix Biltmore", "2502 E Camelback Rd", "Phoenix", "AZ", "85016",
     33.509400, -112.029500, "America/Phoenix", False),
    ("STORE-LAX-01", "Los Angeles The Grove", "189 The Grove Dr", "Los Angeles", "CA", "90036",
     34.072000, -118.357600, PT, True),
    ("STORE-LAX-02", "Santa Monica Promenade", "1315 3rd St Promenade", "Santa Monica", "CA",
     "90401", 34.016900, -118.497400, PT, False),
    ("STORE-SAN-01", "San Diego Fashion Valley", "7007 Friars Rd", "San Diego", "CA", "92108",
     32.767700, -117.167500, PT, False),
    ("STORE-SFO-01", "San Francisco Union Square", "170 O'Farrell St", "San Francisco", "CA",
     "94102", 37.786300, -122.407500, PT, True),
    ("STORE-SEA-01", "Seattle Pine Street", "1601 5th Ave", "Seattle", "WA", "98101",
     47.612600, -122.336200, PT, True),
    ("STORE-PDX-01", "Portland Pioneer Place", "700 SW 5th Ave", "Portland", "OR", "97204",
     45.518600, -122.677900, PT, False),
]

# code, name, street, city, region, postal code, latitude, longitude, time zone, category sold
VENDORS = [
    ("VND-HOME", "Hearth & Oak Home (dropship)", "1101 Prospect St", "High Point", "NC", "27260",
     35.955700, -80.005300, ET, "home"),
    ("VND-TECH", "Voltline Electronics (dropship)", "2255 Glendale Ave", "Sparks", "NV", "89431",
     39.537800, -119.752400, PT, "electronics"),
]
# fmt: on

# --- Catalogue -----------------------------------------------------------------------------------

COLORS = {
    "BLK": "Black", "WHT": "White", "NVY": "Navy", "GRY": "Heather Grey", "OLV": "Olive",
    "RED": "Brick Red", "TAN": "Tan", "BLU": "Chambray Blue", "GRN": "Forest Green",
    "BRN": "Chestnut Brown", "NAT": "Natural", "SLT": "Slate",
}  # fmt: skip
APPAREL_SIZES = ("XS", "S", "M", "L", "XL")
SHOE_SIZES = ("7", "8", "9", "10", "11", "12")


@dataclass(frozen=True)
class ProductType:
    name: str
    price: tuple[int, int]  # dollars
    weight: tuple[int, int]  # grams
    dims: tuple[int, int, int]  # mm, packed
    sizes: tuple[str, ...] = ()
    dropship_only: bool = False


P = ProductType
# fmt: off
# category: (SKU prefix, number of SKUs, brands, product types)
CATEGORIES: dict[str, tuple[str, int, tuple[str, ...], list[ProductType]]] = {
    "apparel": ("APP", 170, ("Northbound", "Harbor & Pine", "Field Standard", "Lumen"), [
        P("Crew Neck Tee", (18, 32), (160, 220), (250, 200, 30), APPAREL_SIZES),
        P("Oxford Shirt", (45, 69), (280, 340), (300, 240, 40), APPAREL_SIZES),
        P("Slim Chino", (49, 79), (450, 560), (330, 260, 50), APPAREL_SIZES),
        P("Denim Jacket", (89, 129), (850, 1050), (380, 300, 80), APPAREL_SIZES),
        P("Hooded Sweatshirt", (55, 75), (600, 750), (350, 280, 80), APPAREL_SIZES),
        P("Merino Sweater", (79, 119), (350, 450), (330, 260, 60), APPAREL_SIZES),
        P("Packable Rain Jacket", (99, 149), (320, 420), (300, 220, 60), APPAREL_SIZES),
        P("Flannel Shirt", (49, 69), (380, 460), (320, 250, 50), APPAREL_SIZES),
    ]),
    "footwear": ("FTW", 120, ("Stride Co.", "Trailmark", "Cobble & Lace"), [
        P("Everyday Running Shoe", (89, 139), (700, 850), (330, 210, 120), SHOE_SIZES),
        P("Leather Court Sneaker", (95, 145), (900, 1100), (340, 220, 130), SHOE_SIZES),
        P("Chelsea Boot", (139, 199), (1200, 1500), (350, 250, 140), SHOE_SIZES),
        P("Waterproof Hiking Boot", (149, 219), (1300, 1650), (360, 260, 150), SHOE_SIZES),
        P("Canvas Slip-On", (45, 65), (500, 650), (310, 200, 110), SHOE_SIZES),
    ]),
    "home": ("HOM", 120, ("Hearth & Oak", "Linen Lane", "Kiln Studio"), [
        P("Percale Sheet Set", (79, 149), (1400, 2200), (330, 280, 90), ("QN", "KG")),
        P("Turkish Bath Towel Set", (49, 89), (1300, 1800), (350, 300, 150)),
        P("Chunky Knit Throw", (69, 119), (1500, 2100), (400, 350, 150)),
        P("Stoneware Mug Set of 4", (32, 48), (1600, 2000), (300, 220, 120)),
        P("Enameled Cast Iron Skillet 10in", (45, 69), (2400, 2800), (450, 280, 80)),
        P("Soy Candle 8oz", (22, 34), (450, 550), (110, 110, 120)),
        P("Down Alternative Pillow", (39, 69), (900, 1300), (700, 500, 150), ("STD", "KG")),
        P("Solid Oak Side Table", (189, 299), (9000, 14000), (600, 500, 300), dropship_only=True),
        P("Wool Area Rug 5x8", (299, 549), (12000, 18000), (1600, 300, 300), dropship_only=True),
        P("Upholstered Accent Chair", (349, 599), (16000, 24000), (850, 800, 750),
          dropship_only=True),
    ]),
    "electronics": ("ELC", 90, ("Voltline", "Amplio", "Cordwise"), [
        P("USB-C Cable 2m", (15, 25), (60, 90), (180, 100, 20)),
        P("65W GaN Wall Charger", (39, 59), (110, 150), (110, 80, 50)),
        P("10000mAh Power Bank", (29, 49), (200, 260), (160, 90, 30)),
        P("Wireless Charging Pad", (25, 45), (150, 220), (140, 140, 40)),
        P("True Wireless Earbuds", (59, 129), (120, 180), (120, 100, 50)),
        P("Phone Case", (19, 39), (60, 90), (200, 110, 25), ("IP15", "IP16", "PX9")),
        P("Laptop Sleeve 14in", (35, 55), (300, 420), (400, 300, 30)),
        P("Noise-Cancelling Headphones", (199, 349), (280, 350), (240, 200, 100),
          dropship_only=True),
        P("Bluetooth Bookshelf Speakers", (179, 299), (4500, 6000), (400, 300, 250),
          dropship_only=True),
    ]),
}
# fmt: on


def build_catalogue() -> list[Item]:
    """~500 deterministic items: styles of each product type in a few colours and sizes."""
    rng = random.Random(42)
    items: list[Item] = []
    for category, (prefix, target, brands, types) in CATEGORIES.items():
        made = 0
        style_no = 1000
        while made < target:
            for ptype in types:
                if made >= target:
                    break
                style_no += 1
                brand = rng.choice(brands)
                price = Decimal(rng.randint(*ptype.price)) - Decimal("0.01")
                colors = rng.sample(sorted(COLORS), k=rng.randint(1, 3))
                sizes = ptype.sizes or ("",)
                for color in colors:
                    for size in sizes:
                        if made >= target:
                            break
                        variant = "-".join(x for x in (color, size) if x)
                        label = ", ".join(x for x in (COLORS[color], size) if x)
                        length, width, height = (round(d * rng.uniform(0.9, 1.1)) for d in ptype.dims)
                        items.append(
                            Item(
                                sku=f"{prefix}-{style_no}-{variant}",
                                name=f"{brand} {ptype.name}, {label}",
                                weight_grams=rng.randint(*ptype.weight),
                                length_mm=length,
                                width_mm=width,
                                height_mm=height,
                                attributes={
                                    "category": category,
                                    "brand": brand,
                                    "style": f"{prefix}-{style_no}",
                                    "color": COLORS[color],
                                    **({"size": size} if size else {}),
                                    "price": str(price),
                                    "currency": "USD",
                                    **({"dropship_only": True} if ptype.dropship_only else {}),
                                },
                            )
                        )
                        made += 1
    return items


# --- Command -------------------------------------------------------------------------------------

DEMO_USERS = [
    # username (= password), role shown in the banner, group, superuser
    ("admin", "superuser: everything", None, True),
    ("csr", "CSR: the console (cancel, hold, returns, small appeasements)", CSR, False),
    ("supervisor", "Supervisor: CSR + overrides, large appeasements, adjust stock", SUPERVISOR, False),
    ("merchant", "Merchant: configure network, catalogue, API keys", MERCHANT, False),
    ("store", "Store associate: the store app for STORE-CHI-02 and STORE-CHI-01", STORE_ASSOCIATE, False),
]
# Store associates work these stores' queues in the store app (/store/).
DEMO_STORE_MEMBERSHIPS = {"store": ("STORE-CHI-02", "STORE-CHI-01")}
BACK_OFFICE_GROUPS = {CSR, SUPERVISOR, MERCHANT}


class Command(BaseCommand):
    help = (
        "Load a demo US network (3 DCs, 25 stores, 2 dropship vendors), 500 SKUs, stock, "
        "purchase orders, channels, users and groups; print logins and a fresh demo API key. "
        "Safe to run again."
    )

    def handle(self, *args, **options):
        started = clock.monotonic()
        self.actor = Actor.system("seed_demo")
        self.created: dict[str, int] = {}
        with transaction.atomic():
            groups = ensure_groups()
            self.seed_users(groups)
            locations = self.seed_locations()
            self.seed_store_associates()
            items = self.seed_items()
            self.seed_channels(locations)
            self.seed_stock(locations, items)
            self.seed_supply(locations, items)
            self.seed_carriers()
        raw = self.rotate_api_key()
        self.print_banner(raw, clock.monotonic() - started)

    # -- sections --

    def seed_users(self, groups: dict[str, Group]) -> None:
        User = get_user_model()
        made = 0
        for username, _, group, superuser in DEMO_USERS:
            user = User.objects.filter(username=username).first()
            if user is None:
                made += 1
                email = f"{username}@example.com"
                if superuser:
                    user = User.objects.create_superuser(username, email, username)
                else:
                    # Store associates use the store app, not the admin.
                    user = User.objects.create_user(username, email, username, is_staff=group in BACK_OFFICE_GROUPS)
            if group:
                user.groups.add(groups[group])
        self.created["users"] = made

    def seed_store_associates(self) -> None:
        User = get_user_model()
        made = 0
        for username, codes in DEMO_STORE_MEMBERSHIPS.items():
            user = User.objects.get(username=username)
            for location in Location.objects.filter(code__in=codes):
                made += StoreAssociate.objects.get_or_create(user=user, location=location)[1]
        self.created["store associates"] = made

    def seed_locations(self) -> dict[str, Location]:
        def place(code, name, street, city, region, postal, lat, lng, tz, **extra) -> Location:
            return Location(
                code=code, name=name, address_line1=street, city=city, region=region,
                postal_code=postal, country="US", latitude=Decimal(str(lat)),
                longitude=Decimal(str(lng)), timezone=tz, **extra,
            )  # fmt: skip

        rows = [
            place(*row[:9], type=LocationType.WAREHOUSE, capabilities=[SHIP], priority=row[9],
                  daily_capacity=row[10], fulfillment_cost=Decimal(row[11]),
                  cutoff_time=row[12], opening_time=time(6, 0), processing_hours=6,
                  accepts_returns=True)
            for row in DCS
        ]  # fmt: skip
        rng = random.Random("seed_demo:stores")
        rows += [
            place(*row[:9], type=LocationType.STORE,
                  capabilities=[SHIP, PICKUP, CURBSIDE] + ([SAME_DAY] if row[9] else []),
                  priority=50, daily_capacity=rng.choice((40, 60, 80, 120)),
                  fulfillment_cost=Decimal(rng.choice(("6.50", "7.25", "7.95", "8.50"))),
                  cutoff_time=time(14, 0), opening_time=time(10, 0), processing_hours=2,
                  accepts_returns=True)
            for row in STORES
        ]  # fmt: skip
        rows += [
            place(*row[:9], type=LocationType.DROPSHIP, capabilities=[SHIP], priority=80,
                  daily_capacity=800, fulfillment_cost=Decimal("9.00"), cutoff_time=time(12, 0),
                  opening_time=time(8, 0), processing_hours=48, accepts_returns=False)
            for row in VENDORS
        ]  # fmt: skip
        existing = set(Location.objects.filter(code__in=[r.code for r in rows]).values_list("code", flat=True))
        new = [r for r in rows if r.code not in existing]
        for row in new:
            row.full_clean(validate_unique=False)
        Location.objects.bulk_create(new)
        self.created["locations"] = len(new)
        return {loc.code: loc for loc in Location.objects.filter(code__in=[r.code for r in rows])}

    def seed_items(self) -> dict[str, Item]:
        catalogue = build_catalogue()
        skus = [i.sku for i in catalogue]
        existing = set(Item.objects.filter(sku__in=skus).values_list("sku", flat=True))
        new = [i for i in catalogue if i.sku not in existing]
        Item.objects.bulk_create(new, batch_size=500)
        self.created["items"] = len(new)
        return {i.sku: i for i in Item.objects.filter(sku__in=skus)}

    def seed_channels(self, locations: dict[str, Location]) -> None:
        by_type: dict[str, list[Location]] = {}
        for loc in locations.values():
            by_type.setdefault(loc.type, []).append(loc)
        dcs = by_type[LocationType.WAREHOUSE]
        stores = by_type[LocationType.STORE]
        vendors = by_type[LocationType.DROPSHIP]
        specs = [
            # Dropship vendors sell through the web shop only: their stock is not ours to
            # promise to marketplaces, and stores cannot sell it at the till.
            ("web", "Web shop", ChannelType.WEB, dcs + stores + vendors, {"safety_buffer": 1}),
            (
                "marketplace",
                "Marketplace",
                ChannelType.MARKETPLACE,
                dcs,
                {"safety_buffer_percent": Decimal("10")},
            ),
            ("pos", "Store POS", ChannelType.POS, stores, {}),
        ]
        made = 0
        for code, name, ctype, locs, extra in specs:
            channel, created = Channel.objects.get_or_create(code=code, defaults={"name": name, "type": ctype, **extra})
            if created:
                channel.locations.set(locs)
                made += 1
        self.created["channels"] = made

    def seed_stock(self, locations: dict[str, Location], items: dict[str, Item]) -> None:
        regular = sorted(s for s, i in items.items() if not i.attributes.get("dropship_only"))
        seeded = set(
            Stock.objects.filter(location__in=locations.values()).values_list("location_id", flat=True).distinct()
        )
        rows = 0
        for code, loc in sorted(locations.items()):
            if loc.pk in seeded:
                continue  # this location already has stock: never overwrite live counts
            rng = random.Random(f"seed_demo:stock:{code}")
            counts: dict[str, tuple[int, int | None]] = {}
            if loc.type == LocationType.WAREHOUSE:
                for sku in regular:
                    if rng.random() < 0.88:
                        on_hand = 0 if rng.random() < 0.03 else rng.randint(20, 400)
                        safety = rng.choice((5, 10)) if rng.random() < 0.2 else 0
                        counts[sku] = (on_hand, safety)
            elif loc.type == LocationType.STORE:
                for sku in regular:
                    if rng.random() < 0.3:
                        on_hand = 0 if rng.random() < 0.05 else rng.randint(1, 12)
                        counts[sku] = (on_hand, 1 if rng.random() < 0.1 else 0)
            else:
                category = next(v[-1] for v in VENDORS if v[0] == code)
                for sku, item in sorted(items.items()):
                    if item.attributes.get("category") != category:
                        continue
                    if item.attributes.get("dropship_only") or rng.random() < 0.3:
                        counts[sku] = (rng.randint(50, 500), 0)
            if counts:
                stock_snapshot(
                    location=loc,
                    counts=counts,
                    actor=self.actor,
                    reference="seed_demo",
                    full=False,
                )
                rows += len(counts)
        self.created["stock rows"] = rows

    def seed_supply(self, locations: dict[str, Location], items: dict[str, Item]) -> None:
        if IncomingSupply.objects.filter(reference__startswith=PO_PREFIX).exists():
            self.created["PO lines"] = 0
            return
        rng = random.Random("seed_demo:supply")
        regular = sorted(s for s, i in items.items() if not i.attributes.get("dropship_only"))
        today = timezone.localdate()
        lines: list[SupplyLine] = []
        po_no = 4500
        for code in ("DC-NJ", "DC-TX", "DC-CA"):
            for _ in range(4):
                po_no += 1
                expected = today + timedelta(days=rng.randint(3, 30))
                for sku in rng.sample(regular, k=rng.randint(8, 20)):
                    lines.append(
                        SupplyLine(
                            location=locations[code],
                            item=items[sku],
                            quantity=rng.choice((48, 96, 120, 144, 240, 480)),
                            expected_date=expected,
                            reference=f"{PO_PREFIX}{po_no}",
                        )
                    )
        supply_upsert(lines=lines)
        self.created["PO lines"] = len(lines)

    def seed_carriers(self) -> None:
        _, created = Carrier.objects.get_or_create(code=SANDBOX["code"], defaults=SANDBOX)
        self.created["carriers"] = int(created)

    # -- API key and banner --

    def rotate_api_key(self) -> str:
        for old in ApiKey.objects.usable().filter(name=DEMO_KEY_NAME):
            api_key_revoke(key=old)
        _, raw = api_key_create(name=DEMO_KEY_NAME, scopes="all")
        return raw

    def example_sku(self) -> str:
        """A SKU stocked at a DC and several stores, so the example answer is interesting."""
        row = (
            Stock.objects.filter(location__type=LocationType.STORE, on_hand__gt=0, item__sku__startswith="APP-")
            .values("item__sku")
            .annotate(n=Count("id"))
            .order_by("-n", "item__sku")
            .first()
        ) or Stock.objects.filter(on_hand__gt=0).values("item__sku").order_by("item__sku").first()
        return row["item__sku"] if row else "SKU"

    def print_banner(self, raw_key: str, seconds: float) -> None:
        sku = self.example_sku()
        made = ", ".join(f"{n} {what}" for what, n in self.created.items())
        width = max(len(u) for u, *_ in DEMO_USERS)
        out = self.stdout
        rule = "=" * 78
        out.write(rule)
        out.write(f"OMS demo data ready ({seconds:.1f}s). Created this run: {made}.")
        out.write(
            f"Totals: {Location.objects.count()} locations, {Item.objects.count()} items, "
            f"{Channel.objects.count()} channels, {Stock.objects.count()} stock rows, "
            f"{IncomingSupply.objects.count()} incoming supply lines."
        )
        out.write("")
        out.write("URLs (after `python manage.py runserver`):")
        out.write(f"  CSR console          {BASE_URL}/console/")
        out.write(f"  Admin / back office  {BASE_URL}/admin/")
        out.write(f"  Store app            {BASE_URL}/store/   (log in as store / store)")
        out.write(f"  API docs (Swagger)   {BASE_URL}/api/docs/")
        out.write(f"  REST API             {BASE_URL}/api/v1/")
        out.write(f"  Health check         {BASE_URL}/healthz")
        out.write("")
        out.write("Demo logins (user / password):")
        for username, role, *_ in DEMO_USERS:
            out.write(f"  {username.ljust(width)} / {username.ljust(width)}   {role}")
        out.write("")
        out.write("Demo API key (all scopes; shown once, a new one each run, older ones revoked):")
        out.write(f"  {raw_key}")
        out.write("")
        out.write(
            f"Sandbox carrier {SANDBOX['code']} at {SANDBOX['base_url']} (`python3 dev.py run` starts it; alone: "
            "python manage.py run_sandbox_carrier --port 8070). Ship with "
            '{"carrier": "SANDBOX"} and no tracking_number to buy a label.'
        )
        out.write("")
        out.write("Try it:")
        out.write(
            f'  curl -H "Authorization: Api-Key {raw_key}" '
            f'"{BASE_URL}/api/v1/availability/?skus={sku}&channel=web&detail=locations"'
        )
        out.write(rule)
