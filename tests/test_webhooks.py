"""Outgoing webhooks (issue 14): signed events to a team's endpoints, retried with backoff,
sent only where the downloader's SSRF rules allow, and managed by the team's owners.

A real receiver runs in the test: an HTTP server thread on 127.0.0.1 (let through by the
test-only `extra_networks` setting) that checks every signature the way the README tells
receivers to, and records what it got.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import trustme
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.module_loading import import_string
from django_tasks_db.models import DBTaskResult

from storyboard import export, generation, models, review, tasks, webhooks
from storyboard.models import (
    ApiToken,
    Budget,
    Export,
    Generation,
    Shot,
    WebhookDelivery,
    WebhookEndpoint,
)
from storyboard.providers import download
from tests.conftest import Cast, client_for
from tests.factories import GenerationFactory, ShotFactory
from tests.helpers import house_clip, work_off_the_queue

pytestmark = pytest.mark.django_db

State = WebhookDelivery.State
ALL_EVENTS = [event.value for event in models.SUBSCRIBABLE_EVENTS]
LITE_T2V = "fal-ai/bytedance/seedance/v1/lite/text-to-video"


# The receiver, verifying as the README documents


def verify(secret: str, headers: dict[str, str], body: bytes, *, tolerance: int = 300) -> bool:
    """The README's verification, verbatim in spirit: HMAC over "timestamp.body", compared in
    constant time, and a timestamp at most 5 minutes old."""
    timestamp = headers["Webhook-Timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, part.removeprefix("v1="))
               for part in headers["Webhook-Signature"].split() if part.startswith("v1="))


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool

    @property
    def payload(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """`answers`: what to answer, in turn (an int status, "hang" to wait until released, or
    ("redirect", url)); 200 once they run out. `secrets`: what signatures are checked with."""

    server: ThreadingHTTPServer
    answers: list = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    got: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hooks/storyboard"

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
        headers = dict(handler.headers.items())
        ok = bool(self.secrets) and any(verify(secret, headers, body) for secret in self.secrets)
        with self.lock:
            self.got.append(Received(handler.path, headers, body, ok))
            answer = self.answers.pop(0) if self.answers else 200
        if answer == "hang":
            self.release.wait(10)
            answer = 200
        if isinstance(answer, tuple):
            handler.send_response(302)
            handler.send_header("Location", answer[1])
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        reply = b"ok" if answer < 300 else b"receiver exploded"
        handler.send_response(answer)
        handler.send_header("Content-Length", str(len(reply)))
        handler.end_headers()
        handler.wfile.write(reply)


def _start_receiver() -> Receiver:
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            receiver.handle(self)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = Receiver(server=server)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    return receiver


@pytest.fixture
def open_loopback(settings):
    """The test-only escape hatch: plain http, and 127.0.0.0/8 counted as public."""
    settings.WEBHOOKS = {**settings.WEBHOOKS, "allow_http": True,
                         "extra_networks": ["127.0.0.0/8"], "timeout": 2.0,
                         "connect_timeout": 1.0}
    return settings


@pytest.fixture
def receiver(open_loopback):
    started = []

    def start() -> Receiver:
        started.append(_start_receiver())
        return started[-1]

    first = start()
    first.another = start
    yield first
    for one in started:
        one.release.set()
        one.server.shutdown()
        one.server.server_close()


def endpoint_for(cast: Cast, receiver: Receiver, *, events=None, team=None,
                 owner=None) -> WebhookEndpoint:
    endpoint = webhooks.create_endpoint(team=team or cast.team, user=owner or cast.owner,
                                        url=receiver.url, events=events or ALL_EVENTS)
    receiver.secrets.append(endpoint.secret)
    return endpoint


def run_queued() -> int:
    """What a worker would do with the queued deliveries that are due (the real db_worker runs
    them in test_a_finished_take_reaches_the_receiver_signed, which needs real commits)."""
    rows = list(DBTaskResult.objects.ready().filter(task_path=models.WEBHOOK_TASK))
    for row in rows:
        import_string(row.task_path).call(**row.args_kwargs["kwargs"])
        row.delete()
    return len(rows)


def send(delivery: WebhookDelivery, *, now=None) -> WebhookDelivery:
    webhooks.deliver(delivery_id=delivery.pk, now=now)
    delivery.refresh_from_db()
    return delivery


def finish(shot: Shot, *, state=Generation.State.COMPLETED, **fields) -> Generation:
    take = GenerationFactory(shot=shot, state=Generation.State.DOWNLOADING)
    assert take.advance(state, expected=(Generation.State.DOWNLOADING,), **fields)
    return take


# Events, signed


@pytest.mark.django_db(transaction=True)
def test_a_finished_take_reaches_the_receiver_signed(cast, receiver):
    endpoint = endpoint_for(cast, receiver)
    take = finish(cast.shot, actual_micros=1_234_567)
    delivery = WebhookDelivery.objects.get()
    # Queued as a real task, and sent by a real worker run.
    assert DBTaskResult.objects.filter(task_path=models.WEBHOOK_TASK,
                                       args_kwargs__kwargs={"delivery_id": delivery.pk}).exists()
    work_off_the_queue()
    [got] = receiver.got
    assert got.verified
    assert got.path == "/hooks/storyboard"
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"] == "storyboard-webhooks/1"
    assert got.headers["Webhook-Id"] == str(delivery.event_id)
    assert abs(int(got.headers["Webhook-Timestamp"]) - time.time()) < 30
    assert got.payload == {
        "id": str(delivery.event_id), "type": "take.finished",
        "created": got.payload["created"],
        "team": {"id": cast.team.pk, "name": "Alpha"},
        "data": {"take_uid": str(take.uid), "status": "completed", "shot_id": cast.shot.pk,
                 "project_id": cast.project.pk, "endpoint": take.endpoint,
                 "cost_micros": 1_234_567, "simulated": True, "error": "",
                 "duration": 2.0, "api_url": f"http://127.0.0.1:8000/api/v1/takes/{take.uid}"}}
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status) == (State.DELIVERED, 1, 200)
    assert delivery.response_ms is not None
    assert delivery.delivered_at is not None
    assert endpoint.secret not in got.body.decode()


def test_a_tampered_body_or_another_secret_fails_verification(cast, receiver):
    endpoint = endpoint_for(cast, receiver)
    send(WebhookDelivery.objects.get(pk=webhooks.send_ping(endpoint=endpoint,
                                                           user=cast.owner).pk))
    [got] = receiver.got
    assert verify(endpoint.secret, got.headers, got.body)
    tampered = got.body.replace(b"test ping", b"test pong")
    assert tampered != got.body
    assert not verify(endpoint.secret, got.headers, tampered)
    assert not verify(webhooks.new_webhook_secret(), got.headers, got.body)
    # An old timestamp is refused even with the right signature (a replay).
    old = {**got.headers, "Webhook-Timestamp": str(int(time.time()) - 600)}
    old["Webhook-Signature"] = "v1=" + webhooks.sign(endpoint.secret, int(old[
        "Webhook-Timestamp"]), got.body)
    assert not verify(endpoint.secret, old, got.body)


def test_each_event_goes_once_to_the_endpoints_of_its_team_that_chose_it(cast, receiver):
    finished = endpoint_for(cast, receiver, events=["take.finished"])
    failed = endpoint_for(cast, receiver, events=["take.failed"])
    off = endpoint_for(cast, receiver)
    webhooks.update_endpoint(endpoint=off, user=cast.owner, events=ALL_EVENTS, active=False)
    other = endpoint_for(cast, receiver, team=cast.other_team, owner=cast.outsider)
    done = finish(cast.shot, actual_micros=10)
    broken = finish(cast.shot, state=Generation.State.FAILED, error="The provider refused it.")
    # A second report of the same end moves nothing, so announces nothing.
    assert not done.advance(Generation.State.COMPLETED, expected=(Generation.State.DOWNLOADING,))
    assert list(finished.deliveries.values_list("event", "payload__data__take_uid")) == [
        ("take.finished", str(done.uid))]
    assert list(failed.deliveries.values_list("event", "payload__data__take_uid")) == [
        ("take.failed", str(broken.uid))]
    assert failed.deliveries.get().payload["data"]["error"] == "The provider refused it."
    assert not off.deliveries.exists()
    assert not other.deliveries.exists()


def test_a_take_canceled_before_it_started_is_announced_as_failed(cast, receiver):
    endpoint = endpoint_for(cast, receiver, events=["take.failed"])
    take = GenerationFactory(shot=cast.shot, state=Generation.State.HELD, progress=0)
    generation.cancel(take=take)
    data = endpoint.deliveries.get().payload["data"]
    assert (data["take_uid"], data["status"], data["cost_micros"]) == (str(take.uid),
                                                                        "canceled", 0)


def test_a_change_rolled_back_announces_nothing(cast, receiver,
                                                django_capture_on_commit_callbacks):
    endpoint_for(cast, receiver)
    take = GenerationFactory(shot=cast.shot, state=Generation.State.DOWNLOADING)
    written = []

    def finish_then_fail() -> None:
        with transaction.atomic():
            take.advance(Generation.State.COMPLETED, expected=(Generation.State.DOWNLOADING,))
            written.append(WebhookDelivery.objects.count())  # written with the change...
            raise RuntimeError("the outer work failed")

    with django_capture_on_commit_callbacks(execute=True) as callbacks, \
            pytest.raises(RuntimeError):
        finish_then_fail()
    assert written == [1]
    assert WebhookDelivery.objects.count() == 0  # ...and gone with it
    assert not callbacks
    assert not DBTaskResult.objects.filter(task_path=models.WEBHOOK_TASK).exists()


def test_an_approval_is_announced_with_who_approved(cast, receiver):
    endpoint = endpoint_for(cast, receiver, events=["shot.approved"])
    take = GenerationFactory(shot=cast.shot)
    Shot.objects.filter(pk=cast.shot.pk).update(selected_take=take)
    review.decide(shot=cast.shot, user=cast.editor, kind=review.Kind.SUBMIT)
    assert not endpoint.deliveries.exists()  # submitting is not approving
    review.decide(shot=cast.shot, user=cast.reviewer, kind=review.Kind.APPROVE)
    [delivery] = endpoint.deliveries.all()
    assert delivery.payload["type"] == "shot.approved"
    assert delivery.payload["data"] == {
        "shot_id": cast.shot.pk, "shot_number": 1, "shot_title": "Opening",
        "project_id": cast.project.pk, "take_uid": str(take.uid),
        "approved_by": cast.reviewer.label, "by_guest": False, "final": False}
    # A refused decision (already approved) announces nothing more.
    with pytest.raises(review.ReviewRefused):
        review.decide(shot=cast.shot, user=cast.reviewer, kind=review.Kind.APPROVE)
    assert endpoint.deliveries.count() == 1


def test_a_finished_export_is_announced_with_its_download_address(cast, receiver):
    endpoint = endpoint_for(cast, receiver, events=["export.ready"])
    from django.core.files.base import ContentFile

    take = GenerationFactory(shot=cast.shot, duration=1.0,
                             video=ContentFile(house_clip(), name="video.mp4"))
    Shot.objects.filter(pk=cast.shot.pk).update(selected_take=take)
    made, _ = export.start_export(project=cast.project, user=cast.viewer,
                                  kind=Export.Kind.EDL, options=export.Options())
    export.run(export_id=made.pk)
    made.refresh_from_db()
    assert made.state == Export.State.DONE
    [delivery] = endpoint.deliveries.all()
    assert delivery.payload["data"] == {
        "export_id": made.pk, "kind": "edl", "project_id": cast.project.pk,
        "download_url": f"http://127.0.0.1:8000/exports/{made.pk}/file/",
        "api_url": f"http://127.0.0.1:8000/api/v1/exports/{made.pk}/file",
        "size": made.size, "duration": made.duration}
    # A pipeline holding only an API token fetches the file from the address it was given.
    _, secret = ApiToken.issue(user=cast.viewer, team=cast.team, name="pipeline")
    response = Client().get(urlsplit(delivery.payload["data"]["api_url"]).path,
                            HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="{made.download_name}"'
    assert b"".join(response.streaming_content) == made.file.open("rb").read()


def test_a_budget_threshold_is_announced_once_per_period(cast, receiver):
    endpoint = endpoint_for(cast, receiver, events=["budget.threshold"])
    shot = ShotFactory(project=cast.project, mode="text", endpoint=LITE_T2V,
                       resolution="480p", duration="2", generate_audio=False, prompt="Push in.")
    per_take = shot.estimate().micros
    Budget.objects.filter(team=cast.team).update(limit_micros=2 * per_take)
    generation.start_generation(shot=shot, user=cast.editor)  # 50%: nothing crossed
    assert not endpoint.deliveries.exists()
    generation.start_generation(shot=shot, user=cast.editor)  # 100%
    [delivery] = endpoint.deliveries.all()
    data = delivery.payload["data"]
    assert (data["threshold"], data["percent"], data["limit_micros"],
            data["committed_micros"]) == (100, 100, 2 * per_take, 2 * per_take)
    # Another process noticing the same crossing announces nothing more.
    webhooks.budget_threshold(budget=Budget.for_team(cast.team), threshold=100)
    assert endpoint.deliveries.count() == 1


# Retries


def test_a_failing_receiver_gets_retries_on_the_schedule_then_a_visible_failure(
        cast, receiver, settings):
    settings.WEBHOOKS = {**settings.WEBHOOKS, "timeout": 0.5}
    endpoint = endpoint_for(cast, receiver, events=["take.finished"])
    receiver.answers = [500, 500, 503, 500, 500, "hang"]
    finish(cast.shot)
    delivery = WebhookDelivery.objects.get()
    now = timezone.now()
    waits = []
    for attempt in range(1, 7):
        delivery = send(delivery, now=now)
        assert delivery.attempts == attempt
        if attempt < 6:
            assert delivery.state == State.PENDING
            waits.append(delivery.next_attempt_at - now)
            # Not due yet: a worker that runs early sends nothing.
            assert webhooks.deliver(delivery_id=delivery.pk,
                                    now=delivery.next_attempt_at - timedelta(seconds=1)) is None
            now = delivery.next_attempt_at
    receiver.release.set()
    assert waits == [timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30),
                     timedelta(hours=2), timedelta(hours=6)]
    assert len(receiver.got) == 6
    assert all(got.verified for got in receiver.got)
    assert delivery.state == State.FAILED
    assert delivery.last_status is None
    assert delivery.last_error == "No answer within 0.5 s. Gave up after 6 attempts."
    page = client_for(cast.owner).get(reverse("sb:webhook-endpoint", args=[endpoint.pk]))
    html = page.content.decode()
    assert "Failed" in html
    assert "Gave up after 6 attempts" in html
    assert reverse("sb:webhook-redeliver", args=[delivery.pk]) in html


def test_a_receiver_error_is_kept_in_plain_words(cast, receiver):
    endpoint = endpoint_for(cast, receiver)
    receiver.answers = [500]
    delivery = send(webhooks.send_ping(endpoint=endpoint, user=cast.owner))
    assert (delivery.state, delivery.last_status) == (State.PENDING, 500)
    assert delivery.last_error == "The receiver answered 500: receiver exploded"
    # The retry is queued as a task that will not run before it is due.
    task = DBTaskResult.objects.get(pk=delivery.task_id)
    assert task.run_after == delivery.next_attempt_at


def test_redelivering_sends_the_same_event_again(cast, receiver):
    endpoint = endpoint_for(cast, receiver)
    delivery = send(webhooks.send_ping(endpoint=endpoint, user=cast.owner))
    assert delivery.state == State.DELIVERED
    response = client_for(cast.owner).post(reverse("sb:webhook-redeliver", args=[delivery.pk]))
    assert response.status_code == 302
    delivery = send(delivery)
    assert delivery.state == State.DELIVERED
    first, second = receiver.got
    assert first.headers["Webhook-Id"] == second.headers["Webhook-Id"] == str(delivery.event_id)
    assert first.body == second.body
    assert WebhookDelivery.objects.count() == 1


def test_after_a_rotation_both_secrets_sign_for_a_while(cast, receiver):
    endpoint = endpoint_for(cast, receiver)
    old = endpoint.secret
    client_for(cast.owner).post(reverse("sb:webhook-rotate", args=[endpoint.pk]))
    endpoint.refresh_from_db()
    assert endpoint.secret != old
    assert endpoint.previous_secret == old
    send(webhooks.send_ping(endpoint=endpoint, user=cast.owner))
    [got] = receiver.got
    assert len(got.headers["Webhook-Signature"].split()) == 2
    assert verify(old, got.headers, got.body)
    assert verify(endpoint.secret, got.headers, got.body)
    # After the grace, only the new secret signs.
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        previous_secret_until=timezone.now() - timedelta(seconds=1))
    endpoint.refresh_from_db()
    send(webhooks.send_ping(endpoint=endpoint, user=cast.owner))
    assert not verify(old, receiver.got[1].headers, receiver.got[1].body)
    assert verify(endpoint.secret, receiver.got[1].headers, receiver.got[1].body)


# One sender per attempt, and nothing left behind


def test_two_claims_of_one_attempt_send_it_once(cast, receiver):
    endpoint = endpoint_for(cast, receiver)
    delivery = webhooks.send_ping(endpoint=endpoint, user=cast.owner)
    now = timezone.now()
    first, second = (WebhookDelivery.objects.get(pk=delivery.pk) for _ in range(2))
    assert first.claim(now=now)
    assert not second.claim(now=now)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(state=State.PENDING,
                                                          claimed_at=None)
    # Two tasks for one delivery (a duplicate queue row, or the reconciler): one request.
    results = [webhooks.deliver(delivery_id=delivery.pk) for _ in range(2)]
    assert results == [State.DELIVERED, None]
    assert len(receiver.got) == 1


def test_the_reconciler_queues_a_delivery_whose_task_was_lost(cast, receiver,
                                                              django_capture_on_commit_callbacks):
    endpoint = endpoint_for(cast, receiver)
    with django_capture_on_commit_callbacks(execute=True):
        delivery = webhooks.send_ping(endpoint=endpoint, user=cast.owner)
    queued = DBTaskResult.objects.filter(task_path=models.WEBHOOK_TASK)
    assert queued.count() == 1
    later = timezone.now() + timedelta(minutes=5)
    # A live task is left alone: no second one.
    assert webhooks.requeue(now=later) == 0
    queued.delete()  # the queue row was lost
    assert webhooks.requeue(now=timezone.now()) == 0  # not overdue yet
    assert generation.reconcile() == 0
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - timedelta(minutes=2))
    assert generation.reconcile() == 1
    assert queued.count() == 1
    assert run_queued() == 1
    assert len(receiver.got) == 1
    delivery.refresh_from_db()
    assert delivery.state == State.DELIVERED


def test_the_reconciler_hands_on_a_delivery_whose_worker_died(cast, receiver):
    endpoint = endpoint_for(cast, receiver)
    delivery = webhooks.send_ping(endpoint=endpoint, user=cast.owner)
    claimed_at = timezone.now() - timedelta(minutes=3)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=claimed_at)
    assert WebhookDelivery.objects.get(pk=delivery.pk).claim(now=claimed_at)
    assert webhooks.requeue(now=claimed_at + timedelta(minutes=1)) == 0  # still sending
    assert webhooks.requeue() == 1
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (State.PENDING, 1)
    assert "stopped before it had an answer" in delivery.last_error
    assert DBTaskResult.objects.filter(pk=delivery.task_id).exists()
    assert send(delivery, now=delivery.next_attempt_at).state == State.DELIVERED


# SSRF: refused when saved, and again when sent


REFUSED_URLS = [
    ("http://93.184.215.14/hook", "https:// addresses only"),
    ("https://127.0.0.1/hook", "127.0.0.1 is not a public address"),
    ("https://10.1.2.3/hook", "10.1.2.3 is not a public address"),
    ("https://169.254.169.254/latest/meta-data/", "169.254.169.254 is not a public address"),
    ("https://[::1]/hook", "::1 is not a public address"),
    ("https://[::ffff:10.0.0.1]/hook", "is not a public address"),
    ("https://localhost/hook", "localhost resolves to 127.0.0.1, which is not a public"),
    ("https://2130706433/hook", "numeric IP address"),
    ("https://user:pw@hooks.example.com/hook", "user name or password"),
    ("ftp://hooks.example.com/hook", "https:// addresses only"),
    ("https://hooks.example.com/" + "a" * 2000, "longer than 2000 characters"),
    ("https://hooks.example.com/a b", "spaces"),
]


@pytest.mark.parametrize(("url", "message"), REFUSED_URLS, ids=[u[:40] for u, _ in REFUSED_URLS])
def test_it_refuses_to_save_an_address_it_would_not_send_to(cast, url, message):
    with pytest.raises(webhooks.WebhookRefused) as refused:
        webhooks.create_endpoint(team=cast.team, user=cast.owner, url=url, events=ALL_EVENTS)
    assert message in refused.value.message
    assert refused.value.field == "url"
    assert not WebhookEndpoint.objects.exists()


def test_plain_http_is_refused_unless_the_deployment_allows_it(cast):
    with pytest.raises(webhooks.WebhookRefused) as refused:
        webhooks.check_url("http://93.184.215.14/hook")
    assert "https:// addresses only" in refused.value.message
    assert webhooks.check_url("https://93.184.215.14/hook") == "https://93.184.215.14/hook"


def test_allowing_plain_http_still_refuses_private_addresses(cast, settings):
    settings.WEBHOOKS = {**settings.WEBHOOKS, "allow_http": True}
    assert webhooks.check_url(" http://93.184.215.14:8080/hook ") == \
        "http://93.184.215.14:8080/hook"
    for url in ("http://127.0.0.1:8000/hook", "http://localhost/hook", "http://[::1]/"):
        with pytest.raises(webhooks.WebhookRefused) as refused:
            webhooks.check_url(url)
        assert "is not a public address" in refused.value.message


@pytest.mark.parametrize(("code", "words"), [
    (socket.EAI_NONAME, "DNS: no address was found for hooks.example.test (check the spelling)."),
    (socket.EAI_AGAIN, "DNS: the name server did not answer for hooks.example.test, which is "
                       "usually passing."),
])
def test_a_name_that_does_not_resolve_is_said_in_words(cast, monkeypatch, code, words):
    def resolver(host, port):
        raise socket.gaierror(code, "the C library's own words")

    monkeypatch.setattr(download, "resolve", resolver)
    with pytest.raises(webhooks.WebhookRefused) as refused:
        webhooks.check_url("https://hooks.example.test/hook")
    assert refused.value.message == words


def test_a_name_resolving_to_a_private_address_is_refused(cast, monkeypatch):
    monkeypatch.setattr(download, "resolve", lambda host, port: ["93.184.215.14", "10.0.0.7"])
    with pytest.raises(webhooks.WebhookRefused) as refused:
        webhooks.check_url("https://hooks.example.com/hook")
    assert refused.value.message == ("Refused because hooks.example.com resolves to 10.0.0.7, "
                                     "which is not a public address; webhooks go to public "
                                     "internet addresses only.")


def test_the_page_says_why_an_address_was_refused(cast):
    response = client_for(cast.owner).post(reverse("sb:webhooks", args=[cast.team.pk]), {
        "url": "https://169.254.169.254/latest/", "events": ["take.finished"]})
    assert response.status_code == 422
    assert "169.254.169.254 is not a public address" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_an_address_that_turned_private_is_not_sent_to(cast, receiver, settings):
    endpoint = endpoint_for(cast, receiver)
    # DNS (or here, the deployment) changed after the address was saved.
    settings.WEBHOOKS = {**settings.WEBHOOKS, "extra_networks": []}
    delivery = send(webhooks.send_ping(endpoint=endpoint, user=cast.owner))
    assert receiver.got == []
    assert delivery.state == State.FAILED
    assert delivery.last_error == ("Not sent. Refused because 127.0.0.1 is not a public "
                                   "address; webhooks go to public internet addresses only.")


def test_a_redirect_is_not_followed(cast, receiver):
    inside = receiver.another()
    endpoint = endpoint_for(cast, receiver)
    receiver.answers = [("redirect", inside.url)]
    delivery = send(webhooks.send_ping(endpoint=endpoint, user=cast.owner))
    assert len(receiver.got) == 1
    assert inside.got == []
    assert (delivery.state, delivery.last_status) == (State.PENDING, 302)
    assert "redirects are not followed" in delivery.last_error


def test_https_goes_to_the_checked_address_with_the_name_verified(cast, receiver, settings,
                                                                   monkeypatch, tmp_path):
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("hooks.test").configure_cert(context)
    names = []
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)
    receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    # Both names lead to the receiver; only hooks.test is on its certificate.
    monkeypatch.setattr(download, "resolve", lambda host, port: ["127.0.0.1"])
    settings.WEBHOOKS = {**settings.WEBHOOKS, "allow_http": False, "verify": str(ca_file)}
    port = receiver.server.server_port
    endpoint = webhooks.create_endpoint(team=cast.team, user=cast.owner,
                                        url=f"https://hooks.test:{port}/in", events=ALL_EVENTS)
    receiver.secrets.append(endpoint.secret)
    assert send(webhooks.send_ping(endpoint=endpoint, user=cast.owner)).state == State.DELIVERED
    [got] = receiver.got
    assert got.verified
    assert got.headers["Host"] == f"hooks.test:{port}"
    assert names == ["hooks.test"]
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(url=f"https://other.test:{port}/in")
    endpoint.refresh_from_db()
    delivery = send(webhooks.send_ping(endpoint=endpoint, user=cast.owner))
    assert delivery.state == State.PENDING
    assert delivery.last_error == "The certificate of other.test could not be verified."
    assert len(receiver.got) == 1


# Logs


def test_each_attempt_is_one_log_line_without_secrets(cast, receiver, caplog):
    endpoint = endpoint_for(cast, receiver)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(url=receiver.url + "?token=hush")
    endpoint.refresh_from_db()
    with caplog.at_level(logging.INFO):
        delivery = send(webhooks.send_ping(endpoint=endpoint, user=cast.owner))
    # Not in any line: httpx's own request lines are off (settings.LOGGING).
    assert "hush" not in caplog.text
    [record] = [r for r in caplog.records if r.name == "storyboard.webhooks"]
    assert record.fields == {
        "event": "webhook_attempt", "delivery_id": delivery.pk,
        "event_id": str(delivery.event_id), "type": "ping", "endpoint_id": endpoint.pk,
        "team_id": cast.team.pk, "url": receiver.url + "?[secret]", "attempt": 1,
        "outcome": "delivered", "status": 200, "response_ms": delivery.response_ms,
        "error": ""}
    assert receiver.got[0].path == "/hooks/storyboard?token=hush"
    line = json.dumps(record.fields)
    assert "hush" not in line
    assert endpoint.secret not in line


def test_the_task_name_holds():
    # Named, not imported, by the models (tasks.py sits above them).
    assert import_string(models.WEBHOOK_TASK) is tasks.deliver_webhook


# The owners' pages


def _urls(cast: Cast, endpoint: WebhookEndpoint, delivery: WebhookDelivery) -> dict[str, str]:
    return {"list": reverse("sb:webhooks", args=[cast.team.pk]),
            "endpoint": reverse("sb:webhook-endpoint", args=[endpoint.pk]),
            "delete": reverse("sb:webhook-delete", args=[endpoint.pk]),
            "rotate": reverse("sb:webhook-rotate", args=[endpoint.pk]),
            "ping": reverse("sb:webhook-ping", args=[endpoint.pk]),
            "redeliver": reverse("sb:webhook-redeliver", args=[delivery.pk])}


@pytest.fixture
def hooked(cast, open_loopback):
    endpoint = webhooks.create_endpoint(team=cast.team, user=cast.owner,
                                        url="http://127.0.0.1:9/hook", events=ALL_EVENTS)
    delivery = webhooks.send_ping(endpoint=endpoint, user=cast.owner)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(state=State.FAILED, attempts=6)
    return endpoint, delivery


def _state() -> list:
    return [list(WebhookEndpoint.objects.values_list("pk", "events", "active", "secret")),
            list(WebhookDelivery.objects.values_list("pk", "state", "attempts"))]


@pytest.mark.parametrize("role", ["producer", "editor", "reviewer", "viewer"])
def test_only_owners_reach_the_webhook_pages(cast, hooked, role):
    client = client_for(cast.member(role))
    before = _state()
    for name, url in _urls(cast, *hooked).items():
        assert client.get(url).status_code == (403 if name in ("list", "endpoint") else 405)
        response = client.post(url, {"url": "https://93.184.215.14/x",
                                     "events": ["take.finished"]})
        assert response.status_code == 403, (role, name)
    assert _state() == before


def test_another_team_sees_no_webhooks_of_ours(cast, hooked):
    client = client_for(cast.outsider)
    before = _state()
    for url in _urls(cast, *hooked).values():
        assert client.get(url).status_code in (404, 405)
        assert client.post(url, {"events": ["take.finished"]}).status_code == 404
    assert _state() == before


def test_anonymous_visitors_are_sent_to_log_in(cast, hooked):
    login = reverse("accounts:login")
    for url in _urls(cast, *hooked).values():
        response = client_for(None).post(url)
        assert response.status_code == 302
        assert response["Location"].startswith(login)


def test_an_owner_adds_an_endpoint_and_sees_its_secret(cast, open_loopback):
    client = client_for(cast.owner)
    teams = client.get(reverse("accounts:teams")).content.decode()
    assert reverse("sb:webhooks", args=[cast.team.pk]) in teams
    response = client.post(reverse("sb:webhooks", args=[cast.team.pk]), {
        "url": "http://127.0.0.1:9/hook", "label": "Render farm",
        "events": ["take.finished", "export.ready"]})
    endpoint = WebhookEndpoint.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("sb:webhook-endpoint", args=[endpoint.pk])
    assert (endpoint.label, endpoint.events, endpoint.created_by) == (
        "Render farm", ["take.finished", "export.ready"], cast.owner)
    page = client.get(response["Location"]).content.decode()
    assert endpoint.secret in page
    assert "Send test ping" in page
    listed = client.get(reverse("sb:webhooks", args=[cast.team.pk])).content.decode()
    assert "Render farm" in listed
    assert endpoint.secret not in listed


def test_an_owner_needs_to_choose_an_event(cast, open_loopback):
    response = client_for(cast.owner).post(reverse("sb:webhooks", args=[cast.team.pk]), {
        "url": "http://127.0.0.1:9/hook"})
    assert response.status_code == 422
    assert "Choose at least one event." in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_an_owner_changes_events_turns_off_and_deletes(cast, hooked):
    endpoint, _ = hooked
    client = client_for(cast.owner)
    response = client.post(reverse("sb:webhook-endpoint", args=[endpoint.pk]),
                           {"events": ["shot.approved"], "label": "QC"})
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.events, endpoint.active, endpoint.label) == (["shot.approved"], False, "QC")
    response = client.post(reverse("sb:webhook-delete", args=[endpoint.pk]))
    assert response["Location"] == reverse("sb:webhooks", args=[cast.team.pk])
    assert not WebhookEndpoint.objects.exists()
    assert not WebhookDelivery.objects.exists()


def test_a_test_ping_from_the_page_reaches_the_receiver(cast, receiver,
                                                       django_capture_on_commit_callbacks):
    endpoint = endpoint_for(cast, receiver, events=["take.finished"])
    client = client_for(cast.owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("sb:webhook-ping", args=[endpoint.pk]),
                               HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert 'id="webhook-deliveries"' in response.content.decode()
    assert "<html" not in response.content.decode()
    assert run_queued() == 1
    [got] = receiver.got
    assert got.verified
    assert got.payload["type"] == "ping"
    assert got.payload["data"]["sent_by"] == cast.owner.label
    page = client.get(reverse("sb:webhook-endpoint", args=[endpoint.pk])).content.decode()
    assert "Delivered" in page
    assert "HTTP 200" in page


def test_the_delivery_log_is_paged_newest_first(cast, hooked):
    endpoint, first = hooked
    for _ in range(25):
        webhooks.send_ping(endpoint=endpoint, user=cast.owner)
    newest = WebhookDelivery.objects.order_by("-pk").first()
    url = reverse("sb:webhook-endpoint", args=[endpoint.pk])
    client = client_for(cast.owner)
    page_one = client.get(url).content.decode()
    assert f'id="delivery-{newest.pk}"' in page_one
    assert f'id="delivery-{first.pk}"' not in page_one
    assert 'href="?page=2"' in page_one
    assert f'hx-get="{url}?page=2"' in page_one
    page_two = client.get(url + "?page=2", HTTP_HX_REQUEST="true").content.decode()
    assert f'id="delivery-{first.pk}"' in page_two
    assert "<html" not in page_two


def test_a_refused_address_and_a_missing_event_are_said_together(cast):
    response = client_for(cast.owner).post(reverse("sb:webhooks", args=[cast.team.pk]),
                                           {"url": "https://169.254.169.254/hook", "label": ""})
    assert response.status_code == 422
    content = response.content.decode()
    assert "not a public address" in content
    assert "Choose at least one event." in content
    assert not WebhookEndpoint.objects.exists()
