"""The printable board, as a page for the browser's print and as a PDF download."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.text import slugify
from django.views.decorators.http import require_GET

from storyboard import printing
from storyboard.access import get_project_for_user


@login_required
@require_GET
def board_print(request: HttpRequest, project_id: int) -> HttpResponse:
    """Every member may print the board (viewers included: printing changes nothing)."""
    project = get_project_for_user(request, project_id)
    paper = request.GET.get("paper", "a4")
    return render(request, "storyboard/print.html",
                  printing.context(project=project, paper=paper, pdf=False))


@login_required
@require_GET
def board_print_pdf(request: HttpRequest, project_id: int) -> HttpResponse:
    project = get_project_for_user(request, project_id)
    try:
        rendered = printing.render_pdf(project=project, paper=request.GET.get("paper", "a4"))
    except printing.PrintUnavailable as e:
        return HttpResponse(e.message, status=503, content_type="text/plain; charset=utf-8")
    response = HttpResponse(rendered.pdf, content_type="application/pdf")
    name = slugify(project.name) or "storyboard"
    response["Content-Disposition"] = f'attachment; filename="{name}-board.pdf"'
    return response
