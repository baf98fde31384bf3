"""Every view and websocket reaches team data through these helpers.

Another team's object, or one that does not exist, is a 404 either way, so ids reveal nothing.
A member whose role may not write gets a 403 from the write variants.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest

from accounts.models import Membership, User
from storyboard.models import Asset, Generation, Project, Scene, Shot


def can_view_project(user: User, project_id: int) -> Membership | None:
    """The membership that lets `user` see the project, or None. Used by the websocket too."""
    if not user.is_authenticated:
        return None
    return (
        Membership.objects.filter(user=user, team__projects__pk=project_id)
        .select_related("team")
        .first()
    )


def get_membership_for_user(request: HttpRequest, team_id: int) -> Membership:
    """The user's membership in the team (team loaded), or a 404 for any other team."""
    membership = Membership.objects.filter(team_id=team_id, user=request.user).select_related(
        "team"
    ).first() if request.user.is_authenticated else None
    if membership is None:
        raise Http404("No such team")
    return membership


def _check(membership: Membership | None, *, write: bool) -> Membership:
    if membership is None:
        raise Http404("No such project")
    if write and not membership.can_edit:
        raise PermissionDenied("Your role in this team cannot change the board.")
    return membership


def get_project_for_user(request: HttpRequest, project_id: int, *, write: bool = False) -> Project:
    membership = _check(can_view_project(request.user, project_id), write=write)
    project = Project.objects.select_related("team").get(pk=project_id)
    project.membership = membership
    return project


def get_shot_for_user(request: HttpRequest, shot_id: int, *, write: bool = False) -> Shot:
    shot = Shot.objects.for_user(request.user).select_related("project__team").filter(
        pk=shot_id
    ).first()
    if shot is None:
        raise Http404("No such shot")
    shot.project.membership = _check(
        request.user.membership_in(shot.project.team_id), write=write
    )
    return shot


def get_scene_for_user(request: HttpRequest, scene_id: int, *, write: bool = False) -> Scene:
    scene = Scene.objects.filter(
        pk=scene_id, project__team__memberships__user=request.user
    ).select_related("project__team").first() if request.user.is_authenticated else None
    if scene is None:
        raise Http404("No such scene")
    scene.project.membership = _check(
        request.user.membership_in(scene.project.team_id), write=write
    )
    return scene


def get_asset_for_user(request: HttpRequest, asset_uid: str, *, write: bool = False) -> Asset:
    asset = Asset.objects.for_user(request.user).select_related("project__team").filter(
        uid=asset_uid
    ).first()
    if asset is None:
        raise Http404("No such file")
    asset.project.membership = _check(
        request.user.membership_in(asset.project.team_id), write=write
    )
    return asset


def get_take_for_user(request: HttpRequest, take_uid: str, *, write: bool = False) -> Generation:
    take = Generation.objects.for_user(request.user).select_related(
        "shot__project__team", "project"
    ).filter(uid=take_uid).first()
    if take is None:
        raise Http404("No such take")
    take.shot.project.membership = _check(
        request.user.membership_in(take.project.team_id), write=write
    )
    return take
