"""The migration from `Shot.chained` to links keeps every chain continuing from the same shot."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("storyboard", "0010_shot_history")]
AFTER = [("storyboard", "0013_remove_shot_chained")]


@pytest.fixture
def back_to_latest():
    yield
    # Later tests expect every migration applied, however this one ends.
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("back_to_latest")
def test_a_chained_shot_continues_from_the_shot_before_it_on_the_board():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    Team = apps.get_model("accounts", "Team")
    Project = apps.get_model("storyboard", "Project")
    Scene = apps.get_model("storyboard", "Scene")
    Shot = apps.get_model("storyboard", "Shot")
    team = Team.objects.create(name="Alpha")
    project = Project.objects.create(team=team, name="Spot")
    # Board order: unscened shots first, then scene by scene, whatever the positions say.
    late = Scene.objects.create(project=project, title="Late", position=2)
    early = Scene.objects.create(project=project, title="Early", position=1)
    Shot.objects.create(project=project, title="Loose", position=9)
    Shot.objects.create(project=project, scene=early, title="First", position=5, chained=True)
    Shot.objects.create(project=project, scene=late, title="Second", position=0, chained=True)
    Shot.objects.create(project=project, scene=late, title="Alone", position=1)

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    Shot = executor.loader.project_state(AFTER).apps.get_model("storyboard", "Shot")
    links = dict(Shot.objects.values_list("title", "continues_from__title"))
    assert links == {"Loose": None, "First": "Loose", "Second": "First", "Alone": None}
