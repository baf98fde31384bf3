"""What the board and the asset library show: reads only, shared by views and realtime.

Views render these for the person asking; realtime renders the same regions for everyone
watching. Both import this module, which imports models and nothing above them.
"""

from __future__ import annotations

from storyboard.models import Project


def board_context(project: Project) -> dict:
    """The board page's shots, grouped and numbered, with their totals."""
    groups = project.board()
    number = 0
    for _, shots in groups:
        for shot in shots:
            number += 1
            shot._number = number
    shots = [s for _, group in groups for s in group]
    total_seconds = sum(int(s.duration) for s in shots if s.duration.isdigit())
    for shot in shots:
        # Computed once here; the card template reads the cached value.
        shot.cached_estimate = shot.estimate()
    estimates = [s.cached_estimate for s in shots]
    return {"project": project, "groups": groups, "shot_count": number,
            "total_seconds": total_seconds, "scenes": project.scenes.all(),
            "total_micros": sum(e.micros for e in estimates),
            # Shots with no take on the board yet: what finishing the board would cost.
            "left_micros": sum(s.cached_estimate.micros for s in shots
                               if s.selected_take_id is None),
            "total_worst_case": any(e.worst_case for e in estimates)}


def assets_context(project: Project) -> dict:
    """The asset library of one project."""
    return {"project": project, "assets": project.assets.all()}
