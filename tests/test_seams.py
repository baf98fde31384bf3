"""Seam check: every joint of a chain measured once, judged by the team's thresholds, shown on
the card, the shot page and the take row (issue #11)."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image, ImageDraw

from bench.seam import naive_ciede2000, naive_lab, naive_ssim
from storyboard import chains, generation, realtime, seams
from storyboard.models import Asset, Generation, Seam, SeamThresholds, Shot
from tests.conftest import client_for
from tests.factories import GenerationFactory, ProjectFactory, ShotFactory, jpeg_bytes

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}
# Seedance 1.0 lite at 480p for 2 s: the smallest real take, so the chains render fast.
LITE_T2V = "fal-ai/bytedance/seedance/v1/lite/text-to-video"
LITE_I2V = "fal-ai/bytedance/seedance/v1/lite/image-to-video"
GOOD = {"match_delta_e": "1.5", "drift_delta_e": "6", "match_ssim": "0.9", "drift_ssim": "0.7"}


# The measures themselves

# Sharma, Wu & Dalal (2005), "The CIEDE2000 color-difference formula: implementation notes",
# test data: pairs of Lab colours and their published ΔE00.
SHARMA = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 3.1571, -77.2803), (50.0, 0.0, -82.7485), 2.8615),
    ((50.0, -1.3802, -84.2814), (50.0, 0.0, -82.7485), 1.0),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.49, -0.001), (50.0, -2.49, 0.0009), 7.1792),
    ((50.0, 2.5, 0.0), (56.0, -27.0, -3.0), 31.903),
    ((50.0, 2.5, 0.0), (58.0, 24.0, 15.0), 19.4535),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((22.7233, 20.0904, -46.694), (23.0331, 14.973, -42.5619), 2.0373),
    ((90.8027, -2.0831, 1.441), (91.1528, -1.6435, 0.0447), 1.4441),
    ((2.0776, 0.0795, -1.135), (0.9033, -0.0636, -0.5514), 0.9082),
]


def test_ciede2000_gives_the_published_differences():
    first = np.array([pair[0] for pair in SHARMA])
    second = np.array([pair[1] for pair in SHARMA])
    expected = np.array([pair[2] for pair in SHARMA])
    assert np.allclose(seams.ciede2000(first, second), expected, atol=1e-4)
    # Symmetric, as the formula is.
    assert np.allclose(seams.ciede2000(second, first), expected, atol=1e-4)


def test_lab_of_white_and_of_srgb_red():
    lab = seams.srgb_to_lab(np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]))
    assert np.allclose(lab[0], [100.0, 0.0, 0.0], atol=0.01)
    assert np.allclose(lab[1], [53.24, 80.09, 67.20], atol=0.05)


def test_numpy_and_pixel_by_pixel_arithmetic_agree():
    rng = np.random.default_rng(3)
    a, b = rng.random((18, 22, 3)), rng.random((18, 22, 3))
    fast = seams.ciede2000(seams.srgb_to_lab(a), seams.srgb_to_lab(b))
    slow = [[naive_ciede2000(naive_lab(*pa), naive_lab(*pb)) for pa, pb in zip(ra, rb, strict=True)]
            for ra, rb in zip(a.tolist(), b.tolist(), strict=True)]
    assert np.allclose(fast, slow, atol=1e-6)
    ya, yb = seams.luma(a), seams.luma(b)
    assert seams.ssim(ya, yb) == pytest.approx(naive_ssim(ya.tolist(), yb.tolist()), abs=1e-9)


def _picture(size=(640, 360), seed=1) -> Image.Image:
    """Gradient, shapes and grain: detail for SSIM, colours for ΔE."""
    rng = random.Random(seed)
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    image = Image.blend(image, Image.new("RGB", size, (40, 70, 120)), 0.5)
    draw = ImageDraw.Draw(image)
    for _ in range(30):
        x, y, r = rng.uniform(0, size[0]), rng.uniform(0, size[1]), rng.uniform(10, 60)
        draw.ellipse((x - r, y - r, x + r, y + r),
                     fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    return image


def _warmer(image: Image.Image, amount: float = 0.15) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32) * [1 + amount, 1.0, 1 - amount]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def test_the_same_frame_scores_zero_difference():
    picture = _picture()
    found = seams.score(picture, picture.copy())
    assert found.delta_e == pytest.approx(0, abs=1e-6)
    assert found.ssim == pytest.approx(1, abs=1e-6)


def test_a_grade_moves_colour_and_a_reframing_moves_structure():
    picture = _picture()
    graded = seams.score(picture, _warmer(picture))
    w, h = picture.size
    reframed = seams.score(picture, picture.crop((40, 22, w - 40, h - 22)).resize(picture.size))
    assert graded.delta_e > 4
    assert graded.ssim > 0.95
    assert reframed.ssim < 0.8


def test_a_downstream_frame_of_another_size_is_fitted_first():
    picture = _picture((640, 360))
    found = seams.score(picture, picture.resize((1280, 720)))
    assert found.delta_e < 0.5
    assert found.ssim > 0.98


def test_the_verdict_follows_the_thresholds():
    lines = SeamThresholds(match_delta_e=2, drift_delta_e=4, match_ssim=0.9, drift_ssim=0.7)
    assert lines.verdict(delta_e=1.9, ssim=0.95) == Seam.Verdict.MATCH
    assert lines.verdict(delta_e=3.0, ssim=0.95) == Seam.Verdict.CHECK
    assert lines.verdict(delta_e=1.0, ssim=0.8) == Seam.Verdict.CHECK
    assert lines.verdict(delta_e=4.0, ssim=0.99) == Seam.Verdict.DRIFT
    assert lines.verdict(delta_e=0.5, ssim=0.7) == Seam.Verdict.DRIFT


# Chains rendered by the offline renderer


def _photo_asset(project) -> Asset:
    out = io.BytesIO()
    _picture((960, 540), seed=7).save(out, "PNG")
    return Asset.objects.store(project=project,
                               upload=SimpleUploadedFile("plate.png", out.getvalue()), user=None)


def _quick(project, **kwargs) -> Shot:
    defaults = {"mode": "image", "endpoint": LITE_I2V, "resolution": "480p",
                "aspect_ratio": "16:9", "duration": "2", "generate_audio": False,
                # A push in starts on the start frame itself: what a continuing shot shows.
                "prompt": "Slow push in on the harbour."}
    return ShotFactory(project=project, **{**defaults, **kwargs})


def _render(shot: Shot, user) -> Generation:
    take = generation.start_generation(shot=Shot.objects.get(pk=shot.pk), user=user)
    generation.drive(take_id=take.pk)
    take.refresh_from_db()
    assert take.state == Generation.State.COMPLETED
    return take


@pytest.fixture
def chain(cast):
    """Two shots, the second continuing the first, both rendered offline."""
    up = _quick(cast.project, title="Cliff", start_frame=_photo_asset(cast.project),
                prompt="Static shot of the harbour.")
    down = _quick(cast.project, title="Window", continues_from=up)
    first = _render(up, cast.editor)
    second = _render(down, cast.editor)
    return up, down, first, second


def _shifted_chain_frame(monkeypatch):
    """Every continuing take starts from its upstream's last frame graded 15 % warmer."""
    real = generation.chain_frame

    def shifted(take: Generation):
        with real(take).open("rb") as fh:
            warm = _warmer(Image.open(fh).convert("RGB"))
        out = io.BytesIO()
        warm.save(out, "PNG")
        return Asset.objects.store(project=take.project, user=None,
                                   upload=SimpleUploadedFile("warm.png", out.getvalue())).file

    monkeypatch.setattr(generation, "chain_frame", shifted)


def test_a_chain_rendered_from_the_true_last_frame_matches(chain):
    _up, down, first, second = chain
    seam = Seam.objects.get()
    assert (seam.upstream, seam.downstream) == (first, second)
    assert seam.verdict == Seam.Verdict.MATCH, seam.summary
    assert seam.delta_e < 1.5
    assert seam.ssim > 0.97
    assert Shot.objects.get(pk=down.pk).joint() == seam


def test_a_colour_shifted_downstream_take_drifts_and_is_flagged_before_review(
        chain, cast, monkeypatch):
    _up, down, first, second = chain
    _shifted_chain_frame(monkeypatch)
    shifted = _render(down, cast.editor)
    seam = Seam.objects.get(downstream=shifted)
    assert seam.upstream == first
    assert seam.verdict == Seam.Verdict.DRIFT, seam.summary
    assert seam.delta_e > 3.5
    # Flagged on its row although nobody chose it: the board still shows the matching take.
    page = client_for(cast.reviewer).get(reverse("sb:shot", args=[down.pk])).content.decode()
    assert page.count("drifts at the seam") == 1
    assert Shot.objects.get(pk=down.pk).joint().downstream == second


def test_choosing_the_drifting_take_puts_its_seam_on_the_card(
        chain, cast, monkeypatch, django_capture_on_commit_callbacks):
    _up, down, _first, _second = chain
    _shifted_chain_frame(monkeypatch)
    shifted = _render(down, cast.editor)
    pushed: list[list[int]] = []
    real = realtime.board_change
    monkeypatch.setattr(realtime, "board_change",
                        lambda *a, **kw: pushed.append(list(kw.get("cards", []))) or real(*a, **kw))
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(cast.editor).post(reverse("sb:take-select", args=[shifted.uid]),
                                                **HTMX)
    assert response.status_code == 200
    assert pushed == [[down.pk]]
    board = client_for(cast.viewer).get(reverse("sb:board", args=[cast.project.pk])) \
        .content.decode()
    assert "seam-mark seam-drift" in board
    assert "seam drift" in board


def test_a_new_upstream_take_measures_the_joint_below_and_pushes_its_card(
        chain, cast, monkeypatch, django_capture_on_commit_callbacks):
    up, down, first, second = chain
    newer = _render(up, cast.editor)  # a second take of the upstream: not chosen yet
    pushed: list[list[int]] = []
    real = realtime.board_change
    monkeypatch.setattr(realtime, "board_change",
                        lambda *a, **kw: pushed.append(list(kw.get("cards", []))) or real(*a, **kw))
    with django_capture_on_commit_callbacks(execute=True):
        chains.choose_take(shot=up, take=newer, user=cast.editor)
    assert pushed == [[up.pk, down.pk]]
    joint = Shot.objects.get(pk=down.pk).joint()
    assert (joint.upstream, joint.downstream) == (newer, second)
    # Measured, not assumed: the old joint keeps its own score.
    assert Seam.objects.filter(upstream=first, downstream=second).exists()


def test_a_joint_is_measured_once(chain, monkeypatch):
    _up, _down, first, second = chain
    calls = []
    monkeypatch.setattr(seams, "joint_frames", lambda **kw: calls.append(kw))
    assert seams.measure(upstream=first, downstream=second) == Seam.objects.get()
    assert calls == []


def test_a_joint_reads_the_frames_captured_at_completion_and_decodes_nothing(chain, monkeypatch):
    _up, _down, first, second = chain
    Seam.objects.all().delete()

    def no_decoding(path):
        raise AssertionError(f"decoded {path}")

    monkeypatch.setattr(seams.frames, "first_still", no_decoding)
    monkeypatch.setattr(seams.frames, "last_still", no_decoding)
    seam = seams.measure(upstream=first, downstream=second)
    assert seam.verdict == Seam.Verdict.MATCH


def test_a_take_without_captured_frames_is_decoded_instead(chain):
    _up, _down, first, second = chain
    Seam.objects.all().delete()
    Generation.objects.filter(pk__in=[first.pk, second.pk]).update(first_frame="", last_frame="")
    first.refresh_from_db()
    second.refresh_from_db()
    assert seams.measure(upstream=first, downstream=second).verdict == Seam.Verdict.MATCH


def test_an_unreadable_take_has_no_seam_and_still_finishes(cast):
    up = _quick(cast.project, title="Cliff")
    down = _quick(cast.project, title="Window", continues_from=up)
    first = GenerationFactory(shot=up)  # stand-in bytes, not a video
    chains.choose_take(shot=up, take=first, user=None)
    take = GenerationFactory(shot=down, upstream=first)
    chains.take_finished(take)
    assert Shot.objects.get(pk=down.pk).chosen_take() == take
    assert not Seam.objects.exists()


# The frames on the shot page


def _seam(project, *, verdict=Seam.Verdict.MATCH, delta_e=0.6, ssim=0.99) -> Seam:
    up = ShotFactory(project=project, title="Up")
    down = ShotFactory(project=project, title="Down", continues_from=up)
    first, second = GenerationFactory(shot=up), GenerationFactory(shot=down, upstream=None)
    up.selected_take, down.selected_take = first, second
    up.save(update_fields=["selected_take"])
    down.save(update_fields=["selected_take"])
    seam = Seam(project=project, upstream=first, downstream=second, delta_e=delta_e, ssim=ssim,
                verdict=verdict)
    seam.before.save("before.jpg", ContentFile(jpeg_bytes(color=(200, 0, 0))), save=False)
    seam.after.save("after.jpg", ContentFile(jpeg_bytes(color=(0, 0, 200))), save=False)
    seam.save()
    return seam


@pytest.mark.parametrize("role", ["owner", "editor", "reviewer", "viewer"])
def test_every_member_sees_both_frames_and_the_wipe(cast, role):
    seam = _seam(cast.project)
    client = client_for(cast.member(role))
    page = client.get(reverse("sb:shot", args=[seam.downstream.shot_id])).content.decode()
    before = reverse("sb:seam-frame", args=[seam.pk, "before"])
    after = reverse("sb:seam-frame", args=[seam.pk, "after"])
    assert before in page
    assert after in page
    assert 'class="seam-wipe"' in page
    assert "ΔE 0.6 · SSIM 0.99" in page
    response = client.get(before)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert b"".join(response.streaming_content) == seam.before.open("rb").read()


def test_another_team_cannot_see_a_seam(cast):
    seam = _seam(cast.project)
    client = client_for(cast.outsider)
    assert client.get(reverse("sb:seam-frame", args=[seam.pk, "before"])).status_code == 404
    assert client.get(reverse("sb:seam-frame", args=[seam.pk, "sideways"])).status_code == 404


def test_the_card_shows_the_seam_on_its_continues_line(cast):
    _seam(cast.project, verdict=Seam.Verdict.CHECK, delta_e=2.7, ssim=0.91)
    board = client_for(cast.viewer).get(reverse("sb:board", args=[cast.project.pk])) \
        .content.decode()
    assert 'class="seam-mark seam-check"' in board
    assert "ΔE 2.7 · SSIM 0.91" in board


# Thresholds: owners and producers set them on the budget page


def _post(user, team, data, *, client=None):
    client = client or client_for(user)
    return client.post(reverse("sb:seam-thresholds", args=[team.pk]), data)


@pytest.mark.parametrize("role", ["owner", "producer"])
def test_owners_and_producers_set_thresholds_and_seams_are_judged_again(cast, role):
    seam = _seam(cast.project, verdict=Seam.Verdict.MATCH, delta_e=1.8, ssim=0.99)
    client = client_for(cast.member(role))
    response = _post(cast.member(role), cast.team, GOOD, client=client)
    assert response.status_code == 302
    lines = SeamThresholds.objects.get(team=cast.team)
    assert (lines.match_delta_e, lines.drift_delta_e, lines.match_ssim, lines.drift_ssim) == \
        (1.5, 6.0, 0.9, 0.7)
    assert lines.updated_by == cast.member(role)
    seam.refresh_from_db()
    assert seam.verdict == Seam.Verdict.CHECK  # 1.8 is past the new match line of 1.5
    page = client.get(response["Location"]).content.decode()
    assert "Seam thresholds saved" in page


@pytest.mark.parametrize("role", ["editor", "reviewer", "viewer"])
def test_other_members_see_the_thresholds_but_cannot_change_them(cast, role):
    seam = _seam(cast.project, delta_e=1.8)
    page = client_for(cast.member(role)).get(reverse("sb:budget", args=[cast.team.pk])) \
        .content.decode()
    assert 'id="seam-check"' in page
    assert "An owner or producer can change these lines." in page
    assert reverse("sb:seam-thresholds", args=[cast.team.pk]) not in page
    assert _post(cast.member(role), cast.team, GOOD).status_code == 403
    assert SeamThresholds.objects.filter(team=cast.team, match_delta_e=1.5).count() == 0
    seam.refresh_from_db()
    assert seam.verdict == Seam.Verdict.MATCH


def test_another_team_cannot_set_thresholds(cast):
    assert _post(cast.outsider, cast.team, GOOD).status_code == 404
    assert not SeamThresholds.objects.filter(team=cast.team, match_delta_e=1.5).exists()


@pytest.mark.parametrize(("changes", "message"), [
    ({"match_delta_e": "7"}, "The drift line must be above the match line (ΔE 7)"),
    ({"drift_ssim": "0.95"}, "The drift line must be below the match line (SSIM 0.9)"),
    ({"match_ssim": "1.5"}, "Ensure this value is less than or equal to 1"),
    ({"drift_delta_e": "-1"}, "Ensure this value is greater than or equal to 0"),
    ({"match_delta_e": "a lot"}, "Enter a number"),
    ({"drift_delta_e": "inf"}, "Enter a number"),
    ({"match_ssim": ""}, "This field is required"),
])
def test_bad_thresholds_are_refused_with_a_message_and_change_nothing(cast, changes, message):
    seam = _seam(cast.project, delta_e=1.8)
    response = _post(cast.owner, cast.team, {**GOOD, **changes})
    assert response.status_code == 422
    content = response.content.decode()
    assert "Nothing was saved" in content
    assert message in content
    # The refused values stay in the form to be corrected.
    assert all(f'value="{value}"' in content for value in {**GOOD, **changes}.values() if value)
    assert not SeamThresholds.objects.exists()
    seam.refresh_from_db()
    assert seam.verdict == Seam.Verdict.MATCH


def test_thresholds_judge_only_the_teams_own_seams(cast):
    ours = _seam(cast.project, delta_e=1.8)
    theirs = _seam(ProjectFactory(team=cast.other_team), delta_e=1.8)
    _post(cast.owner, cast.team, GOOD)
    ours.refresh_from_db()
    theirs.refresh_from_db()
    assert (ours.verdict, theirs.verdict) == (Seam.Verdict.CHECK, Seam.Verdict.MATCH)
    assert not SeamThresholds.objects.filter(team=cast.other_team, match_delta_e=1.5).exists()


def test_a_team_starts_with_the_calibrated_defaults(cast):
    lines = SeamThresholds.for_team(cast.team.pk)
    assert (lines.match_delta_e, lines.drift_delta_e, lines.match_ssim, lines.drift_ssim) == \
        (2.0, 3.5, 0.95, 0.8)
    # Read, not written: the budget page shows them without creating anything.
    client_for(cast.owner).get(reverse("sb:budget", args=[cast.team.pk]))
    assert not SeamThresholds.objects.exists()
