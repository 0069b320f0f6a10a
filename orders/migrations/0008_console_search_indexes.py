"""Indexes for the customer-service console's search (oms/console/selectors.py).

* `external_id` alone: a CSR searches a channel's order id without knowing the channel (the
  unique (channel, external_id) index cannot serve that).
* fulfilments with a rejection reason (partial index, a few rows): the rejected-fulfilments queue.
* PostgreSQL only, trigram GIN indexes (pg_trgm) for "contains" searches on customers: the
  name (as UPPER(name), which is what a case-insensitive `icontains` compares), the email, and
  the phone digits (a phone number is matched by its last ten digits: `LIKE '%…'`). SQLite
  has no such index type and answers the same queries by scanning; these indexes are kept out
  of the model state so SQLite never tries to build them when it rebuilds a table.

On PostgreSQL every index is built CONCURRENTLY: a live orders table keeps taking writes.
"""

from django.contrib.postgres.operations import AddIndexConcurrently, TrigramExtension
from django.db import migrations, models
from django.db.migrations.operations import AddIndex


class AddIndexConcurrentlyOnPostgres(AddIndexConcurrently):
    """CONCURRENTLY on PostgreSQL, a plain CREATE INDEX elsewhere."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class PostgresOnlySQL(migrations.RunSQL):
    """Raw SQL that runs on PostgreSQL and is skipped elsewhere (no model state)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


TRIGRAM_INDEXES = {
    "customer_name_trgm": "UPPER(name) gin_trgm_ops",
    "customer_email_trgm": "email gin_trgm_ops",
    "customer_phone_digits_trgm": "phone_digits gin_trgm_ops",
}


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("orders", "0007_store_fulfilment_sla"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="order",
            index=models.Index(fields=["external_id"], name="order_external_id_idx"),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="fulfillment",
            index=models.Index(
                fields=["-updated_at"], condition=~models.Q(rejection_reason=""), name="fulfillment_rejected_idx"
            ),
        ),
        TrigramExtension(),
        PostgresOnlySQL(
            sql=[
                f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON orders_customer USING gin ({expression})"
                for name, expression in TRIGRAM_INDEXES.items()
            ],
            reverse_sql=[f"DROP INDEX CONCURRENTLY IF EXISTS {name}" for name in TRIGRAM_INDEXES],
        ),
    ]
