"""Takes through eachlabs end to end, over real HTTPS against the emulator of each documented
version ("2026-06", the seed page; "2026-08", provider-protocols.md §2): create → webhook
(a hint, confirmed with GET) or polls → download from the emulator's CDN → capture at
eachlabs' own per-second price.

Input files reach the emulator as public HTTPS URLs: media storage here hands out
https://media.example.com/… URLs, as S3 does with signed ones.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from django.urls import reverse
from django_tasks_db.models import DBTaskResult

from storyboard import catalogue, generation
from storyboard.models import Budget, Generation, LedgerEntry
from storyboard.money import usd
from storyboard.providers import get_provider
from storyboard.providers.eachlabs import DEFAULT_MODELS, KNOWN_MODELS
from tests.conftest import client_for
from tests.emulators import tls
from tests.emulators.eachlabs import LATER, SEED, EachlabsEmulator, Outcome
from tests.factories import AssetFactory, ProjectFactory, ShotFactory
from tests.helpers import house_clip, no_sleep, run_to_the_end, work_off_the_queue

State = Generation.State
Kind = LedgerEntry.Kind
I2V = "bytedance/seedance-2.0/image-to-video"
FAST_T2V = "bytedance/seedance-2.0/fast/text-to-video"
SECRET = "whsec-remote-0123456789"
PUBLIC_MEDIA = "https://media.example.com/media/"


def _configure(settings, emulator: EachlabsEmulator, **options) -> None:
    port = emulator.url.rsplit(":", 1)[1]
    settings.VIDEO_PROVIDERS = {**settings.VIDEO_PROVIDERS, "eachlabs": {
        "BACKEND": "storyboard.providers.eachlabs.EachlabsProvider",
        "OPTIONS": {"key": emulator.key, "api_url": emulator.url, "webhook_secret": SECRET,
                    "cdn_hosts": (f"127.0.0.1:{port}",), "sleep": no_sleep,
                    "transport": httpx.HTTPTransport(verify=tls.client_context()), **options},
    }}
    settings.DEFAULT_VIDEO_PROVIDER = "eachlabs"
    settings.DOWNLOADS = {"max_bytes": 50 * 1024 * 1024, "deadline": 30,
                          # The emulator runs on loopback; production allows no private nets.
                          "extra_networks": ["127.0.0.0/8"], "verify": tls.ca_file()}
    get_provider.cache_clear()


def _public_media(settings) -> None:
    # Storage that hands out absolute https URLs, as S3 does (signed there).
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"base_url": PUBLIC_MEDIA}}}


@contextmanager
def eachlabs(settings, version: str, **options) -> Iterator[EachlabsEmulator]:
    with EachlabsEmulator(version=version, video=house_clip(), tls=True, webhook_interval=0,
                          sleep=no_sleep, **options) as emulator:
        _configure(settings, emulator)
        _public_media(settings)
        yield emulator
    get_provider.cache_clear()


def _shot(cast, endpoint: str = I2V, *, resolution: str = "480p", project=None, **fields):
    project = project or cast.project
    spec = catalogue.ENDPOINTS[endpoint]
    v1 = spec.family == "seedance-1.0"
    shot = ShotFactory(project=project, mode=spec.mode, endpoint=endpoint,
                       resolution=resolution, aspect_ratio="16:9",
                       duration="5" if v1 else "4", prompt="Slow push in.", seed=7, **fields)
    if spec.mode == "image":
        shot.start_frame = AssetFactory(project=project)
        shot.save()
    return shot


def each_id_of(each, take: Generation) -> str | None:
    """The prediction eachlabs made for a take whose create answer we never heard."""
    url = generation._webhook_url(take)
    return next((p.id for p in each.predictions.values() if p.webhook_url == url), None)


def _ledger(take: Generation) -> dict[str, int]:
    return dict(LedgerEntry.objects.filter(take=take).values_list("kind", "amount_micros"))


def _webhook_url(live_server, take: Generation, *, token: str | None = None) -> str:
    token = token or generation.webhook_token(provider=take.provider, take_uid=str(take.uid))
    return live_server.url + reverse("sb:webhook", args=[take.provider, take.uid, token])


# Every configured model × resolution: one paid prediction, captured at eachlabs' price ----------

OFFERED = {
    SEED: {"bytedance-seedance-2-0-image-to-video"},
    LATER: set(KNOWN_MODELS),
}
CASES = [(version, endpoint, resolution)
         for version in (SEED, LATER)
         for endpoint, slug in DEFAULT_MODELS.items() if slug in OFFERED[version]
         for resolution in KNOWN_MODELS[slug].resolutions]


@pytest.mark.parametrize(("version", "endpoint", "resolution"), CASES,
                         ids=[f"{v}-{e}-{r}" for v, e, r in CASES])
@pytest.mark.django_db
def test_every_configured_model_and_resolution_is_paid_once_at_eachlabs_price(
        cast, settings, version, endpoint, resolution):
    with eachlabs(settings, version) as each:
        take = generation.start_generation(shot=_shot(cast, endpoint, resolution=resolution),
                                           user=cast.editor)
        take = run_to_the_end(take)

        assert take.state == State.COMPLETED, (take.state, take.error)
        slug = DEFAULT_MODELS[endpoint]
        assert each.creates_by_model == {slug: 1}
        assert list(each.billed) == [take.request_id]
        # The 1 s clip at the asked resolution's rate, to the micro-dollar, as eachlabs billed.
        assert each.billed[take.request_id] == KNOWN_MODELS[slug].rates[resolution]
        assert take.actual_micros == each.billed[take.request_id]
        assert _ledger(take) == {Kind.HOLD: take.estimated_micros,
                                 Kind.CAPTURE: take.actual_micros,
                                 Kind.RELEASE: take.estimated_micros - take.actual_micros}
        sent = each.predictions[take.request_id].input
        if "image_url" in sent:
            assert sent["image_url"].startswith(PUBLIC_MEDIA)


@pytest.mark.django_db
def test_estimates_and_holds_use_eachlabs_per_second_table(cast, settings):
    with eachlabs(settings, LATER):
        i2v = _shot(cast, I2V, resolution="480p")
        v1 = _shot(cast, "fal-ai/bytedance/seedance/v1/lite/text-to-video",
                   resolution="720p")
        # 4 s at $0.1412/s; Seedance 1.0's 5 s carry one frame more (121 frames at $0.036/s).
        assert i2v.estimate().micros == 4 * 141_200
        assert v1.estimate().micros == 121 * 36_000 // 24
        take = generation.start_generation(shot=i2v, user=cast.editor)
        assert take.estimated_micros == 564_800
        assert Budget.for_team(cast.team).held_micros == 564_800
        page = client_for(cast.editor).get(reverse("sb:shot-estimate", args=[v1.pk]),
                                           {"resolution": "1080p"})
        assert "$0.408375" in page.content.decode()  # 121/24 s × $0.081


# Out-of-schema requests: refused before anything is sent or held ---------------------------------


@pytest.mark.parametrize(("endpoint", "resolution", "public", "words"), [
    (I2V, "1080p", True, "eachlabs' bytedance-seedance-2-0-image-to-video offers 480p, 720p, "
                         "not 1080p"),
    ("bytedance/seedance-2.0/text-to-video", "720p", True,
     "eachlabs has no model configured for bytedance/seedance-2.0/text-to-video"),
    (I2V, "720p", False, "eachlabs fetches input files itself, from a public HTTPS address: "
                         "set WEBHOOK_BASE_URL"),
], ids=["1080p-on-a-480p-720p-model", "unmapped-endpoint", "no-public-base-url"])
@pytest.mark.django_db
def test_out_of_schema_requests_are_refused_before_anything_is_sent(
        cast, settings, endpoint, resolution, public, words):
    with eachlabs(settings, SEED) as each:
        if not public:
            settings.STORAGES = {**settings.STORAGES, "default": {
                "BACKEND": "django.core.files.storage.FileSystemStorage"}}
            settings.WEBHOOK_BASE_URL = "http://storyboard.example.com"  # not https
        with pytest.raises(generation.GenerationRefused) as refused:
            generation.start_generation(shot=_shot(cast, endpoint, resolution=resolution),
                                        user=cast.editor)
        assert words in refused.value.message
        assert each.calls == []
    assert not Generation.objects.exists()
    assert not LedgerEntry.objects.exists()
    assert Budget.for_team(cast.team).held_micros == 0


# Webhooks: settle within seconds, and nothing else moves anything ---------------------------------


@contextmanager
def _hooked(settings, live_server, version: str, **options) -> Iterator[EachlabsEmulator]:
    settings.WEBHOOK_BASE_URL = live_server.url
    with eachlabs(settings, version, auto_advance=False, **options) as each:
        yield each


def _submitted(cast, version: str, **shot_fields) -> Generation:
    endpoint = I2V if version == SEED else FAST_T2V
    take = generation.start_generation(shot=_shot(cast, endpoint, **shot_fields),
                                       user=cast.editor)
    generation.drive(take_id=take.pk)
    take.refresh_from_db()
    assert take.state == State.SUBMITTED, take.error
    # The drive queued at the start has just been run by hand, and the next poll is a minute
    # away: from here on, only a webhook can move the take.
    DBTaskResult.objects.filter(status="READY").delete()
    return take


@pytest.mark.parametrize("version", [SEED, LATER])
@pytest.mark.django_db(transaction=True)
def test_a_webhook_settles_the_take_within_seconds(cast, settings, live_server, version):
    with _hooked(settings, live_server, version) as each:
        take = _submitted(cast, version)
        started = time.monotonic()
        each.finish(take.request_id)
        (delivery,) = each.wait_for_deliveries(1, timeout=10)
        assert delivery.status == 200
        # The seed page sends no secret: the token in the URL is what vouches for it.
        assert ("X-Webhook-Secret" in delivery.headers) is (version == LATER)
        assert generation.webhook_token(provider="eachlabs", take_uid=str(take.uid)) \
            in delivery.url
        work_off_the_queue()
        take.refresh_from_db()
        assert take.state == State.COMPLETED, (take.state, take.error, take.logs)
        assert time.monotonic() - started < 10
        # Heard by webhook, confirmed by one GET, fetched after one more: no poll between.
        assert each.gets[take.request_id] == 2
        assert take.actual_micros == each.billed[take.request_id]


@pytest.mark.parametrize("version", [SEED, LATER])
@pytest.mark.django_db(transaction=True)
def test_a_failure_webhook_fails_the_take_in_eachlabs_words(cast, settings, live_server,
                                                            version):
    with _hooked(settings, live_server, version) as each:
        each.script(Outcome.model_timeout())
        take = _submitted(cast, version)
        each.finish(take.request_id)
        each.wait_for_deliveries(1, timeout=10)
        work_off_the_queue()
        take.refresh_from_db()
        assert take.state == State.FAILED
        assert take.error == "Error: Model timeout after 30s"
        assert _ledger(take) == {Kind.HOLD: take.estimated_micros,
                                 Kind.RELEASE: take.estimated_micros}


def _snapshot() -> list:
    return [list(Generation.objects.order_by("pk").values_list(
                "state", "request_id", "actual_micros", "error", "video")),
            list(LedgerEntry.objects.order_by("pk").values_list("kind", "amount_micros"))]


@pytest.mark.parametrize("version", [SEED, LATER])
@pytest.mark.django_db(transaction=True)
def test_forged_replayed_and_cross_team_deliveries_change_nothing(cast, settings, live_server,
                                                                  version):
    with _hooked(settings, live_server, version, webhooks=False) as each:
        ours = _submitted(cast, version)
        theirs = _submitted(cast, version, project=ProjectFactory(team=cast.other_team))
        each.finish(theirs.request_id)
        genuine = json.dumps(each.webhook_body(theirs.request_id)).encode()
        headers = {"Content-Type": "application/json"}
        if version == LATER:
            headers["X-Webhook-Secret"] = SECRET
        before = _snapshot()

        # Forged: a wrong token, or a wrong secret header where one is sent.
        assert httpx.post(_webhook_url(live_server, ours, token="0" * 64), content=genuine,
                          headers=headers).status_code == 401
        assert httpx.post(_webhook_url(live_server, ours), content=genuine,
                          headers={**headers, "X-Webhook-Secret": "guess"}).status_code == 401
        # Cross-team, replayed to another take's address: Bravo's finished prediction,
        # posted to Alpha's take with Alpha's own (leaked) token.
        assert httpx.post(_webhook_url(live_server, ours), content=genuine,
                          headers=headers).status_code == 200
        work_off_the_queue()
        assert _snapshot() == before

        # A body that lies about our own prediction ("succeeded", someone else's video): only
        # eachlabs' answer counts, and it says the prediction is still running.
        lie = json.loads(genuine) | {"exec_id": ours.request_id}
        assert httpx.post(_webhook_url(live_server, ours), content=json.dumps(lie),
                          headers=headers).status_code == 200
        work_off_the_queue()
        ours.refresh_from_db()
        assert ours.state in (State.IN_QUEUE, State.IN_PROGRESS)
        assert not each.predictions[ours.request_id].terminal
        assert _snapshot()[1] == before[1]  # no money moved

        # The genuine delivery at its own address settles Bravo's take; repeating it later
        # changes nothing more.
        for _ in range(3):
            assert httpx.post(_webhook_url(live_server, theirs), content=genuine,
                              headers=headers).status_code == 200
            work_off_the_queue()
        theirs.refresh_from_db()
        assert theirs.state == State.COMPLETED
        settled = _snapshot()
        assert httpx.post(_webhook_url(live_server, theirs), content=genuine,
                          headers=headers).status_code == 200
        work_off_the_queue()
        assert _snapshot() == settled
        assert LedgerEntry.objects.filter(take=theirs, kind=Kind.CAPTURE).count() == 1
        ours.refresh_from_db()
        assert ours.request_id == before[0][0][1]
        assert not ours.is_terminal


@pytest.mark.django_db(transaction=True)
def test_a_webhook_names_the_prediction_of_a_lost_answer(cast, settings, live_server):
    with _hooked(settings, live_server, SEED) as each:
        each.faults.add("create", drop_response=True)
        take = generation.start_generation(shot=_shot(cast), user=cast.editor)
        generation.drive(take_id=take.pk)
        take.refresh_from_db()
        assert (take.state, take.request_id) == (State.OUTCOME_UNKNOWN, "")
        (prediction_id,) = each.predictions
        each.finish(prediction_id)
        each.wait_for_deliveries(1, timeout=10)
        work_off_the_queue()
        take.refresh_from_db()
        assert take.request_id == prediction_id
        assert take.state == State.COMPLETED
        assert each.created == 1


# Cancel: the seed page has none ---------------------------------------------------------------


@pytest.mark.django_db
def test_a_take_eachlabs_cannot_stop_keeps_its_hold_and_can_be_discarded(cast, settings):
    with eachlabs(settings, SEED) as each:
        take = generation.start_generation(shot=_shot(cast), user=cast.editor)
        generation.drive(take_id=take.pk)
        take.refresh_from_db()
        with pytest.raises(generation.GenerationRefused) as refused:
            generation.cancel(take=take)
        assert refused.value.message == (
            "eachlabs could not stop this take: it will finish, and eachlabs will charge for "
            "it. Its hold stays until then. You can discard the result: it is still charged, "
            "but not kept.")
        take.refresh_from_db()
        assert take.cancel_refused
        assert take.state == State.SUBMITTED
        assert Budget.for_team(cast.team).held_micros == take.estimated_micros

        generation.discard(take=take)
        take = run_to_the_end(take)
        billed = each.billed[take.request_id]
        assert take.state == State.CANCELED
        assert take.error == f"Discarded as asked: eachlabs finished it and charged {usd(billed)}."
        assert take.actual_micros == billed
        assert not take.video
        assert _ledger(take)[Kind.CAPTURE] == billed


@pytest.mark.django_db
def test_a_later_cancel_stops_the_take_and_releases_its_hold(cast, settings):
    with eachlabs(settings, LATER) as each:
        take = generation.start_generation(shot=_shot(cast, FAST_T2V), user=cast.editor)
        generation.drive(take_id=take.pk)
        take.refresh_from_db()
        generation.cancel(take=take)
        take.refresh_from_db()
        assert take.state == State.CANCELED
        assert each.predictions[take.request_id].status == "cancelled"
        assert Budget.for_team(cast.team).held_micros == 0


@pytest.mark.django_db
def test_an_undocumented_status_keeps_the_take_waiting_noted_once(cast, settings):
    with eachlabs(settings, LATER) as each:
        take = generation.start_generation(shot=_shot(cast, FAST_T2V), user=cast.editor)
        generation.drive(take_id=take.pk)
        take.refresh_from_db()
        odd = {"id": take.request_id, "status": "hibernating"}
        each.faults.add("get", status=200, body=odd, times=3)
        for _ in range(3):
            generation.drive(take_id=take.pk)
        take.refresh_from_db()
        assert take.state == State.SUBMITTED
        noted = [line for line in take.logs if "'hibernating'" in line]
        assert len(noted) == 1
        take = run_to_the_end(take)
        assert take.state == State.COMPLETED


# Twenty takes through faults, per version -----------------------------------------------------

FAULTS = [
    None,
    {"status": 503},                                  # 5xx, nothing created: retried
    {"status": 500, "create": True},                  # 5xx, created anyway: retried
    {"status": 429, "retry_after": 2},                # "not created, not billed": waits
    {"drop_response": True},                          # created, the answer lost
    {"outcome": Outcome.model_timeout()},             # the model fails
]


@pytest.mark.parametrize("version", [SEED, LATER])
@pytest.mark.django_db(transaction=True)
def test_twenty_takes_under_faults_all_resolve_and_none_is_paid_twice_unknowingly(
        cast, settings, live_server, version):
    settings.WEBHOOK_BASE_URL = live_server.url
    with eachlabs(settings, version, instant=True) as each:
        shot = _shot(cast, I2V if version == SEED else FAST_T2V)
        takes = [generation.start_generation(shot=shot, user=cast.editor) for _ in range(20)]
        faulted: dict[int, dict] = {}
        for number, take in enumerate(takes):
            fault = FAULTS[number % len(FAULTS)]
            if fault:
                each.faults.add("create", **fault)
                faulted[take.pk] = fault
            if number == 4:
                # One lost answer whose webhook never comes either: it stays unknown.
                each.faults.add("webhook", never=True)
            generation.drive(take_id=take.pk)
        each.wait_for_deliveries(timeout=20)
        work_off_the_queue()

        done = list(Generation.objects.all())
        assert {t.state for t in done} <= {State.COMPLETED, State.FAILED,
                                           State.OUTCOME_UNKNOWN}
        failed = [t for t in done if t.state == State.FAILED]
        assert [faulted[t.pk] for t in failed] == [{"outcome": Outcome.model_timeout()}] * 3
        assert {t.error for t in failed} == {"Error: Model timeout after 30s"}
        # Only a lost answer stays unknown, and only when no webhook named it; it keeps its hold.
        (unknown,) = [t for t in done if t.state == State.OUTCOME_UNKNOWN]
        assert unknown.pk == takes[4].pk
        assert Budget.for_team(cast.team).held_micros == unknown.estimated_micros
        assert sum(t.state == State.COMPLETED for t in done) == 16

        # What eachlabs ran and billed, per take: its webhook URL carries the take's token.
        ran = Counter(p.webhook_url for p in each.predictions.values())
        billed = Counter(p.webhook_url for p in each.predictions.values()
                         if p.id in each.billed)
        for take in done:
            url = generation._webhook_url(take)
            # eachlabs created the prediction and still answered 5xx, which both documents
            # say to retry: the one way to be billed twice, and it is noted on the take.
            twice = faulted.get(take.pk) == FAULTS[2]
            assert ran[url] == (2 if twice else 1), faulted.get(take.pk)
            if twice:
                assert any("also ran request" in line for line in take.logs), take.logs
                # ...and booked: a line of its own at the take's worst case.
                (extra,) = LedgerEntry.objects.filter(take=take, kind=Kind.EXTRA)
                assert extra.amount_micros == take.estimated_micros
                assert extra.request_id != take.request_id
            if take.state == State.COMPLETED:
                assert billed[url] == ran[url]
                assert take.actual_micros == each.billed[take.request_id]
                assert _ledger(take)[Kind.CAPTURE] == take.actual_micros
        # Refusals that created nothing (503, 429) were retried; a lost answer never was.
        assert each.creates - each.created == 7
        # Every dollar eachlabs billed is on the ledger (extra requests at their worst case),
        # but for the take whose answer and webhook were both lost, which keeps its hold.
        charged = sum(LedgerEntry.objects.filter(kind__in=LedgerEntry.CHARGES)
                      .values_list("amount_micros", flat=True))
        unheard = sum(amount for prediction_id, amount in each.billed.items()
                      if prediction_id == each_id_of(each, unknown))
        assert charged >= sum(each.billed.values()) - unheard
        assert unheard <= unknown.estimated_micros


@pytest.mark.django_db
def test_without_object_storage_inputs_are_signed_urls_of_the_public_base(cast, settings):
    with eachlabs(settings, SEED) as each:
        settings.STORAGES = {**settings.STORAGES, "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage"}}
        settings.WEBHOOK_BASE_URL = "https://storyboard.example.com"
        each.webhooks = False
        take = generation.start_generation(shot=_shot(cast), user=cast.editor)
        generation.drive(take_id=take.pk)
        take.refresh_from_db()
        sent = each.predictions[take.request_id].input["image_url"]
        assert sent.startswith("https://storyboard.example.com/inputs/")
        signed = sent.removeprefix("https://storyboard.example.com/inputs/").strip("/")
        assert generation.unsign_input(signed) == take.shot.start_frame.file.name


@pytest.mark.django_db
def test_the_editor_offers_to_discard_what_eachlabs_cannot_stop(cast, settings):
    with eachlabs(settings, SEED):
        take = generation.start_generation(shot=_shot(cast), user=cast.editor)
        generation.drive(take_id=take.pk)
        editor = client_for(cast.editor)
        refused = editor.post(reverse("sb:take-cancel", args=[take.uid]))
        assert refused.status_code == 422
        assert "eachlabs could not stop this take" in refused.content.decode()
        page = editor.get(reverse("sb:shot", args=[take.shot_id])).content.decode()
        assert "Discard the result" in page
        assert editor.post(reverse("sb:take-discard", args=[take.uid])).status_code == 302
        page = editor.get(reverse("sb:shot", args=[take.shot_id])).content.decode()
        assert "Will be discarded when it arrives" in page
