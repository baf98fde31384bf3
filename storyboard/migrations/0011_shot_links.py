"""Chains become links: `Shot.continues_from` (a foreign key to the shot this one continues) and the
stale mark. 0012 moves each `Shot.chained` onto it, 0013 drops `chained`: PostgreSQL refuses to index
or ALTER a table whose rows were updated earlier in the same transaction ("pending trigger events"),
so schema and data changes each get their own migration."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("storyboard", "0010_shot_history"),
    ]

    operations = [
        migrations.AddField(
            model_name="shot",
            name="continues_from",
            field=models.ForeignKey(blank=True, null=True,
                                    on_delete=django.db.models.deletion.SET_NULL,
                                    related_name="continued_by", to="storyboard.shot"),
        ),
        migrations.AddField(
            model_name="shot",
            name="stale_reason",
            field=models.CharField(blank=True, max_length=300),
        ),
        migrations.AddField(
            model_name="shot",
            name="stale_since",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
