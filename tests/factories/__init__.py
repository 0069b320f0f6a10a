import factory
from factory.django import DjangoModelFactory

from inventory.models import Channel, IncomingSupply, Item, Location, Stock


class LocationFactory(DjangoModelFactory):
    class Meta:
        model = Location
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"LOC{n}")
    name = factory.LazyAttribute(lambda o: f"Location {o.code}")
    type = "warehouse"
    country = "US"
    latitude = 40.7128
    longitude = -74.0060
    capabilities = factory.LazyFunction(lambda: ["ship"])
    priority = 100


class ItemFactory(DjangoModelFactory):
    class Meta:
        model = Item
        django_get_or_create = ("sku",)

    sku = factory.Sequence(lambda n: f"SKU-{n:05d}")
    name = factory.LazyAttribute(lambda o: f"Item {o.sku}")


class ChannelFactory(DjangoModelFactory):
    class Meta:
        model = Channel
        django_get_or_create = ("code",)
        skip_postgeneration_save = True

    code = factory.Sequence(lambda n: f"ch{n}")
    name = factory.LazyAttribute(lambda o: o.code.title())

    @factory.post_generation
    def locations(self, create, extracted, **kwargs):
        if create and extracted:
            self.locations.add(*extracted)


class SupplyFactory(DjangoModelFactory):
    class Meta:
        model = IncomingSupply

    location = factory.SubFactory(LocationFactory)
    item = factory.SubFactory(ItemFactory)
    reference = factory.Sequence(lambda n: f"PO-{n}")
    quantity = 20
    expected_date = factory.Faker("future_date")


def stock(location: Location, item: Item, on_hand: int, safety_stock: int = 0) -> Stock:
    """Put stock in place through the service, so the ledger agrees with the counters."""
    from inventory.services import Adjustment, stock_adjust
    from oms.actor import Actor

    if on_hand:
        stock_adjust(
            adjustments=[Adjustment(location=location, item=item, reason="count", on_hand=on_hand)],
            actor=Actor.system("test"),
            source="test",
        )
    row, _ = Stock.objects.get_or_create(location=location, item=item)
    if safety_stock:
        Stock.objects.filter(pk=row.pk).update(safety_stock=safety_stock)
        row.refresh_from_db()
    return row
