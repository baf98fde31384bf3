"""Comments on takes: at a frame or range, replies, resolve and reopen, who may, safe text with
team @mentions, and the list pushed to open pages (issue #12)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from storyboard import comments
from storyboard.models import Comment, Generation
from tests.conftest import client_for
from tests.factories import GenerationFactory, ShotFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def take(cast) -> Generation:
    # 2 s at the house format's 24 fps: frames 0–47.
    return GenerationFactory(shot=cast.shot, duration=2.0)


def _post(user, take, **data):
    return client_for(user).post(reverse("sb:take-comments", args=[take.uid]), data, **HTMX)


def test_a_reviewer_comments_at_a_frame(cast, take):
    response = _post(cast.reviewer, take, body="Horizon tilts here", frame="30")
    assert response.status_code == 200
    comment = Comment.objects.get()
    assert (comment.user, comment.frame, comment.frame_end, comment.take) == (
        cast.reviewer, 30, None, take)
    text = response.content.decode()
    assert "Horizon tilts here" in text
    assert "00:00:01:06" in text  # frame 30 at 24 fps
    assert 'data-frame="30"' in text


def test_a_comment_over_a_range_and_one_on_the_whole_take(cast, take):
    assert _post(cast.editor, take, body="Flicker", frame="10", frame_end="20").status_code == 200
    assert _post(cast.editor, take, body="Overall too dark").status_code == 200
    ranged, whole = Comment.objects.order_by("pk")
    assert (ranged.frame, ranged.frame_end) == (10, 20)
    assert (whole.frame, whole.frame_end) == (None, None)


@pytest.mark.parametrize(("frame", "frame_end", "message"), [
    ("48", "", "outside take"),
    ("-1", "", "whole number"),
    ("x", "", "whole number"),
    ("", "5", "first frame too"),
    ("20", "10", "ends after it starts"),
    ("20", "48", "ends after it starts"),
])
def test_it_refuses_frames_outside_the_take(cast, take, frame, frame_end, message):
    response = _post(cast.reviewer, take, body="Here", frame=frame, frame_end=frame_end)
    assert response.status_code == 422
    assert message in response.content.decode()
    assert not Comment.objects.exists()


def test_it_refuses_an_empty_or_overlong_comment(cast, take):
    assert _post(cast.reviewer, take, body="   ").status_code == 422
    response = _post(cast.reviewer, take, body="x" * (comments.BODY_LIMIT + 1))
    assert response.status_code == 422
    assert f"under {comments.BODY_LIMIT} characters" in response.content.decode()
    assert not Comment.objects.exists()


def test_it_refuses_a_take_without_a_video(cast):
    running = GenerationFactory(shot=cast.shot, state=Generation.State.IN_PROGRESS, progress=0.3)
    assert _post(cast.reviewer, running, body="Soon").status_code == 422
    assert not Comment.objects.exists()


@pytest.mark.parametrize(("role", "allowed"), [("owner", True), ("producer", True),
                                               ("editor", True), ("reviewer", True),
                                               ("viewer", False)])
def test_who_may_comment(cast, take, role, allowed):
    response = _post(cast.member(role), take, body="Note")
    assert response.status_code == (200 if allowed else 403)
    assert Comment.objects.exists() is allowed


def test_a_viewer_reads_comments_without_forms(cast, take):
    comments.post(take=take, user=cast.reviewer, body="Seen by all", frame=3)
    page = client_for(cast.viewer).get(reverse("sb:take-comments", args=[take.uid]), **HTMX)
    text = page.content.decode()
    assert "Seen by all" in text
    assert "<form" not in text


def test_another_team_sees_and_writes_nothing(cast, take):
    comment = comments.post(take=take, user=cast.reviewer, body="Ours", frame=3)
    outsider = client_for(cast.outsider)
    assert outsider.get(reverse("sb:take-comments", args=[take.uid]), **HTMX).status_code == 404
    assert _post(cast.outsider, take, body="Theirs").status_code == 404
    assert outsider.post(reverse("sb:comment-resolve", args=[comment.pk]),
                         {"resolved": "1"}).status_code == 404
    assert list(Comment.objects.values_list("body", "resolved_at")) == [("Ours", None)]


def test_replies_thread_under_the_first_comment(cast, take):
    first = comments.post(take=take, user=cast.reviewer, body="Too fast", frame=12)
    assert _post(cast.editor, take, body="Slowed it", parent=str(first.pk)).status_code == 200
    reply = Comment.objects.get(parent=first)
    # A reply to a reply joins the same thread; replies carry no frame of their own.
    _post(cast.reviewer, take, body="Thanks", parent=str(reply.pk), frame="40")
    assert list(first.replies.values_list("body", "frame")) == [("Slowed it", None),
                                                                 ("Thanks", None)]


def test_a_reply_to_a_comment_on_another_take_is_refused(cast, take):
    other = GenerationFactory(shot=ShotFactory(project=cast.project))
    foreign = comments.post(take=other, user=cast.reviewer, body="Elsewhere")
    assert _post(cast.editor, take, body="Hm", parent=str(foreign.pk)).status_code == 422
    assert Comment.objects.count() == 1


def test_resolving_and_reopening_keep_who_and_when(cast, take):
    comment = comments.post(take=take, user=cast.reviewer, body="Fix the sky", frame=5)
    url = reverse("sb:comment-resolve", args=[comment.pk])
    assert client_for(cast.editor).post(url, {"resolved": "1"}, **HTMX).status_code == 200
    comment.refresh_from_db()
    assert comment.resolved_by == cast.editor
    assert comment.resolved_at is not None
    assert client_for(cast.viewer).post(url, {"resolved": "0"}, **HTMX).status_code == 403
    assert client_for(cast.reviewer).post(url, {"resolved": "0"}, **HTMX).status_code == 200
    comment.refresh_from_db()
    assert comment.resolved_at is None


def test_text_is_plain_links_work_and_only_team_mentions_are_marked(cast, take):
    body = "<script>x</script> see https://example.com/a?b=1 @editor-a and @stranger"
    comments.post(take=take, user=cast.reviewer, body=body)
    text = client_for(cast.editor).get(reverse("sb:take-comments", args=[take.uid]),
                                       **HTMX).content.decode()
    assert "<script>x" not in text
    assert "&lt;script&gt;x&lt;/script&gt;" in text
    assert '<a href="https://example.com/a?b=1" rel="noopener noreferrer nofollow"' in text
    assert '<span class="mention">@editor-a</span>' in text
    assert '<span class="mention">@stranger</span>' not in text


def test_the_shot_page_opens_the_take_asked_for_in_its_player(cast, take):
    other = GenerationFactory(shot=cast.shot)
    page = client_for(cast.reviewer).get(reverse("sb:shot", args=[cast.shot.pk]),
                                         {"take": str(other.uid)}).content.decode()
    assert f"Take #{other.pk}</h3>" in page
    assert f'data-take="{other.uid}"' in page
    junk = client_for(cast.reviewer).get(reverse("sb:shot", args=[cast.shot.pk]),
                                         {"take": "nonsense"})
    assert junk.status_code == 200


@pytest.mark.django_db(transaction=True)
async def test_a_new_comment_reaches_open_pages_live(cast):
    from asgiref.sync import sync_to_async

    from tests.test_realtime import _drain, _receive_until, _socket

    take = await sync_to_async(GenerationFactory)(shot=cast.shot, duration=2.0)
    ws = await _socket(cast.viewer, cast.project.pk)
    assert (await ws.connect())[0]
    await _drain(ws)
    response = await sync_to_async(_post)(cast.reviewer, take, body="Live", frame="4")
    assert response.status_code == 200
    pushed = await _receive_until(ws, f'id="comments-{take.uid}"')
    assert reverse("sb:take-comments", args=[take.uid]) in pushed
    await ws.disconnect()


# Regenerate from note


def test_regenerate_from_a_note_keeps_the_takes_parameters_and_adds_the_note(cast):
    from storyboard.models import Shot

    shot = cast.shot
    Shot.objects.filter(pk=shot.pk).update(prompt="Now a different prompt", resolution="480p")
    take = GenerationFactory(
        shot=shot, duration=2.0, seed=77, endpoint="bytedance/seedance-2.0/fast/text-to-video",
        input={"prompt": "A lighthouse at dusk", "resolution": "720p", "aspect_ratio": "16:9",
               "duration": "5", "generate_audio": False, "seed": 77})
    note = comments.post(take=take, user=cast.reviewer, body="Warmer light", frame=3)
    url = reverse("sb:comment-regenerate", args=[note.pk])
    form = client_for(cast.editor).get(url, **HTMX).content.decode()
    assert "A lighthouse at dusk\n\nWarmer light" in form
    response = client_for(cast.editor).post(
        url, {"prompt": "A lighthouse at dusk\n\nWarmer light"}, **HTMX)
    assert response.status_code == 200
    new = Generation.objects.exclude(pk=take.pk).get()
    assert new.input == {**take.input, "prompt": "A lighthouse at dusk\n\nWarmer light"}
    assert (new.endpoint, new.seed, new.answers) == (take.endpoint, 77, note)
    # The shot itself is unchanged, and the note says which take answered it.
    assert Shot.objects.get(pk=shot.pk).prompt == "Now a different prompt"
    text = client_for(cast.viewer).get(reverse("sb:take-comments", args=[take.uid]),
                                       **HTMX).content.decode()
    assert f"Answered by <a href=\"?take={new.uid}\">take #{new.pk}</a>" in text


def test_regenerate_from_a_note_is_for_editors_and_respects_the_lock(cast):
    from storyboard import review
    from storyboard.models import Shot

    take = GenerationFactory(shot=cast.shot, duration=2.0)
    note = comments.post(take=take, user=cast.reviewer, body="Warmer", frame=3)
    url = reverse("sb:comment-regenerate", args=[note.pk])
    assert client_for(cast.reviewer).post(url, {"prompt": "x"}, **HTMX).status_code == 403
    assert client_for(cast.viewer).get(url, **HTMX).status_code == 403
    Shot.objects.filter(pk=cast.shot.pk).update(selected_take=take)
    review.decide(shot=cast.shot, user=cast.editor, kind=review.Kind.SUBMIT)
    review.decide(shot=cast.shot, user=cast.reviewer, kind=review.Kind.APPROVE)
    response = client_for(cast.editor).post(url, {"prompt": "Warmer"}, **HTMX)
    assert response.status_code == 422
    assert "un-approve it first" in response.content.decode()
    assert Generation.objects.count() == 1


# Drawings on the paused frame


def test_a_comment_keeps_its_drawing_for_its_frame(cast, take):
    import json

    drawing = [{"tool": "rect", "points": [[0.1, 0.2], [0.5, 0.6]]},
               {"tool": "free", "points": [[0.1, 0.1], [0.2, 0.25], [0.3, 0.2]]}]
    response = _post(cast.reviewer, take, body="This flare", frame="12",
                     drawing=json.dumps(drawing))
    assert response.status_code == 200
    assert Comment.objects.get().drawing == drawing
    assert 'data-drawing="[{&quot;tool&quot;:&quot;rect&quot;' in response.content.decode()


@pytest.mark.parametrize("drawing", [
    "not json",
    '{"tool": "rect"}',
    '[{"tool": "circle", "points": [[0, 0], [1, 1]]}]',
    '[{"tool": "rect", "points": [[0, 0]]}]',
    '[{"tool": "arrow", "points": [[0, 0], [1.5, 1]]}]',
    '[{"tool": "rect", "points": [["x", 0], [1, 1]]}]',
])
def test_a_drawing_that_is_not_marks_inside_the_picture_is_refused(cast, take, drawing):
    response = _post(cast.reviewer, take, body="Here", frame="3", drawing=drawing)
    assert response.status_code == 422
    assert not Comment.objects.exists()


def test_only_the_tool_and_points_of_a_mark_are_kept(cast, take):
    drawing = '[{"tool": "free", "points": [[0, 0], [1, 1]], "onclick": "x"}]'
    assert _post(cast.reviewer, take, body="Here", frame="3", drawing=drawing).status_code == 200
    assert Comment.objects.get().drawing == [{"tool": "free", "points": [[0, 0], [1, 1]]}]


def test_a_drawing_needs_a_frame(cast, take):
    response = _post(cast.reviewer, take, body="Here",
                     drawing='[{"tool": "rect", "points": [[0, 0], [1, 1]]}]')
    assert response.status_code == 422
    assert "pause on it first" in response.content.decode()
    assert not Comment.objects.exists()
