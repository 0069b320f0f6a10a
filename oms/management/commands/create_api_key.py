from django.core.management.base import BaseCommand, CommandError

from inventory.models import Channel, Location
from oms.errors import ValidationFailed
from oms.services import api_key_create


class Command(BaseCommand):
    help = "Create an integrator API key and print it once (alone on the last line)."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--scopes", required=True, help="Comma-separated scopes, or 'all'.")
        parser.add_argument("--channel", help="Bind the key to this channel code.")
        parser.add_argument("--location", help="Bind the key to this location code.")

    def handle(self, *args, name, scopes, channel=None, location=None, **options):
        channel_obj = location_obj = None
        if channel:
            channel_obj = Channel.objects.filter(code=channel).first()
            if channel_obj is None:
                raise CommandError(f"Unknown channel '{channel}'.")
        if location:
            location_obj = Location.objects.filter(code=location).first()
            if location_obj is None:
                raise CommandError(f"Unknown location '{location}'.")
        try:
            key, raw = api_key_create(name=name, scopes=scopes, channel=channel_obj, location=location_obj)
        except ValidationFailed as exc:
            raise CommandError(exc.message) from None
        self.stderr.write(
            f"Created API key '{key.name}' (prefix {key.prefix}) with scopes {', '.join(key.scopes)}. "
            "Store it now: it is not shown again."
        )
        self.stdout.write(raw)
