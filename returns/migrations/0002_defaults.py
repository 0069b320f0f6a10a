"""Starting configuration: reason codes, the default return policy, appeasement limits."""

from django.db import migrations


def seed(apps, schema_editor):
    from returns.defaults import ensure_defaults

    ensure_defaults(apps)


class Migration(migrations.Migration):
    dependencies = [("returns", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
