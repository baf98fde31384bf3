"""A generated sweep over every URL the project serves: nobody outside team Alpha gets in.

The URL conf is walked at collection time, so a new view is swept the moment it is routed. Each
URL is built with Alpha's ids (see KWARG_VALUES) and requested with GET and with a POST whose
payload would succeed for an owner (the positive control at the bottom proves that). For
anonymous users, for Charlie (who owns another team) and for Alpha's read-only roles, the
response must not be a 2xx and the database and MEDIA_ROOT must be exactly as before, unless an
allow-list below says otherwise, with the reason.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from accounts.models import Invitation, Membership, Role, Team, User
from storyboard import imports, sharing
from storyboard.catalogue import DEFAULT_ENDPOINT, image_endpoint_for
from storyboard.generation import sign_input, webhook_token
from storyboard.models import (
    SUBSCRIBABLE_EVENTS,
    ApiToken,
    Asset,
    Budget,
    ChainRun,
    Comment,
    Export,
    Generation,
    LedgerEntry,
    Notification,
    Project,
    ReviewDecision,
    ReviewLink,
    ReviewSession,
    Scene,
    Seam,
    SeamThresholds,
    Shot,
    ShotChange,
    WebhookDelivery,
    WebhookEndpoint,
    WorkerBeat,
)
from tests.conftest import Cast, client_for
from tests.factories import (
    AssetFactory,
    ChainRunFactory,
    ExportFactory,
    GenerationFactory,
    InvitationFactory,
    SceneFactory,
    SeamFactory,
    ShotFactory,
    png_bytes,
)

pytestmark = pytest.mark.django_db

METHODS = ("GET", "POST")
SKIPPED_NAMESPACES = {"admin"}  # Django's own admin has its own staff checks.
SKIPPED_VIEW_MODULES = {"django.views.static", "django.contrib.staticfiles.views"}


# The URL conf


@dataclass(frozen=True)
class Route:
    name: str | None
    route: str
    kwargs: tuple[str, ...]

    def __str__(self) -> str:
        return self.name or self.route


def _walk(patterns, namespace: str = "", prefix: str = "",
          kwargs: tuple[str, ...] = ()) -> Iterator[Route]:
    for entry in patterns:
        here = tuple(entry.pattern.regex.groupindex)
        if isinstance(entry, URLResolver):
            if entry.namespace in SKIPPED_NAMESPACES:
                continue
            inner = ":".join(part for part in (namespace, entry.namespace) if part)
            yield from _walk(entry.url_patterns, inner, prefix + str(entry.pattern),
                             kwargs + here)
        elif isinstance(entry, URLPattern):
            if getattr(entry.callback, "__module__", "") in SKIPPED_VIEW_MODULES:
                continue
            name = f"{namespace}:{entry.name}" if namespace and entry.name else entry.name
            yield Route(name, prefix + str(entry.pattern), kwargs + here)


def _is_api(route: Route) -> bool:
    return (route.name or "").startswith("api:") or route.name == "api-not-found"


# The JSON API (storyboard/api.py) takes a token, never a session: it is swept apart below
# (test_the_api_takes_no_session), and by token and role in tests/test_api.py.
ALL_ROUTES = list(_walk(get_resolver().url_patterns))
ROUTES = [route for route in ALL_ROUTES if not _is_api(route)]
API_ROUTES = [route for route in ALL_ROUTES if _is_api(route)]
ROUTE_NAMES = {route.name for route in ROUTES}


# How to fill in each URL kwarg with something of team Alpha's. A kwarg missing here fails the
# sweep: add it, so that a new URL cannot go unswept.


def _open_invitation(cast: Cast) -> Invitation:
    return InvitationFactory(team=cast.team, created_by=cast.owner, role=Role.EDITOR)


def _review_link(cast: Cast) -> tuple[ReviewLink, str]:
    """A live link to Alpha's whole cut that allows decisions: the most a guest can get."""
    return sharing.create_link(project=cast.project, user=cast.producer, allow_decisions=True)


KWARG_VALUES: dict[str, Callable[[Cast], object]] = {
    "team_id": lambda cast: cast.team.pk,
    "project_id": lambda cast: cast.project.pk,
    "shot_id": lambda cast: cast.shot.pk,
    "scene_id": lambda cast: SceneFactory(project=cast.project, title="Harbour").pk,
    "asset_uid": lambda cast: AssetFactory(project=cast.project).uid,
    # The editor's membership, never the caller's own: anyone may leave a team themselves.
    "membership_id": lambda cast: cast.team.memberships.get(user=cast.editor).pk,
    "invitation_id": lambda cast: _open_invitation(cast).pk,
    "token": lambda cast: _open_invitation(cast).token,
    "variant": lambda cast: "file",
    "take_uid": lambda cast: GenerationFactory(shot=cast.shot).uid,
    "provider_name": lambda cast: "local",
    # The right token for SWEPT_TAKE (see ROUTE_KWARGS), so the sweep reaches past it.
    "webhook_token": lambda cast: webhook_token(provider="local", take_uid=str(SWEPT_TAKE)),
    "signed": lambda cast: sign_input(AssetFactory(project=cast.project).file.name),
    "kind": lambda cast: "video",
    "seam_id": lambda cast: SeamFactory(upstream=GenerationFactory(shot=cast.shot)).pk,
    "side": lambda cast: "before",
    # The owner's: nobody else's notifications exist for them.
    "notification_id": lambda cast: Notification.objects.create(
        user=cast.owner, kind="mention", text="x", url=f"/shots/{cast.shot.pk}/").pk,
    "comment_id": lambda cast: Comment.objects.create(
        take=GenerationFactory(shot=cast.shot), user=cast.reviewer, body="Too dark").pk,
    # A chain render under way from Alpha's shot (only a running chain can be canceled).
    "run_id": lambda cast: ChainRunFactory(root=cast.shot, started_by=cast.editor).pk,
    # A finished export the editor asked for, with its file.
    "export_id": lambda cast: ExportFactory(project=cast.project, created_by=cast.editor).pk,
    # A live review session the owner started and presents.
    "session_id": lambda cast: ReviewSession.objects.create(
        project=cast.project, title="Sweep", started_by=cast.owner, presenter=cast.owner,
        shot_ids=[cast.shot.pk]).pk,
    "link_id": lambda cast: _review_link(cast)[0].pk,
    # A live link's token: the guest URLs answer whoever holds it (see GUEST_URLS).
    "link_token": lambda cast: _review_link(cast)[1],
    # The owner's own token: anyone revokes their own (owners also anyone's in the team).
    "api_token_id": lambda cast: ApiToken.issue(user=cast.owner, team=cast.team,
                                                name="sweep")[0].pk,
    # An outgoing webhook of Alpha's that hears every event, and a failed delivery to it.
    "endpoint_id": lambda cast: _webhook_endpoint(cast).pk,
    "delivery_id": lambda cast: WebhookDelivery.objects.create(
        endpoint=_webhook_endpoint(cast), event="ping", state=WebhookDelivery.State.FAILED,
        attempts=6, payload={"type": "ping"}).pk,
}
# Where one URL needs a different object than the kwarg's default, to be meaningful at all.
ROUTE_KWARGS: dict[str, dict[str, Callable[[Cast], object]]] = {
    # Only an unfinished take can be canceled.
    "sb:take-cancel": {"take_uid": lambda cast: GenerationFactory(
        shot=cast.shot, state=Generation.State.PENDING, progress=0).uid},
    # Only a take whose charge is unknown can be settled by hand, or its video fetched again.
    "sb:take-settle": {"take_uid": lambda cast: GenerationFactory(
        shot=cast.shot, state=Generation.State.OUTCOME_UNKNOWN, progress=0).uid},
    "sb:take-refetch": {"take_uid": lambda cast: GenerationFactory(
        shot=cast.shot, state=Generation.State.UNFETCHED, progress=0).uid},
    # Only a running take its provider could not stop can be discarded.
    "sb:take-discard": {"take_uid": lambda cast: GenerationFactory(
        shot=cast.shot, state=Generation.State.IN_PROGRESS, progress=0,
        cancel_refused=True).uid},
    # A webhook's token is made for one take: this one.
    "sb:webhook": {"take_uid": lambda cast: GenerationFactory(shot=cast.shot,
                                                              uid=SWEPT_TAKE).uid},
    # Only a shot with a change in its history has something to undo.
    "sb:shot-undo": {"shot_id": lambda cast: _shot_with_a_change(cast).pk},
    # Only a stale shot can be kept or re-chained; only a shot after another can continue it.
    "sb:shot-keep": {"shot_id": lambda cast: _stale_shot(cast).pk},
    "sb:shot-rechain": {"shot_id": lambda cast: _stale_shot(cast).pk},
    "sb:shot-continue-previous": {"shot_id": lambda cast: ShotFactory(
        project=cast.project, title="After the opening").pk},
    # Only a shot with a finished take on the board can be submitted for review, and only one
    # in review can be decided on.
    "sb:shot-review": {"shot_id": lambda cast: _shot_with_a_take(cast).pk},
    "sb:shot-decide": {"shot_id": lambda cast: _shot_in_review(cast).pk},
    "sb:shot-final": {"shot_id": lambda cast: _shot_approved(cast).pk},
    # Only a cut with a take can be exported, and only a running export cancelled.
    "sb:export": {"project_id": lambda cast: _shot_with_a_take(cast).project_id},
    "sb:export-cancel": {"export_id": lambda cast: ExportFactory(
        project=cast.project, created_by=cast.editor, state=Export.State.RUNNING).pk},
}


IMAGE_ENDPOINT = image_endpoint_for(DEFAULT_ENDPOINT).id
SWEPT_TAKE = uuid.UUID("5eed0000-0000-4000-8000-000000000001")


def _webhook_endpoint(cast: Cast) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(
        team=cast.team, url="https://93.184.215.14/sweep", created_by=cast.owner,
        events=[event.value for event in SUBSCRIBABLE_EVENTS])


def _stale_shot(cast: Cast) -> Shot:
    """A shot continuing cast.shot whose upstream then chose another take."""
    from storyboard import chains

    first = GenerationFactory(shot=cast.shot)
    chains.choose_take(shot=cast.shot, take=first, user=None)
    below = ShotFactory(project=cast.project, title="Continues", continues_from=cast.shot,
                        mode="image", endpoint=IMAGE_ENDPOINT)
    chains.choose_take(shot=below, take=GenerationFactory(shot=below, upstream=first), user=None)
    chains.choose_take(shot=cast.shot, take=GenerationFactory(shot=cast.shot), user=None)
    return below


def _shot_with_a_change(cast: Cast) -> Shot:
    cast.shot.change(values={"title": "Before the undo"}, user=cast.editor)
    return cast.shot


def _shot_with_a_take(cast: Cast) -> Shot:
    Shot.objects.filter(pk=cast.shot.pk).update(
        selected_take=GenerationFactory(shot=cast.shot))
    return cast.shot


def _shot_in_review(cast: Cast) -> Shot:
    take = GenerationFactory(shot=cast.shot)
    Shot.objects.filter(pk=cast.shot.pk).update(selected_take=take, review_take=take,
                                                review=Shot.Review.IN_REVIEW)
    return cast.shot


def _shot_approved(cast: Cast) -> Shot:
    take = GenerationFactory(shot=cast.shot)
    Shot.objects.filter(pk=cast.shot.pk).update(selected_take=take, review_take=take,
                                                review=Shot.Review.APPROVED)
    return cast.shot


def build_url(route: Route, cast: Cast) -> str:
    assert route.name, (
        f"The URL pattern {route.route!r} has no name; name it so the access sweep "
        "(tests/test_access_sweep.py) and its allow-lists can refer to it."
    )
    missing = [kwarg for kwarg in route.kwargs if kwarg not in KWARG_VALUES]
    assert not missing, (
        f"{route.name} ({route.route}) takes {', '.join(missing)}, which the access sweep "
        "cannot fill in. Add an entry to KWARG_VALUES in tests/test_access_sweep.py that "
        "returns one of team Alpha's objects, so this URL is checked against outsiders."
    )
    factories = {**KWARG_VALUES, **ROUTE_KWARGS.get(route.name, {})}
    return reverse(route.name, kwargs={kwarg: factories[kwarg](cast) for kwarg in route.kwargs})


def _import_plan(project: Project | None, user: User) -> str:
    """A previewed one-shot shot list, sealed for the owner (imports are bound to a person)."""
    if project is None:
        return ""
    source = imports.Source(kind=imports.CSV, name="sweep.csv", text=IMPORT_CSV.decode())
    return imports.seal(project=project, user=user,
                        plan=imports.plan(project=project, source=source))


IMPORT_CSV = b"title,prompt\nSwept in,A wide shot\n"


def payload(cast: Cast) -> dict:
    """A POST body that succeeds for an owner on every URL (test_owner_post_... proves it)."""
    project = Project.objects.filter(pk=cast.project.pk).first()
    scene = project.scenes.first() if project else None
    shots = project.shots.order_by("-position", "-pk") if project else []
    return {
        "name": "x", "title": "x", "note": "x", "prompt": "x", "role": Role.VIEWER,
        "limit": "123.45", "verdict": "not_billed",
        # Seam thresholds, each away from its default.
        "match_delta_e": "1.5", "drift_delta_e": "6", "match_ssim": "0.9", "drift_ssim": "0.7",
        # A review decision that needs the note above: send the take back.
        "decision": "changes", "body": "x",
        # A review session on chosen shots; control handed to the editor.
        "shots": "chosen", "shot": [shot.pk for shot in shots],
        "to": cast.editor.pk,
        "confirm": cast.project.name,
        # The latest change of a shot, for undo.
        "change": getattr(ShotChange.objects.order_by("-pk").first(), "pk", ""),
        # The whole board in reverse, into the scene if there is one.
        "item": [f"{scene.pk if scene else ''}:{shot.pk}" for shot in shots],
        # cast.shot is first on the board, so "down" really moves it.
        "direction": "down",
        "file": SimpleUploadedFile("frame.png", png_bytes(), content_type="image/png"),
        # An import: the file to preview, and the owner's sealed preview to confirm.
        "source": SimpleUploadedFile("sweep.csv", IMPORT_CSV, content_type="text/csv"),
        "plan": _import_plan(project, cast.owner),
        # Project settings and the shot editor.
        "mode": "text", "endpoint": DEFAULT_ENDPOINT, "default_endpoint": DEFAULT_ENDPOINT,
        # A review link to the whole cut.
        "scope": "cut", "expires_in": "7",
        # An outgoing webhook to a public address (an IP, so saving it resolves nothing).
        "url": "https://93.184.215.14/sweep-hook", "events": ["take.finished"],
        "resolution": "720p", "aspect_ratio": "16:9", "duration": "5",
        # Signup and login.
        "username": "sweeper", "email": "sweeper@example.com", "password": "pass-word-123",
        "password1": "Sweep-the-board-42", "password2": "Sweep-the-board-42",
    }


# What a request may change


BOARD_MODELS = (Project, Scene, Shot, Shot.references.through, ShotChange, Asset, Generation,
                Budget, LedgerEntry, ReviewDecision, Comment, Seam, SeamThresholds,
                ChainRun, Export, ReviewSession)
PEOPLE_MODELS = (Team, Membership, Invitation, User, ApiToken)
LINK_MODELS = (ReviewLink, ReviewLink.shots.through)
HOOK_MODELS = (WebhookEndpoint, WebhookDelivery)


def _table(model) -> tuple[int, str]:
    fields = [f.attname for f in model._meta.concrete_fields]
    rows = list(model.objects.order_by("pk").values_list(*fields))
    return len(rows), hashlib.sha256(repr(rows).encode()).hexdigest()[:16]


def fingerprint(models=BOARD_MODELS + PEOPLE_MODELS + LINK_MODELS + HOOK_MODELS
                ) -> dict[str, tuple[int, str]]:
    """Row count and a checksum of every column of every row, per table."""
    return {model._meta.label: _table(model) for model in models}


def media_files() -> set[str]:
    root = Path(django_settings.MEDIA_ROOT)
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.exists() \
        else set()


def _finish(response) -> None:
    if response.streaming:
        b"".join(response.streaming_content)  # lets the test client close the file


@dataclass
class Outcome:
    status: int
    location: str
    db_before: dict
    db_after: dict
    files_before: set[str]
    files_after: set[str]


def sweep_request(user: User | None, route: Route, method: str, cast: Cast) -> Outcome:
    url = build_url(route, cast)
    client = client_for(user)
    db_before, files_before = fingerprint(), media_files()
    response = client.get(url) if method == "GET" else client.post(url, payload(cast))
    _finish(response)
    return Outcome(response.status_code, response.get("Location", ""), db_before, fingerprint(),
                   files_before, media_files())


def assert_refused(outcome: Outcome, who: str, route: Route, method: str, *,
                   may_2xx: bool, may_write: bool, may_change: set[str] | None = None) -> None:
    """`may_change`: the tables this request may change, and no others (GUEST_ENTRY)."""
    where = f"{who} {method} {route.name}"
    assert outcome.status < 500, f"{where} crashed with {outcome.status}"
    if not may_2xx:
        assert not 200 <= outcome.status < 300, f"{where} got {outcome.status}, not a refusal"
    assert outcome.files_after == outcome.files_before, (
        f"{where} wrote files: {sorted(outcome.files_after - outcome.files_before)}"
    )
    changed = sorted(label for label in outcome.db_after
                     if outcome.db_after[label] != outcome.db_before[label])
    if may_write:
        # Allowed writes (joining by invitation, starting one's own team) are about people;
        # nothing on any board may change.
        board = {model._meta.label for model in BOARD_MODELS}
        assert not board & set(changed), f"{where} changed board data: {changed}"
    else:
        assert not set(changed) - (may_change or set()), (
            f"{where} changed the database: {changed}")


@pytest.fixture
def world(cast: Cast) -> Cast:
    # A second shot after cast.shot, so reordering and moving change something.
    ShotFactory(project=cast.project, title="Second")
    # A worker that just beat, so /healthz answers 200 (a 503 would look like a crash here).
    WorkerBeat.beat(worker="sweep")
    return cast


def _ids(params) -> list[str]:
    return [f"{route}-{method}" for route, method in params]


ROUTE_METHODS = [(route, method) for route in ROUTES for method in METHODS]


# Allow-lists. Everything not listed must be refused and change nothing.

# Anonymous visitors may get a 2xx on these.
PUBLIC_URLS: dict[tuple[str, str], str] = {
    ("accounts:login", "GET"): "the login form",
    ("accounts:login", "POST"): "wrong credentials re-render the form; nobody is logged in",
    ("accounts:signup", "GET"): "the signup form",
    ("accounts:invitation", "GET"): "the token is the credential: whoever holds the link sees "
                                    "which team it is for, with login and signup links",
    ("accounts:invitation", "POST"): "re-renders that page; accepting needs an account",
    ("sb:input-file", "GET"): "a provider fetching an input file: the signed token, which "
                              "expires in an hour and names one file, is the credential",
    ("sb:healthz", "GET"): "a probe: which checks pass, in plain words, nothing of any team",
    ("sb:readyz", "GET"): "the same",
}
# A review link's guest pages (storyboard/share_views.py) answer whoever holds the token:
# anonymous, another team's owner or one of Alpha's own. Naming oneself on the landing page
# counts a visit on the link and changes nothing else; every other guest URL needs that name
# in the session first and, without it, sends the visitor to the link's landing page having
# changed nothing. Guests with a name are tested in tests/test_share.py, and dead links (expired,
# revoked, unknown) by test_a_dead_review_link_opens_nothing below.
GUEST_URLS = {"sb:guest", "sb:guest-review", "sb:guest-comments", "sb:guest-take-file",
              "sb:guest-decide"}
GUEST_ENTRY: dict[tuple[str, str], tuple[str, set[str]]] = {
    ("sb:guest", "POST"): ("names the guest in their own session and counts a visit on the "
                           "link", {"storyboard.ReviewLink"}),
}
PUBLIC_URLS |= {
    ("sb:guest", "GET"): "a review link's landing page: the token is the credential; it shows "
                         "the link's title and asks for a name (and its password, if any)",
}
# Called by providers, not people: they prove themselves with a signature or a signed token.
SIGNED_NOT_LOGGED_IN: dict[tuple[str, str], str] = {
    ("sb:webhook", "POST"): "a provider's delivery, verified by the take's token in its URL "
                            "and the provider's signature",
    ("sb:webhook", "GET"): "POST only",
    ("sb:input-file", "GET"): "a provider fetching an input with a signed token",
    ("sb:input-file", "POST"): "GET only",
}
# ... and may change people tables (never a board) through these.
ANONYMOUS_WRITES: dict[tuple[str, str], str] = {
    ("accounts:signup", "POST"): "creates the new account and its own personal team",
}

# Charlie, who owns team Bravo and has no part in Alpha, may get a 2xx on these. (login,
# signup and home answer him with redirects, so they need no entry.)
OUTSIDER_2XX: dict[tuple[str, str], str] = {
    ("sb:input-file", "GET"): "the signed token is the credential (see PUBLIC_URLS)",
    ("sb:healthz", "GET"): "a probe, open to anyone (see PUBLIC_URLS)",
    ("sb:readyz", "GET"): "the same",
    ("accounts:teams", "GET"): "lists only his own teams",
    ("sb:notifications", "GET"): "lists only his own notifications",
    ("accounts:invitation", "GET"): "anyone holding Alpha's link may see who it is from; the "
                                    "token is the credential",
    ("sb:guest", "GET"): "anyone holding a review link is its guest (see GUEST_URLS)",
}
OUTSIDER_WRITES: dict[tuple[str, str], str] = {
    ("accounts:team-create", "POST"): "anyone may start a team of their own",
    ("accounts:invitation", "POST"): "accepting a link he holds is what invitations are for",
}

# Alpha's reviewer and viewer, POSTing. Everything else must be refused (the sweep uses the
# editor's membership id, so member-remove is "remove someone else", which they may not do;
# team-switch to Alpha only re-sets the pointer they already have, so it changes nothing and
# needs no entry).
READ_ONLY_POST_2XX: dict[str, str] = {
    "accounts:api-token-create": "the Teams page showing their own new token's secret, once",
}
READ_ONLY_POST_WRITES: dict[str, str] = {
    "accounts:team-create": "anyone may start a team of their own",
    "accounts:api-token-create": "anyone may make an API token for themselves; it acts with "
                                 "their own role, so theirs reads only",
}
# Alpha's reviewer (not the viewer) may also write through these: deciding is the role.
REVIEWER_POST_WRITES: dict[str, tuple[str, set[str]]] = {
    "sb:shot-decide": ("approve, send back or un-approve the take under review",
                       {"storyboard.Shot", "storyboard.ReviewDecision"}),
    "sb:take-comments": ("comment on a take", {"storyboard.Comment"}),
    "sb:comment-resolve": ("resolve a comment thread", {"storyboard.Comment"}),
    "sb:review-sessions": ("start a review session and present it",
                           {"storyboard.ReviewSession"}),
}

# Alpha's reviewer and viewer may also write through these: every role may export the cut.
READ_ONLY_EXPORTS: dict[str, tuple[str, set[str]]] = {
    "sb:export": ("export the cut (a viewer shows the animatic to a client)",
                  {"storyboard.Export"}),
}

# An owner's POST changes nothing on these; on every other URL it must change something.
OWNER_POST_CHANGES_NOTHING: dict[str, str] = {
    "accounts:login": "a signed-in user is redirected",
    "accounts:logout": "ends the session only",
    "accounts:signup": "a signed-in user is redirected",
    "accounts:team-switch": "the owner's current team is Alpha already",
    "accounts:invitation": "he is in Alpha already, so the link stays open for its invitee",
    "sb:notifications": "marks the owner's own notifications read; he has none",
    "sb:guest-comments": "a guest URL: without a guest's name in the session it sends him to "
                         "the link's landing page (guests write in tests/test_share.py)",
    "sb:guest-decide": "the same",
    "sb:project-import": "previews the file: shows what it would create and writes nothing "
                         "(project-import-confirm writes)",
}
# ... and these refuse POST outright (405).
GET_ONLY = {"sb:board", "sb:board-cards", "sb:asset-file", "sb:take-file", "sb:input-file",
            "sb:shot-estimate", "sb:seam-frame",
            "sb:ledger-csv", "sb:shot-history", "sb:review-queue", "sb:notification-open",
            "sb:shot-compare", "sb:export-file", "sb:review-session", "sb:guest-review",
            "sb:guest-take-file", "sb:board-print", "sb:board-print-pdf",
            "sb:home", "sb:healthz", "sb:readyz",
            "sb:projects",
            "accounts:teams", "accounts:members"}


def _guest_entry(key: tuple[str | None, str]) -> set[str] | None:
    return GUEST_ENTRY[key][1] if key in GUEST_ENTRY else None


# The sweep itself


def test_the_sweep_covers_the_url_conf():
    assert len(ROUTES) >= 20, [str(route) for route in ROUTES]
    assert all(route.name for route in ROUTES), [r.route for r in ROUTES if not r.name]
    assert len(ROUTE_NAMES) == len(ROUTES), "two URL patterns share a name"
    for route in ROUTES:
        missing = set(route.kwargs) - KWARG_VALUES.keys()
        assert not missing, (
            f"{route.name} takes {sorted(missing)}: add them to KWARG_VALUES in "
            "tests/test_access_sweep.py so the sweep can build this URL with Alpha's objects."
        )


def test_the_allow_lists_name_real_urls():
    listed = {name for name, _ in [*PUBLIC_URLS, *ANONYMOUS_WRITES, *OUTSIDER_2XX,
                                   *OUTSIDER_WRITES, *GUEST_ENTRY]}
    listed |= {*READ_ONLY_POST_2XX, *READ_ONLY_POST_WRITES, *OWNER_POST_CHANGES_NOTHING,
               *GET_ONLY, *READ_ONLY_EXPORTS, *GUEST_URLS}
    assert listed <= ROUTE_NAMES, sorted(listed - ROUTE_NAMES)


@pytest.mark.parametrize(("route", "method"), ROUTE_METHODS, ids=_ids(ROUTE_METHODS))
def test_anonymous_is_refused(world, route, method):
    outcome = sweep_request(None, route, method, world)
    key = (route.name, method)
    assert_refused(outcome, "anonymous", route, method, may_2xx=key in PUBLIC_URLS,
                   may_write=key in ANONYMOUS_WRITES, may_change=_guest_entry(key))
    if route.name in GUEST_URLS and key not in PUBLIC_URLS:
        # A guest URL sends a visitor without a name to the link's landing page (or refuses
        # the method), never to the team's login.
        assert outcome.status == 405 or (
            outcome.status == 302 and outcome.location.startswith("/r/")
        ), f"anonymous {method} {route.name}: {outcome.status} {outcome.location}"
    elif key in SIGNED_NOT_LOGGED_IN:
        # Machine-to-machine URLs answer an unsigned request with 401 (or 404), not a login.
        assert outcome.status in (401, 404, 405) or key in PUBLIC_URLS, (
            f"anonymous {method} {route.name}: {outcome.status}")
    elif key not in PUBLIC_URLS and key not in ANONYMOUS_WRITES:
        # Sent to log in, or the method is not allowed at all: never anything else.
        login = reverse("accounts:login")
        assert outcome.status == 405 or (
            outcome.status == 302 and outcome.location.startswith(login)
        ), f"anonymous {method} {route.name}: {outcome.status} {outcome.location}"


@pytest.mark.parametrize(("route", "method"), ROUTE_METHODS, ids=_ids(ROUTE_METHODS))
def test_outsider_is_refused(world, route, method):
    outcome = sweep_request(world.outsider, route, method, world)
    key = (route.name, method)
    assert_refused(outcome, "outsider", route, method, may_2xx=key in OUTSIDER_2XX,
                   may_write=key in OUTSIDER_WRITES, may_change=_guest_entry(key))
    assert outcome.status != 403, (
        f"outsider {method} {route.name} got 403: another team's objects must look like they "
        "do not exist (404)"
    )


@pytest.mark.parametrize("role", ["reviewer", "viewer"])
@pytest.mark.parametrize("route", ROUTES, ids=[str(route) for route in ROUTES])
def test_read_only_role_changes_nothing(world, role, route):
    outcome = sweep_request(world.member(role), route, "POST", world)
    allowed = {**READ_ONLY_EXPORTS, **(REVIEWER_POST_WRITES if role == "reviewer" else {})}
    if route.name in allowed:
        # Deciding, commenting and exporting change what they are about and nothing else.
        changed = {label for label in outcome.db_after
                   if outcome.db_after[label] != outcome.db_before[label]}
        assert outcome.status < 400
        assert changed == allowed[route.name][1]
        assert outcome.files_after == outcome.files_before
    else:
        assert_refused(outcome, role, route, "POST", may_2xx=route.name in READ_ONLY_POST_2XX,
                       may_write=route.name in READ_ONLY_POST_WRITES,
                       may_change=_guest_entry((route.name, "POST")))
    assert world.team.memberships.get(user=world.member(role)).role == role


# Controls: the ids are valid and the payload works, so the refusals above mean something.


@pytest.mark.parametrize("route", ROUTES, ids=[str(route) for route in ROUTES])
def test_owner_can_open_every_url(world, route):
    outcome = sweep_request(world.owner, route, "GET", world)
    # 404 would mean the sweep's ids point at nothing, and every refusal above is vacuous.
    assert outcome.status in (200, 302, 405), f"owner GET {route.name}: {outcome.status}"


@pytest.mark.parametrize("route", ROUTES, ids=[str(route) for route in ROUTES])
def test_owner_post_payload_is_accepted(world, route):
    outcome = sweep_request(world.owner, route, "POST", world)
    changed = outcome.db_after != outcome.db_before or outcome.files_after != outcome.files_before
    if route.name in GET_ONLY:
        assert outcome.status == 405, f"owner POST {route.name}: {outcome.status}"
        assert not changed
        return
    if (route.name, "POST") in SIGNED_NOT_LOGGED_IN:
        # A session is no credential here; the signed path is tested with the provider.
        assert outcome.status == 401, f"owner POST {route.name}: {outcome.status}"
        assert not changed
        return
    assert outcome.status < 400, f"owner POST {route.name}: {outcome.status}"
    if route.name in OWNER_POST_CHANGES_NOTHING:
        assert not changed, f"owner POST {route.name} changed something; update the allow-list"
    else:
        assert changed, (
            f"owner POST {route.name} changed nothing: the sweep's payload does not exercise "
            "this view, so its refusals prove nothing. Extend payload()."
        )


# Review links: a guest who named themselves while the link worked gets nothing once it died.

GUEST_ROUTE_METHODS = [(route, method) for route, method in ROUTE_METHODS
                       if route.name in GUEST_URLS]


@pytest.mark.parametrize("link", ["alive", "expired", "revoked", "unknown"])
@pytest.mark.parametrize(("route", "method"), GUEST_ROUTE_METHODS,
                         ids=_ids(GUEST_ROUTE_METHODS))
def test_a_dead_review_link_opens_nothing(world, route, method, link):
    shot = Shot.objects.select_related("review_take").get(pk=_shot_in_review(world).pk)
    review_link, token = _review_link(world)
    guest = Client()
    assert guest.post(reverse("sb:guest", args=[token]), {"name": "Gina"}).status_code == 302
    if link == "expired":
        ReviewLink.objects.filter(pk=review_link.pk).update(expires_at=timezone.now())
    elif link == "revoked":
        sharing.revoke_link(link=review_link, user=world.owner)
    elif link == "unknown":
        token = token[::-1]
    values = {"link_token": token, "take_uid": shot.review_take.uid, "kind": "video",
              "shot_id": shot.pk}
    url = reverse(route.name, kwargs={kwarg: values[kwarg] for kwarg in route.kwargs})
    db_before, files_before = fingerprint(), media_files()
    response = guest.get(url) if method == "GET" else guest.post(url, payload(world))
    _finish(response)
    changed = fingerprint() != db_before or media_files() != files_before
    if link == "alive":
        # The control: the same guest on a live link gets in, and writes where guests write.
        assert response.status_code in (200, 302, 405), f"{method} {route.name}"
        assert changed == (method == "POST" and route.name in {
            "sb:guest", "sb:guest-comments", "sb:guest-decide"}), f"{method} {route.name}"
    else:
        assert response.status_code == (404 if link == "unknown" else 410)
        assert not changed, f"{method} {route.name} on a {link} link changed something"


# The JSON API: a session is no credential there (cookies would make every API write a
# cross-site request forgery target), so every person is answered 401, or 405 for a method the
# address does not take; only the schema and the docs page are public, and the API's 404s.

API_PUBLIC: dict[str, tuple[int, str]] = {
    "api:openapi-json": (200, "the OpenAPI schema: the API's shape, no team's data"),
    "api:openapi-view": (200, "the docs page that renders that schema"),
    "api:api-root": (404, "no page there: a problem document pointing at the schema"),
    "api-not-found": (404, "any other address under /api/, as a problem document"),
}
API_ROUTE_METHODS = [(route, method) for route in API_ROUTES for method in METHODS]


def test_the_api_is_swept_too():
    names = {route.name for route in API_ROUTES}
    assert set(API_PUBLIC) <= names
    assert {"api:api-shot", "api:api-shot-generate", "api:api-budget"} <= names


@pytest.mark.parametrize("who", ["anonymous", "owner"])
@pytest.mark.parametrize(("route", "method"), API_ROUTE_METHODS, ids=_ids(API_ROUTE_METHODS))
def test_the_api_takes_no_session(world, who, route, method):
    outcome = sweep_request(world.owner if who == "owner" else None, route, method, world)
    assert_refused(outcome, who, route, method, may_2xx=route.name in API_PUBLIC,
                   may_write=False)
    if route.name in API_PUBLIC and method == "GET":
        assert outcome.status == API_PUBLIC[route.name][0]
    else:
        assert outcome.status in (401, 404, 405), f"{who} {method} {route.name}"


ID_ROUTES = [route for route in ROUTES if any(kwarg.endswith("_id") for kwarg in route.kwargs)]


def _url_with_ids(route: Route, cast: Cast, number: int) -> str:
    # Filled in from the route's text, not reverse(): a number the converter refuses cannot
    # be reversed, and a user can still type it.
    values = {**KWARG_VALUES, **ROUTE_KWARGS.get(route.name, {})}

    def fill(match: re.Match) -> str:
        name = match.group(1)
        return str(number) if name.endswith("_id") else str(values[name](cast))

    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", fill, route.route)


@pytest.mark.parametrize("number", [2**63 - 1, 2**63, 10**30])
@pytest.mark.parametrize("route", ID_ROUTES, ids=[str(route) for route in ID_ROUTES])
def test_an_id_past_the_database_is_not_found(world, route, number):
    # The largest BigAutoField id is simply absent; a larger one never reaches a query (it
    # used to, and the database's overflow became a 500).
    url = _url_with_ids(route, world, number)
    client = client_for(world.owner)
    for method in METHODS:
        response = client.get(url) if method == "GET" else client.post(url, payload(world))
        if number < 2**63:  # a real id that is not there: whatever the view says, not a 500
            assert response.status_code < 500, f"{method} {url}: {response.status_code}"
        else:
            assert response.status_code == 404, f"{method} {url}: {response.status_code}"
