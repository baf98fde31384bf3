"""Outgoing webhooks: a team's owners point endpoints at their pipeline, which then hears about
takes ending, shots approved, exports ready and the budget passing a threshold.

Events are recorded as WebhookDelivery rows in the transaction of the change they announce
(WebhookEndpoint.objects.fire, an outbox), one per subscribed endpoint, and queued after commit.
`deliver` (a task) sends one attempt: claimed by a conditional UPDATE so no two workers send it
at once, signed, POSTed through providers/outbound.py (the downloader's SSRF rules), and
recorded. A 2xx is delivered; anything else is retried after 1 min, 5 min, 30 min, 2 h and 6 h,
then failed, visibly, in the endpoint's delivery log. `requeue` (the reconciler) queues again
what a lost task or a dead worker left behind. Delivery is at least once: receivers drop event
ids they have seen.

Signing, Standard-Webhooks style: `Webhook-Signature: v1=<hex HMAC-SHA256(secret,
f"{timestamp}.{body}")>` over exactly the bytes sent, with `Webhook-Id` (the event id) and
`Webhook-Timestamp` (unix seconds). During the grace after a rotation, a second `v1=` value is
signed with the previous secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.tasks import TaskResultStatus
from django.tasks.exceptions import TaskResultDoesNotExist
from django.urls import reverse
from django.utils import timezone
from django.utils.module_loading import import_string

from accounts.models import Team, User
from storyboard import logs
from storyboard.models import (
    SUBSCRIBABLE_EVENTS,
    WEBHOOK_TASK,
    Budget,
    Export,
    ReviewDecision,
    Shot,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    new_webhook_secret,
    webhook_envelope,
)
from storyboard.providers import outbound

State = WebhookDelivery.State

USER_AGENT = "storyboard-webhooks/1"
# Waits before the 2nd … 6th attempt; after the 6th fails, the delivery has failed.
BACKOFF = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30),
           timedelta(hours=2), timedelta(hours=6))
# A claimed attempt older than this lost its worker (a request is cut after 10 s).
CLAIM_EXPIRES = timedelta(minutes=2)
# A due delivery whose task has not run for this long is looked at by the reconciler.
OVERDUE_AFTER = timedelta(minutes=1)
# After a rotation the previous secret still signs (a second v1= value) for this long.
ROTATION_GRACE = timedelta(hours=24)
ENDPOINTS_PER_TEAM = 20
LABEL_LIMIT = WebhookEndpoint._meta.get_field("label").max_length


class WebhookRefused(Exception):
    """A change to webhooks that was not made; the message says why, in plain words, and
    `field` which input it is about (None: the request as a whole)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def _check_owner(user: User, team_id: int) -> None:
    membership = user.membership_in(team_id)
    if membership is None or not membership.can_manage:
        raise WebhookRefused("Only the team's owners manage its webhooks.")


def _options() -> dict:
    return settings.WEBHOOKS


def check_url(url: str) -> str:
    """The address, stripped, if webhooks may be sent there now; WebhookRefused if not.

    It is resolved now as it will be at every delivery (DNS may change in between, so each
    delivery checks again before it connects).
    """
    url = url.strip()
    try:
        outbound.check(url, allow_http=_options()["allow_http"],
                       extra_networks=_options()["extra_networks"])
    except outbound.OutboundError as e:
        raise WebhookRefused(e.message, field="url") from e
    return url


def _events(events: Iterable[str]) -> list[str]:
    chosen = [event for event in SUBSCRIBABLE_EVENTS if event in set(events)]
    if not chosen:
        raise WebhookRefused("Choose at least one event to send.", field="events")
    return [str(event) for event in chosen]


def _label(label: str) -> str:
    label = label.strip()
    if len(label) > LABEL_LIMIT:
        raise WebhookRefused(f"Keep the name under {LABEL_LIMIT} characters "
                             f"(it has {len(label)}).", field="label")
    return label


# ---------------------------------------------------------------------------------------------
# Endpoints (the owners' page)


def create_endpoint(*, team: Team, user: User, url: str, events: Iterable[str],
                    label: str = "") -> WebhookEndpoint:
    _check_owner(user, team.pk)
    label, chosen = _label(label), _events(events)
    url = check_url(url)
    with transaction.atomic():
        Team.objects.select_for_update().filter(pk=team.pk).first()
        if team.webhook_endpoints.count() >= ENDPOINTS_PER_TEAM:
            raise WebhookRefused(f"A team has at most {ENDPOINTS_PER_TEAM} webhook endpoints; "
                                 "delete one you no longer use.")
        return WebhookEndpoint.objects.create(team=team, url=url, label=label, events=chosen,
                                              created_by=user)


def update_endpoint(*, endpoint: WebhookEndpoint, user: User, events: Iterable[str],
                    active: bool, label: str | None = None) -> WebhookEndpoint:
    """Change what the endpoint hears and whether it hears anything (its address stays: a new
    address is a new endpoint, with a new secret)."""
    _check_owner(user, endpoint.team_id)
    endpoint.events = _events(events)
    endpoint.active = active
    fields = ["events", "active"]
    if label is not None:
        endpoint.label = _label(label)
        fields.append("label")
    endpoint.save(update_fields=fields)
    return endpoint


def delete_endpoint(*, endpoint: WebhookEndpoint, user: User) -> None:
    """The endpoint and its delivery log go; deliveries queued for it are never sent."""
    _check_owner(user, endpoint.team_id)
    endpoint.delete()


def rotate_secret(*, endpoint: WebhookEndpoint, user: User) -> WebhookEndpoint:
    """A new secret at once; the old one also signs for ROTATION_GRACE, so a receiver that
    has not switched yet keeps verifying."""
    _check_owner(user, endpoint.team_id)
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_until = timezone.now() + ROTATION_GRACE
    endpoint.secret = new_webhook_secret()
    endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_until"])
    return endpoint


def send_ping(*, endpoint: WebhookEndpoint, user: User) -> WebhookDelivery:
    """A `ping` to this endpoint alone, whatever it subscribes to, to test the receiver."""
    _check_owner(user, endpoint.team_id)
    now = timezone.now()
    event_id = uuid.uuid4()
    data = {"endpoint_id": endpoint.pk, "sent_by": user.label,
            "message": "A test ping from Storyboard; no action needed."}
    with transaction.atomic():
        delivery = WebhookDelivery.objects.create(
            endpoint=endpoint, event=WebhookEvent.PING, event_id=event_id, next_attempt_at=now,
            payload=webhook_envelope(event_id=event_id, event=WebhookEvent.PING,
                                     team=endpoint.team, data=data, created=now))
        transaction.on_commit(delivery.enqueue)
    return delivery


def redeliver(*, delivery: WebhookDelivery, user: User) -> WebhookDelivery:
    """Send a delivered or failed event again, with the same event id and body (receivers that
    saw it drop it), on a fresh retry schedule."""
    _check_owner(user, delivery.endpoint.team_id)
    now = timezone.now()
    with transaction.atomic():
        moved = WebhookDelivery.objects.filter(
            pk=delivery.pk, state__in=(State.DELIVERED, State.FAILED)).update(
            state=State.PENDING, attempts=0, next_attempt_at=now, claimed_at=None)
        if not moved:
            raise WebhookRefused("This delivery is being sent already.")
        delivery.refresh_from_db()
        transaction.on_commit(delivery.enqueue)
    return delivery


# ---------------------------------------------------------------------------------------------
# Events (each called where the change it announces is written)


def shot_approved(*, shot: Shot, decision: ReviewDecision) -> None:
    """In review.decide's transaction: the take under review was approved (or its final
    render confirmed)."""
    approver = decision.user.label if decision.user_id else decision.guest_name
    WebhookEndpoint.objects.fire(team_id=shot.project.team_id, event=WebhookEvent.SHOT_APPROVED,
                                 data={"shot_id": shot.pk, "shot_number": shot.number,
                                       "shot_title": shot.display_title,
                                       "project_id": shot.project_id,
                                       "take_uid": str(decision.take.uid),
                                       "approved_by": approver,
                                       "by_guest": not decision.user_id,
                                       "final": decision.kind == ReviewDecision.Kind.FINAL})


def export_ready(*, export: Export) -> None:
    """In export._finish's transaction: the file is stored and the export is done."""
    url = settings.SITE_URL + reverse("sb:export-file", args=[export.pk])
    # A pipeline holds an API token, not a session: the API's address of the same file.
    api_url = settings.SITE_URL + reverse("api:api-export-file", args=[export.pk])
    WebhookEndpoint.objects.fire(team_id=export.project.team_id, event=WebhookEvent.EXPORT_READY,
                                 data={"export_id": export.pk, "kind": export.kind,
                                       "project_id": export.project_id,
                                       "download_url": url, "api_url": api_url,
                                       "size": export.size,
                                       "duration": export.duration})


def budget_threshold(*, budget: Budget, threshold: int) -> None:
    """Commitments passed `threshold` percent of the limit: once per threshold per period,
    however many holds (or processes) notice it."""
    once = f"budget.threshold:{budget.team_id}:{budget.period_start.isoformat()}:{threshold}"
    with transaction.atomic():
        WebhookEndpoint.objects.fire(
            team_id=budget.team_id, event=WebhookEvent.BUDGET_THRESHOLD, once_per=once,
            data={"threshold": threshold, "percent": budget.committed_percent,
                  "committed_micros": budget.committed_micros,
                  "spent_micros": budget.charged_micros, "held_micros": budget.held_micros,
                  "limit_micros": budget.limit_micros,
                  "period_start": budget.period_start.isoformat(timespec="seconds")})


# ---------------------------------------------------------------------------------------------
# Sending (in a task worker)


def body_of(delivery: WebhookDelivery) -> bytes:
    return json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of f"{timestamp}.{body}" under `secret` (its text, as shown)."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def headers_for(delivery: WebhookDelivery, body: bytes, *, timestamp: int) -> dict[str, str]:
    signatures = " ".join(f"v1={sign(secret, timestamp, body)}"
                          for secret in delivery.endpoint.signing_secrets())
    return {"Content-Type": "application/json", "User-Agent": USER_AGENT,
            "Webhook-Id": str(delivery.event_id), "Webhook-Timestamp": str(timestamp),
            "Webhook-Signature": signatures}


def deliver(*, delivery_id: int, now: datetime | None = None) -> str | None:
    """Send one attempt of the delivery if it is due and nobody else is sending it; returns
    the state it ended in (None: nothing was due). `now` drives the schedule in tests."""
    now = now or timezone.now()
    delivery = WebhookDelivery.objects.select_related("endpoint__team").filter(
        pk=delivery_id).first()
    if delivery is None or not delivery.claim(now=now):
        return None
    endpoint = delivery.endpoint
    if not endpoint.active and delivery.event != WebhookEvent.PING:
        return _record(delivery, now=now, state=State.FAILED, status=None, response_ms=None,
                       error="The endpoint was turned off before this was sent.")
    body = body_of(delivery)
    options = _options()
    try:
        answer = outbound.post(endpoint.url, body,
                               headers=headers_for(delivery, body, timestamp=int(time.time())),
                               allow_http=options["allow_http"],
                               extra_networks=options["extra_networks"],
                               verify=options["verify"],
                               connect_timeout=options["connect_timeout"],
                               deadline=options["timeout"])
    except outbound.OutboundError as e:
        if e.permanent:
            # Refused before any request: the address now points somewhere we never send.
            return _record(delivery, now=now, state=State.FAILED, status=None, response_ms=None,
                           error=f"Not sent. {e.message}")
        return _failed_attempt(delivery, now=now, status=None, response_ms=None,
                               error=f"{e.message[:1].upper()}{e.message[1:].rstrip('.')}.")
    if 200 <= answer.status < 300:
        return _record(delivery, now=now, state=State.DELIVERED, status=answer.status,
                       response_ms=answer.elapsed_ms, error="")
    return _failed_attempt(delivery, now=now, status=answer.status,
                           response_ms=answer.elapsed_ms, error=_refusal(answer))


def _refusal(answer: outbound.Answer) -> str:
    if 300 <= answer.status < 400:
        return f"The receiver answered {answer.status}, a redirect; redirects are not followed."
    said = answer.body.decode("utf-8", "replace").strip().replace("\n", " ")[:200]
    return f"The receiver answered {answer.status}" + (f": {said}" if said else ".")


def _failed_attempt(delivery: WebhookDelivery, *, now: datetime, status: int | None,
                    response_ms: int | None, error: str) -> str | None:
    if delivery.attempts > len(BACKOFF):
        return _record(delivery, now=now, state=State.FAILED, status=status,
                       response_ms=response_ms,
                       error=f"{error.rstrip('.')}. Gave up after {delivery.attempts} "
                             "attempts.")
    retry_at = now + BACKOFF[delivery.attempts - 1]
    return _record(delivery, now=now, state=State.PENDING, status=status,
                   response_ms=response_ms, error=error, next_attempt_at=retry_at)


def _record(delivery: WebhookDelivery, *, now: datetime, state: str, status: int | None,
            response_ms: int | None, error: str,
            next_attempt_at: datetime | None = None) -> str | None:
    endpoint = delivery.endpoint
    if not delivery.record(state=state, now=now, status=status, error=error,
                           response_ms=response_ms, next_attempt_at=next_attempt_at):
        return None  # the reconciler took it over meanwhile
    outcome = {State.DELIVERED: "delivered", State.FAILED: "failed"}.get(state, "retry")
    logs.webhook_attempt(delivery_id=delivery.pk, event_id=delivery.event_id,
                         event=delivery.event, endpoint_id=endpoint.pk,
                         team_id=endpoint.team_id, url=endpoint.url, attempt=delivery.attempts,
                         outcome=outcome, status=status, response_ms=response_ms, error=error)
    if state == State.PENDING:
        delivery.enqueue()
    return state


# ---------------------------------------------------------------------------------------------
# Reconciling (from the periodic reconciler)


def requeue(*, now: datetime | None = None) -> int:
    """Queue again deliveries left behind: due for a while with no live task (the task row
    was lost), or claimed by a worker that died mid-attempt. Returns how many."""
    now = now or timezone.now()
    picked = 0
    stuck = WebhookDelivery.objects.filter(state=State.DELIVERING,
                                           claimed_at__lt=now - CLAIM_EXPIRES)
    for delivery in stuck.select_related("endpoint"):
        # The attempt was counted when claimed; it ends as a failed one.
        if _failed_attempt(delivery, now=now, status=None, response_ms=None,
                           error="The worker sending this stopped before it had an answer."):
            picked += 1
    for delivery in WebhookDelivery.objects.due(now=now - OVERDUE_AFTER):
        if not _task_alive(delivery.task_id):
            delivery.enqueue()
            picked += 1
    return picked


def _task_alive(task_id: str) -> bool:
    if not task_id:
        return False
    try:
        result = import_string(WEBHOOK_TASK).get_result(task_id)
    except TaskResultDoesNotExist:
        return False
    return result.status in (TaskResultStatus.READY, TaskResultStatus.RUNNING)
