from django.core.management.base import BaseCommand, CommandError

from inventory.selectors import ledger_mismatches


class Command(BaseCommand):
    help = "Check that every stock counter equals the sum of its ledger movements."

    def handle(self, *args, **options):
        mismatches = ledger_mismatches()
        for m in mismatches[:50]:
            self.stdout.write(
                f"location={m.location_id} item={m.item_id}: counters on_hand={m.on_hand} "
                f"reserved={m.reserved}, ledger on_hand={m.ledger_on_hand} reserved={m.ledger_reserved}"
                + (" (ledger rows for a deleted location or item)" if m.orphaned else "")
            )
        if mismatches:
            raise CommandError(f"{len(mismatches)} stock row(s) disagree with the ledger.")
        self.stdout.write("Stock counters agree with the ledger.")
