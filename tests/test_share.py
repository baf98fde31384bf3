"""Client review links (issue #12): producers and owners share shots outside the team; a guest
with the link (and its password) names themselves, watches the takes under review, comments
and, if allowed, decides. Dead, wrong or over-used links are refused and change nothing, and a
guest never sees anything else of the team."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from storyboard import review, sharing
from storyboard.models import (
    Comment,
    Generation,
    Notification,
    ReviewDecision,
    ReviewLink,
    Shot,
    secret_digest,
)
from storyboard.money import usd
from tests.conftest import Cast, client_for
from tests.factories import GenerationFactory, ProjectFactory, ShotFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
GUEST = "Gina Client"


def _in_review(shot: Shot, cast: Cast, **take_fields) -> Generation:
    take = GenerationFactory(shot=shot, created_by=cast.editor, **take_fields)
    Shot.objects.filter(pk=shot.pk).update(selected_take=take)
    review.decide(shot=shot, user=cast.editor, kind=review.Kind.SUBMIT)
    shot.refresh_from_db()
    return take


def _link(cast: Cast, **options) -> tuple[ReviewLink, str]:
    return sharing.create_link(project=cast.project, user=options.pop("user", cast.producer),
                               **options)


def _enter(token: str, *, name: str = GUEST, password: str = "") -> Client:
    client = Client()
    response = client.post(reverse("sb:guest", args=[token]),
                           {"name": name, "email": "gina@client.example", "password": password})
    assert response.status_code == 302, response.content.decode()[:500]
    assert response["Location"] == reverse("sb:guest-review", args=[token])
    return client


def _links() -> list[tuple]:
    return list(ReviewLink.objects.order_by("pk").values_list(
        "pk", "revoked_at", "views", "last_used", "expires_at"))


def _review_state() -> tuple:
    return (list(Shot.objects.order_by("pk").values_list("review", "review_take_id",
                                                         "selected_take_id")),
            Comment.objects.count(), ReviewDecision.objects.count(),
            Notification.objects.count(), _links())


def _comment_url(token: str, take: Generation) -> str:
    return reverse("sb:guest-comments", args=[token, take.uid])


def _decide_url(token: str, shot: Shot) -> str:
    return reverse("sb:guest-decide", args=[token, shot.pk])


# Sharing and revoking


@pytest.mark.parametrize("role", ["owner", "producer"])
def test_owner_and_producer_create_a_link_shown_once(cast, role):
    other = ShotFactory(project=cast.project, title="Harbour")
    client = client_for(cast.member(role))
    response = client.post(reverse("sb:share", args=[cast.project.pk]), {
        "label": "For the agency", "scope": "shots", "link_shots": [cast.shot.pk],
        "expires_in": "30", "password": "lighthouse", "allow_decisions": "on"})
    assert response.status_code == 302
    link = ReviewLink.objects.get()
    assert link.created_by == cast.member(role)
    assert list(link.shots.all()) == [cast.shot]
    assert other not in link.shared_shots()
    assert link.allow_decisions
    assert 29.9 < (link.expires_at - timezone.now()).total_seconds() / 86400 <= 30
    # The password is kept only as Django's hash.
    assert link.password != "lighthouse"
    assert sharing.password_ok(link=link, password="lighthouse")

    page = client.get(response["Location"]).content.decode()
    url = re.search(r'id="new-link-url" readonly value="([^"]+)"', page).group(1)
    token = url.rsplit("/r/", 1)[1].strip("/")
    # Only its hash is stored, and the address works.
    assert link.token_hash == secret_digest(token) != token
    assert token not in repr(ReviewLink.objects.values().get())
    assert sharing.open_link(token=token) == link
    # Shown once: the next visit lists the link without its address.
    again = client.get(reverse("sb:share", args=[cast.project.pk])).content.decode()
    assert token not in again
    assert "For the agency" in again


def test_the_whole_cut_covers_every_shot_even_later_ones(cast):
    link, _ = _link(cast)
    assert link.scope == ReviewLink.Scope.CUT
    later = ShotFactory(project=cast.project, title="Added later")
    assert set(link.shared_shots()) == {cast.shot, later}


@pytest.mark.parametrize("role", ["owner", "producer"])
def test_owner_and_producer_revoke_a_link(cast, role):
    link, token = _link(cast)
    response = client_for(cast.member(role)).post(reverse("sb:share-revoke", args=[link.pk]),
                                                  **HTMX)
    assert response.status_code == 200
    link.refresh_from_db()
    assert link.state == ReviewLink.State.REVOKED
    assert link.revoked_by == cast.member(role)
    assert 'class="link-revoked"' in response.content.decode()
    with pytest.raises(sharing.LinkRefused):
        sharing.open_link(token=token)


@pytest.mark.parametrize("who", ["editor", "reviewer", "viewer", "outsider", "anonymous"])
def test_other_people_cannot_share_or_revoke_and_nothing_changes(cast, who):
    link, _ = _link(cast)
    user = None if who == "anonymous" else getattr(cast, who)
    client = client_for(user)
    before = _links()
    create = client.post(reverse("sb:share", args=[cast.project.pk]),
                         {"scope": "cut", "expires_in": "7"})
    revoke = client.post(reverse("sb:share-revoke", args=[link.pk]))
    listing = client.get(reverse("sb:share", args=[cast.project.pk]))
    expected = {"outsider": 404, "anonymous": 302}.get(who, 403)
    assert {create.status_code, revoke.status_code, listing.status_code} == {expected}
    if who == "anonymous":
        assert create["Location"].startswith(reverse("accounts:login"))
    assert _links() == before
    with pytest.raises(sharing.LinkRefused):
        sharing.create_link(project=cast.project, user=cast.editor)
    with pytest.raises(sharing.LinkRefused):
        sharing.revoke_link(link=link, user=cast.reviewer)


def test_only_producers_and_owners_see_the_share_button(cast):
    board = reverse("sb:board", args=[cast.project.pk])
    share = reverse("sb:share", args=[cast.project.pk])
    assert share in client_for(cast.producer).get(board).content.decode()
    assert share not in client_for(cast.editor).get(board).content.decode()


def test_a_bad_link_form_is_refused_with_the_typed_input_kept(cast):
    response = client_for(cast.owner).post(reverse("sb:share", args=[cast.project.pk]), {
        "label": "Agency cut", "scope": "shots", "expires_in": "7"}, **HTMX)
    assert response.status_code == 422
    page = response.content.decode()
    assert "Choose at least one shot, or share the whole cut." in page
    assert 'value="Agency cut"' in page
    response = client_for(cast.owner).post(reverse("sb:share", args=[cast.project.pk]), {
        "scope": "cut", "expires_in": "365"}, **HTMX)
    assert response.status_code == 422
    assert not ReviewLink.objects.exists()
    with pytest.raises(sharing.LinkRefused, match="6 to 128"):
        _link(cast, password="abc")
    with pytest.raises(sharing.LinkRefused, match="Only shots of this project"):
        _link(cast, shots=[ShotFactory(project=ProjectFactory(team=cast.team))])


# Opening a link


def test_a_guest_names_themselves_before_seeing_anything(cast):
    take = _in_review(cast.shot, cast)
    link, token = _link(cast)
    anonymous = Client()
    landing = anonymous.get(reverse("sb:guest", args=[token]))
    assert landing.status_code == 200
    assert 'name="name"' in landing.content.decode()
    assert cast.shot.title not in landing.content.decode()
    for url in (reverse("sb:guest-review", args=[token]),
                reverse("sb:guest-take-file", args=[token, take.uid, "video"]),
                _comment_url(token, take)):
        response = anonymous.get(url)
        assert response.status_code == 302
        assert response["Location"] == reverse("sb:guest", args=[token])
    # Without a name, the form again with what was typed.
    refused = anonymous.post(reverse("sb:guest", args=[token]), {"name": " ",
                                                                 "email": "gina@x.example"})
    assert refused.status_code == 422
    assert 'value="gina@x.example"' in refused.content.decode()
    assert _links()[0][2] == 0

    guest = _enter(token)
    page = guest.get(reverse("sb:guest-review", args=[token])).content.decode()
    assert cast.shot.title in page
    assert f"Reviewing as {GUEST} (guest)" in page
    link.refresh_from_db()
    assert link.views == 1
    assert link.last_used is not None


@pytest.mark.parametrize("dead", ["expired", "revoked", "unknown"])
def test_a_dead_link_is_refused_and_changes_nothing(cast, dead):
    take = _in_review(cast.shot, cast)
    link, token = _link(cast, allow_decisions=True)
    guest = _enter(token)  # while it still worked
    if dead == "expired":
        ReviewLink.objects.filter(pk=link.pk).update(expires_at=timezone.now())
    elif dead == "revoked":
        sharing.revoke_link(link=link, user=cast.owner)
    else:
        token = token[:-4] + "AAAA"
    before = _review_state()
    status = 404 if dead == "unknown" else 410
    responses = [
        guest.get(reverse("sb:guest", args=[token])),
        guest.post(reverse("sb:guest", args=[token]), {"name": GUEST}),
        guest.get(reverse("sb:guest-review", args=[token])),
        guest.get(reverse("sb:guest-take-file", args=[token, take.uid, "video"])),
        guest.post(_comment_url(token, take), {"body": "Still there?"}),
        guest.post(_decide_url(token, cast.shot), {"decision": "approve"}),
    ]
    assert [r.status_code for r in responses] == [status] * len(responses)
    page = responses[0].content.decode()
    assert {"expired": "expired on", "revoked": "turned off",
            "unknown": "does not exist"}[dead] in page
    assert cast.shot.title not in page
    assert _review_state() == before


def test_the_actions_refuse_a_dead_link_whatever_called_them(cast):
    take = _in_review(cast.shot, cast)
    link, _ = _link(cast, allow_decisions=True)
    ReviewLink.objects.filter(pk=link.pk).update(expires_at=timezone.now())
    link.refresh_from_db()
    visitor = sharing.Guest(name=GUEST)
    with pytest.raises(review.ReviewRefused, match="expired or was revoked"):
        sharing.guest_decide(link=link, guest=visitor, shot=cast.shot, kind="approve")
    from storyboard import comments

    with pytest.raises(comments.CommentRefused, match="expired or was revoked"):
        sharing.guest_comment(link=link, guest=visitor, take=take, body="Hello")
    assert not Comment.objects.exists()
    assert Shot.objects.get(pk=cast.shot.pk).review == Shot.Review.IN_REVIEW


def test_a_wrong_password_is_refused_and_the_right_one_lets_the_guest_in(cast):
    _, token = _link(cast, password="lighthouse")
    client = Client()
    wrong = client.post(reverse("sb:guest", args=[token]),
                        {"name": GUEST, "password": "lightning"})
    assert wrong.status_code == 403
    assert "That password is not right" in wrong.content.decode()
    assert f'value="{GUEST}"' in wrong.content.decode()
    assert client.get(reverse("sb:guest-review", args=[token])).status_code == 302
    assert _links()[0][2] == 0
    _enter(token, password="lighthouse")
    assert ReviewLink.objects.get().views == 1


def test_password_attempts_are_rate_limited_per_link(cast, settings):
    settings.GUEST_PASSWORD_TRIES_PER_HOUR = 3
    _, token = _link(cast, password="lighthouse")
    _, other = _link(cast, password="harbour-lights")
    client = Client()
    url = reverse("sb:guest", args=[token])
    for _ in range(3):
        assert client.post(url, {"name": GUEST, "password": "guess"}).status_code == 403
    # Locked out, even with the right password now.
    locked = client.post(url, {"name": GUEST, "password": "lighthouse"})
    assert locked.status_code == 429
    assert int(locked["Retry-After"]) > 0
    assert "Too many wrong passwords" in locked.content.decode()
    assert client.get(reverse("sb:guest-review", args=[token])).status_code == 302
    # The count is per link: the other one still opens.
    _enter(other, password="harbour-lights")


def test_unknown_addresses_are_rate_limited(cast, settings):
    settings.GUEST_UNKNOWN_LINKS_PER_HOUR = 2
    _, token = _link(cast)
    client = Client()
    for n in range(2):
        assert client.get(reverse("sb:guest", args=[f"nothing-{n}"])).status_code == 404
    refused = client.get(reverse("sb:guest", args=[token]))
    assert refused.status_code == 429
    assert "Retry-After" in refused


def test_guest_posts_are_rate_limited(cast, settings):
    settings.GUEST_POSTS_PER_MINUTE = 3
    take = _in_review(cast.shot, cast)
    _, token = _link(cast)
    guest = _enter(token)  # one post
    for n in range(2):
        assert guest.post(_comment_url(token, take), {"body": f"Note {n}"},
                          **HTMX).status_code == 200
    refused = guest.post(_comment_url(token, take), {"body": "One too many"}, **HTMX)
    assert refused.status_code == 429
    assert "Retry-After" in refused
    assert Comment.objects.count() == 2


# What a guest sees


def test_a_guest_sees_only_the_shared_shots(cast):
    take = _in_review(cast.shot, cast)
    hidden = ShotFactory(project=cast.project, title="Unshared vault scene")
    hidden_take = _in_review(hidden, cast)
    draft = ShotFactory(project=cast.project, title="Still a draft")
    GenerationFactory(shot=draft)
    elsewhere = _in_review(ShotFactory(project=ProjectFactory(team=cast.team)), cast)
    _, token = _link(cast, shots=[cast.shot, draft])
    guest = _enter(token)

    page = guest.get(reverse("sb:guest-review", args=[token])).content.decode()
    assert cast.shot.title in page
    assert "Unshared vault scene" not in page
    assert "Still a draft" not in page  # shared, but nothing is under review
    assert reverse("sb:guest-take-file", args=[token, take.uid, "video"]) in page
    # No template comment leaks into the page (a {# #} comment must stay on one line).
    assert "{#" not in page
    # Even asked for by id, another shot is not shown.
    page = guest.get(reverse("sb:guest-review", args=[token]) + f"?shot={hidden.pk}")
    assert "Unshared vault scene" not in page.content.decode()

    video = guest.get(reverse("sb:guest-take-file", args=[token, take.uid, "video"]),
                      HTTP_RANGE="bytes=0-3")
    assert video.status_code == 206
    assert b"".join(video.streaming_content) == b"\x00\x00\x00\x18"
    poster = guest.get(reverse("sb:guest-take-file", args=[token, take.uid, "poster"]))
    assert poster.status_code == 200
    b"".join(poster.streaming_content)
    for other, kind in ((hidden_take, "video"), (elsewhere, "video"), (take, "last-frame"),
                        (GenerationFactory(shot=cast.shot), "video")):
        assert guest.get(reverse("sb:guest-take-file", args=[token, other.uid, kind])
                         ).status_code == 404
    before = _review_state()
    assert guest.post(_comment_url(token, hidden_take), {"body": "Peek"}).status_code == 404
    assert guest.post(_decide_url(token, hidden), {"decision": "approve"}).status_code == 404
    assert _review_state() == before


def test_guest_pages_show_nothing_else_of_the_team(cast):
    take = _in_review(cast.shot, cast, request_id="req-7f3a-secret", actual_micros=1_234_567,
                      seed=90210, input={"prompt": "Secret prompt of the studio",
                                         "resolution": "720p"})
    ShotFactory(project=cast.project, title="Confidential heist finale")
    Comment.objects.create(take=take, user=cast.reviewer, body="Ask @editor-a about the fog")
    _, token = _link(cast, allow_decisions=True, label="Agency review")
    guest = _enter(token)
    pages = [guest.get(reverse("sb:guest", args=[token]), follow=True),
             guest.get(reverse("sb:guest-review", args=[token])),
             guest.get(_comment_url(token, take), **HTMX),
             guest.post(_comment_url(token, take), {"body": "@viewer-a nice"}, **HTMX),
             guest.post(_decide_url(token, cast.shot), {"decision": "changes", "note": "More"},
                        **HTMX)]
    assert all(page.status_code == 200 for page in pages)
    text = "".join(page.content.decode() for page in pages)
    secrets = ["Confidential heist finale", "req-7f3a-secret", usd(1_234_567), "90210",
               "Secret prompt of the studio", cast.team.name, cast.project.name,
               cast.other_team.name, "/ws/", 'id="bell"', "budget", "local"]
    for member in ("owner", "producer", "editor", "viewer"):
        user = cast.member(member)
        secrets += [user.get_full_name(), user.email]
    assert [secret for secret in secrets if secret in text] == []
    # Mentions are plain text for guests: nothing says which names are the team's.
    assert 'class="mention"' not in text
    assert 'data-team=""' in text
    # What a guest does see of how the take was made.
    assert take.endpoint in text
    assert "864×496" in text


# Guests write


def test_a_guest_comment_is_recorded_as_theirs_and_notifies(cast, mailoutbox,
                                                            django_capture_on_commit_callbacks):
    take = _in_review(cast.shot, cast)
    link, token = _link(cast)
    guest = _enter(token)
    with django_capture_on_commit_callbacks(execute=True):
        response = guest.post(_comment_url(token, take), {
            "body": "The fog rolls in too early, @editor-a", "frame": "12", "frame_end": "",
            "drawing": '[{"tool": "rect", "points": [[0.1, 0.1], [0.4, 0.5]]}]'}, **HTMX)
    assert response.status_code == 200
    assert "The fog rolls in too early" in response.content.decode()
    comment = Comment.objects.get()
    assert (comment.user, comment.guest_name, comment.guest_email, comment.review_link,
            comment.frame) == (None, GUEST, "gina@client.example", link, 12)
    assert comment.drawing[0]["tool"] == "rect"
    # The mention reaches the team member; whoever shared the link hears of the note.
    notes = {n.user: n for n in Notification.objects.all()}
    assert set(notes) == {cast.editor, cast.producer}
    assert notes[cast.editor].kind == Notification.Kind.MENTION
    assert notes[cast.producer].kind == Notification.Kind.GUEST
    assert f"{GUEST} (guest) commented" in notes[cast.producer].text
    assert len(mailoutbox) == 2
    # The team sees it as the guest's.
    shot_page = client_for(cast.reviewer).get(reverse("sb:shot", args=[cast.shot.pk]))
    assert f"{GUEST} (guest)" in shot_page.content.decode()
    # The team sees the guest's address; another guest on the same link does not.
    assert 'title="gina@client.example"' in shot_page.content.decode()
    other = _enter(token, name="Oscar")
    other_page = other.get(reverse("sb:guest-review", args=[token])).content.decode()
    assert "The fog rolls in too early" in other_page
    assert "gina@client.example" not in other_page


def test_a_guest_reply_threads_and_tells_the_thread(cast):
    take = _in_review(cast.shot, cast)
    first = Comment.objects.create(take=take, user=cast.reviewer, body="Too dark", frame=3)
    _, token = _link(cast)
    guest = _enter(token)
    assert guest.post(_comment_url(token, take), {"body": "Agreed", "parent": first.pk},
                      **HTMX).status_code == 200
    reply = Comment.objects.get(parent=first)
    assert reply.guest_name == GUEST
    assert Notification.objects.get(user=cast.reviewer).kind == Notification.Kind.REPLY


def test_a_refused_guest_comment_keeps_the_text_and_writes_nothing(cast):
    take = _in_review(cast.shot, cast)
    _, token = _link(cast)
    guest = _enter(token)
    response = guest.post(_comment_url(token, take), {"body": "x" * 2001}, **HTMX)
    assert response.status_code == 422
    assert response["HX-Reswap"] == "none"
    assert not Comment.objects.exists()


def test_a_guest_decides_only_when_the_link_allows_it(cast):
    _in_review(cast.shot, cast)
    _, token = _link(cast)
    guest = _enter(token)
    before = _review_state()
    page = guest.get(reverse("sb:guest-review", args=[token])).content.decode()
    assert 'value="approve"' not in page
    response = guest.post(_decide_url(token, cast.shot),
                          {"decision": "approve", "seen": cast.shot.review_token}, **HTMX)
    assert response.status_code == 422
    assert "decisions are the team" in response.content.decode()
    assert _review_state() == before


def test_a_guest_decision_is_recorded_as_theirs_and_notifies_the_team(
        cast, django_capture_on_commit_callbacks):
    take = _in_review(cast.shot, cast)
    link, token = _link(cast, allow_decisions=True)
    guest = _enter(token)
    page = guest.get(reverse("sb:guest-review", args=[token])).content.decode()
    assert 'value="approve"' in page
    with django_capture_on_commit_callbacks(execute=True):
        response = guest.post(_decide_url(token, cast.shot),
                              {"decision": "approve", "seen": cast.shot.review_token}, **HTMX)
    assert response.status_code == 200
    assert "You approved this take" in response.content.decode()
    shot = Shot.objects.get(pk=cast.shot.pk)
    assert (shot.review, shot.review_take, shot.chosen_take()) == (Shot.Review.APPROVED, take,
                                                                  take)
    decision = shot.decisions.first()
    assert (decision.user, decision.guest_name, decision.review_link, decision.kind) == (
        None, GUEST, link, review.Kind.APPROVE)
    # The shot's editor (made the take) and the link's creator hear of it.
    told = set(Notification.objects.filter(kind=Notification.Kind.DECISION)
               .values_list("user__username", flat=True))
    assert told == {cast.editor.username, cast.producer.username}
    assert f"{GUEST} (guest) approved" in Notification.objects.filter(user=cast.editor) \
        .get().text
    history = client_for(cast.owner).get(reverse("sb:shot", args=[cast.shot.pk]))
    assert f"{GUEST} (guest)</strong> approved" in history.content.decode()


def test_a_guest_may_only_approve_or_send_back(cast):
    _in_review(cast.shot, cast)
    _, token = _link(cast, allow_decisions=True)
    guest = _enter(token)
    before = _review_state()
    for kind in ("unapprove", "submit", "final", "nonsense"):
        response = guest.post(_decide_url(token, cast.shot), {"decision": kind, "note": "x"},
                              **HTMX)
        assert response.status_code == 422
    sent_back = guest.post(_decide_url(token, cast.shot), {"decision": "changes"}, **HTMX)
    assert sent_back.status_code == 422
    assert "a note is required" in sent_back.content.decode()
    assert _review_state() == before


def test_a_guest_decision_wins_once_against_the_team(cast):
    _in_review(cast.shot, cast)
    _, token = _link(cast, allow_decisions=True)
    guest, second = _enter(token), _enter(token, name="Greg Client")
    seen = Shot.objects.get(pk=cast.shot.pk).review_token
    review.decide(shot=cast.shot, user=cast.reviewer, kind=review.Kind.CHANGES,
                  note="Fog too early", seen=seen)
    before = _review_state()
    late = guest.post(_decide_url(token, cast.shot), {"decision": "approve", "seen": seen},
                      **HTMX)
    assert late.status_code == 422
    page = late.content.decode()
    # Told the team decided, not who in it.
    assert "The team sent back take" in page
    assert cast.reviewer.get_full_name() not in page
    assert _review_state() == before

    # Back in review; two guests decide on the same screen: one wins.
    review.decide(shot=cast.shot, user=cast.editor, kind=review.Kind.SUBMIT,
                  take=GenerationFactory(shot=cast.shot))
    seen = Shot.objects.get(pk=cast.shot.pk).review_token
    first = guest.post(_decide_url(token, cast.shot),
                       {"decision": "changes", "note": "Warmer", "seen": seen}, **HTMX)
    other = second.post(_decide_url(token, cast.shot), {"decision": "approve", "seen": seen},
                        **HTMX)
    assert (first.status_code, other.status_code) == (200, 422)
    assert f"{GUEST} (guest) sent back" in other.content.decode()
    assert Shot.objects.get(pk=cast.shot.pk).review == Shot.Review.CHANGES


def test_without_htmx_guest_posts_redirect_back_to_the_shot(cast):
    take = _in_review(cast.shot, cast)
    _, token = _link(cast, allow_decisions=True)
    guest = _enter(token)
    back = f"{reverse('sb:guest-review', args=[token])}?shot={cast.shot.pk}"
    assert guest.post(_comment_url(token, take), {"body": "Nice"})["Location"] == back
    decided = guest.post(_decide_url(token, cast.shot), {"decision": "approve"}, follow=True)
    assert "You approved this take" in decided.content.decode()


@pytest.mark.django_db(transaction=True)
async def test_a_guest_decision_reaches_open_boards_live(cast):
    from asgiref.sync import sync_to_async

    from tests.test_realtime import _drain, _receive_until, _socket

    await sync_to_async(_in_review)(cast.shot, cast)
    _, token = await sync_to_async(_link)(cast, allow_decisions=True)
    guest = await sync_to_async(_enter)(token)
    ws = await _socket(cast.viewer, cast.project.pk)
    assert (await ws.connect())[0]
    await _drain(ws)
    response = await sync_to_async(guest.post)(_decide_url(token, cast.shot),
                                               {"decision": "approve"}, **HTMX)
    assert response.status_code == 200
    card = await _receive_until(ws, 'data-review="approved"')
    assert f'id="shot-{cast.shot.pk}"' in card
    await ws.disconnect()
