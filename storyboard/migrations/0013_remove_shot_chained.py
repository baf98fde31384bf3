"""`Shot.chained` is gone; 0012 moved every chain onto `Shot.continues_from`."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("storyboard", "0012_link_chained_shots"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="shot",
            name="chained",
        ),
    ]
