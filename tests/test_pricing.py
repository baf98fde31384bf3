"""Prices against the worked figures in the provider documents (../shared/seeds)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storyboard import catalogue

V2 = "bytedance/seedance-2.0/image-to-video"
V2_FAST = "bytedance/seedance-2.0/fast/image-to-video"
V2_REF = "bytedance/seedance-2.0/reference-to-video"
LITE = "fal-ai/bytedance/seedance/v1/lite/image-to-video"
PRO = "fal-ai/bytedance/seedance/v1/pro/image-to-video"


def _cost(endpoint: str, seconds: str, resolution: str = "720p", ratio: str = "16:9",
          **kwargs) -> int:
    return catalogue.estimate(endpoint=endpoint, resolution=resolution, aspect_ratio=ratio,
                              duration=seconds, **kwargs).micros


def test_720p_standard_costs_0_3024_per_second():
    assert _cost(V2, "1") == 302_400
    assert catalogue.estimate(endpoint=V2, resolution="720p", aspect_ratio="16:9",
                              duration="1").tokens == 21_600


def test_a_ten_second_clip_costs_about_3_02_standard_and_2_42_fast():
    assert _cost(V2, "10") == 3_024_000
    assert _cost(V2_FAST, "10") == 2_419_200
    assert _cost(V2_FAST, "1") == 241_920


def test_video_references_get_the_0_6_multiplier():
    assert _cost(V2_REF, "10", video_references=True) == 3_024_000 * 3 // 5
    assert _cost(V2_REF, "10") == 3_024_000


def test_seedance_1_prices_match_the_documents_roughly():
    # "~$0.62 per 1080p 5-second video" (pro) and "$0.18 per 720p 5-second video" (lite).
    assert _cost(PRO, "5", "1080p") == pytest.approx(620_000, rel=0.03)
    assert _cost(LITE, "5") == pytest.approx(180_000, rel=0.1)


def test_auto_duration_and_ratio_are_estimated_at_their_worst_case():
    auto = catalogue.estimate(endpoint=V2, resolution="720p", aspect_ratio="auto",
                              duration="auto")
    assert auto.worst_case
    assert auto.frames == 15 * 24
    biggest = max(w * h for w, h in catalogue.PIXEL_SIZES["720p"].values())
    assert auto.width * auto.height == biggest
    assert auto.micros >= _cost(V2, "15")


def test_num_frames_overrides_duration():
    assert catalogue.estimate(endpoint=LITE, resolution="480p", aspect_ratio="16:9",
                              duration="5", num_frames=29).frames == 29


@given(endpoint=st.sampled_from(list(catalogue.ENDPOINTS)),
       resolution=st.sampled_from(list(catalogue.PIXEL_SIZES)),
       ratio=st.sampled_from(catalogue.ASPECT_RATIOS),
       seconds=st.integers(1, 15))
def test_prices_are_exact_integers_that_never_round_down(endpoint, resolution, ratio, seconds):
    estimate = catalogue.estimate(endpoint=endpoint, resolution=resolution, aspect_ratio=ratio,
                                  duration=str(seconds))
    exact = estimate.tokens * catalogue.ENDPOINTS[endpoint].micros_per_million_tokens / 1e6
    assert isinstance(estimate.micros, int)
    assert exact <= estimate.micros < exact + 1
