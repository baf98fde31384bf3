"""Notifications: mentions, replies and review decisions reach the right people, by bell,
page and email, and nobody else (issue #12)."""

from __future__ import annotations

import pytest
from django.core import mail
from django.urls import reverse

from storyboard import comments, review
from storyboard.models import Notification, Shot
from tests.conftest import client_for
from tests.factories import GenerationFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def take(cast):
    for person in (cast.editor, cast.reviewer, cast.producer):
        person.email = f"{person.username}@example.com"
        person.save(update_fields=["email"])
    return GenerationFactory(shot=cast.shot, duration=2.0, created_by=cast.editor)


def _for(user) -> list[str]:
    return list(Notification.objects.filter(user=user).values_list("kind", flat=True))


def test_a_mention_of_a_team_member_notifies_them_by_bell_and_email(
        cast, take, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        comments.post(take=take, user=cast.reviewer,
                      body="@editor-a the sky flickers @charlie", frame=3)
    assert _for(cast.editor) == ["mention"]
    # Charlie is not in the team: his name is plain text and he hears nothing.
    assert _for(cast.outsider) == []
    assert _for(cast.reviewer) == []
    assert [m.to for m in mail.outbox] == [["editor-a@example.com"]]
    assert "mentioned you" in mail.outbox[0].subject
    page = client_for(cast.editor).get(reverse("sb:projects", args=[cast.team.pk]))
    assert '<span class="bell-count">1</span>' in page.content.decode()


def test_a_reply_notifies_the_thread_but_not_its_writer(cast, take):
    first = comments.post(take=take, user=cast.reviewer, body="Too fast", frame=3)
    comments.post(take=take, user=cast.producer, body="Agreed", parent=first)
    comments.post(take=take, user=cast.editor, body="Slowed it", parent=first)
    assert _for(cast.reviewer) == ["reply", "reply"]
    assert _for(cast.producer) == ["reply"]
    assert _for(cast.editor) == []


def test_a_decision_notifies_who_worked_on_the_shot(cast, take):
    cast.shot.change(values={"title": "Cliff"}, user=cast.producer)
    Shot.objects.filter(pk=cast.shot.pk).update(selected_take=take)
    review.decide(shot=cast.shot, user=cast.editor, kind=review.Kind.SUBMIT)
    assert Notification.objects.count() == 0  # submitting is nobody's news yet
    review.decide(shot=cast.shot, user=cast.reviewer, kind=review.Kind.CHANGES,
                  note="Warmer")
    assert _for(cast.editor) == ["decision"]
    assert _for(cast.producer) == ["decision"]
    assert _for(cast.reviewer) == []
    text = Notification.objects.filter(user=cast.editor).get().text
    assert "sent back take" in text
    assert "Warmer" in text


def test_emails_can_be_turned_off(cast, take, django_capture_on_commit_callbacks):
    client_for(cast.editor).post(reverse("sb:notifications"), {"email": "off"})
    cast.editor.refresh_from_db()
    assert cast.editor.email_notifications is False
    with django_capture_on_commit_callbacks(execute=True):
        comments.post(take=take, user=cast.reviewer, body="@editor-a look", frame=3)
    assert _for(cast.editor) == ["mention"]
    assert mail.outbox == []


def test_opening_a_notification_marks_it_read_and_goes_to_the_comment(cast, take):
    comment = comments.post(take=take, user=cast.reviewer, body="@editor-a here", frame=3)
    item = Notification.objects.get(user=cast.editor)
    response = client_for(cast.editor).get(reverse("sb:notification-open", args=[item.pk]))
    assert response.status_code == 302
    assert response.url == f"/shots/{cast.shot.pk}/?take={take.uid}#comment-{comment.pk}"
    item.refresh_from_db()
    assert item.read_at is not None
    # Someone else's notification does not exist for you.
    assert client_for(cast.reviewer).get(
        reverse("sb:notification-open", args=[item.pk])).status_code == 404


def test_the_page_lists_only_ones_own_and_marks_all_read(cast, take):
    comments.post(take=take, user=cast.reviewer, body="@editor-a and @producer-a", frame=3)
    page = client_for(cast.editor).get(reverse("sb:notifications")).content.decode()
    assert page.count('class="notification is-unread"') == 1
    client_for(cast.editor).post(reverse("sb:notifications"), {"read": "all"})
    assert not Notification.objects.filter(user=cast.editor, read_at=None).exists()
    assert Notification.objects.filter(user=cast.producer, read_at=None).exists()


def test_a_member_who_left_is_not_notified(cast, take):
    gone = UserFactory(username="gone")
    comments.post(take=take, user=cast.reviewer, body="@gone see this", frame=3)
    assert _for(gone) == []


@pytest.mark.django_db(transaction=True)
async def test_the_bell_rings_live_on_a_page_without_a_board(cast):
    from asgiref.sync import sync_to_async
    from channels.testing import WebsocketCommunicator

    from storyboard.asgi import application
    from tests.test_realtime import ORIGIN, _receive_until, _session_cookie

    take = await sync_to_async(GenerationFactory)(shot=cast.shot, duration=2.0)
    ws = WebsocketCommunicator(application, "/ws/me/", headers=[
        (b"origin", ORIGIN), (b"cookie", await _session_cookie(cast.editor))])
    assert (await ws.connect())[0]
    await sync_to_async(comments.post)(take=take, user=cast.reviewer, body="@editor-a hi",
                                       frame=1)
    bell = await _receive_until(ws, 'id="bell"')
    assert '<span class="bell-count">1</span>' in bell
    await ws.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_the_person_socket_refuses_anonymous():
    from channels.testing import WebsocketCommunicator

    from storyboard.asgi import application
    from tests.test_realtime import ORIGIN

    ws = WebsocketCommunicator(application, "/ws/me/", headers=[(b"origin", ORIGIN)])
    connected, _ = await ws.connect()
    assert not connected
