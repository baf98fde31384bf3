from __future__ import annotations

import json
import logging
import uuid
from decimal import Decimal

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Prefetch, Q, prefetch_related_objects
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
)
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from storyboard import (
    catalogue,
    chainrun,
    chains,
    csvsafe,
    editing,
    generation,
    media,
    realtime,
    seams,
    selectors,
    throttle,
)
from storyboard.access import (
    get_asset_for_user,
    get_chain_run_for_user,
    get_membership_for_user,
    get_project_for_user,
    get_scene_for_user,
    get_seam_for_user,
    get_shot_for_user,
    get_take_for_user,
)
from storyboard.forms import (
    BudgetForm,
    NewShotForm,
    ProjectForm,
    SceneForm,
    SeamThresholdsForm,
    ShotForm,
)
from storyboard.models import (
    Asset,
    Budget,
    Export,
    Generation,
    LedgerEntry,
    Presence,
    Project,
    SeamThresholds,
    Shot,
)
from storyboard.money import usd
from storyboard.providers import WebhookRejected, get_provider, per_second_rates
from storyboard.selectors import assets_context, board_context, chain_runs
from storyboard.serving import serve_file

logger = logging.getLogger(__name__)

BOARD = "storyboard/board.html"
# Refused input answers 422 with the form and its messages. htmx is configured to swap 422 into
# the page (base.html), and django-htmx's debug helper leaves 422 alone (it takes over 400).
INVALID = 422
MAX_FILES_PER_UPLOAD = 20


def _refuse(message: str) -> HttpResponse:
    """Refuse input a form did not render: htmx keeps the page as it is and shows the message."""
    response = HttpResponse(message, status=INVALID, content_type="text/plain; charset=utf-8")
    response["HX-Reswap"] = "none"
    response["HX-Trigger"] = json.dumps({"showMessage": message})
    return response


def _change_response(request: HttpRequest, project: Project,
                     change: realtime.Push | None) -> HttpResponse:
    """Answer a board change: to htmx, the fragments everyone else is pushed (rendered once
    for both), which it swaps in by id; without JavaScript, the board page again."""
    if not request.htmx:
        return redirect("sb:board", project.pk)
    if change is None:
        return HttpResponse(status=204)
    audience = realtime.audiences_for(project.membership)[0]
    return HttpResponse(change.html_for(audience))


def _board_context(project: Project) -> dict:
    return {**board_context(project), "membership": project.membership}


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    team = request.user.current_team
    if team is None or not request.user.membership_in(team):
        team = request.user.teams().first()
        if team is None:
            return redirect("accounts:teams")
        request.user.switch_team(team)
    return redirect("sb:projects", team.pk)


@login_required
@require_GET
def projects(request: HttpRequest, team_id: int) -> HttpResponse:
    membership = get_membership_for_user(request, team_id)
    if request.user.current_team_id != membership.team_id:
        request.user.switch_team(membership.team)
    team_projects = membership.team.projects.annotate(n_shots=Count("shots"))
    return render(request, "storyboard/projects.html", {
        "team": membership.team, "membership": membership, "projects": team_projects,
    })


@login_required
def budget(request: HttpRequest, team_id: int) -> HttpResponse:
    """The team's money this period: limit, held, spent, the ledger; producers set the limit."""
    membership = get_membership_for_user(request, team_id)
    team_budget = Budget.for_team(membership.team)
    error = ""
    if request.method == "POST":
        if not membership.can_budget:
            raise PermissionDenied("Only owners and producers can change the budget.")
        form = BudgetForm(request.POST)
        if not form.is_valid():
            error = "; ".join(e for errors in form.errors.values() for e in errors)
        elif not team_budget.set_limit(limit=form.cleaned_data["limit"],
                                       user=request.user,
                                       reset_day=form.cleaned_data["reset_day"]):
            error = ("The limit cannot go below what is already held and spent this period "
                     f"({usd(team_budget.committed_micros)}).")
        else:
            messages.success(request, f"Budget set to {usd(team_budget.limit_micros)}.")
            return redirect("sb:budget", team_id)
    return _budget_page(request, membership, team_budget, error=error)


def _budget_page(request: HttpRequest, membership, team_budget: Budget, *, error: str = "",
                 seam_form: SeamThresholdsForm | None = None) -> HttpResponse:
    entries = _filtered_ledger(request, team_budget)
    unresolved = Generation.objects.filter(project__team=membership.team).unresolved() \
        .select_related("shot", "project", "created_by").order_by("created")
    thresholds = SeamThresholds.for_team(membership.team_id)
    refused = bool(error or (seam_form is not None and seam_form.errors))
    return render(request, "storyboard/budget.html", {
        "team": membership.team, "membership": membership, "budget": team_budget,
        "entries": entries[:200], "error": error, **_spend_report(team_budget),
        "unresolved": unresolved, "now": timezone.now(),
        "filters": {k: request.GET.get(k, "") for k in ("kind", "user", "project")},
        "kinds": LedgerEntry.Kind.choices, "people": membership.team.memberships.select_related(
            "user"), "projects": membership.team.projects.all(),
        "thresholds": thresholds, "seam_form": seam_form or SeamThresholdsForm.of(thresholds),
    }, status=INVALID if refused else 200)


@login_required
@require_POST
def seam_thresholds(request: HttpRequest, team_id: int) -> HttpResponse:
    """Where the team's seam check draws match, check and drift; owners and producers only."""
    membership = get_membership_for_user(request, team_id)
    if not membership.can_budget:
        raise PermissionDenied("Only owners and producers can change the seam thresholds.")
    form = SeamThresholdsForm(request.POST)
    if not form.is_valid():
        # The budget page again, the refused values in the form beside their messages.
        return _budget_page(request, membership, Budget.for_team(membership.team),
                            seam_form=form)
    seams.set_thresholds(team=membership.team, values=form.values(), user=request.user)
    messages.success(request, "Seam thresholds saved; every seam of the team was judged again.")
    return redirect(reverse("sb:budget", args=[team_id]) + "#seam-check")


@login_required
@require_POST
def take_settle(request: HttpRequest, team_id: int, take_uid: str) -> HttpResponse:
    """A producer settles a take whose charge only the provider knows: billed or not."""
    membership = get_membership_for_user(request, team_id)
    if not membership.can_budget:
        raise PermissionDenied("Only owners and producers can settle takes by hand.")
    take = Generation.objects.filter(project__team=membership.team, uid=take_uid).first()
    if take is None:
        raise Http404("No such take")
    verdict = request.POST.get("verdict")
    if verdict not in ("billed", "not_billed"):
        return _refuse("Choose “billed — capture” or “not billed — release”.")
    try:
        generation.settle_by_hand(take=take, billed=verdict == "billed",
                                  note=request.POST.get("note", ""), user=request.user)
    except generation.GenerationRefused as e:
        messages.error(request, e.message)
        return redirect("sb:budget", team_id)
    messages.success(request, f"Settled the take of {take.shot.display_title}: "
                              f"{'captured' if verdict == 'billed' else 'released'} "
                              f"{usd(take.estimated_micros)}.")
    return redirect("sb:budget", team_id)


def _filtered_ledger(request: HttpRequest, team_budget: Budget):
    entries = team_budget.entries.select_related("user", "take__shot", "take__project")
    kind, user, project = (request.GET.get(k, "") for k in ("kind", "user", "project"))
    if kind in LedgerEntry.Kind.values:
        entries = entries.filter(kind=kind)
    if user.isdigit():
        entries = entries.filter(user_id=int(user))
    if project.isdigit():
        entries = entries.filter(take__project_id=int(project))
    return entries


def _spend_report(team_budget: Budget) -> dict:
    """Where this period's money went, as bars the template draws (no chart library)."""
    captures = LedgerEntry.objects.filter(budget=team_budget).in_period(team_budget).captures()
    report = {
        **_daily_chart(captures.daily()),
        "by_project": captures.totals_by("take__project__name"),
        "by_person": captures.totals_by("user__username", "user__first_name", "user__last_name"),
        "by_endpoint": captures.totals_by("take__endpoint", "take__input__resolution"),
    }
    for row in report["by_endpoint"]:
        spec = catalogue.ENDPOINTS.get(row["take__endpoint"])
        row["label"] = spec.label if spec else row["take__endpoint"]
    for key in ("by_project", "by_person", "by_endpoint"):
        top = max((row["total"] for row in report[key]), default=0) or 1
        for row in report[key]:
            row["width"] = round(100 * row["total"] / top)
    # Waste: what each second on the board cost, against each second generated.
    takes = Generation.objects.filter(project__team_id=team_budget.team_id,
                                      state=Generation.State.COMPLETED,
                                      finished_at__gte=team_budget.period_start)
    generated = sum(t.duration or 0 for t in takes)
    approved = sum(
        s.selected_take.duration or 0 for s in Shot.objects.filter(
            project__team_id=team_budget.team_id, review=Shot.Review.APPROVED,
            selected_take__in=takes).select_related("selected_take"))
    spent = team_budget.charged_micros
    report["per_generated_second"] = round(spent / generated) if generated else None
    report["per_approved_second"] = round(spent / approved) if approved else None
    report["generated_seconds"], report["approved_seconds"] = generated, approved
    return report


# The spend-per-day chart, in SVG user units: a fixed frame (drawn at the page's width, never
# stretched), amounts on the left, dates under the bars, bars no wider than BAR_MAX.
CHART = {"width": 360, "height": 150, "left": 64, "right": 8, "top": 10, "bottom": 22}
BAR_MAX = 32


def _daily_chart(daily: list[dict]) -> dict:
    plot_width = CHART["width"] - CHART["left"] - CHART["right"]
    plot_height = CHART["height"] - CHART["top"] - CHART["bottom"]
    baseline = CHART["top"] + plot_height
    peak = max((d["total"] for d in daily), default=0) or 1
    slot = plot_width / max(1, len(daily))
    bar = min(BAR_MAX, slot * 0.7)
    # Every date fits under a bar up to about ten days; after that, every n-th.
    every = max(1, -(-len(daily) // 10))
    for index, day in enumerate(daily):
        day["height"] = max(1, round(plot_height * day["total"] / peak))
        day["width"] = round(bar, 1)
        day["x"] = round(CHART["left"] + slot * index + (slot - bar) / 2, 1)
        day["y"] = baseline - day["height"]
        day["mid"] = round(day["x"] + bar / 2, 1)
        day["labelled"] = index % every == 0 or index == len(daily) - 1
    ticks = [{"amount": peak * share // 2, "y": round(baseline - plot_height * share / 2, 1)}
             for share in (0, 1, 2)]
    return {"daily": daily, "chart": {**CHART, "baseline": baseline,
                                      "date_y": baseline + 16, "right_x": CHART["width"] - 10},
            "ticks": ticks}


@login_required
@require_GET
def ledger_csv(request: HttpRequest, team_id: int) -> HttpResponse:
    membership = get_membership_for_user(request, team_id)
    team_budget = Budget.for_team(membership.team)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="ledger-team-{team_id}-{timezone.now():%Y-%m-%d}.csv"')
    # Titles, names and notes are typed by users: csvsafe keeps them from running as formulas.
    writer = csvsafe.writer(response)
    writer.writerow(["time", "kind", "amount_usd", "amount_micros", "simulated", "project",
                     "shot", "take", "endpoint", "person", "note"])
    for e in _filtered_ledger(request, team_budget).iterator():
        take = e.take
        writer.writerow([
            e.created.isoformat(), e.kind, Decimal(e.amount_micros).scaleb(-6),
            e.amount_micros, e.simulated, take.project.name if take else "",
            take.shot.display_title if take else "", take.uid if take else "",
            take.endpoint if take else "", e.user.username if e.user else "", e.note,
        ])
    return response


@login_required
def project_create(request: HttpRequest, team_id: int) -> HttpResponse:
    membership = get_membership_for_user(request, team_id)
    if not membership.can_edit:
        raise PermissionDenied("Your role in this team cannot create projects.")
    form = ProjectForm(request.POST or None, instance=Project(team=membership.team),
                       can_budget=membership.can_budget)
    if request.method == "POST" and form.is_valid():
        project = form.save(commit=False)
        project.created_by = request.user
        project.save()
        return redirect("sb:board", project.pk)
    return render(request, "storyboard/project_form.html",
                  {"form": form, "team": membership.team}, status=INVALID if form.errors else 200)


@login_required
def project_settings(request: HttpRequest, project_id: int) -> HttpResponse:
    project = get_project_for_user(request, project_id, write=request.method == "POST")
    form = ProjectForm(request.POST or None, instance=project,
                       can_budget=project.membership.can_budget)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Project settings saved. New shots use these defaults.")
        return redirect("sb:board", project.pk)
    return render(request, "storyboard/project_form.html",
                  {"form": form, "team": project.team, "project": project},
                  status=INVALID if form.errors else 200)


@login_required
@require_POST
def project_delete(request: HttpRequest, project_id: int) -> HttpResponse:
    project = get_project_for_user(request, project_id, write=True)
    if not project.membership.can_budget:
        raise PermissionDenied("Only owners and producers can delete a project.")
    if request.POST.get("confirm") != project.name:
        messages.error(request, "Type the project's name to confirm deleting it.")
        return redirect("sb:project-settings", project.pk)
    team_id = project.team_id
    files = list(project.assets.all())
    with transaction.atomic():
        project.delete()
        transaction.on_commit(lambda: _delete_files(files))
        realtime.close_project(project_id=project_id, team_id=team_id)
    messages.success(request, f"Deleted {project.name}.")
    return redirect("sb:projects", team_id)


def _delete_files(assets: list[Asset]) -> None:
    for asset in assets:
        asset.delete_files()


@login_required
@require_GET
def board(request: HttpRequest, project_id: int) -> HttpResponse:
    project = get_project_for_user(request, project_id)
    if request.htmx and request.htmx.target == "editor":
        # Closing the shot editor swaps its empty state back in.
        return render(request, f"{BOARD}#editor-empty",
                      {"project": project, "membership": project.membership})
    # Before anything the page shows is read (realtime: numbered pushes).
    seen = realtime.pushes_seen(project.pk, project.membership)
    ctx = _board_context(project)
    # Cards of other review states are hidden by CSS, so pushed cards filter themselves too.
    review_filter = request.GET.get("review", "")
    ctx["review_filter"] = review_filter if review_filter in Shot.Review.values else ""
    ctx["review_states"] = Shot.Review.choices
    ctx["live_seen"] = seen
    ctx["viewers"] = Presence.objects.viewers(project.pk)
    ctx["asset_count"] = project.assets.count()
    ctx["chain_runs"] = chain_runs(project)
    ctx["running_exports"] = list(Export.objects.active().filter(project=project))
    team_budget = Budget.for_team(project.team_id)
    ctx.update(budget=team_budget, team=project.team,
               threshold=team_budget.threshold_crossed(0))
    return render(request, f"{BOARD}#board" if request.htmx else BOARD, ctx)


# Placeholders one request may fill: about three screenfuls, so a fast scroll costs a few
# requests and none of them is large.
MAX_CARDS_PER_REQUEST = 60


@login_required
@require_GET
def board_cards(request: HttpRequest, project_id: int) -> HttpResponse:
    """Whole cards for the board's placeholders (`?shot=1&shot=2…`), each swapped in by id."""
    project = get_project_for_user(request, project_id)
    if not request.htmx:
        return redirect("sb:board", project.pk)
    ids = [int(v) for v in request.GET.getlist("shot") if v.isdigit()][:MAX_CARDS_PER_REQUEST]
    return render(request, f"{BOARD}#shot-cards", {
        "project": project, "membership": project.membership,
        "shots": selectors.cards(ids, project=project)})


@login_required
@require_POST
def shot_create(request: HttpRequest, project_id: int) -> HttpResponse:
    project = get_project_for_user(request, project_id, write=True)
    form = NewShotForm(request.POST, project=project)
    if not form.is_valid():
        return _refuse("That scene is not on this board.")
    shot = project.new_shot(title=form.cleaned_data["title"], scene=form.cleaned_data["scene"])
    shot.created_by = request.user
    shot.save(update_fields=["created_by"])
    return _change_response(request, project, realtime.shot_added(shot))


@login_required
@require_POST
def shot_reorder(request: HttpRequest, project_id: int) -> HttpResponse:
    project = get_project_for_user(request, project_id, write=True)
    items: list[tuple[int | None, int]] = []
    try:
        for item in request.POST.getlist("item"):
            scene, shot = item.split(":")
            items.append((int(scene) if scene else None, int(shot)))
    except ValueError:
        return _refuse("Malformed board order.")
    if not project.apply_order(items, user=request.user):
        # Someone changed the board while this drag happened; show them the current one.
        response = render(request, f"{BOARD}#board", _board_context(project), status=409)
        response["HX-Retarget"] = "#board"
        response["HX-Reswap"] = "outerHTML"
        return response
    return _change_response(request, project, realtime.board_reordered(project.pk))


@login_required
def shot_edit(request: HttpRequest, shot_id: int) -> HttpResponse:
    shot = get_shot_for_user(request, shot_id, write=request.method == "POST")
    project = shot.project
    seen = None
    if not request.htmx and request.method == "GET":
        # The page's live socket starts from here (realtime: numbered pushes); the shot is
        # read again after, so an edit pushed in between is in the page or makes it re-sync.
        seen = realtime.pushes_seen(project.pk, project.membership)
        shot.refresh_from_db()
        shot.project = project
    data = request.POST or None
    switch = catalogue.ENDPOINTS.get(request.POST.get("switch_endpoint", ""))
    if data is not None and switch is not None and switch.mode == catalogue.Mode.IMAGE:
        # The offer under a refused link: the same submission on the image-to-video endpoint.
        data = data.copy()
        data["endpoint"], data["mode"] = switch.id, Shot.Mode.IMAGE
    form = ShotForm(data, instance=shot)
    edit = None
    if request.method == "POST" and form.is_valid():
        keep_theirs = {name for name in Shot.EDITABLE
                       if request.POST.get(f"keep-{name}") == "theirs"}
        edit = editing.save_shot(shot=shot, user=request.user, mine=form.values(),
                                 version=form.cleaned_data["version"], keep_theirs=keep_theirs)
        shot = Shot.objects.select_related("project__team").get(pk=shot.pk)
        shot.project = project
        if edit.conflicts or edit.refused or edit.locked:
            # What was not stored stays in the form, next to the stored version where both
            # people changed a field; the version is the stored one, so saving again resolves.
            form = ShotForm(ShotForm.data_for(edit.shown, version=shot.version),
                            instance=Shot.objects.get(pk=shot.pk))
            form.instance.project = project
            if edit.locked:
                form.add_error(None, edit.locked)
        else:
            form = ShotForm(instance=shot)
    elif request.method == "POST":
        # Nothing was saved, so the page shows the stored shot beside the refused values.
        shot = Shot.objects.select_related("project__team").get(pk=shot.pk)
        shot.project = project
        form.instance = shot
    saved = edit is not None and not edit.conflicts and not edit.refused and not edit.locked
    _take_rows(shot)
    ctx = {"shot": shot, "project": project, "form": form, "saved": saved,
           "conflicts": edit.conflicts if edit else [],
           "merged": bool(edit and edit.change and edit.conflicts),
           "membership": project.membership,
           "warnings": form.warnings(), "in_panel": _in_panel(request),
           "chain_from": _chain_from(shot), "previous": _link_offer(shot, form),
           "viewer_take": _viewer_take(shot, request.GET.get("take", "")),
           "estimate": shot.estimate(), "estimate_errors": [],
           "provider": get_provider(settings.DEFAULT_VIDEO_PROVIDER)}
    status = 409 if edit and edit.conflicts else INVALID if form.errors else 200
    if request.htmx:
        return render(request, "storyboard/shot.html#editor", ctx, status=status)
    if saved:
        if ctx["warnings"]:
            messages.warning(request, f"Shot saved — but it can’t be generated yet: "
                                      f"{ctx['warnings'][0]}")
        else:
            messages.success(request, "Shot saved.")
        return redirect("sb:board", project.pk)
    ctx["viewers"] = Presence.objects.viewers(project.pk)
    ctx["live_seen"] = seen
    return render(request, "storyboard/shot.html", ctx, status=status)


@login_required
@require_GET
def shot_history(request: HttpRequest, shot_id: int) -> HttpResponse:
    """The shot's recent changes; open editors re-fetch it when an edit is pushed."""
    shot = get_shot_for_user(request, shot_id)
    if not request.htmx:
        return redirect("sb:shot", shot.pk)
    return render(request, "storyboard/shot.html#history",
                  {"shot": shot, "project": shot.project,
                   "membership": shot.project.membership})


@login_required
@require_POST
def shot_undo(request: HttpRequest, shot_id: int) -> HttpResponse:
    """Revert the shot's latest change, unless someone changed those fields since."""
    shot = get_shot_for_user(request, shot_id, write=True)
    change_id = request.POST.get("change", "")
    try:
        if not change_id.isdigit():
            raise editing.UndoRefused("Choose a change to undo.")
        editing.undo(shot=shot, change_id=int(change_id), user=request.user)
    except editing.UndoRefused as e:
        if request.htmx:
            return _refuse(e.message)
        messages.error(request, e.message)
        return redirect("sb:shot", shot.pk)
    realtime.shot_saved(shot, moved=True)
    if not request.htmx:
        messages.success(request, "Undone.")
    return _editor_response(request, shot)


@login_required
@require_GET
def shot_estimate(request: HttpRequest, shot_id: int) -> HttpResponse:
    """The editor's live price: parameters from the unsaved form, nothing is stored."""
    shot = get_shot_for_user(request, shot_id)
    params = {name: request.GET.get(name) or getattr(shot, name)
              for name in ("endpoint", "resolution", "aspect_ratio", "duration")}
    errors = list(catalogue.validate_parameters(**params).values())
    estimate = None
    if not errors:
        video_refs = request.GET.get("mode", shot.mode) == Shot.Mode.REFERENCE and (
            shot.project.assets.filter(kind=Asset.Kind.VIDEO,
                                       pk__in=_ids(request.GET.getlist("references"))).exists()
        )
        estimate = catalogue.estimate(**params, video_references=video_refs,
                                      rates=per_second_rates(params["endpoint"]))
    return render(request, "storyboard/shot.html#estimate",
                  {"shot": shot, "estimate": estimate, "estimate_errors": errors})


def _ids(values: list[str]) -> list[int]:
    return [int(v) for v in values if v.isdigit()]


@login_required
@require_POST
def shot_duplicate(request: HttpRequest, shot_id: int) -> HttpResponse:
    shot = get_shot_for_user(request, shot_id, write=True)
    copy = shot.duplicate(user=request.user)
    return _change_response(request, shot.project, realtime.shot_added(copy))


@login_required
@require_POST
def shot_delete(request: HttpRequest, shot_id: int) -> HttpResponse:
    shot = get_shot_for_user(request, shot_id, write=True)
    project = shot.project
    title = shot.display_title
    # Shots that continued from it are unlinked, each with a history line and a board notice.
    change, notice = chains.delete_shot(shot=shot, user=request.user)
    if not request.htmx:
        messages.success(request, f"Deleted {title}.")
        if notice:
            messages.warning(request, notice)
    return _change_response(request, project, change)


@login_required
@require_POST
def shot_continue_previous(request: HttpRequest, shot_id: int) -> HttpResponse:
    """One click: the shot continues from the one before it on the board."""
    shot = get_shot_for_user(request, shot_id, write=True)
    try:
        linked = editing.continue_previous(shot=shot, user=request.user)
    except chains.ChainRefused as e:
        return _refuse_or_back(request, shot, e.message)
    realtime.shot_saved(linked)
    return _editor_response(request, shot)


@login_required
@require_POST
def shot_rechain(request: HttpRequest, shot_id: int) -> HttpResponse:
    """A stale shot: a new take with the same parameters from the upstream's new frame."""
    shot = get_shot_for_user(request, shot_id, write=True)
    # A re-chain starts a take, so it counts against the same limit as Generate.
    if wait := throttle.retry_after(request, throttle.GENERATION_START):
        return throttle.refuse(request, "takes started in a minute", wait)
    try:
        generation.rechain(shot=shot, user=request.user)
    except generation.GenerationRefused as e:
        return _refuse_or_back(request, shot, e.message)
    return _editor_response(request, shot)


@login_required
@require_POST
def shot_keep(request: HttpRequest, shot_id: int) -> HttpResponse:
    """A stale shot: keep its take as it is (the history records who, and the reason)."""
    shot = get_shot_for_user(request, shot_id, write=True)
    try:
        chains.keep(shot=shot, user=request.user)
    except chains.ChainRefused as e:
        return _refuse_or_back(request, shot, e.message)
    return _editor_response(request, shot)


def _refuse_or_back(request: HttpRequest, shot: Shot, message: str) -> HttpResponse:
    """A refused chain action: htmx shows the message in place; a plain form post goes back to
    the shot's page with it."""
    if request.htmx:
        return _refuse(message)
    messages.error(request, message)
    return redirect("sb:shot", shot.pk)


@login_required
@require_POST
def shot_move(request: HttpRequest, shot_id: int) -> HttpResponse:
    """Move a shot one place up or down: the no-JavaScript way to reorder."""
    shot = get_shot_for_user(request, shot_id, write=True)
    project = shot.project
    groups = [[scene, list(shots)] for scene, shots in project.board()]
    g = next(i for i, (_, shots) in enumerate(groups) if shot in shots)
    shots = groups[g][1]
    i = shots.index(shot)
    direction = request.POST.get("direction")
    if direction not in ("up", "down"):
        return _refuse("Move a shot up or down.")
    up = direction == "up"
    if (up and i > 0) or (not up and i < len(shots) - 1):
        j = i - 1 if up else i + 1
        shots[i], shots[j] = shots[j], shots[i]
    elif 0 <= g + (-1 if up else 1) < len(groups):
        # At the edge of a scene, one more step moves the shot into the neighbouring scene.
        shots.pop(i)
        if up:
            groups[g - 1][1].append(shot)
        else:
            groups[g + 1][1].insert(0, shot)
    else:
        return _change_response(request, project, None)
    if not project.apply_order([(scene.pk if scene else None, s.pk) for scene, group in groups
                                for s in group], user=request.user):
        return _change_response(request, project, None)
    return _change_response(request, project, realtime.board_reordered(project.pk))


@login_required
@require_POST
def scene_create(request: HttpRequest, project_id: int) -> HttpResponse:
    project = get_project_for_user(request, project_id, write=True)
    form = SceneForm(request.POST)
    if not form.is_valid():
        return _refuse("A scene needs a title of at most 120 characters.")
    scene = form.save(commit=False)
    scene.project = project
    with transaction.atomic():
        project.lock()
        scene.position = project.scenes.count()
        scene.save()
    return _change_response(request, project, realtime.scene_added(project.pk, scene.pk))


@login_required
@require_POST
def scene_rename(request: HttpRequest, scene_id: int) -> HttpResponse:
    scene = get_scene_for_user(request, scene_id, write=True)
    form = SceneForm(request.POST, instance=scene)
    if not form.is_valid():
        return _refuse("A scene needs a title of at most 120 characters.")
    form.save()
    return _change_response(request, scene.project,
                            realtime.scene_renamed(scene.project_id, scene.pk))


@login_required
@require_POST
def scene_delete(request: HttpRequest, scene_id: int) -> HttpResponse:
    """Delete the heading only; its shots stay on the board, ungrouped."""
    scene = get_scene_for_user(request, scene_id, write=True)
    project = scene.project
    scene.delete()
    return _change_response(request, project, realtime.scene_removed(project.pk))


@login_required
def assets(request: HttpRequest, project_id: int) -> HttpResponse:
    project = get_project_for_user(request, project_id, write=request.method == "POST")
    seen = realtime.pushes_seen(project.pk, project.membership)
    errors: list[str] = []
    added: list[Asset] = []
    if request.method == "POST":
        uploads = request.FILES.getlist("file")
        if not uploads:
            errors.append("Choose at least one file to upload.")
        elif len(uploads) > MAX_FILES_PER_UPLOAD:
            errors.append(f"Upload at most {MAX_FILES_PER_UPLOAD} files at a time.")
        else:
            for upload in uploads:
                try:
                    added.append(
                        Asset.objects.store(project=project, upload=upload, user=request.user)
                    )
                except media.MediaError as e:
                    errors.append(e.message)
        if added:
            realtime.broadcast_assets(project)
    ctx = {**assets_context(project), "errors": errors, "added": added,
           "membership": project.membership, "live_seen": seen}
    status = INVALID if errors and not added else 200
    if request.htmx:
        return render(request, "storyboard/assets.html#library", ctx, status=status)
    return render(request, "storyboard/assets.html", ctx, status=status)


@login_required
@require_POST
def asset_delete(request: HttpRequest, asset_uid: str) -> HttpResponse:
    asset = get_asset_for_user(request, asset_uid, write=True)
    project = asset.project
    # The cards that show or price it change with it.
    users = set(Shot.objects.filter(Q(start_frame=asset) | Q(end_frame=asset)
                                    | Q(references=asset)).values_list("pk", flat=True))
    with transaction.atomic():
        asset.delete()
        transaction.on_commit(asset.delete_files)
    realtime.broadcast_assets(project, shots=users)
    if request.htmx:
        return render(request, "storyboard/assets.html#library",
                      {**assets_context(project), "membership": project.membership})
    return redirect("sb:assets", project.pk)


@login_required
@require_POST
def shot_generate(request: HttpRequest, shot_id: int) -> HttpResponse:
    shot = get_shot_for_user(request, shot_id, write=True)
    if wait := throttle.retry_after(request, throttle.GENERATION_START):
        return throttle.refuse(request, "takes started in a minute", wait)
    try:
        generation.start_generation(shot=shot, user=request.user)
    except generation.GenerationRefused as e:
        return _refuse(e.message)
    return _editor_response(request, shot)


@login_required
def shot_chain(request: HttpRequest, shot_id: int) -> HttpResponse:
    """Render chain from here: GET shows every shot it would render and the total held at
    once; POST starts it. Only roles that may generate get either."""
    shot = get_shot_for_user(request, shot_id, write=True)
    project = shot.project
    if request.method == "POST":
        if wait := throttle.retry_after(request, throttle.GENERATION_START):
            return throttle.refuse(request, "takes started in a minute", wait)
        try:
            run = chainrun.start_chain(shot=shot, user=request.user)
        except chainrun.ChainRunRefused as e:
            if request.htmx:
                return _refuse(e.message)
            messages.error(request, e.message)
            return redirect("sb:shot-chain", shot.pk)
        if request.htmx:
            return render(request, "storyboard/chain.html#chain-started",
                          {"run": run, "shot": shot, "project": project})
        messages.success(request, f"Rendering a chain of {run.steps} "
                                  f"shot{'s' if run.steps != 1 else ''} from "
                                  f"{run.label(0)}; {usd(run.held_micros)} is held for it.")
        return redirect("sb:board", project.pk)
    plan = chainrun.plan_chain(shot)
    team_budget = Budget.for_team(project.team_id)
    cap_left = None
    if project.spend_cap_micros is not None:
        cap_left = max(0, project.spend_cap_micros
                       - project.committed_micros(since=team_budget.period_start))
    left = max(0, team_budget.remaining_micros)
    if cap_left is not None:
        left = min(left, cap_left)
    ctx = {"shot": shot, "project": project, "membership": project.membership, "plan": plan,
           "budget": team_budget, "cap_left": cap_left,
           "short": max(0, plan.total - left), "in_panel": _in_panel(request)}
    if request.htmx:
        return render(request, "storyboard/chain.html#chain-confirm", ctx)
    return render(request, "storyboard/chain.html", ctx)


@login_required
@require_POST
def chain_cancel(request: HttpRequest, run_id: int) -> HttpResponse:
    """Cancel a chain render: the take rendering now is canceled at its provider, nothing
    below it starts, every remaining hold is released."""
    run = get_chain_run_for_user(request, run_id, write=True)
    try:
        problems = chainrun.cancel_chain(run=run, user=request.user)
    except chainrun.ChainRunRefused as e:
        if request.htmx:
            return _refuse(e.message)
        messages.error(request, e.message)
        return redirect("sb:board", run.project_id)
    if not request.htmx:
        if problems:
            messages.warning(request, "Chain canceled. " + " ".join(problems))
        else:
            messages.success(request, "Chain canceled; every remaining hold was released.")
        return redirect("sb:board", run.project_id)
    response = render(request, f"{BOARD}#chain-progress", {
        "project": run.project, "membership": run.project.membership,
        "chain_runs": chain_runs(run.project)})
    if problems:
        response["HX-Trigger"] = json.dumps({"showMessage": " ".join(problems)})
    return response


@login_required
@require_POST
def take_cancel(request: HttpRequest, take_uid: str) -> HttpResponse:
    take = get_take_for_user(request, take_uid, write=True)
    try:
        generation.cancel(take=take)
    except generation.GenerationRefused as e:
        return _refuse(e.message)
    return _editor_response(request, take.shot)


@login_required
@require_POST
def take_discard(request: HttpRequest, take_uid: str) -> HttpResponse:
    take = get_take_for_user(request, take_uid, write=True)
    try:
        generation.discard(take=take)
    except generation.GenerationRefused as e:
        return _refuse(e.message)
    return _editor_response(request, take.shot)


@login_required
@require_POST
def take_retry(request: HttpRequest, take_uid: str) -> HttpResponse:
    take = get_take_for_user(request, take_uid, write=True)
    # A retry starts a take too, so it counts against the same limit.
    if wait := throttle.retry_after(request, throttle.GENERATION_START):
        return throttle.refuse(request, "takes started in a minute", wait)
    try:
        generation.retry(take=take, user=request.user)
    except generation.GenerationRefused as e:
        return _refuse(e.message)
    return _editor_response(request, take.shot)


@login_required
@require_POST
def take_refetch(request: HttpRequest, take_uid: str) -> HttpResponse:
    take = get_take_for_user(request, take_uid, write=True)
    try:
        generation.refetch(take=take)
    except generation.GenerationRefused as e:
        return _refuse(e.message)
    return _editor_response(request, take.shot)


@login_required
@require_POST
def take_select(request: HttpRequest, take_uid: str) -> HttpResponse:
    """Show this take on the board for its shot."""
    take = get_take_for_user(request, take_uid, write=True)
    try:
        chains.choose_take(shot=take.shot, take=take, user=request.user)
    except chains.ChainRefused as e:
        return _refuse(e.message)
    return _editor_response(request, take.shot)


def _viewer_take(shot: Shot, uid: str) -> Generation | None:
    """The take a link asked the shot page's player to open (`?take=`), if it is this shot's."""
    try:
        return shot.takes.filter(uid=uuid.UUID(uid)).first() if uid else None
    except ValueError:
        return None


def _chain_from(shot: Shot) -> dict | None:
    """What a continuing shot will start from, for the editor: the upstream's chosen take,
    whose last frame was captured when it finished (nothing is decoded or created here)."""
    if not shot.continues_from_id:
        return None
    return {"take": shot.upstream_take(), "upstream": shot.continues_from}


def _link_offer(shot: Shot, form: ShotForm) -> Shot | None:
    """The shot "continue from the previous shot" would link to, for a shot not linked yet."""
    return None if shot.continues_from_id else form.previous_shot()


def _take_rows(shot: Shot) -> None:
    """The editor's take rows in three queries however many: takes, who made them, seams."""
    prefetch_related_objects([shot], Prefetch("takes",
                                              queryset=Generation.objects.for_take_list()))


def _in_panel(request: HttpRequest) -> bool:
    """Is the shot editor open beside the board (rather than on its own page)?"""
    return bool(request.htmx) and "/shots/" not in (request.htmx.current_url_abs_path or "")


def _editor_response(request: HttpRequest, shot: Shot) -> HttpResponse:
    if not request.htmx:
        return redirect("sb:shot", shot.pk)
    membership = shot.project.membership
    shot = Shot.objects.select_related("project__team").get(pk=shot.pk)
    form = ShotForm(instance=shot)
    _take_rows(shot)
    ctx = {"shot": shot, "project": shot.project, "form": form, "saved": False,
           "membership": membership, "in_panel": _in_panel(request),
           "provider": get_provider(settings.DEFAULT_VIDEO_PROVIDER), "warnings": form.warnings(),
           "chain_from": _chain_from(shot), "previous": _link_offer(shot, form),
           "viewer_take": _viewer_take(shot, request.GET.get("take", "")),
           "estimate": shot.estimate(), "estimate_errors": []}
    return render(request, "storyboard/shot.html#editor", ctx)


@login_required
@require_GET
def take_file(request: HttpRequest, take_uid: str, kind: str) -> HttpResponse:
    take = get_take_for_user(request, take_uid)
    served = {"video": (take.video, "video/mp4"), "poster": (take.poster, "image/jpeg"),
              "first-frame": (take.first_frame, "image/png"),
              "last-frame": (take.last_frame, "image/png")}
    field, content_type = served.get(kind, (None, ""))
    if not field:
        raise Http404("No such file")
    return serve_file(field, content_type, request=request)


@login_required
@require_GET
def seam_frame(request: HttpRequest, seam_id: int, side: str) -> HttpResponse:
    """One of the two frames a seam compared: the upstream's last ("before") or the
    downstream's first ("after")."""
    seam = get_seam_for_user(request, seam_id)
    field = {"before": seam.before, "after": seam.after}.get(side)
    if not field:
        raise Http404("No such frame")
    return serve_file(field, "image/jpeg", request=request)


# Provider webhooks carry the whole result; fal's can be a few megabytes (Django's default
# body limit would answer 400 and fal would drop the delivery after its retries).
WEBHOOK_MAX_BYTES = 10 * 1024 * 1024


@csrf_exempt
@require_POST
def webhook(request: HttpRequest, provider_name: str, take_uid: str,
            webhook_token: str) -> HttpResponse:
    """A provider reports on a take. Verified before anything is read; duplicates are no-ops.

    The per-take token in the URL comes first (only the provider was given it); then the
    provider's own check (fal's signature, eachlabs' secret header when it sends one).
    """
    if provider_name not in settings.VIDEO_PROVIDERS:
        raise Http404("No such provider")
    if not generation.webhook_token_ok(provider=provider_name, take_uid=str(take_uid),
                                       token=webhook_token):
        return HttpResponse("Signature rejected", status=401)
    provider = get_provider(provider_name)
    body = request.read(WEBHOOK_MAX_BYTES + 1)
    if len(body) > WEBHOOK_MAX_BYTES:
        return HttpResponse("Too large", status=413)
    try:
        event = provider.parse_webhook(headers=dict(request.headers), body=body)
    except (WebhookRejected, NotImplementedError):
        return HttpResponse("Signature rejected", status=401)
    take = Generation.objects.filter(uid=take_uid, provider=provider_name).first()
    # Unknown takes and other requests' deliveries get a 200 all the same: a retry cannot help,
    # and the sender learns nothing about which ids exist.
    if take is None or not generation.apply_webhook(take=take, event=event):
        logger.warning("Ignored a %s webhook for take %s (request %s)", provider_name,
                       take_uid, event.request_id)
    return HttpResponse("OK")


@require_GET
def input_file(request: HttpRequest, signed: str) -> HttpResponse:
    """An input file for a provider to fetch: the signed, expiring token is the credential."""
    name = generation.unsign_input(signed)
    if name is None:
        raise Http404("This link has expired or is not valid.")
    asset = Asset.objects.filter(file=name).first()
    if asset is None:
        # A chain's start frame: the upstream take's last frame.
        take = Generation.objects.filter(last_frame=name).only("last_frame").first()
        if take is None:
            raise Http404("No such file")
        return serve_file(take.last_frame, "image/png", request=request)
    if asset.content_type not in SERVED_TYPES:
        raise Http404("No such file")
    return serve_file(asset.file, asset.content_type, request=request)


# Uploads are re-encoded or probed before storage, so these are the only types ever served.
SERVED_TYPES = {"image/jpeg", "image/png", "image/webp", "video/mp4", "video/quicktime",
                "audio/mpeg", "audio/wav"}


@login_required
@require_GET
def asset_file(request: HttpRequest, asset_uid: str, variant: str) -> HttpResponse:
    asset = get_asset_for_user(request, asset_uid)
    field = {"file": asset.file, "thumbnail": asset.thumbnail, "poster": asset.poster}.get(variant)
    if not field:
        raise Http404("No such file")
    content_type = asset.content_type if variant == "file" else "image/jpeg"
    if content_type not in SERVED_TYPES:
        raise Http404("No such file")
    return serve_file(field, content_type, request=request)


def url_for_asset(asset: Asset, variant: str = "file") -> str:
    return reverse("sb:asset-file", args=[asset.uid, variant])
