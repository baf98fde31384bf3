"""What the board and the asset library show: reads only, shared by views and realtime.

Views render these for the person asking; realtime renders the same regions for everyone
watching. Both import this module, which imports models and nothing above them. Each selector
runs a fixed number of queries however many shots the board has.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from django.db.models import BooleanField, Count, ExpressionWrapper, Q

from storyboard.models import ChainRun, Project, Scene, Shot, with_latest_takes

# What a shot's price depends on (Shot.estimate).
PRICE_FIELDS = ("mode", "endpoint", "resolution", "aspect_ratio", "duration", "num_frames")
# The shot fields the board's totals read: an edit to any other (a title, a prompt) leaves
# the summary line as it was, so it is not pushed.
TOTALS_FIELDS = frozenset({*PRICE_FIELDS, "references"})


# Cards rendered in full when the board opens: a first screenful (three rows of four on a
# laptop). The rest arrive as light placeholders that board.js fills in batches as they near the
# viewport (views.board_cards), so a 300-shot board opens in about the time a 12-shot one does.
FIRST_CARDS = 12


def board_context(project: Project, *, full: int = FIRST_CARDS) -> dict:
    """The board page: every shot in order under its scene, the first `full` as whole cards
    and the others as placeholders, and the board's totals. A fixed number of queries however
    many shots; a placeholder costs one light row and no template work of its own.

    `groups` is [(scene or None, whole cards, placeholder shots)], in board order.
    """
    # One light row per shot: its place, its title and what its price depends on.
    light = project.board(Shot.objects.for_totals(
        "pk", "project", "scene", "position", "title", "review"))
    ordered = [s for _, group in light for s in group]
    whole = {s.pk: s for s in cards([s.pk for s in ordered[:full]])}
    groups = []
    for scene, group in light:
        # Whole cards come first on the board, so within a scene too.
        groups.append((scene, [whole[s.pk] for s in group if s.pk in whole],
                       [s for s in group if s.pk not in whole]))
        if scene is not None:
            scene.n_shots = len(group)
    scenes = [scene for scene, _, _ in groups if scene is not None]
    price_groups = Counter((*(getattr(s, name) for name in PRICE_FIELDS), s.video_refs,
                            s.selected_take_id is not None, s.review) for s in ordered)
    return {"project": project, "groups": groups,
            **_totals(((*key, n) for key, n in price_groups.items()),
                      scene_count=len(scenes))}


def summary_context(project: Project) -> dict:
    """The board's summary line alone (what one edit changes of the totals), in one grouped
    query."""
    on_board = ExpressionWrapper(Q(selected_take__isnull=False), output_field=BooleanField())
    rows = Shot.objects.filter(project=project).for_totals("review").annotate(
        on_board=on_board).values_list(*PRICE_FIELDS, "video_refs", "on_board",
                                       "review").annotate(n=Count("pk")).order_by()
    return {"project": project, **_totals(rows, scene_count=project.scenes.count())}


def _totals(rows: Iterable[tuple], *, scene_count: int) -> dict:
    """The board's totals from (price fields…, video_refs, on the board, review state, how
    many shots) rows.

    Shots are counted by the parameters that set their price, so the work is one estimate per
    distinct combination, not one per shot.
    """
    totals = {"shot_count": 0, "total_seconds": 0, "total_micros": 0, "left_micros": 0,
              "total_worst_case": False, "scene_count": scene_count}
    reviews: Counter[str] = Counter()
    for *values, video_refs, on_board, review, n in rows:
        reviews[review] += n
        shot = Shot(**dict(zip(PRICE_FIELDS, values, strict=True)))
        shot.video_refs = video_refs
        estimate = shot.estimate()
        totals["shot_count"] += n
        if shot.duration.isdigit():
            totals["total_seconds"] += n * int(shot.duration)
        totals["total_micros"] += n * estimate.micros
        if not on_board:
            totals["left_micros"] += n * estimate.micros
        totals["total_worst_case"] |= estimate.worst_case
    # How many shots wait for review, were sent back, are approved (drafts go unsaid).
    totals["review_counts"] = [(label, reviews[value]) for value, label in Shot.Review.choices
                               if value != Shot.Review.DRAFT and reviews[value]]
    return totals


def cards(shot_ids: list[int], *, project: Project | None = None) -> list[Shot]:
    """The given shots as their cards show them (two queries for any number of cards), only
    those of `project` when given (ids that came from a request)."""
    shots = Shot.objects.filter(pk__in=shot_ids)
    if project is not None:
        shots = shots.filter(project=project)
    return with_latest_takes(list(shots.for_cards()))


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
