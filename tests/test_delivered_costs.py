"""Holds are never smaller than a plausible delivery, and captures are what was delivered.

An emulator that delivers what the documents make plausible (tests/emulators/delivery.py:
short side kept, macroblock padding, Seedance 1.0's extra frame) got a real charge of
1,905,120 µ$ captured as 1,458,608 µ$ before: the hold assumed smaller frames and the capture
was capped at the hold. Now the estimate is a safe upper bound and the capture is measured.
"""

from __future__ import annotations

import pytest

from storyboard import catalogue, generation
from storyboard.models import Budget, Generation, LedgerEntry
from storyboard.providers import get_provider
from tests.emulators import delivery
from tests.emulators.fal import FalEmulator
from tests.helpers import run_to_the_end
from tests.test_remote_generation import use_fal

State = Generation.State
V2_T2V = "bytedance/seedance-2.0/text-to-video"
V1_PRO_T2V = "fal-ai/bytedance/seedance/v1/pro/text-to-video"


def _combinations():
    for endpoint, spec in catalogue.ENDPOINTS.items():
        for resolution in spec.resolutions:
            for ratio in catalogue.ASPECT_RATIOS:
                for duration in spec.durations:
                    yield endpoint, resolution, ratio, duration


def test_every_plausible_delivery_costs_at_most_its_estimate():
    checked = 0
    for endpoint, resolution, ratio, duration in _combinations():
        arguments = {"resolution": resolution, "aspect_ratio": ratio, "duration": duration}
        width, height = delivery.delivered_size(endpoint, arguments)
        frames = delivery.delivered_frames(endpoint, arguments)
        cost = catalogue.price_micros(endpoint=endpoint, width=width, height=height,
                                      frames=frames)
        estimate = catalogue.estimate(endpoint=endpoint, resolution=resolution,
                                      aspect_ratio=ratio, duration=duration)
        assert cost <= estimate.micros, (endpoint, resolution, ratio, duration, width, height)
        checked += 1
    assert checked > 500


@pytest.mark.parametrize("frames", [29, 121, 289])
def test_a_seedance_1_frame_count_is_held_exactly(frames):
    arguments = {"resolution": "1080p", "aspect_ratio": "16:9", "num_frames": frames}
    width, height = delivery.delivered_size(V1_PRO_T2V, arguments)
    cost = catalogue.price_micros(endpoint=V1_PRO_T2V, width=width, height=height,
                                  frames=frames)
    estimate = catalogue.estimate(endpoint=V1_PRO_T2V, resolution="1080p",
                                  aspect_ratio="16:9", duration="5", num_frames=frames)
    assert cost <= estimate.micros


def test_the_documented_size_is_held_exactly():
    # "$0.3024/second" for 720p on Seedance 2.0: 10 s at 16:9 is exactly $3.024.
    assert catalogue.estimate(endpoint=V2_T2V, resolution="720p", aspect_ratio="16:9",
                              duration="10").micros == 3_024_000


def test_undocumented_sizes_keep_the_short_side_rounded_up_to_macroblocks():
    assert catalogue.output_size("720p", "21:9") == (1680, 720)
    assert catalogue.output_size("1080p", "16:9") == (1920, 1088)
    assert catalogue.output_size("1080p", "9:16") == (1088, 1920)


@pytest.fixture
def plausible_fal(settings):
    """fal in polling mode, delivering for each job the video its arguments make plausible."""

    def video(job) -> bytes:
        width, height = delivery.delivered_size(job.endpoint, job.input)
        return delivery.clip(width, height, delivery.delivered_frames(job.endpoint, job.input))

    emulator = FalEmulator(video=video, instant=True)
    emulator.tls = True
    with emulator:
        use_fal(settings, emulator)
        yield emulator
    get_provider.cache_clear()


def _charged(take: Generation) -> int:
    return sum(LedgerEntry.objects.filter(take=take, kind__in=LedgerEntry.CHARGES)
               .values_list("amount_micros", flat=True))


@pytest.mark.django_db
@pytest.mark.parametrize(("endpoint", "resolution", "ratio", "duration"), [
    (V2_T2V, "720p", "21:9", "4"),
    (V2_T2V, "1080p", "16:9", "4"),
    (V1_PRO_T2V, "1080p", "9:16", "2"),
    ("bytedance/seedance-2.0/fast/text-to-video", "480p", "auto", "4"),
])
def test_the_ledger_charges_exactly_what_was_delivered(cast, plausible_fal, endpoint,
                                                       resolution, ratio, duration):
    from tests.factories import ShotFactory

    shot = ShotFactory(project=cast.project, mode="text", endpoint=endpoint,
                       resolution=resolution, aspect_ratio=ratio, duration=duration,
                       prompt="A lighthouse at dusk.")
    take = run_to_the_end(generation.start_generation(shot=shot, user=cast.editor))
    assert take.state == State.COMPLETED, (take.error, take.logs)
    delivered = catalogue.price_micros(endpoint=endpoint, width=take.width,
                                       height=take.height,
                                       frames=round(take.duration * catalogue.FPS))
    assert take.actual_micros == delivered
    assert _charged(take) == delivered <= take.estimated_micros
    assert not LedgerEntry.objects.filter(take=take, kind=LedgerEntry.Kind.OVERRUN).exists()


@pytest.mark.django_db
def test_a_delivery_bigger_than_its_hold_is_charged_in_full_and_stops_new_takes(cast, settings):
    """The provider sends 1080p for a 480p request: every micro-dollar lands on the ledger."""
    big = delivery.clip(1920, 1088, 96)
    emulator = FalEmulator(video=big, instant=True)
    emulator.tls = True
    with emulator:
        use_fal(settings, emulator)
        from tests.factories import ShotFactory

        shot = ShotFactory(project=cast.project, mode="text", endpoint=V2_T2V,
                           resolution="480p", aspect_ratio="16:9", duration="4",
                           prompt="A lighthouse at dusk.")
        estimate = shot.estimate().micros
        # Room for exactly this take: the overrun will take the budget below zero.
        Budget.objects.filter(team=cast.team).update(limit_micros=estimate)
        take = run_to_the_end(generation.start_generation(shot=shot, user=cast.editor))
    get_provider.cache_clear()
    assert take.state == State.COMPLETED
    cost = catalogue.price_micros(endpoint=V2_T2V, width=1920, height=1088, frames=96)
    assert take.actual_micros == cost > estimate
    rows = dict(LedgerEntry.objects.filter(take=take).exclude(kind="hold")
                .values_list("kind", "amount_micros"))
    assert rows == {"capture": estimate, "overrun": cost - estimate}
    budget = Budget.for_team(cast.team)
    assert budget.ledger_totals() == {"held_micros": 0, "spent_micros": estimate,
                                      "overrun_micros": cost - estimate}
    assert budget.remaining_micros == estimate - cost < 0
    with pytest.raises(generation.GenerationRefused) as refused:
        generation.start_generation(shot=shot, user=cast.editor)
    assert "over this month's budget" in refused.value.message
    assert Generation.objects.count() == 1
