from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"

    def ready(self) -> None:
        from inventory.models import Item, Location

        from .models import HoldRule
        from .services import catalogue, hold_rules, location_copies

        hold_rules.clear_on_change(HoldRule)
        catalogue.clear_on_change(Item)
        location_copies.clear_on_change(Location)
