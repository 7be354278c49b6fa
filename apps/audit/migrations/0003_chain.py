"""Seal the audit log into a hash chain (apps.audit.chain), rows already written included."""

from django.db import migrations, models

from apps.audit import chain


def seal_existing_rows(apps, schema_editor):
    AuditEvent = apps.get_model("audit", "AuditEvent")
    postgresql = schema_editor.connection.vendor == "postgresql"
    if postgresql:
        # The one sanctioned change of existing rows: they gain their seals.
        schema_editor.execute(
            "ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only", params=None
        )
    previous = chain.GENESIS
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        content = {name: getattr(event, name) for name in chain.SEALED_FIELDS}
        event.previous_seal, event.seal = previous, chain.seal(previous, content)
        AuditEvent.objects.filter(pk=event.pk).update(
            previous_seal=event.previous_seal, seal=event.seal
        )
        previous = event.seal
    if postgresql:
        schema_editor.execute(
            "ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_append_only", params=None
        )


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only_trigger")]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="previous_seal",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent",
            name="seal",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.RunPython(seal_existing_rows, migrations.RunPython.noop),
    ]
