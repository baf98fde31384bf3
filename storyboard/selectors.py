"""What the board and the asset library show: reads only, shared by views and realtime.

Views render these for the person asking; realtime renders the same regions for everyone
watching. Both import this module, which imports models and nothing above them. Each selector
runs a fixed number of queries however many shots the board has.
"""

from __future__ import annotations

from django.db.models import BooleanField, Count, ExpressionWrapper, Q

from storyboard.models import ChainRun, Project, Scene, Shot, with_latest_takes

# What a shot's price depends on (Shot.estimate).
PRICE_FIELDS = ("mode", "endpoint", "resolution", "aspect_ratio", "duration", "num_frames")


def board_context(project: Project) -> dict:
    """The board page's shots, grouped under their scenes, with their totals."""
    groups = project.board(Shot.objects.for_cards())
    shots = [s for _, group in groups for s in group]
    with_latest_takes(shots)
    for scene, group in groups:
        if scene is not None:
            scene.n_shots = len(group)
    scenes = [scene for scene, _ in groups if scene is not None]
    return {"project": project, "groups": groups, **_totals(shots, scene_count=len(scenes))}


def summary_context(project: Project) -> dict:
    """The board's summary line alone (what one edit changes of the totals).

    Shots are counted by the parameters that set their price, so the work is one estimate per
    distinct combination, not one per shot.
    """
    on_board = ExpressionWrapper(Q(selected_take__isnull=False), output_field=BooleanField())
    rows = Shot.objects.filter(project=project).for_totals().values(
        *PRICE_FIELDS, "video_refs", on_board=on_board).annotate(n=Count("pk")).order_by()
    totals = {"shot_count": 0, "total_seconds": 0, "total_micros": 0, "left_micros": 0,
              "total_worst_case": False}
    for row in rows:
        shot = Shot(**{name: row[name] for name in PRICE_FIELDS})
        shot.video_refs = row["video_refs"]
        estimate, n = shot.estimate(), row["n"]
        totals["shot_count"] += n
        if shot.duration.isdigit():
            totals["total_seconds"] += n * int(shot.duration)
        totals["total_micros"] += n * estimate.micros
        if not row["on_board"]:
            totals["left_micros"] += n * estimate.micros
        totals["total_worst_case"] |= estimate.worst_case
    return {"project": project, "scene_count": project.scenes.count(), **totals}


def _totals(shots: list[Shot], *, scene_count: int) -> dict:
    for shot in shots:
        # Computed once here; the card template reads the cached value.
        shot.cached_estimate = shot.estimate()
    estimates = [s.cached_estimate for s in shots]
    return {"shot_count": len(shots), "scene_count": scene_count,
            "total_seconds": sum(int(s.duration) for s in shots if s.duration.isdigit()),
            "total_micros": sum(e.micros for e in estimates),
            # Shots with no take on the board yet: what finishing the board would cost.
            "left_micros": sum(s.cached_estimate.micros for s in shots
                               if s.selected_take_id is None),
            "total_worst_case": any(e.worst_case for e in estimates)}


def cards(shot_ids: list[int]) -> list[Shot]:
    """The given shots as their cards show them (two queries for any number of cards)."""
    return with_latest_takes(list(Shot.objects.filter(pk__in=shot_ids).for_cards()))


def board_order(project: Project) -> list[tuple[int | None, list[int]]]:
    """The board's structure alone: scene ids in order, each with its shot ids in order."""
    groups = project.board(Shot.objects.only("scene", "position"),
                           Scene.objects.only("pk", "position"))
    return [(scene.pk if scene else None, [s.pk for s in shots]) for scene, shots in groups]


def scene_heading(scene_id: int) -> Scene | None:
    scene = Scene.objects.filter(pk=scene_id).select_related("project").first()
    if scene is not None:
        scene.n_shots = scene.shots.count()
    return scene


def assets_context(project: Project) -> dict:
    """The asset library of one project."""
    return {"project": project, "assets": project.assets.all()}


def chain_runs(project: Project | int) -> list[ChainRun]:
    """The board's chain strip: renders going now and those that just ended (one query)."""
    return list(ChainRun.objects.on_board(project))
