"""`Shot.chained` (continue from whatever shot sits before this one on the board right now) becomes
`Shot.continues_from`, a link to that same shot as the board stands when this migration runs, so no
existing chain changes what it continues from."""

from django.db import migrations


def link_chained_shots(apps, schema_editor):
    Shot = apps.get_model("storyboard", "Shot")
    Scene = apps.get_model("storyboard", "Scene")
    projects = Shot.objects.filter(chained=True).values_list("project_id", flat=True).distinct()
    for project_id in projects:
        # Board order, as Project.board() gives it: unscened shots first, then scene by scene.
        scenes = list(Scene.objects.filter(project_id=project_id)
                      .order_by("position", "pk").values_list("pk", flat=True))
        shots = list(Shot.objects.filter(project_id=project_id).order_by("position", "pk"))
        rank = {pk: i + 1 for i, pk in enumerate(scenes)}
        shots.sort(key=lambda s: rank.get(s.scene_id, 0))
        for before, shot in zip(shots, shots[1:]):
            if shot.chained:
                shot.continues_from_id = before.pk
                shot.save(update_fields=["continues_from"])


def unlink(apps, schema_editor):
    Shot = apps.get_model("storyboard", "Shot")
    Shot.objects.exclude(continues_from=None).update(chained=True)


class Migration(migrations.Migration):

    dependencies = [
        ("storyboard", "0011_shot_links"),
    ]

    operations = [
        migrations.RunPython(link_chained_shots, unlink),
    ]
