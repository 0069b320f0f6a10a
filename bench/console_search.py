"""Console search and order-page latency on PostgreSQL with 1,000,000 orders.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/oms_console_bench \\
        .venv/bin/python bench/console_search.py [--orders 1000000] [--samples 200] [--skip-seed]

Creates the database if it is missing and migrates it (so the console's indexes are the
migration's). If it holds fewer orders than asked, it loads, with INSERT … SELECT over
generate_series (no ORM saves): 40 % as many customers as orders (names from 200 first × 1,001
last names, emails, phones in three formats), the orders over two years in five channels and
nine statuses, 1–2 lines each, a fulfilment at one of 50 locations for routed orders, a
shipment with a tracking number for shipped ones, a payment, holds, and 1–3 timeline entries.
Routing decisions (with a real engine explanation) are written for the orders whose page is
timed. Then VACUUM (ANALYZE).

It times, for each kind of search, `oms.console.selectors.order_search` — the selector the
console's search view calls — over `--samples` different targets: the page of 25 orders, its
fulfilments and the capped count, as the page shows them. Then the order page through the
whole Django request path (`django.test.Client`, logged in, DEBUG off, template rendered).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fmt_summary, machine, require_postgres_url, setup_django, summary_ms  # noqa: E402
from seed_large import ensure_database  # noqa: E402

SEED = 7
CHANNELS = [("web", "Web shop", 50), ("market", "Marketplace", 20), ("app", "Mobile app", 15), ("pos", "Stores", 10)]
CHANNELS += [("b2b", "B2B portal", 5)]
N_LOCATIONS = 50
N_ITEMS = 2_000
LOC_CODE = "CS-LOC-{:02d}"
ITEM_SKU = "CS-{:05d}"
ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
FIRST = (  # noqa: SIM905
    "James Mary John Patricia Robert Jennifer Michael Linda William Elizabeth David Barbara Richard Susan Joseph "
    "Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy Matthew Betty Anthony Margaret Mark Sandra "
    "Donald Ashley Steven Kimberly Paul Emily Andrew Donna Joshua Michelle Kenneth Carol Kevin Amanda Brian "
    "Dorothy George Melissa Timothy Deborah Ronald Stephanie Edward Rebecca Jason Sharon Jeffrey Laura Ryan "
    "Cynthia Jacob Kathleen Gary Amy Nicholas Angela Eric Shirley Jonathan Anna Stephen Brenda Larry Pamela "
    "Justin Emma Scott Nicole Brandon Helen Benjamin Samantha Samuel Katherine Gregory Christine Alexander Debra "
    "Frank Rachel Patrick Carolyn Raymond Janet Jack Catherine Dennis Maria Jerry Heather Tyler Diane Aaron Ruth "
    "Jose Julie Adam Olivia Nathan Joyce Henry Virginia Douglas Victoria Zachary Kelly Peter Lauren Kyle Christina "
    "Ethan Joan Walter Evelyn Noah Judith Jeremy Megan Christian Andrea Keith Cheryl Roger Hannah Terry Jacqueline "
    "Gerald Martha Harold Gloria Sean Teresa Austin Ann Carl Sara Arthur Madison Lawrence Frances Dylan Kathryn "
    "Jesse Janice Jordan Jean Bryan Abigail Billy Alice Joe Judy Bruce Sophia Gabriel Grace Logan Denise Albert "
    "Amber Willie Doris Alan Marilyn Juan Danielle Wayne Beverly Elijah Isabella Randy Theresa Roy Diana Vincent "
    "Natalie Ralph Brittany Eugene Charlotte Russell Marie Bobby Kayla Mason Alexis Philip Lori Louis Ada"
).split()
LAST = (  # noqa: SIM905
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez Wilson "
    "Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark Ramirez Lewis "
    "Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera "
    "Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart "
    "Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim "
    "Cox Ward Richardson Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo "
    "Sanders Patel Myers Long Ross Foster Jimenez Powell Jenkins Perry Russell Sullivan Bell Coleman Butler "
    "Henderson Barnes Gonzales Fisher Vasquez Simmons Romero Jordan Patterson Alexander Hamilton Graham Reynolds "
    "Griffin Wallace Moreno West Cole Hayes Bryant Herrera Gibson Ellis Tran Medina Aguilar Stevens Murray Ford "
    "Castro Marshall Owens Harrison Fernandez McDonald Woods Washington Kennedy Wells Vargas Henry Chen Freeman "
    "Webb Tucker Guzman Burns Crawford Olson Simpson Porter Hunter Gordon Mendez Silva Shaw Snyder Mason Dixon "
    "Munoz Hunt Hicks Holmes Palmer Wagner Black Robertson Boyd Rose Stone Salazar Fox Warren Mills Meyer Rice "
    "Schmidt Garza Daniels Ferguson Nichols Stephens Soto Weaver Ryan Gardner Payne Grant Dunn Kelley Spencer "
    "Hawkins Arnold Pierce Vazquez Hansen Peters Santos Hart Bradley Knight Elliott Cunningham Duncan Armstrong "
    "Hudson Carroll Lane Riley Andrews Alvarado Ray Delgado Berry Perkins Hoffman Johnston Matthews Pena Richards "
    "Contreras Willis Carpenter Lawrence Sandoval Guerrero George Chapman Rios Estrada Ortega Watkins Greene "
    "Nunez Wheeler Valdez Harper Burke Larson Santiago Maldonado Morrison Franklin Carlson Austin Dominguez "
    "Carr Lawson Jacobs Obrien Lynch Singh Vega Bishop Montgomery Oliver Jensen Harvey Williamson Gilbert Dean "
    "Sims Espinoza Howell Li Wong Reid Hanson Le McCoy Garrett Burton Fuller Wang Weber Welch Rojas Lucas Marquez "
    "Fields Park Yang Little Banks Padilla Day Walsh Bowman Schultz Luna Fowler Mejia Davidson Acosta Brewer "
    "May Holland Juarez Newman Pearson Curtis Cortez Douglas Schneider Joseph Barrett Navarro Figueroa Keller "
    "Avila Wade Molina Stanley Hopkins Campos Barnett Bates Chambers Caldwell Beck Lambert Miranda Byrd Craig "
    "Ayala Lowe Frazier Powers Neal Leonard Gregory Carrillo Sutton Fleming Rhodes Shelton Schwartz Norris "
    "Jennings Watts Duran Walters Cohen McDaniel Moran Parks Steele Vaughn Becker Holt Deleon Barker Terry Hale "
    "Leon Hail Benson Haynes Horton Miles Lyons Pham Graves Bush Thornton Wolfe Warner Cabrera McKinney Mann "
    "Zimmerman Dawson Lara Fletcher Page McCarthy Love Robles Cervantes Solis Erickson Reeves Chang Klein "
    "Salinas Fuentes Baldwin Daniel Simon Velasquez Hardy Higgins Aguirre Lin Cummings Chandler Sharp Barber "
    "Bowen Ochoa Dennis Robbins Liu Ramsey Francis Griffith Paul Blair Oconnor Cardenas Pacheco Cross Calderon "
    "Quinn Moss Swanson Chan Rivas Khan Rodgers Serrano Fitzgerald Rosales Stevenson Christensen Manning Gill "
    "Curry Mclaughlin Harmon McGee Gross Doyle Garner Newton Burgess Reese Walton Blake Trujillo Adkins Brady "
    "Goodman Roman Webster Goodwin Fischer Huang Potter Delacruz Montoya Todd Wu Hines Mullins Castaneda Malone "
    "Cannon Tate Mack Sherman Hubbard Hodges Zhang Guerra Wolf Valencia Saunders Franco Rowe Gallagher Farmer "
    "Hammond Hampton Townsend Ingram Wise Gallegos Clarke Barton Schroeder Maxwell Waters Logan Camacho Strickland "
    "Norman Person Colon Parsons Frank Harrington Glover Osborne Buchanan Casey Floyd Patton Ibarra Ball Tyler "
    "Suarez Bowers Orozco Salas Cobb Gibbs Andrade Bauer Conner Moody Escobar McGuire Lloyd Mueller Hartman "
    "French Kramer McBride Pope Lindsey Velazquez Norton McCormick Sparks Flynn Yates Hogan Marsh Macias "
    "Villanueva Zamora Pratt Stokes Owen Ballard Lang Brock Villarreal Charles Drake Barrera Cain Patrick "
    "Pineda Burnett Mercado Santana Shepherd Bautista Ali Shaffer Lamb Trevino McKenzie Hess Beil Olsen "
    "Cochran Morton Nash Wilkins Petersen Briggs Shah Roth Nicholson Holloway Lozano Rangel Flowers Hoover "
    "Short Arias Mora Valenzuela Bryan Meyers Weiss Underwood Bass Greer Summers Houston Carson Morrow Clayton "
    "Whitaker Decker Yoder Collier Zuniga Carey Wilcox Melendez Poole Roberson Larsen Conley Davenport Copeland "
    "Massey Lam Huff Rocha Cameron Jefferson Hood Monroe Anthony Pittman Huynh Randall Singleton Kirk Combs "
    "Mathis Christian Skinner Bradford Richard Galvan Wall Boone Kirby Wilkinson Bridges Bruce Atkinson Velez "
    "Meza Roy Vincent York Hodge Villa Abbott Allison Tapia Gates Chase Sosa Sweeney Farrell Wyatt Dalton Horn "
    "Barron Phelps Yu Dickerson Heath Foley Atkins Mathews Bonilla Acevedo Benitez Zavala Hensley Glenn Cisneros "
    "Harrell Shields Rubio Huffman Choi Boyer Garrison Arroyo Bond Kane Hancock Callahan Dillon Cline Wiggins "
    "Grimes Arellano Melton Oneill Savage Ho Beltran Pitts Parrish Ponce Rich Booth Koch Golden Ware Brennan "
    "McDowell Marks Cantu Humphrey Baxter Sawyer Clay Tanner Hutchinson Kaur Berg Wiley Gilmore Russo Villegas "
    "Hobbs Keith Wilkerson Ahmed Beard McClain Montes Mata Rosario Vang Walter Henson Oneal Mosley McClure Beasley "
    "Stephenson Snow Huerta Preston Vance Barry Johns Eaton Blackwell Dyer Prince Macdonald Solomon Guevara "
    "Stafford English Hurst Woodard Cortes Shannon Kemp Nolan McCullough Merritt Murillo Moon Salgado Strong "
    "Kline Cordova Barajas Roach Rosas Winters Jacobson Lester Knox Bullock Kerr Leach Meadows Orr Davila Whitehead "
    "Pruitt Kent Conway McKee Barr David Dejesus Marin Berger McIntyre Blankenship Gaines Palacios Cuevas Bartlett "
    "Durham Dorsey McCall Odonnell Stein Browning Stout Lowery Sloan McLean Hendricks Calhoun Sexton Chung Gentry "
    "Hull Duarte Ellison Nielsen Gillespie Buck Middleton Sellers Leblanc Esparza Hardin Bradshaw McIntosh Howe "
    "Livingston Frost Glass Morse Knapp Herman Stark Bravo Noble Spears Weeks Corona Frederick Buckley McFarland "
    "Hebert Enriquez Hickman Quintero Randolph Schaefer Walls Trejo House Reilly Pennington Michael Conrad "
    "Giles Benjamin Crosby Fitzpatrick Donovan Mays Mahoney Valentine Raymond Medrano Hahn McMillan Small Bentley "
    "Felix Peck Lucero Boyle Hanna Pace Rush Hurley Harding McConnell Bernal Nava Ayers Everett Ventura Avery "
    "Pugh Mayer Bender Shepard McMahon Landry Case Sampson Moses Magana Blackburn Dunlap Gould Duffy Vaughan "
    "Herring McKay Espinosa Rivers Farley Bernard Ashley Friedman Potts Truong Costa Correa Blevins Nixon Clements "
    "Fry Delarosa Best Benton Lugo Portillo Dougherty Crane Haley Phan Villalobos Blanchard Horne Finley Quintana "
    "Lynn Esquivel Bean Dodson Mullen Xiong Hayden Cano Levy Huber Richmond Moyer Lim Frye Sheppard McCarty Avalos "
    "Booker Waller Parra Woodward Jaramillo Krueger Rasmussen Brandt Peralta Donaldson Stuart Faulkner Maynard "
    "Galindo Coffey Estes Sanford Burch Maddox Vo Oconnell Vu Andersen Spence McPherson Church Schmitt Stanton "
    "Leal Cherry Compton Dudley Sierra Pollard Alfaro Hester Proctor Lu Hinton Novak Good Madden McCann Terrell "
    "Jarvis Dickson Reyna Cantrell Mayo Branch Hendrix Rollins Rowland Whitney Duke Odom Daugherty Travis Tang "
    "Archer Lovelace"
).split()
CITIES = [
    ("New York", "NY", "10001", 40.7506, -73.9972),
    ("Chicago", "IL", "60611", 41.8975, -87.6241),
    ("Houston", "TX", "77056", 29.7396, -95.4638),
    ("Los Angeles", "CA", "90036", 34.0720, -118.3576),
    ("Seattle", "WA", "98101", 47.6126, -122.3362),
    ("Atlanta", "GA", "30326", 33.8465, -84.3621),
    ("Denver", "CO", "80206", 39.7180, -104.9534),
    ("Boston", "MA", "02111", 42.3554, -71.0605),
]
# Status by (hash of the row number) mod 1000: mostly finished, some open, a few exceptions.
STATUS_CASE = """CASE
    WHEN r < 10 THEN 'received' WHEN r < 20 THEN 'on_hold' WHEN r < 40 THEN 'backordered'
    WHEN r < 50 THEN 'partially_allocated' WHEN r < 120 THEN 'allocated' WHEN r < 150 THEN 'partially_shipped'
    WHEN r < 350 THEN 'shipped' WHEN r < 950 THEN 'completed' ELSE 'cancelled' END"""


def number_sql(k: str) -> str:
    """Seven base-32 digits of k (a bijection of the row number below 2^35): unique numbers."""
    return " || ".join(f"substr('{ALPHABET}', (({k} >> {5 * j}) & 31)::int + 1, 1)" for j in range(7))


def seed(n_orders: int) -> None:
    from django.db import connection, transaction
    from django.utils import timezone

    from inventory.models import Channel, Item, Location

    rng = random.Random(SEED)
    codes = [LOC_CODE.format(i) for i in range(N_LOCATIONS)]
    if Location.objects.filter(code__in=codes).count() < N_LOCATIONS:
        Location.objects.bulk_create(
            [
                Location(
                    code=code,
                    name=f"Console bench {'DC' if i < 5 else 'store'} {i:02d}",
                    type="warehouse" if i < 5 else "store",
                    country="US",
                    latitude=round(rng.uniform(26.0, 47.0), 6),
                    longitude=round(rng.uniform(-122.0, -71.0), 6),
                    capabilities=["ship"] if i < 5 else ["ship", "pickup"],
                    priority=10 + i,
                )
                for i, code in enumerate(codes)
            ],
            ignore_conflicts=True,
        )
    skus = [ITEM_SKU.format(i) for i in range(N_ITEMS)]
    Item.objects.bulk_create(
        [Item(sku=sku, name=f"Bench item {sku}") for sku in skus], ignore_conflicts=True, batch_size=2000
    )
    loc_ids = list(Location.objects.filter(code__in=codes).order_by("code").values_list("id", flat=True))
    channel_ids = []
    for code, name, _ in CHANNELS:
        channel, _ = Channel.objects.get_or_create(code=code, defaults={"name": name})
        channel.locations.add(*loc_ids)
        channel_ids.append(channel.pk)
    item_min = Item.objects.filter(sku__in=skus).order_by("id").values_list("id", flat=True).first()
    assert list(Item.objects.filter(sku__in=skus).order_by("id").values_list("id", flat=True)) == list(
        range(item_min, item_min + N_ITEMS)
    ), "bench items must have contiguous ids (use an empty database)"

    n_customers = int(n_orders * 0.4)
    weights = [w for _, _, w in CHANNELS]
    # Channel by row number: cumulative weights over 100.
    bounds, total = [], 0
    for w in weights:
        total += w
        bounds.append(total)
    channel_case = (
        "CASE "
        + " ".join(f"WHEN g %% 100 < {b} THEN {cid}" for b, cid in zip(bounds, channel_ids, strict=True))
        + " END"
    )
    prefix_case = (
        "CASE "
        + " ".join(
            f"WHEN g %% 100 < {b} THEN '{code[:2].upper()}'" for b, (code, _, _) in zip(bounds, CHANNELS, strict=True)
        )
        + " END"
    )
    now = timezone.now()
    span_s = int(timedelta(days=730).total_seconds())
    params = {
        "n": n_orders,
        "nc": n_customers,
        "first": FIRST,
        "last": LAST,
        "cities": [c[0] for c in CITIES],
        "regions": [c[1] for c in CITIES],
        "postals": [c[2] for c in CITIES],
        "lats": [c[3] for c in CITIES],
        "lngs": [c[4] for c in CITIES],
        "locs": loc_ids,
        "item_min": item_min,
        "n_items": N_ITEMS,
        "now": now,
        "span": span_s,
    }
    steps = [
        (
            "customers",
            """
            INSERT INTO orders_customer (email, name, phone, phone_digits, created_at)
            SELECT lower(f) || '.' || lower(l) || g || '@' || (ARRAY['example.com','mail.example','post.example'])[1 + g %% 3],
                   f || ' ' || l,
                   CASE g %% 3 WHEN 0 THEN '+1 (' || a || ') ' || e || '-' || n
                              WHEN 1 THEN '(' || a || ') ' || e || ' ' || n
                              ELSE a || '.' || e || '.' || n END,
                   CASE WHEN g %% 3 = 0 THEN '1' ELSE '' END || a || e || n,
                   %(now)s - make_interval(secs => (g::bigint * 7919) %% %(span)s)
            FROM generate_series(1, %(nc)s) g,
            LATERAL (SELECT (%(first)s::text[])[(1 + (g::bigint * 7919) %% cardinality(%(first)s::text[]))::int] AS f,
                            (%(last)s::text[])[(1 + (g::bigint * 104723) %% cardinality(%(last)s::text[]))::int] AS l,
                            (201 + (g::bigint * 37) %% 798)::text AS a,
                            (200 + (g::bigint * 91) %% 800)::text AS e,
                            lpad(((g::bigint * 7919 + g / 7) %% 10000)::text, 4, '0') AS n) x
            """,
        ),
        (
            "orders",
            f"""
            INSERT INTO orders_order (number, channel_id, external_id, customer_id, currency, status,
                fulfillment_method, ship_name, ship_line1, ship_line2, ship_city, ship_region, ship_postal_code,
                ship_country, ship_latitude, ship_longitude, shipping_method, subtotal, discount_total,
                shipping_total, tax_total, grand_total, ship_complete, allow_backorder, created_at, updated_at)
            SELECT {prefix_case} || '-' || {number_sql("k")},
                   {channel_case},
                   upper({prefix_case}) || '-' || (10000000 + g),
                   cmin + (g::bigint * 48271) %% %(nc)s,
                   'USD', {STATUS_CASE}, 'ship', 'Customer ' || g, (g %% 9000 + 1) || ' Main Street', '',
                   (%(cities)s::text[])[1 + g %% 8], (%(regions)s::text[])[1 + g %% 8],
                   (%(postals)s::text[])[1 + g %% 8], 'US',
                   (%(lats)s::numeric[])[1 + g %% 8], (%(lngs)s::numeric[])[1 + g %% 8], 'standard',
                   sub, 0, 5, round(sub * 0.08, 2), sub + 5 + round(sub * 0.08, 2), false, false,
                   at, at + interval '1 day'
            FROM generate_series(1, %(n)s) g,
            LATERAL (SELECT (g::bigint * 2654435761) %% 34359738368 AS k,
                            (g::bigint * 2654435761) %% 1000 AS r,
                            (20 + (g * 31) %% 400)::numeric AS sub,
                            %(now)s - make_interval(secs => (%(n)s - g)::double precision * %(span)s / %(n)s) AS at) x,
            (SELECT min(id) AS cmin FROM orders_customer) c
            """,
        ),
        (
            "order lines",
            """
            INSERT INTO orders_orderline (order_id, item_id, sku, external_line_id, quantity, quantity_allocated,
                quantity_shipped, quantity_cancelled, quantity_returned, unit_price, discount_amount, tax_amount)
            SELECT o.id, i.id, i.sku, n::text, q,
                   CASE WHEN o.status IN ('allocated', 'on_hold', 'received') THEN q
                        WHEN o.status = 'partially_allocated' AND n = 1 THEN q ELSE 0 END,
                   CASE WHEN o.status IN ('shipped', 'completed') THEN q
                        WHEN o.status = 'partially_shipped' AND n = 1 THEN q ELSE 0 END,
                   CASE WHEN o.status = 'cancelled' THEN q ELSE 0 END,
                   0, (10 + o.id %% 90)::numeric, 0, 0
            FROM orders_order o
            CROSS JOIN LATERAL generate_series(1, 1 + (o.id %% 2)::int) n
            CROSS JOIN LATERAL (SELECT 1 + (o.id + n) %% 3 AS q) qq
            JOIN inventory_item i ON i.id = %(item_min)s + (o.id * 7 + n * 13) %% %(n_items)s
            """,
        ),
        (
            "fulfilments",
            """
            INSERT INTO orders_fulfillment (order_id, location_id, status, routing_attempt, rejection_reason,
                pickup_code, due_at, created_at, updated_at)
            SELECT o.id, (%(locs)s::bigint[])[(1 + o.id %% cardinality(%(locs)s::bigint[]))::int],
                   CASE o.status WHEN 'completed' THEN 'delivered' WHEN 'shipped' THEN 'shipped'
                                 WHEN 'partially_shipped' THEN 'accepted' ELSE 'created' END,
                   1, '', '',
                   -- open work is due within the next two days; one in eight is already late
                   CASE WHEN o.status IN ('completed', 'shipped') THEN o.created_at + interval '1 day'
                        ELSE %(now)s + make_interval(hours => ((o.id * 7919) %% 48 - 6)::int) END,
                   o.created_at + interval '5 minutes', o.created_at + interval '1 day'
            FROM orders_order o
            WHERE o.status IN ('allocated', 'partially_allocated', 'partially_shipped', 'shipped', 'completed')
            """,
        ),
        (
            "fulfilment lines",
            """
            INSERT INTO orders_fulfillmentline (fulfillment_id, line_id, quantity, quantity_rejected, quantity_shipped)
            SELECT f.id, l.id, l.quantity_allocated + l.quantity_shipped, 0, l.quantity_shipped
            FROM orders_fulfillment f JOIN orders_orderline l ON l.order_id = f.order_id
            WHERE l.quantity_allocated + l.quantity_shipped > 0
            """,
        ),
        (
            "shipments",
            """
            INSERT INTO orders_shipment (fulfillment_id, carrier, service, tracking_number, reference, created_at,
                label_format, label_data, label_currency, tracking_status, tracking_failures, tracking_error)
            SELECT f.id, 'UPS', 'Ground', '1Z' || upper(substr(md5(f.id::text), 1, 16)), '',
                   f.created_at + interval '1 day', '', '', '', 'untracked', 0, ''
            FROM orders_fulfillment f WHERE f.status IN ('shipped', 'delivered', 'accepted')
            """,
        ),
        (
            "payments",
            """
            INSERT INTO orders_payment (order_id, method, reference, amount_authorized, amount_captured,
                amount_refunded, amount_voided, status, created_at)
            SELECT o.id, 'card', 'pi_' || o.id, o.grand_total,
                   CASE WHEN o.status IN ('shipped', 'completed') THEN o.grand_total ELSE 0 END, 0,
                   CASE WHEN o.status = 'cancelled' THEN o.grand_total ELSE 0 END,
                   CASE WHEN o.status IN ('shipped', 'completed') THEN 'captured'
                        WHEN o.status = 'cancelled' THEN 'voided' ELSE 'authorized' END,
                   o.created_at
            FROM orders_order o
            """,
        ),
        (
            "holds",
            """
            INSERT INTO orders_orderhold (order_id, type, reason, created_at, release_note, released_by,
                actor_type, actor_label)
            SELECT o.id, CASE WHEN o.id %% 2 = 0 THEN 'fraud_review' ELSE 'payment_review' END,
                   'Bench hold', o.created_at, '', '', 'system', 'bench'
            FROM orders_order o WHERE o.status = 'on_hold'
            """,
        ),
        (
            "timeline",
            """
            INSERT INTO orders_orderevent (order_id, type, message, data, created_at, actor_type, actor_label)
            SELECT o.id, 'order.created', 'Order captured', '{}'::jsonb, o.created_at, 'api_key', 'bench'
            FROM orders_order o
            UNION ALL
            SELECT f.order_id, 'order.routed', 'Routed to a bench location', '{}'::jsonb, f.created_at,
                   'task', 'routing.route_order'
            FROM orders_fulfillment f
            UNION ALL
            SELECT f.order_id, 'fulfillment.shipped', 'Shipped ' || s.tracking_number, '{}'::jsonb, s.created_at,
                   'api_key', 'bench partner'
            FROM orders_shipment s JOIN orders_fulfillment f ON f.id = s.fulfillment_id
            """,
        ),
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if cursor.fetchone()[0]:
            # Foreign keys are deferred triggers; every id above comes from its table.
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
        for name, sql in steps:
            t0 = time.perf_counter()
            cursor.execute(sql, params)
            print(f"  {name:<18} {cursor.rowcount:>10,} rows  {time.perf_counter() - t0:6.1f} s", flush=True)
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE)")
    print(f"  vacuum analyze     {time.perf_counter() - t0:6.1f} s", flush=True)


def ensure_decisions(numbers: list[str]) -> None:
    """A real engine explanation on each order whose page is timed (50 candidates)."""
    from inventory.models import Channel
    from orders.models import Order
    from routing import engine, selectors
    from routing.models import RoutingDecision

    orders = list(Order.objects.filter(number__in=numbers).exclude(routing_decisions__isnull=False))
    if not orders:
        return
    channel = Channel.objects.get(code="web")
    sample = Order.objects.filter(number=numbers[0]).prefetch_related("lines__item").get()
    lines = list(sample.lines.all())
    order_in = selectors.order_in(sample, {line.pk: line.quantity for line in lines}, lines, set())
    fake = {line.item_id: 100 for line in lines}
    candidates = [
        engine.Candidate(**{**c.__dict__, "available": fake if i % 3 == 0 else {}})
        for i, c in enumerate(selectors.candidates(channel, {line.item_id for line in lines}))
    ]
    plan = engine.route(order_in, candidates, selectors.DEFAULT_PROFILE)
    RoutingDecision.objects.bulk_create(
        [
            RoutingDecision(
                order=o,
                attempt=1,
                strategy=plan.strategy or "",
                plan={},
                explanation=plan.explanation,
                summary=plan.explanation["summary"][:300],
            )
            for o in orders
        ]
    )


CPU: list[float] = []  # this process's CPU seconds per call of the last timed() run


def timed(fn, samples) -> list[float]:
    """Wall-clock seconds per call; the Python CPU per call is kept in CPU (on a shared machine
    the wall clock also counts the time this process waited for a core)."""
    out = []
    CPU.clear()
    for s in samples:
        c0, t0 = time.process_time(), time.perf_counter()
        fn(s)
        out.append(time.perf_counter() - t0)
        CPU.append(time.process_time() - c0)
    return out


def report(label: str, durations: list[float]) -> None:
    cpu = sum(CPU) / len(CPU) * 1000
    print(f"{fmt_summary(label, summary_ms(durations))}  cpu={cpu:5.1f} ms", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--skip-seed", action="store_true")
    parser.add_argument("--seed-only", action="store_true")
    args = parser.parse_args()
    url = require_postgres_url()
    ensure_database(url)
    setup_django()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client

    from inventory.models import Channel, Location
    from oms.console.selectors import SearchParams, order_search
    from orders.models import Customer, Order, Shipment

    print(f"start: {machine()}")
    call_command("migrate", verbosity=0, interactive=False)
    have = Order.objects.count()
    if have < args.orders and not args.skip_seed:
        if have:
            sys.exit(f"{have:,} orders present, {args.orders:,} asked: drop the database and run again.")
        print(f"seeding {args.orders:,} orders:")
        t0 = time.perf_counter()
        seed(args.orders)
        print(f"seeded in {time.perf_counter() - t0:.0f} s")
    n_orders = Order.objects.count()
    if args.seed_only:
        return
    print(f"orders: {n_orders:,}  customers: {Customer.objects.count():,}  shipments: {Shipment.objects.count():,}")

    rng = random.Random(SEED)
    max_id = Order.objects.order_by("-id").values_list("id", flat=True).first()
    ids = [rng.randint(1, max_id) for _ in range(args.samples * 3)]
    orders = list(Order.objects.filter(id__in=ids).select_related("customer")[: args.samples])
    customers = [o.customer for o in orders]
    tracking = list(
        Shipment.objects.filter(fulfillment__order_id__in=ids).values_list("tracking_number", flat=True)[: args.samples]
    )
    channels = list(Channel.objects.all())
    locations = list(Location.objects.filter(code__startswith="CS-LOC"))

    def misspell(name: str) -> str:
        """Swap two letters in the middle of the surname: "Lovelace" → "Lovelcae"."""
        first, last = name.split(" ", 1)
        i = max(1, len(last) // 2)
        return f"{first} {last[: i - 1]}{last[i]}{last[i - 1]}{last[i + 1 :]}"

    def phone_as_typed(c: Customer) -> str:
        d = c.phone_digits[-10:]
        return rng.choice(
            [f"({d[:3]}) {d[3:6]}-{d[6:]}", f"+1 {d[:3]} {d[3:6]} {d[6:]}", d, f"1-{d[:3]}-{d[3:6]}-{d[6:]}"]
        )

    today = orders[0].created_at.date() if orders else None
    kinds = {
        "order number": [SearchParams(q=o.number) for o in orders],
        "order number, lower case no dash": [SearchParams(q=o.number.replace("-", "").lower()) for o in orders],
        "channel order id": [SearchParams(q=o.external_id) for o in orders],
        "email (exact)": [SearchParams(q=c.email.upper()) for c in customers],
        "email (part, no @)": [SearchParams(q=c.email.split("@")[0]) for c in customers],
        "name (first and last)": [SearchParams(q=c.name) for c in customers],
        "name (surname only)": [SearchParams(q=c.name.split()[-1]) for c in customers],
        "name misspelt (similar-name fallback)": [SearchParams(q=misspell(c.name)) for c in customers],
        "phone (as typed)": [SearchParams(q=phone_as_typed(c)) for c in customers],
        "tracking number": [SearchParams(q=t) for t in tracking],
        "filter: channel": [SearchParams(channel=rng.choice(channels)) for _ in orders],
        "filter: status on hold": [SearchParams(on_hold=True) for _ in orders],
        "filter: backordered, oldest first": [SearchParams(backordered=True, sort="oldest") for _ in orders],
        "filter: late": [SearchParams(late=True) for _ in orders],
        "filter: one week": [
            SearchParams(created_from=o.created_at.date(), created_to=o.created_at.date() + timedelta(days=6))
            for o in orders
        ],
        "filter: location": [SearchParams(location=rng.choice(locations)) for _ in orders],
        "filter: channel + status, oldest first": [
            SearchParams(channel=rng.choice(channels), status="allocated", sort="oldest") for _ in orders
        ],
        "filter: name + channel + date range": [
            SearchParams(
                q=c.name.split()[-1],
                channel=rng.choice(channels),
                created_from=today - timedelta(days=365) if today else None,
            )
            for c in customers
        ],
        "filter: page 20 of a channel": [SearchParams(channel=rng.choice(channels), page=20) for _ in orders],
    }
    found = {}
    for label, samples in kinds.items():
        order_search(samples[0])  # warm the connection and plan cache a little
        results = []
        durations = timed(lambda p, results=results: results.append(order_search(p)), samples)
        hits = sum(1 for r in results if r.orders)
        found[label] = hits
        report(f"{label} ({hits}/{len(samples)} found)", durations)

    # The order page through the whole request path.
    numbers = [o.number for o in orders]
    ensure_decisions(numbers)
    user, _ = User.objects.get_or_create(username="bench-console", defaults={"is_superuser": True, "is_staff": True})
    client = Client()
    client.force_login(user)
    client.get(f"/console/orders/{numbers[0]}/")

    def page(number):
        r = client.get(f"/console/orders/{number}/")
        assert r.status_code == 200, r.status_code

    report("order page (GET, rendered)", timed(page, numbers))

    def search_page(o):
        r = client.get("/console/", {"q": o.customer.name.split()[-1], "channel": "web"})
        assert r.status_code == 200

    report("search page (GET, surname + channel)", timed(search_page, orders))
    print(f"end: {machine()}")


if __name__ == "__main__":
    main()
