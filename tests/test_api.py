"""The JSON API (storyboard/api.py): tokens, every endpoint × role, and parity with the browser.

A token acts with its person's role in its one team, read on every request. Writers (owner,
producer, editor) write; reviewers and viewers read and get 403 on writes, changing nothing;
another team's token finds nothing (404), and no, a wrong or a revoked token gets 401. Every
error is a problem document. Writes go the browser's way, so the budget hold, the validation
messages, the history and the approval lock are the browser's own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import Role
from storyboard.models import (
    ApiToken,
    Budget,
    ChainRun,
    Export,
    Generation,
    LedgerEntry,
    Shot,
    ShotChange,
    secret_digest,
)
from tests.conftest import Cast, client_for
from tests.factories import (
    ChainRunFactory,
    ExportFactory,
    GenerationFactory,
    ProjectFactory,
    ShotFactory,
)
from tests.test_access_sweep import BOARD_MODELS
from tests.test_access_sweep import fingerprint as _fingerprint

pytestmark = pytest.mark.django_db

WRITERS = ("owner", "producer", "editor")
READERS = ("reviewer", "viewer")
LITE_T2V = "fal-ai/bytedance/seedance/v1/lite/text-to-video"


def fingerprint() -> dict:
    """Every board table (tokens change as they are used: last_used)."""
    return _fingerprint(BOARD_MODELS)


def _token(user, team, name="pipeline") -> str:
    return ApiToken.issue(user=user, team=team, name=name)[1]


def call(secret: str | None, method: str, url: str, body: dict | None = None):
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    client = Client()
    data = json.dumps(body) if body is not None else None
    kwargs = {"content_type": "application/json"} if data is not None else {}
    return getattr(client, method.lower())(url, data, headers=headers, **kwargs)


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["title"]
    assert body["detail"]
    return body


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: Callable[[Cast], str]
    body: dict | None = None

    def __str__(self) -> str:
        return f"{self.method} {self.path.__doc__}"


def _ep(method: str, doc: str, path: Callable[[Cast], str], body: dict | None = None):
    path.__doc__ = doc
    return Endpoint(method, path, body)


def _take(cast: Cast) -> Generation:
    return Generation.objects.filter(shot=cast.shot).first() or GenerationFactory(shot=cast.shot)


def _export(cast: Cast) -> Export:
    return Export.objects.first() or ExportFactory(project=cast.project, created_by=cast.editor)


def _run(cast: Cast) -> ChainRun:
    return ChainRun.objects.first() or ChainRunFactory(root=cast.shot, started_by=cast.editor)


READS = [
    _ep("GET", "/projects/{id}/shots", lambda c: f"/api/v1/projects/{c.project.pk}/shots"),
    _ep("GET", "/shots/{id}", lambda c: f"/api/v1/shots/{c.shot.pk}"),
    _ep("GET", "/takes/{uid}", lambda c: f"/api/v1/takes/{_take(c).uid}"),
    _ep("GET", "/chains/{id}", lambda c: f"/api/v1/chains/{_run(c).pk}"),
    _ep("GET", "/teams/{id}/budget", lambda c: f"/api/v1/teams/{c.team.pk}/budget"),
    _ep("GET", "/exports/{id}", lambda c: f"/api/v1/exports/{_export(c).pk}"),
]
# Files: the bytes, not JSON (errors are still problem documents).
FILES = [
    _ep("GET", "/takes/{uid}/video", lambda c: f"/api/v1/takes/{_take(c).uid}/video"),
    _ep("GET", "/exports/{id}/file", lambda c: f"/api/v1/exports/{_export(c).pk}/file"),
]
WRITES = [
    _ep("POST", "/projects/{id}/shots", lambda c: f"/api/v1/projects/{c.project.pk}/shots",
        {"title": "From the pipeline", "prompt": "A gull lands on the rail."}),
    _ep("PATCH", "/shots/{id}", lambda c: f"/api/v1/shots/{c.shot.pk}",
        {"title": "Renamed by the pipeline"}),
    _ep("POST", "/shots/{id}/generate", lambda c: f"/api/v1/shots/{c.shot.pk}/generate"),
    _ep("POST", "/shots/{id}/chain", lambda c: f"/api/v1/shots/{c.shot.pk}/chain"),
]
EVERY = READS + WRITES + FILES + [_ep("GET", "/projects", lambda c: "/api/v1/projects")]


# Tokens


@pytest.mark.parametrize("endpoint", EVERY, ids=str)
@pytest.mark.parametrize("credential", ["none", "unknown", "revoked", "not a bearer"])
def test_it_refuses_a_missing_wrong_or_revoked_token(cast, endpoint, credential):
    url = endpoint.path(cast)
    secret = {"none": None, "unknown": "sb_" + "x" * 43, "not a bearer": None,
              "revoked": _token(cast.owner, cast.team)}[credential]
    if credential == "revoked":
        ApiToken.objects.get().revoke()
    before = fingerprint()
    if credential == "not a bearer":
        response = Client().generic(endpoint.method, url, headers={"Authorization": "Basic eA=="})
    else:
        response = call(secret, endpoint.method, url, endpoint.body)
    assert_problem(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert fingerprint() == before


def test_a_browser_session_is_no_credential(cast):
    # Cookies would make every API write a cross-site request forgery target.
    response = client_for(cast.owner).get(f"/api/v1/shots/{cast.shot.pk}")
    assert_problem(response, 401)


def test_a_removed_members_token_stops_working(cast):
    secret = _token(cast.editor, cast.team)
    assert call(secret, "GET", f"/api/v1/shots/{cast.shot.pk}").status_code == 200
    cast.team.memberships.filter(user=cast.editor).delete()
    body = assert_problem(call(secret, "GET", f"/api/v1/shots/{cast.shot.pk}"), 401)
    assert "not in Alpha any more" in body["detail"]


def test_a_changed_role_applies_at_once(cast):
    secret = _token(cast.editor, cast.team)
    url = f"/api/v1/shots/{cast.shot.pk}"
    assert call(secret, "PATCH", url, {"title": "One"}).status_code == 200
    cast.team.add_member(cast.editor, Role.VIEWER)
    assert_problem(call(secret, "PATCH", url, {"title": "Two"}), 403)
    assert Shot.objects.get(pk=cast.shot.pk).title == "One"


def test_a_token_reaches_only_its_own_team_of_several(cast):
    # Charlie's token for Bravo, though Charlie also joins Alpha: Alpha stays out of reach.
    cast.team.add_member(cast.outsider, Role.OWNER)
    secret = _token(cast.outsider, cast.other_team)
    assert_problem(call(secret, "GET", f"/api/v1/shots/{cast.shot.pk}"), 404)
    assert call(_token(cast.outsider, cast.team), "GET",
                f"/api/v1/shots/{cast.shot.pk}").status_code == 200


def test_the_token_page_shows_the_secret_once_and_stores_its_hash(cast):
    client = client_for(cast.editor)
    response = client.post(reverse("accounts:api-token-create", args=[cast.team.pk]),
                           {"name": "render farm"})
    assert response.status_code == 200
    secret = response.context["new_secret"]
    assert secret.startswith("sb_")
    assert secret in response.content.decode()
    token = ApiToken.objects.get()
    assert (token.user, token.team, token.name) == (cast.editor, cast.team, "render farm")
    assert token.digest == secret_digest(secret)
    assert secret not in repr(
        list(ApiToken.objects.values_list()))
    page = client.get(reverse("accounts:teams")).content.decode()
    assert token.prefix in page
    assert secret not in page
    assert call(secret, "GET", "/api/v1/projects").status_code == 200


def test_the_token_page_revokes_a_token(cast):
    secret = _token(cast.editor, cast.team)
    token = ApiToken.objects.get()
    response = client_for(cast.editor).post(
        reverse("accounts:api-token-revoke", args=[cast.team.pk, token.pk]))
    assert response.status_code == 302
    assert_problem(call(secret, "GET", "/api/v1/projects"), 401)


def test_only_its_person_or_an_owner_revokes_a_token(cast):
    _token(cast.editor, cast.team)
    token = ApiToken.objects.get()
    url = reverse("accounts:api-token-revoke", args=[cast.team.pk, token.pk])
    assert client_for(cast.producer).post(url).status_code == 404
    assert client_for(cast.outsider).post(url).status_code == 404
    assert ApiToken.objects.live().count() == 1
    assert client_for(cast.owner).post(url).status_code == 302
    assert ApiToken.objects.live().count() == 0


def test_the_token_page_refuses_a_team_one_is_not_in(cast):
    response = client_for(cast.outsider).post(
        reverse("accounts:api-token-create", args=[cast.team.pk]), {"name": "sneaky"})
    assert response.status_code == 404
    assert not ApiToken.objects.exists()


# Every endpoint × role


@pytest.mark.parametrize("endpoint", READS, ids=str)
@pytest.mark.parametrize("role", WRITERS + READERS)
def test_every_role_reads(cast, endpoint, role):
    response = call(_token(cast.member(role), cast.team), "GET", endpoint.path(cast))
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json; charset=utf-8"


@pytest.mark.parametrize("endpoint", WRITES, ids=str)
@pytest.mark.parametrize("role", WRITERS)
def test_writers_write(cast, endpoint, role, django_capture_on_commit_callbacks):
    before = fingerprint()
    with django_capture_on_commit_callbacks(execute=False):
        response = call(_token(cast.member(role), cast.team), endpoint.method,
                        endpoint.path(cast), endpoint.body)
    assert 200 <= response.status_code < 300, response.content
    assert fingerprint() != before


@pytest.mark.parametrize("endpoint", WRITES, ids=str)
@pytest.mark.parametrize("role", READERS)
def test_read_only_roles_are_refused_writes(cast, endpoint, role):
    url = endpoint.path(cast)
    before = fingerprint()
    response = call(_token(cast.member(role), cast.team), endpoint.method, url, endpoint.body)
    body = assert_problem(response, 403)
    assert "role" in body["detail"]
    assert fingerprint() == before


@pytest.mark.parametrize("endpoint", FILES, ids=str)
@pytest.mark.parametrize("role", WRITERS + READERS)
def test_every_role_downloads_files(cast, endpoint, role):
    response = call(_token(cast.member(role), cast.team), "GET", endpoint.path(cast))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"\x00\x00\x00\x18ftypmp42"


@pytest.mark.parametrize("endpoint", READS + WRITES + FILES, ids=str)
def test_another_teams_token_sees_nothing(cast, endpoint):
    url = endpoint.path(cast)
    before = fingerprint()
    response = call(_token(cast.outsider, cast.other_team), endpoint.method, url, endpoint.body)
    assert_problem(response, 404)
    assert fingerprint() == before


def test_another_teams_token_lists_only_its_own_projects(cast):
    ProjectFactory(team=cast.other_team, name="Bravo's")
    response = call(_token(cast.outsider, cast.other_team), "GET", "/api/v1/projects")
    assert [p["name"] for p in response.json()] == ["Bravo's"]


# Shots


def test_it_lists_the_boards_shots_in_order(cast):
    second = ShotFactory(project=cast.project, title="Second")
    response = call(_token(cast.viewer, cast.team), "GET",
                    f"/api/v1/projects/{cast.project.pk}/shots")
    assert [s["id"] for s in response.json()] == [cast.shot.pk, second.pk]
    assert response.json()[0]["title"] == "Opening"


def test_it_updates_a_shot_through_the_editors_path(cast):
    secret = _token(cast.editor, cast.team)
    response = call(secret, "PATCH", f"/api/v1/shots/{cast.shot.pk}",
                    {"prompt": "Gulls over the harbour.", "resolution": "480p"})
    assert response.status_code == 200, response.content
    shot = Shot.objects.get(pk=cast.shot.pk)
    assert (shot.prompt, shot.resolution, shot.title) == (
        "Gulls over the harbour.", "480p", "Opening")
    change = ShotChange.objects.get(shot=shot)
    assert change.user == cast.editor
    assert set(change.changes) == {"prompt", "resolution"}
    assert response.json()["version"] == shot.version


def test_it_refuses_an_edit_with_the_browsers_messages(cast):
    bad = {"title": "x" * 130, "resolution": "4k"}
    response = call(_token(cast.editor, cast.team), "PATCH", f"/api/v1/shots/{cast.shot.pk}",
                    bad)
    body = assert_problem(response, 422)
    # The same submission in the browser's editor.
    page = client_for(cast.editor).post(reverse("sb:shot", args=[cast.shot.pk]), {
        **{k: v for k, v in Shot.objects.get(pk=cast.shot.pk).field_values().items()
           if v is not None and k != "references"}, **bad})
    browser = {name: list(errors) for name, errors in page.context["form"].errors.items()}
    assert body["errors"] == browser
    assert set(browser) == {"title", "resolution"}
    assert Shot.objects.get(pk=cast.shot.pk).title == "Opening"


def test_it_refuses_malformed_json_types_as_a_problem(cast):
    response = call(_token(cast.editor, cast.team), "PATCH", f"/api/v1/shots/{cast.shot.pk}",
                    {"seed": "many", "references": "all"})
    body = assert_problem(response, 422)
    assert set(body["errors"]) == {"seed", "references"}


@pytest.mark.parametrize("field", ["scene", "start_frame", "end_frame", "continues_from",
                                   "references"])
def test_an_id_too_large_for_the_database_is_refused_not_a_crash(cast, field):
    value = [2**63] if field == "references" else 2**63
    response = call(_token(cast.editor, cast.team), "PATCH", f"/api/v1/shots/{cast.shot.pk}",
                    {field: value})
    assert list(assert_problem(response, 422)["errors"]) == [
        f"{field}.0" if field == "references" else field]


def test_a_stale_version_is_a_conflict_not_an_overwrite(cast):
    secret = _token(cast.editor, cast.team)
    version = call(secret, "GET", f"/api/v1/shots/{cast.shot.pk}").json()["version"]
    cast.shot.change(values={"title": "Someone else's"}, user=cast.producer)
    response = call(secret, "PATCH", f"/api/v1/shots/{cast.shot.pk}",
                    {"title": "Mine", "version": version})
    body = assert_problem(response, 409)
    assert body["conflicts"][0]["field"] == "title"
    assert Shot.objects.get(pk=cast.shot.pk).title == "Someone else's"


def test_a_conflict_keeps_the_fields_that_merged_as_the_editor_does(cast):
    secret = _token(cast.editor, cast.team)
    version = call(secret, "GET", f"/api/v1/shots/{cast.shot.pk}").json()["version"]
    cast.shot.change(values={"title": "Someone else's"}, user=cast.producer)
    response = call(secret, "PATCH", f"/api/v1/shots/{cast.shot.pk}",
                    {"title": "Mine", "prompt": "Gulls at dusk.", "version": version})
    body = assert_problem(response, 409)
    assert "Your other changes were saved." in body["detail"]
    shot = Shot.objects.get(pk=cast.shot.pk)
    assert (shot.title, shot.prompt) == ("Someone else's", "Gulls at dusk.")


def test_an_approved_shot_keeps_its_lock(cast):
    take = GenerationFactory(shot=cast.shot)
    Shot.objects.filter(pk=cast.shot.pk).update(selected_take=take, review_take=take,
                                                review=Shot.Review.APPROVED)
    response = call(_token(cast.editor, cast.team), "PATCH", f"/api/v1/shots/{cast.shot.pk}",
                    {"prompt": "Something else"})
    body = assert_problem(response, 409)
    assert "is approved" in body["detail"]
    assert not ShotChange.objects.exists()


def test_it_creates_a_shot_with_its_fields(cast):
    response = call(_token(cast.editor, cast.team), "POST",
                    f"/api/v1/projects/{cast.project.pk}/shots",
                    {"title": "Gull", "prompt": "A gull lands.", "duration": 4})
    assert response.status_code == 201, response.content
    shot = Shot.objects.get(pk=response.json()["id"])
    assert (shot.title, shot.prompt, shot.duration, shot.created_by) == (
        "Gull", "A gull lands.", "4", cast.editor)
    assert list(cast.project.shots.order_by("position", "pk"))[-1] == shot


def test_a_refused_new_shot_leaves_no_shot_behind(cast):
    before = Shot.objects.count()
    response = call(_token(cast.editor, cast.team), "POST",
                    f"/api/v1/projects/{cast.project.pk}/shots",
                    {"title": "Gull", "resolution": "4k"})
    assert "resolution" in assert_problem(response, 422)["errors"]
    assert Shot.objects.count() == before


def test_a_new_shot_refuses_another_boards_scene(cast):
    from tests.factories import SceneFactory

    elsewhere = SceneFactory(project=ProjectFactory(team=cast.team))
    response = call(_token(cast.editor, cast.team), "POST",
                    f"/api/v1/projects/{cast.project.pk}/shots", {"scene": elsewhere.pk})
    assert "scene" in assert_problem(response, 422)["errors"]


# Generation, chains, takes and the budget


def _quick(cast: Cast, **kwargs) -> Shot:
    defaults = {"mode": "text", "endpoint": LITE_T2V, "resolution": "480p",
                "aspect_ratio": "16:9", "duration": "2", "generate_audio": False,
                "prompt": "Slow push in on the lighthouse."}
    return ShotFactory(project=cast.project, **{**defaults, **kwargs})


def _ledger(take: Generation) -> list[tuple]:
    return list(LedgerEntry.objects.filter(take=take).values_list("kind", "amount_micros",
                                                                  "user_id", "simulated"))


def test_generation_holds_the_budget_exactly_as_the_browser_does(cast):
    by_api, by_browser = _quick(cast), _quick(cast)
    response = call(_token(cast.editor, cast.team), "POST",
                    f"/api/v1/shots/{by_api.pk}/generate")
    assert response.status_code == 202, response.content
    held_after_api = Budget.objects.get(team=cast.team).held_micros
    client_for(cast.editor).post(reverse("sb:shot-generate", args=[by_browser.pk]))
    api_take = Generation.objects.get(shot=by_api)
    browser_take = Generation.objects.get(shot=by_browser)
    assert _ledger(api_take) == _ledger(browser_take) != []
    assert (api_take.state, api_take.estimated_micros, api_take.input) == (
        browser_take.state, browser_take.estimated_micros, browser_take.input)
    assert Budget.objects.get(team=cast.team).held_micros == 2 * held_after_api
    assert response.json()["uid"] == str(api_take.uid)
    assert response.json()["cost"]["estimated_micros"] == api_take.estimated_micros


def test_generation_over_budget_is_402_with_the_browsers_words(cast):
    Budget.objects.filter(team=cast.team).update(limit_micros=1)
    shot = _quick(cast)
    response = call(_token(cast.editor, cast.team), "POST", f"/api/v1/shots/{shot.pk}/generate")
    body = assert_problem(response, 402)
    browser = client_for(cast.editor).post(reverse("sb:shot-generate", args=[shot.pk]))
    assert browser.status_code == 422
    assert body["detail"] == browser.content.decode()
    assert not Generation.objects.exists()
    assert Budget.objects.get(team=cast.team).held_micros == 0


def test_a_shot_that_cannot_generate_is_422_with_the_browsers_words(cast):
    shot = _quick(cast, prompt=" ")
    body = assert_problem(call(_token(cast.editor, cast.team), "POST",
                               f"/api/v1/shots/{shot.pk}/generate"), 422)
    browser = client_for(cast.editor).post(reverse("sb:shot-generate", args=[shot.pk]))
    assert body["detail"] == browser.content.decode()
    assert "Write a prompt" in body["detail"]


def test_takes_started_share_the_browsers_limit(cast, settings):
    settings.GENERATIONS_PER_MINUTE = 1
    shot = _quick(cast)
    client_for(cast.editor).post(reverse("sb:shot-generate", args=[shot.pk]))
    response = call(_token(cast.editor, cast.team), "POST", f"/api/v1/shots/{shot.pk}/generate")
    body = assert_problem(response, 429)
    assert body["detail"].startswith("Too many takes started in a minute.")
    assert int(response["Retry-After"]) >= 1
    assert Generation.objects.count() == 1


def test_a_chain_starts_once_and_then_is_busy(cast):
    upstream = _quick(cast)
    _quick(cast, continues_from=upstream, mode="image",
           endpoint="fal-ai/bytedance/seedance/v1/lite/image-to-video")
    secret = _token(cast.editor, cast.team)
    response = call(secret, "POST", f"/api/v1/shots/{upstream.pk}/chain")
    assert response.status_code == 202, response.content
    run = ChainRun.objects.get()
    assert response.json()["steps"] == 2 == len(response.json()["takes"])
    assert response.json()["held_micros"] == run.held_micros == Budget.objects.get(
        team=cast.team).held_micros
    again = call(secret, "POST", f"/api/v1/shots/{upstream.pk}/chain")
    assert "already started a chain render" in assert_problem(again, 409)["detail"]
    assert ChainRun.objects.count() == 1
    assert call(secret, "GET", f"/api/v1/chains/{run.pk}").json()["state"] == "running"


def test_a_take_shows_its_status_provenance_and_cost(cast):
    take = GenerationFactory(shot=cast.shot, request_id="req-42", seed=7,
                             input={"prompt": "Harbour", "seed": 7}, estimated_micros=302_400,
                             actual_micros=250_000)
    body = call(_token(cast.viewer, cast.team), "GET", f"/api/v1/takes/{take.uid}").json()
    assert body["state"] == take.state
    assert body["provenance"] | {} == {
        "provider": take.provider, "endpoint": take.endpoint,
        "parameters": {"prompt": "Harbour", "seed": 7}, "seed": 7, "request_id": "req-42",
        "simulated": take.simulated, "upstream": None}
    assert body["cost"] == {"estimated_micros": 302_400, "estimated_usd": "0.3024",
                            "charged_micros": 250_000, "charged_usd": "0.25"}


def test_the_budget_reads_as_the_budget_page_counts(cast):
    Budget.objects.filter(team=cast.team).update(limit_micros=100_000_000, held_micros=2_500_000,
                                                 spent_micros=1_000_000)
    body = call(_token(cast.viewer, cast.team), "GET",
                f"/api/v1/teams/{cast.team.pk}/budget").json()
    assert (body["limit_micros"], body["held_micros"], body["spent_micros"],
            body["committed_micros"], body["remaining_micros"]) == (
        100_000_000, 2_500_000, 1_000_000, 3_500_000, 96_500_000)
    assert (body["limit_usd"], body["committed_usd"]) == ("100.00", "3.50")


# Limits and the shape of every error


def test_each_token_has_its_own_rate_limit(cast, settings):
    settings.API_REQUESTS_PER_MINUTE = 2
    first, second = _token(cast.viewer, cast.team), _token(cast.viewer, cast.team, "other")
    url = f"/api/v1/shots/{cast.shot.pk}"
    assert [call(first, "GET", url).status_code for _ in range(2)] == [200, 200]
    refused = call(first, "GET", url)
    body = assert_problem(refused, 429)
    assert body["detail"].startswith("Too many requests with this API token.")
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert call(second, "GET", url).status_code == 200


def test_unknown_addresses_and_methods_are_problems_too(cast):
    secret = _token(cast.viewer, cast.team)
    assert_problem(call(secret, "GET", "/api/v1/nothing/here"), 404)
    assert_problem(call(secret, "GET", "/api/v2/projects"), 404)
    response = call(secret, "DELETE", f"/api/v1/shots/{cast.shot.pk}")
    assert_problem(response, 405)
    assert "GET" in response["Allow"]


def test_malformed_ids_and_bodies_are_problems(cast):
    secret = _token(cast.editor, cast.team)
    assert_problem(call(secret, "GET", "/api/v1/shots/abc"), 422)
    assert_problem(call(secret, "GET", f"/api/v1/shots/{2**63}"), 422)
    assert_problem(call(secret, "GET", "/api/v1/takes/not-a-uuid"), 422)
    response = Client().patch(f"/api/v1/shots/{cast.shot.pk}", "{not json",
                              content_type="application/json",
                              headers={"Authorization": f"Bearer {secret}"})
    assert response["Content-Type"] == "application/problem+json"
    assert response.status_code in (400, 422)


def test_a_crash_is_a_problem_and_logged(cast, monkeypatch, caplog):
    from storyboard import api

    def boom(shot):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(api, "_shot_detail", boom)
    body = assert_problem(call(_token(cast.viewer, cast.team), "GET",
                               f"/api/v1/shots/{cast.shot.pk}"), 500)
    assert "disk on fire" not in body["detail"]
    assert "disk on fire" in caplog.text


def test_the_schema_and_docs_load_nothing_from_elsewhere(cast):
    schema = Client().get("/api/v1/openapi.json")
    assert schema.status_code == 200
    assert "/api/v1/shots/{shot_id}/generate" in schema.json()["paths"]
    docs = Client().get("/api/v1/docs").content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in docs
    assert "cdn" not in docs.lower()
    assert "https://" not in docs


def test_a_take_and_an_export_name_their_files_once_there_are_files(cast):
    secret = _token(cast.viewer, cast.team)
    take = GenerationFactory(shot=cast.shot)
    body = call(secret, "GET", f"/api/v1/takes/{take.uid}").json()
    assert body["video_url"] == f"/api/v1/takes/{take.uid}/video"
    made = ExportFactory(project=cast.project, kind=Export.Kind.EDL)
    body = call(secret, "GET", f"/api/v1/exports/{made.pk}").json()
    assert (body["state"], body["kind"], body["file_url"]) == (
        "done", "edl", f"/api/v1/exports/{made.pk}/file")
    response = call(secret, "GET", body["file_url"])
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="{made.download_name}"'


def test_a_take_or_export_without_a_file_is_a_plain_404(cast):
    secret = _token(cast.viewer, cast.team)
    running = GenerationFactory(shot=cast.shot, state=Generation.State.IN_PROGRESS, video="")
    assert call(secret, "GET", f"/api/v1/takes/{running.uid}").json()["video_url"] is None
    body = assert_problem(call(secret, "GET", f"/api/v1/takes/{running.uid}/video"), 404)
    assert body["detail"] == "This take has no video yet."
    queued = ExportFactory(project=cast.project, state=Export.State.RUNNING, file="", size=None)
    assert call(secret, "GET", f"/api/v1/exports/{queued.pk}").json()["file_url"] is None
    body = assert_problem(call(secret, "GET", f"/api/v1/exports/{queued.pk}/file"), 404)
    assert body["detail"] == "This export has no file to download."
