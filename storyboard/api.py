"""The JSON API, version 1, for pipelines that drive the board without a browser.

django-ninja, because its operations are plain functions like the rest of our views, its
pydantic schemas validate the JSON and write the OpenAPI schema (/api/v1/openapi.json) from the
same code, and it ships Swagger UI's files itself, so the docs page loads nothing from a CDN.

Every request carries a person's token (`Authorization: Bearer sb_…`, see ApiToken) and acts
with that person's role in the token's team as it is at that moment. Each operation goes the
way the browser goes: the same access checks, the same ShotForm validation, the same write
paths (editing.save_shot, generation.start_generation, chainrun.start_chain) with their budget
holds, history and live pushes, and the same sentences when something is refused. Every error
is an RFC 9457 problem document (`application/problem+json`), never a page.
"""

from __future__ import annotations

import copy
import functools
import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_GET
from ninja import Field, NinjaAPI, Path, Schema, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import HttpBearer

from accounts.models import Membership
from storyboard import chainrun, editing, generation, realtime, throttle
from storyboard.access import get_in_team
from storyboard.forms import NewShotForm, ShotForm
from storyboard.models import ApiToken, Budget, ChainRun, Export, Generation, Project, Shot
from storyboard.money import decimal_text
from storyboard.serving import serve_file

logger = logging.getLogger(__name__)

PROBLEM = "application/problem+json"
# The refusals every operation may answer with, documented as problem bodies.
ERRORS = frozenset({400, 401, 403, 404, 422, 429})
# What a refused write adds: a conflict or lock (409) and a budget that does not cover it (402).
WRITE_ERRORS = ERRORS | {402, 409}
# Database ids (64-bit): a larger number names nothing and would overflow the query, so it is
# refused as malformed, in the path and in a body alike.
MAX_ID = 2**63 - 1
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
RowId = Annotated[int, Field(ge=1, le=MAX_ID)]


class Problem(Exception):
    """An error answered as a problem document: `detail` says what happened in plain words."""

    def __init__(self, status: int, detail: str, *, retry_after: int | None = None,
                 **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.detail, self.retry_after, self.extra = status, detail, retry_after, extra


def problem(status: int, detail: str, *, retry_after: int | None = None,
            **extra: Any) -> HttpResponse:
    """RFC 9457: no problem type of our own (about:blank), so the title is the status phrase."""
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status,
            "detail": detail, **extra}
    response = JsonResponse(body, status=status, content_type=PROBLEM,
                            json_dumps_params={"ensure_ascii": False})
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    if status == HTTPStatus.UNAUTHORIZED:
        response["WWW-Authenticate"] = 'Bearer realm="storyboard"'
    return response


class TokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> ApiToken:
        api_token = ApiToken.find(token)
        if api_token is None:
            raise Problem(401, "This API token is not valid: it was revoked, or never existed.")
        membership = Membership.objects.select_related("team").filter(
            team_id=api_token.team_id, user_id=api_token.user_id).first()
        if membership is None or not api_token.user.is_active:
            # The role is read on every request: someone who left the team left with it.
            raise Problem(401, "This API token no longer works: its owner is not in "
                               f"{api_token.team.name} any more.")
        # The browser's helpers and limits read the person from the request.
        request.user = api_token.user
        request.auth = api_token
        request.membership = membership
        if wait := throttle.retry_after(request, throttle.API_REQUEST):
            raise Problem(429, throttle.refusal("requests with this API token", wait),
                          retry_after=wait)
        api_token.touch()
        return api_token


api = NinjaAPI(title="Storyboard API", version="1", urls_namespace="api", auth=TokenAuth(),
               description="Shots, takes and the budget of one team, for pipelines. "
                           "Authenticate with `Authorization: Bearer sb_…` (a token made on "
                           "the Teams page). Errors are RFC 9457 problem documents.")


@api.exception_handler(Problem)
def _problem(request: HttpRequest, exc: Problem) -> HttpResponse:
    return problem(exc.status, exc.detail, retry_after=exc.retry_after, **exc.extra)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return problem(401, "Send an API token: Authorization: Bearer sb_… (make one on the Teams "
                        "page).")


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return problem(404, str(exc) or "Nothing is here.")


@api.exception_handler(PermissionDenied)
def _forbidden(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
    return problem(403, str(exc) or "Your role in this team cannot do that.")


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    errors: dict[str, list[str]] = {}
    for error in exc.errors:
        # ("body", "payload", "title") → "title"; the location kind and argument name are ours.
        where = [str(part) for part in error.get("loc", ())[2:]] or [
            str(part) for part in error.get("loc", ())[-1:]]
        errors.setdefault(".".join(where) or "request", []).append(error.get("msg", "Invalid."))
    return problem(422, _sentence(errors), errors=errors)


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    # ninja's own refusals, such as a body that is not JSON.
    return problem(exc.status_code, str(exc))


@api.exception_handler(Exception)
def _crashed(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("API request %s %s failed", request.method, request.path)
    return problem(500, "Something went wrong on our side and nothing was changed by it; it "
                        "is logged. Try again, and tell the team's owner if it persists.")


def _sentence(errors: dict[str, list[str]]) -> str:
    parts = [" ".join(messages) if name in ("__all__", "request") else
             f"{name.replace('_', ' ').capitalize()}: {' '.join(messages)}"
             for name, messages in errors.items()]
    return " ".join(parts) or "The request was refused."


def not_found(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    """Every other address under /api/: a problem document, never the site's 404 page."""
    return problem(404, "There is no such address in the API; see /api/v1/openapi.json.")


def _methods_as_problems(view):
    """ninja answers a method an address does not take with an empty text/html 405."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        response = view(request, *args, **kwargs)
        if response.status_code == HTTPStatus.METHOD_NOT_ALLOWED and not response.get(
                "Content-Type", "").startswith(PROBLEM):
            allowed = response.get("Allow", "")
            response = problem(405, f"This address takes {allowed or 'other methods'} only.")
            response["Allow"] = allowed
        return response

    return wrapped


def urls() -> tuple[list, str, str]:
    """What urls.py mounts at /api/v1/: ninja's patterns, each 405 a problem document."""
    patterns, app_name, namespace = api.urls
    for pattern in patterns:
        if pattern.name == "api-root":
            # ninja's own root raises a bare Http404, which Django would answer with a page.
            pattern.callback = not_found
        elif pattern.name in ("openapi-json", "openapi-view"):
            pattern.callback = require_GET(pattern.callback)
        pattern.callback = _methods_as_problems(pattern.callback)
    return patterns, app_name, namespace


# Schemas


class ProblemOut(Schema):
    type: str
    title: str
    status: int
    detail: str


class ShotFields(Schema):
    """The editor's fields; on a PATCH, only those sent change."""

    title: str = ""
    scene: RowId | None = None
    prompt: str = ""
    notes: str = ""
    mode: str = Field("text", description="text, image or reference")
    endpoint: str = ""
    resolution: str = ""
    aspect_ratio: str = ""
    duration: str | int = Field("", description='Seconds, or "auto" where the endpoint allows')
    generate_audio: bool = True
    seed: int | None = None
    camera_fixed: bool = False
    num_frames: int | None = None
    safety_checker: bool = True
    start_frame: RowId | None = Field(None, description="An image asset's id")
    end_frame: RowId | None = Field(None, description="An image asset's id")
    references: list[RowId] = Field(default_factory=list, description="Asset ids")
    continues_from: RowId | None = Field(None, description="The id of the shot this continues")


class ShotPatch(ShotFields):
    version: str = Field("", description="The shot's version you last read. A field someone "
                                         "else changed since then is a conflict (409), not "
                                         "overwritten.")


class ShotOut(Schema):
    id: int
    project: int
    position: int
    title: str
    scene: int | None
    prompt: str
    notes: str
    mode: str
    endpoint: str
    resolution: str
    aspect_ratio: str
    duration: str
    generate_audio: bool
    seed: int | None
    camera_fixed: bool
    num_frames: int | None
    safety_checker: bool
    start_frame: int | None
    end_frame: int | None
    references: list[int]
    continues_from: int | None
    review: str
    selected_take: uuid.UUID | None
    stale_reason: str
    version: str
    estimate_micros: int
    estimate_usd: str


class TakeSummary(Schema):
    uid: uuid.UUID
    state: str
    created: datetime


class ShotDetail(ShotOut):
    problems: list[str] = Field(description="What stops the shot from being generated now")
    takes: list[TakeSummary]


class Provenance(Schema):
    provider: str
    endpoint: str
    parameters: dict = Field(description="The exact arguments sent to the provider")
    seed: int | None
    request_id: str = Field(description="The provider's id for the request")
    simulated: bool = Field(description="Rendered offline, priced as the endpoint")
    upstream: uuid.UUID | None = Field(description="The take whose last frame this started from")


class Cost(Schema):
    estimated_micros: int
    estimated_usd: str
    charged_micros: int | None
    charged_usd: str | None


class TakeOut(Schema):
    uid: uuid.UUID
    shot: int
    state: str
    state_label: str
    progress: float
    queue_position: int | None
    error: str
    chain_run: int | None
    created: datetime
    submitted_at: datetime | None
    finished_at: datetime | None
    provenance: Provenance
    cost: Cost
    video_url: str | None = Field(
        description="Where this API serves the take's video, once there is one")


class ExportOut(Schema):
    id: int
    project: int
    kind: str
    state: str
    state_label: str
    shots_done: int
    shots_total: int
    message: str
    size: int | None
    duration: float | None
    created: datetime
    finished: datetime | None
    file_url: str | None = Field(description="Where this API serves the file, once it is done")


class ChainOut(Schema):
    id: int
    state: str
    steps: int
    held_micros: int
    held_usd: str
    takes: list[uuid.UUID]


class BudgetOut(Schema):
    team: int
    limit_micros: int
    limit_usd: str
    committed_micros: int
    committed_usd: str
    spent_micros: int = Field(description="Charged this period, overruns included")
    spent_usd: str
    held_micros: int
    held_usd: str
    remaining_micros: int
    remaining_usd: str
    period_start: datetime
    period_end: datetime


class ProjectOut(Schema):
    id: int
    name: str


# What the operations answer


def _shot_data(shot: Shot) -> dict:
    estimate = shot.estimate()
    data = {name: getattr(shot, name) for name in (
        "title", "prompt", "notes", "mode", "endpoint", "resolution", "aspect_ratio", "duration",
        "generate_audio", "seed", "camera_fixed", "num_frames", "safety_checker", "review",
        "stale_reason", "position", "version")}
    data.update({name: getattr(shot, f"{name}_id") for name in Shot.RELATED})
    return {**data, "id": shot.pk, "project": shot.project_id,
            "references": sorted(asset.pk for asset in shot.references.all()),
            "selected_take": shot.selected_take.uid if shot.selected_take_id else None,
            "estimate_micros": estimate.micros, "estimate_usd": decimal_text(estimate.micros)}


def _shot_detail(shot: Shot) -> dict:
    takes = shot.takes.order_by("-created", "-pk").only("uid", "state", "created")[:50]
    return {**_shot_data(shot), "problems": shot.problems(),
            "takes": [{"uid": t.uid, "state": t.state, "created": t.created} for t in takes]}


def _take_data(take: Generation) -> dict:
    charged = take.actual_micros
    return {
        "video_url": reverse("api:api-take-video", args=[take.uid]) if take.video else None,
        "uid": take.uid, "shot": take.shot_id, "state": take.state,
        "state_label": take.get_state_display(), "progress": take.progress,
        "queue_position": take.queue_position, "error": take.error,
        "chain_run": take.chain_run_id, "created": take.created,
        "submitted_at": take.submitted_at, "finished_at": take.finished_at,
        "provenance": {"provider": take.provider, "endpoint": take.endpoint,
                       "parameters": take.input, "seed": take.seed,
                       "request_id": take.request_id, "simulated": take.simulated,
                       "upstream": take.upstream.uid if take.upstream_id else None},
        "cost": {"estimated_micros": take.estimated_micros,
                 "estimated_usd": decimal_text(take.estimated_micros),
                 "charged_micros": charged,
                 "charged_usd": decimal_text(charged) if charged is not None else None},
    }


def _chain_data(run: ChainRun) -> dict:
    takes = run.takes.order_by("chain_step").values_list("uid", flat=True)
    return {"id": run.pk, "state": run.state, "steps": run.steps,
            "held_micros": run.held_micros, "held_usd": decimal_text(run.held_micros),
            "takes": list(takes)}


def _usd(micros: int) -> str:
    """Exact dollars as a string, "-" before an amount below zero (an overrun's remainder)."""
    return ("-" if micros < 0 else "") + decimal_text(micros)


def _membership(request: HttpRequest) -> Membership:
    return request.membership


def _shot(request: HttpRequest, shot_id: int, *, write: bool = False) -> Shot:
    shots = Shot.objects.select_related("project__team", "selected_take").filter(pk=shot_id)
    return get_in_team(_membership(request), shots, write=write, not_found="No such shot.")


def _project(request: HttpRequest, project_id: int, *, write: bool = False) -> Project:
    projects = Project.objects.select_related("team").filter(pk=project_id)
    return get_in_team(_membership(request), projects, write=write,
                       not_found="No such project.")


def _form_errors(form) -> dict[str, list[str]]:
    return {name: [str(message) for message in messages]
            for name, messages in form.errors.items()}


def _refused_form(form) -> Problem:
    errors = _form_errors(form)
    return Problem(422, _sentence(errors), errors=errors)


def _update(request: HttpRequest, shot: Shot, changes: dict[str, Any], *, version: str) -> Shot:
    """Apply `changes` through the editor's own path: ShotForm validates the shot as it would
    stand, then editing.save_shot merges, records history, honours the approval lock and
    pushes the card. Raises Problem when anything is refused, having written nothing; on a
    conflict (409) the fields that merged cleanly are kept, as in the editor."""
    if "duration" in changes:
        changes["duration"] = str(changes["duration"])
    values = {**shot.field_values(), **changes}
    # On a copy: validating a model form writes the values onto its instance.
    form = ShotForm(ShotForm.data_for(values, version=version), instance=copy.copy(shot))
    if not form.is_valid():
        raise _refused_form(form)
    edit = editing.save_shot(shot=shot, user=request.user, mine=form.values(), version=version)
    if edit.locked:
        raise Problem(409, edit.locked)
    if edit.refused is not None:
        raise _refused_form(edit.refused)
    if edit.conflicts:
        conflicts = [{"field": c.name, "yours": c.mine, "stored": c.theirs,
                      "by": c.by.user.label if c.by and c.by.user else None}
                     for c in edit.conflicts]
        names = ", ".join(c.label.lower() for c in edit.conflicts)
        stored = "" if edit.change is None else " Your other changes were saved."
        raise Problem(409, f"Someone else changed the {names} since your version; the stored "
                           f"value was kept.{stored} Read the shot again and send what you "
                           "want.", conflicts=conflicts)
    return Shot.objects.select_related("project__team", "selected_take").get(pk=shot.pk)


# Operations


@api.get("/projects", response={200: list[ProjectOut], ERRORS: ProblemOut},
         url_name="api-projects", summary="The team's projects")
def projects(request: HttpRequest):
    return list(Project.objects.for_team(_membership(request).team_id).order_by("name", "pk")
                .values("id", "name"))


@api.get("/projects/{project_id}/shots", response={200: list[ShotOut], ERRORS: ProblemOut},
         url_name="api-shots", summary="The project's shots, in board order")
def shots(request: HttpRequest, project_id: Id):
    project = _project(request, project_id)
    board = project.shots.select_related("selected_take").prefetch_related("references")
    return [_shot_data(shot) for shot in board.order_by("position", "pk")]


@api.post("/projects/{project_id}/shots", response={201: ShotDetail, WRITE_ERRORS: ProblemOut},
          url_name="api-shot-create", summary="Add a shot at the end of the board")
def shot_create(request: HttpRequest, project_id: Id, payload: ShotFields):
    project = _project(request, project_id, write=True)
    sent = payload.model_dump(exclude_unset=True)
    form = NewShotForm({"title": sent.get("title", ""), "scene": sent.get("scene") or ""},
                       project=project)
    if not form.is_valid():
        raise _refused_form(form)
    rest = {name: value for name, value in sent.items() if name not in ("title", "scene")}
    with transaction.atomic():
        shot = project.new_shot(title=form.cleaned_data["title"],
                                scene=form.cleaned_data["scene"])
        shot.created_by = request.user
        shot.save(update_fields=["created_by"])
        if rest:
            # Refused: the Problem rolls the new shot back with the rest.
            shot = _update(request, shot, rest, version=shot.version)
        realtime.shot_added(shot)
    return Status(201, _shot_detail(shot))


@api.get("/shots/{shot_id}", response={200: ShotDetail, ERRORS: ProblemOut},
         url_name="api-shot", summary="One shot, what stops it generating, and its takes")
def shot(request: HttpRequest, shot_id: Id):
    return _shot_detail(_shot(request, shot_id))


@api.patch("/shots/{shot_id}", response={200: ShotDetail, WRITE_ERRORS: ProblemOut},
           url_name="api-shot-update", summary="Change a shot as the editor does")
def shot_update(request: HttpRequest, shot_id: Id, payload: ShotPatch):
    shot = _shot(request, shot_id, write=True)
    changes = payload.model_dump(exclude_unset=True)
    version = changes.pop("version", "") or shot.version
    if changes:
        shot = _update(request, shot, changes, version=version)
    return _shot_detail(shot)


def _throttle_takes(request: HttpRequest) -> None:
    # The browser's limit on takes started, shared with it: one person, one count.
    if wait := throttle.retry_after(request, throttle.GENERATION_START):
        raise Problem(429, throttle.refusal("takes started in a minute", wait),
                      retry_after=wait)


REFUSED_STATUS = {"budget": 402, "busy": 409, "forbidden": 403}


def _start[T](request: HttpRequest, shot_id: int, start: Callable[..., T],
              refused: type[generation.GenerationRefused | chainrun.ChainRunRefused]) -> T:
    """A take or a chain, started as the browser starts it; its refusal in plain words."""
    shot = _shot(request, shot_id, write=True)
    _throttle_takes(request)
    try:
        return start(shot=shot, user=request.user)
    except refused as e:
        raise Problem(REFUSED_STATUS.get(e.kind, 422), e.message) from e


@api.post("/shots/{shot_id}/generate", response={202: TakeOut, WRITE_ERRORS: ProblemOut},
          url_name="api-shot-generate", summary="Start a take; its worst case is held at once")
def shot_generate(request: HttpRequest, shot_id: Id):
    take = _start(request, shot_id, generation.start_generation, generation.GenerationRefused)
    return Status(202, _take_data(take))


@api.post("/shots/{shot_id}/chain", response={202: ChainOut, WRITE_ERRORS: ProblemOut},
          url_name="api-shot-chain",
          summary="Render this shot and every shot downstream of it, holding the whole chain")
def shot_chain(request: HttpRequest, shot_id: Id):
    run = _start(request, shot_id, chainrun.start_chain, chainrun.ChainRunRefused)
    return Status(202, _chain_data(run))


@api.get("/chains/{run_id}", response={200: ChainOut, ERRORS: ProblemOut},
         url_name="api-chain", summary="A chain render's state")
def chain(request: HttpRequest, run_id: Id):
    run = get_in_team(_membership(request), ChainRun.objects.filter(pk=run_id),
                      not_found="No such chain render.")
    return _chain_data(run)


@api.get("/takes/{take_uid}", response={200: TakeOut, ERRORS: ProblemOut},
         url_name="api-take", summary="A take's state, progress, provenance and cost")
def take(request: HttpRequest, take_uid: uuid.UUID):
    takes = Generation.objects.select_related("upstream").filter(uid=take_uid)
    return _take_data(get_in_team(_membership(request), takes, not_found="No such take."))


# Files: the same bytes the browser gets, after the same team check; from a bucket, a redirect
# to a short-lived signed URL (the file never passes through the web server).
FILE_RESPONSES = {"responses": {
    200: {"description": "The file (byte ranges answer 206)",
          "content": {"application/octet-stream": {"schema": {"type": "string",
                                                               "format": "binary"}}}},
    302: {"description": "Media on S3: a short-lived signed URL for the file"}}}


@api.get("/takes/{take_uid}/video", response={ERRORS: ProblemOut}, url_name="api-take-video",
         summary="A finished take's video", openapi_extra=FILE_RESPONSES)
def take_video(request: HttpRequest, take_uid: uuid.UUID):
    take = get_in_team(_membership(request), Generation.objects.filter(uid=take_uid),
                       not_found="No such take.")
    if not take.video:
        raise Http404("This take has no video yet.")
    return serve_file(take.video, "video/mp4", request=request)


def _export_data(made: Export) -> dict:
    done = made.state == Export.State.DONE and bool(made.file)
    return {"id": made.pk, "project": made.project_id, "kind": made.kind, "state": made.state,
            "state_label": made.get_state_display(), "shots_done": made.progress_done,
            "shots_total": made.progress_total, "message": made.message, "size": made.size,
            "duration": made.duration, "created": made.created, "finished": made.finished,
            "file_url": reverse("api:api-export-file", args=[made.pk]) if done else None}


def _export(request: HttpRequest, export_id: int) -> Export:
    return get_in_team(_membership(request), Export.objects.filter(pk=export_id),
                       not_found="No such export.")


@api.get("/exports/{export_id}", response={200: ExportOut, ERRORS: ProblemOut},
         url_name="api-export",
         summary="An export's state (the export.ready webhook names it); its file once done")
def export_detail(request: HttpRequest, export_id: Id):
    return _export_data(_export(request, export_id))


@api.get("/exports/{export_id}/file", response={ERRORS: ProblemOut}, url_name="api-export-file",
         summary="A finished export's file: animatic, timeline or bundle",
         openapi_extra=FILE_RESPONSES)
def export_file(request: HttpRequest, export_id: Id):
    made = _export(request, export_id)
    if made.state != Export.State.DONE or not made.file:
        raise Http404("This export has no file to download.")
    return serve_file(made.file, made.content_type, request=request,
                      download_name=made.download_name)


@api.get("/teams/{team_id}/budget", response={200: BudgetOut, ERRORS: ProblemOut},
         url_name="api-budget", summary="The team's money this period")
def budget(request: HttpRequest, team_id: Id):
    if team_id != _membership(request).team_id:
        raise Http404("No such team.")
    team_budget = Budget.for_team(team_id)
    amounts = {"limit": team_budget.limit_micros, "committed": team_budget.committed_micros,
               "spent": team_budget.charged_micros, "held": team_budget.held_micros,
               "remaining": team_budget.remaining_micros}
    return {"team": team_id, "period_start": team_budget.period_start,
            "period_end": team_budget.period_end,
            **{f"{name}_micros": value for name, value in amounts.items()},
            **{f"{name}_usd": _usd(value) for name, value in amounts.items()}}
