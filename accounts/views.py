from __future__ import annotations

from urllib.parse import urlsplit

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import Resolver404, resolve, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from accounts.forms import ApiTokenForm, InvitationForm, RoleForm, SignupForm, TeamForm
from accounts.models import Invitation, Role, Team
from storyboard import realtime, throttle
from storyboard.access import get_membership_for_user
from storyboard.models import ApiToken


def _get_team_for_user(request: HttpRequest, team_id: int, *, manage: bool = False) -> Team:
    membership = get_membership_for_user(request, team_id)
    if manage and not membership.can_manage:
        raise PermissionDenied("Only the team's owners can manage its members.")
    team = membership.team
    team.membership = membership
    return team


def _safe_next(request: HttpRequest) -> str | None:
    target = request.POST.get("next") or request.GET.get("next")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return None


def _is_invitation(target: str | None) -> bool:
    """Whether `target` is an invitation link: its team is the one the new account joins."""
    if not target:
        return False
    try:
        return resolve(urlsplit(target).path).view_name == "accounts:invitation"
    except Resolver404:
        return False


def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("sb:home")
    form = SignupForm(request.POST or None)
    # Only accounts created count, so mistyped forms never lock anyone out.
    if request.method == "POST" and (
            wait := throttle.retry_after(request, throttle.SIGNUP, count=False)):
        return throttle.refuse(request, "new accounts from your network", wait,
                               template="accounts/signup.html",
                               context={"form": SignupForm(), "next": _safe_next(request)})
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            user = form.save()
            # Everyone starts with a team of their own; invitations add more.
            if not _is_invitation(_safe_next(request)):
                team = Team.objects.create(name=f"{user.label}'s team")
                team.add_member(user, Role.OWNER)
        throttle.record(request, throttle.SIGNUP)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect(_safe_next(request) or "sb:home")
    return render(request, "accounts/signup.html", {"form": form, "next": _safe_next(request)})


def _teams_context(request: HttpRequest, **extra) -> dict:
    memberships = request.user.memberships.select_related("team").order_by("team__name")
    # Revoked tokens stay listed a while, so their owner sees what stopped working.
    tokens = request.user.api_tokens.select_related("team").filter(
        team__memberships__user=request.user)[:50]
    return {"memberships": memberships, "form": TeamForm(), "api_tokens": tokens,
            "token_form": ApiTokenForm(), **extra}


@login_required
@require_GET
def teams(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/teams.html", _teams_context(request))


@login_required
@require_POST
def team_create(request: HttpRequest) -> HttpResponse:
    form = TeamForm(request.POST)
    if not form.is_valid():
        return render(request, "accounts/teams.html", _teams_context(request, form=form),
                      status=422)
    with transaction.atomic():
        team = form.save()
        team.add_member(request.user, Role.OWNER)
        request.user.switch_team(team)
    messages.success(request, f"Created {team.name}. Invite people from its members page.")
    return redirect("sb:projects", team.pk)


@login_required
@require_POST
def team_switch(request: HttpRequest, team_id: int) -> HttpResponse:
    team = _get_team_for_user(request, team_id)
    request.user.switch_team(team)
    return redirect("sb:projects", team.pk)


@login_required
@require_POST
def team_rename(request: HttpRequest, team_id: int) -> HttpResponse:
    team = _get_team_for_user(request, team_id, manage=True)
    form = TeamForm(request.POST, instance=team)
    if form.is_valid():
        form.save()
        messages.success(request, "Team renamed.")
    else:
        messages.error(request, "; ".join(e for errs in form.errors.values() for e in errs))
    return redirect("accounts:members", team.pk)


@login_required
@require_POST
def api_token_create(request: HttpRequest, team_id: int) -> HttpResponse:
    """A token for the JSON API in this team, acting with the person's own role; its secret
    is on this one response only (only its hash is kept)."""
    team = _get_team_for_user(request, team_id)
    form = ApiTokenForm(request.POST)
    if not form.is_valid():
        return render(request, "accounts/teams.html", _teams_context(request, token_form=form),
                      status=422)
    token, secret = ApiToken.issue(user=request.user, team=team, name=form.cleaned_data["name"])
    return render(request, "accounts/teams.html",
                  _teams_context(request, new_token=token, new_secret=secret))


@login_required
@require_POST
def api_token_revoke(request: HttpRequest, team_id: int, api_token_id: int) -> HttpResponse:
    """Anyone revokes their own tokens; a team's owners also anyone's in the team (a leak)."""
    team = _get_team_for_user(request, team_id)
    tokens = ApiToken.objects.filter(team=team)
    if not team.membership.can_manage:
        tokens = tokens.filter(user=request.user)
    token = get_object_or_404(tokens, pk=api_token_id)
    if token.revoke():
        messages.success(request, f"Token “{token.name}” revoked; it no longer works.")
    return redirect("accounts:teams")


def _members_context(team: Team, *, invitation_form: InvitationForm | None = None) -> dict:
    return {
        "team": team,
        "memberships": team.memberships.select_related("user").order_by("created"),
        "invitations": team.invitations.order_by("-created")[:20],
        "invitation_form": invitation_form or InvitationForm(),
        "roles": Role.choices,
    }


@login_required
@require_GET
def members(request: HttpRequest, team_id: int) -> HttpResponse:
    team = _get_team_for_user(request, team_id)
    return render(request, "accounts/members.html", _members_context(team))


def _members_response(request: HttpRequest, team: Team, **kwargs) -> HttpResponse:
    template = "accounts/members.html"
    if request.htmx:
        return render(request, template + "#members-panel", _members_context(team, **kwargs))
    return redirect("accounts:members", team.pk)


@login_required
@require_POST
def member_role(request: HttpRequest, team_id: int, membership_id: int) -> HttpResponse:
    team = _get_team_for_user(request, team_id, manage=True)
    form = RoleForm(request.POST)
    with transaction.atomic():
        # Two owners demoting each other at once must not leave the team without one.
        team.lock_owners()
        membership = get_object_or_404(team.memberships, pk=membership_id)
        if not form.is_valid():
            messages.error(request, "Choose one of the listed roles.")
        elif membership.is_last_owner() and form.cleaned_data["role"] != Role.OWNER:
            messages.error(request,
                           "A team needs at least one owner. Make someone else owner first.")
        else:
            membership.role = form.cleaned_data["role"]
            membership.save(update_fields=["role"])
            # Board pushes are rendered per role: their open boards move to the new role's.
            realtime.role_changed(user_id=membership.user_id, team_id=team.pk)
        messages.success(
            request, f"{membership.user.label} is now {membership.get_role_display()}."
        )
    return _members_response(request, team)


@login_required
@require_POST
def member_remove(request: HttpRequest, team_id: int, membership_id: int) -> HttpResponse:
    team = _get_team_for_user(request, team_id)
    membership = get_object_or_404(team.memberships, pk=membership_id)
    leaving = membership.user_id == request.user.pk
    # Anyone may leave; only owners may remove someone else.
    if not leaving and not team.membership.can_manage:
        raise PermissionDenied("Only the team's owners can remove members.")
    with transaction.atomic():
        team.lock_owners()
        if membership.is_last_owner():
            messages.error(request,
                           "A team needs at least one owner. Make someone else owner first.")
            return _members_response(request, team)
        user = membership.user
        membership.delete()
        if user.current_team_id == team.pk:
            user.current_team = user.teams().exclude(pk=team.pk).first()
            user.save(update_fields=["current_team"])
        realtime.revoke_access(user_id=user.pk, team_id=team.pk)
    if leaving:
        messages.success(request, f"You left {team.name}.")
        return redirect("sb:home")
    messages.success(request, f"Removed {user.label} from {team.name}.")
    return _members_response(request, team)


@login_required
@require_POST
def invitation_create(request: HttpRequest, team_id: int) -> HttpResponse:
    team = _get_team_for_user(request, team_id, manage=True)
    if wait := throttle.retry_after(request, throttle.INVITATION_CREATE):
        return throttle.refuse(request, "invitation links created", wait)
    form = InvitationForm(request.POST)
    if form.is_valid():
        invitation = form.save(commit=False)
        invitation.team = team
        invitation.created_by = request.user
        invitation.save()
        messages.success(request, "Invitation link created. Copy it and send it to the person.")
        form = None
    else:
        messages.error(request, "Choose one of the listed roles.")
    if request.htmx:
        return render(request, "accounts/members.html#members-panel",
                      _members_context(team, invitation_form=form))
    return redirect("accounts:members", team.pk)


@login_required
@require_POST
def invitation_revoke(request: HttpRequest, team_id: int, invitation_id: int) -> HttpResponse:
    team = _get_team_for_user(request, team_id, manage=True)
    invitation = get_object_or_404(team.invitations, pk=invitation_id)
    invitation.revoked = True
    invitation.save(update_fields=["revoked"])
    messages.success(request, "Invitation revoked; the link no longer works.")
    return _members_response(request, team)


def invitation(request: HttpRequest, token: str) -> HttpResponse:
    invitation = Invitation.objects.select_related("team").filter(token=token).first()
    if invitation is None:
        raise Http404("This invitation link is not valid.")
    if not request.user.is_authenticated:
        return render(request, "accounts/invitation.html", {
            "invitation": invitation,
            "login_url": reverse("accounts:login") + f"?next={request.path}",
            "signup_url": reverse("accounts:signup") + f"?next={request.path}",
        })
    if request.method == "POST":
        if wait := throttle.retry_after(request, throttle.INVITATION_ACCEPT):
            return throttle.refuse(request, "invitations accepted", wait,
                                   template="accounts/invitation.html",
                                   context={"invitation": invitation})
        if invitation.state != "open":
            messages.error(request, f"This invitation is {invitation.state}. Ask for a new link.")
            return redirect("sb:home")
        if request.user.membership_in(invitation.team_id):
            # The link stays open for the person it was meant for.
            messages.info(request, f"You are already in {invitation.team.name}.")
            return redirect("sb:projects", invitation.team_id)
        membership = invitation.accept(request.user)
        if membership is None:
            messages.error(request, "This invitation was used a moment ago. Ask for a new link.")
            return redirect("sb:home")
        messages.success(request, f"Welcome to {invitation.team.name}.")
        return redirect("sb:projects", invitation.team_id)
    return render(request, "accounts/invitation.html", {"invitation": invitation})
