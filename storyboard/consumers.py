from __future__ import annotations

import json
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string
from django.utils import timezone

from storyboard import realtime, sessions
from storyboard.access import can_view_project
from storyboard.models import Presence, ReviewSession, Shot

# Close codes in the 4000–4999 application range so the browser can tell why it was shut out.
CLOSE_FORBIDDEN = 4403

# Tells a live page it missed pushes: live.js and board.js fetch what the page shows.
RESYNC = realtime.RESYNC


class BoardConsumer(AsyncWebsocketConsumer):
    """One socket per open board: receives rendered fragments, reports presence."""

    project_id: int
    team_id: int | None = None
    audience_groups: set[str]
    # The last push number heard per group (realtime: numbered pushes).
    numbers: dict[str, int]

    async def connect(self) -> None:
        self.project_id = self.scope["url_route"]["kwargs"]["project_id"]
        user = self.scope["user"]
        membership = await database_sync_to_async(can_view_project)(user, self.project_id)
        if membership is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.team_id = membership.team_id
        await self.channel_layer.group_add(realtime.project_group(self.project_id),
                                           self.channel_name)
        await self._join_audiences(membership)
        await self.channel_layer.group_add(realtime.user_group(user.pk), self.channel_name)
        await self.accept()
        realtime.remember_server_loop()
        # Read after joining, so a push this socket will not hear is counted here (in the same
        # trip to a worker thread as the arrival: 500 people arriving at once queue for them).
        self.numbers = await database_sync_to_async(self._arrive)(count_pushes=True)
        seen = parse_qs(self.scope.get("query_string", b"").decode()).get("seen", [""])[0]
        if seen.isdigit() and int(seen) != sum(self.numbers.values()):
            # Pushes went out between the page's render and this socket (or while an earlier
            # socket of the page was down, or the counters were reset): fetch the page's state.
            await self.send(text_data=RESYNC)
        realtime.presence_changed(self.project_id)

    async def disconnect(self, code: int) -> None:
        if self.team_id is None:
            return
        await self.channel_layer.group_discard(realtime.project_group(self.project_id),
                                               self.channel_name)
        await self.channel_layer.group_discard(realtime.user_group(self.scope["user"].pk),
                                               self.channel_name)
        await self._join_audiences(None)
        for session_id in getattr(self, "session_ids", ()):
            await self.channel_layer.group_discard(sessions.group(session_id), self.channel_name)
        await database_sync_to_async(self._leave)()
        realtime.presence_changed(self.project_id)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # A board or shot page sends its presence ping and "editing field F of shot S"
        # (htmx ws-send of small forms).
        try:
            message = json.loads(text_data or "")
        except ValueError:
            return
        if isinstance(message, dict) and "editing" in message:
            await self._editing(message)
            return
        if isinstance(message, dict) and "session" in message:
            await self._session(message)
            return
        if not (isinstance(message, dict) and "ping" in message):
            return
        if not await database_sync_to_async(self._may_stay)():
            await self.access_revoked({"team_id": self.team_id})
        elif not await database_sync_to_async(self._seen)():
            # The row was swept while this socket was quiet; put it back.
            await database_sync_to_async(self._arrive)()
            realtime.presence_changed(self.project_id)

    async def board_html(self, event: dict) -> None:
        await self.send(text_data=event["html"])
        if self._skipped(event.get("group"), event.get("number")):
            await self.send(text_data=RESYNC)

    def _skipped(self, group: str | None, number: int | None) -> bool:
        """Whether a numbered push arrived after a gap (the layer dropped one for this socket:
        its channel was full). Numbers that go backwards (the counter was reset, or two server
        processes' pushes crossed) are taken as they come."""
        if group is None or number is None:
            return False
        last = self.numbers.get(group)
        self.numbers[group] = number
        return last is not None and number > last + 1

    async def _join_audiences(self, membership) -> None:
        """Be in the groups of the member's role (board pushes are rendered per role), and
        in no other."""
        wanted = {realtime.audience_group(self.project_id, audience)
                  for audience in (realtime.audiences_for(membership) if membership else ())}
        joined = getattr(self, "audience_groups", set())
        for group in joined - wanted:
            await self.channel_layer.group_discard(group, self.channel_name)
        for group in wanted - joined:
            await self.channel_layer.group_add(group, self.channel_name)
        self.audience_groups = wanted
        numbers = getattr(self, "numbers", None)
        if numbers is not None:
            # A group joined on a role change is counted from now; a group left, no longer.
            joined_now = await database_sync_to_async(realtime.push_numbers)(wanted - joined)
            for group in joined - wanted:
                numbers.pop(group, None)
            numbers.update(joined_now)

    async def role_changed(self, event: dict) -> None:
        if event["team_id"] != self.team_id:
            return
        membership = await database_sync_to_async(can_view_project)(self.scope["user"],
                                                                    self.project_id)
        if membership is None:
            await self.access_revoked({"team_id": self.team_id})
            return
        await self._join_audiences(membership)

    async def access_revoked(self, event: dict) -> None:
        if event["team_id"] == self.team_id:
            await self.close(code=CLOSE_FORBIDDEN)
            await self.disconnect(CLOSE_FORBIDDEN)
            self.team_id = None

    # Field presence: "user X is editing field F of shot S" (and "stopped"), relayed to the
    # project's other sockets as a fragment that puts an avatar beside the field (shot.html).

    async def _editing(self, message: dict) -> None:
        html, shot_id = await database_sync_to_async(self._editing_html)(
            message.get("shot"), message.get("editing"))
        if html:
            self.editing_shot = shot_id if message.get("editing") else None
            await self.channel_layer.group_send(realtime.project_group(self.project_id), {
                "type": "field.editing", "html": html, "sender": self.channel_name})

    async def field_editing(self, event: dict) -> None:
        if event["sender"] != self.channel_name:
            await self.send(text_data=event["html"])

    async def websocket_disconnect(self, message: dict) -> None:
        # A closed tab stops editing: take its avatar off the field it was in.
        if getattr(self, "editing_shot", None) and self.team_id is not None:
            await self._editing({"shot": self.editing_shot, "editing": ""})
        await super().websocket_disconnect(message)

    # Review sessions (sessions.py): JSON messages beside the HTML pushes. A page measures its
    # clock against the server's ("clock"), joins a session ("join": it is sent where the
    # presenter is), and the presenter reports its player ("state", "beat"); anyone may ask
    # for control ("ask"). Everything else about a session is a POST (session_views.py).

    async def _session(self, message: dict) -> None:
        session_id, op = message.get("session"), message.get("op")
        if not isinstance(session_id, int):
            return
        if op == "clock":
            await self._reply(session_id, op="clock", c=message.get("c"), s=sessions.now_ms())
        elif op == "join":
            joined = await database_sync_to_async(self._join_session)(session_id)
            if joined is None:
                await self._reply(session_id, op="refused", message="No such review session.")
                return
            await self.channel_layer.group_add(sessions.group(session_id), self.channel_name)
            self.session_ids = {*getattr(self, "session_ids", ()), session_id}
            await self._reply(session_id, op="state", **joined)
        elif session_id not in getattr(self, "session_ids", ()):
            return
        elif op in ("state", "beat"):
            try:
                state = await database_sync_to_async(sessions.report)(
                    session_id=session_id, user=self.scope["user"], raw=message.get("state"),
                    store=op == "state")
            except sessions.SessionRefused as e:
                await self._reply(session_id, op="refused", message=e.message)
                return
            await self._to_session(session_id, {"op": op, "state": state})
        elif op == "ask":
            user = self.scope["user"]
            await self._to_session(session_id, {"op": "ask", "id": user.pk, "name": user.label})

    async def _reply(self, session_id: int, **payload) -> None:
        await self.send(text_data=json.dumps({"session": session_id, **payload}))

    async def _to_session(self, session_id: int, payload: dict) -> None:
        # Straight from this loop (no thread hand-off): a report is on everyone's screen as
        # soon as the layer delivers it.
        await self.channel_layer.group_send(sessions.group(session_id), {
            "type": "session.message", "sender": self.channel_name,
            "text": json.dumps({"session": session_id, **payload})})

    async def session_message(self, event: dict) -> None:
        if event.get("sender") != self.channel_name:
            await self.send(text_data=event["text"])

    def _join_session(self, session_id: int) -> dict | None:
        session = ReviewSession.objects.select_related("presenter").filter(
            pk=session_id, project_id=self.project_id).first()
        if session is None:
            return None
        presenter = session.presenter
        return {"state": session.state, "ended": not session.is_live,
                "presenter": {"id": presenter.pk, "name": presenter.label} if presenter else None}

    def _editing_html(self, shot: object, field: object) -> tuple[str, int | None]:
        """The fragment for a valid editing message from someone who may edit, else ""."""
        user = self.scope["user"]
        if not str(shot).isdigit() or field not in ("", None, *Shot.EDITABLE):
            return "", None
        membership = can_view_project(user, self.project_id)
        if membership is None or not membership.can_edit:
            return "", None
        if not Shot.objects.filter(pk=int(shot), project_id=self.project_id).exists():
            return "", None
        return render_to_string("storyboard/shot.html#field-editing", {
            "shot_id": int(shot), "field": field or "", "person": user}), int(shot)

    def _arrive(self, *, count_pushes: bool = False) -> dict[str, int]:
        """Note this socket's presence; with `count_pushes`, the push numbers of its groups."""
        # Rows left by a crashed server would otherwise pile up; they are already not shown.
        Presence.objects.stale().delete()
        Presence.objects.update_or_create(
            channel_name=self.channel_name,
            defaults={"project_id": self.project_id, "user": self.scope["user"]},
        )
        if not count_pushes:
            return {}
        return realtime.push_numbers([realtime.project_group(self.project_id),
                                      *self.audience_groups])

    def _may_stay(self) -> bool:
        """False if the socket's user may no longer see the board.

        Removal from the team closes sockets at once (access.revoked); this catches the rest:
        a deleted project, a deactivated user, a membership removed in the admin.
        """
        user = self.scope["user"]
        user.refresh_from_db(fields=["is_active"])
        return user.is_active and can_view_project(user, self.project_id) is not None

    def _seen(self) -> bool:
        """Note that this socket is alive; False if its Presence row is gone."""
        return bool(Presence.objects.filter(channel_name=self.channel_name)
                    .update(seen=timezone.now()))

    def _leave(self) -> None:
        Presence.objects.filter(channel_name=self.channel_name).delete()


class PersonConsumer(AsyncWebsocketConsumer):
    """The socket of a page without a board: it only hears what is for this person (the
    bell). Board and shot pages hear the same through their board socket."""

    async def connect(self) -> None:
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.channel_layer.group_add(realtime.user_group(user.pk), self.channel_name)
        await self.accept()
        # As the board's socket does: the in-memory layer's pushes go through this loop.
        realtime.remember_server_loop()

    async def disconnect(self, code: int) -> None:
        user = self.scope["user"]
        if user.is_authenticated:
            await self.channel_layer.group_discard(realtime.user_group(user.pk),
                                                   self.channel_name)

    async def board_html(self, event: dict) -> None:
        await self.send(text_data=event["html"])

    async def access_revoked(self, event: dict) -> None:
        # Losing a team takes nothing away from one's own bell.
        return

    async def role_changed(self, event: dict) -> None:
        return
