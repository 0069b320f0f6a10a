from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"

    def ready(self) -> None:
        from .models import HoldRule
        from .services import hold_rules

        hold_rules.clear_on_change(HoldRule)
