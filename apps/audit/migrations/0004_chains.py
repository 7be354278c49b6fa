"""Several hash chains instead of one (apps.audit.chain), and on PostgreSQL a function that
takes a chain and reads its head in one round trip."""

from django.db import migrations, models

# Volatile, so each statement inside takes a new snapshot: the SELECT, run once the lock is
# held, sees the row the previous holder of the chain committed.
CREATE = """
CREATE OR REPLACE FUNCTION audit_chain_head(lock_key integer, chain_number integer)
RETURNS varchar AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key, chain_number);
    RETURN (SELECT seal FROM audit_auditevent WHERE chain = chain_number
            ORDER BY id DESC LIMIT 1);
END;
$$ LANGUAGE plpgsql VOLATILE;
"""

DROP = "DROP FUNCTION IF EXISTS audit_chain_head(integer, integer);"


def create_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_chain")]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="chain",
            field=models.PositiveSmallIntegerField(db_default=0, default=0, editable=False),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["chain", "-id"], name="audit_chain_id"),
        ),
        migrations.RunPython(create_function, drop_function),
    ]
