from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"

    def ready(self) -> None:
        from inventory.models import Item

        from .models import HoldRule
        from .services import catalogue, hold_rules

        hold_rules.clear_on_change(HoldRule)
        catalogue.clear_on_change(Item)
