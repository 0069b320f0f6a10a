"""oms.fastsql: multi-row inserts outside the ORM, rows pointing at rows of the same call."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from inventory.models import StockMovement
from oms.fastsql import _converter, dollars, fetch, insert_groups, insert_objects, insert_unless_conflict, new
from orders.models import Allocation, Customer, Order, OrderEvent, OrderLine
from tests.factories import ChannelFactory, ItemFactory, LocationFactory

pytestmark = pytest.mark.django_db


def _order(channel, customer, external_id="E-1"):
    return Order(
        number=f"T-{external_id}",
        channel=channel,
        external_id=external_id,
        customer=customer,
        currency="USD",
        ship_line1="1 Main St",
        ship_city="Newark",
        ship_postal_code="07102",
        ship_country="US",
    )


def test_groups_resolve_foreign_keys_to_rows_of_the_same_statement():
    dc1, dc2 = LocationFactory(code="DC1"), LocationFactory(code="DC2")
    a, b = ItemFactory(sku="A"), ItemFactory(sku="B")
    channel = ChannelFactory(code="web", locations=[dc1, dc2])
    customer = Customer(email="x@example.com")
    insert_objects([customer])
    order = _order(channel, customer)
    assert insert_unless_conflict(order)
    lines = [
        OrderLine(order=order, item=item, sku=item.sku, quantity=q, unit_price=Decimal("2.50"))
        for item, q in ((a, 1), (b, 2), (a, 3))
    ]
    # allocations out of line order, two on the last line: each must land on its own line
    allocations = [
        Allocation(line=lines[2], location=dc2, quantity=2),
        Allocation(line=lines[0], location=dc1, quantity=1),
        Allocation(line=lines[2], location=dc1, quantity=1),
        Allocation(line=lines[1], location=dc1, quantity=2),
    ]
    events = [OrderEvent(order=order, type="t", message=str(n), actor_type="system", actor_label="x") for n in range(3)]
    with CaptureQueriesContext(connection) as queries:
        insert_groups([lines, allocations, events])
    assert len(queries) == (1 if connection.vendor == "postgresql" else 3)
    assert all(obj.pk for obj in [*lines, *allocations, *events])
    stored = {
        (al.line.sku, al.line.quantity, al.location.code, al.quantity)
        for al in Allocation.objects.select_related("line", "location")
    }
    assert stored == {("A", 3, "DC2", 2), ("A", 1, "DC1", 1), ("A", 3, "DC1", 1), ("B", 2, "DC1", 2)}
    for al in allocations:  # the instances point at the lines they were given, by id too
        assert Allocation.objects.get(pk=al.pk).line_id == al.line_id == al.line.pk
    assert list(OrderLine.objects.filter(order=order).order_by("id").values_list("quantity", flat=True)) == [1, 2, 3]
    assert [e.message for e in OrderEvent.objects.filter(order=order).order_by("id")] == ["0", "1", "2"]


def test_insert_unless_conflict_writes_nothing_on_a_duplicate():
    channel = ChannelFactory(code="web")
    customer = Customer(email="y@example.com")
    insert_objects([customer])
    assert insert_unless_conflict(_order(channel, customer, "E-2"))
    again = _order(channel, customer, "E-2")
    again.number = "T-OTHER"
    assert not insert_unless_conflict(again) and again.pk is None
    assert Order.objects.filter(external_id="E-2").count() == 1


def test_many_rows_split_under_the_parameter_limit():
    loc, item = LocationFactory(code="L"), ItemFactory(sku="S")
    rows = [
        StockMovement(
            location=loc,
            item=item,
            delta_on_hand=1,
            delta_reserved=0,
            on_hand_after=n,
            reserved_after=0,
            reason="adjust",
            actor_type="system",
            actor_label="t",
        )
        for n in range(1, 2601)
    ]
    insert_objects(rows)
    assert StockMovement.objects.filter(location=loc).count() == 2600
    assert len({r.pk for r in rows}) == 2600


def test_dollars_numbers_placeholders_and_keeps_literal_percent():
    assert dollars("SELECT %s, 5 %% 2 FROM t WHERE a LIKE %s") == "SELECT $1, 5 % 2 FROM t WHERE a LIKE $2"
    with pytest.raises(ValueError):
        dollars("SELECT %(name)s")


def test_fetch_is_logged_and_wraps_errors():
    channel = ChannelFactory(code="web")
    customer = Customer(email="y@example.com")
    insert_objects([customer])
    sql = "SELECT id, email FROM orders_customer WHERE email = %s"
    with CaptureQueriesContext(connection) as queries:
        assert fetch(sql, ["y@example.com"]) == [(customer.pk, "y@example.com")]
        assert fetch(sql, ["nobody@example.com"]) == []
    assert len(queries.captured_queries) == 2
    assert insert_unless_conflict(_order(channel, customer, "E-9"))
    # A duplicate number breaks the unique constraint: Django's IntegrityError, as from the ORM.
    with pytest.raises(IntegrityError), transaction.atomic():
        fetch("INSERT INTO orders_order (number) SELECT number FROM orders_order WHERE number = %s", ["T-E-9"])


@pytest.mark.django_db(transaction=True)
def test_kept_cursors_follow_the_connection_after_a_reconnect():
    sql = "SELECT count(*) FROM orders_customer WHERE email = %s"
    assert fetch(sql, ["z@example.com"]) == [(0,)]
    connection.close()  # CONN_MAX_AGE, a failover: the next statement opens a new connection
    assert fetch(sql, ["z@example.com"]) == [(0,)]
    if connection.vendor == "postgresql":
        raw, cursors = connection._fastsql_cursors
        assert raw is connection.connection and list(cursors) == [dollars(sql)]


def test_converter_shortcuts_give_what_django_would():
    created = timezone.now()
    fields = {f.name: f for f in Order._meta.concrete_fields}
    for name, value in (("grand_total", Decimal("12.30")), ("tax_total", Decimal("0")), ("created_at", created)):
        field = fields[name]
        shortcut = _converter(field, connection.vendor)
        assert shortcut(value, connection) == field.get_db_prep_save(value, connection)
    with pytest.raises(ValidationError):  # not finite: Django's own check still runs
        _converter(fields["grand_total"], connection.vendor)(Decimal("NaN"), connection)


def _fields(obj) -> dict:
    return {k: v for k, v in obj.__dict__.items() if k != "_state"}


@pytest.mark.parametrize(
    "model, values",
    [
        (OrderEvent, {"type": "order.created", "message": "m", "data": {"a": 1}, "actor_label": "x"}),
        (OrderLine, {"sku": "A", "quantity": 2, "unit_price": Decimal("9.50")}),
        (Allocation, {"location_id": 4, "quantity": 1, "provisional": False}),
        (StockMovement, {"location_id": 1, "item_id": 2, "delta_on_hand": 0, "delta_reserved": 1}),
        (Order, {"number": "WE-1", "external_id": "e", "currency": "EUR", "grand_total": Decimal("3")}),
    ],
)
def test_new_makes_the_instance_the_constructor_makes(model, values):
    parent = Order(number="WE-0", channel_id=7)
    relation = {OrderEvent: "order", OrderLine: "order", Allocation: "line", Order: "channel"}.get(model)
    if relation:
        values = {
            **values,
            relation: parent if relation == "order" else (OrderLine(order=parent) if relation == "line" else None),
        }
    made, built = model(**values), new(model, **values)
    assert _fields(built) == _fields(made)
    assert (built._state.adding, built._state.db) == (made._state.adding, made._state.db)
    assert built._state.fields_cache == made._state.fields_cache
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        new(model, nope=1)


def test_new_gives_each_row_fresh_callable_defaults():
    from oms.models import OutboxMessage

    a, b = new(OutboxMessage, topic="t", payload={}), new(OutboxMessage, topic="t", payload={})
    assert a.event_id != b.event_id and a.next_attempt_at is not None
    assert _fields(a).keys() == _fields(OutboxMessage(topic="t", payload={})).keys()


@pytest.mark.django_db
def test_new_rows_insert_and_read_back_like_constructed_ones():
    channel, customer = ChannelFactory(), Customer.objects.create(email="n@example.com")
    order = new(Order, number="WE-9", channel=channel, customer=customer, external_id="x", currency="USD")
    insert_objects([order])
    line = new(OrderLine, order=order, item=ItemFactory(sku="A"), sku="A", quantity=1, unit_price=Decimal("2.00"))
    insert_objects([line])
    assert OrderLine.objects.get(pk=line.pk).order.channel_id == channel.pk
