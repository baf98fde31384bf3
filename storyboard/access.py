"""Every view and websocket reaches team data through these helpers.

Another team's object, or one that does not exist, is a 404 either way, so ids reveal nothing.
A member whose role may not write gets a 403 from the write variants.
"""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404, HttpRequest

from accounts.models import Membership, User
from storyboard.models import (
    Asset,
    ChainRun,
    Comment,
    Export,
    Generation,
    Project,
    ReviewLink,
    ReviewSession,
    Scene,
    Seam,
    Shot,
    TeamScopedQuerySet,
    WebhookDelivery,
    WebhookEndpoint,
)


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


def _check(membership: Membership | None, *, write: bool, review: bool = False,
           comment: bool = False, share: bool = False) -> Membership:
    if membership is None:
        raise Http404("No such project")
    if write and not membership.can_edit:
        raise PermissionDenied("Your role in this team cannot change the board.")
    if share and not membership.can_share:
        raise PermissionDenied("Only producers and owners share work outside the team.")
    if review and not membership.can_review:
        raise PermissionDenied("Your role in this team cannot approve or send back takes.")
    if comment and not membership.can_comment:
        raise PermissionDenied("Viewers read comments; your role cannot write them.")
    return membership


def get_project_for_user(request: HttpRequest, project_id: int, *, write: bool = False,
                         comment: bool = False, share: bool = False) -> Project:
    """`comment=True`: only roles that write comments (everyone but viewers); `share=True`:
    only roles that share review links (producer, owner)."""
    membership = _check(can_view_project(request.user, project_id), write=write,
                        comment=comment, share=share)
    project = Project.objects.select_related("team").get(pk=project_id)
    project.membership = membership
    return project


def _get_for_user[T: models.Model](request: HttpRequest, queryset: TeamScopedQuerySet, *,
                                    write: bool, not_found: str,
                                    project: Callable[[T], Project], review: bool = False,
                                    comment: bool = False, share: bool = False) -> T:
    """The one object of `queryset` the user's teams own, with its project's membership noted.

    `queryset` is already narrowed to the object asked for; `project` finds the object's project,
    which carries the membership the views and templates read.
    """
    obj = queryset.for_user(request.user).first()
    if obj is None:
        raise Http404(not_found)
    owner = project(obj)
    owner.membership = _check(request.user.membership_in(owner.team_id), write=write,
                              review=review, comment=comment, share=share)
    return obj


def get_shot_for_user(request: HttpRequest, shot_id: int, *, write: bool = False,
                      review: bool = False) -> Shot:
    """`review=True`: only roles that decide on takes (reviewer, producer, owner)."""
    shots = Shot.objects.select_related("project__team").filter(pk=shot_id)
    return _get_for_user(request, shots, write=write, not_found="No such shot",
                         project=lambda shot: shot.project, review=review)


def get_scene_for_user(request: HttpRequest, scene_id: int, *, write: bool = False) -> Scene:
    scenes = Scene.objects.select_related("project__team").filter(pk=scene_id)
    return _get_for_user(request, scenes, write=write, not_found="No such scene",
                         project=lambda scene: scene.project)


def get_asset_for_user(request: HttpRequest, asset_uid: str, *, write: bool = False) -> Asset:
    assets = Asset.objects.select_related("project__team").filter(uid=asset_uid)
    return _get_for_user(request, assets, write=write, not_found="No such file",
                         project=lambda asset: asset.project)


def get_take_for_user(request: HttpRequest, take_uid: str, *, write: bool = False,
                      comment: bool = False) -> Generation:
    """`comment=True`: only roles that write comments (everyone but viewers)."""
    takes = Generation.objects.select_related("shot__project__team", "project").filter(
        uid=take_uid)
    # The editor a take's buttons answer with reads the membership from the take's shot.
    return _get_for_user(request, takes, write=write, not_found="No such take",
                         project=lambda take: take.shot.project, comment=comment)


def get_comment_for_user(request: HttpRequest, comment_id: int, *, write: bool = False,
                         comment: bool = False) -> Comment:
    comments = Comment.objects.select_related("take__shot__project__team").filter(
        pk=comment_id)
    return _get_for_user(request, comments, write=write, not_found="No such comment",
                         project=lambda c: c.take.shot.project, comment=comment)


def get_chain_run_for_user(request: HttpRequest, run_id: int, *,
                           write: bool = False) -> ChainRun:
    runs = ChainRun.objects.select_related("project__team").filter(pk=run_id)
    return _get_for_user(request, runs, write=write, not_found="No such chain render",
                         project=lambda run: run.project)


def get_seam_for_user(request: HttpRequest, seam_id: int) -> Seam:
    """A measured joint (read-only: seams are computed, never edited by hand)."""
    seams = Seam.objects.select_related("project__team").filter(pk=seam_id)
    return _get_for_user(request, seams, write=False, not_found="No such seam",
                         project=lambda seam: seam.project)


def get_export_for_user(request: HttpRequest, export_id: int) -> Export:
    """An export of one of the user's projects. Every role may export, so reading one needs no
    more than membership; who may cancel it is Export.can_cancel's to say."""
    exports = Export.objects.select_related("project__team", "created_by").filter(pk=export_id)
    return _get_for_user(request, exports, write=False, not_found="No such export",
                         project=lambda export: export.project)


def get_session_for_user(request: HttpRequest, session_id: int, *,
                         comment: bool = False) -> ReviewSession:
    """A review session of the user's team; `comment=True` for the roles that may run one."""
    sessions = ReviewSession.objects.select_related("project__team", "presenter",
                                                    "started_by").filter(pk=session_id)
    return _get_for_user(request, sessions, write=False, not_found="No such review session",
                         project=lambda session: session.project, comment=comment)


def get_review_link_for_user(request: HttpRequest, link_id: int) -> ReviewLink:
    """A review link, for the producers and owners who manage them (never for guests: they
    come in by token, storyboard/sharing.open_link)."""
    links = ReviewLink.objects.select_related("project__team").filter(pk=link_id)
    return _get_for_user(request, links, write=False, not_found="No such review link",
                         project=lambda link: link.project, share=True)


def get_webhook_team_for_user(request: HttpRequest, team_id: int) -> Membership:
    """The owner's membership (team loaded) for the team's webhooks page; other roles 403."""
    membership = get_membership_for_user(request, team_id)
    if not membership.can_manage:
        raise PermissionDenied("Only the team's owners manage its webhooks.")
    return membership


def _webhook_owner(request: HttpRequest, team_id: int) -> None:
    membership = request.user.membership_in(team_id)
    if membership is None:
        raise Http404("No such webhook")
    if not membership.can_manage:
        raise PermissionDenied("Only the team's owners manage its webhooks.")


def get_webhook_endpoint_for_user(request: HttpRequest, endpoint_id: int) -> WebhookEndpoint:
    """One of the team's webhook endpoints, for its owners only (its secret is on the page)."""
    endpoint = WebhookEndpoint.objects.select_related("team").filter(
        pk=endpoint_id).for_user(request.user).first()
    if endpoint is None:
        raise Http404("No such webhook")
    _webhook_owner(request, endpoint.team_id)
    return endpoint


def get_webhook_delivery_for_user(request: HttpRequest, delivery_id: int) -> WebhookDelivery:
    delivery = WebhookDelivery.objects.select_related("endpoint__team").filter(
        pk=delivery_id).for_user(request.user).first()
    if delivery is None:
        raise Http404("No such delivery")
    _webhook_owner(request, delivery.endpoint.team_id)
    return delivery


def get_in_team[T: models.Model](membership: Membership, queryset: TeamScopedQuerySet, *,
                                 write: bool = False, not_found: str) -> T:
    """For the JSON API: the one object of `queryset` that the token's team owns.

    A token reaches one team only, even when its person belongs to several; the membership is
    the one read for this request, so the role checked is the person's role now.
    """
    obj = queryset.for_team(membership.team_id).first()
    if obj is None:
        raise Http404(not_found)
    _check(membership, write=write)
    return obj
