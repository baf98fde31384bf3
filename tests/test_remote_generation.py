"""Takes through fal end to end, against its emulator over real sockets (eachlabs:
tests/test_eachlabs_remote.py).

Submit → status polls or a signed webhook → download over https from the emulator's CDN →
house-format copy → completed take with its measured cost.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from storyboard import catalogue, generation, house
from storyboard.models import Budget, Generation, LedgerEntry
from storyboard.money import usd
from storyboard.providers import get_provider
from tests.emulators import tls
from tests.emulators.fal import DEFAULT_VIDEO, SCHEMAS, FalEmulator, Outcome
from tests.factories import AssetFactory, ShotFactory
from tests.helpers import house_clip, no_sleep, run_to_the_end, work_off_the_queue
from tests.hostile_files import oversized_house_video, video_bytes

State = Generation.State
FAST_T2V = "bytedance/seedance-2.0/fast/text-to-video"
# A real 1 s clip at 24 fps, not in house format, so the normaliser does real work.
CLIP = video_bytes()


def _configure(settings, name: str, backend: str, options: dict) -> None:
    settings.VIDEO_PROVIDERS = {**settings.VIDEO_PROVIDERS,
                                name: {"BACKEND": backend, "OPTIONS": options}}
    settings.DEFAULT_VIDEO_PROVIDER = name
    settings.DOWNLOADS = {"max_bytes": 50 * 1024 * 1024, "deadline": 30,
                          # The emulators run on loopback; production allows no private nets.
                          "extra_networks": ["127.0.0.0/8"], "verify": tls.ca_file()}
    get_provider.cache_clear()


def use_fal(settings, emulator: FalEmulator) -> None:
    """Make the running (TLS) emulator the app's fal: its queue, its CDN, the test CA."""
    port = emulator.url.rsplit(":", 1)[1]
    _configure(settings, "fal", "storyboard.providers.fal.FalProvider", {
        **emulator.provider_options(), "cdn_hosts": (f"127.0.0.1:{port}",),
        "transport": httpx.HTTPTransport(verify=tls.client_context()), "sleep": no_sleep,
    })


@pytest.fixture
def fal(settings):
    emulator = FalEmulator(video=CLIP)
    emulator.tls = True
    with emulator:
        use_fal(settings, emulator)
        yield emulator
    get_provider.cache_clear()


def _webhook_path(take: Generation) -> str:
    token = generation.webhook_token(provider=take.provider, take_uid=str(take.uid))
    return reverse("sb:webhook", args=[take.provider, take.uid, token])


def _shot(cast):
    return ShotFactory(project=cast.project, mode="text", endpoint=FAST_T2V, resolution="480p",
                       aspect_ratio="16:9", duration="4", prompt="Slow push in.")


def _assert_stored(take: Generation) -> None:
    assert take.state == State.COMPLETED, (take.state, take.error, take.logs)
    assert take.original
    assert take.video
    assert take.poster
    assert house.is_house_format(take.video.path)
    assert take.original.open("rb").read() == CLIP
    probe = house.probe(take.video.path)
    assert (take.width, take.height) == (probe.width, probe.height)
    # Captured from what was delivered (1 s), not from what was asked for (4 s).
    assert take.actual_micros == catalogue.price_micros(
        endpoint=FAST_T2V, width=probe.width, height=probe.height,
        frames=round(probe.duration * catalogue.FPS))
    assert take.actual_micros < take.estimated_micros


@pytest.mark.django_db
def test_a_fal_take_completes_by_polling(cast, fal):
    take = generation.start_generation(shot=_shot(cast), user=cast.editor)
    generation.drive(take_id=take.pk)
    take.refresh_from_db()
    assert take.state == State.SUBMITTED
    assert take.request_id in fal.jobs
    assert fal.jobs[take.request_id].input["prompt"] == "Slow push in."
    seen = set()
    for _ in range(12):
        generation.drive(take_id=take.pk)
        take.refresh_from_db()
        seen.add(take.state)
        if take.is_terminal:
            break
    assert {State.IN_QUEUE, State.IN_PROGRESS} <= seen
    _assert_stored(take)
    assert fal.submits.total == 1


@pytest.mark.django_db
def test_a_lost_fal_submit_is_never_sent_twice(cast, fal):
    fal.faults.add("submit", drop_response=True)
    take = generation.start_generation(shot=_shot(cast), user=cast.editor)
    for _ in range(5):
        generation.drive(take_id=take.pk)
    take.refresh_from_db()
    assert take.state == State.OUTCOME_UNKNOWN
    assert take.request_id == ""
    assert fal.submits.total == 1


@pytest.mark.django_db
def test_a_refused_fal_submit_fails_with_the_reason(cast, fal):
    fal.faults.add("submit", status=422, body={"detail": [
        {"loc": ["body", "prompt"], "msg": "field required", "type": "value_error.missing"}]})
    take = generation.start_generation(shot=_shot(cast), user=cast.editor)
    generation.drive(take_id=take.pk)
    take.refresh_from_db()
    assert take.state == State.FAILED
    assert "prompt: field required" in take.error


@pytest.mark.django_db
def test_a_failed_fal_job_ends_the_take(cast, fal):
    fal.script(Outcome.content_policy())
    take = run_to_the_end(generation.start_generation(shot=_shot(cast), user=cast.editor))
    assert take.state == State.FAILED
    assert take.error


@pytest.mark.django_db
def test_cancel_reaches_fal(cast, fal):
    take = generation.start_generation(shot=_shot(cast), user=cast.editor)
    generation.drive(take_id=take.pk)
    take.refresh_from_db()
    generation.cancel(take=take)
    take.refresh_from_db()
    assert take.state == State.CANCELED
    assert fal.count("cancel") == 1


@pytest.mark.django_db(transaction=True)
def test_a_fal_webhook_completes_the_take(cast, fal, live_server, settings):
    settings.WEBHOOK_BASE_URL = live_server.url
    fal.instant = True
    take = generation.start_generation(shot=_shot(cast), user=cast.editor)
    generation.drive(take_id=take.pk)
    fal.wait_for_deliveries(1, timeout=10)
    assert [d.status for d in fal.deliveries] == [200]
    take.refresh_from_db()
    assert take.state == State.DOWNLOADING
    work_off_the_queue()
    take.refresh_from_db()
    _assert_stored(take)


@pytest.mark.django_db(transaction=True)
def test_a_webhook_tells_the_request_id_of_a_lost_submit(cast, fal, live_server, settings):
    settings.WEBHOOK_BASE_URL = live_server.url
    fal.instant = True
    fal.faults.add("submit", drop_response=True)
    take = generation.start_generation(shot=_shot(cast), user=cast.editor)
    generation.drive(take_id=take.pk)
    fal.wait_for_deliveries(1, timeout=10)
    take.refresh_from_db()
    assert take.request_id
    assert take.state == State.DOWNLOADING
    work_off_the_queue()
    take.refresh_from_db()
    assert take.state == State.COMPLETED
    assert fal.submits.total == 1


@pytest.mark.django_db(transaction=True)
def test_twenty_duplicate_webhooks_make_one_transition(cast, fal, live_server, settings):
    settings.WEBHOOK_BASE_URL = live_server.url
    fal.auto_advance = False
    take = generation.start_generation(shot=_shot(cast), user=cast.editor)
    generation.drive(take_id=take.pk)
    take.refresh_from_db()
    fal.faults.add("webhook", never=True)
    fal.finish(take.request_id)
    body = fal.webhook_body(take.request_id)
    headers = {**fal.sign(body, request_id=take.request_id), "Content-Type": "application/json"}
    url = live_server.url + _webhook_path(take)
    before = DBTaskResult.objects.count()
    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(
            lambda _: httpx.post(url, content=body, headers=headers, timeout=30).status_code,
            range(20)))
    assert statuses == [200] * 20
    take.refresh_from_db()
    assert take.state == State.DOWNLOADING
    # One transition queued one download; the other nineteen deliveries changed nothing.
    downloads = DBTaskResult.objects.count() - before
    assert downloads == 1


@pytest.mark.django_db(transaction=True)
def test_a_forged_webhook_changes_nothing(cast, fal, live_server, settings):
    settings.WEBHOOK_BASE_URL = live_server.url
    take = generation.start_generation(shot=_shot(cast), user=cast.editor)
    generation.drive(take_id=take.pk)
    take.refresh_from_db()
    body = json.dumps({"request_id": take.request_id, "status": "OK",
                       "payload": {"video": {"url": "https://evil.example/x.mp4"}}}).encode()
    headers = fal.sign(body, request_id=take.request_id)
    headers["X-Fal-Webhook-Signature"] = "00" * 64
    url = live_server.url + _webhook_path(take)
    assert httpx.post(url, content=body, headers=headers).status_code == 401
    take.refresh_from_db()
    assert take.state == State.SUBMITTED


# A storm: 200 takes, about 30% of provider calls faulted (T8).

SUBMIT_FAULTS = [
    {"status": 429, "retry_after": 0},                 # refused before creating: retried
    {"status": 503, "ingress": True},                  # load balancer: never reached fal
    {"status": 500, "create": True},                   # fal created it, then answered 500
    {"drop_response": True},                           # fal created it, the answer was lost
]
POLL_FAULTS = [
    {"status": 429}, {"status": 503, "ingress": True}, {"status": 500},
    {"drop_response": True},
]


@pytest.mark.django_db(transaction=True)
def test_two_hundred_takes_through_a_fault_storm(cast, settings, live_server):
    import random
    from datetime import timedelta

    from django.utils import timezone

    rng = random.Random(30)
    settings.WEBHOOK_BASE_URL = live_server.url
    emulator = FalEmulator(video=house_clip(), instant=True)
    emulator.tls = True
    with emulator as fal:
        use_fal(settings, fal)
        shot = _shot(cast)
        takes = [generation.start_generation(shot=shot, user=cast.editor) for _ in range(200)]
        never_webhooked = 0
        for take in takes:
            if rng.random() < 0.05:
                fal.faults.add("webhook", never=True)
                never_webhooked += 1
            if rng.random() < 0.3:
                fal.faults.add("submit", **rng.choice(SUBMIT_FAULTS))
            generation.drive(take_id=take.pk)
        fal.wait_for_deliveries(timeout=30)
        for _round in range(8):
            active = list(Generation.objects.active().exclude(state=State.DOWNLOADING))
            for take in active:
                if take.request_id and rng.random() < 0.3:
                    fal.faults.add("status", **rng.choice(POLL_FAULTS))
                generation.drive(take_id=take.pk)
            work_off_the_queue()
            for take in Generation.objects.filter(state=State.DOWNLOADING):
                generation.drive(take_id=take.pk)
        # Lost answers whose webhook also never came: fal may have billed them, so even hours
        # later they keep their hold and wait for a person, never released by a timer.
        waiting = Generation.objects.filter(state=State.OUTCOME_UNKNOWN, request_id="")
        waiting.update(created=timezone.now() - timedelta(hours=4),
                       updated=timezone.now() - timedelta(hours=4))
        assert generation.reconcile() == 0
        for take in waiting:
            generation.drive(take_id=take.pk)
        states = {take.state for take in Generation.objects.all()}
        assert states <= {State.COMPLETED, State.FAILED, State.OUTCOME_UNKNOWN}, states
        unknown = Generation.objects.filter(state=State.OUTCOME_UNKNOWN)
        assert set(unknown.values_list("request_id", flat=True)) <= {""}
        budget = Budget.for_team(cast.team)
        assert budget.held_micros == sum(t.estimated_micros for t in unknown)
        completed = Generation.objects.filter(state=State.COMPLETED).count()
        # Only a lost answer with no webhook may stay unknown; everything else completes.
        assert completed + unknown.count() == 200
        assert unknown.count() <= never_webhooked
        # Zero duplicate paid submits: fal created exactly one job per take of ours. (Refusals
        # that created nothing — 429, load-balancer 503 — were retried, as they must be.)
        jobs_per_take = Counter(job.webhook_url for job in fal.jobs.values())
        assert len(jobs_per_take) == 200
        assert set(jobs_per_take.values()) == {1}
        assert fal.submits.total > fal.submits.accepted  # the storm really hit submits


@pytest.mark.django_db
def test_a_cancel_while_the_outcome_is_unknown_waits_for_the_provider(cast, fal):
    fal.faults.add("submit", drop_response=True)
    take = generation.start_generation(shot=_shot(cast), user=cast.editor)
    generation.drive(take_id=take.pk)
    take.refresh_from_db()
    assert take.state == State.OUTCOME_UNKNOWN
    generation.cancel(take=take)
    take.refresh_from_db()
    # Accepted, but nothing can be sent to fal before it names the request.
    assert take.cancel_requested
    assert take.state == State.OUTCOME_UNKNOWN
    (request_id,) = fal.jobs
    fal.finish(request_id)
    body = fal.webhook_body(request_id)
    event = get_provider("fal").parse_webhook(
        headers=fal.sign(body, request_id=request_id), body=body)
    assert generation.apply_webhook(take=take, event=event)
    take.refresh_from_db()
    # fal had finished (and billed) it already: the take is kept, not thrown away.
    assert take.request_id == request_id
    assert take.state == State.DOWNLOADING
    assert fal.count("cancel") == 0


@pytest.mark.django_db
def test_a_finished_take_we_cannot_fetch_keeps_its_hold(cast, fal):
    fal.faults.add("file", status=403)
    take = run_to_the_end(generation.start_generation(shot=_shot(cast), user=cast.editor))
    assert take.state == State.UNFETCHED
    assert "could not be fetched" in take.error
    budget = Budget.for_team(cast.team)
    # fal finished and billed it: the worst case stays committed, never released.
    assert budget.held_micros == take.estimated_micros
    assert budget.spent_micros == 0
    # "Fetch again" once the CDN answers: the take completes and captures its real cost.
    generation.refetch(take=take)
    take = run_to_the_end(take)
    assert take.state == State.COMPLETED
    budget.refresh_from_db()
    assert budget.held_micros == 0
    assert budget.spent_micros == take.actual_micros


@pytest.mark.django_db(transaction=True)
def test_a_late_webhook_after_settling_as_not_billed_charges_the_take(cast, fal, live_server,
                                                                      settings):
    """A producer guessed "not billed"; fal finishes it hours later: the charge still lands."""
    from storyboard.models import LedgerEntry

    settings.WEBHOOK_BASE_URL = live_server.url
    fal.instant = True
    fal.faults.add("webhook", never=True)
    fal.faults.add("submit", drop_response=True)
    take = generation.start_generation(shot=_shot(cast), user=cast.editor)
    generation.drive(take_id=take.pk)
    take.refresh_from_db()
    assert (take.state, take.request_id) == (State.OUTCOME_UNKNOWN, "")
    generation.settle_by_hand(take=take, billed=False, note="No trace on fal's dashboard",
                              user=cast.producer)
    assert Budget.for_team(cast.team).held_micros == 0
    (request_id,) = fal.jobs
    for _ in range(3):  # fal retries: one charge however often it says so
        assert fal.deliver(request_id).status == 200
    take.refresh_from_db()
    assert take.state == State.FAILED
    assert take.request_id == request_id
    late = LedgerEntry.objects.get(take=take, kind="overrun")
    assert late.amount_micros == take.estimated_micros
    assert "after it was settled as not billed" in late.note
    budget = Budget.for_team(cast.team)
    assert budget.overrun_micros == take.estimated_micros
    assert budget.ledger_totals()["overrun_micros"] == budget.overrun_micros


# Hostile deliveries: a CDN that drips, a video bigger than its bill (issue #8, item 7)


def _until_unfetched_or_done(take: Generation, *, drives: int = 20) -> Generation:
    for _ in range(drives):
        take.refresh_from_db()
        if take.is_terminal or take.state == State.UNFETCHED:
            break
        generation.drive(take_id=take.pk)
    take.refresh_from_db()
    return take


@pytest.mark.django_db
def test_a_slowloris_video_ends_unfetched_within_its_deadlines(cast, fal, settings):
    settings.DOWNLOADS = {**settings.DOWNLOADS, "deadline": 0.5}
    fal.faults.add("file", drip=0.2, times=100)
    take = generation.start_generation(shot=_shot(cast), user=cast.editor)
    started = time.monotonic()
    take = _until_unfetched_or_done(take)
    elapsed = time.monotonic() - started
    assert take.state == State.UNFETCHED, (take.state, take.error)
    assert take.error.startswith(
        "Finished at fal.ai, but the video could not be fetched: the download took longer "
        "than allowed (tried 5 times). Its cost stays held")
    assert take.attempts == fal.count("file") == generation.MAX_DOWNLOAD_ATTEMPTS
    # Five tries of half a second each, then nothing more: no try outlived its deadline.
    assert elapsed < 5 * 0.5 + 3
    budget = Budget.for_team(cast.team)
    assert budget.held_micros == take.estimated_micros
    assert budget.spent_micros == 0


def _finished_and_downloading(cast, fal, **fields) -> Generation:
    take = generation.start_generation(shot=_shot(cast), user=cast.editor)
    generation.drive(take_id=take.pk)
    take.refresh_from_db()
    fal.finish(take.request_id)
    Generation.objects.filter(pk=take.pk).update(state=State.DOWNLOADING, **fields)
    take.refresh_from_db()
    return take


@pytest.mark.django_db
def test_a_download_whose_workers_keep_dying_stops_at_the_cap(cast, fal):
    # Five claims whose workers died mid-download (the reconciler re-queues such takes).
    take = _finished_and_downloading(
        cast, fal, attempts=generation.MAX_DOWNLOAD_ATTEMPTS,
        claimed_at=timezone.now() - generation.DOWNLOAD_CLAIM_EXPIRES - timedelta(seconds=1),
        fetch_started=timezone.now() - timedelta(minutes=20))
    generation.drive(take_id=take.pk)
    take.refresh_from_db()
    assert take.state == State.UNFETCHED
    assert "the download never finished (tried 5 times)" in take.error
    assert fal.count("file") == 0
    # Only a person moves it now: the reconciler leaves it alone.
    Generation.objects.filter(pk=take.pk).update(updated=timezone.now() - timedelta(hours=1))
    assert generation.reconcile() == 0


@pytest.mark.django_db
def test_a_download_gives_up_an_hour_after_the_provider_finished(cast, fal):
    fal.faults.add("file", status=503, times=10)
    take = _finished_and_downloading(cast, fal, attempts=1,
                                     fetch_started=timezone.now() - timedelta(minutes=61))
    generation.drive(take_id=take.pk)
    take.refresh_from_db()
    assert take.state == State.UNFETCHED
    assert "(still failing 61 minutes after fal.ai finished)" in take.error
    assert fal.count("file") == 1


@pytest.mark.django_db
def test_an_oversized_house_format_video_fails_charged_what_was_delivered(cast, fal):
    fal.video = oversized_house_video(8192, 8192, frames=3)
    take = run_to_the_end(generation.start_generation(shot=_shot(cast), user=cast.editor))
    price = catalogue.price_micros(endpoint=FAST_T2V, width=8192, height=8192, frames=3)
    assert take.state == State.FAILED
    assert take.error == (f"fal.ai delivered a 8192×8192 video; at most 4096 pixels a side are "
                          f"accepted. It was charged {usd(price)}.")
    assert take.actual_micros == price
    assert not take.video
    assert not take.original
    # Far beyond its hold: the hold is captured and the rest is an overrun line of its own.
    rows = dict(LedgerEntry.objects.filter(take=take).exclude(kind=LedgerEntry.Kind.HOLD)
                .values_list("kind", "amount_micros"))
    assert rows == {LedgerEntry.Kind.CAPTURE: take.estimated_micros,
                    LedgerEntry.Kind.OVERRUN: price - take.estimated_micros}
    budget = Budget.for_team(cast.team)
    assert budget.charged_micros == price
    assert budget.held_micros == 0


@pytest.mark.django_db
def test_a_video_whose_header_cannot_be_read_keeps_its_hold(cast, fal):
    fal.video = DEFAULT_VIDEO  # starts like an MP4, and nothing more
    take = _until_unfetched_or_done(
        generation.start_generation(shot=_shot(cast), user=cast.editor))
    assert take.state == State.UNFETCHED
    assert "what arrived is not a readable video" in take.error
    assert Budget.for_team(cast.team).held_micros == take.estimated_micros


# Peak memory, measured in a child process so this process's history does not count.

PEAK_RSS = """
import resource, sys, tempfile
from pathlib import Path
from storyboard import house, previz
from storyboard.providers import download
url, host, ca, deadline = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
with tempfile.TemporaryDirectory() as tmp:
    original = Path(tmp) / "original.mp4"
    try:
        # The same steps as generation._download, short of the database.
        download.fetch(url, original, allowed_hosts=[host], deadline=deadline,
                       extra_networks=["127.0.0.0/8"], verify=ca)
        house.check(original)
        house.is_house_format(original)
        previz.first_frame(original)
        outcome = "stored"
    except (download.DownloadError, house.HouseError) as e:
        outcome = type(e).__name__
# VmHWM starts afresh with the new program; ru_maxrss would count the parent's pages too.
status = Path("/proc/self/status")
if status.exists():
    peak = next(int(line.split()[1]) for line in status.read_text().splitlines()
                if line.startswith("VmHWM:"))
else:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(outcome, peak * 1024)
"""


@pytest.mark.parametrize(("case", "outcome"), [("8192x8192", "Refused"),
                                               ("slowloris", "DownloadError")])
def test_a_hostile_delivery_stays_under_half_a_gigabyte(case, outcome):
    emulator = FalEmulator(video=oversized_house_video(8192, 8192, frames=3))
    emulator.tls = True
    with emulator as fal:
        if case == "slowloris":
            fal.faults.add("file", drip=0.05)
        host = fal.url.removeprefix("https://")
        child = subprocess.run(
            [sys.executable, "-c", PEAK_RSS, fal.video_url("r1"), host, tls.ca_file(), "1"],
            capture_output=True, text=True, timeout=60, check=True)
    said, peak = child.stdout.split()
    assert said == outcome
    assert int(peak) < 512 * 1024 * 1024, f"peak RSS {int(peak) / 2**20:.0f} MiB"


# Errors in plain words, the same by polling as by webhook (issue #8, item 4)

IMAGE_ERROR = {"loc": ["body", "image_url"], "msg": "Failed to load the image.",
               "url": "https://docs.fal.ai/errors#image_load_error"}


@pytest.mark.parametrize(("outcome", "words"), [
    (Outcome.content_policy(),
     "The content checker flagged the prompt. Change the wording or the input images and try "
     "again."),
    (Outcome.model_error([{**IMAGE_ERROR, "type": "image_load_error"}]),
     "fal.ai could not read the start frame as an image. Use a JPEG, PNG or WebP that opens on "
     "your computer, and try again."),
    (Outcome.model_error([{**IMAGE_ERROR, "type": "file_download_error"}]),
     "fal.ai could not download the start frame. Try again; if it keeps failing, upload the "
     "file again."),
    (Outcome.runner_error("request_timeout", "Request timed out", 504),
     "fal.ai timed out; try again."),
    (Outcome.runner_error("startup_timeout", "Runner did not start in time", 504),
     "fal.ai timed out; try again."),
    (Outcome.model_error([{"loc": ["body"], "msg": "The moon is in the wrong phase.",
                           "type": "moon_phase"}]),
     "The moon is in the wrong phase."),
], ids=["content-policy", "image-load", "file-download", "request-timeout", "startup-timeout",
        "unknown-type"])
@pytest.mark.django_db
def test_a_model_error_learnt_by_polling_reads_as_the_webhook_says(cast, fal, outcome, words):
    fal.script(outcome)
    take = run_to_the_end(generation.start_generation(shot=_shot(cast), user=cast.editor))
    assert take.state == State.FAILED
    assert take.error == words
    assert "status code" not in take.error
    body = fal.webhook_body(take.request_id)
    event = get_provider("fal").parse_webhook(
        headers=fal.sign(body, request_id=take.request_id), body=body)
    assert event.status.error == take.error


# Exactly the arguments each endpoint's schema asks for (issue #8, item 4)


def _shot_for(cast, endpoint: str, *, num_frames: int | None = None):
    spec = catalogue.ENDPOINTS[endpoint]
    v1 = spec.family == "seedance-1.0"
    shot = ShotFactory(project=cast.project, mode=spec.mode, endpoint=endpoint,
                       resolution="480p", aspect_ratio="16:9", duration="5" if v1 else "4",
                       num_frames=num_frames, seed=7)
    if spec.mode == "image":
        shot.start_frame = AssetFactory(project=cast.project)
        shot.save()
    if spec.mode == "reference":
        # Images only: the video and audio lists are empty, so they must not be sent.
        shot.references.add(AssetFactory(project=cast.project))
        shot.prompt = "@Image1 walks through the rain."
        shot.save()
    return shot


CASES = [(endpoint, None) for endpoint in catalogue.ENDPOINTS] + [
    (endpoint, 48) for endpoint, spec in catalogue.ENDPOINTS.items()
    if "num_frames" in spec.extra]


@pytest.mark.parametrize(("endpoint", "num_frames"), CASES,
                         ids=[f"{e}{'+frames' if n else ''}" for e, n in CASES])
@pytest.mark.django_db
def test_it_sends_each_endpoint_exactly_what_its_schema_lists(cast, fal, endpoint, num_frames):
    take = generation.start_generation(shot=_shot_for(cast, endpoint, num_frames=num_frames),
                                       user=cast.editor)
    generation.drive(take_id=take.pk)
    take.refresh_from_db()
    # The emulator refuses unknown, missing or mistyped fields with a 422, as fal does.
    assert take.state == State.SUBMITTED, take.error
    sent = fal.jobs[take.request_id].input
    assert set(sent) <= set(SCHEMAS[endpoint])
    assert [name for name, value in sent.items() if value in ([], "", None)] == []
    assert ("duration" in sent) != ("num_frames" in sent)
    if num_frames:
        assert sent["num_frames"] == num_frames
    else:
        assert sent["duration"] == take.input["duration"]
