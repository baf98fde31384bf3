from __future__ import annotations

from django.apps import AppConfig


class StoryboardConfig(AppConfig):
    name = "storyboard"
    verbose_name = "Storyboard"

    def ready(self) -> None:
        # The one place the layers are wired upwards: models announce overruns through a slot,
        # and the push to the boards fills it (models never import realtime).
        from storyboard import models, realtime

        models.overrun_notice = realtime.broadcast_overrun
