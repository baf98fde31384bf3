"""Review sessions: starting one, the presenter's reports, control changing hands, the end;
every view by role, and the socket's part against the real ASGI application."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django.urls import reverse

from storyboard import sessions
from storyboard.models import ReviewSession, Shot
from tests.conftest import client_for
from tests.factories import GenerationFactory, ProjectFactory, ShotFactory
from tests.test_realtime import _socket

pytestmark = pytest.mark.django_db

ROLES = ("owner", "producer", "editor", "reviewer", "viewer")


def _in_review(shot: Shot):
    take = GenerationFactory(shot=shot)
    Shot.objects.filter(pk=shot.pk).update(review=Shot.Review.IN_REVIEW, review_take=take,
                                           selected_take=take)
    return take


def _state(session: ReviewSession, **changes) -> dict:
    return {**session.state, "at": sessions.now_ms(), **changes}


@pytest.fixture
def session(cast) -> ReviewSession:
    _in_review(cast.shot)
    return sessions.start(project=cast.project, user=cast.reviewer, shot_ids=None)


class TestStart:
    def test_it_plays_the_shots_in_review_in_board_order(self, cast):
        after = cast.shot.position
        later = ShotFactory(project=cast.project, position=after + 5)
        _in_review(later)
        take = _in_review(cast.shot)
        ShotFactory(project=cast.project, position=after + 9)  # a draft: not in the playlist
        session = sessions.start(project=cast.project, user=cast.editor, shot_ids=None)
        assert session.shot_ids == [cast.shot.pk, later.pk]
        assert session.presenter == cast.editor
        assert session.state["take"] == str(take.uid)
        assert session.state["playing"] is False

    def test_it_plays_the_chosen_shots_in_board_order(self, cast):
        second = ShotFactory(project=cast.project, position=cast.shot.position + 5)
        session = sessions.start(project=cast.project, user=cast.owner,
                                 shot_ids=[second.pk, cast.shot.pk], title="Client pass")
        assert session.shot_ids == [cast.shot.pk, second.pk]
        assert session.title == "Client pass"

    def test_it_refuses_an_empty_review(self, cast):
        with pytest.raises(sessions.SessionRefused, match="No shot of this project is in review"):
            sessions.start(project=cast.project, user=cast.owner, shot_ids=None)
        assert not ReviewSession.objects.exists()

    def test_it_refuses_another_projects_shot(self, cast):
        elsewhere = ShotFactory(project=ProjectFactory(team=cast.team))
        with pytest.raises(sessions.SessionRefused, match="not on this board"):
            sessions.start(project=cast.project, user=cast.owner,
                           shot_ids=[cast.shot.pk, elsewhere.pk])
        assert not ReviewSession.objects.exists()

    def test_it_refuses_a_viewer(self, cast):
        _in_review(cast.shot)
        with pytest.raises(sessions.SessionRefused, match="Viewers can join"):
            sessions.start(project=cast.project, user=cast.viewer, shot_ids=None)


class TestReports:
    def test_the_presenters_report_is_kept_for_late_joiners(self, session, cast):
        state = sessions.report(session_id=session.pk, user=cast.reviewer,
                                raw=_state(session, t=1.5, playing=True), store=True)
        session.refresh_from_db()
        assert session.state == state
        assert session.state["t"] == 1.5
        assert session.state["playing"] is True

    def test_a_heartbeat_is_relayed_not_kept(self, session, cast):
        before = session.state
        sessions.report(session_id=session.pk, user=cast.reviewer, raw=_state(session, t=1.0),
                        store=False)
        session.refresh_from_db()
        assert session.state == before

    def test_it_refuses_a_report_from_anyone_but_the_presenter(self, session, cast):
        before = session.state
        with pytest.raises(sessions.SessionRefused, match="Only the presenter"):
            sessions.report(session_id=session.pk, user=cast.editor,
                            raw=_state(session, t=2.0), store=True)
        session.refresh_from_db()
        assert session.state == before

    @pytest.mark.parametrize(("changes", "message"), [
        ({"item": 3}, "not in the playlist"),
        ({"t": float("nan")}, "not inside a take"),
        ({"t": -1}, "not inside a take"),
        ({"rate": 3}, "Play at"),
        ({"mode": "overlay"}, "side by side"),
        ({"at": 0}, "clock"),
        ({"item": "x"}, "numbers"),
    ])
    def test_it_refuses_a_bad_report(self, session, cast, changes, message):
        with pytest.raises(sessions.SessionRefused, match=message):
            sessions.report(session_id=session.pk, user=cast.reviewer,
                            raw=_state(session, **changes), store=True)

    def test_it_refuses_another_shots_take(self, session, cast):
        other = GenerationFactory(shot=ShotFactory(project=cast.project))
        with pytest.raises(sessions.SessionRefused, match="not a finished take of this shot"):
            sessions.report(session_id=session.pk, user=cast.reviewer,
                            raw=_state(session, compare=str(other.uid)), store=True)

    def test_an_ended_session_takes_no_reports(self, session, cast):
        sessions.end(session=session, user=cast.reviewer)
        with pytest.raises(sessions.SessionRefused, match="ended"):
            sessions.report(session_id=session.pk, user=cast.reviewer, raw=_state(session),
                            store=True)


class TestViews:
    @pytest.mark.parametrize("role", ROLES)
    def test_every_member_sees_the_sessions_page(self, cast, role):
        response = client_for(cast.member(role)).get(
            reverse("sb:review-sessions", args=[cast.project.pk]))
        assert response.status_code == 200
        assert (b"Start and present" in response.content) == (role != "viewer")

    @pytest.mark.parametrize("role", ["owner", "producer", "editor", "reviewer"])
    def test_it_starts_a_session_for_roles_that_comment(self, cast, role):
        _in_review(cast.shot)
        response = client_for(cast.member(role)).post(
            reverse("sb:review-sessions", args=[cast.project.pk]), {"shots": "review"})
        session = ReviewSession.objects.get()
        assert response.status_code == 302
        assert response["Location"] == reverse("sb:review-session", args=[session.pk])
        assert session.presenter == cast.member(role)

    def test_it_refuses_a_viewer_starting_one(self, cast):
        _in_review(cast.shot)
        response = client_for(cast.viewer).post(
            reverse("sb:review-sessions", args=[cast.project.pk]), {"shots": "review"})
        assert response.status_code == 403
        assert not ReviewSession.objects.exists()

    def test_it_keeps_the_form_when_nothing_is_chosen(self, cast):
        response = client_for(cast.editor).post(
            reverse("sb:review-sessions", args=[cast.project.pk]),
            {"shots": "chosen", "title": "Tuesday pass"})
        assert response.status_code == 422
        assert b"Choose at least one shot" in response.content
        assert b'value="Tuesday pass"' in response.content
        assert not ReviewSession.objects.exists()

    @pytest.mark.parametrize("who", ["outsider", None])
    def test_it_shows_nothing_to_anyone_outside_the_team(self, session, cast, who):
        client = client_for(getattr(cast, who) if who else None)
        for url in (reverse("sb:review-sessions", args=[cast.project.pk]),
                    reverse("sb:review-session", args=[session.pk])):
            response = client.get(url)
            assert response.status_code in (302, 404)
            assert session.title.encode() not in response.content

    @pytest.mark.parametrize("role", ROLES)
    def test_every_member_can_follow(self, session, cast, role):
        response = client_for(cast.member(role)).get(
            reverse("sb:review-session", args=[session.pk]))
        assert response.status_code == 200
        assert f'data-take="{session.state["take"]}"'.encode() in response.content

    def test_the_stage_shows_the_take_and_compare_asked_for(self, session, cast):
        other = GenerationFactory(shot=cast.shot)
        response = client_for(cast.viewer).get(
            reverse("sb:review-session", args=[session.pk]),
            {"item": 0, "take": session.state["take"], "compare": str(other.uid),
             "mode": "wipe"}, headers={"HX-Request": "true"})
        assert response.status_code == 200
        html = response.content.decode()
        assert html.lstrip().startswith('<section class="session-stage"')
        assert f'data-compare="{other.uid}"' in html
        assert 'data-mode="wipe"' in html
        assert html.count('class="player"') == 2

    def test_a_take_of_another_shot_is_never_shown(self, session, cast):
        other = GenerationFactory(shot=ShotFactory(project=cast.project))
        response = client_for(cast.viewer).get(
            reverse("sb:review-session", args=[session.pk]),
            {"item": 0, "take": str(other.uid)}, headers={"HX-Request": "true"})
        assert str(other.uid) not in response.content.decode()


class TestControl:
    def test_the_presenter_hands_over(self, session, cast):
        response = client_for(cast.reviewer).post(
            reverse("sb:session-control", args=[session.pk]), {"to": cast.viewer.pk})
        assert response.status_code == 302
        session.refresh_from_db()
        assert session.presenter == cast.viewer

    def test_the_starter_takes_control_back(self, session, cast):
        sessions.hand_over(session=session, user=cast.reviewer, to=cast.editor)
        client_for(cast.reviewer).post(reverse("sb:session-control", args=[session.pk]),
                                       {"to": cast.reviewer.pk})
        session.refresh_from_db()
        assert session.presenter == cast.reviewer

    def test_it_refuses_someone_else_taking_control(self, session, cast):
        response = client_for(cast.editor).post(
            reverse("sb:session-control", args=[session.pk]), {"to": cast.editor.pk},
            headers={"HX-Request": "true"})
        assert response.status_code == 422
        assert b"Only the presenter hands over control" in response.content
        session.refresh_from_db()
        assert session.presenter == cast.reviewer

    def test_it_refuses_handing_to_someone_outside_the_team(self, session, cast):
        response = client_for(cast.reviewer).post(
            reverse("sb:session-control", args=[session.pk]), {"to": cast.outsider.pk},
            headers={"HX-Request": "true"})
        assert response.status_code == 422
        session.refresh_from_db()
        assert session.presenter == cast.reviewer

    def test_another_team_cannot_touch_it(self, session, cast):
        client = client_for(cast.outsider)
        assert client.post(reverse("sb:session-control", args=[session.pk]),
                           {"to": cast.outsider.pk}).status_code == 404
        assert client.post(reverse("sb:session-end", args=[session.pk])).status_code == 404
        session.refresh_from_db()
        assert session.presenter == cast.reviewer
        assert session.is_live

    def test_the_presenter_ends_it(self, session, cast):
        response = client_for(cast.reviewer).post(reverse("sb:session-end", args=[session.pk]))
        assert response.status_code == 302
        session.refresh_from_db()
        assert not session.is_live

    def test_a_follower_cannot_end_it(self, session, cast):
        client_for(cast.editor).post(reverse("sb:session-end", args=[session.pk]))
        session.refresh_from_db()
        assert session.is_live

    def test_a_producer_ends_it(self, session, cast):
        client_for(cast.producer).post(reverse("sb:session-end", args=[session.pk]))
        session.refresh_from_db()
        assert not session.is_live


@pytest.mark.django_db(transaction=True)
class TestSocket:
    async def _joined(self, user, project_id: int, session_id: int):
        ws = await _socket(user, project_id)
        connected, _ = await ws.connect()
        assert connected
        await ws.send_to(text_data=json.dumps({"session": session_id, "op": "join"}))
        return ws

    async def _next(self, ws, op: str) -> dict:
        while True:
            text = await ws.receive_from(timeout=3)
            if text.startswith("{"):
                message = json.loads(text)
                if message.get("op") == op:
                    return message

    async def test_a_follower_hears_the_presenter_and_nobody_else(self, cast):
        session = await sync_to_async(
            lambda: sessions.start(project=cast.project, user=cast.reviewer,
                                   shot_ids=[cast.shot.pk]))()
        take = await sync_to_async(GenerationFactory)(shot=cast.shot)
        presenter = await self._joined(cast.reviewer, cast.project.pk, session.pk)
        await self._next(presenter, "state")  # its own join
        follower = await self._joined(cast.viewer, cast.project.pk, session.pk)
        joined = await self._next(follower, "state")
        assert joined["presenter"]["id"] == cast.reviewer.pk

        state = {"item": 0, "take": str(take.uid), "t": 2.25, "playing": True, "rate": 1,
                 "at": sessions.now_ms()}
        await presenter.send_to(text_data=json.dumps(
            {"session": session.pk, "op": "state", "state": state}))
        heard = await self._next(follower, "state")
        assert heard["state"]["t"] == 2.25
        assert heard["state"]["take"] == str(take.uid)

        # A follower's report goes nowhere; it is told why.
        await follower.send_to(text_data=json.dumps(
            {"session": session.pk, "op": "state", "state": {**state, "t": 4.0}}))
        refused = await self._next(follower, "refused")
        assert "Only the presenter" in refused["message"]
        stored = await sync_to_async(lambda: ReviewSession.objects.get(pk=session.pk).state)()
        assert stored["t"] == 2.25

        # Asking for control reaches the presenter, with the asker's name; the follower's
        # refused report (sent before) never reached it.
        await follower.send_to(text_data=json.dumps({"session": session.pk, "op": "ask"}))
        while True:
            text = await presenter.receive_from(timeout=3)
            if not text.startswith("{"):
                continue
            message = json.loads(text)
            assert message["op"] != "state"
            if message["op"] == "ask":
                break
        assert message["id"] == cast.viewer.pk
        await presenter.disconnect()
        await follower.disconnect()

    async def test_the_clock_answers_with_the_servers_time(self, cast):
        ws = await _socket(cast.viewer, cast.project.pk)
        await ws.connect()
        await ws.send_to(text_data=json.dumps({"session": 1, "op": "clock", "c": 123}))
        reply = await self._next(ws, "clock")
        assert reply["c"] == 123
        assert abs(reply["s"] - sessions.now_ms()) < 5_000
        await ws.disconnect()

    async def test_another_projects_session_is_not_joined(self, cast):
        other = await sync_to_async(ProjectFactory)(team=cast.team)
        shot = await sync_to_async(ShotFactory)(project=other)
        session = await sync_to_async(
            lambda: sessions.start(project=other, user=cast.owner, shot_ids=[shot.pk]))()
        ws = await self._joined(cast.viewer, cast.project.pk, session.pk)
        refused = await self._next(ws, "refused")
        assert refused["message"] == "No such review session."
        await ws.disconnect()
