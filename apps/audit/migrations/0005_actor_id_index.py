"""An (actor, id) index for a reader's own actions, newest first; it replaces the plain index
of the foreign key, which it makes redundant (one index less for every audit row written)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

# The name Django gave the foreign key's index in 0001 (the same on every database).
FOREIGN_KEY_INDEX = "audit_auditevent_actor_id_270bb4b7"


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0004_chains"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["actor", "-id"], name="audit_actor_id"),
        ),
        # Only the index goes: Django's AlterField would also drop and re-check the foreign
        # key over the whole log on PostgreSQL, and copy the whole table on SQLite.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="auditevent",
                    name="actor",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="audit_events",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{FOREIGN_KEY_INDEX}"',
                    f'CREATE INDEX "{FOREIGN_KEY_INDEX}" ON "audit_auditevent" ("actor_id")',
                ),
            ],
        ),
    ]
