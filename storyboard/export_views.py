"""The export page: ask for an animatic or a timeline of the cut, watch it run, download it.

Every role may export (a viewer shows the animatic to a client); only whoever asked for an
export, or an editor, may cancel it.
"""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from storyboard import export, realtime
from storyboard.access import get_export_for_user, get_project_for_user
from storyboard.models import Export, Project
from storyboard.serving import serve_file

EXPORT = "storyboard/export.html"
INVALID = 422


def _context(request: HttpRequest, project: Project, **extra) -> dict:
    exports = list(Export.objects.listed(project.pk))
    return {"project": project, "membership": project.membership, "exports": exports,
            "running_exports": [e for e in exports if e.is_active],
            "kinds": Export.Kind.choices, "resolutions": list(export.RESOLUTIONS),
            "request_user_id": request.user.pk, **extra}


@login_required
@require_http_methods(["GET", "POST"])
def export_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """GET: the form and the project's exports (htmx: the list alone, which live pages
    re-fetch). POST: queue an export of the cut as it is now."""
    project = get_project_for_user(request, project_id)
    if request.method == "GET":
        if request.htmx:
            return render(request, f"{EXPORT}#export-list", _context(request, project))
        seen = realtime.pushes_seen(project.pk, project.membership)
        return render(request, EXPORT, _context(request, project, live_seen=seen))
    options = export.Options(selected=request.POST.get("takes", "selected") == "selected",
                             resolution=request.POST.get("resolution", "source"),
                             burn_in=bool(request.POST.get("burn_in")))
    kind = request.POST.get("kind", Export.Kind.ANIMATIC)
    try:
        made, new = export.start_export(project=project, user=request.user, kind=kind,
                                        options=options)
    except export.ExportRefused as e:
        if request.htmx:
            return render(request, f"{EXPORT}#export-form",
                          _context(request, project, error=e.message), status=INVALID)
        messages.error(request, e.message)
        return redirect("sb:export", project.pk)
    note = (f"{made.get_kind_display()} queued." if new else
            f"The same {made.get_kind_display().lower()} is already "
            f"{made.get_state_display().lower()}; here it is.")
    if request.htmx:
        response = render(request, f"{EXPORT}#export-list", _context(request, project))
        response["HX-Trigger"] = json.dumps({"showMessage": note})
        return response
    messages.success(request, note)
    return redirect("sb:export", project.pk)


@login_required
@require_POST
def export_cancel(request: HttpRequest, export_id: int) -> HttpResponse:
    made = get_export_for_user(request, export_id)
    project = made.project
    if made.is_active and not made.can_cancel(request.user):
        raise PermissionDenied("Only whoever asked for this export, or an editor, can cancel it.")
    try:
        export.cancel_export(export=made, user=request.user)
    except export.ExportRefused as e:
        # It ended meanwhile: say so, change nothing.
        if request.htmx:
            response = HttpResponse(e.message, status=409,
                                    content_type="text/plain; charset=utf-8")
            response["HX-Reswap"] = "none"
            response["HX-Trigger"] = json.dumps({"showMessage": e.message})
            return response
        messages.error(request, e.message)
        return redirect("sb:export", project.pk)
    if request.htmx:
        return render(request, f"{EXPORT}#export-list", _context(request, project))
    messages.success(request, "Export cancelled; nothing was kept.")
    return redirect("sb:export", project.pk)


@login_required
@require_GET
def export_file(request: HttpRequest, export_id: int) -> HttpResponse:
    """The finished file, as a download. Only a done export has one."""
    made = get_export_for_user(request, export_id)
    if made.state != Export.State.DONE or not made.file:
        raise Http404("This export has no file to download.")
    return serve_file(made.file, made.content_type, request=request,
                      download_name=made.download_name)
