from django.db import migrations, models


class Migration(migrations.Migration):
    """The chain column loses the database default 0004 gave it: a process of a release before
    the chains (which writes no chain) must fail loudly, not land on chain 0 out of turn."""

    dependencies = [
        ("audit", "0005_actor_id_index"),
    ]

    operations = [
        migrations.AlterField(
            model_name="auditevent",
            name="chain",
            field=models.PositiveSmallIntegerField(default=0, editable=False),
        ),
    ]
