"""The capture body's fast path (orders/api/fast_input.py) against OrderCreateSerializer: on
thousands of random bodies, valid and mutated, whenever the fast path answers, the serializer
accepts the body and gives the same validated_data (same types, same Decimal exponents), and the
fast path answers for nearly every valid body. No database: pure validation."""

import copy
import datetime
import random
from decimal import Decimal

from orders.api.serializers import OrderCreateSerializer, order_create_fast

SEED = 20240611
CASES = 4000

STRINGS = ["", " ", "  padded  ", "x", "\t tab", "José Müller", "a\x00b", "\ud800", "x" * 3, "x" * 20, "x" * 32]
STRINGS += ["x" * 33, "x" * 40, "x" * 41, "x" * 64, "x" * 65, "x" * 100, "x" * 101, "x" * 200, "x" * 201, "y" * 254]
NUMBERS = ["0", "0.00", "-0", "-0.00", "1", "1.5", "1.50", "1.505", "01.50", ".5", "5.", "+5", " 5.00 ", "1e3"]
NUMBERS += ["9999999999.99", "10000000000.00", "99999999999", "-1", "-0.01", "NaN", "Infinity", "abc", "1,50", ""]
NUMBERS += [0, 1, -1, 5, 10_000, 10_001, 2**70, 1.5, 0.1, 1e-7, 1e20, 12.345, True, False, None, [], {}]
EMAILS = ["a@example.com", " a@example.com ", "A.B+c@Example.CO.uk", "bad", "a@b", "@x.com", "a@@x.com", "a@x..com"]
EMAILS += ["x" * 250 + "@x.co", "a@" + "b" * 64 + ".com", "a b@x.com", "a@x.com\n", "ü@x.com", "a@ü.com", ""]
DATES = ["2030-01-02", "2024-02-29", "2023-02-29", "2030-13-01", "20300102", "2030-1-2", "2030-01-02T00:00:00"]
DATES += ["2030-W01-1", " 2030-01-02", "", None, 20300102]
OTHERS = [None, True, False, 0, 1, "true", "1", "yes", [], {}, [1], {"a": 1}, 1.0, "ship", "pickup", "SHIP", ""]


def valid_body(rng: random.Random) -> dict:
    body = {
        "external_id": f"W-{rng.randrange(10**6)}",
        "customer": {"email": f"buyer{rng.randrange(1000):05d}@example.com"},
        "currency": rng.choice(["USD", "EUR", "usd"]),
        "lines": [
            {
                "sku": f"SKU-{rng.randrange(10**4)}",
                "quantity": rng.randint(1, 50),
                "unit_price": f"{rng.randint(0, 999)}.{rng.randint(0, 99):02d}",
            }
            for _ in range(rng.randint(1, 4))
        ],
    }
    maybe = lambda: rng.random() < 0.4  # noqa: E731
    if maybe():
        body["channel"] = "web"
    if maybe():
        body["customer"]["name"] = rng.choice(["Bench Buyer", " Ann ", "Zoë", ""])
    if maybe():
        body["customer"]["phone"] = "+1 555 0100"
    if rng.random() < 0.8:
        address = {"line1": "1 Main St", "city": "Newark", "postal_code": "07102", "country": rng.choice(["US", "gb"])}
        if maybe():
            address.update(name="Ann", line2="Apt 2", region="NJ")
        if maybe():
            address.update(
                latitude=rng.choice(["40.735657", 40.7, "-90", 0]), longitude=rng.choice(["-74.172367", -74, "180"])
            )
        body["shipping_address"] = address
    elif maybe():
        body.update(fulfillment_method="pickup", pickup_location="STORE1", shipping_address=None)
    for line in body["lines"]:
        if maybe():
            line["external_line_id"] = str(rng.randrange(100))
        if maybe():
            line["discount_amount"] = rng.choice(["0.50", 1, 2.25, "0"])
        if maybe():
            line["tax_amount"] = rng.choice(["1.00", None, 3])
    for name in ("shipping_total", "tax_total", "grand_total"):
        if maybe():
            body[name] = rng.choice(["5.00", "0", 7, 7.5, "12.3"] + ([None] if name == "grand_total" else []))
    if maybe():
        body["payment"] = {"method": "card", "amount_authorized": "82.00"}
        if maybe():
            body["payment"].update(reference="pi_1", amount_captured="82.00")
    for name in ("ship_complete", "allow_backorder"):
        if maybe():
            body[name] = rng.choice([True, False])
    if maybe():
        body["reservation_key"] = "cart-1"
    for name in ("promised_ship_date", "promised_delivery_date"):
        if maybe():
            body[name] = rng.choice(["2030-01-02", None])
    if maybe():
        body["shipping_method"] = "standard"
    if rng.random() < 0.1:
        body["unknown"] = {"nested": [1, 2]}  # ignored by the serializer, and so by the fast path
    return body


def paths(value, prefix=()):
    """Every (container, key) in the body, nested ones too."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield value, key
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield value, i
            yield from paths(item, (*prefix, i))


def mutate(rng: random.Random, body: dict) -> dict:
    body = copy.deepcopy(body)
    for _ in range(rng.randint(1, 3)):
        spots = list(paths(body))
        container, key = rng.choice(spots)
        action = rng.random()
        if action < 0.15 and isinstance(container, dict):
            del container[key]
        elif action < 0.3:
            container[key] = rng.choice(OTHERS)
        elif action < 0.5:
            container[key] = rng.choice(STRINGS)
        elif action < 0.7:
            container[key] = rng.choice(NUMBERS)
        elif action < 0.8:
            container[key] = rng.choice(EMAILS)
        elif action < 0.9:
            container[key] = rng.choice(DATES)
        elif isinstance(container[key], str):
            container[key] = rng.choice([" ", "\n"]) + container[key] + rng.choice(["", " ", "\t"])
        else:
            container[key] = [container[key]] if rng.random() < 0.5 else {"value": container[key]}
    return body


def typed(value):
    """The value with its types spelled out (Decimal('1.50') is not Decimal('1.5'))."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return (type(value).__name__, str(value))


def check(body) -> tuple[bool, bool]:
    """(the fast path answered, the serializer accepts)"""
    fast = order_create_fast(copy.deepcopy(body))
    ser = OrderCreateSerializer(data=copy.deepcopy(body))
    valid = ser.is_valid()
    if fast is not None:
        assert valid, (body, ser.errors)
        assert fast == ser.validated_data
        assert typed(fast) == typed(ser.validated_data), body
        assert list(fast) == list(ser.validated_data)
    return fast is not None, valid


def test_valid_bodies_take_the_fast_path_with_the_serializers_data():
    rng = random.Random(SEED)
    results = [check(valid_body(rng)) for _ in range(CASES)]
    assert all(valid for _, valid in results)
    answered = sum(fast for fast, _ in results)
    assert answered / CASES > 0.97, answered


def test_mutated_bodies_never_get_data_the_serializer_would_not_give():
    rng = random.Random(SEED + 1)
    answered = invalid = 0
    for _ in range(CASES):
        body = mutate(rng, valid_body(rng))
        fast, valid = check(body)
        answered += fast
        invalid += not valid
    assert invalid > CASES // 2  # the mutations do reach the rules
    assert answered > CASES // 20  # and harmless ones still take the fast path


def test_edges():
    rng = random.Random(SEED + 2)
    base = valid_body(rng)
    base["lines"] = base["lines"][:1]
    for changes in [
        {"lines": []},
        {"lines": base["lines"] * 500},
        {"lines": base["lines"] * 501},
        {"currency": "US"},
        {"currency": " USD "},
        {"external_id": "x" * 100},
        {"external_id": "x" * 101},
        {"fulfillment_method": "pickup"},
        {"fulfillment_method": "nope"},
        {"shipping_address": {"line1": "a", "city": "b", "postal_code": "c", "country": "USA"}},
        {"shipping_address": {"line1": "a", "city": "b", "postal_code": "c", "country": "US", "latitude": "1"}},
        {"promised_ship_date": "2030-02-30"},
        {"grand_total": "9999999999.99"},
        {"grand_total": "-0.00"},
        {"grand_total": 1.1},
        {"customer": {"email": "a@example.com\n"}},
        {"customer": {"email": " A@Example.com "}},
        {"payment": {"method": "card", "amount_authorized": "1.5"}},
    ]:
        check({**base, **changes})
    for quantity in (0, 1, 10_000, 10_001, "1", 1.0, True):
        check({**base, "lines": [{**base["lines"][0], "quantity": quantity}]})
    for price in ("1.999", "0.001", 1e-3, 1e10, "1E2", "-0", "99999999999.9"):
        check({**base, "lines": [{**base["lines"][0], "unit_price": price}]})
    assert order_create_fast(None) is None
    assert order_create_fast([base]) is None
    assert order_create_fast({**base, "promised_ship_date": "2030-01-02"})["promised_ship_date"] == datetime.date(
        2030, 1, 2
    )
    assert order_create_fast(base)["lines"][0]["discount_amount"] == 0
    assert str(order_create_fast({**base, "grand_total": 5})["grand_total"]) == str(Decimal("5.00"))
