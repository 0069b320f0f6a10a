from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "inventory"

    def ready(self) -> None:
        from oms.api.scoping import channels

        from . import atp_cache
        from .models import Channel

        atp_cache.connect_signals()
        channels.clear_on_change(Channel)
