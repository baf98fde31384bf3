"""The Import page of a project: upload a shot list or a screenplay, preview, confirm.

The preview writes nothing. Its confirm form carries the file's text signed for this project
and person (storyboard/imports.py: seal), so confirming never asks for the file again and the
text confirmed is exactly the text previewed.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from storyboard import imports
from storyboard.access import get_project_for_user
from storyboard.models import Project

PAGE = "storyboard/import.html"
# Refused input answers 422 with the page and its message (base.html lets htmx swap it in).
INVALID = 422
# The preview went stale (the board or the project's defaults changed): 409 with the new one.
CONFLICT = 409


def _page(request: HttpRequest, project: Project, *, status: int = 200,
          **context: object) -> HttpResponse:
    context = {"project": project, "membership": project.membership, "kinds": imports.KINDS,
               "max_shots": f"{imports.MAX_SHOTS:,}", "columns": imports.COLUMNS, **context}
    plan = context.get("plan")
    if isinstance(plan, imports.Plan) and plan.ok and "token" not in context:
        context["token"] = imports.seal(project=project, user=request.user, plan=plan)
    template = f"{PAGE}#preview" if request.htmx else PAGE
    return render(request, template, context, status=status)


@login_required
def project_import(request: HttpRequest, project_id: int) -> HttpResponse:
    """GET: the upload forms. POST: the preview of an uploaded file (nothing is written)."""
    project = get_project_for_user(request, project_id, write=True)
    if request.method != "POST":
        return _page(request, project)
    kind = request.POST.get("kind", "")
    try:
        source = imports.read(upload=request.FILES.get("source"), kind=kind)
    except imports.Refused as refused:
        return _page(request, project, refused=refused.message, kind=kind, status=INVALID)
    plan = imports.plan(project=project, source=source)
    return _page(request, project, plan=plan, kind=source.kind,
                 status=200 if plan.ok else INVALID)


@login_required
@require_POST
def project_import_confirm(request: HttpRequest, project_id: int) -> HttpResponse:
    """Import what the preview showed, all or nothing, and go back to the board."""
    project = get_project_for_user(request, project_id, write=True)
    try:
        source, seen = imports.unseal(project=project, user=request.user,
                                      token=request.POST.get("plan", ""))
    except imports.Refused as refused:
        return _page(request, project, refused=refused.message, status=INVALID)
    plan = imports.plan(project=project, source=source)
    if not plan.ok:
        return _page(request, project, plan=plan, kind=source.kind, status=INVALID)
    if plan.fingerprint() != seen:
        return _page(request, project, plan=plan, kind=source.kind, status=CONFLICT,
                     changed=True)
    try:
        imports.apply_plan(project=project, plan=plan, user=request.user)
    except imports.Refused as refused:
        return _page(request, project, plan=plan, kind=source.kind, status=CONFLICT,
                     refused=refused.message)
    messages.success(request, f"Imported {plan.summary()}.")
    return redirect("sb:board", project.pk)
